#!/bin/bash
# test_json_scripts.sh - JSON in the scripts is read with a JSON parser, as
# one test of tests/run.sh (docs/operations.md, "ds-admin"):
#  - no shell script of bench/, deploy/, scripts/ or tests/ picks a JSON
#    field out with sed or grep (a pattern naming a quoted key, '"key":'),
#    no C program (servers, tools, benchmarks, tests) writes JSON with
#    printf ('{\"...'), and no test looks for a quoted key in JSON text
#    with strstr (they read values by path: tests/integ/json_check.h);
#  - bench/lib.sh's jq helpers read what the programs print: on a small
#    cluster started with lib.sh (wait_up reads `ds-admin --json status`),
#    jget/jerr read an `imgstore bench --json` result, jnum a status, and
#    steady_read's line is one JSON object with its figures.
# Needs the build (IMGSTORE_BIN, default build/bin) and build/bench/steady_read.
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BBIN=$(dirname "$BIN")/bench
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_json_scripts: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }

# ---- no JSON read or written as text
# A sed or grep whose pattern holds a quoted key followed by a colon
# (escaped or not): '"servers_up": 3', 's/.*\"name\":...'.
hits=$(grep -rnE --include='*.sh' '(sed|grep)[^|]*\\?"[a-z_]+\\?" *:' bench deploy scripts tests |
    grep -v '^tests/pkg/test_json_scripts.sh:')
[ -z "$hits" ] && ok || bad "scripts read JSON as text:"$'\n'"$hits"
hits=$(grep -rnE --include='*.c' 'printf\([^;]*"\{\\"' base net proto client nameserver dataserver tools \
    bench tests)
[ -z "$hits" ] && ok || bad "C code writes JSON with printf:"$'\n'"$hits"
# Tests find values by path over a parse (tests/integ/json_check.h), never
# with strstr or memmem of a quoted key.
hits=$(grep -rnE --include='*.c' '(strstr|memmem|strcasestr)\([^;]*\\"[a-z_]+\\" *:' tests)
[ -z "$hits" ] && ok || bad "tests search JSON text for a key:"$'\n'"$hits"

# ---- bench/lib.sh's helpers on real output
command -v jq >/dev/null 2>&1 || { bad "jq is missing (scripts/install-deps.sh installs it)"; exit 1; }
for b in "$BIN/nameserver" "$BIN/dataserver" "$BIN/imgstore" "$BIN/ds-admin" "$BBIN/steady_read"; do
    [ -x "$b" ] || { bad "$b is missing (make all $(basename "$BBIN")/steady_read)"; exit 1; }
done
WORK=$(mktemp -d) || exit 1
KEEP=0
log() { echo "test_json_scripts: $*" >&2; }
mkdir -p "$WORK/log"
# shellcheck source=bench/lib.sh
. bench/lib.sh # its EXIT trap stops the servers and removes WORK
start_ns --replicas 2 --safe-mode-timeout-ms 0
start_ds 1
start_ds 2
READY_TRIES=100 wait_up 2 # exits on failure
ok

"$BIN/imgstore" --ns "$NS" bench -n 20 -c 2 --size 2000 --duration 1 --json \
    --save-names "$WORK/names" >"$WORK/bench.json" 2>"$WORK/bench.err" ||
    { bad "imgstore bench failed: $(cat "$WORK/bench.err")"; exit 1; }
num_gt0() { awk -v v="$1" 'BEGIN { exit !(v ~ /^[0-9.]+$/ && v + 0 > 0) }'; }
v=$(jget "$WORK/bench.json" upload ops_per_s)
num_gt0 "$v" && ok || bad "jget upload ops_per_s: '$v' in $(cat "$WORK/bench.json")"
v=$(jget "$WORK/bench.json" read p99)
num_gt0 "$v" && ok || bad "jget read p99 (a latency_ms field): '$v'"
v=$(jerr "$WORK/bench.json" upload)
[ "$v" = 0 ] && ok || bad "jerr upload: '$v', want 0"
v=$(jget "$WORK/bench.json" nosuchphase ops_per_s)
[ -z "$v" ] && ok || bad "jget of a missing phase printed '$v'"
st=$("$BIN/ds-admin" --ns "$NS" --json status)
v=$(echo "$st" | jnum servers_up)
[ "$v" = 2 ] && ok || bad "jnum servers_up: '$v' in $st"
v=$(echo "$st" | jnum verdict)
[ "$v" = healthy ] && ok || bad "jnum verdict: '$v'"
v=$(echo "$st" | jnum no_such_key)
[ -z "$v" ] && ok || bad "jnum of a missing key printed '$v'"

"$BBIN/steady_read" --ns "$NS" --names "$WORK/names" --rate 200 --duration 1 -c 2 \
    >"$WORK/steady.json" 2>"$WORK/steady.err" ||
    { bad "steady_read failed: $(cat "$WORK/steady.err")"; exit 1; }
jq -e 'type == "object" and (.ops | type) == "number" and .errors == 0 and
       ([.ops_per_s, .p50, .p90, .p99, .p99_9, .max] | all(type == "number"))' \
    "$WORK/steady.json" >/dev/null && ok || bad "steady_read's line: $(cat "$WORK/steady.json")"
v=$(jnum ops <"$WORK/steady.json")
num_gt0 "$v" && ok || bad "jnum ops of steady_read: '$v'"

echo "test_json_scripts: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
