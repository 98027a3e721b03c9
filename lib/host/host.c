/* The module host: dlopen'd modules with a checked descriptor, parse_config and init in config
 * order, fini in reverse, and the API handle through which modules register cached functions. */
#include "cached/cached_host.h"
#include "core/error.h"
#include "host/host_internal.h"
#include "modcache/log.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The default logger: timestamped text lines on stderr, info and above (modcache/log.h). */
static void mc__stderr_log(void *ud, mc_log_level level, const char *module, const char *message)
{
    (void)ud;
    mc_logger_write(NULL, level, module, message);
}

void mc_host_options_init(mc_host_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

int mc_host_create(const mc_host_options *opts, mc_host **out)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    mc_host *h = calloc(1, sizeof *h);
    if (!h)
        return MC_ENOMEM;
    pthread_rwlock_init(&h->routes_lock, NULL);
    h->log = opts && opts->log ? opts->log : mc__stderr_log;
    h->log_ud = opts && opts->log ? opts->log_ud : NULL;
    h->registry = opts ? opts->registry : NULL;
    h->bus = opts ? opts->bus : NULL;
    h->snapshot = opts ? opts->snapshot : NULL;
    int rc = 0;
    if (!h->registry) {
        rc = mc_registry_create(NULL, &h->registry);
        h->own_registry = rc == 0;
    }
    if (rc == 0)
        rc = mc_config_load_string("~", 1, "<none>", &h->empty, NULL);
    static const char *const http_names[] = {MC_CALLBACK_CHECK_REQUEST, NULL};
    if (rc == 0)
        rc = mc_host_declare_category(h, MC_CATEGORY_HTTP, MC_COMPOSE_FIRST_DECISION, http_names);
    if (rc != 0) {
        mc_host_destroy(h);
        return rc;
    }
    *out = h;
    return 0;
}

void mc__host_log(mc_host *h, mc_log_level level, const char *module, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->log(h->log_ud, level, module, msg);
}

/* Drop every callback a module registered (before its fini, like its cached functions). */
static void mc__drop_callbacks(mc_host *h, const mc_api *owner)
{
    for (size_t c = 0; c < h->ncats; c++)
        for (size_t i = 0; i < h->cats[c].nnames; i++) {
            struct mc__cbname *nm = &h->cats[c].names[i];
            size_t keep = 0;
            for (size_t j = 0; j < nm->n; j++)
                if (nm->cbs[j].owner != owner)
                    nm->cbs[keep++] = nm->cbs[j];
            nm->n = keep;
        }
}

/* Undo one module and free it: its registrations, fini, its parsed config, the shared object. */
static void mc__module_unload(mc_host *h, mc__module *m, bool initialised)
{
    mc__drop_callbacks(h, &m->api);
    mc__routes_drop(h, &m->api);
    /* By owner: whatever the module registered and has not destroyed itself. The scope stays
     * (closed) through fini, so that registering from fini is refused too. */
    mc_registry_scope_open(m->api.scope, false);
    mc_registry_scope_clear(m->api.scope);
    /* Its pool work ends before fini frees what that work uses. */
    mc__api_work_stop(&m->api);
    if (initialised && m->api.desc->fini)
        m->api.desc->fini(m->state);
    mc__api_work_free(&m->api);
    mc__registry_view_destroy(m->api.view);
    m->api.view = NULL;
    mc_registry_scope_destroy(m->api.scope);
    m->api.scope = NULL;
    if (m->has_parsed && m->api.desc->free_config)
        m->api.desc->free_config(m->parsed);
    if (m->handle)
        dlclose(m->handle);
    free(m->path);
    free(m->where);
    free(m);
}

