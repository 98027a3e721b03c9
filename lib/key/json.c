/* JSON text form of tuple keys (["@alice",42,{"hex":"00ff"}]) for admin tools and logs.
 * Loop-only parser (no recursion, no allocation); printed keys parse back to the same bytes. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "modcache/key.h"

size_t mc__utf8_seq(const unsigned char *p, size_t n); /* lib/key/key.c */

/* Beyond 800 significant decimal digits only "is anything non-zero left" can change the
 * rounding of a double (exact halfway cases need at most 767 digits), so longer mantissas
 * are cut to 800 digits plus one sticky '1'. This bounds the strtod buffer for any input. */
#define NUM_DIGITS_MAX 800
/* With at most NUM_DIGITS_MAX + 1 mantissa digits, any decimal exponent past this bound
 * already gives 0 or infinity, so clamping it keeps strtod's input short without changing
 * the result. */
#define NUM_EXP_CLAMP 100000

static const char EXPECT_VALUE[] =
    "expected a value (string, number, true, false, null or {\"hex\": ...})";

typedef struct jparser {
    const unsigned char *s;
    size_t n;
    size_t i;
    mc_error *err;
} jparser;

/* Where decoded string bytes go; `len` counts every byte even past `cap`, so an oversized
 * string is still parsed to the end and syntax errors take precedence over MC_E2BIG. */
typedef struct sink {
    unsigned char *buf;
    size_t cap;
    size_t len;
    int hex;      /* the string is a hex byte string: decode digit pairs */
    int nibble;   /* hex mode: pending high nibble, or -1 */
} sink;

static int fail_at(jparser *jp, size_t off, const char *what)
{
    mc__error_set(jp->err, MC_EPARSE, "key JSON at offset %zu: %s%s", off,
            off >= jp->n ? "unexpected end of input, " : "", what);
    return MC_EPARSE;
}

