/* A test module for /metrics: three memoized functions (plain, iterable, tree) behind one web
 * resource, so that a test drives hits, misses, loads, load errors and invalidations. */
#define _POSIX_C_SOURCE 200809L
#include <modcache/module.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    mc_api *api;
    mc_cached *plain, *list, *tree;
} metrics_state;

static metrics_state *the_state;

/* "fail" fails; "slow" takes 20 ms, so that the histogram has a load above its small buckets. */
static int load_plain(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    const char *k = args[0].v.s.ptr;
    size_t kl = args[0].v.s.len;
    if (kl == 4 && !memcmp(k, "fail", 4))
        return MC_EIO;
    if (kl == 4 && !memcmp(k, "slow", 4))
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    return mc_load_set_copy(load, k, kl);
}

/* An iterable function's entry weighs its element count: the key's length here. */
static int load_list(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    mc_load_set_weight(load, args[0].v.s.len);
    return mc_load_set_copy(load, args[0].v.s.ptr, args[0].v.s.len);
}

static int load_tree(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "t", 1);
}

/* GET /_modcache/client/metrics/v1?<fn>=<key>: call plain, list or tree (key "a/b" as two
 * fields); ?inv=<key>: invalidate plain's key through the host API. */
static void handle(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    metrics_state *s = ud;
    const char *q = req->query ? req->query : "";
    const char *eq = strchr(q, '=');
    if (!eq) {
        mc_http_set_status(resp, 400);
        return;
    }
    size_t nl = (size_t)(eq - q);
    const char *key = eq + 1;
    mc_value *v = NULL;
    int rc;
    if (nl == 3 && !memcmp(q, "inv", 3)) {
        rc = mc_api_invalidate_cache(s->api, s->plain, (mc_arg[]){MC_ARG_S(key)}, 1);
    } else if (nl == 5 && !memcmp(q, "plain", 5)) {
        rc = mc_cached_call(s->plain, (mc_arg[]){MC_ARG_S(key)}, 1, &v);
    } else if (nl == 4 && !memcmp(q, "list", 4)) {
        rc = mc_cached_call(s->list, (mc_arg[]){MC_ARG_S(key)}, 1, &v);
    } else if (nl == 4 && !memcmp(q, "tree", 4)) {
        char a[64];
        snprintf(a, sizeof a, "%s", key);
        char *slash = strchr(a, '/');
        if (slash)
            *slash = 0;
        rc = mc_cached_call(s->tree, (mc_arg[]){MC_ARG_S(a), MC_ARG_S(slash ? slash + 1 : "")}, 2, &v);
    } else {
        mc_http_set_status(resp, 404);
        return;
    }
    if (v)
        mc_value_release(v);
    mc_http_set_status(resp, rc == 0 ? 200 : 500);
    mc_http_set_body(resp, mc_err_name(rc), strlen(mc_err_name(rc)));
}

static int make(mc_api *api, const char *name, mc_loader_fn loader, bool iterable, bool tree, mc_cached **out)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = 100;
    o.iterable = iterable;
    o.tree = tree;
    int rc = mc_cached_create(&o, loader, NULL, out);
    if (rc == 0 && (rc = mc_api_register_cached_function(api, *out)) != 0) {
        mc_cached_destroy(*out);
        *out = NULL;
    }
    return rc;
}

static void fini(void *state)
{
    metrics_state *s = state;
    mc_cached_destroy(s->plain);
    mc_cached_destroy(s->list);
    mc_cached_destroy(s->tree);
    free(s);
    the_state = NULL;
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    metrics_state *s = calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    s->api = api;
    int rc = make(api, "metrics.plain", load_plain, false, false, &s->plain);
    if (rc == 0)
        rc = make(api, "metrics.list", load_list, true, false, &s->list);
    if (rc == 0)
        rc = make(api, "metrics.tree \"quoted\"", load_tree, false, true, &s->tree);
    if (rc == 0)
        rc = mc_api_register_web_resource(api, "/_modcache/client/metrics/v1", handle, s);
    if (rc != 0) {
        snprintf(err->message, sizeof err->message, "init: %s", mc_strerror(rc));
        fini(s);
        return rc;
    }
    *state = the_state = s;
    return 0;
}

MC_MODULE("metrics", NULL, init, fini, NULL);
