/* Tests for tuple keys: canonical encoding, decoding, prefixes, hashing and the JSON form.
 * The randomized round trip uses a fixed seed so that a failure is reproducible. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modcache.h"
#include "key/key_internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Encodes a tuple that must be valid and returns its length. */
static size_t enc(const mc_arg *args, size_t n, unsigned char *out)
{
    size_t len = 0;
    assert_int_equal(mc_key_encode(args, n, out, MC_KEY_MAX, &len), 0);
    assert_true(len <= MC_KEY_MAX);
    return len;
}

static int same_key(const mc_arg *a, size_t na, const mc_arg *b, size_t nb)
{
    unsigned char ka[MC_KEY_MAX], kb[MC_KEY_MAX];
    size_t la = enc(a, na, ka), lb = enc(b, nb, kb);
    return la == lb && memcmp(ka, kb, la) == 0;
}

static void test_equal_tuples(void **state)
{
    (void)state;
    char s1[] = "@alice:example.com", s2[] = "@alice:example.com";
    unsigned char b1[] = {0, 1, 2}, b2[] = {0, 1, 2};
    mc_arg a[] = {MC_ARG_S(s1), MC_ARG_I(42), MC_ARG_N(), MC_ARG_B(true), MC_ARG_D(1.5),
                  MC_ARG_BN(b1, sizeof b1)};
    mc_arg b[] = {MC_ARG_S(s2), MC_ARG_U(42), MC_ARG_N(), MC_ARG_B(true), MC_ARG_D(1.5),
                  MC_ARG_BN(b2, sizeof b2)};
    unsigned char ka[MC_KEY_MAX], kb[MC_KEY_MAX];
    size_t la = enc(a, 6, ka), lb = enc(b, 6, kb);
    assert_int_equal(la, lb);
    assert_memory_equal(ka, kb, la);
    assert_true(mc_key_hash(ka, la, 7) == mc_key_hash(kb, lb, 7));
    assert_int_equal(mc_key_count(ka, la), 6);

    /* Changing any one field changes the bytes. */
    s2[1] = 'b';
    assert_false(same_key(a, 6, b, 6));
}

