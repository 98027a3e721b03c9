/* libFuzzer target for the binary key codec: the input read as typed arguments must encode to
 * the size and bytes an independent model predicts and decode back field by field; the same
 * input taken as raw key bytes must be either refused everywhere or canonical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modcache/key.h"

#define MAX_ARGS 64

/* A failed invariant: print it and abort, which libFuzzer reports as a crash with the input. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_key_codec: check failed at line %d: %s\n", __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Strict UTF-8 (RFC 3629) decoded code point by code point: written independently of the
 * library's range-table validator so that the two can disagree. */
static int model_utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned long cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* The documented layout, field by field (docs/keys.md): tag, minimal big-endian integer
 * bytes, 8 double bytes, minimal LEB128 string lengths. Returns 0 for a field the encoder must
 * refuse. */
static int model_field_size(const mc_arg *a, size_t *size)
{
    switch (a->type) {
    case MC_ARG_NULL:
    case MC_ARG_BOOL:
        *size = 1;
        return 1;
    case MC_ARG_INT:
    case MC_ARG_UINT: {
        uint64_t mag;
        if (a->type == MC_ARG_INT && a->v.i < 0)
            mag = (uint64_t)(-(a->v.i + 1));
        else
            mag = a->type == MC_ARG_INT ? (uint64_t)a->v.i : a->v.u;
        size_t n = 0;
        while (mag) {
            n++;
            mag >>= 8;
        }
        *size = 1 + n;
        return 1;
    }
    case MC_ARG_DOUBLE:
        *size = 9;
        return isfinite(a->v.d);
    case MC_ARG_STR:
    case MC_ARG_BYTES: {
        if (a->type == MC_ARG_STR && !model_utf8_ok(a->v.s.ptr, a->v.s.len))
            return 0;
        size_t leb = 1;
        for (size_t v = a->v.s.len; v >= 128; v /= 128)
            leb++;
        *size = 1 + leb + a->v.s.len;
        return 1;
    }
    }
    return 0;
}

/* The integer value of an INT or UINT field, as a sign and a magnitude. */
static void int_value(const mc_arg *a, int *neg, uint64_t *mag)
{
    if (a->type == MC_ARG_INT && a->v.i < 0) {
        *neg = 1;
        *mag = (uint64_t)0 - (uint64_t)a->v.i;
    } else {
        *neg = 0;
        *mag = a->type == MC_ARG_INT ? (uint64_t)a->v.i : a->v.u;
    }
}

/* A decoded field must be the encoded one, up to the normalisations key.h documents. */
static void check_same_field(const mc_arg *in, const mc_arg *out)
{
    switch (in->type) {
    case MC_ARG_NULL:
        CHECK(out->type == MC_ARG_NULL);
        break;
    case MC_ARG_BOOL:
        CHECK(out->type == MC_ARG_BOOL && out->v.b == in->v.b);
        break;
    case MC_ARG_INT:
    case MC_ARG_UINT: {
        CHECK(out->type == MC_ARG_INT || out->type == MC_ARG_UINT);
        int n1, n2;
        uint64_t m1, m2;
        int_value(in, &n1, &m1);
        int_value(out, &n2, &m2);
        CHECK(n1 == n2 && m1 == m2);
        /* Decoding picks INT whenever the value fits int64_t. */
        CHECK(out->type == MC_ARG_INT || m2 > (uint64_t)INT64_MAX);
        break;
    }
    case MC_ARG_DOUBLE: {
        CHECK(out->type == MC_ARG_DOUBLE);
        double want = in->v.d == 0 ? 0.0 : in->v.d; /* -0.0 becomes 0.0 */
        CHECK(memcmp(&want, &out->v.d, sizeof want) == 0);
        break;
    }
    case MC_ARG_STR:
    case MC_ARG_BYTES:
        CHECK(out->type == in->type && out->v.s.len == in->v.s.len);
        CHECK(in->v.s.len == 0 || memcmp(out->v.s.ptr, in->v.s.ptr, in->v.s.len) == 0);
        break;
    }
}

/* Reads up to n bytes, little-endian, zero-padded past the end of the input. */
static uint64_t take_u64(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int k = 0; k < 8 && *p < end; k++)
        v |= (uint64_t)*(*p)++ << (8 * k);
    return v;
}

/* Turns the input into a tuple. Each field starts with a selector byte; payloads follow.
 * Returns the number of fields. */
static size_t parse_args(const uint8_t *data, size_t size, mc_arg *args)
{
    const uint8_t *p = data, *end = data + size;
    size_t n = 0;
    while (p < end && n < MAX_ARGS) {
        unsigned sel = *p++ % 9;
        mc_arg *a = &args[n++];
        switch (sel) {
        case 0:
            *a = mc_arg_null();
            break;
        case 1:
            *a = mc_arg_bool(p < end && (*p++ & 1));
            break;
        case 2:
            *a = mc_arg_int((int64_t)take_u64(&p, end));
            break;
        case 3:
            *a = mc_arg_uint(take_u64(&p, end));
            break;
        case 4: {
            uint64_t bits = take_u64(&p, end);
            double d;
            memcpy(&d, &bits, sizeof d);
            *a = mc_arg_double(d);
            break;
        }
        case 5:
        case 6: {
            /* One length byte, or two when its top bit is set (strings past MC_KEY_MAX). */
            size_t len = p < end ? *p++ : 0;
            if (len & 0x80)
                len = (len & 0x7f) << 8 | (p < end ? *p++ : 0);
            if (len > (size_t)(end - p))
                len = (size_t)(end - p);
            *a = sel == 5 ? mc_arg_strn(p, len) : mc_arg_bytes(p, len);
            p += len;
            break;
        }
        case 7:
            /* Small integers, where the one-byte and zero-byte forms live. */
            *a = mc_arg_int((int8_t)(p < end ? *p++ : 0));
            break;
        default:
            /* A type outside the enum: the encoder must refuse it. */
            *a = mc_arg_null();
            a->type = (mc_arg_type)(7 + (p < end ? *p++ : 0));
            break;
        }
    }
    return n;
}

