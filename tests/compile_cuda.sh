#!/usr/bin/env bash
# compile_cuda.sh NETC SOURCE_DIR BINARY_DIR - `netc compile --target cuda`
# makes a standalone executable that embeds the PTX of its programs and
# needs neither LLVM nor NVRTC at run time.  Without a driver it refuses
# with the driver's message; over the fake libcuda.so.1 (tests/fakelibcuda.c:
# host memory, the emulated device, fed the CUDA C whose PTX each loaded
# image must be byte for byte) it trains, never loads NVRTC, and writes the
# same checkpoint, byte for byte, as `netc train --target cuda` over the same
# fake; with --precision tf32 too.  The next batch goes up beside each step
# and the training is the same as one batch at a time.
set -u
NETC=$1
cd "$2"
BUILD=$3
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
if ! $NETC --version | grep -q "cuda target: NVRTC found"; then
    echo "SKIPPED: no NVRTC on this machine (the CUDA toolkit): nothing to compile PTX with"; exit 0
fi
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "SKIPPED: Fashion-MNIST not found in $DATA"; exit 0
fi
if ! cc --version >/dev/null 2>&1; then
    echo "SKIPPED: no C compiler"; exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }

# a small Fashion-MNIST: the first 48 training and 32 test images
mkdir -p "$T/data"
mini() {   # FILE COUNT HEADER_BYTES ITEM_BYTES MAGIC3 [ROWS COLS]
    local f=$1 n=$2 hb=$3 ib=$4
    { printf "\\x00\\x00\\x08\\x$5"; printf "\\x00\\x00\\x00\\x$(printf %02x "$n")";
      [ "$hb" -eq 16 ] && printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
      zcat "$DATA/$f.gz" | tail -c +$((hb + 1)) | head -c $((n * ib)); } | gzip >"$T/data/$f.gz"
}
mini train-images-idx3-ubyte 48 16 784 03
mini train-labels-idx1-ubyte 48 8 1 01
mini t10k-images-idx3-ubyte 32 16 784 03
mini t10k-labels-idx1-ubyte 32 8 1 01

M=models/lenet_bn.net
$NETC compile $M --target cuda --batch 16 -o "$T/lenet" >"$T/c.out" 2>&1
check "netc compile --target cuda" '[ -x "$T/lenet" ] && grep -q "PTX for compute_90 embedded" "$T/c.out"'
check "no LLVM, no NVRTC linked" '! ldd "$T/lenet" | grep -qi "llvm\|nvrtc"'
if ! $NETC --version | grep -q "CUDA driver (libcuda.so.1) found"; then
    "$T/lenet" train --quiet --max-steps 1 --data "$T/data" >/dev/null 2>"$T/n.err"
    check "no driver: refused with exit status 1" '[ $? -eq 1 ] && grep -q "no CUDA driver (libcuda.so.1) on this machine" "$T/n.err"'
fi

# the fake driver's modules: each program's CUDA C and PTX
mkdir -p "$T/mods"
for m in train eval; do
    $NETC dump --cuda --mode $m $M --batch 16 >"$T/mods/$m.cu"
    $NETC dump --ptx --mode $m $M --batch 16 >"$T/mods/$m.ptx"
done
# no module cache (NETC_CACHE_DIR=): what is not embedded must come from NVRTC
fake() { NETC_CACHE_DIR= FAKECUDA_MODULES="$T/mods" FAKECUDA_LOG="$T/$1.log" LD_LIBRARY_PATH="$BUILD/tests/fakelib" "${@:2}"; }
fake exe "$T/lenet" train --quiet --epochs 2 --max-steps 2 --data "$T/data" --checkpoint "$T/exe.st" >"$T/e.out" 2>&1
check "the executable trains on the (fake) GPU" '[ $? -eq 0 ] && grep -q "^epoch 2/2:" "$T/e.out"'
check "it loads its train and eval PTX, NVRTC never" 'grep -q "^load train nvrtc=0$" "$T/exe.log" &&
    grep -q "^load eval nvrtc=0$" "$T/exe.log" && ! grep "^load" "$T/exe.log" | grep -qv "nvrtc=0$"'
