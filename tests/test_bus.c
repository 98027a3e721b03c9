/* The invalidation bus against a real redis-server: buses in this process (two "hosts" with
 * their own registries), then mchost processes sharing a stream, through Redis outages,
 * restarts with and without the stream, trimming past a stalled host, and late starters. */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <modcache.h>

#include "proc.h"

#define FN_NAME "t.value"
#define WAIT_MS 15000

static mct_redis redis;

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL); }

/* Poll `cond` every 10 ms for up to ms milliseconds. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    ({                                                                                             \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < (ms) / 10 && !(ok_ = (cond)); i_++)                                  \
            sleep_ms(10);                                                                          \
        ok_ || (cond);                                                                             \
    })

/* ------------------------------------------------------------------ in-process "hosts" */

static _Atomic int db[64]; /* the "database": one version number per key */

typedef struct {
    mc_registry *reg;
    mc_cached *fn;
    mc_bus *bus;
    char log[8192];
    pthread_mutex_t log_lock;
} node;

static int load_version(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    assert_int_equal(nargs, 1);
    int v = atomic_load(&db[args[0].v.i]);
    return mc_load_set_copy(load, &v, sizeof v);
}

static void node_log(void *ud, int level, const char *msg)
{
    node *n = ud;
    (void)level;
    pthread_mutex_lock(&n->log_lock);
    size_t l = strlen(n->log);
    snprintf(n->log + l, sizeof n->log - l, "%s\n", msg);
    pthread_mutex_unlock(&n->log_lock);
}

static bool node_logged(node *n, const char *needle)
{
    pthread_mutex_lock(&n->log_lock);
    bool found = strstr(n->log, needle) != NULL;
    pthread_mutex_unlock(&n->log_lock);
    return found;
}

