# lib.sh - helpers the benchmark scripts share (sourced, bash): the servers
# they start, free loopback ports, a test cluster's nameserver and
# dataservers and the wait until it is ready, the check for the binaries,
# reading JSON (with jq, Debian's package: never matched as text), and
# clean-up on exit.
#
# The caller sets WORK (its temporary folder, with a log/ subfolder for the
# servers' output) and KEEP (1 keeps WORK on exit; set it on a failure so the
# logs stay), BIN (the folder of the servers' binaries) and defines log().
# Sourcing installs the exit and signal traps.

PIDS=""
USED_PORTS=""

# ---- JSON, read with jq ------------------------------------------------------
# jget FILE PHASE KEY: figure KEY of phase PHASE ("upload", "read") of an
# `imgstore bench --json` result: a phase field (ops, errors, ops_per_s,
# mb_per_s, seconds) or a latency in ms (p50, p90, p99, p99_9, max).
# Prints nothing when FILE holds no such phase.
jget() {
    jq -r --arg p "$2" --arg k "$3" \
        '.phases[]? | select(.name == $p) | if has($k) then .[$k] else .latency_ms[$k] end // empty' \
        "$1"
}
# jerr FILE PHASE: the errors of phase PHASE of an `imgstore bench --json` result.
jerr() { jget "$1" "$2" errors; }
# jnum KEY: the top-level field KEY of the JSON document on stdin
# (`ds-admin --json status`, a steady_read line, ...); nothing when absent.
jnum() { jq -r --arg k "$1" '.[$k] // empty'; }

# stop_pid PID: SIGTERM, up to 5 s for it to exit, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}

cleanup() {
    local pid
    for pid in $PIDS; do stop_pid "$pid"; done
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# free_port: a free loopback port in $PORT, never handed out twice. Call it
# in this shell, not in $(...), so USED_PORTS advances. The ports lie below
# the kernel's ephemeral range (32768 and up by default), so no client
# connection of the run can hold one when a server binds it.
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % 22000))
        case " $USED_PORTS " in *" $p "*) continue ;; esac
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue
        USED_PORTS="$USED_PORTS $p"
        PORT=$p
        return
    done
}

# start NAME COMMAND ARGS...: runs a server in the background, its output in
# $WORK/log/NAME.log; its pid in $LAST.
start() {
    local name=$1
    shift
    "$@" >>"$WORK/log/$name.log" 2>&1 &
    LAST=$!
    PIDS="$PIDS $LAST"
}

# can_drop: drops the page cache when allowed (root); non-zero otherwise.
can_drop() { [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }

# need_bins DIR HINT NAME...: exits (after a log line saying to run HINT)
# unless every DIR/NAME is an executable.
need_bins() {
    local dir=$1 hint=$2 b
    shift 2
    for b in "$@"; do
        [ -x "$dir/$b" ] || { log "$dir/$b missing; run $hint"; exit 1; }
    done
}

# Keys (docs/security.md): the clusters the scripts start authenticate like
# real ones. make_keys writes $WORK/keys (mode 0600: a member, an operator
# and a writer key) and $WORK/operator.key, exports IMGSTORE_KEY_FILE (the
# tools and bench clients use it) and sets AUTH_ARGS, which start_ns and
# start_ds add; set AUTH_ARGS=--insecure before them for a cluster without.
make_keys() {
    local m o w
    m=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    o=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    w=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    (umask 077 && printf 'member member1 %s\noperator ops %s\nwriter app %s\n' "$m" "$o" "$w" \
        >"$WORK/keys" && printf 'operator ops %s\n' "$o" >"$WORK/operator.key") || exit 1
    export IMGSTORE_KEY_FILE=$WORK/operator.key
    AUTH_ARGS="--keys $WORK/keys"
}

# start_ns [ARGS...]: starts the nameserver ($BIN/nameserver, folder $WORK/ns,
# a free port, $AUTH_ARGS, then ARGS); its address in $NS, its pid in $LAST.
start_ns() {
    [ -n "${AUTH_ARGS:-}" ] || make_keys
    free_port
    NS=127.0.0.1:$PORT
    mkdir -p "$WORK/ns"
    # shellcheck disable=SC2086 # AUTH_ARGS is words
    start ns "$BIN/nameserver" --listen "$NS" --data "$WORK/ns" $AUTH_ARGS "$@"
}

# start_ds I [ARGS...]: starts dataserver I of the nameserver $NS ($BIN/
# dataserver, folder $WORK/dsI, free native and HTTP ports, $AUTH_ARGS, then
# ARGS); its HTTP address in $DS_ADDR_HTTP, its pid in $LAST.
start_ds() {
    local i=$1 listen
    shift
    [ -n "${AUTH_ARGS:-}" ] || make_keys
    mkdir -p "$WORK/ds$i"
    free_port
    DS_ADDR_HTTP=127.0.0.1:$PORT
    free_port
    listen=127.0.0.1:$PORT
    start "ds$i" "$BIN/dataserver" --ns "$NS" --listen "$listen" --http "$DS_ADDR_HTTP" \
        --data "$WORK/ds$i" $AUTH_ARGS "$@"
}

# wait_up N: waits up to READY_TRIES x 0.2 s (default 150) until the
# nameserver $NS reports N servers up and a writable block; otherwise keeps
# WORK and exits.
wait_up() {
    local i st
    for i in $(seq "${READY_TRIES:-150}"); do
        st=$("$BIN/ds-admin" --ns "$NS" --json status 2>/dev/null)
        if echo "$st" | jq -e --argjson n "$1" '.servers_up == $n and .blocks_writable > 0' \
            >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    log "cluster not ready; logs in $WORK/log"
    KEEP=1
    exit 1
}
