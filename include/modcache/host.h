/* modcache/host.h: the module host: loads modules (shared objects) listed in the config, in
 * order, gives each its config and an API handle, and finalises them in reverse order.
 * All-or-nothing: when a module fails to load, parse its config or initialise, the modules
 * already initialised are finalised in reverse order and the error names the module and the
 * config path. A host is used from one thread (the program's setup and shutdown). */
#ifndef MODCACHE_HOST_H
#define MODCACHE_HOST_H

#include "bus.h"
#include "log.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A module host (opaque), owned by the caller of mc_host_create (mc_host_destroy). */
typedef struct mc_host mc_host;

/* Receives every log line: the module's name (NULL for the host itself) and the message. */
typedef void (*mc_log_fn)(void *ud, mc_log_level level, const char *module, const char *message);

/* Options of mc_host_create (mc_host_options_init: every field NULL, the defaults). */
typedef struct mc_host_options {
    /* Logger; NULL writes "<RFC 3339 time> <level> [<module>] <message>" lines of level info
     * and above to stderr (mc_logger_write with the defaults; modcache/log.h). */
    mc_log_fn log;
    void *log_ud;
    /* Registry for the modules' cached functions (a registry, not a scope: each module gets
     * a scope of it); NULL creates one with default config. */
    mc_registry *registry;
    /* Invalidation bus (modcache/bus.h), borrowed, started with this host's registry: the bus
     * subscribes to the registry, so invalidate_cache and admin invalidations reach it once
     * applied here; the host reads it for /metrics. NULL: invalidations stay in this process.
     * The bus must outlive the host (stop it after mc_host_destroy, so that modules' fini can
     * still invalidate). */
    struct mc_bus *bus;
    /* Warm restarts (mc_host_snapshot_open), borrowed, read for /metrics (modcache_snapshot_*).
     * NULL: none. Must outlive the host. */
    struct mc_host_snapshot *snapshot;
} mc_host_options;

/* Fill *opts with defaults (every field NULL). */
MC_API void mc_host_options_init(mc_host_options *opts);
/* Create a host (opts NULL: defaults); *out is the caller's. 0, MC_EINVAL or MC_ENOMEM. */
MC_API int mc_host_create(const mc_host_options *opts, mc_host **out);
/* Finalise every module in reverse order (after unregistering what each registered), unload
 * them, and free the host (and the registry it created, if any). NULL is a no-op. */
MC_API void mc_host_destroy(mc_host *host);

/* Load one module from a shared object path: checks the descriptor's ABI version, then
 * parse_config(config), then init. `config` may be NULL (the module sees a null scalar);
 * `where` names the entry in errors (e.g. the config node of the `module:` key; NULL: none).
 * Returns 0; MC_EIO (cannot load, no descriptor), MC_ENOTSUP (ABI version), MC_EEXIST (that
 * shared object is loaded already), or the module's parse_config / init error, with err
 * naming the path. */
MC_API int mc_host_load_module(mc_host *host, const char *path, const mc_config_node *config,
                               const mc_config_node *where, mc_error *err);

/* Load the `modules:` list of a config file: each entry a map {module: <path>, config: <any>}.
 * Every module is opened and its config parsed (parse_config) before any module's init runs,
 * so a fault anywhere in the list stops start-up before any init has had effects. The same
 * shared object listed twice (or already loaded) is refused with MC_EEXIST naming both config
 * paths: it would share one handle and its static state. On any failure, the modules this
 * call initialised are finalised in reverse order. */
MC_API int mc_host_load_modules(mc_host *host, const mc_config_node *modules, mc_error *err);

/* ---- callbacks by category ---- */

/* How the callbacks registered under one name compose. */
typedef enum mc_compose {
    /* Each runs in turn until one decides (a spam checker): the first decision wins. */
    MC_COMPOSE_FIRST_DECISION = 0,
    /* All run (notifications). */
    MC_COMPOSE_ALL = 1,
    /* Each runs in turn until one produces a value: the first value wins. */
    MC_COMPOSE_FIRST_VALUE = 2,
} mc_compose;

