#!/usr/bin/env bash
# cli_fuse.sh NETC SOURCE_DIR BINARY_DIR - what fusion shows on the command
# line: `netc check` prints the kernel counts of the training and eval steps,
# the same as `netc dump --kernels` lists, fewer with fusion than without.
set -u
NETC=$1
cd "$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
# the number after WORD in a line
after() { sed -n "s/.*$1 \([0-9][0-9]*\).*/\1/p"; }

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

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
