#!/bin/bash
# zstd.sh - compressed storage on a real corpus (`make bench-zstd`, also run
# by `make bench`; docs/performance.md "Compressed storage").
#
# The corpus: the first BENCH_ZSTD_FILES (300) SVG files over 4 KiB of
# Debian's openclipart-svg package (sorted by path), and BMP and TIFF
# (uncompressed, 256x256) rendered by ImageMagick from the first
# BENCH_ZSTD_IMAGES (40) of them. Nothing of it is committed: the package is
# installed by scripts/install-deps.sh --bench.
#
# Three clusters in the same run, one after the other, on the same disk: 1
# nameserver and 2 dataservers (replication 2, so every GET is served from
# local disk), the first with the dataservers' default compression, the
# second at --compress-level 9, the third with --compress-level 0 (every
# upload stored as sent: the baseline). For each:
# the corpus uploaded by 4 `imgstore put` processes (files/s), the block
# files' growth per type (disk bytes per replica vs raw bytes), then wrk
# against one dataserver's HTTP origin over the SVGs, without and with
# Accept-Encoding: zstd (requests/s, bytes per GET), and the dataservers'
# longest loop stall (imgstore_ds_loop_stall_max_seconds). Last, a repair:
# a third dataserver joins, the second is killed (SIGKILL), and the nameserver
# has the first copy every block to the third; the copies' bytes on the wire
# against the block bytes they carried (imgstore_ds_copy_*_bytes_total of
# source and target) and the seconds until no block is under-replicated. A
# reference column: each SVG compressed alone by the zstd command at -3 (the
# issue's 32 %) and at the dataserver's level.
#
# Tunables: BENCH_ZSTD_FILES, BENCH_ZSTD_IMAGES, BENCH_ZSTD_SECS (5, each
# wrk run), BENCH_ZSTD_LEVEL (the compressed cluster's --compress-level;
# empty: the dataserver's default), BENCH_DIR (parent folder, /tmp),
# BENCH_KEEP=1 keeps the folder.
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
NFILES=${BENCH_ZSTD_FILES:-300}
NIMG=${BENCH_ZSTD_IMAGES:-40}
SECS=${BENCH_ZSTD_SECS:-5}
LEVEL=${BENCH_ZSTD_LEVEL:-}
SRC=${BENCH_ZSTD_SRC:-/usr/share/openclipart/svg}
CONC=4
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/imgstore-zstd.XXXXXX") || exit 1
KEEP=${BENCH_KEEP:-0}

