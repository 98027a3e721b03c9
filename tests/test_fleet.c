/* Fleet visibility: hosts announce themselves beside the stream they read. Two mchost processes
 * against a redis-server this test starts on a free loopback port: `mcctl hosts` lists them
 * (table and JSON), `mcctl --redis invalidate` counts the live readers and warns when there are
 * none, `invalidate --json` over both transports, a stopped host drops out; and in-process, a
 * reader held inside an invalidation callback announces the lag it is building up. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <modcache.h>

#include "proc.h"

#define TOKEN "fleet-test-admin-token"

static mct_redis redis;
static char addr[64];
static char dir[] = "/tmp/mc-fleet-XXXXXX";
static mct_proc hosts[2];
static unsigned http_port[2];
static char out[65536];

static void sleep_ms(unsigned ms) { nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL); }

/* mcctl with these arguments (NULL-terminated after the first); its stdout+stderr in `out`. */
static int mcctl(const char *first, ...)
{
    const char *argv[32] = {MCCTL, first};
    size_t n = 2;
    va_list ap;
    va_start(ap, first);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return mct_run(argv, NULL, out, sizeof out);
}

static void start_host(int i)
{
    char cfg[300], tok[300], text[1024];
    snprintf(cfg, sizeof cfg, "%s/host%d.yaml", dir, i);
    snprintf(tok, sizeof tok, "%s/admin.token", dir);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n  admin_token_file: %s\n"
             "invalidation:\n  backend: redis\n  instance_name: fleet-host-%d\n"
             "  redis: {address: %s, announce_interval: 100ms}\n"
             "modules:\n  - module: %s/mod_good.so\n",
             tok, i, addr, MODULE_DIR);
    assert_int_equal(mct_write_file(cfg, text), 0);
    assert_int_equal(mct_spawn(&hosts[i], (const char *[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    assert_true(mct_wait_for(&hosts[i], 0, "serving HTTP on 127.0.0.1:", 10000));
    const char *at = strstr(hosts[i].log, "serving HTTP on 127.0.0.1:");
    assert_int_equal(sscanf(at + strlen("serving HTTP on 127.0.0.1:"), "%u", &http_port[i]), 1);
}

/* The live hosts of a stream, straight from the library. */
static size_t live(const char *stream, mc_bus_host **h)
{
    size_t n = 0;
    mc_error err = {0};
    assert_int_equal(mc_bus_hosts_list(addr, stream, 2000, h, &n, &err), 0);
    return n;
}

/* Wait (up to 5 s) until `want` hosts read the default stream, their links up (a host's first
 * announcement may come before its connections are). */
static bool wait_live(size_t want)
{
    for (int t = 0; t < 100; t++) {
        mc_bus_host *h = NULL;
        size_t n = live(NULL, &h), up = 0;
        for (size_t i = 0; i < n; i++)
            up += h[i].link_up;
        mc_bus_hosts_free(h);
        if (n == want && up == want)
            return true;
        sleep_ms(50);
    }
    return false;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(mct_redis_start(&redis, 0), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", redis.port);
    assert_non_null(mkdtemp(dir));
    char tok[300];
    snprintf(tok, sizeof tok, "%s/admin.token", dir);
    assert_int_equal(mct_write_file(tok, TOKEN "\n"), 0);
    assert_int_equal(chmod(tok, 0600), 0);
    start_host(0);
    start_host(1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (hosts[i].pid > 0) {
            kill(hosts[i].pid, SIGCONT); /* a failed test_host_gone may leave it stopped */
            mct_finish(&hosts[i], SIGTERM);
            free(hosts[i].log);
        }
    mct_redis_stop(&redis, true);
    mct_redis_cleanup(&redis);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_hosts_listed(void **state)
{
    (void)state;
    assert_true(wait_live(2));
    mc_bus_host *h = NULL;
    assert_int_equal(live(NULL, &h), 2);
    for (int i = 0; i < 2; i++) { /* in name order */
        char name[32];
        snprintf(name, sizeof name, "fleet-host-%d", i);
        assert_string_equal(h[i].instance, name);
        assert_int_equal(h[i].pid, (long)hosts[i].pid);
        assert_true(h[i].link_up);
        assert_true(h[i].age_ms < 3000);
        assert_int_equal(h[i].lag_entries, 0);
        assert_string_equal(h[i].version, mc_version());
        assert_true(h[i].last_seen_ms >= h[i].started_ms);
    }
    mc_bus_hosts_free(h);

    assert_int_equal(mcctl("--redis", addr, "hosts", NULL), 0);
    assert_non_null(strstr(out, "INSTANCE"));
    assert_non_null(strstr(out, "LAST ID"));
    char *a = strstr(out, "\nfleet-host-0 "), *b = strstr(out, "\nfleet-host-1 ");
    assert_true(a && b && a < b);
    assert_int_equal(mcctl("--redis", addr, "hosts", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"stream\": \"modcache:invalidations\", \"hosts\": [{\"instance\": \"fleet-host-0\""));
    assert_non_null(strstr(out, "{\"instance\": \"fleet-host-1\", \"last_id\": \""));
    char pid[64];
    snprintf(pid, sizeof pid, "\"pid\": %ld,", (long)hosts[1].pid);
    assert_non_null(strstr(out, pid));
    assert_non_null(strstr(out, "\"link_up\": true"));

    /* Another stream has no readers. */
    assert_int_equal(mcctl("--redis", addr, "--stream", "nobody:reads", "hosts", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"hosts\": []}"));
    assert_int_equal(mcctl("--redis", addr, "--stream", "nobody:reads", "hosts", NULL), 0);
    assert_non_null(strstr(out, "mcctl: no live host reads nobody:reads at"));
}

/* The invalidation is applied by both hosts, and mcctl says so; on a stream nobody reads it
 * warns; --json on both transports. */
static void test_invalidate_counts_readers(void **state)
{
    (void)state;
    assert_true(wait_live(2));
    assert_int_equal(mcctl("--redis", addr, "invalidate", "mod_good.lookup", "[1]", NULL), 0);
    assert_non_null(strstr(out, "invalidated 1 key of mod_good.lookup on 2 live hosts reading modcache:invalidations"));
    assert_null(strstr(out, "warning"));
    /* Both hosts applied it: their last applied ids moved to the entry just written. */
    mc_bus_host *h = NULL;
    bool moved = false;
    for (int t = 0; t < 100 && !moved; t++) {
        mc_bus_hosts_free(h);
        h = NULL;
        assert_int_equal(live(NULL, &h), 2);
        moved = strcmp(h[0].last_id, "0-0") && !strcmp(h[0].last_id, h[1].last_id) && h[0].lag_entries == 0;
        if (!moved)
            sleep_ms(50);
    }
    mc_bus_hosts_free(h);
    assert_true(moved);

    assert_int_equal(mcctl("--redis", addr, "invalidate", "mod_good.lookup", "--all", "--json", NULL), 0);
    assert_non_null(strstr(out, "{\"published\": true, \"redis\": \""));
    assert_non_null(strstr(out, "\"stream\": \"modcache:invalidations\", \"cache\": \"mod_good.lookup\", "
                                "\"invalidated\": \"all\", \"live_hosts\": 2}"));

    assert_int_equal(mcctl("--redis", addr, "--stream", "typo:invalidations", "invalidate", "mod_good.lookup", "--all",
                           NULL),
                     0);
    assert_non_null(strstr(out, "on 0 live hosts reading typo:invalidations"));
    assert_non_null(strstr(out, "mcctl: warning: no live host reads typo:invalidations"));
    /* The warning is on stderr alone: stdout stays the outcome, with --json a JSON object only. */
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "%s --redis %s --stream typo:invalidations invalidate mod_good.lookup --all --json 2>/dev/null", MCCTL, addr);
    assert_int_equal(mct_run((const char *[]){"/bin/sh", "-c", cmd, NULL}, NULL, out, sizeof out), 0);
    assert_null(strstr(out, "warning"));
    assert_int_equal(out[0], '{');
    assert_non_null(strstr(out, "\"stream\": \"typo:invalidations\""));
    assert_non_null(strstr(out, "\"live_hosts\": 0}\n"));
    assert_int_equal(strlen(out), (size_t)(strstr(out, "}\n") - out) + 2);
    snprintf(cmd, sizeof cmd,
             "%s --redis %s --stream typo:invalidations invalidate mod_good.lookup --all 2>&1 >/dev/null", MCCTL, addr);
    assert_int_equal(mct_run((const char *[]){"/bin/sh", "-c", cmd, NULL}, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "mcctl: warning: no live host reads typo:invalidations"));
    assert_null(strstr(out, "invalidated all entries"));

    /* Each host announced its functions' key shapes beside the stream: mcctl checks a KEY's
     * length against them and writes nothing when it is wrong. */
    mc_bus_shape sh;
    mc_error serr = {0};
    assert_int_equal(mc_bus_function_shape(addr, NULL, "mod_good.lookup", 2000, &sh, &serr), 0);
    assert_int_equal(sh.live_hosts, 2);
    assert_int_equal(sh.hosts, 2);
    assert_int_equal(sh.key_length, 1);
    assert_false(sh.tree);
    assert_false(sh.disagree);
    assert_int_equal(mc_bus_function_shape(addr, NULL, "mod_good.nosuch", 2000, &sh, &serr), 0);
    assert_int_equal(sh.live_hosts, 2);
    assert_int_equal(sh.hosts, 0);
    char xlen0[64], xlen1[64];
    assert_int_equal(mct_redis_cmd(redis.port, xlen0, sizeof xlen0, (const char *[]){"XLEN", "modcache:invalidations", NULL}), 0);
    assert_int_equal(mcctl("--redis", addr, "invalidate", "mod_good.lookup", "[1, 2]", NULL), 3);
    assert_non_null(strstr(out, "mcctl: refused KEY 1 of mod_good.lookup: it has 2 fields; mod_good.lookup takes 1 "
                                "(as the 2 live hosts reading modcache:invalidations registered it)"));
    assert_non_null(strstr(out, "nothing was sent"));
    assert_int_equal(mct_redis_cmd(redis.port, xlen1, sizeof xlen1, (const char *[]){"XLEN", "modcache:invalidations", NULL}), 0);
    assert_string_equal(xlen0, xlen1);
    /* A name no live host has registered: written (a host that is down may have it), with a
     * warning that its length was not checked. */
    assert_int_equal(mcctl("--redis", addr, "invalidate", "mod_good.nosuch", "[1, 2]", NULL), 0);
    assert_non_null(strstr(out, "mcctl: warning: none of the live hosts reading the stream has registered this "
                                "function (or announced it yet); the KEY length was not checked"));

    char url[64], tok[300];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", http_port[0]);
    snprintf(tok, sizeof tok, "%s/admin.token", dir);
    assert_int_equal(mcctl("--url", url, "--token-file", tok, "invalidate", "mod_good.lookup", "[2]", "--json", NULL), 0);
    assert_non_null(strstr(out, "{\"invalidated\": "));
    assert_non_null(strstr(out, "\"published\": true}"));
}

/* A host that stops announcing (here: stopped by a signal) drops out after three intervals and
 * comes back when it resumes; a clean stop withdraws at once. */
static void test_host_gone(void **state)
{
    (void)state;
    assert_true(wait_live(2));
    kill(hosts[1].pid, SIGSTOP);
    assert_true(wait_live(1));
    mc_bus_host *h = NULL;
    assert_int_equal(live(NULL, &h), 1);
    assert_string_equal(h[0].instance, "fleet-host-0");
    mc_bus_hosts_free(h);
    assert_int_equal(mcctl("--redis", addr, "invalidate", "mod_good.lookup", "--all", NULL), 0);
    assert_non_null(strstr(out, "on 1 live host reading"));
    kill(hosts[1].pid, SIGCONT);
    assert_true(wait_live(2));
    assert_int_equal(mct_finish(&hosts[1], SIGTERM), 0);
    free(hosts[1].log);
    hosts[1].pid = 0;
    /* No waiting for an expiry: the stop removed the announcement, and its functions. */
    h = NULL;
    assert_int_equal(live(NULL, &h), 1);
    mc_bus_hosts_free(h);
    char exists[64];
    assert_int_equal(mct_redis_cmd(redis.port, exists, sizeof exists,
                                   (const char *[]){"EXISTS", "modcache:invalidations:host:fleet-host-1:functions", NULL}),
                     0);
    assert_string_equal(exists, "0\n");
    mc_bus_shape sh;
    mc_error serr = {0};
    assert_int_equal(mc_bus_function_shape(addr, NULL, "mod_good.lookup", 2000, &sh, &serr), 0);
    assert_int_equal(sh.hosts, 1);
}

/* ---- a reader that falls behind announces its lag ---- */

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static bool held, released;

/* An invalidation callback that keeps the bus's reader thread until the test releases it. */
static void hold_reader(void *ud)
{
    (void)ud;
    pthread_mutex_lock(&hold_lock);
    held = true;
    pthread_cond_broadcast(&hold_cv);
    while (!released)
        pthread_cond_wait(&hold_cv, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
}

static int load_one(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "v", 1);
}

static const mc_bus_host *find(const mc_bus_host *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].instance, name))
            return &h[i];
    return NULL;
}

static void test_lag(void **state)
{
    (void)state;
    const char *stream = "fleet:lag";
    mc_registry *reg;
    assert_int_equal(mc_registry_create(NULL, &reg), 0);
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS("fleet.f", 100, .registry = reg), load_one, NULL, &fn), 0);
    mc_bus_options o;
    mc_bus_options_init(&o);
    o.address = addr;
    o.stream = stream;
    o.instance = "lagging";
    o.registry = reg;
    o.announce_interval_ms = 50;
    mc_bus *reader, *pub;
    mc_error err = {0};
    assert_int_equal(mc_bus_start(&o, &reader, &err), 0);
    o.registry = NULL; /* publish only: it announces nothing */
    o.instance = "publisher";
    assert_int_equal(mc_bus_start(&o, &pub, &err), 0);

    /* One entry applied, so that the reader has a position. */
    mc_bus_stats st;
    const char *k0[] = {"[0]"};
    for (int t = 0; t < 200; t++) {
        mc_bus_stats_get(reader, &st);
        if (st.link_up)
            break;
        sleep_ms(25);
    }
    assert_int_equal(mc_bus_publish_keys(pub, "fleet.f", k0, 1, &err), 0);
    assert_int_equal(mc_bus_flush(pub, 5000), 0);
    for (int t = 0; t < 200 && (mc_bus_stats_get(reader, &st), st.applied < 1); t++)
        sleep_ms(25);
    assert_int_equal(st.applied, 1);
    char position[48];
    snprintf(position, sizeof position, "%s", st.last_id);

    /* An entry whose invalidation runs hold_reader, then three more behind it. */
    mc_value *v;
    assert_int_equal(mc_cached_call_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, hold_reader, NULL, &v), 0);
    mc_value_release(v);
    const char *k1[] = {"[1]"}, *more[] = {"[2]", "[3]", "[4]"};
    assert_int_equal(mc_bus_publish_keys(pub, "fleet.f", k1, 1, &err), 0);
    assert_int_equal(mc_bus_flush(pub, 5000), 0);
    pthread_mutex_lock(&hold_lock);
    while (!held)
        pthread_cond_wait(&hold_cv, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    for (int i = 0; i < 3; i++) /* one stream entry each */
        assert_int_equal(mc_bus_publish_keys(pub, "fleet.f", &more[i], 1, &err), 0);
    assert_int_equal(mc_bus_flush(pub, 5000), 0);

    /* The announcement says: 4 entries after the position, the oldest waiting a while. */
    const mc_bus_host *me = NULL;
    mc_bus_host *h = NULL;
    size_t n = 0;
    for (int t = 0; t < 200; t++) {
        mc_bus_hosts_free(h);
        h = NULL;
        assert_int_equal(mc_bus_hosts_list(addr, stream, 2000, &h, &n, &err), 0);
        me = find(h, n, "lagging");
        if (me && me->lag_entries == 4 && me->lag_ms >= 100)
            break;
        sleep_ms(25);
    }
    assert_non_null(me);
    assert_null(find(h, n, "publisher"));
    assert_int_equal(me->lag_entries, 4);
    assert_true(me->lag_ms >= 100 && me->lag_ms < 60000);
    assert_string_equal(me->last_id, position);
    mc_bus_hosts_free(h);
    h = NULL;

    /* Released, it catches up, and says so. */
    pthread_mutex_lock(&hold_lock);
    released = true;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_lock);
    for (int t = 0; t < 200; t++) {
        mc_bus_hosts_free(h);
        h = NULL;
        assert_int_equal(mc_bus_hosts_list(addr, stream, 2000, &h, &n, &err), 0);
        me = find(h, n, "lagging");
        if (me && me->lag_entries == 0 && strcmp(me->last_id, position) != 0)
            break;
        sleep_ms(25);
    }
    assert_non_null(me);
    assert_int_equal(me->lag_entries, 0);
    assert_int_equal(me->lag_ms, 0);
    mc_bus_hosts_free(h);

    mc_bus_stop(pub);
    mc_bus_stop(reader);
    h = NULL;
    assert_int_equal(mc_bus_hosts_list(addr, stream, 2000, &h, &n, &err), 0);
    assert_int_equal(n, 0); /* withdrawn on stop */
    mc_bus_hosts_free(h);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

/* Errors: no Redis there, and usage. */
static void test_errors(void **state)
{
    (void)state;
    char nowhere[64];
    snprintf(nowhere, sizeof nowhere, "127.0.0.1:%u", mct_free_port());
    mc_bus_host *h = NULL;
    size_t n = 7;
    mc_error err = {0};
    assert_int_equal(mc_bus_hosts_list(nowhere, NULL, 500, &h, &n, &err), MC_EIO);
    assert_null(h);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.message, "cannot connect to Redis"));
    assert_int_equal(mcctl("--redis", nowhere, "--timeout", "500", "hosts", NULL), 6);
    assert_int_equal(mcctl("hosts", NULL), 2); /* needs --redis */
    assert_non_null(strstr(out, "give --redis HOST:PORT"));
    assert_int_equal(mcctl("--redis", addr, "hosts", "extra", NULL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_listed),
        cmocka_unit_test(test_invalidate_counts_readers),
        cmocka_unit_test(test_host_gone),
        cmocka_unit_test(test_lag),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
