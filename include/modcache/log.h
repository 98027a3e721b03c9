/* modcache/log.h: the host's log lines: an RFC 3339 UTC timestamp with milliseconds, the level,
 * the component (the host, the bus, a module's name) and the message, as text or as one JSON
 * object per line for log shippers; lines below a minimum level are dropped. */
#ifndef MODCACHE_LOG_H
#define MODCACHE_LOG_H

#include <stddef.h>
#include <time.h>

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a line is written. */
typedef enum mc_log_format {
    /* 2026-12-02T01:20:33.123Z info [host] serving HTTP on 127.0.0.1:8008 */
    MC_LOG_TEXT = 0,
    /* {"time":"2026-12-02T01:20:33.123Z","level":"info","component":"host","message":"..."} */
    MC_LOG_JSON = 1,
} mc_log_format;

/* A logger writing to a file descriptor (2, stderr, by default): what mc_host_options.log and
 * mc_bus_options.log take (mc_logger_host_fn, mc_logger_bus_fn) with the logger as user data.
 * Set its fields before handing it out and keep it alive while it is in use; each line is
 * written with one write(2), so lines from several threads do not interleave. */
typedef struct mc_logger {
    int fd;                 /* where lines go; mc_logger_init sets 2 */
    mc_log_level min_level; /* lines below it are dropped; mc_logger_init sets MC_LOG_INFO */
    mc_log_format format;   /* mc_logger_init sets MC_LOG_TEXT */
} mc_logger;

/* Fill *lg with the defaults: stderr, info and above, text. */
MC_API void mc_logger_init(mc_logger *lg);

/* Write one line (NULL component: "host") unless level is below lg->min_level. Any thread. */
MC_API void mc_logger_write(const mc_logger *lg, mc_log_level level, const char *component, const char *message);

/* mc_log_fn for mc_host_options.log: ud is a const mc_logger *; module NULL is "host". */
MC_API void mc_logger_host_fn(void *ud, mc_log_level level, const char *module, const char *message);
/* mc_bus_log_fn for mc_bus_options.log: ud is a const mc_logger *; the component is "bus". */
MC_API void mc_logger_bus_fn(void *ud, int level, const char *message);

/* Format one line into buf (cap bytes, NUL-terminated, ending in "\n", cut at cap with the
 * newline kept): `when` is the wall-clock time (NULL: now). Returns the line's length. */
MC_API size_t mc_log_format_line(char *buf, size_t cap, mc_log_format format, mc_log_level level,
                                 const char *component, const char *message, const struct timespec *when);

/* "debug", "info", "warn" (or "warning"), "error" to a level; "text", "json" to a format.
 * Return 0, or MC_EINVAL for anything else (*out untouched). */
MC_API int mc_log_level_parse(const char *name, mc_log_level *out);
MC_API int mc_log_format_parse(const char *name, mc_log_format *out);
/* A level's name: "debug", "info", "warn", "error". */
MC_API const char *mc_log_level_name(mc_log_level level);

#ifdef __cplusplus
}
#endif

#endif
