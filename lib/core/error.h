/* Internal: filling the caller's mc_error detail, shared by every layer that reports one
 * (keys, config, registry, host). */
#ifndef MC_CORE_ERROR_H
#define MC_CORE_ERROR_H

#include "core/internal_api.h"

#include "modcache/common.h"

/* Set err->code and a printf-formatted message (truncated to fit); NULL err is ignored.
 * Returns code, so that callers can `return mc__error_set(err, MC_EINVAL, ...)`. */
MC_INTERNAL int mc__error_set(mc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
