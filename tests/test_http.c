/* Tests of the host's HTTP server over loopback with a real client (libcurl): module resources and path rules, 404/405/413,
 * the admin API (token, listing, invalidation and its errors) and /metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <setjmp.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "modcache.h"

static char logbuf[16384];
static mc_host *host;
static mc_config *doc;

static pthread_mutex_t loglock = PTHREAD_MUTEX_INITIALIZER;

/* Modules log from server threads too (the request checks). */
static void capture(void *ud, mc_log_level level, const char *module, const char *message)
{
    (void)ud;
    (void)level;
    pthread_mutex_lock(&loglock);
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof logbuf - used, "[%s] %s\n", module ? module : "host", message);
    pthread_mutex_unlock(&loglock);
}

static bool logged(const char *needle)
{
    pthread_mutex_lock(&loglock);
    bool found = strstr(logbuf, needle) != NULL;
    pthread_mutex_unlock(&loglock);
    return found;
}

typedef struct {
    int status;
    char text[65536]; /* the whole response, headers and body */
    size_t used;
    const char *body;
} reply;

/* libcurl's write callback: append to the reply's text. */
static size_t collect(char *data, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t len = size * n, room = sizeof r->text - 1 - r->used;
    if (len > room)
        len = room;
    memcpy(r->text + r->used, data, len);
    r->used += len;
    r->text[r->used] = 0;
    return size * n;
}

