/* auth.c - keys files, HMAC proofs and the server side of the handshake
 * (see auth.h). Every byte of a keys file and of a handshake message is
 * hostile: bounded sizes, specific errors, constant-time comparisons
 * (CRYPTO_memcmp) for proofs and bearer secrets. */
#include "net/auth.h"

#include "base/err.h"
#include "base/log.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *role_names[] = {"none", "writer", "operator", "member"};

const char *auth_role_name(enum auth_role r)
{
    return (unsigned)r < 4 ? role_names[r] : "none";
}

enum auth_role auth_role_parse(const char *s)
{
    for (int r = AUTH_WRITER; r <= AUTH_MEMBER; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (enum auth_role)r;
    return AUTH_NONE;
}

/* ---- files ------------------------------------------------------------------ */

int auth_file_open(const char *path, struct stat *st, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            snprintf(err, AUTH_ERR_MAX, "key file %s: is a symbolic link (refused)", path);
        else
            snprintf(err, AUTH_ERR_MAX, "key file %s: %s", path, strerror(e));
        return e == ELOOP ? IMG_EKEYFILE : -e;
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        snprintf(err, AUTH_ERR_MAX, "key file %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, AUTH_ERR_MAX, "key file %s: not a regular file (refused)", path);
        close(fd);
        return IMG_EKEYFILE;
    }
    if (st->st_mode & 077) {
        snprintf(err, AUTH_ERR_MAX,
                 "key file %s: mode %04o lets group or others read or write it (refused; "
                 "chmod 600 %s)",
                 path, (unsigned)(st->st_mode & 07777), path);
        close(fd);
        return IMG_EKEYFILE;
    }
    if (st->st_size > (off_t)AUTH_FILE_MAX) {
        snprintf(err, AUTH_ERR_MAX, "key file %s: larger than %u bytes (refused)", path,
                 AUTH_FILE_MAX);
        close(fd);
        return IMG_EKEYFILE;
    }
    return fd;
}

/* Reads the whole (checked) file into a NUL-terminated malloc'd buffer. */
static int read_text(const char *path, struct stat *st, char **out, char *err)
{
    int fd = auth_file_open(path, st, err);
    if (fd < 0)
        return fd;
    size_t cap = (size_t)st->st_size + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, AUTH_ERR_MAX, "key file %s: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap) { /* grew since fstat: refuse rather than chase it */
            snprintf(err, AUTH_ERR_MAX, "key file %s: changed while read", path);
            free(buf);
            close(fd);
            return IMG_EKEYFILE;
        }
    }
    close(fd);
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        snprintf(err, AUTH_ERR_MAX, "key file %s: contains a NUL byte", path);
        free(buf);
        return IMG_EKEYFILE;
    }
    *out = buf;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex[0..len) into out (AUTH_SECRET_MAX). Returns the byte count, or
 * -1 for an odd length, a non-hex digit or too long. */
static int unhex(const char *hex, size_t len, uint8_t *out)
{
    if (len % 2 || len / 2 > AUTH_SECRET_MAX)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(len / 2);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.@", s[i]))
            return 0;
    return 1;
}

/* Parses one line's words (already split) into *k. */
static int parse_key(char **w, int nw, int client, struct auth_key *k, unsigned line, char *err)
{
    const char *role = NULL, *name, *secret;
    if (nw == 3) {
        role = w[0], name = w[1], secret = w[2];
    } else if (nw == 2 && client) {
        name = w[0], secret = w[1];
    } else {
        snprintf(err, AUTH_ERR_MAX, "line %u: expected %s", line,
                 client ? "NAME SECRET or ROLE NAME SECRET" : "ROLE NAME SECRET");
        return IMG_EKEYFILE;
    }
    memset(k, 0, sizeof(*k));
    if (role) {
        k->role = auth_role_parse(role);
        if (k->role == AUTH_NONE) {
            snprintf(err, AUTH_ERR_MAX, "line %u: unknown role '%.32s' (member, operator, writer)",
                     line, role);
            return IMG_EKEYFILE;
        }
    }
    if (!name_ok(name)) {
        snprintf(err, AUTH_ERR_MAX,
                 "line %u: bad key name (1..%d of letters, digits, '-', '_', '.', '@')", line,
                 AUTH_NAME_MAX - 1);
        return IMG_EKEYFILE;
    }
    snprintf(k->name, sizeof(k->name), "%s", name);
    int n = unhex(secret, strlen(secret), k->secret);
    if (n < AUTH_SECRET_MIN) {
        snprintf(err, AUTH_ERR_MAX, "line %u: the secret must be %d to %d hex digits", line,
                 AUTH_SECRET_MIN * 2, AUTH_SECRET_MAX * 2);
        memset(k, 0, sizeof(*k));
        return IMG_EKEYFILE;
    }
    k->secret_len = (size_t)n;
    return 0;
}

