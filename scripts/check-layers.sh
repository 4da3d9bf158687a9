#!/bin/sh
# check-layers.sh - fails when a source file includes a header from a layer
# above its own (docs/architecture.md):
#
#   base  <-  proto  <-  net  <-  nameserver | dataserver | client  <-  tools
#
# A folder may include its own headers and those of the layers below it;
# the three middle folders never include one another. Inside dataserver/,
# the storage engine (needle, index, index_pack, uring, block, block_meta, block_int, blockio,
# store, compact, codec, ec, ec_shard)
# never includes the server around it (ds*.h, http*.h). tests/ and bench/
# may include anything. Prints one line per offending include and exits 1
# when there is any, 0 otherwise.
set -u
cd "$(dirname "$0")/.." || exit 2

# allowed FOLDER: the folders whose headers FOLDER may include.
allowed() {
    case $1 in
    base) echo "base" ;;
    proto) echo "base proto" ;;
    net) echo "base proto net" ;;
    nameserver) echo "base proto net nameserver" ;;
    dataserver) echo "base proto net dataserver" ;;
    client) echo "base proto net client" ;;
    tools) echo "base proto net client tools" ;;
    *) echo "" ;;
    esac
}

# The storage engine's files: what they may include inside dataserver/.
engine="needle index index_pack uring block block_meta block_int blockio store compact codec ec ec_shard"
is_engine() {
    for e in $engine; do [ "$1" = "$e" ] && return 0; done
    return 1
}

bad=0
checked=0
for f in $(git ls-files 'base/*.[ch]' 'proto/*.[ch]' 'net/*.[ch]' 'nameserver/*.[ch]' \
    'dataserver/*.[ch]' 'client/*.[ch]' 'tools/*.[ch]'); do
    dir=${f%%/*}
    stem=$(basename "$f")
    stem=${stem%.*}
    ok=$(allowed "$dir")
    checked=$((checked + 1))
    # Every quoted include of a project header: "folder/file.h".
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        case $inc in
        */*) ;;
        *) continue ;; # a header beside it, no folder: not a layer question
        esac
        idir=${inc%%/*}
        hit=0
        for a in $ok; do [ "$a" = "$idir" ] && hit=1; done
        if [ $hit = 0 ]; then
            echo "$f: includes \"$inc\": $dir/ may include only from: $ok"
            bad=$((bad + 1))
            continue
        fi
        if [ "$dir" = dataserver ] && [ "$idir" = dataserver ] && is_engine "$stem"; then
            istem=$(basename "$inc" .h)
            if ! is_engine "$istem"; then
                echo "$f: includes \"$inc\": the storage engine never includes the server around it"
                bad=$((bad + 1))
            fi
        fi
    done
done
if [ $bad -gt 0 ]; then
    echo "check-layers: $bad include(s) point up a layer in $checked files"
    exit 1
fi
echo "check-layers: $checked files, every include points down or sideways in its own folder"
