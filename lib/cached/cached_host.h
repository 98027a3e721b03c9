/* The memoized-function layer's narrow internal interface for the host layer: the one call the
 * host needs beyond modcache/cached.h. The only header of lib/cached/ the host layer sees. */
#ifndef MC_CACHED_HOST_H
#define MC_CACHED_HOST_H

#include "core/internal_api.h"
#include "modcache/cached.h"

/* Unregister fn if it is still registered, without reading fn unless it is found there: a
 * module may have destroyed a function it registered (which unregisters it) before the host
 * cleans up after it. */
MC_INTERNAL void mc__registry_forget(mc_registry *reg, const mc_cached *fn);

/* The load pool of a registry (or of a scope's registry), retained for the caller (release
 * with mc__workpool_release): where the host runs modules' pool work. */
typedef struct mc__workpool mc__workpool;
MC_INTERNAL mc__workpool *mc__registry_workpool(mc_registry *reg);

#endif
