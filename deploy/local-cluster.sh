#!/bin/sh
# local-cluster.sh - a local imgstore cluster on loopback, for trying things.
#
#   deploy/local-cluster.sh start    start 1 nameserver + 3 dataservers (idempotent)
#   deploy/local-cluster.sh start --ha  the same with high availability: a local
#                                    etcd (var/etcd, client port 127.0.0.1:7470) and
#                                    2 nameservers (7400 leads first, 7401 stands by)
#   deploy/local-cluster.sh stop     stop them (SIGTERM, then SIGKILL after 5 s)
#   deploy/local-cluster.sh status   which processes run, and `ds-admin status`
#   deploy/local-cluster.sh demo     put a small PNG, get it back, compare it
#
# Everything lives under ./var of the repository: var/ns and var/ds1..3 hold
# the data, var/log/*.log the server logs, var/run/*.pid the process ids.
# `start` returns once every dataserver is up, ready (/readyz) and answers a
# GET of a small probe file (var/probe-name) that the first start uploads.
# The nameserver listens on 127.0.0.1:7400 (its status page and /metrics on
# http://127.0.0.1:7480/; with --ha the second one's on 127.0.0.1:7479),
# the dataservers on 127.0.0.1:7411-7413
# (native protocol) and 127.0.0.1:7481-7483 (HTTP); files get 2 replicas.
# IMGSTORE_BIN overrides the folder of the binaries (default build/bin);
# IMGSTORE_LOCAL_VAR the folder of everything (default ./var);
# IMGSTORE_LOCAL_PORT the nameserver's port (default 7400), every other port
# keeping its distance to it (a second cluster, or a test, beside the first).
# With --ha, var/ha marks the cluster as one: stop, status and demo then
# use both nameservers (--ns 127.0.0.1:7400,127.0.0.1:7401); a plain start
# removes the mark (the data folders stay; etcd keeps the cluster id and the
# block-id high-water mark in var/etcd).
# Keys (docs/security.md): the first start writes var/keys (mode 0600) with
# a member key (the servers'), an operator key and a writer key, and one
# client key file per role: var/operator.key (ds-admin changes),
# var/writer.key (put, rm, HTTP uploads). Reads need no key.
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BIN=${IMGSTORE_BIN:-$ROOT/build/bin}
VAR=${IMGSTORE_LOCAL_VAR:-$ROOT/var}
P=${IMGSTORE_LOCAL_PORT:-7400}
case $P in '' | *[!0-9]*) echo "local-cluster: IMGSTORE_LOCAL_PORT is not a number" >&2; exit 2 ;; esac
[ "$P" -ge 1024 ] && [ "$P" -le 65400 ] ||
    { echo "local-cluster: IMGSTORE_LOCAL_PORT must lie in 1024..65400" >&2; exit 2; }
NS1_ADDR=127.0.0.1:$P
NS_ADDR=$NS1_ADDR
NS2_ADDR=127.0.0.1:$((P + 1))
NS_HTTP=127.0.0.1:$((P + 80))  # the nameserver's --http: /metrics, /status.json, the status page
NS2_HTTP=127.0.0.1:$((P + 79))
ETCD_ADDR=127.0.0.1:$((P + 70))
ETCD_PEER=127.0.0.1:$((P + 69))
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
HA_MARK=$VAR/ha
[ -f "$HA_MARK" ] && NS_ADDR=$NS_ADDR,$NS2_ADDR
REPLICAS=2
NDS=3
START_TIMEOUT=20 # seconds
STOP_TIMEOUT=5   # seconds

ds_port() { echo $((P + 10 + $1)); }
ds_http() { echo $((P + 80 + $1)); }

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

check_bins() {
    for b in nameserver dataserver imgstore ds-admin; do
        [ -x "$BIN/$b" ] || die "$BIN/$b is missing; run 'make' first"
    done
}

# running NAME BINARY: true when var/run/NAME.pid names a live process of BINARY.
running() {
    pidf=$VAR/run/$1.pid
    [ -f "$pidf" ] || return 1
    pid=$(cat "$pidf" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be our binary.
    [ -r "/proc/$pid/cmdline" ] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$2" || return 1
}

# The binary of a process name: ns, ns2 -> nameserver, etcd -> etcd, else
# dataserver.
bin_of() {
    case $1 in
    ns | ns2) echo nameserver ;;
    etcd) echo etcd ;;
    *) echo dataserver ;;
    esac
}

# launch NAME BINARY ARGS...: starts a server in the background, detached
# from the terminal, with its output in var/log/NAME.log.
launch() {
    name=$1
    shift
    if running "$name" "$1"; then
        echo "$name already running (pid $(cat "$VAR/run/$name.pid"))"
        return 0
    fi
    bin=$1
    shift
    path=$BIN/$bin
    [ "$bin" = etcd ] && path=$ETCD_BIN
    echo "==== $(date '+%F %T') starting $bin $*" >>"$VAR/log/$name.log"
    nohup "$path" "$@" </dev/null >>"$VAR/log/$name.log" 2>&1 &
    echo $! >"$VAR/run/$name.pid"
    echo "started $name (pid $!)"
}

