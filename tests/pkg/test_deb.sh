#!/bin/sh
# test_deb.sh - `make deb` (docs/operations.md, "Debian package"), as one
# test of tests/run.sh: builds the packages with debhelper from a copy of
# the tree and checks them:
#  - imgstore: the four programs in /usr/bin, the units in
#    /lib/systemd/system starting /usr/bin/..., man pages, bash completion,
#    the sysusers file creating the imgstore user and a postinst that runs
#    systemd-sysusers and enables no unit (only re-enables one the admin had
#    enabled before an upgrade); the programs run and print the version;
#  - libimgstore1: libimgstore.so.1.0 and its SONAME link; libimgstore-dev:
#    the header, the static library, imgstore.pc, the libimgstore.so link;
#  - lintian reports no error.
# Skipped (passes, saying so) only when debhelper is not installed
# (scripts/install-deps.sh installs it).
set -u
cd "$(dirname "$0")/../.." || exit 1
if ! command -v dh >/dev/null 2>&1 || ! command -v dpkg-buildpackage >/dev/null 2>&1; then
    echo "test_deb: skipped: debhelper is not installed (scripts/install-deps.sh installs it)"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_deb: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }

ver() { sed -n "s/^#define IMGSTORE_VERSION_$1 \\([0-9]*\\)\$/\\1/p" client/imgstore.h; }
V="$(ver MAJOR).$(ver MINOR).$(ver PATCH)"
head -n 1 debian/changelog | grep -q "^imgstore ($V)" && ok ||
    bad "debian/changelog's version is not $V (client/imgstore.h)"
if ! make -s --no-print-directory deb >"$tmp/build.log" 2>&1; then
    bad "make deb failed; its last lines:"; tail -n 30 "$tmp/build.log"
    exit 1
fi
D=build/deb
ARCH=$(dpkg --print-architecture)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for p in imgstore libimgstore1 libimgstore-dev; do
    [ -f "$D/${p}_${V}_$ARCH.deb" ] && ok || bad "no $D/${p}_${V}_$ARCH.deb"
done

# has DEB PATH [TYPE]: the package lists ./PATH (a regular file, or TYPE l).
has() {
    dpkg-deb -c "$D/${1}_${V}_$ARCH.deb" >"$tmp/list" 2>/dev/null || { bad "cannot list $1"; return; }
    want=${3:--}
    if awk -v p="./$2" -v t="$want" '$6 == p && substr($1, 1, 1) == t { f = 1 } END { exit !f }' \
        "$tmp/list"; then ok; else bad "$1 lacks ./$2 (type $want)"; fi
}
for b in nameserver dataserver imgstore ds-admin; do
    has imgstore "usr/bin/$b"
    has imgstore "usr/share/man/man1/$b.1.gz"
done
has imgstore lib/systemd/system/imgstore-nameserver.service
has imgstore lib/systemd/system/imgstore-dataserver@.service
has imgstore usr/share/bash-completion/completions/imgstore
has imgstore usr/share/bash-completion/completions/ds-admin
has imgstore usr/lib/sysusers.d/imgstore.conf
has imgstore usr/share/doc/imgstore/examples/nameserver.env.example
has libimgstore1 "usr/lib/$MA/libimgstore.so.1.0"
has libimgstore1 "usr/lib/$MA/libimgstore.so.1" l
has libimgstore-dev usr/include/imgstore.h
has libimgstore-dev "usr/lib/$MA/libimgstore.a"
has libimgstore-dev "usr/lib/$MA/pkgconfig/imgstore.pc"
has libimgstore-dev "usr/lib/$MA/libimgstore.so" l
dpkg-deb -c "$D/imgstore_${V}_$ARCH.deb" | grep -q 'libimgstore\|include/' &&
    bad "the imgstore package carries library files" || ok
dpkg-deb -c "$D/imgstore_${V}_$ARCH.deb" | grep -q 'wants/' &&
    bad "the imgstore package ships an enabled unit" || ok

# What it installs, unpacked.
R=$tmp/root
dpkg-deb -x "$D/imgstore_${V}_$ARCH.deb" "$R" || bad "cannot unpack imgstore"
grep -q '^ExecStart=/usr/bin/nameserver ' "$R/lib/systemd/system/imgstore-nameserver.service" && ok ||
    bad "the nameserver unit does not start /usr/bin/nameserver"
grep -q '^ExecStart=/usr/bin/dataserver ' "$R/lib/systemd/system/imgstore-dataserver@.service" && ok ||
    bad "the dataserver unit does not start /usr/bin/dataserver"
grep -q '^u imgstore ' "$R/usr/lib/sysusers.d/imgstore.conf" && ok ||
    bad "the sysusers file does not create the imgstore user"
for b in nameserver dataserver imgstore ds-admin; do
    out=$("$R/usr/bin/$b" --version 2>&1)
    [ "$out" = "$b (imgstore) $V" ] && ok || bad "packaged $b --version printed '$out'"
done
dpkg-deb -e "$D/imgstore_${V}_$ARCH.deb" "$tmp/ctl" || bad "cannot read imgstore's control files"
grep -q 'systemd-sysusers.*imgstore.conf' "$tmp/ctl/postinst" && ok ||
    bad "postinst does not create the user (systemd-sysusers)"
# Units shipped disabled (dh_installsystemd --no-enable): each enable sits
# under "debian-installed" (the unit was installed, and enabled by the admin,
# before this upgrade); a new install enables and starts nothing.
awk '/deb-systemd-helper debian-installed/ { di = 1 } /^# End automatically added/ { di = 0 }
     /deb-systemd-helper (--quiet )?was-enabled/ && !di { bad = 1 }
     /deb-systemd-invoke|invoke-rc.d|systemctl.*start/ { bad = 1 } END { exit bad }' \
    "$tmp/ctl/postinst" && ok || bad "postinst enables or starts a unit on a new install"
grep -q 'deb-systemd-helper debian-installed' "$tmp/ctl/postinst" && ok ||
    bad "postinst has no systemd section (dh_installsystemd)"

if ! command -v lintian >/dev/null 2>&1; then
    bad "lintian is not installed (scripts/install-deps.sh installs it)"
else
    lintian --tag-display-limit 0 "$D/imgstore_${V}_$ARCH.changes" >"$tmp/lintian" 2>&1
    if grep -q '^E: ' "$tmp/lintian"; then
        bad "lintian reports errors:"; grep '^E: ' "$tmp/lintian" | head -n 20
    else
        ok
        echo "test_deb: lintian: $(grep -c '^W: ' "$tmp/lintian") warnings, no error"
    fi
fi
echo "test_deb: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