/* One request with libcurl, a real HTTP client; headers and body land in out->text. */
static void http(const char *method, const char *path, const char *headers, const char *body, size_t blen,
                 reply *out)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", mc_host_http_port(host), path);
    out->used = 0;
    out->text[0] = 0;
    struct curl_slist *hdrs = NULL;
    for (const char *h = headers; h && *h;) { /* "Name: value\r\n" lines */
        size_t n = strcspn(h, "\r");
        char *line = strndup(h, n);
        assert_non_null(line);
        hdrs = curl_slist_append(hdrs, line);
        free(line);
        h += n;
        h += strspn(h, "\r\n");
    }
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send dot segments as they are */
    hdrs = curl_slist_append(hdrs, "Expect:"); /* send bodies at once, no 100-continue round */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* the answer has headers only */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_HEADER, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (body || strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    /* A server may answer 413 and close before the whole body went out. */
    if (rc != CURLE_OK && status == 0)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    out->status = (int)status;
    const char *bd = strstr(out->text, "\r\n\r\n");
    out->body = bd ? bd + 4 : "";
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static int setup(void **state)
{
    (void)state;
    logbuf[0] = 0;
    mc_host_options o;
    mc_host_options_init(&o);
    o.log = capture;
    assert_int_equal(mc_host_create(&o, &host), 0);
    char text[512];
    snprintf(text, sizeof text,
             "modules:\n  - module: %s/mod_web.so\n  - module: %s/mod_web2.so\n  - module: %s/mod_good.so\n"
             "  - module: %s/mod_check_a.so\n  - module: %s/mod_check_b.so\n",
             MODULE_DIR, MODULE_DIR, MODULE_DIR, MODULE_DIR, MODULE_DIR);
    mc_error err = {0};
    assert_int_equal(mc_config_load_string(text, strlen(text), "h.yaml", &doc, &err), 0);
    assert_int_equal(mc_host_load_modules(host, mc_config_get(mc_config_root(doc), "modules"), &err), 0);
    assert_int_equal(mc_host_http_start(host, "127.0.0.1:0", 4096, "s3cret-token", &err), 0);
    assert_true(mc_host_http_port(host) > 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mc_host_destroy(host);
    mc_config_free(doc);
    return 0;
}

static void test_path_rules(void **state)
{
    (void)state;
    const char *refused[] = {"/_matrix/client/v3/x", "/_matrix", "/_modcache/admin/x", "/metrics", "relative",
                             "/a//b", "/a/../b", "/a/"};
    char want[128];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(want, sizeof want, "[web] probe %s=MC_EINVAL", refused[i]);
        if (!strstr(logbuf, want))
            fail_msg("missing '%s' in log:\n%s", want, logbuf);
    }
    assert_non_null(strstr(logbuf, "[web] register=MC_OK"));
    /* The first module keeps the path; the second is told, with a warning. */
    assert_non_null(strstr(logbuf, "[web2] register=MC_EEXIST"));
    assert_non_null(strstr(logbuf, "web resource /_modcache/client/web/v1 is taken by module web"));
}

static void test_resources(void **state)
{
    (void)state;
    reply r;
    http("GET", "/_modcache/client/web/v1/users/alice?x=1&y=two", "X-Test: hello\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /_modcache/client/web/v1/users/alice ?x=1&y=two x=hello body=");
    /* Decoded, but an encoded '&', '=' or '%' inside a value stays encoded: no argument can be
     * injected into the query a module splits. */
    http("GET", "/_modcache/client/web/v1/a?user=bob%26admin%3D1&p=100%25&n=a%20b", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /_modcache/client/web/v1/a ?user=bob%26admin%3D1&p=100%25&n=a b x=- body=");
    http("PUT", "/_modcache/client/web/v1", NULL, "{\"department\": \"sales\"}", 23, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "body={\"department\": \"sales\"}"));
    http("DELETE", "/_modcache/client/web/v1/x", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.text, "Allow: GET, PUT"));
    /* Not a child of the resource: a sibling with the same prefix. */
    http("GET", "/_modcache/client/web/v10", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    http("GET", "/nothing/here", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    /* A body under the limit but longer than the echo's buffer: answered, cut to the buffer. */
    static char mid[3000];
    memset(mid, 'y', sizeof mid);
    http("PUT", "/_modcache/client/web/v1", NULL, mid, sizeof mid, &r);
    assert_int_equal(r.status, 200);
    assert_true(strlen(r.body) == 2047);
    /* Bodies over the limit. */
    static char big[8192];
    memset(big, 'x', sizeof big);
    http("PUT", "/_modcache/client/web/v1", NULL, big, sizeof big, &r);
    assert_int_equal(r.status, 413);
}

/* Request checks run in config order before a module's resource; the first refusal answers. */
static void test_request_checks(void **state)
{
    (void)state;
    reply r;
    http("GET", "/_modcache/client/web/v1/blocked", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.body, "{\"error\": \"blocked by check_a\"}");
    assert_true(logged("[check_a] saw /_modcache/client/web/v1/blocked"));
    assert_false(logged("[check_b] saw /_modcache/client/web/v1/blocked")); /* stopped at the first */
    http("GET", "/_modcache/client/web/v1/limited", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.body, "{\"error\": \"refused\"}");
    assert_true(logged("[check_b] saw /_modcache/client/web/v1/limited"));
    http("GET", "/_modcache/client/web/v1/broken", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "MC_EIO"));
    http("GET", "/_modcache/client/web/v1/fine", "X-Block: 1\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 403);
    http("GET", "/_modcache/client/web/v1/fine", "X-Block: 0\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_true(logged("[check_b] saw /_modcache/client/web/v1/fine"));
    /* Neither /metrics nor the admin API are checked. */
    http("GET", "/metrics", "X-Block: 1\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_false(logged("saw /metrics"));
    http("GET", "/_modcache/admin/v1/caches", "X-Block: 1\r\nAuthorization: Bearer s3cret-token\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(mc_host_callback_count(host, MC_CATEGORY_HTTP, MC_CALLBACK_CHECK_REQUEST), 2);
}

static void test_admin_api(void **state)
{
    (void)state;
    reply r;
    http("GET", "/_modcache/admin/v1/caches", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    http("GET", "/_modcache/admin/v1/caches", "Authorization: Bearer wrong\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 401);
    http("GET", "/_modcache/admin/v1/caches", "Authorization: Bearer s3cret-token-and-more\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 401);
    const char *auth = "Authorization: Bearer s3cret-token\r\n";

    /* Fill the module's cache, then list it. */
    mc_cached *fn = mc_registry_find(mc_host_registry(host), "mod_good.lookup");
    assert_non_null(fn);
    mc_value *v;
    for (int64_t k = 0; k < 3; k++) {
        mc_arg a[] = {MC_ARG_I(k)};
        assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
        mc_value_release(v);
    }
    http("GET", "/_modcache/admin/v1/caches", auth, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "{\"name\": \"mod_good.lookup\", \"entries\": 3"));
    http("POST", "/_modcache/admin/v1/caches", auth, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    http("HEAD", "/_modcache/admin/v1/caches", auth, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");

    /* Invalidate two keys, then everything. */
    const char *keys = "{\"keys\": [[0], [2]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, keys, strlen(keys), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"invalidated\": 2, \"removed\": 2, \"published\": false}");
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 1);
    /* A key not cached is asked for, and nothing is removed. */
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, keys, strlen(keys), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"invalidated\": 2, \"removed\": 0, \"published\": false}");
    /* Wrong lengths (the function's keys have one field): refused with the key's index, and
     * nothing of the request applied, not even the good key before it. */
    const char *longer = "{\"keys\": [[1], [1, 2]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, longer, strlen(longer), &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"key 1 has 2 fields; mod_good.lookup takes 1\"}");
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 1);
    const char *empty = "{\"keys\": [[]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, empty, strlen(empty), &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "key 0 is empty"));
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 1);
    /* No keys: nothing invalidated (not everything). */
    const char *none = "{\"keys\": []}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, none, strlen(none), &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 1);
    const char *all = "{\"all\": true}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, all, strlen(all), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"invalidated\": \"all\", \"removed\": 1, \"published\": false}");
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 0);
    /* Errors: unknown cache, malformed body, malformed key, wrong method, unknown endpoint. */
    http("POST", "/_modcache/admin/v1/caches/nope/invalidate", auth, all, strlen(all), &r);
    assert_int_equal(r.status, 404);
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, "{\"key\": 1}", 10, &r);
    assert_int_equal(r.status, 400);
    const char *badkey = "{\"keys\": [[1,]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, badkey, strlen(badkey), &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "offset"));
    /* Error texts carrying quotes stay valid JSON. */
    const char *quoted = "{\"keys\": [[{\"nohex\": 1}]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, quoted, strlen(quoted), &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\\\""));
    assert_int_equal(strncmp(r.body, "{\"error\": \"key 0: ", 18), 0);
    http("POST", "/_modcache/admin/v1/caches/no%22pe/invalidate", auth, all, strlen(all), &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\": \"no cache named no\\\"pe\"}");
    http("GET", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    http("GET", "/_modcache/admin/v2/other", auth, NULL, 0, &r);
    assert_int_equal(r.status, 404);
}

