#!/bin/bash
# Submits a sharded faceforge run and its merge:
#
#   deploy/slurm/submit.sh N K SCENE OUT [faceforge run options…]
#
# N shards as one job array, at most K running at once, then a merge job that starts when every
# task has succeeded (--dependency=afterok). Prints the two job ids. FACEFORGE names the
# binary (default: `faceforge` on the PATH), and SBATCH_* variables set the resources.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 N K SCENE OUT [faceforge run options…]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
shards=$1 running=$2 scene=$3 out=$4
shift 4
mkdir -p "$out"
array=$(sbatch --parsable --array="0-$((shards - 1))%$running" --chdir="$PWD" "$here/faceforge-array.sbatch" "$shards" "$scene" "$out" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes --chdir="$PWD" "$here/faceforge-merge.sbatch" "$out")
echo "array job $array ($shards shards, $running at a time), merge job ${merge%%;*}"
