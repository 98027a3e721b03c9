/* modcache/module.h: what a module (a shared object loaded by the host) exports and the API it
 * is handed. A module includes only this header (and the layers it uses: cached.h, config.h).
 *
 * A module exports one descriptor, `mc_module`, declared with MC_MODULE(...). The host checks
 * its ABI version before calling anything, then calls, in config order: parse_config (optional)
 * with the module's `config:` node, init with an API handle, and at shutdown (in reverse
 * order) fini. Registration through the API works only during init. */
#ifndef MODCACHE_MODULE_H
#define MODCACHE_MODULE_H

#include "cached.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever the descriptor or the API table changes incompatibly; the API table only
 * grows at its end, so additions keep the version. */
#define MC_MODULE_ABI_VERSION 1

/* The API handle a module is given (opaque, owned by the host, valid until fini returns). */
typedef struct mc_api mc_api;

/* Severity of a log line (mc_api_log). */
typedef enum mc_log_level {
    MC_LOG_DEBUG = 0,
    MC_LOG_INFO = 1,
    MC_LOG_WARN = 2,
    MC_LOG_ERROR = 3,
} mc_log_level;

/* What a module exports as `mc_module` (declared with MC_MODULE). */
typedef struct mc_module_descriptor {
    uint32_t abi_version; /* MC_MODULE_ABI_VERSION of the headers the module was built with */
    uint32_t size;        /* sizeof(mc_module_descriptor) at build time */
    const char *name;     /* short name ("example_dept"), used to qualify cache names */
    /* Optional: validate and transform the module's `config:` node (may be a null scalar when
     * absent) into *parsed, owned by the module (freed by free_config, if given, after fini).
     * On failure return an MC_E* code and fill err, preferably with mc_config_fail so that
     * the fault names its path. */
    int (*parse_config)(const mc_config_node *config, void **parsed, mc_error *err);
    /* Required: set the module up. `parsed` is parse_config's result (or the raw config node
     * when there is no parse_config). *state is passed to fini. Return 0 or an MC_E* code
     * (err filled). */
    int (*init)(mc_api *api, void *parsed, void **state, mc_error *err);
    /* Optional: tear down, in reverse config order, after every registration is gone. */
    void (*fini)(void *state);
    /* Optional: free parse_config's result. */
    void (*free_config)(void *parsed);
} mc_module_descriptor;

/* Declare the module's descriptor: MC_MODULE("example_dept", parse, init, fini, free_cfg). */
#define MC_MODULE(name_, parse_, init_, fini_, free_config_)                                       \
    __attribute__((visibility("default"))) const mc_module_descriptor mc_module = {               \
        MC_MODULE_ABI_VERSION, (uint32_t)sizeof(mc_module_descriptor), (name_), (parse_),         \
        (init_), (fini_), (free_config_)}

/* ---- the API a module uses (valid during init, and afterwards for the non-registering calls) */

/* The module's name and its config node (NULL scalar if absent). */
MC_API const char *mc_api_module_name(const mc_api *api);
MC_API const mc_config_node *mc_api_config(const mc_api *api);