static void skip_ws(jparser *jp)
{
    while (jp->i < jp->n) {
        unsigned char c = jp->s[jp->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        jp->i++;
    }
}

static int hex_val(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

static void sink_put(sink *sk, unsigned char b)
{
    if (sk->len < sk->cap)
        sk->buf[sk->len] = b;
    sk->len++;
}

/* Adds one decoded character (its UTF-8 bytes) to the sink; returns 0 if hex mode refuses it. */
static int sink_char(sink *sk, const unsigned char *u, size_t n)
{
    if (!sk->hex) {
        for (size_t k = 0; k < n; k++)
            sink_put(sk, u[k]);
        return 1;
    }
    int v = n == 1 ? hex_val(u[0]) : -1;
    if (v < 0)
        return 0;
    if (sk->nibble < 0) {
        sk->nibble = v;
    } else {
        sink_put(sk, (unsigned char)(sk->nibble << 4 | v));
        sk->nibble = -1;
    }
    return 1;
}

static size_t utf8_put(unsigned char *u, uint32_t cp)
{
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | cp >> 18);
    u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the 4 hex digits of a \u escape whose backslash is at `at`. */
static int read_u4(jparser *jp, size_t at, uint32_t *cp)
{
    uint32_t v = 0;
    for (size_t off = at + 2; off < at + 6; off++) {
        int h = off < jp->n ? hex_val(jp->s[off]) : -1;
        if (h < 0)
            return fail_at(jp, off, "expected 4 hex digits after \\u");
        v = v << 4 | (uint32_t)h;
    }
    *cp = v;
    return 0;
}

/* Parses a JSON string starting at its opening quote into `sk`. */
static int parse_string(jparser *jp, sink *sk)
{
    jp->i++;
    for (;;) {
        if (jp->i >= jp->n)
            return fail_at(jp, jp->i, "expected '\"' to close the string");
        size_t at = jp->i;
        unsigned char c = jp->s[at];
        unsigned char u[4];
        size_t ulen;
        if (c == '"') {
            jp->i++;
            if (sk->hex && sk->nibble >= 0)
                return fail_at(jp, at, "odd number of hex digits in byte string");
            return 0;
        }
        if (c == '\\') {
            if (at + 1 >= jp->n)
                return fail_at(jp, jp->n, "expected an escape character after '\\'");
            unsigned char e = jp->s[at + 1];
            jp->i = at + 2;
            switch (e) {
            case '"': case '\\': case '/':
                u[0] = e;
                break;
            case 'b': u[0] = '\b'; break;
            case 'f': u[0] = '\f'; break;
            case 'n': u[0] = '\n'; break;
            case 'r': u[0] = '\r'; break;
            case 't': u[0] = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                int rc = read_u4(jp, at, &cp);
                if (rc != 0)
                    return rc;
                jp->i = at + 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail_at(jp, at, "lone low surrogate escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (jp->n - jp->i < 2 || jp->s[jp->i] != '\\' || jp->s[jp->i + 1] != 'u')
                        return fail_at(jp, at, "lone high surrogate escape, "
                                               "expected a \\u low surrogate after it");
                    rc = read_u4(jp, jp->i, &lo);
                    if (rc != 0)
                        return rc;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail_at(jp, at,
                                       "high surrogate escape not followed by a low surrogate");
                    jp->i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                ulen = utf8_put(u, cp);
                if (!sink_char(sk, u, ulen))
                    return fail_at(jp, at, "expected a hex digit in byte string");
                continue;
            }
            default:
                return fail_at(jp, at, "invalid escape, "
                                       "expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u");
            }
            if (!sink_char(sk, u, 1))
                return fail_at(jp, at, "expected a hex digit in byte string");
            continue;
        }
        if (c < 0x20)
            return fail_at(jp, at,
                           "raw control character in string, expected it escaped (\\u00XX)");
        ulen = mc__utf8_seq(jp->s + at, jp->n - at);
        if (ulen == 0)
            return fail_at(jp, at, "invalid UTF-8 in string");
        if (!sink_char(sk, jp->s + at, ulen))
            return fail_at(jp, at, "expected a hex digit in byte string");
        jp->i = at + ulen;
    }
}

/* A number token split into its parts by scan_number. */
typedef struct numtok {
    int neg;
    const unsigned char *ip; /* integer digits */
    size_t ni;
    const unsigned char *fp; /* fraction digits (none when is_int) */
    size_t nf;
    int64_t exp;             /* exponent, clamped */
    int is_int;
} numtok;

static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

/* Scans the strict JSON number grammar at s[*i] and advances *i past it. Returns 0, or -1
 * with the offending offset in *bad and the reason in *what. */
static int scan_number(const unsigned char *s, size_t n, size_t *i, numtok *t, size_t *bad,
                       const char **what)
{
    size_t p = *i;
    memset(t, 0, sizeof *t);
    t->is_int = 1;
    if (p < n && s[p] == '-') {
        t->neg = 1;
        p++;
    }
    if (p >= n || !is_digit(s[p])) {
        *what = "expected a digit";
        goto bad;
    }
    t->ip = s + p;
    if (s[p] == '0') {
        p++;
        if (p < n && is_digit(s[p])) {
            *what = "leading zeros are not allowed in numbers";
            goto bad;
        }
    } else {
        while (p < n && is_digit(s[p]))
            p++;
    }
    t->ni = (size_t)(s + p - t->ip);
    if (p < n && s[p] == '.') {
        p++;
        if (p >= n || !is_digit(s[p])) {
            *what = "expected a digit after '.'";
            goto bad;
        }
        t->fp = s + p;
        while (p < n && is_digit(s[p]))
            p++;
        t->nf = (size_t)(s + p - t->fp);
        t->is_int = 0;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        int eneg = 0;
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            eneg = s[p++] == '-';
        if (p >= n || !is_digit(s[p])) {
            *what = "expected a digit in the exponent";
            goto bad;
        }
        /* Saturating: any exponent past 10^9 already means 0 or overflow. */
        int64_t e = 0;
        while (p < n && is_digit(s[p])) {
            if (e < 1000000000)
                e = e * 10 + (s[p] - '0');
            p++;
        }
        t->exp = eneg ? -e : e;
        t->is_int = 0;
    }
    *i = p;
    return 0;
bad:
    *bad = p;
    return -1;
}

/* Integer value of an is_int token; 0 on success, -1 outside [-2^63, 2^64-1]. */
static int num_to_int(const numtok *t, mc_arg *a)
{
    uint64_t u = 0;
    for (size_t k = 0; k < t->ni; k++) {
        unsigned d = (unsigned)(t->ip[k] - '0');
        if (u > (UINT64_MAX - d) / 10)
            return -1;
        u = u * 10 + d;
    }
    if (!t->neg || u == 0) {
        /* "-0" is the integer 0: integers have no signed zero. */
        *a = u <= (uint64_t)INT64_MAX ? MC_ARG_I(u) : MC_ARG_U(u);
        return 0;
    }
    if (u > (uint64_t)INT64_MAX + 1)
        return -1;
    *a = MC_ARG_I(-(int64_t)(u - 1) - 1);
    return 0;
}

/* Double value of a number token. strtod only ever sees "[-]digits" or "[-]digitsE[-]digits"
 * with no radix character: a host that calls setlocale(LC_NUMERIC, ...) changes strtod's
 * decimal point, but not how it reads such a string. Returns 0, or -1 when it overflows. */
static int num_to_double(const numtok *t, double *out)
{
    char buf[NUM_DIGITS_MAX + 32];
    size_t nd = 0, dropped = 0;
    int sticky = 0;
    /* Digit counts are bounded by the input size, far below 2^62. */
    int64_t exp10 = t->exp - (int64_t)t->nf;
    size_t pos = 0;
    if (t->neg)
        buf[pos++] = '-';
    /* Leading zeros carry no value; digits beyond NUM_DIGITS_MAX only scale the exponent
     * and, when non-zero, set the sticky digit. */
    for (size_t k = 0; k < t->ni + t->nf; k++) {
        char c = (char)(k < t->ni ? t->ip[k] : t->fp[k - t->ni]);
        if (nd == 0 && c == '0')
            continue;
        if (nd < NUM_DIGITS_MAX) {
            buf[pos++] = c;
            nd++;
        } else {
            dropped++;
            if (c != '0')
                sticky = 1;
        }
    }
    if (nd == 0) {
        *out = t->neg ? -0.0 : 0.0;
        return 0;
    }
    exp10 += (int64_t)dropped;
    if (sticky) {
        buf[pos++] = '1';
        exp10--;
    }
    if (exp10 > NUM_EXP_CLAMP)
        exp10 = NUM_EXP_CLAMP;
    if (exp10 < -NUM_EXP_CLAMP)
        exp10 = -NUM_EXP_CLAMP;
    snprintf(buf + pos, sizeof buf - pos, "e%" PRId64, exp10);
    double d = strtod(buf, NULL);
    if (isinf(d))
        return -1;
    *out = d;
    return 0;
}

/* Appends one encoded field to the key being built; `full` records that the key outgrew
 * MC_KEY_MAX (reported only if the rest of the text parses). */
typedef struct kbuf {
    unsigned char b[MC_KEY_MAX];
    size_t len;
    int full;
} kbuf;

static void kbuf_add(kbuf *kb, const mc_arg *a)
{
    size_t n;
    if (kb->full)
        return;
    int rc = mc_key_encode(a, 1, kb->b + kb->len, sizeof kb->b - kb->len, &n);
    if (rc == 0)
        kb->len += n;
    else
        kb->full = 1; /* only size errors remain: the parser produced finite, valid fields */
}

static int expect_lit(jparser *jp, const char *lit)
{
    size_t n = strlen(lit);
    if (jp->n - jp->i < n || memcmp(jp->s + jp->i, lit, n) != 0)
        return fail_at(jp, jp->i, EXPECT_VALUE);
    jp->i += n;
    return 0;
}

/* Parses {"hex": "..."} at jp->i into a byte-string field. */
static int parse_hex_object(jparser *jp, kbuf *kb, unsigned char *tmp, size_t tmpcap)
{
    jp->i++;
    skip_ws(jp);
    size_t at = jp->i;
    if (at >= jp->n || jp->s[at] != '"')
        return fail_at(jp, at, "expected the member name \"hex\"");
    unsigned char name[4];
    sink ns = {name, sizeof name, 0, 0, -1};
    int rc = parse_string(jp, &ns);
    if (rc != 0)
        return rc;
    if (ns.len != 3 || memcmp(name, "hex", 3) != 0)
        return fail_at(jp, at, "expected the member name \"hex\"");
    skip_ws(jp);
    if (jp->i >= jp->n || jp->s[jp->i] != ':')
        return fail_at(jp, jp->i, "expected ':'");
    jp->i++;
    skip_ws(jp);
    if (jp->i >= jp->n || jp->s[jp->i] != '"')
        return fail_at(jp, jp->i, "expected a string of hex digits");
    sink hs = {tmp, tmpcap, 0, 1, -1};
    rc = parse_string(jp, &hs);
    if (rc != 0)
        return rc;
    skip_ws(jp);
    if (jp->i < jp->n && jp->s[jp->i] == ',')
        return fail_at(jp, jp->i,
                       "expected '}': a byte string object has exactly one member \"hex\"");
    if (jp->i >= jp->n || jp->s[jp->i] != '}')
        return fail_at(jp, jp->i, "expected '}'");
    jp->i++;
    if (hs.len > tmpcap)
        kb->full = 1;
    else
        kbuf_add(kb, &(mc_arg){.type = MC_ARG_BYTES, .v.s = {tmp, hs.len}});
    return 0;
}

static int parse_value(jparser *jp, kbuf *kb, unsigned char *tmp, size_t tmpcap)
{
    if (jp->i >= jp->n)
        return fail_at(jp, jp->i, EXPECT_VALUE);
    unsigned char c = jp->s[jp->i];
    switch (c) {
    case '"': {
        sink ss = {tmp, tmpcap, 0, 0, -1};
        int rc = parse_string(jp, &ss);
        if (rc != 0)
            return rc;
        if (ss.len > tmpcap)
            kb->full = 1;
        else
            kbuf_add(kb, &MC_ARG_SN(tmp, ss.len));
        return 0;
    }
    case '{':
        return parse_hex_object(jp, kb, tmp, tmpcap);
    case '[':
        return fail_at(jp, jp->i, "nested arrays are not allowed in a key");
    case 't':
        if (expect_lit(jp, "true") != 0)
            return MC_EPARSE;
        kbuf_add(kb, &MC_ARG_B(true));
        return 0;
    case 'f':
        if (expect_lit(jp, "false") != 0)
            return MC_EPARSE;
        kbuf_add(kb, &MC_ARG_B(false));
        return 0;
    case 'n':
        if (expect_lit(jp, "null") != 0)
            return MC_EPARSE;
        kbuf_add(kb, &MC_ARG_N());
        return 0;
    default:
        break;
    }
    if (c != '-' && !is_digit(c))
        return fail_at(jp, jp->i, EXPECT_VALUE);
    size_t start = jp->i, bad;
    numtok t;
    const char *what;
    if (scan_number(jp->s, jp->n, &jp->i, &t, &bad, &what) != 0)
        return fail_at(jp, bad, what);
    mc_arg a;
    if (t.is_int) {
        if (num_to_int(&t, &a) != 0)
            return fail_at(jp, start, "integer out of range [-2^63, 2^64-1]");
    } else {
        a.type = MC_ARG_DOUBLE;
        if (num_to_double(&t, &a.v.d) != 0)
            return fail_at(jp, start, "number out of the range of a double");
    }
    kbuf_add(kb, &a);
    return 0;
}

int mc_key_from_json(const char *text, size_t text_len, void *out, size_t cap, size_t *len,
                     mc_error *err)
{
    if ((text == NULL && text_len > 0) || out == NULL || len == NULL) {
        mc__error_set(err, MC_EINVAL, "key JSON: NULL argument");
        return MC_EINVAL;
    }
    jparser jp = {(const unsigned char *)text, text_len, 0, err};
    kbuf kb;
    kb.len = 0;
    kb.full = 0;
    /* A string or byte string field holds fewer than MC_KEY_MAX bytes of content, so this
     * scratch space holds any field that can still fit in a key. */
    unsigned char tmp[MC_KEY_MAX];

    skip_ws(&jp);
    if (jp.i >= jp.n || jp.s[jp.i] != '[')
        return fail_at(&jp, jp.i, "expected '['");
    jp.i++;
    skip_ws(&jp);
    if (jp.i < jp.n && jp.s[jp.i] == ']') {
        jp.i++;
    } else {
        for (;;) {
            skip_ws(&jp);
            int rc = parse_value(&jp, &kb, tmp, sizeof tmp);
            if (rc != 0)
                return rc;
            skip_ws(&jp);
            if (jp.i < jp.n && jp.s[jp.i] == ',') {
                jp.i++;
                continue;
            }
            if (jp.i < jp.n && jp.s[jp.i] == ']') {
                jp.i++;
                break;
            }
            return fail_at(&jp, jp.i, "expected ',' or ']'");
        }
    }
    skip_ws(&jp);
    if (jp.i < jp.n)
        return fail_at(&jp, jp.i, "expected the end of input after ']'");

    if (kb.full) {
        mc__error_set(err, MC_E2BIG, "key JSON encodes to more than %d bytes", MC_KEY_MAX);
        return MC_E2BIG;
    }
    if (kb.len > cap) {
        *len = kb.len;
        mc__error_set(err, MC_ERANGE, "key needs %zu bytes, the buffer holds %zu", kb.len, cap);
        return MC_ERANGE;
    }
    if (kb.len > 0)
        memcpy(out, kb.b, kb.len);
    *len = kb.len;
    return 0;
}

/* Output cursor: counts the full length even when `cap` is exceeded, for MC_ERANGE. */
typedef struct jout {
    char *buf;
    size_t cap;
    size_t len;
} jout;

static void out_bytes(jout *o, const void *p, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, p, n < room ? n : room);
    }
    o->len += n;
}

