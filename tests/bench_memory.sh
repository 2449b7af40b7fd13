#!/usr/bin/env bash
# bench_memory.sh NETC SOURCE_DIR BINARY_DIR - the memory benchmark:
# - `netc bench --json` reports peak_rss_bytes (and --compare-fuse the
#   process's, once), the text output a "peak RSS N MiB" part;
# - the peak holds the arena: at a larger batch the peak grows by at least
#   most of what the arena grows by (the arena's pages are all touched by a
#   step, not just reserved);
# - bench/memory.sh --quick on lenet_bn and resnet18 prints a row for each
#   whose columns are the JSON lines' arena_bytes, naive_bytes and both
#   sides' peak_rss_bytes in MiB, all positive, with netc's peak at least
#   its arena and the ratio of the two peaks.
# PyTorch's side is checked when Debian's python3-torch is installed; the
# rest runs with --no-torch otherwise.
set -u
NETC=$1
cd "$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
# a number field of a JSON line
field() { sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" <<<"$1"; }
# awk's verdict on an expression of numbers
holds() { awk "BEGIN { exit !($1) }"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# ---- netc bench: peak_rss_bytes ----
M=models/lenet_bn.net
J16=$($NETC bench $M --json --steps 1 --batch 16 | grep "^{")
J1k=$($NETC bench $M --json --steps 1 --batch 1024 | grep "^{")
r16=$(field "$J16" peak_rss_bytes) a16=$(field "$J16" arena_bytes)
r1k=$(field "$J1k" peak_rss_bytes) a1k=$(field "$J1k" arena_bytes)
check "bench --json: peak_rss_bytes present, at least the arena" \
    '[ -n "$r16" ] && [ -n "$r1k" ] && holds "$r16 >= $a16 && $r1k >= $a1k && $a1k > 50 * 1048576"'
check "bench --json: batch 1024's peak over batch 16's grows by most of the arena's growth" \
    'holds "$r1k - $r16 >= 0.9 * ($a1k - $a16)"'
echo "    lenet_bn batch 16 -> 1024: arena +$(mib $((a1k - a16))) MiB, peak RSS +$(mib $((r1k - r16))) MiB"
$NETC bench $M --steps 1 --batch 16 >"$T/t.out"
check "bench text: a peak RSS part" 'grep -q ", peak RSS [0-9.]* MiB$" "$T/t.out"'
JF=$($NETC bench $M --compare-fuse --json --steps 1 --batch 16 | grep "^{")
rf=$(field "$JF" peak_rss_bytes)
check "bench --compare-fuse --json: one peak_rss_bytes, at least both arenas" \
    '[ -n "$rf" ] && holds "$rf >= $(field "$JF" fused_arena_bytes) + $(field "$JF" unfused_arena_bytes)"'
$NETC bench $M --compare-fuse --steps 1 --batch 16 >"$T/f.out"
check "bench --compare-fuse text: the process's peak RSS" \
    'grep -q "^  peak RSS [0-9.]* MiB, the process.s: both programs together$" "$T/f.out"'

# ---- bench/memory.sh ----
torch=1 opt=()
if ! /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then
    echo "PyTorch's side skipped: python3-torch not installed (/usr/bin/python3 -c 'import torch' failed)"
    torch=0 opt=(--no-torch)
fi
bash bench/memory.sh --quick --models lenet_bn,resnet18 --steps 1 "${opt[@]}" --netc "$NETC" --out "$T/m.jsonl" \
    >"$T/m.out" 2>"$T/m.err"
check "memory.sh: exit 0" '[ $? -eq 0 ]' || tail -5 "$T/m.err" | sed 's/^/    /'
sed 's/^/    /' "$T/m.out"
check "memory.sh: the table's heading" \
    'grep -q "^| network | batch | resize | netc arena MiB | netc unplanned MiB | netc peak RSS MiB | PyTorch peak RSS MiB | netc/PyTorch RSS |$" "$T/m.out"'
for m in lenet_bn resnet18; do
    row=$(grep "^| $m |" "$T/m.out")
    IFS='|' read -r _ name b r arena naive nrss trss ratio _ <<<"$row"
    n=$(grep "^{\"model\":\"models/$m.net\"" "$T/m.jsonl") t=$(grep "\"framework\": \"pytorch\", \"model\": \"$m\"" "$T/m.jsonl")
    nr=$(field "$n" peak_rss_bytes) tr=$(field "$t" peak_rss_bytes)
    check "memory.sh $m: a row, batch 16 and the seed's resize" \
        '[ -n "$row" ] && [ $b -eq 16 ] && [ $r -eq $(field "$n" resize) ] && [ $r -gt 0 ]'
    check "memory.sh $m: netc's columns are its JSON line's in MiB, positive" \
        '[ -n "$nr" ] && [ $arena = $(mib $(field "$n" arena_bytes)) ] && [ $naive = $(mib $(field "$n" naive_bytes)) ] &&
         [ $nrss = $(mib "$nr") ] && holds "$arena > 0 && $naive >= $arena && $nrss > 0"'
    check "memory.sh $m: netc's peak RSS at least its arena" 'holds "$nr >= $(field "$n" arena_bytes)"'
    [ $torch = 1 ] || continue
    check "memory.sh $m: PyTorch's peak RSS is its JSON line's, positive, same batch and resize" \
        '[ -n "$tr" ] && [ $trss = $(mib "$tr") ] && holds "$tr > 0" &&
         [ "$(field "$t" batch)" = $b ] && [ "$(field "$t" resize)" = $r ]'
    check "memory.sh $m: the ratio is netc's peak over PyTorch's" \
        '[ $ratio = $(awk -v a="$nr" -v t="$tr" "BEGIN { printf \"%.2fx\", a / t }") ]'
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