/* Log through the host's logger, prefixed with the module name. */
MC_API void mc_api_log(mc_api *api, mc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Register a memoized function by its name for admin and remote invalidation (the seed's
 * register_cached_function). The function stays owned by the module (destroy it in fini;
 * the host unregisters everything the module registered before calling fini, by owner, so a
 * function the module destroyed earlier is no concern). MC_EBUSY outside init; MC_EEXIST for a
 * taken name; MC_EINVAL for an unnamed function. */
MC_API int mc_api_register_cached_function(mc_api *api, mc_cached *fn);

/* Invalidate one key of a function here and, when the host has an invalidation bus, in every
 * other host reading the same stream (the seed's invalidate_cache). args is the key tuple (as
 * for mc_cached_invalidate): on a `tree` function a shorter tuple drops every entry under it,
 * here and on every other host. A tuple of the wrong length (empty, longer than the key, or
 * shorter on a function that is not `tree`) is refused with MC_EINVAL: nothing is invalidated
 * or sent, and the host logs why. The local invalidation is done when this returns; the remote
 * one is queued (it never waits for Redis). Works at any time, from any thread. Returns 0 (also
 * when no entry was present), MC_EINVAL, another argument error from the key encoding, or
 * MC_ENOMEM (the message could not be queued; the local invalidation is done). It goes through
 * the registry (mc_registry_apply), which hands it to the bus; a function that is not
 * registered is invalidated here only, since no other host could find it by name. */
MC_API int mc_api_invalidate_cache(mc_api *api, mc_cached *fn, const mc_arg *args, size_t nargs);

/* Invalidate every entry of a function here and, with a bus, in every other host. Returns 0,
 * MC_EINVAL, or MC_ENOMEM as mc_api_invalidate_cache. */
MC_API int mc_api_invalidate_all(mc_api *api, mc_cached *fn);

/* The module's handle on the host's registry (a view of the module's scope, see
 * mc_registry_scope_create), for opts.registry: its cache configuration applies, and a
 * function created with it is registered as the module's. Registering through it works only
 * during init (MC_EBUSY afterwards, and nothing is created); the host withdraws the module's
 * registrations before its fini. The handle cannot open, clear or destroy the module's scope
 * nor create another (those calls do nothing; scope_create returns MC_EBUSY), and
 * mc_registry_destroy on it does nothing. Owned by the host; valid until fini returns. */
MC_API mc_registry *mc_api_registry(mc_api *api);

/* ---- work off the HTTP threads (the seed's defer_to_thread and looping_call) ---- */

/* Work a module hands to the host's load pool. */
typedef void (*mc_api_work_fn)(void *ud);

/* Run fn(ud) once on a thread of the host's load pool (the pool of its registry, which also
 * runs timed loads and refresh reloads: see modcache/cached.h), for blocking work that must
 * not hold an HTTP thread. Jobs start in submission order; several may run at once. Any
 * thread, from init on. Before the module's fini the host refuses new work, waits for every
 * job queued or running to return (looping calls still run meanwhile), then stops the looping
 * calls (so a job must not wait for fini). Returns 0, MC_EINVAL (no
 * fn), MC_EBUSY (the module is being finalised), MC_ENOMEM or MC_EIO (no pool thread). */
MC_API int mc_api_run_in_pool(mc_api *api, mc_api_work_fn fn, void *ud);

/* A periodic call started with mc_api_looping_call (opaque, owned by the host). */
typedef struct mc_looping_call mc_looping_call;

/* Call fn(ud) every interval_ns on the load pool (the seed's looping_call), first after one
 * interval; calls never overlap: the next is due one interval after the previous started, or
 * at once if that has passed. *out (may be NULL) gets a handle for mc_api_looping_call_stop;
 * the host stops every looping call still running before the module's fini. Any thread, from
 * init on. Returns 0, MC_EINVAL (no fn, interval 0), MC_EBUSY (being finalised), MC_ENOMEM,
 * MC_EIO. */
MC_API int mc_api_looping_call(mc_api *api, mc_api_work_fn fn, void *ud, uint64_t interval_ns,
                               mc_looping_call **out);

/* Stop a looping call: when this returns fn is not running (unless this is called from fn
 * itself, which then returns normally) and never runs again; the handle is freed (by the host
 * after fini, if called from fini, so that stopping in fini what the host stopped already is
 * harmless). NULL is a no-op. */
MC_API void mc_api_looping_call_stop(mc_looping_call *lc);

/* ---- web resources ---- */

/* An HTTP request as a handler sees it; everything is valid during the handler call only. */
typedef struct mc_http_request {
    const char *method; /* "GET", "PUT", ... */
    const char *path;   /* the normalised path, without the query: percent-decoded, "." and ".."
                           segments resolved, repeated '/' merged (see mc_http_raw_path) */
    const char *query;  /* the query arguments, decoded, as "k=v&k2=v2" (or ""); a '%', '&' or
                           '=' inside a key or value stays percent-encoded (%25, %26, %3D), so
                           that splitting at '&' and '=' and then decoding gives each exactly */
    const char *body;   /* not NUL-terminated; body_len bytes */
    size_t body_len;
    void *impl;
} mc_http_request;

/* The response a handler fills (opaque, owned by the server, valid during the call). */
typedef struct mc_http_response mc_http_response;

/* A request header (case-insensitive name), or NULL. */
MC_API const char *mc_http_header(const mc_http_request *req, const char *name);
/* The request's path as the client sent it (percent-encoded, before normalisation, without the
 * query), valid during the call. Routing and request checks use req->path; this is for logs
 * and for modules that must see exactly what was sent. */
MC_API const char *mc_http_raw_path(const mc_http_request *req);
/* Set the status (default 200), add a header, set the body (copied). 0 or MC_EINVAL/MC_ENOMEM. */
MC_API int mc_http_set_status(mc_http_response *resp, unsigned status);
MC_API int mc_http_add_header(mc_http_response *resp, const char *name, const char *value);
MC_API int mc_http_set_body(mc_http_response *resp, const void *data, size_t len);
/* 405 with an Allow header listing the methods the resource answers. */
MC_API int mc_http_method_not_allowed(mc_http_response *resp, const char *allow);

/* Handles requests for a registered path and everything below it. Runs on a server thread;
 * several may run at once. */
typedef void (*mc_http_handler)(void *ud, const mc_http_request *req, mc_http_response *resp);

/* Register a web resource at an absolute path ("/_modcache/client/<module>/..."): it receives
 * requests for the path and every path below it (the longest registered match wins). Refused
 * (MC_EINVAL) under the reserved trees /_matrix/client, /_matrix/federation, /_matrix/key,
 * /_matrix/media, /_modcache/admin and /metrics, or for a path that is not absolute, has empty
 * or dot segments or a trailing '/'. The first module to register a path keeps it: a later one
 * gets MC_EEXIST and a logged warning. MC_EBUSY outside init. */
MC_API int mc_api_register_web_resource(mc_api *api, const char *path, mc_http_handler handler,
                                        void *ud);

/* One named callback of a category (the seed's keyword arguments): `fn` is the function the
 * embedding program documents for that name (cast to mc_callback_fn), `ud` its user data. */
typedef void (*mc_callback_fn)(void);
/* A callback's name, function and user data, for mc_api_register_callbacks. */
typedef struct mc_callback_entry {
    const char *name;
    mc_callback_fn fn;
    void *ud;
} mc_callback_entry;

/* Register callbacks for a category the embedding program declared. All or nothing: MC_ENOENT
 * for an unknown category, MC_EINVAL for an unknown callback name or a NULL function (nothing
 * registered, err-free: the host logs the reason), MC_EBUSY outside init. Modules' callbacks
 * run in config order. */
MC_API int mc_api_register_callbacks(mc_api *api, const char *category,
                                     const mc_callback_entry *entries, size_t n);

/* ---- the request check: a callback category every host declares ----
 * Before it looks for the module web resource a request is for, the host runs the callbacks registered as
 * category MC_CATEGORY_HTTP, name MC_CALLBACK_CHECK_REQUEST, in config order, each an
 * mc_check_request_fn. The first to refuse stops the rest and answers the request; a request
 * every check passes reaches the resource. The admin API and /metrics are not checked.
 * A check returns 0 to pass, or an HTTP status from 400 to 599 to refuse: it may set the
 * response's body and headers, otherwise the host answers {"error": "refused"}. Any other
 * return value (a negative MC_E* code) answers 500. Checks run on server threads, several at
 * once. */
#define MC_CATEGORY_HTTP "http"
#define MC_CALLBACK_CHECK_REQUEST "check_request"
typedef int (*mc_check_request_fn)(void *ud, const mc_http_request *req, mc_http_response *resp);

#ifdef __cplusplus
}
#endif

#endif
