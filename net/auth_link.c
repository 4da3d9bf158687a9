/* auth_link.c - the client side of the handshake on a libuv conn, with held
 * requests (see auth_link.h). */
#include "net/auth_link.h"

#include "base/err.h"
#include "base/log.h"
#include "proto/imgstore.pb-c.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct held {
    struct held *next;
    unsigned type;
    ProtobufCMessage *msg; /* re-read copy of the caller's message, or NULL */
    void *body;
    uint32_t body_len;
    conn_free_fn body_free;
    uint32_t timeout_ms;
    conn_reply_cb cb;
    void *arg;
};

struct auth_link {
    struct conn *c;
    int has_key;
    struct auth_key key;
    char cluster_id[AUTH_CLAIM_MAX];
    char server_id[AUTH_CLAIM_MAX];
    uint8_t server_nonce[AUTH_NONCE_LEN];
    uint8_t client_nonce[AUTH_NONCE_LEN];
    int ready;  /* 1: pass through */
    int failed; /* the handshake's error, once it failed */
    struct held *head, **tail;
    auth_link_done_cb done;
    void *done_arg;
};

static void held_free(struct held *h)
{
    if (h->msg)
        protobuf_c_message_free_unpacked(h->msg, NULL);
    if (h->body_free)
        h->body_free(h->body);
    free(h);
}

/* Fails every held request with err. */
static void fail_held(struct auth_link *l, int err)
{
    struct held *h;
    while ((h = l->head)) {
        l->head = h->next;
        h->cb(err, NULL, h->arg);
        held_free(h);
    }
    l->tail = &l->head;
}

static void finish(struct auth_link *l, int status)
{
    if (status == 0) {
        l->ready = 1;
        struct held *h;
        while ((h = l->head)) {
            l->head = h->next;
            /* conn_request owns the body now (frees it also on failure). */
            int rc = conn_request(l->c, h->type, h->msg, h->body, h->body_len, h->body_free,
                                  h->timeout_ms, h->cb, h->arg);
            if (rc != 0)
                h->cb(rc, NULL, h->arg);
            if (h->msg)
                protobuf_c_message_free_unpacked(h->msg, NULL);
            free(h);
        }
        l->tail = &l->head;
    } else {
        l->failed = status;
        fail_held(l, status);
        conn_close(l->c);
    }
    if (l->done)
        l->done(status, l->done_arg);
}

static void on_auth(int status, const struct frame *f, void *arg)
{
    struct auth_link *l = arg;
    int rc = 0;
    Imgstore__AuthResp *m = conn_reply_unpack(status, f, &imgstore__auth_resp__descriptor, &rc);
    if (m) {
        struct auth_claims cl = {l->cluster_id, l->server_id};
        rc = auth_proof_check(&l->key, 1, l->server_nonce, l->client_nonce, l->key.name, &cl,
                              m->server_proof.data, m->server_proof.len);
        if (rc)
            log_warn("server %s did not prove key '%s': refused", conn_peer(l->c), l->key.name);
        imgstore__auth_resp__free_unpacked(m, NULL);
    } else if (!conn_is_closing(l->c)) {
        log_warn("authentication to %s with key '%s' failed: %s", conn_peer(l->c), l->key.name,
                 img_strerror(rc));
    }
    finish(l, rc);
}

