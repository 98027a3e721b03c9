/* Internal functions of libmodcache that libmodcache-host calls (allocation, error details,
 * addresses, rate-limited logs, key lists, the registry's forget): exported from the shared
 * library with mc__ names. Not public API: both libraries come from one build, one version. */
#ifndef MC_CORE_INTERNAL_API_H
#define MC_CORE_INTERNAL_API_H

#if defined(__GNUC__)
#define MC_INTERNAL __attribute__((visibility("default")))
#else
#define MC_INTERNAL
#endif

#endif
