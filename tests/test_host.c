/* Tests of the module host: modules loaded from a YAML list in order and finalised in reverse,
 * configs parsed by the module, registration only during init, and every load fault reported. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "modcache.h"

static char logbuf[8192];
/* Modules' pool threads log too (mod_pool): lines are appended under this lock, and a test
 * that reads while such a thread may log reads through logged(). */
static pthread_mutex_t loglock = PTHREAD_MUTEX_INITIALIZER;

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

static mc_host *new_host(void)
{
    logbuf[0] = 0;
    mc_host_options o;
    mc_host_options_init(&o);
    o.log = capture;
    mc_host *h;
    assert_int_equal(mc_host_create(&o, &h), 0);
    return h;
}

/* Load a modules: list given as YAML text (MODULE_DIR substituted for @). */
static int load_yaml(mc_host *h, const char *yaml, mc_error *err, mc_config **doc)
{
    char text[8192];
    size_t o = 0;
    for (const char *p = yaml; *p && o < sizeof text - 256; p++) {
        if (*p == '@')
            o += (size_t)snprintf(text + o, sizeof text - o, "%s", MODULE_DIR);
        else
            text[o++] = *p;
    }
    text[o] = 0;
    int rc = mc_config_load_string(text, o, "h.yaml", doc, err);
    assert_int_equal(rc, 0);
    return mc_host_load_modules(h, mc_config_get(mc_config_root(*doc), "modules"), err);
}

static void test_load_in_order_finalise_in_reverse(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h,
                       "modules:\n"
                       "  - module: @/mod_good.so\n"
                       "    config: {ttl: 5d, label: first}\n"
                       "  - module: @/mod_second.so\n",
                       &err, &doc);
    assert_int_equal(rc, 0);
    assert_int_equal(mc_host_module_count(h), 2);
    assert_string_equal(mc_host_module_name(h, 0), "mod_good");
    assert_string_equal(mc_host_module_name(h, 1), "mod_second");
    /* parse_config turned "5d" into milliseconds; the second module had no config. */
    assert_non_null(strstr(logbuf, "[mod_good] init ttl_ms=432000000 label=first"));
    assert_non_null(strstr(logbuf, "[mod_second] init ttl_ms=0 label=none"));
    assert_true(strstr(logbuf, "[mod_good] init") < strstr(logbuf, "[mod_second] init"));
    /* Their cached functions are registered by name and callable. */
    mc_registry *reg = mc_host_registry(h);
    mc_cached *fn = mc_registry_find(reg, "mod_good.lookup");
    assert_non_null(fn);
    assert_non_null(mc_registry_find(reg, "mod_second.lookup"));
    mc_value *v;
    mc_arg a[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    assert_memory_equal(mc_value_data(v), "value", 5);
    mc_value_release(v);
    assert_int_equal(mc_registry_invalidate(reg, "mod_good.lookup", (const char *[]){"[1]"}, 1, &err), 0);

    logbuf[0] = 0;
    mc_host_destroy(h);
    /* Reverse order, and registration after init is refused. */
    char *second = strstr(logbuf, "[mod_second] fini late-register=MC_EBUSY");
    char *first = strstr(logbuf, "[mod_good] fini late-register=MC_EBUSY");
    assert_non_null(strstr(logbuf, "[mod_good] fini late-web=MC_EBUSY"));
    assert_non_null(second);
    assert_non_null(first);
    assert_true(second < first);
    /* However it is tried: creating a function under the module's registry handle after init
     * is refused as well, and nothing is registered under that name. */
    assert_non_null(strstr(logbuf, "[mod_good] fini late-create=MC_EBUSY registered=no"));
    assert_non_null(strstr(logbuf, "[mod_second] fini late-create=MC_EBUSY registered=no"));
    mc_config_free(doc);
}

static void expect_fail(const char *yaml, int code, const char *const *parts)
{
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h, yaml, &err, &doc);
    if (rc != code)
        fail_msg("%s: got %s (%s), want %s", yaml, mc_err_name(rc), err.message, mc_err_name(code));
    for (const char *const *p = parts; *p; p++)
        if (!strstr(err.message, *p))
            fail_msg("error '%s' lacks '%s'", err.message, *p);
    assert_int_equal(mc_host_module_count(h), 0);
    mc_host_destroy(h);
    mc_config_free(doc);
}

