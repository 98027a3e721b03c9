/* The host's HTTP server (libmicrohttpd, event-driven: a few threads on epoll, none per
 * connection): modules' web resources by longest path prefix, the admin API (bearer token) and
 * Prometheus /metrics; connection limits and a request-head deadline against hostile clients. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ratelog.h"
#include "host/host_internal.h"
#include "host/pool.h"
#include "key/keylist.h"

#define MC__DEFAULT_MAX_BODY ((size_t)1 << 20)
#define MC__DEFAULT_MAX_CONNECTIONS 10000u
#define MC__DEFAULT_HEADER_TIMEOUT_NS 10000000000ull
#define MC__DEFAULT_IDLE_TIMEOUT_NS 30000000000ull
/* File descriptors kept free for everything else the process opens (modules' databases, the
 * bus's Redis connections, log files) when the open-files limit caps the connections. */
#define MC__FD_RESERVE 64u
/* A repeating fault's log: at most one count line per interval; "ended" after this quiet. */
#define MC__LOG_INTERVAL_NS 10000000000ull
#define MC__LOG_QUIET_NS 5000000000ull
#define MC__ADMIN "/_modcache/admin"

static const char *const mc__reserved[] = {"/_matrix/client", "/_matrix/federation", "/_matrix/key",
                                           "/_matrix/media", MC__ADMIN, "/metrics", NULL};

/* One open connection (MHD's socket context), linked in the server's list so that the sweeper
 * can close those whose request head is late. */
typedef struct mc__conn {
    struct mc__conn *prev, *next; /* under mc__http.conns_lock */
    int fd;
    /* When what the connection is doing must be done (monotonic ns): the request head whole,
     * then its body received (mc__transfer_ns), then the answer taken; 0 while a handler runs.
     * Written by the connection's thread, read by the sweeper: relaxed is enough, a stale read
     * only moves the close by one sweep. */
    _Atomic uint64_t deadline;
    uint64_t header_ns; /* the server's request_header_timeout, for mc__send's deadline */
    bool dropped; /* under conns_lock: shut down once */
    bool over;    /* past max_connections: answered 503 at its start, closed at its first request */
} mc__conn;

struct mc__http {
    struct MHD_Daemon *daemon;
    int quiesced_fd; /* the listen socket MHD_quiesce_daemon handed back, closed after stop */
    unsigned port;
    size_t max_body;
    char *token;
    mc_host *host;
    unsigned max_conns;
    /* Connections past max_connections that still get a 503 answer before they are closed;
     * past those too, a connection is closed as soon as it is accepted. */
    unsigned refuse_slots;
    uint64_t header_ns, idle_ns;
    /* Counters for mc_host_http_stats; nconns also decides refusals at accept. */
    _Atomic uint64_t nconns, refused, header_timeouts, requests, bad_paths;
    _Atomic long active; /* requests between their head and their completion */
    pthread_mutex_t conns_lock;
    mc__conn *conns;
    pthread_t sweeper;
    bool has_sweeper;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_cv;
    bool stopping; /* under sweep_lock */
    bool live;     /* a running server (not mc__http_inject's): set before the daemon starts */
    mc__pool *pool; /* runs modules' handlers and request checks off the event threads */
    mc__ratelog refusals, mhd_log, late_heads;
};

struct mc_http_response {
    unsigned status;
    char *body;
    size_t len;
    char **headers; /* name, value, name, value... */
    size_t nheaders;
    bool failed;
};

/* What mc_http_request.impl points to: the connection, or (injected requests) header lines. */
/* A header value found in injected header lines: kept until the request ends, as the API
 * promises for every value it hands out. */
struct mc__found {
    struct mc__found *next;
    char value[];
};

typedef struct {
    struct MHD_Connection *conn;
    const char *headers;    /* "Name: value\n" lines, when conn is NULL */
    struct mc__found *found; /* values returned from `headers`, freed with the request */
    const char *raw_path;   /* as sent, before normalisation */
} mc__req_impl;

struct mc__http;

/* Per-request state across MHD's calls, created when the request line is parsed: the raw and
 * normalised paths, the body being received, and for a request handed to the handler pool,
 * what the pool thread needs and the answer it leaves. */
typedef struct {
    char *raw;  /* the request target's path as sent (no query) */
    char *path; /* normalised; NULL when it does not normalise (answered 400) */
    char *body;
    size_t len, cap;
    bool too_large;
    bool started; /* the head is whole: counted in `active` */
    /* Handed to the pool: the connection is suspended until the pool thread resumes it. */
    bool queued;
    struct mc__http *server;
    struct MHD_Connection *conn;
    const char *method; /* MHD's, valid until the request ends */
    char *query;
    mc_http_response *resp;
    /* Set by the pool thread after it filled *resp (release), read by the event thread once the
     * connection is resumed (acquire): libmicrohttpd's own locking orders them too, but it is
     * not instrumented for ThreadSanitizer, this is. */
    _Atomic bool done;
} mc__req_ctx;

/* ------------------------------------------------------------------ responses */

int mc_http_set_status(mc_http_response *r, unsigned status)
{
    if (!r || status < 100 || status > 599)
        return MC_EINVAL;
    r->status = status;
    return 0;
}