static void node_start(node *n, unsigned port, const char *stream, uint64_t maxlen, size_t queue_limit)
{
    memset(n, 0, sizeof *n);
    pthread_mutex_init(&n->log_lock, NULL);
    assert_int_equal(mc_registry_create(NULL, &n->reg), 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = FN_NAME;
    o.max_entries = 100;
    o.registry = n->reg;
    assert_int_equal(mc_cached_create(&o, load_version, NULL, &n->fn), 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    mc_bus_options bo;
    mc_bus_options_init(&bo);
    bo.address = addr;
    bo.stream = stream;
    bo.maxlen = maxlen;
    bo.registry = n->reg;
    bo.queue_limit = queue_limit;
    bo.backoff_min_ms = 20;
    bo.backoff_max_ms = 200;
    bo.timeout_ms = 500;
    bo.log = node_log;
    bo.log_ud = n;
    mc_error err = {0};
    assert_int_equal(mc_bus_start(&bo, &n->bus, &err), 0);
}

static void node_stop(node *n)
{
    mc_bus_stop(n->bus);
    mc_cached_destroy(n->fn);
    mc_registry_destroy(n->reg);
    pthread_mutex_destroy(&n->log_lock);
}

static int node_get(node *n, int key)
{
    mc_value *v = NULL;
    mc_arg a = mc_arg_int(key);
    assert_int_equal(mc_cached_call(n->fn, &a, 1, &v), 0);
    int out;
    memcpy(&out, mc_value_data(v), sizeof out);
    mc_value_release(v);
    return out;
}

static bool node_cached(node *n, int key)
{
    unsigned char k[32];
    size_t kl;
    mc_arg a = mc_arg_int(key);
    assert_int_equal(mc_key_encode(&a, 1, k, sizeof k, &kl), 0);
    return mc_cache_contains(mc_cached_cache(n->fn), k, kl);
}

/* What a host does on invalidate_cache: here, then the bus. */
static void node_invalidate(node *n, int key)
{
    mc_arg a = mc_arg_int(key);
    mc_cached_invalidate(n->fn, &a, 1);
    assert_int_equal(mc_bus_publish_args(n->bus, FN_NAME, &a, 1), 0);
}

/* The invalidations of n's function counted for one source. */
static uint64_t by_source(node *n, mc_invalidation_source source)
{
    mc_cached_stats cs;
    mc_cached_stats_get(n->fn, &cs);
    return cs.invalidations_by_source[source];
}

static mc_bus_stats stats(node *n)
{
    mc_bus_stats st;
    mc_bus_stats_get(n->bus, &st);
    return st;
}

static bool linked(node *n) { return stats(n).link_up; }

static int setup_redis(void **state)
{
    (void)state;
    memset(&redis, 0, sizeof redis);
    return mct_redis_start(&redis, 0);
}

static int teardown_redis(void **state)
{
    (void)state;
    mct_redis_stop(&redis, true);
    mct_redis_cleanup(&redis);
    return 0;
}

static void redis_cmd(char *out, size_t cap, const char *const *argv)
{
    assert_int_equal(mct_redis_cmd(redis.port, out, cap, argv), 0);
}

static void test_roundtrip(void **state)
{
    (void)state;
    node a, b;
    node_start(&a, redis.port, "s.roundtrip", 1000, 100);
    node_start(&b, redis.port, "s.roundtrip", 1000, 100);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    atomic_store(&db[1], 10);
    atomic_store(&db[2], 20);
    assert_int_equal(node_get(&a, 1), 10);
    assert_int_equal(node_get(&b, 1), 10);
    assert_int_equal(node_get(&b, 2), 20);

    /* One key: gone in b, reloaded with the new version; b's other key untouched. */
    atomic_store(&db[1], 11);
    node_invalidate(&a, 1);
    assert_true(WAIT_UNTIL(!node_cached(&b, 1), WAIT_MS));
    assert_int_equal(node_get(&b, 1), 11);
    assert_true(node_cached(&b, 2));
    assert_true(WAIT_UNTIL(stats(&a).own == 1, WAIT_MS));
    assert_int_equal(stats(&a).received, 0); /* its own entry is skipped, not applied */
    assert_int_equal(stats(&a).applied, 0);
    assert_int_equal(stats(&b).received, 1);
    /* Counted just after the entry went: it may lag the removal by a moment. */
    assert_true(WAIT_UNTIL(stats(&b).applied == 1, WAIT_MS));
    assert_true(WAIT_UNTIL(stats(&a).sent == 1, WAIT_MS)); /* counted when the reply is read */

    /* a's cache was invalidated locally only once: its entry read back did not apply again. */
    assert_int_equal(node_get(&a, 1), 11);
    mc_cached_stats cs;
    mc_cached_stats_get(a.fn, &cs);
    assert_int_equal(cs.invalidations, 1);
    /* By source (modcache_cache_invalidations_total): a's own call, b's application of it. */
    assert_int_equal(by_source(&a, MC_INVALIDATION_DIRECT), 1);
    assert_int_equal(by_source(&a, MC_INVALIDATION_BUS), 0);
    assert_true(WAIT_UNTIL(by_source(&b, MC_INVALIDATION_BUS) == 1, WAIT_MS));
    assert_int_equal(by_source(&b, MC_INVALIDATION_DIRECT), 0);
    assert_int_equal(by_source(&b, MC_INVALIDATION_FLUSH), 0);

    /* Keys in JSON form, several in one message; then "all". */
    assert_int_equal(node_get(&b, 3), 0);
    const char *keys[] = {"[2]", " [ 3 ] "};
    mc_error err = {0};
    assert_int_equal(mc_bus_publish_keys(a.bus, FN_NAME, keys, 2, &err), 0);
    assert_true(WAIT_UNTIL(!node_cached(&b, 2) && !node_cached(&b, 3), WAIT_MS));
    node_get(&b, 2);
    assert_int_equal(mc_bus_publish_all(a.bus, FN_NAME), 0);
    assert_true(WAIT_UNTIL(!node_cached(&b, 2), WAIT_MS));

    /* A bad key is refused before anything is queued. */
    const char *bad[] = {"[1]", "[1,"};
    assert_int_equal(mc_bus_publish_keys(a.bus, FN_NAME, bad, 2, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "key 1"));

    /* Unknown names and malformed entries are counted as ignored. */
    node_get(&b, 1);
    uint64_t ignored = stats(&b).ignored;
    assert_int_equal(mc_bus_publish_all(a.bus, "no.such.function"), 0);
    char out[256];
    redis_cmd(out, sizeof out, (const char *[]){"XADD", "s.roundtrip", "*", "v", "3", "cache", FN_NAME, "op", "all", NULL});
    redis_cmd(out, sizeof out, (const char *[]){"XADD", "s.roundtrip", "*", "v", "1", "cache", FN_NAME, NULL});
    redis_cmd(out, sizeof out, (const char *[]){"XADD", "s.roundtrip", "*", "v", "1", "cache", FN_NAME, "op", "keys", "keys", "[1", NULL});
    assert_true(WAIT_UNTIL(stats(&b).ignored == ignored + 4, WAIT_MS));
    assert_true(node_cached(&b, 1)); /* none of them invalidated anything */

    /* The entry format, as other tools see it. */
    redis_cmd(out, sizeof out, (const char *[]){"XRANGE", "s.roundtrip", "-", "+", "COUNT", "1", NULL});
    assert_non_null(strstr(out, "v\n1\ninstance\nmodcache\nsender\n"));
    assert_non_null(strstr(out, "cache\n" FN_NAME "\nop\nkeys\nkeys\n[[1]]\n"));
    node_stop(&a);
    node_stop(&b);
}

static void test_new_reader_does_not_replay(void **state)
{
    (void)state;
    node a, c;
    node_start(&a, redis.port, "s.late", 1000, 100);
    for (int i = 0; i < 5; i++)
        node_invalidate(&a, i);
    assert_int_equal(mc_bus_flush(a.bus, WAIT_MS), 0);
    assert_int_equal(stats(&a).sent, 5);
    node_start(&c, redis.port, "s.late", 1000, 100);
    assert_true(WAIT_UNTIL(linked(&c), WAIT_MS));
    node_get(&c, 7);
    node_invalidate(&a, 7);
    assert_true(WAIT_UNTIL(stats(&c).received == 1, WAIT_MS));
    assert_false(node_cached(&c, 7));
    sleep_ms(100);
    assert_int_equal(stats(&c).received, 1); /* the five older entries were never read */
    assert_int_equal(stats(&c).full_flushes, 0);
    node_stop(&a);
    node_stop(&c);
}

/* Redis goes away and comes back with its data: the reader resumes from its last id. */
static void test_outage_catch_up(void **state)
{
    (void)state;
    mct_redis r = {.persist = true};
    assert_int_equal(mct_redis_start(&r, 0), 0);
    node a, b;
    node_start(&a, r.port, "s.outage", 1000, 100);
    node_start(&b, r.port, "s.outage", 1000, 100);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    node_invalidate(&a, 9); /* the stream exists before the outage */
    assert_true(WAIT_UNTIL(stats(&b).received == 1, WAIT_MS));
    atomic_store(&db[4], 40);
    atomic_store(&db[5], 50);
    assert_int_equal(node_get(&b, 4), 40);
    assert_int_equal(node_get(&b, 5), 50);

    mct_redis_stop(&r, false);
    assert_true(WAIT_UNTIL(!linked(&b), WAIT_MS));
    atomic_store(&db[4], 41);
    node_invalidate(&a, 4);
    assert_true(stats(&a).queued >= 1);
    /* Hits are served from the cache meanwhile (the old value: the bus cannot reach b). */
    assert_int_equal(node_get(&b, 4), 40);
    assert_int_equal(mc_bus_flush(a.bus, 50), MC_ETIMEDOUT);

    assert_int_equal(mct_redis_start(&r, r.port), 0);
    if (!WAIT_UNTIL(!node_cached(&b, 4), WAIT_MS)) {
        mc_bus_stats sa = stats(&a), sb = stats(&b);
        fail_msg("b still caches key 4: a sent %llu queued %llu up %d; b received %llu applied %llu "
                 "catchups %llu flushes %llu up %d last %s\nlog a:\n%s\nlog b:\n%s",
                 (unsigned long long)sa.sent, (unsigned long long)sa.queued, sa.link_up,
                 (unsigned long long)sb.received, (unsigned long long)sb.applied,
                 (unsigned long long)sb.catchups, (unsigned long long)sb.full_flushes, sb.link_up, sb.last_id,
                 a.log, b.log);
    }
    assert_int_equal(node_get(&b, 4), 41);
    assert_true(node_cached(&b, 5)); /* resumed, not flushed */
    assert_true(stats(&b).catchups >= 1);
    assert_int_equal(stats(&b).full_flushes, 0);
    assert_int_equal(stats(&a).queued, 0);
    assert_true(node_logged(&b, "unreachable"));
    assert_true(WAIT_UNTIL(node_logged(&b, "reachable again"), WAIT_MS)); /* both threads back */
    node_stop(&a);
    node_stop(&b);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
}

/* Redis comes back empty: the stream is gone, so b cannot know what it missed and flushes. */
static void test_outage_stream_lost(void **state)
{
    (void)state;
    mct_redis r = {0};
    assert_int_equal(mct_redis_start(&r, 0), 0);
    node a, b;
    node_start(&a, r.port, "s.lost", 1000, 100);
    node_start(&b, r.port, "s.lost", 1000, 100);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    node_invalidate(&a, 9);
    assert_true(WAIT_UNTIL(stats(&b).received == 1, WAIT_MS));
    node_get(&b, 4);
    node_get(&b, 5);
    mct_redis_stop(&r, true);
    node_invalidate(&a, 4);
    assert_int_equal(mct_redis_start(&r, r.port), 0);
    assert_true(WAIT_UNTIL(stats(&b).full_flushes == 1, WAIT_MS));
    assert_false(node_cached(&b, 4));
    assert_false(node_cached(&b, 5));
    assert_true(node_logged(&b, "full flush"));
    /* The flush counts as its own source; a's invalidation of 9 as the bus's (and of 4 too, if
     * a resent it after b had positioned itself on the new stream). */
    assert_true(WAIT_UNTIL(by_source(&b, MC_INVALIDATION_FLUSH) == 1, WAIT_MS));
    assert_true(by_source(&b, MC_INVALIDATION_BUS) >= 1);
    assert_int_equal(by_source(&b, MC_INVALIDATION_DIRECT), 0);
    node_stop(&a);
    node_stop(&b);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
}

/* While Redis is unreachable the queue stays bounded by collapsing into "all" messages. A
 * reader whose first connection comes after it started flushes its caches then. */
static void test_queue_collapse_and_late_first_connection(void **state)
{
    (void)state;
    unsigned port = mct_free_port();
    node a, b;
    node_start(&a, port, "s.collapse", 1000, 4);
    node_start(&b, port, "s.collapse", 1000, 4);
    node_get(&b, 1);
    for (int i = 0; i < 10; i++)
        node_invalidate(&a, i);
    assert_int_equal(mc_bus_publish_all(a.bus, "other.function"), 0);
    mc_bus_stats st = stats(&a);
    assert_true(st.collapsed >= 1);
    assert_true(st.queued <= 4);
    assert_false(st.link_up);

    mct_redis r = {0};
    assert_int_equal(mct_redis_start(&r, port), 0);
    assert_int_equal(mc_bus_flush(a.bus, WAIT_MS), 0);
    char out[4096];
    assert_int_equal(mct_redis_cmd(port, out, sizeof out, (const char *[]){"XRANGE", "s.collapse", "-", "+", NULL}), 0);
    assert_non_null(strstr(out, "cache\n" FN_NAME "\nop\nall\n"));
    assert_non_null(strstr(out, "cache\nother.function\nop\nall\n"));
    assert_int_equal(mct_redis_cmd(port, out, sizeof out, (const char *[]){"XLEN", "s.collapse", NULL}), 0);
    assert_true(atoi(out) <= 4); /* never more than the queue's bound */
    assert_true(WAIT_UNTIL(stats(&b).full_flushes == 1, WAIT_MS));
    assert_false(node_cached(&b, 1));
    node_stop(&a);
    node_stop(&b);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
}

/* A flush waits for what was published before it, also when the queue collapses while it
 * waits: the "all" message standing for those invalidations keeps the earliest publish order
 * of the ones it replaced. During an outage the flush must time out, not report them sent. */
typedef struct {
    mc_bus *bus;
    int rc;
} flush_arg;

static void *flush_thread(void *p)
{
    flush_arg *f = p;
    f->rc = mc_bus_flush(f->bus, 1500);
    return NULL;
}

static void test_flush_waits_through_collapse(void **state)
{
    (void)state;
    unsigned port = mct_free_port(); /* nothing listens there: an outage from the start */
    node a;
    node_start(&a, port, "s.flushcollapse", 1000, 4);
    node_invalidate(&a, 1);
    node_invalidate(&a, 2);
    flush_arg f = {a.bus, 12345};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flush_thread, &f), 0);
    usleep(200 * 1000);
    for (int i = 3; i < 13; i++) /* past the queue's bound of 4: collapsed to one "all" */
        node_invalidate(&a, i);
    pthread_join(t, NULL);
    mc_bus_stats st = stats(&a);
    assert_true(st.collapsed >= 1);
    assert_int_equal(st.sent, 0);
    assert_int_equal(f.rc, MC_ETIMEDOUT);
    node_stop(&a);
}

/* A short stream trimmed on every write: a reader keeping up raises no false alarm; a reader
 * overrun (more entries written at once than the stream keeps) flushes. */