/* Declare a category and its callback names (NULL-terminated), before loading modules.
 * MC_EEXIST if declared already. */
MC_API int mc_host_declare_category(mc_host *host, const char *category, mc_compose rule,
                                    const char *const *names);

/* One run of a category's callbacks, for callbacks that complete later. */
typedef struct mc_callback_run mc_callback_run;

/* Reserved return value of an invoke: the callback will finish later with mc_callback_resume. */
#define MC_CALLBACK_PENDING 0x7fffffff

/* Calls one registered callback: the embedding program knows its real signature. Return 0 for
 * "no decision / no value" (the next callback runs), a positive value (below
 * MC_CALLBACK_PENDING) for a decision or a value (set *value if the category carries one), a
 * negative MC_E* code to fail the operation (the callbacks after it do not run), or
 * MC_CALLBACK_PENDING when the callback completes later (the seed's asynchronous callbacks):
 * then call mc_callback_resume(run, result, value) once, from any thread (even before
 * returning). */
typedef int (*mc_callback_invoke)(mc_callback_fn fn, void *ud, void *ctx, void **value,
                                  mc_callback_run *run);

/* Completion of an asynchronous run: the composed result and value. */
typedef void (*mc_callbacks_done)(void *ud, int rc, void *value);

/* Run the callbacks registered for category/name in config order under the category's rule,
 * blocking until pending ones complete. Returns the first decision (> 0) or value (> 0, *value
 * set) or error (< 0); 0 when every callback passed (or none is registered). MC_ENOENT for an
 * unknown category or name; MC_ENOMEM. */
MC_API int mc_host_run_callbacks(mc_host *host, const char *category, const char *name,
                                 mc_callback_invoke invoke, void *ctx, void **value);
/* The same without blocking: `done` runs with the composed result when the last callback
 * completes (before this returns if none was pending). Returns 0 once started, MC_ENOENT /
 * MC_EINVAL / MC_ENOMEM otherwise (done not called). */
MC_API int mc_host_run_callbacks_async(mc_host *host, const char *category, const char *name,
                                       mc_callback_invoke invoke, void *ctx, mc_callbacks_done done,
                                       void *ud);
/* Finish a callback that returned MC_CALLBACK_PENDING with its result (and value, if any). */
MC_API void mc_callback_resume(mc_callback_run *run, int rc, void *value);

/* Number of callbacks registered for category/name (0 if unknown). */
MC_API size_t mc_host_callback_count(mc_host *host, const char *category, const char *name);

/* ---- the host's configuration file ---- */

/* Where invalidations go (invalidation.backend). */
typedef enum mc_bus_backend {
    MC_BUS_LOCAL = 0, /* invalidations stay in this process */
    MC_BUS_REDIS = 1, /* invalidations go through a Redis stream to every host */
} mc_bus_backend;

/* The file's sections, read and checked (strings point into the mc_config document).
 *   server:       {listen: 127.0.0.1:8008, admin_token_file: admin.token}
 *   caches:       see mc_config_read_caches; and snapshot: {path: FILE, interval: 5m,
 *                 trust_without_bus: false} (read here)
 *   invalidation: {backend: local|redis, instance_name: worker1, max_staleness: 5s,
 *                  redis: {address: 127.0.0.1:6379, stream: modcache:invalidations, maxlen: 100000,
 *                          queue_limit: 10000, reconnect_min: 100ms, reconnect_max: 5s}}
 *   modules:      [{module: <path>, config: <any>}, ...]  (loaded by mc_host_load_modules)
 * Unknown sections and keys are refused with their path, before anything starts. */
