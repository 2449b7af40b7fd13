#!/usr/bin/env bash
# nollvm.sh NETC SOURCE_DIR BINARY_DIR - netc built without LLVM
# (-DNETC_LLVM=OFF) still builds, says so in --version, trains with the ref
# target, refuses `netc compile` for the cpu with a clear message, and
# (with NVRTC) compiles an executable for the GPU.
set -u
SRC=$2
OUT=$3/nollvm
mkdir -p "$OUT"
cmake -S "$SRC" -B "$OUT" -DNETC_LLVM=OFF -DNETC_TESTS=OFF >"$OUT/build.log" 2>&1 &&
cmake --build "$OUT" --target netc -j2 >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; echo "FAIL: build"; exit 1; }
N=$OUT/netc
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
check "--version names the targets" '$N --version | grep -q "^targets: ref cuda$"'
check "--version says LLVM is missing" '$N --version | grep -q "without LLVM"'
check "check works" '$N check "$SRC/models/resnet18.net" | grep -q "11178378"'
$N compile "$SRC/models/lenet_bn.net" -o "$OUT/x" >/dev/null 2>"$OUT/c.err"
check "compile refused with a message" '[ $? -eq 1 ] && grep -q "without LLVM" "$OUT/c.err"'
if $N --version | grep -q "cuda target: NVRTC found"; then
    check "compile --target cuda works without LLVM" '$N compile "$SRC/models/lenet_bn.net" --target cuda -o "$OUT/xc" |
        grep -q "PTX for compute_90 embedded" && [ -x "$OUT/xc" ]'
    if ! $N --version | grep -q "CUDA driver (libcuda.so.1) found"; then
        "$OUT/xc" train --quiet --max-steps 1 >/dev/null 2>"$OUT/xc.err"
        check "its executable says there is no driver" '[ $? -eq 1 ] && grep -q "no CUDA driver" "$OUT/xc.err"'
    fi
fi
$N train "$SRC/models/lenet_bn.net" --target cpu --quiet >/dev/null 2>"$OUT/t.err"
check "unknown target reported" '[ $? -eq 1 ] && grep -q "unknown target" "$OUT/t.err"'
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    check "train runs on ref" '$N train "$SRC/models/lenet_bn.net" --epochs 1 --max-steps 3 --batch 32 --quiet | grep -q "^epoch 1/1"'
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