static void out_str(jout *o, const char *s)
{
    out_bytes(o, s, strlen(s));
}

static void out_json_string(jout *o, const unsigned char *p, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    out_bytes(o, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one piece */
    for (size_t k = 0; k < n; k++) {
        unsigned char c = p[k];
        const char *esc = NULL;
        char ubuf[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                memcpy(ubuf, "\\u00", 4);
                ubuf[4] = hexd[c >> 4];
                ubuf[5] = hexd[c & 15];
                ubuf[6] = '\0';
                esc = ubuf;
            }
            break;
        }
        if (esc == NULL) {
            run++;
            continue;
        }
        out_bytes(o, p + k - run, run);
        run = 0;
        out_str(o, esc);
    }
    out_bytes(o, p + n - run, run);
    out_bytes(o, "\"", 1);
}

/* %g writes the locale's radix character; replacing whatever stands between the digits
 * with '.' keeps the text JSON whatever LC_NUMERIC the host has set. Returns the length. */
static size_t radix_to_dot(char *buf)
{
    size_t r = 0;
    int in_radix = 0;
    for (size_t w = 0; buf[w] != '\0'; w++) {
        char c = buf[w];
        if (is_digit((unsigned char)c) || c == '-' || c == '+' || c == 'e') {
            buf[r++] = c;
            in_radix = 0;
        } else if (!in_radix) {
            buf[r++] = '.';
            in_radix = 1;
        }
    }
    buf[r] = '\0';
    return r;
}

