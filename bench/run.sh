#!/bin/bash
# run.sh - the imgstore performance suite behind `make bench` (docs/performance.md).
#
# Starts its own cluster (1 nameserver, 3 dataservers, replication 2) in a
# temporary folder on random loopback ports, measures every row against a
# baseline run in the same invocation on the same disk, and prints one table.
# Everything it starts is stopped and the folder removed on exit, Ctrl-C
# included. BENCH_KEEP=1 keeps the folder (logs, raw JSON).
#
# Tunables (environment): BENCH_FILES (10000), BENCH_CONC (8), BENCH_SIZE
# (51200), BENCH_READ_SECS (10), BENCH_SMALL_1M (1000000), BENCH_SMALL_10M
# (10000000), BENCH_RESTARTS (3: restarts per page-cache state, median
# reported), BENCH_NS_BLOCKS (1000000), BENCH_DIR (parent folder, /tmp).
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BBIN=${BENCH_BIN:-$(pwd)/build/bench}
FILES=${BENCH_FILES:-10000}
CONC=${BENCH_CONC:-8}
SIZE=${BENCH_SIZE:-51200}
READ_SECS=${BENCH_READ_SECS:-10}
SMALL_1M=${BENCH_SMALL_1M:-1000000}
SMALL_10M=${BENCH_SMALL_10M:-10000000}
RESTARTS=${BENCH_RESTARTS:-3}
NS_BLOCKS=${BENCH_NS_BLOCKS:-1000000}
REPLICAS=2
NDS=3

WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/imgstore-bench.XXXXXX") || exit 1
KEEP=${BENCH_KEEP:-0}
ROWS=""

log() { echo "bench: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# jget FILE PHASE KEY: a number from a bench --json document.

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }

# row FIGURE IMGSTORE BASELINE RATIO GOAL
row() { ROWS="$ROWS$1|$2|$3|$4|$5"$'\n'; }

mkdir -p "$WORK/log"
need_bins "$BIN" make nameserver dataserver imgstore ds-admin
need_bins "$BBIN" "make bench" baseline_files mkblocks dsprobe nsload
T0=$(date +%s)

# ---- the cluster -------------------------------------------------------------
start_ns --replicas $REPLICAS --safe-mode-timeout-ms 0
NS_PID=$LAST
DS_HTTP=""
DS_PIDS=""
for i in $(seq $NDS); do
    start_ds "$i"
    [ -n "$DS_HTTP" ] || DS_HTTP=$DS_ADDR_HTTP
    DS_PIDS="$DS_PIDS $LAST"
done
log "cluster: nameserver $NS, $NDS dataservers, replication $REPLICAS, in $WORK"
wait_up $NDS

# ---- rows 1 and 2: uploads and random reads vs one file per image -----------
COMMON="-n $FILES -c $CONC --size $SIZE --duration $READ_SECS --json"
log "1/7 uploading $FILES x $SIZE B with $CONC threads, then reading for ${READ_SECS}s (imgstore)"
"$BIN/imgstore" --ns "$NS" bench $COMMON --save-names "$WORK/names.img" >"$WORK/img.json"
log "1/7 the same against one file per image in $WORK/files"
"$BBIN/baseline_files" --dir "$WORK/files" $COMMON --save-names "$WORK/names.files" \
    >"$WORK/files.json"

I=$WORK/img.json
F=$WORK/files.json
row "uploads/s, ${SIZE} B, repl $REPLICAS, fsync'd, c=$CONC (errors $(jerr "$I" upload)/$(jerr "$F" upload))" \
    "$(fmt "$(jget "$I" upload ops_per_s)" %.0f)" "$(fmt "$(jget "$F" upload ops_per_s)" %.0f)" \
    "$(ratio "$(jget "$I" upload ops_per_s)" "$(jget "$F" upload ops_per_s)")" "higher is better"
row "upload p99 ms" "$(jget "$I" upload p99)" "$(jget "$F" upload p99)" \
    "$(ratio "$(jget "$I" upload p99)" "$(jget "$F" upload p99)")" "lower is better"
