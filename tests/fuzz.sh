#!/usr/bin/env bash
# fuzz.sh NETC SOURCE_DIR BINARY_DIR - builds the libFuzzer targets with
# clang (-fsanitize=fuzzer,address), replays the inputs that once crashed
# them (tests/fuzz_crashes/TARGET/), then fuzzes each for a fixed time from a
# fixed seed: the front end for NETC_FUZZ_SECONDS (default 60) seconds,
# seeded with the models and the bad-input corpus; the safetensors reader
# and the IDX readers for NETC_FUZZ_READER_SECONDS (default 25) each, seeded
# with tests/fuzz_corpus/TARGET/ (small valid files and the hostile cases).
# Any crash, leak or sanitizer report fails the test; the input that did it
# is printed: keep it in tests/fuzz_crashes/TARGET/ with the fix.
set -u
SRC=$2
OUT=$3/fuzz
mkdir -p "$OUT"
SECS=${NETC_FUZZ_SECONDS:-60}
RSECS=${NETC_FUZZ_READER_SECONDS:-25}
# A fixed seed makes CI explore the same inputs run after run; set
# NETC_FUZZ_SEED=0 for a fresh random walk.
SEED=${NETC_FUZZ_SEED:-1}
if ! command -v clang >/dev/null; then
    echo "SKIPPED: clang not installed (apt-get install clang libclang-rt-14-dev)"
    exit 0
fi
cmake -S "$SRC" -B "$OUT" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DNETC_FUZZ=ON -DNETC_LLVM=OFF \
      -DNETC_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/build.log" 2>&1 &&
cmake --build "$OUT" --target fuzz_frontend fuzz_safetensors fuzz_idx -j2 >>"$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; echo "FAIL: fuzzer build"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0

# run NAME SECONDS CORPUS_DIR... : replay NAME's crash inputs, then fuzz
run() {
    local name=$1 secs=$2; shift 2
    local crashes=("$SRC/tests/fuzz_crashes/${name#fuzz_}"/*)
    if [ -e "${crashes[0]}" ]; then
        if (cd "$OUT" && "./$name" -runs=1 "${crashes[@]}" >"$work/$name.replay.log" 2>&1); then
            echo "ok: $name replays ${#crashes[@]} past crash inputs"
        else
            tail -40 "$work/$name.replay.log"
            echo "FAIL: $name on a past crash input"
            fail=$((fail + 1))
            return
        fi
    fi
    mkdir -p "$work/$name.out"
    if (cd "$work" && TMPDIR=$work "$OUT/$name" -seed="$SEED" -max_total_time="$secs" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$name-" "$work/$name.out" "$@" \
            >"$work/$name.log" 2>&1); then
        echo "ok: $name, $(grep -Eo "stat::number_of_executed_units: *[0-9]+" "$work/$name.log" | grep -Eo "[0-9]+$") runs"
        pass=$((pass + 1))
    else
        tail -60 "$work/$name.log"
        for a in "$work/$name"-*; do
            [ -e "$a" ] && { echo "crash input ($a), as base64:"; base64 "$a" | head -40; }
        done
        echo "FAIL: $name"
        fail=$((fail + 1))
    fi
}

mkdir "$work/fe"
cp "$SRC"/models/*.net "$SRC"/tests/bad/*.net "$work/fe"/
# inputs that exist to hit the elaboration limits are slow by design: as
# seeds they would spend the time budget on their own mutants
rm -f "$work/fe"/loop_*.net "$work/fe"/work_*.net
run fuzz_frontend "$SECS" "$work/fe"
run fuzz_safetensors "$RSECS" "$SRC/tests/fuzz_corpus/safetensors"
run fuzz_idx "$RSECS" "$SRC/tests/fuzz_corpus/idx"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
