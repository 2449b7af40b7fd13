#!/usr/bin/env bash
# run.sh - netc against PyTorch on this CPU: training-step throughput of the
# seven seed networks, side by side in one run, with the machine's peak FMA
# rate as the yardstick.
#
#   bench/run.sh                      all seven networks at the seed's batch/resize
#   bench/run.sh --quick              batch 16, 2 steps: a fast sanity run
#   bench/run.sh --models lenet_bn,resnet18 --threads 1 --steps 5
#
# What it does, in order, never running two timed things at once:
#   1. builds bench/peak_fma.c with cc (-march=native: the widest FMA the
#      CPU has) and measures the peak single-precision FMA rate on THREADS,
#      and bench/mem_bw.c, the memory bandwidth THREADS threads get;
#   2. per network M: `netc bench models/M.net --target T --threads THREADS
#      --steps S --warmup W --json`, then the same with --compare-fuse (the
#      step fused with every pattern against --fuse none, in turns, in one
#      process), then bench/torch_step.py on the same network with the batch
#      and resize that netc reported (so both sides always run the same
#      step) and torch.set_num_threads(THREADS);
#   3. prints a markdown table (netc and PyTorch images/s and their ratio,
#      netc GFLOP/s and its share of peak FMA, compile time, ms/step, and
#      netc's fused/unfused images/s ratio, the median over --rounds, with
#      both kernel counts) and
#      writes every raw JSON line (peak, netc, netc fused/unfused, PyTorch)
#      to the results file.
#
# Options:
#   --models a,b     networks of models/ (default: all seven)
#   --threads N      threads for netc, PyTorch and peak_fma (default: nproc)
#   --steps N        timed steps per network (default: 20 for lenet_bn, 2 for
#                    googlenet/resnet18/densenet, 1 for alexnet/vgg11/nin)
#   --warmup N       untimed steps first (default 1)
#   --rounds N       time each network N times, netc and PyTorch alternately,
#                    and keep each side's best run (default 1): on a shared
#                    machine whose speed drifts, the best of a few is the
#                    steadier figure; the table also gives the median of the
#                    rounds' own ratios (round i's netc run over round i's
#                    PyTorch run, timed one after the other), which one
#                    lucky run of either side cannot move
#   --batch N        override the seed's batch size (both sides)
#   --resize N       override the seed's image side (both sides)
#   --quick          --batch 16 --steps 2 unless given otherwise
#   --target T       netc backend, cpu or ref (default cpu)
#   --netc PATH      the netc binary (default ./build/netc)
#   --out PATH       raw JSON lines (default bench/results.jsonl; overwritten)
#   --python PATH    Python with PyTorch (default: $PYTHON, else Debian's
#                    /usr/bin/python3 when it has torch, else python3)
#   --no-torch       skip PyTorch (the table then has netc's columns only)
#   --no-compare-fuse  skip the fused/unfused run (its columns then show -)
# Relative paths are taken from the directory run.sh is started in; models
# are read from the repository's models/.  Exit status: 0 when every netc and
# PyTorch run succeeded, 1 otherwise (the table marks the failures).
set -u -o pipefail

here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$here/$1" ;; esac; }
usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 2; }

ALL=alexnet,vgg11,nin,googlenet,lenet_bn,resnet18,densenet
models=$ALL threads=$(nproc 2>/dev/null || echo 1) steps="" warmup=1 rounds=1 batch="" resize="" quick=0
target=cpu netc="$root/build/netc" out="$root/bench/results.jsonl" py="${PYTHON:-}" torch=1 cfuse=1

