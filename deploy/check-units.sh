#!/bin/sh
# check-units.sh - checks the systemd units in deploy/systemd with
# `systemd-analyze verify`, and their hardening with `systemd-analyze
# security --offline`: each must rate OK or better (docs/operations.md,
# "systemd units"), where systemd-analyze exists.
#
# The units name /usr/local/bin, the imgstore user and /etc/imgstore files,
# which a build machine does not have; the check runs on copies pointing at
# build/bin, root and no environment file, so only the units' own syntax and
# directives are judged. Exit 0 when they verify (or the tool is missing).
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-units: systemd-analyze not found; skipped"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
for u in deploy/systemd/*.service; do
    sed -e "s#/usr/local/bin#$BIN#" -e 's#^EnvironmentFile=.*#EnvironmentFile=-/nonexistent#' \
        -e 's#^User=.*#User=root#' -e 's#^Group=.*#Group=root#' -e 's#man:[a-z-]*([0-9]) ##' \
        "$u" >"$tmp/$(basename "$u")"
done
out=$(cd "$tmp" && systemd-analyze verify imgstore-nameserver.service \
    imgstore-dataserver@1.service 2>&1)
rc=$?
# Lines about other units of the host are not ours.
ours=$(printf '%s\n' "$out" | grep -i 'imgstore' || true)
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
    printf 'check-units: systemd-analyze verify failed:\n%s\n' "$out" >&2
    exit 1
fi
# The hardening of the units as written (User=imgstore and all).
cp deploy/systemd/*.service "$tmp/" || exit 1
for u in imgstore-nameserver.service imgstore-dataserver@.service; do
    line=$(cd "$tmp" && systemd-analyze security --offline=yes "$u" 2>&1 | tail -n 1)
    case $line in
    *" OK "* | *" SAFE "* | *" PERFECT "*) echo "check-units: $u: ${line#*: }" ;;
    *) printf 'check-units: %s is not hardened enough (want OK or better): %s\n' "$u" "$line" >&2
       exit 1 ;;
    esac
done
echo "check-units: deploy/systemd units verify"
