#!/usr/bin/env bash
# cli_hostile.sh NETC SOURCE_DIR BINARY_DIR - hostile inputs end to end: FIFOs
# in place of files, checkpoints whose metadata lies or whose tensors hold
# NaN, IDX headers that lie about their sizes, a batch larger than the data,
# checkpoint paths that cannot be written or are in use, a full disk under
# `netc compile`.  Each must give a message naming the file (and the field),
# exit status 1, no hang, and leave the last good checkpoint as it was.
set -u
NETC=$1
cd "$2"
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d)
MNT=""
cleanup() {
    [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
# expect_fail NAME PATTERN CMD... : CMD must exit 1 within 60 s and print
# PATTERN (grep -E) on stderr
expect_fail() {
    local name=$1 pat=$2; shift 2
    timeout 60 "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ $rc -eq 1 ] && grep -Eq -- "$pat" "$T/err"; then ok "$name"
    elif [ $rc -eq 124 ]; then bad "$name (hung)"
    else bad "$name (exit $rc, stderr: $(head -c 400 "$T/err"))"; fi
}
M=models/lenet_bn.net
Q="--quiet --max-steps 4 --batch 64"

# perl: rewrite a safetensors header (s/// on its text), set one float
cat >"$T/meta.pl" <<'EOF'
my ($f, $code) = @ARGV;
open my $h, '<:raw', $f or die; local $/; my $b = <$h>; close $h;
my $n = unpack('Q<', substr($b, 0, 8));
$_ = substr($b, 8, $n); my $data = substr($b, 8 + $n);
s/ +$//; eval $code; die $@ if $@;
$_ .= ' ' x ((8 - length($_) % 8) % 8);
open $h, '>:raw', $f or die; print $h pack('Q<', length($_)), $_, $data; close $h;
EOF
cat >"$T/setf.pl" <<'EOF'
my ($f, $t, $i, $hex) = @ARGV;
open my $h, '+<:raw', $f or die; local $/; my $b = <$h>;
my $n = unpack('Q<', substr($b, 0, 8));
substr($b, 8, $n) =~ /"\Q$t\E":\{[^}]*"data_offsets":\[(\d+),/ or die "no tensor $t";
seek $h, 8 + $n + $1 + 4 * $i, 0; print $h pack('V', hex $hex); close $h;
EOF
# idx N H W BYTES FILE : an IDX image header and BYTES zero bytes
idx() { { perl -e 'print pack("N4", 0x803, @ARGV)' "$1" "$2" "$3"; head -c "$4" /dev/zero; } >"$5"; }

# ---- FIFOs: refused at once, not waited on ----
mkfifo "$T/fifo"
expect_fail "check on a FIFO" "fifo. is a pipe with nothing written" $NETC check "$T/fifo"
expect_fail "eval --weights FIFO" "fifo.*FIFO" $NETC eval $M --weights "$T/fifo"
expect_fail "predict --images FIFO" "fifo.*FIFO" $NETC predict $M --images "$T/fifo"
expect_fail "resume from a FIFO" "fifo.*not a regular file" $NETC train $M $Q --resume --checkpoint "$T/fifo"
$NETC check <(cat $M) >/dev/null 2>&1 && ok "check reads a pipe" || bad "check of a pipe"

# ---- predict on IDX headers that lie ----
idx 1 2147483648 28 784 "$T/tall.idx"
expect_fail "IDX height 2^31" "tall.idx: bad image size 2147483648x28" $NETC predict $M --images "$T/tall.idx"
idx 10000000 1024 1024 4096 "$T/huge.idx"
expect_fail "IDX of 10^7 1024x1024 images" "huge.idx: implausible" $NETC predict $M --images "$T/huge.idx"
idx 4097 1024 1024 1048576 "$T/cut.idx"
expect_fail "truncated IDX" "cut.idx: truncated" $NETC predict $M --images "$T/cut.idx"
gzip -c "$T/cut.idx" >"$T/cut.idx.gz"
expect_fail "truncated gzip IDX" "cut.idx.gz: truncated" $NETC predict $M --images "$T/cut.idx.gz"
idx 3 28 28 2352 "$T/three.idx"
$NETC predict $M --images "$T/three.idx" >"$T/out" 2>/dev/null && [ "$(grep -c class "$T/out")" -eq 3 ] \
    && ok "predict on a good IDX" || bad "predict on a good IDX: $(cat "$T/out")"

# ---- netc compile on a full disk: exit 1, the path named, nothing left ----
if ! $NETC --version | grep -q "targets:.*cpu"; then
    echo "skip: netc compile (built without LLVM)"
else
    mkdir "$T/full"
    if mount -t tmpfs -o size=64k tmpfs "$T/full" 2>/dev/null; then
        MNT=$T/full
        expect_fail "compile: object file on a full disk" "full/prog.netc.o.*No space" \
            $NETC compile $M -o "$T/full/prog"
        [ -z "$(ls -A "$T/full")" ] && ok "no partial object file" || bad "left behind: $(ls "$T/full")"
        umount "$T/full"
        if mount -t tmpfs -o size=400k tmpfs "$T/full"; then
            expect_fail "compile: link on a full disk" "linking .*full/prog failed" $NETC compile $M -o "$T/full/prog"
            [ -z "$(ls -A "$T/full")" ] && ok "no partial executable" || bad "left behind: $(ls "$T/full")"
            umount "$T/full"
        fi
        MNT=""
    else
        # no mount here: a file size limit makes writes fail the same way
        (trap '' XFSZ; ulimit -f 16; exec $NETC compile $M -o "$T/full/prog") >/dev/null 2>"$T/err"
        rc=$?
        [ $rc -eq 1 ] && grep -q "full/prog.netc.o" "$T/err" && ok "compile: object file past a size limit" \
            || bad "compile past a size limit (exit $rc: $(head -c 300 "$T/err"))"
        [ -z "$(ls -A "$T/full")" ] && ok "no partial object file" || bad "left behind: $(ls "$T/full")"
    fi
fi

if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "skip: training cases (Fashion-MNIST not found in $DATA)"
    echo "$pass passed, $fail failed"
    [ $fail -eq 0 ]
    exit
fi

# ---- a data file that is a FIFO ----
mkdir "$T/d"
cp "$DATA"/train-labels-idx1-ubyte.gz "$T/d/"
mkfifo "$T/d/train-images-idx3-ubyte.gz"
expect_fail "data file is a FIFO" "train-images-idx3-ubyte.gz: not a regular file" $NETC train $M $Q --data "$T/d"
expect_fail "metrics file is a FIFO" "metrics file .*fifo: not a regular file" $NETC train $M $Q --epochs 1 --metrics "$T/fifo"

# ---- checkpoint metadata ----
$NETC train $M $Q --epochs 1 --checkpoint "$T/c.st" >/dev/null 2>&1 && ok "one epoch" || bad "one epoch"
sum0=$(cksum <"$T/c.st")
# bad_meta NAME FIELD PERL-SUBST
bad_meta() {
    cp "$T/c.st" "$T/m.st"
    perl "$T/meta.pl" "$T/m.st" "$3" || { bad "$1: perl"; return; }
    local before
    before=$(cksum <"$T/m.st")
    expect_fail "$1" "m.st: metadata field \"$2\"" $NETC train $M $Q --epochs 2 --resume --checkpoint "$T/m.st"
    [ "$(cksum <"$T/m.st")" = "$before" ] || bad "$1: checkpoint changed"
}
for v in -1 -100 99999999999 2147483647 abc ""; do
    bad_meta "epoch \"$v\"" epoch "s/\"epoch\":\"1\"/\"epoch\":\"$v\"/"
done
bad_meta "epoch key misspelt" epoch 's/"epoch"/"epohc"/'
for f in step seed; do
    for v in -1 abc 18446744073709551616; do
        bad_meta "$f \"$v\"" $f "s/\"$f\":\"[0-9]*\"/\"$f\":\"$v\"/"
    done
done
# an epoch past --epochs: an error; equal to it: nothing to do, exit 0
cp "$T/c.st" "$T/m.st"
perl "$T/meta.pl" "$T/m.st" 's/"epoch":"1"/"epoch":"5"/'
expect_fail "epoch past --epochs" "m.st is after epoch 5, beyond this run's 2 epochs" \
    $NETC train $M $Q --epochs 2 --resume --checkpoint "$T/m.st"
timeout 60 $NETC train $M --max-steps 4 --batch 64 --epochs 1 --resume --checkpoint "$T/c.st" >"$T/out" 2>"$T/err" \
    && grep -q "already trained 1 of 1 epochs; nothing to do" "$T/err" && ok "finished run: nothing to do" \
    || bad "finished run: $(cat "$T/err")"
[ "$(cksum <"$T/c.st")" = "$sum0" ] && ok "finished checkpoint untouched" || bad "finished checkpoint changed"

# ---- NaN and Inf in a checkpoint ----
for v in 7fc00000:NaN 7f800000:+Inf ff800000:-Inf; do
    cp "$T/c.st" "$T/n.st"
    perl "$T/setf.pl" "$T/n.st" batchnorm0.running_var 3 "${v%%:*}"
    expect_fail "eval with ${v#*:} in running_var" "n.st: tensor \`batchnorm0.running_var\` holds \\${v#*:}" \
        $NETC eval $M --batch 64 --weights "$T/n.st"
done
cp "$T/c.st" "$T/n.st"
perl "$T/setf.pl" "$T/n.st" linear0.weight 0 7fc00000
sum=$(cksum <"$T/n.st")
expect_fail "resume from NaN weights" "n.st: tensor \`linear0.weight\` holds NaN" \
    $NETC train $M $Q --epochs 2 --resume --checkpoint "$T/n.st"
[ "$(cksum <"$T/n.st")" = "$sum" ] && ok "NaN checkpoint not rewritten" || bad "NaN checkpoint rewritten"

# ---- a batch larger than the training set ----
expect_fail "batch larger than the data" "batch 65536 is larger than the training set \(60000" \
    $NETC train $M --quiet --batch 65536 --epochs 1 --checkpoint "$T/big.st"
[ ! -e "$T/big.st" ] && ok "no untrained checkpoint" || bad "untrained checkpoint written"

# ---- checkpoint paths: unwritable, a directory, in use, stale temp files ----
expect_fail "checkpoint in a missing directory" "/nowhere/c.st" $NETC train $M $Q --epochs 1 --checkpoint "$T/nowhere/c.st"
grep -q "^epoch" "$T/out" && bad "trained before finding the checkpoint unwritable" || ok "refused before training"
expect_fail "checkpoint is a directory" "is a directory" $NETC train $M $Q --epochs 1 --checkpoint "$T"
mkdir "$T/ro"
if mount -t tmpfs -o ro,size=64k tmpfs "$T/ro" 2>/dev/null; then
    MNT=$T/ro
    expect_fail "checkpoint on a read-only file system" "ro/c.st.*Read-only" \
        $NETC train $M $Q --epochs 1 --checkpoint "$T/ro/c.st"
    grep -q "^epoch" "$T/out" && bad "trained before finding it read-only" || ok "refused before training (ro)"
    umount "$T/ro"
    MNT=""
fi
cp "$T/c.st" "$T/l.st"
expect_fail "checkpoint in use" "l.st is in use by another training" \
    flock "$T/l.st.lock" $NETC train $M $Q --epochs 2 --resume --checkpoint "$T/l.st"
cmp -s "$T/c.st" "$T/l.st" && ok "locked checkpoint untouched" || bad "locked checkpoint changed"
sh -c 'exit 0' &
dead=$!
wait $dead
touch "$T/s.st.tmp.$dead"
$NETC train $M $Q --epochs 1 --checkpoint "$T/s.st" >/dev/null 2>&1
[ -f "$T/s.st" ] && [ ! -e "$T/s.st.tmp.$dead" ] && ok "stale temp file removed" || bad "stale temp file: $(ls "$T")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