static void test_exact_bytes(void **state)
{
    (void)state;
    static const struct {
        mc_arg arg;
        unsigned char bytes[10];
        size_t len;
    } cases[] = {
        {MC_ARG_N(), {0x00}, 1},
        {MC_ARG_B(false), {0x01}, 1},
        {MC_ARG_B(true), {0x02}, 1},
        {MC_ARG_I(0), {0x20}, 1},
        {MC_ARG_I(5), {0x21, 0x05}, 2},
        {MC_ARG_I(255), {0x21, 0xff}, 2},
        {MC_ARG_I(256), {0x22, 0x01, 0x00}, 3},
        {MC_ARG_I(-1), {0x30}, 1},
        {MC_ARG_I(-2), {0x31, 0x01}, 2},
        {MC_ARG_I(-256), {0x31, 0xff}, 2},
        {MC_ARG_I(-257), {0x32, 0x01, 0x00}, 3},
        {MC_ARG_I(INT64_MIN), {0x38, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
        {MC_ARG_U(UINT64_MAX), {0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
        {MC_ARG_D(1.0), {0x40, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 9},
        {MC_ARG_D(-0.0), {0x40, 0, 0, 0, 0, 0, 0, 0, 0}, 9},
        {MC_ARG_SN("ab", 2), {0x50, 0x02, 'a', 'b'}, 4},
        {MC_ARG_BN("ab", 2), {0x60, 0x02, 'a', 'b'}, 4},
        {MC_ARG_SN("", 0), {0x50, 0x00}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len = enc(&cases[i].arg, 1, k);
        assert_int_equal(len, cases[i].len);
        assert_memory_equal(k, cases[i].bytes, len);
    }
    /* A 200-byte string needs a two-byte LEB128 length: 200 = 0xc8 -> 0xc8 0x01. */
    char s[200];
    memset(s, 'x', sizeof s);
    unsigned char k[MC_KEY_MAX];
    size_t len = enc(&MC_ARG_SN(s, sizeof s), 1, k);
    assert_int_equal(len, 203);
    assert_int_equal(k[0], 0x50);
    assert_int_equal(k[1], 0xc8);
    assert_int_equal(k[2], 0x01);
}

static void test_int_uint_same(void **state)
{
    (void)state;
    mc_arg a = MC_ARG_I(5), b = MC_ARG_U(5);
    assert_true(same_key(&a, 1, &b, 1));
    a = MC_ARG_I(0);
    b = MC_ARG_U(0);
    assert_true(same_key(&a, 1, &b, 1));
    a = MC_ARG_I(INT64_MAX);
    b = MC_ARG_U((uint64_t)INT64_MAX);
    assert_true(same_key(&a, 1, &b, 1));
    a = MC_ARG_I(-1);
    b = MC_ARG_U(UINT64_MAX);
    assert_false(same_key(&a, 1, &b, 1));

    /* UINT values that fit int64_t come back as MC_ARG_INT. */
    unsigned char k[MC_KEY_MAX];
    size_t len = enc(&MC_ARG_U(5), 1, k), pos = 0;
    mc_arg out;
    assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
    assert_int_equal(out.type, MC_ARG_INT);
    assert_int_equal(out.v.i, 5);
}

static void test_types_distinct(void **state)
{
    (void)state;
    mc_arg vals[] = {MC_ARG_I(1),         MC_ARG_S("1"),       MC_ARG_BN("1", 1),
                     MC_ARG_D(1.0),       MC_ARG_B(true),      MC_ARG_I(0),
                     MC_ARG_B(false),     MC_ARG_N(),          MC_ARG_D(0.0),
                     MC_ARG_SN("", 0),    MC_ARG_BN("", 0),    MC_ARG_I(-1)};
    size_t n = sizeof vals / sizeof vals[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            assert_int_equal(same_key(&vals[i], 1, &vals[j], 1), i == j);
    }
    /* Field boundaries matter: ["ab"] is not ["a", "b"], and the empty tuple is a key. */
    mc_arg one = MC_ARG_S("ab"), two[] = {MC_ARG_S("a"), MC_ARG_S("b")};
    assert_false(same_key(&one, 1, two, 2));
    unsigned char k[4];
    size_t len = 99;
    assert_int_equal(mc_key_encode(NULL, 0, k, sizeof k, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(mc_key_count(k, 0), 0);
}

static void test_negative_zero(void **state)
{
    (void)state;
    mc_arg a = MC_ARG_D(-0.0), b = MC_ARG_D(0.0);
    assert_true(same_key(&a, 1, &b, 1));
    unsigned char k[MC_KEY_MAX];
    size_t len = enc(&a, 1, k), pos = 0;
    mc_arg out;
    assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
    assert_int_equal(out.type, MC_ARG_DOUBLE);
    assert_true(out.v.d == 0.0);
    assert_false(signbit(out.v.d));
}

static void test_nonfinite_refused(void **state)
{
    (void)state;
    double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len = 12345;
        mc_arg args[] = {MC_ARG_I(1), MC_ARG_D(bad[i])};
        assert_int_equal(mc_key_encode(args, 2, k, sizeof k, &len), MC_EINVAL);
        assert_int_equal(len, 12345);
    }
    /* The largest finite values and the smallest subnormal are fine. */
    double good[] = {DBL_MAX, -DBL_MAX, DBL_MIN, 4.9406564584124654e-324};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len = enc(&MC_ARG_D(good[i]), 1, k), pos = 0;
        mc_arg out;
        assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
        assert_true(out.v.d == good[i]);
    }
}

static void test_integer_boundaries(void **state)
{
    (void)state;
    static const int64_t ints[] = {0,     1,     -1,    127,   128,         255,
                                   256,   -127,  -128,  -129,  -255,        -256,
                                   -257,  65535, 65536, -65536, INT32_MAX,  INT32_MIN,
                                   (int64_t)UINT32_MAX, INT64_MAX, INT64_MIN, INT64_MIN + 1,
                                   INT64_MAX - 1};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        mc_arg args[] = {MC_ARG_S("x"), MC_ARG_I(ints[i]), MC_ARG_N()};
        size_t len = enc(args, 3, k), pos = 0;
        mc_arg out;
        assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
        assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
        assert_int_equal(out.type, MC_ARG_INT);
        assert_true(out.v.i == ints[i]);
        assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
        assert_int_equal(out.type, MC_ARG_NULL);
        assert_int_equal(mc_key_next(k, len, &pos, &out), 0);
        assert_int_equal(pos, len);
    }
    static const uint64_t uints[] = {(uint64_t)INT64_MAX + 1, UINT64_MAX, UINT64_MAX - 1,
                                     UINT64_C(0xff00000000000000)};
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len = enc(&MC_ARG_U(uints[i]), 1, k), pos = 0;
        mc_arg out;
        assert_int_equal(mc_key_next(k, len, &pos, &out), 1);
        assert_int_equal(out.type, MC_ARG_UINT);
        assert_true(out.v.u == uints[i]);
    }
}

static void test_decode_all_types(void **state)
{
    (void)state;
    const char str[] = "a\0b\xc3\xa9";
    const unsigned char bytes[] = {0xff, 0x00, 0x80};
    mc_arg in[] = {MC_ARG_N(), MC_ARG_B(false), MC_ARG_B(true), MC_ARG_D(-2.5),
                   MC_ARG_SN(str, sizeof str - 1), MC_ARG_BN(bytes, sizeof bytes),
                   MC_ARG_SN("", 0), MC_ARG_BN(NULL, 0)};
    unsigned char k[MC_KEY_MAX];
    size_t len = enc(in, 8, k), pos = 0;
    mc_arg out[8];
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(mc_key_next(k, len, &pos, &out[i]), 1);
    assert_int_equal(mc_key_next(k, len, &pos, &out[0]), 0);
    assert_int_equal(out[0].type, MC_ARG_NULL);
    assert_int_equal(out[1].type, MC_ARG_BOOL);
    assert_false(out[1].v.b);
    assert_true(out[2].v.b);
    assert_true(out[3].v.d == -2.5);
    assert_int_equal(out[4].type, MC_ARG_STR);
    assert_int_equal(out[4].v.s.len, sizeof str - 1);
    assert_memory_equal(out[4].v.s.ptr, str, sizeof str - 1);
    /* Decoded strings are borrowed from the key bytes. */
    assert_true((const unsigned char *)out[4].v.s.ptr > k &&
                (const unsigned char *)out[4].v.s.ptr < k + len);
    assert_int_equal(out[5].type, MC_ARG_BYTES);
    assert_memory_equal(out[5].v.s.ptr, bytes, sizeof bytes);
    assert_int_equal(out[6].type, MC_ARG_STR);
    assert_int_equal(out[6].v.s.len, 0);
    assert_int_equal(out[7].type, MC_ARG_BYTES);
    assert_int_equal(out[7].v.s.len, 0);

    /* Re-encoding the decoded fields gives the same bytes. */
    unsigned char k2[MC_KEY_MAX];
    size_t len2 = enc(out, 8, k2);
    assert_int_equal(len2, len);
    assert_memory_equal(k2, k, len);
}

static void test_malformed_rejected(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        unsigned char b[16];
        size_t len;
    } cases[] = {
        {"non-minimal zero", {0x21, 0x00}, 2},
        {"non-minimal 255", {0x22, 0x00, 0xff}, 3},
        {"non-minimal negative", {0x31, 0x00}, 2},
        {"integer length 9", {0x29, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10},
        {"negative below INT64_MIN", {0x38, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
        {"truncated integer", {0x22, 0x01}, 2},
        {"truncated double", {0x40, 0x3f, 0xf0}, 3},
        {"negative zero double", {0x40, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
        {"NaN double", {0x40, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0}, 9},
        {"infinite double", {0x40, 0xff, 0xf0, 0, 0, 0, 0, 0, 0}, 9},
        {"double tag with low bits", {0x41, 0, 0, 0, 0, 0, 0, 0, 0}, 9},
        {"non-minimal LEB128", {0x50, 0x81, 0x00, 'a'}, 4},
        {"non-minimal LEB128 zero", {0x60, 0x80, 0x00}, 3},
        {"string past the end", {0x50, 0x03, 'a', 'b'}, 4},
        {"truncated LEB128", {0x60, 0x80}, 2},
        {"invalid UTF-8 in string", {0x50, 0x01, 0xff}, 3},
        {"surrogate in string", {0x50, 0x03, 0xed, 0xa0, 0x80}, 5},
        {"overlong in string", {0x50, 0x02, 0xc0, 0x80}, 4},
        {"string tag with low bits", {0x51, 0x00}, 2},
        {"unknown tag 0x03", {0x03}, 1},
        {"unknown tag 0x10", {0x10}, 1},
        {"unknown tag 0x70", {0x70}, 1},
        {"unknown tag 0xff", {0xff}, 1},
        {"good field then garbage", {0x00, 0x21, 0x05, 0x99}, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const unsigned char *b = cases[i].b;
        size_t len = cases[i].len, plen, pos = 0;
        char json[256];
        mc_arg a;
        if (mc_key_count(b, len) != MC_EINVAL)
            fail_msg("mc_key_count accepted: %s", cases[i].why);
        assert_int_equal(mc_key_prefix_len(b, len, 0, &plen), MC_EINVAL);
        assert_int_equal(mc_key_to_json(b, len, json, sizeof json, &plen), MC_EINVAL);
        int rc;
        while ((rc = mc_key_next(b, len, &pos, &a)) == 1)
            ;
        assert_int_equal(rc, MC_EINVAL);
    }
    /* A bad *pos is refused rather than read out of bounds. */
    unsigned char k[2] = {0x21, 0x05};
    size_t pos = 3;
    mc_arg a;
    assert_int_equal(mc_key_next(k, sizeof k, &pos, &a), MC_EINVAL);
    /* Keys larger than MC_KEY_MAX are never produced, so they are not accepted. */
    static unsigned char big[MC_KEY_MAX + 1];
    assert_int_equal(mc_key_count(big, sizeof big), MC_EINVAL);
    assert_int_equal(mc_key_count(big, MC_KEY_MAX), MC_KEY_MAX);
}

static void test_null_arguments(void **state)
{
    (void)state;
    unsigned char k[MC_KEY_MAX];
    size_t len, plen;
    mc_arg a = MC_ARG_I(1);
    assert_int_equal(mc_key_encode(NULL, 1, k, sizeof k, &len), MC_EINVAL);
    assert_int_equal(mc_key_encode(&a, 1, NULL, sizeof k, &len), MC_EINVAL);
    assert_int_equal(mc_key_encode(&a, 1, k, sizeof k, NULL), MC_EINVAL);
    assert_int_equal(mc_key_encode(&MC_ARG_SN(NULL, 1), 1, k, sizeof k, &len), MC_EINVAL);
    mc_arg bad_type = {.type = (mc_arg_type)42};
    assert_int_equal(mc_key_encode(&bad_type, 1, k, sizeof k, &len), MC_EINVAL);
    assert_int_equal(mc_key_count(NULL, 3), MC_EINVAL);
    assert_int_equal(mc_key_prefix_len(k, 0, 0, NULL), MC_EINVAL);
    assert_int_equal(mc_key_next(k, 0, NULL, &a), MC_EINVAL);
    assert_int_equal(mc_key_to_json(k, 0, NULL, 10, &len), MC_EINVAL);
    assert_int_equal(mc_key_from_json("[]", 2, NULL, 10, &len, NULL), MC_EINVAL);
    assert_int_equal(mc_key_prefix_len(k, 0, 0, &plen), 0);
    assert_int_equal(plen, 0);
}

static void test_prefix(void **state)
{
    (void)state;
    mc_arg args[] = {MC_ARG_S("room"), MC_ARG_I(-7), MC_ARG_N(), MC_ARG_D(0.25),
                     MC_ARG_BN("\x00\x01", 2), MC_ARG_U(UINT64_MAX), MC_ARG_B(true)};
    size_t n = sizeof args / sizeof args[0];
    unsigned char full[MC_KEY_MAX];
    size_t flen = enc(args, n, full);
    for (size_t k = 0; k <= n; k++) {
        unsigned char pre[MC_KEY_MAX];
        size_t plen_enc = enc(args, k, pre), plen = 9999;
        assert_int_equal(mc_key_prefix_len(full, flen, k, &plen), 0);
        assert_int_equal(plen, plen_enc);
        assert_memory_equal(full, pre, plen);
        assert_true(mc_key_has_prefix(full, flen, pre, plen));
        assert_int_equal(mc_key_count(pre, plen), (int)k);
        /* The prefix relation only goes one way. */
        if (k < n)
            assert_false(mc_key_has_prefix(pre, plen, full, flen));
    }
    size_t plen;
    assert_int_equal(mc_key_prefix_len(full, flen, n + 1, &plen), MC_EINVAL);
    assert_int_equal(mc_key_prefix_len(full, flen, SIZE_MAX, &plen), MC_EINVAL);

    /* Same first field, different second: prefix of one field only. */
    mc_arg other[] = {MC_ARG_S("room"), MC_ARG_I(-8)};
    unsigned char ko[MC_KEY_MAX];
    size_t olen = enc(other, 2, ko);
    assert_false(mc_key_has_prefix(full, flen, ko, olen));
    assert_true(mc_key_has_prefix(full, flen, ko, enc(other, 1, ko)));

    /* Self-delimiting strings: ["ro"] is not a prefix of ["room"]. */
    unsigned char kr[MC_KEY_MAX];
    size_t rlen = enc(&MC_ARG_S("ro"), 1, kr);
    assert_false(mc_key_has_prefix(full, flen, kr, rlen));
    assert_true(mc_key_has_prefix(full, flen, NULL, 0));
}

static void test_hash(void **state)
{
    (void)state;
    mc_arg args[] = {MC_ARG_S("@alice:example.com"), MC_ARG_I(42)};
    unsigned char k[MC_KEY_MAX];
    size_t len = enc(args, 2, k);
    uint64_t h0 = mc_key_hash(k, len, 0), h1 = mc_key_hash(k, len, 1);
    assert_true(h0 != h1);
    assert_true(mc_key_hash(k, len, 0xdeadbeef) != mc_key_hash(k, len, 0xdeadbeef + 1));
    assert_true(h0 == mc_key_hash(k, len, 0));
    /* It is XXH3-64 of the bytes, so other processes and builds agree on it. */
    assert_true(h0 == XXH3_64bits_withSeed(k, len, 0));
    assert_true(h1 == XXH3_64bits_withSeed(k, len, 1));
    assert_true(mc_key_hash(NULL, 0, 5) == XXH3_64bits_withSeed("", 0, 5));
    /* A one-field change changes the hash. */
    args[1] = MC_ARG_I(43);
    unsigned char k2[MC_KEY_MAX];
    size_t len2 = enc(args, 2, k2);
    assert_true(mc_key_hash(k2, len2, 0) != h0);
}

static void test_size_limits(void **state)
{
    (void)state;
    static char s[MC_KEY_MAX + 10];
    memset(s, 'a', sizeof s);
    unsigned char k[MC_KEY_MAX];
    size_t len = 0;
    /* tag + 2-byte length + 1021 bytes = exactly MC_KEY_MAX. */
    assert_int_equal(mc_key_encode(&MC_ARG_SN(s, MC_KEY_MAX - 3), 1, k, sizeof k, &len), 0);
    assert_int_equal(len, MC_KEY_MAX);
    assert_int_equal(mc_key_count(k, len), 1);
    len = 7;
    assert_int_equal(mc_key_encode(&MC_ARG_SN(s, MC_KEY_MAX - 2), 1, k, sizeof k, &len),
                     MC_E2BIG);
    assert_int_equal(mc_key_encode(&MC_ARG_BN(s, SIZE_MAX / 2), 1, k, sizeof k, &len), MC_E2BIG);

    /* MC_KEY_MAX nulls fit; one more does not, whatever the buffer. */
    static mc_arg nulls[MC_KEY_MAX + 1];
    static unsigned char bigbuf[2 * MC_KEY_MAX];
    assert_int_equal(mc_key_encode(nulls, MC_KEY_MAX, bigbuf, sizeof bigbuf, &len), 0);
    assert_int_equal(len, MC_KEY_MAX);
    assert_int_equal(mc_key_count(bigbuf, len), MC_KEY_MAX);
    assert_int_equal(mc_key_encode(nulls, MC_KEY_MAX + 1, bigbuf, sizeof bigbuf, &len), MC_E2BIG);

    /* A small buffer reports the needed size and leaves it untouched. */
    mc_arg args[] = {MC_ARG_S("hello"), MC_ARG_I(1000)};
    unsigned char small[8];
    memset(small, 0xee, sizeof small);
    len = 0;
    assert_int_equal(mc_key_encode(args, 2, small, sizeof small, &len), MC_ERANGE);
    assert_int_equal(len, 7 + 3);
    for (size_t i = 0; i < sizeof small; i++)
        assert_int_equal(small[i], 0xee);
    assert_int_equal(mc_key_encode(args, 2, small, 0, &len), MC_ERANGE);
    assert_int_equal(len, 10);
    unsigned char exact[10];
    assert_int_equal(mc_key_encode(args, 2, exact, sizeof exact, &len), 0);
    assert_int_equal(len, 10);
    /* An invalid field is reported before the size. */
    mc_arg mixed[] = {MC_ARG_SN(s, sizeof s), MC_ARG_D(NAN)};
    assert_int_equal(mc_key_encode(mixed, 2, k, sizeof k, &len), MC_EINVAL);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\x80",             /* lone continuation */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong 3-byte */
        "\xe0\x9f\xbf",     /* overlong 3-byte, top */
        "\xed\xa0\x80",     /* U+D800 */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xe2\x82",         /* truncated */
        "a\xc3",            /* truncated at the end */
        "\xc3\x28",         /* bad continuation */
        "\xf0\x9f\x98",     /* truncated 4-byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len;
        assert_int_equal(mc_key_encode(&MC_ARG_S(bad[i]), 1, k, sizeof k, &len), MC_EINVAL);
        /* The same bytes are fine as a byte string. */
        mc_arg as_bytes = MC_ARG_BN(bad[i], strlen(bad[i]));
        assert_int_equal(mc_key_encode(&as_bytes, 1, k, sizeof k, &len), 0);
    }
    static const char *good[] = {"\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                                 "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
                                 "\xf4\x8f\xbf\xbf", "caf\xc3\xa9 \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len;
        assert_int_equal(mc_key_encode(&MC_ARG_S(good[i]), 1, k, sizeof k, &len), 0);
        assert_int_equal(mc_key_count(k, len), 1);
    }
}

/* Parses `json`, prints it back and checks the canonical text, then parses that again. */
static void json_check(const char *json, const char *canon)
{
    unsigned char k[MC_KEY_MAX], k2[MC_KEY_MAX];
    size_t len = 0, len2 = 0, tlen = 0;
    char text[8192];
    mc_error err = {.code = 12345};
    int rc = mc_key_from_json(json, strlen(json), k, sizeof k, &len, &err);
    if (rc != 0)
        fail_msg("parse failed (%d) for %s: %s", rc, json, err.message);
    assert_int_equal(err.code, 12345); /* untouched on success */
    assert_int_equal(mc_key_to_json(k, len, text, sizeof text, &tlen), 0);
    assert_int_equal(tlen, strlen(text));
    if (strcmp(text, canon) != 0)
        fail_msg("%s printed as %s, expected %s", json, text, canon);
    assert_int_equal(mc_key_from_json(text, tlen, k2, sizeof k2, &len2, NULL), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(k2, k, len);
}

static void test_json_roundtrip(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"[]", "[]"},
        {" \t\r\n[ \t\r\n] \t\r\n", "[]"},
        {"[\"@alice\",42,null,true,1.5,{\"hex\":\"00ff\"}]",
         "[\"@alice\",42,null,true,1.5,{\"hex\":\"00ff\"}]"},
        {" [ \"@alice\" ,\n42 , null,true ,\t1.5 , { \"hex\" : \"00FF\" } ] ",
         "[\"@alice\",42,null,true,1.5,{\"hex\":\"00ff\"}]"},
        {"[false,{\"hex\":\"\"},\"\"]", "[false,{\"hex\":\"\"},\"\"]"},
        {"[\"\\u00e9\\u4e2d\"]", "[\"\xc3\xa9\xe4\xb8\xad\"]"},
        {"[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]"},
        {"[\"\\uDBFF\\uDFFF\"]", "[\"\xf4\x8f\xbf\xbf\"]"},
        {"[\"\xf0\x9f\x98\x80 raw\"]", "[\"\xf0\x9f\x98\x80 raw\"]"},
        {"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "[\"\\\"\\\\/\\b\\f\\n\\r\\t\"]"},
        {"[\"\\u0000\\u0001\\u001f\\u007f\"]", "[\"\\u0000\\u0001\\u001f\x7f\"]"},
        {"[{\"\\u0068ex\":\"\\u0041b\"}]", "[{\"hex\":\"ab\"}]"},
        {"[0,-0,1,-1]", "[0,0,1,-1]"},
        {"[18446744073709551615,-9223372036854775808,9223372036854775807]",
         "[18446744073709551615,-9223372036854775808,9223372036854775807]"},
        {"[9223372036854775808]", "[9223372036854775808]"},
        {"[0.1,1e300,1.0,100.0,-2.5,0.0,-0.0]", "[0.1,1e+300,1.0,100.0,-2.5,0.0,0.0]"},
        {"[1E2,1e-2,2.5E+3,1e0]", "[100.0,0.01,2500.0,1.0]"},
        {"[1e-400,-1e-400]", "[0.0,0.0]"},
        {"[1.7976931348623157e308,2.2250738585072014e-308,5e-324]",
         "[1.7976931348623157e+308,2.2250738585072014e-308,4.94065645841247e-324]"},
        {"[0.30000000000000004,0.3333333333333333]",
         "[0.30000000000000004,0.3333333333333333]"},
        {"[1e16,123456789012345678]", "[1e+16,123456789012345678]"},
        {"[1e-7,9007199254740993.0]", "[1e-07,9007199254740992.0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        json_check(cases[i][0], cases[i][1]);

    /* An integer literal past 2^64 - 1 is an error, but with a fraction it is a double. */
    json_check("[100000000000000000000.0]", "[1e+20]");
    /* Mantissas longer than the digits handed to strtod still round correctly. 1 + 2^-53
     * lies exactly halfway between 1.0 and the next double and rounds to even (1.0); any
     * non-zero digit after it, however far down, rounds up instead. */
    static const char half[] = "[1.00000000000000011102230246251565404236316680908203125";
    static char longnum[sizeof half + 1100];
    size_t hl = strlen(half);
    memcpy(longnum, half, hl);
    memset(longnum + hl, '0', 1000);
    strcpy(longnum + hl + 1000, "]");
    json_check(longnum, "[1.0]");
    strcpy(longnum + hl + 1000, "1]");
    json_check(longnum, "[1.0000000000000002]");
    /* Leading zeros in the fraction carry no digits: 0.000...01 with 1000 zeros. */
    memcpy(longnum, "[0.", 3);
    memset(longnum + 3, '0', 1000);
    strcpy(longnum + 1003, "1e1000]");
    json_check(longnum, "[0.1]");

    /* JSON text and mc_key_encode agree byte for byte. */
    mc_arg args[] = {MC_ARG_S("a\"b"), MC_ARG_I(-1), MC_ARG_D(2.5), MC_ARG_BN("\x01\xab", 2),
                     MC_ARG_U(UINT64_MAX), MC_ARG_B(false), MC_ARG_N()};
    const char *json = "[\"a\\\"b\",-1,2.5,{\"hex\":\"01AB\"},18446744073709551615,false,null]";
    unsigned char k1[MC_KEY_MAX], k2[MC_KEY_MAX];
    size_t l1 = enc(args, 7, k1), l2;
    assert_int_equal(mc_key_from_json(json, strlen(json), k2, sizeof k2, &l2, NULL), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(k1, k2, l1);
    /* `text` need not be NUL-terminated: only text_len bytes are read. */
    const char *prefix = "[1,2]garbage";
    assert_int_equal(mc_key_from_json(prefix, 5, k2, sizeof k2, &l2, NULL), 0);
    assert_int_equal(mc_key_count(k2, l2), 2);
}

static void test_json_doubles_parse_as_doubles(void **state)
{
    (void)state;
    /* Every printed double must read back as a double, never as an integer. */
    double vals[] = {1.0, -3.0, 1e15, 1e16, 1e17, 123456789.0, 0.5, 1e-7, 9007199254740993.0};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        unsigned char k[MC_KEY_MAX], k2[MC_KEY_MAX];
        size_t len = enc(&MC_ARG_D(vals[i]), 1, k), tlen, len2, pos = 0;
        char text[64];
        assert_int_equal(mc_key_to_json(k, len, text, sizeof text, &tlen), 0);
        assert_true(strchr(text, '.') != NULL || strchr(text, 'e') != NULL);
        assert_int_equal(mc_key_from_json(text, tlen, k2, sizeof k2, &len2, NULL), 0);
        mc_arg out;
        assert_int_equal(mc_key_next(k2, len2, &pos, &out), 1);
        assert_int_equal(out.type, MC_ARG_DOUBLE);
        assert_true(out.v.d == vals[i]);
    }
}

static void test_json_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t offset;
    } cases[] = {
        {"", 0},                                /* empty input */
        {"   ", 3},                             /* only whitespace */
        {"{}", 0},                              /* not an array */
        {"[1,]", 3},                            /* trailing comma */
        {"[,]", 1},
        {"[1", 2},                              /* missing bracket */
        {"[1 2]", 3},                           /* missing comma */
        {"[[1]]", 1},                           /* nested array */
        {"[1,[]]", 3},
        {"[\"\\x\"]", 2},                       /* bad escape */
        {"[\"\\u12G4\"]", 6},                   /* bad \u digit */
        {"[\"\\u12\"]", 6},                 /* the closing quote is not a hex digit */
        {"[\"\\ud800\"]", 2},                   /* lone high surrogate */
        {"[\"\\udc00\"]", 2},                   /* lone low surrogate */
        {"[\"\\ud800\\u0041\"]", 2},            /* high + non-low */
        {"[\"\\ud800x\"]", 2},
        {"[01]", 2},                            /* leading zero */
        {"[-01]", 3},
        {"[18446744073709551616]", 1},          /* integer overflow */
        {"[-9223372036854775809]", 1},
        {"[99999999999999999999999]", 1},
        {"[1e400]", 1},                         /* double overflow */
        {"[-1e400]", 1},
        {"[+1]", 1},
        {"[.5]", 1},
        {"[1.]", 3},
        {"[1.e5]", 3},
        {"[1e]", 3},
        {"[1e+]", 4},
        {"[-]", 2},
        {"[-a]", 2},
        {"[0x10]", 2},
        {"[1] x", 4},                           /* trailing garbage */
        {"[1]]", 3},
        {"[1][2]", 3},
        {"[\"abc", 5},                          /* unterminated string */
        {"[\"abc\\", 6},
        {"[\"a\x01\"]", 3},                     /* raw control character */
        {"[\"a\nb\"]", 3},
        {"[\"\xff\"]", 2},                      /* invalid UTF-8 */
        {"[\"\xed\xa0\x80\"]", 2},              /* encoded surrogate */
        {"[\"\xc0\xaf\"]", 2},                  /* overlong */
        {"[\xc3\xa9]", 1},                      /* non-ASCII outside strings */
        {"[{\"hex\":\"abc\"}]", 12},            /* odd number of hex digits */
        {"[{\"hex\":\"zz\"}]", 9},
        {"[{\"hex\":\"0 \"}]", 10},
        {"[{\"hex\":12}]", 8},
        {"[{\"hex\":\"00\",\"hex\":\"00\"}]", 12}, /* duplicate member */
        {"[{\"hex\":\"00\",\"x\":1}]", 12},       /* extra member */
        {"[{\"hex\" \"00\"}]", 8},
        {"[{}]", 2},                            /* other objects */
        {"[{\"hax\":\"00\"}]", 2},
        {"[{\"hexx\":\"00\"}]", 2},
        {"[{\"a\":{\"hex\":\"00\"}}]", 2},
        {"[{\"hex\":\"00\"]", 12},
        {"[tru]", 1},
        {"[nul]", 1},
        {"[True]", 1},
        {"[NaN]", 1},
        {"[Infinity]", 1},
        {"[-Infinity]", 2},
        {"['a']", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char k[MC_KEY_MAX];
        size_t len = 777;
        mc_error err;
        memset(&err, 0, sizeof err);
        int rc = mc_key_from_json(cases[i].text, strlen(cases[i].text), k, sizeof k, &len, &err);
        if (rc != MC_EPARSE)
            fail_msg("input %zu (%s) gave %d, expected MC_EPARSE", i, cases[i].text, rc);
        assert_int_equal(err.code, MC_EPARSE);
        assert_int_equal(len, 777);
        char want[64];
        snprintf(want, sizeof want, "key JSON at offset %zu: ", cases[i].offset);
        if (strncmp(err.message, want, strlen(want)) != 0)
            fail_msg("input %zu (%s): message \"%s\", expected it to start with \"%s\"", i,
                     cases[i].text, err.message, want);
        /* The message says what was wrong, not just where. */
        assert_true(strlen(err.message) > strlen(want) + 5);
        assert_true(memchr(err.message, '\0', sizeof err.message) != NULL);
        /* NULL err is allowed. */
        assert_int_equal(mc_key_from_json(cases[i].text, strlen(cases[i].text), k, sizeof k, &len,
                                          NULL),
                         MC_EPARSE);
    }
    /* A NUL byte inside text_len is data, not an end marker. */
    unsigned char k[MC_KEY_MAX];
    size_t len;
    mc_error err;
    assert_int_equal(mc_key_from_json("[1]\0", 4, k, sizeof k, &len, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "offset 3"));
    assert_int_equal(mc_key_from_json("[\"a\0\"]", 6, k, sizeof k, &len, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "offset 3"));
    /* The messages name what was expected. */
    assert_int_equal(mc_key_from_json("[1 2]", 5, k, sizeof k, &len, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "expected ',' or ']'"));
    assert_int_equal(mc_key_from_json("", 0, k, sizeof k, &len, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "expected '['"));
}

static void test_json_limits(void **state)
{
    (void)state;
    static char text[4 * MC_KEY_MAX];
    unsigned char k[MC_KEY_MAX];
    size_t len = 0;
    mc_error err;

    /* A string of MC_KEY_MAX - 3 bytes fills a key exactly; one more byte is MC_E2BIG. */
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t n = MC_KEY_MAX - 3 + extra, t = 0;
        text[t++] = '[';
        text[t++] = '"';
        memset(text + t, 'q', n);
        t += n;
        text[t++] = '"';
        text[t++] = ']';
        memset(&err, 0, sizeof err);
        int rc = mc_key_from_json(text, t, k, sizeof k, &len, &err);
        if (extra == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(len, MC_KEY_MAX);
        } else {
            assert_int_equal(rc, MC_E2BIG);
            assert_int_equal(err.code, MC_E2BIG);
            assert_true(err.message[0] != '\0');
        }
    }
    /* Too big in total (many small fields), and a huge hex string. */
    size_t t = 0;
    text[t++] = '[';
    for (int i = 0; i < MC_KEY_MAX + 1; i++) {
        memcpy(text + t, i ? ",0" : "0", i ? 2 : 1);
        t += i ? 2 : 1;
    }
    text[t++] = ']';
    assert_int_equal(mc_key_from_json(text, t, k, sizeof k, &len, &err), MC_E2BIG);
    assert_int_equal(mc_key_from_json(text, t - 3, k, sizeof k, &len, &err), MC_EPARSE);
    t = (size_t)snprintf(text, sizeof text, "[{\"hex\":\"");
    memset(text + t, 'a', 2 * MC_KEY_MAX);
    t += 2 * MC_KEY_MAX;
    t += (size_t)snprintf(text + t, sizeof text - t, "\"}]");
    assert_int_equal(mc_key_from_json(text, t, k, sizeof k, &len, &err), MC_E2BIG);
    /* A syntax error after an oversized field is still a syntax error. */
    assert_int_equal(mc_key_from_json(text, t - 1, k, sizeof k, &len, &err), MC_EPARSE);
    /* An invalid hex digit past the scratch space is still found. */
    text[t - 5] = 'g';
    assert_int_equal(mc_key_from_json(text, t, k, sizeof k, &len, &err), MC_EPARSE);

    /* MC_ERANGE reports the needed size in *len. */
    const char *json = "[\"hello\",1000]";
    unsigned char small[4];
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_key_from_json(json, strlen(json), small, sizeof small, &len, &err),
                     MC_ERANGE);
    assert_int_equal(len, 10);
    assert_int_equal(err.code, MC_ERANGE);
    unsigned char exact[10];
    assert_int_equal(mc_key_from_json(json, strlen(json), exact, sizeof exact, &len, NULL), 0);
    assert_int_equal(len, 10);

    /* mc_key_to_json: cap must hold the NUL too. */
    char out[32];
    size_t olen = 0;
    assert_int_equal(mc_key_to_json(exact, 10, out, sizeof out, &olen), 0);
    assert_string_equal(out, "[\"hello\",1000]");
    assert_int_equal(olen, 14);
    assert_int_equal(mc_key_to_json(exact, 10, out, 14, &olen), MC_ERANGE);
    assert_int_equal(olen, 14);
    assert_int_equal(mc_key_to_json(exact, 10, out, 15, &olen), 0);
    assert_string_equal(out, "[\"hello\",1000]");
    assert_int_equal(mc_key_to_json(exact, 10, NULL, 0, &olen), MC_ERANGE);
    assert_int_equal(olen, 14);
    assert_int_equal(mc_key_to_json(NULL, 0, out, 3, &olen), 0);
    assert_string_equal(out, "[]");
}

/* xorshift64*: a fixed sequence so failures reproduce. */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

/* Appends one random valid UTF-8 character, biased toward the characters JSON escapes. */
static size_t rnd_utf8(unsigned char *p)
{
    uint32_t cp;
    switch (rnd() % 6) {
    case 0: cp = (uint32_t)(rnd() % 0x20); break;
    case 1: cp = "\"\\/ab"[rnd() % 5]; break;
    case 2: cp = (uint32_t)(0x20 + rnd() % 0x60); break;
    case 3: cp = (uint32_t)(0x80 + rnd() % 0x780); break;
    case 4:
        do
            cp = (uint32_t)(0x800 + rnd() % 0xf800);
        while (cp >= 0xd800 && cp <= 0xdfff);
        break;
    default: cp = (uint32_t)(0x10000 + rnd() % 0x100000); break;
    }
    if (cp < 0x80) {
        p[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (unsigned char)(0xc0 | cp >> 6);
        p[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (unsigned char)(0xe0 | cp >> 12);
        p[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        p[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    p[0] = (unsigned char)(0xf0 | cp >> 18);
    p[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    p[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    p[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static double rnd_double(void)
{
    static const double nice[] = {0.0, -0.0, 0.1, 0.5, -1.0, 1e300, -1e-300, 3.14159,
                                  DBL_MAX, DBL_MIN, 4.9406564584124654e-324, 1e16, 123.0};
    if (rnd() % 3 == 0)
        return nice[rnd() % (sizeof nice / sizeof nice[0])];
    for (;;) {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (isfinite(d))
            return d;
    }
}

static int64_t rnd_int(void)
{
    /* Spread over all byte lengths rather than mostly 8-byte values. */
    int shift = (int)(rnd() % 64);
    return (int64_t)(rnd() >> shift);
}

static void test_json_random_roundtrip(void **state)
{
    (void)state;
    for (int iter = 0; iter < 5000; iter++) {
        unsigned char strs[8][64];
        mc_arg args[8];
        size_t n = (size_t)(rnd() % 9);
        for (size_t i = 0; i < n; i++) {
            switch (rnd() % 7) {
            case 0: args[i] = MC_ARG_N(); break;
            case 1: args[i] = MC_ARG_B(rnd() & 1); break;
            case 2: args[i] = MC_ARG_I(rnd_int()); break;
            case 3: args[i] = MC_ARG_U(rnd() >> (rnd() % 64)); break;
            case 4: args[i] = MC_ARG_D(rnd_double()); break;
            case 5: {
                size_t len = 0, chars = (size_t)(rnd() % 12);
                for (size_t c = 0; c < chars; c++)
                    len += rnd_utf8(strs[i] + len);
                args[i] = MC_ARG_SN(strs[i], len);
                break;
            }
            default: {
                size_t len = (size_t)(rnd() % 20);
                for (size_t c = 0; c < len; c++)
                    strs[i][c] = (unsigned char)rnd();
                args[i] = MC_ARG_BN(strs[i], len);
                break;
            }
            }
        }
        unsigned char k[MC_KEY_MAX], k2[MC_KEY_MAX];
        size_t len = enc(args, n, k), tlen, len2 = 0;
        char text[4096];
        assert_int_equal(mc_key_count(k, len), (int)n);
        assert_int_equal(mc_key_to_json(k, len, text, sizeof text, &tlen), 0);
        mc_error err = {0};
        int rc = mc_key_from_json(text, tlen, k2, sizeof k2, &len2, &err);
        if (rc != 0)
            fail_msg("iteration %d: %s does not parse: %s", iter, text, err.message);
        if (len2 != len || memcmp(k, k2, len) != 0)
            fail_msg("iteration %d: %s parses to different bytes", iter, text);

        /* Decoding gives back the same values. */
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) {
            mc_arg out;
            assert_int_equal(mc_key_next(k2, len2, &pos, &out), 1);
            switch (args[i].type) {
            case MC_ARG_INT:
            case MC_ARG_UINT:
                if (args[i].type == MC_ARG_INT && args[i].v.i < 0) {
                    assert_int_equal(out.type, MC_ARG_INT);
                    assert_true(out.v.i == args[i].v.i);
                } else {
                    uint64_t want = args[i].type == MC_ARG_INT ? (uint64_t)args[i].v.i
                                                                : args[i].v.u;
                    uint64_t got = out.type == MC_ARG_INT ? (uint64_t)out.v.i : out.v.u;
                    assert_true(want == got);
                    assert_int_equal(out.type, want <= INT64_MAX ? MC_ARG_INT : MC_ARG_UINT);
                }
                break;
            case MC_ARG_DOUBLE:
                assert_int_equal(out.type, MC_ARG_DOUBLE);
                assert_true(out.v.d == args[i].v.d);
                break;
            case MC_ARG_STR:
            case MC_ARG_BYTES:
                assert_int_equal(out.type, args[i].type);
                assert_int_equal(out.v.s.len, args[i].v.s.len);
                if (out.v.s.len > 0)
                    assert_memory_equal(out.v.s.ptr, args[i].v.s.ptr, out.v.s.len);
                break;
            case MC_ARG_BOOL:
                assert_int_equal(out.type, MC_ARG_BOOL);
                assert_int_equal(out.v.b, args[i].v.b);
                break;
            case MC_ARG_NULL:
                assert_int_equal(out.type, MC_ARG_NULL);
                break;
            }
        }
        assert_int_equal(mc_key_next(k2, len2, &pos, &(mc_arg){0}), 0);

        /* Every prefix of the tuple is a byte prefix of the key. */
        size_t k_pre = n == 0 ? 0 : (size_t)(rnd() % (n + 1)), plen;
        unsigned char pre[MC_KEY_MAX];
        size_t plen_enc = enc(args, k_pre, pre);
        assert_int_equal(mc_key_prefix_len(k, len, k_pre, &plen), 0);
        assert_int_equal(plen, plen_enc);
        assert_true(mc_key_has_prefix(k, len, pre, plen));
    }
}

/* The memoized-call encoder (one pass into a scratch buffer) produces exactly the bytes and
 * the error codes of mc_key_encode: random tuples of every type, strings of random (also
 * invalid) UTF-8, and sizes around MC_KEY_MAX. */
static void test_scratch_encoder_matches(void **state)
{
    (void)state;
    static unsigned char strs[8][MC_KEY_MAX + 64];
    unsigned ok = 0, failed = 0;
    for (int iter = 0; iter < 20000; iter++) {
        mc_arg args[8];
        size_t n = rnd() % 9;
        for (size_t i = 0; i < n; i++) {
            switch (rnd() % 8) {
            case 0: args[i] = mc_arg_null(); break;
            case 1: args[i] = mc_arg_bool(rnd() & 1); break;
            case 2: args[i] = mc_arg_int((int64_t)rnd() >> (rnd() % 64)); break;
            case 3: args[i] = mc_arg_uint(rnd() >> (rnd() % 64)); break;
            case 4: args[i] = mc_arg_double((double)(int64_t)rnd() / 7.0); break;
            default: {
                /* Mostly short ASCII, sometimes UTF-8, sometimes a bad byte or a long run. */
                size_t len = rnd() % 4 == 0 ? rnd() % (MC_KEY_MAX + 40) : rnd() % 40, k = 0;
                while (k < len) {
                    unsigned r = (unsigned)(rnd() % 20);
                    if (r == 0 && k + 4 <= len)
                        k += rnd_utf8(strs[i] + k);
                    else if (r == 1)
                        strs[i][k++] = (unsigned char)(0x80 + rnd() % 0x80);
                    else
                        strs[i][k++] = (unsigned char)('a' + rnd() % 26);
                }
                args[i] = rnd() % 5 == 0 ? mc_arg_bytes(strs[i], k) : mc_arg_strn((const char *)strs[i], k);
            }
            }
        }
        unsigned char a[MC_KEY_MAX], b[MC_KEY_MAX];
        size_t la = 0, lb = 0;
        int ra = mc_key_encode(args, n, a, sizeof a, &la);
        if (ra == MC_ERANGE)
            ra = MC_E2BIG;
        int rb = mc__key_encode_scratch(args, n, b, &lb);
        assert_int_equal(ra, rb);
        if (ra == 0) {
            assert_int_equal(la, lb);
            assert_memory_equal(a, b, la);
            ok++;
        } else {
            failed++;
        }
    }
    /* Both outcomes were exercised. */
    assert_true(ok > 1000);
    assert_true(failed > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_tuples),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_int_uint_same),
        cmocka_unit_test(test_types_distinct),
        cmocka_unit_test(test_negative_zero),
        cmocka_unit_test(test_nonfinite_refused),
        cmocka_unit_test(test_integer_boundaries),
        cmocka_unit_test(test_decode_all_types),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_json_doubles_parse_as_doubles),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_json_random_roundtrip),
        cmocka_unit_test(test_scratch_encoder_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
