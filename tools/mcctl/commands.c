/* mcctl's commands against one host's HTTP server: the caches table (or its JSON), /metrics, and
 * invalidation through the admin API. Each returns the process's exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcctl.h"

#define MCCTL_ADMIN "/_modcache/admin/v1/caches"

/* ---------------------------------------------------------------- caches */

static int by_name(const void *x, const void *y)
{
    return strcmp(((const mcctl_cache_row *)x)->name, ((const mcctl_cache_row *)y)->name);
}

/* Display width of UTF-8 text, in code points (close enough for names and numbers). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* A name as the terminal should see it: no control characters. */
static void put_name(const char *s, size_t pad)
{
    size_t w = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        putchar(c < 0x20 || c == 0x7F ? '?' : c);
        w += (c & 0xC0) != 0x80;
    }
    for (; w < pad; w++)
        putchar(' ');
}

static void human_bytes(uint64_t v, char *out, size_t cap)
{
    static const char units[] = "KMGTPE";
    if (v < 1024) {
        snprintf(out, cap, "%lluB", (unsigned long long)v);
        return;
    }
    double d = (double)v;
    int u = -1;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f%c", d, units[u]);
}

enum { COL_ENTRIES, COL_MAX, COL_HITS, COL_MISSES, COL_RATIO, COL_LOADS, COL_INVAL, COL_MEMORY, NCOLS };
static const char *const headers[NCOLS] = {"ENTRIES", "MAX", "HITS", "MISSES", "HIT%", "LOADS", "INVAL", "MEMORY"};

static void row_cells(const mcctl_cache_row *r, char cells[NCOLS][32])
{
    snprintf(cells[COL_ENTRIES], 32, "%llu", (unsigned long long)r->entries);
    snprintf(cells[COL_MAX], 32, "%llu", (unsigned long long)r->max_entries);
    snprintf(cells[COL_HITS], 32, "%llu", (unsigned long long)r->hits);
    snprintf(cells[COL_MISSES], 32, "%llu", (unsigned long long)r->misses);
    uint64_t lookups = r->hits + r->misses;
    if (lookups && lookups >= r->hits)
        snprintf(cells[COL_RATIO], 32, "%.1f%%", 100.0 * (double)r->hits / (double)lookups);
    else
        snprintf(cells[COL_RATIO], 32, "-"); /* no lookups yet: a ratio would be invented */
    snprintf(cells[COL_LOADS], 32, "%llu", (unsigned long long)r->loads);
    snprintf(cells[COL_INVAL], 32, "%llu", (unsigned long long)r->invalidations);
    human_bytes(r->memory, cells[COL_MEMORY], 32);
}

static void print_table(mcctl_cache_row *rows, size_t n)
{
    if (n > 1) /* an empty list has no array at all */
        qsort(rows, n, sizeof *rows, by_name);
    size_t namew = strlen("NAME"), colw[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        colw[c] = strlen(headers[c]);
    char cells[NCOLS][32];
    for (size_t i = 0; i < n; i++) {
        if (width(rows[i].name) > namew)
            namew = width(rows[i].name);
        row_cells(&rows[i], cells);
        for (int c = 0; c < NCOLS; c++)
            if (strlen(cells[c]) > colw[c])
                colw[c] = strlen(cells[c]);
    }
    printf("%-*s", (int)namew, "NAME");
    for (int c = 0; c < NCOLS; c++)
        printf("  %*s", (int)colw[c], headers[c]);
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        put_name(rows[i].name, namew);
        row_cells(&rows[i], cells);
        for (int c = 0; c < NCOLS; c++)
            printf("  %*s", (int)colw[c], cells[c]);
        putchar('\n');
    }
}

/* GET with the admin token; 0 with a 200 answer in *r, or the exit code (reported). */
static int admin_request(const mcctl_args *a, const char *method, const char *path, const char *body,
                         mcctl_response *r)
{
    char *token;
    int rc = mcctl_token(a, &token);
    if (rc != MCCTL_OK)
        return rc;
    rc = mcctl_http(a, method, path, token, body, r);
    memset(token, 0, strlen(token));
    free(token);
    return rc;
}

