#!/usr/bin/env bash
# scale.sh - data-parallel scaling of netc's training step over MPI: images/s
# of 1 and 2 ranks on this machine (1 thread each), the allreduce's share of
# the 2-rank step, and a model of the step at N machines.
#
#   bench/scale.sh                          lenet_bn, resnet18, densenet
#   bench/scale.sh --models resnet18 --steps 3
#
# Per network M, one after the other:
#   1. `netc bench models/M.net --threads 1 --json`: one process, one thread;
#   2. `mpirun -np 2 netc bench models/M.net --threads 1 --json`: two ranks of
#      one thread, each with half of the batch, the gradients summed in
#      buckets started during the backward pass; the allreduce time is the
#      wait after it, on rank 0 (which includes waiting for the slower rank);
#   3. `netc bench models/M.net --threads T --json` (T: all cores), the step
#      of one whole machine, for the model.
# Then a table of 1 and 2 ranks, and the model: N machines, each running
# the T-thread step on its B/N images (compute taken as proportional to the
# batch, which flatters small per-machine batches), plus a ring allreduce of
# the gradient bytes G, 2 (N-1)/N G / bandwidth + 2 (N-1) x latency, at 10
# and 100 Gb/s (latency 20 and 5 us): after the step ("sequential"), or
# overlapped with the backward pass, taken as 2/3 of the compute, all but
# the last 4 MiB bucket ("overlapped").
set -eu
cd "$(dirname "$0")/.."
models="lenet_bn resnet18 densenet"
steps="" netc=./build/netc out=bench/scale.jsonl
while [ $# -gt 0 ]; do
    case $1 in
        --models) models=$(echo "$2" | tr , ' '); shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --netc) netc=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
"$netc" --version | grep -q "^data parallel: MPI" || { echo "scale.sh: $netc was built without MPI" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "scale.sh: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
T=$(nproc)
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to core -np 2"
: >"$out"
for m in $models; do
    s=$steps
    [ -n "$s" ] || { [ "$m" = lenet_bn ] && s=20 || s=2; }
    w=1
    echo "scale.sh: $m: 1 rank, 2 ranks, $T threads" >&2
    "$netc" bench "models/$m.net" --threads 1 --steps "$s" --warmup $w --json | sed "s/^{/{\"run\":\"1x1\",/" >>"$out"
    $MPI "$netc" bench "models/$m.net" --threads 1 --steps "$s" --warmup $w --json | sed "s/^{/{\"run\":\"2x1\",/" >>"$out"
    "$netc" bench "models/$m.net" --threads "$T" --steps "$s" --warmup $w --json | sed "s/^{/{\"run\":\"1xT\",/" >>"$out"
done
python3 - "$out" "$T" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
T = int(sys.argv[2])
by = {}
for r in rows:
    by.setdefault(r["model"], {})[r["run"]] = r
print("| network | batch | 1 rank img/s | 2 ranks img/s | 2 ranks / 1 | allreduce ms/step | allreduce share | gradients MB |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
for m, r in by.items():
    a, b = r["1x1"], r["2x1"]
    name = m.split("/")[-1][:-4]
    print("| %s | %d | %.1f | %.1f | %.2fx | %.1f | %.1f%% | %.1f |" % (
        name, a["batch"], a["images_per_sec"], b["images_per_sec"], b["images_per_sec"] / a["images_per_sec"],
        b["allreduce_ms_per_step"], 100 * b["allreduce_ms_per_step"] / b["ms_per_step"], b["allreduce_bytes"] / 1e6))
print()
print("Model: N machines like this one (%d threads each), global batch B split evenly." % T)
def ring(G, N, bw, lat):
    return 0 if N == 1 else 2 * (N - 1) / N * G / bw + 2 * (N - 1) * lat
for m, r in by.items():
    if "resnet" not in m and "densenet" not in m:
        continue
    c = r["1xT"]
    B, t1, G = c["batch"], c["ms_per_step"] / 1e3, r["2x1"]["allreduce_bytes"]
    name = m.split("/")[-1][:-4]
    print()
    print("%s: batch %d, %.2f s per step on one machine, %.1f MB of gradients" % (name, B, t1, G / 1e6))
    print()
    print("| N | batch per machine | 10 Gb/s img/s | sequential | overlapped | 100 Gb/s img/s | sequential | overlapped |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for N in (1, 2, 4, 8, 16, 32, 64):
        cells = []
        for bw, lat in ((10e9 / 8, 20e-6), (100e9 / 8, 5e-6)):
            tc, ar = t1 / N, ring(G, N, bw, lat)
            seq, ovl = tc + ar, tc + max(ar - 2 / 3 * tc, ring(min(G, 4 << 20), N, bw, lat))
            ideal = N * B / t1
            cells += ["%.0f" % (B / seq), "%.0f%%" % (100 * B / seq / ideal), "%.0f%%" % (100 * B / ovl / ideal)]
        print("| %d | %g | %s |" % (N, B / N, " | ".join(cells)))
EOF