int mc_http_add_header(mc_http_response *r, const char *name, const char *value)
{
    if (!r || !name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return MC_EINVAL;
    char **h = realloc(r->headers, (r->nheaders + 2) * sizeof *h);
    if (!h) {
        r->failed = true;
        return MC_ENOMEM;
    }
    r->headers = h;
    h[r->nheaders] = strdup(name);
    h[r->nheaders + 1] = strdup(value);
    r->nheaders += 2;
    if (!h[r->nheaders - 2] || !h[r->nheaders - 1]) {
        r->failed = true;
        return MC_ENOMEM;
    }
    return 0;
}

int mc_http_set_body(mc_http_response *r, const void *data, size_t len)
{
    if (!r || (!data && len))
        return MC_EINVAL;
    char *b = malloc(len ? len : 1);
    if (!b) {
        r->failed = true;
        return MC_ENOMEM;
    }
    if (len)
        memcpy(b, data, len);
    free(r->body);
    r->body = b;
    r->len = len;
    return 0;
}

int mc_http_method_not_allowed(mc_http_response *r, const char *allow)
{
    int rc = mc_http_set_status(r, 405);
    if (rc == 0 && allow)
        rc = mc_http_add_header(r, "Allow", allow);
    return rc;
}

const char *mc_http_header(const mc_http_request *req, const char *name)
{
    if (!req || !name || !req->impl)
        return NULL;
    mc__req_impl *im = req->impl;
    if (im->conn)
        return MHD_lookup_connection_value(im->conn, MHD_HEADER_KIND, name);
    size_t nl = strlen(name);
    for (const char *l = im->headers; l && *l;) {
        const char *eol = strchr(l, '\n');
        size_t ll = eol ? (size_t)(eol - l) : strlen(l);
        if (ll > nl && l[nl] == ':' && !strncasecmp(l, name, nl)) {
            const char *v = l + nl + 1;
            while (v < l + ll && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(l + ll - v);
            struct mc__found *f = malloc(sizeof *f + vl + 1);
            if (!f)
                return NULL;
            memcpy(f->value, v, vl);
            f->value[vl] = 0;
            f->next = im->found;
            im->found = f;
            return f->value;
        }
        l += ll + (eol != NULL);
    }
    return NULL;
}

const char *mc_http_raw_path(const mc_http_request *req)
{
    if (!req || !req->impl)
        return NULL;
    const mc__req_impl *im = req->impl;
    return im->raw_path ? im->raw_path : req->path;
}

static void mc__resp_free(mc_http_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++)
        free(r->headers[i]);
    free(r->headers);
    free(r->body);
}

static void mc__resp_reset(mc_http_response *r)
{
    mc__resp_free(r);
    memset(r, 0, sizeof *r);
}

static void mc__resp_text(mc_http_response *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mc__resp_text(mc_http_response *r, unsigned status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->status = status;
    mc_http_set_body(r, buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    mc_http_add_header(r, "Content-Type", "application/json");
}

static mc__conn *mc__conn_of(struct MHD_Connection *conn);

/* The time a body or an answer of `bytes` may take to cross: the request-head timeout, plus a
 * second per MC__MIN_TRANSFER_RATE bytes. A client that sends a body (or reads an answer) a
 * byte at a time would otherwise hold its connection for as long as it likes: every byte
 * restarts libmicrohttpd's idle timeout. */
#define MC__MIN_TRANSFER_RATE 16384u
static uint64_t mc__transfer_ns(uint64_t header_ns, uint64_t bytes)
{
    uint64_t per = bytes / MC__MIN_TRANSFER_RATE + 1;
    return per > UINT64_MAX / 1000000000u - header_ns / 1000000000u - 1 ? UINT64_MAX / 2
                                                                        : header_ns + per * 1000000000u;
}

static void mc__deadline_in(mc__conn *c, uint64_t ns)
{
    if (c)
        atomic_store_explicit(&c->deadline, mc__ratelog_now() + ns, memory_order_relaxed);
}

static enum MHD_Result mc__send(struct MHD_Connection *conn, mc_http_response *r)
{
    if (r->failed) {
        mc__resp_reset(r);
        mc__resp_text(r, 500, "{\"error\": \"out of memory\"}");
    }
    struct MHD_Response *mr = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_COPY);
    if (!mr) {
        mc__resp_free(r);
        return MHD_NO;
    }
    for (size_t i = 0; i + 1 < r->nheaders; i += 2)
        MHD_add_response_header(mr, r->headers[i], r->headers[i + 1]);
    enum MHD_Result ok = MHD_queue_response(conn, r->status ? r->status : 200, mr);
    MHD_destroy_response(mr);
    mc__conn *c = mc__conn_of(conn);
    if (c) /* the answer must be taken in time too (mc__completed starts the next head's) */
        mc__deadline_in(c, mc__transfer_ns(c->header_ns, r->len));
    mc__resp_free(r);
    return ok;
}

/* ------------------------------------------------------------------ routes */

static bool mc__path_ok(const char *p)
{
    if (!p || p[0] != '/' || p[1] == 0)
        return false;
    size_t n = strlen(p);
    if (p[n - 1] == '/')
        return false;
    /* Segments must be non-empty and not "." or "..": the path is matched literally. */
    for (const char *s = p; *s;) {
        const char *seg = s + 1, *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        s = seg + len;
    }
    return !strpbrk(p, "?#%\\");
}

/* True when path is `base` or below it (segment-wise). */
static bool mc__under(const char *path, const char *base, size_t blen)
{
    return strncmp(path, base, blen) == 0 && (path[blen] == 0 || path[blen] == '/');
}

int mc_api_register_web_resource(mc_api *api, const char *path, mc_http_handler handler, void *ud)
{
    if (!api || !handler || !mc__path_ok(path))
        return MC_EINVAL;
    mc_host *h = api->host;
    const char *module = api->desc->name;
    if (!api->in_init) {
        mc__host_log(h, MC_LOG_WARN, module, "register_web_resource(%s) after init refused", path);
        return MC_EBUSY;
    }
    for (const char *const *r = mc__reserved; *r; r++) {
        size_t rl = strlen(*r), pl = strlen(path);
        /* Neither inside a reserved tree nor above one (which would capture it). */
        if (mc__under(path, *r, rl) || mc__under(*r, path, pl)) {
            mc__host_log(h, MC_LOG_WARN, module, "web resource %s refused: %s is reserved", path, *r);
            return MC_EINVAL;
        }
    }
    pthread_rwlock_wrlock(&h->routes_lock);
    for (size_t i = 0; i < h->nroutes; i++)
        if (!strcmp(h->routes[i].path, path)) {
            pthread_rwlock_unlock(&h->routes_lock);
            mc__host_log(h, MC_LOG_WARN, module, "web resource %s is taken by module %s", path,
                         h->routes[i].owner->desc->name);
            return MC_EEXIST;
        }
    struct mc__route *r = realloc(h->routes, (h->nroutes + 1) * sizeof *r);
    char *copy = strdup(path);
    if (!r || !copy) {
        if (r)
            h->routes = r;
        free(copy);
        pthread_rwlock_unlock(&h->routes_lock);
        return MC_ENOMEM;
    }
    h->routes = r;
    h->routes[h->nroutes++] = (struct mc__route){copy, strlen(copy), handler, ud, api};
    pthread_rwlock_unlock(&h->routes_lock);
    return 0;
}

void mc__routes_drop(mc_host *h, const mc_api *owner)
{
    pthread_rwlock_wrlock(&h->routes_lock);
    size_t keep = 0;
    for (size_t i = 0; i < h->nroutes; i++) {
        if (h->routes[i].owner == owner)
            free(h->routes[i].path);
        else
            h->routes[keep++] = h->routes[i];
    }
    h->nroutes = keep;
    pthread_rwlock_unlock(&h->routes_lock);
}

/* ------------------------------------------------------------------ admin API and metrics */

/* Append to a growing text buffer; on allocation failure the response reports it. */
typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} mc__buf;

static void mc__bprintf(mc__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mc__bprintf(mc__buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* JSON string contents (names are module-qualified identifiers, but escape anyway). */
static void mc__bjson(mc__buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            mc__bprintf(b, "\\%c", c);
        else if (c < 0x20)
            mc__bprintf(b, "\\u%04x", c);
        else
            mc__bprintf(b, "%c", c);
    }
}

static void mc__list_one(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    mc__buf *b = ud;
    mc__bprintf(b, "%s{\"name\": \"", b->len > 1 ? ", " : "");
    mc__bjson(b, mc_cached_name(fn));
    mc__bprintf(b,
                "\", \"entries\": %llu, \"max_entries\": %llu, \"bytes\": %llu, \"memory\": %llu, "
                "\"hits\": %llu, \"misses\": %llu, \"loads\": %llu, \"load_errors\": %llu, "
                "\"invalidations\": %llu, \"timeouts\": %llu, \"refreshes\": %llu, "
                "\"refresh_errors\": %llu, \"expiries\": %llu, \"evictions\": {",
                (unsigned long long)st->cache.entries, (unsigned long long)st->cache.max_entries,
                (unsigned long long)st->cache.weight, (unsigned long long)st->cache.memory,
                (unsigned long long)st->cache.hits, (unsigned long long)st->cache.misses,
                (unsigned long long)st->loads, (unsigned long long)st->load_errors,
                (unsigned long long)st->invalidations, (unsigned long long)st->timeouts,
                (unsigned long long)st->refreshes, (unsigned long long)st->refresh_errors,
                (unsigned long long)st->expiries);
    for (int r = 0; r < MC_EVICT_NREASONS; r++)
        mc__bprintf(b, "%s\"%s\": %llu", r ? ", " : "", mc_evict_reason_name((mc_evict_reason)r),
                    (unsigned long long)st->cache.evictions[r]);
    mc__bprintf(b, "}, \"bypass\": %s, \"bypassed\": %llu}", mc_cached_bypassing(fn) ? "true" : "false",
                (unsigned long long)mc_cached_bypassed_calls(fn));
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void mc__label(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = 0;
}

/* ---- /metrics: Prometheus text format 0.0.4, every family with HELP and TYPE, its samples
 * contiguous (one family at a time across all functions, as the format requires). */

/* One registered function's statistics, collected under the registry's read lock. */
typedef struct {
    char label[512]; /* the name, escaped as a label value */
    bool iterable;
    mc_cached_stats st;
    bool bypassing;    /* bounded staleness: calls bypass the cache now */
    uint64_t bypassed; /* calls that did since creation */
} mc__fn_sample;

typedef struct {
    mc__fn_sample *v;
    size_t n, cap;
    bool failed;
} mc__fn_samples;

static void mc__collect_one(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    mc__fn_samples *fs = ud;
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        mc__fn_sample *v = realloc(fs->v, cap * sizeof *v);
        if (!v) {
            fs->failed = true;
            return;
        }
        fs->v = v;
        fs->cap = cap;
    }
    mc__fn_sample *x = &fs->v[fs->n++];
    mc__label(x->label, sizeof x->label, mc_cached_name(fn));
    x->iterable = mc_cached_is_iterable(fn);
    x->st = *st;
    x->bypassing = mc_cached_bypassing(fn);
    x->bypassed = mc_cached_bypassed_calls(fn);
}

static void mc__family(mc__buf *b, const char *name, const char *type, const char *help)
{
    mc__bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Which functions a per-function family covers: entry counts and byte weights only mean
 * something for functions that weigh entries by bytes, element counts for iterable ones. */
enum { MC__ALL, MC__BYTES_ONLY, MC__ITERABLE_ONLY };

typedef struct {
    const char *name, *type, *help;
    int which;
    size_t offset; /* of a uint64_t in mc_cached_stats */
} mc__fn_family;

#define MC__ST(field) offsetof(mc_cached_stats, field)
static const mc__fn_family mc__fn_families[] = {
    {"modcache_cache_hits_total", "counter", "Lookups answered from the cache.", MC__ALL, MC__ST(cache.hits)},
    {"modcache_cache_misses_total", "counter", "Lookups that found no entry.", MC__ALL, MC__ST(cache.misses)},
    {"modcache_cache_entries", "gauge", "Entries held now.", MC__ALL, MC__ST(cache.entries)},
    {"modcache_cache_max_entries", "gauge", "The entry bound now: max_entries times the cache factor.",
     MC__BYTES_ONLY, MC__ST(cache.max_entries)},
    {"modcache_cache_bytes", "gauge", "Key and value bytes of the entries held now.", MC__BYTES_ONLY,
     MC__ST(cache.weight)},
    {"modcache_cache_elements", "gauge", "Elements held now by an iterable function (the sum of entry weights).",
     MC__ITERABLE_ONLY, MC__ST(cache.weight)},
    {"modcache_cache_max_elements", "gauge",
     "The element bound of an iterable function now: max_entries times the cache factor.", MC__ITERABLE_ONLY,
     MC__ST(cache.max_bytes)},
    {"modcache_cache_memory_bytes", "gauge", "Bytes allocated now for the entries, the index and the policy state.",
     MC__ALL, MC__ST(cache.memory)},
    {"modcache_cache_loads_total", "counter", "Loader runs started (a batch counts each key).", MC__ALL,
     MC__ST(loads)},
    {"modcache_cache_load_errors_total", "counter", "Loads that ended in an error (nothing stored).", MC__ALL,
     MC__ST(load_errors)},
    {"modcache_cache_load_timeouts_total", "counter", "Calls that gave up on a load at the load timeout.", MC__ALL,
     MC__ST(timeouts)},
    {"modcache_cache_refreshes_total", "counter",
     "Refresh-ahead reloads started (refresh_after): the old value was served meanwhile.", MC__ALL,
     MC__ST(refreshes)},
    {"modcache_cache_refresh_errors_total", "counter", "Refresh-ahead reloads that failed (the old value kept).",
     MC__ALL, MC__ST(refresh_errors)},
    {"modcache_cache_expiries_total", "counter",
     "Entries found past expire_after_write (or none_ttl) by a call, which loaded again.", MC__ALL,
     MC__ST(expiries)},
};
#undef MC__ST

static uint64_t mc__st_u64(const mc_cached_stats *st, size_t offset)
{
    uint64_t v;
    memcpy(&v, (const char *)st + offset, sizeof v);
    return v;
}

/* le="..." of a bucket bound in seconds, the shortest exact decimal form. */
static void mc__le(char *out, size_t cap, uint64_t ns)
{
    if (ns == UINT64_MAX)
        snprintf(out, cap, "+Inf");
    else
        snprintf(out, cap, "%g", (double)ns / 1e9);
}

static void mc__cache_metrics(mc__buf *b, const mc__fn_samples *fs)
{
    for (size_t f = 0; f < sizeof mc__fn_families / sizeof mc__fn_families[0]; f++) {
        const mc__fn_family *fam = &mc__fn_families[f];
        mc__family(b, fam->name, fam->type, fam->help);
        for (size_t i = 0; i < fs->n; i++) {
            const mc__fn_sample *x = &fs->v[i];
            if ((fam->which == MC__BYTES_ONLY && x->iterable) || (fam->which == MC__ITERABLE_ONLY && !x->iterable))
                continue;
            mc__bprintf(b, "%s{cache=\"%s\"} %llu\n", fam->name, x->label,
                        (unsigned long long)mc__st_u64(&x->st, fam->offset));
        }
    }
    mc__family(b, "modcache_cache_evictions_total", "counter", "Entries that left the cache, by reason.");
    for (size_t i = 0; i < fs->n; i++)
        for (int r = 0; r < MC_EVICT_NREASONS; r++)
            mc__bprintf(b, "modcache_cache_evictions_total{cache=\"%s\",reason=\"%s\"} %llu\n", fs->v[i].label,
                        mc_evict_reason_name((mc_evict_reason)r), (unsigned long long)fs->v[i].st.cache.evictions[r]);
    mc__family(b, "modcache_cache_invalidations_total", "counter",
               "Invalidation calls (keys, prefixes or all), by where they came from.");
    for (size_t i = 0; i < fs->n; i++)
        for (int src = 0; src < MC_INVALIDATION_NSOURCES; src++)
            mc__bprintf(b, "modcache_cache_invalidations_total{cache=\"%s\",source=\"%s\"} %llu\n", fs->v[i].label,
                        mc_invalidation_source_name((mc_invalidation_source)src),
                        (unsigned long long)fs->v[i].st.invalidations_by_source[src]);
    mc__family(b, "modcache_cache_bypass", "gauge",
               "1 while calls bypass the cache (bounded staleness: the host is not known to be current).");
    for (size_t i = 0; i < fs->n; i++)
        mc__bprintf(b, "modcache_cache_bypass{cache=\"%s\"} %d\n", fs->v[i].label, fs->v[i].bypassing ? 1 : 0);
    mc__family(b, "modcache_cache_bypassed_total", "counter", "Calls that bypassed the cache (bounded staleness).");
    for (size_t i = 0; i < fs->n; i++)
        mc__bprintf(b, "modcache_cache_bypassed_total{cache=\"%s\"} %llu\n", fs->v[i].label,
                    (unsigned long long)fs->v[i].bypassed);
    mc__family(b, "modcache_cache_load_duration_seconds", "histogram",
               "Time from a load's start to its result (stored, dropped or failed).");
    for (size_t i = 0; i < fs->n; i++) {
        const mc__fn_sample *x = &fs->v[i];
        char le[32];
        for (size_t k = 0; k < MC_LOAD_BUCKETS; k++) {
            mc__le(le, sizeof le, mc_cached_load_bucket_ns(k));
            mc__bprintf(b, "modcache_cache_load_duration_seconds_bucket{cache=\"%s\",le=\"%s\"} %llu\n", x->label,
                        le, (unsigned long long)x->st.load_duration_buckets[k]);
        }
        mc__bprintf(b, "modcache_cache_load_duration_seconds_sum{cache=\"%s\"} %.9f\n", x->label,
                    (double)x->st.load_duration_sum_ns / 1e9);
        mc__bprintf(b, "modcache_cache_load_duration_seconds_count{cache=\"%s\"} %llu\n", x->label,
                    (unsigned long long)x->st.load_duration_buckets[MC_LOAD_BUCKETS - 1]);
    }
}

/* The process's start in seconds since the epoch: its start time in clock ticks after boot
 * (/proc/self/stat, field 22) plus the boot time (/proc/stat btime); 0 when unreadable. */
static double mc__process_start;
static void mc__process_start_once(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ticks = 0, btime = 0;
    /* After the command name: state (field 3), then fields 4..21, then starttime. */
    if (!p || sscanf(p + 1, " %*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
                     &ticks) != 1)
        return;
    f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    if (f)
        fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (btime && hz > 0)
        mc__process_start = (double)btime + (double)ticks / (double)hz;
}

static void mc__process_metrics(mc__buf *b)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, mc__process_start_once);
    mc__family(b, "modcache_build_info", "gauge", "Always 1: the library version and the module ABI it speaks.");
    mc__bprintf(b, "modcache_build_info{version=\"%s\",module_abi=\"%u\"} 1\n", mc_version(),
                (unsigned)MC_MODULE_ABI_VERSION);
    if (mc__process_start > 0) {
        mc__family(b, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.");
        mc__bprintf(b, "process_start_time_seconds %.2f\n", mc__process_start);
    }
    mc__family(b, "modcache_jemalloc_allocated_bytes", "gauge",
               "Bytes jemalloc reports allocated by the whole process (stats.allocated).");
    mc__bprintf(b, "modcache_jemalloc_allocated_bytes %zu\n", mc__allocated_bytes());
}

/* One unlabelled sample with its family lines. */
typedef struct {
    const char *name, *type, *help;
    uint64_t v;
} mc__plain;

static void mc__plain_metrics(mc__buf *b, const mc__plain *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mc__family(b, rows[i].name, rows[i].type, rows[i].help);
        mc__bprintf(b, "%s %llu\n", rows[i].name, (unsigned long long)rows[i].v);
    }
}

/* The invalidation bus's counters. */
static void mc__bus_metrics(mc__buf *b, mc_bus *bus)
{
    mc_bus_stats st;
    mc_bus_stats_get(bus, &st);
    const mc__plain rows[] = {
        {"modcache_bus_sent_total", "counter", "Messages written to the stream (resends included).", st.sent},
        {"modcache_bus_received_total", "counter", "Stream entries read from other senders.", st.received},
        {"modcache_bus_own_total", "counter", "Stream entries read back that this host sent (skipped).", st.own},
        {"modcache_bus_applied_total", "counter", "Received entries applied to a registered function.", st.applied},
        {"modcache_bus_ignored_total", "counter", "Received entries for unknown names, or malformed.", st.ignored},
        {"modcache_bus_catchups_total", "counter", "Reconnections that resumed from the last id handled.", st.catchups},
        {"modcache_bus_full_flushes_total", "counter", "Times every function was invalidated after a possible loss.",
         st.full_flushes},
        {"modcache_bus_collapsed_total", "counter", "Times the outage queue was collapsed into all-messages.",
         st.collapsed},
        {"modcache_bus_reconnects_total", "counter", "Connections to Redis made after a failure.", st.reconnects},
        {"modcache_bus_failed_total", "counter", "Messages Redis refused for good (dropped, logged).", st.failed},
        {"modcache_bus_queued", "gauge", "Messages waiting to be sent now.", st.queued},
        {"modcache_bus_link_up", "gauge", "1 when both connections to Redis are up.", st.link_up},
        {"modcache_bus_resent_total", "counter", "Messages sent again after an outage.", st.resent},
        {"modcache_bus_stream_outages_total", "counter",
         "Times the stream became unusable (a key of another type, a persistent error).", st.stream_outages},
        {"modcache_bus_stream_usable", "gauge", "1 while the stream can be read and written.", st.stream_usable},
        {"modcache_bus_bypassing", "gauge", "1 while the registry's functions bypass their caches (bounded staleness).",
         st.bypassing},
        {"modcache_bus_bypass_periods_total", "counter", "Times the functions started bypassing their caches.",
         st.bypass_periods},
    };
    mc__plain_metrics(b, rows, sizeof rows / sizeof rows[0]);
    /* In seconds, Prometheus's base unit of time (promtool refuses a _milliseconds name). */
    mc__family(b, "modcache_bus_unconfirmed_seconds", "gauge",
               "Time since the reader last confirmed it had applied the whole stream.");
    mc__bprintf(b, "modcache_bus_unconfirmed_seconds %.3f\n", (double)st.unconfirmed_ms / 1e3);
}

static void mc__http_stats_of(const struct mc__http *s, mc_http_stats *st);

/* Warm restarts (mc_host_snapshot_stats). */
static void mc__snapshot_metrics(mc__buf *b, mc_host_snapshot *snap)
{
    mc_host_snapshot_stats st;
    mc_host_snapshot_stats_get(snap, &st);
    const mc__plain rows[] = {
        {"modcache_snapshot_restored_entries", "gauge", "Entries restored from the snapshot at start and kept.",
         st.restored_entries},
        {"modcache_snapshot_writes_total", "counter", "Snapshots written.", st.writes},
        {"modcache_snapshot_write_errors_total", "counter", "Snapshot writes that failed (logged).", st.write_errors},
        {"modcache_snapshot_last_write_bytes", "gauge", "Size of the last snapshot written.", st.last_write_bytes},
        {"modcache_snapshot_last_write_entries", "gauge", "Entries in the last snapshot written.",
         st.last_write_entries},
    };
    mc__plain_metrics(b, rows, sizeof rows / sizeof rows[0]);
    mc__family(b, "modcache_snapshot_last_write_duration_seconds", "gauge",
               "How long the last snapshot written took.");
    mc__bprintf(b, "modcache_snapshot_last_write_duration_seconds %.6f\n", (double)st.last_write_ns / 1e9);
    mc__family(b, "modcache_snapshot_discarded_total", "counter",
               "Snapshots not used at start, by reason (the file refused, or continuity not proven).");
    for (unsigned r = 0; r < MC_SNAPSHOT_NDISCARDS; r++)
        mc__bprintf(b, "modcache_snapshot_discarded_total{reason=\"%s\"} %llu\n",
                    mc_host_snapshot_discard_name((mc_host_snapshot_discard)r), (unsigned long long)st.discarded[r]);
}

/* The server's own counters (mc_host_http_stats). */
static void mc__http_metrics(mc__buf *b, const struct mc__http *s)
{
    mc_http_stats st;
    mc__http_stats_of(s, &st);
    const mc__plain rows[] = {
        {"modcache_http_connections", "gauge", "Connections open now.", st.connections},
        {"modcache_http_max_connections", "gauge", "The connection limit in force.", st.max_connections},
        {"modcache_http_connections_refused_total", "counter", "Connections refused at the limit.", st.refused},
        {"modcache_http_header_timeouts_total", "counter", "Connections closed for a late request head.",
         st.header_timeouts},
        {"modcache_http_requests_total", "counter", "Requests answered.", st.requests},
        {"modcache_http_bad_paths_total", "counter", "Requests answered 400 for a path that does not normalise.",
         st.bad_paths},
    };
    mc__plain_metrics(b, rows, sizeof rows / sizeof rows[0]);
}

/* The whole /metrics text. */
static void mc__metrics(struct mc__http *s, mc__buf *b)
{
    mc_host *h = s->host;
    mc__fn_samples fs = {0};
    mc_registry_list(h->registry, mc__collect_one, &fs);
    if (fs.failed)
        b->failed = true;
    mc__cache_metrics(b, &fs);
    free(fs.v);
    mc__process_metrics(b);
    if (h->bus)
        mc__bus_metrics(b, h->bus);
    if (h->snapshot)
        mc__snapshot_metrics(b, h->snapshot);
    if (s->live)
        mc__http_metrics(b, s);
}

static void mc__buf_to_resp(mc__buf *b, mc_http_response *r, const char *type)
{
    if (b->failed)
        r->failed = true;
    else
        mc_http_set_body(r, b->s, b->len);
    mc_http_add_header(r, "Content-Type", type);
    free(b->s);
}

/* Equal strings, in time that depends on the length of `a` only (the presented token). */
static bool mc__token_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
    return diff == 0;
}

