#!/usr/bin/env bash
# compile.sh NETC SOURCE_DIR BINARY_DIR - `netc compile` makes a standalone
# executable that needs no LLVM at run time and trains to the same weights,
# byte for byte, as `netc train --target cpu` (the JIT) for the same steps;
# its checkpoints are read back by `netc eval` and its `predict` works.
set -u
NETC=$1
cd "$2"
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
if ! $NETC --version | grep -q "targets:.*cpu"; then
    echo "SKIPPED: this netc has no cpu target (built without LLVM)"; exit 0
fi
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "SKIPPED: Fashion-MNIST not found in $DATA"; exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }

$NETC compile models/lenet_bn.net --batch 32 -o "$T/lenet" >"$T/c.out" 2>&1
check "netc compile" '[ -x "$T/lenet" ]'
check "no LLVM at run time" '! ldd "$T/lenet" | grep -qi llvm'
"$T/lenet" train --quiet --epochs 1 --max-steps 3 --checkpoint "$T/aot.st" >"$T/a.out" 2>&1
check "executable trains" 'grep -q "^epoch 1/1:" "$T/a.out"'
$NETC train models/lenet_bn.net --target cpu --batch 32 --quiet --epochs 1 --max-steps 3 --checkpoint "$T/jit.st" >"$T/j.out" 2>&1
check "same weights as the JIT" 'cmp -s "$T/aot.st" "$T/jit.st"'
check "netc eval reads its checkpoint" '$NETC eval models/lenet_bn.net --batch 32 --weights "$T/aot.st" | grep -q "test acc"'
"$T/lenet" predict --weights "$T/aot.st" --images "$DATA/t10k-images-idx3-ubyte.gz" --limit 2 >"$T/p.out" 2>&1
check "predict" '[ "$(grep -c "class [0-9]" "$T/p.out")" -eq 2 ]'
"$T/lenet" train --batch 64 >/dev/null 2>&1
check "fixed batch is refused" '[ $? -eq 2 ]'
"$T/lenet" eval --weights "$T/none.st" >/dev/null 2>"$T/e.err"
check "missing checkpoint reported" 'grep -q "none.st" "$T/e.err"'
"$T/lenet" train --help >"$T/h.out" 2>&1
check "train --help prints the usage" '[ $? -eq 0 ] && grep -q "^usage:" "$T/h.out"'
# NETC_CPU_PROFILE labels the kernels computed by Winograd transforms (3x3
# convs with 8+ channels: all three products; wide 5x5 ones: the two
# gradients; a first conv of one channel and 1x1 convs: none)
printf '%s\n' 'net {' '  x = x |> conv(16, 3, pad = 1) |> conv(16, 3, pad = 1) |> conv(64, 1) |> conv(64, 5, pad = 2)' \
    '  return x |> global_avgpool |> flatten |> linear(10)' '}' >"$T/w.net"
NETC_CPU_PROFILE=1 NETC_CPU_PROFILE_ALL=1 $NETC bench "$T/w.net" --batch 2 --resize 12 --steps 1 >"$T/w.out" 2>&1
# (12x12 outputs: the 3x3 conv's forward product by F(2x2, 3x3), its
# gradients' by F(4x4, 3x3); 9x9: the gradients' by F(3x3, 3x3))
check "profile names the Winograd kernels" '[ "$(grep -c "winograd F(2x2, 3x3)" "$T/w.out")" -eq 1 ] &&
    [ "$(grep -c "winograd F(4x4, 3x3)" "$T/w.out")" -eq 2 ] &&
    [ "$(grep -c "winograd F(2x2, 5x5)" "$T/w.out")" -eq 2 ] && grep "conv2d\[0,64,12,12\]" "$T/w.out" | grep -vq winograd'
# 5x5 gradients by F(2x2, 5x5) from 16 channels a side (GoogLeNet's 16 ->
# 32 on 12x12), not below (15 -> 40)
printf '%s\n' 'net {' '  x = x |> conv(16, 3, pad = 1) |> conv(32, 5, pad = 2) |> conv(15, 1) |> conv(40, 5, pad = 2)' \
    '  return x |> global_avgpool |> flatten |> linear(10)' '}' >"$T/w5.net"
NETC_CPU_PROFILE=1 NETC_CPU_PROFILE_ALL=1 $NETC bench "$T/w5.net" --batch 2 --resize 12 --steps 1 >"$T/w5.out" 2>&1
check "F(2x2, 5x5) from 16 channels a side" '[ "$(grep "winograd F(2x2, 5x5)" "$T/w5.out" | grep -c "conv2d_bwd_.*conv1 ")" -eq 2 ] &&
    [ "$(grep -c "winograd F(2x2, 5x5)" "$T/w5.out")" -eq 2 ]'
