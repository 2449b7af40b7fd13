#!/usr/bin/env bash
# tests/gpu/check.sh [OUTDIR] - the checks that need an NVIDIA GPU, in one
# run of under ten minutes: build netc (without LLVM: the GPU path needs
# none), then
#   1. the cross-check against PyTorch (one step of each of the seven
#      networks, train and eval: logits, loss, gradients, updated weights,
#      batch-norm statistics; tests/torch/crosscheck.py) with --target cuda;
#   2. `netc bench --target cuda` beside PyTorch on the same GPU, eager in
#      fp32 and in tf32, and torch.compile for ResNet-18 and DenseNet, at the
#      seed's batch and resolution, as a table with ratios;
#   3. when netc has MPI and mpirun is there: 2 ranks of LeNet-BN with
#      --target cuda, the gradients summed by NCCL (with two GPUs; NCCL
#      refuses two ranks on one, and the job says it sums on the host) and
#      then with NETC_NCCL=0 on the host: both train, and their weights agree;
#   4. `netc compile --target cuda`: the executable (its PTX embedded, no
#      NVRTC) trains LeNet-BN to the checkpoint of `netc train --target
#      cuda`, byte for byte; and --precision tf32 (mma.sync) trains LeNet-BN
#      to ref's tf32 weights (the same operands rounded) within 1e-3.
# Everything it prints also goes to OUTDIR (default $OUT, else
# /tmp/netc-gpu): check.log, bench.jsonl, table.md.
#
# The machine needs the CUDA driver and NVRTC, CMake, a C compiler, and
# Python with PyTorch; flex, bison, m4 and zlib's headers, where it lacks
# them, as Debian packages in .gpu-debs/ (tools/gpu_debs.sh fetches them;
# they are unpacked under /tmp, not installed).
set -u
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/netc-gpu}}
mkdir -p "$out"
exec > >(tee "$out/check.log") 2>&1
PY=${PYTHON:-python3}
t0=$(date +%s)
elapsed() { echo "[$(($(date +%s) - t0)) s]"; }

if ! command -v bison >/dev/null || ! command -v flex >/dev/null; then
    [ -d .gpu-debs ] || { echo "FAIL: no flex/bison here and no .gpu-debs/ (run tools/gpu_debs.sh)"; exit 1; }
    root=/tmp/netc-debs
    for f in .gpu-debs/*.deb; do dpkg -x "$f" "$root"; done
    export PATH=$root/usr/bin:$PATH
    export BISON_PKGDATADIR=$root/usr/share/bison M4=$root/usr/bin/m4
    export CPATH=$root/usr/include${CPATH:+:$CPATH}
    export LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
fi
build=/tmp/netc-gpu-build
cmake -S . -B $build -DNETC_LLVM=OFF -DNETC_TESTS=OFF -DCMAKE_BUILD_TYPE=Release >$out/build.log 2>&1 &&
    cmake --build $build --target netc -j"$(nproc)" >>$out/build.log 2>&1 || { tail -30 $out/build.log; echo "FAIL: build"; exit 1; }
N=$build/netc
"$N" --version
nvidia-smi -L 2>/dev/null || true
echo "$(elapsed) built"

# cmp_weights A.st B.st LIMIT WHAT: the largest difference of two checkpoints'
# tensors, relative to each tensor's largest value, within LIMIT
cmp_weights() {
    "$PY" - "$1" "$2" "$3" "$4" <<'PYEOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: struct.unpack('<%df' % ((v['data_offsets'][1] - v['data_offsets'][0]) // 4),
                             b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]])
            for k, v in h.items() if k != '__metadata__'}
a, b, lim = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
d = max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(max(abs(x) for x in a[k]), 1e-30) for k in a)
print("%s: max relative difference %.3g (limit %g)" % (sys.argv[4], d, lim))
sys.exit(d > lim)
PYEOF
}

rc=0
echo "== 1. cross-check against PyTorch, --target cuda"
timeout 300 "$PY" tests/torch/crosscheck.py --netc "$N" --source-dir . --target cuda || rc=1
echo "$(elapsed) cross-checked"

echo "== 2. netc bench --target cuda beside PyTorch on the GPU"
: >"$out/bench.jsonl"
for m in lenet_bn alexnet vgg11 nin googlenet resnet18 densenet; do
    timeout 90 "$N" bench "models/$m.net" --target cuda --steps 3 --warmup 1 --json >>"$out/bench.jsonl" || {
        echo "netc bench $m failed or timed out"; rc=1; }
    timeout 90 "$N" bench "models/$m.net" --target cuda --precision tf32 --steps 3 --warmup 1 --json \
        >>"$out/bench.jsonl" || { echo "netc bench $m --precision tf32 failed or timed out"; rc=1; }
    b=$(grep '"target":"cuda"' "$out/bench.jsonl" | tail -1 | sed -n 's/.*"batch": *\([0-9]*\).*/\1/p')
    r=$(grep '"target":"cuda"' "$out/bench.jsonl" | tail -1 | sed -n 's/.*"resize": *\([0-9]*\).*/\1/p')
    for mode in "" "--tf32"; do
        timeout 60 "$PY" bench/torch_step.py --models "$m" --device cuda ${b:+--batch $b} ${r:+--resize $r} \
            --steps 5 --warmup 2 $mode >>"$out/bench.jsonl" || echo "torch $m $mode failed"
    done
    case $m in resnet18|densenet)
        timeout 120 "$PY" bench/torch_step.py --models "$m" --device cuda ${b:+--batch $b} ${r:+--resize $r} \
            --steps 5 --warmup 3 --compile >>"$out/bench.jsonl" || echo "torch.compile $m failed" ;;
    esac
    echo "$(elapsed) $m"
