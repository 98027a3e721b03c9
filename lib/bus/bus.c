/* The invalidation bus over a Redis stream: a sender thread draining a bounded queue with
 * pipelined XADDs, and a reader thread applying other senders' entries to a registry by name. */
#include "modcache/bus.h"
#include "modcache/log.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "bus/announce.h"
#include "core/addr.h"
#include "core/error.h"
#include "core/ratelog.h"
#include "key/keylist.h"

#define MC__BUS_BATCH 256         /* XADDs per pipeline round trip */
#define MC__BUS_READ_COUNT 512    /* entries per XREAD */
#define MC__BUS_BLOCK_MS 1000     /* XREAD BLOCK: the reader re-checks the stream this often */
#define MC__BUS_CHECK_NS 50000000 /* at most one continuity check per 50 ms while busy */
#define MC__BUS_KEY_MAX 4096      /* an encoded key, as mc_cached accepts */

/* A stream id "ms-seq". */
typedef struct {
    uint64_t ms, seq;
} mc__sid;

typedef struct {
    char *cache;
    char *keys;   /* JSON array of keys, or NULL for "all" */
    uint64_t seq; /* publish order, for mc_bus_flush; a collapsed message keeps the smallest of
                   * those it stands for, so that a flush waits for it as for each of them */
    bool subtrees; /* some key is shorter than the function's: format version 2 */
    unsigned attempts; /* writes tried: a confirmed write after the first is a resend */
} mc__bmsg;

struct mc_bus {
    /* Options, copied. */
    char *host;
    int port;
    char *stream, *instance;
    uint64_t maxlen;
    size_t queue_limit;
    unsigned backoff_min, backoff_max, timeout_ms;
    mc_bus_log_fn log;
    void *log_ud;
    mc_registry *reg;
    char sender[33]; /* 128 random bits, hex */

    /* The queue and the sender's state, under `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* publish, stop -> sender; stop -> reader's backoff */
    pthread_cond_t flushed; /* sender -> mc_bus_flush */
    mc__bmsg *q;            /* ring of qcap */
    size_t qhead, qlen, qcap;
    mc__bmsg *inflight; /* the batch the sender is writing now (not in q) */
    size_t ninflight;
    bool retry[MC__BUS_BATCH]; /* sender only: which of the batch must go again */
    uint64_t next_seq;
    bool stopping;

    /* The reader's connection, published so that stop can interrupt a blocking XREAD. */
    pthread_mutex_t rlock;
    redisContext *rctx;

    pthread_t sender_thr, reader_thr;
    bool has_reader;
    mc__announcer *announcer; /* readers only: this host's entry beside the stream */
    unsigned announce_ms;

    _Atomic uint64_t sent, received, own, applied, ignored, catchups, full_flushes, collapsed,
        reconnects, failed, resent, outages;
    _Atomic bool send_up, read_up;
    _Atomic bool outage_logged; /* one "unreachable" line per outage, whichever thread sees it */
    /* The stream unusable (a key of another type, persistent ERR replies): an outage of its own,
     * seen by either thread. send_bad / read_bad: each thread's view; stream_logged: one line
     * when it starts (with its cause) and one when both threads find the stream usable again. */
    _Atomic bool send_bad, read_bad, stream_logged;
    _Atomic uint64_t stream_bad_since; /* monotonic ns, when the logged outage began */
    /* Bounded staleness (max_staleness_ns > 0): `confirmed` is the latest moment (monotonic ns)
     * by which every entry then in the stream is known to have been applied; the watchdog
     * thread turns the registry's bypass on when it is older than the threshold, and the
     * reader turns it off (flushing) when it is current again. */
    uint64_t max_staleness_ns, stale_after_ns, watch_tick_ns;
    unsigned block_ms; /* XREAD BLOCK: short enough to confirm currency well within the bound */
    _Atomic uint64_t confirmed;
    _Atomic uint64_t bypass_periods;
    _Atomic bool bypassing;
    pthread_mutex_t bypass_lock; /* serializes turning the bypass on and off */
    pthread_t watch_thr;
    bool has_watch;
    pthread_mutex_t idlock;
    char last_id[48];
    uint64_t last_seen;  /* idlock: the stream's entries-added matching last_id */
    bool positioned;     /* idlock: last_id is a position the reader took (mc_bus_position_get) */
    /* Resuming from a saved position (mc_bus_options.resume, mc_bus_resume), under `lock`:
     * the reader waits while HELD; PENDING until its first connection decides; RESUMING while
     * it replays; then DONE or DISCARDED. ABANDONED: mc_bus_resume gave up waiting. */
    bool has_resume;
    mc_bus_position resume;
    int resume_state;
    uint64_t resume_flushes; /* full_flushes when the replay began: one more means discarded */
    const char *resume_reason; /* an MC_BUS_RESUME_* word */
    char resume_why[300];
    pthread_cond_t resume_cv;
    /* Faults that repeat per message or per retry: logged when they start, as a count while
     * they last, and when they end (core/ratelog.h). */
    mc__ratelog send_errors, refusals;
};

/* At most one count line per interval for a repeating fault. */
#define MC__BUS_LOG_INTERVAL_NS 10000000000ull

/* ------------------------------------------------------------------ small helpers */

static void mc__bus_log(mc_bus *b, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void mc__bus_log(mc_bus *b, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->log)
        b->log(b->log_ud, level, msg);
    else
        mc_logger_bus_fn(NULL, level, msg); /* timestamped text on stderr, info and above */
}

/* One occurrence of a repeating fault: the first in full, then a count per interval with the
 * latest text. */
