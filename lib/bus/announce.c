/* Hosts announce themselves beside the stream they read: a hash per host (instance, last
 * applied id, lag, last seen) that expires unless renewed, a hash of the key shapes of the
 * functions it has registered, and a sorted set of instance names by last announcement, so
 * that `mcctl hosts` lists who reads a stream and how far behind, and `mcctl --redis
 * invalidate` can check a key's length before it writes it. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bus/announce.h"
#include "core/addr.h"
#include "core/clock.h"
#include "core/error.h"

struct mc__announcer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC: stop wakes the wait between announcements */
    bool stop, now; /* now: announce at once (mc_bus_announce) */
    char host[256];
    int port;
    char *stream, *instance;
    char set_key[512], hash_key[1024], fns_key[1040];
    unsigned interval_ms, ttl_ms, timeout_ms;
    mc_bus *bus;
    uint64_t started_ms;
    char hostname[128];
};

static uint64_t mc__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void mc__announce_keys(const char *stream, const char *instance, char *set_key, size_t set_cap, char *hash_key,
                       size_t hash_cap)
{
    snprintf(set_key, set_cap, "%s:hosts", stream);
    if (hash_key)
        snprintf(hash_key, hash_cap, "%s:host:%s", stream, instance ? instance : "");
}

/* The hash of one host's function shapes: its announcement hash's name plus ":functions". */
static void mc__fns_key(char *out, size_t cap, const char *hash_key)
{
    snprintf(out, cap, "%s:functions", hash_key);
}

/* A function's shape as announced: "<key length> tree" or "<key length> exact" (key length 0:
 * not declared, any length is accepted). */
static void mc__shape_text(char *out, size_t cap, const mc_cached *fn)
{
    snprintf(out, cap, "%zu %s", mc_cached_key_length(fn), mc_cached_is_tree(fn) ? "tree" : "exact");
}

/* The registered functions, as HSET arguments (name, shape), collected under the registry's
 * read lock by mc_registry_list. */
struct mc__fn_list {
    char **args; /* name, shape, name, shape, ... */
    size_t n, cap;
    bool failed;
};

static void mc__collect_fn(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)st;
    struct mc__fn_list *l = ud;
    if (l->failed)
        return;
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **grown = realloc(l->args, cap * sizeof *grown);
        if (!grown) {
            l->failed = true;
            return;
        }
        l->args = grown;
        l->cap = cap;
    }
    char shape[48];
    mc__shape_text(shape, sizeof shape, fn);
    char *name = strdup(mc_cached_name(fn)), *text = strdup(shape);
    if (!name || !text) {
        free(name);
        free(text);
        l->failed = true;
        return;
    }
    l->args[l->n++] = name;
    l->args[l->n++] = text;
}

static void mc__fn_list_free(struct mc__fn_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->args[i]);
    free(l->args);
}

/* Replace the functions hash in one transaction (a reader never sees it half written), with
 * the announcement's expiry. Nothing is sent when the list could not be built (out of memory):
 * the previous one stays until it expires. Returns false when the connection failed. */
static bool mc__announce_functions(struct mc__announcer *a, redisContext *c)
{
    mc_registry *reg = mc__bus_registry(a->bus);
    if (!reg)
        return true;
    struct mc__fn_list l = {0};
    mc_registry_list(reg, mc__collect_fn, &l);
    if (l.failed) {
        mc__fn_list_free(&l);
        return true;
    }
    int replies = 3;
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "DEL %s", a->fns_key);
    if (l.n) {
        const char **argv = malloc((l.n + 2) * sizeof *argv);
        if (!argv) {
            redisAppendCommand(c, "DISCARD");
            l.n = 0;
        } else {
            argv[0] = "HSET";
            argv[1] = a->fns_key;
            for (size_t i = 0; i < l.n; i++)
                argv[2 + i] = l.args[i];
            redisAppendCommandArgv(c, (int)(l.n + 2), argv, NULL);
            free(argv);
            redisAppendCommand(c, "PEXPIRE %s %u", a->fns_key, a->ttl_ms);
            redisAppendCommand(c, "EXEC");
            replies = 5;
        }
    } else {
        redisAppendCommand(c, "EXEC");
    }
    mc__fn_list_free(&l);
    bool ok = true;
    for (int i = 0; i < replies; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            ok = false;
            break;
        }
        freeReplyObject(r);
    }
    return ok;
}

/* "ms-seq" into its parts; false when it is not one. */
static bool mc__parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    errno = 0;
    unsigned long long a = strtoull(s, &end, 10);
    if (end == s || *end != '-' || errno)
        return false;
    const char *t = end + 1;
    unsigned long long b = strtoull(t, &end, 10);
    if (end == t || *end || errno)
        return false;
    *ms = a;
    *seq = b;
    return true;
}

