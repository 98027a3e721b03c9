/* /metrics as Prometheus reads it: an mchost with several functions (plain, iterable, tree, and
 * another module's) is driven, scraped, checked by `promtool check metrics` and parsed back;
 * then one with a Redis bus (a redis-server the test starts), whose bus families are checked. */
#include <math.h>
#include <setjmp.h>
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

#include "proc.h"

#define TOKEN "metrics-test-token"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

static char dir[] = "/tmp/mc-metrics-XXXXXX";
static mct_proc host;
static unsigned port;
static char scrape[1 << 20];

/* One parsed sample: the name, its labels as written (escapes undone), the value. */
typedef struct {
    char name[128];
    char labels[8][2][256];
    size_t nlabels;
    double value;
} sample;

static sample samples[4096];
static size_t nsamples;
/* The families of the last page parsed, in order, with their TYPE. */
static char families[256][128];
static char family_types[256][32];
static size_t nfam;

static const char *label(const sample *s, const char *key)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (!strcmp(s->labels[i][0], key))
            return s->labels[i][1];
    return NULL;
}

/* The value of the one sample with this name and these label pairs (NULL-terminated); fails
 * the test when there is none or more than one. */
static double value_of(const char *name, ...)
{
    const sample *found = NULL;
    for (size_t i = 0; i < nsamples; i++) {
        const sample *s = &samples[i];
        if (strcmp(s->name, name) != 0)
            continue;
        va_list ap;
        va_start(ap, name);
        bool match = true;
        size_t n = 0;
        for (const char *k; (k = va_arg(ap, const char *));) {
            const char *v = va_arg(ap, const char *);
            const char *have = label(s, k);
            match = match && have && !strcmp(have, v);
            n++;
        }
        va_end(ap);
        if (match && n == s->nlabels) {
            if (found)
                fail_msg("two samples %s with the same labels", name);
            found = s;
        }
    }
    if (!found)
        fail_msg("no sample %s with those labels", name);
    return found->value;
}

static bool has_sample(const char *name, const char *cache)
{
    for (size_t i = 0; i < nsamples; i++)
        if (!strcmp(samples[i].name, name) && label(&samples[i], "cache") && !strcmp(label(&samples[i], "cache"), cache))
            return true;
    return false;
}

/* The family a sample belongs to: a histogram's _bucket, _sum and _count are its family's. */
static void family_of(const char *name, const char *const *hists, size_t nh, char *out, size_t cap)
{
    snprintf(out, cap, "%s", name);
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (size_t h = 0; h < nh; h++)
        for (size_t k = 0; k < 3; k++) {
            size_t hl = strlen(hists[h]);
            if (!strncmp(name, hists[h], hl) && !strcmp(name + hl, sfx[k]))
                snprintf(out, cap, "%s", hists[h]);
        }
}

/* Parse the text format strictly: every sample after its family's HELP and TYPE, each family
 * in one block, label values with their escapes, values as numbers. */
