/* ds_repl.h - replicated appends: WRITE and DELETE on a block's primary,
 * REPL_APPEND on its secondaries (docs/protocol.md).
 *
 * A write on the primary: reserve seq and offset -> build the record ->
 * append it locally (group commit) and send the same bytes to every secondary
 * (REPL_APPEND over ds_peer.c) -> answer only when the local copy is durable
 * and every secondary answered 0. Any failure fails the write and seals the
 * block (replicas stay byte-identical, docs/storage.md). A delete is the same
 * with a tombstone record, after the file's header was read and its cookie
 * checked (ds_file_read).
 * Handlers of the dispatch table (ds_req.h): each answers r exactly once. */
#ifndef DS_DS_REPL_H
#define DS_DS_REPL_H

#include "dataserver/ds_req.h"

void ds_repl_write(struct ds_req *r, const struct frame *f);
void ds_repl_delete(struct ds_req *r, const struct frame *f);
void ds_repl_append(struct ds_req *r, const struct frame *f);

#endif
