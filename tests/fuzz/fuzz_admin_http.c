/* libFuzzer target for the host's request handling without sockets (mc__http_inject): the input
 * is a request, answered once with an admin token and once without, checking what must hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host/host_internal.h"
#include "modcache.h"

#define TOKEN "fuzz-admin-token"
#define MAX_BODY 2048
#define ADMIN "/_modcache/admin"
#define FUZZ_ROUTE "/_modcache/client/fuzz"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_admin_http: check failed at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static mc_host *host;
static mc_registry *registry;
static mc_cached *users, *rooms, *events;

static void quiet(void *ud, mc_log_level level, const char *module, const char *message)
{
    (void)ud;
    (void)level;
    (void)module;
    (void)message;
}

static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "loaded", 6);
}

static void fatal(const char *what, int rc, const mc_error *err)
{
    fprintf(stderr, "fuzz_admin_http: %s: %s %s\n", what, mc_err_name(rc), err ? err->message : "");
    abort();
}

static mc_cached *make_fn(const char *name, bool tree, size_t num_args, const size_t *uncached,
                          size_t nuncached)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = 1000;
    o.tree = tree;
    o.num_args = num_args;
    o.uncached_args = uncached;
    o.n_uncached_args = nuncached;
    o.registry = registry;
    mc_cached *fn;
    int rc = mc_cached_create(&o, loader, NULL, &fn);
    if (rc != 0)
        fatal(name, rc, NULL);
    return fn;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One host for the whole run, as a server has: three registered functions and the fuzz
 * module's resource and request check. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    int rc = mc_registry_create(NULL, &registry);
    if (rc != 0)
        fatal("registry", rc, NULL);
    users = make_fn("fuzz.users", false, 0, NULL, 0);
    rooms = make_fn("fuzz.rooms", true, 2, NULL, 0);
    static const size_t skip[] = {1};
    events = make_fn("fuzz.events", false, 2, skip, 1);
    mc_host_options ho;
    mc_host_options_init(&ho);
    ho.log = quiet;
    ho.registry = registry;
    if ((rc = mc_host_create(&ho, &host)) != 0)
        fatal("host", rc, NULL);
    mc_error err = {0};
    if ((rc = mc_host_load_module(host, FUZZ_MODULE, NULL, NULL, &err)) != 0)
        fatal("module " FUZZ_MODULE, rc, &err);
    return 0;
}

/* The request split from the input: "METHOD TARGET\n", header lines up to an empty line, then
 * the body. TARGET is the path, optionally "?query". Strings stop at a NUL byte. */
typedef struct {
    char *method, *path, *query, *headers;
    char *body;
    size_t body_len;
    char *store;
    char *raw;  /* the path as sent; `path` is its normalised form (what the server routes) */
    bool bad_path; /* it does not normalise: the server answers 400 */
} request;

/* Entries for the admin API to list and invalidate, put back before every request: three key
 * tuples in each function (rooms' keys have a second, integer field). */
#define NPREFILL 3
static const char *const prefill_names[NPREFILL] = {"@alice:example.com", "@bob:example.com", ""};

static size_t prefill_key(mc_cached *fn, size_t i, mc_arg *a)
{
    a[0] = mc_arg_str(prefill_names[i]);
    a[1] = mc_arg_int((int64_t)i - 1);
    return fn == rooms ? 2 : 1;
}

static bool still_cached(mc_cached *fn, size_t i, char *json, size_t cap);

/* Store the prefilled keys that are missing (an earlier input invalidated them). Keys still
 * cached are left alone, so that an input replaces (and retires) nothing it did not touch. */
static void prefill(void)
{
    mc_cached *fns[] = {users, rooms, events};
    for (size_t f = 0; f < 3; f++)
        for (size_t i = 0; i < NPREFILL; i++) {
            char json[256];
            if (still_cached(fns[f], i, json, sizeof json))
                continue;
            mc_arg a[2];
            size_t n = prefill_key(fns[f], i, a);
            CHECK(mc_cached_prefill(fns[f], a, n, "v", 1) == 0);
        }
}