void mc_host_destroy(mc_host *h)
{
    if (!h)
        return;
    mc_host_http_stop(h);
    while (h->n > 0) {
        mc__module *m = h->mods[--h->n];
        mc__host_log(h, MC_LOG_INFO, NULL, "finalising module %s", m->api.desc->name);
        mc__module_unload(h, m, true);
    }
    free(h->mods);
    for (size_t c = 0; c < h->ncats; c++) {
        for (size_t i = 0; i < h->cats[c].nnames; i++) {
            free(h->cats[c].names[i].name);
            free(h->cats[c].names[i].cbs);
        }
        free(h->cats[c].names);
        free(h->cats[c].name);
    }
    free(h->cats);
    free(h->routes);
    pthread_rwlock_destroy(&h->routes_lock);
    if (h->own_registry)
        mc_registry_destroy(h->registry);
    mc_config_free(h->empty);
    free(h);
}

/* "<where-path>: <path>: <message> (<file>:<line>:<col>)", or without the location parts. */
static int mc__load_fail(mc_error *err, int code, const char *path, const mc_config_node *where,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int mc__load_fail(mc_error *err, int code, const char *path, const mc_config_node *where,
                         const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (where)
        return mc_config_fail(where, err, code, "%s: %s", path, msg);
    return mc__error_set(err, code, "%s: %s", path, msg);
}

/* The module already loaded (or opened in this batch) from the same shared object, if any:
 * dlopen hands out one handle per file, so a second entry would share the first one's static
 * state. */
static const mc__module *mc__same_object(mc_host *h, void *handle, mc__module *const *pending, size_t npending)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->mods[i]->handle == handle)
            return h->mods[i];
    for (size_t i = 0; i < npending; i++)
        if (pending[i]->handle == handle)
            return pending[i];
    return NULL;
}

/* Open one module: dlopen, check the descriptor, refuse a shared object already listed, parse
 * its config. Nothing of the module runs but parse_config. */
static int mc__module_open(mc_host *h, const char *path, const mc_config_node *config,
                           const mc_config_node *where, mc__module *const *pending, size_t npending,
                           mc__module **out, mc_error *err)
{
    *out = NULL;
    mc__module *m = calloc(1, sizeof *m);
    if (!m)
        return MC_ENOMEM;
    m->path = strdup(path);
    if (!m->path) {
        free(m);
        return MC_ENOMEM;
    }
    /* RTLD_NOW: a missing symbol is an error now, not a crash later; RTLD_LOCAL: modules do
     * not see each other's symbols. */
    m->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        const char *why = dlerror();
        int rc = mc__load_fail(err, MC_EIO, path, where, "cannot load: %s", why ? why : "unknown error");
        free(m->path);
        free(m);
        return rc;
    }
    const mc_module_descriptor *d = dlsym(m->handle, "mc_module");
    const mc__module *twin = mc__same_object(h, m->handle, pending, npending);
    int rc = 0;
    if (twin) {
        rc = mc__load_fail(err, MC_EEXIST, path, where, "the same module file is listed already (as %s%s%s)",
                           twin->path, twin->where ? " at " : "", twin->where ? twin->where : "");
    } else if (!d) {
        rc = mc__load_fail(err, MC_EIO, path, where, "not a modcache module (no mc_module descriptor)");
    } else if (d->abi_version != MC_MODULE_ABI_VERSION) {
        rc = mc__load_fail(err, MC_ENOTSUP, path, where, "module ABI version %u, this host speaks %u",
                           (unsigned)d->abi_version, (unsigned)MC_MODULE_ABI_VERSION);
    } else if (d->size < sizeof(mc_module_descriptor) || !d->init || !d->name || !*d->name) {
        rc = mc__load_fail(err, MC_EINVAL, path, where, "malformed module descriptor");
    }
    if (rc == 0)
        rc = mc_registry_scope_create(h->registry, &m->api.scope);
    if (rc == 0 && (rc = mc__registry_view_create(m->api.scope, &m->api.view)) != 0)
        mc_registry_scope_destroy(m->api.scope);
    if (rc != 0) {
        dlclose(m->handle); /* a twin's handle: dlopen counted this reference too */
        free(m->path);
        free(m);
        return rc;
    }
    if (where) {
        char at[160];
        mc_error tmp = {0};
        mc_config_fail(where, &tmp, MC_EINVAL, "x");
        /* "path: x (file:line:col)": keep the path and the position for a later twin's error. */
        const char *pos = strrchr(tmp.message, '(');
        size_t plen = strcspn(tmp.message, ":");
        snprintf(at, sizeof at, "%.*s%s%s", (int)plen, tmp.message, pos ? " " : "", pos ? pos : "");
        m->where = strdup(at);
    }
    m->api.host = h;
    m->api.desc = d;
    m->api.config = config ? config : mc_config_root(h->empty);
    if ((rc = mc__api_work_init(&m->api)) != 0) {
        mc__module_unload(h, m, false);
        return rc;
    }
    if (d->parse_config) {
        mc_error merr = {0};
        rc = d->parse_config(m->api.config, &m->parsed, &merr);
        if (rc != 0) {
            mc__load_fail(err, rc, path, NULL, "%s", merr.message[0] ? merr.message : "config refused");
            mc__module_unload(h, m, false);
            return rc;
        }
        m->has_parsed = true;
    }
    *out = m;
    return 0;
}