static void test_load_faults(void **state)
{
    (void)state;
    expect_fail("modules:\n  - module: @/missing.so\n", MC_EIO,
                (const char *[]){"modules[0].module: ", "missing.so: cannot load", "(h.yaml:2:13)", NULL});
    expect_fail("modules:\n  - module: @/mod_none.so\n", MC_EIO,
                (const char *[]){"mod_none.so: not a modcache module", NULL});
    expect_fail("modules:\n  - module: @/mod_bad_abi.so\n", MC_ENOTSUP,
                (const char *[]){"module ABI version 42, this host speaks 1", NULL});
    expect_fail("modules:\n  - module: @/mod_good.so\n  - module: @/mod_bad_parse.so\n"
                "    config: {database: [1, 2]}\n",
                MC_EINVAL,
                (const char *[]){"mod_bad_parse.so: modules[1].config.database: expected a string (h.yaml:4:24)",
                                 NULL});
    expect_fail("modules:\n  - module: @/mod_bad_init.so\n", MC_EIO,
                (const char *[]){"mod_bad_init.so: init failed: database unreachable", NULL});
    /* A module that destroyed the function it registered before failing: the host's clean-up
     * must not touch the freed function (ASan and valgrind watch this one). */
    expect_fail("modules:\n  - module: @/mod_bad_init_destroys.so\n", MC_EIO,
                (const char *[]){"mod_bad_init_destroys.so: init failed: database unreachable", NULL});
    expect_fail("modules:\n  - module: @/mod_good.so\n    confg: {}\n", MC_EINVAL,
                (const char *[]){"modules[0].confg: unknown key", NULL});
    expect_fail("modules:\n  - config: {}\n", MC_EINVAL, (const char *[]){"modules[0]: missing key 'module'", NULL});
    expect_fail("modules: {a: 1}\n", MC_EINVAL, (const char *[]){"modules: expected a list of modules", NULL});
    expect_fail("modules:\n  - module: [x]\n", MC_EINVAL, (const char *[]){"modules[0].module: expected a string", NULL});
}

/* Every module's config is parsed before any init runs: a config fault in the second module
 * stops start-up before the first has had any effect. */
static void test_configs_parsed_before_init(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h, "modules:\n  - module: @/mod_good.so\n  - module: @/mod_bad_parse.so\n"
                          "    config: {database: [1, 2]}\n", &err, &doc);
    assert_int_equal(rc, MC_EINVAL);
    assert_non_null(strstr(err.message, "modules[1].config.database: expected a string"));
    assert_null(strstr(logbuf, "[mod_good] init"));
    assert_null(strstr(logbuf, "[mod_good] fini"));
    assert_null(mc_registry_find(mc_host_registry(h), "mod_good.lookup"));
    mc_host_destroy(h);
    mc_config_free(doc);
}

/* The same shared object listed twice would share one handle (and its static state): refused
 * with both config paths, before any module's init. */
static void test_same_file_twice(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h, "modules:\n  - module: @/mod_second.so\n  - module: @/mod_good.so\n"
                          "  - module: @/mod_good.so\n", &err, &doc);
    assert_int_equal(rc, MC_EEXIST);
    assert_non_null(strstr(err.message, "modules[2].module: "));
    assert_non_null(strstr(err.message, "mod_good.so: the same module file is listed already"));
    assert_non_null(strstr(err.message, "at modules[1].module (h.yaml:3:13)"));
    assert_non_null(strstr(err.message, "(h.yaml:4:13)"));
    assert_null(strstr(logbuf, "] init"));
    assert_int_equal(mc_host_module_count(h), 0);
    mc_config_free(doc);
    /* Loaded one at a time, the second is refused the same way and the first keeps running. */
    assert_int_equal(load_yaml(h, "modules:\n  - module: @/mod_good.so\n", &err, &doc), 0);
    mc_config_free(doc);
    assert_int_equal(load_yaml(h, "modules:\n  - module: @/mod_good.so\n", &err, &doc), MC_EEXIST);
    assert_non_null(strstr(err.message, "listed already"));
    assert_int_equal(mc_host_module_count(h), 1);
    mc_host_destroy(h);
    mc_config_free(doc);
}

static void test_nothing_half_started(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h, "modules:\n  - module: @/mod_good.so\n  - module: @/mod_bad_init.so\n", &err, &doc);
    assert_int_equal(rc, MC_EIO);
    /* The first module was initialised, then finalised, and its registration withdrawn. */
    assert_non_null(strstr(logbuf, "[mod_good] init"));
    assert_non_null(strstr(logbuf, "[mod_good] fini"));
    assert_int_equal(mc_host_module_count(h), 0);
    assert_null(mc_registry_find(mc_host_registry(h), "mod_good.lookup"));
    /* The host is still usable. */
    mc_config_free(doc);
    rc = load_yaml(h, "modules:\n  - module: @/mod_good.so\n", &err, &doc);
    assert_int_equal(rc, 0);
    assert_int_equal(mc_host_module_count(h), 1);
    mc_host_destroy(h);
    mc_config_free(doc);
}

static void test_first_registration_keeps_the_name(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    mc_config *doc;
    /* Two modules registering one name: the second's init finds the name taken and fails. */
    int rc = load_yaml(h, "modules:\n  - module: @/mod_good.so\n  - module: @/mod_good_copy.so\n", &err, &doc);
    assert_int_equal(rc, MC_EEXIST);
    assert_non_null(strstr(err.message, "init failed: cannot register"));
    assert_non_null(strstr(logbuf, "cached function name mod_good.lookup is taken"));
    mc_host_destroy(h);
    mc_config_free(doc);
}

