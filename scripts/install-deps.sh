#!/bin/sh
# Installs the Debian packages imgstore needs to build, test and run, when
# any is missing. Safe to run again: it does nothing when all are present.
set -e
PKGS="build-essential pkg-config libuv1-dev libprotobuf-c-dev protobuf-c-compiler \
libzstd-dev liburing-dev libssl-dev libcriterion-dev libisal-dev libinih-dev libhttp-parser-dev curl \
clang libclang-rt-14-dev llvm valgrind \
varnish"
# OpenSSL (libssl-dev above): libcrypto for authentication (net/auth.c),
# libssl for HTTPS (net/http_tls.c); the openssl command makes the
# certificates of tests/integ/test_https.c.
PKGS="$PKGS openssl"
# --ui: only what `make test-ui` adds, Chromium for the status-page test
# (a large download, so `make test` does without it).
if [ "${1:-}" = "--ui" ]; then PKGS="chromium"; fi
# --bench: what `make bench` and `make bench-http` add (nginx and wrk for the
# HTTP row, perf for profiling), never needed by `make test`; and the corpus
# of `make bench-zstd`: openclipart-svg's SVGs, ImageMagick with
# rsvg-convert to render BMP/TIFF from them, the zstd command (reference).
if [ "${1:-}" = "--bench" ]; then
    PKGS="nginx wrk linux-perf openclipart-svg imagemagick librsvg2-bin zstd"
fi
# --list: print the package list (of the mode given first, if any) and stop;
# scripts/fresh-check.sh uses it to remove exactly what this script installs.
for a in "$@"; do
    if [ "$a" = "--list" ]; then
        echo $PKGS
        exit 0
    fi
done
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing missing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
