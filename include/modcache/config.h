/* modcache/config.h: YAML configuration (libyaml) loaded into a tree of maps, lists and scalars,
 * with typed getters whose errors name the YAML path and the file's line:column.
 *
 * Errors read like `modules[0].config.database: expected a string (host.yaml:14:17)`.
 * Loading refuses malformed YAML, duplicate keys in a map, anchors/aliases and tags other than
 * the standard ones, and non-scalar keys, before anything else sees the document.
 * A loaded document is immutable: every function may be called from any thread. */
#ifndef MODCACHE_CONFIG_H
#define MODCACHE_CONFIG_H

#include <stdbool.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded document (opaque), owned by the caller of mc_config_load_* (mc_config_free). */
typedef struct mc_config mc_config;
/* A node of a loaded document, valid as long as the document. */
typedef struct mc_config_node mc_config_node;

/* What a node is. */
typedef enum mc_config_kind {
    MC_CONFIG_SCALAR = 0, /* a string as written; `null`, `~` and empty are null scalars */
    MC_CONFIG_LIST = 1,
    MC_CONFIG_MAP = 2,
} mc_config_kind;

/* Load a file or a string (`name` is what errors call it, e.g. the file name). *out is owned by
 * the caller (mc_config_free). Returns 0; MC_EIO (file unreadable, err names it); MC_EPARSE
 * (malformed or refused YAML, err has the line:column); MC_ENOMEM; MC_EINVAL. An empty
 * document loads as an empty map. */
MC_API int mc_config_load_file(const char *path, mc_config **out, mc_error *err);
MC_API int mc_config_load_string(const char *text, size_t len, const char *name, mc_config **out,
                                 mc_error *err);
/* Free a document and every node in it. NULL is a no-op. */
MC_API void mc_config_free(mc_config *cfg);

/* The document's root node. */
MC_API const mc_config_node *mc_config_root(const mc_config *cfg);
/* The name given at load (the file path for mc_config_load_file). */
MC_API const char *mc_config_name(const mc_config *cfg);

/* Whether a node is a scalar, a list or a map. */
MC_API mc_config_kind mc_config_kind_of(const mc_config_node *node);
/* The node's path from the root: "" for the root, "caches.global_factor", "modules[0].config". */
MC_API const char *mc_config_path(const mc_config_node *node);
/* 1-based line and column where the node starts. */
MC_API unsigned mc_config_line(const mc_config_node *node);
MC_API unsigned mc_config_column(const mc_config_node *node);
/* The document a node belongs to. */
MC_API const mc_config *mc_config_of(const mc_config_node *node);

/* Maps and lists: number of children; the i-th child (NULL out of range); for maps the i-th key
 * (in document order). */
MC_API size_t mc_config_count(const mc_config_node *node);
MC_API const mc_config_node *mc_config_at(const mc_config_node *node, size_t i);
MC_API const char *mc_config_key_at(const mc_config_node *node, size_t i);
/* A map's value for `key`, or NULL if absent (or if node is not a map). */
MC_API const mc_config_node *mc_config_get(const mc_config_node *map, const char *key);

/* A scalar's text as written (NULL for non-scalars); true for a null scalar. */
MC_API const char *mc_config_text(const mc_config_node *node);
MC_API bool mc_config_is_null(const mc_config_node *node);

/* Typed getters. Each returns 0 and stores the value, or MC_EINVAL with err set to
 * "<path>: expected <what> (<name>:<line>:<column>)".
 * - string: any non-null scalar (numbers and booleans as written).
 * - bool: true/false/yes/no/on/off (any case).
 * - int: a decimal integer in int64 range (an optional sign, digits, '_' separators refused).
 * - double: a finite decimal number.
 * - duration: a non-negative integer with a unit ms, s, m, h, d, w or y ("250ms", "30m", "5d",
 *   "1y" = 365 d), or a bare integer of milliseconds; stored in nanoseconds.
 * - size: a non-negative integer with an optional binary unit K, M, G or T ("512K", "1G"),
 *   bytes otherwise. */
MC_API int mc_config_string(const mc_config_node *node, const char **out, mc_error *err);
MC_API int mc_config_bool(const mc_config_node *node, bool *out, mc_error *err);
MC_API int mc_config_int(const mc_config_node *node, int64_t *out, mc_error *err);
MC_API int mc_config_double(const mc_config_node *node, double *out, mc_error *err);
MC_API int mc_config_duration(const mc_config_node *node, uint64_t *out_ns, mc_error *err);
MC_API int mc_config_size(const mc_config_node *node, uint64_t *out_bytes, mc_error *err);

/* Report a fault at a node in the standard form ("<path>: <message> (<name>:<line>:<col>)"),
 * for validation done by the caller (a module's parse_config). Sets err->code to `code` and
 * returns `code`. printf-style message. */
MC_API int mc_config_fail(const mc_config_node *node, mc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Check that a map has only the given keys (NULL-terminated list): the first unknown key is
 * reported as "<path>.<key>: unknown key (…)" with MC_EINVAL. A non-map node is refused too. */
MC_API int mc_config_allow_keys(const mc_config_node *map, const char *const *keys, mc_error *err);

/* Read the seed's `caches:` block into *out (filled with mc_cache_config_init defaults first):
 *   global_factor: 1.0
 *   per_cache_factors: {name: factor, ...}
 *   expire_caches: true            # default false
 *   cache_entry_ttl: 30m           # default 30m when expire_caches is true
 *   cache_autotuning: {max_cache_memory_usage: 1G, target_cache_memory_usage: 768M,
 *                      min_cache_ttl: 5m}
 *   maintenance_interval: 1s       # optional
 *   load_timeout: 30s              # optional: the functions' default load timeout
 *   load_pool_threads: 4           # optional: workers of the load pool (1 to 1024)
 *   per_cache_timings:             # optional, per function (each key optional):
 *     name: {refresh_after: 5m, expire_after_write: 1h, none_ttl: 30s}
 *   snapshot: {...}                # accepted here, read by mc_host_config_read (warm restarts)
 * Unknown keys, non-positive factors, a target above the maximum and a refresh_after not
 * below expire_after_write are refused with the path. *factors receives one allocation
 * holding the per-cache factor array and the timing array (out->per_cache_factors and
 * out->timings point into it; free() it after mc_registry_create, which copies both); names
 * point into the document. `caches` may be NULL (all defaults). */
struct mc_cache_config;
struct mc_cache_factor;
MC_API int mc_config_read_caches(const mc_config_node *caches, struct mc_cache_config *out,
                                 struct mc_cache_factor **factors, mc_error *err);

#ifdef __cplusplus
}
#endif

#endif
