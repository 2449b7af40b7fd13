#!/bin/bash
# cli_cuda.sh NETC SRC BUILD - `netc dump --cuda` prints the generated CUDA
# C: the prelude, one KERNEL per launch for train and eval, each program
# kernel named in a comment; the same source again gives the same text.
set -u
netc=$1 src=$2
fail() { echo "cli_cuda: $*" >&2; exit 1; }
out=$("$netc" dump --cuda "$src/models/lenet_bn.net") || fail "dump --cuda failed"
grep -q '^#define KERNEL extern "C" __global__ void' <<<"$out" || fail "no CUDA prelude"
n=$(grep -c '^KERNEL k[0-9]*_[0-9]*(KARGS)' <<<"$out")
[ "$n" -gt 10 ] || fail "only $n kernels in the train step"
again=$("$netc" dump --cuda "$src/models/lenet_bn.net")
[ "$out" == "$again" ] || fail "two dumps differ"
ev=$("$netc" dump --cuda --mode eval "$src/models/lenet_bn.net") || fail "dump --cuda --mode eval failed"
m=$(grep -c '^KERNEL k' <<<"$ev")
[ "$m" -gt 0 ] && [ "$m" -lt "$n" ] || fail "eval has $m kernels, train $n"
echo "cli_cuda: lenet_bn train $n launches, eval $m"
# the memory plan's strided views, indexed at their image stride where
# they are read and written (none with --concat copy), and recompute's
# batch norms
for opt in "" "--concat copy" "--recompute bn-relu"; do
    v=$("$netc" dump --cuda $opt "$src/models/densenet.net" | grep -c "NETC_AT(.*LL, .*LL)")
    if [ "$opt" == "--concat copy" ]; then [ "$v" -eq 0 ] || fail "dump --cuda $opt: $v strided accesses"
    else [ "$v" -gt 0 ] || fail "dump --cuda $opt: no strided view"; fi
done
"$netc" dump --cuda --recompute bn-relu "$src/models/densenet.net" | grep -q "a4\[c\] + a2\[c\]" ||
    fail "dump --cuda --recompute bn-relu: no recomputed batch norm"
# --target cuda: without a driver, a clear refusal and exit status 1
if ! "$netc" --version | grep -q "CUDA driver (libcuda.so.1) found"; then
    for cmd in train eval bench step; do
        err=$("$netc" $cmd "$src/models/lenet_bn.net" --target cuda --quiet 2>&1 >/dev/null)
        rc=$?
        [ $rc -eq 1 ] || fail "$cmd --target cuda without a driver: exit status $rc"
        grep -q "no CUDA driver (libcuda.so.1) on this machine" <<<"$err" || fail "$cmd --target cuda: $err"
    done
fi
"$netc" --version | grep -q "^targets: .*cuda" || fail "--version does not name cuda"
# --precision: tf32 is the cuda target's (mma.sync in the source); elsewhere refused
"$netc" dump --cuda --precision tf32 "$src/models/lenet_bn.net" | grep -q "netc_mma_tf32(acc" ||
    fail "dump --cuda --precision tf32: no mma"
"$netc" dump --cuda "$src/models/lenet_bn.net" | grep -q "netc_mma_tf32(acc" && fail "fp32 source uses mma"
if "$netc" --version | grep -q "^targets: .*cpu"; then
    err=$("$netc" train "$src/models/lenet_bn.net" --target cpu --precision tf32 --quiet 2>&1 >/dev/null)
    [ $? -eq 1 ] && grep -q "needs --target cuda" <<<"$err" || fail "--precision tf32 on cpu: $err"
fi
"$netc" train "$src/models/lenet_bn.net" --precision fp16 --quiet >/dev/null 2>&1
[ $? -eq 2 ] || fail "--precision fp16 accepted"
# dump --ptx: NVRTC's PTX of the same source, an .entry per KERNEL
if "$netc" --version | grep -q "cuda target: NVRTC found"; then
    ptx=$("$netc" dump --ptx "$src/models/lenet_bn.net") || fail "dump --ptx failed"
    e=$(grep -c '^\.visible \.entry k[0-9]*_[0-9]*(' <<<"$ptx")
    [ "$e" -eq "$n" ] || fail "dump --ptx: $e entries for $n kernels"
fi
echo "cli_cuda: ok"
