/* The memoized-function layer's narrow internal interface for the host layer: the calls the
 * host needs beyond modcache/cached.h. The only header of lib/cached/ the host layer sees. */
#ifndef MC_CACHED_HOST_H
#define MC_CACHED_HOST_H

#include "core/internal_api.h"
#include "modcache/cached.h"


/* The load pool of a registry (or of a scope's registry), retained for the caller (release
 * with mc__workpool_release): where the host runs modules' pool work. */
typedef struct mc__workpool mc__workpool;
MC_INTERNAL mc__workpool *mc__registry_workpool(mc_registry *reg);

/* A view of a scope: the handle a module gets (mc_api_registry), so that the module registers
 * as the scope's owner without controlling the scope. Functions created with opts.registry =
 * view, added with mc_registry_add(view, fn) (or through mc_api_register_cached_function) are
 * the scope's, and only while the scope is open; every read-only call acts on the scope's
 * registry, as on the scope. mc_registry_scope_create (MC_EBUSY), scope_open, scope_clear,
 * scope_destroy and mc_registry_destroy on a view do nothing: the host keeps the scope
 * itself for those. Returns 0, MC_EINVAL (scope is not a scope), MC_ENOMEM. The scope must
 * outlive the view's last use. */
MC_INTERNAL int mc__registry_view_create(mc_registry *scope, mc_registry **view);
/* Free a view (nothing else: the scope and its functions are untouched). NULL or anything
 * other than a view is a no-op. Must be the last call on the view. */
MC_INTERNAL void mc__registry_view_destroy(mc_registry *view);

#endif
