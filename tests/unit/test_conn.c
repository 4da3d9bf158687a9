/* test_conn.c - matching answers to requests in net/conn.c: whatever the
 * order the peer answers in, each request's callback gets its own answer
 * exactly once; requests that time out are taken out of the list so that
 * new requests sent from their callbacks are still matched. And admission
 * (struct conn_limits): a refused frame is answered with the refusal, its
 * body never reaches the server, and the next frame is served. */
#include "net/conn.h"
#include "base/err.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 2000

enum order { IN_ORDER, REVERSED, ODD_FIRST, EVEN_ONLY };

/* The answering side: keeps every request and answers once all arrived. */
struct server {
    uv_tcp_t listener;
    struct conn *c;
    enum order order;
    size_t n;
    struct frame_header req[N + 16];
    uint64_t token[N + 16];
};

/* The asking side. */
struct client {
    struct conn *c;
    size_t want; /* requests sent first */
    size_t done, timed_out, wrong, late_sent, late_answered;
    unsigned char seen[N + 16];
};

static uv_loop_t loop;
static struct server srv;
static struct client cli;

static void answer(size_t i)
{
    cr_assert_eq(conn_reply(srv.c, &srv.req[i], 0, NULL, &srv.token[i], sizeof(srv.token[i]),
                            NULL),
                 0);
}

