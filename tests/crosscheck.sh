#!/usr/bin/env bash
# Cross-check netc against PyTorch: logits, loss, gradients, updated weights
# and batch-norm statistics after one step of each of the seven networks of
# the seed, in train and eval mode (tests/torch/crosscheck.py), on ref and on
# cpu at each vector width the host can run, and on cpu with --recompute
# bn-relu and with --concat copy for the networks they change.
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
# ref, then cpu (what `netc train` runs) at every vector width this host can
# execute: its native code and, on an AVX-512 host, the 8-wide AVX2 code too
rc=0
run() { echo "== ${NETC_CPU:+NETC_CPU=$NETC_CPU }$*"; "$PY" "$SRC/tests/torch/crosscheck.py" --netc "$NETC" --source-dir "$SRC" --tmpdir "$tmp" "$@" || rc=1; }
run --target ref
if "$NETC" --version | grep -q "targets:.*cpu"; then
    run --target cpu
    # the memory plan's options: recompute (views are the default), and copies
    run --target cpu --models densenet,googlenet,resnet18 --netc-args "--recompute bn-relu"
    run --target cpu --models densenet,googlenet --netc-args "--concat copy"
    if "$NETC" --version | grep -q "16-wide"; then
        NETC_CPU=native,-avx512f run --target cpu
    else
        echo "cpu 16-wide (AVX-512) cross-check skipped: this host has no AVX-512"
    fi
else
    echo "cpu cross-check skipped: this netc has no cpu target (built without LLVM)"
fi
exit $rc
