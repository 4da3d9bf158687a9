#!/bin/sh
# fresh-check.sh - runs the README's commands the way a newcomer does, on a
# fresh clone of what is committed, and says what failed.
#
#   scripts/fresh-check.sh [--keep-packages] [--no-test]
#   scripts/fresh-check.sh --chroot DIR [--no-test]
#
# --chroot DIR: the fresh machine is a Debian 12 system made by debootstrap
#    in DIR (made when DIR does not exist yet: debootstrap must be installed
#    and the Debian mirror reachable; DIR must be new to be fresh). The
#    check then runs inside it as root, and this machine's packages stay as
#    they are. Needs root.
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
chroot_dir=""
want_dir=0
for a in "$@"; do
    if [ $want_dir = 1 ]; then
        chroot_dir=$a
        want_dir=0
        continue
    fi
    case $a in
    --keep-packages) keep=1 ;;
    --no-test) test=0 ;;
    --chroot) want_dir=1 ;;
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
if [ $want_dir = 1 ]; then
    echo "fresh-check: --chroot needs a folder" >&2
    exit 2
fi

if [ -n "$chroot_dir" ]; then
    [ "$(id -u)" -eq 0 ] || {
        echo "fresh-check: --chroot needs root" >&2
        exit 2
    }
    if [ ! -d "$chroot_dir" ]; then
        command -v debootstrap >/dev/null 2>&1 || {
            echo "fresh-check: debootstrap is not installed (apt-get install debootstrap)" >&2
            exit 2
        }
        echo "== debootstrap of Debian 12 (bookworm) into $chroot_dir"
        debootstrap --variant=minbase --include=git,ca-certificates,make,sudo bookworm \
            "$chroot_dir" http://deb.debian.org/debian >"$chroot_dir.debootstrap.log" 2>&1 || {
            echo "fresh-check: debootstrap failed; see $chroot_dir.debootstrap.log" >&2
            exit 2
        }
        # What a Debian machine has and debootstrap leaves out: the same
        # package sources as this machine (security updates), a hosts file.
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            cp /etc/apt/sources.list.d/debian.sources "$chroot_dir/etc/apt/sources.list.d/"
            rm -f "$chroot_dir/etc/apt/sources.list"
        fi
        printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
            >"$chroot_dir/etc/hosts"
    fi
    cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
    for m in proc sys dev dev/pts dev/shm; do
        mountpoint -q "$chroot_dir/$m" || mount --bind "/$m" "$chroot_dir/$m" || exit 2
    done
    rm -rf "$chroot_dir/root/imgstore"
    git clone -q "$top" "$chroot_dir/root/imgstore" || exit 2
    flags="--keep-packages"
    [ $test = 0 ] && flags="$flags --no-test"
    chroot "$chroot_dir" /bin/sh -c "cd /root/imgstore && HOME=/root scripts/fresh-check.sh $flags"
    rc=$?
    for m in dev/shm dev/pts dev sys proc; do umount "$chroot_dir/$m" 2>/dev/null; done
    echo "fresh-check: logs are under $chroot_dir/tmp"
    exit $rc
fi
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
    kept=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            continue
        # A package the base system needs (openssl for ca-certificates on
        # some machines) cannot go without breaking apt: it stays, named.
        if apt-get -s -qq purge "$p" >/dev/null 2>&1; then
            installed="$installed $p"
        else
            kept="$kept $p"
        fi
    done
    [ -n "$kept" ] && echo "== kept (the system needs them):$kept"
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