done
"$PY" - "$out/bench.jsonl" >"$out/table.md" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    m = r.get("model") or r.get("network", "?")
    m = m.split("/")[-1].replace(".net", "")
    if r.get("framework") == "pytorch":
        key = "compile" if r.get("compiled") else ("tf32" if r.get("tf32") else "fp32")
    else:
        key = "netc_tf32" if r.get("precision") == "tf32" else "netc"
    rows.setdefault(m, {})[key] = r
print("| network | netc fp32 images/s | PyTorch fp32 | netc/PyTorch fp32 | netc tf32 | PyTorch tf32 | netc/PyTorch tf32 "
      "| torch.compile | netc tf32/compile | netc device MiB | PyTorch peak MiB |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for m, r in rows.items():
    g = lambda k: r.get(k, {}).get("images_per_sec")
    n, nt, f, t, c = g("netc"), g("netc_tf32"), g("fp32"), g("tf32"), g("compile")
    ratio = lambda a, b: "%.2fx" % (a / b) if a and b else ""
    fmt = lambda v: "%.1f" % v if v else ""
    mib = lambda v: "%.0f" % (v / 2**20) if v else ""
    nd, fd = r.get("netc", {}).get("device_bytes"), r.get("fp32", {}).get("peak_device_bytes")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (m, fmt(n), fmt(f), ratio(n, f), fmt(nt), fmt(t),
          ratio(nt, t), fmt(c), ratio(nt, c), mib(nd), mib(fd)))
PYEOF
cat "$out/table.md"

echo "== 3. data parallel on the GPU: NCCL against host sums"
if "$N" --version | grep -q "^data parallel: MPI" && command -v mpirun >/dev/null; then
    M2="timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2"
    Q="--target cuda --batch 64 --lr 0.5 --epochs 1 --max-steps 30 --quiet"
    $M2 "$N" train models/lenet_bn.net $Q --checkpoint "$out/nccl.st" >"$out/nccl.log" 2>&1 || rc=1
    tail -3 "$out/nccl.log"
    NETC_NCCL=0 $M2 -x NETC_NCCL "$N" train models/lenet_bn.net $Q --checkpoint "$out/host.st" >"$out/host.log" 2>&1 || rc=1
    tail -3 "$out/host.log"
    cmp_weights "$out/nccl.st" "$out/host.st" 1e-3 "NCCL vs host sums after 30 steps" || rc=1
else
    echo "skipped: this netc has no MPI or there is no mpirun"
fi
echo "== 4. an executable for the GPU (netc compile --target cuda)"
Q="--batch 64 --lr 0.5 --epochs 1 --max-steps 30 --quiet"
if "$N" compile models/lenet_bn.net --target cuda --batch 64 -o "$out/lenet_cuda"; then
    NETC_CACHE_DIR= timeout 120 "$out/lenet_cuda" train --lr 0.5 --epochs 1 --max-steps 30 --quiet --checkpoint "$out/exe.st" || rc=1
    timeout 120 "$N" train models/lenet_bn.net --target cuda $Q --checkpoint "$out/netc.st" || rc=1
    if cmp -s "$out/exe.st" "$out/netc.st"; then echo "executable: the same checkpoint as netc train --target cuda"
    else echo "FAIL: the executable's checkpoint differs from netc train --target cuda's"; rc=1; fi
else
    rc=1
fi
# --precision tf32 on the tensor cores against its oracle, ref with the same
# operands rounded to tf32, after 2 steps at lr 0.1 (more steps, or a larger
# lr, and LeNet-BN's max pools amplify any difference: after 10 steps at lr
# 0.5 even the emulated device and ref are 0.16 apart).  On the emulated
# device (batch 16) the two agree to 2.5e-6, while ref's tf32 and fp32 steps
# are 1.8e-2 apart: the limit 1e-3 tells tf32 done right from fp32 or wrong.
Q="--precision tf32 --batch 64 --lr 0.1 --epochs 1 --max-steps 2 --quiet"
timeout 120 "$N" train models/lenet_bn.net --target cuda $Q --checkpoint "$out/tf32_cuda.st" || rc=1
timeout 180 "$N" train models/lenet_bn.net --target ref $Q --checkpoint "$out/tf32_ref.st" || rc=1
cmp_weights "$out/tf32_cuda.st" "$out/tf32_ref.st" 1e-3 "tf32 on the GPU vs ref's tf32 after 2 steps" || rc=1
echo "$(elapsed) done, status $rc"
exit $rc
