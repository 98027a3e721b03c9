/* Eviction policies of one shard: exact LRU (one queue in access order) and S3-FIFO (small
 * and main FIFO queues plus a ghost set of recently evicted hashes). Shard lock held. */
#ifndef MC_CACHE_POLICY_H
#define MC_CACHE_POLICY_H

#include "cache/entry.h"

struct mc__queue {
    struct mc__link head; /* sentinel: head.next is the newest, head.prev the oldest */
    size_t count;
    uint64_t weight;
};

/* S3-FIFO's ghost: hashes evicted from the small queue during the last `window` ghost
 * insertions, in an open-addressing table stamped with insertion sequence numbers; stale
 * stamps are dropped by a rebuild every `window` insertions. */
struct mc__ghost {
    struct mc__ghost_slot {
        uint32_t hash;
        uint32_t seq; /* 0 = empty */
    } *slots;
    uint32_t cap;
    uint32_t window;
    uint32_t seq;
    uint32_t used;
};

typedef struct mc__policy {
    struct mc__queue q[2]; /* LRU: q[0]. S3-FIFO: q[0] small, q[1] main. First: see mc__shard */
    mc_policy kind;
    struct mc__ghost ghost;
} mc__policy;

/* window: ghost size in entries (S3-FIFO only; 0 = a default). Returns 0 or MC_ENOMEM. */
int mc__policy_init(mc__policy *p, mc_policy kind, size_t window);
void mc__policy_destroy(mc__policy *p);
/* Resize the ghost for new bounds (S3-FIFO); keeps the old one on allocation failure. */
void mc__policy_set_window(mc__policy *p, size_t window);
size_t mc__policy_bytes(const mc__policy *p);

/* A new entry (or a replacement, which takes `old`'s place when old is not NULL). */
void mc__policy_insert(mc__policy *p, mc__entry *e, mc__entry *old);
void mc__policy_unlink(mc__policy *p, mc__entry *e);
/* A recorded read of e (LRU: move to the newest end; S3-FIFO readers bump freq instead). */
void mc__policy_touch(mc__policy *p, mc__entry *e);
/* Choose, unlink and return the next victim given the shard's bounds (0 = unbounded), or
 * NULL if the shard is empty. */
mc__entry *mc__policy_evict(mc__policy *p, size_t max_entries, uint64_t max_weight);
/* Oldest entry of queue i (NULL if empty), and the next older one, for sweeps. */
mc__entry *mc__policy_oldest(const mc__policy *p, int i);
mc__entry *mc__policy_newer(const mc__policy *p, int i, const mc__entry *e);

#endif