/* Many modules: the API handle a module keeps (for its fini) stays valid as more load. */
static void test_many_modules(void **state)
{
    (void)state;
    mc_host *h = new_host();
    /* Twenty copies of one module (one file may be listed once). */
    char dir[] = "/tmp/mct_mods_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml[4096] = "modules:\n  - module: @/mod_good.so\n";
    char path[20][128];
    for (int i = 0; i < 20; i++) {
        snprintf(path[i], sizeof path[i], "%s/plain%d.so", dir, i);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "cp %s/mod_plain.so %s", MODULE_DIR, path[i]);
        assert_int_equal(system(cmd), 0);
        size_t l = strlen(yaml);
        snprintf(yaml + l, sizeof yaml - l, "  - module: %s\n", path[i]);
    }
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(load_yaml(h, yaml, &err, &doc), 0);
    assert_int_equal(mc_host_module_count(h), 21);
    assert_string_equal(mc_host_module_name(h, 20), "faulty");
    logbuf[0] = 0;
    mc_host_destroy(h);
    assert_non_null(strstr(logbuf, "[mod_good] fini late-register=MC_EBUSY"));
    mc_config_free(doc);
    for (int i = 0; i < 20; i++)
        unlink(path[i]);
    rmdir(dir);
}

static void test_no_modules(void **state)
{
    (void)state;
    mc_host *h = new_host();
    mc_error err = {0};
    assert_int_equal(mc_host_load_modules(h, NULL, &err), 0);
    assert_int_equal(mc_host_module_count(h), 0);
    assert_null(mc_host_module_name(h, 0));
    assert_int_equal(mc_host_load_module(NULL, "x", NULL, NULL, &err), MC_EINVAL);
    mc_host_destroy(h);
    mc_host_destroy(NULL);
}

/* The embedding program's adapters: it knows the callbacks' real signatures. */
static int invoke_check(mc_callback_fn fn, void *ud, void *ctx, void **value, mc_callback_run *run)
{
    (void)value;
    (void)run;
    return ((int (*)(void *, const char *))fn)(ud, ctx);
}

static int fail_first(mc_callback_fn fn, void *ud, void *ctx, void **value, mc_callback_run *run)
{
    (void)fn;
    (void)ud;
    (void)value;
    (void)run;
    (*(int *)ctx)++;
    return MC_EIO;
}

/* Callbacks that complete later: each invoke hands the call to a thread and returns pending. */
typedef struct {
    mc_callback_fn fn;
    void *ud;
    const char *event;
    mc_callback_run *run;
} later_call;

static void *run_later(void *arg)
{
    later_call *c = arg;
    usleep(20000);
    int rc = ((int (*)(void *, const char *))c->fn)(c->ud, c->event);
    mc_callback_run *run = c->run;
    free(c);
    mc_callback_resume(run, rc, NULL);
    return NULL;
}

static int invoke_later(mc_callback_fn fn, void *ud, void *ctx, void **value, mc_callback_run *run)
{
    (void)value;
    later_call *c = malloc(sizeof *c);
    *c = (later_call){fn, ud, ctx, run};
    pthread_t t;
    pthread_create(&t, NULL, run_later, c);
    pthread_detach(t);
    return MC_CALLBACK_PENDING;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, rc;
} async_done;

