/* Victim choice for a shard: lazy promotion across generation lists (LRU) and the S3-FIFO
 * queues, plus the ghost. Shard lock held. */
#include "cache/policy.h"

#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

/* S3-FIFO: a small-queue entry read at least this often moves to main when it reaches the
 * small queue's end (the algorithm's published default; docs/cache.md has the trace's miss
 * ratios with 1 and 2). */
#define MC__S3_MOVE_THRESHOLD 2
#define MC__GHOST_DEFAULT_WINDOW 4096

void mc__list_splice_oldest(mc__table *t, uint32_t from, uint32_t to)
{
    uint32_t fs = t->ncells + from, ts = t->ncells + to;
    uint32_t first = t->links[fs].next, last = t->links[fs].prev;
    if (first == fs)
        return;
    uint32_t old_first = t->links[ts].next;
    t->links[ts].next = first;
    t->links[first].prev = ts;
    t->links[last].next = old_first;
    t->links[old_first].prev = last;
    t->links[fs].next = t->links[fs].prev = fs;
}

/* ---- ghost ---- */

#define MC__GHOST_PROBES 5
#define MC__GHOST_BITS_PER_KEY_X2 15 /* 7.5 bits per key */

/* The probe positions of a key in one filter (double hashing over the 32 hash bits). */
static inline void mc__ghost_pos(const struct mc__ghost *g, uint32_t hash, uint32_t pos[MC__GHOST_PROBES])
{
    uint64_t nbits = (uint64_t)g->words * 64;
    uint32_t a = hash * 0x9e3779b1u, b = ((hash ^ (hash >> 15)) * 0x85ebca6bu) | 1u;
    for (unsigned i = 0; i < MC__GHOST_PROBES; i++)
        pos[i] = (uint32_t)(((uint64_t)(a + i * b) * nbits) >> 32); /* multiply-shift: any size */
}

static bool mc__ghost_in(const struct mc__ghost *g, unsigned f, const uint32_t pos[MC__GHOST_PROBES])
{
    const uint64_t *w = g->bits + (size_t)f * g->words;
    for (unsigned i = 0; i < MC__GHOST_PROBES; i++)
        if (!(w[pos[i] / 64] >> (pos[i] % 64) & 1))
            return false;
    return true;
}

static int mc__ghost_alloc(struct mc__ghost *g, size_t window)
{
    if (window == 0)
        window = MC__GHOST_DEFAULT_WINDOW;
    /* Each filter takes 2/3 of the window, so the two remember between 2/3 and 4/3 of it,
     * the window on average: what an exact FIFO ghost of `window` keys remembers. */
    size_t half = (window * 2 + 2) / 3;
    size_t words = (half * MC__GHOST_BITS_PER_KEY_X2 / 2 + 63) / 64;
    if (words > ((size_t)1 << 26))
        return MC_ENOMEM; /* far beyond any shard's bound */
    uint64_t *bits = mc__zalloc(2 * words * sizeof *bits);
    if (!bits)
        return MC_ENOMEM;
    if (g->bits)
        mc__free(g->bits, 2 * (size_t)g->words * sizeof *g->bits);
    g->bits = bits;
    g->words = (uint32_t)words;
    g->cur = 0;
    g->fill = 0;
    g->half = (uint32_t)half;
    return 0;
}

bool mc__policy_ghost_has(const mc__policy *p, uint32_t hash)
{
    const struct mc__ghost *g = &p->ghost;
    if (!g->bits)
        return false;
    uint32_t pos[MC__GHOST_PROBES];
    mc__ghost_pos(g, hash, pos);
    return mc__ghost_in(g, 0, pos) || mc__ghost_in(g, 1, pos);
}

static void mc__ghost_insert(struct mc__ghost *g, uint32_t hash)
{
    if (!g->bits)
        return;
    if (g->fill >= g->half) {
        /* The older filter is forgotten and filled next. */
        g->cur ^= 1;
        memset(g->bits + (size_t)g->cur * g->words, 0, (size_t)g->words * sizeof *g->bits);
        g->fill = 0;
    }
    uint32_t pos[MC__GHOST_PROBES];
    mc__ghost_pos(g, hash, pos);
    uint64_t *w = g->bits + (size_t)g->cur * g->words;
    for (unsigned i = 0; i < MC__GHOST_PROBES; i++)
        w[pos[i] / 64] |= (uint64_t)1 << (pos[i] % 64);
    g->fill++;
}

/* ---- policy ---- */

int mc__policy_init(mc__policy *p, mc_policy kind, size_t window)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (kind == MC_POLICY_S3FIFO)
        return mc__ghost_alloc(&p->ghost, window);
    return 0;
}