NETC_CPU_PROFILE=1 NETC_CPU_PROFILE_ALL=1 $NETC bench "$T/w.net" --batch 2 --resize 9 --steps 1 >"$T/w9.out" 2>&1
check "profile names F(3x3, 3x3) on 9x9 maps" '[ "$(grep -c "winograd F(2x2, 3x3)" "$T/w9.out")" -eq 1 ] &&
    [ "$(grep -c "winograd F(3x3, 3x3)" "$T/w9.out")" -eq 2 ]'
# and those on 3x3 maps computed per pixel pair: the 3x3 conv's three products, not the 1x1
printf '%s\n' 'net {' '  x = x |> conv(16, 1) |> conv(24, 3, pad = 1)' \
    '  return x |> global_avgpool |> flatten |> linear(10)' '}' >"$T/s.net"
NETC_CPU_PROFILE=1 NETC_CPU_PROFILE_ALL=1 $NETC bench "$T/s.net" --batch 2 --resize 3 --steps 1 >"$T/s.out" 2>&1
check "profile names the pixel-pair kernels" '[ "$(grep -c "pixel-pair GEMMs" "$T/s.out")" -eq 3 ] &&
    grep "conv2d\[0,16,3,3\]" "$T/s.out" | grep -vq pixel-pair'
# and a strided first conv computed directly: forward and weight gradient (it has no data gradient)
printf '%s\n' 'net {' '  x = x |> conv(8, 5, stride = 2, pad = 2) |> conv(8, 3, stride = 2)' \
    '  return x |> global_avgpool |> flatten |> linear(10)' '}' >"$T/d.net"
NETC_CPU_PROFILE=1 NETC_CPU_PROFILE_ALL=1 $NETC bench "$T/d.net" --batch 2 --resize 64 --steps 1 >"$T/d.out" 2>&1
check "profile names the direct kernels" '[ "$(grep -c "direct, by taps" "$T/d.out")" -eq 2 ] &&
    grep "conv2d\[0,8,32,32\]" "$T/d.out" | grep -q "direct, by taps" && ! grep "conv2d.*\[0,8,15,15\]" "$T/d.out" | grep -q taps'
# LLVM failures, forced (NETC_CPU_FAULT): each reported with what failed, exit 1
for f in target verify lookup; do
    NETC_CPU_FAULT=$f $NETC train models/lenet_bn.net --target cpu --batch 8 --quiet --epochs 1 --max-steps 1 \
        >/dev/null 2>"$T/f.err"
    rc=$?
    case $f in
        target) want="cannot create a target machine|no LLVM target" ;;
        verify) want="does not verify" ;;
        lookup) want="looking up .* in the JIT" ;;
    esac
    check "LLVM fault $f: exit 1 and a message" '[ $rc -eq 1 ] && grep -Eq "$want" "$T/f.err"'
    sed 's/^/    /' "$T/f.err" | head -3
done
# --cpu: an executable for any AVX2 machine, same code as the JIT at that CPU
# (same weights byte for byte); bad specs and, on a host without AVX-512,
# 16-wide code refused with a message before any work
$NETC compile models/lenet_bn.net --batch 32 --cpu x86-64-v3 -o "$T/lenet3" >"$T/c3.out" 2>&1
"$T/lenet3" train --quiet --epochs 1 --max-steps 3 --checkpoint "$T/aot3.st" >"$T/a3.out" 2>&1
$NETC train models/lenet_bn.net --cpu x86-64-v3 --batch 32 --quiet --epochs 1 --max-steps 3 --checkpoint "$T/jit3.st" \
    >"$T/j3.out" 2>&1
check "--cpu x86-64-v3: executable and JIT agree" '[ -s "$T/aot3.st" ] && cmp -s "$T/aot3.st" "$T/jit3.st"'
check "the executable checks its CPU first" 'grep -aq "compiled by netc for x86-64-v3 (AVX2, FMA)" "$T/lenet3"'
for spec in nosuch native,avx2 "native,+nosuchfeature"; do
    $NETC bench models/lenet_bn.net --cpu "$spec" --steps 1 >/dev/null 2>"$T/cpu.err"
    check "--cpu $spec: exit 1 and a message" '[ $? -eq 1 ] && grep -q -- "--cpu" "$T/cpu.err"'
done
if $NETC --version | grep -q "16-wide"; then
    NETC_CPU=native,-avx512f $NETC --version >"$T/v.out" 2>&1
    check "NETC_CPU=native,-avx512f gives 8-wide code" 'grep -q "8-wide" "$T/v.out"'
else
    $NETC bench models/lenet_bn.net --cpu x86-64-v4 --steps 1 >/dev/null 2>"$T/cpu.err"
    check "--cpu x86-64-v4 refused on a host without AVX-512" '[ $? -eq 1 ] && grep -q "AVX-512" "$T/cpu.err"'
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