int auth_keys_parse(const char *text, int client, struct auth_key **keys, size_t *n, char *err)
{
    *keys = NULL;
    *n = 0;
    size_t cap = 0, cnt = 0;
    struct auth_key *arr = NULL;
    unsigned line = 0;
    const char *p = text;
    int rc = 0;
    while (*p) {
        line++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char buf[512];
        if (len >= sizeof(buf)) {
            snprintf(err, AUTH_ERR_MAX, "line %u: longer than %zu characters", line,
                     sizeof(buf) - 1);
            rc = IMG_EKEYFILE;
            goto fail;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        p += len + (eol ? 1 : 0);
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *w[4], *save = NULL;
        int nw = 0;
        for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (nw == 4)
                break;
            w[nw++] = t;
        }
        if (nw == 0)
            continue;
        if (cnt == AUTH_MAX_KEYS) {
            snprintf(err, AUTH_ERR_MAX, "line %u: more than %d keys", line, AUTH_MAX_KEYS);
            rc = IMG_EKEYFILE;
            goto fail;
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct auth_key *na = realloc(arr, nc * sizeof(*na));
            if (!na) {
                rc = -ENOMEM;
                snprintf(err, AUTH_ERR_MAX, "out of memory");
                goto fail;
            }
            arr = na, cap = nc;
        }
        rc = parse_key(w, nw, client, &arr[cnt], line, err);
        if (rc)
            goto fail;
        for (size_t i = 0; i < cnt; i++)
            if (strcmp(arr[i].name, arr[cnt].name) == 0) {
                snprintf(err, AUTH_ERR_MAX, "line %u: key name '%s' used twice", line,
                         arr[cnt].name);
                rc = IMG_EKEYFILE;
                goto fail;
            }
        cnt++;
        if (client)
            break; /* a client key file holds one key */
    }
    if (client && cnt == 0) {
        snprintf(err, AUTH_ERR_MAX, "no key in the file (expected NAME SECRET)");
        rc = IMG_EKEYFILE;
        goto fail;
    }
    *keys = arr;
    *n = cnt;
    return 0;
fail:
    if (arr)
        OPENSSL_cleanse(arr, cap * sizeof(*arr));
    free(arr);
    return rc;
}

/* Reads and parses path; on an error err names the file. */
static int load_file(const char *path, int client, struct stat *st, struct auth_key **keys,
                     size_t *n, char *err)
{
    char *text = NULL;
    int rc = read_text(path, st, &text, err);
    if (rc)
        return rc;
    char why[AUTH_ERR_MAX];
    rc = auth_keys_parse(text, client, keys, n, why);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    if (rc)
        snprintf(err, AUTH_ERR_MAX, "key file %.100s: %.140s", path, why);
    return rc;
}

static void note_stat(struct auth_keys *k, const struct stat *st)
{
    k->dev = st->st_dev;
    k->ino = st->st_ino;
    k->size = st->st_size;
    k->mtime = st->st_mtim;
}

/* Gives every key of `keys` its gen: the one of the same name and secret
 * in old[0..nold), else a new one. */
static void assign_gens(struct auth_keys *k, struct auth_key *keys, size_t n,
                        const struct auth_key *old, size_t nold)
{
    for (size_t i = 0; i < n; i++) {
        keys[i].gen = 0;
        for (size_t j = 0; j < nold; j++)
            if (strcmp(old[j].name, keys[i].name) == 0 &&
                old[j].secret_len == keys[i].secret_len &&
                CRYPTO_memcmp(old[j].secret, keys[i].secret, keys[i].secret_len) == 0)
                keys[i].gen = old[j].gen;
        if (keys[i].gen == 0)
            keys[i].gen = ++k->next_gen;
    }
}

