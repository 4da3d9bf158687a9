/* ns_etcd_watch.c - a watch on the leader key (see ns_etcd_int.h), so a
 * change of leader is acted on at once instead of at the next poll.
 *
 * A thread of its own holds one streaming request to etcd's JSON gateway
 * (POST /v3/watch, a create_request on PREFIX/leader): the gateway sends
 * one JSON object per line, {"result": {..., "events": [...]}}. Any line
 * with events (the key created by a new leader, or deleted: a lease revoked
 * by a leader stepping down or expired) kicks the election thread
 * (ns_etcd.c), which runs a round at once: a standby campaigns for the
 * vacant key, a nameserver that stepped down learns the new leader (for
 * its NotLeader answers). The watch only hurries rounds; the rounds' own
 * polls (TTL/3, TTL/6 as a standby) decide everything, so a watch that
 * cannot be opened or stalls changes nothing but speed.
 *
 * Every line is hostile: one longer than HA_WATCH_LINE_MAX ends the stream;
 * a line that is not such an object kicks nothing; at most
 * HA_WATCH_LOG_PER_S events a second are logged (the rest counted). A stream lasts at most
 * HA_WATCH_MAX_MS (a connection left half-open by a partition is replaced);
 * after a stream that failed the next one waits TTL/3 and goes to the next
 * endpoint. ns_etcd_watch_stop wakes the thread out of its wait
 * (curl_multi_wakeup). */
#include "nameserver/ns_etcd_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

#define HA_WATCH_LINE_MAX (64u << 10) /* longest line of the stream kept */
#define HA_WATCH_MAX_MS 60000         /* a stream is reopened after this long */
#define HA_WATCH_LOG_PER_S 10         /* events logged per second at most */

struct wbuf {
    struct ns_ha *ha;
    char *p;
    size_t n;
    int events;           /* lines with events seen on this stream */
    uint64_t window_ms;   /* start of the current second of logging */
    unsigned logged;      /* events logged in it */
    unsigned unlogged;    /* events not logged in it */
};

static int stopping(struct ns_ha *ha)
{
    pthread_mutex_lock(&ha->mu);
    int stop = ha->stop;
    pthread_mutex_unlock(&ha->mu);
    return stop;
}

/* One line of the stream: kicks a round when it carries events. */
static void on_line(struct wbuf *w, const char *line)
{
    json_t *o = json_loads(line, 0, NULL);
    json_t *res = json_is_object(o) ? json_object_get(o, "result") : NULL;
    json_t *ev = json_is_object(res) ? json_object_get(res, "events") : NULL;
    if (json_is_array(ev) && json_array_size(ev) > 0) {
        const char *type = json_string_value(json_object_get(json_array_get(ev, 0), "type"));
        w->events++;
        uint64_t now = ns_etcd_mono_ms();
        if (now - w->window_ms >= 1000) {
            if (w->unlogged)
                log_warn("etcd: %u more changes of the leader key (watch) not logged",
                         w->unlogged);
            w->window_ms = now;
            w->logged = w->unlogged = 0;
        }
        if (w->logged < HA_WATCH_LOG_PER_S) { /* a real etcd: two per election */
            w->logged++;
            log_info("etcd: the leader key was %s (watch): a round now",
                     type && strcmp(type, "DELETE") == 0 ? "deleted" : "written");
        } else {
            w->unlogged++;
        }
        pthread_mutex_lock(&w->ha->mu);
        w->ha->kick = 1;
        pthread_cond_signal(&w->ha->cv);
        pthread_mutex_unlock(&w->ha->mu);
    }
    json_decref(o);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct wbuf *w = arg;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (ptr[i] == '\n') {
            w->p[w->n] = '\0';
            on_line(w, w->p);
            w->n = 0;
        } else if (w->n + 1 < HA_WATCH_LINE_MAX) {
            w->p[w->n++] = ptr[i];
        } else {
            return 0; /* curl ends the stream */
        }
    }
    return n;
}

static void *watch_run(void *arg)
{
    struct ns_ha *ha = arg;
    char key[HA_KEY_MAX];
    ns_etcd_key_of(ha, "leader", key);
    char *k = ns_etcd_b64(key);
    json_t *req = k ? json_pack("{s{ss}}", "create_request", "key", k) : NULL;
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    free(k);
    CURL *e = curl_easy_init();
    struct wbuf w = {.ha = ha, .p = malloc(HA_WATCH_LINE_MAX)};
    int ep = 0;
    while (body && e && w.p && !stopping(ha)) {
        char url[ADDR_MAX + 32];
        snprintf(url, sizeof(url), "http://%s/v3/watch", ha->endpoints.addr[ep]);
        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &w);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ha->ttl_ms / 3);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)HA_WATCH_MAX_MS);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 2L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 1L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
        w.n = 0;
        w.events = 0;
        uint64_t t0 = ns_etcd_mono_ms();
        int running = 1;
        CURLcode rc = CURLE_OK;
        if (curl_multi_add_handle(ha->wmulti, e) != CURLM_OK)
            break;
        while (running && !stopping(ha)) {
            if (curl_multi_perform(ha->wmulti, &running) != CURLM_OK)
                break;
            if (running)
                curl_multi_poll(ha->wmulti, NULL, 0, 1000, NULL);
        }
        int left;
        for (CURLMsg *m; (m = curl_multi_info_read(ha->wmulti, &left));)
            if (m->msg == CURLMSG_DONE)
                rc = m->data.result;
        curl_multi_remove_handle(ha->wmulti, e);
        if (stopping(ha))
            break;
        /* A stream that lived its full time is reopened at once; one that
         * failed early waits a little and tries the next endpoint. */
        if (rc != CURLE_OPERATION_TIMEDOUT || ns_etcd_mono_ms() - t0 < HA_WATCH_MAX_MS / 2) {
            if (rc != CURLE_OK && rc != CURLE_OPERATION_TIMEDOUT)
                log_debug("etcd watch on %s: %s", ha->endpoints.addr[ep], curl_easy_strerror(rc));
            ep = (ep + 1) % ha->endpoints.n;
            curl_multi_poll(ha->wmulti, NULL, 0, (int)ha->ttl_ms / 3, NULL);
        }
    }
    free(w.p);
    free(body);
    if (e)
        curl_easy_cleanup(e);
    return NULL;
}

int ns_etcd_watch_start(struct ns_ha *ha)
{
    ha->wmulti = curl_multi_init();
    if (!ha->wmulti)
        return -1;
    if (pthread_create(&ha->wthread, NULL, watch_run, ha) != 0) {
        curl_multi_cleanup(ha->wmulti);
        ha->wmulti = NULL;
        return -1;
    }
    ha->wthread_started = 1;
    return 0;
}

void ns_etcd_watch_stop(struct ns_ha *ha)
{
    if (!ha->wthread_started)
        return;
    curl_multi_wakeup(ha->wmulti); /* ha->stop is set: the thread ends */
    pthread_join(ha->wthread, NULL);
    ha->wthread_started = 0;
    curl_multi_cleanup(ha->wmulti);
    ha->wmulti = NULL;
}
