#!/usr/bin/env bash
# Cross-check netc against PyTorch: logits, loss, gradients, updated weights
# and batch-norm statistics after one step of each of the seven networks of
# the seed, in train and eval mode (tests/torch/crosscheck.py).
# CTest runs: bash tests/crosscheck.sh NETC_BINARY SOURCE_DIR BINARY_DIR
# Skipped (exit 0) when Debian's python3-torch is not installed.
set -u
NETC=${1:?usage: crosscheck.sh NETC_BINARY SOURCE_DIR BINARY_DIR}
SRC=${2:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3

if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1; then
    echo "SKIPPED: python3-torch not installed ($PY -c 'import torch' failed)"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/netc-crosscheck.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$PY" "$SRC/tests/torch/crosscheck.py" --netc "$NETC" --source-dir "$SRC" --target ref --tmpdir "$tmp"