int mcctl_cmd_caches(const mcctl_args *a)
{
    mcctl_response r;
    int rc = admin_request(a, "GET", MCCTL_ADMIN, NULL, &r);
    if (rc != MCCTL_OK)
        return rc;
    if (r.status != 200) {
        rc = mcctl_http_refused(a, &r);
        mcctl_response_free(&r);
        return rc;
    }
    mcctl_cache_row *rows = NULL;
    size_t n = 0;
    char why[200];
    /* --json too is checked first: a script should get an exit code, not a broken document. */
    if (!mcctl_caches_parse(r.body, r.len, &rows, &n, why, sizeof why)) {
        mcctl_say("the answer from %s is not a list of caches (%s); is --url a modcache host?",
                  a->url ? a->url : MCCTL_DEFAULT_URL, why);
        mcctl_response_free(&r);
        return MCCTL_FAIL;
    }
    if (a->json) {
        fwrite(r.body, 1, r.len, stdout);
        if (r.len == 0 || r.body[r.len - 1] != '\n')
            putchar('\n');
    } else {
        print_table(rows, n);
        if (n == 0)
            mcctl_say("the host has no registered cached functions");
    }
    mcctl_cache_rows_free(rows, n);
    mcctl_response_free(&r);
    return fflush(stdout) == 0 ? MCCTL_OK : MCCTL_FAIL;
}

/* ---------------------------------------------------------------- metrics */

int mcctl_cmd_metrics(const mcctl_args *a)
{
    mcctl_response r;
    int rc = mcctl_http(a, "GET", "/metrics", NULL, NULL, &r);
    if (rc != MCCTL_OK)
        return rc;
    if (r.status != 200) {
        rc = mcctl_http_refused(a, &r);
    } else {
        fwrite(r.body, 1, r.len, stdout);
        rc = fflush(stdout) == 0 ? MCCTL_OK : MCCTL_FAIL;
    }
    mcctl_response_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- invalidate */

/* The name as one path segment: everything but unreserved characters percent-encoded. */
static char *path_for(const char *name)
{
    size_t n = strlen(name);
    char *p = malloc(strlen(MCCTL_ADMIN) + 1 + 3 * n + strlen("/invalidate") + 1);
    if (!p)
        return NULL;
    char *o = p + sprintf(p, "%s/", MCCTL_ADMIN);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
            *o++ = (char)c;
        else
            o += sprintf(o, "%%%02X", c);
    }
    strcpy(o, "/invalidate");
    return p;
}

static char *invalidate_body(const mcctl_args *a, const mcctl_keys *keys)
{
    if (a->all)
        return strdup("{\"all\": true}");
    size_t len = 32;
    for (size_t i = 0; i < keys->n; i++)
        len += strlen(keys->json[i]) + 2;
    char *b = malloc(len);
    if (!b)
        return NULL;
    char *o = b + sprintf(b, "{\"keys\": [");
    for (size_t i = 0; i < keys->n; i++)
        o += sprintf(o, "%s%s", i ? ", " : "", keys->json[i]);
    strcpy(o, "]}");
    return b;
}

/* {"invalidated": N} or {"invalidated": "all"}: N, or -1 for "all"; -2 when it is neither.
 * *published: the host also put it on the invalidation bus (hosts with a bus say so).
 * *removed: the entries the host removed, or -1 when it does not say (older hosts). */
static long long invalidated(const mcctl_response *r, bool *published, long long *removed)
{
    *published = false;
    *removed = -1;
    mcctl_json j;
    mcctl_json_init(&j, r->body, r->len);
    long long got = -2;
    if (!mcctl_json_accept(&j, '{') || mcctl_json_accept(&j, '}'))
        return -2;
    do {
        char *key = NULL;
        if (!mcctl_json_string(&j, &key) || !mcctl_json_accept(&j, ':')) {
            free(key);
            return -2;
        }
        bool ok;
        if (!strcmp(key, "invalidated")) {
            uint64_t v;
            char *s;
            mcctl_json at = j; /* a count or "all": try one, then the other from here */
            ok = true;
            if (mcctl_json_uint(&j, &v)) {
                got = v > (uint64_t)INT64_MAX ? -2 : (long long)v;
            } else {
                j = at;
                if ((ok = mcctl_json_string(&j, &s))) {
                    got = !strcmp(s, "all") ? -1 : -2;
                    free(s);
                }
            }
        } else if (!strcmp(key, "published")) {
            ok = mcctl_json_bool(&j, published);
        } else if (!strcmp(key, "removed")) {
            uint64_t v;
            ok = mcctl_json_uint(&j, &v);
            if (ok)
                *removed = v > (uint64_t)INT64_MAX ? -1 : (long long)v;
        } else {
            ok = mcctl_json_skip(&j);
        }
        free(key);
        if (!ok)
            return -2;
    } while (mcctl_json_accept(&j, ','));
    return mcctl_json_accept(&j, '}') && mcctl_json_done(&j) ? got : -2;
}

