/* modcache.h: the umbrella header. Include this, or the per-layer headers under modcache/.
 * Layers: common (errors, version), key (tuple keys), cache (the concurrent cache),
 * cached (memoized functions, their registry and cache config), snapshot (their entries
 * saved for warm restarts), config (YAML), module and
 * host (modules as shared objects), bus (invalidations across processes through Redis), log
 * (the host's timestamped log lines). */
#ifndef MODCACHE_H
#define MODCACHE_H

#include "modcache/common.h"
#include "modcache/key.h"
#include "modcache/cache.h"
#include "modcache/cached.h"
#include "modcache/snapshot.h"
#include "modcache/config.h"
#include "modcache/module.h"
#include "modcache/host.h"
#include "modcache/bus.h"
#include "modcache/log.h"

#endif
