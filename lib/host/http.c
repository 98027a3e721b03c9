/* The host's HTTP server (libmicrohttpd, a thread per connection): modules' web resources by
 * longest path prefix, the admin API (bearer token) and Prometheus /metrics. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "host/host_internal.h"
#include "key/keylist.h"

#define MC__DEFAULT_MAX_BODY ((size_t)1 << 20)
#define MC__ADMIN "/_modcache/admin"

static const char *const mc__reserved[] = {"/_matrix/client", "/_matrix/federation", "/_matrix/key",
                                           "/_matrix/media", MC__ADMIN, "/metrics", NULL};

struct mc__http {
    struct MHD_Daemon *daemon;
    unsigned port;
    size_t max_body;
    char *token;
    mc_host *host;
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
} mc__req_impl;

/* Per-request state across MHD's calls: the body being received. */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
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
                "\"invalidations\": %llu, \"timeouts\": %llu, \"evictions\": {",
                (unsigned long long)st->cache.entries, (unsigned long long)st->cache.max_entries,
                (unsigned long long)st->cache.weight, (unsigned long long)st->cache.memory,
                (unsigned long long)st->cache.hits, (unsigned long long)st->cache.misses,
                (unsigned long long)st->loads, (unsigned long long)st->load_errors,
                (unsigned long long)st->invalidations, (unsigned long long)st->timeouts);
    for (int r = 0; r < MC_EVICT_NREASONS; r++)
        mc__bprintf(b, "%s\"%s\": %llu", r ? ", " : "", mc_evict_reason_name((mc_evict_reason)r),
                    (unsigned long long)st->cache.evictions[r]);
    mc__bprintf(b, "}}");
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

