#!/bin/bash
# rebalance.sh - `make bench-rebalance` (docs/performance.md, "Rebalance"):
# read p99 under a steady read load with no rebalance (baseline), then with a
# rebalance running, in the same run on the same cluster; and the copy rate
# achieved against the configured cap.
#
# Starts its own cluster in a temporary folder on random loopback ports: one
# nameserver (copy cap REBAL_RATE_MB, default task cap), three dataservers
# with --capacity 2 x REBAL_BYTES each; uploads REBAL_BYTES of REBAL_SIZE-byte
# files (replication 2); starts a fourth, empty dataserver; then alternates
# REBAL_CYCLES times a window of REBAL_SECS of steady reads (bench/
# steady_read, REBAL_READ_RATE reads/s) with nothing moving and one with the
# balance filling the new server (rebalance_band 1 point), and compares the
# p99 of the two kinds, each over its windows pooled. The copy rate is the
# growth of the new server's block files over the busy windows. Everything is
# stopped and the folder removed on exit (REBAL_KEEP=1 keeps it).
#
# Tunables (environment): REBAL_BYTES (3000000000), REBAL_SIZE (204800),
# REBAL_RATE_MB (20), REBAL_SECS (10), REBAL_CYCLES (5), REBAL_READ_RATE (400),
# REBAL_CONC (4),
# REBAL_DIR (parent folder, /tmp).
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BBIN=${BENCH_BIN:-$(pwd)/build/bench}
BYTES=${REBAL_BYTES:-3000000000}
SIZE=${REBAL_SIZE:-204800}
RATE_MB=${REBAL_RATE_MB:-20}
SECS=${REBAL_SECS:-10}
CYCLES=${REBAL_CYCLES:-5}
READ_RATE=${REBAL_READ_RATE:-400}
CONC=${REBAL_CONC:-4}
FILES=$((BYTES / SIZE))
CAPACITY=$((BYTES * 2))
NDS=3
START_WAIT_S=60 # for the first moves after the new server is up

WORK=$(mktemp -d "${REBAL_DIR:-/tmp}/imgstore-rebal.XXXXXX") || exit 1
KEEP=${REBAL_KEEP:-0}

