/* modcache/common.h: error codes, version and the error-detail struct shared by every layer.
 * Every modcache function that can fail returns 0 or a negative MC_E* code. */
#ifndef MODCACHE_COMMON_H
#define MODCACHE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported functions: default visibility, except in static builds. */
#if defined(MODCACHE_STATIC_DEFINE) || !defined(__GNUC__)
#define MC_API
#else
#define MC_API __attribute__((visibility("default")))
#endif

/* The version of these headers; mc_version() names the library actually linked. */
#define MC_VERSION_MAJOR 0
#define MC_VERSION_MINOR 4
#define MC_VERSION_PATCH 0
/* Encoded as major * 10000 + minor * 100 + patch, comparable with <, like MC_VERSION_NUMBER. */
#define MC_VERSION_NUMBER (MC_VERSION_MAJOR * 10000 + MC_VERSION_MINOR * 100 + MC_VERSION_PATCH)
/* The same version as a string. */
#define MC_VERSION_STRING "0.4.0"

/* Error codes. Values are stable: tools and logs may print the number. */
enum {
    MC_OK = 0,
    MC_EINVAL = -1,     /* an argument is NULL, out of range or malformed */
    MC_ENOMEM = -2,     /* an allocation failed; nothing was changed */
    MC_ENOENT = -3,     /* no such key (a cache miss, a remove of an absent key) */
    MC_EEXIST = -4,     /* the key is present (put-if-absent) */
    MC_E2BIG = -5,      /* a key or value exceeds a documented maximum or the cache's bound */
    MC_ERANGE = -6,     /* an output buffer is too small; the needed size is reported */
    MC_EPARSE = -7,     /* text input (JSON key, config) is malformed; see mc_error */
    MC_EBUSY = -8,      /* the object is in use (e.g. registration after init) */
    MC_ETIMEDOUT = -9,  /* a wait ran past its deadline */
    MC_ECANCELED = -10, /* an operation was abandoned (e.g. invalidated while loading) */
    MC_EIO = -11,       /* a system call or external service failed */
    MC_ENOTSUP = -12,   /* the operation does not apply to this object */
};

/* Error detail for calls where a code alone does not say enough (text parsing, config, modules).
 * The caller owns the struct; functions that take one fill `code` and a NUL-terminated
 * `message` on failure and leave it untouched on success. */
typedef struct mc_error {
    int code;
    char message[256];
} mc_error;

/* A static, NUL-terminated English description of an MC_E* code ("unknown error" otherwise).
 * Thread-safe. */
MC_API const char *mc_strerror(int code);

/* The short symbolic name of a code ("MC_ENOENT"), or "MC_E?" for unknown codes. Thread-safe. */
MC_API const char *mc_err_name(int code);

/* The library's version string ("0.2.0") of the library actually linked, which can differ
 * from MC_VERSION_STRING seen at compile time. Thread-safe. */
MC_API const char *mc_version(void);

/* The linked library's MC_VERSION_NUMBER. */
MC_API int mc_version_number(void);

#ifdef __cplusplus
}
#endif

#endif
