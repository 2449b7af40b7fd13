#!/usr/bin/env bash
# fuzz.sh NETC SOURCE_DIR BINARY_DIR - builds the front end's libFuzzer target
# with clang (-fsanitize=fuzzer,address) and fuzzes it for NETC_FUZZ_SECONDS
# (default 60) seconds, seeded with the models and the bad-input corpus.  Any
# crash, leak or sanitizer report fails the test.
set -u
SRC=$2
OUT=$3/fuzz
mkdir -p "$OUT"
SECS=${NETC_FUZZ_SECONDS:-60}
# A fixed seed makes CI explore the same inputs run after run; set
# NETC_FUZZ_SEED=0 for a fresh random walk.
SEED=${NETC_FUZZ_SEED:-1}
if ! command -v clang >/dev/null; then
    echo "SKIPPED: clang not installed (apt-get install clang libclang-rt-14-dev)"
    exit 0
fi
cmake -S "$SRC" -B "$OUT" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DNETC_FUZZ=ON -DNETC_LLVM=OFF \
      -DNETC_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/build.log" 2>&1 &&
cmake --build "$OUT" --target fuzz_frontend -j2 >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; echo "FAIL: fuzzer build"; exit 1; }
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$SRC"/models/*.net "$SRC"/tests/bad/*.net "$corpus"/
# inputs that exist to hit the elaboration limits are slow by design: as
# seeds they would spend the time budget on their own mutants
rm -f "$corpus"/loop_*.net "$corpus"/work_*.net
cd "$OUT"
if ./fuzz_frontend -seed="$SEED" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" >fuzz.log 2>&1; then
    grep -E "stat::number_of_executed_units|Done" fuzz.log | head -3
    echo "1 passed, 0 failed"
else
    tail -60 fuzz.log
    echo "0 passed, 1 failed"
    exit 1
fi
