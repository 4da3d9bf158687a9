#!/bin/sh
# test_install.sh - the library's ABI and `make install` (docs/operations.md,
# "Install"), run by tests/run.sh as one test:
#  - libimgstore.so.MAJOR.MINOR has the SONAME libimgstore.so.MAJOR, the
#    links .so.MAJOR -> .so.MAJOR.MINOR and .so -> .so.MAJOR, and exports
#    exactly the functions declared in client/imgstore.h;
#  - `make install` into a temporary DESTDIR puts every file in place, and a
#    small program built with nothing but `pkg-config --define-prefix`
#    compiles, links (shared, and static) and runs against that tree;
#  - `make uninstall` leaves no file behind.
# Needs the build done (IMGSTORE_BIN, default build/bin). Exit 0 when all hold.
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=${IMGSTORE_BIN:-$(pwd)/build/bin}
BUILD=$(dirname "$BIN")
LIB=$BUILD/lib
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_install: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }
check() { # $1: description; rest: command that must succeed
    d=$1; shift
    if "$@"; then ok; else bad "$d"; fi
}

ver() { sed -n "s/^#define IMGSTORE_VERSION_$1 \\([0-9]*\\)\$/\\1/p" client/imgstore.h; }
MAJOR=$(ver MAJOR); MINOR=$(ver MINOR); PATCH=$(ver PATCH)
VERSION="$MAJOR.$MINOR.$PATCH"
[ -n "$MAJOR" ] && [ -n "$MINOR" ] && [ -n "$PATCH" ] || { bad "no version macros in imgstore.h"; exit 1; }
grep -q "^#define IMGSTORE_VERSION \"$VERSION\"\$" client/imgstore.h ||
    bad "IMGSTORE_VERSION does not spell $VERSION"
REAL=libimgstore.so.$MAJOR.$MINOR
SONAME=libimgstore.so.$MAJOR

# ---- the build folder's library
[ -f "$LIB/$REAL" ] || { bad "$LIB/$REAL is missing: build first (make all)"; exit 1; }
check "$LIB/$REAL is not a regular file" test -f "$LIB/$REAL" -a ! -L "$LIB/$REAL"
check "$LIB/$SONAME is not a link to $REAL" test "$(readlink "$LIB/$SONAME")" = "$REAL"
check "$LIB/libimgstore.so is not a link to $SONAME" test "$(readlink "$LIB/libimgstore.so")" = "$SONAME"
so=$(readelf -d "$LIB/$REAL" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "SONAME is '$so', not $SONAME" test "$so" = "$SONAME"
# Exported: every defined dynamic symbol but the version node (type A).
nm -D --defined-only "$LIB/$REAL" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
    sort >"$tmp/exported"
sed -n 's/^[a-z][a-z_ ]*[ *]\(imgstore_[a-z0-9_]*\)(.*/\1/p' client/imgstore.h | sort >"$tmp/declared"
[ -s "$tmp/declared" ] || bad "found no function in client/imgstore.h"
if cmp -s "$tmp/exported" "$tmp/declared"; then ok; else
    bad "exported symbols differ from client/imgstore.h (< exported only, > declared only):"
    diff "$tmp/exported" "$tmp/declared" | grep '^[<>]' | head -n 20
fi
echo "test_install: $REAL exports $(wc -l <"$tmp/exported") symbols"

# ---- make install into a temporary DESTDIR
D=$tmp/root
P=/usr/local
if ! make -s --no-print-directory BUILD="$BUILD" PREFIX=$P DESTDIR="$D" install >"$tmp/install.log" 2>&1; then
    bad "make install failed:"; cat "$tmp/install.log"; exit 1
fi
for f in bin/nameserver bin/dataserver bin/imgstore bin/ds-admin include/imgstore.h \
         lib/$REAL lib/libimgstore.a lib/pkgconfig/imgstore.pc \
         lib/systemd/system/imgstore-nameserver.service lib/systemd/system/imgstore-dataserver@.service \
         share/doc/imgstore/README.md share/doc/imgstore/examples/nameserver.env.example \
         share/doc/imgstore/examples/dataserver.env.example \
         share/man/man1/nameserver.1 share/man/man1/dataserver.1 share/man/man1/imgstore.1 \
         share/man/man1/ds-admin.1 share/bash-completion/completions/imgstore \
         share/bash-completion/completions/ds-admin; do
    check "not installed: $P/$f" test -f "$D$P/$f"
done
for f in bin/nameserver bin/dataserver bin/imgstore bin/ds-admin; do
    check "$P/$f is not executable" test -x "$D$P/$f"
done
check "installed $SONAME is not a link to $REAL" test "$(readlink "$D$P/lib/$SONAME")" = "$REAL"
check "installed libimgstore.so is not a link to $SONAME" \
    test "$(readlink "$D$P/lib/libimgstore.so")" = "$SONAME"
grep -q "^prefix=$P\$" "$D$P/lib/pkgconfig/imgstore.pc" && ok || bad "imgstore.pc: prefix is not $P"
grep -q "^Version: $VERSION\$" "$D$P/lib/pkgconfig/imgstore.pc" && ok || bad "imgstore.pc: Version is not $VERSION"
grep -q "$(pwd)" "$D$P/lib/pkgconfig/imgstore.pc" && bad "imgstore.pc names the source tree" || ok
grep -q "^ExecStart=$P/bin/nameserver " "$D$P/lib/systemd/system/imgstore-nameserver.service" && ok ||
    bad "the installed nameserver unit does not start $P/bin/nameserver"

# ---- a program built against the installed tree with pkg-config only
cat >"$tmp/app.c" <<'APP'
#include <imgstore.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    imgstore_t *h = NULL;
    if (strcmp(imgstore_version(), IMGSTORE_VERSION) != 0) {
        printf("library %s, header %s\n", imgstore_version(), IMGSTORE_VERSION);
        return 1;
    }
    if (imgstore_open("no port here", NULL, &h) != IMGSTORE_EINVAL) return 2;
    if (imgstore_open("127.0.0.1:1", NULL, &h) != 0) return 3;
    imgstore_close(h);
    printf("version %s: %s\n", imgstore_version(), imgstore_strerror(IMGSTORE_ENOTFOUND));
    return 0;
}
APP
export PKG_CONFIG_PATH="$D$P/lib/pkgconfig"
export PKG_CONFIG_LIBDIR="$D$P/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig"
pc() { pkg-config --define-prefix "$@" imgstore; }
cflags=$(pc --cflags) && libs=$(pc --libs) && libdir=$(pc --variable=libdir) ||
    { bad "pkg-config cannot read the installed imgstore.pc"; exit 1; }