/* A 400 answer naming one of the keys ("key 1 has 2 fields; f takes 1"): reported with mcctl's
 * numbering (KEY 2). False for other 400 answers. */
static bool bad_key_answer(const mcctl_response *r, const char *name)
{
    char *e = mcctl_json_error_text(r->body, r->len);
    size_t idx;
    int used = 0;
    bool ours = e && sscanf(e, "key %zu%n", &idx, &used) == 1 && used > 0;
    if (ours) {
        const char *rest = e + used;
        rest += strspn(rest, ": ");
        bool phrase = !strncmp(rest, "has ", 4) || !strncmp(rest, "is ", 3);
        mcctl_say("the host refused KEY %zu of %s: %s%s", idx + 1, name, phrase ? "it " : "", rest);
        mcctl_say("nothing was invalidated. A KEY has as many fields as the function's keys, or on a tree "
                  "function fewer (a subtree)");
    }
    free(e);
    return ours;
}

int mcctl_cmd_invalidate(const mcctl_args *a, const mcctl_keys *keys)
{
    const char *name = a->pos[0];
    const char *url = a->url ? a->url : MCCTL_DEFAULT_URL;
    char *path = path_for(name), *body = invalidate_body(a, keys);
    if (!path || !body) {
        free(path);
        free(body);
        mcctl_say("out of memory");
        return MCCTL_FAIL;
    }
    mcctl_response r;
    int rc = admin_request(a, "POST", path, body, &r);
    free(path);
    free(body);
    if (rc != MCCTL_OK)
        return rc;
    if (r.status == 200 && a->json) {
        bool published;
        long long removed;
        if (invalidated(&r, &published, &removed) == -2) {
            mcctl_say("the host at %s answered 200 without saying what it invalidated; is --url a modcache host?",
                      url);
            rc = MCCTL_FAIL;
        } else {
            printf("%s\n", r.body); /* the host's own answer, as `caches --json` does */
        }
    } else if (r.status == 200) {
        bool published;
        long long removed;
        long long n = invalidated(&r, &published, &removed);
        const char *also = published ? ", which published it to every host reading its stream" : "";
        char there[64] = "";
        if (removed >= 0)
            snprintf(there, sizeof there, " (%lld entr%s removed there)", removed, removed == 1 ? "y" : "ies");
        if (n == -1) {
            printf("invalidated all entries of %s at %s%s%s\n", name, url, there, also);
        } else if (n >= 0) {
            printf("invalidated %lld key%s of %s at %s%s%s\n", n, n == 1 ? "" : "s", name, url, there, also);
        } else {
            mcctl_say("the host at %s answered 200 without saying what it invalidated; is --url a modcache host?",
                      url);
            rc = MCCTL_FAIL;
        }
    } else if (r.status == 400 && r.body && bad_key_answer(&r, name)) {
        rc = MCCTL_BAD_KEY;
    } else if (r.status == 404 && r.body && strstr(r.body, "no cache named")) {
        mcctl_say("the host at %s has no cache named %s; `mcctl caches` lists the names", url, name);
        rc = MCCTL_NO_CACHE;
    } else if (r.status == 404) {
        /* Not the host's answer for an unknown cache: the admin API is not where --url points. */
        mcctl_say("%s has no modcache admin API at /_modcache/admin/v1 (HTTP 404); is --url a modcache host?", url);
        rc = MCCTL_FAIL;
    } else {
        rc = mcctl_http_refused(a, &r);
    }
    mcctl_response_free(&r);
    if (rc == MCCTL_OK && fflush(stdout) != 0)
        rc = MCCTL_FAIL;
    return rc;
}
