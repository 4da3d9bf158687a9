#!/bin/sh
# fresh-check.sh - runs the README's commands the way a newcomer does, on a
# fresh clone of what is committed, and says what failed.
#
#   scripts/fresh-check.sh [--keep-packages] [--no-test]
#
# 1. Unless --keep-packages: purges every Debian package that
#    scripts/install-deps.sh installs (its --list), so that `make` has to
#    install them again, as on a new machine. Needs root (or sudo).
# 2. Clones the repository's committed HEAD into a temporary folder.
# 3. Runs, in the clone: make run, make stop, make run, make stop, make test
#    (--no-test leaves out the last one). Each step's output goes to a log
#    in the temporary folder; a failed step prints the end of its log.
# 4. Prints one line per step (ok / FAILED) and exits 1 when any failed.
#
# Not part of `make test` (it removes packages). Every change to the build,
# the install script or the test tooling runs it before it is resolved.
# The local cluster uses fixed ports (7400, 7411-7413, 7481-7483): stop any
# other local cluster first.
set -u

keep=0
test=1
for a in "$@"; do
    case $a in
    --keep-packages) keep=1 ;;
    --no-test) test=0 ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "fresh-check: unknown argument $a (try --help)" >&2
        exit 2
        ;;
    esac
done

top=$(cd "$(dirname "$0")/.." && git rev-parse --show-toplevel) || {
    echo "fresh-check: not inside a git checkout" >&2
    exit 2
}
if command -v ss >/dev/null 2>&1 && ss -ltn | grep -qE '127\.0\.0\.1:(7400|74[18][123]) '; then
    echo "fresh-check: something already listens on the local cluster's ports (7400/7481):" \
        "stop it first (make stop in its checkout)" >&2
    exit 2
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ $keep = 0 ]; then
    pkgs=$("$top/scripts/install-deps.sh" --list)
    installed=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" &&
            installed="$installed $p"
    done
    echo "== purging the project's packages:${installed:- (none installed)}"
    if [ -n "$installed" ]; then
        # build-essential and pkg-config stay when something else of the
        # machine needs them; apt says which it removes.
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $installed || {
            echo "fresh-check: apt-get purge failed" >&2
            exit 2
        }
    fi
fi

work=$(mktemp -d /tmp/imgstore-fresh.XXXXXX) || exit 2
echo "== fresh clone of $(git -C "$top" rev-parse --short HEAD) in $work/imgstore"
git clone -q "$top" "$work/imgstore" || {
    echo "fresh-check: git clone failed" >&2
    exit 2
}
cd "$work/imgstore" || exit 2

results=""
failed=0
step() { # step NAME COMMAND...: runs a step, logs it, records ok/FAILED
    name=$1
    shift
    log="$work/$(echo "$name" | tr ' ' '-').log"
    printf '== %s ... ' "$name"
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    if [ $rc -eq 0 ]; then
        echo "ok (${secs} s)"
        results="$results
ok      $name (${secs} s)"
    else
        echo "FAILED (exit $rc, ${secs} s); the end of $log:"
        tail -n 40 "$log" | sed 's/^/    /'
        results="$results
FAILED  $name (exit $rc; log $log)"
        failed=$((failed + 1))
    fi
    return $rc
}

step "make run (1)" make run
step "make stop (1)" make stop
step "make run (2)" make run
step "make stop (2)" make stop
if [ $test = 1 ]; then
    step "make test" make test
    tail -n 1 "$work/make-test.log"
fi
make stop >/dev/null 2>&1

echo "== summary (logs in $work):$results"
if [ $failed -gt 0 ]; then
    echo "fresh-check: $failed step(s) failed"
    exit 1
fi
echo "fresh-check: every step passed"
