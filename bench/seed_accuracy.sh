#!/usr/bin/env bash
# seed_accuracy.sh MODEL [netc options...] - trains models/MODEL.net with the
# seed's settings (ten epochs, the file's lr, batch and resize) on
# Fashion-MNIST and prints netc's last epoch beside the seed's published one.
#   bench/seed_accuracy.sh lenet_bn            (about 3 minutes with the cpu target)
set -eu
cd "$(dirname "$0")/.."
NETC=${NETC:-./build/netc}
model=${1:?usage: bench/seed_accuracy.sh MODEL [options]}
shift
# the seed's published results after 10 epochs: loss, train acc, test acc, examples/s (one V100-class GPU)
case $model in
    alexnet) seed="0.331 0.878 0.883 3942" ;;
    vgg11) seed="0.178 0.935 0.920 2464" ;;
    nin) seed="0.563 0.783 0.772 3193" ;;
    googlenet) seed="0.262 0.900 0.886 3266" ;;
    lenet_bn) seed="0.273 0.899 0.807 32294" ;;
    resnet18) seed="0.012 0.997 0.893 5033" ;;
    densenet) seed="0.140 0.948 0.885 5626" ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
$NETC train "models/$model.net" "$@" | tee "$log"
last=$(tail -n 1 "$log")
set -- $seed
printf '\n%-6s %-8s %-10s %-9s %s\n' "" "loss" "train acc" "test acc" "examples/s"
printf '%-6s %-8s %-10s %-9s %s\n' "seed" "$1" "$2" "$3" "$4 (GPU)"
echo "$last" | sed -n 's/^epoch [0-9]*\/[0-9]*: loss \([0-9.]*\), train acc \([0-9.]*\), test acc \([0-9.]*\), \([0-9.]*\) examples\/sec/netc   \1    \2      \3     \4 (this CPU)/p'