typedef struct mc_host_config {
    const char *listen;           /* default "127.0.0.1:8008" (loopback) */
    const char *admin_token_file; /* NULL: the admin API is refused */
    mc_cache_config caches;
    mc_cache_factor *factors;     /* owned: free() after mc_registry_create */
    mc_bus_backend backend;       /* default local */
    const char *instance_name;    /* default "modcache" */
    const char *redis_address;    /* default "127.0.0.1:6379" */
    const char *redis_stream;     /* default "modcache:invalidations" */
    uint64_t redis_maxlen;        /* default 100000 */
    const mc_config_node *modules; /* the modules list, or NULL */
    size_t redis_queue_limit;        /* invalidation.redis.queue_limit, default 10000 messages */
    uint64_t redis_reconnect_min_ns; /* invalidation.redis.reconnect_min, default 100ms */
    uint64_t redis_reconnect_max_ns; /* invalidation.redis.reconnect_max, default 5s */
    /* server: the HTTP server's limits (0 in each: the default of mc_http_options). */
    unsigned server_threads;             /* server.threads: event threads, default the CPU count */
    unsigned server_handler_threads;     /* server.handler_threads: 4 x threads, at least 8;
                                            0 in the file: MC_HTTP_INLINE_HANDLERS */
    unsigned max_connections;            /* server.max_connections, default 10000 */
    unsigned max_connections_per_address; /* server.max_connections_per_address, default 0 (off) */
    uint64_t request_header_timeout_ns;  /* server.request_header_timeout, default 10s */
    uint64_t idle_timeout_ns;            /* server.idle_timeout, default 30s */
    /* Where the file set listen and admin_token_file (NULL: not set), for errors found later
     * (a port in use, a bad token file) to name the file's line:column. */
    const mc_config_node *listen_node, *admin_token_node;
    /* server.log_level (debug, info, warn, error; default info) and server.log_format (text,
     * json; default text): what mchost gives its mc_logger. */
    mc_log_level log_level;
    mc_log_format log_format;
    /* invalidation.redis.announce_interval (1ms to 1h; default 5s): how often the host
     * announces itself beside the stream (mc_bus_options.announce_interval_ms). */
    uint64_t redis_announce_interval_ns;
    /* invalidation.max_staleness (200ms to 1d; 0, the default: off; needs backend redis):
     * mc_bus_options.max_staleness_ms. */
    uint64_t max_staleness_ns;
    /* caches.snapshot: {path: FILE, interval: DURATION, trust_without_bus: BOOL}, warm
     * restarts (mc_host_snapshot_open). path NULL: none. interval (1s to 1w; 0, the default:
     * only at a clean stop). trust_without_bus (default false): restore without a bus. */
    const char *snapshot_path;
    uint64_t snapshot_interval_ns;
    bool snapshot_trust_without_bus;
} mc_host_config;

/* Returns 0 or MC_EINVAL/MC_ENOMEM with err naming the path and position. Checks everything
 * that can be checked without side effects: server.listen is an IPv4 address and a port of
 * ASCII digits from 1 to 65535 (0: any free port); invalidation.redis.address is host:port (a
 * bare host means port 6379); durations and counts are in range. Files are not read here (see
 * mc_host_admin_token_read). */
MC_API int mc_host_config_read(const mc_config *doc, mc_host_config *out, mc_error *err);

/* Longest admin token accepted, in bytes (without the trailing newline). */
#define MC_ADMIN_TOKEN_MAX 4096
/* Shortest admin token accepted, in bytes. */
#define MC_ADMIN_TOKEN_MIN 16

/* Read an admin token file whole. Refused (MC_EINVAL, or MC_EIO when it cannot be read): a
 * file readable or writable by group or others (the message says `chmod 600 FILE`), something
 * other than a regular file, a token shorter than MC_ADMIN_TOKEN_MIN or longer than
 * MC_ADMIN_TOKEN_MAX bytes, any byte outside printable ASCII (0x21 to 0x7e: no spaces, tabs,
 * control bytes or UTF-8). One trailing "\n" (or "\r\n") is removed; nothing else is. On
 * success *token is the caller's (free()). err's message names the file and the fault, without
 * a config position (the caller adds it). */
