/* Allocation for cache entries, indexes and policy state.
 * jemalloc's non-standard API keeps the cache's memory honest (size classes reported) and
 * works whichever malloc the host process resolved; sanitizer builds use malloc so that
 * ASan/TSan see every entry. */
#include "core/alloc.h"

#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <string.h>

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

void *mc__alloc(size_t size) { return mallocx(size ? size : 1, 0); }
void *mc__zalloc(size_t size) { return mallocx(size ? size : 1, MALLOCX_ZERO); }
void mc__free(void *ptr, size_t size)
{
    if (ptr)
        sdallocx(ptr, size ? size : 1, 0);
}
size_t mc__alloc_usable(const void *ptr) { return sallocx(ptr, 0); }
size_t mc__alloc_class(size_t size) { return nallocx(size ? size : 1, 0); }

#else
#include <malloc.h>
#include <stdlib.h>

void *mc__alloc(size_t size) { return malloc(size ? size : 1); }
void *mc__zalloc(size_t size) { return calloc(1, size ? size : 1); }
void mc__free(void *ptr, size_t size)
{
    (void)size;
    free(ptr);
}
size_t mc__alloc_usable(const void *ptr) { return malloc_usable_size((void *)ptr); }
size_t mc__alloc_class(size_t size) { return size ? size : 1; }
#endif