static void mc__bus_log_repeating(mc_bus *b, mc__ratelog *rl, int level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void mc__bus_log_repeating(mc_bus *b, mc__ratelog *rl, int level, const char *what, const char *fmt, ...)
{
    uint64_t n = 0;
    mc__ratelog_action a = mc__ratelog_hit(rl, mc__ratelog_now(), MC__BUS_LOG_INTERVAL_NS, &n);
    if (a == MC__RATELOG_QUIET)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (a == MC__RATELOG_START)
        mc__bus_log(b, level, "%s", msg);
    else
        mc__bus_log(b, level, "%s: %" PRIu64 " more in the last %llu s (latest: %s)", what, n,
                    (unsigned long long)(MC__BUS_LOG_INTERVAL_NS / 1000000000u), msg);
}

/* The fault is over (the next success): one line with its total. */
static void mc__bus_log_ended(mc_bus *b, mc__ratelog *rl, const char *what)
{
    uint64_t total, dur;
    if (mc__ratelog_end(rl, mc__ratelog_now(), 0, &total, &dur))
        mc__bus_log(b, 1, "%s ended: %" PRIu64 " in %.1f s", what, total, (double)dur / 1e9);
}

static uint64_t mc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A deadline for pthread_cond_timedwait (CLOCK_REALTIME, the condition's default clock). */
static struct timespec mc__deadline(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static bool mc__sid_parse(const char *s, size_t len, mc__sid *out)
{
    char buf[48];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    out->ms = strtoull(buf, &end, 10);
    out->seq = 0;
    if (*end == '-')
        out->seq = strtoull(end + 1, &end, 10);
    return errno == 0 && *end == 0;
}

static int mc__sid_cmp(mc__sid a, mc__sid b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

static void mc__msg_free(mc__bmsg *m)
{
    free(m->cache);
    free(m->keys);
}

/* The connection down: log once per outage. */
static void mc__link_down(mc_bus *b, const char *what, const char *why)
{
    if (!atomic_exchange(&b->outage_logged, true))
        mc__bus_log(b, 2, "redis %s:%d unreachable (%s: %s); serving from local caches, retrying", b->host,
                    b->port, what, why);
}

static void mc__link_check_up(mc_bus *b)
{
    /* The "reachable again" line pairs with the "unreachable" one: only the thread that ends a
     * logged outage writes it. */
    if (atomic_load(&b->send_up) && (!b->has_reader || atomic_load(&b->read_up)) &&
        atomic_exchange(&b->outage_logged, false))
        mc__bus_log(b, 1, "redis %s:%d reachable again", b->host, b->port);
}

/* The stream became unusable for one thread: logged once per outage, with its cause. */
static void mc__stream_bad(mc_bus *b, _Atomic bool *flag, const char *what, const char *why)
{
    atomic_store(flag, true);
    if (!atomic_exchange(&b->stream_logged, true)) {
        atomic_store(&b->stream_bad_since, mc__now_ns());
        atomic_fetch_add(&b->outages, 1);
        mc__bus_log(b, 3,
                    "stream %s unusable (%s: %s); invalidations are kept queued, caches will be caught up or "
                    "flushed when it is usable again; retrying",
                    b->stream, what, why);
    }
}

/* One thread finds the stream usable again; the outage ends when both do. */
static void mc__stream_good(mc_bus *b, _Atomic bool *flag)
{
    if (!atomic_exchange(flag, false))
        return;
    if (!atomic_load(&b->send_bad) && !atomic_load(&b->read_bad) && atomic_exchange(&b->stream_logged, false))
        mc__bus_log(b, 1, "stream %s usable again after %.1f s (%" PRIu64 " invalidations resent in all)", b->stream,
                    (double)(mc__now_ns() - atomic_load(&b->stream_bad_since)) / 1e9, atomic_load(&b->resent));
}

static redisContext *mc__connect(mc_bus *b, unsigned extra_ms, const char *what)
{
    struct timeval tv = {(time_t)(b->timeout_ms / 1000), (suseconds_t)(b->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(b->host, b->port, tv);
    if (!c || c->err) {
        mc__link_down(b, what, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    unsigned ms = b->timeout_ms + extra_ms;
    struct timeval rw = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    redisSetTimeout(c, rw);
    redisEnableKeepAlive(c);
    return c;
}

/* Sleep for the backoff, or until stop. Returns the next backoff. Called with `lock` held. */
static unsigned mc__backoff_locked(mc_bus *b, unsigned ms)
{
    struct timespec dl = mc__deadline(ms);
    while (!b->stopping && pthread_cond_timedwait(&b->wake, &b->lock, &dl) != ETIMEDOUT)
        ;
    return ms * 2 > b->backoff_max ? b->backoff_max : ms * 2;
}

/* ------------------------------------------------------------------ the queue */

static mc__bmsg *mc__q_at(mc_bus *b, size_t i) { return &b->q[(b->qhead + i) % b->qcap]; }

/* Replace the queue (and `extra`, if any) with one "all" message per cache name they hold.
 * Called with `lock` held; cannot fail: it only frees and reuses what the queue holds. */
static void mc__q_collapse(mc_bus *b)
{
    size_t out = 0;
    for (size_t i = 0; i < b->qlen; i++) {
        mc__bmsg m = *mc__q_at(b, i);
        size_t j;
        for (j = 0; j < out; j++) {
            mc__bmsg *kept = mc__q_at(b, j);
            if (!strcmp(kept->cache, m.cache)) {
                if (m.seq < kept->seq)
                    kept->seq = m.seq;
                mc__msg_free(&m);
                break;
            }
        }
        if (j == out) {
            free(m.keys);
            m.keys = NULL;
            m.subtrees = false;
            *mc__q_at(b, out++) = m;
        }
    }
    b->qlen = out;
    atomic_fetch_add(&b->collapsed, 1);
}

/* Append a message (taking its strings). When the queue is full it is collapsed first; if a
 * collapsed queue is still full (as many distinct names as the limit), the new message folds
 * into an "all" for its cache too. Called with `lock` held. */
static int mc__q_push(mc_bus *b, mc__bmsg m, bool front)
{
    if (b->qlen >= b->queue_limit) {
        mc__q_collapse(b);
        for (size_t j = 0; j < b->qlen; j++) {
            mc__bmsg *kept = mc__q_at(b, j);
            if (!strcmp(kept->cache, m.cache)) {
                if (m.seq < kept->seq)
                    kept->seq = m.seq;
                mc__msg_free(&m);
                return 0;
            }
        }
        free(m.keys);
        m.keys = NULL;
        m.subtrees = false;
    }
    if (b->qlen == b->qcap) {
        size_t cap = b->qcap ? b->qcap * 2 : 64;
        mc__bmsg *q = malloc(cap * sizeof *q);
        if (!q) {
            mc__msg_free(&m);
            return MC_ENOMEM;
        }
        for (size_t i = 0; i < b->qlen; i++)
            q[i] = *mc__q_at(b, i);
        free(b->q);
        b->q = q;
        b->qcap = cap;
        b->qhead = 0;
    }
    if (front) {
        b->qhead = (b->qhead + b->qcap - 1) % b->qcap;
        b->q[b->qhead] = m;
    } else {
        *mc__q_at(b, b->qlen) = m;
    }
    b->qlen++;
    return 0;
}

static int mc__publish(mc_bus *b, const char *cache, char *keys, bool subtrees)
{
    mc__bmsg m = {.cache = strdup(cache), .keys = keys, .subtrees = subtrees};
    if (!m.cache) {
        free(keys);
        return MC_ENOMEM;
    }
    pthread_mutex_lock(&b->lock);
    m.seq = ++b->next_seq;
    int rc = mc__q_push(b, m, false);
    pthread_cond_broadcast(&b->wake);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static int mc__publish_json(mc_bus *b, const char *cache, const char *const *json_keys, size_t nkeys, mc_error *err,
                            bool subtrees)
{
    if (!b || !cache || !*cache || (!json_keys && nkeys))
        return MC_EINVAL;
    if (nkeys == 0)
        return 0;
    /* Each key is parsed and printed again: the stream carries canonical compact text. */
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    unsigned char *enc = malloc(MC__BUS_KEY_MAX);
    int rc = out && enc ? 0 : MC_ENOMEM;
    if (rc == 0)
        out[len++] = '[';
    for (size_t i = 0; i < nkeys && rc == 0; i++) {
        size_t elen, jlen;
        mc_error kerr = {0};
        if (!json_keys[i]) {
            rc = mc__error_set(err, MC_EINVAL, "key %zu: NULL", i);
            break;
        }
        rc = mc_key_from_json(json_keys[i], strlen(json_keys[i]), enc, MC__BUS_KEY_MAX, &elen, &kerr);
        if (rc != 0) {
            rc = mc__error_set(err, rc, "key %zu: %s", i, kerr.message[0] ? kerr.message : mc_strerror(rc));
            break;
        }
        for (;;) {
            rc = mc_key_to_json(enc, elen, out + len + (i > 0), cap - len - (i > 0) - 1, &jlen);
            if (rc != MC_ERANGE)
                break;
            size_t ncap = (len + jlen + 4) * 2;
            char *o = realloc(out, ncap);
            if (!o) {
                rc = MC_ENOMEM;
                break;
            }
            out = o;
            cap = ncap;
        }
        if (rc == 0) {
            if (i > 0)
                out[len] = ',';
            len += jlen + (i > 0);
        }
    }
    free(enc);
    if (rc != 0) {
        free(out);
        return rc;
    }
    out[len++] = ']';
    out[len] = 0;
    return mc__publish(b, cache, out, subtrees);
}

int mc_bus_publish_keys(mc_bus *b, const char *cache, const char *const *json_keys, size_t nkeys, mc_error *err)
{
    return mc__publish_json(b, cache, json_keys, nkeys, err, false);
}

int mc_bus_publish_subtrees(mc_bus *b, const char *cache, const char *const *json_keys, size_t nkeys, mc_error *err)
{
    return mc__publish_json(b, cache, json_keys, nkeys, err, true);
}

int mc_bus_publish_args(mc_bus *b, const char *cache, const mc_arg *args, size_t nargs)
{
    if (!b || !cache || !*cache)
        return MC_EINVAL;
    unsigned char *enc = malloc(MC__BUS_KEY_MAX);
    if (!enc)
        return MC_ENOMEM;
    size_t elen, jlen = 0;
    int rc = mc_key_encode(args, nargs, enc, MC__BUS_KEY_MAX, &elen);
    char *out = NULL;
    if (rc == 0 && mc_key_to_json(enc, elen, NULL, 0, &jlen) == MC_ERANGE && (out = malloc(jlen + 3))) {
        out[0] = '[';
        rc = mc_key_to_json(enc, elen, out + 1, jlen + 1, &jlen);
        out[jlen + 1] = ']';
        out[jlen + 2] = 0;
    } else if (rc == 0) {
        rc = MC_ENOMEM;
    }
    free(enc);
    if (rc != 0) {
        free(out);
        return rc;
    }
    return mc__publish(b, cache, out, false);
}

int mc_bus_publish_all(mc_bus *b, const char *cache)
{
    if (!b || !cache || !*cache)
        return MC_EINVAL;
    return mc__publish(b, cache, NULL, false);
}

/* Encoded keys as the stream's JSON array ([["a",1],["b"]]), malloc'd, or NULL (MC_ENOMEM or
 * malformed bytes: *rc says which). */
static char *mc__keys_json(const mc_invalidation_key *keys, size_t n, int *rc)
{
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    *rc = out ? 0 : MC_ENOMEM;
    if (out)
        out[len++] = '[';
    for (size_t i = 0; i < n && *rc == 0; i++) {
        size_t jlen = 0;
        for (;;) {
            *rc = mc_key_to_json(keys[i].key, keys[i].len, out + len + (i > 0), cap - len - (i > 0) - 1, &jlen);
            if (*rc != MC_ERANGE)
                break;
            size_t ncap = (len + jlen + 4) * 2;
            char *o = realloc(out, ncap);
            if (!o) {
                *rc = MC_ENOMEM;
                break;
            }
            out = o;
            cap = ncap;
        }
        if (*rc == 0) {
            if (i > 0)
                out[len] = ',';
            len += jlen + (i > 0);
        }
    }
    if (*rc != 0) {
        free(out);
        return NULL;
    }
    out[len++] = ']';
    out[len] = 0;
    return out;
}

/* The registry's subscriber: every invalidation applied in this process (not those this
 * reader received) goes on the stream. Runs on the applying thread: a queue append. */
static int mc__on_invalidation(void *ud, const mc_invalidation *inv, const mc_invalidation_result *res)
{
    mc_bus *b = ud;
    if (inv->origin != MC_INVALIDATION_LOCAL || !inv->name || !*inv->name)
        return 0;
    if (inv->all)
        return mc__publish(b, inv->name, NULL, false);
    if (inv->nkeys == 0)
        return 0;
    int rc;
    char *keys = mc__keys_json(inv->keys, inv->nkeys, &rc);
    return keys ? mc__publish(b, inv->name, keys, res && res->prefixes > 0) : rc;
}

/* Lowest sequence number not yet written (queue and in-flight batch), or UINT64_MAX. */
static uint64_t mc__pending_min(mc_bus *b)
{
    uint64_t min = UINT64_MAX;
    for (size_t i = 0; i < b->qlen; i++)
        if (mc__q_at(b, i)->seq < min)
            min = mc__q_at(b, i)->seq;
    for (size_t i = 0; i < b->ninflight; i++)
        if (b->inflight[i].seq < min)
            min = b->inflight[i].seq;
    return min;
}

int mc_bus_flush(mc_bus *b, unsigned timeout_ms)
{
    if (!b)
        return MC_EINVAL;
    struct timespec dl = mc__deadline(timeout_ms);
    pthread_mutex_lock(&b->lock);
    uint64_t target = b->next_seq;
    int rc = 0;
    while (mc__pending_min(b) <= target) {
        if (pthread_cond_timedwait(&b->flushed, &b->lock, &dl) == ETIMEDOUT) {
            rc = mc__pending_min(b) <= target ? MC_ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ------------------------------------------------------------------ the sender */

/* An error reply that says the stream itself is unusable (the key holds another type, the
 * server refuses the command outright, or an ACL denies it to the bus's user): an outage until
 * someone fixes the key or the ACL. Other error replies (a server loading its data, busy, out
 * of memory, a replica) are passing states. Either way the message is kept and sent again
 * after a backoff: nothing is dropped. */
static bool mc__stream_fault(const char *err)
{
    static const char *const faults[] = {"WRONGTYPE", "ERR", "NOPERM", NULL};
    for (const char *const *p = faults; *p; p++)
        if (!strncmp(err, *p, strlen(*p)) && (err[strlen(*p)] == ' ' || err[strlen(*p)] == 0))
            return true;
    return false;
}

/* Write the in-flight batch with one pipeline; b->retry[i] says which messages must go again
 * (after a transient error reply, or unconfirmed when the connection failed: a duplicate is
 * harmless). Returns true when the caller should back off; *conn_lost when the connection
 * failed. */
static bool mc__send_batch(mc_bus *b, redisContext *c, bool *conn_lost)
{
    for (size_t i = 0; i < b->ninflight; i++)
        b->retry[i] = true;
    char maxlen[24];
    snprintf(maxlen, sizeof maxlen, "%" PRIu64, b->maxlen);
    for (size_t i = 0; i < b->ninflight; i++) {
        mc__bmsg *m = &b->inflight[i];
        m->attempts++;
        const char *argv[18];
        int argc = 0;
        argv[argc++] = "XADD";
        argv[argc++] = b->stream;
        if (b->maxlen) {
            argv[argc++] = "MAXLEN";
            argv[argc++] = "~";
            argv[argc++] = maxlen;
        }
        argv[argc++] = "*";
        argv[argc++] = "v";
        argv[argc++] = m->subtrees ? "2" : "1";
        argv[argc++] = "instance";
        argv[argc++] = b->instance;
        argv[argc++] = "sender";
        argv[argc++] = b->sender;
        argv[argc++] = "cache";
        argv[argc++] = m->cache;
        argv[argc++] = "op";
        argv[argc++] = m->keys ? "keys" : "all";
        if (m->keys) {
            argv[argc++] = "keys";
            argv[argc++] = m->keys;
        }
        if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK) {
            *conn_lost = true;
            return true;
        }
    }
    bool backoff = false, written_last = false;
    for (size_t i = 0; i < b->ninflight; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            *conn_lost = true;
            return true;
        }
        written_last = r->type != REDIS_REPLY_ERROR;
        if (written_last) {
            atomic_fetch_add(&b->sent, 1);
            if (b->inflight[i].attempts > 1)
                atomic_fetch_add(&b->resent, 1);
            b->retry[i] = false;
        } else if (mc__stream_fault(r->str)) {
            mc__stream_bad(b, &b->send_bad, "XADD", r->str);
            backoff = true;
        } else {
            if (!backoff)
                mc__bus_log_repeating(b, &b->send_errors, 2, "XADD retries", "XADD to %s: %s; retrying", b->stream,
                                      r->str);
            backoff = true;
        }
        freeReplyObject(r);
    }
    /* An outage ends once the whole batch is counted, so that the line ending it reports every
     * resend of the batch that proved the stream usable; a batch whose last reply was refused
     * leaves it going. */
    if (written_last) {
        mc__bus_log_ended(b, &b->send_errors, "retrying XADD after error replies");
        mc__stream_good(b, &b->send_bad);
    }
    return backoff;
}

static void *mc__sender_main(void *arg)
{
    mc_bus *b = arg;
    redisContext *c = NULL;
    unsigned backoff = b->backoff_min;
    bool ever = false;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        if (b->stopping && (b->qlen == 0 || !c))
            break;
        if (!c) {
            pthread_mutex_unlock(&b->lock);
            c = mc__connect(b, 0, "sender");
            pthread_mutex_lock(&b->lock);
            if (!c) {
                atomic_store(&b->send_up, false);
                backoff = mc__backoff_locked(b, backoff);
                continue;
            }
            if (ever)
                atomic_fetch_add(&b->reconnects, 1);
            ever = true;
            backoff = b->backoff_min;
            atomic_store(&b->send_up, true);
            mc__link_check_up(b);
        }
        if (b->qlen == 0) {
            pthread_cond_wait(&b->wake, &b->lock);
            continue;
        }
        size_t n = b->qlen < MC__BUS_BATCH ? b->qlen : MC__BUS_BATCH;
        for (size_t i = 0; i < n; i++)
            b->inflight[i] = *mc__q_at(b, i);
        b->qhead = (b->qhead + n) % b->qcap;
        b->qlen -= n;
        b->ninflight = n;
        pthread_mutex_unlock(&b->lock);

        bool lost = false;
        bool again = mc__send_batch(b, c, &lost);

        pthread_mutex_lock(&b->lock);
        /* What must go again returns to the front, in order. */
        for (size_t i = n; i > 0; i--) {
            if (!b->retry[i - 1])
                mc__msg_free(&b->inflight[i - 1]);
            else if (mc__q_push(b, b->inflight[i - 1], true) != 0)
                atomic_fetch_add(&b->failed, 1);
        }
        b->ninflight = 0;
        pthread_cond_broadcast(&b->flushed);
        if (lost) {
            mc__link_down(b, "sender", c->errstr[0] ? c->errstr : "connection lost");
            redisFree(c);
            c = NULL;
            atomic_store(&b->send_up, false);
        } else if (again) {
            if (b->stopping)
                break; /* no more waiting for a server that keeps refusing */
            backoff = mc__backoff_locked(b, backoff);
        } else {
            backoff = b->backoff_min;
        }
    }
    if (b->qlen)
        mc__bus_log(b, 2, "stopping with %zu invalidation(s) not sent", b->qlen);
    pthread_mutex_unlock(&b->lock);
    if (c)
        redisFree(c);
    return NULL;
}

/* ------------------------------------------------------------------ the reader */

typedef struct {
    bool exists;
    char error[160]; /* the reply error when mc__stream_info returns -2 */
    mc__sid last_generated, max_deleted;
    bool has_max_deleted, has_added;
    uint64_t entries_added;
    /* For resuming a saved position: XTRIM and MAXLEN trimming do not move max-deleted-entry-id
     * (Redis 7.0), so a trim shows as fewer entries than were added after the position. */
    bool has_length, has_first;
    uint64_t length;
    mc__sid first_recorded;
} mc__xinfo;

/* XINFO STREAM, fields by name (RESP2: a flat array of names and values). Returns 0, 1 when the
 * stream does not exist, -1 on a connection error, -2 on another reply error. */
static int mc__stream_info(mc_bus *b, redisContext *c, mc__xinfo *xi)
{
    memset(xi, 0, sizeof *xi);
    redisReply *r = redisCommand(c, "XINFO STREAM %s", b->stream);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = strstr(r->str, "no such key") ? 1 : -2;
        if (rc == -2)
            snprintf(xi->error, sizeof xi->error, "XINFO STREAM: %s", r->str);
    } else if (r->type == REDIS_REPLY_ARRAY) {
        xi->exists = true;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
                continue;
            if (!strcmp(k->str, "last-generated-id") && v->type == REDIS_REPLY_STRING)
                mc__sid_parse(v->str, v->len, &xi->last_generated);
            else if (!strcmp(k->str, "max-deleted-entry-id") && v->type == REDIS_REPLY_STRING)
                xi->has_max_deleted = mc__sid_parse(v->str, v->len, &xi->max_deleted);
            else if (!strcmp(k->str, "entries-added") && v->type == REDIS_REPLY_INTEGER) {
                xi->has_added = true;
                xi->entries_added = (uint64_t)v->integer;
            } else if (!strcmp(k->str, "length") && v->type == REDIS_REPLY_INTEGER) {
                xi->has_length = true;
                xi->length = (uint64_t)v->integer;
            } else if (!strcmp(k->str, "recorded-first-entry-id") && v->type == REDIS_REPLY_STRING) {
                xi->has_first = mc__sid_parse(v->str, v->len, &xi->first_recorded);
            }
        }
    } else {
        rc = -2;
        snprintf(xi->error, sizeof xi->error, "XINFO STREAM: unexpected reply type %d", r->type);
    }
    freeReplyObject(r);
    return rc;
}

typedef struct {
    mc__sid last;    /* last entry handled */
    uint64_t seen;   /* entries-added value matching `last`: counts every entry handled */
    bool positioned; /* last/seen are meaningful */
    bool replaced;   /* the key held another type meanwhile: what was after `last` is gone */
    char error[160]; /* the read's error reply (mc__read_round returning -2) */
} mc__rpos;

static void mc__set_last_id(mc_bus *b, const mc__rpos *pos)
{
    pthread_mutex_lock(&b->idlock);
    snprintf(b->last_id, sizeof b->last_id, "%" PRIu64 "-%" PRIu64, pos->last.ms, pos->last.seq);
    b->last_seen = pos->seen;
    b->positioned = true;
    pthread_mutex_unlock(&b->idlock);
}

static void mc__flush_one(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)ud;
    (void)st;
    mc_cached_invalidate_all(fn);
}

/* Invalidate everything and go on from the stream's current end (xi: taken before the flush, so
 * entries written after it are still read). */
static void mc__full_flush(mc_bus *b, mc__rpos *pos, const mc__xinfo *xi, const char *why)
{
    mc_invalidation_source was = mc_cached_set_invalidation_source(MC_INVALIDATION_FLUSH);
    mc_registry_list(b->reg, mc__flush_one, NULL);
    mc_cached_set_invalidation_source(was);
    pos->last = xi->exists ? xi->last_generated : (mc__sid){0, 0};
    pos->seen = xi->exists ? xi->entries_added : 0;
    pos->positioned = true;
    mc__set_last_id(b, pos);
    mc__bus_log(b, 2, "invalidated every cache (full flush): %s", why);
    /* Counted last: whoever sees the count also sees the log line and the new position. */
    atomic_fetch_add(&b->full_flushes, 1);
}

/* Decide, from a fresh XINFO, whether entries after pos->last may have been lost.
 * at_connect: a (re)connection; otherwise a check while reading. */
static void mc__continuity(mc_bus *b, mc__rpos *pos, const mc__xinfo *xi, bool at_connect)
{
    if (!pos->positioned) {
        /* The first connection. */
        pos->last = xi->exists ? xi->last_generated : (mc__sid){0, 0};
        pos->seen = xi->exists ? xi->entries_added : 0;
        pos->positioned = true;
        mc__set_last_id(b, pos);
        return;
    }
    bool had_stream = pos->last.ms || pos->last.seq || pos->seen;
    if (!xi->exists) {
        if (had_stream)
            mc__full_flush(b, pos, xi, "the stream is gone");
        else if (at_connect)
            atomic_fetch_add(&b->catchups, 1);
        return;
    }
    if (xi->has_max_deleted && mc__sid_cmp(xi->max_deleted, pos->last) > 0) {
        mc__full_flush(b, pos, xi, "entries after the last one applied were trimmed");
        return;
    }
    int tail = mc__sid_cmp(xi->last_generated, pos->last);
    if (tail < 0) {
        mc__full_flush(b, pos, xi, "the stream was recreated");
        return;
    }
    /* Fewer entries in the stream than were added after the last one applied: trimming
     * (oldest first) took some of them unread. MAXLEN and XTRIM do not move
     * max-deleted-entry-id, so this is the test that sees them, at the tail or behind it
     * (a reader behind a busy stream is behind at every check). */
    if (xi->has_added && xi->has_length && xi->entries_added >= pos->seen &&
        xi->length < xi->entries_added - pos->seen) {
        mc__full_flush(b, pos, xi, "entries after the last one applied were trimmed");
        return;
    }
    /* At the tail, every entry ever added has been handled, unless some vanished unread. */
    if (tail == 0 && xi->has_added && xi->entries_added != pos->seen) {
        mc__full_flush(b, pos, xi, "entries were deleted before they were read");
        return;
    }
    if (at_connect) {
        atomic_fetch_add(&b->catchups, 1);
        mc__bus_log(b, 1, "resuming the stream after %" PRIu64 "-%" PRIu64, pos->last.ms, pos->last.seq);
    }
}

/* ------------------------------------------------------------------ resuming a saved position */

enum { MC__RS_NONE, MC__RS_HELD, MC__RS_PENDING, MC__RS_RESUMING, MC__RS_DONE, MC__RS_DISCARDED, MC__RS_ABANDONED };

static int mc__resume_state(mc_bus *b)
{
    pthread_mutex_lock(&b->lock);
    int st = b->resume_state;
    pthread_mutex_unlock(&b->lock);
    return st;
}

/* Move from `from` (or any state when from < 0) to `to`, waking mc_bus_resume. */
static void mc__resume_set(mc_bus *b, int from, int to, const char *reason, const char *why)
{
    pthread_mutex_lock(&b->lock);
    if (from < 0 || b->resume_state == from) {
        b->resume_state = to;
        if (reason) {
            b->resume_reason = reason;
            snprintf(b->resume_why, sizeof b->resume_why, "%s", why);
        }
        pthread_cond_broadcast(&b->resume_cv);
    }
    pthread_mutex_unlock(&b->lock);
}

/* Whether entry `id` is still in the stream: 1, 0, or -1 when the question failed. */
static int mc__entry_present(mc_bus *b, redisContext *c, mc__sid id)
{
    char sid[48];
    snprintf(sid, sizeof sid, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
    const char *argv[] = {"XRANGE", b->stream, sid, sid, "COUNT", "1"};
    redisReply *r = redisCommandArgv(c, 6, argv, NULL);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_ARRAY ? r->elements > 0 : -1;
    freeReplyObject(r);
    return rc;
}

/* The first connection of a resuming reader: take the saved position if the stream proves that
 * nothing after it was lost, or flush everything and say why. */
static void mc__resume_decide(mc_bus *b, redisContext *c, mc__rpos *pos, const mc__xinfo *xi)
{
    const mc_bus_position *p = &b->resume;
    mc__sid saved = {0, 0};
    mc__sid_parse(p->last_id, strlen(p->last_id), &saved); /* checked by mc_bus_start */
    bool had = saved.ms || saved.seq || p->entries_added;
    const char *reason = NULL;
    char why[300];
    if (strcmp(p->stream, b->stream) != 0) {
        reason = MC_BUS_RESUME_OTHER_STREAM;
        snprintf(why, sizeof why, "the saved position is in stream %.120s, this host reads %.120s", p->stream, b->stream);
    } else if (pos->replaced) {
        reason = MC_BUS_RESUME_UNUSABLE;
        snprintf(why, sizeof why, "the stream key held another type since the position was saved");
    } else if (!xi->exists) {
        if (had) {
            reason = MC_BUS_RESUME_DELETED;
            snprintf(why, sizeof why, "the stream was deleted since the position %s was saved", p->last_id);
        }
    } else if (xi->has_max_deleted && mc__sid_cmp(xi->max_deleted, saved) > 0) {
        reason = MC_BUS_RESUME_TRIMMED;
        snprintf(why, sizeof why, "entries after the saved position %s were trimmed (up to %" PRIu64 "-%" PRIu64 ")",
                 p->last_id, xi->max_deleted.ms, xi->max_deleted.seq);
    } else if (mc__sid_cmp(xi->last_generated, saved) < 0 || (xi->has_added && xi->entries_added < p->entries_added)) {
        reason = MC_BUS_RESUME_RECREATED;
        snprintf(why, sizeof why, "the stream was recreated since the position %s was saved", p->last_id);
    } else if (xi->has_added && xi->has_length && xi->length < xi->entries_added - p->entries_added) {
        /* Trimming removes the oldest entries first: some after the position are gone. */
        reason = MC_BUS_RESUME_TRIMMED;
        snprintf(why, sizeof why,
                 "entries after the saved position %s were trimmed (%" PRIu64 " added since, %" PRIu64 " in the stream)",
                 p->last_id, xi->entries_added - p->entries_added, xi->length);
    } else if (saved.ms || saved.seq) {
        int present = mc__entry_present(b, c, saved);
        /* The saved entry itself trimmed, exactly: the stream starts after it and holds every
         * entry added since. */
        bool all_since = xi->has_added && xi->has_length && xi->length == xi->entries_added - p->entries_added;
        bool trimmed_to = (xi->has_max_deleted && mc__sid_cmp(xi->max_deleted, saved) == 0) ||
                          (all_since && xi->has_first && mc__sid_cmp(xi->first_recorded, saved) > 0) ||
                          (all_since && xi->length == 0 && mc__sid_cmp(xi->last_generated, saved) == 0);
        if (present < 0) {
            reason = MC_BUS_RESUME_UNREACHABLE;
            snprintf(why, sizeof why, "the saved entry %s could not be looked up", p->last_id);
        } else if (!present && !trimmed_to) {
            reason = MC_BUS_RESUME_RECREATED;
            snprintf(why, sizeof why, "the saved entry %s is not in the stream (recreated since)", p->last_id);
        }
    }
    if (reason) {
        char line[340];
        snprintf(line, sizeof line, "snapshot position not usable: %s", why);
        mc__full_flush(b, pos, xi, line);
        mc__resume_set(b, MC__RS_PENDING, MC__RS_DISCARDED, reason, why);
        return;
    }
    pos->last = saved;
    pos->seen = p->entries_added;
    pos->positioned = true;
    mc__set_last_id(b, pos);
    mc__bus_log(b, 1, "resuming the stream after %s (the saved position): replaying what came since", p->last_id);
    pthread_mutex_lock(&b->lock);
    b->resume_flushes = atomic_load(&b->full_flushes);
    pthread_mutex_unlock(&b->lock);
    mc__resume_set(b, MC__RS_PENDING, MC__RS_RESUMING, NULL, NULL);
}

/* At the tail with continuity checked: a replay is over (discarded if it flushed meanwhile). */
static void mc__resume_progress(mc_bus *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->resume_state == MC__RS_RESUMING) {
        if (atomic_load(&b->full_flushes) != b->resume_flushes) {
            b->resume_state = MC__RS_DISCARDED;
            b->resume_reason = MC_BUS_RESUME_TRIMMED;
            snprintf(b->resume_why, sizeof b->resume_why, "entries were lost during the replay");
        } else {
            b->resume_state = MC__RS_DONE;
        }
        pthread_cond_broadcast(&b->resume_cv);
    }
    pthread_mutex_unlock(&b->lock);
}

int mc_bus_resume(mc_bus *b, unsigned timeout_ms, const char **reason, mc_error *err)
{
    if (reason)
        *reason = "";
    if (!b)
        return MC_EINVAL;
    pthread_mutex_lock(&b->lock);
    if (!b->has_resume || b->resume_state != MC__RS_HELD) {
        pthread_mutex_unlock(&b->lock);
        return mc__error_set(err, MC_EINVAL, "no saved position to resume from");
    }
    b->resume_state = MC__RS_PENDING;
    /* Bounded staleness counts from here: the host served nothing while the reader was held. */
    uint64_t now = mc__now_ns(), prev = atomic_load(&b->confirmed);
    while (prev < now && !atomic_compare_exchange_weak(&b->confirmed, &prev, now))
        ;
    pthread_cond_broadcast(&b->resume_cv);
    struct timespec dl = mc__deadline(timeout_ms);
    while (b->resume_state == MC__RS_PENDING || b->resume_state == MC__RS_RESUMING)
        if (pthread_cond_timedwait(&b->resume_cv, &b->lock, &dl) == ETIMEDOUT)
            break;
    int rc = 0;
    if (b->resume_state == MC__RS_DISCARDED) {
        rc = mc__error_set(err, MC_ECANCELED, "%s", b->resume_why);
        if (reason)
            *reason = b->resume_reason;
    } else if (b->resume_state != MC__RS_DONE) {
        bool replaying = b->resume_state == MC__RS_RESUMING;
        b->resume_state = MC__RS_ABANDONED;
        rc = mc__error_set(err, MC_ETIMEDOUT,
                           replaying ? "the replay of the stream did not finish within %u ms"
                                     : "Redis was not reached within %u ms to check the saved position",
                           timeout_ms);
        if (reason)
            *reason = MC_BUS_RESUME_UNREACHABLE;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

int mc_bus_position_get(mc_bus *b, mc_bus_position *out)
{
    if (!b || !out)
        return MC_EINVAL;
    memset(out, 0, sizeof *out);
    if (!b->has_reader)
        return MC_ENOENT;
    pthread_mutex_lock(&b->idlock);
    bool ok = b->positioned;
    snprintf(out->stream, sizeof out->stream, "%s", b->stream);
    memcpy(out->last_id, b->last_id, sizeof out->last_id);
    out->entries_added = b->last_seen;
    pthread_mutex_unlock(&b->idlock);
    return ok ? 0 : MC_ENOENT;
}

int mc_bus_position_encode(const mc_bus_position *p, char *buf, size_t cap)
{
    if (!p || !buf)
        return MC_EINVAL;
    int n = snprintf(buf, cap, "%s\n%s\n%" PRIu64, p->stream, p->last_id, p->entries_added);
    return n < 0 || (size_t)n >= cap ? MC_ERANGE : n;
}

int mc_bus_position_decode(const void *data, size_t len, mc_bus_position *out)
{
    if (!data || !out)
        return MC_EINVAL;
    memset(out, 0, sizeof *out);
    const char *d = data, *nl1 = memchr(d, '\n', len);
    if (!nl1 || memchr(d, 0, len))
        return MC_EPARSE;
    const char *nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - d));
    if (!nl2)
        return MC_EPARSE;
    size_t slen = (size_t)(nl1 - d), ilen = (size_t)(nl2 - nl1 - 1), alen = len - (size_t)(nl2 + 1 - d);
    mc__sid sid;
    if (slen == 0 || slen >= sizeof out->stream || ilen >= sizeof out->last_id || !mc__sid_parse(nl1 + 1, ilen, &sid) ||
        alen == 0 || alen > 20)
        return MC_EPARSE;
    char num[21];
    memcpy(num, nl2 + 1, alen);
    num[alen] = 0;
    for (size_t i = 0; i < alen; i++)
        if (num[i] < '0' || num[i] > '9')
            return MC_EPARSE;
    errno = 0;
    unsigned long long v = strtoull(num, NULL, 10);
    if (errno)
        return MC_EPARSE;
    memcpy(out->stream, d, slen);
    memcpy(out->last_id, nl1 + 1, ilen);
    out->entries_added = v;
    return 0;
}

static const redisReply *mc__field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING && !strcmp(fields->element[i]->str, name) &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    return NULL;
}

/* Apply one entry's fields: the bus reader's edge, JSON keys to one invalidation, applied
 * through the registry as a remote one (so that this bus does not send it again). Versions 1
 * and 2 are read alike (a tuple's length says whether it is a key or a subtree); version 2 only
 * keeps readers that predate subtrees from taking a prefix for a key. */
static void mc__apply(mc_bus *b, const redisReply *fields)
{
    const redisReply *v = mc__field(fields, "v"), *sender = mc__field(fields, "sender"),
                     *cache = mc__field(fields, "cache"), *op = mc__field(fields, "op");
    if (sender && !strcmp(sender->str, b->sender)) {
        atomic_fetch_add(&b->own, 1);
        return;
    }
    atomic_fetch_add(&b->received, 1);
    if (!v || (strcmp(v->str, "1") != 0 && strcmp(v->str, "2") != 0) || !cache || !op) {
        atomic_fetch_add(&b->ignored, 1);
        return;
    }
    mc_error err = {0};
    mc_invalidation inv = {.name = cache->str, .origin = MC_INVALIDATION_REMOTE};
    int rc;
    if (!strcmp(op->str, "all")) {
        inv.all = true;
        rc = mc_registry_apply(b->reg, NULL, &inv, NULL, &err);
    } else if (!strcmp(op->str, "keys")) {
        const redisReply *keys = mc__field(fields, "keys");
        if (!keys) {
            atomic_fetch_add(&b->ignored, 1);
            return;
        }
        mc__keylist kl;
        rc = mc__keylist_split(keys->str, keys->len, &kl, NULL);
        bool split = rc == 0; /* otherwise kl holds nothing */
        mc_invalidation_key *ks = NULL;
        unsigned char *enc = NULL;
        if (rc == 0 && kl.n) {
            ks = calloc(kl.n, sizeof *ks);
            enc = malloc(kl.n * (size_t)MC__BUS_KEY_MAX);
            if (!ks || !enc)
                rc = MC_ENOMEM;
            for (size_t i = 0; i < kl.n && rc == 0; i++) {
                ks[i].key = enc + i * (size_t)MC__BUS_KEY_MAX;
                rc = mc_key_from_json(kl.keys[i], strlen(kl.keys[i]), enc + i * (size_t)MC__BUS_KEY_MAX,
                                      MC__BUS_KEY_MAX, &ks[i].len, NULL);
                if (rc == MC_ERANGE || rc == MC_E2BIG)
                    rc = MC_EPARSE;
            }
        }
        if (rc == MC_ENOMEM) {
            /* Cannot apply precisely: apply broadly rather than lose the invalidation. */
            inv.all = true;
            rc = mc_registry_apply(b->reg, NULL, &inv, NULL, &err);
        } else if (rc != 0 || kl.n == 0) {
            rc = MC_EPARSE;
        } else {
            inv.keys = ks;
            inv.nkeys = kl.n;
            rc = mc_registry_apply(b->reg, NULL, &inv, NULL, &err);
            if (rc == MC_EINVAL)
                mc__bus_log_repeating(b, &b->refusals, 2, "invalidations refused", "invalidation of %s from %s refused: %s",
                                      cache->str, sender ? sender->str : "?", err.message);
        }
        free(ks);
        free(enc);
        if (split)
            mc__keylist_free(&kl);
    } else {
        atomic_fetch_add(&b->ignored, 1);
        return;
    }
    atomic_fetch_add(rc == 0 ? &b->applied : &b->ignored, 1);
}

/* One XREAD round. Returns the number of entries handled, or -1 on a connection error. */
static long mc__read_round(mc_bus *b, redisContext *c, mc__rpos *pos)
{
    char count[16], block[16], id[48];
    snprintf(count, sizeof count, "%d", MC__BUS_READ_COUNT);
    snprintf(block, sizeof block, "%u", b->block_ms);
    snprintf(id, sizeof id, "%" PRIu64 "-%" PRIu64, pos->last.ms, pos->last.seq);
    const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", b->stream, id};
    redisReply *r = redisCommandArgv(c, 8, argv, NULL);
    if (!r)
        return -1;
    long handled = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(pos->error, sizeof pos->error, "XREAD: %s", r->str);
        if (!strncmp(r->str, "WRONGTYPE", 9))
            pos->replaced = true;
        handled = -2;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
               r->element[0]->elements == 2 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            mc__sid sid;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
                !mc__sid_parse(e->element[0]->str, e->element[0]->len, &sid))
                continue;
            if (e->element[1]->type == REDIS_REPLY_ARRAY)
                mc__apply(b, e->element[1]);
            else
                atomic_fetch_add(&b->ignored, 1);
            pos->last = sid;
            pos->seen++;
            handled++;
        }
        if (handled)
            mc__set_last_id(b, pos);
    }
    freeReplyObject(r);
    return handled;
}

/* The reader is current as of `at`: end a bypass (the registry flushes first). */
static void mc__confirm(mc_bus *b, uint64_t at)
{
    if (!b->max_staleness_ns)
        return;
    uint64_t prev = atomic_load(&b->confirmed);
    while (prev < at && !atomic_compare_exchange_weak(&b->confirmed, &prev, at))
        ;
    if (!atomic_load(&b->bypassing))
        return;
    pthread_mutex_lock(&b->bypass_lock);
    if (atomic_load(&b->bypassing) && mc__now_ns() - atomic_load(&b->confirmed) < b->stale_after_ns) {
        mc_registry_set_bypass(b->reg, false);
        mc__bus_log(b, 1, "current again with the stream: caches flushed and in use again");
        atomic_store(&b->bypassing, false); /* after the line: whoever sees it sees the line */
    }
    pthread_mutex_unlock(&b->bypass_lock);
}

/* The watchdog: past the threshold without confirmation, every registered function bypasses
 * its cache. The threshold (3/4 of max_staleness) plus one tick (1/8) stays under the bound,
 * so the bypass is in force before a cached value could be older than max_staleness. */
static void *mc__watch_main(void *arg)
{
    mc_bus *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        unsigned ms = (unsigned)(b->watch_tick_ns / 1000000u);
        struct timespec dl = mc__deadline(ms ? ms : 1);
        pthread_cond_timedwait(&b->wake, &b->lock, &dl);
        if (b->stopping)
            break;
        /* Held for a restore (mc_bus_resume): nothing is served yet, nothing can be stale. */
        bool held = b->resume_state == MC__RS_HELD;
        pthread_mutex_unlock(&b->lock);
        if (held) {
            pthread_mutex_lock(&b->lock);
            continue;
        }
        uint64_t now = mc__now_ns(), conf = atomic_load(&b->confirmed);
        if (!atomic_load(&b->bypassing) && now > conf && now - conf > b->stale_after_ns) {
            pthread_mutex_lock(&b->bypass_lock);
            conf = atomic_load(&b->confirmed);
            if (!atomic_load(&b->bypassing) && mc__now_ns() - conf > b->stale_after_ns) {
                mc_registry_set_bypass(b->reg, true);
                mc__bus_log(b, 2,
                            "not confirmed current with the stream for %.1f s (max_staleness %.1f s): registered "
                            "functions bypass their caches until it is",
                            (double)(mc__now_ns() - conf) / 1e9, (double)b->max_staleness_ns / 1e9);
                atomic_fetch_add(&b->bypass_periods, 1);
                atomic_store(&b->bypassing, true); /* after the line, as above */
            }
            pthread_mutex_unlock(&b->bypass_lock);
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void *mc__reader_main(void *arg)
{
    mc_bus *b = arg;
    /* Everything this thread invalidates comes from the stream (full flushes say so). */
    mc_cached_set_invalidation_source(MC_INVALIDATION_BUS);
    mc__rpos pos = {0};
    unsigned backoff = b->backoff_min;
    bool tried = false, ever = false;
    if (b->has_resume) {
        /* Nothing is read before the caller restored its entries (mc_bus_resume). */
        pthread_mutex_lock(&b->lock);
        while (b->resume_state == MC__RS_HELD && !b->stopping)
            pthread_cond_wait(&b->resume_cv, &b->lock);
        pthread_mutex_unlock(&b->lock);
    }
    for (;;) {
        pthread_mutex_lock(&b->lock);
        bool stop = b->stopping;
        pthread_mutex_unlock(&b->lock);
        if (stop)
            break;
        redisContext *c = mc__connect(b, b->block_ms, "reader");
        mc__xinfo xi;
        int irc = c ? mc__stream_info(b, c, &xi) : -1;
        if (irc == -1 && c)
            mc__link_down(b, "reader", c->errstr[0] ? c->errstr : "XINFO failed");
        if (irc == -2) {
            /* Reachable but unusable (a key of another type): an outage like a lost link. */
            atomic_store(&b->read_up, true);
            mc__link_check_up(b);
            if (strstr(xi.error, "WRONGTYPE"))
                pos.replaced = true;
            mc__stream_bad(b, &b->read_bad, "reader", xi.error);
        }
        if (irc < 0) {
            if (c)
                redisFree(c);
            tried = true;
            if (irc == -1)
                atomic_store(&b->read_up, false);
            pthread_mutex_lock(&b->lock);
            backoff = mc__backoff_locked(b, backoff);
            pthread_mutex_unlock(&b->lock);
            continue;
        }
        backoff = b->backoff_min;
        if (ever)
            atomic_fetch_add(&b->reconnects, 1);
        int rs = b->has_resume ? mc__resume_state(b) : MC__RS_NONE;
        if (!ever && rs == MC__RS_PENDING) {
            mc__resume_decide(b, c, &pos, &xi);
        } else if (!ever && (tried || rs == MC__RS_ABANDONED)) {
            /* Serving began without the bus: invalidations sent meanwhile were never seen. */
            mc__full_flush(b, &pos, &xi, "the first connection came after start-up");
        } else if (pos.replaced) {
            /* The stream was overwritten: entries after the last one applied cannot be proven
             * to have been seen. */
            mc__full_flush(b, &pos, &xi, "the stream key held another type meanwhile");
        } else {
            mc__continuity(b, &pos, &xi, ever);
        }
        pos.replaced = false;
        ever = true;
        mc__stream_good(b, &b->read_bad);
        pthread_mutex_lock(&b->rlock);
        b->rctx = c;
        pthread_mutex_unlock(&b->rlock);
        atomic_store(&b->read_up, true);
        mc__link_check_up(b);

        /* Check continuity as soon as the first catch-up batch is read: entries lost during the
         * outage are then found at once, not at the next quiet moment. */
        uint64_t last_check = 0;
        bool stream_fault = false;
        for (;;) {
            pthread_mutex_lock(&b->lock);
            stop = b->stopping;
            pthread_mutex_unlock(&b->lock);
            if (stop)
                break;
            uint64_t issued = mc__now_ns(); /* entries added before now are in this read's answer */
            long n = mc__read_round(b, c, &pos);
            if (n == -1)
                break;
            if (n == -2) {
                /* A reply error: the stream is unusable. Treated as a lost link: reconnect
                 * after a backoff and decide again between catch-up and full flush. */
                mc__stream_bad(b, &b->read_bad, "reader", pos.error);
                stream_fault = true;
                break;
            }
            /* Behind the tail (a full batch): read on; otherwise check continuity now and then. */
            if (n < MC__BUS_READ_COUNT && (n == 0 || last_check == 0 || mc__now_ns() - last_check > MC__BUS_CHECK_NS)) {
                int rc = mc__stream_info(b, c, &xi);
                if (rc == -1)
                    break;
                if (rc == -2) {
                    if (strstr(xi.error, "WRONGTYPE"))
                        pos.replaced = true;
                    mc__stream_bad(b, &b->read_bad, "reader", xi.error);
                    stream_fault = true;
                    break;
                }
                if (rc >= 0) {
                    mc__continuity(b, &pos, &xi, false);
                    /* At the tail with continuity checked (or flushed): current as of the read. */
                    mc__confirm(b, issued);
                    if (b->has_resume)
                        mc__resume_progress(b);
                }
                last_check = mc__now_ns();
            }
        }
        pthread_mutex_lock(&b->rlock);
        b->rctx = NULL;
        pthread_mutex_unlock(&b->rlock);
        pthread_mutex_lock(&b->lock);
        stop = b->stopping;
        pthread_mutex_unlock(&b->lock);
        if (!stop && !stream_fault) {
            atomic_store(&b->read_up, false);
            mc__link_down(b, "reader", c->errstr[0] ? c->errstr : "connection lost");
        }
        redisFree(c);
        if (!stop && stream_fault) {
            pthread_mutex_lock(&b->lock);
            backoff = mc__backoff_locked(b, backoff);
            pthread_mutex_unlock(&b->lock);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

void mc_bus_options_init(mc_bus_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->address = "127.0.0.1:6379";
    o->stream = "modcache:invalidations";
    o->maxlen = 100000;
    o->instance = "modcache";
    o->queue_limit = 10000;
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 5000;
    o->timeout_ms = 2000;
}

static void mc__bus_free(mc_bus *b)
{
    for (size_t i = 0; i < b->qlen; i++)
        mc__msg_free(mc__q_at(b, i));
    free(b->q);
    free(b->inflight);
    free(b->host);
    free(b->stream);
    free(b->instance);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->rlock);
    pthread_mutex_destroy(&b->idlock);
    pthread_mutex_destroy(&b->bypass_lock);
    pthread_cond_destroy(&b->wake);
    pthread_cond_destroy(&b->flushed);
    pthread_cond_destroy(&b->resume_cv);
    mc__ratelog_destroy(&b->send_errors);
    mc__ratelog_destroy(&b->refusals);
    free(b);
}

int mc_bus_start(const mc_bus_options *opts, mc_bus **out, mc_error *err)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    mc_bus_options o;
    mc_bus_options_init(&o);
    if (opts) {
        o = *opts;
        mc_bus_options defaults;
        mc_bus_options_init(&defaults);
        if (!o.address)
            o.address = defaults.address;
        if (!o.stream)
            o.stream = defaults.stream;
        if (!o.instance)
            o.instance = defaults.instance;
        if (!o.queue_limit)
            o.queue_limit = defaults.queue_limit;
        if (!o.backoff_min_ms)
            o.backoff_min_ms = defaults.backoff_min_ms;
        if (!o.backoff_max_ms)
            o.backoff_max_ms = o.backoff_min_ms > defaults.backoff_max_ms ? o.backoff_min_ms : defaults.backoff_max_ms;
        if (!o.timeout_ms)
            o.timeout_ms = defaults.timeout_ms;
    }
    char rhost[256];
    unsigned port;
    const char *why;
    /* A bare host means port 6379, as in the host's configuration (core/addr.h). */
    if (mc__hostport_split(o.address, 6379, false, rhost, sizeof rhost, &port, &why) != 0)
        return mc__error_set(err, MC_EINVAL, "redis address %s: %s (expected host:port)", o.address, why);
    if (!*o.stream)
        return mc__error_set(err, MC_EINVAL, "empty stream name");
    if (!*o.instance)
        return mc__error_set(err, MC_EINVAL, "empty instance name");
    if (o.backoff_min_ms > o.backoff_max_ms)
        return mc__error_set(err, MC_EINVAL, "backoff_min_ms %u is above backoff_max_ms %u", o.backoff_min_ms,
                             o.backoff_max_ms);

    mc_bus *b = calloc(1, sizeof *b);
    if (!b)
        return MC_ENOMEM;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->rlock, NULL);
    pthread_mutex_init(&b->idlock, NULL);
    pthread_cond_init(&b->wake, NULL);
    pthread_cond_init(&b->flushed, NULL);
    pthread_cond_init(&b->resume_cv, NULL);
    atomic_init(&b->outage_logged, false);
    mc__ratelog_init(&b->send_errors);
    mc__ratelog_init(&b->refusals);
    b->host = strdup(rhost);
    b->port = (int)port;
    b->stream = strdup(o.stream);
    b->instance = strdup(o.instance);
    b->inflight = malloc(MC__BUS_BATCH * sizeof *b->inflight);
    b->maxlen = o.maxlen;
    b->queue_limit = o.queue_limit;
    b->backoff_min = o.backoff_min_ms;
    b->backoff_max = o.backoff_max_ms;
    b->timeout_ms = o.timeout_ms;
    b->log = o.log;
    b->log_ud = o.log_ud;
    b->reg = o.registry;
    b->announce_ms = o.announce_interval_ms;
    strcpy(b->last_id, "0-0");
    pthread_mutex_init(&b->bypass_lock, NULL);
    if (o.resume && o.registry) {
        mc__sid sid;
        if (!mc__sid_parse(o.resume->last_id, strnlen(o.resume->last_id, sizeof o.resume->last_id), &sid) ||
            !memchr(o.resume->stream, 0, sizeof o.resume->stream)) {
            mc__bus_free(b);
            return mc__error_set(err, MC_EINVAL, "resume: a malformed stream position");
        }
        b->has_resume = true;
        b->resume = *o.resume;
        b->resume_state = MC__RS_HELD;
    }
    b->block_ms = MC__BUS_BLOCK_MS;
    if (o.max_staleness_ms && o.registry) {
        b->max_staleness_ns = (uint64_t)o.max_staleness_ms * 1000000u;
        b->stale_after_ns = b->max_staleness_ns / 4 * 3;
        b->watch_tick_ns = b->max_staleness_ns / 8;
        unsigned block = o.max_staleness_ms / 8;
        b->block_ms = block < 10 ? 10 : block > MC__BUS_BLOCK_MS ? MC__BUS_BLOCK_MS : block;
    }
    /* A bus starting now has seen nothing to miss yet: current as of its start. */
    atomic_init(&b->confirmed, mc__now_ns());
    unsigned char rnd[16];
    if (!b->host || !b->stream || !b->instance || !b->inflight) {
        mc__bus_free(b);
        return MC_ENOMEM;
    }
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* No entropy source: time and address still tell this bus from others. */
        uint64_t t = mc__now_ns() ^ (uint64_t)(uintptr_t)b;
        memcpy(rnd, &t, 8);
        memcpy(rnd + 8, &b, sizeof b < 8 ? sizeof b : 8);
    }
    for (int i = 0; i < 16; i++)
        snprintf(b->sender + 2 * i, 3, "%02x", rnd[i]);

    b->has_reader = b->reg != NULL; /* read by the sender: set before any thread starts */
    if (b->reg && mc_registry_subscribe(b->reg, mc__on_invalidation, b) != 0) {
        mc__bus_free(b);
        return MC_ENOMEM;
    }
    if (pthread_create(&b->sender_thr, NULL, mc__sender_main, b) != 0) {
        if (b->reg)
            mc_registry_unsubscribe(b->reg, mc__on_invalidation, b);
        mc__bus_free(b);
        return mc__error_set(err, MC_EIO, "cannot start the bus sender thread");
    }
    if (b->reg) {
        /* A bound on staleness nobody watches would be no bound: no watchdog, no bus. */
        bool watching = true;
        if (b->max_staleness_ns)
            watching = b->has_watch = pthread_create(&b->watch_thr, NULL, mc__watch_main, b) == 0;
        if (!watching || pthread_create(&b->reader_thr, NULL, mc__reader_main, b) != 0) {
            pthread_mutex_lock(&b->lock);
            b->stopping = true;
            pthread_cond_broadcast(&b->wake);
            pthread_mutex_unlock(&b->lock);
            pthread_join(b->sender_thr, NULL);
            if (b->has_watch)
                pthread_join(b->watch_thr, NULL);
            mc_registry_unsubscribe(b->reg, mc__on_invalidation, b);
            mc__bus_free(b);
            return mc__error_set(err, MC_EIO, watching ? "cannot start the bus reader thread"
                                                       : "cannot start the bus staleness watchdog thread");
        }
        /* Without an announcer the host still works; `mcctl hosts` just does not list it. */
        if (mc__announce_start(b->host, b->port, b->stream, b->instance, b->announce_ms, b->timeout_ms, b,
                               &b->announcer) != 0)
            mc__bus_log(b, 2, "cannot start announcing this host beside %s", b->stream);
    }
    *out = b;
    return 0;
}

mc_registry *mc__bus_registry(mc_bus *b) { return b ? b->reg : NULL; }

void mc_bus_announce(mc_bus *b)
{
    if (b)
        mc__announce_now(b->announcer);
}

void mc_bus_stop(mc_bus *b)
{
    if (!b)
        return;
    /* The announcement goes first: a host that is stopping reads the stream no longer. */
    mc__announce_stop(b->announcer);
    b->announcer = NULL;
    /* No more invalidations are taken (this waits for a subscriber call in progress); queued
     * messages get their chance, then both threads stop. */
    if (b->reg)
        mc_registry_unsubscribe(b->reg, mc__on_invalidation, b);
    mc_bus_flush(b, b->timeout_ms);
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    pthread_cond_broadcast(&b->wake);
    pthread_cond_broadcast(&b->resume_cv);
    pthread_mutex_unlock(&b->lock);
    /* A reader blocked in XREAD wakes when its socket is shut down under it. */
    pthread_mutex_lock(&b->rlock);
    if (b->rctx)
        shutdown(b->rctx->fd, SHUT_RDWR);
    pthread_mutex_unlock(&b->rlock);
    pthread_join(b->sender_thr, NULL);
    if (b->has_reader)
        pthread_join(b->reader_thr, NULL);
    if (b->has_watch)
        pthread_join(b->watch_thr, NULL);
    /* The registry outlives the bus: it must not stay in a bypass nobody will end. */
    if (atomic_load(&b->bypassing))
        mc_registry_set_bypass(b->reg, false);
    mc__bus_log_ended(b, &b->send_errors, "retrying XADD after error replies");
    mc__bus_log_ended(b, &b->refusals, "invalidations refused");
    mc__bus_free(b);
}

#undef mc_bus_stats_get

void mc_bus_stats_get(mc_bus *b, mc_bus_stats *out)
{
    mc_bus_stats_get_sized(b, out, offsetof(mc_bus_stats, resent));
}

void mc_bus_stats_get_sized(mc_bus *b, mc_bus_stats *dst, size_t size)
{
    if (!dst)
        return;
    if (size > sizeof(mc_bus_stats))
        size = sizeof(mc_bus_stats);
    mc_bus_stats full;
    mc_bus_stats *out = &full;
    memset(out, 0, sizeof *out);
    if (!b) {
        memcpy(dst, out, size);
        return;
    }
    out->resent = atomic_load(&b->resent);
    out->stream_outages = atomic_load(&b->outages);
    out->stream_usable = !atomic_load(&b->send_bad) && !atomic_load(&b->read_bad);
    out->bypassing = atomic_load(&b->bypassing);
    out->bypass_periods = atomic_load(&b->bypass_periods);
    uint64_t conf = atomic_load(&b->confirmed), now = mc__now_ns();
    out->unconfirmed_ms = b->max_staleness_ns && now > conf ? (now - conf) / 1000000u : 0;
    out->sent = atomic_load(&b->sent);
    out->received = atomic_load(&b->received);
    out->own = atomic_load(&b->own);
    out->applied = atomic_load(&b->applied);
    out->ignored = atomic_load(&b->ignored);
    out->catchups = atomic_load(&b->catchups);
    out->full_flushes = atomic_load(&b->full_flushes);
    out->collapsed = atomic_load(&b->collapsed);
    out->reconnects = atomic_load(&b->reconnects);
    out->failed = atomic_load(&b->failed);
    out->link_up = atomic_load(&b->send_up) && (!b->has_reader || atomic_load(&b->read_up));
    pthread_mutex_lock(&b->lock);
    out->queued = b->qlen + b->ninflight;
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_lock(&b->idlock);
    memcpy(out->last_id, b->last_id, sizeof out->last_id);
    pthread_mutex_unlock(&b->idlock);
    memcpy(dst, out, size);
}