while [ $# -gt 0 ]; do
    opt=$1 val=""
    case $opt in
        --*=*) val=${opt#*=} opt=${opt%%=*} ;;
        --models | --threads | --steps | --warmup | --rounds | --batch | --resize | --target | --netc | --out | --python)
            [ $# -ge 2 ] || die "$opt needs a value"
            val=$2
            shift ;;
    esac
    case $opt in
        --models) models=$val ;;
        --threads) threads=$val ;;
        --steps) steps=$val ;;
        --warmup) warmup=$val ;;
        --rounds) rounds=$val ;;
        --batch) batch=$val ;;
        --resize) resize=$val ;;
        --target) target=$val ;;
        --netc) netc=$(abspath "$val") ;;
        --out) out=$(abspath "$val") ;;
        --python) py=$val ;;
        --quick) quick=1 ;;
        --no-torch) torch=0 ;;
        --no-compare-fuse) cfuse=0 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $opt (bench/run.sh --help)" ;;
    esac
    shift
done

isint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
for v in threads warmup; do isint "${!v}" || die "--$v wants a whole number, not '${!v}'"; done
for v in steps rounds batch resize; do [ -z "${!v}" ] || { isint "${!v}" && [ "${!v}" -gt 0 ]; } || die "--$v wants a positive number, not '${!v}'"; done
[ "$threads" -gt 0 ] || die "--threads must be at least 1"
case $target in cpu | ref) ;; *) die "--target is cpu or ref, not '$target'" ;; esac
if [ $quick = 1 ]; then
    batch=${batch:-16}
    steps=${steps:-2}
fi

