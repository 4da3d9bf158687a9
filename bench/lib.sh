# lib.sh - helpers the benchmark scripts share (sourced, bash): the servers
# they start, free loopback ports, and clean-up on exit.
#
# The caller sets WORK (its temporary folder, with a log/ subfolder for the
# servers' output) and KEEP (1 keeps WORK on exit; set it on a failure so the
# logs stay), and defines log(). Sourcing installs the exit and signal traps.

PIDS=""
USED_PORTS=""

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
