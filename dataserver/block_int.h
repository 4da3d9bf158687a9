/* block_int.h - what block.c and block_meta.c share, for them alone (the
 * storage engine's users include block.h). */
#ifndef DS_BLOCK_INT_H
#define DS_BLOCK_INT_H

#include "dataserver/block.h"

#include <stddef.h>

#define SUFFIX_MAX 16 /* room for ".meta.tmp" and the like after the block's path */
#define ID_HEX_LEN 16 /* a block id in hex, as in its file names */

/* Writes the path of b's file with `suffix` (".blk", ".meta", ...) to out. */
void block_path_of(const struct block *b, const char *suffix, char *out, size_t n);

/* Returns 1 when n replicas r (NULL when n is 0) can be stored: at most
 * BLOCK_MAX_REPLICAS, every field a non-empty token without spaces. */
int block_replicas_valid(const struct block_replica *r, int n);

/* Reads b's meta file into b (roles, replica set, flags). Returns 0, or a
 * negative errno / IMG_EFORMAT when it is missing or not believable. */
int block_meta_load(struct block *b);

#endif
