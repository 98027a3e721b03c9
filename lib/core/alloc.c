/* Allocation for cache entries, indexes and policy state, the general-purpose allocations of
 * the cache, memoized-function and config layers, and the test switch that makes them fail.
 * jemalloc's non-standard API keeps the cache's memory honest (size classes reported) and
 * works whichever malloc the host process resolved; sanitizer builds use malloc so that
 * ASan/TSan see every entry. */
#include "core/alloc.h"

#include <jemalloc/jemalloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- failure injection */

/* The plan's generation: 0 while disarmed, a new non-zero value at every arm, so that
 * per-thread counts can tell that they belong to an older plan and restart. */
static _Atomic unsigned mc__fault_gen;
static unsigned mc__fault_last_gen;
static _Atomic uint64_t mc__fault_first, mc__fault_every;
static _Atomic bool mc__fault_per_thread;
static _Atomic uint64_t mc__fault_count, mc__fault_hits;
static _Thread_local unsigned mc__fault_tgen;
static _Thread_local uint64_t mc__fault_tcount;

void mc__fault_arm(const mc__fault_plan *plan)
{
    /* Disarm first, so that no allocation counts against a half-written plan. */
    atomic_store_explicit(&mc__fault_gen, 0, memory_order_seq_cst);
    if (!plan || plan->first == 0)
        return;
    atomic_store_explicit(&mc__fault_first, plan->first, memory_order_relaxed);
    atomic_store_explicit(&mc__fault_every, plan->every, memory_order_relaxed);
    atomic_store_explicit(&mc__fault_per_thread, plan->per_thread, memory_order_relaxed);
    atomic_store_explicit(&mc__fault_count, 0, memory_order_relaxed);
    atomic_store_explicit(&mc__fault_hits, 0, memory_order_relaxed);
    if (++mc__fault_last_gen == 0)
        mc__fault_last_gen = 1;
    /* Release: an allocator that sees the generation sees the plan stored above. */
    atomic_store_explicit(&mc__fault_gen, mc__fault_last_gen, memory_order_release);
}

uint64_t mc__fault_injected(void) { return atomic_load_explicit(&mc__fault_hits, memory_order_relaxed); }

uint64_t mc__fault_counted(void) { return atomic_load_explicit(&mc__fault_count, memory_order_relaxed); }

/* Count this allocation and say whether it must fail. */
static bool mc__fault_slow(unsigned gen)
{
    uint64_t n;
    if (atomic_load_explicit(&mc__fault_per_thread, memory_order_relaxed)) {
        if (mc__fault_tgen != gen) {
            mc__fault_tgen = gen;
            mc__fault_tcount = 0;
        }
        n = ++mc__fault_tcount;
    } else {
        n = atomic_fetch_add_explicit(&mc__fault_count, 1, memory_order_relaxed) + 1;
    }
    uint64_t first = atomic_load_explicit(&mc__fault_first, memory_order_relaxed);
    uint64_t every = atomic_load_explicit(&mc__fault_every, memory_order_relaxed);
    bool fail = n == first || (every && n > first && (n - first) % every == 0);
    if (fail)
        atomic_fetch_add_explicit(&mc__fault_hits, 1, memory_order_relaxed);
    return fail;
}

static inline bool mc__fault_now(void)
{
    /* Acquire pairs with the arm's release store: a non-zero generation comes with its plan. */
    unsigned gen = atomic_load_explicit(&mc__fault_gen, memory_order_acquire);
    return __builtin_expect(gen != 0, 0) && mc__fault_slow(gen);
}

/* ---------------------------------------------------------------- general-purpose memory */

void *mc__malloc(size_t size) { return mc__fault_now() ? NULL : malloc(size); }

void *mc__calloc(size_t n, size_t size) { return mc__fault_now() ? NULL : calloc(n, size); }

void *mc__realloc(void *ptr, size_t size) { return mc__fault_now() ? NULL : realloc(ptr, size); }

char *mc__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = mc__malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---------------------------------------------------------------- cache memory */

size_t mc__allocated_bytes(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch, allocated = 0;
    /* Writing the epoch refreshes jemalloc's statistics snapshot. */
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    sz = sizeof allocated;
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

#ifdef MODCACHE_WITH_JEMALLOC

void *mc__alloc(size_t size) { return mc__fault_now() ? NULL : mallocx(size ? size : 1, 0); }
void *mc__zalloc(size_t size)
{
    return mc__fault_now() ? NULL : mallocx(size ? size : 1, MALLOCX_ZERO);
}
void mc__free(void *ptr, size_t size)
{
    if (ptr)
        sdallocx(ptr, size ? size : 1, 0);
}
size_t mc__alloc_usable(const void *ptr) { return sallocx(ptr, 0); }
size_t mc__alloc_class(size_t size) { return nallocx(size ? size : 1, 0); }

#else
#include <malloc.h>

void *mc__alloc(size_t size) { return mc__fault_now() ? NULL : malloc(size ? size : 1); }
void *mc__zalloc(size_t size) { return mc__fault_now() ? NULL : calloc(1, size ? size : 1); }
void mc__free(void *ptr, size_t size)
{
    (void)size;
    free(ptr);
}
size_t mc__alloc_usable(const void *ptr) { return malloc_usable_size((void *)ptr); }
size_t mc__alloc_class(size_t size) { return size ? size : 1; }
#endif
