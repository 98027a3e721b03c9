/* Runs the mcctl program as a process: against an mchost serving mod_good (the caches table and
 * JSON, invalidation, metrics, every error and its exit code), then against a redis-server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc.h"

#define TOKEN "t0ken-for-mcctl-tests"
#define FN "mod_good.lookup"
#define WAIT_MS 15000

static char dir[] = "/tmp/mcctl-test-XXXXXX";
static char tok_path[256], wrong_tok_path[256], empty_tok_path[256];
static char url[64], closed_url[64];
static unsigned host_port;
static mct_proc host;
static char out[1 << 16];

/* Run mcctl with the given arguments (and extra environment), output into `out`. */
#define RUN_ENV(env, ...) mct_run((const char *const[]){MCCTL, __VA_ARGS__, NULL}, env, out, sizeof out)
#define RUN(...) RUN_ENV(NULL, __VA_ARGS__)
static const char *const env_token[] = {"MODCACHE_ADMIN_TOKEN=" TOKEN, NULL};
static const char *const env_wrong[] = {"MODCACHE_ADMIN_TOKEN=nope", NULL};
static const char *const env_empty[] = {"MODCACHE_ADMIN_TOKEN=", NULL};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) { nanosleep(&(struct timespec){0, (long)ms * 1000000L}, NULL); }

