/* LRU and S3-FIFO bookkeeping for one shard (always under its lock).
 * S3-FIFO follows Yang et al., SOSP'23: 10% small FIFO, main FIFO with 2-bit frequency. */
#include "cache/policy.h"

#include <string.h>

#include "core/alloc.h"

/* An entry leaves the small queue for the main one when read at least this many times. */
#define MC__S3_MOVE_THRESHOLD 1
#define MC__GHOST_DEFAULT_WINDOW 1024

static void mc__queue_init(struct mc__queue *q)
{
    q->head.prev = q->head.next = &q->head;
    q->count = 0;
    q->weight = 0;
}

static void mc__queue_push(struct mc__queue *q, mc__entry *e)
{
    struct mc__link *l = &e->u.link;
    l->next = q->head.next;
    l->prev = &q->head;
    q->head.next->prev = l;
    q->head.next = l;
    q->count++;
    q->weight += mc__entry_weight(e);
}

static void mc__queue_del(struct mc__queue *q, mc__entry *e)
{
    struct mc__link *l = &e->u.link;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    q->count--;
    q->weight -= mc__entry_weight(e);
}

static mc__entry *mc__queue_oldest(const struct mc__queue *q)
{
    return q->head.prev == &q->head ? NULL : (mc__entry *)q->head.prev;
}

/* ---- ghost ---- */