row "random reads/s, hot cache (errors $(jerr "$I" read)/$(jerr "$F" read))" \
    "$(fmt "$(jget "$I" read ops_per_s)" %.0f)" "$(fmt "$(jget "$F" read ops_per_s)" %.0f)" \
    "$(ratio "$(jget "$I" read ops_per_s)" "$(jget "$F" read ops_per_s)")" "higher is better"
row "read p99 ms, hot" "$(jget "$I" read p99)" "$(jget "$F" read p99)" \
    "$(ratio "$(jget "$I" read p99)" "$(jget "$F" read p99)")" "lower is better"

if can_drop; then
    log "2/7 cold reads: every file once, page cache dropped before each run"
    drop_caches
    "$BIN/imgstore" --ns "$NS" bench -c $CONC --names "$WORK/names.img" --reads "$FILES" \
        --json >"$WORK/img-cold.json"
    drop_caches
    "$BBIN/baseline_files" --dir "$WORK/files" -c $CONC --names "$WORK/names.files" \
        --reads "$FILES" --json >"$WORK/files-cold.json"
    I=$WORK/img-cold.json
    F=$WORK/files-cold.json
    row "random reads/s, cold cache (errors $(jerr "$I" read)/$(jerr "$F" read))" \
        "$(fmt "$(jget "$I" read ops_per_s)" %.0f)" "$(fmt "$(jget "$F" read ops_per_s)" %.0f)" \
        "$(ratio "$(jget "$I" read ops_per_s)" "$(jget "$F" read ops_per_s)")" "higher is better"
    row "read p99 ms, cold" "$(jget "$I" read p99)" "$(jget "$F" read p99)" \
        "$(ratio "$(jget "$I" read p99)" "$(jget "$F" read p99)")" "lower is better"
else
    row "random reads, cold cache" "cold: not possible on this machine" "-" "-" "-"
fi

# ---- row 7: disk bytes per file beyond the image -----------------------------
NSTORED=$(wc -l <"$WORK/names.img")
PAYLOAD=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/names.img")
DISK=$(find "$WORK"/ds* -name '*.blk' -o -name '*.idx' | xargs stat -c %s | awk '{ s += $1 } END { print s + 0 }')
IMG_OVER=$(awk -v d="$DISK" -v r=$REPLICAS -v p="$PAYLOAD" -v n="$NSTORED" \
    'BEGIN { printf "%.1f", (d / r - p) / n }')
FSTORED=$(wc -l <"$WORK/names.files")
FPAYLOAD=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/names.files")
FDISK=$(du -s -B1 "$WORK/files" | cut -f1)
FILE_OVER=$(awk -v d="$FDISK" -v p="$FPAYLOAD" -v n="$FSTORED" 'BEGIN { printf "%.1f", (d - p) / n }')
DISK_ROW_ARGS=("disk B/file beyond the image (blk+idx per replica; baseline: du)" "$IMG_OVER" \
    "$FILE_OVER" "$(ratio "$IMG_OVER" "$FILE_OVER")" "<= 40")

