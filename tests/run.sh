#!/bin/sh
# Runs every test binary given as arguments (Criterion executables), prints
# each one's Criterion summary, and ends with one line "N passed, N failed"
# summed over all of them. Exits non-zero when any test failed or crashed.
passed=0
failed=0
status=0
for t in "$@"; do
    echo "== $t"
    out=$(mktemp)
    "$t" --jobs 1 --timeout 300 2>&1 | tee "$out"
    rc=$?
    line=$(grep -a "Synthesis:" "$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "!! $t produced no Criterion summary"
        failed=$((failed + 1))
        status=1
    else
        p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
        c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0} + ${c:-0}))
        [ "${f:-0}" != 0 ] || [ "${c:-0}" != 0 ] && status=1
    fi
    rm -f "$out"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
