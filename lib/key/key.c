/* Canonical binary encoding of tuple keys: encode, decode, prefix lengths and the key hash.
 * Cache tables store and compare these bytes, so the layout below must never change. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "key/key_internal.h"
#include "modcache/key.h"

/* Only this file hashes keys; inlining lets XXH3 pick its short-input path at compile time. */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* Field tags. Integer tags carry the byte count of their payload in the low nibble, so a
 * field's length is always known from its first bytes and fields can be concatenated
 * without a count (which is what makes a k-field key a byte prefix of a longer one). */
enum {
    TAG_NULL = 0x00,
    TAG_FALSE = 0x01,
    TAG_TRUE = 0x02,
    TAG_UINT = 0x20,   /* 0x20 | n: value >= 0 in n minimal big-endian bytes */
    TAG_NINT = 0x30,   /* 0x30 | n: value < 0, stored as -(v+1) in n minimal bytes */
    TAG_DOUBLE = 0x40, /* 8 bytes of IEEE-754 bits, big-endian */
    TAG_STR = 0x50,    /* LEB128 length, then UTF-8 bytes */
    TAG_BYTES = 0x60,  /* LEB128 length, then raw bytes */
};

#define DOUBLE_SIGN_BIT UINT64_C(0x8000000000000000)
#define DOUBLE_EXP_MASK UINT64_C(0x7ff0000000000000)

/* Length of the valid UTF-8 sequence starting at p (1..4), or 0 if it is not one. Shared
 * with the JSON parser, which needs the same strictness to report the failing offset. */
size_t mc__utf8_seq(const unsigned char *p, size_t n);

size_t mc__utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t need;
    /* Narrowing the range of the second byte per lead byte rejects overlong forms, the
     * surrogates U+D800..U+DFFF and anything above U+10FFFF in one comparison. */
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c == 0xE0) {
        need = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        need = 3;
    } else if (c == 0xED) {
        need = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        need = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 4;
    } else if (c == 0xF4) {
        need = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (n < need || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    return need;
}

static int utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Keys are mostly ASCII: skip eight plain bytes at a time. */
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = mc__utf8_seq(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

static inline size_t uint_bytes(uint64_t v)
{
    return v ? (size_t)(71 - __builtin_clzll(v)) / 8 : 0;
}

static size_t leb_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        n++;
        v >>= 7;
    }
    return n;
}

/* Splits an integer field into its tag base and the unsigned payload to store. */
static inline void int_parts(const mc_arg *a, unsigned *tag, uint64_t *mag)
{
    if (a->type == MC_ARG_INT && a->v.i < 0) {
        *tag = TAG_NINT;
        /* -(v+1) without signed overflow at INT64_MIN: ~ of the two's complement image. */
        *mag = ~(uint64_t)a->v.i;
    } else {
        *tag = TAG_UINT;
        *mag = a->type == MC_ARG_INT ? (uint64_t)a->v.i : a->v.u;
    }
}

static uint64_t double_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

/* Validates one field and computes its encoded size, saturated just above MC_KEY_MAX so
 * that huge string lengths cannot overflow the caller's sum. */
static int field_size(const mc_arg *a, size_t *size)
{
    switch (a->type) {
    case MC_ARG_NULL:
    case MC_ARG_BOOL:
        *size = 1;
        return 0;
    case MC_ARG_INT:
    case MC_ARG_UINT: {
        unsigned tag;
        uint64_t mag;
        int_parts(a, &tag, &mag);
        *size = 1 + uint_bytes(mag);
        return 0;
    }
    case MC_ARG_DOUBLE:
        if ((double_bits(a->v.d) & DOUBLE_EXP_MASK) == DOUBLE_EXP_MASK)
            return MC_EINVAL;
        *size = 9;
        return 0;
    case MC_ARG_STR:
    case MC_ARG_BYTES: {
        size_t n = a->v.s.len;
        if (a->v.s.ptr == NULL && n > 0)
            return MC_EINVAL;
        if (a->type == MC_ARG_STR && !utf8_valid(a->v.s.ptr, n))
            return MC_EINVAL;
        *size = n > MC_KEY_MAX ? MC_KEY_MAX + 1 : 1 + leb_size(n) + n;
        return 0;
    }
    }
    return MC_EINVAL;
}