/* Skip JSON whitespace. */
static const char *mc__ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* An error answer whose text comes from outside (a cache name, a parse message): escaped. */
static void mc__resp_error(mc_http_response *r, unsigned status, const char *prefix, const char *detail)
{
    mc__buf b = {0};
    mc__bprintf(&b, "{\"error\": \"");
    mc__bjson(&b, prefix);
    mc__bjson(&b, detail);
    mc__bprintf(&b, "\"}");
    r->status = status;
    mc__buf_to_resp(&b, r, "application/json");
}

/* POST .../caches/<name>/invalidate with {"all": true} or {"keys": [[...], ...]}: the JSON
 * edge. Every key is parsed, and checked against the function's key length, before anything
 * is invalidated; then the registry applies it here and hands it to its subscribers (the bus,
 * which sends it to every other host). */
static void mc__admin_invalidate(mc_host *h, const char *name, const char *body, size_t len,
                                 mc_http_response *r)
{
    /* Pinned for the whole request: the module owning it may be unloaded meanwhile. */
    mc_cached *fn = NULL;
    if (mc_registry_acquire(h->registry, name, &fn) != 0) {
        mc__resp_error(r, 404, "no cache named ", name);
        return;
    }
    const char *p = mc__ws(body, body + len), *end = body + len;
    bool all = false;
    mc__keylist kl = {0};
    mc_invalidation_key *keys = NULL;
    unsigned char *enc = NULL;
    if (p == end || *p != '{')
        goto bad;
    p = mc__ws(p + 1, end);
    if (end - p >= 5 && !strncmp(p, "\"all\"", 5)) {
        p = mc__ws(p + 5, end);
        if (p == end || *p != ':')
            goto bad;
        p = mc__ws(p + 1, end);
        if (end - p < 4 || strncmp(p, "true", 4) != 0)
            goto bad;
        p += 4;
        all = true;
    } else if (end - p >= 6 && !strncmp(p, "\"keys\"", 6)) {
        p = mc__ws(p + 6, end);
        if (p == end || *p != ':')
            goto bad;
        const char *arr = mc__ws(p + 1, end);
        size_t arr_end;
        int rc = mc__keylist_split(arr, (size_t)(end - arr), &kl, &arr_end);
        if (rc == MC_ENOMEM)
            goto nomem;
        if (rc != 0)
            goto bad;
        keys = calloc(kl.n ? kl.n : 1, sizeof *keys);
        enc = malloc((kl.n ? kl.n : 1) * (size_t)MC_KEY_MAX);
        if (!keys || !enc)
            goto nomem;
        for (size_t i = 0; i < kl.n; i++) {
            mc_error err = {0};
            unsigned char *k = enc + i * (size_t)MC_KEY_MAX;
            if (mc_key_from_json(kl.keys[i], strlen(kl.keys[i]), k, MC_KEY_MAX, &keys[i].len, &err) != 0) {
                char prefix[32];
                snprintf(prefix, sizeof prefix, "key %zu: ", i);
                mc__resp_error(r, 400, prefix, err.message);
                goto out;
            }
            keys[i].key = k;
        }
        p = arr + arr_end;
    } else {
        goto bad;
    }
    p = mc__ws(p, end);
    if (p == end || *p != '}' || mc__ws(p + 1, end) != end)
        goto bad;

    mc_invalidation inv = {.name = name, .all = all, .keys = keys, .nkeys = all ? 0 : kl.n};
    mc_invalidation_result res = {0};
    mc_error err = {0};
    int rc = 0;
    if (all || kl.n) /* an empty list asks for nothing */
        rc = mc_registry_apply(h->registry, fn, &inv, &res, &err);
    if (rc == MC_EINVAL) {
        mc__resp_error(r, 400, "", err.message[0] ? err.message : mc_strerror(rc));
    } else if (rc != 0) {
        mc__resp_error(r, 500, "", err.message[0] ? err.message : mc_strerror(rc));
    } else if (all) {
        mc__resp_text(r, 200, "{\"invalidated\": \"all\", \"removed\": %zu, \"published\": %s}", res.removed,
                      res.subscribers ? "true" : "false");
    } else {
        mc__resp_text(r, 200, "{\"invalidated\": %zu, \"removed\": %zu, \"published\": %s}", kl.n, res.removed,
                      res.subscribers ? "true" : "false");
    }
    goto out;
nomem:
    r->failed = true;
    goto out;
bad:
    mc__resp_text(r, 400, "{\"error\": \"expected {\\\"keys\\\": [[...], ...]} or {\\\"all\\\": true}\"}");
out:
    free(keys);
    free(enc);
    mc__keylist_free(&kl);
    mc_registry_release(fn);
}