static redisContext *mc__ann_connect(const char *host, int port, unsigned timeout_ms)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* How far behind the last applied id is: the stream entries after it (XRANGE, at most
 * MC__ANNOUNCE_LAG_CAP) and how long the oldest of them has waited, from its id's time to now
 * (ids are Redis's clock in ms). 0 and 0 when nothing is waiting or there is no stream. */
#define MC__ANNOUNCE_LAG_CAP 1000
static bool mc__lag(redisContext *c, const char *stream, const char *last, uint64_t now_ms, uint64_t *lag_ms,
                    uint64_t *lag_entries)
{
    *lag_ms = *lag_entries = 0;
    uint64_t ms, seq;
    if (!mc__parse_id(last, &ms, &seq))
        return true;
    char from[80];
    snprintf(from, sizeof from, "(%s", last);
    redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT %d", stream, from, MC__ANNOUNCE_LAG_CAP);
    if (!r)
        return false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        *lag_entries = r->elements;
        const redisReply *e = r->element[0];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 && e->element[0]->type == REDIS_REPLY_STRING &&
            mc__parse_id(e->element[0]->str, &ms, &seq))
            *lag_ms = now_ms > ms ? now_ms - ms : 0;
    }
    freeReplyObject(r);
    return true;
}

/* One announcement: the hash (renewed expiry), the sorted set's score, and names in the set
 * that announced nothing for ten expiries dropped. Returns false when the connection failed. */
static bool mc__announce_once(struct mc__announcer *a, redisContext *c)
{
    mc_bus_stats st;
    mc_bus_stats_get(a->bus, &st);
    uint64_t lag_ms, lag_entries, now = mc__wall_ms();
    if (!mc__lag(c, a->stream, st.last_id, now, &lag_ms, &lag_entries))
        return false;
    char s_now[24], s_started[24], s_lag_ms[24], s_lag_n[24], s_pid[24], s_ttl[24];
    snprintf(s_now, sizeof s_now, "%" PRIu64, now);
    snprintf(s_started, sizeof s_started, "%" PRIu64, a->started_ms);
    snprintf(s_lag_ms, sizeof s_lag_ms, "%" PRIu64, lag_ms);
    snprintf(s_lag_n, sizeof s_lag_n, "%" PRIu64, lag_entries);
    snprintf(s_pid, sizeof s_pid, "%ld", (long)getpid());
    snprintf(s_ttl, sizeof s_ttl, "%u", a->ttl_ms);
    const char *argv[] = {"HSET", a->hash_key, "instance", a->instance, "stream", a->stream,
                          "last_id", st.last_id, "lag_ms", s_lag_ms, "lag_entries", s_lag_n,
                          "last_seen_ms", s_now, "started_ms", s_started, "link_up", st.link_up ? "1" : "0",
                          "hostname", a->hostname, "pid", s_pid, "version", mc_version(), "ttl_ms", s_ttl};
    redisAppendCommandArgv(c, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    redisAppendCommand(c, "PEXPIRE %s %u", a->hash_key, a->ttl_ms);
    redisAppendCommand(c, "ZADD %s %s %s", a->set_key, s_now, a->instance);
    uint64_t old = now > 10ull * a->ttl_ms ? now - 10ull * a->ttl_ms : 0;
    redisAppendCommand(c, "ZREMRANGEBYSCORE %s -inf (%" PRIu64, a->set_key, old);
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            ok = false;
            break;
        }
        freeReplyObject(r); /* an error reply (a key of another type) is retried next time */
    }
    return ok && mc__announce_functions(a, c);
}

/* A clean stop leaves no announcement behind: `mcctl hosts` stops listing it at once. */
static void mc__announce_withdraw(struct mc__announcer *a, redisContext *c)
{
    redisAppendCommand(c, "DEL %s %s", a->hash_key, a->fns_key);
    redisAppendCommand(c, "ZREM %s %s", a->set_key, a->instance);
    for (int i = 0; i < 2; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return;
        freeReplyObject(r);
    }
}

static void *mc__announce_main(void *arg)
{
    struct mc__announcer *a = arg;
    redisContext *c = NULL;
    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        pthread_mutex_unlock(&a->lock);
        if (!c)
            c = mc__ann_connect(a->host, a->port, a->timeout_ms);
        if (c && !mc__announce_once(a, c)) {
            redisFree(c); /* the bus logs outages; the next interval reconnects */
            c = NULL;
        }
        pthread_mutex_lock(&a->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += a->interval_ms / 1000;
        until.tv_nsec += (long)(a->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!a->stop && !a->now && pthread_cond_timedwait(&a->cv, &a->lock, &until) != ETIMEDOUT)
            ;
        a->now = false;
    }
    pthread_mutex_unlock(&a->lock);
    if (!c)
        c = mc__ann_connect(a->host, a->port, a->timeout_ms);
    if (c) {
        mc__announce_withdraw(a, c);
        redisFree(c);
    }
    return NULL;
}