/* Initialise an opened module and add it to the host. On failure it is unloaded. */
static int mc__module_init(mc_host *h, mc__module *m, const mc_config_node *where, mc_error *err)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        mc__module **mods = realloc(h->mods, cap * sizeof *mods);
        if (!mods) {
            mc__module_unload(h, m, false);
            return MC_ENOMEM;
        }
        h->mods = mods;
        h->cap = cap;
    }
    const mc_module_descriptor *d = m->api.desc;
    void *parsed = m->has_parsed ? m->parsed : (void *)m->api.config;
    mc_error merr = {0};
    m->api.in_init = true;
    mc_registry_scope_open(m->api.scope, true);
    int rc = d->init(&m->api, parsed, &m->state, &merr);
    mc_registry_scope_open(m->api.scope, false);
    m->api.in_init = false;
    if (rc != 0) {
        mc__load_fail(err, rc, m->path, where, "init failed: %s", merr.message[0] ? merr.message : mc_strerror(rc));
        mc__module_unload(h, m, false);
        return rc;
    }
    h->mods[h->n++] = m;
    mc__host_log(h, MC_LOG_INFO, NULL, "loaded module %s from %s", d->name, m->path);
    return 0;
}

int mc_host_load_module(mc_host *h, const char *path, const mc_config_node *config,
                        const mc_config_node *where, mc_error *err)
{
    if (!h || !path)
        return MC_EINVAL;
    mc__module *m;
    int rc = mc__module_open(h, path, config, where, NULL, 0, &m, err);
    return rc == 0 ? mc__module_init(h, m, where, err) : rc;
}

