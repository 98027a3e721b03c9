/* modcache/key.h: tuple keys. A key is a tuple of typed fields encoded to canonical bytes,
 * hashed with XXH3-64 and printed/parsed as a JSON array for admin tools.
 *
 * Canonical encoding: equal tuples always give equal bytes and different tuples different
 * bytes. Fields are concatenated without a count, and each field is self-delimiting, so the
 * encoding of the first k fields of a tuple is a byte prefix of the whole tuple's encoding
 * (this is what tree invalidation by prefix relies on).
 *
 * Type rules:
 *  - integers are one type whatever their C type: MC_ARG_INT(5) and MC_ARG_UINT(5) are the
 *    same field (the range is [-2^63, 2^64-1]);
 *  - doubles are a different type from integers: 1 and 1.0 are different keys. -0.0 is
 *    encoded as 0.0; NaN and infinities are refused (MC_EINVAL) since they have no JSON form;
 *  - strings must be valid UTF-8 (MC_EINVAL otherwise) and are a different type from byte
 *    strings: "1", 1 and the bytes {0x31} are three different keys;
 *  - booleans and null are their own types (true is not 1).
 *
 * All functions here are pure: thread-safe, no allocation, no global state. */
#ifndef MODCACHE_KEY_H
#define MODCACHE_KEY_H

#include <stdbool.h>
#include <string.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest encoded key, in bytes, that any modcache function accepts. A buffer of this size
 * always holds an encoded key; encoding a larger tuple fails with MC_E2BIG. */
#define MC_KEY_MAX 1024

/* The type of a tuple field (mc_arg.type). */
typedef enum mc_arg_type {
    MC_ARG_NULL = 0,
    MC_ARG_BOOL = 1,
    MC_ARG_INT = 2,   /* int64_t in .v.i */
    MC_ARG_UINT = 3,  /* uint64_t in .v.u; same key type as MC_ARG_INT */
    MC_ARG_DOUBLE = 4,
    MC_ARG_STR = 5,   /* UTF-8, .v.s.ptr/.v.s.len (not NUL-terminated necessarily) */
    MC_ARG_BYTES = 6, /* arbitrary bytes, .v.s.ptr/.v.s.len */
} mc_arg_type;

/* One field of a tuple. Strings are borrowed: the pointer must stay valid only during the
 * call that reads the mc_arg. */
typedef struct mc_arg {
    mc_arg_type type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        struct {
            const void *ptr;
            size_t len;
        } s;
    } v;
} mc_arg;

/* Field constructors as functions, for C and C++ alike. */
static inline mc_arg mc_arg_null(void)
{
    mc_arg a;
    memset(&a, 0, sizeof a);
    a.type = MC_ARG_NULL;
    return a;
}
static inline mc_arg mc_arg_bool(bool b)
{
    mc_arg a = mc_arg_null();
    a.type = MC_ARG_BOOL;
    a.v.b = b;
    return a;
}
static inline mc_arg mc_arg_int(int64_t i)
{
    mc_arg a = mc_arg_null();
    a.type = MC_ARG_INT;
    a.v.i = i;
    return a;
}
static inline mc_arg mc_arg_uint(uint64_t u)
{
    mc_arg a = mc_arg_null();
    a.type = MC_ARG_UINT;
    a.v.u = u;
    return a;
}
static inline mc_arg mc_arg_double(double d)
{
    mc_arg a = mc_arg_null();
    a.type = MC_ARG_DOUBLE;
    a.v.d = d;
    return a;
}
/* A UTF-8 string of n bytes (borrowed). */
static inline mc_arg mc_arg_strn(const void *p, size_t n)
{
    mc_arg a = mc_arg_null();
    a.type = MC_ARG_STR;
    a.v.s.ptr = p;
    a.v.s.len = n;
    return a;
}
/* A NUL-terminated UTF-8 string (borrowed). */
static inline mc_arg mc_arg_str(const char *s) { return mc_arg_strn(s, strlen(s)); }
/* A byte string of n bytes (borrowed). */
static inline mc_arg mc_arg_bytes(const void *p, size_t n)
{
    mc_arg a = mc_arg_strn(p, n);
    a.type = MC_ARG_BYTES;
    return a;
}

