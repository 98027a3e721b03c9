/* Internal allocator used by every layer: jemalloc's mallocx/sdallocx when built with it,
 * libc malloc otherwise (sanitizer builds), with the real allocated size for accounting. */
#ifndef MC_CORE_ALLOC_H
#define MC_CORE_ALLOC_H

#include "core/internal_api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- cache memory (entries, indexes, policy state) ----
 * Thread-safe. Each allocation is owned by the caller and freed with mc__free. */

/* NULL on failure. */
MC_INTERNAL void *mc__alloc(size_t size);
/* Zero-filled; NULL on failure. */
MC_INTERNAL void *mc__zalloc(size_t size);
/* `size` is what was passed to mc__alloc (lets jemalloc skip a size lookup). NULL is ignored. */
MC_INTERNAL void mc__free(void *ptr, size_t size);
/* Bytes the allocator really reserved for ptr (size class rounding included). */
MC_INTERNAL size_t mc__alloc_usable(const void *ptr);
/* What mc__alloc_usable will say of an allocation of `size`, computed from the size alone
 * (jemalloc's size classes; the size itself when built without jemalloc). */
MC_INTERNAL size_t mc__alloc_class(size_t size);

/* jemalloc's stats.allocated after an epoch refresh: the bytes the whole process has allocated
 * through jemalloc (0 if the statistics are unavailable). */
MC_INTERNAL size_t mc__allocated_bytes(void);

/* ---- general-purpose memory of the cache, memoized-function and config layers ----
 * malloc, calloc, realloc and strdup with the fault switch below in front of them. The memory
 * is libc's: free it with free(), so that objects handed to callers (a config factor array)
 * keep their documented contract. mc__realloc leaves ptr untouched when it fails. Thread-safe. */
MC_INTERNAL void *mc__malloc(size_t size);
MC_INTERNAL void *mc__calloc(size_t n, size_t size);
MC_INTERNAL void *mc__realloc(void *ptr, size_t size);
MC_INTERNAL char *mc__strdup(const char *s);

/* ---- allocation failure injection (tests only) ----
 * When armed, the allocations made through every function above (except mc__free) are
 * counted, and the chosen ones fail as if memory ran out. Allocations made inside libraries
 * (libyaml's parser, ck, libc) are not seen. Disarmed, the cost is one relaxed load per
 * allocation. Arm and disarm while no other thread allocates through these functions, or
 * accept that allocations racing with the switch are counted under either setting. */
typedef struct mc__fault_plan {
    /* The allocation that fails first, counting from 1 after arming; 0 disarms. */
    uint64_t first;
    /* After `first`, every `every`-th allocation fails too; 0: `first` alone. */
    uint64_t every;
    /* Count each thread's allocations on their own (the first-th of every thread fails),
     * instead of one count for the whole process. */
    bool per_thread;
} mc__fault_plan;

/* Arm with a plan (copied), resetting the counts; NULL or first == 0 disarms. */
MC_INTERNAL void mc__fault_arm(const mc__fault_plan *plan);
/* Allocations failed on purpose since the last arm. */
MC_INTERNAL uint64_t mc__fault_injected(void);
/* Allocations counted since the last arm (process-wide counting only; 0 per thread). */
MC_INTERNAL uint64_t mc__fault_counted(void);

#endif
