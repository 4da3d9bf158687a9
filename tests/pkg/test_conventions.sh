#!/bin/bash
# test_conventions.sh - what every program of the build promises on its
# command line (docs/operations.md, "Command-line conventions"), run by
# tests/run.sh as one test:
#  - `--version` prints "PROG (imgstore) VERSION" (client/imgstore.h's) on
#    stdout, exit 0; `--help` prints the usage on stdout, exit 0;
#  - a usage error prints exactly two lines on stderr, "PROG: what was
#    wrong" and "try 'PROG [COMMAND] --help'", nothing on stdout, exit 2;
#  - the man page of each program (`make man`, help2man) is there, names it, carries
#    the version and every long option of its --help;
#  - the bash completion of imgstore and ds-admin offers exactly the
#    commands and global options their --help lists.
# Needs the build (IMGSTORE_BIN, default build/bin). Exit 0 when all hold.
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BUILD=$(dirname "$BIN")
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_conventions: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }

ver() { sed -n "s/^#define IMGSTORE_VERSION_$1 \\([0-9]*\\)\$/\\1/p" client/imgstore.h; }
VERSION="$(ver MAJOR).$(ver MINOR).$(ver PATCH)"
PROGS="nameserver dataserver imgstore ds-admin"

# run PROG ARGS...: sets rc, out (stdout), err (stderr); no cluster, no key.
run() {
    env -u IMGSTORE_KEY_FILE -u IMGSTORE_NS IMGSTORE_LOG=off timeout 10 "$BIN/$1" "${@:2}" \
        >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
}

for p in $PROGS; do
    run "$p" --version
    [ "$rc" -eq 0 ] && [ "$out" = "$p (imgstore) $VERSION" ] && [ -z "$err" ] && ok ||
        bad "$p --version: exit $rc, stdout '$out', stderr '$err'"
    run "$p" --help
    [ "$rc" -eq 0 ] && [ -z "$err" ] && case $out in "usage: $p "*) true ;; *) false ;; esac && ok ||
        bad "$p --help: exit $rc, stderr '$err', stdout starts '${out:0:40}'"
done

# usage_error TRY PROG ARGS...: a usage error whose hint is "try 'TRY --help'".
usage_error() {
    local try=$1; shift
    run "$@"
    local first second n
    n=$(grep -c '' "$tmp/err")
    first=$(sed -n 1p "$tmp/err"); second=$(sed -n 2p "$tmp/err")
    if [ "$rc" -eq 2 ] && [ -z "$out" ] && [ "$n" -eq 2 ] && [ "${first#"$1: "}" != "$first" ] &&
       [ "$second" = "try '$try --help'" ]; then
        ok
    else
        bad "'$*': exit $rc (want 2), $n stderr lines (want 2): '$err', stdout '${out:0:80}'"
    fi
}
usage_error nameserver nameserver
usage_error nameserver nameserver --no-such-option
usage_error nameserver nameserver --listen
usage_error nameserver nameserver --listen 127.0.0.1:1 --data /nonexistent --replicas 9
usage_error nameserver nameserver --listen 127.0.0.1:1 --data /nonexistent
usage_error nameserver nameserver --listen 127.0.0.1:1 --data /nonexistent --insecure extra
usage_error dataserver dataserver
usage_error dataserver dataserver --no-such-option
usage_error dataserver dataserver --ns
usage_error dataserver dataserver --ns 127.0.0.1:1 --listen 127.0.0.1:2 --http 127.0.0.1:3
usage_error dataserver dataserver --ns nowhere --listen 127.0.0.1:2 --http 127.0.0.1:3 --data /x
usage_error dataserver dataserver --ns 127.0.0.1:1 --listen 127.0.0.1:2 --http 127.0.0.1:3 --data /x
usage_error dataserver dataserver --max-conns 0
usage_error dataserver dataserver --ns 127.0.0.1:1 --listen 0.0.0.0:2 --http 127.0.0.1:3 --data /x --insecure
usage_error dataserver dataserver --ns 127.0.0.1:1 --listen 127.0.0.1:2 --http 127.0.0.1:3 --data /x \
    --insecure --advertise 0.0.0.0:2