static void parse(const char *text)
{
    nfam = 0;
    const char *hists[64];
    size_t nh = 0;
    char current[128] = "";
    bool help_seen = false, type_seen = false;
    nsamples = 0;
    for (const char *l = text; *l;) {
        const char *eol = strchr(l, '\n');
        assert_non_null(eol); /* every line ends with a newline */
        char line[2048];
        size_t ll = (size_t)(eol - l);
        assert_true(ll < sizeof line);
        memcpy(line, l, ll);
        line[ll] = 0;
        l = eol + 1;
        char fam[128], type[32];
        if (sscanf(line, "# HELP %127s", fam) == 1) {
            for (size_t i = 0; i < nfam; i++)
                if (!strcmp(families[i], fam))
                    fail_msg("family %s appears twice", fam);
            assert_true(nfam < 256);
            snprintf(families[nfam++], sizeof families[0], "%s", fam);
            snprintf(current, sizeof current, "%s", fam);
            help_seen = true;
            type_seen = false;
            assert_true(strlen(line) > strlen("# HELP  ") + strlen(fam)); /* a text, not empty */
            continue;
        }
        if (sscanf(line, "# TYPE %127s %31s", fam, type) == 2) {
            assert_string_equal(fam, current);
            assert_true(help_seen);
            assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") || !strcmp(type, "histogram"));
            snprintf(family_types[nfam - 1], sizeof family_types[0], "%s", type);
            if (!strcmp(type, "histogram"))
                hists[nh++] = families[nfam - 1];
            if (!strcmp(type, "counter"))
                assert_non_null(strstr(fam, "_total"));
            type_seen = true;
            continue;
        }
        assert_true(line[0] != '#');
        assert_true(nsamples < sizeof samples / sizeof samples[0]);
        sample *s = &samples[nsamples++];
        memset(s, 0, sizeof *s);
        const char *p = line;
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
        assert_true(n > 0 && n < sizeof s->name);
        memcpy(s->name, p, n);
        p += n;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                assert_true(s->nlabels < 8);
                size_t kn = strcspn(p, "=");
                assert_true(kn > 0 && kn < 256 && p[kn] == '=' && p[kn + 1] == '"');
                memcpy(s->labels[s->nlabels][0], p, kn);
                p += kn + 2;
                char *v = s->labels[s->nlabels][1];
                size_t vn = 0;
                for (; *p != '"'; p++) {
                    assert_true(*p && vn < 255);
                    if (*p == '\\') {
                        p++;
                        assert_true(*p == '\\' || *p == '"' || *p == 'n');
                        v[vn++] = *p == 'n' ? '\n' : *p;
                    } else {
                        v[vn++] = *p;
                    }
                }
                p++;
                s->nlabels++;
                if (*p == ',')
                    p++;
                else
                    assert_int_equal(*p, '}');
            }
            p++;
        }
        assert_int_equal(*p, ' ');
        char *end;
        s->value = strtod(p + 1, &end);
        assert_true(end != p + 1 && *end == 0);
        char f[128];
        family_of(s->name, hists, nh, f, sizeof f);
        if (strcmp(f, current) != 0)
            fail_msg("sample %s outside its family's block (current family %s)", s->name, current);
        assert_true(type_seen);
    }
}

/* docs/metrics.md has a table row for every family of the last page parsed, "| `name` | type |",
 * naming every label its samples carry. */
static void check_documented(void)
{
    FILE *f = fopen(METRICS_MD, "r");
    assert_non_null(f);
    static char doc[1 << 17];
    size_t len = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    assert_true(len > 0 && len < sizeof doc - 1);
    doc[len] = 0;
    for (size_t i = 0; i < nfam; i++) {
        char head[200];
        snprintf(head, sizeof head, "\n| `%.127s` | %.31s |", families[i], family_types[i]);
        const char *row = strstr(doc, head);
        if (!row)
            fail_msg("docs/metrics.md has no row \"%s\"", head + 1);
        const char *eol = strchr(row + 1, '\n');
        size_t rl = eol ? (size_t)(eol - row) : strlen(row);
        char family[128];
        for (size_t k = 0; k < nsamples; k++) {
            const sample *sm = &samples[k];
            family_of(sm->name, (const char *const[]){families[i]}, !strcmp(family_types[i], "histogram"), family,
                      sizeof family);
            if (strcmp(family, families[i]) != 0)
                continue;
            for (size_t l = 0; l < sm->nlabels; l++) {
                char key[270];
                snprintf(key, sizeof key, "`%s`", sm->labels[l][0]);
                if (!memmem(row, rl, key, strlen(key)))
                    fail_msg("docs/metrics.md: the row of %s does not name its label %s", families[i], key);
            }
        }
    }
}

