#!/usr/bin/env bash
# memory.sh - netc's memory against PyTorch's on the same training step: per
# seed network, netc's planned arena, what the same values would take
# unplanned, and the peak resident set size of each side's process.
#
#   bench/memory.sh                      all seven networks at the seed's batch/resize
#   bench/memory.sh --quick              batch 16: a fast sanity run
#   bench/memory.sh --models lenet_bn,resnet18 --threads 1
#
# Per network M, one after the other (never two at once), each in a process
# of its own so that its peak resident set size is that run's alone:
#   1. `netc bench models/M.net --threads THREADS --steps S --warmup W
#      --json` (arena_bytes, naive_bytes, peak_rss_bytes);
#   2. bench/torch_step.py on the same network with the batch and resize
#      that netc reported (peak_rss_bytes);
# then prints a markdown table (MiB = 2^20 bytes) of netc's arena, netc's
# unplanned size (every value its own memory), netc's and PyTorch's peak
# resident set sizes and their ratio, and writes the raw JSON lines to the
# results file.  Both peaks are the whole process's: code, libraries,
# weights, gradients, activations, scratch, the random batch.
#
# Options:
#   --models a,b     networks of models/ (default: all seven)
#   --threads N      threads for netc and PyTorch (default: nproc)
#   --steps N        timed steps per network (default 1: a peak, not a speed)
#   --warmup N       untimed steps first (default 1)
#   --batch N        override the seed's batch size (both sides)
#   --resize N       override the seed's image side (both sides)
#   --quick          --batch 16 unless given otherwise
#   --netc PATH      the netc binary (default ./build/netc)
#   --out PATH       raw JSON lines (default bench/memory.jsonl; overwritten)
#   --python PATH    Python with PyTorch (default: $PYTHON, else Debian's
#                    /usr/bin/python3 when it has torch, else python3)
#   --no-torch       skip PyTorch (its columns then show -)
#   --netc-args "A"  more netc options, e.g. "--recompute bn-relu" or
#                    "--concat copy" (split at spaces)
# Relative paths are taken from the directory memory.sh is started in;
# models are read from the repository's models/.  Exit status: 0 when every
# netc and PyTorch run succeeded, 1 otherwise (the table marks the
# failures), 2 on a usage error.
set -u -o pipefail

here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$here/$1" ;; esac; }
usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "memory.sh: $*" >&2; exit 2; }

ALL=alexnet,vgg11,nin,googlenet,lenet_bn,resnet18,densenet
models=$ALL threads=$(nproc 2>/dev/null || echo 1) steps=1 warmup=1 batch="" resize="" quick=0
netc="$root/build/netc" out="$root/bench/memory.jsonl" py="${PYTHON:-}" torch=1 nargs=

while [ $# -gt 0 ]; do
    opt=$1 val=""
    case $opt in
        --*=*) val=${opt#*=} opt=${opt%%=*} ;;
        --models | --threads | --steps | --warmup | --batch | --resize | --netc | --out | --python | --netc-args)
            [ $# -ge 2 ] || die "$opt needs a value"
            val=$2
            shift ;;
    esac
    case $opt in
        --models) models=$val ;;
        --threads) threads=$val ;;
        --steps) steps=$val ;;
        --warmup) warmup=$val ;;
        --batch) batch=$val ;;
        --resize) resize=$val ;;
        --netc) netc=$(abspath "$val") ;;
        --out) out=$(abspath "$val") ;;
        --python) py=$val ;;
        --netc-args) nargs=$val ;;
        --quick) quick=1 ;;
        --no-torch) torch=0 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $opt (bench/memory.sh --help)" ;;
    esac
    shift
done

isint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
isint "$warmup" || die "--warmup wants a whole number, not '$warmup'"
for v in threads steps batch resize; do [ -z "${!v}" ] || { isint "${!v}" && [ "${!v}" -gt 0 ]; } || die "--$v wants a positive number, not '${!v}'"; done
[ $quick = 1 ] && batch=${batch:-16}