static void srv_frame(struct conn *c, const struct frame *f, void *ctx)
{
    (void)ctx;
    cr_assert_eq(f->h.body_len, sizeof(uint64_t));
    uint64_t token;
    memcpy(&token, f->body, sizeof(token));
    if (token >= N) { /* a request sent late, from a callback: answered at once */
        conn_reply(c, &f->h, 0, NULL, &token, sizeof(token), NULL);
        return;
    }
    srv.req[srv.n] = f->h;
    srv.token[srv.n] = token;
    if (++srv.n < N)
        return;
    switch (srv.order) {
    case IN_ORDER:
        for (size_t i = 0; i < N; i++)
            answer(i);
        break;
    case REVERSED:
        for (size_t i = N; i-- > 0;)
            answer(i);
        break;
    case ODD_FIRST:
        for (size_t i = 1; i < N; i += 2)
            answer(i);
        for (size_t i = 0; i < N; i += 2)
            answer(i);
        break;
    case EVEN_ONLY:
        for (size_t i = 0; i < N; i += 2)
            answer(i);
        break;
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    cr_assert_eq(status, 0);
    srv.c = conn_accept(l, srv_frame, NULL, NULL);
    cr_assert_not_null(srv.c);
}

static void finish_if_done(void)
{
    if (cli.done + cli.timed_out < cli.want || cli.late_answered < cli.late_sent)
        return;
    conn_close(cli.c);
    if (srv.c)
        conn_close(srv.c);
    uv_close((uv_handle_t *)&srv.listener, NULL);
}

static int send_late(conn_reply_cb cb)
{
    uint64_t token = N + cli.late_sent;
    int rc = conn_request(cli.c, FT_HEARTBEAT, NULL, &token, sizeof(token), NULL, 5000, cb,
                          (void *)(uintptr_t)token);
    if (rc == 0)
        cli.late_sent++;
    return rc;
}

static void late_reply(int status, const struct frame *f, void *arg)
{
    uint64_t want = (uint64_t)(uintptr_t)arg, got = UINT64_MAX;
    if (status == 0 && f && f->h.body_len == sizeof(got))
        memcpy(&got, f->body, sizeof(got));
    if (got != want)
        cli.wrong++;
    cli.late_answered++;
    finish_if_done();
}

/* Each answer sends the next request: the list goes from one request to
 * none and back, each time from a callback. */
static void chain_reply(int status, const struct frame *f, void *arg)
{
    if (cli.late_sent < N / 2)
        cr_assert_eq(send_late(chain_reply), 0);
    late_reply(status, f, arg);
}

static void on_reply(int status, const struct frame *f, void *arg)
{
    uint64_t want = (uint64_t)(uintptr_t)arg, got = UINT64_MAX;
    if (status == IMG_ETIMEDOUT) {
        cli.timed_out++;
        /* A new request from the callback of each one taken out of the
         * list, the last one included. */
        cr_assert_eq(send_late(late_reply), 0);
        finish_if_done();
        return;
    }
    if (status == 0 && f && f->h.body_len == sizeof(got))
        memcpy(&got, f->body, sizeof(got));
    if (got != want || want >= N || cli.seen[want])
        cli.wrong++;
    else
        cli.seen[want] = 1;
    cli.done++;
    finish_if_done();
}

/* Sends N requests answered in `order` (or, with chain, one request whose
 * answer sends the next); runs the loop until every callback ran.
 * timeout_ms applies to each of the N requests. */
static void run(enum order order, uint32_t timeout_ms, int chain)
{
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    srv.order = order;
    cli.want = chain ? 0 : N;
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(conn_listen(&loop, &srv.listener, "127.0.0.1:0", on_connection), 0);
    struct sockaddr_in sa;
    int len = sizeof(sa);
    cr_assert_eq(uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&sa, &len), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    cli.c = conn_connect(&loop, addr, NULL, NULL, NULL);
    cr_assert_not_null(cli.c);
    if (chain)
        cr_assert_eq(send_late(chain_reply), 0);
    for (uint64_t i = 0; i < cli.want; i++)
        cr_assert_eq(conn_request(cli.c, FT_HEARTBEAT, NULL, &i, sizeof(i), NULL, timeout_ms,
                                  on_reply, (void *)(uintptr_t)i),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Every request answered (in the given order) reaches its own callback. */
static void run_all_answered(enum order order)
{
    run(order, 0, 0);
    cr_assert_eq(cli.done, N);
    cr_assert_eq(cli.wrong, 0);
}

Test(conn, answers_in_order_each_reach_their_request, .timeout = 10)
{
    run_all_answered(IN_ORDER);
}

Test(conn, answers_in_reverse_order_each_reach_their_request, .timeout = 10)
{
    run_all_answered(REVERSED);
}

Test(conn, answers_out_of_order_each_reach_their_request, .timeout = 10)
{
    run_all_answered(ODD_FIRST);
}

Test(conn, unanswered_requests_time_out_and_later_requests_still_match, .timeout = 10)
{
    run(EVEN_ONLY, 300, 0);
    cr_assert_eq(cli.done, N / 2, "answered %zu", cli.done);
    cr_assert_eq(cli.timed_out, N / 2, "timed out %zu", cli.timed_out);
    cr_assert_eq(cli.late_sent, N / 2);
    cr_assert_eq(cli.late_answered, N / 2);
    cr_assert_eq(cli.wrong, 0);
}

Test(conn, requests_sent_from_answer_callbacks_are_matched, .timeout = 10)
{
    run(IN_ORDER, 0, 1);
    cr_assert_eq(cli.late_sent, N / 2);
    cr_assert_eq(cli.late_answered, N / 2);
    cr_assert_eq(cli.wrong, 0);
}

/* ---- admission (conn_limits.admit): a refused frame is answered at once,
 * its body dropped unkept, and the frames after it on the same connection
 * are served. */

#define BIG_BODY (200u << 10)

static struct {
    uv_tcp_t listener;
    struct conn *srv, *cli;
    int admitted, released, seen_big, frames, answers;
    int status[3];
    uint32_t body_len[3];
} adm;

static int adm_admit(struct conn *c, const struct frame_header *h, void *ctx)
{
    if (h->body_len > 1000)
        return IMG_ETOOBIG;
    adm.admitted++;
    return 0;
}

static void adm_release(struct conn *c, const struct frame_header *h, void *ctx)
{
    adm.released++;
}

static void adm_frame(struct conn *c, const struct frame *f, void *ctx)
{
    adm.frames++;
    adm.seen_big += f->h.body_len > 1000;
    conn_reply(c, &f->h, 0, NULL, f->body, f->h.body_len, NULL);
}

static void adm_connection(uv_stream_t *l, int status)
{
    struct conn_limits lim = {.admit = adm_admit, .release = adm_release};
    adm.srv = conn_accept_limited(l, &lim, adm_frame, NULL, NULL, NULL);
    cr_assert_not_null(adm.srv);
}

static void adm_reply(int status, const struct frame *f, void *arg)
{
    int i = (int)(uintptr_t)arg;
    adm.status[i] = conn_reply_status(status, f);
    adm.body_len[i] = f ? f->h.body_len : 0;
    if (++adm.answers == 3) {
        conn_close(adm.cli);
        conn_close(adm.srv);
        uv_close((uv_handle_t *)&adm.listener, NULL);
    }
}

Test(conn, refused_frame_answered_and_skipped, .timeout = 10)
{
    memset(&adm, 0, sizeof(adm));
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(conn_listen(&loop, &adm.listener, "127.0.0.1:0", adm_connection), 0);
    struct sockaddr_in sa;
    int len = sizeof(sa);
    cr_assert_eq(uv_tcp_getsockname(&adm.listener, (struct sockaddr *)&sa, &len), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    adm.cli = conn_connect(&loop, addr, NULL, NULL, NULL);
    cr_assert_not_null(adm.cli);
    uint8_t *big = calloc(1, BIG_BODY);
    uint64_t small = 42;
    cr_assert_eq(conn_request(adm.cli, FT_STAT, NULL, &small, sizeof(small), NULL, 5000, adm_reply,
                              (void *)0),
                 0);
    cr_assert_eq(conn_request(adm.cli, FT_WRITE, NULL, big, BIG_BODY, NULL, 5000, adm_reply,
                              (void *)1),
                 0);
    /* A response nobody asked for, with a large body: dropped unkept. */
    struct frame_header stray = {.type = FT_STAT, .request_id = 777};
    cr_assert_eq(conn_reply(adm.cli, &stray, 0, NULL, big, BIG_BODY, NULL), 0);
    cr_assert_eq(conn_request(adm.cli, FT_STAT, NULL, &small, sizeof(small), NULL, 5000, adm_reply,
                              (void *)2),
                 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    free(big);
    cr_assert_eq(adm.status[0], 0);
    cr_assert_eq(adm.body_len[0], sizeof(small));
    cr_assert_eq(adm.status[1], IMG_ETOOBIG);
    cr_assert_eq(adm.body_len[1], 0);
    cr_assert_eq(adm.status[2], 0, "the frame after a refused one: %d", adm.status[2]);
    cr_assert_eq(adm.body_len[2], sizeof(small));
    cr_assert_eq(adm.frames, 2);
    cr_assert_eq(adm.seen_big, 0);
    cr_assert_eq(adm.admitted, 2);
    cr_assert_eq(adm.released, 2);
}