/* Hostile requests: dot segments and encoded separators never reach another handler; tokens
 * that are missing, wrong, of another length, lower-cased scheme or far too long never pass. */
static void test_hostile_requests(void **state)
{
    (void)state;
    reply r;
    const char *escapes[] = {"/_modcache/client/web/v1/../../../metrics",
                             "/_modcache/client/web/v1/%2e%2e/%2e%2e/admin/v1/caches",
                             "/_modcache/client/web/v1/..%2f..%2fadmin%2fv1%2fcaches",
                             "/_modcache/client/web/v1/%00/../../admin/v1/caches"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        http("GET", escapes[i], NULL, NULL, 0, &r);
        /* Served (literally) by the web module, or refused: never the metrics or admin handlers. */
        assert_null(strstr(r.body, "modcache_cache_hits_total"));
        assert_null(strstr(r.body, "\"max_entries\""));
        if (r.status == 200)
            assert_non_null(strstr(r.body, "GET /_modcache/client/web/v1"));
    }
    /* Paths are normalised before routing: climbing out of the admin tree names the web
     * resource, which answers for the path it was asked for. */
    http("GET", "/_modcache/admin/../client/web/v1", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /_modcache/client/web/v1 ? x=- body=");
    http("GET", "/_modcache/client/web/v1/../../../admin/v1/caches", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401); /* into the admin tree: the token is asked for */
    http("GET", "//_modcache/admin/v1/caches", NULL, NULL, 0, &r);
    assert_null(strstr(r.body, "\"max_entries\""));
    http("GET", "/_modcache/admin%2fv1%2fcaches", NULL, NULL, 0, &r);
    assert_null(strstr(r.body, "\"max_entries\""));

    const char *bad_tokens[] = {"Authorization: Bearer s3cret-tokeN\r\n", "Authorization: Bearer s3cret-toke\r\n",
                                "Authorization: Bearer s3cret-token2\r\n", "Authorization: Bearer \r\n",
                                "Authorization: s3cret-token\r\n", "Authorization: Basic s3cret-token\r\n",
                                "X-Authorization: Bearer s3cret-token\r\n"};
    for (size_t i = 0; i < sizeof bad_tokens / sizeof bad_tokens[0]; i++) {
        http("GET", "/_modcache/admin/v1/caches", bad_tokens[i], NULL, 0, &r);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.text, "WWW-Authenticate: Bearer"));
    }
    /* The scheme is case-insensitive (RFC 7235). */
    http("GET", "/_modcache/admin/v1/caches", "Authorization: bearer s3cret-token\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    /* A 64 KiB token: refused (401, or the server's header limit), never accepted. */
    static char big[70000];
    int n = snprintf(big, sizeof big, "Authorization: Bearer ");
    memset(big + n, 'a', 65536);
    big[n + 65536] = 0;
    http("GET", "/_modcache/admin/v1/caches", big, NULL, 0, &r);
    assert_true(r.status == 401 || r.status == 413 || r.status == 431 || r.status == 400);
    /* The server is still healthy. */
    http("GET", "/_modcache/admin/v1/caches", "Authorization: Bearer s3cret-token\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
}

static void test_metrics(void **state)
{
    (void)state;
    mc_cached *fn = mc_registry_find(mc_host_registry(host), "mod_good.lookup");
    mc_value *v;
    mc_arg a[] = {MC_ARG_I(7)};
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    reply r;
    http("GET", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.text, "Content-Type: text/plain"));
    assert_non_null(strstr(r.body, "modcache_cache_hits_total{cache=\"mod_good.lookup\"} "));
    assert_non_null(strstr(r.body, "modcache_cache_misses_total{cache=\"mod_good.lookup\"} "));
    assert_non_null(strstr(r.body, "modcache_cache_evictions_total{cache=\"mod_good.lookup\",reason=\"invalidation\"} "));
    assert_non_null(strstr(r.body, "modcache_cache_entries{cache=\"mod_good.lookup\"} 1\n"));
    assert_non_null(strstr(r.body, "modcache_cache_max_entries{cache=\"mod_good.lookup\"} 10\n"));
    assert_non_null(strstr(r.body, "modcache_jemalloc_allocated_bytes "));
    /* Every sample line parses as name{labels} value; the rest are HELP and TYPE lines. */
    for (const char *line = r.body; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
            line = nl + 1;
            continue;
        }
        assert_true(!strncmp(line, "modcache_", 9) || !strncmp(line, "process_", 8));
        const char *sp = nl;
        while (sp > line && sp[-1] != ' ')
            sp--;
        assert_true(sp > line);
        char *end;
        strtod(sp, &end);
        assert_ptr_equal(end, nl); /* the value is a number up to the line's end */
        line = nl + 1;
    }
    http("POST", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.text, "Allow: GET, HEAD"));
    /* HEAD wherever GET is answered (health checks use it): the status and headers, no body. */
    http("HEAD", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
}