/* Start an mchost serving mod_good with `extra` YAML appended; its port into *port. */
static void host_start(mct_proc *p, const char *name, const char *server_extra, const char *extra, unsigned *port)
{
    char cfg[300], text[2048];
    snprintf(cfg, sizeof cfg, "%s/%s.yaml", dir, name);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n%s"
             "%s"
             "modules:\n  - module: %s/mod_good.so\n    config: {ttl: 2h}\n",
             server_extra, extra, MODULE_DIR);
    assert_int_equal(mct_write_file(cfg, text), 0);
    assert_int_equal(mct_spawn(p, (const char *const[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    const char *ready = "serving HTTP on 127.0.0.1:";
    if (!mct_wait_for(p, 0, ready, WAIT_MS))
        fail_msg("mchost did not start:\n%s", p->log);
    assert_int_equal(sscanf(strstr(p->log, ready) + strlen(ready), "%u", port), 1);
    unlink(cfg);
}

static void host_stop(mct_proc *p)
{
    int rc = mct_finish(p, SIGTERM);
    if (rc != 0)
        fail_msg("mchost exited with %d:\n%s", rc, p->log);
    free(p->log);
    p->log = NULL;
}

/* A counter of mod_good.lookup read straight from the host's admin API. */
static unsigned long long host_counter(unsigned port, const char *field)
{
    static char body[1 << 16];
    int status = mct_http(port, "GET", "/_modcache/admin/v1/caches", "Authorization: Bearer " TOKEN "\r\n", NULL,
                          body, sizeof body);
    assert_int_equal(status, 200);
    const char *p = strstr(body, "\"name\": \"" FN "\"");
    assert_non_null(p);
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\": ", field);
    p = strstr(p, needle);
    assert_non_null(p);
    return strtoull(p + strlen(needle), NULL, 10);
}

static unsigned long long invalidations(void) { return host_counter(host_port, "invalidations"); }

/* Every mcctl message goes to stderr with the program's name first. */
static void assert_says(const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("expected \"%s\" in mcctl's output:\n%s", needle, out);
}

/* The scratch directory and token files, shared by both groups. */
static int files_create(void)
{
    if (!mkdtemp(dir))
        return -1;
    snprintf(tok_path, sizeof tok_path, "%s/admin.token", dir);
    snprintf(wrong_tok_path, sizeof wrong_tok_path, "%s/wrong.token", dir);
    snprintf(empty_tok_path, sizeof empty_tok_path, "%s/empty.token", dir);
    /* The host's file: private to its owner, one token and a newline (mcctl reads the first
     * line without its trailing whitespace, so the others work for it too). */
    if (mct_write_file(tok_path, TOKEN "\n") != 0 || chmod(tok_path, 0600) != 0 ||
        mct_write_file(wrong_tok_path, "not-the-token \t\r\nsecond line is not part of it\n") != 0 ||
        mct_write_file(empty_tok_path, "  \n") != 0)
        return -1;
    return 0;
}

static void files_remove(void)
{
    unlink(tok_path);
    unlink(wrong_tok_path);
    unlink(empty_tok_path);
    rmdir(dir);
}

static int http_setup(void **state)
{
    (void)state;
    char server[512];
    snprintf(server, sizeof server, "  admin_token_file: %s\n", tok_path);
    host_start(&host, "host", server, "", &host_port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", host_port);
    snprintf(closed_url, sizeof closed_url, "http://127.0.0.1:%u", mct_free_port());
    return 0;
}

static int http_teardown(void **state)
{
    (void)state;
    host_stop(&host);
    return 0;
}

/* ------------------------------------------------------------------ help and usage */

static void test_help(void **state)
{
    (void)state;
    assert_int_equal(RUN("--help"), 0);
    assert_says("usage: mcctl [OPTIONS] COMMAND [ARGS]");
    assert_says("--token-file FILE");
    assert_says("MODCACHE_ADMIN_TOKEN");
    assert_says("Exit status:");
    assert_says("  6  the host or Redis cannot be reached");
    const char *commands[] = {"caches", "invalidate", "metrics"};
    for (size_t i = 0; i < 3; i++) {
        char usage[64];
        snprintf(usage, sizeof usage, "usage: mcctl [OPTIONS] %s", commands[i]);
        assert_int_equal(RUN(commands[i], "--help"), 0);
        assert_says(usage);
        assert_says("Exit status:");
        assert_int_equal(RUN("help", commands[i]), 0);
        assert_says(usage);
        assert_int_equal(RUN("-h", commands[i]), 0);
        assert_says(usage);
    }
    assert_int_equal(RUN("--version"), 0);
    assert_says("mcctl " MODCACHE_VERSION " (libmodcache " MODCACHE_VERSION ")"); /* the project's version */
}

static void test_usage_errors(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    char tf[300];
    snprintf(tf, sizeof tf, "--token-file=%s", tok_path);
    const char *const cases[][8] = {
        {NULL},
        {"bogus"},
        {"--bogus", "caches"},
        {"caches", "extra"},
        {"caches", "--all"},
        {"metrics", "--json"},
        {"hosts"},
        {"--redis", "127.0.0.1:6379", "hosts", "--all"},
        {"metrics", "extra"},
        {"invalidate"},
        {tf, "invalidate", FN},
        {tf, "invalidate", FN, "--all", "[\"a\"]"},
        {tf, "invalidate", "", "[\"a\"]"},
        {"--redis", "127.0.0.1:6379", "caches"},
        {"--redis", "127.0.0.1:6379", "metrics"},
        {"--redis", "no-port", "invalidate", FN, "--all"},
        {"--redis", "127.0.0.1:6379", "--url", "http://127.0.0.1:1", "invalidate", FN, "--all"},
        {"--stream", "s", tf, "invalidate", FN, "--all"},
        {"--timeout", "soon", "caches"},
        {"--timeout", "0", "caches"},
        {"--url", "ftp://127.0.0.1:1", "caches"},
        {"caches", "--url"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[10] = {MCCTL};
        for (size_t k = 0; k < 8 && cases[i][k]; k++)
            argv[k + 1] = cases[i][k];
        int rc = mct_run(argv, NULL, out, sizeof out);
        if (rc != 2)
            fail_msg("case %zu: exit %d, expected 2:\n%s", i, rc, out);
        if (strncmp(out, "mcctl: ", 7) != 0 || !strstr(out, "--help"))
            fail_msg("case %zu: expected a message pointing at --help:\n%s", i, out);
    }
    assert_int_equal(invalidations(), before); /* nothing reached the host */
}

/* ------------------------------------------------------------------ against the host */

static void test_caches_table(void **state)
{
    (void)state;
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "caches"), 0);
    assert_says("NAME");
    assert_says("HIT%");
    assert_says("MEMORY");
    const char *row = strstr(out, "\n" FN " ");
    assert_non_null(row);
    unsigned long long entries, max, hits, misses;
    char ratio[16];
    assert_int_equal(sscanf(row + 1 + strlen(FN), "%llu %llu %llu %llu %15s", &entries, &max, &hits, &misses, ratio), 5);
    assert_int_equal(max, 10); /* mod_good's bound, factor 1 */
    assert_int_equal(entries, host_counter(host_port, "entries"));
    /* Nothing calls mod_good.lookup: no lookups, and no invented ratio. */
    assert_int_equal(hits + misses, 0);
    assert_string_equal(ratio, "-");
    /* Options may follow the command, and --opt=value works. */
    char tf[300];
    snprintf(tf, sizeof tf, "--token-file=%s", tok_path);
    assert_int_equal(RUN("caches", "--url", url, tf), 0);
    assert_says("\n" FN " ");
}

/* A JSON value's end, or NULL: strings, literals, numbers, arrays and objects, nothing else. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if (!*p || (unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\' && !*++p)
            return NULL;
    }
    return p + 1;
}

static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '"')
        return json_string(p);
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        bool object = *p == '{';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (object) {
                if (!(p = json_string(json_ws(p))))
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if (!(p = json_value(p)))
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    const char *s = p;
    while (*p && strchr("-+.eE0123456789", *p))
        p++;
    if (p > s)
        return p;
    for (const char *const *w = (const char *const[]){"true", "false", "null", NULL}; *w; w++)
        if (!strncmp(p, *w, strlen(*w)))
            return p + strlen(*w);
    return NULL;
}

static void test_caches_json(void **state)
{
    (void)state;
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "caches", "--json"), 0);
    assert_int_equal(out[0], '[');
    const char *end = json_value(out);
    if (!end || *json_ws(end))
        fail_msg("not one JSON document:\n%s", out);
    assert_says("\"name\": \"" FN "\"");
    assert_says("\"invalidations\": ");
    assert_says("\"evictions\": {");
}

static void test_invalidate_keys(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", FN, "[\"@alice:example.com\"]",
                           "[{\"hex\": \"00ff\"}]"),
                     0);
    /* Nothing was cached: asked for two, removed none, and the answer says so. */
    assert_says("invalidated 2 keys of " FN " at ");
    assert_says(" (0 entries removed there)");
    assert_int_equal(invalidations(), before + 2);

    /* The token from the environment, when no --token-file is given. */
    assert_int_equal(RUN_ENV(env_token, "--url", url,
                               "invalidate", FN, "[1.5]"),
                     0);
    assert_says("invalidated 1 key of " FN);
    assert_int_equal(invalidations(), before + 3);
}

/* The function's keys have one field: a longer KEY is refused by the host (exit 3, nothing
 * invalidated, the KEY named), an empty one by mcctl before anything is sent. */
static void test_invalidate_wrong_length(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", FN, "[\"ok\"]", "[\"u1\", 5, \"x\"]"), 3);
    assert_says("mcctl: the host refused KEY 2 of " FN ": it has 3 fields; " FN " takes 1");
    assert_says("nothing was invalidated");
    assert_int_equal(invalidations(), before);
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", FN, "[]"), 3);
    assert_says("mcctl: KEY 1 is empty");
    assert_says("nothing was sent");
    assert_int_equal(invalidations(), before);
}

