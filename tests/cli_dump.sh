#!/usr/bin/env bash
# cli_dump.sh NETC SOURCE_DIR BINARY_DIR - `netc check` and every form of
# `netc dump`: the text dump equals the golden file, dot is accepted by
# Graphviz when it is installed, the training graph has backward and SGD
# nodes, the memory plan prints planned and unplanned totals, --dump-after
# names its pass, --params lists parameters in order, --param changes a
# network (an integer, a real, a list; a value of the wrong kind is a located
# error), and bad flags exit 2.
set -u
NETC=$1
cd "$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
M=models/resnet18.net
check "check prints the parameter count" '$NETC check $M | grep -q "parameters:  11178378"'
check "check prints the output shape" '$NETC check $M | grep -q "output:      Nx10"'
$NETC dump $M >"$T/d.txt"
check "dump equals the golden file" 'cmp -s "$T/d.txt" tests/golden/resnet18.txt'
$NETC dump --format dot $M >"$T/d.dot"
check "dot output" 'head -1 "$T/d.dot" | grep -q "^digraph netc"'
if command -v dot >/dev/null; then check "Graphviz reads it" 'dot -Tsvg "$T/d.dot" -o "$T/d.svg"'; fi
$NETC dump --train models/lenet_bn.net >"$T/t.txt"
check "training graph has backward nodes" 'grep -q "conv2d_bwd_weight" "$T/t.txt" && grep -q "batchnorm_bwd" "$T/t.txt"'
check "one SGD per parameter" '[ "$(grep -c " sgd(" "$T/t.txt")" -eq "$($NETC dump --params models/lenet_bn.net | grep -c " param$")" ]'
$NETC dump --memory --batch 8 models/densenet.net >"$T/m.txt"
check "memory plan totals" 'grep -q "^arena: planned [0-9]* bytes .*unplanned [0-9]* bytes" "$T/m.txt"'
check "memory plan lifetimes" 'grep -q " arena .* [0-9]*\.\.[0-9]* " "$T/m.txt"'
check "dump-after names the pass" '$NETC dump --dump-after autodiff models/lenet_bn.net | head -1 | grep -q "^# after autodiff"'
check "params in order of use" '$NETC dump --params $M | sed -n 1p | grep -q "^b1.conv0.weight 64x1x7x7 param"'
check "--param changes the network" '$NETC check models/vgg11.net --param ratio=1 | grep -q "parameters:  128806154"'
# --resize reaches the elaboration: height(x) and width(x) see 32, not the file's 28
printf 'net {\n x = x |> conv(4, 3, pad = 1)\n n = channels(x) * height(x) * width(x)\n return x |> flatten |> linear(10, in = n)\n}\n' >"$T/h.net"
check "height(x) sees --resize" '$NETC check "$T/h.net" --resize 32 | grep -q "input:       Nx1x32x32"'
printf 'param drop_rate = 0.3\nnet { return x |> flatten |> dropout(drop_rate) |> linear(10) }\n' >"$T/r.net"
check "--param takes a real" '$NETC dump "$T/r.net" --param drop_rate=0.5 | grep -q " = dropout(%1) {p=0.5 "'
check "--param takes a list" '$NETC dump models/densenet.net --param "num_convs_in_dense_blocks=[6, 12, 24, 16]" | grep -q "# dense_block3.conv_block15.conv0$"'
$NETC check models/vgg11.net --param ratio=0.5 >/dev/null 2>"$T/e"
check "--param of the wrong kind exits 1, located" '[ $? -eq 1 ] && grep -q "vgg11.net:3:7: error: .ratio. is an integer" "$T/e"'
$NETC dump --format svg $M >/dev/null 2>&1
check "bad --format exits 2" '[ $? -eq 2 ]'
# the memory plan: views shown as parts, the savings, the reasons, bad values
check "dump --memory shows views and what they save" '$NETC dump --memory models/densenet.net | grep -q "^  %[0-9]* *part .* %[0-9]*+[0-9]" && $NETC dump --memory models/densenet.net | grep -q "^saved: [1-9][0-9]* bytes .* by in-place concat"'
check "--concat copy: no views, the reason per input" '$NETC dump --memory models/densenet.net --concat copy | grep -q "^views: 0 values" && $NETC dump --memory models/densenet.net --concat copy | grep -q "not in its concat slot: .*--concat copy"'
check "--recompute bn-relu: apply nodes, and what they save" '$NETC dump --train models/densenet.net --recompute bn-relu | grep -q "batchnorm.*{apply" && $NETC dump --memory models/densenet.net --recompute bn-relu | grep -q ", [1-9][0-9]* bytes ([^)]*) by recompute" && ! $NETC dump --memory models/densenet.net | grep -q ", [1-9][0-9]* bytes ([^)]*) by recompute"'
$NETC check $M --concat sideways >/dev/null 2>"$T/e"
check "bad --concat exits 2" '[ $? -eq 2 ] && grep -q "concat takes inplace or copy" "$T/e"'
$NETC check $M --recompute all >/dev/null 2>"$T/e"
check "bad --recompute exits 2" '[ $? -eq 2 ] && grep -q "recompute takes bn-relu or none" "$T/e"'
$NETC check models/nowhere.net >/dev/null 2>"$T/e"
check "missing file exits 1 with its name" '[ $? -eq 1 ] && grep -q "nowhere.net" "$T/e"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