static void test_trimming(void **state)
{
    (void)state;
    char out[256];
    redis_cmd(out, sizeof out, (const char *[]){"CONFIG", "SET", "stream-node-max-entries", "4", NULL});
    node a, b;
    node_start(&a, redis.port, "s.trim", 8, 100000);
    node_start(&b, redis.port, "s.trim", 8, 100000);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    /* Bursts of 4 (half the stream's length), each read before the next. */
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < 4; i++)
            node_invalidate(&a, (round * 4 + i) % 64);
        assert_true(WAIT_UNTIL(stats(&b).received == (uint64_t)(round + 1) * 4 || stats(&b).full_flushes > 0, WAIT_MS));
    }
    assert_int_equal(stats(&b).received, 1200);
    assert_int_equal(stats(&b).full_flushes, 0);
    redis_cmd(out, sizeof out, (const char *[]){"XLEN", "s.trim", NULL});
    assert_true(atoi(out) < 100);

    /* 500 entries in one pipeline: most are trimmed before b can read them. */
    node_get(&b, 1);
    for (int i = 0; i < 500; i++)
        assert_int_equal(mc_bus_publish_all(a.bus, "some.other.function"), 0);
    assert_int_equal(mc_bus_flush(a.bus, WAIT_MS), 0);
    assert_true(WAIT_UNTIL(stats(&b).full_flushes == 1, WAIT_MS));
    assert_false(node_cached(&b, 1));
    assert_true(stats(&b).received < 1700);
    redis_cmd(out, sizeof out, (const char *[]){"CONFIG", "SET", "stream-node-max-entries", "100", NULL});
    node_stop(&a);
    node_stop(&b);
}

static size_t log_count(node *n, const char *needle)
{
    pthread_mutex_lock(&n->log_lock);
    size_t k = 0;
    for (const char *p = n->log; (p = strstr(p, needle)); p++)
        k++;
    pthread_mutex_unlock(&n->log_lock);
    return k;
}

/* The count in "(N invalidations resent in all)" of the line that ended a stream outage. */
static long long resent_in_line(node *n)
{
    pthread_mutex_lock(&n->log_lock);
    const char *p = strstr(n->log, "usable again after ");
    long long v = -1;
    p = p ? strchr(p, '(') : NULL;
    if (!p || sscanf(p, "(%lld invalidations resent in all)", &v) != 1)
        v = -1;
    pthread_mutex_unlock(&n->log_lock);
    return v;
}

/* The stream of node a is unusable and its invalidations wait: after several retries nothing
 * was dropped or counted as failed, one outage was counted, and its log has one line starting
 * the outage (`started`) and one naming the cause (`cause`: not one per retry). */
static void outage_held(node *a, const char *started, const char *cause)
{
    sleep_ms(300); /* several retries */
    mc_bus_stats sa = stats(a);
    assert_int_equal(sa.failed, 0);
    assert_true(sa.queued > 0);
    assert_int_equal(sa.stream_outages, 1);
    assert_int_equal(log_count(a, started), 1);
    assert_int_equal(log_count(a, cause), 1);
}

/* The stream of node a is usable again: its queue went out as resends, and the line ending the
 * outage counts every one of them. */
static void outage_ended(node *a, const char *stream)
{
    char line[200];
    snprintf(line, sizeof line, "stream %s usable again after ", stream);
    assert_true(WAIT_UNTIL(stats(a).stream_usable && stats(a).queued == 0, WAIT_MS));
    assert_true(stats(a).resent > 0);
    assert_true(WAIT_UNTIL(log_count(a, line) == 1, WAIT_MS));
    assert_int_equal(resent_in_line(a), (long long)stats(a).resent);
}

/* Working again: a's next invalidation of key k (now `value` in the database) reaches b, and
 * a never counted one as failed. */
static void works_again(node *a, node *b, int k, long value)
{
    atomic_store(&db[k], value);
    node_invalidate(a, k);
    assert_true(WAIT_UNTIL(!node_cached(b, k), WAIT_MS));
    assert_int_equal(node_get(b, k), value);
    assert_int_equal(stats(a).failed, 0);
}

/* The stream key replaced by a key of another type (WRONGTYPE) while two buses use it: an
 * outage like a lost link. Nothing is dropped (the sender keeps its messages queued), each
 * bus logs it once with its cause and once when it ends, the state shows in the stats, and
 * when the key is fixed the queued invalidations are written (counted as resent) and the
 * reader, which cannot prove it missed nothing, flushes. */
static void test_wrongtype_outage(void **state)
{
    (void)state;
    char out[256];
    node a, b;
    node_start(&a, redis.port, "s.wrongtype", 1000, 1000);
    node_start(&b, redis.port, "s.wrongtype", 1000, 1000);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    atomic_store(&db[5], 50);
    atomic_store(&db[6], 60);
    assert_int_equal(node_get(&b, 5), 50);
    assert_int_equal(node_get(&b, 6), 60);
    uint64_t flushes = stats(&b).full_flushes;

    redis_cmd(out, sizeof out, (const char *[]){"DEL", "s.wrongtype", NULL});
    redis_cmd(out, sizeof out, (const char *[]){"SET", "s.wrongtype", "not a stream", NULL});
    assert_true(WAIT_UNTIL(!stats(&b).stream_usable, WAIT_MS)); /* the reader sees it by itself */
    atomic_store(&db[5], 51);
    for (int i = 0; i < 200; i++)
        node_invalidate(&a, i % 2 ? 5 : 7);
    assert_true(WAIT_UNTIL(!stats(&a).stream_usable, WAIT_MS));
    outage_held(&a, "stream s.wrongtype unusable (", "WRONGTYPE");
    assert_int_equal(log_count(&b, "stream s.wrongtype unusable (reader: "), 1);
    assert_true(node_cached(&b, 6));

    /* Fixed: the queue goes out, b flushes (the stream was overwritten), both say it ended. */
    redis_cmd(out, sizeof out, (const char *[]){"DEL", "s.wrongtype", NULL});
    assert_true(WAIT_UNTIL(stats(&b).stream_usable, WAIT_MS));
    assert_true(WAIT_UNTIL(stats(&b).full_flushes == flushes + 1, WAIT_MS));
    assert_false(node_cached(&b, 6)); /* flushed: whatever it missed cannot be served */
    outage_ended(&a, "s.wrongtype");
    assert_true(WAIT_UNTIL(log_count(&b, "stream s.wrongtype usable again after ") == 1, WAIT_MS));
    assert_int_equal(node_get(&b, 5), 51);
    assert_int_equal(node_get(&b, 6), 60);
    works_again(&a, &b, 6, 61);
    node_stop(&a);
    node_stop(&b);
}

/* A persistent ERR reply: a stream whose last id is the largest possible refuses every XADD
 * with "ERR The stream has exhausted the last possible ID". The sender treats it as an outage
 * as it does WRONGTYPE: nothing dropped or counted as failed, one line with the cause, the
 * state in the stats; when the key is fixed the queue is written (counted as resent) and the
 * reader, whose position is past the new stream's end, flushes. */
static void test_persistent_err_outage(void **state)
{
    (void)state;
    char out[256];
    node a, b;
    node_start(&a, redis.port, "s.exhausted", 1000, 1000);
    node_start(&b, redis.port, "s.exhausted", 1000, 1000);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    atomic_store(&db[20], 200);
    assert_int_equal(node_get(&b, 20), 200);
    uint64_t flushes = stats(&b).full_flushes;

    redis_cmd(out, sizeof out,
              (const char *[]){"XADD", "s.exhausted", "18446744073709551615-18446744073709551615", "x", "y", NULL});
    atomic_store(&db[20], 201);
    for (int i = 0; i < 50; i++)
        node_invalidate(&a, 20);
    assert_true(WAIT_UNTIL(!stats(&a).stream_usable, WAIT_MS));
    outage_held(&a, "stream s.exhausted unusable (XADD: ERR The stream has exhausted", "exhausted the last possible ID");
    assert_true(node_cached(&b, 20)); /* b cannot have learnt of it */

    redis_cmd(out, sizeof out, (const char *[]){"DEL", "s.exhausted", NULL});
    outage_ended(&a, "s.exhausted");
    assert_true(WAIT_UNTIL(stats(&b).full_flushes > flushes, WAIT_MS));
    assert_true(WAIT_UNTIL(!node_cached(&b, 20), WAIT_MS));
    assert_int_equal(node_get(&b, 20), 201);
    works_again(&a, &b, 20, 202);
    node_stop(&a);
    node_stop(&b);
}

/* An ACL that denies XADD to the bus's user (NOPERM) makes the stream unusable for writing
 * until it is changed: an outage as above (one line with its cause, stream_usable false,
 * nothing dropped); when the ACL allows XADD again the queue is written and the other host,
 * whose reads never failed, applies it without flushing. */
static void test_noperm_outage(void **state)
{
    (void)state;
    char out[256];
    node a, b;
    node_start(&a, redis.port, "s.noperm", 1000, 1000);
    node_start(&b, redis.port, "s.noperm", 1000, 1000);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    atomic_store(&db[21], 210);
    assert_int_equal(node_get(&b, 21), 210);
    uint64_t flushes = stats(&b).full_flushes;

    redis_cmd(out, sizeof out, (const char *[]){"ACL", "SETUSER", "default", "-xadd", NULL});
    atomic_store(&db[21], 211);
    for (int i = 0; i < 20; i++)
        node_invalidate(&a, 21);
    assert_true(WAIT_UNTIL(!stats(&a).stream_usable, WAIT_MS));
    outage_held(&a, "stream s.noperm unusable (XADD: NOPERM ", "NOPERM");
    assert_true(node_cached(&b, 21));

    redis_cmd(out, sizeof out, (const char *[]){"ACL", "SETUSER", "default", "+xadd", NULL});
    outage_ended(&a, "s.noperm");
    assert_true(WAIT_UNTIL(!node_cached(&b, 21), WAIT_MS)); /* the resent entries, read as usual */
    assert_int_equal(node_get(&b, 21), 211);
    assert_int_equal(stats(&b).full_flushes, flushes);
    node_stop(&a);
    node_stop(&b);
}