static void on_hello(int status, const struct frame *f, void *arg)
{
    struct auth_link *l = arg;
    int rc = 0;
    Imgstore__AuthHelloResp *m =
        conn_reply_unpack(status, f, &imgstore__auth_hello_resp__descriptor, &rc);
    if (!m) {
        if (!conn_is_closing(l->c))
            log_warn("authentication to %s failed: %s", conn_peer(l->c), img_strerror(rc));
        finish(l, rc);
        return;
    }
    if (m->server_nonce.len != AUTH_NONCE_LEN || auth_random(l->client_nonce, AUTH_NONCE_LEN)) {
        imgstore__auth_hello_resp__free_unpacked(m, NULL);
        finish(l, IMG_EPROTO);
        return;
    }
    memcpy(l->server_nonce, m->server_nonce.data, AUTH_NONCE_LEN);
    imgstore__auth_hello_resp__free_unpacked(m, NULL);
    struct auth_claims cl = {l->cluster_id, l->server_id};
    uint8_t proof[AUTH_PROOF_LEN];
    auth_proof(&l->key, 0, l->server_nonce, l->client_nonce, l->key.name, &cl, proof);
    Imgstore__Auth a = IMGSTORE__AUTH__INIT;
    a.key_name = l->key.name;
    a.client_nonce.data = l->client_nonce;
    a.client_nonce.len = AUTH_NONCE_LEN;
    a.cluster_id = l->cluster_id;
    a.server_id = l->server_id;
    a.proof.data = proof;
    a.proof.len = AUTH_PROOF_LEN;
    rc = conn_request(l->c, FT_AUTH, &a.base, NULL, 0, NULL, AUTH_LINK_TIMEOUT_MS, on_auth, l);
    if (rc)
        finish(l, rc);
}

struct auth_link *auth_link_start(struct conn *c, const struct auth_key *key,
                                  const struct auth_claims *claims, auth_link_done_cb done,
                                  void *arg)
{
    struct auth_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->c = c;
    l->tail = &l->head;
    l->done = done;
    l->done_arg = arg;
    if (!key) {
        l->ready = 1;
        return l;
    }
    l->has_key = 1;
    l->key = *key;
    if (claims) {
        snprintf(l->cluster_id, sizeof(l->cluster_id), "%s",
                 claims->cluster_id ? claims->cluster_id : "");
        snprintf(l->server_id, sizeof(l->server_id), "%s",
                 claims->server_id ? claims->server_id : "");
    }
    if (conn_request(c, FT_AUTH_HELLO, NULL, NULL, 0, NULL, AUTH_LINK_TIMEOUT_MS, on_hello, l)) {
        OPENSSL_cleanse(&l->key, sizeof(l->key));
        free(l);
        return NULL;
    }
    return l;
}

int auth_link_request(struct auth_link *l, unsigned type, const ProtobufCMessage *msg,
                      const void *body, uint32_t body_len, conn_free_fn body_free,
                      uint32_t timeout_ms, conn_reply_cb cb, void *arg)
{
    if (l->ready)
        return conn_request(l->c, type, msg, body, body_len, body_free, timeout_ms, cb, arg);
    int rc = 0;
    struct held *h = calloc(1, sizeof(*h));
    if (!h) {
        rc = -ENOMEM;
        goto fail;
    }
    if (l->failed || conn_is_closing(l->c)) {
        rc = l->failed ? l->failed : IMG_ECONN;
        goto fail;
    }
    if (msg) {
        /* Keep a copy of the message: packed and read back. */
        size_t len = protobuf_c_message_get_packed_size(msg);
        uint8_t *buf = malloc(len + 1);
        if (!buf) {
            rc = -ENOMEM;
            goto fail;
        }
        protobuf_c_message_pack(msg, buf);
        h->msg = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
        free(buf);
        if (!h->msg) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    if (body_len && !body_free) {
        h->body = malloc(body_len);
        if (!h->body) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(h->body, body, body_len);
        h->body_free = free;
    } else {
        h->body = (void *)body;
        h->body_free = body_free;
    }
    h->type = type;
    h->body_len = body_len;
    h->timeout_ms = timeout_ms;
    h->cb = cb;
    h->arg = arg;
    *l->tail = h;
    l->tail = &h->next;
    return 0;
fail:
    if (h) {
        if (h->msg)
            protobuf_c_message_free_unpacked(h->msg, NULL);
        if (h->body_free == free)
            free(h->body);
        free(h);
    }
    if (body_free)
        body_free((void *)body);
    return rc;
}

int auth_link_ready(const struct auth_link *l)
{
    return l && l->ready;
}

void auth_link_free(struct auth_link *l)
{
    if (!l)
        return;
    fail_held(l, IMG_ECONN);
    OPENSSL_cleanse(&l->key, sizeof(l->key));
    free(l);
}
