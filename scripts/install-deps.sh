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
# High availability (docs/nameserver.md): libcurl and jansson for the
# nameserver's etcd client; etcd itself for tests/integ/test_ha.c and
# `make run-ha` (etcd-client: etcdctl, for operators).
PKGS="$PKGS libcurl4-openssl-dev libjansson-dev etcd-server etcd-client"
# The Python package (python/) and its tests: pytest, PyYAML for the
# OpenAPI check, mypy for the type hints, and what `pip install ./python` needs offline (venv,
# setuptools, wheel, pip; python/README.md). python3 itself comes with them.
PKGS="$PKGS python3-pytest python3-mypy python3-yaml python3-venv python3-setuptools python3-wheel python3-pip"
# help2man: the man pages (`make man`, `make install`) from each program's
# --help; bash-completion: what the completion scripts are written for (and
# tested with, tests/pkg/test_conventions.sh).
PKGS="$PKGS help2man bash-completion"
# jq: the benchmark scripts read the tools' JSON with it (bench/lib.sh;
# tests/pkg/test_json_scripts.sh).
PKGS="$PKGS jq"
# libsystemd-dev: the servers' readiness notification (sd_notify, Type=notify
# units); only the two servers link it.
PKGS="$PKGS libsystemd-dev"
# debhelper, fakeroot and lintian: `make deb` and its test
# (tests/pkg/test_deb.sh).
PKGS="$PKGS debhelper fakeroot lintian"
# prometheus: its promtool checks both servers' /metrics (names, units,
# types) and deploy/alerts.yml (syntax and unit tests) in
# tests/integ/test_ops.c; the Prometheus server itself is not used.
PKGS="$PKGS prometheus"
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
