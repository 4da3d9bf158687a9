#!/bin/sh
# test_docs.sh - the project's documents stand on their own, as one test of
# tests/run.sh: every Markdown file one of them (or a source comment, a
# script, a unit file) names as docs/NAME.md, or as an upper-case NAME.md
# such as README.md, is in the repository: no document cites one that is
# not here (a DESIGN.md of another tree, say). And the stale sentence of
# issue 18 stays gone: nothing says a restarted nameserver forgets a drain
# (ns.meta keeps it; integ_progress checks that it goes on).
set -u
cd "$(dirname "$0")/../.." || exit 1
fails=0
checks=0
ok() { checks=$((checks + 1)); }
bad() { echo "!! test_docs: $*"; fails=$((fails + 1)); checks=$((checks + 1)); }

where="README.md docs python/README.md deploy debian base net proto client nameserver dataserver tools bench scripts tests Makefile"
names=$(grep -rhoE --exclude=test_docs.sh '(docs/[A-Za-z0-9_-]+|\b[A-Z][A-Z_]+)\.md\b' $where 2>/dev/null | sort -u)
[ -n "$names" ] && ok || bad "found no document named anywhere (the search is broken)"
for n in $names; do
    case $n in
    docs/*) [ -f "$n" ] ;;
    *) [ -f "$n" ] || [ -f "python/$n" ] ;;
    esac && ok || bad "$n is cited but not in the repository: $(grep -rlE --exclude=test_docs.sh "\\b$n\\b" $where 2>/dev/null | head -n 3 | tr '\n' ' ')"
done
hits=$(grep -rniE '(forget|forgets|forgotten)[^.]*drain|drain[^.]*(forget|forgets|forgotten)' \
    README.md docs tools/*.c 2>/dev/null)
[ -z "$hits" ] && ok || bad "a document says drains are forgotten:
$hits"
echo "test_docs: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