static void check_typed(const uint8_t *data, size_t size)
{
    mc_arg args[MAX_ARGS];
    size_t nargs = parse_args(data, size, args);

    size_t expect = 0, prefix[MAX_ARGS + 1];
    int valid = 1;
    prefix[0] = 0;
    for (size_t i = 0; i < nargs; i++) {
        size_t fs = 0;
        if (!model_field_size(&args[i], &fs))
            valid = 0;
        expect += fs;
        prefix[i + 1] = expect;
    }

    unsigned char key[MC_KEY_MAX];
    size_t len = 0;
    int rc = mc_key_encode(args, nargs, key, sizeof key, &len);
    if (!valid) {
        CHECK(rc == MC_EINVAL);
        return;
    }
    if (expect > MC_KEY_MAX) {
        CHECK(rc == MC_E2BIG);
        return;
    }
    CHECK(rc == 0 && len == expect);

    /* Too small a buffer: MC_ERANGE with the size needed, and nothing written. */
    if (expect > 0) {
        unsigned char small[MC_KEY_MAX];
        memset(small, 0xA5, sizeof small);
        size_t need = 0;
        CHECK(mc_key_encode(args, nargs, small, expect - 1, &need) == MC_ERANGE && need == expect);
        for (size_t k = 0; k < sizeof small; k++)
            CHECK(small[k] == 0xA5);
    }

    /* Decode field by field. */
    size_t pos = 0;
    for (size_t i = 0; i < nargs; i++) {
        mc_arg out;
        CHECK(mc_key_next(key, len, &pos, &out) == 1);
        CHECK(pos == prefix[i + 1]);
        check_same_field(&args[i], &out);
    }
    mc_arg out;
    CHECK(mc_key_next(key, len, &pos, &out) == 0 && pos == len);
    CHECK(mc_key_count(key, len) == (int)nargs);

    /* The first k fields are a byte prefix, of the length the model gives. */
    for (size_t k = 0; k <= nargs; k++) {
        size_t plen = 0;
        CHECK(mc_key_prefix_len(key, len, k, &plen) == 0 && plen == prefix[k]);
        unsigned char part[MC_KEY_MAX];
        size_t partlen = 0;
        CHECK(mc_key_encode(args, k, part, sizeof part, &partlen) == 0 && partlen == plen);
        CHECK(mc_key_has_prefix(key, len, part, partlen));
    }
    size_t plen;
    CHECK(mc_key_prefix_len(key, len, nargs + 1, &plen) == MC_EINVAL);

    /* The JSON form parses back to the same bytes. */
    static char json[16 * MC_KEY_MAX];
    size_t jlen = 0;
    CHECK(mc_key_to_json(key, len, NULL, 0, &jlen) == MC_ERANGE);
    size_t jlen2 = 0;
    CHECK(mc_key_to_json(key, len, json, sizeof json, &jlen2) == 0 && jlen2 == jlen);
    CHECK(strlen(json) == jlen);
    unsigned char back[MC_KEY_MAX];
    size_t blen = 0;
    mc_error err = {0};
    rc = mc_key_from_json(json, jlen, back, sizeof back, &blen, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz_key_codec: %s does not parse back: %s\n", json, err.message);
    CHECK(rc == 0 && blen == len && memcmp(back, key, len) == 0);

    CHECK(mc_key_hash(key, len, 42) == mc_key_hash(back, blen, 42));
}

/* The input as untrusted key bytes: accepted only when it is exactly what the encoder would
 * write for the fields it decodes to, and refused the same way by every reader otherwise. */
static void check_raw(const uint8_t *data, size_t size)
{
    int count = mc_key_count(data, size);
    size_t plen;
    char json[16 * MC_KEY_MAX];
    size_t jlen;
    if (count < 0) {
        CHECK(count == MC_EINVAL);
        CHECK(mc_key_prefix_len(data, size, 0, &plen) == MC_EINVAL);
        CHECK(mc_key_to_json(data, size, json, sizeof json, &jlen) == MC_EINVAL);
        /* Walking the fields reaches the fault (or the length bound) before the end. */
        size_t pos = 0;
        mc_arg a;
        int rc;
        while ((rc = mc_key_next(data, size, &pos, &a)) == 1)
            CHECK(pos <= size);
        CHECK(rc == MC_EINVAL);
        return;
    }
    CHECK(size <= MC_KEY_MAX);
    mc_arg args[MC_KEY_MAX];
    size_t pos = 0, n = 0;
    int rc;
    while ((rc = mc_key_next(data, size, &pos, &args[n])) == 1) {
        CHECK(pos <= size);
        n++;
    }
    CHECK(rc == 0 && pos == size && n == (size_t)count);
    unsigned char again[MC_KEY_MAX];
    size_t len = 0;
    CHECK(mc_key_encode(args, n, again, sizeof again, &len) == 0);
    CHECK(len == size && memcmp(again, data, size) == 0);
    CHECK(mc_key_prefix_len(data, size, n, &plen) == 0 && plen == size);
    CHECK(mc_key_to_json(data, size, json, sizeof json, &jlen) == 0);
    unsigned char back[MC_KEY_MAX];
    size_t blen = 0;
    CHECK(mc_key_from_json(json, jlen, back, sizeof back, &blen, NULL) == 0);
    CHECK(blen == size && memcmp(back, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_typed(data, size);
    check_raw(data, size);
    return 0;
}