int mc_host_load_modules(mc_host *h, const mc_config_node *modules, mc_error *err)
{
    if (!h)
        return MC_EINVAL;
    if (!modules || mc_config_is_null(modules))
        return 0;
    if (mc_config_kind_of(modules) != MC_CONFIG_LIST)
        return mc_config_fail(modules, err, MC_EINVAL, "expected a list of modules");
    size_t count = mc_config_count(modules), first = h->n, opened = 0;
    mc__module **pending = calloc(count ? count : 1, sizeof *pending);
    const mc_config_node **wheres = calloc(count ? count : 1, sizeof *wheres);
    if (!pending || !wheres) {
        free(pending);
        free(wheres);
        return MC_ENOMEM;
    }
    static const char *const keys[] = {"module", "config", NULL};
    int rc = 0;
    /* Every module is opened and its config parsed before any init runs: a fault anywhere in
     * the list stops start-up before any module has had effects. */
    for (size_t i = 0; i < count && rc == 0; i++) {
        const mc_config_node *entry = mc_config_at(modules, i);
        const char *path;
        if ((rc = mc_config_allow_keys(entry, keys, err)))
            break;
        const mc_config_node *where = mc_config_get(entry, "module");
        if (!where) {
            rc = mc_config_fail(entry, err, MC_EINVAL, "missing key 'module'");
            break;
        }
        if ((rc = mc_config_string(where, &path, err)))
            break;
        rc = mc__module_open(h, path, mc_config_get(entry, "config"), where, pending, opened, &pending[opened], err);
        if (rc == 0)
            wheres[opened++] = where;
    }
    size_t next = 0;
    if (rc == 0) {
        for (; next < opened && rc == 0; next++)
            rc = mc__module_init(h, pending[next], wheres[next], err); /* unloads it on failure */
    }
    /* Opened but never initialised: freed without fini. */
    for (size_t i = next; i < opened; i++)
        mc__module_unload(h, pending[i], false);
    free(pending);
    free(wheres);
    if (rc != 0) {
        /* Nothing half-started keeps running. */
        while (h->n > first) {
            mc__module *m = h->mods[--h->n];
            mc__host_log(h, MC_LOG_INFO, NULL, "finalising module %s after a load failure", m->api.desc->name);
            mc__module_unload(h, m, true);
        }
    }
    return rc;
}

size_t mc_host_module_count(const mc_host *h) { return h ? h->n : 0; }

const char *mc_host_module_name(const mc_host *h, size_t i)
{
    return h && i < h->n ? h->mods[i]->api.desc->name : NULL;
}

mc_registry *mc_host_registry(mc_host *h) { return h ? h->registry : NULL; }

/* ------------------------------------------------------------------ the module API */

const char *mc_api_module_name(const mc_api *api) { return api ? api->desc->name : ""; }

const mc_config_node *mc_api_config(const mc_api *api) { return api ? api->config : NULL; }

mc_registry *mc_api_registry(mc_api *api) { return api ? api->view : NULL; }

void mc_api_log(mc_api *api, mc_log_level level, const char *fmt, ...)
{
    if (!api || !fmt)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api->host->log(api->host->log_ud, level, api->desc->name, msg);
}

int mc_api_register_cached_function(mc_api *api, mc_cached *fn)
{
    if (!api || !fn)
        return MC_EINVAL;
    if (!api->in_init) {
        mc__host_log(api->host, MC_LOG_WARN, api->desc->name,
                "register_cached_function after init refused (%s)", mc_cached_name(fn));
        return MC_EBUSY;
    }
    /* A function created with opts.registry = mc_api_registry(api) is registered already. */
    if (mc_registry_scope_owns(api->scope, fn))
        return 0;
    int rc = mc_registry_add(api->scope, fn);
    if (rc == MC_EEXIST)
        mc__host_log(api->host, MC_LOG_WARN, api->desc->name, "cached function name %s is taken",
                mc_cached_name(fn));
    return rc;
}

/* The module API's edge: C arguments (or "all") to one invalidation, through the registry
 * (here, then its subscribers: the bus). A function that is not registered here is only
 * invalidated here: no other host could find it by name. */
static int mc__api_apply(mc_api *api, mc_cached *fn, const mc_invalidation *inv)
{
    mc_error err = {0};
    mc_registry *reg = api->host->registry;
    bool registered = mc_registry_find(reg, mc_cached_name(fn)) == fn; /* fn is the caller's: alive */
    int rc = registered ? mc_registry_apply(reg, fn, inv, NULL, &err) : mc_cached_apply(fn, inv, NULL, &err);
    if (rc == MC_EINVAL && err.message[0])
        mc__host_log(api->host, MC_LOG_WARN, api->desc->name, "invalidation of %s refused: %s", mc_cached_name(fn),
                     err.message);
    return rc;
}