/* Whatever test_noperm_outage left, the next tests write with every command allowed. */
static int allow_every_command(void **state)
{
    (void)state;
    char out[256];
    return mct_redis_cmd(redis.port, out, sizeof out, (const char *[]){"ACL", "SETUSER", "default", "+@all", NULL});
}

/* The stream deleted under a connected reader: the next writes recreate it; the reader notices
 * that entries it never read are gone and flushes. */
static void test_stream_deleted(void **state)
{
    (void)state;
    node a, b;
    node_start(&a, redis.port, "s.deleted", 1000, 100);
    node_start(&b, redis.port, "s.deleted", 1000, 100);
    assert_true(WAIT_UNTIL(linked(&a) && linked(&b), WAIT_MS));
    node_invalidate(&a, 1);
    assert_true(WAIT_UNTIL(stats(&b).received == 1, WAIT_MS));
    node_get(&b, 2);
    char out[256];
    redis_cmd(out, sizeof out, (const char *[]){"DEL", "s.deleted", NULL});
    assert_true(WAIT_UNTIL(stats(&b).full_flushes == 1, WAIT_MS));
    assert_false(node_cached(&b, 2));
    node_stop(&a);
    node_stop(&b);
}

static void test_bad_options(void **state)
{
    (void)state;
    mc_bus *bus = NULL;
    mc_error err = {0};
    mc_bus_options o;
    mc_bus_options_init(&o);
    o.address = "localhost:";
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    assert_non_null(strstr(err.message, "expected a port"));
    o.address = "local host";
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    o.address = "127.0.0.1:0";
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    o.address = "127.0.0.1:70000";
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    o.address = "127.0.0.1:6379";
    o.stream = "";
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    o.stream = "s";
    o.backoff_min_ms = 500;
    o.backoff_max_ms = 100;
    assert_int_equal(mc_bus_start(&o, &bus, &err), MC_EINVAL);
    assert_null(bus);
    assert_int_equal(mc_bus_publish_all(NULL, "x"), MC_EINVAL);

    /* Stopping a bus that never reached Redis, with messages queued: they are dropped. */
    mc_bus_options_init(&o);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", mct_free_port());
    o.address = addr;
    o.timeout_ms = 100;
    o.log = NULL;
    assert_int_equal(mc_bus_start(&o, &bus, &err), 0);
    assert_int_equal(mc_bus_publish_all(bus, "x"), 0);
    assert_int_equal(mc_bus_flush(bus, 10), MC_ETIMEDOUT);
    mc_bus_stop(bus);
}

/* ------------------------------------------------------------------ mchost processes */

typedef struct {
    mct_proc proc;
    unsigned port;
    char cfg[256];
} host;

static char dir[] = "/tmp/mc-bus-test-XXXXXX";

/* The "database" write: atomic (rename), so a loader never reads a half-written value. */
static void data_write(const char *key, const char *value)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/data/%s", dir, key);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(mct_write_file(tmp, value), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void host_start_with(host *h, int idx, unsigned redis_port, uint64_t maxlen, const char *extra)
{
    char text[2048];
    snprintf(h->cfg, sizeof h->cfg, "%s/host%d.yaml", dir, idx);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n  admin_token_file: %s/token\n"
             "invalidation:\n  backend: redis\n  instance_name: host%d\n%s"
             "  redis: {address: 127.0.0.1:%u, stream: hosts, maxlen: %" PRIu64 "%s}\n"
             "modules:\n  - module: %s/mod_bus.so\n    config: {dir: %s/data}\n",
             dir, idx, extra ? extra : "", redis_port, maxlen,
             extra ? ", reconnect_min: 20ms, reconnect_max: 200ms" : "", MODULE_DIR, dir);
    assert_int_equal(mct_write_file(h->cfg, text), 0);
    assert_int_equal(mct_spawn(&h->proc, (const char *[]){MCHOST, "-c", h->cfg, NULL}, NULL), 0);
    assert_true(mct_wait_for(&h->proc, 0, "serving HTTP on 127.0.0.1:", WAIT_MS));
    const char *p = strstr(h->proc.log, "serving HTTP on 127.0.0.1:");
    h->port = (unsigned)atoi(p + strlen("serving HTTP on 127.0.0.1:"));
    assert_true(h->port > 0);
}

static void host_start(host *h, int idx, unsigned redis_port, uint64_t maxlen)
{
    host_start_with(h, idx, redis_port, maxlen, NULL);
}

static void host_stop(host *h)
{
    assert_int_equal(mct_finish(&h->proc, SIGTERM), 0);
    free(h->proc.log);
}

/* The value the host serves for key (through its cache). */
static void host_value(host *h, const char *key, char *out, size_t cap)
{
    char path[256], body[1024];
    snprintf(path, sizeof path, "/_modcache/client/bus/v1/value/%s", key);
    assert_int_equal(mct_http(h->port, "GET", path, NULL, NULL, body, sizeof body), 200);
    const char *v = strstr(body, "\"value\": \"");
    assert_non_null(v);
    v += strlen("\"value\": \"");
    size_t n = strcspn(v, "\"");
    snprintf(out, cap, "%.*s", (int)n, v);
}

static bool host_cached(host *h, const char *key)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/_modcache/client/bus/v1/cached/%s", key);
    return mct_http(h->port, "GET", path, NULL, NULL, body, sizeof body) == 200 && strstr(body, "true");
}

static void host_invalidate(host *h, const char *key)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/_modcache/client/bus/v1/invalidate/%s", key);
    assert_int_equal(mct_http(h->port, "POST", path, NULL, NULL, body, sizeof body), 200);
}

static uint64_t host_metric(host *h, const char *name)
{
    static char body[65536];
    if (mct_http(h->port, "GET", "/metrics", NULL, NULL, body, sizeof body) != 200)
        return UINT64_MAX;
    char needle[128];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *p = strstr(body, needle);
    return p ? strtoull(p + strlen(needle), NULL, 10) : UINT64_MAX;
}

static bool value_is(host *h, const char *key, const char *want)
{
    char v[256];
    host_value(h, key, v, sizeof v);
    return !strcmp(v, want);
}

