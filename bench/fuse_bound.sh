#!/usr/bin/env bash
# fuse_bound.sh - how much faster fusion can make a training step here, at
# most, against what it does: per network, the unfused step's profile
# (NETC_CPU_PROFILE=1, `--fuse none`) split into the kernels fusion can
# remove (batchnorm, batchnorm_bwd, relu, relu_bwd, add, accum, sigmoid,
# sigmoid_bwd: elementwise passes over a tensor) and the rest (convs, linear
# layers, pools, loss, SGD), the bound 1 / (1 - elementwise share) that a
# step without any elementwise pass would reach, and `netc bench
# --compare-fuse`'s measured fused/unfused ratio beside it.
#
#   bench/fuse_bound.sh                        resnet18 and densenet
#   bench/fuse_bound.sh --models lenet_bn,googlenet --threads 2
#
# The bound assumes the convolutions cost what they cost unfused; a fused
# kernel that reads a tensor in its prologue or epilogue still pays part of
# that pass, so the ratio fusion reaches is below it.
set -u
cd "$(dirname "$0")/.."
NETC=${NETC:-./build/netc}
models=resnet18,densenet
threads=$(nproc)
while [ $# -gt 0 ]; do
    case $1 in
        --models) models=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --netc) NETC=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "fuse_bound.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$NETC" ] || { echo "fuse_bound.sh: no netc at $NETC (build it, or pass --netc PATH)" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "| network | unfused ms/step (profile) | elementwise ms | share | bound | fused/unfused measured |"
echo "|---|--:|--:|--:|--:|--:|"
for m in ${models//,/ }; do
    NETC_CPU_PROFILE=1 "$NETC" bench "models/$m.net" --threads "$threads" --fuse none >"$T/p.txt" 2>&1 ||
        { echo "| $m | failed | | | | |"; continue; }
    "$NETC" bench "models/$m.net" --threads "$threads" --compare-fuse >"$T/c.txt" 2>&1
    ratio=$(sed -n 's/.*fused\/unfused \([0-9.]*\)x.*/\1/p' "$T/c.txt")
    awk -v m="$m" -v r="${ratio:-?}" '
        NR > 1 && $2 == "ms" {
            split($6, a, "["); op = a[1]; t = $1; tot += t
            if (op ~ /^(batchnorm|batchnorm_bwd|relu|relu_bwd|add|accum|sigmoid|sigmoid_bwd)$/) ew += t
        }
        END { s = tot ? ew / tot : 0
              printf "| %s | %.1f | %.1f | %.1f%% | %.3fx | %sx |\n", m, tot, ew, 100 * s, 1 / (1 - s), r }' "$T/p.txt"
done
