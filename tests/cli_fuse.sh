#!/usr/bin/env bash
# cli_fuse.sh NETC SOURCE_DIR BINARY_DIR - what fusion shows on the command
# line:
# - `netc bench --compare-fuse` times the fused step against the unfused one
#   and reports both speeds, their ratio, the kernel counts and arenas that
#   check and dump --memory give, and first-step losses that agree (JSON on
#   the default target, text on ref); with --fuse none it is an error;
# - bench/run.sh's table has the fused/unfused column of that JSON line;
# - `netc check` prints the kernel counts of the training and eval steps, as
#   many as `netc dump --kernels` lists, fewer with fusion than without;
# - `netc compile --fuse` builds the executable's steps from the programs
#   fused as asked, and the executable runs them (same weights as `netc
#   train` with that --fuse);
# - a bad --fuse value is a usage error (exit 2), as every bad flag is.
set -u
NETC=$1
cd "$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
# the number after WORD in a line
after() { sed -n "s/.*$1 \([0-9][0-9]*\).*/\1/p"; }

# a number field of a JSON line
field() { sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" <<<"$1"; }
# awk's verdict on an expression of numbers
holds() { awk "BEGIN { exit !($1) }"; }

# ---- bench --compare-fuse ----
M=models/lenet_bn.net
$NETC bench $M --compare-fuse --json --steps 2 --batch 16 >"$T/b.out" 2>"$T/b.err"
check "bench --compare-fuse --json: exit 0, one JSON line" '[ $? -eq 0 ] && [ "$(grep -c "^{.*}$" "$T/b.out")" -eq 1 ]'
J=$(grep "^{" "$T/b.out")
fi_=$(field "$J" fused_images_per_sec) ui=$(field "$J" unfused_images_per_sec) r=$(field "$J" fuse_ratio)
fk=$(field "$J" fused_kernels) uk=$(field "$J" unfused_kernels)
fa=$(field "$J" fused_arena_bytes) ua=$(field "$J" unfused_arena_bytes)
fl=$(field "$J" fused_first_loss) ul=$(field "$J" unfused_first_loss)
for v in fi_ ui r fk uk fa ua fl ul; do check "bench --compare-fuse: field $v present" '[ -n "${!v}" ]'; done
check "bench --compare-fuse: images/s and their ratio positive" 'holds "$fi_ > 0 && $ui > 0 && $r > 0"'
check "bench --compare-fuse: ratio is fused over unfused" 'holds "($r - $fi_ / $ui) ^ 2 < (1e-3 * $r) ^ 2"'
check "bench --compare-fuse: fewer kernels fused" 'holds "$fk < $uk"'
check "bench --compare-fuse: kernel counts are check's" \
    '[ "$fk" -eq "$($NETC check $M --batch 16 | grep "^  kernels:" | after train)" ] &&
     [ "$uk" -eq "$($NETC check $M --batch 16 --fuse none | grep "^  kernels:" | after train)" ]'
check "bench --compare-fuse: arena bytes are dump --memory's" \
    '[ "$fa" -eq "$($NETC dump --memory --batch 16 $M | after "arena: planned")" ] &&
     [ "$ua" -eq "$($NETC dump --memory --batch 16 --fuse none $M | after "arena: planned")" ]'
check "bench --compare-fuse: first losses agree" \
    'holds "$fl > 0 && ($fl - $ul) ^ 2 <= (1e-4 * $fl) ^ 2" && grep -q "\"losses_agree\":true" "$T/b.out" && [ ! -s "$T/b.err" ]'
$NETC bench $M --compare-fuse --fuse bn_act --target ref --steps 1 --warmup 0 --batch 8 >"$T/t.out" 2>&1
check "bench --compare-fuse text, on ref: speeds, ratio, kernels, arena, losses" \
    'grep -q "^models/lenet_bn.net on ref: batch 8, 28x28; --fuse bn_act against --fuse none" "$T/t.out" &&
     grep -q "^  images/s  *[0-9.]*  *[0-9.]*   fused/unfused [0-9.]*x$" "$T/t.out" &&
     grep -q "^  kernels  *$($NETC check $M --fuse bn_act | grep "^  kernels:" | after train)  *$uk " "$T/t.out" && grep -q "^  arena bytes  *[0-9]*  *[0-9]* " "$T/t.out" &&
     grep -q "^  first loss  *[0-9.]*  *[0-9.]*   agree " "$T/t.out"'
$NETC bench $M --compare-fuse --fuse none --steps 1 >/dev/null 2>"$T/e"
check "bench --compare-fuse --fuse none: exit 1, nothing to compare" '[ $? -eq 1 ] && grep -q "nothing to compare" "$T/e"'
$NETC train $M --compare-fuse >/dev/null 2>"$T/e"
check "--compare-fuse is for bench only" '[ $? -eq 2 ] && grep -q "unknown option .--compare-fuse." "$T/e"'

# ---- bench/run.sh: the fused/unfused column (netc only, one step) ----
if ! command -v python3 >/dev/null; then
    echo "skipped run.sh: no python3 (it renders the table)"
elif bash bench/run.sh --quick --steps 1 --models lenet_bn --no-torch --netc "$NETC" --out "$T/r.jsonl" >"$T/r.out" 2>"$T/r.err"; then
    R=$(grep "^{.*fuse_ratio" "$T/r.jsonl")
    row=$(grep "^| lenet_bn" "$T/r.out")
    want=$(awk -v r="$(field "$R" fuse_ratio)" 'BEGIN { printf "%.2fx", r }')
    check "run.sh: fused/unfused ratio and kernels in the table" \
        '[ -n "$R" ] && [[ "$row" == *"| $want | $(field "$R" fused_kernels)/$(field "$R" unfused_kernels) |" ]] &&
         grep -q "| fused/unfused | kernels fused/unfused |$" "$T/r.out"'
else
    check "bench/run.sh --no-torch runs" false
    sed 's/^/    /' "$T/r.err" | tail -5
fi

# ---- check: kernel counts, as dump --kernels lists them ----
for M in models/lenet_bn.net models/resnet18.net; do
    $NETC check $M >"$T/c.out" 2>&1
    kt=$(grep "^  kernels:" "$T/c.out" | after train) ke=$(grep "^  kernels:" "$T/c.out" | after eval)
    $NETC dump --kernels $M >"$T/dt.out"
    $NETC dump --kernels --mode eval $M >"$T/de.out"
    check "check $M: train kernels as dump lists them" '[ -n "$kt" ] && [ "$kt" -eq "$(grep -c "^k[0-9]" "$T/dt.out")" ]'
    check "check $M: eval kernels as dump lists them" '[ -n "$ke" ] && [ "$ke" -eq "$(grep -c "^k[0-9]" "$T/de.out")" ]'
    $NETC check $M --fuse none >"$T/n.out" 2>&1
    nt=$(grep "^  kernels:" "$T/c.out" | sed 's/, eval.*//' | after from)
    check "check $M: fused from as many nodes as --fuse none has kernels" \
        '[ -n "$nt" ] && [ "$nt" -eq "$(grep "^  kernels:" "$T/n.out" | after train)" ] && [ "$kt" -lt "$nt" ]'
    check "check $M --fuse none: one kernel per node" 'grep -q "^  kernels:     train [0-9]* (one per node), eval [0-9]* (one per node)$" "$T/n.out"'
done
$NETC check models/lenet_bn.net --fuse bogus >/dev/null 2>"$T/e"
check "check --fuse bogus: a usage error naming the pattern" '[ $? -eq 2 ] && grep -q "unknown pattern .bogus." "$T/e"'

# ---- compile --fuse: the executable runs the programs fused as asked ----
DATA=${NETC_DATA:-/usr/share/datasets/fashion-mnist}
$NETC compile models/lenet_bn.net --fuse bogus -o "$T/bogus" >/dev/null 2>"$T/e"
check "compile --fuse bogus: a usage error, nothing written" '[ $? -eq 2 ] && grep -q "unknown pattern .bogus." "$T/e" && [ ! -e "$T/bogus" ]'
if ! $NETC --version | grep -q "targets:.*cpu"; then
    echo "skipped compile --fuse: this netc has no cpu target (built without LLVM)"
elif [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "skipped compile --fuse: Fashion-MNIST not found in $DATA"
else
    for f in none all; do
        $NETC compile models/lenet_bn.net --batch 32 --fuse $f -o "$T/lenet_$f" >"$T/c_$f.out" 2>&1
        check "compile --fuse $f" '[ -x "$T/lenet_$f" ]'
        $NETC check models/lenet_bn.net --batch 32 --fuse $f | grep "^  kernels:" | sed 's/ (.*), eval \([0-9]*\).*/ eval \1/' >"$T/k_$f"
        check "compile --fuse $f: its kernel counts are check's" \
            'grep -q "kernels: train $(after train <"$T/k_$f"), eval $(after eval <"$T/k_$f"))" "$T/c_$f.out"'
        "$T/lenet_$f" train --quiet --epochs 1 --max-steps 2 --checkpoint "$T/aot_$f.st" >"$T/a_$f.out" 2>&1
        check "the --fuse $f executable trains" 'grep -q "^epoch 1/1:" "$T/a_$f.out"'
        sed 's/^/    /' "$T/a_$f.out" | grep -v "^    epoch" | head -3
        $NETC train models/lenet_bn.net --target cpu --batch 32 --fuse $f --quiet --epochs 1 --max-steps 2 \
            --checkpoint "$T/jit_$f.st" >/dev/null 2>&1
        check "the --fuse $f executable: same weights as netc train --fuse $f" 'cmp -s "$T/aot_$f.st" "$T/jit_$f.st"'
    done
    check "compile: --fuse none has more kernels than all" \
        '[ "$(after train <"$T/k_none")" -gt "$(after train <"$T/k_all")" ]'
fi

# bench/fuse_bound.sh: a row per network, its share of elementwise time
# between 0 and 100% and the ceiling 1 / (1 - share) that share gives
if $NETC --version | grep -q "targets:.*cpu"; then
    NETC=$NETC bash bench/fuse_bound.sh --models lenet_bn --threads 1 >"$T/fb.out" 2>&1
    check "fuse_bound.sh: share and ceiling of lenet_bn" 'awk -F"|" '"'"'$2 ~ /lenet_bn/ {
        s = $5 + 0; b = $6 + 0; ok = s > 0 && s < 100 && b > 1 && (b - 1 / (1 - s / 100)) ^ 2 < 1e-5 } END { exit !ok }'"'"' "$T/fb.out"'
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
