#!/bin/bash
# http.sh - `make bench-http`: HTTP GET of the dataserver's origin vs nginx
# serving the same images as plain files (docs/performance.md, row 3).
#
# Starts its own cluster (1 nameserver, 2 dataservers, replication 2, so the
# dataserver under test holds every block locally) in a temporary folder on
# random loopback ports, uploads BENCH_HTTP_FILES images of BENCH_HTTP_SIZE
# bytes, downloads them once over HTTP into one file per image, and serves
# that folder with nginx (Debian's package; sendfile and open_file_cache on,
# one worker: the dataserver serves HTTP from one loop thread) run in the
# foreground with its own configuration. Then, in the same run and with a
# hot page cache, wrk with 64 keep-alive connections asks each server for
# images picked at random from the whole set (bench/http_urls.lua), and the
# requests/s, p99 and their ratio are printed. Finally the page cache is
# dropped (when allowed) and a few hundred distinct images are fetched one
# by one to count the disk reads one cold GET costs.
#
# HTTPS rows: when the `openssl` command is there (and BENCH_HTTPS is not
# 0), a self-signed certificate for 127.0.0.1 is made in the folder, the
# dataserver under test also serves --https with it and nginx gets a TLS
# server (TLS 1.2/1.3, same files, same worker); wrk (which does not check
# certificates) runs the same load against both over TLS.
#
# Everything it starts is stopped and the folder removed on exit, Ctrl-C
# included; BENCH_KEEP=1 keeps the folder. Tunables (environment):
# BENCH_HTTP_FILES (10000), BENCH_HTTP_SIZE (51200), BENCH_HTTP_CONNS (64),
# BENCH_HTTP_SECS (10), BENCH_HTTP_THREADS (2), BENCH_HTTP_COLD (300),
# BENCH_NGINX_WORKERS (1), BENCH_DIR (parent folder, /tmp); BENCH_HTTP_PERF=FILE
# records a perf profile of the dataserver during its wrk run into FILE.
set -u

BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
FILES=${BENCH_HTTP_FILES:-10000}
SIZE=${BENCH_HTTP_SIZE:-51200}
CONNS=${BENCH_HTTP_CONNS:-64}
SECS=${BENCH_HTTP_SECS:-10}
THREADS=${BENCH_HTTP_THREADS:-2}
COLD=${BENCH_HTTP_COLD:-300}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-1}
NDS=2
REPLICAS=2

log() { echo "bench-http: $*" >&2; }

for t in nginx wrk curl; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || {
        log "$t missing: run scripts/install-deps.sh --bench"
        exit 1
    }
done
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
HTTPS_ON=${BENCH_HTTPS:-1}
command -v openssl >/dev/null 2>&1 || HTTPS_ON=0

WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/imgstore-bench-http.XXXXXX") || exit 1
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need_bins "$BIN" make nameserver dataserver imgstore ds-admin

# wrk_run NAME URL: wrk against URL; leaves "rps p99_ms errors" in $WORK/NAME.res.
wrk_run() {
    wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" --latency -s "$HERE/http_urls.lua" "$2" \
        -- "$WORK/paths" >"$WORK/$1.wrk" 2>&1
    local rps p99 errs
    rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$WORK/$1.wrk")
    p99=$(sed -n 's/^p99_us=\([0-9]*\).*/\1/p' "$WORK/$1.wrk")
    errs=$(sed -n 's/^errors=\([0-9]*\).*/\1/p' "$WORK/$1.wrk")
    awk -v r="${rps:-0}" -v p="${p99:-0}" -v e="${errs:-?}" \
        'BEGIN { printf "%.0f %.3f %s\n", r, p / 1000, e }' >"$WORK/$1.res"
}

mkdir -p "$WORK/log" "$WORK/ns" "$WORK/files" "$WORK/nginx"
chmod 755 "$WORK" "$WORK/files" # nginx's worker may run as another user

