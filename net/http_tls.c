/* http_tls.c - TLS for the HTTP server core with OpenSSL on memory BIOs
 * (see http_tls.h): the listener's SSL_CTX (certificate, key, versions,
 * ALPN), its reload when the files change, and the per-connection SSL
 * object whose input and output are plain byte buffers the core moves to
 * and from its libuv stream.
 *
 * OpenSSL's error queue is per thread and shared by every connection:
 * it is cleared before each call whose failure SSL_get_error interprets. */
#include "net/http_tls.h"

#include "base/log.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a file looked like at one look: a change of any field is a change. */
struct file_look {
    int err; /* errno of stat, 0 when it worked */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct http_tls {
    SSL_CTX *ctx; /* the one in force; each SSL holds its own reference */
    char *cert, *key;
    uv_timer_t timer;
    int watching;
    struct file_look seen[2]; /* cert, key at the last look */
    int changed;              /* a change seen at the last look, not loaded yet */
    uint64_t reloads, reloads_failed;
};

struct http_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int done;         /* handshake complete */
};

/* The reason of OpenSSL's first error, the most specific one (the queue
 * is emptied). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

int http_tls_check_key_file(const char *key, char *err, size_t errlen)
{
    struct stat st;
    if (stat(key, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", key, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRGRP | S_IROTH))) {
        snprintf(err, errlen,
                 "%s: a key file must be a regular file not readable by group or others "
                 "(chmod 600 %s)",
                 key, key);
        return -1;
    }
    return 0;
}

/* Offers "http/1.1" only: a client with ALPN but without it is refused
 * (RFC 7301 3.2), one without ALPN speaks HTTP/1.1 anyway. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (inlen == 0 || SSL_select_next_proto(&sel, &sel_len, ours, sizeof(ours) - 1, in, inlen) !=
                          OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* A new SSL_CTX with cert and key loaded and checked. Returns it, or NULL
 * with one line in err. */
static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t errlen)
{
    if (http_tls_check_key_file(key, err, errlen) != 0)
        return NULL;
    FILE *f = fopen(cert, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", cert, strerror(errno));
        return NULL;
    }
    fclose(f);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    /* Idle connections give their record buffers back; resumption uses
     * stateless tickets only, so no session cache grows with the clients. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "cannot load the certificate %s (PEM wanted): %s", cert, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "the private key %s does not match the certificate %s", key,
                     cert);
        } else {
            snprintf(err, errlen, "cannot load the private key %s (PEM wanted): %s", key, ssl_reason());
        }
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "the private key %s does not match the certificate %s", key, cert);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void look(const char *path, struct file_look *l)
{
    struct stat st;
    memset(l, 0, sizeof(*l));
    if (stat(path, &st) != 0) {
        l->err = errno;
        return;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->size = st.st_size;
    l->mtime = st.st_mtim;
    l->ctime = st.st_ctim;
}

static int look_same(const struct file_look *a, const struct file_look *b)
{
    return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

int http_tls_new(const char *cert, const char *key, struct http_tls **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    struct http_tls *t = calloc(1, sizeof(*t));
    if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
        snprintf(err, errlen, "out of memory");
        if (t) {
            free(t->cert);
            free(t);
        }
        return -1;
    }
    look(t->cert, &t->seen[0]);
    look(t->key, &t->seen[1]);
    t->ctx = ctx_load(cert, key, err, errlen);
    if (!t->ctx) {
        free(t->cert);
        free(t->key);
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int http_tls_reload(struct http_tls *t)
{
    char err[512];
    SSL_CTX *ctx = ctx_load(t->cert, t->key, err, sizeof(err));
    if (!ctx) {
        t->reloads_failed++;
        log_error("TLS reload failed, the certificate in force stays: %s", err);
        return -1;
    }
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    t->reloads++;
    log_info("TLS certificate %s and key %s loaded again", t->cert, t->key);
    return 0;
}

static void watch_cb(uv_timer_t *tm)
{
    struct http_tls *t = tm->data;
    struct file_look now[2];
    look(t->cert, &now[0]);
    look(t->key, &now[1]);
    if (!look_same(&now[0], &t->seen[0]) || !look_same(&now[1], &t->seen[1])) {
        /* Changed since the last look: wait until it holds still. */
        t->seen[0] = now[0];
        t->seen[1] = now[1];
        t->changed = 1;
        return;
    }
    if (t->changed) {
        t->changed = 0;
        http_tls_reload(t);
    }
}

int http_tls_watch(struct http_tls *t, uv_loop_t *loop)
{
    if (t->watching)
        return 0;
    int rc = uv_timer_init(loop, &t->timer);
    if (rc != 0)
        return rc;
    t->timer.data = t;
    t->watching = 1;
    return uv_timer_start(&t->timer, watch_cb, HTTP_TLS_WATCH_MS, HTTP_TLS_WATCH_MS);
}

void http_tls_reloads(const struct http_tls *t, uint64_t *done, uint64_t *failed)
{
    *done = t->reloads;
    *failed = t->reloads_failed;
}

static void tls_free_now(struct http_tls *t)
{
    SSL_CTX_free(t->ctx);
    free(t->cert);
    free(t->key);
    free(t);
}

static void timer_closed(uv_handle_t *h)
{
    tls_free_now(h->data);
}

void http_tls_free(struct http_tls *t)
{
    if (!t)
        return;
    if (t->watching)
        uv_close((uv_handle_t *)&t->timer, timer_closed);
    else
        tls_free_now(t);
}

/* ---- one connection ---------------------------------------------------------- */

struct http_tls_conn *http_tls_conn_new(struct http_tls *t)
{
    struct http_tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ssl = SSL_new(t->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        SSL_free(c->ssl);
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty input BIO means "more to come", not end of file. */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return c;
}

void http_tls_conn_free(struct http_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

int http_tls_conn_feed(struct http_tls_conn *c, const void *buf, size_t len)
{
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(c->rbio, buf, n);
        if (w <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        buf = (const char *)buf + w;
        len -= (size_t)w;
    }
    return 0;
}

int http_tls_conn_handshake(struct http_tls_conn *c)
{
    if (c->done)
        return 1;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->done = 1;
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) /* mem BIOs never fill */
        return 0;
    log_debug("TLS handshake failed: %s", ssl_reason());
    return -EPROTO;
}

long http_tls_conn_read(struct http_tls_conn *c, void *buf, size_t cap)
{
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(c->ssl, buf, cap, &got) == 1)
        return (long)got;
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    log_debug("TLS read failed: %s", ssl_reason());
    return -EPROTO;
}

int http_tls_conn_write(struct http_tls_conn *c, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(c->ssl, buf, len, &done) == 1 && done == len)
        return 0;
    int e = SSL_get_error(c->ssl, 0);
    ERR_clear_error();
    return e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL ? -EPROTO : -ENOMEM;
}

void http_tls_conn_shutdown(struct http_tls_conn *c)
{
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t http_tls_conn_pending(const struct http_tls_conn *c)
{
    return BIO_ctrl_pending(c->wbio);
}

size_t http_tls_conn_take_out(struct http_tls_conn *c, void *buf, size_t len)
{
    int n = BIO_read(c->wbio, buf, len > INT_MAX ? INT_MAX : (int)len);
    return n > 0 ? (size_t)n : 0;
}