usage_error nameserver nameserver --listen 0.0.0.0:1 --data /x --insecure --advertise '[::]:1'
usage_error imgstore imgstore
usage_error imgstore imgstore frobnicate
usage_error imgstore imgstore --no-such-option
usage_error imgstore imgstore --timeout x put f
usage_error imgstore imgstore put
usage_error imgstore imgstore get
usage_error imgstore imgstore rm a b
usage_error imgstore imgstore --ns nowhere stat x
usage_error "imgstore bench" imgstore bench -n x
usage_error ds-admin ds-admin
usage_error ds-admin ds-admin frobnicate
usage_error ds-admin ds-admin --ns
usage_error "ds-admin drain" ds-admin drain
usage_error "ds-admin block" ds-admin block 1 2

# Man pages, generated from --help and --version.
# (`make test` and `make integ` build them before running this.)
for p in $PROGS; do
    page=$BUILD/man/$p.1
    if [ ! -f "$page" ] || [ "$page" -ot "$BIN/$p" ]; then
        bad "$page is missing or older than $BIN/$p (make man)"
    else
        src=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$page")
        grep -q "^$p \\\\- ..*" "$page" && ok || bad "$p.1 has no NAME line '$p - ...'"
        case $src in *"$p (imgstore) $VERSION"* | *"imgstore $VERSION"*) ok ;;
            *) bad "$p.1 does not carry the version $VERSION" ;; esac
        missing=""
        for o in $("$BIN/$p" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
            case $src in *"$o"*) ;; *) missing="$missing $o" ;; esac
        done
        [ -z "$missing" ] && ok || bad "$p.1 lacks options of its --help:$missing"
        man -l "$page" >/dev/null 2>&1 && ok || bad "man cannot format $p.1"
    fi
done

# Bash completion: the commands and global options of --help.
if [ ! -r /usr/share/bash-completion/bash_completion ]; then
    bad "bash-completion is missing (scripts/install-deps.sh installs it)"
else
    for p in imgstore ds-admin; do
        help=$("$BIN/$p" --help)
        want_cmds=$(printf '%s\n' "$help" | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\).*/\1/p' | sort)
        want_opts=$(printf '%s\n' "$help" | sed -n '/^options:/,/^$/p' | grep -o -- '--[a-z][a-z-]*' | sort -u)
        fn=_$(echo "$p" | tr - _)
        complete_words() { # the completions of the words given, the last being completed
            bash -c 'source /usr/share/bash-completion/bash_completion
                     source "$1"; shift; fn=$1; shift
                     COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                     "$fn"; printf "%s\n" "${COMPREPLY[@]}"' _ "deploy/completion/$p" "$fn" "$@" | sort
        }
        got_cmds=$(complete_words "$p" "")
        [ -n "$want_cmds" ] && [ "$got_cmds" = "$want_cmds" ] && ok ||
            bad "$p completion offers commands [$(echo $got_cmds)], --help lists [$(echo $want_cmds)]"
        got_opts=$(complete_words "$p" "--")
        [ -n "$want_opts" ] && [ "$got_opts" = "$want_opts" ] && ok ||
            bad "$p completion offers options [$(echo $got_opts)], --help lists [$(echo $want_opts)]"
    done
    got=$(complete_words ds-admin --ns 1.2.3.4:5 dra)
    [ "$got" = "drain" ] && ok || bad "ds-admin --ns X dra completes to '$got', not drain"
    got=$(complete_words ds-admin blocks --state s)
    [ "$got" = "sealed" ] && ok || bad "ds-admin blocks --state s completes to '$got', not sealed"
fi

echo "test_conventions: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