MC_API int mc_host_admin_token_read(const char *path, char **token, mc_error *err);

/* ---- the HTTP server: modules' web resources, the admin API, /metrics ---- */

/* Options of mc_host_http_start_v2 (mc_http_options_init: the defaults in brackets). The
 * server is event-driven: `threads` threads each wait on epoll for many connections, and
 * modules' handlers run on a fixed pool of `handler_threads`; no thread is created per
 * connection. */
typedef struct mc_http_options {
    const char *listen;      /* IPv4 address and port ["127.0.0.1:8008"]; port 0 picks a free one */
    size_t max_body;         /* bodies over this get 413 [0: 1 MiB] */
    const char *admin_token; /* the admin API's bearer token, copied [NULL: the admin API answers 403] */
    unsigned threads;        /* event threads [0: the number of online CPUs] */
    /* Connections held at once [0: 10000]. Past it a new connection is answered 503 at once
     * (Retry-After: 1) and closed; past max_connections/16 + 8 such answers (at most 256) at
     * once, it is closed as soon as accepted. The client learns at once, never a wait, and the
     * others are served as before; the host logs when refusals start, a count while they last,
     * and when they end. Lowered (and logged) when the open-files limit cannot hold that many. */
    unsigned max_connections;
    /* Connections from one client address [0: no limit, so that clients behind one proxy are
     * not refused]; past it that address's new connections are closed at once. */
    unsigned max_connections_per_address;
    /* A request head (request line and headers) must arrive whole within this time [0: 10 s]:
     * from the connection's start for its first request, from the request line for later ones.
     * Sending slowly does not extend it; past it the connection is closed. */
    uint64_t request_header_timeout_ns;
    /* A connection with nothing to send or receive for this long is closed [0: 30 s]; between
     * requests on a kept-alive connection, the next request head must be whole within
     * idle_timeout + request_header_timeout of the previous answer. */
    uint64_t idle_timeout_ns;
    /* Threads that run modules' request checks and resource handlers [0: 4 x threads, at least
     * 8]. The event threads hand each such request to them and serve other connections
     * meanwhile, so a handler that blocks (a database query) holds one of these, and requests
     * beyond their number wait their turn; the admin API and /metrics answer on the event
     * threads. MC_HTTP_INLINE_HANDLERS: no pool, handlers run on the event threads (faster
     * for handlers that never block; one that blocks then stalls its thread's connections). */
    unsigned handler_threads;
} mc_http_options;

/* mc_http_options.handler_threads: run handlers on the event threads, without a pool. */
#define MC_HTTP_INLINE_HANDLERS 0xffffffffu

/* Fill *opts with the defaults (listen "127.0.0.1:8008", every limit 0: its default). */
MC_API void mc_http_options_init(mc_http_options *opts);

/* Start serving with `opts` (NULL: the defaults). Returns 0, MC_EINVAL (bad address or option),
 * MC_EIO (cannot bind; err names the address and the reason), MC_EBUSY (already serving),
 * MC_ENOMEM. */
MC_API int mc_host_http_start_v2(mc_host *host, const mc_http_options *opts, mc_error *err);

/* mc_host_http_start_v2 with the given listen address, max_body and admin_token and the other
 * options at their defaults. */
MC_API int mc_host_http_start(mc_host *host, const char *listen, size_t max_body,
                              const char *admin_token, mc_error *err);

/* The HTTP server's counters (also in /metrics as modcache_http_*). */
typedef struct mc_http_stats {
    uint64_t connections;        /* open now */
    uint64_t max_connections;    /* the limit in force (after the open-files limit) */
    uint64_t refused;            /* connections refused past max_connections (503 or closed at accept) */
    uint64_t header_timeouts;    /* connections closed: request head not whole in time, or a body
                                  * or answer slower than request_header_timeout + 1 s per 16 KiB */
    uint64_t requests;           /* requests answered */
    uint64_t bad_paths;          /* requests refused with 400: a path that does not normalise */
} mc_http_stats;

