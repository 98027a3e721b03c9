/* Tests of the host's HTTP server over loopback: module resources and path rules, 404/405/413,
 * the admin API (token, listing, invalidation and its errors) and /metrics. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "modcache.h"

static char logbuf[16384];
static mc_host *host;
static mc_config *doc;

static void capture(void *ud, mc_log_level level, const char *module, const char *message)
{
    (void)ud;
    (void)level;
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof logbuf - used, "[%s] %s\n", module ? module : "host", message);
}

typedef struct {
    int status;
    char text[65536]; /* the whole response, headers and body */
    const char *body;
} reply;

/* One request over a fresh connection ("Connection: close"), read to the end. */
static void http(const char *method, const char *path, const char *headers, const char *body, size_t blen,
                 reply *out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mc_host_http_port(host))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char head[2048];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n", method, path, headers ? headers : "", blen);
    assert_int_equal(write(fd, head, (size_t)n), n);
    size_t sent = 0;
    while (sent < blen) {
        ssize_t w = write(fd, body + sent, blen - sent);
        if (w <= 0)
            break; /* the server may refuse a large body early */
        sent += (size_t)w;
    }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof out->text - 1 && (r = read(fd, out->text + got, sizeof out->text - 1 - got)) > 0)
        got += (size_t)r;
    out->text[got] = 0;
    close(fd);
    out->status = 0;
    sscanf(out->text, "HTTP/1.%*d %d", &out->status);
    const char *b = strstr(out->text, "\r\n\r\n");
    out->body = b ? b + 4 : "";
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
             "modules:\n  - module: %s/mod_web.so\n  - module: %s/mod_web2.so\n  - module: %s/mod_good.so\n",
             MODULE_DIR, MODULE_DIR, MODULE_DIR);
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
    /* Bodies over the limit. */
    static char big[8192];
    memset(big, 'x', sizeof big);
    http("PUT", "/_modcache/client/web/v1", NULL, big, sizeof big, &r);
    assert_int_equal(r.status, 413);
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

    /* Invalidate two keys, then everything. */
    const char *keys = "{\"keys\": [[0], [2]]}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, keys, strlen(keys), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"invalidated\": 2}");
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 1);
    const char *all = "{\"all\": true}";
    http("POST", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, all, strlen(all), &r);
    assert_int_equal(r.status, 200);
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
    http("GET", "/_modcache/admin/v1/caches/mod_good.lookup/invalidate", auth, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    http("GET", "/_modcache/admin/v2/other", auth, NULL, 0, &r);
    assert_int_equal(r.status, 404);
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
    assert_non_null(strstr(r.body, "modcache_cache_size{cache=\"mod_good.lookup\"} 1\n"));
    assert_non_null(strstr(r.body, "modcache_cache_max_size{cache=\"mod_good.lookup\"} 10\n"));
    assert_non_null(strstr(r.body, "modcache_jemalloc_allocated_bytes "));
    /* Every sample line parses as name{labels} value. */
    for (const char *line = r.body; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_int_equal(strncmp(line, "modcache_", 9), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_rules),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_admin_api),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
