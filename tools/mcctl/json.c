/* mcctl's JSON scanner: just enough JSON to read the host's answers (the caches list, error
 * bodies) without a new dependency. Anything malformed is refused with a reason, never trusted. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcctl.h"

/* Deeper nesting than any host answer has; bounds the recursion in mcctl_json_skip. */
#define MCCTL_JSON_MAX_DEPTH 32

static bool fail(mcctl_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(mcctl_json *j, const char *fmt, ...)
{
    if (j->why[0])
        return false; /* keep the first reason: later ones are consequences */
    int n = snprintf(j->why, sizeof j->why, "at offset %zu: ", (size_t)(j->p - j->begin));
    if (n < 0 || (size_t)n >= sizeof j->why)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why + n, sizeof j->why - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

void mcctl_json_init(mcctl_json *j, const char *text, size_t len)
{
    memset(j, 0, sizeof *j);
    j->begin = j->p = text;
    j->end = text + len;
}

static void skip_ws(mcctl_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

bool mcctl_json_accept(mcctl_json *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

bool mcctl_json_done(mcctl_json *j)
{
    skip_ws(j);
    return j->p == j->end || fail(j, "unexpected text after the document");
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool mcctl_json_string(mcctl_json *j, char **out)
{
    if (out)
        *out = NULL;
    if (!mcctl_json_accept(j, '"'))
        return fail(j, "expected a string");
    /* Decoding never makes the text longer, so the raw length bounds the output. */
    const char *q = j->p;
    while (q < j->end && *q != '"')
        q += *q == '\\' && q + 1 < j->end ? 2 : 1;
    if (q >= j->end)
        return fail(j, "unterminated string");
    char *buf = NULL, *o = NULL;
    if (out) {
        if (!(buf = malloc((size_t)(q - j->p) + 1)))
            return fail(j, "out of memory");
        o = buf;
    }
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) {
            free(buf);
            return fail(j, "control character in a string");
        }
        if (c != '\\') {
            if (o)
                *o++ = (char)c;
            j->p++;
            continue;
        }
        char e = j->p[1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (o)
                *o++ = decoded[simple - "\"\\/bfnrt"];
            j->p += 2;
            continue;
        }
        if (e != 'u' || j->end - j->p < 6 || hex4(j->p + 2) < 0) {
            free(buf);
            return fail(j, "bad escape in a string");
        }
        unsigned cp = (unsigned)hex4(j->p + 2);
        j->p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(buf);
            return fail(j, "lone low surrogate in a string");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' ? hex4(j->p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                free(buf);
                return fail(j, "lone high surrogate in a string");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
            j->p += 6;
        }
        /* Six escaped bytes always hold the at most four UTF-8 bytes they decode to. */
        if (o)
            o += put_utf8(o, cp);
    }
    j->p++;
    if (out) {
        *o = 0;
        *out = buf;
    }
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool mcctl_json_uint(mcctl_json *j, uint64_t *out)
{
    skip_ws(j);
    const char *s = j->p;
    if (s == j->end || !is_digit(*s))
        return fail(j, "expected a non-negative integer");
    uint64_t v = 0;
    while (j->p < j->end && is_digit(*j->p)) {
        unsigned d = (unsigned)(*j->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fail(j, "integer out of range");
        v = v * 10 + d;
        j->p++;
    }
    if (*s == '0' && j->p - s > 1)
        return fail(j, "leading zero in a number");
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return fail(j, "expected an integer");
    *out = v;
    return true;
}

static bool skip_number(mcctl_json *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p == j->end || !is_digit(*j->p))
        return fail(j, "bad number");
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p == j->end || !is_digit(*j->p))
            return fail(j, "bad number");
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p == j->end || !is_digit(*j->p))
            return fail(j, "bad number");
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    }
    return j->p > s;
}

static bool skip_word(mcctl_json *j, const char *w);

bool mcctl_json_bool(mcctl_json *j, bool *out)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == 't' && skip_word(j, "true")) {
        *out = true;
        return true;
    }
    if (j->p < j->end && *j->p == 'f' && skip_word(j, "false")) {
        *out = false;
        return true;
    }
    return fail(j, "expected true or false");
}

static bool skip_word(mcctl_json *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return fail(j, "expected a value");
    j->p += n;
    return true;
}

bool mcctl_json_skip(mcctl_json *j)
{
    skip_ws(j);
    if (j->p == j->end)
        return fail(j, "unexpected end of the document");
    char c = *j->p;
    if (c == '"')
        return mcctl_json_string(j, NULL);
    if (c == 't')
        return skip_word(j, "true");
    if (c == 'f')
        return skip_word(j, "false");
    if (c == 'n')
        return skip_word(j, "null");
    if (c == '-' || is_digit(c))
        return skip_number(j);
    if (c != '[' && c != '{')
        return fail(j, "expected a value");
    if (++j->depth > MCCTL_JSON_MAX_DEPTH)
        return fail(j, "nested too deeply");
    bool object = c == '{';
    char close = object ? '}' : ']';
    j->p++;
    if (!mcctl_json_accept(j, close)) {
        do {
            if (object && (!mcctl_json_string(j, NULL) || !mcctl_json_accept(j, ':')))
                return fail(j, "expected \"name\": in an object");
            if (!mcctl_json_skip(j))
                return false;
        } while (mcctl_json_accept(j, ','));
        if (!mcctl_json_accept(j, close))
            return fail(j, "expected ',' or '%c'", close);
    }
    j->depth--;
    return true;
}