static int setup_hosts(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    char path[300];
    snprintf(path, sizeof path, "%s/data", dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/token", dir);
    return mct_write_file(path, "tok-for-the-bus-tests\n") == 0 ? chmod(path, 0600) : -1;
}

static int teardown_hosts(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Three hosts: an invalidation in one (module API, then admin API) reaches the other two; the
 * sender applies its own only once, locally. */
static void test_three_hosts(void **state)
{
    (void)state;
    host h[3];
    for (int i = 0; i < 3; i++)
        host_start(&h[i], i + 1, redis.port, 10000);
    for (int i = 0; i < 3; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    data_write("alice", "sales");
    for (int i = 0; i < 3; i++)
        assert_true(value_is(&h[i], "alice", "sales"));
    data_write("alice", "research");
    for (int i = 0; i < 3; i++)
        assert_true(value_is(&h[i], "alice", "sales")); /* cached */
    host_invalidate(&h[0], "alice");
    assert_true(value_is(&h[0], "alice", "research"));
    for (int i = 1; i < 3; i++) {
        assert_true(WAIT_UNTIL(!host_cached(&h[i], "alice"), WAIT_MS));
        assert_true(value_is(&h[i], "alice", "research"));
        /* Counted just after the entry went: it may lag the removal by a moment. */
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_applied_total") == 1, WAIT_MS));
    }
    assert_true(WAIT_UNTIL(host_metric(&h[0], "modcache_bus_own_total") == 1, WAIT_MS));
    assert_int_equal(host_metric(&h[0], "modcache_bus_applied_total"), 0);
    assert_int_equal(host_metric(&h[0], "modcache_bus_sent_total"), 1);

    /* The admin API of the second host reaches the first and the third. */
    data_write("alice", "legal");
    char body[512];
    assert_int_equal(mct_http(h[1].port, "POST", "/_modcache/admin/v1/caches/mod_bus.read/invalidate",
                              "Authorization: Bearer tok-for-the-bus-tests\r\n", "{\"keys\": [[\"alice\"]]}", body, sizeof body),
                     200);
    assert_non_null(strstr(body, "\"published\": true"));
    assert_true(WAIT_UNTIL(!host_cached(&h[0], "alice") && !host_cached(&h[2], "alice"), WAIT_MS));
    for (int i = 0; i < 3; i++)
        assert_true(value_is(&h[i], "alice", "legal"));
    for (int i = 0; i < 3; i++)
        host_stop(&h[i]);
}

static bool field_cached(host *h, const char *user, const char *field)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/_modcache/client/bus/v1/fcached/%s/%s", user, field);
    return mct_http(h->port, "GET", path, NULL, NULL, body, sizeof body) == 200 && strstr(body, "true");
}

static void field_load(host *h, const char *user, const char *field)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/_modcache/client/bus/v1/field/%s/%s", user, field);
    assert_int_equal(mct_http(h->port, "GET", path, NULL, NULL, body, sizeof body), 200);
    assert_true(field_cached(h, user, field));
}

/* Every (user, field) entry of both hosts loaded; returns nothing. */
static void fields_load_all(host *h, int n)
{
    for (int i = 0; i < n; i++) {
        field_load(&h[i], "u1", "name");
        field_load(&h[i], "u1", "mail");
        field_load(&h[i], "u2", "name");
    }
}

static int run_mcctl(const char *const *argv, char *out, size_t cap)
{
    return mct_run(argv, NULL, out, cap);
}

/* A tree function (user, field) on two hosts: a one-field tuple drops the user's subtree on
 * both, through the module API, the admin API, mcctl over HTTP and mcctl over Redis; tuples of
 * the wrong length are refused on each path and nothing is applied or sent. */
static void test_partial_keys_two_hosts(void **state)
{
    (void)state;
    host h[2];
    for (int i = 0; i < 2; i++)
        host_start(&h[i], i + 1, redis.port, 10000);
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    data_write("u1.name", "Ann");
    data_write("u1.mail", "ann@x");
    data_write("u2.name", "Bob");
    char body[1024], out[4096], addr[64], url[64];
    const char *auth = "Authorization: Bearer tok-for-the-bus-tests\r\n";
    snprintf(addr, sizeof addr, "127.0.0.1:%u", redis.port);

    /* Module API: invalidate_cache(field, ("u1",)). */
    fields_load_all(h, 2);
    assert_int_equal(mct_http(h[0].port, "POST", "/_modcache/client/bus/v1/finvalidate/u1", NULL, NULL, body, sizeof body), 200);
    assert_non_null(strstr(body, "MC_OK"));
    assert_false(field_cached(&h[0], "u1", "name"));
    assert_false(field_cached(&h[0], "u1", "mail"));
    assert_true(field_cached(&h[0], "u2", "name"));
    assert_true(WAIT_UNTIL(!field_cached(&h[1], "u1", "name") && !field_cached(&h[1], "u1", "mail"), WAIT_MS));
    assert_true(field_cached(&h[1], "u2", "name"));
    /* The entry says it carries a subtree (format version 2). */
    redis_cmd(out, sizeof out, (const char *[]){"XREVRANGE", "hosts", "+", "-", "COUNT", "1", NULL});
    assert_non_null(strstr(out, "v\n2\n"));
    assert_non_null(strstr(out, "cache\nmod_bus.field\nop\nkeys\nkeys\n[[\"u1\"]]\n"));

    /* Admin API on the second host: the answer counts what it removed there. */
    fields_load_all(h, 2);
    assert_int_equal(mct_http(h[1].port, "POST", "/_modcache/admin/v1/caches/mod_bus.field/invalidate", auth,
                              "{\"keys\": [[\"u2\"], [\"u1\", \"mail\"]]}", body, sizeof body),
                     200);
    assert_string_equal(body, "{\"invalidated\": 2, \"removed\": 2, \"published\": true}");
    assert_true(WAIT_UNTIL(!field_cached(&h[0], "u2", "name") && !field_cached(&h[0], "u1", "mail"), WAIT_MS));
    assert_true(field_cached(&h[0], "u1", "name"));
    assert_true(field_cached(&h[1], "u1", "name"));

    /* mcctl through the first host's admin API. */
    fields_load_all(h, 2);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", h[0].port);
    char tok[320];
    snprintf(tok, sizeof tok, "%s/token", dir);
    int rc = run_mcctl((const char *[]){MCCTL, "--url", url, "--token-file", tok, "invalidate", "mod_bus.field",
                                        "[\"u1\"]", NULL},
                       out, sizeof out);
    if (rc != 0)
        fail_msg("mcctl: %d\n%s", rc, out);
    assert_non_null(strstr(out, "invalidated 1 key of mod_bus.field at "));
    assert_non_null(strstr(out, "(2 entries removed there), which published it"));
    assert_true(WAIT_UNTIL(!field_cached(&h[1], "u1", "name") && !field_cached(&h[1], "u1", "mail"), WAIT_MS));
    assert_true(field_cached(&h[1], "u2", "name"));

    /* mcctl straight onto the stream: every host drops the subtree. mcctl read the function's
     * shape from the hosts' announcements, so the entry says it carries a subtree. */
    fields_load_all(h, 2);
    rc = run_mcctl((const char *[]){MCCTL, "--redis", addr, "--stream", "hosts", "invalidate", "mod_bus.field",
                                    "[\"u2\"]", NULL},
                   out, sizeof out);
    if (rc != 0)
        fail_msg("mcctl --redis: %d\n%s", rc, out);
    assert_null(strstr(out, "warning"));
    char last[4096];
    redis_cmd(last, sizeof last, (const char *[]){"XREVRANGE", "hosts", "+", "-", "COUNT", "1", NULL});
    assert_non_null(strstr(last, "v\n2\n"));
    assert_non_null(strstr(last, "cache\nmod_bus.field\nop\nkeys\nkeys\n[[\"u2\"]]\n"));
    for (int i = 0; i < 2; i++) {
        assert_true(WAIT_UNTIL(!field_cached(&h[i], "u2", "name"), WAIT_MS));
        assert_true(field_cached(&h[i], "u1", "name"));
    }

    /* Wrong lengths, on every path: refused, nothing applied, nothing sent. */
    fields_load_all(h, 2);
    uint64_t sent0 = host_metric(&h[0], "modcache_bus_sent_total"), sent1 = host_metric(&h[1], "modcache_bus_sent_total");
    assert_int_equal(mct_http(h[0].port, "POST", "/_modcache/client/bus/v1/finvalidate/u1/name/x", NULL, NULL, body,
                              sizeof body),
                     200);
    assert_non_null(strstr(body, "MC_EINVAL"));
    assert_int_equal(mct_http(h[1].port, "POST", "/_modcache/admin/v1/caches/mod_bus.field/invalidate", auth,
                              "{\"keys\": [[\"u1\"], [\"u1\", \"name\", \"x\"]]}", body, sizeof body),
                     400);
    assert_string_equal(body, "{\"error\": \"key 1 has 3 fields; mod_bus.field takes 2 (or fewer, for a subtree)\"}");
    assert_int_equal(mct_http(h[1].port, "POST", "/_modcache/admin/v1/caches/mod_bus.read/invalidate", auth,
                              "{\"keys\": [[\"u1\", \"name\"]]}", body, sizeof body),
                     400); /* not a tree: a longer tuple is refused too */
    assert_non_null(strstr(body, "key 0 has 2 fields; mod_bus.read takes 1\""));
    rc = run_mcctl((const char *[]){MCCTL, "--url", url, "--token-file", tok, "invalidate", "mod_bus.field",
                                    "[\"u1\", \"name\", \"x\"]", NULL},
                   out, sizeof out);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out, "refused KEY 1 of mod_bus.field: it has 3 fields"));
    uint64_t ign0 = host_metric(&h[0], "modcache_bus_ignored_total"), ign1 = host_metric(&h[1], "modcache_bus_ignored_total");
    char len_before[64], len_after[64];
    redis_cmd(len_before, sizeof len_before, (const char *[]){"XLEN", "hosts", NULL});
    rc = run_mcctl((const char *[]){MCCTL, "--redis", addr, "--stream", "hosts", "invalidate", "mod_bus.field",
                                    "[\"u1\", \"name\", \"x\"]", NULL},
                   out, sizeof out);
    assert_int_equal(rc, 3); /* checked against the shape the live hosts announced */
    assert_non_null(strstr(out, "refused KEY 1 of mod_bus.field: it has 3 fields; mod_bus.field takes 2 (or fewer, "
                                "for a subtree) (as the 2 live hosts reading hosts registered it)"));
    assert_non_null(strstr(out, "nothing was sent"));
    rc = run_mcctl((const char *[]){MCCTL, "--redis", addr, "--stream", "hosts", "invalidate", "mod_bus.read",
                                    "[\"u1\", \"name\"]", NULL},
                   out, sizeof out);
    assert_int_equal(rc, 3); /* not a tree: a longer tuple is refused too */
    assert_non_null(strstr(out, "refused KEY 1 of mod_bus.read: it has 2 fields; mod_bus.read takes 1 (as"));
    redis_cmd(len_after, sizeof len_after, (const char *[]){"XLEN", "hosts", NULL});
    assert_string_equal(len_before, len_after); /* nothing written */
    assert_int_equal(host_metric(&h[0], "modcache_bus_ignored_total"), ign0);
    assert_int_equal(host_metric(&h[1], "modcache_bus_ignored_total"), ign1);
    for (int i = 0; i < 2; i++) {
        assert_true(field_cached(&h[i], "u1", "name"));
        assert_true(field_cached(&h[i], "u1", "mail"));
        assert_true(field_cached(&h[i], "u2", "name"));
    }
    assert_int_equal(host_metric(&h[0], "modcache_bus_sent_total"), sent0);
    assert_int_equal(host_metric(&h[1], "modcache_bus_sent_total"), sent1);
    /* The module's refused call is in its host's log. */
    assert_true(mct_wait_for(&h[0].proc, 0, "invalidation of mod_bus.field refused: key 0 has 3 fields", WAIT_MS));
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
}