static void mc__metrics_one(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    mc__buf *b = ud;
    char n[512];
    mc__label(n, sizeof n, mc_cached_name(fn));
    mc__bprintf(b, "modcache_cache_hits_total{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.hits);
    mc__bprintf(b, "modcache_cache_misses_total{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.misses);
    for (int r = 0; r < MC_EVICT_NREASONS; r++)
        mc__bprintf(b, "modcache_cache_evictions_total{cache=\"%s\",reason=\"%s\"} %llu\n", n,
                    mc_evict_reason_name((mc_evict_reason)r), (unsigned long long)st->cache.evictions[r]);
    mc__bprintf(b, "modcache_cache_size{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.entries);
    mc__bprintf(b, "modcache_cache_bytes{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.weight);
    mc__bprintf(b, "modcache_cache_max_size{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.max_entries);
    mc__bprintf(b, "modcache_cache_memory_bytes{cache=\"%s\"} %llu\n", n, (unsigned long long)st->cache.memory);
    mc__bprintf(b, "modcache_cache_loads_total{cache=\"%s\"} %llu\n", n, (unsigned long long)st->loads);
    mc__bprintf(b, "modcache_cache_load_errors_total{cache=\"%s\"} %llu\n", n, (unsigned long long)st->load_errors);
    mc__bprintf(b, "modcache_cache_load_timeouts_total{cache=\"%s\"} %llu\n", n, (unsigned long long)st->timeouts);
}

/* The invalidation bus's counters, Prometheus style. */
static void mc__bus_metrics(mc__buf *b, mc_bus *bus)
{
    mc_bus_stats st;
    mc_bus_stats_get(bus, &st);
    const struct {
        const char *name;
        uint64_t v;
    } rows[] = {
        {"modcache_bus_sent_total", st.sent},
        {"modcache_bus_received_total", st.received},
        {"modcache_bus_own_total", st.own},
        {"modcache_bus_applied_total", st.applied},
        {"modcache_bus_ignored_total", st.ignored},
        {"modcache_bus_catchups_total", st.catchups},
        {"modcache_bus_full_flushes_total", st.full_flushes},
        {"modcache_bus_collapsed_total", st.collapsed},
        {"modcache_bus_reconnects_total", st.reconnects},
        {"modcache_bus_failed_total", st.failed},
        {"modcache_bus_queued", st.queued},
        {"modcache_bus_link_up", st.link_up},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        mc__bprintf(b, "%s %llu\n", rows[i].name, (unsigned long long)rows[i].v);
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

/* POST .../caches/<name>/invalidate with {"all": true} or {"keys": [[...], ...]}: every key is
 * checked before anything is invalidated; then this host, then (with a bus) every other host. */
static void mc__admin_invalidate(mc_host *h, const char *name, const char *body, size_t len,
                                 mc_http_response *r)
{
    mc_cached *fn = mc_registry_find(h->registry, name);
    if (!fn) {
        mc__resp_error(r, 404, "no cache named ", name);
        return;
    }
    const char *p = mc__ws(body, body + len), *end = body + len;
    if (p == end || *p != '{')
        goto bad;
    p = mc__ws(p + 1, end);
    bool all = false;
    mc__keylist kl = {0};
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
        if (rc == MC_ENOMEM) {
            r->failed = true;
            return;
        }
        if (rc != 0)
            goto bad;
        unsigned char key[4096];
        size_t klen;
        for (size_t i = 0; i < kl.n; i++) {
            mc_error err = {0};
            if (mc_key_from_json(kl.keys[i], strlen(kl.keys[i]), key, sizeof key, &klen, &err) != 0) {
                char prefix[32];
                snprintf(prefix, sizeof prefix, "key %zu: ", i);
                mc__resp_error(r, 400, prefix, err.message);
                mc__keylist_free(&kl);
                return;
            }
        }
        p = arr + arr_end;
    } else {
        goto bad;
    }
    p = mc__ws(p, end);
    if (p == end || *p != '}' || mc__ws(p + 1, end) != end) {
        mc__keylist_free(&kl);
        goto bad;
    }

    int brc = 0;
    if (all) {
        mc_cached_invalidate_all(fn);
        if (h->bus)
            brc = mc_bus_publish_all(h->bus, name);
    } else if (kl.n) { /* (with no keys, a NULL list would mean "all" to the registry) */
        mc_error err = {0};
        brc = mc_registry_invalidate(h->registry, name, kl.keys, kl.n, &err);
        if (brc == 0 && h->bus)
            brc = mc_bus_publish_keys(h->bus, name, kl.keys, kl.n, &err);
    }
    size_t n = kl.n;
    mc__keylist_free(&kl);
    if (brc != 0) {
        mc__resp_text(r, 500, "{\"error\": \"%s\"}", mc_strerror(brc));
        return;
    }
    if (all)
        mc__resp_text(r, 200, "{\"invalidated\": \"all\", \"published\": %s}", h->bus ? "true" : "false");
    else
        mc__resp_text(r, 200, "{\"invalidated\": %zu, \"published\": %s}", n, h->bus ? "true" : "false");
    return;
bad:
    mc__resp_text(r, 400, "{\"error\": \"expected {\\\"keys\\\": [[...], ...]} or {\\\"all\\\": true}\"}");
}

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
        if (strcmp(req->method, "GET") != 0) {
            mc_http_method_not_allowed(r, "GET");
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
        mc__admin_invalidate(s->host, name, req->body, req->body_len, r);
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
        if (strcmp(req->method, "GET") != 0) {
            mc_http_method_not_allowed(r, "GET");
            return;
        }
        mc__buf b = {0};
        mc_registry_list(h->registry, mc__metrics_one, &b);
        mc__bprintf(&b, "modcache_jemalloc_allocated_bytes %zu\n", mc__allocated_bytes());
        if (h->bus)
            mc__bus_metrics(&b, h->bus);
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

static enum MHD_Result mc__query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    mc__buf *b = cls;
    mc__bprintf(b, "%s%s%s%s", b->len ? "&" : "", key, value ? "=" : "", value ? value : "");
    return MHD_YES;
}

static enum MHD_Result mc__access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct mc__http *s = cls;
    mc__req_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
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
    mc_http_response r = {0};
    if (ctx->too_large) {
        mc__resp_text(&r, 413, "{\"error\": \"body over %zu bytes\"}", s->max_body);
        return mc__send(conn, &r);
    }
    /* MHD hands over the path and the decoded query arguments: rebuild "k=v&k2=v2". */
    mc__buf query = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, mc__query_arg, &query);
    mc__req_impl im = {.conn = conn};
    mc_http_request req = {.method = method, .path = url, .query = query.s ? query.s : "", .body = ctx->body ? ctx->body : "",
                           .body_len = ctx->len, .impl = &im};
    mc__dispatch(s, &req, &r);
    free(query.s);
    return mc__send(conn, &r);
}

static void mc__completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    mc__req_ctx *ctx = *con_cls;
    if (ctx) {
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

int mc_host_http_start(mc_host *h, const char *listen, size_t max_body, const char *admin_token,
                       mc_error *err)
{
    if (!h || !listen)
        return MC_EINVAL;
    if (h->http)
        return MC_EBUSY;
    const char *colon = strrchr(listen, ':');
    char addr[64];
    if (!colon || (size_t)(colon - listen) >= sizeof addr)
        return mc__error_set(err, MC_EINVAL, "%s: expected host:port", listen);
    memcpy(addr, listen, (size_t)(colon - listen));
    addr[colon - listen] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*end || port > 65535 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return mc__error_set(err, MC_EINVAL, "%s: expected an IPv4 address and a port", listen);
    struct mc__http *s = calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    s->host = h;
    s->max_body = max_body ? max_body : MC__DEFAULT_MAX_BODY;
    if (admin_token && !(s->token = strdup(admin_token))) {
        free(s);
        return MC_ENOMEM;
    }
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                     MHD_USE_ERROR_LOG,
                                 0, NULL, NULL, mc__access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_NOTIFY_COMPLETED, mc__completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned int)30, MHD_OPTION_END);
    if (!s->daemon) {
        free(s->token);
        free(s);
        return mc__error_set(err, MC_EIO, "%s: cannot listen", listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : (unsigned)port;
    h->http = s;
    mc__host_log(h, MC_LOG_INFO, NULL, "serving HTTP on %s:%u", addr, s->port);
    return 0;
}

unsigned mc_host_http_port(const mc_host *h) { return h && h->http ? h->http->port : 0; }

void mc_host_http_stop(mc_host *h)
{
    if (!h || !h->http)
        return;
    struct mc__http *s = h->http;
    /* Stop accepting first; MHD_stop_daemon then joins every connection thread, so requests
     * in progress complete before the server goes. */
    MHD_quiesce_daemon(s->daemon);
    for (int i = 0; i < 1000; i++) { /* up to 10 s for requests in progress */
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    MHD_stop_daemon(s->daemon);
    free(s->token);
    free(s);
    h->http = NULL;
}

int mc__http_inject(mc_host *h, const char *admin_token, size_t max_body, const char *method,
                    const char *path, const char *query, const char *headers, const char *body,
                    size_t body_len, char **out, size_t *out_len)
{
    struct mc__http s = {.host = h, .max_body = max_body ? max_body : MC__DEFAULT_MAX_BODY,
                         .token = (char *)admin_token};
    mc_http_response r = {0};
    mc__req_impl im = {.headers = headers ? headers : ""};
    if (body_len > s.max_body) {
        mc__resp_text(&r, 413, "{\"error\": \"body over %zu bytes\"}", s.max_body);
    } else {
        mc_http_request req = {.method = method, .path = path, .query = query ? query : "",
                               .body = body ? body : "", .body_len = body_len, .impl = &im};
        mc__dispatch(&s, &req, &r);
    }
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