static int call(const char *query)
{
    char path[256], out[256];
    snprintf(path, sizeof path, "/_modcache/client/metrics/v1?%s", query);
    return mct_http(port, "GET", path, NULL, NULL, out, sizeof out);
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    char cfg[256], tok[256], text[2048];
    snprintf(tok, sizeof tok, "%s/admin.token", dir);
    snprintf(cfg, sizeof cfg, "%s/host.yaml", dir);
    assert_int_equal(mct_write_file(tok, TOKEN "\n"), 0);
    assert_int_equal(chmod(tok, 0600), 0);
    /* A snapshot file that is not one: refused at start, counted by reason. */
    char snap[256];
    snprintf(snap, sizeof snap, "%s/host.snapshot", dir);
    assert_int_equal(mct_write_file(snap, "not a snapshot\n"), 0);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n  admin_token_file: %s\n"
             "caches:\n  snapshot: {path: %s}\n"
             "modules:\n  - module: %s/mod_metrics.so\n  - module: %s/mod_good.so\n",
             tok, snap, MODULE_DIR, MODULE_DIR);
    assert_int_equal(mct_write_file(cfg, text), 0);
    assert_int_equal(mct_spawn(&host, (const char *[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    assert_true(mct_wait_for(&host, 0, "serving HTTP on 127.0.0.1:", 10000));
    const char *at = strstr(host.log, "serving HTTP on 127.0.0.1:");
    assert_int_equal(sscanf(at + strlen("serving HTTP on 127.0.0.1:"), "%u", &port), 1);

    assert_int_equal(call("plain=a"), 200);    /* miss, load */
    assert_int_equal(call("plain=a"), 200);    /* hit */
    assert_int_equal(call("plain=slow"), 200); /* a 20 ms load */
    assert_int_equal(call("plain=fail"), 500); /* a load error */
    assert_int_equal(call("list=abcd"), 200);  /* 4 elements */
    assert_int_equal(call("list=xy"), 200);    /* 2 elements */
    assert_int_equal(call("tree=a/b"), 200);
    assert_int_equal(call("inv=slow"), 200); /* through the host API: source "module" */
    char out[256];
    assert_int_equal(mct_http(port, "POST", "/_modcache/admin/v1/caches/metrics.plain/invalidate", AUTH,
                              "{\"all\": true}", out, sizeof out),
                     200); /* source "admin" */
    assert_int_equal(mct_http(port, "GET", "/metrics", NULL, NULL, scrape, sizeof scrape), 200);
    parse(scrape);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int st = mct_finish(&host, 15);
    free(host.log);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    return st == 0 ? 0 : -1;
}

/* `promtool check metrics` on text: no lint at all, or the test fails with promtool's output. */
static void promtool_check(const char *text)
{
    if (!PROMTOOL[0]) {
        print_message("skipped: promtool not found when configured (apt-get install prometheus)\n");
        skip();
    }
    char path[256], cmd[600], out[8192];
    snprintf(path, sizeof path, "%s/scrape.txt", dir);
    assert_int_equal(mct_write_file(path, text), 0);
    snprintf(cmd, sizeof cmd, "%s check metrics < %s", PROMTOOL, path);
    int st = mct_run((const char *[]){"/bin/sh", "-c", cmd, NULL}, NULL, out, sizeof out);
    if (st != 0)
        fail_msg("promtool check metrics exited %d:\n%s", st, out);
}

/* promtool (Debian's prometheus package) accepts the scrape without a single lint. */
static void test_promtool(void **state)
{
    (void)state;
    promtool_check(scrape);
}

/* Every family on the page, with its type and labels, is in docs/metrics.md. */
static void test_documented(void **state)
{
    (void)state;
    check_documented();
}

static void test_per_function(void **state)
{
    (void)state;
    const char *p = "metrics.plain";
    assert_true(value_of("modcache_cache_hits_total", "cache", p, NULL) == 1);
    assert_true(value_of("modcache_cache_misses_total", "cache", p, NULL) == 3);
    assert_true(value_of("modcache_cache_loads_total", "cache", p, NULL) == 3);
    assert_true(value_of("modcache_cache_load_errors_total", "cache", p, NULL) == 1);
    assert_true(value_of("modcache_cache_entries", "cache", p, NULL) == 0); /* invalidated all */
    assert_true(value_of("modcache_cache_max_entries", "cache", p, NULL) == 100);
    assert_true(value_of("modcache_cache_evictions_total", "cache", p, "reason", "invalidation", NULL) == 2);
    /* Write-age counters: a sample per function, zero without refresh_after or expiries. */
    assert_true(value_of("modcache_cache_refreshes_total", "cache", p, NULL) == 0);
    assert_true(value_of("modcache_cache_refresh_errors_total", "cache", p, NULL) == 0);
    assert_true(value_of("modcache_cache_expiries_total", "cache", p, NULL) == 0);
    /* The other module's function is in every family too. */
    assert_true(value_of("modcache_cache_max_entries", "cache", "mod_good.lookup", NULL) == 10);
    assert_true(value_of("modcache_cache_loads_total", "cache", "mod_good.lookup", NULL) == 0);
    /* A name that needs escaping comes back as registered. */
    assert_true(value_of("modcache_cache_loads_total", "cache", "metrics.tree \"quoted\"", NULL) == 1);
}

/* Warm restarts: the refused file counted by its reason, every reason listed, nothing restored
 * or written yet. */
static void test_snapshot_families(void **state)
{
    (void)state;
    assert_true(value_of("modcache_snapshot_discarded_total", "reason", "foreign", NULL) == 1);
    assert_true(value_of("modcache_snapshot_discarded_total", "reason", "damaged", NULL) == 0);
    assert_true(value_of("modcache_snapshot_discarded_total", "reason", "stream_trimmed", NULL) == 0);
    assert_true(value_of("modcache_snapshot_restored_entries", NULL) == 0);
    assert_true(value_of("modcache_snapshot_writes_total", NULL) == 0);
    assert_true(value_of("modcache_snapshot_last_write_duration_seconds", NULL) == 0);
    assert_true(value_of("modcache_snapshot_last_write_bytes", NULL) == 0);
}

/* An iterable function's weight is counted in elements, not bytes, and bounded in elements. */
static void test_units(void **state)
{
    (void)state;
    assert_true(value_of("modcache_cache_elements", "cache", "metrics.list", NULL) == 6);
    assert_true(value_of("modcache_cache_max_elements", "cache", "metrics.list", NULL) == 100);
    assert_true(value_of("modcache_cache_entries", "cache", "metrics.list", NULL) == 2);
    assert_false(has_sample("modcache_cache_bytes", "metrics.list"));
    assert_false(has_sample("modcache_cache_max_entries", "metrics.list"));
    assert_false(has_sample("modcache_cache_elements", "metrics.plain"));
    /* key + value bytes of the tree function's one entry: more than the 1-byte value */
    assert_true(value_of("modcache_cache_bytes", "cache", "metrics.tree \"quoted\"", NULL) > 1);
    assert_true(value_of("modcache_cache_memory_bytes", "cache", "metrics.plain", NULL) > 0);
}

static void test_invalidation_sources(void **state)
{
    (void)state;
    const char *p = "metrics.plain";
    assert_true(value_of("modcache_cache_invalidations_total", "cache", p, "source", "module", NULL) == 1);
    assert_true(value_of("modcache_cache_invalidations_total", "cache", p, "source", "admin", NULL) == 1);
    assert_true(value_of("modcache_cache_invalidations_total", "cache", p, "source", "direct", NULL) == 0);
    assert_true(value_of("modcache_cache_invalidations_total", "cache", p, "source", "bus", NULL) == 0);
    assert_true(value_of("modcache_cache_invalidations_total", "cache", p, "source", "flush", NULL) == 0);
    assert_true(value_of("modcache_cache_invalidations_total", "cache", "metrics.list", "source", "admin", NULL) == 0);
}

/* The load histogram: cumulative buckets from 1 us to 10 s and +Inf, count and sum agreeing
 * with the loads made (one of them slept 20 ms). */
static void test_load_histogram(void **state)
{
    (void)state;
    const char *p = "metrics.plain";
    double prev = 0, first_le = 0, last_le = 0;
    size_t nb = 0;
    for (size_t i = 0; i < nsamples; i++) {
        const sample *s = &samples[i];
        if (strcmp(s->name, "modcache_cache_load_duration_seconds_bucket") || strcmp(label(s, "cache"), p))
            continue;
        const char *le = label(s, "le");
        assert_non_null(le);
        assert_true(s->value >= prev);
        prev = s->value;
        if (strcmp(le, "+Inf") != 0) {
            double b = strtod(le, NULL);
            assert_true(b > last_le);
            if (!nb)
                first_le = b;
            last_le = b;
        }
        nb++;
    }
    assert_true(nb >= 10);
    assert_true(fabs(first_le - 1e-6) < 1e-12);
    assert_true(last_le == 10);
    double count = value_of("modcache_cache_load_duration_seconds_count", "cache", p, NULL);
    assert_true(count == 3);
    assert_true(value_of("modcache_cache_load_duration_seconds_bucket", "cache", p, "le", "+Inf", NULL) == count);
    assert_true(value_of("modcache_cache_load_duration_seconds_bucket", "cache", p, "le", "0.01", NULL) <= 2);
    assert_true(value_of("modcache_cache_load_duration_seconds_sum", "cache", p, NULL) >= 0.02);
    assert_true(value_of("modcache_cache_load_duration_seconds_count", "cache", "metrics.list", NULL) == 2);
}

static void test_process(void **state)
{
    (void)state;
    bool found = false;
    for (size_t i = 0; i < nsamples; i++)
        if (!strcmp(samples[i].name, "modcache_build_info")) {
            assert_false(found);
            found = true;
            assert_true(samples[i].value == 1);
            assert_non_null(label(&samples[i], "version"));
            assert_true(strlen(label(&samples[i], "version")) >= 5); /* x.y.z */
        }
    assert_true(found);
    double start = value_of("process_start_time_seconds", NULL);
    double now = (double)time(NULL);
    assert_true(start <= now + 1 && start > now - 600);
    assert_true(value_of("modcache_http_requests_total", NULL) >= 9);
    assert_true(value_of("modcache_jemalloc_allocated_bytes", NULL) >= 0);
}

/* With a Redis bus (and bounded staleness) the bus's families join the page: promtool accepts
 * it too, and the unconfirmed time is in seconds. Last, since it parses another scrape. */
static void test_promtool_with_bus(void **state)
{
    (void)state;
    mct_redis redis = {0};
    mct_proc bushost = {0};
    static char bus_scrape[1 << 20];
    assert_int_equal(mct_redis_start(&redis, 0), 0);
    char cfg[256], text[1024];
    snprintf(cfg, sizeof cfg, "%s/bus.yaml", dir);
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n"
             "invalidation:\n  backend: redis\n  instance_name: metrics-bus\n  max_staleness: 10s\n"
             "  redis: {address: 127.0.0.1:%u}\n"
             "modules:\n  - module: %s/mod_metrics.so\n",
             redis.port, MODULE_DIR);
    assert_int_equal(mct_write_file(cfg, text), 0);
    assert_int_equal(mct_spawn(&bushost, (const char *[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    assert_true(mct_wait_for(&bushost, 0, "serving HTTP on 127.0.0.1:", 10000));
    unsigned bport;
    const char *at = strstr(bushost.log, "serving HTTP on 127.0.0.1:");
    assert_int_equal(sscanf(at + strlen("serving HTTP on 127.0.0.1:"), "%u", &bport), 1);
    /* Both bus connections up, so that the page is the one of a working fleet member. */
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) {
        assert_int_equal(mct_http(bport, "GET", "/metrics", NULL, NULL, bus_scrape, sizeof bus_scrape), 200);
        up = strstr(bus_scrape, "\nmodcache_bus_link_up 1\n") != NULL;
        if (!up)
            usleep(50 * 1000);
    }
    assert_true(up);
    promtool_check(bus_scrape);
    parse(bus_scrape);
    check_documented();
    double unconfirmed = value_of("modcache_bus_unconfirmed_seconds", NULL);
    assert_true(unconfirmed >= 0 && unconfirmed < 10);
    assert_true(value_of("modcache_bus_bypassing", NULL) == 0);
    assert_true(value_of("modcache_bus_link_up", NULL) == 1);
    assert_true(value_of("modcache_cache_bypass", "cache", "metrics.plain", NULL) == 0);
    assert_int_equal(mct_finish(&bushost, 15), 0);
    free(bushost.log);
    mct_redis_stop(&redis, false);
    mct_redis_cleanup(&redis);
    parse(scrape); /* the other tests' samples again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool),
        cmocka_unit_test(test_documented),
        cmocka_unit_test(test_snapshot_families),
        cmocka_unit_test(test_per_function),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_invalidation_sources),
        cmocka_unit_test(test_load_histogram),
        cmocka_unit_test(test_process),
        cmocka_unit_test(test_promtool_with_bus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
