#!/bin/bash
# The libFuzzer harnesses of tests/fuzz/ (built by `make FUZZ=1 fuzz-bins`).
#
#   scripts/run_fuzz.sh BUILD_DIR           each target for FUZZ_SECONDS (default 60), or FUZZ_RUNS
#                                           executions when set; the corpus grows in
#                                           BUILD_DIR/fuzz/<target>/corpus across runs
#   scripts/run_fuzz.sh BUILD_DIR --smoke   make test's check: each target replays
#                                           tests/fuzz/regress/<target>/ and then runs 2000
#                                           inputs from its seeds with -seed=1 (deterministic)
#
# FUZZ_TARGETS="tokenizer wire" picks targets (default: every build-fuzz/bin/fuzz_*).
# Seeds: tests/fuzz/seeds/<target>/ (hand-made), the shipped files that fit
# (fixtures' safetensors, config.json, adapter_config.json, the .ini configs),
# what the harness writes itself (FUZZ_WRITE_SEEDS=dir: token files, datasets,
# wire messages, a checkpoint) and tests/fuzz/regress/<target>/. A crash, leak,
# timeout or UB report saves its input as BUILD_DIR/fuzz/<target>/crash-* (or
# leak-*, timeout-*), prints it, and makes the run fail. Prints per target the
# executions, the coverage reached and the result.
set -u
B=${1:?usage: run_fuzz.sh BUILD_DIR [--smoke]}
MODE=${2:-}
SECONDS_EACH=${FUZZ_SECONDS:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
ASAN=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp}
export OMP_NUM_THREADS=1
# the harnesses that read files write each input to a file under TMPDIR: in memory when we can
if [ -z "${FUZZ_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then FUZZ_TMPDIR=/dev/shm; fi
[ -n "${FUZZ_TMPDIR:-}" ] && export TMPDIR=$FUZZ_TMPDIR

targets=${FUZZ_TARGETS:-$(for f in "$B"/bin/fuzz_*; do [ -x "$f" ] && basename "$f" | sed 's/^fuzz_//'; done)}
[ -n "$targets" ] || { echo "run_fuzz: no harness in $B/bin (make FUZZ=1 fuzz-bins)" >&2; exit 1; }

# The shipped files that seed each target.
shipped() {
    case $1 in
    safetensors) find tests/fixtures demo -name '*.safetensors' -size -200k ;;
    model_config) ls tests/fixtures/*/base/config.json tests/fixtures/*/merged/config.json demo/*/config.json ;;
    run_config) ls configs/*.ini tests/*.ini ;;
    peft_config) ls tests/fixtures/*/lora-*/adapter_config.json ;;
    esac 2>/dev/null
}

summary=()
failed=()
for t in $targets; do
    bin=$B/bin/fuzz_$t
    [ -x "$bin" ] || { echo "run_fuzz: $bin missing (make FUZZ=1 fuzz-bins)" >&2; failed+=("$t (not built)"); continue; }
    work=$B/fuzz/$t
    seeds=$work/seeds
    rm -rf "$seeds"
    mkdir -p "$seeds" "$work/corpus"
    [ -d "tests/fuzz/seeds/$t" ] && cp tests/fuzz/seeds/"$t"/* "$seeds"/ 2>/dev/null
    for f in $(shipped "$t"); do cp "$f" "$seeds/$(echo "$f" | tr / _)"; done
    FUZZ_WRITE_SEEDS=$seeds "$bin" -runs=0 >/dev/null 2>&1 # harnesses without a seed writer ignore it
    regress=tests/fuzz/regress/$t
    opts=(-artifact_prefix="$work/" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1)
    [ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
    log=$work/last.log
    # HDF5 is not built with frame pointers: full unwinding, so that tests/fuzz/lsan.supp's frames show
    export ASAN_OPTIONS=$ASAN
    [ "$t" = ckpt ] && export ASAN_OPTIONS=$ASAN:fast_unwind_on_malloc=0
    t0=$SECONDS
    rc=0
    if [ "$MODE" = --smoke ]; then
        if [ -d "$regress" ] && ls "$regress"/* >/dev/null 2>&1; then
            "$bin" "${opts[@]}" "$regress"/* >"$log.regress" 2>&1 || { rc=1; cat "$log.regress"; }
        fi
        tmp=$(mktemp -d)
        [ $rc = 0 ] && { "$bin" "${opts[@]}" -seed=1 -runs=2000 "$tmp" "$seeds" >"$log" 2>&1 || rc=1; }
        rm -rf "$tmp"
    else
        [ -d "$regress" ] && cp "$regress"/* "$seeds"/ 2>/dev/null
        if [ -n "${FUZZ_RUNS:-}" ]; then opts+=(-runs="$FUZZ_RUNS"); else opts+=(-max_total_time="$SECONDS_EACH"); fi
        "$bin" "${opts[@]}" ${FUZZ_EXTRA:-} "$work/corpus" "$seeds" >"$log" 2>&1 || rc=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" 2>/dev/null | tail -1)
    if [ $rc = 0 ]; then
        line=$(printf '%-13s ok    %9s runs  %-20s %4d s' "$t" "${execs:-?}" "${cov:-}" $((SECONDS - t0)))
    else
        line=$(printf '%-13s FAIL  %9s runs  %-20s %4d s' "$t" "${execs:-?}" "${cov:-}" $((SECONDS - t0)))
        failed+=("$t")
        echo "=== fuzz_$t failed; the report (from $log):"
        grep -A40 -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|==[0-9]+==|fuzz: ' "$log" | head -60
        ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | sed 's/^/input kept: /'
    fi
    echo "$line"
    summary+=("$line")
done
echo
echo "fuzz summary ($B${MODE:+, $MODE}):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[*]}"
    exit 1
fi