static void test_invalidate_all(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", FN, "--all"), 0);
    assert_says("invalidated all entries of " FN);
    assert_int_equal(invalidations(), before + 1);
}

static void test_metrics(void **state)
{
    (void)state;
    /* No token needed. */
    assert_int_equal(RUN("--url", url, "metrics"), 0);
    assert_says("modcache_cache_hits_total{cache=\"" FN "\"} ");
    assert_says("modcache_cache_max_entries{cache=\"" FN "\"} 10\n");
}

static void test_bad_key(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    /* The second key is bad: the first is not sent either. */
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", FN, "[\"ok\"]", "[\"a\",]"), 3);
    assert_says("mcctl: KEY 2 is not a valid key: key JSON at offset 5");
    assert_says("\n  [\"a\",]\n       ^\n"); /* the caret under the offending byte */
    assert_says("nothing was sent");
    const char *bad[] = {"42", "[\"a\"", "[\"\xff\"]", "[1e999999]", "[\"a\"] x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = RUN("--url", url, "--token-file", tok_path, "invalidate", FN, bad[i]);
        if (rc != 3)
            fail_msg("key %s: exit %d, expected 3:\n%s", bad[i], rc, out);
        assert_says("mcctl: KEY 1 is not a valid key");
    }
    /* Checked before the token and the host: a bad key is 3 even with neither. */
    assert_int_equal(RUN("--url", closed_url, "invalidate", FN, "[,]"), 3);
    assert_int_equal(invalidations(), before);
}