static unsigned char *put_uint(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        p[i - 1] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    return p + n;
}

static unsigned char *put_leb(unsigned char *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(0x80 | (v & 0x7f));
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Writes a field already accepted by field_size. */
static unsigned char *field_write(unsigned char *p, const mc_arg *a)
{
    switch (a->type) {
    case MC_ARG_NULL:
        *p++ = TAG_NULL;
        break;
    case MC_ARG_BOOL:
        *p++ = a->v.b ? TAG_TRUE : TAG_FALSE;
        break;
    case MC_ARG_INT:
    case MC_ARG_UINT: {
        unsigned tag;
        uint64_t mag;
        int_parts(a, &tag, &mag);
        size_t n = uint_bytes(mag);
        *p++ = (unsigned char)(tag | n);
        p = put_uint(p, mag, n);
        break;
    }
    case MC_ARG_DOUBLE: {
        uint64_t bits = double_bits(a->v.d);
        /* -0.0 == 0.0 in C, so the two must be one key. */
        if (bits == DOUBLE_SIGN_BIT)
            bits = 0;
        *p++ = TAG_DOUBLE;
        p = put_uint(p, bits, 8);
        break;
    }
    case MC_ARG_STR:
    case MC_ARG_BYTES:
        *p++ = a->type == MC_ARG_STR ? TAG_STR : TAG_BYTES;
        p = put_leb(p, a->v.s.len);
        if (a->v.s.len > 0)
            memcpy(p, a->v.s.ptr, a->v.s.len);
        p += a->v.s.len;
        break;
    }
    return p;
}

/* One integer field, the most common key (a user or row id), in one pass: the same bytes
 * as field_write, stored big-endian with one 8-byte move when the buffer has room. Returns
 * the field's size; writes only if that fits in `room`. */
static inline size_t put_int_field(unsigned char *p, size_t room, const mc_arg *a)
{
    unsigned tag;
    uint64_t mag;
    int_parts(a, &tag, &mag);
    size_t n = uint_bytes(mag);
    if (1 + n > room)
        return 1 + n;
    p[0] = (unsigned char)(tag | n);
    if (n > 0 && room >= 9) {
        uint64_t be = __builtin_bswap64(mag << (64 - 8 * n));
        memcpy(p + 1, &be, 8);
    } else {
        put_uint(p + 1, mag, n);
    }
    return 1 + n;
}

static inline int encode_one_int(const mc_arg *a, unsigned char *p, size_t cap, size_t *len)
{
    *len = put_int_field(p, cap, a);
    return *len > cap ? MC_ERANGE : 0;
}

static int encode_general(const mc_arg *args, size_t nargs, void *out, size_t cap, size_t *len);

int mc_key_encode(const mc_arg *args, size_t nargs, void *out, size_t cap, size_t *len)
{
    if ((args == NULL && nargs > 0) || out == NULL || len == NULL)
        return MC_EINVAL;
    if (nargs == 1 && (args[0].type == MC_ARG_INT || args[0].type == MC_ARG_UINT))
        return encode_one_int(&args[0], out, cap, len);
    return encode_general(args, nargs, out, cap, len);
}

/* Out of line, so that the one-integer path above saves no registers. */
__attribute__((noinline)) static int encode_general(const mc_arg *args, size_t nargs, void *out,
                                                    size_t cap, size_t *len)
{
    /* Size everything first so that a failing call writes nothing into `out`. */
    size_t total = 0;
    for (size_t i = 0; i < nargs; i++) {
        size_t fs;
        int rc = field_size(&args[i], &fs);
        if (rc != 0)
            return rc;
        total += fs;
        if (total > MC_KEY_MAX)
            total = MC_KEY_MAX + 1;
    }
    if (total > MC_KEY_MAX)
        return MC_E2BIG;
    if (total > cap) {
        *len = total;
        return MC_ERANGE;
    }
    unsigned char *p = out;
    for (size_t i = 0; i < nargs; i++)
        p = field_write(p, &args[i]);
    *len = total;
    return 0;
}

/* Strings in one pass: copies n bytes and says whether they are all ASCII, a word at a time
 * (overlapping words for the tail, never reading outside either buffer). */
static inline bool str_ascii_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
    uint64_t any = 0;
    if (n >= 8) {
        size_t i = 0;
        uint64_t w;
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, src + i, 8);
            memcpy(dst + i, &w, 8);
            any |= w;
        }
        memcpy(&w, src + n - 8, 8);
        memcpy(dst + n - 8, &w, 8);
        any |= w;
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
        any = a | b;
    } else {
        for (size_t i = 0; i < n; i++) {
            dst[i] = src[i];
            any |= src[i];
        }
    }
    return (any & 0x8080808080808080ull) == 0;
}