int auth_keys_load(const char *path, struct auth_keys **out, char *err)
{
    *out = NULL;
    struct auth_keys *k = calloc(1, sizeof(*k));
    if (!k || !(k->path = strdup(path))) {
        free(k);
        snprintf(err, AUTH_ERR_MAX, "out of memory");
        return -ENOMEM;
    }
    struct stat st;
    int rc = load_file(path, 0, &st, &k->keys, &k->n, err);
    if (rc) {
        free(k->path);
        free(k);
        return rc;
    }
    note_stat(k, &st);
    assign_gens(k, k->keys, k->n, NULL, 0);
    *out = k;
    return 0;
}

int auth_keys_reload(struct auth_keys *k, char *err)
{
    struct stat st;
    if (stat(k->path, &st) != 0) {
        snprintf(err, AUTH_ERR_MAX, "key file %s: %s (keeping the keys read before)", k->path,
                 strerror(errno));
        return -errno;
    }
    if (st.st_dev == k->dev && st.st_ino == k->ino && st.st_size == k->size &&
        st.st_mtim.tv_sec == k->mtime.tv_sec && st.st_mtim.tv_nsec == k->mtime.tv_nsec)
        return 0;
    struct auth_key *keys;
    size_t n;
    int rc = load_file(k->path, 0, &st, &keys, &n, err);
    if (rc) {
        /* Look again only when it changes again: one error line per change. */
        note_stat(k, &st);
        size_t l = strlen(err);
        snprintf(err + l, AUTH_ERR_MAX - l, " (keeping the keys read before)");
        return rc;
    }
    assign_gens(k, keys, n, k->keys, k->n);
    OPENSSL_cleanse(k->keys, k->n * sizeof(*k->keys));
    free(k->keys);
    k->keys = keys;
    k->n = n;
    note_stat(k, &st);
    return 1;
}

int auth_keys_reread(struct auth_keys *k, char *err)
{
    k->mtime.tv_nsec = -1; /* no file has this mtime: auth_keys_reload reads */
    return auth_keys_reload(k, err);
}

void auth_keys_free(struct auth_keys *k)
{
    if (!k)
        return;
    if (k->keys)
        OPENSSL_cleanse(k->keys, k->n * sizeof(*k->keys));
    free(k->keys);
    free(k->path);
    free(k);
}

const struct auth_key *auth_keys_find(const struct auth_keys *k, const char *name)
{
    if (!k || !name)
        return NULL;
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->keys[i].name, name) == 0)
            return &k->keys[i];
    return NULL;
}

const struct auth_key *auth_keys_first(const struct auth_keys *k, enum auth_role role)
{
    for (size_t i = 0; k && i < k->n; i++)
        if (k->keys[i].role == role)
            return &k->keys[i];
    return NULL;
}

const struct auth_key *auth_keys_by_secret(const struct auth_keys *k, const char *hex, size_t len)
{
    uint8_t s[AUTH_SECRET_MAX];
    int n = unhex(hex, len, s);
    const struct auth_key *found = NULL;
    if (n < AUTH_SECRET_MIN || !k)
        return NULL;
    for (size_t i = 0; i < k->n; i++) {
        /* Every key is compared in full, whatever matched before. */
        int same = k->keys[i].secret_len == (size_t)n &&
                   CRYPTO_memcmp(k->keys[i].secret, s, (size_t)n) == 0;
        if (same && !found)
            found = &k->keys[i];
    }
    OPENSSL_cleanse(s, sizeof(s));
    return found;
}

int auth_key_file_load(const char *path, struct auth_key *out, char *err)
{
    struct auth_key *keys;
    size_t n;
    struct stat st;
    int rc = load_file(path, 1, &st, &keys, &n, err);
    if (rc)
        return rc;
    *out = keys[0];
    OPENSSL_cleanse(keys, n * sizeof(*keys));
    free(keys);
    return 0;
}

/* ---- proofs ----------------------------------------------------------------- */

int auth_random(uint8_t *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1 ? 0 : IMG_EAUTH;
}

/* Appends a u32 big-endian length and the bytes. Returns the new offset or
 * SIZE_MAX when out (cap bytes) is too small. */
static size_t put_field(uint8_t *out, size_t off, size_t cap, const void *p, size_t len)
{
    if (off == SIZE_MAX || len > cap || off + 4 + len > cap)
        return SIZE_MAX;
    out[off] = (uint8_t)(len >> 24);
    out[off + 1] = (uint8_t)(len >> 16);
    out[off + 2] = (uint8_t)(len >> 8);
    out[off + 3] = (uint8_t)len;
    if (len)
        memcpy(out + off + 4, p, len);
    return off + 4 + len;
}

