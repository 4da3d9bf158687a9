#!/bin/bash
# test_local_cluster.sh - `make run`'s cluster (deploy/local-cluster.sh;
# README "Quick start"), as one test of tests/run.sh:
#  - `make -n run` starts it with `local-cluster.sh start` and prints the
#    status page's URL;
#  - `local-cluster.sh start`, in a temporary IMGSTORE_LOCAL_VAR on free
#    ports (IMGSTORE_LOCAL_PORT), starts the nameserver with --http and
#    prints "status page: http://HOST:PORT/": that URL serves the page,
#    /status.json (one JSON document with a verdict and 3 servers up) and
#    /metrics; `demo` stores and reads a file; `stop` ends every process.
# Needs the build (IMGSTORE_BIN, default build/bin).
set -u
cd "$(dirname "$0")/../.." || exit 1
export IMGSTORE_BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_local_cluster: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }
tmp=$(mktemp -d) || exit 1
export IMGSTORE_LOCAL_VAR=$tmp/var
cleanup() {
    deploy/local-cluster.sh stop >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

# make run: the script's start, and the URL.
plan=$(make -n --no-print-directory run 2>/dev/null)
case $plan in *"local-cluster.sh start"*) ok ;; *) bad "make run does not run local-cluster.sh start" ;; esac
case $plan in *"status page: http://"*) ok ;; *) bad "make run prints no status page URL" ;; esac

# A base port whose whole range (base .. base+83) is free.
free_range() {
    local b p n
    for n in $(seq 50); do
        b=$((20000 + (RANDOM % 400) * 100))
        for p in $(seq "$b" $((b + 83))); do
            [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue 2
        done
        echo "$b"
        return 0
    done
    return 1
}
base=$(free_range) || { bad "no free port range"; exit 1; }
export IMGSTORE_LOCAL_PORT=$base
if ! out=$(timeout 120 deploy/local-cluster.sh start 2>&1); then
    bad "local-cluster.sh start failed:"; printf '%s\n' "$out" | tail -n 30
    exit 1
fi
url="http://127.0.0.1:$((base + 80))/"
printf '%s\n' "$out" | grep -qx "status page: $url (metrics: ${url}metrics)" && ok ||
    bad "start did not print 'status page: $url': $(printf '%s' "$out" | tail -n 5)"
tr '\0' ' ' <"/proc/$(cat "$IMGSTORE_LOCAL_VAR/run/ns.pid")/cmdline" 2>/dev/null |
    grep -q -- "--http 127.0.0.1:$((base + 80))" && ok || bad "the nameserver runs without --http"

page=$(curl -s -f "$url") && case $page in *"<html"*) true ;; *) false ;; esac && ok ||
    bad "GET $url is no status page: ${page:0:200}"
st=$(curl -s -f "${url}status.json")
if echo "$st" | jq -e '(.verdict | type) == "string"' >/dev/null 2>&1; then ok; else
    bad "GET ${url}status.json is no JSON with a verdict: ${st:0:300}"
fi
up=$(curl -s -f "${url}status.json" |
    jq '[.. | objects | select(has("state") and .state == "up")] | length' 2>/dev/null)
[ "${up:-0}" -ge 3 ] && ok || bad "status.json lists ${up:-no} servers up, want 3"
curl -s -f "${url}metrics" | grep -q '^imgstore_nameserver_servers{state="up"} 3$' && ok ||
    bad "${url}metrics does not count 3 servers up"
demo=$(timeout 60 deploy/local-cluster.sh demo 2>&1) &&
    printf '%s\n' "$demo" | grep -q 'copy.png is identical' && ok ||
    bad "demo failed: $(printf '%s' "$demo" | tail -n 5)"

pids=$(cat "$IMGSTORE_LOCAL_VAR"/run/*.pid 2>/dev/null)
deploy/local-cluster.sh stop >/dev/null 2>&1 && ok || bad "local-cluster.sh stop failed"
left=""
for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && ok || bad "processes left after stop:$left"

echo "test_local_cluster: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
