/* Internal layout of the module host, shared by host.c (modules, API, callbacks) and http.c
 * (the server). Nothing here is part of the public API. */
#ifndef MC_HOST_INTERNAL_H
#define MC_HOST_INTERNAL_H

#include <pthread.h>

#include "modcache/host.h"

struct mc_api {
    mc_host *host;
    const mc_module_descriptor *desc;
    const mc_config_node *config;
    bool in_init;
    /* The module's scope in the host's registry: open during init only, so that registering
     * later is refused however it is tried; closing and clearing it before fini unregisters
     * whatever the module registered. Only the host holds it. */
    mc_registry *scope;
    /* The module's handle (mc_api_registry): a view of the scope, which registers as the
     * module's but cannot open, clear or destroy the scope, nor create another. */
    mc_registry *view;
    /* The module's work on the load pool (mc_api_run_in_pool, mc_api_looping_call): see
     * work.c. NULL until the module is set up. */
    struct mc__api_work *work;
};

typedef struct mc__module {
    void *handle;
    char *path;
    char *where; /* its config path and position ("modules[0].module (host.yaml:9:13)"), or NULL */
    mc_api api;
    void *parsed;
    bool has_parsed;
    void *state;
} mc__module;

/* One registered callback, tagged with the module that registered it. */
struct mc__cb {
    const mc_api *owner;
    mc_callback_fn fn;
    void *ud;
};

struct mc__cbname {
    char *name;
    struct mc__cb *cbs;
    size_t n;
};

struct mc__category {
    char *name;
    mc_compose rule;
    struct mc__cbname *names;
    size_t nnames;
};

/* A registered web resource: `path` and everything below it. */
struct mc__route {
    char *path;
    size_t len;
    mc_http_handler handler;
    void *ud;
    const mc_api *owner;
};

struct mc__http; /* http.c */

struct mc_host {
    pthread_rwlock_t routes_lock; /* routes change at module load/unload, read per request */
    struct mc__route *routes;
    size_t nroutes;
    struct mc__http *http;
    struct mc__category *cats;
    size_t ncats;
    mc_log_fn log;
    void *log_ud;
    mc_registry *registry;
    bool own_registry;
    mc_bus *bus; /* borrowed; NULL: invalidations stay local */
    mc_host_snapshot *snapshot; /* borrowed, for /metrics; NULL: none */
    mc__module **mods; /* each allocated once: modules keep their mc_api pointer */
    size_t n, cap;
    mc_config *empty; /* a null scalar for modules without a config */
};


/* A module's pool work (work.c): set up when its API handle is, stopped before its fini (new
 * work refused, looping calls stopped, queued and running jobs waited for), freed after. */
int mc__api_work_init(mc_api *api);
void mc__api_work_stop(mc_api *api);
void mc__api_work_free(mc_api *api);

void mc__host_log(mc_host *h, mc_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Run one request through the server's dispatcher without a socket, as if libmicrohttpd had
 * parsed it (for fuzzing and tests): `path` as sent (normalised here: 400 when it does not
 * normalise), `query` as "k=v&k2=v2", `headers` as
 * "Name: value\n" lines, a body over max_body (0: 1 MiB) answered 413. Returns the status;
 * *out gets the response body (malloc'd, NUL-terminated for text bodies; free it). */
int mc__http_inject(mc_host *h, const char *admin_token, size_t max_body, const char *method,
                    const char *path, const char *query, const char *headers, const char *body,
                    size_t body_len, char **out, size_t *out_len);
/* The normalised form of a request target's path (`raw`, `len` bytes, no query): percent-escapes
 * decoded, "." and ".." segments resolved, repeated '/' merged, a trailing '/' kept; an
 * absolute-form target ("http://host/p") reduced to its path. NULL when it does not normalise
 * Returns 0 with *out the caller's (free()); MC_EINVAL when it does not normalise (not
 * absolute, climbs above the root, a malformed escape or an encoded NUL); MC_ENOMEM. */
int mc__http_path_normalize(const char *raw, size_t len, char **out);
/* Withdraw the routes a module registered. */
void mc__routes_drop(mc_host *h, const mc_api *owner);

#endif