static void mc__announcer_free(struct mc__announcer *a)
{
    free(a->stream);
    free(a->instance);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int mc__announce_start(const char *host, int port, const char *stream, const char *instance, unsigned interval_ms,
                       unsigned timeout_ms, mc_bus *bus, mc__announcer **out)
{
    *out = NULL;
    struct mc__announcer *a = calloc(1, sizeof *a);
    if (!a)
        return MC_ENOMEM;
    pthread_mutex_init(&a->lock, NULL);
    mc__cond_init_monotonic(&a->cv);
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = port;
    a->stream = strdup(stream);
    a->instance = strdup(instance);
    a->interval_ms = interval_ms ? interval_ms : MC_BUS_ANNOUNCE_DEFAULT_MS;
    /* Three intervals: one late announcement does not make a live host look gone. */
    a->ttl_ms = a->interval_ms > UINT32_MAX / 3 ? UINT32_MAX : a->interval_ms * 3;
    a->timeout_ms = timeout_ms;
    a->bus = bus;
    a->started_ms = mc__wall_ms();
    if (gethostname(a->hostname, sizeof a->hostname - 1) != 0)
        strcpy(a->hostname, "?");
    if (!a->stream || !a->instance) {
        mc__announcer_free(a);
        return MC_ENOMEM;
    }
    mc__announce_keys(a->stream, a->instance, a->set_key, sizeof a->set_key, a->hash_key, sizeof a->hash_key);
    mc__fns_key(a->fns_key, sizeof a->fns_key, a->hash_key);
    if (pthread_create(&a->thread, NULL, mc__announce_main, a) != 0) {
        mc__announcer_free(a);
        return MC_EIO;
    }
    *out = a;
    return 0;
}

/* Wake the announcer's wait: to announce at once, or to stop. */
static void mc__announce_wake(mc__announcer *a, bool stop)
{
    pthread_mutex_lock(&a->lock);
    if (stop)
        a->stop = true;
    else
        a->now = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->lock);
}

void mc__announce_now(mc__announcer *a)
{
    if (a)
        mc__announce_wake(a, false);
}

void mc__announce_stop(mc__announcer *a)
{
    if (!a)
        return;
    mc__announce_wake(a, true);
    pthread_join(a->thread, NULL);
    mc__announcer_free(a);
}

/* ------------------------------------------------------------------ reading the announcements */

static int mc__by_instance(const void *x, const void *y);

static uint64_t mc__u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

/* The names announced beside `stream` (NULL: the default) at Redis `address`, on a connection
 * of the caller's own: 0 with *c and *names (an array reply, or NULL when there is no such set)
 * and *stream_out set; MC_EINVAL (bad address, the set holds another type) or MC_EIO, with
 * nothing left open. */
static int mc__fleet_open(const char *address, const char *stream, unsigned timeout_ms, redisContext **c,
                          redisReply **names, const char **stream_out, mc_error *err)
{
    *c = NULL;
    *names = NULL;
    char host[256];
    unsigned port;
    const char *why;
    if (mc__hostport_split(address ? address : "127.0.0.1:6379", 6379, false, host, sizeof host, &port, &why) != 0)
        return mc__error_set(err, MC_EINVAL, "%s: %s", address, why);
    if (!stream || !*stream)
        stream = "modcache:invalidations";
    *stream_out = stream;
    redisContext *conn = mc__ann_connect(host, (int)port, timeout_ms ? timeout_ms : 2000);
    if (!conn)
        return mc__error_set(err, MC_EIO, "cannot connect to Redis at %s:%u", host, port);
    char set_key[512];
    mc__announce_keys(stream, NULL, set_key, sizeof set_key, NULL, 0);
    redisReply *r = redisCommand(conn, "ZRANGE %s 0 -1", set_key);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        int rc = mc__error_set(err, r ? MC_EINVAL : MC_EIO, "ZRANGE %s: %s", set_key,
                               r ? r->str : (conn->errstr[0] ? conn->errstr : "no answer"));
        if (r)
            freeReplyObject(r);
        redisFree(conn);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        r = NULL;
    }
    *c = conn;
    *names = r;
    return 0;
}