static void test_unknown_cache(void **state)
{
    (void)state;
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", "no.such.cache", "[\"a\"]"), 4);
    assert_says("mcctl: the host at ");
    assert_says("has no cache named no.such.cache");
    /* A name that needs escaping in a URL is still just a name. */
    assert_int_equal(RUN("--url", url, "--token-file", tok_path, "invalidate", "a/b c%d?", "--all"), 4);
    assert_says("has no cache named a/b c%d?");
}

static void test_wrong_token(void **state)
{
    (void)state;
    unsigned long long before = invalidations();
    assert_int_equal(RUN("--url", url, "--token-file", wrong_tok_path, "caches"), 5);
    assert_says("mcctl: the host refused the admin token (HTTP 401");
    assert_says("--token-file");
    assert_int_equal(RUN("--url", url, "--token-file", wrong_tok_path, "invalidate", FN, "--all"), 5);
    assert_int_equal(RUN_ENV(env_wrong, "--url", url, "invalidate",
                               FN, "[\"a\"]"),
                     5);
    /* --token-file wins over the environment. */
    assert_int_equal(RUN_ENV(env_token, "--url", url,
                               "--token-file", wrong_tok_path, "caches"),
                     5);
    assert_int_equal(invalidations(), before);
}

static void test_no_token(void **state)
{
    (void)state;
    assert_int_equal(RUN("--url", url, "caches"), 5);
    assert_says("mcctl: no admin token: pass --token-file FILE");
    assert_says("MODCACHE_ADMIN_TOKEN");
    assert_int_equal(RUN("--url", url, "invalidate", FN, "--all"), 5);
    assert_int_equal(RUN_ENV(env_empty, "--url", url, "caches"), 5);
    assert_int_equal(RUN("--url", url, "--token-file", empty_tok_path, "caches"), 5);
    assert_says("is empty");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/absent.token", dir);
    assert_int_equal(RUN("--url", url, "--token-file", missing, "caches"), 5);
    assert_says("cannot read the token file");
    assert_int_equal(RUN("--url", url, "--token-file", dir, "caches"), 5); /* a directory */
    assert_says("cannot read the token file");
}

static void test_admin_disabled(void **state)
{
    (void)state;
    mct_proc other;
    unsigned port;
    host_start(&other, "noadmin", "", "", &port);
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%u", port);
    assert_int_equal(RUN("--url", u, "--token-file", tok_path, "caches"), 5);
    assert_says("admin API is disabled (HTTP 403");
    assert_says("server.admin_token_file");
    assert_int_equal(RUN("--url", u, "metrics"), 0); /* metrics need no admin API */
    host_stop(&other);
}

static void test_unreachable(void **state)
{
    (void)state;
    assert_int_equal(RUN("--url", closed_url, "--token-file", tok_path, "caches"), 6);
    assert_says("mcctl: cannot reach the host at ");
    assert_says("--url");
    assert_int_equal(RUN("--url", closed_url, "metrics"), 6);
    assert_int_equal(RUN("--url", closed_url, "--token-file", tok_path, "invalidate", FN, "[\"a\"]"), 6);
}

/* ------------------------------------------------------------------ against a misbehaving host */

/* A loopback HTTP server in this process that answers every request with one canned response
 * (or none), and keeps the last request it read, so the tests see what mcctl sends and how it
 * takes answers no real host gives. */
typedef enum { FAKE_ANSWER, FAKE_CLOSE, FAKE_SILENT } fake_mode;

static struct {
    int fd;
    unsigned port;
    pthread_t thr;
    pthread_mutex_t lock;
    fake_mode mode;
    int status;
    const char *body;
    char request[8192];
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};
static char fake_url[64];

static void fake_set(fake_mode mode, int status, const char *body)
{
    pthread_mutex_lock(&fake.lock);
    fake.mode = mode;
    fake.status = status;
    fake.body = body;
    fake.request[0] = 0;
    pthread_mutex_unlock(&fake.lock);
}

