/* auth.h - keys, roles and the HMAC-SHA-256 challenge-response of the native
 * protocol (docs/security.md).
 *
 * Keys: a keys file (servers, --keys) holds lines `ROLE NAME SECRET`; a
 * client key file one line `NAME SECRET` (or `ROLE NAME SECRET`). SECRET is
 * at least 32 hex digits; the HMAC key is the bytes they spell. A key file
 * that is not a regular file or that group or others may read or write is
 * refused. Roles nest: writer < operator < member.
 *
 * Handshake (server side here, auth_serve; client sides in client/rpc.c and
 * net/auth_link.c): AUTH_HELLO -> a fresh 16-byte server nonce; AUTH {key
 * name, client nonce, claims, proof} -> the server checks the proof in
 * constant time, records the key's name on the connection (struct
 * auth_sess) and answers {role, server proof}. The role of a connection is
 * looked up by key name at every check (auth_sess_check), so a key revoked
 * from the file is refused at the connection's next mutating request.
 *
 * Threading: none; a key table belongs to its loop. Depends on libcrypto. */
#ifndef IMG_NET_AUTH_H
#define IMG_NET_AUTH_H

#include "net/conn.h"
#include "proto/imgstore.pb-c.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define AUTH_NAME_MAX 64     /* a key name with its NUL */
#define AUTH_SECRET_MAX 64   /* bytes: 128 hex digits */
#define AUTH_SECRET_MIN 16   /* bytes: 32 hex digits, 128 bits */
#define AUTH_NONCE_LEN 16
#define AUTH_PROOF_LEN 32    /* HMAC-SHA-256 */
#define AUTH_CLAIM_MAX 64    /* a cluster id or server id claim with its NUL */
#define AUTH_MAX_KEYS 4096   /* lines of a keys file */
#define AUTH_FILE_MAX (1u << 20)
#define AUTH_ERR_MAX 256     /* room for an error line */

enum auth_role {
    AUTH_NONE = 0,     /* anyone: reads and read-only views */
    AUTH_WRITER = 1,   /* put, rm, alloc */
    AUTH_OPERATOR = 2, /* + drain, readonly, set, cancel, compact, repair, rebalance, verify */
    AUTH_MEMBER = 3,   /* + every server-to-server frame */
};

struct auth_key {
    char name[AUTH_NAME_MAX];
    enum auth_role role;
    uint8_t secret[AUTH_SECRET_MAX];
    size_t secret_len;
    /* Which (name, secret) this is: kept by a reload that finds the same
     * name with the same secret, new otherwise. A connection authenticated
     * with an older secret of the name does not pass for the new one. */
    uint64_t gen;
};

/* A keys file as last read. Owned by its server; freed with auth_keys_free. */
struct auth_keys {
    char *path;
    struct auth_key *keys;
    size_t n;
    dev_t dev; /* what the last read saw, to notice a change */
    ino_t ino;
    off_t size;
    struct timespec mtime;
    uint64_t next_gen; /* the gen the next new key gets */
};

/* "writer", "operator", "member" or "none". */
const char *auth_role_name(enum auth_role r);
/* Parses a role name. AUTH_NONE for an unknown one. */
enum auth_role auth_role_parse(const char *s);

/* Opens `path` and checks it is a regular file with no group or other
 * permission bits. Returns an fd (>= 0) or IMG_EKEYFILE with a one-line
 * reason in err (AUTH_ERR_MAX bytes) naming the file (and its mode). *st
 * is filled on success. */
int auth_file_open(const char *path, struct stat *st, char *err);

/* Reads the keys file `path`. Returns 0 with *out (owned by the caller), or
 * IMG_EKEYFILE / -errno with the reason in err. */
int auth_keys_load(const char *path, struct auth_keys **out, char *err);

/* Parses keys-file text (NUL-terminated) into *keys and *n (malloc'd). Returns
 * 0 or IMG_EKEYFILE with "line N: ..." in err. `client`: also accept a
 * `NAME SECRET` line (the role is then AUTH_NONE: whatever the server says). */
int auth_keys_parse(const char *text, int client, struct auth_key **keys, size_t *n, char *err);

/* Re-reads the file when its inode, size or mtime changed. Returns 0 when
 * unchanged, 1 when reloaded, or an error (the old keys stay; err says
 * why). */
int auth_keys_reload(struct auth_keys *k, char *err);

/* Re-reads the file whatever its inode, size or mtime (SIGHUP). Returns 1
 * when read, or an error (the old keys stay; err says why). */
int auth_keys_reread(struct auth_keys *k, char *err);

void auth_keys_free(struct auth_keys *k);

/* The key of that name, or NULL. The pointer is valid until the next
 * reload. */
