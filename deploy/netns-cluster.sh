#!/bin/sh
# netns-cluster.sh - a multi-host imgstore test cluster on one machine: each
# server runs in its own network namespace with its own address, joined by a
# bridge, so addresses, ports and network faults behave as on real hosts.
#
#   deploy/netns-cluster.sh start [N]   nameserver + N dataservers (default 3)
#   deploy/netns-cluster.sh stop        stop the servers, remove namespaces and bridge
#   deploy/netns-cluster.sh status      which servers run, and `ds-admin status`
#
# Layout: bridge imgs-br0 at 10.77.0.1/24 on the host; namespace imgs-ns at
# 10.77.0.10 (native :7400, HTTP :7480); imgs-ds1..N at 10.77.0.11.. (native
# :7410, HTTP :7480). From the host: IMGSTORE_NS=10.77.0.10:7400, status page
# http://10.77.0.10:7480/. Data, logs and pids live under ./var/netns. Fault
# injection: e.g. `ip netns exec imgs-ds2 tc qdisc add dev eth0 root netem
# loss 20%`, or `ip link set imgs-v2 down` to cut ds2 off.
#
# Keys (docs/security.md): the first start writes $VAR/keys (mode 0600: one
# member key per dataserver, an operator and a writer key) and the client key
# files $VAR/operator.key and $VAR/writer.key.
#
# Needs root (or CAP_NET_ADMIN) and the `ip` tool; where namespaces are not
# permitted (an unprivileged container) it says so and exits 77 (skipped).
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BIN=${IMGSTORE_BIN:-$ROOT/build/bin}
VAR=$ROOT/var/netns
BR=imgs-br0
NET=10.77.0
NS_IP=$NET.10
START_TIMEOUT=20
EXIT_SKIP=77

die() {
    echo "netns-cluster: $*" >&2
    exit 1
}

skip() {
    echo "netns-cluster: skipped: $*" >&2
    exit $EXIT_SKIP
}

check_env() {
    command -v ip >/dev/null 2>&1 || skip "the 'ip' tool (iproute2) is not installed"
    [ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
    ip netns add imgs-probe 2>/dev/null || skip "network namespaces are not permitted here"
    ip netns del imgs-probe
    ip link add imgs-probe type bridge 2>/dev/null || skip "cannot create a bridge here"
    ip link del imgs-probe
    for b in nameserver dataserver ds-admin; do
        [ -x "$BIN/$b" ] || die "$BIN/$b is missing; run 'make' first"
    done
}

# host NAME IP: a namespace with a veth pair whose host end joins the bridge.
host() {
    name=$1
    ip=$2
    veth=imgs-v${3}
    ip netns add "$name" || return 1
    ip link add "$veth" type veth peer name eth0 netns "$name" || return 1
    ip link set "$veth" master "$BR" up
    ip netns exec "$name" ip addr add "$ip/24" dev eth0
    ip netns exec "$name" ip link set eth0 up
    ip netns exec "$name" ip link set lo up
    ip netns exec "$name" ip route add default via "$NET.1"
}

# launch NAMESPACE LOGNAME BINARY ARGS...
launch() {
    netns=$1
    name=$2
    shift 2
    echo "==== $(date '+%F %T') starting $*" >>"$VAR/log/$name.log"
    ip netns exec "$netns" nohup "$BIN/$@" </dev/null >>"$VAR/log/$name.log" 2>&1 &
    echo $! >"$VAR/run/$name.pid"
    echo "started $name in $netns (pid $!)"
}

secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# make_keys N: $VAR/keys with member keys member1..memberN (one per
# dataserver: each server id is bound to its own), an operator and a writer
# key, and the client key files; kept when present with enough member keys.
make_keys() {
    grep -q "^member member$1 " "$VAR/keys" 2>/dev/null && return 0
    (
        umask 077
        o=$(secret) && w=$(secret) || exit 1
        {
            echo "# imgstore keys: ROLE NAME SECRET (docs/security.md)"
            k=1
            while [ "$k" -le "$1" ]; do
                echo "member member$k $(secret)"
                k=$((k + 1))
            done
            echo "operator ops $o"
            echo "writer app $w"
        } >"$VAR/keys" && echo "operator ops $o" >"$VAR/operator.key" &&
            echo "writer app $w" >"$VAR/writer.key"
    ) || die "cannot write $VAR/keys"
}

do_start() {
    n=${1:-3}
    case $n in '' | *[!0-9]*) die "N must be a number" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 50 ] || die "N must be 1..50"
    check_env
    ip link show "$BR" >/dev/null 2>&1 && die "already running (bridge $BR exists); stop first"
    mkdir -p "$VAR/log" "$VAR/run" "$VAR/ns"
    ip link add "$BR" type bridge || die "cannot create bridge $BR"
    ip addr add "$NET.1/24" dev "$BR"
    ip link set "$BR" up
    host imgs-ns "$NS_IP" 0 || die "cannot create namespace imgs-ns"
    make_keys "$n"
    launch imgs-ns ns nameserver --listen "$NS_IP:7400" --http "$NS_IP:7480" --data "$VAR/ns" \
        --replicas $((n < 2 ? 1 : 2)) --keys "$VAR/keys"
    i=1
    while [ "$i" -le "$n" ]; do
        ip=$NET.$((10 + i))
        host "imgs-ds$i" "$ip" "$i" || die "cannot create namespace imgs-ds$i"
        mkdir -p "$VAR/ds$i"
        launch "imgs-ds$i" "ds$i" dataserver --ns "$NS_IP:7400" --listen "$ip:7410" \
            --http "$ip:7480" --data "$VAR/ds$i" --keys "$VAR/keys" --member-key "member$i"
        i=$((i + 1))
    done
    waited=0
    while [ $waited -lt $START_TIMEOUT ]; do
        up=$("$BIN/ds-admin" --ns "$NS_IP:7400" --json servers 2>/dev/null |
            python3 -c 'import json, sys
try:
    print(sum(1 for s in json.load(sys.stdin) if isinstance(s, dict) and s.get("state") == "up"))
except (ValueError, TypeError):
    print(0)')
        [ "$up" -ge "$n" ] && break
        sleep 1
        waited=$((waited + 1))
    done
    [ "$up" -ge "$n" ] || die "only $up of $n dataservers up after ${START_TIMEOUT}s; see $VAR/log"
    echo "cluster up: IMGSTORE_NS=$NS_IP:7400, status page http://$NS_IP:7480/"
}

do_stop() {
    for f in "$VAR"/run/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        t=0
        while kill -0 "$pid" 2>/dev/null && [ $t -lt 50 ]; do
            sleep 0.1
            t=$((t + 1))
        done
        kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^imgs-'); do
        ip netns del "$ns"
    done
    ip link show "$BR" >/dev/null 2>&1 && ip link del "$BR"
    echo "stopped"
}

do_status() {
    for f in "$VAR"/run/*.pid; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .pid)
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: running"; else echo "$name: stopped"; fi
    done
    "$BIN/ds-admin" --ns "$NS_IP:7400" status
}

case ${1:-} in
start) do_start "${2:-3}" ;;
stop) do_stop ;;
status) do_status ;;
*)
    echo "usage: $0 start [N] | stop | status" >&2
    exit 2
    ;;
esac
