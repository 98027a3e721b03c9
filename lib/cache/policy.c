/* Victim choice for a shard: lazy promotion across generation lists (LRU) and the S3-FIFO
 * queues, plus the ghost. Shard lock held. */
#include "cache/policy.h"

#include "core/alloc.h"
#include "core/error.h"

/* S3-FIFO: a small-queue entry read at least this often moves to main when it reaches the
 * small queue's end (the algorithm's published default; docs/cache.md has the trace's miss
 * ratios with 1 and 2). */
#define MC__S3_MOVE_THRESHOLD 2
#define MC__GHOST_DEFAULT_WINDOW 4096
#define MC__GHOST_SEQ_BITS 16
#define MC__GHOST_SEQ_MASK ((1u << MC__GHOST_SEQ_BITS) - 1)
#define MC__GHOST_WINDOW_MAX (MC__GHOST_SEQ_MASK / 2)

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

static uint32_t mc__ghost_fp(uint32_t hash)
{
    uint32_t fp = hash >> (32 - (32 - MC__GHOST_SEQ_BITS));
    return fp ? fp : 1;
}

static int mc__ghost_alloc(struct mc__ghost *g, size_t window)
{
    if (window == 0)
        window = MC__GHOST_DEFAULT_WINDOW;
    if (window > MC__GHOST_WINDOW_MAX)
        window = MC__GHOST_WINDOW_MAX;
    /* Fresh slots fill at most 2/3 of the table; compaction runs at 3/4. */
    uint32_t cap = (uint32_t)window + (uint32_t)window / 2 + 8;
    uint32_t *s = mc__zalloc((size_t)cap * sizeof *s);
    if (!s)
        return MC_ENOMEM;
    if (g->slots)
        mc__free(g->slots, (size_t)g->cap * sizeof *g->slots);
    g->slots = s;
    g->cap = cap;
    g->window = (uint32_t)window;
    g->seq = 0;
    g->used = 0;
    return 0;
}

static bool mc__ghost_fresh(const struct mc__ghost *g, uint32_t slot)
{
    return slot != 0 && ((g->seq - slot) & MC__GHOST_SEQ_MASK) < g->window;
}

static uint32_t mc__ghost_home(const struct mc__ghost *g, uint32_t hash)
{
    return (uint32_t)(((uint64_t)(hash * 0x9e3779b1u) * g->cap) >> 32);
}

bool mc__policy_ghost_take(mc__policy *p, uint32_t hash)
{
    struct mc__ghost *g = &p->ghost;
    if (!g->slots)
        return false;
    uint32_t fp = mc__ghost_fp(hash), i = mc__ghost_home(g, hash);
    for (uint32_t n = 0; n < g->cap; n++) {
        uint32_t s = g->slots[i];
        if (s == 0)
            return false;
        if ((s >> MC__GHOST_SEQ_BITS) == fp && mc__ghost_fresh(g, s & MC__GHOST_SEQ_MASK)) {
            /* Taken: the slot stays (probes pass it) but is no longer fresh. */
            uint32_t stale = (g->seq - g->window) & MC__GHOST_SEQ_MASK;
            if (stale == 0) /* 0 marks an empty slot */
                stale = (g->seq - g->window - 1) & MC__GHOST_SEQ_MASK;
            g->slots[i] = fp << MC__GHOST_SEQ_BITS | stale;
            return true;
        }
        if (++i == g->cap)
            i = 0;
    }
    return false;
}

static void mc__ghost_place(struct mc__ghost *g, uint32_t fp, uint32_t home, uint32_t seq)
{
    uint32_t i = home;
    for (;;) {
        uint32_t s = g->slots[i];
        if (s == 0 || (s >> MC__GHOST_SEQ_BITS) == fp) {
            if (s == 0)
                g->used++;
            g->slots[i] = fp << MC__GHOST_SEQ_BITS | seq;
            return;
        }
        if (++i == g->cap)
            i = 0;
    }
}

/* Keep only fresh slots. The home of a stored slot is not kept, so compaction re-places by
 * fingerprint alone into a fresh array: fingerprints with the same home collide a little
 * more, which only makes admission slightly more generous. On allocation failure the ghost
 * forgets everything: it only steers admission. */
static void mc__ghost_compact(struct mc__ghost *g)
{
    uint32_t *old = g->slots;
    uint32_t *s = mc__zalloc((size_t)g->cap * sizeof *s);
    g->used = 0;
    if (!s) {
        memset(old, 0, (size_t)g->cap * sizeof *old);
        return;
    }
    g->slots = s;
    for (uint32_t i = 0; i < g->cap; i++)
        if (mc__ghost_fresh(g, old[i] & MC__GHOST_SEQ_MASK)) {
            /* Slots are probed from their home; keep each near where it was. */
            mc__ghost_place(g, old[i] >> MC__GHOST_SEQ_BITS, i, old[i] & MC__GHOST_SEQ_MASK);
        }
    mc__free(old, (size_t)g->cap * sizeof *old);
}

static void mc__ghost_insert(struct mc__ghost *g, uint32_t hash)
{
    if (!g->slots)
        return;
    g->seq = (g->seq + 1) & MC__GHOST_SEQ_MASK;
    if (g->seq == 0)
        g->seq = 1;
    if ((uint64_t)(g->used + 1) * 4 > (uint64_t)g->cap * 3)
        mc__ghost_compact(g);
    mc__ghost_place(g, mc__ghost_fp(hash), mc__ghost_home(g, hash), g->seq);
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
    if (p->ghost.slots)
        mc__free(p->ghost.slots, (size_t)p->ghost.cap * sizeof *p->ghost.slots);
    p->ghost.slots = NULL;
}

void mc__policy_set_window(mc__policy *p, size_t window)
{
    if (p->kind == MC_POLICY_S3FIFO)
        (void)mc__ghost_alloc(&p->ghost, window);
}

size_t mc__policy_bytes(const mc__policy *p)
{
    return p->ghost.slots ? mc__alloc_class((size_t)p->ghost.cap * sizeof *p->ghost.slots) : 0;
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