cd "$root"
[ -x "$netc" ] || die "no netc at $netc (build it: cmake -S . -B build && cmake --build build -j2, or pass --netc PATH)"
IFS=, read -r -a list <<<"$models"
[ ${#list[@]} -gt 0 ] || die "--models is empty"
for m in "${list[@]}"; do [ -f "models/$m.net" ] || die "no network models/$m.net (known: $ALL)"; done

# Python with PyTorch, as bench/run.sh finds it
if [ $torch = 1 ]; then
    if [ -z "$py" ]; then
        if /usr/bin/python3 -c 'import torch' 2>/dev/null; then py=/usr/bin/python3; else py=python3; fi
    fi
    "$py" -c 'import torch' 2>/dev/null ||
        die "$py cannot import torch (Debian: apt-get install python3-torch, or tools/setup.sh; --python PATH; --no-torch to skip)"
fi

# a number field of a JSON line; a string field
field() { sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" <<<"$1"; }
sfield() { sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" <<<"$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

: >"$out" || die "cannot write $out"
fail=0 rows=() tv="" tgt=""
for m in "${list[@]}"; do
    args=(bench "models/$m.net" --threads "$threads" --steps "$steps" --warmup "$warmup" --json)
    [ -n "$batch" ] && args+=(--batch "$batch")
    [ -n "$resize" ] && args+=(--resize "$resize")
    [ -n "$nargs" ] && { read -r -a extra <<<"$nargs"; args+=("${extra[@]}"); }
    echo "$m: netc ${args[*]}" >&2
    b=${batch:-} r=${resize:-} arena=failed naive=failed nrss=failed trss=- ratio=-
    if line=$("$netc" "${args[@]}" | grep '^{' | tail -n 1) && [ -n "$line" ]; then
        printf '%s\n' "$line" >>"$out"
        b=$(field "$line" batch) r=$(field "$line" resize) tgt=$(sfield "$line" target)
        arena=$(field "$line" arena_bytes) naive=$(field "$line" naive_bytes) nrss=$(field "$line" peak_rss_bytes)
        echo "  netc: arena $(mib "$arena") MiB, peak RSS $(mib "$nrss") MiB, batch $b, resize $r" >&2
    else
        echo "  netc failed on $m" >&2
        fail=1
    fi
    if [ $torch = 1 ]; then
        # the batch and resize netc ran; the seed's (torch_step.py's defaults)
        # when netc failed and none was given
        targs=(bench/torch_step.py --models "$m" --threads "$threads" --steps "$steps" --warmup "$warmup"
            --batch "${b:-0}" --resize "${r:-0}")
        echo "$m: $py ${targs[*]}" >&2
        trss=failed
        if line=$("$py" "${targs[@]}" | grep '^{' | tail -n 1) && [ -n "$line" ]; then
            printf '%s\n' "$line" >>"$out"
            trss=$(field "$line" peak_rss_bytes) tv=$(sfield "$line" torch)
            b=${b:-$(field "$line" batch)} r=${r:-$(field "$line" resize)}
            echo "  pytorch: peak RSS $(mib "$trss") MiB" >&2
        else
            echo "  pytorch failed on $m" >&2
            fail=1
        fi
    fi
    isint "$nrss" && isint "$trss" && [ "$trss" -gt 0 ] && ratio=$(awk -v a="$nrss" -v t="$trss" 'BEGIN { printf "%.2fx", a / t }')
    for v in arena naive nrss trss; do isint "${!v}" && printf -v "$v" '%s' "$(mib "${!v}")"; done
    rows+=("| $m | ${b:--} | ${r:--} | $arena | $naive | $nrss | $trss | $ratio |")
done

echo "netc (target ${tgt:-?}) against PyTorch ${tv:-(not run)} on $threads thread(s), $steps timed step(s) after $warmup warm-up; MiB = 2^20 bytes"
echo
echo "| network | batch | resize | netc arena MiB | netc unplanned MiB | netc peak RSS MiB | PyTorch peak RSS MiB | netc/PyTorch RSS |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${rows[@]}"
echo
echo "raw JSON lines: $out"
exit $fail