static void test_start_errors(void **state)
{
    (void)state;
    mc_error err = {0};
    assert_int_equal(mc_host_http_start(host, "127.0.0.1:0", 0, NULL, &err), MC_EBUSY);
    mc_host *h2;
    mc_host_options o;
    mc_host_options_init(&o);
    o.log = capture;
    assert_int_equal(mc_host_create(&o, &h2), 0);
    assert_int_equal(mc_host_http_start(h2, "localhost", 0, NULL, &err), MC_EINVAL);
    assert_non_null(strstr(err.message, "expected host:port"));
    assert_int_equal(mc_host_http_start(h2, "not-an-ip:80", 0, NULL, &err), MC_EINVAL);
    /* The port in use by the running server. */
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%u", mc_host_http_port(host));
    assert_int_equal(mc_host_http_start(h2, taken, 0, NULL, &err), MC_EIO);
    assert_non_null(strstr(err.message, "cannot listen"));
    /* Without a token the admin API is closed. */
    assert_int_equal(mc_host_http_start(h2, "127.0.0.1:0", 0, NULL, &err), 0);
    mc_host *saved = host;
    host = h2;
    reply r;
    http("GET", "/_modcache/admin/v1/caches", "Authorization: Bearer x\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 403);
    host = saved;
    mc_host_http_stop(h2);
    mc_host_http_stop(h2);
    assert_int_equal(mc_host_http_port(h2), 0);
    mc_host_destroy(h2);
}

/* ------------------------------------------------------------------ hostile clients */

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ANSWER_MS 5000 /* sanitizers slow every request down several times */
#define SLOW_HEADER_MS 8000
#else
#define ANSWER_MS 1000
#define SLOW_HEADER_MS 4000 /* the slow clients' header deadline */
#endif

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Restart the shared server with other limits (NULL: the setup's). */
static void restart(const mc_http_options *with)
{
    mc_host_http_stop(host);
    mc_http_options o;
    if (with)
        o = *with;
    else
        mc_http_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.max_body = 4096;
    o.admin_token = "s3cret-token";
    mc_error err = {0};
    assert_int_equal(mc_host_http_start_v2(host, &o, &err), 0);
}

/* A connected, non-blocking socket to the server, or -1. */
static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mc_host_http_port(host))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *text)
{
    size_t n = strlen(text), off = 0;
    uint64_t until = now_ms() + 2000;
    while (off < n && now_ms() < until) {
        ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN)
            return;
        else
            poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 50);
    }
}

/* Whether the server closed the connection within timeout_ms (EOF or reset; any answer read
 * before it is discarded). */
static bool closed_within(int fd, int timeout_ms)
{
    uint64_t until = now_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        uint64_t now = now_ms();
        if (now >= until)
            return false;
        if (n < 0)
            poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, (int)(until - now));
    }
}

/* The soft open-files limit raised to `need` if the hard one allows it; false (the test is
 * skipped) when it does not. */
static bool enough_fds(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur >= need)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        print_message("skipped: needs %llu open files, the hard limit is %llu (ulimit -Hn)\n",
                      (unsigned long long)need, (unsigned long long)rl.rlim_max);
        return false;
    }
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/* One normal request, timed: the module resource or /metrics answers within ANSWER_MS. */
/* Close (and mark -1) the connections of fds[0..n) the server has closed; the number closed
 * so far, counting those marked before. */
static int reap_closed(int *fds, int n)
{
    int closed = 0;
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && closed_within(fds[i], 0)) {
            close(fds[i]);
            fds[i] = -1;
        }
        closed += fds[i] < 0;
    }
    return closed;
}

static void timed_request(const char *path)
{
    reply r;
    uint64_t t0 = now_ms();
    http("GET", path, NULL, NULL, 0, &r);
    uint64_t took = now_ms() - t0;
    assert_int_equal(r.status, 200);
    if (took > ANSWER_MS)
        fail_msg("GET %s took %llu ms under load", path, (unsigned long long)took);
}

/* ------------------------------------------------------------------ paths */

/* Normalisation before routing and request checks: dot segments (also percent-encoded),
 * repeated slashes; climbing above the root, encoded NULs and broken escapes are 400. */
