/* libFuzzer target for the JSON key parser: any input is either refused with a consistent
 * error, or accepted as a key whose printed form parses back to the same bytes; the same text
 * is also walked as a list of keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key/keylist.h"
#include "modcache/key.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_json_key: check failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A refusal names its kind in err, and a parse error an offset within the input. */
static void check_error(int rc, const mc_error *err, size_t size)
{
    CHECK(rc == MC_EPARSE || rc == MC_E2BIG);
    CHECK(err->code == rc);
    size_t mlen = strnlen(err->message, sizeof err->message);
    CHECK(mlen > 0 && mlen < sizeof err->message);
    if (rc == MC_EPARSE) {
        size_t off;
        CHECK(sscanf(err->message, "key JSON at offset %zu:", &off) == 1);
        CHECK(off <= size);
    }
}

/* Accepted text, read again by a plain scanner: every number token must have become the field
 * the C library reads from the same digits (strtod rounds correctly; -0.0 is stored as 0.0). */
static void check_numbers(const char *s, size_t n, const unsigned char *key, size_t klen)
{
    size_t i = 0, pos = 0;
    while (i < n && s[i] != '[')
        i++;
    i++;
    for (;;) {
        while (i < n && s[i] != 0 && strchr(" \t\r\n,", s[i]))
            i++;
        if (i >= n || s[i] == ']')
            break;
        mc_arg a;
        CHECK(mc_key_next(key, klen, &pos, &a) == 1);
        char c = s[i];
        if (c == '"') {
            for (i++; s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else if (c == '{') {
            while (s[i] != '}')
                i++;
            i++;
        } else if (c == 't' || c == 'f' || c == 'n') {
            while (i < n && s[i] >= 'a' && s[i] <= 'z')
                i++;
        } else {
            size_t start = i;
            while (i < n && strchr("+-.eE0123456789", s[i]) && s[i] != 0)
                i++;
            char tok[4200];
            CHECK(i - start < sizeof tok);
            memcpy(tok, s + start, i - start);
            tok[i - start] = 0;
            if (a.type == MC_ARG_DOUBLE) {
                CHECK(strpbrk(tok, ".eE") != NULL);
                double want = strtod(tok, NULL);
                if (want == 0)
                    want = 0.0;
                if (memcmp(&want, &a.v.d, sizeof want) != 0) {
                    fprintf(stderr, "fuzz_json_key: %s read as %.17g, strtod gives %.17g\n", tok, a.v.d,
                            want);
                    abort();
                }
            } else if (a.type == MC_ARG_UINT) {
                CHECK(tok[0] != '-' && strtoull(tok, NULL, 10) == a.v.u);
            } else {
                CHECK(a.type == MC_ARG_INT && strpbrk(tok, ".eE") == NULL);
                CHECK(strtoll(tok, NULL, 10) == a.v.i);
            }
        }
    }
    mc_arg end;
    CHECK(mc_key_next(key, klen, &pos, &end) == 0);
}

/* The same text as a list of keys ([[...], [...]]), as the admin API and the bus walk it: every
 * element found is a bracketed span inside the text, found in order, and the walk ends. */
static void check_keylist(const char *text, size_t size)
{
    size_t pos = 0, last = 0, n = 0, ilen;
    const char *item;
    int rc;
    while ((rc = mc__keylist_next(text, size, &pos, &item, &ilen)) == 1) {
        CHECK(item >= text + last && ilen >= 2 && (size_t)(item - text) + ilen <= size);
        CHECK(pos == (size_t)(item - text) + ilen && pos > last);
        CHECK(item[0] == '[' && (item[ilen - 1] == ']' || item[ilen - 1] == '}'));
        last = pos;
        CHECK(++n <= size);
    }
    CHECK(pos <= size);
    if (rc == 0)
        CHECK(pos >= 2 && text[pos - 1] == ']');
    else
        CHECK(rc == MC_EPARSE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes on the heap: the parser must not read past the text it is
     * given (there is no NUL after it), which ASan checks. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);

    unsigned char key[MC_KEY_MAX];
    size_t len = 0;
    mc_error err = {0};
    check_keylist(text, size);
    int rc = mc_key_from_json(text, size, key, sizeof key, &len, &err);
    if (rc != 0) {
        check_error(rc, &err, size);
        free(text);
        return 0;
    }
    CHECK(len <= MC_KEY_MAX);
    CHECK(mc_key_count(key, len) >= 0);
    check_numbers(text, size, key, len);

    /* A buffer one byte short: MC_ERANGE with the size needed, the same verdict otherwise. */
    if (len > 0) {
        unsigned char small[MC_KEY_MAX];
        size_t need = 0;
        mc_error e2 = {0};
        CHECK(mc_key_from_json(text, size, small, len - 1, &need, &e2) == MC_ERANGE);
        CHECK(need == len && e2.code == MC_ERANGE);
    }

    static char json[16 * MC_KEY_MAX], json2[16 * MC_KEY_MAX];
    size_t jlen = 0;
    rc = mc_key_to_json(key, len, json, sizeof json, &jlen);
    CHECK(rc == 0 && jlen == strlen(json));

    unsigned char back[MC_KEY_MAX];
    size_t blen = 0;
    mc_error e3 = {0};
    rc = mc_key_from_json(json, jlen, back, sizeof back, &blen, &e3);
    if (rc != 0 || blen != len || memcmp(back, key, len) != 0) {
        fprintf(stderr, "fuzz_json_key: printed form %s does not parse back (rc %d: %s)\n", json, rc,
                e3.message);
        abort();
    }
    /* Printing is a function of the bytes: the reparsed key prints identically. */
    size_t jlen2 = 0;
    CHECK(mc_key_to_json(back, blen, json2, sizeof json2, &jlen2) == 0);
    CHECK(jlen2 == jlen && memcmp(json, json2, jlen) == 0);
    free(text);
    return 0;
}