show_logs() {
    for f in "$VAR"/log/*.log; do
        [ -f "$f" ] || continue
        echo "----- last 20 lines of $f -----" >&2
        tail -n 20 "$f" >&2
    done
}

# JSON is read with python3's json module (never grepped): json_count_up
# counts the servers whose "state" is "up" in `ds-admin --json servers` on
# stdin (0 when it is not that array); json_field KEY prints the string
# member KEY of the object on stdin (nothing when absent or not JSON).
json_count_up() {
    python3 -c 'import json, sys
try:
    doc = json.load(sys.stdin)
    print(sum(1 for s in doc if isinstance(s, dict) and s.get("state") == "up"))
except (ValueError, TypeError):
    print(0)'
}
json_field() {
    python3 -c 'import json, sys
try:
    v = json.load(sys.stdin).get(sys.argv[1])
    if isinstance(v, str):
        print(v)
except (ValueError, AttributeError):
    pass' "$1"
}

# Counts the dataservers the nameserver reports "up".
count_up() {
    out=$("$BIN/ds-admin" --ns "$NS_ADDR" --json servers 2>/dev/null) || {
        echo 0
        return
    }
    echo "$out" | json_count_up
}

# True when every dataserver's /readyz answers 200: a nameserver has confirmed
# its view, so it serves its local copies (docs/http.md).
all_ready() {
    i=1
    while [ $i -le $NDS ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$(ds_http $i)/readyz" 2>/dev/null)
        [ "$code" = 200 ] || return 1
        i=$((i + 1))
    done
}

# The probe file: a small file the first start uploads (its name kept in
# var/probe-name). Each start returns only when an HTTP GET of it answers 200
# on every dataserver, the ones that hold it and the ones that fetch it from
# a replica, so the cluster that start hands over serves reads everywhere.
PROBE_FILE=$VAR/probe-name

# http_code PORT PATH: the status code of a GET (000 when nothing answered).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" 2>/dev/null
}

wait_probe_read() {
    if [ -s "$PROBE_FILE" ]; then
        probe=$(cat "$PROBE_FILE")
    else
        printf 'imgstore local-cluster probe\n' >"$VAR/probe.txt"
        tries=$((START_TIMEOUT * 5))
        until probe=$("$BIN/imgstore" --ns "$NS_ADDR" --key-file "$WRITER_KEY" put --mime text/plain "$VAR/probe.txt" 2>"$VAR/log/probe.err"); do
            tries=$((tries - 1))
            [ $tries -gt 0 ] || {
                cat "$VAR/log/probe.err" >&2
                die "could not upload the probe file; see $VAR/log/*.log"
            }
            sleep 0.2
        done
        rm -f "$VAR/probe.txt"
        echo "$probe" >"$PROBE_FILE"
    fi
    printf "waiting for a read of %s on every dataserver" "$probe"
    tries=$((START_TIMEOUT * 5))
    while [ $tries -gt 0 ]; do
        ok=0
        i=1
        while [ $i -le $NDS ]; do
            code=$(http_code "$(ds_http $i)" "/$probe")
            case $code in
            200) ok=$((ok + 1)) ;;
            410)
                # The probe was deleted (by hand): make a new one, once.
                [ "${1:-}" = again ] && break
                rm -f "$PROBE_FILE"
                echo " (the probe was deleted; making a new one)"
                wait_probe_read again
                return
                ;;
            esac
            i=$((i + 1))
        done
        if [ $ok -eq $NDS ]; then
            echo " ok"
            return 0
        fi
        printf "."
        sleep 0.2
        tries=$((tries - 1))
    done
    echo
    echo "local-cluster: the probe file was not readable on every dataserver after ${START_TIMEOUT}s" >&2
    show_logs
    exit 1
}

# The keys: var/keys for the servers, var/<role>.key for clients, made once
# with 256 random bits each and readable by the owner only.
KEYS=$VAR/keys
OPERATOR_KEY=$VAR/operator.key
WRITER_KEY=$VAR/writer.key

secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

make_keys() {
    [ -s "$KEYS" ] && [ -s "$OPERATOR_KEY" ] && [ -s "$WRITER_KEY" ] && return 0
    (
        umask 077
        m=$(secret) && o=$(secret) && w=$(secret) || exit 1
        printf '# imgstore keys: ROLE NAME SECRET (docs/security.md)\nmember member1 %s\noperator ops %s\nwriter app %s\n' \
            "$m" "$o" "$w" >"$KEYS" &&
            printf 'operator ops %s\n' "$o" >"$OPERATOR_KEY" &&
            printf 'writer app %s\n' "$w" >"$WRITER_KEY"
    ) || die "cannot write $KEYS"
    echo "wrote $KEYS (servers), $OPERATOR_KEY (ds-admin changes) and $WRITER_KEY (put, rm, HTTP uploads); mode 0600"
}

# The writer key's secret: the bearer token of HTTP uploads and deletes.
writer_secret() { awk '!/^#/ && NF { print $NF; exit }' "$WRITER_KEY"; }

# Starts the local etcd and waits until it answers (HA mode).
start_etcd() {
    [ -x "$ETCD_BIN" ] || die "$ETCD_BIN is missing; run scripts/install-deps.sh (etcd-server)"
    mkdir -p "$VAR/etcd" || die "cannot create $VAR/etcd"
    launch etcd etcd --name local --data-dir "$VAR/etcd/data" \
        --listen-client-urls "http://$ETCD_ADDR" --advertise-client-urls "http://$ETCD_ADDR" \
        --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
        --initial-cluster "local=http://$ETCD_PEER" --log-level warn
    tries=$((START_TIMEOUT * 5))
    until curl -s --max-time 1 "http://$ETCD_ADDR/health" 2>/dev/null | grep -q true; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || {
            show_logs
            die "etcd did not answer on $ETCD_ADDR"
        }
        sleep 0.2
    done
    echo "etcd answers on $ETCD_ADDR"
}

cmd_start() {
    check_bins
    mkdir -p "$VAR/ns" "$VAR/log" "$VAR/run" || die "cannot create $VAR"
    make_keys
    if [ "${1:-}" = --ha ]; then
        touch "$HA_MARK"
        NS_ADDR=$NS1_ADDR,$NS2_ADDR
        start_etcd
        ha="--etcd $ETCD_ADDR --safe-mode-timeout-ms 3000"
        # shellcheck disable=SC2086 # ha is split on purpose
        launch ns nameserver --listen "$NS1_ADDR" --http "$NS_HTTP" --data "$VAR/ns" \
            --replicas "$REPLICAS" --keys "$KEYS" $ha
        mkdir -p "$VAR/ns2"
        # shellcheck disable=SC2086
        launch ns2 nameserver --listen "$NS2_ADDR" --http "$NS2_HTTP" --data "$VAR/ns2" \
            --replicas "$REPLICAS" --keys "$KEYS" $ha
    else
        rm -f "$HA_MARK"
        NS_ADDR=$NS1_ADDR
        launch ns nameserver --listen "$NS_ADDR" --http "$NS_HTTP" --data "$VAR/ns" \
            --replicas "$REPLICAS" --keys "$KEYS"
    fi
    i=1
    while [ $i -le $NDS ]; do
        mkdir -p "$VAR/ds$i"
        launch "ds$i" dataserver --ns "$NS_ADDR" --listen "127.0.0.1:$(ds_port $i)" \
            --http "127.0.0.1:$(ds_http $i)" --data "$VAR/ds$i" --keys "$KEYS"
        i=$((i + 1))
    done
    printf "waiting for %d dataservers to be up" "$NDS"
    tries=$((START_TIMEOUT * 5))
    while [ $tries -gt 0 ]; do
        if [ "$(count_up)" -ge "$NDS" ] && all_ready; then
            echo " ok"
            wait_probe_read
            echo "cluster up: nameserver(s) $NS_ADDR, dataservers 127.0.0.1:$(ds_port 1)-$(ds_port $NDS) (HTTP $(ds_http 1)-$(ds_http $NDS))"
            echo "status page: http://$NS_HTTP/ (metrics: http://$NS_HTTP/metrics)"
            echo "client keys: $WRITER_KEY (put, rm, HTTP uploads), $OPERATOR_KEY (ds-admin changes); use --key-file or IMGSTORE_KEY_FILE"
            return 0
        fi
        for name in $(names); do
            bin=$(bin_of "$name")
            if ! running "$name" "$bin"; then
                echo
                echo "local-cluster: $name exited during start-up" >&2
                show_logs
                exit 1
            fi
        done
        printf "."
        sleep 0.2
        tries=$((tries - 1))
    done
    echo
    echo "local-cluster: the cluster was not up after ${START_TIMEOUT}s" >&2
    "$BIN/ds-admin" --ns "$NS_ADDR" servers >&2 2>&1
    show_logs
    exit 1
}

# The processes of this cluster, in start order.
names() {
    if [ -f "$HA_MARK" ]; then echo etcd ns ns2 ds1 ds2 ds3; else echo ns ds1 ds2 ds3; fi
}

cmd_stop() {
    [ -d "$VAR/run" ] || {
        echo "nothing to stop"
        return 0
    }
    pids=""
    for f in "$VAR"/run/*.pid; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .pid)
        bin=$(bin_of "$name")
        if running "$name" "$bin"; then
            pid=$(cat "$f")
            kill -TERM "$pid" 2>/dev/null && echo "stopping $name (pid $pid)"
            pids="$pids $pid"
        fi
        rm -f "$f"
    done
    [ -n "$pids" ] || {
        echo "nothing running"
        return 0
    }
    tries=$((STOP_TIMEOUT * 10))
    while [ $tries -gt 0 ]; do
        alive=""
        for pid in $pids; do
            kill -0 "$pid" 2>/dev/null && alive="$alive $pid"
        done
        [ -z "$alive" ] && {
            echo "stopped"
            return 0
        }
        sleep 0.1
        tries=$((tries - 1))
    done
    for pid in $alive; do
        echo "pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null
    done
    echo "stopped"
}

cmd_status() {
    for name in $(names); do
        bin=$(bin_of "$name")
        if running "$name" "$bin"; then
            echo "$name: running (pid $(cat "$VAR/run/$name.pid"))"
        else
            echo "$name: not running"
        fi
    done
    [ -x "$BIN/ds-admin" ] || die "$BIN/ds-admin is missing; run 'make' first"
    "$BIN/ds-admin" --ns "$NS_ADDR" status
}

# A 1x1 PNG, small enough to embed.
PNG_B64=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==

cmd_demo() {
    check_bins
    tmp=$(mktemp -d) || die "mktemp failed"
    trap 'rm -rf "$tmp"' EXIT
    echo "$PNG_B64" | base64 -d >"$tmp/sample.png" || die "cannot decode the sample PNG"
    echo "\$ imgstore --ns $NS_ADDR --key-file var/writer.key put sample.png"
    tries=10
    while :; do
        name=$("$BIN/imgstore" --ns "$NS_ADDR" --key-file "$WRITER_KEY" put "$tmp/sample.png") && break
        tries=$((tries - 1))
        [ $tries -gt 0 ] || die "put failed; see $VAR/log/*.log"
        sleep 0.5
    done
    echo "$name"
    echo "\$ imgstore --ns $NS_ADDR get $name -o copy.png"
    "$BIN/imgstore" --ns "$NS_ADDR" get "$name" -o "$tmp/copy.png" || die "get failed"
    cmp "$tmp/sample.png" "$tmp/copy.png" || die "the copy differs from the original"
    echo "copy.png is identical to sample.png ($(wc -c <"$tmp/sample.png") bytes)"
    echo "\$ imgstore --ns $NS_ADDR stat $name"
    "$BIN/imgstore" --ns "$NS_ADDR" stat "$name"
    echo "\$ curl -s http://127.0.0.1:$(ds_http 1)/healthz"
    curl -s "http://127.0.0.1:$(ds_http 1)/healthz" || echo "(curl failed)"
    echo "\$ curl -s -H \"Authorization: Bearer <the writer key's secret>\" -H 'Content-Type: image/png' --data-binary @sample.png http://127.0.0.1:$(ds_http 1)/"
    json=$(curl -s -H "Authorization: Bearer $(writer_secret)" -H 'Content-Type: image/png' \
        --data-binary @"$tmp/sample.png" "http://127.0.0.1:$(ds_http 1)/") || json=""
    echo "$json"
    hname=$(echo "$json" | json_field name)
    if [ -n "$hname" ]; then
        echo "\$ curl -sI http://127.0.0.1:$(ds_http 3)/$hname.png"
        curl -sI "http://127.0.0.1:$(ds_http 3)/$hname.png" || echo "(curl failed)"
        curl -s -o "$tmp/http.png" "http://127.0.0.1:$(ds_http 2)/$hname.png" &&
            cmp -s "$tmp/sample.png" "$tmp/http.png" && echo "GET over HTTP returned identical bytes"
    else
        echo "(HTTP upload failed; see $VAR/log/*.log)"
    fi
    cat <<EOF

The cluster keeps running. Try:
  export IMGSTORE_NS=$NS_ADDR
  export IMGSTORE_KEY_FILE=$WRITER_KEY   # put and rm need the writer key
  $BIN/imgstore put some.jpg            # prints the new file's name
  $BIN/imgstore get NAME -o copy.jpg
  $BIN/ds-admin servers
  $BIN/ds-admin status
  $BIN/ds-admin --key-file $OPERATOR_KEY readonly ID on   # changes need the operator key
Logs are in var/log/, data in var/ns and var/ds1..3.
Stop it with:  make stop   (or deploy/local-cluster.sh stop)
EOF
}

case "${1:-}" in
start) cmd_start "${2:-}" ;;
stop) cmd_stop ;;
status) cmd_status ;;
demo) cmd_demo ;;
*)
    echo "usage: $0 start [--ha]|stop|status|demo" >&2
    exit 2
    ;;
esac
