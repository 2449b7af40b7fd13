#!/usr/bin/env bash
# train_lenet.sh NETC SOURCE_DIR BINARY_DIR - real training: LeNet-BN at the
# seed's settings (lr 1.0, batch 256, resize 28) on Fashion-MNIST reaches a
# training accuracy of at least 0.75 in one epoch (the seed reaches ~0.78
# after its first epoch on the same settings).
set -u
NETC=$1
cd "$2"
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "SKIPPED: Fashion-MNIST not found in $DATA (apt-get install dataset-fashion-mnist)"
    exit 0
fi
out=$($NETC train models/lenet_bn.net --epochs 1 --quiet --data "$DATA") || { echo "FAIL: netc train exited $?"; exit 1; }
echo "$out"
acc=$(echo "$out" | sed -n 's/^epoch 1\/1: .*train acc \([0-9.]*\),.*/\1/p')
[ -n "$acc" ] || { echo "FAIL: no epoch line"; exit 1; }
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }'; then
    echo "1 passed, 0 failed"
else
    echo "FAIL: train acc $acc < 0.75"
    echo "0 passed, 1 failed"
    exit 1
fi
