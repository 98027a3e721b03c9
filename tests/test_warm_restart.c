/* Warm restarts: mchost with example_dept (a persistent function) and caches.snapshot against a
 * redis-server this test starts. An invalidation written to the stream while the host was down
 * is replayed (that key loads again, the others do not); the stream deleted while down, or
 * trimmed past the saved position, recreated, or another stream, means a cold start; so does a
 * damaged file; after kill -9 the last periodic snapshot is used, and checked against the
 * stream first; without a bus, a snapshot is restored only with trust_without_bus. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

#define FN "example_dept.get_department_for_user"
#define USERS "/_modcache/client/dept/v1/users/"
#define STREAM "modcache:invalidations"

static mct_redis redis;
static char dir[] = "/tmp/mc-warm-XXXXXX";
static char cfg[300], snap[300];
static mct_proc host;
static unsigned port;
static char out[65536];


/* The host's file: a periodic interval or none; the stream's name (NULL: the default); no bus
 * at all (local), then trusting the snapshot or not. */
static void write_config_full(const char *interval, const char *stream, bool local, bool trust)
{
    char text[2048], inv[512];
    if (local)
        snprintf(inv, sizeof inv, "invalidation:\n  backend: local\n");
    else
        snprintf(inv, sizeof inv,
                 "invalidation:\n  backend: redis\n  instance_name: warm\n"
                 "  redis: {address: 127.0.0.1:%u, stream: \"%s\", reconnect_min: 50ms, reconnect_max: 200ms}\n",
                 redis.port, stream ? stream : STREAM);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n"
             "caches:\n  snapshot: {path: %s%s%s%s}\n%s"
             "modules:\n  - module: %s\n    config: {database: %s/dept.db, seed_users: 50}\n",
             snap, interval ? ", interval: " : "", interval ? interval : "", trust ? ", trust_without_bus: true" : "",
             inv, DEPT_MODULE, dir);
    assert_int_equal(mct_write_file(cfg, text), 0);
}

static void write_config(const char *interval) { write_config_full(interval, NULL, false, false); }