/* Whether the i-th prefilled key of fn is still cached; its compact JSON form into json. */
static bool still_cached(mc_cached *fn, size_t i, char *json, size_t cap)
{
    mc_arg a[2];
    size_t n = prefill_key(fn, i, a);
    unsigned char key[MC_KEY_MAX];
    size_t klen, jlen;
    CHECK(mc_key_encode(a, n, key, sizeof key, &klen) == 0);
    CHECK(mc_key_to_json(key, klen, json, cap, &jlen) == 0);
    return mc_cache_contains(mc_cached_cache(fn), key, klen);
}

/* Entries leave only through a successful invalidation: after a 200 from the invalidate
 * endpoint of `target`, a key whose compact form the body names is gone; every other entry
 * (all of them after any other answer) is still there, since keys are all checked before any
 * is invalidated. */
static void check_entries(const request *rq, mc_cached *target, bool invalidated, bool all)
{
    mc_cached *fns[] = {users, rooms, events};
    for (size_t f = 0; f < 3; f++)
        for (size_t i = 0; i < NPREFILL; i++) {
            char json[128];
            bool present = still_cached(fns[f], i, json, sizeof json);
            if (!invalidated || fns[f] != target) {
                CHECK(present);
            } else if (all) {
                CHECK(!present);
            } else if (memmem(rq->body, rq->body_len, json, strlen(json)) != NULL) {
                CHECK(!present);
            }
        }
}

/* Case-insensitive substring search, for "could this header block carry X". */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n))
            return true;
    return false;
}