# ---- the cluster --------------------------------------------------------------
start_ns --replicas $REPLICAS --safe-mode-timeout-ms 0
HTTP=""
DS_PID=""
TLS_ARGS=()
if [ "$HTTPS_ON" = 1 ]; then
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >"$WORK/log/openssl.log" 2>&1 ||
        { log "openssl failed: $(tail -n 3 "$WORK/log/openssl.log")"; KEEP=1; exit 1; }
    chmod 600 "$WORK/tls/key.pem"
    free_port
    HTTPS=127.0.0.1:$PORT
    TLS_ARGS=(--https "$HTTPS" --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem")
fi
for i in $(seq $NDS); do
    if [ -z "$HTTP" ]; then
        start_ds "$i" "${TLS_ARGS[@]}"
        HTTP=$DS_ADDR_HTTP
        DS_PID=$LAST
    else
        start_ds "$i"
    fi
done
wait_up $NDS

log "uploading $FILES x $SIZE B into the cluster (nameserver $NS, dataserver http $HTTP)"
"$BIN/imgstore" --ns "$NS" bench -n "$FILES" --size "$SIZE" --duration 0 \
    --save-names "$WORK/names" >"$WORK/upload.out" 2>&1 ||
    { log "upload failed: $(tail -n 3 "$WORK/upload.out")"; KEEP=1; exit 1; }
cut -d' ' -f1 "$WORK/names" | sed 's|^|/|' >"$WORK/paths"
NPATHS=$(wc -l <"$WORK/paths")

log "copying the $NPATHS images over HTTP into one file each for nginx"
awk -v h="$HTTP" -v d="$WORK/files" \
    '{ printf "url = \"http://%s%s\"\noutput = \"%s%s\"\n", h, $1, d, $1 }' "$WORK/paths" \
    >"$WORK/curl.cfg"
curl -s -f -K "$WORK/curl.cfg" || { log "download failed"; KEEP=1; exit 1; }
NGOT=$(find "$WORK/files" -type f -size "${SIZE}c" | wc -l)
[ "$NGOT" = "$NPATHS" ] || { log "only $NGOT of $NPATHS files downloaded"; KEEP=1; exit 1; }

# ---- nginx ----------------------------------------------------------------------
free_port
NGX_PORT=$PORT
NGX_TLS=""
if [ "$HTTPS_ON" = 1 ]; then
    free_port
    NGX_TLS_PORT=$PORT
    NGX_TLS="server {
        listen 127.0.0.1:$NGX_TLS_PORT ssl;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $WORK/files;
        location / { }
    }"
fi
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/log/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=20000 inactive=120s;
    open_file_cache_valid 120s;
    open_file_cache_errors on;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $WORK/files;
        location / { }
    }
    $NGX_TLS
}
EOF
start nginx "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/log/nginx.log"
for i in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NGX_PORT$(head -n 1 "$WORK/paths")")
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { log "nginx does not serve the files; see $WORK/log/nginx.log"; KEEP=1; exit 1; }