/* Read a request: headers, then Content-Length bytes of body. */
static void fake_read_request(int c, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (;;) {
        char *hend = strstr(buf, "\r\n\r\n");
        if (hend) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t want = cl && cl < hend ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(hend + 4 - buf) + want || len + 1 >= cap)
                return;
        }
        ssize_t n = read(c, buf + len, cap - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = 0;
    }
}

static void *fake_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(fake.fd, NULL, NULL);
        if (c < 0)
            return NULL; /* the listening socket was shut down */
        char req[sizeof fake.request];
        fake_read_request(c, req, sizeof req);
        pthread_mutex_lock(&fake.lock);
        memcpy(fake.request, req, sizeof req);
        fake_mode mode = fake.mode;
        int status = fake.status;
        const char *body = fake.body;
        pthread_mutex_unlock(&fake.lock);
        if (mode == FAKE_ANSWER) {
            char head[256];
            int n = snprintf(head, sizeof head,
                             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n",
                             status, strlen(body));
            if (write(c, head, (size_t)n) != n || write(c, body, strlen(body)) != (ssize_t)strlen(body))
                fprintf(stderr, "fake host: short write\n");
        } else if (mode == FAKE_SILENT) {
            char sink[256];
            while (read(c, sink, sizeof sink) > 0) /* until the client gives up and closes */
                ;
        }
        close(c);
    }
}

static int fake_setup(void **state)
{
    (void)state;
    fake.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    if (fake.fd < 0 || bind(fake.fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fake.fd, 8) != 0 ||
        getsockname(fake.fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    fake.port = ntohs(sa.sin_port);
    snprintf(fake_url, sizeof fake_url, "http://127.0.0.1:%u", fake.port);
    return pthread_create(&fake.thr, NULL, fake_main, NULL) == 0 ? 0 : -1;
}

static int fake_teardown(void **state)
{
    (void)state;
    shutdown(fake.fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(fake.thr, NULL);
    close(fake.fd);
    return 0;
}

static const char *fake_request(void)
{
    static char copy[sizeof fake.request];
    pthread_mutex_lock(&fake.lock);
    memcpy(copy, fake.request, sizeof copy);
    pthread_mutex_unlock(&fake.lock);
    return copy;
}

static void test_fake_request_shape(void **state)
{
    (void)state;
    fake_set(FAKE_ANSWER, 200, "{\"invalidated\": 1, \"published\": true}");
    /* A name with characters a path cannot hold, a key typed loosely. */
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", "a/b c", "[ \"x\" , 1.50 ]"), 0);
    assert_says("invalidated 1 key of a/b c at ");
    assert_says("which published it to every host reading its stream");
    const char *req = fake_request();
    assert_non_null(strstr(req, "POST /_modcache/admin/v1/caches/a%2Fb%20c/invalidate HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "Authorization: Bearer " TOKEN "\r\n"));
    assert_non_null(strstr(req, "\r\n\r\n{\"keys\": [[\"x\",1.5]]}"));

    fake_set(FAKE_ANSWER, 200, "[]");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "caches"), 0);
    req = fake_request();
    assert_non_null(strstr(req, "GET /_modcache/admin/v1/caches HTTP/1.1\r\n"));
    assert_says("the host has no registered cached functions");

    /* /metrics goes without the token. */
    fake_set(FAKE_ANSWER, 200, "m 1\n");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "metrics"), 0);
    assert_null(strstr(fake_request(), "Authorization"));
}