void auth_proof(const struct auth_key *k, int server, const uint8_t *server_nonce,
                const uint8_t *client_nonce, const char *key_name,
                const struct auth_claims *claims, uint8_t out[AUTH_PROOF_LEN])
{
    static const char ctx_client[] = "imgstore-auth-1 client";
    static const char ctx_server[] = "imgstore-auth-1 server";
    uint8_t msg[512];
    const char *cl = claims && claims->cluster_id ? claims->cluster_id : "";
    const char *sv = claims && claims->server_id ? claims->server_id : "";
    size_t off = 0;
    off = put_field(msg, off, sizeof(msg), server ? ctx_server : ctx_client,
                    sizeof(ctx_client) - 1);
    if (server) {
        off = put_field(msg, off, sizeof(msg), client_nonce, AUTH_NONCE_LEN);
        off = put_field(msg, off, sizeof(msg), server_nonce, AUTH_NONCE_LEN);
    } else {
        off = put_field(msg, off, sizeof(msg), server_nonce, AUTH_NONCE_LEN);
        off = put_field(msg, off, sizeof(msg), client_nonce, AUTH_NONCE_LEN);
    }
    off = put_field(msg, off, sizeof(msg), key_name, strnlen(key_name, AUTH_NAME_MAX));
    off = put_field(msg, off, sizeof(msg), cl, strnlen(cl, AUTH_CLAIM_MAX));
    off = put_field(msg, off, sizeof(msg), sv, strnlen(sv, AUTH_CLAIM_MAX));
    unsigned int olen = AUTH_PROOF_LEN;
    if (off == SIZE_MAX ||
        !HMAC(EVP_sha256(), k->secret, (int)k->secret_len, msg, off, out, &olen))
        RAND_bytes(out, AUTH_PROOF_LEN); /* cannot happen; never a guessable value */
}

int auth_proof_check(const struct auth_key *k, int server, const uint8_t *server_nonce,
                     const uint8_t *client_nonce, const char *key_name,
                     const struct auth_claims *claims, const uint8_t *proof, size_t len)
{
    uint8_t want[AUTH_PROOF_LEN];
    auth_proof(k, server, server_nonce, client_nonce, key_name, claims, want);
    int ok = len == AUTH_PROOF_LEN && CRYPTO_memcmp(want, proof, AUTH_PROOF_LEN) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok ? 0 : IMG_EAUTH;
}

/* ---- the server side -------------------------------------------------------- */

int auth_is_handshake(unsigned type)
{
    return type == FT_AUTH_HELLO || type == FT_AUTH;
}

int auth_log_ok(unsigned long *suppressed)
{
    static time_t second;
    static unsigned in_second;
    static unsigned long dropped;
    time_t now = time(NULL);
    if (now != second) {
        second = now;
        in_second = 0;
    }
    if (in_second >= AUTH_LOG_PER_S) {
        dropped++;
        return 0;
    }
    in_second++;
    *suppressed = dropped;
    dropped = 0;
    return 1;
}

static void refuse(struct auth_sess *s, struct auth_answer *a, const char *peer, int err,
                   const char *why, const char *name)
{
    unsigned long more;
    char also[64] = "";
    if (auth_log_ok(&more)) {
        if (more)
            snprintf(also, sizeof(also), " (%lu more refusals not logged)", more);
        log_warn("authentication from %s refused (key '%.64s'): %s%s", peer, name ? name : "",
                 why, also);
    }
    s->state = AUTH_ST_FAILED;
    a->status = err;
    a->msg = NULL;
}

static int claim_ok(const char *s)
{
    size_t n = strnlen(s, AUTH_CLAIM_MAX);
    if (n >= AUTH_CLAIM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)s[i]))
            return 0;
    return 1;
}