/* The single pass; false on any failure, whose exact code mc_key_encode then gives. */
static bool encode_scratch(const mc_arg *args, size_t nargs, unsigned char *out, size_t *len)
{
    unsigned char *p = out, *const end = out + MC_KEY_MAX;
    for (size_t i = 0; i < nargs; i++) {
        const mc_arg *a = &args[i];
        switch (a->type) {
        case MC_ARG_INT:
        case MC_ARG_UINT: {
            size_t room = (size_t)(end - p), k = put_int_field(p, room, a);
            if (k > room)
                return false;
            p += k;
            break;
        }
        case MC_ARG_STR:
        case MC_ARG_BYTES: {
            size_t n = a->v.s.len;
            if (a->v.s.ptr == NULL && n > 0)
                return false;
            if (n > MC_KEY_MAX || (size_t)(end - p) < 1 + leb_size(n) + n)
                return false;
            *p++ = a->type == MC_ARG_STR ? TAG_STR : TAG_BYTES;
            p = put_leb(p, n);
            if (!str_ascii_copy(p, a->v.s.ptr, n) && a->type == MC_ARG_STR &&
                !utf8_valid(a->v.s.ptr, n))
                return false;
            p += n;
            break;
        }
        default: {
            size_t fs;
            int rc = field_size(a, &fs);
            if (rc != 0)
                return false;
            if ((size_t)(end - p) < fs)
                return false;
            p = field_write(p, a);
            break;
        }
        }
    }
    *len = (size_t)(p - out);
    return true;
}

int mc__key_encode_scratch(const mc_arg *args, size_t nargs, unsigned char out[MC_KEY_MAX],
                           size_t *len)
{
    if (args == NULL && nargs > 0)
        return MC_EINVAL;
    if (encode_scratch(args, nargs, out, len))
        return 0;
    int rc = mc_key_encode(args, nargs, out, MC_KEY_MAX, len);
    return rc == MC_ERANGE ? MC_E2BIG : rc;
}

uint64_t mc_key_hash(const void *key, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(key, len, seed);
}