/* Answers that are not what a host says: exit 1 with a message, never a crash or a table. */
static void test_fake_malformed(void **state)
{
    (void)state;
    static char deep[4096];
    size_t n = (size_t)snprintf(deep, sizeof deep, "[{\"name\": \"x\", \"evictions\": ");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '[';
    deep[n] = 0;
    const char *bodies[] = {
        "",
        "not json",
        "{\"name\": \"x\"}",
        "[{\"name\": \"x\"}]",
        "[{\"name\": \"x\", \"entries\": -1, \"max_entries\": 1, \"memory\": 1, \"hits\": 1, \"misses\": 1, "
        "\"loads\": 1, \"invalidations\": 1}]",
        "[{\"name\": \"x\", \"entries\": 99999999999999999999, \"max_entries\": 1, \"memory\": 1, \"hits\": 1, "
        "\"misses\": 1, \"loads\": 1, \"invalidations\": 1}]",
        "[{\"name\": \"\\ud800\", \"entries\": 1}]",
        "[{\"name\": \"x",
        "[{\"entries\": 1}]",
        "[1, 2]",
        "[{\"name\": \"x\", \"entries\": 0, \"max_entries\": 1, \"memory\": 1, \"hits\": 1, \"misses\": 1, "
        "\"loads\": 1, \"invalidations\": 1}] trailing",
        deep,
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        fake_set(FAKE_ANSWER, 200, bodies[i]);
        const char *const modes[] = {NULL, "--json"};
        for (size_t m = 0; m < 2; m++) {
            int rc = RUN("--url", fake_url, "--token-file", tok_path, "caches", modes[m]);
            if (rc != 1 || strncmp(out, "mcctl: the answer from ", 23) != 0)
                fail_msg("body %zu%s: exit %d:\n%s", i, m ? " --json" : "", rc, out);
        }
    }
    /* A 200 to an invalidation that does not say what it did. */
    fake_set(FAKE_ANSWER, 200, "{\"ok\": true}");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "--all"), 1);
    assert_says("without saying what it invalidated");
}

static void test_fake_statuses(void **state)
{
    (void)state;
    fake_set(FAKE_ANSWER, 500, "{\"error\": \"out of memory\"}");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "caches"), 1);
    assert_says("HTTP 500: out of memory");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "[1]"), 1);
    fake_set(FAKE_ANSWER, 503, "busy");
    assert_int_equal(RUN("--url", fake_url, "metrics"), 1);
    assert_says("HTTP 503: busy");
    fake_set(FAKE_ANSWER, 400, "{\"error\": \"key 0: no\"}");
    /* A 400 naming a key: the host refused that KEY (exit 3, numbered from 1 as on the command line). */
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "[1]"), 3);
    assert_says("the host refused KEY 1 of " FN ": no");
    fake_set(FAKE_ANSWER, 400, "{\"error\": \"something else\"}");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "[1]"), 1);
    assert_says("HTTP 400: something else");
    /* A 404 that is not the host's "no cache named" answer: --url points elsewhere (exit 1, not 4). */
    fake_set(FAKE_ANSWER, 404, "<html>Not Found</html>");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "[1]"), 1);
    assert_says("has no modcache admin API");
    fake_set(FAKE_ANSWER, 404, "{\"error\": \"no cache named x\"}");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "invalidate", FN, "[1]"), 4);
    /* A host's control characters do not reach the terminal; the table shows the name. */
    fake_set(FAKE_ANSWER, 200,
             "[{\"name\": \"a\\u0001b\\u00e9\", \"entries\": 3, \"max_entries\": 4, \"memory\": 3072, \"hits\": 3, "
             "\"misses\": 1, \"loads\": 1, \"invalidations\": 0, \"future\": {\"x\": [null, 1.5e3]}}]");
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "caches"), 0);
    assert_says("\na?b\xc3\xa9 ");
    assert_says(" 75.0% ");
    assert_says(" 3.0K\n");
}

static void test_fake_no_answer(void **state)
{
    (void)state;
    /* Accepted, then closed without a word. */
    fake_set(FAKE_CLOSE, 0, NULL);
    assert_int_equal(RUN("--url", fake_url, "--token-file", tok_path, "caches"), 6);
    assert_says("mcctl: cannot reach the host at ");
    /* Accepted, never answered: --timeout ends the wait. */
    fake_set(FAKE_SILENT, 0, NULL);
    assert_int_equal(RUN("--url", fake_url, "--timeout", "300", "metrics"), 6);
    assert_says("mcctl: no answer from ");
    assert_says("--timeout MS");
}

/* ------------------------------------------------------------------ via Redis */

static mct_redis redis;
static char redis_addr[64];

static int redis_setup(void **state)
{
    (void)state;
    memset(&redis, 0, sizeof redis);
    if (mct_redis_start(&redis, 0) != 0)
        return -1;
    snprintf(redis_addr, sizeof redis_addr, "127.0.0.1:%u", redis.port);
    return 0;
}