log() { echo "bench-rebalance: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

admin() { "$BIN/ds-admin" --ns "$NS" "$@"; }

# num JSON KEY: the top-level field KEY of a JSON document (jq, bench/lib.sh).
num() { echo "$1" | jnum "$2"; }
dir_bytes() { find "$1" -type f \( -name '*.blk' -o -name '*.tmp' -o -name '*copy*' \) -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }

mkdir -p "$WORK/log" "$WORK/ns"
need_bins "$BIN" make nameserver dataserver imgstore ds-admin
need_bins "$BBIN" "make bench-rebalance" steady_read

start_ns --replicas 2 --safe-mode-timeout-ms 0 --copy-rate-mb "$RATE_MB"
for i in $(seq $NDS); do start_ds "$i" --capacity "$CAPACITY"; done
wait_up $NDS
log "cluster: nameserver $NS, $NDS dataservers with --capacity $CAPACITY, copy cap $RATE_MB MB/s, in $WORK"

log "uploading $FILES files of $SIZE B ($BYTES bytes, replication 2)"
"$BIN/imgstore" --ns "$NS" bench -n "$FILES" -c 8 --size "$SIZE" --duration 0 \
    --save-names "$WORK/names" --json >"$WORK/upload.json" || { log "upload failed"; exit 1; }
[ "$(wc -l <"$WORK/names")" -gt 0 ] || { log "no file uploaded"; exit 1; }
sleep 2 # heartbeats carry the last sizes

# Windows alternate on one cluster: an idle one (no move planned or
# running: rebalance_band 50, running balance tasks canceled) and a busy one
# (rebalance_band 1, moves running), REBAL_CYCLES times. The p99 of each
# kind is taken over its windows' reads pooled, so the machine's drift
# during the run weighs on both alike.
moves_running() { num "$(admin --json rebalance --dry-run)" moves_running; }
running_balance_tasks() {
    admin --json tasks |
        jq -r '.tasks[]? | select(.state == "running" and .reason == "rebalance") | .id'
}
pause_moves() {
    local i id
    admin set rebalance_band 50 >/dev/null || exit 1
    for i in $(seq $((START_WAIT_S * 5))); do
        [ "$(moves_running)" = 0 ] && [ -z "$(running_balance_tasks)" ] && return 0
        for id in $(running_balance_tasks); do admin cancel "$id" >/dev/null 2>&1; done
        sleep 0.2
    done
    log "moves did not stop"
    exit 1
}
resume_moves() {
    local i
    admin set rebalance_band 1 >/dev/null || exit 1
    for i in $(seq $((START_WAIT_S * 5))); do
        [ "$(moves_running)" != 0 ] && { sleep 1; return 0; } # past the first copy's start
        sleep 0.2
    done
    log "no move started within ${START_WAIT_S}s: the rebalance is over (raise REBAL_BYTES)"
    return 1
}
# window KIND: one window of steady reads of cycle $c (KIND.$c.samples; KIND.$c.trace
# has each read's start, latency and key, to line slow reads up with the logs).
window() {
    "$BBIN/steady_read" --ns "$NS" --names "$WORK/names" --rate "$READ_RATE" --duration "$SECS" \
        -c "$CONC" --samples "$WORK/$1.$c.samples" --trace "$WORK/$1.$c.trace" \
        >"$WORK/$1.$c.json" || exit 1
}
# pctl FILE P: the P quantile (0..1) of the numbers in FILE.
pctl() { sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { if (NR) printf "%.3f", v[int((NR - 1) * p) + 1] }'; }

log "a fourth, empty dataserver joins (rebalance_band 50 for now: nothing moves)"
admin set rebalance_band 50 >/dev/null || exit 1
start_ds 4 --capacity "$CAPACITY"
wait_up 4
COPIED=0
DONE=0
COPY_SECS=0
PER_CYCLE=""
for c in $(seq "$CYCLES"); do
    pause_moves
    log "cycle $c/$CYCLES: idle window, $READ_RATE reads/s for ${SECS}s"
    window idle
    if ! resume_moves; then
        [ "$c" -gt 1 ] || exit 1
        rm -f "$WORK/idle.$c.json" # its pair never ran: not counted
        break
    fi
    DONE=$c
    b0=$(dir_bytes "$WORK/ds4")
    t0=$(now)
    log "cycle $c/$CYCLES: rebalance window ($(moves_running) moves running)"
    window busy
    b1=$(dir_bytes "$WORK/ds4")
    t1=$(now)
    [ "$(moves_running)" != 0 ] || log "warning: the moves ended inside the window (raise REBAL_BYTES)"
    COPIED=$((COPIED + b1 - b0))
    COPY_SECS=$(awk -v a="$COPY_SECS" -v s="$t0" -v e="$t1" 'BEGIN { print a + e - s }')
    PER_CYCLE="$PER_CYCLE $(ratio "$(num "$(cat "$WORK/busy.$c.json")" p99)" "$(num "$(cat "$WORK/idle.$c.json")" p99)")"
done
pause_moves
for c in $(seq "$DONE"); do
    cat "$WORK/idle.$c.samples" >>"$WORK/idle.samples"
    cat "$WORK/busy.$c.samples" >>"$WORK/busy.samples"
done

IDLE=$(pctl "$WORK/idle.samples" 0.99)
BUSY=$(pctl "$WORK/busy.samples" 0.99)
IERR=$(cat "$WORK"/idle.*.json | while read -r l; do num "$l" errors; done | awk '{ s += $1 } END { print s + 0 }')
BERR=$(cat "$WORK"/busy.*.json | while read -r l; do num "$l" errors; done | awk '{ s += $1 } END { print s + 0 }')
RATE=$(awk -v b="$COPIED" -v s="$COPY_SECS" 'BEGIN { printf "%.1f", b / s / 1e6 }')
DEV=$(awk -v r="$RATE" -v c="$RATE_MB" 'BEGIN { printf "%+.1f%%", (r - c) * 100 / c }')

printf '\n%-44s | %-12s | %-12s | %-8s | %s\n' "figure" "measured" "reference" "ratio" "goal"
printf '%-44s-+-%-12s-+-%-12s-+-%-8s-+-%s\n' "--------------------------------------------" \
    "------------" "------------" "--------" "----------------"
printf '%-44s | %-12s | %-12s | %-8s | %s\n' "read p99 ms, rebalance running vs idle" "$BUSY" \
    "$IDLE" "$(ratio "$BUSY" "$IDLE")" "<= 1.5x"
printf '%-44s | %-12s | %-12s | %-8s | %s\n' "read errors (during / idle)" "$BERR" "$IERR" "-" "0"
printf '%-44s | %-12s | %-12s | %-8s | %s\n' "copy rate MB/s into the new server vs cap" "$RATE" \
    "$RATE_MB" "$DEV" "within +-10%"
printf '\n%s bytes of %s-byte files, %s reads/s from %s threads, %s cycles of two %ss windows\n' \
    "$BYTES" "$SIZE" "$READ_RATE" "$CONC" "$DONE" "$SECS"
MEDIAN=$(echo "$PER_CYCLE" | tr ' ' '\n' | sed -n 's/x$//p' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.2fx", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
printf 'reads: idle %s, during %s; p50 idle %s ms, during %s ms\n' \
    "$(wc -l <"$WORK/idle.samples")" "$(wc -l <"$WORK/busy.samples")" \
    "$(pctl "$WORK/idle.samples" 0.5)" "$(pctl "$WORK/busy.samples" 0.5)"
printf 'p99 ratio of each cycle (rebalance window / the idle window before it):%s; median %s\n' \
    "$PER_CYCLE" "$MEDIAN"
