#!/bin/bash
# ec.sh - erasure coding of sealed blocks (`make bench-ec`, also run by
# `make bench`; docs/performance.md "Erasure coding").
#
# One cluster: 1 nameserver, 6 dataservers (replication 2, BENCH_EC_BLOCK_MB
# = 16 MiB blocks), then a 7th for the rebuild. BENCH_EC_FILES (6000) files
# of BENCH_EC_SIZE (20000) bytes are uploaded; the files of the sealed
# blocks are read for BENCH_EC_SECS (5) seconds with 8 threads while the
# blocks are replicated (the baseline), then every sealed block is encoded
# 4+2 (`ds-admin ec encode --all-sealed`) and the same files are read again
# from the shards; then the holder of the first stripe's data shard 0 is
# killed and they are read once more (degraded: the files of the lost data
# shards are rebuilt on each read); last a 7th dataserver is started and the
# time until every stripe is whole again is measured. The encoding
# throughput of one core comes from bench/ec_tool.c (ISA-L, no disk).
# Rows: raw/logical bytes (4+2 vs replication 2), reads/s and p99 (encoded vs
# replicated), degraded p99 vs normal, encoding MB/s (one core; and the
# cluster's end-to-end conversion rate), rebuild time of a lost server's
# shards. BENCH_KEEP=1 keeps the folder.
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BBIN=${BENCH_BIN:-$(pwd)/build/bench}
FILES=${BENCH_EC_FILES:-6000}
SIZE=${BENCH_EC_SIZE:-20000}
SECS=${BENCH_EC_SECS:-5}
BLOCK_MB=${BENCH_EC_BLOCK_MB:-16}
CONC=8
NDS=6
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/imgstore-ec.XXXXXX") || exit 1
KEEP=${BENCH_KEEP:-0}
ROWS=""

