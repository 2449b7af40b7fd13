#!/usr/bin/env bash
# cli_train.sh NETC SOURCE_DIR BINARY_DIR - netc train/eval end to end:
# bit-exact resume, checkpoints, metrics and plot, and every bad-data case
# (missing directory, truncated or corrupt gzip, wrong IDX magic, counts that
# disagree, unreadable or mismatched checkpoints, a NaN loss) getting its
# message, a non-zero exit, and no damage to the last good checkpoint.
set -u
NETC=$1
cd "$2"
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
# expect_fail NAME PATTERN CMD... : CMD must exit 1 and print PATTERN on stderr
expect_fail() {
    local name=$1 pat=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$pat" "$T/err"; then ok "$name"
    else bad "$name (exit $rc, stderr: $(head -c 300 "$T/err"))"; fi
}

if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "SKIPPED: Fashion-MNIST not found in $DATA (apt-get install dataset-fashion-mnist)"
    echo "0 passed, 0 failed"
    exit 0
fi
M=models/lenet_bn.net
Q="--quiet --max-steps 4 --batch 64"

# bit-exact resume: two epochs straight == one, resume, one
$NETC train $M $Q --epochs 2 --checkpoint "$T/a.st" --metrics "$T/a.jsonl" --plot "$T/a.svg" >"$T/a.out" 2>&1 \
    && ok "train two epochs" || bad "train two epochs: $(cat "$T/a.out")"
grep -q "^epoch 2/2: loss [0-9.]*, train acc [0-9.]*, test acc [0-9.]*, [0-9.]* examples/sec" "$T/a.out" \
    && ok "seed's epoch line" || bad "seed's epoch line: $(cat "$T/a.out")"
[ "$(wc -l <"$T/a.jsonl")" -eq 2 ] && grep -q '"test_acc"' "$T/a.jsonl" && ok "metrics JSON lines" || bad "metrics"
grep -q "</svg>" "$T/a.svg" && ok "SVG plot" || bad "SVG plot"
$NETC train $M $Q --epochs 1 --checkpoint "$T/b.st" >/dev/null 2>&1
$NETC train $M $Q --epochs 2 --checkpoint "$T/b.st" --resume >"$T/b.out" 2>&1
cmp -s "$T/a.st" "$T/b.st" && ok "resume is bit-exact" || bad "resume differs: $(cat "$T/b.out")"

# the same with the memory plan's views and recompute (a DenseNet at odd
# channel counts): bit-exact resume, and the same bits as every concat copying
D=models/extra/densenet_odd.net
$NETC train $D $Q --epochs 2 --recompute bn-relu --checkpoint "$T/da.st" >/dev/null 2>&1
$NETC train $D $Q --epochs 1 --recompute bn-relu --checkpoint "$T/db.st" >/dev/null 2>&1
$NETC train $D $Q --epochs 2 --recompute bn-relu --checkpoint "$T/db.st" --resume >"$T/db.out" 2>&1
cmp -s "$T/da.st" "$T/db.st" && ok "resume with views and recompute is bit-exact" || bad "resume with views differs: $(cat "$T/db.out")"
$NETC train $D $Q --epochs 2 --concat copy --checkpoint "$T/dc.st" >/dev/null 2>&1
cmp -s "$T/da.st" "$T/dc.st" && ok "views and recompute: the same checkpoint as copies" || bad "views and copies differ"

# eval of a checkpoint
$NETC eval $M --batch 64 --weights "$T/a.st" >"$T/e.out" 2>&1 && grep -q "test acc" "$T/e.out" \
    && ok "eval" || bad "eval: $(cat "$T/e.out")"

# bad data
expect_fail "missing directory" "$T/nowhere" $NETC train $M $Q --data "$T/nowhere"
mkdir -p "$T/d"
cp "$DATA"/*.gz "$T/d/"
head -c 100000 "$DATA/train-images-idx3-ubyte.gz" >"$T/d/train-images-idx3-ubyte.gz"
expect_fail "truncated gzip" "train-images-idx3-ubyte.gz.*truncated" $NETC train $M $Q --data "$T/d"
cp "$DATA/train-images-idx3-ubyte.gz" "$T/d/"
printf 'not gzip at all' >"$T/d/train-labels-idx1-ubyte.gz"
expect_fail "corrupt gzip" "train-labels-idx1-ubyte.gz" $NETC train $M $Q --data "$T/d"
printf '\x00\x00\x08\x02\x00\x00\x00\x01\x05' | gzip >"$T/d/train-labels-idx1-ubyte.gz"
expect_fail "wrong magic" "train-labels-idx1-ubyte.gz.*magic" $NETC train $M $Q --data "$T/d"
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03' | gzip >"$T/d/train-labels-idx1-ubyte.gz"
expect_fail "counts disagree" "60000" $NETC train $M $Q --data "$T/d"

# checkpoints
printf 'garbage' >"$T/g.st"
expect_fail "unreadable checkpoint" "g.st" $NETC eval $M --weights "$T/g.st"
expect_fail "missing checkpoint" "none.st" $NETC eval $M --weights "$T/none.st"
expect_fail "checkpoint of another network" "checkpoint" $NETC eval models/nin.net --resize 96 --batch 2 --weights "$T/a.st"
expect_fail "resume without checkpoint" "--checkpoint" $NETC train $M $Q --resume

# a NaN loss stops training, names the epoch and step, keeps the checkpoint
cp "$T/a.st" "$T/keep.st"
expect_fail "NaN loss" "loss is \(NaN\|infinite\) at epoch 3, step" \
    $NETC train $M $Q --epochs 3 --resume --checkpoint "$T/a.st" --lr 1e300
cmp -s "$T/a.st" "$T/keep.st" && ok "checkpoint intact after NaN" || bad "checkpoint changed after NaN"

# bad flags
$NETC train $M --bogus >/dev/null 2>"$T/err"; [ $? -eq 2 ] && grep -q "unknown option" "$T/err" && ok "unknown flag" || bad "unknown flag"
$NETC train $M --epochs -3 >/dev/null 2>&1; [ $? -eq 2 ] && ok "bad --epochs rejected" || bad "bad --epochs accepted"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