static int redis_teardown(void **state)
{
    (void)state;
    mct_redis_stop(&redis, false);
    mct_redis_cleanup(&redis);
    return 0;
}

static char reply[1 << 16];

static void redis_cmd(const char *const *argv)
{
    assert_int_equal(mct_redis_cmd(redis.port, reply, sizeof reply, argv), 0);
}

static long long xlen(const char *stream)
{
    redis_cmd((const char *const[]){"XLEN", stream, NULL});
    return atoll(reply);
}

/* The value of `field` in the reply of XRANGE over one entry: the id, then field and value
 * lines in turn. NULL if absent. */
static const char *entry_field(const char *field, char *buf, size_t cap)
{
    const char *p = strchr(reply, '\n'); /* past the id */
    while (p && *++p) {
        size_t flen = strcspn(p, "\n");
        const char *v = p[flen] ? p + flen + 1 : NULL;
        if (!v)
            return NULL;
        size_t vlen = strcspn(v, "\n");
        if (flen == strlen(field) && !strncmp(p, field, flen)) {
            snprintf(buf, cap, "%.*s", (int)vlen, v);
            return buf;
        }
        p = v[vlen] ? v + vlen : NULL;
    }
    return NULL;
}

static void assert_field(const char *field, const char *want)
{
    char v[4096];
    if (!entry_field(field, v, sizeof v))
        fail_msg("no field %s in the stream entry:\n%s", field, reply);
    if (want && strcmp(v, want) != 0)
        fail_msg("field %s is \"%s\", expected \"%s\"", field, v, want);
}

static void test_redis_keys(void **state)
{
    (void)state;
    /* No token anywhere: the stream needs none. */
    assert_int_equal(RUN("--redis", redis_addr, "--stream", "t:keys", "--instance", "ops-laptop", "invalidate", FN,
                           "[\"@alice:example.com\"]", "[ \"@bob\" , 42 ]"),
                     0);
    assert_says("invalidated 2 keys of " FN " on 0 live hosts reading t:keys at ");
    assert_says("mcctl: warning: no live host reads t:keys"); /* no host reads that stream */
    assert_says(redis_addr);
    assert_int_equal(xlen("t:keys"), 1);
    redis_cmd((const char *const[]){"XRANGE", "t:keys", "-", "+", NULL});
    assert_field("v", "1");
    assert_field("instance", "ops-laptop");
    assert_field("sender", NULL);
    assert_field("cache", FN);
    assert_field("op", "keys");
    /* The keys in canonical form, whatever spacing they were typed with. */
    assert_field("keys", "[[\"@alice:example.com\"],[\"@bob\",42]]");
    char sender[64];
    assert_true(strlen(entry_field("sender", sender, sizeof sender)) >= 16);
}

static void test_redis_all(void **state)
{
    (void)state;
    /* The default stream and instance. */
    assert_int_equal(RUN("--redis", redis_addr, "invalidate", FN, "--all"), 0);
    assert_says("invalidated all entries of " FN " on 0 live hosts reading modcache:invalidations at ");
    assert_int_equal(xlen("modcache:invalidations"), 1);
    redis_cmd((const char *const[]){"XRANGE", "modcache:invalidations", "-", "+", NULL});
    assert_field("v", "1");
    assert_field("instance", "mcctl");
    assert_field("cache", FN);
    assert_field("op", "all");
    char v[64];
    assert_null(entry_field("keys", v, sizeof v));
}

static void test_redis_bad_key(void **state)
{
    (void)state;
    assert_int_equal(RUN("--redis", redis_addr, "--stream", "t:bad", "invalidate", FN, "[\"ok\"]", "[nul]"), 3);
    assert_says("mcctl: KEY 2 is not a valid key");
    assert_says("nothing was sent");
    assert_int_equal(xlen("t:bad"), 0);
}

static void test_redis_refused(void **state)
{
    (void)state;
    /* Redis answers, but the stream's key holds a string: the message is written nowhere. */
    redis_cmd((const char *const[]){"SET", "t:string", "x", NULL});
    assert_int_equal(RUN("--redis", redis_addr, "--stream", "t:string", "invalidate", FN, "--all"), 1);
    assert_says("mcctl: Redis at ");
    assert_says("refused the invalidation");
    assert_says("--stream NAME");
    assert_null(strstr(out, "invalidated all entries"));
}