/* GET, or HEAD (answered as GET; libmicrohttpd leaves the body out), RFC 9110 section 9.3.2. */
static bool mc__get_or_head(const char *method) { return !strcmp(method, "GET") || !strcmp(method, "HEAD"); }

static void mc__admin(struct mc__http *s, const mc_http_request *req, mc_http_response *r)
{
    if (!s->token) {
        mc__resp_text(r, 403, "{\"error\": \"the admin API is disabled (no admin token)\"}");
        return;
    }
    const char *auth = mc_http_header(req, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !mc__token_eq(auth + 7, s->token)) {
        mc__resp_text(r, 401, "{\"error\": \"missing or wrong bearer token\"}");
        mc_http_add_header(r, "WWW-Authenticate", "Bearer");
        return;
    }
    const char *rest = req->path + strlen(MC__ADMIN);
    if (!strcmp(rest, "/v1/caches")) {
        if (!mc__get_or_head(req->method)) {
            mc_http_method_not_allowed(r, "GET, HEAD");
            return;
        }
        mc__buf b = {0};
        mc__bprintf(&b, "[");
        mc_registry_list(s->host->registry, mc__list_one, &b);
        mc__bprintf(&b, "]");
        mc__buf_to_resp(&b, r, "application/json");
        return;
    }
    const char *pre = "/v1/caches/", *suf = "/invalidate";
    size_t pl = strlen(pre), sl = strlen(suf), rl = strlen(rest);
    if (rl > pl + sl && !strncmp(rest, pre, pl) && !strcmp(rest + rl - sl, suf)) {
        if (strcmp(req->method, "POST") != 0) {
            mc_http_method_not_allowed(r, "POST");
            return;
        }
        char name[256];
        size_t nl = rl - pl - sl;
        if (nl >= sizeof name) {
            mc__resp_text(r, 404, "{\"error\": \"no such cache\"}");
            return;
        }
        memcpy(name, rest + pl, nl);
        name[nl] = 0;
        mc_invalidation_source was = mc_cached_set_invalidation_source(MC_INVALIDATION_ADMIN);
        mc__admin_invalidate(s->host, name, req->body, req->body_len, r);
        mc_cached_set_invalidation_source(was);
        return;
    }
    mc__resp_text(r, 404, "{\"error\": \"no such admin endpoint\"}");
}

