/* A test module for the invalidation bus: a memoized function reading files of a directory (the
 * "database"), served over HTTP so a test can read values, see what is cached, and invalidate. */
#define _POSIX_C_SOURCE 200809L
#include <modcache/module.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mc_api *api;
    mc_cached *fn;
    mc_cached *field; /* a tree function of (user, field): invalidated by user or by field */
    char dir[512];
} state;

/* Loads the file <dir>/<user>.<field>; a missing file is "no value". */
static int field_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    state *s = self;
    if (nargs != 2 || args[0].type != MC_ARG_STR || args[1].type != MC_ARG_STR)
        return MC_EINVAL;
    char path[1200], buf[512];
    snprintf(path, sizeof path, "%s/%.*s.%.*s", s->dir, (int)args[0].v.s.len, (const char *)args[0].v.s.ptr,
             (int)args[1].v.s.len, (const char *)args[1].v.s.ptr);
    FILE *f = fopen(path, "r");
    if (!f)
        return mc_load_set_none(load);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return mc_load_set_copy(load, buf, n);
}

/* Split "a/b/c" (after a route prefix) into up to 3 string arguments. */
static size_t split_args(const char *p, mc_arg *args, char bufs[3][128])
{
    size_t n = 0;
    while (*p && n < 3) {
        size_t len = strcspn(p, "/");
        snprintf(bufs[n], sizeof bufs[n], "%.*s", (int)len, p);
        args[n] = mc_arg_str(bufs[n]);
        n++;
        p += len;
        if (*p == '/')
            p++;
    }
    return n;
}

/* The tree function's routes: GET .../field/<user>/<field> (value), GET .../fcached/<user>/<field>,
 * POST .../finvalidate/<user>[/<field>[/<extra>]] (invalidate_cache with 1, 2 or 3 fields). */
static bool handle_field(state *s, const char *rest, const mc_http_request *req, mc_http_response *resp,
                         void (*reply)(mc_http_response *, unsigned, const char *))
{
    char bufs[3][128], body[1024];
    mc_arg args[3];
    if (!strncmp(rest, "/finvalidate/", 13) && !strcmp(req->method, "POST")) {
        size_t n = split_args(rest + 13, args, bufs);
        int rc = mc_api_invalidate_cache(s->api, s->field, args, n);
        snprintf(body, sizeof body, "{\"rc\": \"%s\"}", mc_err_name(rc));
        reply(resp, 200, body);
        return true;
    }
    bool value = !strncmp(rest, "/field/", 7), cached = !strncmp(rest, "/fcached/", 9);
    if ((!value && !cached) || strcmp(req->method, "GET") != 0)
        return false;
    if (split_args(rest + (value ? 7 : 9), args, bufs) != 2) {
        reply(resp, 404, "{}");
        return true;
    }
    if (cached) {
        unsigned char k[600];
        size_t klen;
        bool in = mc_key_encode(args, 2, k, sizeof k, &klen) == 0 && mc_cache_contains(mc_cached_cache(s->field), k, klen);
        reply(resp, 200, in ? "{\"cached\": true}" : "{\"cached\": false}");
        return true;
    }
    mc_value *v = NULL;
    int rc = mc_cached_call(s->field, args, 2, &v);
    if (rc != 0) {
        snprintf(body, sizeof body, "{\"error\": \"%s\"}", mc_err_name(rc));
        reply(resp, 500, body);
        return true;
    }
    if (mc_value_is_none(v))
        snprintf(body, sizeof body, "{\"value\": null}");
    else
        snprintf(body, sizeof body, "{\"value\": \"%.*s\"}", (int)mc_value_size(v), (const char *)mc_value_data(v));
    mc_value_release(v);
    reply(resp, 200, body);
    return true;
}

/* Loads the file <dir>/<key>; a missing file is "no value". */
static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    state *s = self;
    if (nargs != 1 || args[0].type != MC_ARG_STR)
        return MC_EINVAL;
    char path[1024], buf[512];
    snprintf(path, sizeof path, "%s/%.*s", s->dir, (int)args[0].v.s.len, (const char *)args[0].v.s.ptr);
    FILE *f = fopen(path, "r");
    if (!f)
        return mc_load_set_none(load);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return mc_load_set_copy(load, buf, n);
}

static void reply(mc_http_response *resp, unsigned status, const char *body)
{
    mc_http_set_status(resp, status);
    mc_http_add_header(resp, "Content-Type", "application/json");
    mc_http_set_body(resp, body, strlen(body));
}