/* Shortest of %.15g/%.16g/%.17g that reads back as the same double (17 digits always do),
 * with a '.' or an exponent so that it parses back as a double rather than an integer. */
static void format_double(double d, char *buf, size_t cap)
{
    size_t r = 0;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        r = radix_to_dot(buf);
        if (prec == 17)
            break;
        size_t i = 0, bad;
        numtok t;
        const char *what;
        double back;
        if (scan_number((const unsigned char *)buf, r, &i, &t, &bad, &what) == 0 && i == r &&
            num_to_double(&t, &back) == 0 && back == d)
            break;
    }
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL && r + 2 < cap)
        memcpy(buf + r, ".0", 3);
}

int mc_key_to_json(const void *key, size_t len, char *out, size_t cap, size_t *out_len)
{
    if (out_len == NULL || (out == NULL && cap > 0))
        return MC_EINVAL;
    /* Validate everything first so that a malformed key never leaves partial text. */
    if (mc_key_count(key, len) < 0)
        return MC_EINVAL;
    jout o = {out, cap, 0};
    static const char hexd[] = "0123456789abcdef";
    size_t pos = 0;
    mc_arg a;
    int first = 1;
    out_bytes(&o, "[", 1);
    while (mc_key_next(key, len, &pos, &a) == 1) {
        char num[64];
        if (!first)
            out_bytes(&o, ",", 1);
        first = 0;
        switch (a.type) {
        case MC_ARG_NULL:
            out_str(&o, "null");
            break;
        case MC_ARG_BOOL:
            out_str(&o, a.v.b ? "true" : "false");
            break;
        case MC_ARG_INT:
            snprintf(num, sizeof num, "%" PRId64, a.v.i);
            out_str(&o, num);
            break;
        case MC_ARG_UINT:
            snprintf(num, sizeof num, "%" PRIu64, a.v.u);
            out_str(&o, num);
            break;
        case MC_ARG_DOUBLE:
            format_double(a.v.d, num, sizeof num);
            out_str(&o, num);
            break;
        case MC_ARG_STR:
            out_json_string(&o, a.v.s.ptr, a.v.s.len);
            break;
        case MC_ARG_BYTES: {
            const unsigned char *b = a.v.s.ptr;
            out_str(&o, "{\"hex\":\"");
            for (size_t k = 0; k < a.v.s.len; k++) {
                char h[2] = {hexd[b[k] >> 4], hexd[b[k] & 15]};
                out_bytes(&o, h, 2);
            }
            out_str(&o, "\"}");
            break;
        }
        }
    }
    out_bytes(&o, "]", 1);
    *out_len = o.len;
    if (o.len >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return MC_ERANGE;
    }
    out[o.len] = '\0';
    return 0;
}