int mc_bus_hosts_list(const char *address, const char *stream, unsigned timeout_ms, mc_bus_host **out, size_t *n,
                      mc_error *err)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!out || !n)
        return MC_EINVAL;
    redisContext *c;
    redisReply *names;
    int rc = mc__fleet_open(address, stream, timeout_ms, &c, &names, &stream, err);
    if (rc != 0)
        return rc;
    char set_key[512];
    if (!names)
        goto done;
    mc_bus_host *v = calloc(names->elements ? names->elements : 1, sizeof *v);
    if (!v) {
        rc = MC_ENOMEM;
        goto done;
    }
    uint64_t now = mc__wall_ms();
    size_t k = 0;
    for (size_t i = 0; i < names->elements; i++) {
        if (names->element[i]->type != REDIS_REPLY_STRING)
            continue;
        char hash_key[1024];
        mc__announce_keys(stream, names->element[i]->str, set_key, sizeof set_key, hash_key, sizeof hash_key);
        redisReply *h = redisCommand(c, "HGETALL %s", hash_key);
        if (!h) {
            rc = mc__error_set(err, MC_EIO, "HGETALL %s: %s", hash_key, c->errstr[0] ? c->errstr : "no answer");
            free(v);
            goto done;
        }
        /* An expired hash: a host that stopped announcing (crashed, or cut off from Redis). */
        if (h->type == REDIS_REPLY_ARRAY && h->elements >= 2) {
            mc_bus_host *x = &v[k++];
            snprintf(x->instance, sizeof x->instance, "%s", names->element[i]->str);
            for (size_t f = 0; f + 1 < h->elements; f += 2) {
                const char *key = h->element[f]->str, *val = h->element[f + 1]->str;
                if (!key || !val)
                    continue;
                if (!strcmp(key, "last_id"))
                    snprintf(x->last_id, sizeof x->last_id, "%s", val);
                else if (!strcmp(key, "lag_ms"))
                    x->lag_ms = mc__u64(val);
                else if (!strcmp(key, "lag_entries"))
                    x->lag_entries = mc__u64(val);
                else if (!strcmp(key, "last_seen_ms"))
                    x->last_seen_ms = mc__u64(val);
                else if (!strcmp(key, "started_ms"))
                    x->started_ms = mc__u64(val);
                else if (!strcmp(key, "link_up"))
                    x->link_up = !strcmp(val, "1");
                else if (!strcmp(key, "hostname"))
                    snprintf(x->hostname, sizeof x->hostname, "%s", val);
                else if (!strcmp(key, "pid"))
                    x->pid = (long)mc__u64(val);
                else if (!strcmp(key, "version"))
                    snprintf(x->version, sizeof x->version, "%s", val);
            }
            x->age_ms = now > x->last_seen_ms ? now - x->last_seen_ms : 0;
        }
        freeReplyObject(h);
    }
    qsort(v, k, sizeof *v, mc__by_instance);
    *out = v;
    *n = k;
done:
    if (names)
        freeReplyObject(names);
    redisFree(c);
    return rc;
}

void mc_bus_hosts_free(mc_bus_host *hosts) { free(hosts); }

static int mc__by_instance(const void *x, const void *y)
{
    return strcmp(((const mc_bus_host *)x)->instance, ((const mc_bus_host *)y)->instance);
}

int mc_bus_function_shape(const char *address, const char *stream, const char *name, unsigned timeout_ms,
                          mc_bus_shape *out, mc_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!out || !name || !*name)
        return MC_EINVAL;
    redisContext *c;
    redisReply *names;
    int rc = mc__fleet_open(address, stream, timeout_ms, &c, &names, &stream, err);
    if (rc != 0)
        return rc;
    char set_key[512];
    for (size_t i = 0; names && i < names->elements; i++) {
        if (names->element[i]->type != REDIS_REPLY_STRING)
            continue;
        char hash_key[1024], fns_key[1040];
        mc__announce_keys(stream, names->element[i]->str, set_key, sizeof set_key, hash_key, sizeof hash_key);
        mc__fns_key(fns_key, sizeof fns_key, hash_key);
        /* Live: its announcement has not expired (EXISTS), whatever its functions hash says. */
        redisReply *live = redisCommand(c, "EXISTS %s", hash_key);
        redisReply *shape = live ? redisCommand(c, "HGET %s %s", fns_key, name) : NULL;
        if (!live || !shape) {
            rc = mc__error_set(err, MC_EIO, "reading %s: %s", hash_key, c->errstr[0] ? c->errstr : "no answer");
            if (live)
                freeReplyObject(live);
            goto done;
        }
        if (live->type == REDIS_REPLY_INTEGER && live->integer == 1) {
            out->live_hosts++;
            size_t len;
            char kind[16];
            if (shape->type == REDIS_REPLY_STRING && sscanf(shape->str, "%zu %15s", &len, kind) == 2 &&
                (!strcmp(kind, "tree") || !strcmp(kind, "exact"))) {
                bool tree = !strcmp(kind, "tree");
                if (out->hosts == 0) {
                    out->key_length = len;
                    out->tree = tree;
                } else if (out->key_length != len || out->tree != tree) {
                    out->disagree = true;
                }
                out->hosts++;
            }
        }
        freeReplyObject(shape);
        freeReplyObject(live);
    }
done:
    if (names)
        freeReplyObject(names);
    redisFree(c);
    return rc;
}