# ---- row 3: HTTP GET ---------------------------------------------------------
NAME1=$(head -n 1 "$WORK/names.img" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$DS_HTTP/$NAME1" 2>/dev/null)
if [ "$code" = 200 ] && [ -x bench/http.sh ]; then
    log "3/7 HTTP GET vs nginx: make bench-http"
    row "HTTP GET vs nginx" "see make bench-http output above" "-" "-" "-"
    make -s bench-http >&2 || true
else
    row "HTTP GET vs nginx" "n/a (HTTP origin not built yet)" "-" "-" "-"
fi

# ---- row 9: compressed storage (SVG/BMP/TIFF corpus) -----------------------------
if [ -x bench/zstd.sh ] && [ -d /usr/share/openclipart/svg ]; then
    log "9: compressed storage on openclipart-svg: make bench-zstd"
    row "compressed storage (SVG, BMP, TIFF)" "see make bench-zstd output above" "-" "-" "-"
    make -s bench-zstd >&2 || true
else
    row "compressed storage" "n/a (openclipart-svg not installed)" "-" "-" "-"
fi

# ---- row 10: restart with packed indexes vs plain ones ----------------------------
if [ -x bench/index_pack.sh ]; then
    log "10: restart with packed indexes vs plain: make bench-index-pack"
    row "restart, packed vs plain indexes" "see make bench-index-pack output above" "-" "-" "-"
    make -s bench-index-pack >&2 || true
fi

# ---- row 11: erasure coding 4+2 vs replication 2 ----------------------------------
if [ -x bench/ec.sh ]; then
    log "11: erasure coding 4+2 vs replication 2: make bench-ec"
    row "erasure coding 4+2 vs replication 2" "see make bench-ec output above" "-" "-" "-"
    make -s bench-ec >&2 || true
fi

# ---- row 8: the cost of authentication -----------------------------------------
# The same uploads and reads against fresh clusters like row 1's, with keys
# (as every cluster here) and with --insecure, alternating on, off, on, off;
# each figure is the mean of its two runs.
for pid in $DS_PIDS $NS_PID; do stop_pid "$pid"; done
rm -rf "$WORK/files" "$WORK"/ds? # free the disk for the small-file datasets

AUTH_FILES=${BENCH_AUTH_FILES:-3000}
ACOMMON="-n $AUTH_FILES -c $CONC --size $SIZE --duration 5 --json"
OUTER=$WORK
OUTER_AUTH=$AUTH_ARGS
# auth_run on|off N: one fresh cluster, one bench run into $OUTER/auth-MODE-N.json.
auth_run() {
    local pids="" i key=$IMGSTORE_KEY_FILE
    WORK=$OUTER/auth-$1-$2
    mkdir -p "$WORK/log"
    if [ "$1" = on ]; then AUTH_ARGS=$OUTER_AUTH; else AUTH_ARGS=--insecure key=""; fi
    log "8: $AUTH_FILES uploads and 5 s of reads, authentication $1 (run $2)"
    start_ns --replicas $REPLICAS --safe-mode-timeout-ms 0
    pids=$LAST
    for i in $(seq $NDS); do
        start_ds "$i"
        pids="$pids $LAST"
    done
    wait_up $NDS
    IMGSTORE_KEY_FILE=$key "$BIN/imgstore" --ns "$NS" bench $ACOMMON >"$OUTER/auth-$1-$2.json"
    for i in $pids; do stop_pid "$i"; done
    rm -rf "$WORK"
    WORK=$OUTER
    AUTH_ARGS=$OUTER_AUTH
}
auth_run on 1
auth_run off 1
auth_run on 2
auth_run off 2
# amean MODE PHASE KEY: the mean of the two runs' figures.
amean() {
    awk -v a="$(jget "$WORK/auth-$1-1.json" "$2" "$3")" -v b="$(jget "$WORK/auth-$1-2.json" "$2" "$3")" \
        'BEGIN { printf "%.0f", (a + b) / 2 }'
}
aerr() { echo $(( $(jerr "$WORK/auth-$1-1.json" "$2") + $(jerr "$WORK/auth-$1-2.json" "$2") )); }
row "uploads/s, authentication on vs off, mean of 2 each (errors $(aerr on upload)/$(aerr off upload))" \
    "$(amean on upload ops_per_s)" "$(amean off upload ops_per_s)" \
    "$(ratio "$(amean on upload ops_per_s)" "$(amean off upload ops_per_s)")" ">= 0.97x"
row "random reads/s, authentication on vs off, mean of 2 each (errors $(aerr on read)/$(aerr off read))" \
    "$(amean on read ops_per_s)" "$(amean off read ops_per_s)" \
    "$(ratio "$(amean on read ops_per_s)" "$(amean off read ops_per_s)")" ">= 0.97x"

# ---- rows 4 and 5: dataserver RAM per file and restart with small files -----
mkdir -p "$WORK/empty"
free_port
EMPTY_ADDR=127.0.0.1:$PORT
free_port
start ds-empty "$BIN/dataserver" --ns 127.0.0.1:1 --listen "$EMPTY_ADDR" \
    --http "127.0.0.1:$PORT" --data "$WORK/empty" $AUTH_ARGS
EMPTY_PID=$LAST
sleep 1.5
RSS_EMPTY=$(rss_kb "$EMPTY_PID")
stop_pid "$EMPTY_PID"

# The probed dataservers report to a nameserver of their own: a dataserver
# serves reads only once a nameserver out of safe mode has answered its full
# report, so the time to the first read includes that answer, as in a real
# restart.
free_port
PROBE_NS=127.0.0.1:$PORT
mkdir -p "$WORK/ns-probe"
start ns-probe "$BIN/nameserver" --listen "$PROBE_NS" --data "$WORK/ns-probe" --replicas 1 \
    --safe-mode-timeout-ms 0 $AUTH_ARGS

# probe DIR NAME: starts a dataserver on DIR, prints "pid=P first_read_ms=M".
probe() {
    local addr http
    free_port
    addr=127.0.0.1:$PORT
    free_port
    http=127.0.0.1:$PORT
    "$BBIN/dsprobe" --addr "$addr" --name "$2" --log "$WORK/log/ds-small.log" -- \
        "$BIN/dataserver" --ns "$PROBE_NS" --listen "$addr" --http "$http" \
        --data "$1" $AUTH_ARGS
}

# restart_once DIR NAME [cold]: restarts the dataserver on DIR until it serves
# NAME (dsprobe), stops it, then times a cat of its .idx files (the floor),
# after dropping the page cache again when "cold"; leaves the two times in ms
# in $RESTART_MS and $FLOOR_MS.
restart_once() {
    local out pid s
    out=$(probe "$1" "$2") || exit 1
    RESTART_MS=$(echo "$out" | sed 's/.*first_read_ms=//')
    pid=${out#pid=}
    pid=${pid%% *}
    PIDS="$PIDS $pid"
    stop_pid "$pid"
    [ "${3:-}" != cold ] || drop_caches
    s=$(date +%s%N)
    cat "$1"/blocks/*.idx >/dev/null
    FLOOR_MS=$(( ($(date +%s%N) - s) / 1000000 ))
}

# median N...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# restarts DIR NAME [cold]: $RESTARTS restarts (restart_once); the medians
# of their times and of their floors in $RESTART_MS and $FLOOR_MS, every
# time in $RESTART_ALL.
restarts() {
    local k ts="" fs=""
    for k in $(seq "$RESTARTS"); do
        [ "${3:-}" != cold ] || drop_caches
        restart_once "$@"
        ts="$ts $RESTART_MS"
        fs="$fs $FLOOR_MS"
    done
    RESTART_ALL=$ts
    # shellcheck disable=SC2086 # lists of numbers
    RESTART_MS=$(median $ts)
    # shellcheck disable=SC2086
    FLOOR_MS=$(median $fs)
}

declare -A RAM RESTART_HOT RESTART_COLD FLOOR_HOT FLOOR_COLD
for n in $SMALL_1M $SMALL_10M; do
    d=$WORK/small$n
    log "4/7 writing $n small files with mkblocks"
    "$BBIN/mkblocks" --dir "$d" --files "$n" >"$d.out" || exit 1
    sync # a restart happens long after the writes: no writeback in the figures
    name=$(sed -n 's/^name=//p' "$d.out")
    out=$(probe "$d" "$name") || exit 1
    pid=${out#pid=}
    pid=${pid%% *}
    PIDS="$PIDS $pid"
    sleep 1
    r=$(rss_kb "$pid")
    RAM[$n]=$(awk -v a="$r" -v b="$RSS_EMPTY" -v n="$n" 'BEGIN { printf "%.2f", (a - b) * 1024 / n }')
    stop_pid "$pid"
    log "5/7 restarting the dataserver holding $n files (hot page cache), $RESTARTS times"
    restarts "$d" "$name"
    log "5/7 restart ms:$RESTART_ALL (median $RESTART_MS, floor $FLOOR_MS)"
    RESTART_HOT[$n]=$RESTART_MS
    FLOOR_HOT[$n]=$FLOOR_MS
    if can_drop; then
        log "5/7 restarting it with a cold page cache, $RESTARTS times"
        restarts "$d" "$name" cold
        log "5/7 cold restart ms:$RESTART_ALL (median $RESTART_MS, floor $FLOOR_MS)"
        RESTART_COLD[$n]=$RESTART_MS
        FLOOR_COLD[$n]=$FLOOR_MS
    else
        RESTART_COLD[$n]="not possible"
        FLOOR_COLD[$n]="-"
    fi
    [ "$n" = "$SMALL_10M" ] || rm -rf "$d"
done
for n in $SMALL_1M $SMALL_10M; do
    row "dataserver RAM B/file, $n files of 8 B (VmRSS - empty $RSS_EMPTY kB)" "${RAM[$n]}" "8 (index entry)" \
        "$(ratio "${RAM[$n]}" 8)" "<= 5"
done
n=$SMALL_10M
row "dataserver restart to first read, $n files, hot ms (baseline: cat of the .idx files)" \
    "${RESTART_HOT[$n]}" "${FLOOR_HOT[$n]}" "$(ratio "${RESTART_HOT[$n]}" "${FLOOR_HOT[$n]}")" "<= 3x"
row "dataserver restart to first read, $n files, cold ms" "${RESTART_COLD[$n]}" "${FLOOR_COLD[$n]}" \
    "$(ratio "${RESTART_COLD[$n]}" "${FLOOR_COLD[$n]}")" "<= 3x"
rm -rf "$WORK/small$SMALL_10M"

# ---- row 6: nameserver RAM per block, lookups/s ------------------------------
log "6/7 nameserver: restart with 1 M blocks: full reports from 8 fake dataservers, then LOOKUPs"
free_port
NS2=127.0.0.1:$PORT
mkdir -p "$WORK/ns2"
# The fakes first introduce themselves, so that the restarted nameserver
# knows them and holds safe mode until all have reported, as after a restart.
# (nsload's fake dataservers send raw heartbeats without a key: --insecure.)
start ns2 "$BIN/nameserver" --listen "$NS2" --data "$WORK/ns2" --replicas $REPLICAS \
    --safe-mode-timeout-ms 0 --insecure
NS2_PID=$LAST
sleep 0.5
"$BBIN/nsload" --ns "$NS2" --ns-pid "$NS2_PID" --blocks "$NS_BLOCKS" --servers 8 \
    --replicas $REPLICAS --register-only >"$WORK/nsload.out"
stop_pid "$NS2_PID"
start ns2 "$BIN/nameserver" --listen "$NS2" --data "$WORK/ns2" --replicas $REPLICAS \
    --safe-mode-timeout-ms 120000 --insecure
NS2_PID=$LAST
sleep 0.5
"$BBIN/nsload" --ns "$NS2" --ns-pid "$NS2_PID" --blocks "$NS_BLOCKS" --servers 8 \
    --replicas $REPLICAS --duration 5 -c 2 >"$WORK/nsload.out"
stop_pid "$NS2_PID"
NSB=$(sed -n 's/.*ns_bytes_per_block=\([0-9.]*\).*/\1/p' "$WORK/nsload.out")
LPS=$(sed -n 's/.*lookups_per_s=\([0-9.]*\).*/\1/p' "$WORK/nsload.out")
LERR=$(sed -n 's/.*lookup_errors=\([0-9]*\).*/\1/p' "$WORK/nsload.out")
row "nameserver RAM B/block, $NS_BLOCKS blocks x $REPLICAS replicas (VmRSS delta)" "$NSB" \
    "190 (docs/nameserver.md estimate)" "$(ratio "$NSB" 190)" "grows with blocks only"
row "block-location LOOKUPs/s, 1 id each, 2 threads (errors ${LERR:-?})" "$LPS" "-" "-" \
    "higher is better"
row "${DISK_ROW_ARGS[0]}" "${DISK_ROW_ARGS[1]}" "${DISK_ROW_ARGS[2]}" "${DISK_ROW_ARGS[3]}" \
    "${DISK_ROW_ARGS[4]}"

# ---- the table -----------------------------------------------------------------
echo
echo "imgstore bench - $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/^Mem/ { print $2 }') GiB RAM, kernel $(uname -r), $(( $(date +%s) - T0 )) s"
echo
{
    echo "figure|imgstore|baseline|ratio|goal"
    printf '%s' "$ROWS"
} | column -t -s '|'