int mc_api_invalidate_cache(mc_api *api, mc_cached *fn, const mc_arg *args, size_t nargs)
{
    if (!api || !fn || (!args && nargs))
        return MC_EINVAL;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc_key_encode(args, nargs, key, sizeof key, &klen);
    if (rc != 0)
        return rc == MC_ERANGE ? MC_E2BIG : rc;
    mc_invalidation_key k = {key, klen};
    mc_invalidation inv = {.name = mc_cached_name(fn), .keys = &k, .nkeys = 1};
    mc_invalidation_source was = mc_cached_set_invalidation_source(MC_INVALIDATION_MODULE);
    rc = mc__api_apply(api, fn, &inv);
    mc_cached_set_invalidation_source(was);
    return rc;
}

int mc_api_invalidate_all(mc_api *api, mc_cached *fn)
{
    if (!api || !fn)
        return MC_EINVAL;
    mc_invalidation inv = {.name = mc_cached_name(fn), .all = true};
    mc_invalidation_source was = mc_cached_set_invalidation_source(MC_INVALIDATION_MODULE);
    int rc = mc__api_apply(api, fn, &inv);
    mc_cached_set_invalidation_source(was);
    return rc;
}

/* ------------------------------------------------------------------ callbacks by category */

static struct mc__category *mc__category(mc_host *h, const char *name)
{
    for (size_t c = 0; c < h->ncats; c++)
        if (!strcmp(h->cats[c].name, name))
            return &h->cats[c];
    return NULL;
}

static struct mc__cbname *mc__cbname(struct mc__category *cat, const char *name)
{
    for (size_t i = 0; i < cat->nnames; i++)
        if (!strcmp(cat->names[i].name, name))
            return &cat->names[i];
    return NULL;
}

int mc_host_declare_category(mc_host *h, const char *category, mc_compose rule, const char *const *names)
{
    if (!h || !category || !names || (unsigned)rule > MC_COMPOSE_FIRST_VALUE)
        return MC_EINVAL;
    if (mc__category(h, category))
        return MC_EEXIST;
    size_t n = 0;
    while (names[n])
        n++;
    struct mc__category *cats = realloc(h->cats, (h->ncats + 1) * sizeof *cats);
    if (!cats)
        return MC_ENOMEM;
    h->cats = cats;
    struct mc__category *cat = &h->cats[h->ncats];
    memset(cat, 0, sizeof *cat);
    cat->rule = rule;
    cat->name = strdup(category);
    cat->names = calloc(n ? n : 1, sizeof *cat->names);
    if (!cat->name || !cat->names)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        cat->names[i].name = strdup(names[i]);
        if (!cat->names[i].name)
            goto nomem;
        cat->nnames++;
    }
    h->ncats++;
    return 0;
nomem:
    for (size_t i = 0; i < cat->nnames; i++)
        free(cat->names[i].name);
    free(cat->names);
    free(cat->name);
    return MC_ENOMEM;
}

int mc_api_register_callbacks(mc_api *api, const char *category, const mc_callback_entry *entries, size_t n)
{
    if (!api || !category || (!entries && n))
        return MC_EINVAL;
    mc_host *h = api->host;
    if (!api->in_init) {
        mc__host_log(h, MC_LOG_WARN, api->desc->name, "register_callbacks(%s) after init refused", category);
        return MC_EBUSY;
    }
    struct mc__category *cat = mc__category(h, category);
    if (!cat) {
        mc__host_log(h, MC_LOG_WARN, api->desc->name, "unknown callback category %s", category);
        return MC_ENOENT;
    }
    /* Check everything first: a bad entry registers nothing. */
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].name || !entries[i].fn || !mc__cbname(cat, entries[i].name)) {
            mc__host_log(h, MC_LOG_WARN, api->desc->name, "category %s has no callback named %s", category,
                    entries[i].name ? entries[i].name : "(null)");
            return MC_EINVAL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct mc__cbname *nm = mc__cbname(cat, entries[i].name);
        struct mc__cb *cbs = realloc(nm->cbs, (nm->n + 1) * sizeof *cbs);
        if (!cbs) {
            mc__drop_callbacks(h, api); /* all or nothing, even on allocation failure */
            return MC_ENOMEM;
        }
        nm->cbs = cbs;
        nm->cbs[nm->n++] = (struct mc__cb){api, entries[i].fn, entries[i].ud};
    }
    return 0;
}