/* ------------------------------------------------------------------ dispatch */

struct mc__check_ctx {
    const mc_http_request *req;
    mc_http_response *resp;
};

static int mc__check_invoke(mc_callback_fn fn, void *ud, void *ctx, void **value, mc_callback_run *run)
{
    (void)value;
    (void)run;
    struct mc__check_ctx *cc = ctx;
    int rc = ((mc_check_request_fn)fn)(ud, cc->req, cc->resp);
    return rc == MC_CALLBACK_PENDING ? MC_EINVAL : rc; /* checks answer at once: never resumed */
}


static void mc__dispatch(struct mc__http *s, const mc_http_request *req, mc_http_response *r)
{
    mc_host *h = s->host;
    if (mc__under(req->path, MC__ADMIN, strlen(MC__ADMIN))) {
        mc__admin(s, req, r);
        return;
    }
    if (!strcmp(req->path, "/metrics")) {
        if (!mc__get_or_head(req->method)) {
            mc_http_method_not_allowed(r, "GET, HEAD");
            return;
        }
        mc__buf b = {0};
        mc__metrics(s, &b);
        mc__buf_to_resp(&b, r, "text/plain; version=0.0.4");
        return;
    }
    if (mc_host_callback_count(h, MC_CATEGORY_HTTP, MC_CALLBACK_CHECK_REQUEST) > 0) {
        struct mc__check_ctx cc = {req, r};
        int rc = mc_host_run_callbacks(h, MC_CATEGORY_HTTP, MC_CALLBACK_CHECK_REQUEST, mc__check_invoke, &cc, NULL);
        if (rc != 0) {
            if (rc < 400 || rc > 599) {
                mc__resp_reset(r);
                mc__resp_text(r, 500, "{\"error\": \"request check failed: %s\"}", mc_err_name(rc));
            } else if (!r->body) {
                mc__resp_text(r, (unsigned)rc, "{\"error\": \"refused\"}");
            } else {
                r->status = (unsigned)rc;
            }
            return;
        }
    }
    pthread_rwlock_rdlock(&h->routes_lock);
    const struct mc__route *best = NULL;
    for (size_t i = 0; i < h->nroutes; i++)
        if (mc__under(req->path, h->routes[i].path, h->routes[i].len) && (!best || h->routes[i].len > best->len))
            best = &h->routes[i];
    if (best)
        best->handler(best->ud, req, r); /* under the read lock: routes cannot go mid-request */
    pthread_rwlock_unlock(&h->routes_lock);
    if (!best)
        mc__resp_text(r, 404, "{\"error\": \"not found\"}");
}

/* One decoded query component, with '%', '&' and '=' percent-encoded again: in the rebuilt
 * "k=v&k2=v2" the separators are then the only bare '&' and '=' (a value "bob&admin=1" sent
 * as bob%26admin%3D1 must not read as two arguments). */
static void mc__query_part(mc__buf *b, const char *p)
{
    for (const char *q = p;; q++) {
        if (*q && *q != '%' && *q != '&' && *q != '=')
            continue;
        if (q > p)
            mc__bprintf(b, "%.*s", (int)(q - p), p);
        if (!*q)
            return;
        mc__bprintf(b, "%%%02X", (unsigned char)*q);
        p = q + 1;
    }
}

