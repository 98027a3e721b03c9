/* The bus's announcer (announce.c): a thread that writes this host's announcement beside the
 * stream every interval and withdraws it on stop. Internal to the bus layer. */
#ifndef MC_BUS_ANNOUNCE_H
#define MC_BUS_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>

#include "modcache/bus.h"
#include "modcache/cached.h"

typedef struct mc__announcer mc__announcer;

/* Start announcing `instance` as a reader of `stream` at host:port, with bus's last applied
 * id and link state (mc_bus_stats_get). Returns 0, MC_ENOMEM or MC_EIO. */
int mc__announce_start(const char *host, int port, const char *stream, const char *instance, unsigned interval_ms,
                       unsigned timeout_ms, mc_bus *bus, mc__announcer **out);
/* Announce at once instead of at the end of the interval (functions were registered). NULL
 * is a no-op. */
void mc__announce_now(mc__announcer *a);
/* Withdraw the announcement (when Redis answers) and stop. NULL is a no-op. */
void mc__announce_stop(mc__announcer *a);

/* The registry a reading bus applies invalidations to (NULL for a publish-only bus): the
 * announcer lists its functions' key shapes. */
mc_registry *mc__bus_registry(mc_bus *bus);

/* The keys beside a stream: the sorted set of instances, and one instance's hash. */
void mc__announce_keys(const char *stream, const char *instance, char *set_key, size_t set_cap, char *hash_key,
                       size_t hash_cap);

#endif