static int mc__ghost_alloc(struct mc__ghost *g, size_t window)
{
    if (window == 0)
        window = MC__GHOST_DEFAULT_WINDOW;
    if (window > UINT32_MAX / 4)
        window = UINT32_MAX / 4;
    /* Fresh stamps fill at most 2/3 of the table, compaction runs at 3/4. */
    uint32_t cap = (uint32_t)window + (uint32_t)window / 2 + 8;
    struct mc__ghost_slot *s = mc__zalloc((size_t)cap * sizeof *s);
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

static bool mc__ghost_fresh(const struct mc__ghost *g, const struct mc__ghost_slot *s)
{
    return s->seq != 0 && g->seq - s->seq < g->window;
}

static bool mc__ghost_contains(const struct mc__ghost *g, uint32_t hash)
{
    uint32_t i = (uint32_t)(((uint64_t)hash * g->cap) >> 32);
    for (uint32_t n = 0; n < g->cap; n++) {
        const struct mc__ghost_slot *s = &g->slots[i];
        if (s->seq == 0)
            return false;
        if (s->hash == hash)
            return mc__ghost_fresh(g, s);
        if (++i == g->cap)
            i = 0;
    }
    return false;
}

static void mc__ghost_place(struct mc__ghost *g, uint32_t hash, uint32_t seq)
{
    uint32_t i = (uint32_t)(((uint64_t)hash * g->cap) >> 32);
    for (;;) {
        struct mc__ghost_slot *s = &g->slots[i];
        if (s->seq == 0 || s->hash == hash) {
            if (s->seq == 0)
                g->used++;
            s->hash = hash;
            s->seq = seq;
            return;
        }
        if (++i == g->cap)
            i = 0;
    }
}

/* Drop stale stamps by re-placing the fresh ones into a new array. Runs once per window / 8
 * insertions at most (fresh stamps fill at most 2/3 of the table), so O(1) amortised. On
 * allocation failure the ghost forgets everything: it only steers admission. */
static void mc__ghost_compact(struct mc__ghost *g)
{
    struct mc__ghost_slot *old = g->slots;
    struct mc__ghost_slot *s = mc__zalloc((size_t)g->cap * sizeof *s);
    g->used = 0;
    if (!s) {
        memset(old, 0, (size_t)g->cap * sizeof *old);
        return;
    }
    g->slots = s;
    for (uint32_t i = 0; i < g->cap; i++)
        if (mc__ghost_fresh(g, &old[i]))
            mc__ghost_place(g, old[i].hash, old[i].seq);
    mc__free(old, (size_t)g->cap * sizeof *old);
}

static void mc__ghost_insert(struct mc__ghost *g, uint32_t hash)
{
    if (!g->slots)
        return;
    if (++g->seq == 0) {
        /* Sequence wrap: forget everything rather than misjudge ages. */
        for (uint32_t i = 0; i < g->cap; i++)
            g->slots[i].seq = 0;
        g->used = 0;
        g->seq = 1;
    }
    if ((uint64_t)(g->used + 1) * 4 > (uint64_t)g->cap * 3)
        mc__ghost_compact(g);
    mc__ghost_place(g, hash, g->seq);
}

/* ---- policy ---- */

int mc__policy_init(mc__policy *p, mc_policy kind, size_t window)
{
    p->kind = kind;
    mc__queue_init(&p->q[0]);
    mc__queue_init(&p->q[1]);
    p->ghost.slots = NULL;
    p->ghost.cap = 0;
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
    return p->ghost.slots ? mc__alloc_usable(p->ghost.slots) : 0;
}

void mc__policy_insert(mc__policy *p, mc__entry *e, mc__entry *old)
{
    if (p->kind == MC_POLICY_LRU) {
        mc__queue_push(&p->q[0], e);
        return;
    }
    uint8_t f = 0;
    if (old) /* a new value for a known key keeps the old entry's standing */
        f = atomic_load_explicit(&old->freq, memory_order_relaxed);
    else if (mc__ghost_contains(&p->ghost, e->hash))
        f = MC__FREQ_MAIN;
    atomic_store_explicit(&e->freq, f, memory_order_relaxed);
    mc__queue_push(&p->q[(f & MC__FREQ_MAIN) ? 1 : 0], e);
}

void mc__policy_unlink(mc__policy *p, mc__entry *e)
{
    int q = (p->kind == MC_POLICY_S3FIFO &&
             (atomic_load_explicit(&e->freq, memory_order_relaxed) & MC__FREQ_MAIN)) ? 1 : 0;
    mc__queue_del(&p->q[q], e);
}

void mc__policy_touch(mc__policy *p, mc__entry *e)
{
    if (p->kind != MC_POLICY_LRU)
        return;
    struct mc__queue *q = &p->q[0];
    if (q->head.next == &e->u.link)
        return;
    struct mc__link *l = &e->u.link;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = q->head.next;
    l->prev = &q->head;
    q->head.next->prev = l;
    q->head.next = l;
}

static bool mc__small_over_share(const mc__policy *p, size_t max_entries, uint64_t max_weight)
{
    const struct mc__queue *s = &p->q[0];
    if (max_entries && s->count * 10 >= max_entries)
        return true;
    if (max_weight && s->weight * 10 >= max_weight)
        return true;
    return false;
}

mc__entry *mc__policy_evict(mc__policy *p, size_t max_entries, uint64_t max_weight)
{
    if (p->kind == MC_POLICY_LRU) {
        mc__entry *e = mc__queue_oldest(&p->q[0]);
        if (e)
            mc__queue_del(&p->q[0], e);
        return e;
    }
    struct mc__queue *small = &p->q[0], *main = &p->q[1];
    /* Each pass either evicts or moves an entry / spends one frequency unit, and frequencies
     * are at most 3, so the loop ends within 4 * entries steps. */
    for (;;) {
        if (small->count == 0 && main->count == 0)
            return NULL;
        if (small->count > 0 && (main->count == 0 || mc__small_over_share(p, max_entries, max_weight))) {
            mc__entry *e = mc__queue_oldest(small);
            uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed) & MC__FREQ_MASK;
            mc__queue_del(small, e);
            if (f >= MC__S3_MOVE_THRESHOLD) {
                atomic_store_explicit(&e->freq, MC__FREQ_MAIN, memory_order_relaxed);
                mc__queue_push(main, e);
                continue;
            }
            mc__ghost_insert(&p->ghost, e->hash);
            return e;
        }
        mc__entry *e = mc__queue_oldest(main);
        uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed) & MC__FREQ_MASK;
        mc__queue_del(main, e);
        if (f > 0) {
            atomic_store_explicit(&e->freq, (uint8_t)(MC__FREQ_MAIN | (f - 1)), memory_order_relaxed);
            mc__queue_push(main, e);
            continue;
        }
        return e;
    }
}

mc__entry *mc__policy_oldest(const mc__policy *p, int i) { return mc__queue_oldest(&p->q[i]); }

mc__entry *mc__policy_newer(const mc__policy *p, int i, const mc__entry *e)
{
    struct mc__link *n = e->u.link.prev;
    return n == &p->q[i].head ? NULL : (mc__entry *)n;
}