static void test_redis_unreachable(void **state)
{
    (void)state;
    char closed[64];
    snprintf(closed, sizeof closed, "127.0.0.1:%u", mct_free_port());
    long long t0 = now_ms();
    assert_int_equal(RUN("--redis", closed, "--timeout", "1000", "invalidate", FN, "[\"a\"]"), 6);
    long long took = now_ms() - t0;
    assert_says("mcctl: cannot reach Redis at ");
    assert_says(closed);
    assert_says("--redis HOST:PORT");
    /* It gives up after its timeout rather than waiting for Redis; the bound is loose because
     * the machine is shared (and slower under sanitizers): it only catches a hang. */
    if (took > 1000 + 9000)
        fail_msg("took %lld ms with --timeout 1000", took);
}

/* A host reading the stream applies what mcctl publishes there. */
static void test_redis_reaches_host(void **state)
{
    (void)state;
    char server[512], inval[512];
    snprintf(server, sizeof server, "  admin_token_file: %s\n", tok_path);
    snprintf(inval, sizeof inval,
             "invalidation:\n  backend: redis\n  instance_name: host-a\n"
             "  redis: {address: \"%s\", stream: \"t:fleet\"}\n",
             redis_addr);
    mct_proc h;
    unsigned port;
    host_start(&h, "fleet", server, inval, &port);
    /* Wait until the host reads the stream: what is published earlier is history to it. */
    static char metrics[1 << 16];
    long long deadline = now_ms() + WAIT_MS;
    while (!(mct_http(port, "GET", "/metrics", NULL, NULL, metrics, sizeof metrics) == 200 &&
             strstr(metrics, "modcache_bus_link_up 1\n")) &&
           now_ms() < deadline)
        sleep_ms(20);
    assert_non_null(strstr(metrics, "modcache_bus_link_up 1\n"));
    unsigned long long before = host_counter(port, "invalidations");

    assert_int_equal(RUN("--redis", redis_addr, "--stream", "t:fleet", "invalidate", FN, "[\"@carol\"]", "[7]"), 0);
    deadline = now_ms() + WAIT_MS;
    while (host_counter(port, "invalidations") < before + 2 && now_ms() < deadline)
        sleep_ms(20);
    assert_int_equal(host_counter(port, "invalidations"), before + 2);
    host_stop(&h);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* The children inherit this environment: no stray token, no proxy between them and us. */
    unsetenv("MODCACHE_ADMIN_TOKEN");
    const char *proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
        unsetenv(proxies[i]);
    if (files_create() != 0) {
        fprintf(stderr, "cannot create the test's files in %s\n", dir);
        return 1;
    }
    const struct CMUnitTest http[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_caches_table),
        cmocka_unit_test(test_caches_json),
        cmocka_unit_test(test_invalidate_keys),
        cmocka_unit_test(test_invalidate_wrong_length),
        cmocka_unit_test(test_invalidate_all),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_bad_key),
        cmocka_unit_test(test_unknown_cache),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_no_token),
        cmocka_unit_test(test_admin_disabled),
        cmocka_unit_test(test_unreachable),
    };
    const struct CMUnitTest via_redis[] = {
        cmocka_unit_test(test_redis_keys),
        cmocka_unit_test(test_redis_all),
        cmocka_unit_test(test_redis_bad_key),
        cmocka_unit_test(test_redis_refused),
        cmocka_unit_test(test_redis_unreachable),
        cmocka_unit_test(test_redis_reaches_host),
    };
    const struct CMUnitTest misbehaving[] = {
        cmocka_unit_test(test_fake_request_shape),
        cmocka_unit_test(test_fake_malformed),
        cmocka_unit_test(test_fake_statuses),
        cmocka_unit_test(test_fake_no_answer),
    };
    int failed = cmocka_run_group_tests_name("mcctl over HTTP", http, http_setup, http_teardown);
    failed += cmocka_run_group_tests_name("mcctl against a misbehaving host", misbehaving, fake_setup, fake_teardown);
    failed += cmocka_run_group_tests_name("mcctl via Redis", via_redis, redis_setup, redis_teardown);
    files_remove();
    return failed;
}