fake netc $NETC train $M --target cuda --batch 16 --quiet --epochs 2 --max-steps 2 --data "$T/data" \
    --checkpoint "$T/netc.st" >"$T/n.out" 2>&1
check "netc train --target cuda runs over the fake driver" '[ $? -eq 0 ] && grep -q "^load train" "$T/netc.log"'
check "same checkpoint as netc train --target cuda" 'cmp -s "$T/exe.st" "$T/netc.st"'
check "same losses" 'diff <(grep "^epoch" "$T/e.out" | sed "s/,[^,]*examples.*//") \
    <(grep "^epoch" "$T/n.out" | sed "s/,[^,]*examples.*//")'
# the next batch goes up beside each step (a step per epoch here has a next
# one): issued while the step's launches were pending, and the same training
# as one batch at a time (NETC_CUDA_OVERLAP=0)
check "the next batch uploaded beside the step" '[ "$(grep -c "^htod_async beside=1$" "$T/netc.log")" -eq 4 ] &&
    ! grep -q "^htod_async beside=0" "$T/netc.log" && [ "$(grep -c "^htod_async beside=1$" "$T/exe.log")" -eq 4 ]'
NETC_CUDA_OVERLAP=0 fake serial $NETC train $M --target cuda --batch 16 --quiet --epochs 2 --max-steps 2 \
    --data "$T/data" --checkpoint "$T/serial.st" >/dev/null 2>&1
check "overlapped: the checkpoint of one batch at a time" '[ -s "$T/serial.st" ] && cmp -s "$T/serial.st" "$T/netc.st" &&
    ! grep -q "^htod_async" "$T/serial.log"'
fake eval "$T/lenet" eval --weights "$T/exe.st" --data "$T/data" >"$T/v.out" 2>&1
check "eval of its checkpoint" '[ $? -eq 0 ] && grep -q "test acc" "$T/v.out"'
# --precision tf32 is fixed at compile time: the executable loads the tf32
# modules (mma.sync) and trains as netc train --precision tf32 does
mkdir -p "$T/mods32"
mv "$T/mods"/* "$T/mods32/"
for m in train eval; do
    $NETC dump --cuda --precision tf32 --mode $m $M --batch 16 >"$T/mods/$m.cu"
    $NETC dump --ptx --precision tf32 --mode $m $M --batch 16 >"$T/mods/$m.ptx"
done
$NETC compile $M --target cuda --precision tf32 --batch 16 -o "$T/lenet_tf32" >/dev/null 2>&1
fake tf32 "$T/lenet_tf32" train --quiet --epochs 2 --max-steps 2 --data "$T/data" --checkpoint "$T/exe32.st" >/dev/null 2>&1
check "a tf32 executable loads its tf32 modules and trains" '[ $? -eq 0 ] && grep -q "^load train nvrtc=0$" "$T/tf32.log"'
fake tf32n $NETC train $M --target cuda --precision tf32 --batch 16 --quiet --epochs 2 --max-steps 2 --data "$T/data" \
    --checkpoint "$T/netc32.st" >/dev/null 2>&1
check "its checkpoint is netc train --precision tf32's" 'cmp -s "$T/exe32.st" "$T/netc32.st" && ! cmp -s "$T/exe32.st" "$T/exe.st"'
$NETC compile $M --precision tf32 -o "$T/x" >/dev/null 2>"$T/p.err"
check "--precision tf32 without --target cuda refused" '[ $? -eq 1 ] && grep -q "needs --target cuda" "$T/p.err"'
rm -rf "$T/mods" && mv "$T/mods32" "$T/mods"
# PTX that is not the programs' is refused by the driver, reported, exit 1
: >"$T/mods/train.ptx"
fake bad "$T/lenet" train --quiet --max-steps 1 --data "$T/data" >/dev/null 2>"$T/b.err"
check "a module the driver refuses: exit 1 with its error" '[ $? -eq 1 ] && grep -q "cuModuleLoadDataEx failed" "$T/b.err"'
$NETC compile $M --target cuda --ranks 2 -o "$T/r" >/dev/null 2>"$T/r.err"
check "--ranks with --target cuda refused" '[ $? -eq 1 ] && grep -q "not in this version" "$T/r.err"'
echo "compile_cuda: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
