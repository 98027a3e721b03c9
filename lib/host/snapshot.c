/* The host's warm restarts: when to write snapshots (periodically and at a clean stop) and the
 * restore before serving, proven current by replaying the invalidation stream. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "host/host_internal.h"
#include "modcache/snapshot.h"

#define MC__RESUME_TIMEOUT_MS 10000u

struct mc_host_snapshot {
    char *path;
    uint64_t interval_ns;
    bool trust_without_bus;
    unsigned resume_timeout_ms;
    mc_registry *reg;
    mc_log_fn log;
    void *log_ud;
    mc_snapshot *file;       /* read at open, until restore */
    bool has_position;
    mc_bus_position position;

    pthread_mutex_t write_lock; /* one write at a time (periodic, stop) */
    pthread_mutex_t lock;       /* the fields below */
    pthread_cond_t cond;        /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool running, stopping;
    mc_bus *bus;
    mc_host_snapshot_stats st;
};

static void mc__slog(mc_host_snapshot *s, mc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mc__slog(mc_host_snapshot *s, mc_log_level level, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->log) {
        s->log(s->log_ud, level, "snapshot", msg);
    } else {
        mc_logger lg;
        mc_logger_init(&lg);
        mc_logger_write(&lg, level, "snapshot", msg);
    }
}

const char *mc_host_snapshot_discard_name(mc_host_snapshot_discard r)
{
    static const char *const names[MC_SNAPSHOT_NDISCARDS] = {
        "unreadable",       "foreign",           "wrong_version",  "truncated",       "damaged",
        "no_bus",           "no_position",       "other_stream",   "stream_deleted",  "stream_recreated",
        "stream_trimmed",   "stream_unusable",   "stream_unreachable"};
    return (unsigned)r < MC_SNAPSHOT_NDISCARDS ? names[r] : "unknown";
}

static void mc__discard(mc_host_snapshot *s, mc_host_snapshot_discard r)
{
    pthread_mutex_lock(&s->lock);
    s->st.discarded[r]++;
    pthread_mutex_unlock(&s->lock);
}

void mc_host_snapshot_options_init(mc_host_snapshot_options *o)
{
    if (o)
        memset(o, 0, sizeof *o);
}

int mc_host_snapshot_open(const mc_host_snapshot_options *o, mc_host_snapshot **out)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!o || !o->path || !*o->path || !o->registry)
        return MC_EINVAL;
    mc_host_snapshot *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(o->path))) {
        free(s);
        return MC_ENOMEM;
    }
    s->interval_ns = o->interval_ns;
    s->trust_without_bus = o->trust_without_bus;
    s->resume_timeout_ms = o->resume_timeout_ms ? o->resume_timeout_ms : MC__RESUME_TIMEOUT_MS;
    s->reg = o->registry;
    s->log = o->log;
    s->log_ud = o->log_ud;
    pthread_mutex_init(&s->write_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    mc__cond_init_monotonic(&s->cond);

    mc_snapshot_fault fault = MC_SNAPSHOT_OK;
    mc_error err = {0};
    int rc = mc_snapshot_read(s->path, &s->file, &fault, &err);
    if (rc == MC_ENOMEM) {
        mc_host_snapshot_destroy(s);
        return rc;
    }
    if (rc == MC_ENOENT) {
        mc__slog(s, MC_LOG_INFO, "no snapshot at %s: starting cold", s->path);
    } else if (rc != 0) {
        static const mc_host_snapshot_discard of_fault[MC_SNAPSHOT_NFAULTS] = {
            [MC_SNAPSHOT_UNREADABLE] = MC_SNAPSHOT_DISCARD_UNREADABLE,
            [MC_SNAPSHOT_FOREIGN] = MC_SNAPSHOT_DISCARD_FOREIGN,
            [MC_SNAPSHOT_WRONG_VERSION] = MC_SNAPSHOT_DISCARD_WRONG_VERSION,
            [MC_SNAPSHOT_TRUNCATED] = MC_SNAPSHOT_DISCARD_TRUNCATED,
            [MC_SNAPSHOT_DAMAGED] = MC_SNAPSHOT_DISCARD_DAMAGED,
        };
        mc__discard(s, (unsigned)fault < MC_SNAPSHOT_NFAULTS ? of_fault[fault] : MC_SNAPSHOT_DISCARD_DAMAGED);
        mc__slog(s, MC_LOG_WARN, "%s; starting cold", err.message);
    } else {
        size_t olen;
        const void *origin = mc_snapshot_origin(s->file, &olen);
        s->has_position = olen && mc_bus_position_decode(origin, olen, &s->position) == 0;
    }
    *out = s;
    return 0;
}