log() { echo "bench-zstd: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

need_bins "$BIN" make nameserver dataserver imgstore ds-admin
for t in wrk zstd curl; do
    command -v $t >/dev/null || { log "$t missing: scripts/install-deps.sh --bench"; exit 1; }
done
[ -d "$SRC" ] || { log "$SRC missing: scripts/install-deps.sh --bench (openclipart-svg)"; exit 1; }
mkdir -p "$WORK/log" "$WORK/img"

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.1f %%", 100 * a / b; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
sum_sizes() { xargs -r stat -c %s | awk '{ s += $1 } END { print s + 0 }'; }

# ---- the corpus -----------------------------------------------------------------
find "$SRC" -name '*.svg' -size +4k | LC_ALL=C sort | head -n "$NFILES" >"$WORK/svg.list"
n_svg=$(wc -l <"$WORK/svg.list")
[ "$n_svg" -gt 0 ] || { log "no SVG over 4 KiB in $SRC"; exit 1; }
RAW_SVG=$(sum_sizes <"$WORK/svg.list")
# ImageMagick: a real one (a stand-in `convert` may come first in PATH).
IM=""
for c in magick convert-im6.q16 convert; do
    if "$c" -version 2>/dev/null | grep -q ImageMagick; then IM=$c; break; fi
done
: >"$WORK/bmp.list"
: >"$WORK/tif.list"
if [ -n "$IM" ]; then
    k=0
    head -n "$NIMG" "$WORK/svg.list" | while read -r f; do
        k=$((k + 1))
        "$IM" -background white -resize 256x256 "$f" "$WORK/img/$k.bmp" 2>/dev/null &&
            echo "$WORK/img/$k.bmp" >>"$WORK/bmp.list"
        "$IM" -background white -resize 256x256 "$f" -compress none "$WORK/img/$k.tif" 2>/dev/null &&
            echo "$WORK/img/$k.tif" >>"$WORK/tif.list"
    done
else
    log "ImageMagick missing (scripts/install-deps.sh --bench): SVG only"
fi
RAW_BMP=$(sum_sizes <"$WORK/bmp.list")
RAW_TIF=$(sum_sizes <"$WORK/tif.list")
log "corpus: $n_svg SVG ($RAW_SVG B), $(wc -l <"$WORK/bmp.list") BMP ($RAW_BMP B), $(wc -l <"$WORK/tif.list") TIFF ($RAW_TIF B)"

# Each SVG alone through the zstd command: the reference.
zref() { while read -r f; do zstd "-$1" -c "$f" | wc -c; done <"$WORK/svg.list" | awk '{ s += $1 } END { print s }'; }
Z3=$(zref 3)
REF_LEVEL=${LEVEL:-17}
ZL=$(zref "$REF_LEVEL")

# ---- one cluster per mode ----------------------------------------------------------
blk_bytes() { find "$WORK"/ds*/blocks -name '*.blk' 2>/dev/null | sum_sizes; }

# put_group LIST MIME: uploads LIST's files with CONC processes; the names
# (one per line) appended to $WORK/MODE.names; prints the seconds taken.
put_group() {
    local list=$1 mime=$2 t0 t1 i p pids=""
    [ -s "$list" ] || { echo 0; return; }
    split -n "r/$CONC" "$list" "$WORK/part."
    t0=$(date +%s.%N)
    for i in "$WORK"/part.*; do
        xargs -a "$i" "$BIN/imgstore" --ns "$NS" put --mime "$mime" >"$i.names" 2>>"$WORK/log/put.err" &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p"; done # not the servers
    t1=$(date +%s.%N)
    cat "$WORK"/part.*.names >>"$WORK/$MODE.$(basename "$list" .list).names"
    rm -f "$WORK"/part.*
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

# wrk_run NAME [HEADER]: wrk over the SVG paths; leaves "rps bytes_per_get errors".
wrk_run() {
    local out=$WORK/$1.wrk
    if [ -n "${2:-}" ]; then
        wrk -t 2 -c 16 -d "${SECS}s" -H "$2" -s "$HERE/http_urls.lua" "http://$DS_HTTP" \
            -- "$WORK/$MODE.paths" >"$out" 2>&1
    else
        wrk -t 2 -c 16 -d "${SECS}s" -s "$HERE/http_urls.lua" "http://$DS_HTTP" \
            -- "$WORK/$MODE.paths" >"$out" 2>&1
    fi
    awk '/^Requests\/sec:/ { rps = $2 }
         / requests in / { n = $1; b = $5; m = 1
                           if (b ~ /KB$/) m = 1024; if (b ~ /MB$/) m = 1048576
                           if (b ~ /GB$/) m = 1073741824; sub(/[KMG]?B$/, "", b); bytes = b * m }
         /^errors=/ { split($0, e, "="); err = e[2] }
         END { printf "%.0f %.0f %d\n", rps, (n > 0 ? bytes / n : 0), err }' "$out"
}

stall_ms() {
    local m=0 v a
    for a in $DS_HTTPS_ALL; do
        v=$(curl -s "http://$a/metrics" |
            awk '/^imgstore_ds_loop_stall_max_seconds / { printf "%.1f", $2 * 1000 }')
        m=$(awk -v a="$m" -v b="${v:-0}" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$m"
}

# copy_bytes HTTP_ADDR sent|received wire|raw: a dataserver's copy counter.
copy_bytes() {
    curl -s "http://$1/metrics" |
        awk -v m="imgstore_ds_copy_$2_bytes_total{form=\"$3\"}" '$1 == m { printf "%.0f", $2 }'
}

# repair_run MODE_ARGS...: ds3 joins, ds2 is killed, waits (up to 300 s) until
# no block is under-replicated and ds3 received what ds1 sent; sets
# ${MODE}_REP="wire raw seconds" (n/a when it did not end).
repair_run() {
    local i st t0 t1 sw sr rw rr ok=0
    rm -rf "$WORK/ds3"
    start_ds 3 "$@"
    local p3=$LAST ds3=$DS_ADDR_HTTP ds1=$DS_HTTP
    wait_up 3
    log "$MODE: ds2 killed; repair onto ds3"
    kill -KILL "$DS2_PID"
    t0=$(date +%s.%N)
    for i in $(seq 1500); do
        st=$("$BIN/ds-admin" --ns "$NS" --json status 2>/dev/null)
        sw=$(copy_bytes "$ds1" sent wire)
        sr=$(copy_bytes "$ds1" sent raw)
        rw=$(copy_bytes "$ds3" received wire)
        rr=$(copy_bytes "$ds3" received raw)
        if [ "$(echo "$st" | jnum servers_up)" = 2 ] &&
            [ "$(echo "$st" | jnum blocks_under_replicated)" = 0 ] &&
            [ "${rr:-0}" -gt 0 ] && [ "$sw" = "$rw" ] && [ "$sr" = "$rr" ]; then
            ok=1
            break
        fi
        sleep 0.2
    done
    t1=$(date +%s.%N)
    if [ $ok = 1 ]; then
        eval "${MODE}_REP=\"$rw $rr $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')\""
    else
        log "$MODE: the repair did not end in 300 s (logs kept)"
        KEEP=1
        eval "${MODE}_REP=\"n/a n/a n/a\""
    fi
    stop_pid "$p3"
}

run_mode() {
    MODE=$1
    shift
    local pids="" i b0 b1 b2 b3 t
    start_ns --replicas 2 --safe-mode-timeout-ms 0
    pids=$LAST
    DS_HTTP=""
    DS_HTTPS_ALL=""
    for i in 1 2; do
        rm -rf "$WORK/ds$i"
        start_ds "$i" "$@"
        pids="$pids $LAST"
        [ "$i" = 2 ] && DS2_PID=$LAST
        [ -n "$DS_HTTP" ] || DS_HTTP=$DS_ADDR_HTTP
        DS_HTTPS_ALL="$DS_HTTPS_ALL $DS_ADDR_HTTP"
    done
    wait_up 2
    sleep 1 # a heartbeat answer: the record format every dataserver writes
    b0=$(blk_bytes)
    put_group "$WORK/svg.list" image/svg+xml >"$WORK/t"
    t=$(cat "$WORK/t")
    b1=$(blk_bytes)
    put_group "$WORK/bmp.list" image/bmp >/dev/null
    b2=$(blk_bytes)
    put_group "$WORK/tif.list" image/tiff >/dev/null
    b3=$(blk_bytes)
    eval "${MODE}_UP_S=$t"
    eval "${MODE}_SVG=$(((b1 - b0) / 2))"
    eval "${MODE}_BMP=$(((b2 - b1) / 2))"
    eval "${MODE}_TIF=$(((b3 - b2) / 2))"
    sed 's|^|/|' "$WORK/$MODE.svg.names" >"$WORK/$MODE.paths"
    log "$MODE: uploads done ($(wc -l <"$WORK/$MODE.svg.names") SVG names); wrk ${SECS}s x 3"
    wrk_run "$MODE-warm" >/dev/null
    eval "${MODE}_ID=\"$(wrk_run "$MODE-id")\""
    eval "${MODE}_ZS=\"$(wrk_run "$MODE-zstd" "Accept-Encoding: zstd")\""
    eval "${MODE}_STALL=$(stall_ms)"
    repair_run "$@"
    for i in $pids; do stop_pid "$i"; done
}

log "cluster 1: compression on (--compress-level ${LEVEL:-default})"
run_mode on ${LEVEL:+--compress-level $LEVEL}
log "cluster 2: compression at level 9 (--compress-level 9)"
run_mode l9 --compress-level 9
log "cluster 3: compression off (--compress-level 0)"
run_mode off --compress-level 0

f() { echo "$1" | cut -d' ' -f"$2"; }
echo
echo "imgstore bench-zstd - $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $n_svg SVG over 4 KiB of openclipart-svg ($RAW_SVG B), BMP/TIFF from $NIMG of them"
echo
ups() { awk -v n="$n_svg" -v t="$1" 'BEGIN { if (t + 0 > 0) printf "%.0f", n / t; else print "n/a" }'; }
{
    echo "figure|compression on (${LEVEL:-default})|level 9|off (baseline)|on vs off|goal"
    echo "SVG: disk bytes per replica / raw bytes|$(pct "$on_SVG" "$RAW_SVG")|$(pct "$l9_SVG" "$RAW_SVG")|$(pct "$off_SVG" "$RAW_SVG")|-|<= 30 %"
    echo "SVG: each file alone, zstd command -$REF_LEVEL / -3|$(pct "$ZL" "$RAW_SVG")|-|$(pct "$Z3" "$RAW_SVG")|-|reference"
    echo "BMP 256x256: disk / raw|$(pct "$on_BMP" "$RAW_BMP")|$(pct "$l9_BMP" "$RAW_BMP")|$(pct "$off_BMP" "$RAW_BMP")|-|-"
    echo "TIFF 256x256: disk / raw|$(pct "$on_TIF" "$RAW_TIF")|$(pct "$l9_TIF" "$RAW_TIF")|$(pct "$off_TIF" "$RAW_TIF")|-|-"
    echo "SVG uploads/s, $CONC processes, repl 2|$(ups "$on_UP_S")|$(ups "$l9_UP_S")|$(ups "$off_UP_S")|$(ratio "$off_UP_S" "$on_UP_S")|-"
    echo "HTTP GET/s, no Accept-Encoding (on: decoded)|$(f "$on_ID" 1)|$(f "$l9_ID" 1)|$(f "$off_ID" 1)|$(ratio "$(f "$on_ID" 1)" "$(f "$off_ID" 1)")|-"
    echo "HTTP GET/s, Accept-Encoding: zstd|$(f "$on_ZS" 1)|$(f "$l9_ZS" 1)|$(f "$off_ZS" 1)|$(ratio "$(f "$on_ZS" 1)" "$(f "$off_ZS" 1)")|>= 1.0x"
    echo "HTTP bytes per GET with zstd (headers included)|$(f "$on_ZS" 2)|$(f "$l9_ZS" 2)|$(f "$off_ZS" 2)|$(pct "$(f "$on_ZS" 2)" "$(f "$off_ZS" 2)")|<= 35 %"
    echo "wrk errors (identity, zstd)|$(f "$on_ID" 3), $(f "$on_ZS" 3)|$(f "$l9_ID" 3), $(f "$l9_ZS" 3)|$(f "$off_ID" 3), $(f "$off_ZS" 3)|-|0"
    echo "longest loop stall, ms (either dataserver)|$on_STALL|$l9_STALL|$off_STALL|-|-"
    echo "repair of a lost server: block bytes copied|$(f "$on_REP" 2)|$(f "$l9_REP" 2)|$(f "$off_REP" 2)|-|-"
    echo "repair: bytes on the wire / block bytes copied|$(pct "$(f "$on_REP" 1)" "$(f "$on_REP" 2)")|$(pct "$(f "$l9_REP" 1)" "$(f "$l9_REP" 2)")|$(pct "$(f "$off_REP" 1)" "$(f "$off_REP" 2)")|-|-"
    echo "repair: seconds until none under-replicated|$(f "$on_REP" 3)|$(f "$l9_REP" 3)|$(f "$off_REP" 3)|-|-"
} | column -t -s '|'