void mc__policy_destroy(mc__policy *p)
{
    if (p->ghost.bits)
        mc__free(p->ghost.bits, 2 * (size_t)p->ghost.words * sizeof *p->ghost.bits);
    p->ghost.bits = NULL;
}

void mc__policy_set_window(mc__policy *p, size_t window)
{
    if (p->kind == MC_POLICY_S3FIFO)
        (void)mc__ghost_alloc(&p->ghost, window);
}

size_t mc__policy_bytes(const mc__policy *p)
{
    return p->ghost.bits ? mc__alloc_class(2 * (size_t)p->ghost.words * sizeof *p->ghost.bits) : 0;
}

/* Moving an entry to the main queue: its flag set, its frequency spent. */
static void mc__cell_set_main(mc__table *t, uint32_t cell)
{
    mc__cell_set(t, cell, MC__OFF_VL, (uint8_t)(mc__cell_get(t, cell, MC__OFF_VL) | MC__VL_MAIN));
    mc__cell_set(t, cell, MC__OFF_REC, 0);
}

static uint32_t mc__lru_victim(mc__table *t, uint8_t gen)
{
    /* Every pass either returns or moves one cell to a strictly newer list, so the loop ends
     * within 16 passes per cell. */
    for (;;) {
        int k = MC__NGENS - 1;
        uint32_t list = 0, c = MC__NONE_CELL;
        for (; k >= 0; k--) {
            list = (uint8_t)(gen - k) & (MC__NGENS - 1);
            if ((c = mc__list_oldest(t, list)) != MC__NONE_CELL)
                break;
        }
        if (c == MC__NONE_CELL)
            return MC__NONE_CELL;
        uint8_t rec = mc__cell_get(t, c, MC__OFF_REC);
        uint8_t age = (uint8_t)(gen - rec);
        mc__list_unlink(t, c);
        if ((int)age < k) {
            /* Read since it was queued: the promotion a reader did not do. */
            mc__list_push(t, rec & (MC__NGENS - 1), c);
            /* Prefetch the next candidate's bucket while this one's list moves settle. */
            uint32_t n = mc__list_oldest(t, list);
            if (n != MC__NONE_CELL)
                __builtin_prefetch(&t->buckets[n / MC__SLOTS]);
            continue;
        }
        return c;
    }
}

static bool mc__small_over_share(const mc__policy *p, size_t max_entries, uint64_t max_weight)
{
    if (max_entries && p->small_count * 10 >= max_entries)
        return true;
    if (max_weight && p->small_weight * 10 >= max_weight)
        return true;
    return false;
}

bool mc__policy_fill_main(const mc__policy *p, size_t max_entries, uint64_t max_weight)
{
    return !p->evicted && mc__small_over_share(p, max_entries, max_weight);
}

uint32_t mc__policy_victim(mc__policy *p, mc__table *t, uint8_t gen, size_t max_entries,
                           uint64_t max_weight, uint64_t seed)
{
    if (p->kind == MC_POLICY_LRU)
        return mc__lru_victim(t, gen);
    /* Each pass either evicts or moves an entry / spends one frequency unit, and frequencies
     * are at most 3, so the loop ends within 4 * entries steps. Once the small queue is
     * chosen, it gives the victim: entries read enough move to main meanwhile (main may run
     * over its share until its own turn comes). */
    bool from_small = false;
    for (;;) {
        uint32_t sm = mc__list_oldest(t, MC__Q_SMALL), mn = mc__list_oldest(t, MC__Q_MAIN);
        if (sm == MC__NONE_CELL && mn == MC__NONE_CELL)
            return MC__NONE_CELL;
        if (sm != MC__NONE_CELL &&
            (from_small || mn == MC__NONE_CELL || mc__small_over_share(p, max_entries, max_weight))) {
            from_small = true;
            uint8_t f = mc__cell_get(t, sm, MC__OFF_REC) & 3u;
            mc__list_unlink(t, sm);
            if (f >= MC__S3_MOVE_THRESHOLD) {
                uint64_t w = mc__table_cell_weight(t, sm);
                p->small_count--;
                p->small_weight -= w;
                p->main_count++;
                mc__cell_set_main(t, sm);
                mc__list_push(t, MC__Q_MAIN, sm);
                continue;
            }
            mc__ghost_insert(&p->ghost, (uint32_t)mc__table_cell_hash(t, sm, seed));
            p->evicted = true;
            return sm;
        }
        uint8_t f = mc__cell_get(t, mn, MC__OFF_REC) & 3u;
        mc__list_unlink(t, mn);
        if (f > 0) {
            mc__cell_set(t, mn, MC__OFF_REC, (uint8_t)(f - 1));
            mc__list_push(t, MC__Q_MAIN, mn);
            continue;
        }
        p->evicted = true;
        return mn;
    }
}