/* Redis stopped while invalidations happen, then restarted with its data (catch-up), and then
 * without it (full flush): afterwards no host serves a value invalidated during the outage. */
static void test_hosts_through_redis_restarts(void **state)
{
    (void)state;
    mct_redis r = {.persist = true};
    assert_int_equal(mct_redis_start(&r, 0), 0);
    host h[2];
    for (int i = 0; i < 2; i++)
        host_start(&h[i], 10 + i, r.port, 10000);
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    data_write("k1", "a1");
    data_write("k2", "a2");
    host_invalidate(&h[0], "warmup"); /* the stream exists before the outage */
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_applied_total") == 1, WAIT_MS));
    for (int i = 0; i < 2; i++)
        assert_true(value_is(&h[i], "k1", "a1") && value_is(&h[i], "k2", "a2"));

    mct_redis_stop(&r, false);
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_link_up") == 0, WAIT_MS));
    data_write("k1", "b1");
    host_invalidate(&h[0], "k1");
    assert_true(value_is(&h[1], "k1", "a1")); /* still served from the cache meanwhile */
    assert_int_equal(mct_redis_start(&r, r.port), 0);
    assert_true(WAIT_UNTIL(!host_cached(&h[1], "k1"), WAIT_MS));
    assert_true(value_is(&h[1], "k1", "b1"));
    assert_true(host_cached(&h[1], "k2")); /* caught up, not flushed */
    assert_true(host_metric(&h[1], "modcache_bus_catchups_total") >= 1);
    assert_int_equal(host_metric(&h[1], "modcache_bus_full_flushes_total"), 0);

    /* Now Redis comes back empty. */
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
    r.persist = false;
    data_write("k2", "b2");
    host_invalidate(&h[0], "k2");
    assert_int_equal(mct_redis_start(&r, r.port), 0);
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_full_flushes_total") == 1, WAIT_MS));
    assert_true(value_is(&h[1], "k2", "b2"));
    assert_true(mct_wait_for(&h[1].proc, 0, "full flush", WAIT_MS));
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
}

/* A host stalled (SIGSTOP) while the stream is trimmed past its position flushes when it wakes. */
static void test_stalled_host_trimmed_past(void **state)
{
    (void)state;
    char out[256];
    redis_cmd(out, sizeof out, (const char *[]){"CONFIG", "SET", "stream-node-max-entries", "2", NULL});
    redis_cmd(out, sizeof out, (const char *[]){"DEL", "hosts", NULL});
    host h[2];
    for (int i = 0; i < 2; i++)
        host_start(&h[i], 20 + i, redis.port, 4);
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    data_write("t", "old");
    assert_true(value_is(&h[1], "t", "old"));
    kill(h[1].proc.pid, SIGSTOP);
    /* The first entry may still reach the stalled host (its blocked XREAD was answered into its
     * socket); the one about "t" comes after it and is trimmed before the host reads on. */
    host_invalidate(&h[0], "x-first");
    data_write("t", "new");
    host_invalidate(&h[0], "t");
    char key[16];
    for (int i = 0; i < 39; i++) {
        snprintf(key, sizeof key, "x%d", i);
        host_invalidate(&h[0], key);
    }
    assert_true(WAIT_UNTIL(host_metric(&h[0], "modcache_bus_sent_total") == 41, WAIT_MS));
    kill(h[1].proc.pid, SIGCONT);
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_full_flushes_total") == 1, WAIT_MS));
    assert_true(value_is(&h[1], "t", "new"));
    redis_cmd(out, sizeof out, (const char *[]){"CONFIG", "SET", "stream-node-max-entries", "100", NULL});
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
}

/* A host started after invalidations were written does not replay them. */
static void test_late_host(void **state)
{
    (void)state;
    char out[256];
    redis_cmd(out, sizeof out, (const char *[]){"DEL", "hosts", NULL});
    host h[2];
    host_start(&h[0], 30, redis.port, 10000);
    assert_true(WAIT_UNTIL(host_metric(&h[0], "modcache_bus_link_up") == 1, WAIT_MS));
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "old%d", i);
        host_invalidate(&h[0], key);
    }
    assert_true(WAIT_UNTIL(host_metric(&h[0], "modcache_bus_sent_total") == 10, WAIT_MS));
    host_start(&h[1], 31, redis.port, 10000);
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_link_up") == 1, WAIT_MS));
    data_write("late", "v1");
    assert_true(value_is(&h[1], "late", "v1"));
    data_write("late", "v2");
    host_invalidate(&h[0], "late");
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_received_total") == 1, WAIT_MS));
    assert_true(value_is(&h[1], "late", "v2"));
    assert_int_equal(host_metric(&h[1], "modcache_bus_full_flushes_total"), 0);
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
}

/* The checker process: reads the keys from a host in a loop until SIGTERM and fails (exit 1)
 * on any read older than one it saw before: a value loaded before an invalidation must never be
 * served after a newer one. Exit 0 when told to stop after at least one read. */
/* Told to stop by the parent closing `stop_fd`'s other end (a pipe, not a signal: signals
 * reach a child forked from a ThreadSanitizer process only at points it chooses, which a
 * busy loop may never reach), and killed with the parent if the parent dies. */
static bool checker_told_to_stop(int stop_fd)
{
    struct pollfd p = {.fd = stop_fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static int checker_main(unsigned port, int nkeys, int stop_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    long last[8] = {0};
    unsigned long reads = 0;
    while (!checker_told_to_stop(stop_fd)) {
        for (int k = 0; k < nkeys && !checker_told_to_stop(stop_fd); k++) {
            char path[128], body[512];
            snprintf(path, sizeof path, "/_modcache/client/bus/v1/value/kill%d", k);
            if (mct_http(port, "GET", path, NULL, NULL, body, sizeof body) != 200)
                continue;
            const char *v = strstr(body, "\"value\": \"");
            if (!v)
                continue;
            long ver = strtol(v + strlen("\"value\": \""), NULL, 10);
            if (ver < last[k]) {
                fprintf(stderr, "checker: key kill%d went back from %ld to %ld\n", k, last[k], ver);
                return 1;
            }
            last[k] = ver;
            reads++;
        }
    }
    fprintf(stderr, "checker: %lu reads\n", reads);
    return reads > 0 ? 0 : 2;
}

/* Redis killed (SIGKILL) and restarted in a loop, alternately keeping its data and losing it,
 * while one host writes new versions and invalidates: a checker process reading from the other
 * host never sees a version go back, and after each restart the other host converges. */
static void test_redis_kill_loop(void **state)
{
    (void)state;
    enum { NKEYS = 4, ROUNDS = 6 };
    mct_redis r = {.persist = true};
    assert_int_equal(mct_redis_start(&r, 0), 0);
    host h[2];
    for (int i = 0; i < 2; i++)
        host_start(&h[i], 40 + i, r.port, 10000);
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    long version = 1;
    char key[16], val[32];
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof key, "kill%d", k);
        snprintf(val, sizeof val, "%ld", version);
        data_write(key, val);
    }
    int stop[2];
    /* Close-on-exec: the redis-server processes started later must not hold the write end
     * open, or the checker never sees it close. */
    assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
    pid_t checker = fork();
    assert_true(checker >= 0);
    if (checker == 0) {
        close(stop[1]);
        _exit(checker_main(h[1].port, NKEYS, stop[0]));
    }
    close(stop[0]);

    for (int round = 0; round < ROUNDS; round++) {
        /* Writes with Redis up, then Redis killed in the middle of more writes. */
        for (int i = 0; i < 20; i++) {
            version++;
            int k = i % NKEYS;
            snprintf(key, sizeof key, "kill%d", k);
            snprintf(val, sizeof val, "%ld", version);
            data_write(key, val);
            host_invalidate(&h[0], key);
            if (i == 10)
                mct_redis_stop(&r, true);
        }
        if (round % 2 == 1) { /* this time Redis comes back without its data */
            mct_redis_cleanup(&r);
            r.persist = round % 4 != 1;
        }
        assert_int_equal(mct_redis_start(&r, r.port), 0);
        for (int i = 0; i < 2; i++)
            assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
        /* After reconnection the other host serves the last version of every key. */
        for (int k = 0; k < NKEYS; k++) {
            char want[32];
            long last_of_k = version - ((version - 2 - k) % NKEYS + NKEYS) % NKEYS;
            snprintf(key, sizeof key, "kill%d", k);
            snprintf(want, sizeof want, "%ld", last_of_k);
            if (!WAIT_UNTIL(value_is(&h[1], key, want), WAIT_MS)) {
                char got[64];
                host_value(&h[1], key, got, sizeof got);
                fail_msg("round %d: host 2 serves %s=%s, want %s", round, key, got, want);
            }
        }
    }
    close(stop[1]);
    int status = 0;
    waitpid(checker, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(host_metric(&h[1], "modcache_bus_catchups_total") >= 1);
    assert_true(host_metric(&h[1], "modcache_bus_full_flushes_total") >= 1);
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);
}