static bool under(const char *path, const char *base)
{
    size_t n = strlen(base);
    return strncmp(path, base, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static bool split(const uint8_t *data, size_t size, request *rq)
{
    /* One copy holds the NUL-terminated strings; the body gets an exact-size copy so that
     * reading past body_len is caught. */
    char *s = malloc(size + 4);
    if (!s)
        return false;
    memcpy(s, data, size);
    s[size] = 0;
    rq->store = s;
    char *end = s + size;
    char *eol = memchr(s, '\n', size);
    char *line_end = eol ? eol : end;
    *line_end = 0;
    rq->method = s;
    char *sp = strchr(s, ' ');
    if (sp) {
        *sp = 0;
        rq->path = sp + 1;
    } else {
        rq->path = line_end; /* "" */
    }
    char *q = strchr(rq->path, '?');
    if (q) {
        *q = 0;
        rq->query = q + 1;
    } else {
        rq->query = line_end;
    }
    char *p = eol ? eol + 1 : end;
    rq->headers = p;
    /* Headers end at an empty line; the body is everything after it. */
    char *body = end;
    while (p < end) {
        if (*p == '\n') {
            *p = 0;
            body = p + 1;
            break;
        }
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        p = nl + 1;
    }
    rq->body_len = (size_t)(end - body);
    rq->body = malloc(rq->body_len ? rq->body_len : 1);
    if (!rq->body) {
        free(s);
        return false;
    }
    if (rq->body_len)
        memcpy(rq->body, data + (body - s), rq->body_len);
    return true;
}

/* The first Authorization header, as the server finds it, carries exactly the bearer token. */
static bool authorized(const char *headers)
{
    for (const char *l = headers; *l;) {
        const char *eol = strchr(l, '\n');
        size_t ll = eol ? (size_t)(eol - l) : strlen(l);
        if (ll > 13 && !strncasecmp(l, "Authorization", 13) && l[13] == ':') {
            const char *v = l + 14;
            while (v < l + ll && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(l + ll - v);
            return vl == 7 + strlen(TOKEN) && !strncasecmp(v, "Bearer ", 7) &&
                   !strncmp(v + 7, TOKEN, strlen(TOKEN));
        }
        l += ll + (eol != NULL);
    }
    return false;
}

static int answer(const request *rq, const char *token, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    int status = mc__http_inject(host, token, MAX_BODY, rq->method, rq->raw, rq->query, rq->headers,
                                 rq->body, rq->body_len, out, out_len);
    CHECK(status >= 100 && status <= 599);
    CHECK(*out != NULL && (*out)[*out_len] == 0);
    if (rq->bad_path)
        CHECK(status == 400); /* before anything else looks at the request */
    else if (rq->body_len > MAX_BODY)
        CHECK(status == 413);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request rq;
    if (!split(data, size, &rq))
        return 0;
    prefill();
    /* The oracle reasons about the path the server routes: the normalised one. */
    rq.raw = rq.path;
    char *norm = NULL;
    int nrc = mc__http_path_normalize(rq.raw, strlen(rq.raw), &norm);
    CHECK(nrc == 0 || nrc == MC_EINVAL);
    rq.bad_path = nrc != 0;
    rq.path = norm ? norm : (char *)"";
    if (norm) { /* normalising again changes nothing unless it decoded an escape */
        char *again = NULL;
        if (!strchr(rq.raw, '%') && mc__http_path_normalize(norm, strlen(norm), &again) == 0)
            CHECK(!strcmp(again, norm));
        free(again);
        CHECK(norm[0] == '/' && !strstr(norm, "//") && !strstr(norm, "/./") && !strstr(norm, "/../"));
    }
    bool admin = !rq.bad_path && under(rq.path, ADMIN);
    bool too_big = rq.body_len > MAX_BODY || rq.bad_path;
    bool is_get = !strcmp(rq.method, "GET");

    char *out = NULL;
    size_t out_len = 0;
    int status = answer(&rq, TOKEN, &out, &out_len);
    if (admin && !too_big) {
        if (!contains_ci(rq.headers, TOKEN))
            CHECK(status == 401);
        if (status == 200)
            CHECK(authorized(rq.headers));
        if (authorized(rq.headers)) {
            CHECK(status != 401 && status != 403);
            if (is_get && !strcmp(rq.path, ADMIN "/v1/caches")) {
                CHECK(status == 200 && out[0] == '[' && out[out_len - 1] == ']');
                CHECK(strstr(out, "\"name\": \"fuzz.users\"") && strstr(out, "\"name\": \"fuzz.rooms\""));
            }
        }
    }
    /* Which function an invalidate request named, if it exists. */
    mc_cached *target = NULL;
    const char *pre = ADMIN "/v1/caches/", *suf = "/invalidate";
    size_t pl = strlen(pre), sl = strlen(suf), plen = strlen(rq.path);
    if (plen > pl + sl && !strncmp(rq.path, pre, pl) && !strcmp(rq.path + plen - sl, suf) &&
        plen - pl - sl < 256) {
        char name[256];
        memcpy(name, rq.path + pl, plen - pl - sl);
        name[plen - pl - sl] = 0;
        target = mc_registry_find(registry, name);
    }
    bool invalidated = admin && status == 200 && !strncmp(out, "{\"invalidated\": ", 16);
    if (invalidated)
        CHECK(target != NULL && !strcmp(rq.method, "POST"));
    check_entries(&rq, target, invalidated, invalidated && !strncmp(out, "{\"invalidated\": \"all\"", 22));
    if (!admin && !too_big) {
        if (!strcmp(rq.path, "/metrics") && is_get) {
            CHECK(status == 200);
            CHECK(strstr(out, "modcache_cache_hits_total{cache=\"fuzz.users\"}") != NULL);
        } else if (!strcmp(rq.path, "/metrics")) {
            CHECK(status == 405);
        } else if (!contains_ci(rq.headers, "X-Refuse")) {
            /* Nothing refuses it: the fuzz module's resource or nothing answers. */
            if (!under(rq.path, FUZZ_ROUTE))
                CHECK(status == 404);
            else if (!is_get && strcmp(rq.method, "PUT") != 0)
                CHECK(status == 405);
            else if (!strstr(rq.query, "status="))
                CHECK(status == 200 && !strncmp(out, rq.method, strlen(rq.method)));
        }
    }
    free(out);

    /* The same request to a host without an admin token. */
    int status2 = answer(&rq, NULL, &out, &out_len);
    if (admin && !too_big)
        CHECK(status2 == 403);
    else
        CHECK(status2 == status); /* the rest does not depend on the token */
    free(out);

    free(norm);
    free(rq.body);
    free(rq.store);
    return 0;
}