static void start_host(void)
{
    memset(&host, 0, sizeof host);
    assert_int_equal(mct_spawn(&host, (const char *[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    if (!mct_wait_for(&host, 0, "serving HTTP on 127.0.0.1:", 20000))
        fail_msg("mchost did not start:\n%s", host.log);
    const char *at = strstr(host.log, "serving HTTP on 127.0.0.1:");
    assert_int_equal(sscanf(at + strlen("serving HTTP on 127.0.0.1:"), "%u", &port), 1);
}

static void stop_host(int sig)
{
    int st = mct_finish(&host, sig);
    if (sig == SIGTERM && st != 0)
        fail_msg("mchost exited with %d:\n%s", st, host.log);
    if (sig == SIGTERM && !strstr(host.log, "wrote "))
        fail_msg("no snapshot written at the clean stop:\n%s", host.log);
    free(host.log);
    host.log = NULL;
}

static bool logged(const char *needle) { mct_drain(&host); return strstr(host.log, needle) != NULL; }

/* The value of one sample of /metrics (the whole line's prefix given), or -1. */
static double metric(const char *sample)
{
    int st = mct_http(port, "GET", "/metrics", NULL, NULL, out, sizeof out);
    assert_int_equal(st, 200);
    size_t n = strlen(sample);
    for (const char *p = out; (p = strstr(p, sample)); p += n)
        if ((p == out || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static double loads(void) { return metric("modcache_cache_loads_total{cache=\"" FN "\"}"); }

/* GET user0 .. user<n-1>, each answered 200. */
static void get_users(int n)
{
    for (int i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof path, USERS "user%d", i);
        assert_int_equal(mct_http(port, "GET", path, NULL, NULL, out, sizeof out), 200);
    }
}

static void redis_cmd(const char *const *argv)
{
    char r[4096];
    assert_int_equal(mct_redis_cmd(redis.port, r, sizeof r, argv), 0);
    assert_null(strstr(r, "ERR:"));
}

/* An invalidation of one user from another host, written straight into the stream. */
static void publish_user(const char *user)
{
    char keys[64];
    snprintf(keys, sizeof keys, "[[\"%s\"]]", user);
    redis_cmd((const char *[]){"XADD", STREAM, "*", "v", "1", "instance", "elsewhere", "sender", "test-sender",
                               "cache", FN, "op", "keys", "keys", keys, NULL});
}

static void test_replay_while_down(void **state)
{
    (void)state;
    write_config(NULL);
    start_host();
    assert_true(logged("no snapshot at"));
    get_users(10);
    assert_int_equal(loads(), 10);
    stop_host(SIGTERM);

    publish_user("user3");
    start_host();
    if (!logged("restored 10 of 10 entries"))
        fail_msg("no restore:\n%s", host.log);
    assert_true(logged("replayed from"));
    get_users(10);
    /* Only the key invalidated while the host was down loaded again. */
    assert_int_equal(loads(), 1);
    assert_int_equal(metric("modcache_snapshot_restored_entries"), 10);
    assert_int_equal(metric("modcache_snapshot_discarded_total{reason=\"stream_deleted\"}"), 0);
    stop_host(SIGTERM);
}

static void test_stream_deleted_is_cold(void **state)
{
    (void)state;
    redis_cmd((const char *[]){"DEL", STREAM, NULL});
    start_host();
    if (!logged("discarded (stream_deleted)"))
        fail_msg("not discarded:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 10);
    assert_int_equal(metric("modcache_snapshot_discarded_total{reason=\"stream_deleted\"}"), 1);
    assert_int_equal(metric("modcache_snapshot_restored_entries"), 0);
    stop_host(SIGTERM);
}

static void test_damaged_file_is_cold(void **state)
{
    (void)state;
    FILE *f = fopen(snap, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, n / 2, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    start_host();
    if (!logged("refused (damaged)"))
        fail_msg("not refused:\n%s", host.log);
    assert_int_equal(mct_count(&host, "refused (damaged)"), 1);
    get_users(10);
    assert_int_equal(loads(), 10);
    assert_int_equal(metric("modcache_snapshot_discarded_total{reason=\"damaged\"}"), 1);
    stop_host(SIGTERM);
}

/* Wait for a periodic write that began after the output seen so far. */
static void wait_write(void)
{
    mct_drain(&host);
    size_t from = host.len;
    if (!mct_wait_for(&host, from, "wrote ", 5000))
        fail_msg("no periodic snapshot:\n%s", host.log);
    /* A write begun before `from` might be the one seen: wait for one more. */
    mct_drain(&host);
    if (!mct_wait_for(&host, host.len, "wrote ", 5000))
        fail_msg("no second periodic snapshot:\n%s", host.log);
}

static void test_kill9_uses_checked_periodic_snapshot(void **state)
{
    (void)state;
    unlink(snap); /* cold, to count this test's loads */
    write_config("1s");
    start_host();
    get_users(10);
    assert_int_equal(loads(), 10);
    wait_write();
    stop_host(SIGKILL);

    publish_user("user5");
    start_host();
    if (!logged("restored 10 of 10 entries"))
        fail_msg("no restore:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 1);
    wait_write();
    stop_host(SIGKILL);

    /* Entries after the saved position trimmed away while down: continuity cannot be proven. */
    publish_user("user6");
    publish_user("user7");
    redis_cmd((const char *[]){"XTRIM", STREAM, "MAXLEN", "0", NULL});
    start_host();
    if (!logged("discarded (stream_trimmed)"))
        fail_msg("not discarded:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 10);
    assert_int_equal(metric("modcache_snapshot_discarded_total{reason=\"stream_trimmed\"}"), 1);
    stop_host(SIGTERM);
}

/* The stream deleted and written again while down: another stream under the same key. */
static void test_recreated_stream_is_cold(void **state)
{
    (void)state;
    write_config(NULL);
    start_host();
    /* The stream was trimmed to nothing after the saved entry, the last one: nothing lost. */
    if (!logged("restored 10 of 10 entries"))
        fail_msg("no restore:\n%s", host.log);
    get_users(10);
    stop_host(SIGTERM); /* its position: the last entry of the trimmed stream, 3 added */
    redis_cmd((const char *[]){"DEL", STREAM, NULL});
    publish_user("user8");
    start_host();
    if (!logged("discarded (stream_recreated)"))
        fail_msg("not discarded:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 10);
    stop_host(SIGTERM);
}

/* The host reads another stream now: the saved position proves nothing about it. */
static void test_other_stream_is_cold(void **state)
{
    (void)state;
    write_config_full(NULL, "modcache:other", false, false);
    start_host();
    if (!logged("discarded (other_stream)"))
        fail_msg("not discarded:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 10);
    stop_host(SIGTERM);
}

/* Without a bus: restored only with trust_without_bus. */
static void test_without_bus(void **state)
{
    (void)state;
    write_config_full(NULL, NULL, true, false);
    start_host();
    if (!logged("discarded (no_bus)"))
        fail_msg("not discarded:\n%s", host.log);
    get_users(10);
    assert_int_equal(loads(), 10);
    assert_int_equal(metric("modcache_snapshot_discarded_total{reason=\"no_bus\"}"), 1);
    stop_host(SIGTERM);
    write_config_full(NULL, NULL, true, true);
    start_host();
    if (!logged("restored 10 of 10 entries"))
        fail_msg("not restored:\n%s", host.log);
    assert_true(logged("WITHOUT a bus"));
    get_users(10);
    assert_int_equal(loads(), 0);
    stop_host(SIGTERM);
}

/* ---- the bus's side in this process: mc_bus_position_get, resume, mc_bus_resume ---- */

static int load_x(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "x", 1);
}

static mc_bus *bus_at(unsigned rport, mc_registry *reg, const mc_bus_position *resume, unsigned max_staleness_ms)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", rport);
    mc_bus_options o;
    mc_bus_options_init(&o);
    o.address = addr;
    o.stream = "s.resume";
    o.registry = reg;
    o.resume = resume;
    o.max_staleness_ms = max_staleness_ms;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 50;
    o.timeout_ms = 500;
    mc_bus *bus = NULL;
    mc_error err = {0};
    assert_int_equal(mc_bus_start(&o, &bus, &err), 0);
    return bus;
}

/* A reader held for a restore is not stale however long the restore takes (max_staleness), and
 * resumes from the position taken before: what was written since is applied, the rest stays. */
static void test_bus_resume_in_process(void **state)
{
    (void)state;
    mc_registry *reg = NULL;
    assert_int_equal(mc_registry_create(NULL, &reg), 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "resume.fn";
    o.max_entries = 100;
    o.num_args = 1;
    o.registry = reg;
    o.persist = true;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, load_x, NULL, &fn), 0);

    redis_cmd((const char *[]){"XADD", "s.resume", "*", "v", "1", "sender", "t", "cache", "other", "op", "all", NULL});
    mc_bus *bus = bus_at(redis.port, reg, NULL, 0);
    mc_bus_position pos;
    int rc = MC_ENOENT;
    for (int i = 0; i < 200 && rc != 0; i++) {
        rc = mc_bus_position_get(bus, &pos);
        if (rc)
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(pos.stream, "s.resume");
    assert_int_equal(pos.entries_added, 1);
    mc_bus_stop(bus);

    /* Written while "down": a and b cached, a invalidated. */
    assert_int_equal(mc_cached_prefill(fn, (const mc_arg[]){MC_ARG_S("a")}, 1, "A", 1), 0);
    assert_int_equal(mc_cached_prefill(fn, (const mc_arg[]){MC_ARG_S("b")}, 1, "B", 1), 0);
    redis_cmd((const char *[]){"XADD", "s.resume", "*", "v", "1", "sender", "t", "cache", "resume.fn", "op", "keys",
                               "keys", "[[\"a\"]]", NULL});

    bus = bus_at(redis.port, reg, &pos, 200);
    mc_bus_position held;
    assert_int_equal(mc_bus_position_get(bus, &held), MC_ENOENT); /* not positioned while held */
    nanosleep(&(struct timespec){0, 600000000}, NULL);            /* three times max_staleness */
    const char *reason = "?";
    mc_error err = {0};
    assert_int_equal(mc_bus_resume(bus, 5000, &reason, &err), 0);
    assert_string_equal(reason, "");
    assert_int_equal(mc_bus_resume(bus, 100, &reason, &err), MC_EINVAL); /* once */
    mc_bus_stats st;
    mc_bus_stats_get(bus, &st);
    assert_int_equal(st.bypass_periods, 0);
    assert_int_equal(st.full_flushes, 0);
    assert_int_equal(st.applied, 1);
    unsigned char k[16];
    size_t klen;
    assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S("a")}, 1, k, sizeof k, &klen), 0);
    assert_false(mc_cache_contains(mc_cached_cache(fn), k, klen));
    assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S("b")}, 1, k, sizeof k, &klen), 0);
    assert_true(mc_cache_contains(mc_cached_cache(fn), k, klen));
    assert_int_equal(mc_bus_position_get(bus, &held), 0);
    assert_int_equal(held.entries_added, 2);
    mc_bus_stop(bus);

    /* Redis out of reach: the wait ends at its timeout, naming why. */
    unsigned dead = mct_free_port();
    bus = bus_at(dead, reg, &pos, 0);
    assert_int_equal(mc_bus_resume(bus, 300, &reason, &err), MC_ETIMEDOUT);
    assert_string_equal(reason, MC_BUS_RESUME_UNREACHABLE);
    mc_bus_stop(bus);

    /* A malformed position is refused at start. */
    mc_bus_position bad = pos;
    strcpy(bad.last_id, "not-an-id");
    mc_bus_options bo;
    mc_bus_options_init(&bo);
    bo.registry = reg;
    bo.resume = &bad;
    mc_bus *none = NULL;
    assert_int_equal(mc_bus_start(&bo, &none, &err), MC_EINVAL);
    assert_null(none);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(mct_redis_start(&redis, 0), 0);
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/host.yaml", dir);
    snprintf(snap, sizeof snap, "%s/host.snapshot", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (host.pid > 0 && host.log)
        mct_finish(&host, SIGKILL);
    mct_redis_stop(&redis, true);
    mct_redis_cleanup(&redis);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 0;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_while_down),
        cmocka_unit_test(test_stream_deleted_is_cold),
        cmocka_unit_test(test_damaged_file_is_cold),
        cmocka_unit_test(test_kill9_uses_checked_periodic_snapshot),
        cmocka_unit_test(test_recreated_stream_is_cold),
        cmocka_unit_test(test_other_stream_is_cold),
        cmocka_unit_test(test_without_bus),
        cmocka_unit_test(test_bus_resume_in_process),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
