/* The key layer's entry points for the memoized-function layer (lib/cached), not public. */
#ifndef MC_KEY_KEY_INTERNAL_H
#define MC_KEY_KEY_INTERNAL_H

#include <stddef.h>

#include "modcache/key.h"

/* mc_key_encode in one pass into a scratch buffer of MC_KEY_MAX bytes: the same bytes and
 * the same errors (MC_E2BIG past MC_KEY_MAX, MC_EINVAL for a bad field), but a failing call
 * may have written part of `out`. */
int mc__key_encode_scratch(const mc_arg *args, size_t nargs, unsigned char out[MC_KEY_MAX],
                           size_t *len);

#endif