/* Fill *st (all zero when the server is not running). Safe from any thread while it runs. */
MC_API void mc_host_http_stats(const mc_host *host, mc_http_stats *st);
/* The bound port (after start), or 0. */
MC_API unsigned mc_host_http_port(const mc_host *host);
/* Stop accepting, let requests in progress finish, then stop. */
MC_API void mc_host_http_stop(mc_host *host);

/* ---- warm restarts: snapshots of persistent functions, replayed against the stream ----
 * The host's side of modcache/snapshot.h. At start, mc_host_snapshot_open reads and checks
 * the file (a missing one is a cold start; a damaged, truncated, foreign or other-version one
 * is refused with one log line and is a cold start too); the bus is started with the saved
 * position (mc_host_snapshot_resume_position as mc_bus_options.resume); once the modules have
 * registered their functions, mc_host_snapshot_restore stores the saved entries of those
 * created with `persist` and lets the bus replay every invalidation since the position,
 * before anything is served. When continuity cannot be proven (the stream trimmed past the
 * position, deleted, recreated, another stream, Redis out of reach) the restored entries are
 * dropped and the log says why. Without a bus, entries are restored only with
 * trust_without_bus: nothing can then prove that none was invalidated meanwhile (by another
 * host, or by a write to the backing store while this one was down).
 * While serving, mc_host_snapshot_start writes a snapshot every interval; at a clean stop
 * mc_host_snapshot_write writes the last one (after the server stopped, before the modules
 * are finalised). Each records the bus position read before the entries, so that a restart
 * replays every invalidation the entries may not have seen.
 * Thread safety: open, restore and destroy from the thread that runs the host; write, stats
 * from any thread. */
typedef struct mc_host_snapshot mc_host_snapshot;

/* Options of mc_host_snapshot_open (mc_host_snapshot_options_init: every field 0 or NULL). */
typedef struct mc_host_snapshot_options {
    const char *path;          /* the snapshot file (copied); required */
    uint64_t interval_ns;      /* mc_host_snapshot_start's period (0: no periodic writes) */
    bool trust_without_bus;    /* restore without a bus (see above) */
    mc_registry *registry;     /* the functions written and restored; required */
    mc_log_fn log;             /* NULL: mc_logger_write defaults on stderr */
    void *log_ud;
    unsigned resume_timeout_ms; /* how long restore waits for Redis and the replay [0: 10 s] */
} mc_host_snapshot_options;

/* Fill *opts with the defaults (every field 0 or NULL). */
MC_API void mc_host_snapshot_options_init(mc_host_snapshot_options *opts);

/* Create the host's snapshot keeper and read the file (kept until restore). A file that is
 * refused is logged (one line naming the fault) and counted in the discards; the keeper is
 * created all the same and the host starts cold. Returns 0, MC_EINVAL (no path or
 * registry), MC_ENOMEM. */
MC_API int mc_host_snapshot_open(const mc_host_snapshot_options *opts, mc_host_snapshot **out);

/* The bus position saved in the file read (for mc_bus_options.resume), or NULL: no file, a
 * refused one, or none saved. Valid until restore or destroy. */
MC_API const mc_bus_position *mc_host_snapshot_resume_position(mc_host_snapshot *snap);

/* Restore the saved entries into the registry's persistent functions and make sure they are
 * current before anything is served: with `bus` (started with the resume position), wait
 * for it to replay the stream after the saved position (mc_bus_resume); without, only with
 * trust_without_bus. When that fails the restored entries are dropped (the bus's full flush,
 * or mc_cached_invalidate_all of the functions restored into) and the log says why. Frees
 * the file's contents. Returns 0 (restored, discarded or nothing to do: see the stats) or
 * MC_EINVAL. Once, before serving. */
MC_API int mc_host_snapshot_restore(mc_host_snapshot *snap, mc_bus *bus);