static void on_async_done(void *ud, int rc, void *value)
{
    (void)value;
    async_done *d = ud;
    pthread_mutex_lock(&d->lock);
    d->rc = rc;
    d->done++;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void test_pending_callbacks(void **state)
{
    (void)state;
    mc_host *h = new_host();
    assert_int_equal(mc_host_declare_category(h, "spam_checker", MC_COMPOSE_FIRST_DECISION,
                                              (const char *[]){"check_event", NULL}),
                     0);
    assert_int_equal(mc_host_declare_category(h, "audit", MC_COMPOSE_ALL, (const char *[]){"on_event", NULL}), 0);
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(load_yaml(h, "modules:\n  - module: @/mod_cb_spam.so\n  - module: @/mod_cb_bad.so\n", &err, &doc), 0);
    /* Blocking: the run waits for each pending callback, in order, and composes as usual. */
    logbuf[0] = 0;
    assert_int_equal(mc_host_run_callbacks(h, "spam_checker", "check_event", invoke_later, "bad idea", NULL), 2);
    assert_true(strstr(logbuf, "[cb_spam] checked bad idea") < strstr(logbuf, "[cb_bad] checked bad idea"));
    assert_int_equal(mc_host_run_callbacks(h, "spam_checker", "check_event", invoke_later, "fine", NULL), 0);
    /* Asynchronous: the caller gets a completion. */
    async_done d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    logbuf[0] = 0;
    assert_int_equal(mc_host_run_callbacks_async(h, "spam_checker", "check_event", invoke_later, "spam!",
                                                 on_async_done, &d), 0);
    pthread_mutex_lock(&d.lock);
    while (!d.done)
        pthread_cond_wait(&d.cond, &d.lock);
    pthread_mutex_unlock(&d.lock);
    assert_int_equal(d.rc, 2);
    assert_int_equal(d.done, 1);
    assert_null(strstr(logbuf, "[cb_bad] checked")); /* the first decision stopped the rest */
    /* Completing without any pending callback: done runs before the call returns. */
    d.done = 0;
    assert_int_equal(mc_host_run_callbacks_async(h, "audit", "on_event", invoke_check, "x", on_async_done, &d), 0);
    assert_int_equal(d.done, 1);
    assert_int_equal(d.rc, 0);
    assert_int_equal(mc_host_run_callbacks_async(h, "nope", "x", invoke_check, "x", on_async_done, &d), MC_ENOENT);
    mc_host_destroy(h);
    mc_config_free(doc);
}

/* FIRST_VALUE: the first callback that produces a value wins and stops the rest. */
static int invoke_value(mc_callback_fn fn, void *ud, void *ctx, void **value, mc_callback_run *run)
{
    (void)run;
    ((int (*)(void *, const char *))fn)(ud, ctx); /* the module logs the call */
    *value = (void *)"from-first";
    return 1;
}

static void test_first_value(void **state)
{
    (void)state;
    mc_host *h = new_host();
    assert_int_equal(mc_host_declare_category(h, "audit", MC_COMPOSE_FIRST_VALUE, (const char *[]){"on_event", NULL}), 0);
    assert_int_equal(mc_host_declare_category(h, "spam_checker", MC_COMPOSE_FIRST_DECISION,
                                              (const char *[]){"check_event", NULL}),
                     0);
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(load_yaml(h, "modules:\n  - module: @/mod_cb_spam.so\n  - module: @/mod_cb_bad.so\n", &err, &doc), 0);
    logbuf[0] = 0;
    void *value = NULL;
    assert_int_equal(mc_host_run_callbacks(h, "audit", "on_event", invoke_value, "q", &value), 1);
    assert_string_equal((const char *)value, "from-first");
    assert_non_null(strstr(logbuf, "[cb_spam] audit q"));
    assert_null(strstr(logbuf, "[cb_bad] audit q"));
    /* No value from anyone: 0, value untouched, everyone asked. */
    logbuf[0] = 0;
    value = NULL;
    assert_int_equal(mc_host_run_callbacks(h, "audit", "on_event", invoke_check, "r", &value), 0);
    assert_null(value);
    assert_non_null(strstr(logbuf, "[cb_bad] audit r"));
    mc_host_destroy(h);
    mc_config_free(doc);
}

static void test_callback_categories(void **state)
{
    (void)state;
    mc_host *h = new_host();
    assert_int_equal(mc_host_declare_category(h, "spam_checker", MC_COMPOSE_FIRST_DECISION,
                                              (const char *[]){"check_event", NULL}),
                     0);
    assert_int_equal(mc_host_declare_category(h, "audit", MC_COMPOSE_ALL, (const char *[]){"on_event", NULL}), 0);
    assert_int_equal(mc_host_declare_category(h, "audit", MC_COMPOSE_ALL, (const char *[]){"x", NULL}), MC_EEXIST);
    mc_error err = {0};
    mc_config *doc;
    int rc = load_yaml(h, "modules:\n  - module: @/mod_cb_spam.so\n  - module: @/mod_cb_bad.so\n", &err, &doc);
    assert_int_equal(rc, 0);
    /* Unknown categories and names are refused and register nothing. */
    assert_non_null(strstr(logbuf, "[cb_spam] unknown-category=MC_ENOENT"));
    assert_non_null(strstr(logbuf, "[cb_spam] unknown-name=MC_EINVAL"));
    assert_int_equal(mc_host_callback_count(h, "spam_checker", "check_event"), 2);
    assert_int_equal(mc_host_callback_count(h, "audit", "on_event"), 2);

    /* First decision wins and stops the rest; no decision runs them all, in config order. */
    logbuf[0] = 0;
    assert_int_equal(mc_host_run_callbacks(h, "spam_checker", "check_event", invoke_check, "buy spam", NULL), 2);
    assert_non_null(strstr(logbuf, "[cb_spam] checked buy spam"));
    assert_null(strstr(logbuf, "[cb_bad] checked"));
    logbuf[0] = 0;
    assert_int_equal(mc_host_run_callbacks(h, "spam_checker", "check_event", invoke_check, "bad idea", NULL), 2);
    assert_true(strstr(logbuf, "[cb_spam] checked bad idea") < strstr(logbuf, "[cb_bad] checked bad idea"));
    assert_int_equal(mc_host_run_callbacks(h, "spam_checker", "check_event", invoke_check, "hello", NULL), 0);
    /* Notifications reach everyone. */
    logbuf[0] = 0;
    assert_int_equal(mc_host_run_callbacks(h, "audit", "on_event", invoke_check, "login", NULL), 0);
    assert_non_null(strstr(logbuf, "[cb_spam] audit login"));
    assert_non_null(strstr(logbuf, "[cb_bad] audit login"));
    /* A failing callback stops the ones after it. */
    int calls = 0;
    assert_int_equal(mc_host_run_callbacks(h, "audit", "on_event", fail_first, &calls, NULL), MC_EIO);
    assert_int_equal(calls, 1);
    assert_int_equal(mc_host_run_callbacks(h, "nope", "on_event", invoke_check, "x", NULL), MC_ENOENT);
    assert_int_equal(mc_host_run_callbacks(h, "audit", "nope", invoke_check, "x", NULL), MC_ENOENT);

    logbuf[0] = 0;
    mc_host_destroy(h);
    assert_non_null(strstr(logbuf, "[cb_bad] late=MC_EBUSY"));
    mc_config_free(doc);
}

static int read_host_config(const char *text, mc_host_config *hc, mc_error *err, mc_config **doc)
{
    assert_int_equal(mc_config_load_string(text, strlen(text), "host.yaml", doc, err), 0);
    return mc_host_config_read(*doc, hc, err);
}

/* caches.snapshot: read into the host config, each fault with its path and position. */
static void test_snapshot_config(void **state)
{
    (void)state;
    mc_host_config hc;
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(read_host_config("caches: {global_factor: 2.0}\n", &hc, &err, &doc), 0);
    assert_null(hc.snapshot_path);
    assert_int_equal(hc.snapshot_interval_ns, 0);
    assert_false(hc.snapshot_trust_without_bus);
    free(hc.factors);
    mc_config_free(doc);
    assert_int_equal(read_host_config("caches:\n  expire_caches: true\n"
                                      "  snapshot: {path: /var/lib/h.snap, interval: 5m, trust_without_bus: true}\n",
                                      &hc, &err, &doc),
                     0);
    assert_string_equal(hc.snapshot_path, "/var/lib/h.snap");
    assert_int_equal(hc.snapshot_interval_ns, 300ull * 1000000000u);
    assert_true(hc.snapshot_trust_without_bus);
    assert_true(hc.caches.expire_caches); /* the rest of caches: still read */
    free(hc.factors);
    mc_config_free(doc);
    static const struct {
        const char *text, *message;
    } bad[] = {
        {"caches: {snapshot: {interval: 5m}}\n", "caches.snapshot: path is required (the snapshot file) (host.yaml:1:20)"},
        {"caches: {snapshot: {path: a, interval: 10ms}}\n", "caches.snapshot.interval: expected a duration from 1s to 1w"},
        {"caches: {snapshot: {path: a, every: 5m}}\n", "caches.snapshot.every: unknown key"},
        {"caches: {snapshot: {path: \"\"}}\n", "caches.snapshot.path: expected a file name"},
        {"caches: {snapshot: {path: a, trust_without_bus: maybe}}\n", "caches.snapshot.trust_without_bus"},
        {"caches: {snapshot: a.snap}\n", "caches.snapshot: expected a map"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(read_host_config(bad[i].text, &hc, &err, &doc), MC_EINVAL);
        if (!strstr(err.message, bad[i].message))
            fail_msg("%s: got \"%s\"", bad[i].text, err.message);
        mc_config_free(doc);
    }
}

static void test_host_config(void **state)
{
    (void)state;
    const char *design = "server:\n"
                         "  listen: 127.0.0.1:8008\n"
                         "  admin_token_file: admin.token\n"
                         "caches:\n"
                         "  global_factor: 1.0\n"
                         "  per_cache_factors: {example_dept.get_department_for_user: 2.0}\n"
                         "  expire_caches: true\n"
                         "  cache_entry_ttl: 30m\n"
                         "  cache_autotuning: {max_cache_memory_usage: 1G, target_cache_memory_usage: 768M, "
                         "min_cache_ttl: 5m}\n"
                         "invalidation:\n"
                         "  backend: redis\n"
                         "  instance_name: worker1\n"
                         "  redis: {address: 127.0.0.1:6379, stream: modcache:invalidations, maxlen: 100000}\n"
                         "modules:\n"
                         "  - module: examples/dept/libexample_dept.so\n"
                         "    config: {database: dept.db}\n";
    mc_host_config hc;
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(read_host_config(design, &hc, &err, &doc), 0);
    assert_string_equal(hc.listen, "127.0.0.1:8008");
    assert_string_equal(hc.admin_token_file, "admin.token");
    assert_int_equal(hc.backend, MC_BUS_REDIS);
    assert_string_equal(hc.instance_name, "worker1");
    assert_string_equal(hc.redis_stream, "modcache:invalidations");
    assert_int_equal(hc.redis_maxlen, 100000);
    assert_int_equal(hc.caches.n_per_cache_factors, 1);
    assert_int_equal(hc.caches.max_cache_memory_usage, 1ull << 30);
    assert_int_equal(mc_config_count(hc.modules), 1);
    free(hc.factors);
    mc_config_free(doc);

    /* The bus's outage queue and reconnection delays. */
    assert_int_equal(read_host_config("invalidation: {redis: {queue_limit: 50, reconnect_min: 20ms, reconnect_max: 2s}}\n",
                                      &hc, &err, &doc), 0);
    assert_int_equal(hc.redis_queue_limit, 50);
    assert_int_equal(hc.redis_reconnect_min_ns, 20000000);
    assert_int_equal(hc.redis_reconnect_max_ns, 2000000000);
    assert_int_equal(hc.max_staleness_ns, 0); /* off by default */
    free(hc.factors);
    mc_config_free(doc);

    /* Bounded staleness: a duration, with the Redis backend only. */
    assert_int_equal(read_host_config("invalidation: {backend: redis, max_staleness: 5s}\n", &hc, &err, &doc), 0);
    assert_int_equal(hc.max_staleness_ns, 5000000000ull);
    free(hc.factors);
    mc_config_free(doc);
    assert_int_equal(read_host_config("invalidation: {backend: redis, max_staleness: 50ms}\n", &hc, &err, &doc),
                     MC_EINVAL);
    assert_non_null(strstr(err.message, "invalidation.max_staleness: expected a duration from 200ms to 1d"));
    mc_config_free(doc);
    assert_int_equal(read_host_config("invalidation: {max_staleness: 5s}\n", &hc, &err, &doc), MC_EINVAL);
    assert_non_null(strstr(err.message, "invalidation.max_staleness: needs backend: redis"));
    mc_config_free(doc);

    /* The server's limits; a bare Redis host (port 6379), a bracketed IPv6 address. */
    const char *limits = "server:\n  listen: 0.0.0.0:65535\n  threads: 4\n  handler_threads: 32\n  max_connections: 20000\n"
                         "  max_connections_per_address: 50\n  request_header_timeout: 5s\n  idle_timeout: 1m\n"
                         "invalidation: {redis: {address: localhost}}\n";
    assert_int_equal(read_host_config(limits, &hc, &err, &doc), 0);
    assert_int_equal(hc.server_threads, 4);
    assert_int_equal(hc.server_handler_threads, 32);
    assert_int_equal(hc.max_connections, 20000);
    assert_int_equal(hc.max_connections_per_address, 50);
    assert_int_equal(hc.request_header_timeout_ns, 5000000000ull);
    assert_int_equal(hc.idle_timeout_ns, 60000000000ull);
    assert_string_equal(hc.redis_address, "localhost");
    assert_int_equal(mc_config_line(hc.listen_node), 2);
    free(hc.factors);
    mc_config_free(doc);
    assert_int_equal(read_host_config("server: {handler_threads: 0}\n", &hc, &err, &doc), 0);
    assert_int_equal(hc.server_handler_threads, MC_HTTP_INLINE_HANDLERS);
    free(hc.factors);
    mc_config_free(doc);
    assert_int_equal(read_host_config("invalidation: {redis: {address: '[::1]:6380'}}\nserver: {listen: '127.0.0.1:0'}\n",
                                      &hc, &err, &doc), 0);
    free(hc.factors);
    mc_config_free(doc);

    /* Defaults: loopback, local bus, no admin token. */
    assert_int_equal(read_host_config("", &hc, &err, &doc), 0);
    assert_string_equal(hc.listen, "127.0.0.1:8008");
    assert_int_equal(hc.redis_queue_limit, 10000);
    assert_int_equal(hc.redis_reconnect_min_ns, 100000000);
    assert_int_equal(hc.redis_reconnect_max_ns, 5000000000);
    assert_null(hc.admin_token_file);
    assert_int_equal(hc.backend, MC_BUS_LOCAL);
    assert_null(hc.modules);
    mc_config_free(doc);

    const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"sever: {}\n", "sever: unknown key (host.yaml:1:8)"},
        {"server: {listen: 8008}\n", "server.listen: 8008: expected host:port"},
        /* The listen address as the server binds it: IPv4, ASCII digits, 0 to 65535. */
        {"server: {listen: '127.0.0.1:99999'}\n", "server.listen: 127.0.0.1:99999: the port must be from 1 to 65535 (host.yaml:1:18)"},
        {"server: {listen: \"127.0.0.1:\uff18\uff10\uff10\uff18\"}\n", "server.listen: 127.0.0.1:\xef\xbc\x98\xef\xbc\x90\xef\xbc\x90\xef\xbc\x98: the port must be ASCII digits"},
        {"server: {listen: '127.0.0.1:+80'}\n", "server.listen: 127.0.0.1:+80: the port must be ASCII digits"},
        {"server: {listen: '127.0.0.1:'}\n", "server.listen: 127.0.0.1:: expected a port after ':'"},
        {"server: {listen: ':8008'}\n", "server.listen: :8008: expected a host before the port"},
        {"server: {listen: 'localhost:8008'}\n", "server.listen: localhost:8008: expected an IPv4 address"},
        {"server: {listen: '300.1.1.1:8008'}\n", "server.listen: 300.1.1.1:8008: expected an IPv4 address"},
        {"server: {threads: 0}\n", "server.threads: expected an integer from 1 to 1024"},
        {"server: {handler_threads: 5000}\n", "server.handler_threads: expected an integer from 0 (no pool) to 4096"},
        {"server: {max_connections: 0}\n", "server.max_connections: expected an integer from 1 to 1000000"},
        {"server: {max_connections: ten}\n", "server.max_connections: expected an integer"},
        {"server: {max_connections_per_address: -1}\n", "server.max_connections_per_address: expected an integer from 0"},
        {"server: {request_header_timeout: 0s}\n", "server.request_header_timeout: expected a duration from 1ms to 1h"},
        {"server: {idle_timeout: 2h}\n", "server.idle_timeout: expected a duration from 1ms to 1h"},
        {"invalidation: {redis: {address: 'redis:0'}}\n", "invalidation.redis.address: redis:0: the port must be from 1 to 65535"},
        {"invalidation: {redis: {address: 'redis:65536'}}\n", "invalidation.redis.address: redis:65536: the port must be from 1 to 65535"},
        {"invalidation: {redis: {address: 'redis:63 79'}}\n", "invalidation.redis.address: redis:63 79: the port must be ASCII digits"},
        {"invalidation: {redis: {address: 'red is:6379'}}\n", "invalidation.redis.address: red is:6379: the host has characters"},
        {"invalidation: {redis: {address: '[::1'}}\n", "invalidation.redis.address: [::1: missing ']'"},
        {"invalidation: {redis: {address: '::1:6379'}}\n", "invalidation.redis.address: ::1:6379: an IPv6 address must be written [address]:port"},
        {"server: {port: 1}\n", "server.port: unknown key"},
        {"invalidation: {backend: kafka}\n", "invalidation.backend: expected local or redis"},
        {"invalidation: {redis: {maxlen: 0}}\n", "invalidation.redis.maxlen: expected a positive stream length"},
        {"invalidation: {redis: {host: x}}\n", "invalidation.redis.host: unknown key"},
        {"invalidation: {redis: {queue_limit: 0}}\n", "invalidation.redis.queue_limit: expected a positive number"},
        {"invalidation: {redis: {reconnect_min: 0s}}\n", "invalidation.redis.reconnect_min: expected a duration from 1ms to 1h"},
        {"invalidation: {redis: {reconnect_max: 2h}}\n", "invalidation.redis.reconnect_max: expected a duration from 1ms"},
        {"invalidation: {redis: {reconnect_min: 10s, reconnect_max: 1s}}\n",
         "invalidation.redis.reconnect_min: reconnect_min is above reconnect_max"},
        {"caches: {global_factor: -2}\n", "caches.global_factor: expected a factor above 0"},
        {"modules: {a: 1}\n", "modules: expected a list of modules"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(read_host_config(bad[i].text, &hc, &err, &doc), MC_EINVAL);
        if (strncmp(err.message, bad[i].msg, strlen(bad[i].msg)) != 0)
            fail_msg("for %s got '%s', want '%s...'", bad[i].text, err.message, bad[i].msg);
        assert_null(hc.factors);
        mc_config_free(doc);
    }
}

/* Every rule of the admin token file (mc_host_admin_token_read). */
static void test_admin_token(void **state)
{
    (void)state;
    char dir[] = "/tmp/mc-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], link_path[128];
    snprintf(path, sizeof path, "%s/admin.token", dir);
    snprintf(link_path, sizeof link_path, "%s/link.token", dir);
    static char t4096[4100], t4097[4100], t600[700];
    memset(t4096, 'a', 4096);
    memcpy(t4096 + 4096, "\n", 2);
    memset(t4097, 'a', 4097);
    memset(t600, 'z', 600);
    const struct {
        const char *text;
        size_t len; /* 0: strlen */
        mode_t mode;
        int rc;
        const char *want; /* the token, or a part of the message */
    } cases[] = {
        {"0123456789abcdef\n", 0, 0600, 0, "0123456789abcdef"},
        {"0123456789abcdef", 0, 0400, 0, "0123456789abcdef"},        /* no newline; read-only */
        {"0123456789abcdef\r\n", 0, 0600, 0, "0123456789abcdef"},    /* one CRLF */
        {"MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6\n", 0, 0600, 0, "MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6"},
        {t600, 0, 0600, 0, t600},                                    /* never cut */
        {t4096, 0, 0600, 0, NULL},                                   /* the longest */
        {"0123456789abcdef\n", 0, 0644, MC_EINVAL, "(mode 0644): chmod 600 "},
        {"0123456789abcdef\n", 0, 0640, MC_EINVAL, "(mode 0640): chmod 600 "},
        {"0123456789abcdef\n", 0, 0620, MC_EINVAL, "readable or writable by group or others"},
        {"0123456789abcdef\n", 0, 0604, MC_EINVAL, "(mode 0604)"},
        {"0123456789abcdef\n", 0, 0602, MC_EINVAL, "(mode 0602)"},
        {"0123456789abcdef\n", 0, 0666, MC_EINVAL, "(mode 0666)"},
        {"k\n\x00\x01\x02\xff binary bytes follow", 26, 0600, MC_EINVAL, "byte 2 of the token (0x0a) is not printable ASCII"},
        {"0123456789abcdef\n\n", 0, 0600, MC_EINVAL, "byte 17 of the token (0x0a)"},   /* one newline only */
        {"0123456789abcdef \n", 0, 0600, MC_EINVAL, "(0x20) is not printable ASCII"},  /* no trailing space */
        {" 0123456789abcdef\n", 0, 0600, MC_EINVAL, "byte 1 of the token (0x20)"},
        {"01234567\t89abcdef\n", 0, 0600, MC_EINVAL, "(0x09)"},
        {"0123456789abcd\xc3\xa9" "f\n", 0, 0600, MC_EINVAL, "(0xc3)"},                    /* UTF-8 */
        {"0123456789abcde\n", 0, 0600, MC_EINVAL, "15 bytes, shorter than 16"},
        {"k\n", 0, 0600, MC_EINVAL, "1 bytes, shorter than 16"},
        {t4097, 0, 0600, MC_EINVAL, "longer than 4096 bytes"},
        {"", 0, 0600, MC_EINVAL, "is empty"},
        {"\n", 0, 0600, MC_EINVAL, "is empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(path);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        assert_int_equal(fwrite(cases[i].text, 1, len, f), len);
        fclose(f);
        assert_int_equal(chmod(path, cases[i].mode), 0);
        char *tok = NULL;
        mc_error err = {0};
        int rc = mc_host_admin_token_read(path, &tok, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, err.message);
        if (rc == 0) {
            if (cases[i].want)
                assert_string_equal(tok, cases[i].want);
            else
                assert_int_equal(strlen(tok), 4096);
            free(tok);
        } else {
            assert_null(tok);
            if (!strstr(err.message, cases[i].want))
                fail_msg("case %zu: '%s' does not say '%s'", i, err.message, cases[i].want);
            assert_non_null(strstr(err.message, path));
        }
    }
    /* A symbolic link to a private file is fine (the mode of the file counts). */
    FILE *f = fopen(path, "w");
    fputs("0123456789abcdef\n", f);
    fclose(f);
    chmod(path, 0600);
    assert_int_equal(symlink(path, link_path), 0);
    char *tok = NULL;
    mc_error err = {0};
    assert_int_equal(mc_host_admin_token_read(link_path, &tok, &err), 0);
    free(tok);
    /* Missing, a directory. */
    assert_int_equal(mc_host_admin_token_read("/nonexistent/admin.token", &tok, &err), MC_EIO);
    assert_non_null(strstr(err.message, "cannot read /nonexistent/admin.token: No such file or directory"));
    assert_int_equal(mc_host_admin_token_read(dir, &tok, &err), MC_EINVAL);
    assert_non_null(strstr(err.message, "is not a regular file"));
    assert_int_equal(mc_host_admin_token_read(NULL, &tok, &err), MC_EINVAL);
    unlink(link_path);
    unlink(path);
    rmdir(dir);
}

/* The registry's functions by name, one per line. */
static void list_name(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)st;
    char *buf = ud;
    size_t used = strlen(buf);
    snprintf(buf + used, 512 - used, "%s\n", mc_cached_name(fn));
}

/* Modules' pool work (mc_api_run_in_pool, mc_api_looping_call) is over before their fini:
 * the job was waited for, every looping call stopped (none running, none after), the one
 * stopped from inside itself ran exactly three times, the one stopped at once never ran, and
 * new work is refused once fini is coming. The job, after init, also tries every way to
 * register and to control the module's scope through its registry handle: each is refused
 * and the host's registrations (another module's, and the one mod_pool made during init)
 * stay listed as they were, until the host withdraws them. */
static void test_pool_work_stopped_before_fini(void **state)
{
    (void)state;
    logbuf[0] = 0;
    mc_registry *reg;
    assert_int_equal(mc_registry_create(NULL, &reg), 0);
    mc_host_options ho;
    mc_host_options_init(&ho);
    ho.log = capture;
    ho.registry = reg;
    mc_host *h;
    assert_int_equal(mc_host_create(&ho, &h), 0);
    mc_error err = {0};
    mc_config *doc;
    assert_int_equal(load_yaml(h, "modules:\n  - module: @/mod_second.so\n  - module: @/mod_pool.so\n", &err, &doc),
                     0);
    assert_true(logged("[mod_pool] init rc=MC_OK bad-interval=MC_EINVAL"));
    char names[512] = "";
    mc_registry_list(reg, list_name, names);
    assert_string_equal(names, "mod_pool.kept\nmod_second.lookup\n");
    for (int i = 0; i < 1000 && !logged("[mod_pool] late control "); i++)
        usleep(10000);
    /* Reopening the handle's scope, a scope made from the handle, clearing and destroying the
     * handle: all refused (MC_OK for nested: no scope was made to create under), and the
     * handle still works, finding the function registered during init as the module's. */
    if (!logged("[mod_pool] late control reopen=MC_EBUSY scope=MC_EBUSY nested=MC_OK kept=1\n"))
        fail_msg("%s", logbuf);
    names[0] = 0;
    mc_registry_list(reg, list_name, names);
    assert_string_equal(names, "mod_pool.kept\nmod_second.lookup\n");
    mc_host_destroy(h);
    /* The pool job (on another thread, after init) tried every way to register: creating under
     * the module's registry handle, register_cached_function, mc_registry_add on the handle.
     * Each was refused (fini reports them; the job is over before fini runs). The host had
     * withdrawn mod_pool.kept before fini, through the scope it kept. */
    assert_true(logged("register_cached_function after init refused (mod_pool.late)"));
    if (!strstr(logbuf, "[mod_pool] fini job_done=1 other_thread=1 ticked=1 in_tick=0 ticks_after=0 self_stop=3 "
                        "stopped=0 late-job=MC_EBUSY late-loop=MC_EBUSY late-create=MC_EBUSY "
                        "late-register=MC_EBUSY late-add=MC_EBUSY kept-listed=0"))
        fail_msg("%s", logbuf);
    names[0] = 0;
    mc_registry_list(reg, list_name, names);
    assert_string_equal(names, "");
    mc_registry_destroy(reg);
    mc_config_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_in_order_finalise_in_reverse),
        cmocka_unit_test(test_load_faults),
        cmocka_unit_test(test_configs_parsed_before_init),
        cmocka_unit_test(test_same_file_twice),
        cmocka_unit_test(test_nothing_half_started),
        cmocka_unit_test(test_first_registration_keeps_the_name),
        cmocka_unit_test(test_no_modules),
        cmocka_unit_test(test_many_modules),
        cmocka_unit_test(test_callback_categories),
        cmocka_unit_test(test_pending_callbacks),
        cmocka_unit_test(test_first_value),
        cmocka_unit_test(test_host_config),
        cmocka_unit_test(test_snapshot_config),
        cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_pool_work_stopped_before_fini),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