static enum MHD_Result mc__query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    mc__buf *b = cls;
    if (b->len)
        mc__bprintf(b, "&");
    mc__query_part(b, key ? key : "");
    if (value) {
        mc__bprintf(b, "=");
        mc__query_part(b, value);
    }
    return MHD_YES;
}

static uint64_t mc__min_nonzero(uint64_t a, uint64_t b) { return a && a < b ? a : b; }

static mc__conn *mc__conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* MHD's uri_log callback: the request line is parsed (the head is not whole yet). Its result is
 * the request's context; the head's deadline now runs from here at the latest. */
static void *mc__request_begin(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct mc__http *s = cls;
    mc__conn *c = mc__conn_of(conn);
    if (c) {
        uint64_t d = mc__ratelog_now() + s->header_ns;
        atomic_store_explicit(&c->deadline, mc__min_nonzero(atomic_load_explicit(&c->deadline, memory_order_relaxed), d),
                              memory_order_relaxed);
    }
    mc__req_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx && !(ctx->raw = strndup(uri, strcspn(uri, "?")))) {
        free(ctx);
        ctx = NULL;
    }
    return ctx; /* NULL: the access handler closes the connection (out of memory) */
}

static enum MHD_Result mc__bad_path(struct mc__http *s, struct MHD_Connection *conn)
{
    atomic_fetch_add_explicit(&s->bad_paths, 1, memory_order_relaxed);
    mc_http_response r = {0};
    mc__resp_text(&r, 400, "{\"error\": \"bad request path\"}");
    return mc__send(conn, &r);
}

/* A pool thread: the request's checks and handler, then the connection resumed for its event
 * thread to send the answer. The context belongs to the event thread again once resumed. */
static void mc__run_handler(void *arg)
{
    mc__req_ctx *ctx = arg;
    struct MHD_Connection *conn = ctx->conn;
    mc__req_impl im = {.conn = conn, .raw_path = ctx->raw};
    mc_http_request req = {.method = ctx->method, .path = ctx->path, .query = ctx->query ? ctx->query : "",
                           .body = ctx->body ? ctx->body : "", .body_len = ctx->len, .impl = &im};
    mc__dispatch(ctx->server, &req, ctx->resp);
    atomic_store_explicit(&ctx->done, true, memory_order_release);
    MHD_resume_connection(conn);
}

static enum MHD_Result mc__access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)url; /* MHD's decoded URL: the raw one is normalised here instead */
    struct mc__http *s = cls;
    mc__req_ctx *ctx = *con_cls;
    if (!ctx)
        return MHD_NO;
    if (!ctx->started) {
        mc__conn *c = mc__conn_of(conn);
        if (c && c->over)
            return MHD_NO; /* its 503 went out at the start: close, having read the head */
        ctx->started = true;
        atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
        /* The head is whole: now the body (its declared length, or at most max_body) must
         * arrive in time. */
        const char *dl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t declared = dl ? strtoull(dl, NULL, 10) : s->max_body;
        mc__deadline_in(c, mc__transfer_ns(s->header_ns, declared < s->max_body ? declared : s->max_body));
        int rc = mc__http_path_normalize(ctx->raw, strlen(ctx->raw), &ctx->path);
        if (rc == MC_ENOMEM)
            return MHD_NO;
        if (rc != 0)
            return mc__bad_path(s, conn);
        /* A declared body over the limit is refused before it is sent. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            mc_http_response r = {0};
            mc__resp_text(&r, 413, "{\"error\": \"body over %zu bytes\"}", s->max_body);
            return mc__send(conn, &r);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->too_large || ctx->len + n > s->max_body) {
            ctx->too_large = true;
            return MHD_YES;
        }
        if (ctx->len + n > ctx->cap) {
            size_t cap = ctx->cap ? ctx->cap * 2 : 4096;
            while (cap < ctx->len + n)
                cap *= 2;
            char *b = realloc(ctx->body, cap);
            if (!b)
                return MHD_NO;
            ctx->body = b;
            ctx->cap = cap;
        }
        memcpy(ctx->body + ctx->len, upload_data, n);
        ctx->len += n;
        return MHD_YES;
    }
    if (ctx->queued) {
        if (!atomic_load_explicit(&ctx->done, memory_order_acquire))
            return MHD_YES; /* not answered yet (a call while suspended is not expected) */
        mc_http_response *done = ctx->resp;
        ctx->resp = NULL;
        ctx->queued = false;
        atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
        enum MHD_Result ok = mc__send(conn, done);
        free(done);
        return ok;
    }
    /* The request is whole: no deadline while it is handled (a handler may block on a
     * database); its answer gets one in mc__send. */
    mc__conn *hc = mc__conn_of(conn);
    if (hc)
        atomic_store_explicit(&hc->deadline, 0, memory_order_relaxed);
    mc_http_response r = {0};
    if (ctx->too_large) {
        mc__resp_text(&r, 413, "{\"error\": \"body over %zu bytes\"}", s->max_body);
        return mc__send(conn, &r);
    }
    /* MHD hands over the decoded query arguments: rebuild "k=v&k2=v2" (mc__query_part). */
    mc__buf query = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, mc__query_arg, &query);
    if (query.failed) {
        free(query.s);
        return MHD_NO;
    }
    /* Module code (request checks, resources) runs on the pool, so that a handler that blocks
     * never holds up an event thread's other connections; the host's own endpoints answer
     * here. */
    if (s->pool && !mc__under(ctx->path, MC__ADMIN, strlen(MC__ADMIN)) && strcmp(ctx->path, "/metrics") != 0) {
        if ((ctx->resp = calloc(1, sizeof *ctx->resp))) {
            ctx->server = s;
            ctx->conn = conn;
            ctx->method = method;
            ctx->query = query.s;
            ctx->queued = true;
            /* Suspended before it is queued: the pool thread may resume it at once. */
            MHD_suspend_connection(conn);
            int qrc = mc__pool_submit(s->pool, mc__run_handler, ctx);
            if (qrc == 0)
                return MHD_YES;
            MHD_resume_connection(conn);
            ctx->queued = false;
            ctx->query = NULL;
            free(ctx->resp);
            ctx->resp = NULL;
            free(query.s);
            /* The server is stopping (a kept-alive connection's request after the pool stopped):
             * the client may retry elsewhere. */
            if (qrc == MC_EBUSY) {
                mc__resp_text(&r, 503, "{\"error\": \"the server is stopping\"}");
                mc_http_add_header(&r, "Connection", "close");
                return mc__send(conn, &r);
            }
        } else {
            free(query.s);
        }
        mc__resp_text(&r, 503, "{\"error\": \"out of memory\"}");
        return mc__send(conn, &r);
    }
    mc__req_impl im = {.conn = conn, .raw_path = ctx->raw};
    mc_http_request req = {.method = method, .path = ctx->path, .query = query.s ? query.s : "",
                           .body = ctx->body ? ctx->body : "", .body_len = ctx->len, .impl = &im};
    mc__dispatch(s, &req, &r);
    free(query.s);
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    return mc__send(conn, &r);
}

/* A request ended (answered, or its connection closed): the next head's deadline starts. */
static void mc__completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct mc__http *s = cls;
    mc__req_ctx *ctx = *con_cls;
    if (ctx) {
        if (ctx->started)
            atomic_fetch_sub_explicit(&s->active, 1, memory_order_relaxed);
        free(ctx->raw);
        free(ctx->path);
        free(ctx->body);
        free(ctx->query);
        if (ctx->resp) {
            mc__resp_free(ctx->resp);
            free(ctx->resp);
        }
        free(ctx);
        *con_cls = NULL;
    }
    mc__conn *c = mc__conn_of(conn);
    if (c)
        atomic_store_explicit(&c->deadline, mc__ratelog_now() + s->idle_ns + s->header_ns, memory_order_relaxed);
}

/* A repeating fault's log line, through the ratelog: the first in full, then counts. */
static void mc__log_repeating(struct mc__http *s, mc__ratelog *rl, const char *what, const char *first)
{
    uint64_t n = 0;
    switch (mc__ratelog_hit(rl, mc__ratelog_now(), MC__LOG_INTERVAL_NS, &n)) {
    case MC__RATELOG_START:
        mc__host_log(s->host, MC_LOG_WARN, NULL, "%s", first);
        break;
    case MC__RATELOG_COUNT:
        mc__host_log(s->host, MC_LOG_WARN, NULL, "%s: %llu more in the last %llu s", what,
                     (unsigned long long)n, (unsigned long long)(MC__LOG_INTERVAL_NS / 1000000000u));
        break;
    case MC__RATELOG_QUIET:
        break;
    }
}

