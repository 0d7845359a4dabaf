#!/bin/bash
# The Slurm recipe against a real single-node cluster on this machine: slurmctld and slurmd from
# Debian's slurm-wlm packages, unpacked into a temporary folder (apt-get download + dpkg-deb -x,
# no system install), with AuthType=auth/none, CredType=cred/none, high ports and daemons in the
# foreground (-D), stopped by their process ids at the end.
#
#   bash deploy/slurm/test-local-cluster.sh path/to/faceforge
#
# It checks what docs/scaling.md promises:
# 1. A synthetic folder (faceforge synth, with truth) is fitted by one process as the reference.
# 2. A 4-shard array is submitted with submit.sh, with a merge job after it. Shard 2 is made to
#    fail: its first submission stops mid-way with --stop-after (exit 130, checkpoint kept). So
#    the merge job, which needs every task to succeed, never runs.
# 3. A merge by hand names the shard that is not finished, and fails.
# 4. Only index 2 is resubmitted, with a merge job after it. The shard goes on from its
#    checkpoint, and the merged folder equals the single process: every per-frame file the same
#    bytes, metrics.json within 1e-6.
set -euo pipefail
started=$(date +%s%N)
faceforge=$(realpath "${1:?usage: $0 path/to/faceforge}")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/faceforge-slurm.XXXXXX)
root=$work/root
lib=$root/usr/lib/x86_64-linux-gnu
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/log/*.log "$work"/run/*.log; do [ -f "$log" ] && { echo "== $log"; tail -n 20 "$log"; } >&2; done
    exit 1
}

echo "== Slurm from Debian's packages, unpacked into $work"
mkdir -p "$work/debs" "$root" "$work/log" "$work/state" "$work/spool" "$work/run"
packages=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins libhwloc15 libmunge2 liblua5.1-0 libjson-c5 libyaml-0-2 libnuma1)
if ! (cd "$work/debs" && apt-get download "${packages[@]}" >/dev/null 2>&1); then
    apt-get update -qq >/dev/null
    (cd "$work/debs" && apt-get download "${packages[@]}" >/dev/null)
fi
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
export LD_LIBRARY_PATH=$lib:$lib/slurm-wlm PATH=$root/usr/bin:$PATH
"$root/usr/sbin/slurmctld-wlm" -V

# Ports from the process id, so two runs on one machine do not meet.
port=$((20000 + ($$ % 20000)))
cat > "$work/slurm.conf" <<CONF
ClusterName=faceforge-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/none
CredType=cred/none
PluginDir=$lib/slurm-wlm
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
NodeName=localhost CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
"$root/usr/sbin/slurmctld-wlm" -D -i -f "$SLURM_CONF" > "$work/log/slurmctld.log" 2>&1 &
pids+=($!)
"$root/usr/sbin/slurmd-wlm" -D -f "$SLURM_CONF" -N localhost -d "$root/usr/sbin/slurmstepd-wlm" > "$work/log/slurmd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 0.1
done
sinfo -h -o %T | grep -q idle || fail "the node did not come up"
sinfo

# Waits for the jobs to leave the queue (at most 120 s).
wait_jobs() {
    for _ in $(seq 1200); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    squeue; fail "jobs $1 still queued after 120 s"
}
# A job's state, as the controller keeps it for a while after it ends.
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2; }

echo "== the data and the single-process reference"
cd "$work/run"
export FACEFORGE=$faceforge
"$faceforge" synth aflw-like --out images --subjects 8 --size 96 --model tiny --seed 7 >/dev/null
scene=$repo/scenes/folder_fit.ron
settings=(--set model.Procedural.preset=Tiny --set 'data.Folder.path="images"' --set 'data.Folder.size=96' --set iterations=40 --set 'outputs.meshes=[Obj]' --set 'outputs.checkpoint_every=10')
"$faceforge" run "$scene" "${settings[@]}" --set 'outputs.dir="one"' --quiet >one.log 2>&1 || fail "the single-process run"

echo "== a 4-shard array (2 at a time) and its merge; shard 2 is stopped mid-way"
array=$(sbatch --parsable --array=0,1,3%2 "$here/faceforge-array.sbatch" 4 "$scene" sharded "${settings[@]}")
broken=$(sbatch --parsable --array=2 "$here/faceforge-array.sbatch" 4 "$scene" sharded "${settings[@]}" --stop-after 60)
merge=$(sbatch --parsable --dependency="afterok:$array:$broken" --kill-on-invalid-dep=yes "$here/faceforge-merge.sbatch" sharded)
echo "array $array, shard 2 as $broken, merge $merge"
wait_jobs "$array,$broken,$merge"
[ "$(state "${broken}_2")" = FAILED ] || [ "$(state "$broken")" = FAILED ] || fail "shard 2 should have failed: $(state "$broken")"
[ "$(state "$merge")" != COMPLETED ] || fail "the merge ran although shard 2 failed"
ls sharded/shard-2-of-4/records | grep -q checkpoint.json || fail "shard 2 left no checkpoint"
for i in 0 1 3; do [ -f "sharded/shard-$i-of-4/run.json" ] || fail "shard $i did not finish"; done
if "$faceforge" merge sharded >merge-incomplete.log 2>&1; then fail "merging with shard 2 unfinished should fail"; fi
grep -q "unfinished" merge-incomplete.log || fail "the merge does not say what is unfinished: $(cat merge-incomplete.log)"
echo "shard 2 failed, the merge job did not run, a merge by hand says: $(grep -o 'the merge is incomplete[^:]*' merge-incomplete.log)"

echo "== index 2 resubmitted alone, then the merge"
again=$(sbatch --parsable --array=2 "$here/faceforge-array.sbatch" 4 "$scene" sharded "${settings[@]}")
merge=$(sbatch --parsable --dependency="afterok:$again" --kill-on-invalid-dep=yes "$here/faceforge-merge.sbatch" sharded)
wait_jobs "$again,$merge"
[ "$(state "$merge")" = COMPLETED ] || fail "the merge job: $(state "$merge")"
grep -q "going on from iteration" "faceforge-${again}_2.log" || fail "shard 2 did not go on from its checkpoint"

echo "== the merged folder against the single process"
count=0
for file in one/*; do
    name=$(basename "$file")
    case "$name" in manifest.json|run.json|metrics.json|report.html|report.md|losses.csv) continue ;; esac
    [ -f "$file" ] || continue
    cmp -s "$file" "sharded/$name" || fail "$name differs from the single process"
    count=$((count + 1))
done
[ "$count" -ge 32 ] || fail "only $count per-frame files"
python3 - one/metrics.json sharded/metrics.json <<'PY' || fail "metrics.json differs"
import json, sys
def numbers(a, b, at, out):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), at
        for k in a: numbers(a[k], b[k], f"{at}.{k}", out)
    elif isinstance(a, list):
        assert len(a) == len(b), at
        for i, (x, y) in enumerate(zip(a, b)): numbers(x, y, f"{at}[{i}]", out)
    elif isinstance(a, (int, float)) and not isinstance(a, bool):
        out.append((at, a, b))
    else:
        assert a == b, at
pairs = []
numbers(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), "metrics", pairs)
worst = max(abs(a - b) for _, a, b in pairs)
assert worst <= 1e-6, worst
print(f"metrics.json: {len(pairs)} numbers, largest difference {worst}")
PY
echo "$count per-frame files identical to the single process"
elapsed=$((($(date +%s%N) - started) / 1000000))
printf 'slurm test passed in %d.%03d s\n' $((elapsed / 1000)) $((elapsed % 1000))
echo "slurm: 1 passed, 0 failed"