const struct auth_key *auth_keys_find(const struct auth_keys *k, const char *name);

/* The first key with role `role`, or NULL. */
const struct auth_key *auth_keys_first(const struct auth_keys *k, enum auth_role role);

/* Finds the key whose secret is spelled by hex[0..len) (an HTTP bearer
 * token), comparing every key in constant time. Returns it or NULL. */
const struct auth_key *auth_keys_by_secret(const struct auth_keys *k, const char *hex, size_t len);

/* Reads a client key file (one key; the first line that is not a comment).
 * Returns 0 with *out, or IMG_EKEYFILE / -errno with the reason in err. */
int auth_key_file_load(const char *path, struct auth_key *out, char *err);

/* Fills out[n] with random bytes (RAND_bytes). 0 or IMG_EAUTH. */
int auth_random(uint8_t *out, size_t n);

/* The claims a party binds into the proofs (may be empty strings). */
struct auth_claims {
    const char *cluster_id;
    const char *server_id;
};

/* Computes a proof: server == 0 the client's, 1 the server's (see top). */
void auth_proof(const struct auth_key *k, int server, const uint8_t *server_nonce,
                const uint8_t *client_nonce, const char *key_name,
                const struct auth_claims *claims, uint8_t out[AUTH_PROOF_LEN]);

/* Checks `proof` (len bytes) against the expected one in constant time.
 * Returns 0 or IMG_EAUTH. */
int auth_proof_check(const struct auth_key *k, int server, const uint8_t *server_nonce,
                     const uint8_t *client_nonce, const char *key_name,
                     const struct auth_claims *claims, const uint8_t *proof, size_t len);

/* Rate limit of the refusal WARNs (an attacker must not flood the log):
 * returns non-zero when one more may be logged now (AUTH_LOG_PER_S a
 * second); *suppressed then says how many were not logged since the last
 * one (to say so in it). */
#define AUTH_LOG_PER_S 10
int auth_log_ok(unsigned long *suppressed);

/* ---- the server side of one connection ------------------------------------ */

enum auth_state { AUTH_ST_NEW = 0, AUTH_ST_HELLO, AUTH_ST_DONE, AUTH_ST_FAILED };

/* Per-connection state, in the owner's per-connection data. */
struct auth_sess {
    enum auth_state state;
    uint8_t server_nonce[AUTH_NONCE_LEN];
    char key_name[AUTH_NAME_MAX];
    uint64_t key_gen; /* the key's gen when it authenticated */
    char cluster_id[AUTH_CLAIM_MAX]; /* the claims the proof bound */
    char server_id[AUTH_CLAIM_MAX];
};

/* Returns non-zero for the handshake's frame types. */
int auth_is_handshake(unsigned type);

/* The answer to one handshake request: a status and, when 0, msg (points
 * at hello or auth, which point into the struct). */
struct auth_answer {
    int status;
    const ProtobufCMessage *msg;
    Imgstore__AuthHelloResp hello;
    Imgstore__AuthResp auth;
    uint8_t proof[AUTH_PROOF_LEN];
};

/* The handshake without a connection (auth_serve's core, and what
 * tests/fuzz/fuzz_auth.c drives): serves request `type` (AUTH_HELLO or
 * AUTH) with its head and body length for session s, fills *a (s's nonce
 * is borrowed by a->hello). `peer` names the peer in the WARN of a
 * refusal. */
void auth_handle(struct auth_sess *s, const struct auth_keys *keys, const char *cluster_id,
                 const char *peer, unsigned type, const uint8_t *head, uint32_t head_len,
                 uint32_t body_len, struct auth_answer *a);

/* Serves one AUTH_HELLO or AUTH request frame on c for session s with the
 * keys `keys` (NULL: authentication off, every AUTH is refused as
 * IMG_EAUTH since there is nothing to check it against). `cluster_id`, when
 * non-empty, must equal a non-empty claimed one (else IMG_ECLUSTER). Logs a
 * failure at WARN with the peer address. */
void auth_serve(struct auth_sess *s, const struct auth_keys *keys, const char *cluster_id,
                struct conn *c, const struct frame *f);

/* The role the session's key has now: AUTH_MEMBER for everything when keys
 * is NULL (authentication off); AUTH_NONE when not authenticated, or the key
 * is gone from the file or has another secret now. */
enum auth_role auth_sess_role(const struct auth_sess *s, const struct auth_keys *keys);

/* 0 when the session may send a request needing `need`; IMG_EAUTH when it
 * has no (current) key, IMG_EPERM when its key's role is below. */
int auth_sess_check(const struct auth_sess *s, const struct auth_keys *keys, enum auth_role need);

#endif