static void mc__log_ended(struct mc__http *s, mc__ratelog *rl, uint64_t now, uint64_t quiet, const char *what)
{
    uint64_t total, dur;
    if (mc__ratelog_end(rl, now, quiet, &total, &dur))
        mc__host_log(s->host, MC_LOG_INFO, NULL, "%s ended: %llu in %.1f s", what, (unsigned long long)total,
                     (double)dur / 1e9);
}

static void mc__log_refusal(struct mc__http *s)
{
    atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
    char first[160];
    snprintf(first, sizeof first, "connection limit reached (%u): refusing new connections", s->max_conns);
    mc__log_repeating(s, &s->refusals, "connections refused at the limit", first);
}

/* Accept policy: up to max_connections, and a few more that will be answered 503 at their
 * start; past those, close at once. Either way the client learns at once, and the connections
 * held are not slowed. The count is read here and changed at connection start and close, so
 * threads accepting at the same moment may overshoot by at most one connection each. */
static enum MHD_Result mc__accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct mc__http *s = cls;
    if (atomic_load_explicit(&s->nconns, memory_order_relaxed) < (uint64_t)s->max_conns + s->refuse_slots)
        return MHD_YES;
    mc__log_refusal(s);
    return MHD_NO;
}

/* A connection past max_connections: a complete 503 answer written before libmicrohttpd has
 * read or written anything on the socket (so nothing interleaves with it), then the write side
 * shut. libmicrohttpd reads the client's request head (so that closing does not reset the
 * connection and lose the answer) and the access handler closes it; a client that sends
 * nothing is shut down by the sweeper within a second. */
static void mc__refuse_503(struct mc__http *s, mc__conn *c)
{
    static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: 33\r\n"
                                 "Retry-After: 1\r\n"
                                 "Connection: close\r\n\r\n"
                                 "{\"error\": \"too many connections\"}";
    c->over = true;
    if (c->fd >= 0) {
        (void)!send(c->fd, answer, sizeof answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(c->fd, SHUT_WR);
    }
    uint64_t linger = s->header_ns < 1000000000u ? s->header_ns : 1000000000u;
    atomic_init(&c->deadline, mc__ratelog_now() + linger);
    mc__log_refusal(s);
}

static void mc__notify_conn(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode code)
{
    struct mc__http *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        uint64_t held = atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed);
        mc__conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        if (!c)
            return; /* no deadline for this one: MHD's idle timeout still applies */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->header_ns = s->header_ns;
        atomic_init(&c->deadline, mc__ratelog_now() + s->header_ns);
        if (held >= s->max_conns)
            mc__refuse_503(s, c);
        pthread_mutex_lock(&s->conns_lock);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->conns_lock);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
        mc__conn *c = *socket_context;
        if (!c)
            return;
        /* Unlinked before MHD closes the socket, so that the sweeper never shuts down a
         * descriptor number the kernel may have given to another connection. */
        pthread_mutex_lock(&s->conns_lock);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&s->conns_lock);
        free(c);
        *socket_context = NULL;
    }
}

/* MHD's own error messages (one per failed connection at worst): rate-limited. */
static void mc__mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct mc__http *s = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    char first[300];
    snprintf(first, sizeof first, "libmicrohttpd: %s", msg);
    mc__log_repeating(s, &s->mhd_log, "libmicrohttpd messages", first);
}

/* Close the connections whose request head is late; end the repeating-fault logs that went
 * quiet. One thread for the whole server, waking a few times per header timeout. */
static void *mc__sweeper_main(void *arg)
{
    struct mc__http *s = arg;
    uint64_t period = s->header_ns / 10;
    if (period < 10000000u)
        period = 10000000u;
    if (period > 250000000u)
        period = 250000000u;
    pthread_mutex_lock(&s->sweep_lock);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + period;
        ts.tv_sec = (time_t)(at / 1000000000u);
        ts.tv_nsec = (long)(at % 1000000000u);
        pthread_cond_timedwait(&s->sweep_cv, &s->sweep_lock, &ts);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->sweep_lock);
        uint64_t now = mc__ratelog_now(), late = 0;
        pthread_mutex_lock(&s->conns_lock);
        for (mc__conn *c = s->conns; c; c = c->next) {
            uint64_t d = atomic_load_explicit(&c->deadline, memory_order_relaxed);
            if (d && now >= d && !c->dropped && c->fd >= 0) {
                /* MHD sees end-of-stream on its next read and closes the connection itself. */
                shutdown(c->fd, SHUT_RDWR);
                c->dropped = true;
                late += !c->over; /* a refused one that sent nothing is no late head */
            }
        }
        pthread_mutex_unlock(&s->conns_lock);
        if (late) {
            atomic_fetch_add_explicit(&s->header_timeouts, late, memory_order_relaxed);
            char first[160];
            snprintf(first, sizeof first,
                     "closing connections whose request head is not whole after %.1f s (or whose body or "
                     "answer crosses slower than %u bytes/s)",
                     (double)s->header_ns / 1e9, MC__MIN_TRANSFER_RATE);
            for (uint64_t i = 0; i < late; i++)
                mc__log_repeating(s, &s->late_heads, "connections closed for a late request head", first);
        }
        mc__log_ended(s, &s->refusals, now, MC__LOG_QUIET_NS, "connection refusals at the limit");
        mc__log_ended(s, &s->late_heads, now, MC__LOG_QUIET_NS, "closing connections for late request heads");
        mc__log_ended(s, &s->mhd_log, now, MC__LOG_QUIET_NS, "libmicrohttpd messages");
        pthread_mutex_lock(&s->sweep_lock);
    }
    pthread_mutex_unlock(&s->sweep_lock);
    return NULL;
}

/* Descriptors this process has open now (Linux: /proc/self/fd), or 0 when unknown. */
static unsigned mc__open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

/* The connection limit the open-files limit allows: each connection is one descriptor. */
static unsigned mc__fd_capped(mc_host *h, unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return want;
    uint64_t used = mc__open_fds() + MC__FD_RESERVE + 256; /* 256: the most 503 answers at once */
    uint64_t room = rl.rlim_cur > used ? rl.rlim_cur - used : 1;
    if (room >= want)
        return want;
    mc__host_log(h, MC_LOG_WARN, NULL,
                 "max_connections %u lowered to %llu: the open-files limit is %llu (raise it with ulimit -n, "
                 "or LimitNOFILE= in a systemd unit)",
                 want, (unsigned long long)room, (unsigned long long)rl.rlim_cur);
    return (unsigned)room;
}

void mc_http_options_init(mc_http_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8008";
}

static void mc__http_free(struct mc__http *s)
{
    mc__ratelog_destroy(&s->refusals);
    mc__ratelog_destroy(&s->mhd_log);
    mc__ratelog_destroy(&s->late_heads);
    pthread_mutex_destroy(&s->conns_lock);
    pthread_mutex_destroy(&s->sweep_lock);
    pthread_cond_destroy(&s->sweep_cv);
    free(s->token);
    free(s);
}

static void mc__sweeper_stop(struct mc__http *s)
{
    if (!s->has_sweeper)
        return;
    pthread_mutex_lock(&s->sweep_lock);
    s->stopping = true;
    pthread_cond_signal(&s->sweep_cv);
    pthread_mutex_unlock(&s->sweep_lock);
    pthread_join(s->sweeper, NULL);
    s->has_sweeper = false;
}