static void handle_auth(struct auth_sess *s, const struct auth_keys *keys, const char *cluster_id,
                        const char *peer, const uint8_t *head, uint32_t head_len,
                        uint32_t body_len, struct auth_answer *a)
{
    Imgstore__Auth *m = body_len ? NULL : imgstore__auth__unpack(NULL, head_len, head);
    if (!m) {
        refuse(s, a, peer, IMG_EPROTO, "malformed AUTH", NULL);
        return;
    }
    const struct auth_key *k = NULL;
    const char *why = NULL;
    int err = IMG_EAUTH;
    struct auth_claims cl = {m->cluster_id, m->server_id};
    if (s->state != AUTH_ST_HELLO)
        why = s->state == AUTH_ST_NEW ? "AUTH before AUTH_HELLO" : "second handshake";
    else if (!keys)
        why = "authentication is off on this server";
    else if (m->client_nonce.len != AUTH_NONCE_LEN || m->proof.len != AUTH_PROOF_LEN ||
             !claim_ok(m->cluster_id) || !claim_ok(m->server_id) ||
             strnlen(m->key_name, AUTH_NAME_MAX) >= AUTH_NAME_MAX)
        why = "malformed fields";
    else if (!(k = auth_keys_find(keys, m->key_name)))
        why = "unknown key";
    else if (auth_proof_check(k, 0, s->server_nonce, m->client_nonce.data, m->key_name, &cl,
                              m->proof.data, m->proof.len) != 0)
        why = "wrong proof";
    else if (cluster_id && *cluster_id && *m->cluster_id && strcmp(cluster_id, m->cluster_id))
        why = "claims another cluster id", err = IMG_ECLUSTER;
    if (why) {
        refuse(s, a, peer, err, why, m->key_name);
        imgstore__auth__free_unpacked(m, NULL);
        return;
    }
    s->state = AUTH_ST_DONE;
    snprintf(s->key_name, sizeof(s->key_name), "%s", m->key_name);
    s->key_gen = k->gen;
    snprintf(s->cluster_id, sizeof(s->cluster_id), "%s", m->cluster_id);
    snprintf(s->server_id, sizeof(s->server_id), "%s", m->server_id);
    auth_proof(k, 1, s->server_nonce, m->client_nonce.data, m->key_name, &cl, a->proof);
    imgstore__auth_resp__init(&a->auth);
    a->auth.role = (char *)auth_role_name(k->role);
    a->auth.server_proof.data = a->proof;
    a->auth.server_proof.len = AUTH_PROOF_LEN;
    a->status = 0;
    a->msg = &a->auth.base;
    imgstore__auth__free_unpacked(m, NULL);
}

void auth_handle(struct auth_sess *s, const struct auth_keys *keys, const char *cluster_id,
                 const char *peer, unsigned type, const uint8_t *head, uint32_t head_len,
                 uint32_t body_len, struct auth_answer *a)
{
    a->status = 0;
    a->msg = NULL;
    if (type == FT_AUTH) {
        handle_auth(s, keys, cluster_id, peer, head, head_len, body_len, a);
        return;
    }
    if (type != FT_AUTH_HELLO) {
        a->status = IMG_EBADTYPE;
        return;
    }
    /* AUTH_HELLO: no body, once per connection (its head has no fields). */
    if (s->state != AUTH_ST_NEW) {
        refuse(s, a, peer, IMG_EAUTH, "second handshake", NULL);
        return;
    }
    if (body_len) {
        refuse(s, a, peer, IMG_EPROTO, "malformed AUTH_HELLO", NULL);
        return;
    }
    if (auth_random(s->server_nonce, AUTH_NONCE_LEN) != 0) {
        refuse(s, a, peer, IMG_EAUTH, "no random bytes", NULL);
        return;
    }
    s->state = AUTH_ST_HELLO;
    imgstore__auth_hello_resp__init(&a->hello);
    a->hello.server_nonce.data = s->server_nonce;
    a->hello.server_nonce.len = AUTH_NONCE_LEN;
    a->msg = &a->hello.base;
}

void auth_serve(struct auth_sess *s, const struct auth_keys *keys, const char *cluster_id,
                struct conn *c, const struct frame *f)
{
    struct auth_answer a;
    auth_handle(s, keys, cluster_id, conn_peer(c), f->h.type, f->head, f->h.head_len,
                f->h.body_len, &a);
    conn_reply(c, &f->h, a.status, a.status ? NULL : a.msg, NULL, 0, NULL);
}

enum auth_role auth_sess_role(const struct auth_sess *s, const struct auth_keys *keys)
{
    if (!keys)
        return AUTH_MEMBER;
    if (!s || s->state != AUTH_ST_DONE)
        return AUTH_NONE;
    const struct auth_key *k = auth_keys_find(keys, s->key_name);
    return k && k->gen == s->key_gen ? k->role : AUTH_NONE;
}

int auth_sess_check(const struct auth_sess *s, const struct auth_keys *keys, enum auth_role need)
{
    if (need == AUTH_NONE || !keys)
        return 0;
    enum auth_role r = auth_sess_role(s, keys);
    if (r == AUTH_NONE)
        return IMG_EAUTH;
    return r >= need ? 0 : IMG_EPERM;
}