const mc_bus_position *mc_host_snapshot_resume_position(mc_host_snapshot *s)
{
    return s && s->file && s->has_position ? &s->position : NULL;
}

static uint64_t mc__snap_entries(const mc_snapshot *f)
{
    uint64_t n = 0;
    for (size_t i = 0; i < mc_snapshot_function_count(f); i++)
        n += mc_snapshot_function_entries(f, i);
    return n;
}

/* Drop whatever was restored: the persistent functions' entries (nothing else is served yet). */
static void mc__drop_one(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)ud;
    (void)st;
    if (mc_cached_persists(fn))
        mc_cached_invalidate_all(fn);
}

int mc_host_snapshot_restore(mc_host_snapshot *s, mc_bus *bus)
{
    if (!s)
        return MC_EINVAL;
    mc_snapshot *f = s->file;
    s->file = NULL;
    if (!f)
        return 0;
    uint64_t now_s = (uint64_t)time(NULL), written_s = mc_snapshot_written_ns(f) / 1000000000u;
    uint64_t ago = now_s > written_s ? now_s - written_s : 0;
    if (bus && !s->has_position) {
        mc__discard(s, MC_SNAPSHOT_DISCARD_NO_POSITION);
        mc__slog(s, MC_LOG_WARN,
                 "snapshot %s discarded (no_position): it holds no stream position to prove its entries current; "
                 "starting cold",
                 s->path);
        mc_snapshot_free(f);
        return 0;
    }
    if (!bus && !s->trust_without_bus) {
        mc__discard(s, MC_SNAPSHOT_DISCARD_NO_BUS);
        mc__slog(s, MC_LOG_WARN,
                 "snapshot %s discarded (no_bus): without an invalidation bus nothing proves its entries current "
                 "(caches.snapshot.trust_without_bus: true restores it anyway); starting cold",
                 s->path);
        mc_snapshot_free(f);
        return 0;
    }
    mc_snapshot_restore_stats rs;
    mc_snapshot_restore(f, s->reg, &rs);
    uint64_t saved = mc__snap_entries(f);
    mc_snapshot_free(f);
    if (!bus) {
        mc__slog(s, MC_LOG_WARN,
                 "restored %" PRIu64 " of %" PRIu64 " entries (%" PRIu64 " functions) from %s, written %" PRIu64
                 " s ago, WITHOUT a bus to prove them current (trust_without_bus)",
                 rs.restored, saved, rs.functions, s->path, ago);
        pthread_mutex_lock(&s->lock);
        s->st.restored_entries = rs.restored;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    const char *reason = "";
    mc_error err = {0};
    int rc = mc_bus_resume(bus, s->resume_timeout_ms, &reason, &err);
    if (rc == 0) {
        mc__slog(s, MC_LOG_INFO,
                 "restored %" PRIu64 " of %" PRIu64 " entries (%" PRIu64 " functions; %" PRIu64 " expired, %" PRIu64
                 " skipped) from %s, written %" PRIu64 " s ago; the stream was replayed from %s",
                 rs.restored, saved, rs.functions, rs.expired, rs.unknown, s->path, ago, s->position.last_id);
        pthread_mutex_lock(&s->lock);
        s->st.restored_entries = rs.restored;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    static const struct {
        const char *word;
        mc_host_snapshot_discard r;
    } reasons[] = {
        {MC_BUS_RESUME_OTHER_STREAM, MC_SNAPSHOT_DISCARD_OTHER_STREAM},
        {MC_BUS_RESUME_DELETED, MC_SNAPSHOT_DISCARD_STREAM_DELETED},
        {MC_BUS_RESUME_RECREATED, MC_SNAPSHOT_DISCARD_STREAM_RECREATED},
        {MC_BUS_RESUME_TRIMMED, MC_SNAPSHOT_DISCARD_STREAM_TRIMMED},
        {MC_BUS_RESUME_UNUSABLE, MC_SNAPSHOT_DISCARD_STREAM_UNUSABLE},
        {MC_BUS_RESUME_UNREACHABLE, MC_SNAPSHOT_DISCARD_STREAM_UNREACHABLE},
    };
    mc_host_snapshot_discard r = MC_SNAPSHOT_DISCARD_STREAM_UNREACHABLE;
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (!strcmp(reason, reasons[i].word))
            r = reasons[i].r;
    /* The bus flushed everything already (MC_ECANCELED); after a timeout it has not. */
    if (rc != MC_ECANCELED)
        mc_registry_list(s->reg, mc__drop_one, NULL);
    mc__discard(s, r);
    mc__slog(s, MC_LOG_WARN, "snapshot %s discarded (%s): %s; starting cold", s->path,
             mc_host_snapshot_discard_name(r), err.message[0] ? err.message : mc_strerror(rc));
    return 0;
}

int mc_host_snapshot_write(mc_host_snapshot *s, mc_bus *bus)
{
    if (!s)
        return MC_EINVAL;
    pthread_mutex_lock(&s->write_lock);
    /* The position first: every invalidation up to it was applied before the entries are read,
     * so a restart that replays from it misses none that the entries could have seen. */
    char origin[400];
    int olen = 0;
    mc_bus_position pos;
    if (bus && mc_bus_position_get(bus, &pos) == 0) {
        olen = mc_bus_position_encode(&pos, origin, sizeof origin);
        if (olen < 0)
            olen = 0;
    }
    mc_snapshot_write_stats ws;
    mc_error err = {0};
    int rc = mc_snapshot_write(s->reg, origin, (size_t)olen, s->path, &ws, &err);
    pthread_mutex_lock(&s->lock);
    if (rc == 0) {
        s->st.writes++;
        s->st.last_write_ns = ws.duration_ns;
        s->st.last_write_bytes = ws.bytes;
        s->st.last_write_entries = ws.entries;
    } else {
        s->st.write_errors++;
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->write_lock);
    if (rc == 0)
        mc__slog(s, MC_LOG_INFO,
                 "wrote %s: %" PRIu64 " entries of %" PRIu64 " functions, %" PRIu64 " bytes in %.3f s%s%s", s->path,
                 ws.entries, ws.functions, ws.bytes, (double)ws.duration_ns / 1e9, olen ? ", stream position " : "",
                 olen ? pos.last_id : "");
    else
        mc__slog(s, MC_LOG_ERROR, "snapshot not written: %s", err.message[0] ? err.message : mc_strerror(rc));
    return rc;
}

static void *mc__snap_main(void *arg)
{
    mc_host_snapshot *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + s->interval_ns;
        ts.tv_sec = (time_t)(at / 1000000000u);
        ts.tv_nsec = (long)(at % 1000000000u);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
            ;
        if (s->stopping)
            break;
        mc_bus *bus = s->bus;
        pthread_mutex_unlock(&s->lock);
        mc_host_snapshot_write(s, bus);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int mc_host_snapshot_start(mc_host_snapshot *s, mc_bus *bus)
{
    if (!s)
        return MC_EINVAL;
    if (!s->interval_ns)
        return 0;
    pthread_mutex_lock(&s->lock);
    if (s->running) {
        pthread_mutex_unlock(&s->lock);
        return MC_EBUSY;
    }
    s->bus = bus;
    s->stopping = false;
    int rc = pthread_create(&s->thread, NULL, mc__snap_main, s) == 0 ? 0 : MC_EIO;
    s->running = rc == 0;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void mc_host_snapshot_stop(mc_host_snapshot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    bool running = s->running;
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (running)
        pthread_join(s->thread, NULL);
    pthread_mutex_lock(&s->lock);
    s->running = false;
    s->bus = NULL;
    pthread_mutex_unlock(&s->lock);
}

void mc_host_snapshot_stats_get(mc_host_snapshot *s, mc_host_snapshot_stats *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof *st);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    *st = s->st;
    pthread_mutex_unlock(&s->lock);
}

void mc_host_snapshot_destroy(mc_host_snapshot *s)
{
    if (!s)
        return;
    mc_host_snapshot_stop(s);
    mc_snapshot_free(s->file);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->path);
    free(s);
}