int mc_host_http_start_v2(mc_host *h, const mc_http_options *opts, mc_error *err)
{
    mc_http_options defaults;
    mc_http_options_init(&defaults);
    const mc_http_options *o = opts ? opts : &defaults;
    if (!h || !o->listen)
        return mc__error_set(err, MC_EINVAL, "invalid argument: NULL host or listen address");
    if (h->http)
        return mc__error_set(err, MC_EBUSY, "the HTTP server is already running");
    char addr[64];
    unsigned port;
    const char *why = NULL;
    if (mc__hostport_split(o->listen, 0, true, addr, sizeof addr, &port, &why) != 0)
        return mc__error_set(err, MC_EINVAL, "%s: %s", o->listen, why);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return mc__error_set(err, MC_EINVAL, "%s: expected an IPv4 address and a port", o->listen);
    struct mc__http *s = calloc(1, sizeof *s);
    if (!s)
        return mc__error_set(err, MC_ENOMEM, "out of memory");
    s->host = h;
    s->quiesced_fd = -1;
    s->max_body = o->max_body ? o->max_body : MC__DEFAULT_MAX_BODY;
    s->header_ns = o->request_header_timeout_ns ? o->request_header_timeout_ns : MC__DEFAULT_HEADER_TIMEOUT_NS;
    s->idle_ns = o->idle_timeout_ns ? o->idle_timeout_ns : MC__DEFAULT_IDLE_TIMEOUT_NS;
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_mutex_init(&s->sweep_lock, NULL);
    mc__cond_init_monotonic(&s->sweep_cv);
    mc__ratelog_init(&s->refusals);
    mc__ratelog_init(&s->mhd_log);
    mc__ratelog_init(&s->late_heads);
    if (o->admin_token && !(s->token = strdup(o->admin_token))) {
        mc__http_free(s);
        return mc__error_set(err, MC_ENOMEM, "out of memory");
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = o->threads ? o->threads : cpus > 0 ? (unsigned)cpus : 1;
    unsigned handlers = o->handler_threads ? o->handler_threads : threads * 4 > 8 ? threads * 4 : 8;
    if (handlers == MC_HTTP_INLINE_HANDLERS)
        handlers = 0;
    int prc = handlers ? mc__pool_create(handlers, &s->pool) : 0;
    if (prc != 0) {
        mc__http_free(s);
        return mc__error_set(err, prc, "cannot start the HTTP server's %u handler threads", handlers);
    }
    s->max_conns = mc__fd_capped(h, o->max_connections ? o->max_connections : MC__DEFAULT_MAX_CONNECTIONS);
    s->refuse_slots = s->max_conns / 16 + 8 < 256 ? s->max_conns / 16 + 8 : 256;
    /* MHD's own limit is split evenly between its threads, and a thread at its share stops
     * accepting (the silence this server must not fall into): make every share the whole
     * limit with the refusal reserve and room for the connections mc__accept closes at once,
     * and refuse past max_connections in mc__accept instead (with one thread, a share of
     * max_connections alone left no room to answer 503). */
    unsigned share = s->max_conns + s->refuse_slots + 256;
    unsigned mhd_limit = share > 0x7fffffffu / threads ? 0x7fffffffu : share * threads;
    unsigned idle_s = (unsigned)((s->idle_ns + 999999999u) / 1000000000u);
    s->live = true;
    /* The kernel caps the listen queue at net.core.somaxconn. A queue as short as a small
     * connection limit would make a burst of connections wait there for SYN retries: silence,
     * not the refusal the accept policy gives. */
    unsigned backlog = 65535;
    struct MHD_OptionItem extra[] = {
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, mc__accept, s,
        mc__access, s,
        MHD_OPTION_EXTERNAL_LOGGER, mc__mhd_log, s, /* first: it applies to the options after it */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, mc__completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, mc__notify_conn, s, MHD_OPTION_URI_LOG_CALLBACK, mc__request_begin, s,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        o->max_connections_per_address, MHD_OPTION_LISTEN_BACKLOG_SIZE, backlog, MHD_OPTION_ARRAY, extra,
        MHD_OPTION_END);
    if (!s->daemon) {
        int e = errno;
        mc__pool_destroy(s->pool);
        mc__http_free(s);
        return mc__error_set(err, MC_EIO, "%s: cannot listen: %s", o->listen, strerror(e));
    }
    if (pthread_create(&s->sweeper, NULL, mc__sweeper_main, s) != 0) {
        MHD_stop_daemon(s->daemon);
        mc__pool_destroy(s->pool);
        mc__http_free(s);
        return mc__error_set(err, MC_ENOMEM, "cannot start the HTTP server's sweeper thread");
    }
    s->has_sweeper = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : port;
    h->http = s;
    mc__host_log(h, MC_LOG_INFO, NULL, "serving HTTP on %s:%u (%u threads, %u handler threads, up to %u connections)",
                 addr, s->port, threads, handlers, s->max_conns);
    return 0;
}

int mc_host_http_start(mc_host *h, const char *listen, size_t max_body, const char *admin_token,
                       mc_error *err)
{
    mc_http_options o;
    mc_http_options_init(&o);
    o.listen = listen;
    o.max_body = max_body;
    o.admin_token = admin_token;
    if (!listen)
        return MC_EINVAL;
    return mc_host_http_start_v2(h, &o, err);
}

void mc_host_http_stats(const mc_host *h, mc_http_stats *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof *st);
    if (h && h->http)
        mc__http_stats_of(h->http, st);
}

static void mc__http_stats_of(const struct mc__http *s, mc_http_stats *st)
{
    st->connections = atomic_load_explicit(&s->nconns, memory_order_relaxed);
    st->max_connections = s->max_conns;
    st->refused = atomic_load_explicit(&s->refused, memory_order_relaxed);
    st->header_timeouts = atomic_load_explicit(&s->header_timeouts, memory_order_relaxed);
    st->requests = atomic_load_explicit(&s->requests, memory_order_relaxed);
    st->bad_paths = atomic_load_explicit(&s->bad_paths, memory_order_relaxed);
}

unsigned mc_host_http_port(const mc_host *h) { return h && h->http ? h->http->port : 0; }

void mc_host_http_stop(mc_host *h)
{
    if (!h || !h->http)
        return;
    struct mc__http *s = h->http;
    /* Stop accepting first, let the requests in progress finish (up to 10 s), then stop: MHD
     * closes the idle and half-sent connections, which have nothing to finish. */
    MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
    s->quiesced_fd = lfd == MHD_INVALID_SOCKET ? -1 : lfd;
    for (int i = 0; i < 1000 && atomic_load_explicit(&s->active, memory_order_relaxed) > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    /* Handlers still running (past the 10 s) are waited for: their connections are suspended,
     * and libmicrohttpd must see them resumed before it stops. Requests that kept-alive
     * connections send from now on are answered 503 (the pool refuses them); the pool is freed
     * once no event thread can reach it. */
    mc__pool_stop(s->pool);
    MHD_stop_daemon(s->daemon);
    mc__pool_destroy(s->pool);
    if (s->quiesced_fd >= 0)
        close(s->quiesced_fd);
    mc__sweeper_stop(s);
    h->http = NULL;
    mc__http_free(s);
}

int mc__http_inject(mc_host *h, const char *admin_token, size_t max_body, const char *method,
                    const char *path, const char *query, const char *headers, const char *body,
                    size_t body_len, char **out, size_t *out_len)
{
    struct mc__http s = {.host = h, .max_body = max_body ? max_body : MC__DEFAULT_MAX_BODY,
                         .token = (char *)admin_token};
    mc_http_response r = {0};
    mc__req_impl im = {.headers = headers ? headers : "", .raw_path = path};
    char *norm = NULL;
    int nrc = path ? mc__http_path_normalize(path, strlen(path), &norm) : MC_EINVAL;
    if (nrc == MC_ENOMEM) {
        r.failed = true;
    } else if (nrc != 0) {
        mc__resp_text(&r, 400, "{\"error\": \"bad request path\"}");
    } else if (body_len > s.max_body) {
        mc__resp_text(&r, 413, "{\"error\": \"body over %zu bytes\"}", s.max_body);
    } else {
        mc_http_request req = {.method = method, .path = norm, .query = query ? query : "",
                               .body = body ? body : "", .body_len = body_len, .impl = &im};
        mc__dispatch(&s, &req, &r);
    }
    free(norm);
    while (im.found) {
        struct mc__found *next = im.found->next;
        free(im.found);
        im.found = next;
    }
    if (r.failed) {
        mc__resp_reset(&r);
        mc__resp_text(&r, 500, "{\"error\": \"out of memory\"}");
    }
    unsigned status = r.status ? r.status : 200;
    if (out) {
        if ((*out = malloc(r.len + 1))) {
            if (r.len)
                memcpy(*out, r.body, r.len);
            (*out)[r.len] = 0;
        }
        if (out_len)
            *out_len = *out ? r.len : 0;
    }
    mc__resp_free(&r);
    return (int)status;
}