/* ------------------------------------------------------------------ churn under real traffic */

/* Admin API requests (over HTTP) and bus entries (from another process's point of view: a
 * publish-only bus) invalidate functions by name while "modules" (registry scopes and their
 * functions) are created and destroyed under them, in both orders. Run under ASan and TSan. */
struct churn_traffic {
    unsigned port;
    mc_bus *publisher;
    _Atomic bool stop;
    _Atomic long answers, published;
};

static const char *const churn_fn[] = {"churn.a", "churn.b"};

static void *admin_traffic(void *arg)
{
    struct churn_traffic *c = arg;
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        char path[128], body[512];
        snprintf(path, sizeof path, "/_modcache/admin/v1/caches/%s/invalidate", churn_fn[i % 2]);
        const char *req = i % 3 ? "{\"keys\": [[\"u1\"], [\"u2\", \"x\"]]}" : "{\"all\": true}";
        int st = mct_http(c->port, "POST", path, "Authorization: Bearer churn-token-0123456789\r\n", req, body,
                          sizeof body);
        assert_true(st == 200 || st == 404);
        atomic_fetch_add(&c->answers, 1);
    }
    return NULL;
}

static void *bus_traffic(void *arg)
{
    struct churn_traffic *c = arg;
    const char *keys[] = {"[\"u1\"]"};
    mc_error err = {0};
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        assert_int_equal(i % 2 ? mc_bus_publish_keys(c->publisher, churn_fn[i % 2], keys, 1, &err)
                               : mc_bus_publish_all(c->publisher, churn_fn[i % 2]),
                         0);
        atomic_fetch_add(&c->published, 1);
        if (i % 64 == 0)
            sleep_ms(1);
    }
    return NULL;
}

static void test_invalidations_while_functions_churn(void **state)
{
    (void)state;
    node n;
    node_start(&n, redis.port, "s.churn", 100000, 100000); /* its registry and reading bus */
    mc_host_options ho;
    mc_host_options_init(&ho);
    ho.registry = n.reg;
    ho.bus = n.bus;
    mc_host *mh;
    assert_int_equal(mc_host_create(&ho, &mh), 0);
    mc_error err = {0};
    assert_int_equal(mc_host_http_start(mh, "127.0.0.1:0", 4096, "churn-token-0123456789", &err), 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", redis.port);
    mc_bus_options bo;
    mc_bus_options_init(&bo);
    bo.address = addr;
    bo.stream = "s.churn";
    bo.queue_limit = 100000;
    struct churn_traffic c = {.port = mc_host_http_port(mh)};
    assert_int_equal(mc_bus_start(&bo, &c.publisher, &err), 0);
    assert_true(WAIT_UNTIL(linked(&n), WAIT_MS));
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[0], NULL, admin_traffic, &c), 0);
    assert_int_equal(pthread_create(&t[1], NULL, admin_traffic, &c), 0);
    assert_int_equal(pthread_create(&t[2], NULL, bus_traffic, &c), 0);
    uint64_t applied0 = stats(&n).applied;
    for (int round = 0; round < 200; round++) {
        mc_registry *scope;
        assert_int_equal(mc_registry_scope_create(n.reg, &scope), 0);
        mc_registry_scope_open(scope, true);
        mc_cached *f[2];
        for (int i = 0; i < 2; i++) {
            mc_cached_options o;
            mc_cached_options_init(&o);
            o.name = churn_fn[i];
            o.max_entries = 100;
            o.num_args = 2;
            o.tree = true;
            o.registry = scope;
            assert_int_equal(mc_cached_create(&o, load_version, NULL, &f[i]), 0);
        }
        mc_registry_scope_open(scope, false);
        sleep_ms(round % 4 == 0 ? 5 : 1);
        if (round % 2) {
            mc_registry_scope_destroy(scope);
            mc_cached_destroy(f[0]);
            mc_cached_destroy(f[1]);
        } else {
            mc_cached_destroy(f[1]);
            mc_registry_scope_destroy(scope);
            mc_cached_destroy(f[0]);
        }
    }
    atomic_store(&c.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    print_message("churn: %ld admin answers, %ld published, %" PRIu64 " applied from the stream\n",
                  atomic_load(&c.answers), atomic_load(&c.published), stats(&n).applied - applied0);
    assert_true(atomic_load(&c.answers) > 0);
    assert_true(stats(&n).applied > applied0 || stats(&n).ignored > 0);
    mc_bus_stop(c.publisher);
    mc_host_destroy(mh);
    node_stop(&n);
}

/* ------------------------------------------------------------------ bounded staleness */

/* In process: the stream made unusable under a bus with max_staleness: past 3/4 of it the
 * function bypasses its cache (every call loads, concurrent calls of a key still share one
 * load, nothing is stored); once the stream is usable and read to its tail the cache is
 * flushed and used again. */