/* GET  .../value/<key>       {"value": "...", "loads": N} (loads through the cache)
 * GET  .../cached/<key>      {"cached": true|false} (never loads)
 * POST .../invalidate/<key>  invalidate_cache: here and on every host of the bus
 * POST .../invalidate_all    invalidate_all */
static void handle(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    state *s = ud;
    const char *rest = req->path + strlen("/_modcache/client/bus/v1");
    char body[1024];
    mc_cached_stats st;
    if (!strcmp(rest, "/invalidate_all") && !strcmp(req->method, "POST")) {
        int rc = mc_api_invalidate_all(s->api, s->fn);
        snprintf(body, sizeof body, "{\"rc\": \"%s\"}", mc_err_name(rc));
        reply(resp, rc ? 500 : 200, body);
        return;
    }
    if (handle_field(s, rest, req, resp, reply))
        return;
    const char *key = strrchr(rest, '/');
    if (!key || key == rest) {
        reply(resp, 404, "{}");
        return;
    }
    key++;
    mc_arg arg = mc_arg_str(key);
    if (!strncmp(rest, "/invalidate/", 12) && !strcmp(req->method, "POST")) {
        int rc = mc_api_invalidate_cache(s->api, s->fn, &arg, 1);
        snprintf(body, sizeof body, "{\"rc\": \"%s\"}", mc_err_name(rc));
        reply(resp, rc ? 500 : 200, body);
    } else if (!strncmp(rest, "/cached/", 8) && !strcmp(req->method, "GET")) {
        unsigned char k[600];
        size_t klen;
        bool in = mc_key_encode(&arg, 1, k, sizeof k, &klen) == 0 && mc_cache_contains(mc_cached_cache(s->fn), k, klen);
        reply(resp, 200, in ? "{\"cached\": true}" : "{\"cached\": false}");
    } else if (!strncmp(rest, "/value/", 7) && !strcmp(req->method, "GET")) {
        mc_value *v = NULL;
        int rc = mc_cached_call(s->fn, &arg, 1, &v);
        mc_cached_stats_get(s->fn, &st);
        if (rc != 0) {
            snprintf(body, sizeof body, "{\"error\": \"%s\"}", mc_err_name(rc));
            reply(resp, 500, body);
            return;
        }
        if (mc_value_is_none(v))
            snprintf(body, sizeof body, "{\"value\": null, \"loads\": %llu}", (unsigned long long)st.loads);
        else
            snprintf(body, sizeof body, "{\"value\": \"%.*s\", \"loads\": %llu}", (int)mc_value_size(v),
                     (const char *)mc_value_data(v), (unsigned long long)st.loads);
        mc_value_release(v);
        reply(resp, 200, body);
    } else {
        reply(resp, 404, "{}");
    }
}

static int init(mc_api *api, void *parsed, void **out, mc_error *err)
{
    const mc_config_node *cfg = parsed;
    const char *dir = NULL;
    const mc_config_node *d = mc_config_get(cfg, "dir");
    if (!d)
        return mc_config_fail(cfg, err, MC_EINVAL, "dir is required");
    int rc = mc_config_string(d, &dir, err);
    if (rc != 0)
        return rc;
    state *s = calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    s->api = api;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "mod_bus.read";
    o.max_entries = 1000;
    o.num_args = 1;
    o.registry = mc_api_registry(api);
    rc = mc_cached_create(&o, loader, s, &s->fn);
    if (rc == 0)
        rc = mc_api_register_cached_function(api, s->fn);
    if (rc == 0) {
        mc_cached_options f;
        mc_cached_options_init(&f);
        f.name = "mod_bus.field";
        f.max_entries = 1000;
        f.num_args = 2;
        f.tree = true;
        f.registry = mc_api_registry(api);
        rc = mc_cached_create(&f, field_loader, s, &s->field);
    }
    if (rc == 0)
        rc = mc_api_register_web_resource(api, "/_modcache/client/bus/v1", handle, s);
    if (rc != 0) {
        mc_cached_destroy(s->field);
        mc_cached_destroy(s->fn);
        free(s);
        snprintf(err->message, sizeof err->message, "set-up failed: %s", mc_strerror(rc));
        err->code = rc;
        return rc;
    }
    *out = s;
    return 0;
}

static void fini(void *st)
{
    state *s = st;
    mc_cached_destroy(s->field);
    mc_cached_destroy(s->fn);
    free(s);
}

MC_MODULE("mod_bus", NULL, init, fini, NULL);