#ifndef __cplusplus
/* The same as C compound-literal macros: mc_arg a[] = {MC_ARG_S("@alice"), MC_ARG_I(42)}. */
#define MC_ARG_N() ((mc_arg){.type = MC_ARG_NULL})
#define MC_ARG_B(x) ((mc_arg){.type = MC_ARG_BOOL, .v.b = (x)})
#define MC_ARG_I(x) ((mc_arg){.type = MC_ARG_INT, .v.i = (int64_t)(x)})
#define MC_ARG_U(x) ((mc_arg){.type = MC_ARG_UINT, .v.u = (uint64_t)(x)})
#define MC_ARG_D(x) ((mc_arg){.type = MC_ARG_DOUBLE, .v.d = (double)(x)})
#define MC_ARG_S(str) ((mc_arg){.type = MC_ARG_STR, .v.s = {(str), strlen(str)}})
#define MC_ARG_SN(p, n) ((mc_arg){.type = MC_ARG_STR, .v.s = {(p), (n)}})
#define MC_ARG_BN(p, n) ((mc_arg){.type = MC_ARG_BYTES, .v.s = {(p), (n)}})
#endif

/* Encode `nargs` fields into `out` (capacity `cap`), storing the encoded length in *len.
 * Returns 0; MC_EINVAL for NULL pointers (args may be NULL when nargs == 0), an unknown type,
 * invalid UTF-8 in a string or a non-finite double; MC_E2BIG when the encoding exceeds
 * MC_KEY_MAX; MC_ERANGE when it exceeds `cap` (*len then holds the size needed).
 * An empty tuple encodes to zero bytes and is a valid key. */
MC_API int mc_key_encode(const mc_arg *args, size_t nargs, void *out, size_t cap, size_t *len);

/* XXH3-64 of encoded key bytes with a seed. Caches use their own seed; equal bytes and seed
 * give equal hashes in every process of the same build and across builds. */
MC_API uint64_t mc_key_hash(const void *key, size_t len, uint64_t seed);

/* Number of fields in an encoded key. Returns the count (>= 0) or MC_EINVAL if the bytes are
 * not a canonical encoding. */
MC_API int mc_key_count(const void *key, size_t len);

/* Byte length of the first `k` fields of an encoded key, for prefix hashing and matching:
 * key A starts with the first k fields of key B exactly when
 * len(A) >= plen && memcmp(A, B, plen) == 0 where plen = mc_key_prefix_len(B, k).
 * Returns 0 and stores the length in *plen; MC_EINVAL if the bytes are malformed or the key
 * has fewer than k fields. */
MC_API int mc_key_prefix_len(const void *key, size_t len, size_t k, size_t *plen);

/* True when encoded key `key` starts with the encoded fields `prefix` (itself a whole
 * encoded tuple, e.g. from mc_key_encode of k fields). */
MC_API bool mc_key_has_prefix(const void *key, size_t len, const void *prefix, size_t plen);

/* Decode fields one at a time. *pos starts at 0; each call fills *arg (strings point into
 * `key`, borrowed) and advances *pos. Returns 1 when a field was decoded, 0 at the end,
 * MC_EINVAL on malformed bytes. A decoded integer is MC_ARG_INT when it fits int64_t,
 * otherwise MC_ARG_UINT. */
MC_API int mc_key_next(const void *key, size_t len, size_t *pos, mc_arg *arg);

/* Parse the JSON text form of a key, a flat array such as ["@alice:example.com", 42, null,
 * true, 1.5, {"hex": "00ff"}] (a byte string is the object {"hex": "..."}), and encode it.
 * Integers are JSON numbers without fraction or exponent in [-2^63, 2^64-1]; other numbers
 * are doubles. `text` need not be NUL-terminated. Returns 0; MC_EPARSE with err (if not
 * NULL) naming the byte offset and what was expected; MC_E2BIG/MC_ERANGE as mc_key_encode. */
MC_API int mc_key_from_json(const char *text, size_t text_len, void *out, size_t cap, size_t *len,
                            mc_error *err);

/* Print an encoded key as compact JSON (["@alice",42]) into `out`, NUL-terminated.
 * Stores the length without the NUL in *len. Returns 0; MC_EINVAL for malformed bytes;
 * MC_ERANGE when `cap` is too small (*len holds the length needed, without the NUL).
 * The output parses back with mc_key_from_json to the same bytes. */
MC_API int mc_key_to_json(const void *key, size_t len, char *out, size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