static uint64_t get_uint(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads a minimal LEB128 length that fits in the remaining bytes. Keys are at most
 * MC_KEY_MAX bytes, so three groups (2^21) are more than any valid length needs, and the
 * bound keeps the shift well defined even with a 32-bit size_t. */
static int get_leb(const unsigned char *p, size_t len, size_t *pos, size_t *val)
{
    size_t v = 0;
    for (unsigned shift = 0; shift < 21; shift += 7) {
        if (*pos >= len)
            return MC_EINVAL;
        unsigned char b = p[(*pos)++];
        v |= (size_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            /* A final zero group after the first one adds nothing: a second spelling. */
            if (b == 0 && shift > 0)
                return MC_EINVAL;
            if (v > len - *pos)
                return MC_EINVAL;
            *val = v;
            return 0;
        }
    }
    return MC_EINVAL;
}

/* Decodes the field at `pos`, refusing every byte string mc_key_encode cannot produce so
 * that equal keys are exactly equal bytes. */
static int field_read(const unsigned char *p, size_t len, size_t *pos, mc_arg *a)
{
    if (*pos >= len)
        return MC_EINVAL;
    unsigned tag = p[(*pos)++];
    unsigned n = tag & 0x0f;
    switch (tag & 0xf0) {
    case 0x00:
        if (tag == TAG_NULL) {
            a->type = MC_ARG_NULL;
        } else if (tag == TAG_FALSE || tag == TAG_TRUE) {
            a->type = MC_ARG_BOOL;
            a->v.b = tag == TAG_TRUE;
        } else {
            return MC_EINVAL;
        }
        return 0;
    case TAG_UINT:
    case TAG_NINT: {
        if (n > 8 || n > len - *pos)
            return MC_EINVAL;
        if (n > 0 && p[*pos] == 0)
            return MC_EINVAL;
        uint64_t mag = get_uint(p + *pos, n);
        *pos += n;
        if ((tag & 0xf0) == TAG_NINT) {
            if (mag > (uint64_t)INT64_MAX)
                return MC_EINVAL;
            a->type = MC_ARG_INT;
            a->v.i = -(int64_t)mag - 1;
        } else if (mag <= (uint64_t)INT64_MAX) {
            a->type = MC_ARG_INT;
            a->v.i = (int64_t)mag;
        } else {
            a->type = MC_ARG_UINT;
            a->v.u = mag;
        }
        return 0;
    }
    case TAG_DOUBLE: {
        if (tag != TAG_DOUBLE || len - *pos < 8)
            return MC_EINVAL;
        uint64_t bits = get_uint(p + *pos, 8);
        if (bits == DOUBLE_SIGN_BIT || (bits & DOUBLE_EXP_MASK) == DOUBLE_EXP_MASK)
            return MC_EINVAL;
        *pos += 8;
        a->type = MC_ARG_DOUBLE;
        memcpy(&a->v.d, &bits, sizeof bits);
        return 0;
    }
    case TAG_STR:
    case TAG_BYTES: {
        size_t n2;
        if (n != 0 || get_leb(p, len, pos, &n2) != 0)
            return MC_EINVAL;
        if (tag == TAG_STR && !utf8_valid(p + *pos, n2))
            return MC_EINVAL;
        a->type = tag == TAG_STR ? MC_ARG_STR : MC_ARG_BYTES;
        a->v.s.ptr = p + *pos;
        a->v.s.len = n2;
        *pos += n2;
        return 0;
    }
    }
    return MC_EINVAL;
}

/* Keys longer than MC_KEY_MAX are never produced by mc_key_encode, so they are malformed. */
static int key_ok(const void *key, size_t len)
{
    return len <= MC_KEY_MAX && (key != NULL || len == 0);
}

int mc_key_count(const void *key, size_t len)
{
    if (!key_ok(key, len))
        return MC_EINVAL;
    size_t pos = 0;
    int count = 0;
    while (pos < len) {
        mc_arg a;
        if (field_read(key, len, &pos, &a) != 0)
            return MC_EINVAL;
        count++;
    }
    return count;
}

int mc_key_prefix_len(const void *key, size_t len, size_t k, size_t *plen)
{
    if (plen == NULL || !key_ok(key, len))
        return MC_EINVAL;
    size_t pos = 0, fields = 0, at_k = 0;
    /* The whole key is checked, not just its first k fields, so that a corrupt key is
     * reported the same way whatever prefix is asked for. */
    while (pos < len) {
        if (fields == k)
            at_k = pos;
        mc_arg a;
        if (field_read(key, len, &pos, &a) != 0)
            return MC_EINVAL;
        fields++;
    }
    if (fields < k)
        return MC_EINVAL;
    *plen = fields == k ? len : at_k;
    return 0;
}

bool mc_key_has_prefix(const void *key, size_t len, const void *prefix, size_t plen)
{
    if (plen == 0)
        return true;
    if (key == NULL || prefix == NULL || plen > len)
        return false;
    return memcmp(key, prefix, plen) == 0;
}

int mc_key_next(const void *key, size_t len, size_t *pos, mc_arg *arg)
{
    if (pos == NULL || arg == NULL || !key_ok(key, len) || *pos > len)
        return MC_EINVAL;
    if (*pos == len)
        return 0;
    size_t p = *pos;
    mc_arg a;
    if (field_read(key, len, &p, &a) != 0)
        return MC_EINVAL;
    *arg = a;
    *pos = p;
    return 1;
}
