#!/bin/sh
# test_units.sh - the systemd units of deploy/systemd verify and rate OK or
# better in `systemd-analyze security` (deploy/check-units.sh), as one test
# of tests/run.sh. Skipped (passes, saying so) without systemd-analyze.
cd "$(dirname "$0")/../.." || exit 1
out=$(./deploy/check-units.sh 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -eq 0 ] || printf '!! test_units: %s\n' "$(printf '%s' "$out" | tail -n 3)"
exit $rc