cd "$root"
[ -x "$netc" ] || die "no netc at $netc (build it: cmake -S . -B build && cmake --build build -j2, or pass --netc PATH)"
IFS=, read -r -a list <<<"$models"
[ ${#list[@]} -gt 0 ] || die "--models is empty"
for m in "${list[@]}"; do [ -f "models/$m.net" ] || die "no network models/$m.net (known: $ALL)"; done

# Python with PyTorch; it also renders the table, so some python3 is needed.
if [ -z "$py" ]; then
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then py=/usr/bin/python3; else py=python3; fi
fi
command -v "$py" >/dev/null || die "no Python ($py); pass --python PATH"
if [ $torch = 1 ] && ! "$py" -c 'import torch' 2>/dev/null; then
    die "$py cannot import torch (Debian: apt-get install python3-torch, or tools/setup.sh; --python PATH; --no-torch to skip)"
fi

default_steps() {
    case $1 in
        lenet_bn) echo 20 ;;
        googlenet | resnet18 | densenet) echo 2 ;;
        *) echo 1 ;;
    esac
}
field() { sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" <<<"$1"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Other processes on the CPUs make every number here low, and PyTorch's
# OpenMP threads collapse when a core is taken: sample /proc/stat for half
# a second and warn when the CPUs are already busy.
busy_pct() {
    [ -r /proc/stat ] || { echo -1; return; }
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 0.5
    read -r -a b < <(grep '^cpu ' /proc/stat)
    local tot=0 idle i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    [ $tot -gt 0 ] && echo $((100 * (tot - idle) / tot)) || echo 0
}
busy=$(busy_pct)
if [ "$busy" -gt 10 ]; then
    echo "run.sh: warning: the CPUs are already ${busy}% busy with other processes; timings will be low and noisy" >&2
fi

# 1. peak FMA rate
cc=${CC:-cc}
log="$tmp/cc.log"
if ! "$cc" -O2 -march=native -pthread bench/peak_fma.c -o "$tmp/peak_fma" 2>"$log" &&
    ! "$cc" -O2 -mavx2 -mfma -pthread bench/peak_fma.c -o "$tmp/peak_fma" 2>>"$log" &&
    ! "$cc" -O2 -pthread bench/peak_fma.c -o "$tmp/peak_fma" 2>>"$log"; then
    cat "$log" >&2
    die "cannot build bench/peak_fma.c with $cc"
fi
echo "measuring peak FMA on $threads thread(s)..." >&2
peak_line=$("$tmp/peak_fma" --json "$threads") || die "peak_fma failed"
peak=$(field "$peak_line" peak_fma_gflop_per_sec)
echo "  $peak_line" >&2
mkdir -p "$(dirname "$out")" || die "cannot create the directory of $out"
printf '%s\n' "$peak_line" >"$out" || die "cannot write $out"
# and the memory bandwidth the same threads get (the other ceiling)
if "$cc" -O2 -pthread bench/mem_bw.c -o "$tmp/mem_bw" 2>>"$log"; then
    echo "measuring memory bandwidth on $threads thread(s)..." >&2
    if bw_line=$("$tmp/mem_bw" --json "$threads"); then
        echo "  $bw_line" >&2
        printf '%s\n' "$bw_line" >>"$out"
    fi
fi

# 2. netc, then PyTorch, per network
fail=0 noisy=""
for m in "${list[@]}"; do
  s=${steps:-$(default_steps "$m")}
  for ((round = 1; round <= rounds; round++)); do
    [ "$rounds" -gt 1 ] && echo "$m: round $round of $rounds" >&2
    b0=$(busy_pct)
    [ "$b0" -gt 10 ] && noisy+="$m," && echo "  warning: the CPUs are ${b0}% busy with other processes" >&2
    args=(bench "models/$m.net" --target "$target" --threads "$threads" --steps "$s" --warmup "$warmup" --json)
    [ -n "$batch" ] && args+=(--batch "$batch")
    [ -n "$resize" ] && args+=(--resize "$resize")
    echo "$m: netc ${args[*]}" >&2
    b=${batch:-0} r=${resize:-0}
    if line=$("$netc" "${args[@]}" | grep '^{' | tail -n 1) && [ -n "$line" ]; then
        printf '%s\n' "$line" >>"$out"
        b=$(field "$line" batch) r=$(field "$line" resize)
        echo "  netc: $(field "$line" images_per_sec) images/s, batch $b, resize $r, compile $(field "$line" compile_sec) s" >&2
    else
        echo "  netc failed on $m" >&2
        fail=1
    fi
    if [ $cfuse = 1 ]; then
        b0=$(busy_pct)
        [ "$b0" -gt 10 ] && noisy+="$m," && echo "  warning: the CPUs are ${b0}% busy with other processes" >&2
        echo "$m: netc ${args[*]} --compare-fuse" >&2
        if line=$("$netc" "${args[@]}" --compare-fuse | grep '^{' | tail -n 1) && [ -n "$line" ]; then
            printf '%s\n' "$line" >>"$out"
            echo "  netc fused/unfused: $(field "$line" fuse_ratio)x, kernels $(field "$line" fused_kernels)" \
                "against $(field "$line" unfused_kernels)" >&2
        else
            echo "  netc --compare-fuse failed on $m" >&2
            fail=1
        fi
    fi
    [ $torch = 1 ] || continue
    b0=$(busy_pct)
    [ "$b0" -gt 10 ] && noisy+="$m," && echo "  warning: the CPUs are ${b0}% busy with other processes" >&2
    targs=(bench/torch_step.py --models "$m" --threads "$threads" --steps "$s" --warmup "$warmup" --batch "$b" --resize "$r")
    echo "$m: $py ${targs[*]}" >&2
    if line=$("$py" "${targs[@]}" | grep '^{' | tail -n 1) && [ -n "$line" ]; then
        printf '%s\n' "$line" >>"$out"
        echo "  pytorch: $(field "$line" images_per_sec) images/s" >&2
    else
        echo "  pytorch failed on $m" >&2
        fail=1
    fi
  done
done

# 3. the table
"$py" - "$out" "$models" "$target" "$threads" "$torch" "$busy" "$noisy" "$cfuse" <<'EOF' || fail=1
import json, os, sys

path, models, target, threads = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
ran_torch, busy, noisy = sys.argv[5] == "1", int(sys.argv[6]), set(sys.argv[7].split(","))
ran_fuse = sys.argv[8] == "1"
peak, isa, netc, torch, membw, pending, ratios, fuse = None, "", {}, {}, None, {}, {}, {}
for line in open(path):
    line = line.strip()
    if not line:
        continue
    j = json.loads(line)
    if "peak_fma_gflop_per_sec" in j:
        peak, isa = j["peak_fma_gflop_per_sec"], j.get("isa", "")
    elif "mem_gb_per_sec" in j:
        membw = j["mem_gb_per_sec"]
    elif "fuse_ratio" in j:
        # --compare-fuse: one line a round, fused and unfused timed in turns
        fuse.setdefault(os.path.splitext(os.path.basename(j["model"]))[0], []).append(j)
    else:
        # several rounds: each side's fastest run; and a round's ratio, its
        # netc run over the PyTorch run that follows it (a round where
        # either failed has none)
        pt = j.get("framework") == "pytorch"
        side, key = (torch, j["model"]) if pt else (netc, os.path.splitext(os.path.basename(j["model"]))[0])
        if key not in side or j["images_per_sec"] > side[key]["images_per_sec"]:
            side[key] = j
        if not pt:
            pending[key] = j["images_per_sec"]
        elif key in pending and j["images_per_sec"] > 0:
            ratios.setdefault(key, []).append(pending.pop(key) / j["images_per_sec"])


def num(x, fmt):
    return "–" if x is None else format(x, fmt)


tv = next((t.get("torch") for t in torch.values()), None)
print("netc (target %s) against PyTorch %s on %s thread(s); peak FMA %s GFLOP/s (%s); memory %s GB/s\n"
      % (target, tv or "(not run)", threads, num(peak, ".1f"), isa, num(membw, ".1f")))
if busy > 10:
    print("**warning**: the CPUs were %d%% busy with other processes before the run; "
          "these numbers are low and noisy\n" % busy)
print("| network | batch | resize | netc img/s | PyTorch img/s | netc/PyTorch | round ratios, median "
      "| netc GFLOP/s | % of peak FMA | netc compile s | netc ms/step | fused/unfused | kernels fused/unfused |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")


def median(r):
    r = sorted(r)
    if not r:
        return None
    h = len(r) // 2
    return r[h] if len(r) % 2 else (r[h - 1] + r[h]) / 2


def round_median(m):
    # each round's two runs are timed one after the other: drift of the
    # machine's speed between rounds cancels
    return median(ratios.get(m, []))


disagree = []
for m in models:
    n, t = netc.get(m), torch.get(m)
    ref = n or t or {}
    ratio = n["images_per_sec"] / t["images_per_sec"] if n and t and t["images_per_sec"] > 0 else None
    share = 100 * n["gflop_per_sec"] / peak if n and peak else None
    rm = round_median(m)
    # fused over unfused images/s: the median of the rounds' ratios (each
    # round times both in turns in one process)
    fz = fuse.get(m, [])
    fr = median([f["fuse_ratio"] for f in fz])
    fk = "%d/%d" % (fz[0]["fused_kernels"], fz[0]["unfused_kernels"]) if fz else "–"
    print("| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        m, " (busy)" if m in noisy else "", ref.get("batch", "–"), ref.get("resize", "–"),
        num(n and n["images_per_sec"], ".1f") if n else "failed",
        num(t and t["images_per_sec"], ".1f") if t else ("failed" if ran_torch else "–"),
        num(ratio, ".2f") + ("x" if ratio is not None else ""),
        num(rm, ".2f") + ("x" if rm is not None else ""),
        num(n and n["gflop_per_sec"], ".1f") if n else "–",
        num(share, ".0f") + ("%" if share is not None else ""),
        num(n and n["compile_sec"], ".2f") if n else "–",
        num(n and n["ms_per_step"], ".1f") if n else "–",
        num(fr, ".2f") + "x" if fr is not None else ("failed" if ran_fuse else "–"), fk))
    if any(not f.get("losses_agree", True) for f in fz):
        disagree.append(m)
if disagree:
    print("\n**warning**: the fused and unfused steps' first losses differ on %s (see the raw JSON lines)"
          % ", ".join(disagree))
if noisy - {""}:
    print("\n(busy): other processes were using the CPUs when this network was timed: its numbers are low and noisy")
print("\nraw JSON lines: %s" % path)
EOF
exit $fail