/* Write a snapshot now: the bus position (mc_bus_position_get; none when bus is NULL or has
 * none yet), then the persistent functions' entries (mc_snapshot_write). Serialised with the
 * periodic writes. Returns 0 or the error of mc_snapshot_write (logged). */
MC_API int mc_host_snapshot_write(mc_host_snapshot *snap, mc_bus *bus);

/* Start the periodic writer (interval_ns > 0; otherwise nothing to start: 0). bus as for
 * mc_host_snapshot_write, borrowed until mc_host_snapshot_stop. Returns 0, MC_EBUSY
 * (running), MC_EIO (no thread). */
MC_API int mc_host_snapshot_start(mc_host_snapshot *snap, mc_bus *bus);
/* Stop the periodic writer (waiting for a write in progress). No-op when not running. */
MC_API void mc_host_snapshot_stop(mc_host_snapshot *snap);

/* Why a snapshot was not used at start (mc_host_snapshot_stats.discarded, /metrics reason). */
typedef enum mc_host_snapshot_discard {
    MC_SNAPSHOT_DISCARD_UNREADABLE = 0, /* the file could not be read */
    MC_SNAPSHOT_DISCARD_FOREIGN,        /* not a snapshot */
    MC_SNAPSHOT_DISCARD_WRONG_VERSION,  /* another format version */
    MC_SNAPSHOT_DISCARD_TRUNCATED,
    MC_SNAPSHOT_DISCARD_DAMAGED,        /* checksum or records */
    MC_SNAPSHOT_DISCARD_NO_BUS,         /* no bus and trust_without_bus false */
    MC_SNAPSHOT_DISCARD_NO_POSITION,    /* a bus now, but no position saved */
    MC_SNAPSHOT_DISCARD_OTHER_STREAM,
    MC_SNAPSHOT_DISCARD_STREAM_DELETED,
    MC_SNAPSHOT_DISCARD_STREAM_RECREATED,
    MC_SNAPSHOT_DISCARD_STREAM_TRIMMED,
    MC_SNAPSHOT_DISCARD_STREAM_UNUSABLE,
    MC_SNAPSHOT_DISCARD_STREAM_UNREACHABLE,
} mc_host_snapshot_discard;
/* Number of mc_host_snapshot_discard values. */
#define MC_SNAPSHOT_NDISCARDS 13
/* The reason's label ("damaged", "stream_trimmed", ...). */
MC_API const char *mc_host_snapshot_discard_name(mc_host_snapshot_discard reason);

/* What the keeper did (mc_host_snapshot_stats_get). */
typedef struct mc_host_snapshot_stats {
    uint64_t restored_entries;      /* entries restored at start and kept (0 when discarded) */
    uint64_t discarded[MC_SNAPSHOT_NDISCARDS]; /* snapshots not used, by reason */
    uint64_t writes, write_errors;  /* snapshots written, and attempts that failed */
    uint64_t last_write_ns;         /* duration of the last successful write */
    uint64_t last_write_bytes;      /* its size */
    uint64_t last_write_entries;    /* its entries */
} mc_host_snapshot_stats;

/* Fill *st. Any thread. */
MC_API void mc_host_snapshot_stats_get(mc_host_snapshot *snap, mc_host_snapshot_stats *st);

/* Stop the periodic writer and free the keeper (it does not write: call
 * mc_host_snapshot_write first at a clean stop). NULL is a no-op. */
MC_API void mc_host_snapshot_destroy(mc_host_snapshot *snap);

/* Number of modules loaded. */
MC_API size_t mc_host_module_count(const mc_host *host);
/* The i-th loaded module's descriptor name, or NULL. */
MC_API const char *mc_host_module_name(const mc_host *host, size_t i);
/* The registry of the modules' cached functions (borrowed from the host). */
MC_API mc_registry *mc_host_registry(mc_host *host);

#ifdef __cplusplus
}
#endif

#endif