static void test_path_normalisation(void **state)
{
    (void)state;
    const struct {
        const char *sent;
        int status;
        const char *path; /* what the module saw (200 only) */
    } cases[] = {
        {"/_modcache/client/web/v1/deep/../x", 200, "/_modcache/client/web/v1/x"},
        {"/_modcache/client/web/v1/%2e%2e/v1/a", 200, "/_modcache/client/web/v1/a"},
        {"/_modcache/client/web/v1/%2E%2e%2fv1%2Fb", 200, "/_modcache/client/web/v1/b"},
        {"/_modcache/client/web/v1/.%2E/v1/c", 200, "/_modcache/client/web/v1/c"},
        {"//_modcache///client/web//v1/./d", 200, "/_modcache/client/web/v1/d"},
        {"/_modcache/client/web/v1/././e/.", 200, "/_modcache/client/web/v1/e/"},
        {"/_modcache/client/web/v1/%2e/f/", 200, "/_modcache/client/web/v1/f/"},
        {"/x/../_modcache/client/web/v1", 200, "/_modcache/client/web/v1"},
        {"/_modcache/client/web/v1/%7euser", 200, "/_modcache/client/web/v1/~user"},
        {"/_modcache/client/web/v1/a/..", 200, "/_modcache/client/web/v1/"},
        {"/..", 400, NULL},
        {"/../_modcache/client/web/v1", 400, NULL},
        {"/_modcache/../../x", 400, NULL},
        {"/%2e%2e/x", 400, NULL},
        {"/a/%2e%2e%2f%2e%2e/x", 400, NULL},
        {"/_modcache/client/web/v1/%00/x", 400, NULL},
        {"/_modcache/client/web/v1/%zz", 400, NULL},
        {"/_modcache/client/web/v1/%2", 400, NULL},
        {"/_modcache/client/web/v1/%", 400, NULL},
        {"/_modcache/client/web/v10/../v1/g", 200, "/_modcache/client/web/v1/g"},
    };
    reply r;
    char want[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http("GET", cases[i].sent, "X-Raw: 1\r\n", NULL, 0, &r);
        if (r.status != cases[i].status)
            fail_msg("%s: status %d, want %d (%s)", cases[i].sent, r.status, cases[i].status, r.body);
        if (cases[i].path) {
            /* The module sees the normalised path, and the raw one when it asks. */
            snprintf(want, sizeof want, "GET %s ? x=- body= raw=%s", cases[i].path, cases[i].sent);
            assert_string_equal(r.body, want);
        } else {
            assert_string_equal(r.body, "{\"error\": \"bad request path\"}");
        }
    }
    /* Request checks see the normalised path too: a check that refuses ".../blocked" cannot be
     * walked around, nor tricked into refusing a path that is not its own. */
    http("GET", "/_modcache/client/web/v1/fine/../blocked", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 403);
    http("GET", "/_modcache/client/web/v1/%62locked", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 403);
    http("GET", "/_modcache/client/web/v1/blocked/../fine", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    /* /metrics and the admin API by their normalised names. */
    http("GET", "/x/..//metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "modcache_http_bad_paths_total "));
    http("GET", "/metrics/../_modcache/admin/v1/caches", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    /* Request targets a browser never sends: the absolute form is reduced to its path, the
     * asterisk form and a relative path are refused. */
    const struct {
        const char *target;
        const char *want;
    } raw[] = {
        {"http://127.0.0.1/_modcache/client/web/v1/../v1/abs", "GET /_modcache/client/web/v1/abs ?"},
        {"HTTP://example.org//_modcache/client/web/v1", "GET /_modcache/client/web/v1 ?"},
        {"*", "{\"error\": \"bad request path\"}"},
        {"_modcache/client/web/v1", "{\"error\": \"bad request path\"}"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        int fd = open_conn();
        assert_true(fd >= 0);
        char req[512], buf[4096];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", raw[i].target);
        send_all(fd, req);
        size_t have = 0;
        for (uint64_t until = now_ms() + ANSWER_MS; have < sizeof buf - 1 && now_ms() < until;) {
            poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 100);
            ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
            if (n == 0)
                break;
            if (n > 0)
                have += (size_t)n;
        }
        buf[have] = 0;
        if (!strstr(buf, raw[i].want))
            fail_msg("GET %s: %s", raw[i].target, buf);
        close(fd);
    }
}

#define SLOW_CLIENTS 4000

/* 4,000 clients from 127.0.0.1, each with a partial request head it trickles one header line
 * at a time: module resources and /metrics are still answered at once, and every slow client
 * is dropped at the header deadline, which its trickling does not extend. */
/* A body sent a byte at a time does not hold its connection past the transfer deadline
 * (request_header_timeout + 1 s per 16 KiB of declared body), although each byte comes well
 * within idle_timeout; requests of others are answered meanwhile. */
#define SLOW_BODIES 20
static void test_slow_bodies(void **state)
{
    (void)state;
    mc_http_options o;
    mc_http_options_init(&o);
    o.request_header_timeout_ns = 1000 * 1000000ull;
    o.idle_timeout_ns = 3000 * 1000000ull;
    restart(&o);
    int fds[SLOW_BODIES];
    uint64_t t0 = now_ms();
    for (int i = 0; i < SLOW_BODIES; i++) {
        fds[i] = open_conn();
        assert_true(fds[i] >= 0);
        send_all(fds[i], "POST /_modcache/client/web/v1/slowbody HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Length: 1000\r\n\r\n");
    }
    /* The deadline: 1 s + 1 s (1000 bytes at 16 KiB/s round up to a second), from the head. */
    int closed = 0;
    while (closed < SLOW_BODIES && now_ms() < t0 + 2000 + 1000 + ANSWER_MS) {
        closed = reap_closed(fds, SLOW_BODIES);
        for (int i = 0; i < SLOW_BODIES; i++)
            if (fds[i] >= 0)
                send(fds[i], "x", 1, MSG_NOSIGNAL); /* a byte now and then: never idle */
        timed_request("/metrics");
        usleep(200000);
    }
    uint64_t took = now_ms() - t0;
    print_message("%d slow bodies closed after %llu ms\n", closed, (unsigned long long)took);
    for (int i = 0; i < SLOW_BODIES; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    assert_int_equal(closed, SLOW_BODIES);
    assert_true(took >= 1500); /* not before their deadline */
    mc_http_stats st;
    mc_host_http_stats(host, &st);
    assert_true(st.header_timeouts >= SLOW_BODIES);
    restart(NULL);
}

static void test_slow_clients(void **state)
{
    (void)state;
    if (!enough_fds(2 * SLOW_CLIENTS + 512))
        skip();
    mc_http_options o;
    mc_http_options_init(&o);
    o.request_header_timeout_ns = SLOW_HEADER_MS * 1000000ull;
    restart(&o);
    static int fds[SLOW_CLIENTS];
    uint64_t t0 = now_ms();
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = open_conn();
        assert_true(fds[i] >= 0);
    }
    for (int i = 0; i < SLOW_CLIENTS; i++)
        send_all(fds[i], "GET /_modcache/client/web/v1/slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    uint64_t opened = now_ms() - t0;
    print_message("%d slow clients connected in %llu ms\n", SLOW_CLIENTS, (unsigned long long)opened);
    /* Wait until the server holds them all (bounded). */
    mc_http_stats st;
    for (uint64_t until = now_ms() + 3000; now_ms() < until;) {
        mc_host_http_stats(host, &st);
        if (st.connections >= SLOW_CLIENTS)
            break;
        usleep(20000);
    }
    mc_host_http_stats(host, &st);
    assert_true(st.connections >= SLOW_CLIENTS);
    /* Normal requests while the slow clients trickle a header line now and then, until shortly
     * before their deadline. */
    int rounds = 0;
    for (uint64_t until = t0 + SLOW_HEADER_MS - 700; now_ms() < until || rounds < 3; rounds++) {
        timed_request("/_modcache/client/web/v1/normal");
        timed_request("/metrics");
        for (int i = rounds % 4; i < SLOW_CLIENTS; i += 4)
            send(fds[i], "X-Trickle: 1\r\n", 14, MSG_NOSIGNAL);
        usleep(60000);
    }
    assert_true(rounds >= 3);
    /* Still trickling past the deadline: every one is closed by deadline + 2 s. */
    int closed = 0;
    uint64_t deadline = t0 + opened + SLOW_HEADER_MS + 2000 + (ANSWER_MS - 1000);
    while (closed < SLOW_CLIENTS && now_ms() < deadline) {
        closed = reap_closed(fds, SLOW_CLIENTS);
        for (int i = 0; i < SLOW_CLIENTS; i++)
            if (fds[i] >= 0 && now_ms() % 7 == 0)
                send(fds[i], "X", 1, MSG_NOSIGNAL);
        usleep(50000);
    }
    print_message("%d of %d slow clients dropped %llu ms after they connected\n", closed, SLOW_CLIENTS,
                  (unsigned long long)(now_ms() - t0));
    for (int i = 0; i < SLOW_CLIENTS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    assert_int_equal(closed, SLOW_CLIENTS);
    mc_host_http_stats(host, &st);
    assert_true(st.header_timeouts >= SLOW_CLIENTS);
    /* Only a few lines for all of them: the repeating fault is rate-limited. */
    char line[128];
    snprintf(line, sizeof line, "closing connections whose request head is not whole after %.1f s",
             SLOW_HEADER_MS / 1000.0);
    assert_true(logged(line));
    timed_request("/metrics");
    restart(NULL);
}

/* The head deadline against the idle timeout: a silent new connection and a trickling one go at
 * the header deadline; a kept-alive connection may idle longer than it, then be used again; a
 * kept-alive connection that trickles its next request line goes at idle + header timeout. */
static void test_header_deadline(void **state)
{
    (void)state;
    mc_http_options o;
    mc_http_options_init(&o);
    o.request_header_timeout_ns = 1000000000ull;
    o.idle_timeout_ns = 2000000000ull;
    restart(&o);
    uint64_t t0 = now_ms();
    int silent = open_conn(), trickler = open_conn(), keeper = open_conn(), late = open_conn();
    assert_true(silent >= 0 && trickler >= 0 && keeper >= 0 && late >= 0);
    const char *req = "GET /_modcache/client/web/v1/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(keeper, req);
    send_all(late, req);
    send_all(trickler, "GET /_modcache/client/web/v1/t HTTP/1.1\r\n");
    char buf[4096];
    bool silent_closed = false, trickler_closed = false;
    uint64_t silent_at = 0, trickler_at = 0;
    while (now_ms() - t0 < 1000 + ANSWER_MS && !(silent_closed && trickler_closed)) {
        send(trickler, "X", 1, MSG_NOSIGNAL);
        if (!silent_closed && closed_within(silent, 0)) {
            silent_closed = true;
            silent_at = now_ms() - t0;
        }
        if (!trickler_closed && closed_within(trickler, 0)) {
            trickler_closed = true;
            trickler_at = now_ms() - t0;
        }
        usleep(100000);
    }
    assert_true(silent_closed);
    assert_true(trickler_closed);
    assert_true(silent_at >= 900 && trickler_at >= 900); /* not before the deadline */
    /* The kept-alive ones got their answer and are still open after 1.5 s of quiet. */
    assert_true(recv(keeper, buf, sizeof buf, 0) > 0);
    assert_true(recv(late, buf, sizeof buf, 0) > 0);
    while (now_ms() - t0 < 1500)
        usleep(20000);
    assert_false(closed_within(keeper, 0));
    send_all(keeper, req);
    assert_true(poll(&(struct pollfd){.fd = keeper, .events = POLLIN}, 1, ANSWER_MS) == 1);
    ssize_t n = recv(keeper, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = 0;
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* `late` trickles its next request line: closed by 1 s + 2 s after its answer, although
     * every byte resets the idle timer. */
    bool late_closed = false;
    while (now_ms() - t0 < 3000 + ANSWER_MS + 500 && !late_closed) {
        send(late, "G", 1, MSG_NOSIGNAL);
        late_closed = closed_within(late, 0);
        usleep(200000);
    }
    assert_true(late_closed);
    close(silent);
    close(trickler);
    close(keeper);
    close(late);
    restart(NULL);
}

/* Past max_connections a new connection is closed at once, the ones held are still served, and
 * the refusals make one log line, not one each. The per-address limit likewise. */
static void connection_limits_with(unsigned threads)
{
    enum { LIMIT = 40 };
    mc_http_options o;
    mc_http_options_init(&o);
    o.max_connections = LIMIT;
    o.threads = threads; /* 0: one per core */
    restart(&o);
    pthread_mutex_lock(&loglock);
    logbuf[0] = 0; /* the refusal line is counted below: this run's only */
    pthread_mutex_unlock(&loglock);
    int held[LIMIT];
    const char *req = "GET /_modcache/client/web/v1/held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (int i = 0; i < LIMIT; i++) {
        held[i] = open_conn();
        assert_true(held[i] >= 0);
    }
    mc_http_stats st;
    for (uint64_t until = now_ms() + 2000; now_ms() < until;) {
        mc_host_http_stats(host, &st);
        if (st.connections >= LIMIT)
            break;
        usleep(10000);
    }
    assert_int_equal(st.connections, LIMIT);
    assert_int_equal(st.max_connections, LIMIT);
    /* 100 more, one after the other: each answered 503 at once and closed. */
    char buf[4096];
    for (int i = 0; i < 100; i++) {
        int fd = open_conn();
        assert_true(fd >= 0);
        send_all(fd, req);
        uint64_t t0 = now_ms();
        assert_true(poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, ANSWER_MS) == 1);
        ssize_t got = recv(fd, buf, sizeof buf - 1, 0);
        assert_true(got > 0);
        buf[got] = 0;
        if (!strstr(buf, "HTTP/1.1 503 Service Unavailable\r\n") || !strstr(buf, "Retry-After: 1\r\n") ||
            !strstr(buf, "\r\n\r\n{\"error\": \"too many connections\"}"))
            fail_msg("refusal %d: %s", i, buf);
        assert_true(closed_within(fd, ANSWER_MS));
        assert_true(now_ms() - t0 < ANSWER_MS);
        close(fd);
        /* The server's side of it gone too (else the next may be past the few 503 answers and
         * be closed at accept instead, by design). */
        for (uint64_t until = now_ms() + ANSWER_MS; now_ms() < until;) {
            mc_host_http_stats(host, &st);
            if (st.connections <= LIMIT)
                break;
            usleep(1000);
        }
    }
    /* A real client sees the 503 too. */
    reply r;
    http("GET", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    /* A burst of 200 at once: past the few 503 answers, closed as soon as accepted; all within
     * the bound, and a refused client that sends nothing is closed within a second too. */
    static int burst[200];
    for (int i = 0; i < 200; i++)
        burst[i] = open_conn();
    uint64_t t0 = now_ms();
    for (int i = 0; i < 200; i++) {
        assert_true(closed_within(burst[i], ANSWER_MS + 1000));
        close(burst[i]);
    }
    assert_true(now_ms() - t0 < ANSWER_MS + 1000);
    mc_host_http_stats(host, &st);
    assert_true(st.refused >= 301);
    assert_int_equal(st.header_timeouts, 0);
    pthread_mutex_lock(&loglock);
    size_t lines = 0;
    for (const char *p = logbuf; (p = strstr(p, "connection limit reached (40)")); p++)
        lines++;
    pthread_mutex_unlock(&loglock);
    assert_int_equal(lines, 1);
    /* The held connections are served. */
    send_all(held[0], req);
    assert_true(poll(&(struct pollfd){.fd = held[0], .events = POLLIN}, 1, ANSWER_MS) == 1);
    ssize_t n = recv(held[0], buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = 0;
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* Room again once some go. */
    for (int i = 0; i < LIMIT; i++)
        close(held[i]);
    for (uint64_t until = now_ms() + 2000; now_ms() < until;) {
        mc_host_http_stats(host, &st);
        if (st.connections == 0)
            break;
        usleep(10000);
    }
    timed_request("/metrics");

    /* Per address: 5 from 127.0.0.1, the sixth closed at once. */
    mc_http_options_init(&o);
    o.max_connections_per_address = 5;
    restart(&o);
    int mine[5];
    for (int i = 0; i < 5; i++) {
        mine[i] = open_conn();
        send_all(mine[i], "GET /");
    }
    for (uint64_t until = now_ms() + 2000; now_ms() < until;) {
        mc_host_http_stats(host, &st);
        if (st.connections >= 5)
            break;
        usleep(10000);
    }
    int sixth = open_conn();
    send_all(sixth, req);
    assert_true(closed_within(sixth, ANSWER_MS));
    close(sixth);
    for (int i = 0; i < 5; i++)
        close(mine[i]);
    restart(NULL);
}

static void test_connection_limits(void **state)
{
    (void)state;
    connection_limits_with(0);
}

/* One event thread: libmicrohttpd's own limit must leave that thread room to answer the 503s
 * (at max_connections alone it stopped accepting: silence until a held connection went). */
static void test_connection_limits_one_thread(void **state)
{
    (void)state;
    connection_limits_with(1);
}

static void *slow_request(void *arg);

/* Handlers that block run on the handler pool: with one event thread, six 300 ms handlers at
 * once finish together, and a quick request and /metrics are answered meanwhile. */
static void test_blocking_handlers(void **state)
{
    (void)state;
    mc_http_options o;
    mc_http_options_init(&o);
    o.threads = 1;
    o.handler_threads = 8;
    restart(&o);
    enum { SLOW = 6 };
    static reply slow[SLOW];
    pthread_t t[SLOW];
    uint64_t t0 = now_ms();
    for (int i = 0; i < SLOW; i++)
        pthread_create(&t[i], NULL, slow_request, &slow[i]);
    usleep(100000); /* the slow ones are in their handlers */
    uint64_t q0 = now_ms();
    timed_request("/_modcache/client/web/v1/quick");
    timed_request("/metrics");
    uint64_t quick = now_ms() - q0;
    for (int i = 0; i < SLOW; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(slow[i].status, 200);
    }
    uint64_t all = now_ms() - t0;
    print_message("quick requests %llu ms while 6 handlers slept; all 6 done in %llu ms\n",
                  (unsigned long long)quick, (unsigned long long)all);
    assert_true(quick < 250 || ANSWER_MS > 1000);
    assert_true(all < 6 * 300); /* in parallel, not one after the other */
    /* Without a pool, on the event threads: the same answers. */
    o.handler_threads = MC_HTTP_INLINE_HANDLERS;
    restart(&o);
    reply r;
    http("GET", "/_modcache/client/web/v1/inline", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /_modcache/client/web/v1/inline ? x=- body=");
    http("GET", "/_modcache/client/web/v1/blocked", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 403);
    restart(NULL);
}

static void *slow_request(void *arg)
{
    reply *r = arg;
    http("GET", "/_modcache/client/web/v1/slow", NULL, NULL, 0, r);
    return NULL;
}

static void test_stop_finishes_requests(void **state)
{
    (void)state;
    /* A request in progress when the server stops still gets its answer. */
    static reply r;
    pthread_t t;
    pthread_create(&t, NULL, slow_request, &r);
    usleep(100000);
    mc_host_http_stop(host);
    pthread_join(t, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "GET /_modcache/client/web/v1/slow"));
    assert_int_equal(mc_host_http_port(host), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_rules),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_request_checks),
        cmocka_unit_test(test_admin_api),
        cmocka_unit_test(test_hostile_requests),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_path_normalisation),
        cmocka_unit_test(test_header_deadline),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_connection_limits_one_thread),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_slow_bodies),
        cmocka_unit_test(test_blocking_handlers),
        cmocka_unit_test(test_stop_finishes_requests), /* last: it stops the server */
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return failed;
}