# ---- hot cache: wrk against both ---------------------------------------------
log "warming the page cache (block files, image files, one short wrk run each)"
cat "$WORK"/ds1/blocks/*.blk "$WORK"/files/* >/dev/null 2>&1
SECS_SAVED=$SECS
SECS=2
wrk_run warm-img "http://$HTTP"
wrk_run warm-ngx "http://127.0.0.1:$NGX_PORT"
SECS=$SECS_SAVED
log "wrk: $CONNS connections, $THREADS threads, ${SECS}s each, random images of $NPATHS"
PERF_PID=""
if [ -n "${BENCH_HTTP_PERF:-}" ]; then # profile the dataserver under the wrk load
    perf record -g -p "$DS_PID" -o "$BENCH_HTTP_PERF" -- sleep "$SECS" >/dev/null 2>&1 &
    PERF_PID=$!
fi
wrk_run img "http://$HTTP"
[ -z "$PERF_PID" ] || wait "$PERF_PID"
wrk_run ngx "http://127.0.0.1:$NGX_PORT"
read -r IMG_RPS IMG_P99 IMG_ERR <"$WORK/img.res"
read -r NGX_RPS NGX_P99 NGX_ERR <"$WORK/ngx.res"
if [ "$HTTPS_ON" = 1 ]; then
    log "wrk over TLS: the same load against $HTTPS and nginx's TLS port"
    wrk_run img-tls "https://$HTTPS"
    wrk_run ngx-tls "https://127.0.0.1:$NGX_TLS_PORT"
    read -r IMGT_RPS IMGT_P99 IMGT_ERR <"$WORK/img-tls.res"
    read -r NGXT_RPS NGXT_P99 NGXT_ERR <"$WORK/ngx-tls.res"
fi

# ---- cold cache: disk reads per GET --------------------------------------------
DEV=$(df --output=source "$WORK/ds1" | tail -n 1)
DEV=$(basename "$(readlink -f "$DEV")")
STAT=/sys/class/block/$DEV/stat
COLD_LINE="cold GET: not measured (BENCH_HTTP_COLD=0, or the page cache cannot be dropped here)"
if [ "$COLD" -gt 0 ] && [ -r "$STAT" ] && can_drop; then
    # Distinct images spread over the set, none read since the drop.
    awk -v n="$COLD" -v t="$NPATHS" 'BEGIN { srand(7) } { a[NR] = $1 }
        END { step = int(t / n); if (step < 1) step = 1
              for (i = 1; i <= t && c < n; i += step) { print a[i]; c++ } }' "$WORK/paths" \
        >"$WORK/cold.paths"
    NCOLD=$(wc -l <"$WORK/cold.paths")
    awk -v h="$HTTP" '{ printf "url = \"http://%s%s\"\noutput = \"/dev/null\"\n", h, $1 }' \
        "$WORK/cold.paths" >"$WORK/cold.cfg"
    log "cold cache: page cache dropped, $NCOLD distinct images fetched one by one"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    # curl, awk and the shell's own files are read back in before the count.
    curl -s -o /dev/null "http://$HTTP/healthz"
    awk '{ print $1 }' "$STAT" >/dev/null
    sleep 1
    io0=$(awk '/^read_bytes/ { print $2 }' "/proc/$DS_PID/io")
    d0=$(awk '{ print $1, $3 }' "$STAT")
    t0=$(date +%s%N)
    curl -s -f -K "$WORK/cold.cfg" || log "some cold GETs failed"
    t1=$(date +%s%N)
    d1=$(awk '{ print $1, $3 }' "$STAT")
    io1=$(awk '/^read_bytes/ { print $2 }' "/proc/$DS_PID/io")
    COLD_LINE=$(awk -v a="$d0" -v b="$d1" -v i0="$io0" -v i1="$io1" -v n="$NCOLD" \
        -v ms="$(( (t1 - t0) / 1000000 ))" -v dev="$DEV" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "cold GET, %d distinct images: %.2f disk reads per GET (%s: %d reads, %.0f KiB), " \
               "dataserver read_bytes %.0f KiB per GET, %.2f ms per GET",
               n, (y[1] - x[1]) / n, dev, y[1] - x[1], (y[2] - x[2]) * 512 / 1024,
               (i1 - i0) / n / 1024, ms / n }')
fi

# ---- the result --------------------------------------------------------------------
echo
echo "imgstore bench-http - $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r)"
echo "$NPATHS images of $SIZE B; wrk -t$THREADS -c$CONNS -d${SECS}s, random image per request, hot cache;"
echo "nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') ($NGINX_WORKERS worker, sendfile, open_file_cache) vs one dataserver loop"
echo
{
    echo "figure|imgstore|nginx|ratio|goal"
    echo "HTTP GET requests/s (errors $IMG_ERR/$NGX_ERR)|$IMG_RPS|$NGX_RPS|$(awk -v a="$IMG_RPS" -v b="$NGX_RPS" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')|>= 1.00x"
    echo "HTTP GET p99 ms|$IMG_P99|$NGX_P99|$(awk -v a="$IMG_P99" -v b="$NGX_P99" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')|lower is better"
    if [ "$HTTPS_ON" = 1 ]; then
        echo "HTTPS GET requests/s (errors $IMGT_ERR/$NGXT_ERR)|$IMGT_RPS|$NGXT_RPS|$(awk -v a="$IMGT_RPS" -v b="$NGXT_RPS" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')|>= 1.00x"
        echo "HTTPS GET p99 ms|$IMGT_P99|$NGXT_P99|$(awk -v a="$IMGT_P99" -v b="$NGXT_P99" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')|lower is better"
    fi
} | column -t -s '|'
echo "$COLD_LINE (goal: 1 read per GET)"
