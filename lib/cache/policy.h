/* Eviction policies of one shard over the index's cell ids: generational LRU with lazy
 * promotion, and S3-FIFO (small and main FIFO queues, frequency in the cell's recency byte,
 * a compact ghost of evicted fingerprints). Shard lock held throughout. */
#ifndef MC_CACHE_POLICY_H
#define MC_CACHE_POLICY_H

#include "cache/table.h"

/* Lists per table: LRU uses all 16 (one per generation, index = generation & 15); S3-FIFO
 * uses MC__Q_SMALL and MC__Q_MAIN. */
#define MC__NLISTS 16
#define MC__NGENS 16
#define MC__Q_SMALL 0
#define MC__Q_MAIN 1
#define MC__NONE_CELL UINT32_MAX

/* S3-FIFO's ghost: the keys evicted from the small queue during about the last `window`
 * evictions, as two Bloom filters of 2/3 window keys each (7.5 bits per key, 5 probes, about 3%
 * false positives each): the one being filled and the one before it. When the one being filled
 * has taken its share, the older one is cleared and filled next, so the ghost remembers the
 * last 2/3 to 4/3 windows of keys, one window on average. About 1.25 bytes per remembered key;
 * a key cannot be taken out (the ghost admits it again until it ages out). */
struct mc__ghost {
    uint64_t *bits;     /* two filters of `words` words each, back to back */
    uint32_t words;     /* per filter */
    uint32_t cur;       /* the filter being filled: 0 or 1 */
    uint32_t fill, half;
};

typedef struct mc__policy {
    mc_policy kind;
    /* LRU: the shard's generation advances after gen_len stamps (inserts, plus readers'
     * restamps reported in batches); 0 = exact mode. */
    uint32_t gen_len, gen_ticks;
    uint64_t restamps_seen;
    /* S3-FIFO queue sizes, and whether a victim was ever taken: until then, inserts beyond
     * the small queue's share go to main (a cache filling up keeps what it loaded instead
     * of pushing 90% of it out through the small queue). */
    uint64_t small_count, small_weight, main_count;
    bool evicted;
    struct mc__ghost ghost;
} mc__policy;

static inline void mc__list_push(mc__table *t, uint32_t list, uint32_t cell)
{
    uint32_t s = t->ncells + list, last = t->links[s].prev;
    t->links[cell].prev = last;
    t->links[cell].next = s;
    t->links[last].next = cell;
    t->links[s].prev = cell;
}

static inline void mc__list_unlink(mc__table *t, uint32_t cell)
{
    mc__link32 l = t->links[cell];
    t->links[l.prev].next = l.next;
    t->links[l.next].prev = l.prev;
    /* Self-linked = in no list, so that a move of the cell meanwhile keeps it out. */
    t->links[cell].prev = t->links[cell].next = cell;
}

/* Oldest cell of a list, or MC__NONE_CELL. */
static inline uint32_t mc__list_oldest(const mc__table *t, uint32_t list)
{
    uint32_t n = t->links[t->ncells + list].next;
    return n == t->ncells + list ? MC__NONE_CELL : n;
}

/* The next newer cell after `cell` in its list, or MC__NONE_CELL at the end. */
static inline uint32_t mc__list_newer(const mc__table *t, uint32_t cell)
{
    uint32_t n = t->links[cell].next;
    return n >= t->ncells ? MC__NONE_CELL : n;
}

/* S3-FIFO: does a new entry (not in the ghost) go straight to main? Only while the shard has
 * never evicted and the small queue holds its share. */
bool mc__policy_fill_main(const mc__policy *p, size_t max_entries, uint64_t max_weight);

/* Move every cell of list `from` to the oldest end of list `to`. */
void mc__list_splice_oldest(mc__table *t, uint32_t from, uint32_t to);

int mc__policy_init(mc__policy *p, mc_policy kind, size_t window);
void mc__policy_destroy(mc__policy *p);
/* Resize the ghost for new bounds (S3-FIFO); keeps the old one on allocation failure. */
void mc__policy_set_window(mc__policy *p, size_t window);
size_t mc__policy_bytes(const mc__policy *p);

/* S3-FIFO admission: true if the key was evicted from the small queue recently (or, for a
 * few percent of other keys, another key set the same bits). */
bool mc__policy_ghost_has(const mc__policy *p, uint32_t hash);

/* Choose and unlink the next victim given the shard's bounds (0 = unbounded) and the
 * shard's current generation; MC__NONE_CELL if the shard is empty. `seed` rehashes keys for
 * the ghost. */
uint32_t mc__policy_victim(mc__policy *p, mc__table *t, uint8_t gen, size_t max_entries,
                           uint64_t max_weight, uint64_t seed);

#endif
