/* Walking a JSON array of keys: element spans found by bracket and string balance, so that each
 * key can then be handed to mc_key_from_json, which does the real checking. */
#include "key/keylist.h"

#include <stdlib.h>
#include <string.h>

#include "modcache/common.h"

static size_t mc__skip_ws(const char *t, size_t len, size_t p)
{
    while (p < len && (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' || t[p] == '\r'))
        p++;
    return p;
}

/* The end (one past) of the balanced array starting at t[p] == '[', or 0 when unbalanced. */
static size_t mc__array_end(const char *t, size_t len, size_t p)
{
    size_t depth = 0;
    for (; p < len; p++) {
        char c = t[p];
        if (c == '"') {
            for (p++; p < len && t[p] != '"'; p++)
                if (t[p] == '\\')
                    p++;
            if (p >= len)
                return 0;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth == 0)
                return 0;
            if (--depth == 0)
                return p + 1;
        }
    }
    return 0;
}

int mc__keylist_next(const char *text, size_t len, size_t *pos, const char **item, size_t *item_len)
{
    size_t p = *pos;
    if (p == 0) {
        p = mc__skip_ws(text, len, 0);
        if (p >= len || text[p] != '[') {
            *pos = p;
            return MC_EPARSE;
        }
        p = mc__skip_ws(text, len, p + 1);
        if (p < len && text[p] == ']')
            goto end;
    } else {
        /* After an element: a comma and the next element, or the closing bracket. */
        p = mc__skip_ws(text, len, p);
        if (p < len && text[p] == ']')
            goto end;
        if (p >= len || text[p] != ',') {
            *pos = p;
            return MC_EPARSE;
        }
        p = mc__skip_ws(text, len, p + 1);
    }
    if (p >= len || text[p] != '[') {
        *pos = p;
        return MC_EPARSE;
    }
    size_t e = mc__array_end(text, len, p);
    if (e == 0) {
        *pos = p;
        return MC_EPARSE;
    }
    *item = text + p;
    *item_len = e - p;
    *pos = e;
    return 1;
end:
    *pos = p + 1;
    return 0;
}

int mc__keylist_split(const char *text, size_t len, mc__keylist *out, size_t *end)
{
    *out = (mc__keylist){0};
    /* The elements are disjoint and separated, so their text and NULs fit in len + 1 bytes. */
    out->buf = malloc(len + 1);
    size_t cap = 0, pos = 0, ilen;
    const char *item;
    char *w = out->buf;
    int rc = out->buf ? 0 : MC_ENOMEM;
    while (rc == 0 && (rc = mc__keylist_next(text, len, &pos, &item, &ilen)) == 1) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            const char **k = realloc(out->keys, cap * sizeof *k);
            if (!k) {
                rc = MC_ENOMEM;
                break;
            }
            out->keys = k;
        }
        memcpy(w, item, ilen);
        w[ilen] = 0;
        out->keys[out->n++] = w;
        w += ilen + 1;
        rc = 0;
    }
    if (end)
        *end = pos;
    if (rc != 0)
        mc__keylist_free(out);
    return rc;
}

void mc__keylist_free(mc__keylist *kl)
{
    free(kl->buf);
    free(kl->keys);
    *kl = (mc__keylist){0};
}
