/* Internal allocator used by every layer: jemalloc's mallocx/sdallocx when built with it,
 * libc malloc otherwise (sanitizer builds), with the real allocated size for accounting. */
#ifndef MC_CORE_ALLOC_H
#define MC_CORE_ALLOC_H

#include <stddef.h>

/* NULL on failure. */
void *mc__alloc(size_t size);
/* Zero-filled; NULL on failure. */
void *mc__zalloc(size_t size);
/* `size` is what was passed to mc__alloc (lets jemalloc skip a size lookup). NULL is ignored. */
void mc__free(void *ptr, size_t size);
/* Bytes the allocator really reserved for ptr (size class rounding included). */
size_t mc__alloc_usable(const void *ptr);
/* What mc__alloc_usable will say of an allocation of `size`, computed from the size alone
 * (jemalloc's size classes; the size itself when built without jemalloc). */
size_t mc__alloc_class(size_t size);

/* jemalloc's stats.allocated after an epoch refresh: the bytes the whole process has allocated
 * through jemalloc (0 if the statistics are unavailable). */
size_t mc__allocated_bytes(void);

#endif
