/* examples/dept/dept_json.c: JSON output escaping, UTF-8 checking and the strict reader of the
 * module's one request body, {"department": "..."}. */
#include "dept_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dept_buf_add(dept_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void dept_buf_adds(dept_buf *b, const char *s) { dept_buf_add(b, s, strlen(s)); }

void dept_buf_json_string(dept_buf *b, const char *s, size_t n)
{
    dept_buf_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, added in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        dept_buf_add(b, s + run, i - run);
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        dept_buf_adds(b, esc);
        run = i + 1;
    }
    dept_buf_add(b, s + run, n - run);
    dept_buf_add(b, "\"", 1);
}

bool dept_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static const char *dept_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int dept_hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Append code point cp as UTF-8 to out[*n] (room checked against cap - 1). */
static bool dept_put_utf8(uint32_t cp, char *out, size_t cap, size_t *n)
{
    char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (char)cp, k = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), k = 4;
    }
    if (*n + k >= cap)
        return false;
    memcpy(out + *n, b, k);
    *n += k;
    return true;
}

/* A JSON string at *pp (on its opening quote), unescaped into out; *pp moves past it. */
static bool dept_json_string(const char **pp, const char *end, char *out, size_t cap, size_t *len,
                             const char **why)
{
    const char *p = *pp + 1;
    size_t n = 0;
    *why = "the department is too long";
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) {
            *why = "control character in a string";
            return false;
        }
        if (c != '\\') {
            if (n + 1 >= cap)
                return false;
            out[n++] = (char)c;
            p++;
            continue;
        }
        if (++p == end)
            break;
        uint32_t cp;
        switch (*p) {
        case '"': case '\\': case '/':
            cp = (unsigned char)*p;
            break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (dept_hex4(p + 1, end, &cp) != 0) {
                *why = "bad \\u escape";
                return false;
            }
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair encodes one code point */
                uint32_t lo;
                if (end - p < 7 || p[1] != '\\' || p[2] != 'u' || dept_hex4(p + 3, end, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff) {
                    *why = "unpaired surrogate";
                    return false;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                *why = "unpaired surrogate";
                return false;
            }
            break;
        default:
            *why = "bad escape";
            return false;
        }
        p++;
        if (cp < 0x20) {
            *why = "control character in a string";
            return false;
        }
        if (!dept_put_utf8(cp, out, cap, &n))
            return false;
    }
    if (p == end) {
        *why = "unterminated string";
        return false;
    }
    out[n] = 0;
    *len = n;
    *pp = p + 1;
    if (!dept_utf8_valid(out, n)) {
        *why = "a string is not valid UTF-8";
        return false;
    }
    return true;
}

bool dept_json_department(const char *body, size_t n, char *out, size_t cap, size_t *len,
                          const char **why)
{
    const char *p = dept_ws(body, body + n), *end = body + n;
    char key[32];
    size_t klen;
    *why = "expected {\"department\": \"...\"}";
    if (p == end || *p != '{')
        return false;
    p = dept_ws(p + 1, end);
    if (p == end || *p != '"')
        return false;
    const char *kwhy;
    if (!dept_json_string(&p, end, key, sizeof key, &klen, &kwhy) || strcmp(key, "department") != 0 ||
        klen != strlen(key))
        return false;
    p = dept_ws(p, end);
    if (p == end || *p != ':')
        return false;
    p = dept_ws(p + 1, end);
    if (p == end || *p != '"') {
        *why = "department: expected a string";
        return false;
    }
    if (!dept_json_string(&p, end, out, cap, len, why))
        return false;
    p = dept_ws(p, end);
    if (p == end || *p != '}') {
        *why = "expected {\"department\": \"...\"} and nothing else";
        return false;
    }
    if (dept_ws(p + 1, end) != end) {
        *why = "text after the object";
        return false;
    }
    if (*len == 0) {
        *why = "department: empty";
        return false;
    }
    return true;
}