static void test_bypass_when_unconfirmed(void **state)
{
    (void)state;
    char out[256];
    node n;
    memset(&n, 0, sizeof n);
    pthread_mutex_init(&n.log_lock, NULL);
    assert_int_equal(mc_registry_create(NULL, &n.reg), 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = FN_NAME;
    o.max_entries = 100;
    o.num_args = 1;
    o.registry = n.reg;
    assert_int_equal(mc_cached_create(&o, load_version, NULL, &n.fn), 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", redis.port);
    mc_bus_options bo;
    mc_bus_options_init(&bo);
    bo.address = addr;
    bo.stream = "s.stale";
    bo.registry = n.reg;
    bo.backoff_min_ms = 20;
    bo.backoff_max_ms = 100;
    bo.timeout_ms = 500;
    bo.max_staleness_ms = 400;
    bo.log = node_log;
    bo.log_ud = &n;
    mc_error err = {0};
    assert_int_equal(mc_bus_start(&bo, &n.bus, &err), 0);
    assert_true(WAIT_UNTIL(linked(&n), WAIT_MS));
    atomic_store(&db[9], 90);
    assert_int_equal(node_get(&n, 9), 90);
    sleep_ms(600); /* connected and quiet: confirmed all along, no bypass */
    assert_false(stats(&n).bypassing);
    assert_int_equal(node_get(&n, 9), 90);
    mc_cached_stats cs;
    mc_cached_stats_get(n.fn, &cs);
    uint64_t loads = cs.loads;

    redis_cmd(out, sizeof out, (const char *[]){"SET", "s.stale", "not a stream", NULL});
    assert_true(WAIT_UNTIL(stats(&n).bypassing, WAIT_MS));
    assert_true(mc_cached_bypassing(n.fn));
    assert_true(mc_registry_bypassing(n.reg));
    assert_true(stats(&n).unconfirmed_ms >= 300);
    atomic_store(&db[9], 91); /* changed while the host cannot learn of it */
    assert_int_equal(node_get(&n, 9), 91); /* not the cached 90 */
    assert_int_equal(node_get(&n, 9), 91);
    mc_cached_stats_get(n.fn, &cs);
    assert_int_equal(cs.loads, loads + 2); /* every call loaded */
    assert_true(mc_cached_bypassed_calls(n.fn) >= 2);
    assert_true(node_logged(&n, "registered functions bypass their caches"));

    redis_cmd(out, sizeof out, (const char *[]){"DEL", "s.stale", NULL});
    assert_true(WAIT_UNTIL(!stats(&n).bypassing, WAIT_MS));
    assert_false(mc_cached_bypassing(n.fn));
    assert_true(node_logged(&n, "current again with the stream: caches flushed"));
    assert_false(node_cached(&n, 9)); /* flushed on the way out */
    assert_int_equal(node_get(&n, 9), 91);
    mc_cached_stats_get(n.fn, &cs);
    uint64_t after = cs.loads;
    assert_int_equal(node_get(&n, 9), 91);
    mc_cached_stats_get(n.fn, &cs);
    assert_int_equal(cs.loads, after); /* a hit again */
    assert_int_equal(stats(&n).bypass_periods, 1);
    node_stop(&n);
}

/* The bound against real faults. Two mchost processes with max_staleness: 2s; the test writes
 * new versions of a few keys and invalidates them through the first host; a checker process
 * reads the second host as fast as it can and records when each read started and what it got.
 * Meanwhile Redis is broken three ways: the stream key replaced by a string for 3 s, the server
 * stopped (SIGSTOP) for 10 s, and killed and restarted without its data. Afterwards no read may
 * have returned a version older than one invalidated more than max_staleness before the read
 * began. */
enum { STALE_KEYS = 3, STALE_MAX_WRITES = 4096 };
#define STALE_BOUND_MS 2000

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int stale_checker_main(unsigned port, const char *outpath, int stop_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    FILE *f = fopen(outpath, "w");
    if (!f)
        return 3;
    unsigned long reads = 0;
    while (!checker_told_to_stop(stop_fd)) {
        for (int k = 0; k < STALE_KEYS; k++) {
            char path[128], body[512];
            snprintf(path, sizeof path, "/_modcache/client/bus/v1/value/stale%d", k);
            long long t = mono_ms();
            if (mct_http(port, "GET", path, NULL, NULL, body, sizeof body) != 200)
                continue;
            const char *v = strstr(body, "\"value\": \"");
            if (!v)
                continue;
            fprintf(f, "%lld %d %ld\n", t, k, strtol(v + strlen("\"value\": \""), NULL, 10));
            reads++;
        }
    }
    fclose(f);
    return reads > 0 ? 0 : 2;
}

static void test_bounded_staleness_under_faults(void **state)
{
    (void)state;
    mct_redis r = {.persist = false};
    assert_int_equal(mct_redis_start(&r, 0), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", r.port);
    host h[2];
    for (int i = 0; i < 2; i++)
        host_start_with(&h[i], 50 + i, r.port, 10000, "  max_staleness: 2s\n");
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    static long long written_at[STALE_MAX_WRITES]; /* version -> when its invalidation returned */
    static int key_of[STALE_MAX_WRITES];
    long version = 0;
    char key[16], val[32];
    for (int k = 0; k < STALE_KEYS; k++) {
        version++;
        snprintf(key, sizeof key, "stale%d", k);
        snprintf(val, sizeof val, "%ld", version);
        data_write(key, val);
        written_at[version] = mono_ms();
        key_of[version] = k;
    }
    char outpath[300];
    snprintf(outpath, sizeof outpath, "%s/reads.log", dir);
    int stop[2];
    assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
    pid_t checker = fork();
    assert_true(checker >= 0);
    if (checker == 0) {
        close(stop[1]);
        _exit(stale_checker_main(h[1].port, outpath, stop[0]));
    }
    close(stop[0]);

    /* Writes every 50 ms for `ms`, through the first host (which may be unable to send). */
    long long phase_end;
#define WRITE_FOR(ms)                                                                              \
    for (phase_end = mono_ms() + (ms); mono_ms() < phase_end;) {                                  \
        if (version + 1 >= STALE_MAX_WRITES)                                                       \
            break;                                                                                 \
        version++;                                                                                 \
        int k_ = (int)(version % STALE_KEYS);                                                      \
        snprintf(key, sizeof key, "stale%d", k_);                                                  \
        snprintf(val, sizeof val, "%ld", version);                                                 \
        data_write(key, val);                                                                      \
        host_invalidate(&h[0], key);                                                               \
        written_at[version] = mono_ms();                                                           \
        key_of[version] = k_;                                                                      \
        sleep_ms(50);                                                                              \
    }
    char out[256];
    WRITE_FOR(1500);
    /* 1. The stream key replaced by a string for 3 s. */
    assert_int_equal(mct_redis_cmd(r.port, out, sizeof out, (const char *[]){"DEL", "hosts", NULL}), 0);
    assert_int_equal(mct_redis_cmd(r.port, out, sizeof out, (const char *[]){"SET", "hosts", "x", NULL}), 0);
    WRITE_FOR(3000);
    assert_int_equal(host_metric(&h[1], "modcache_bus_bypassing"), 1);
    assert_int_equal(mct_redis_cmd(r.port, out, sizeof out, (const char *[]){"DEL", "hosts", NULL}), 0);
    WRITE_FOR(2000);
    /* 2. The server stopped for 10 s. */
    assert_int_equal(kill(r.proc.pid, SIGSTOP), 0);
    WRITE_FOR(10000);
    assert_int_equal(host_metric(&h[1], "modcache_bus_bypassing"), 1);
    assert_int_equal(kill(r.proc.pid, SIGCONT), 0);
    WRITE_FOR(3000);
    /* 3. Killed and restarted without its data. */
    mct_redis_stop(&r, true);
    WRITE_FOR(1000);
    mct_redis_cleanup(&r);
    assert_int_equal(mct_redis_start(&r, r.port), 0);
    WRITE_FOR(3000);
    for (int i = 0; i < 2; i++)
        assert_true(WAIT_UNTIL(host_metric(&h[i], "modcache_bus_link_up") == 1, WAIT_MS));
    assert_true(WAIT_UNTIL(host_metric(&h[1], "modcache_bus_bypassing") == 0, WAIT_MS));
    WRITE_FOR(1000);
#undef WRITE_FOR
    close(stop[1]);
    int status = 0;
    waitpid(checker, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    uint64_t periods = host_metric(&h[1], "modcache_bus_bypass_periods_total");
    uint64_t bypassed = host_metric(&h[1], "modcache_bus_bypassing");
    (void)bypassed;
    char body[65536];
    assert_int_equal(mct_http(h[1].port, "GET", "/metrics", NULL, NULL, body, sizeof body), 200);
    const char *bp = strstr(body, "modcache_cache_bypassed_total{cache=\"mod_bus.read\"} ");
    assert_non_null(bp);
    unsigned long long bypassed_calls = strtoull(bp + strlen("modcache_cache_bypassed_total{cache=\"mod_bus.read\"} "), NULL, 10);
    assert_int_equal(mct_http(h[1].port, "GET", "/_modcache/admin/v1/caches",
                              "Authorization: Bearer tok-for-the-bus-tests\r\n", NULL, body, sizeof body),
                     200);
    assert_non_null(strstr(body, "\"bypass\": false, \"bypassed\": "));
    for (int i = 0; i < 2; i++)
        host_stop(&h[i]);
    mct_redis_stop(&r, true);
    mct_redis_cleanup(&r);

    /* The verdict: for each read, the newest version of its key invalidated more than the
     * bound before the read began; the read must not be older. */
    FILE *f = fopen(outpath, "r");
    assert_non_null(f);
    long long t;
    int k;
    long got;
    unsigned long reads = 0, stale = 0;
    long long worst = 0;
    while (fscanf(f, "%lld %d %ld", &t, &k, &got) == 3) {
        reads++;
        long must = 0;
        for (long v = version; v >= 1; v--)
            if (key_of[v] == k && written_at[v] + STALE_BOUND_MS < t) {
                must = v;
                break;
            }
        if (got < must) {
            long long age = 0;
            for (long v = got + 1; v <= version; v++)
                if (key_of[v] == k) {
                    age = t - written_at[v]; /* how long ago the value read was replaced */
                    break;
                }
            if (stale++ == 0 || age > worst)
                worst = age;
        }
    }
    fclose(f);
    print_message("bounded staleness: %lu reads, %ld versions written, %llu bypassed calls, %llu bypass periods, "
                  "%lu reads older than %d ms (worst %lld ms)\n",
                  reads, version, bypassed_calls, (unsigned long long)periods, stale, STALE_BOUND_MS, worst);
    assert_true(reads > 100);
    assert_true(periods >= 2);
    assert_true(bypassed_calls > 0);
    assert_int_equal(stale, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest in_process[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_new_reader_does_not_replay),
        cmocka_unit_test(test_outage_catch_up),
        cmocka_unit_test(test_outage_stream_lost),
        cmocka_unit_test(test_queue_collapse_and_late_first_connection),
        cmocka_unit_test(test_flush_waits_through_collapse),
        cmocka_unit_test(test_trimming),
        cmocka_unit_test(test_stream_deleted),
        cmocka_unit_test(test_wrongtype_outage),
        cmocka_unit_test(test_persistent_err_outage),
        cmocka_unit_test_teardown(test_noperm_outage, allow_every_command),
        cmocka_unit_test(test_bypass_when_unconfirmed),
        cmocka_unit_test(test_invalidations_while_functions_churn),
        cmocka_unit_test(test_bad_options),
    };
    const struct CMUnitTest hosts[] = {
        cmocka_unit_test(test_three_hosts),
        cmocka_unit_test(test_partial_keys_two_hosts),
        cmocka_unit_test(test_hosts_through_redis_restarts),
        cmocka_unit_test(test_stalled_host_trimmed_past),
        cmocka_unit_test(test_late_host),
        cmocka_unit_test(test_redis_kill_loop),
        cmocka_unit_test(test_bounded_staleness_under_faults),
    };
    int failed = cmocka_run_group_tests_name("bus", in_process, setup_redis, teardown_redis);
    if (setup_redis(NULL) != 0)
        return 1;
    failed += cmocka_run_group_tests_name("hosts", hosts, setup_hosts, teardown_hosts);
    teardown_redis(NULL);
    return failed;
}
