#!/bin/sh
# Runs every test program given as arguments and ends with one line
# "N passed, N failed" summed over all of them. Exits non-zero when any test
# failed or crashed.
#
#  - Criterion executables: each one's summary is printed and its tests
#    counted one by one.
#  - libFuzzer harnesses (build/fuzz/fuzz_*): each runs for $FUZZ_SECONDS
#    (default 10) from its seed corpus (tests/fuzz/corpus/NAME) and a work
#    corpus kept in build/fuzz/corpus/NAME; it counts as one test, failed
#    when it found a crash (saved in build/fuzz/crashes/).
#  - The chaos driver (*/chaos): runs for $CHAOS_SECONDS and counts as one
#    test, passed when every invariant held (its exit status).
#  - Shell tests (tests/pkg/test_*.sh): each counts as one test, passed when
#    it exits 0; its "!! " lines name what failed.
passed=0
failed=0
status=0
# What failed, repeated after the summary so that the end of the output
# (all a CI log may keep) says which test failed and why.
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT

count() { # $1: 0 for passed, else failed
    if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
}

run_fuzz() {
    t=$1
    name=$(basename "$t")
    secs=${FUZZ_SECONDS:-10}
    dir=$(dirname "$t")
    work="$dir/corpus/$name"
    crashes="$dir/crashes"
    seeds="tests/fuzz/corpus/$name"
    mkdir -p "$work" "$crashes"
    log=$(mktemp)
    IMGSTORE_LOG=off "$t" -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$crashes/$name-" "$work" $( [ -d "$seeds" ] && echo "$seeds" ) \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        echo "$name: ${execs:-?} executions in ${secs} s, ${cov:-cov: ?}, 0 crashes"
    else
        echo "!! $name failed (exit $rc); last lines of its output:"
        tail -n 60 "$log"
        echo "!! $name: reproduce with: $t $crashes/$name-<crash file>"
        echo "$name: found a crash (exit $rc)" >>"$failures"
    fi
    rm -f "$log"
    count "$rc"
}

run_criterion() {
    t=$1
    out=$(mktemp)
    "$t" --jobs 1 --timeout 300 2>&1 | tee "$out"
    line=$(grep -a "Synthesis:" "$out" | tail -n 1)
    # A failed assertion with its message lines, and each failed test.
    awk -v t="$(basename "$t")" '
        /Assertion Failed/ { n = 3; print t ": " $0; next }
        n > 0 && /^\[----\]/ { n--; if ($0 !~ /^\[----\] *$/) print t ": " $0; next }
        { n = 0 }
        /\[FAIL\]|CRASH/ { print t ": " $0 }' "$out" >>"$failures"
    if [ -z "$line" ]; then
        echo "!! $t produced no Criterion summary"
        echo "$(basename "$t"): no Criterion summary" >>"$failures"
        failed=$((failed + 1))
        status=1
    else
        p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
        c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0})) # Criterion counts crashes as failing too
        [ "${f:-0}" != 0 ] || [ "${c:-0}" != 0 ] && status=1
    fi
    rm -f "$out"
}

for t in "$@"; do
    echo "== $t"
    case "$(basename "$t")" in
    fuzz_*) run_fuzz "$t" ;;
    chaos)
        out=$(mktemp)
        { "$t" 2>&1; echo "$?" >"$out.rc"; } | tee "$out"
        rc=$(cat "$out.rc" 2>/dev/null)
        [ -n "$rc" ] || rc=1
        if [ "$rc" -ne 0 ]; then
            grep -a -E '^invariant .*[1-9][0-9]* failed|^chaos: seed|never injected|did not start' \
                "$out" | sed 's/^invariant/chaos: invariant/' >>"$failures"
        fi
        rm -f "$out" "$out.rc"
        count "$rc"
        ;;
    *.sh)
        out=$(mktemp)
        { "$t" 2>&1; echo "$?" >"$out.rc"; } | tee "$out"
        rc=$(cat "$out.rc" 2>/dev/null)
        [ -n "$rc" ] || rc=1
        [ "$rc" -eq 0 ] || { grep -a '^!! ' "$out" | sed 's/^!! //' | head -n 20;
                             echo "$(basename "$t"): exit $rc"; } >>"$failures"
        rm -f "$out" "$out.rc"
        count "$rc"
        ;;
    *) run_criterion "$t" ;;
    esac
done
if [ -s "$failures" ]; then
    echo "== what failed:"
    cat "$failures"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
