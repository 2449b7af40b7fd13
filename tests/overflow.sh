#!/usr/bin/env bash
# overflow.sh NETC SOURCE_DIR BINARY_DIR - sizes past the limits of ir/ir.h
# (elements of a tensor, of all tensors, FLOPs of a forward pass) and
# integers past 64 bits: `netc check`, `netc dump --memory` and
# `netc train --target ref` exit 1 on every tests/bad/overflow_*.net with the
# located error its .expect names, a source line and a caret, and no
# sanitizer report; --batch and --resize on the command line that make a
# tensor too large are caught the same way.
set -u
NETC=$1
cd "$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; sed 's/^/    /' "$T/err" | head -8; fi; }
# located ERR_PREFIX: exit status 1, first line starts with it, then a caret line, no sanitizer report
located() {
    [ "$rc" -eq 1 ] && head -1 "$T/err" | grep -qF -- "$1" && grep -q '^      | *\^$' "$T/err" &&
        ! grep -q 'runtime error\|Sanitizer' "$T/err"
}
for f in tests/bad/overflow_*.net; do
    want="tests/bad/$(head -1 "${f%.net}.expect")"
    for cmd in check "dump --memory" "train --target ref --max-steps 1 --data $T/none"; do
        $NETC $cmd "$f" >/dev/null 2>"$T/err"
        rc=$?
        check "${cmd%% --max-steps*} $(basename "$f")" 'located "$want"'
    done
done
# the command line's largest batch and input size make LeNet's first activation too large
for cmd in check "dump --memory" "train --target ref --max-steps 1 --data $T/none"; do
    $NETC $cmd --batch 65536 --resize 1024 models/lenet_bn.net >/dev/null 2>"$T/err"
    rc=$?
    check "${cmd%% --max-steps*} --batch 65536 --resize 1024" \
        'located "models/lenet_bn.net:6:12: error: conv2d output Nx6x1020x1020 has 4.09e+11 elements at batch 65536"'
done
# past the command line's ranges: a usage error, not a wrapped size
$NETC check --batch 99999999999999999999 models/lenet_bn.net >/dev/null 2>"$T/err"
rc=$?
check "--batch past 64 bits" '[ $rc -eq 2 ] && grep -q "expects an integer in" "$T/err"'
$NETC check --resize 18446744073709551616 models/lenet_bn.net >/dev/null 2>"$T/err"
rc=$?
check "--resize past 64 bits" '[ $rc -eq 2 ] && grep -q "expects an integer in" "$T/err"'
# the largest batch alone still fits: LeNet checks and plans
$NETC dump --memory --batch 65536 models/lenet_bn.net >"$T/out" 2>"$T/err"
rc=$?
check "batch 65536 plans" '[ $rc -eq 0 ] && grep -q "^arena: planned [0-9]* bytes (.* GiB)" "$T/out"'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