check "pkg-config --modversion is not $VERSION" test "$(pc --modversion)" = "$VERSION"
check "pkg-config's libdir $libdir is not the installed one" test "$libdir" = "$D$P/lib"
# A library built by `make asan` needs its program built the same way.
san=""
readelf -d "$LIB/$REAL" | grep -q 'NEEDED.*libasan' && san="-fsanitize=address,undefined"
if cc $san -Werror -o "$tmp/app" "$tmp/app.c" $cflags $libs -Wl,-rpath,"$libdir" 2>"$tmp/cc.log"; then
    ok
    out=$("$tmp/app" 2>&1); rc=$?
    check "the shared-linked program failed ($rc): $out" test "$rc" -eq 0
    case "$out" in "version $VERSION: "?*) ok ;; *) bad "the program printed: $out" ;; esac
    needed=$(readelf -d "$tmp/app" | sed -n 's/.*(NEEDED).*\[\(libimgstore.*\)\]/\1/p')
    check "the program needs '$needed', not $SONAME" test "$needed" = "$SONAME"
    loaded=$(ldd "$tmp/app" | sed -n "s/.*$SONAME => \([^ ]*\).*/\1/p")
    check "the program loads '$loaded', not the installed library" test "$loaded" = "$D$P/lib/$SONAME"
else
    bad "compiling against the installed tree failed:"; cat "$tmp/cc.log"
fi
# Static: the .a and the private requirements the .pc names.
if cc $san -Werror -o "$tmp/app_static" "$tmp/app.c" $cflags "$libdir/libimgstore.a" \
      $(pc --static --libs | sed 's/-limgstore//') 2>"$tmp/cc.log"; then
    ok
    readelf -d "$tmp/app_static" | grep -q "NEEDED.*libimgstore" &&
        bad "the static program still needs libimgstore.so" || ok
    "$tmp/app_static" >/dev/null 2>&1 && ok || bad "the statically linked program failed"
else
    bad "linking the static library with pkg-config --static failed:"; cat "$tmp/cc.log"
fi

# ---- make uninstall leaves nothing (but the empty folders)
if make -s --no-print-directory BUILD="$BUILD" PREFIX=$P DESTDIR="$D" uninstall >"$tmp/un.log" 2>&1; then
    left=$(find "$D" ! -type d)
    check "make uninstall left: $left" test -z "$left"
else
    bad "make uninstall failed:"; cat "$tmp/un.log"
fi

echo "test_install: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