log() { echo "bench-ec: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

need_bins "$BIN" make nameserver dataserver imgstore ds-admin
need_bins "$BBIN" "make bench-ec" ec_tool
mkdir -p "$WORK/log"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }
row() { ROWS="$ROWS$1|$2|$3|$4|$5"$'\n'; }
admin() { "$BIN/ds-admin" --ns "$NS" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# all_whole: every sealed block's 6 shards are on up servers, reported (file bytes known).
all_whole() {
    local id n
    for id in $SEALED; do
        n=$(admin --json block "$id" |
            jq '[.shards[]? | select(.up and (.bad | not) and .file_bytes > 0)] | length')
        [ "$n" -ge 6 ] || return 1
    done
}

# ---- the cluster ----------------------------------------------------------------
start_ns --replicas 2 --safe-mode-timeout-ms 0 --block-size $((BLOCK_MB << 20))
declare -A DS_PID DS_LISTEN
for i in $(seq $NDS); do
    start_ds "$i"
    DS_PID[$i]=$LAST
done
wait_up $NDS
log "cluster: $NDS dataservers, ${BLOCK_MB} MiB blocks, in $WORK"

log "uploading $FILES x $SIZE B"
"$BIN/imgstore" --ns "$NS" bench -n "$FILES" -c $CONC --size "$SIZE" --duration 0 --json \
    --save-names "$WORK/names.all" >"$WORK/upload.json" || exit 1
SEALED=$(admin --json blocks --state sealed | jq -r '.blocks[].block_id')
NSEALED=$(echo "$SEALED" | grep -c .)
[ "$NSEALED" -gt 0 ] || { log "no sealed block: raise BENCH_EC_FILES"; KEEP=1; exit 1; }
# shellcheck disable=SC2086 # ids are words
"$BBIN/ec_tool" filter $SEALED <"$WORK/names.all" >"$WORK/names"
NREAD=$(wc -l <"$WORK/names")
log "$NSEALED sealed blocks, $NREAD of their files"
FACTOR_REPL=$(admin --json status | jnum storage_factor)

read_run() { # OUT: reads of the sealed blocks' files for SECS s
    "$BIN/imgstore" --ns "$NS" bench -c $CONC --names "$WORK/names" --duration "$SECS" \
        --json >"$WORK/$1.json" || { log "reads failed ($1)"; KEEP=1; exit 1; }
}
log "reading them while replicated"
read_run repl

# ---- encoding ----------------------------------------------------------------------
admin set ec 4+2 >/dev/null
LOGICAL=0
t0=$(now_ms)
admin ec encode --all-sealed >/dev/null || { log "ec encode failed"; KEEP=1; exit 1; }
for _ in $(seq 1500); do
    all_whole && break
    sleep 0.1
done
ENC_MS=$(( $(now_ms) - t0 ))
admin --json status >"$WORK/status-ec.json"
LOGICAL=$(jnum ec_logical_bytes <"$WORK/status-ec.json")
FACTOR_EC=$(jnum ec_storage_factor <"$WORK/status-ec.json")
# the replicated copies go once the stripes are recorded
for _ in $(seq 300); do
    left=0
    for id in $SEALED; do
        ls "$WORK"/ds*/blocks/"$(printf %016x "$id")".blk >/dev/null 2>&1 && left=1
    done
    [ $left = 0 ] && break
    sleep 0.2
done
log "$NSEALED blocks encoded 4+2 in $ENC_MS ms; reading them from the shards"
read_run ec

# ---- degraded: the holder of data shard 0 of the first stripe killed ---------------
FIRST=$(echo "$SEALED" | head -n 1)
ADDR=$(admin --json block "$FIRST" | jq -r '.shards[]? | select(.index == 0) | .address')
VICTIM=""
for i in $(seq $NDS); do
    grep -q -- "--listen $ADDR " "$WORK/log/ds$i.log" 2>/dev/null && VICTIM=$i
done
if [ -z "$VICTIM" ]; then
    for i in $(seq $NDS); do
        tr '\0' ' ' <"/proc/${DS_PID[$i]}/cmdline" | grep -q -- "--listen $ADDR " && VICTIM=$i
    done
fi
[ -n "$VICTIM" ] || { log "no dataserver at $ADDR"; KEEP=1; exit 1; }
log "killing ds$VICTIM ($ADDR), the holder of data shard 0 of block $FIRST"
kill -9 "${DS_PID[$VICTIM]}"
read_run degraded

# ---- rebuild of the lost server's shards on a new one --------------------------------
start_ds 7
t0=$(now_ms)
whole=0
for _ in $(seq 3000); do
    all_whole && { whole=1; break; }
    sleep 0.1
done
REBUILD_MS=$(( $(now_ms) - t0 ))
[ $whole = 1 ] || REBUILD_MS="not done in 300 s"

# ---- CPU ------------------------------------------------------------------------------
"$BBIN/ec_tool" encode 256 >"$WORK/cpu.out"
CPU42=$(sed -n 's/^4+2 //p' "$WORK/cpu.out")
CPU63=$(sed -n 's/^6+3 //p' "$WORK/cpu.out")
CPU104=$(sed -n 's/^10+4 //p' "$WORK/cpu.out")

# ---- rows ------------------------------------------------------------------------------
R=$WORK/repl.json
E=$WORK/ec.json
D=$WORK/degraded.json
row "raw bytes per logical byte, $NSEALED sealed blocks of ${BLOCK_MB} MiB (4+2 vs replication 2)" \
    "$FACTOR_EC" "$FACTOR_REPL" "$(ratio "$FACTOR_EC" "$FACTOR_REPL")" "<= 1.52 (vs 2.0)"
row "reads/s of their $NREAD files, hot, c=$CONC (encoded vs replicated)" \
    "$(fmt "$(jget "$E" read ops_per_s)" %.0f)" "$(fmt "$(jget "$R" read ops_per_s)" %.0f)" \
    "$(ratio "$(jget "$E" read ops_per_s)" "$(jget "$R" read ops_per_s)")" ">= 0.95x"
row "read p99 ms (encoded vs replicated)" "$(jget "$E" read p99)" "$(jget "$R" read p99)" \
    "$(ratio "$(jget "$E" read p99)" "$(jget "$R" read p99)")" "<= 1.1x"
row "degraded read p99 ms, one data shard's server down (vs normal encoded)" \
    "$(jget "$D" read p99)" "$(jget "$E" read p99)" \
    "$(ratio "$(jget "$D" read p99)" "$(jget "$E" read p99)")" "<= 5x"
row "degraded reads/s (vs normal encoded)" "$(fmt "$(jget "$D" read ops_per_s)" %.0f)" \
    "$(fmt "$(jget "$E" read ops_per_s)" %.0f)" \
    "$(ratio "$(jget "$D" read ops_per_s)" "$(jget "$E" read ops_per_s)")" "-"
row "encoding MB/s, one core, ISA-L (4+2 / 6+3 / 10+4)" "$CPU42 / $CPU63 / $CPU104" "-" "-" \
    "disk-bound, not CPU"
row "conversion of $NSEALED blocks, MB/s end to end (read, encode, 6 shard writes, fsync)" \
    "$(awk -v b="$LOGICAL" -v ms="$ENC_MS" 'BEGIN { printf "%.1f", (ms > 0 ? b / 1e6 / (ms / 1000) : 0) }')" \
    "-" "-" "-"
row "rebuild of a lost server's $NSEALED shards on a new server, ms" "$REBUILD_MS" "-" "-" \
    "lower is better"

echo
echo "imgstore bench-ec - $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo
{
    echo "figure|imgstore|baseline|ratio|goal"
    printf '%s' "$ROWS"
} | column -t -s '|'
