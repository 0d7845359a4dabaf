#!/usr/bin/env bash
# faceforge against its PyTorch peer (benches/peer/peer.py), side by side on the same numbers:
# faceforge runs scenes/landmark_fit.ron (timing it) and exports the model's arrays, the frames'
# landmarks, the starting poses and the optimiser's settings; the peer runs the same fit on them
# and prints both, with the ratio of their times and how far their loss curves differ.
#
#   bash benches/peer/run.sh                                # print the table
#   bash benches/peer/run.sh --record docs/performance.md   # and append it there
#
# PyTorch comes from PyPI into a virtualenv under the cache folder, once. PyPI has no CPU-only
# torch wheel for Linux (those live on download.pytorch.org, which this machine cannot reach):
# its wheel pulls NVIDIA's CUDA libraries too (about 5 GB in all), which load but stay unused.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${FACEFORGE_CACHE:-$HOME/.cache/faceforge}"
VENV="$CACHE/peer-venv"
if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    echo "== installing PyTorch and NumPy from PyPI into $VENV (once)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch==2.15.0 numpy==2.4.6
fi
EXPORT="$(mktemp -d)"
trap 'rm -rf "$EXPORT"' EXIT
echo "== faceforge: cargo run --release -- bench peer --export $EXPORT"
cargo run --release --quiet -- bench peer --export "$EXPORT"
echo "== PyTorch: benches/peer/peer.py"
"$VENV/bin/python" benches/peer/peer.py "$EXPORT" "$@"
