#!/bin/bash
# index_pack.sh - restart to first read with packed indexes vs plain ones, in
# the same run (`make bench-index-pack`, also run by `make bench`;
# docs/performance.md, docs/storage.md "Packed index").
#
# bench/mkblocks writes BENCH_PACK_FILES (10,000,000) files of 8 B into
# sealed blocks of a data folder; a dataserver of a nameserver of its own is
# started on it by bench/dsprobe until its first read of a known file, with
# the page cache dropped before each start (hot when that is not allowed).
# The first start reads the plain index files and packs them; then restarts
# with the packed copies, and restarts with them removed (each such start
# packs them again: its time includes that), alternating, BENCH_PACK_RUNS (2)
# each. Per start: ms to the first read and the dataserver's read_bytes.
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BBIN=${BENCH_BIN:-$(pwd)/build/bench}
N=${BENCH_PACK_FILES:-10000000}
RUNS=${BENCH_PACK_RUNS:-2}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/imgstore-pack.XXXXXX") || exit 1
KEEP=${BENCH_KEEP:-0}

log() { echo "bench-index-pack: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

need_bins "$BIN" make nameserver dataserver
need_bins "$BBIN" "make bench" mkblocks dsprobe
mkdir -p "$WORK/log" "$WORK/ns"
AUTH_ARGS=--insecure
free_port
NS=127.0.0.1:$PORT
start ns "$BIN/nameserver" --listen "$NS" --data "$WORK/ns" --replicas 1 --safe-mode-timeout-ms 0 \
    --insecure
D=$WORK/data
log "writing $N files of 8 B with mkblocks"
"$BBIN/mkblocks" --dir "$D" --files "$N" >"$WORK/mkblocks.out" || exit 1
NAME=$(sed -n 's/^name=//p' "$WORK/mkblocks.out")
sync
COLD=hot
can_drop && COLD=cold

# start_once: prints "MS BYTES" of one start (page cache dropped first).
start_once() {
    local addr http out pid rb
    can_drop || true
    free_port
    addr=127.0.0.1:$PORT
    free_port
    http=127.0.0.1:$PORT
    out=$("$BBIN/dsprobe" --addr "$addr" --name "$NAME" --log "$WORK/log/ds.log" -- \
        "$BIN/dataserver" --ns "$NS" --listen "$addr" --http "$http" --data "$D" --insecure) ||
        { KEEP=1; log "dataserver did not serve (log in $WORK/log)"; exit 1; }
    pid=${out#pid=}
    pid=${pid%% *}
    rb=$(awk '/^read_bytes/ { print $2 }' "/proc/$pid/io")
    stop_pid "$pid"
    echo "${out##*first_read_ms=} $rb"
}

IDX=$(cat "$D"/blocks/*.idx | wc -c)
FIRST=$(start_once)
IDZ=$(cat "$D"/blocks/*.idz 2>/dev/null | wc -c)
PACKED=""
PLAIN=""
for k in $(seq "$RUNS"); do
    PACKED="$PACKED $(start_once | tr ' ' '/')"
    rm -f "$D"/blocks/*.idz
    PLAIN="$PLAIN $(start_once | tr ' ' '/')"
done
echo
echo "imgstore bench-index-pack - $(date -u '+%Y-%m-%d %H:%M UTC'), $N files of 8 B, $COLD page cache"
echo
{
    echo "figure|packed|plain (same run)|ratio"
    echo "index bytes on disk (.idz vs .idx)|$IDZ|$IDX|$(awk -v a="$IDZ" -v b="$IDX" 'BEGIN { printf "%.4f", a / b }')"
    echo "first start (plain, packs): ms/read_bytes|-|$(echo "$FIRST" | tr ' ' '/')|-"
    echo "restarts: ms/read_bytes each|$PACKED|$PLAIN (packs again)|-"
} | column -t -s '|'