struct mc_callback_run {
    mc_compose rule;
    struct mc__cb *cbs; /* a snapshot: the run does not see later (un)registrations */
    size_t n, idx;
    mc_callback_invoke invoke;
    void *ctx;
    void *value;
    mc_callbacks_done done;
    void *ud;
};

static void mc__run_finish(mc_callback_run *run, int rc)
{
    mc_callbacks_done done = run->done;
    void *ud = run->ud, *value = run->value;
    free(run->cbs);
    free(run);
    done(ud, rc, value);
}

/* Apply one callback's result under the rule; true when the run is over (and freed). */
static bool mc__run_step(mc_callback_run *run, int rc)
{
    if (rc < 0 || (rc > 0 && run->rule != MC_COMPOSE_ALL)) {
        /* A failure stops the callbacks after it; so does the first decision or value. */
        mc__run_finish(run, rc);
        return true;
    }
    run->idx++;
    return false;
}

static void mc__run_continue(mc_callback_run *run)
{
    while (run->idx < run->n) {
        struct mc__cb *cb = &run->cbs[run->idx];
        int rc = run->invoke(cb->fn, cb->ud, run->ctx, &run->value, run);
        if (rc == MC_CALLBACK_PENDING)
            return; /* resumed later; the run may already be gone: touch nothing */
        if (mc__run_step(run, rc))
            return;
    }
    mc__run_finish(run, 0);
}

void mc_callback_resume(mc_callback_run *run, int rc, void *value)
{
    if (!run)
        return;
    if (value)
        run->value = value;
    if (rc == MC_CALLBACK_PENDING)
        rc = MC_EINVAL; /* pending again is not a result */
    if (!mc__run_step(run, rc))
        mc__run_continue(run);
}

int mc_host_run_callbacks_async(mc_host *h, const char *category, const char *name,
                                mc_callback_invoke invoke, void *ctx, mc_callbacks_done done, void *ud)
{
    if (!h || !category || !name || !invoke || !done)
        return MC_EINVAL;
    struct mc__category *cat = mc__category(h, category);
    struct mc__cbname *nm = cat ? mc__cbname(cat, name) : NULL;
    if (!nm)
        return MC_ENOENT;
    mc_callback_run *run = calloc(1, sizeof *run);
    if (!run)
        return MC_ENOMEM;
    run->cbs = malloc((nm->n ? nm->n : 1) * sizeof *run->cbs);
    if (!run->cbs) {
        free(run);
        return MC_ENOMEM;
    }
    memcpy(run->cbs, nm->cbs, nm->n * sizeof *run->cbs);
    run->n = nm->n;
    run->rule = cat->rule;
    run->invoke = invoke;
    run->ctx = ctx;
    run->done = done;
    run->ud = ud;
    mc__run_continue(run);
    return 0;
}

/* The blocking form waits for the asynchronous one. */
struct mc__run_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    void *value;
};

static void mc__run_wait_done(void *ud, int rc, void *value)
{
    struct mc__run_wait *w = ud;
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->value = value;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int mc_host_run_callbacks(mc_host *h, const char *category, const char *name, mc_callback_invoke invoke,
                          void *ctx, void **value)
{
    struct mc__run_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    int rc = mc_host_run_callbacks_async(h, category, name, invoke, ctx, mc__run_wait_done, &w);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    if (value && w.value)
        *value = w.value;
    return w.rc;
}

size_t mc_host_callback_count(mc_host *h, const char *category, const char *name)
{
    struct mc__category *cat = h && category ? mc__category(h, category) : NULL;
    struct mc__cbname *nm = cat && name ? mc__cbname(cat, name) : NULL;
    return nm ? nm->n : 0;
}