/* ---------------------------------------------------------------- the caches list */

static const struct {
    const char *name;
    size_t offset;
    bool required; /* shown in the table: an answer without it is not one this mcctl can read */
} fields[] = {
    {"entries", offsetof(mcctl_cache_row, entries), true},
    {"max_entries", offsetof(mcctl_cache_row, max_entries), true},
    {"bytes", offsetof(mcctl_cache_row, bytes), false},
    {"memory", offsetof(mcctl_cache_row, memory), true},
    {"hits", offsetof(mcctl_cache_row, hits), true},
    {"misses", offsetof(mcctl_cache_row, misses), true},
    {"loads", offsetof(mcctl_cache_row, loads), true},
    {"load_errors", offsetof(mcctl_cache_row, load_errors), false},
    {"invalidations", offsetof(mcctl_cache_row, invalidations), true},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static bool parse_row(mcctl_json *j, mcctl_cache_row *row)
{
    if (!mcctl_json_accept(j, '{'))
        return fail(j, "expected an object for each cache");
    bool seen[NFIELDS] = {false};
    if (!mcctl_json_accept(j, '}')) {
        do {
            char *key;
            if (!mcctl_json_string(j, &key))
                return false;
            if (!mcctl_json_accept(j, ':')) {
                free(key);
                return fail(j, "expected ':'");
            }
            bool ok;
            size_t f = 0;
            while (f < NFIELDS && strcmp(key, fields[f].name) != 0)
                f++;
            if (!strcmp(key, "name")) {
                free(row->name);
                ok = mcctl_json_string(j, &row->name);
            } else if (f < NFIELDS) {
                ok = mcctl_json_uint(j, (uint64_t *)((char *)row + fields[f].offset));
                seen[f] = true;
            } else {
                ok = mcctl_json_skip(j); /* fields added by newer hosts (evictions...) */
            }
            free(key);
            if (!ok)
                return false;
        } while (mcctl_json_accept(j, ','));
        if (!mcctl_json_accept(j, '}'))
            return fail(j, "expected ',' or '}'");
    }
    if (!row->name)
        return fail(j, "a cache without a \"name\"");
    for (size_t f = 0; f < NFIELDS; f++)
        if (fields[f].required && !seen[f])
            return fail(j, "cache %.60s has no \"%s\"", row->name, fields[f].name);
    return true;
}

bool mcctl_caches_parse(const char *text, size_t len, mcctl_cache_row **rows, size_t *n, char *why,
                        size_t whycap)
{
    mcctl_json j;
    mcctl_json_init(&j, text, len);
    mcctl_cache_row *r = NULL;
    size_t count = 0, cap = 0;
    bool ok = mcctl_json_accept(&j, '[') || fail(&j, "expected an array of caches");
    if (ok && !mcctl_json_accept(&j, ']')) {
        do {
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                mcctl_cache_row *nr = realloc(r, ncap * sizeof *nr);
                if (!nr) {
                    ok = fail(&j, "out of memory");
                    break;
                }
                r = nr;
                cap = ncap;
            }
            memset(&r[count], 0, sizeof r[count]);
            ok = parse_row(&j, &r[count]);
            count++; /* even a half-read row: its name is freed below */
        } while (ok && mcctl_json_accept(&j, ','));
        if (ok && !mcctl_json_accept(&j, ']'))
            ok = fail(&j, "expected ',' or ']'");
    }
    if (ok)
        ok = mcctl_json_done(&j);
    if (!ok) {
        snprintf(why, whycap, "%s", j.why);
        mcctl_cache_rows_free(r, count);
        return false;
    }
    *rows = r;
    *n = count;
    return true;
}

void mcctl_cache_rows_free(mcctl_cache_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i].name);
    free(rows);
}

char *mcctl_json_error_text(const char *text, size_t len)
{
    mcctl_json j;
    mcctl_json_init(&j, text, len);
    if (!mcctl_json_accept(&j, '{') || mcctl_json_accept(&j, '}'))
        return NULL;
    char *found = NULL;
    do {
        char *key;
        if (!mcctl_json_string(&j, &key))
            break;
        bool ok = mcctl_json_accept(&j, ':');
        if (ok && !strcmp(key, "error") && !found)
            ok = mcctl_json_string(&j, &found);
        else if (ok)
            ok = mcctl_json_skip(&j);
        free(key);
        if (!ok)
            break;
    } while (mcctl_json_accept(&j, ','));
    return found;
}
