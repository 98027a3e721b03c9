/* libFuzzer target for the YAML configuration loader: load any text, walk the whole tree with
 * every getter checking that the tree is consistent, then read it as the host's config file. */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modcache/host.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A failed getter leaves a code equal to its result and a terminated, non-empty message. */
static void check_err(int rc, const mc_error *err)
{
    CHECK(rc < 0 && err->code == rc);
    size_t n = strnlen(err->message, sizeof err->message);
    CHECK(n > 0 && n < sizeof err->message);
}

/* The documented grammar of durations and sizes, computed separately: digits, then one of the
 * units (or none, meaning `bare`), the product refused when it overflows 64 bits. */
static bool model_scaled(const char *t, const char *const *units, const uint64_t *mul, size_t nunits,
                         uint64_t bare, uint64_t *out)
{
    size_t nd = strspn(t, "0123456789");
    if (nd == 0)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < nd; k++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(t[k] - '0'), &v))
            return false;
    uint64_t m = bare;
    if (t[nd]) {
        size_t u = 0;
        while (u < nunits && strcmp(t + nd, units[u]) != 0)
            u++;
        if (u == nunits)
            return false;
        m = mul[u];
    }
    return !__builtin_mul_overflow(v, m, out);
}

/* What each typed getter accepts, checked against the text it was given. */
static void check_scalar(const mc_config_node *n)
{
    const char *text = mc_config_text(n);
    CHECK(text != NULL);
    mc_error err;
    const char *s;
    int rc = mc_config_string(n, &s, &err);
    if (mc_config_is_null(n)) {
        check_err(rc, &err);
    } else {
        CHECK(rc == 0 && s == text);
    }

    bool b;
    rc = mc_config_bool(n, &b, &err);
    if (rc != 0)
        check_err(rc, &err);

    int64_t i;
    rc = mc_config_int(n, &i, &err);
    if (rc == 0) {
        /* The text is the number in decimal, give or take a sign and leading zeros. */
        const char *t = text;
        if (*t == '+' || *t == '-')
            t++;
        while (*t == '0' && t[1])
            t++;
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, i);
        CHECK(strcmp(buf + (i < 0), t) == 0);
    } else {
        check_err(rc, &err);
    }

    double d;
    rc = mc_config_double(n, &d, &err);
    if (rc == 0)
        CHECK(isfinite(d));
    else
        check_err(rc, &err);

    static const char *const dunits[] = {"ms", "s", "m", "h", "d", "w", "y"};
    static const uint64_t dmul[] = {1000000ull, 1000000000ull, 60ull * 1000000000ull,
                                    3600ull * 1000000000ull, 86400ull * 1000000000ull,
                                    7ull * 86400 * 1000000000ull, 365ull * 86400 * 1000000000ull};
    static const char *const sunits[] = {"K", "M", "G", "T"};
    static const uint64_t smul[] = {1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40};
    uint64_t v, want = 0;
    bool ok = !mc_config_is_null(n) && model_scaled(text, dunits, dmul, 7, 1000000ull, &want);
    rc = mc_config_duration(n, &v, &err);
    if (rc == 0) {
        CHECK(ok && v == want);
    } else {
        CHECK(!ok);
        check_err(rc, &err);
    }
    ok = !mc_config_is_null(n) && model_scaled(text, sunits, smul, 4, 1, &want);
    rc = mc_config_size(n, &v, &err);
    if (rc == 0) {
        CHECK(ok && v == want);
    } else {
        CHECK(!ok);
        check_err(rc, &err);
    }
    CHECK(mc_config_count(n) == 0 && mc_config_at(n, 0) == NULL && mc_config_key_at(n, 0) == NULL);
    CHECK(mc_config_get(n, "") == NULL);
}

static void walk(const mc_config *doc, const mc_config_node *n, int depth)
{
    CHECK(depth <= 100);
    CHECK(mc_config_of(n) == doc);
    CHECK(mc_config_line(n) >= 1 && mc_config_column(n) >= 1);
    const char *path = mc_config_path(n);
    CHECK(path != NULL);

    mc_error err;
    int rc = mc_config_fail(n, &err, MC_EINVAL, "fault %d", depth);
    CHECK(rc == MC_EINVAL);
    check_err(rc, &err);

    mc_config_kind kind = mc_config_kind_of(n);
    if (kind == MC_CONFIG_SCALAR) {
        check_scalar(n);
        return;
    }
    CHECK(kind == MC_CONFIG_LIST || kind == MC_CONFIG_MAP);
    CHECK(mc_config_text(n) == NULL && !mc_config_is_null(n));
    const char *s;
    CHECK(mc_config_string(n, &s, &err) == MC_EINVAL);

    static const char *const some_keys[] = {"server", "caches", "modules", NULL};
    rc = mc_config_allow_keys(n, some_keys, &err);
    if (rc != 0)
        check_err(rc, &err);
    else
        CHECK(kind == MC_CONFIG_MAP);

    size_t count = mc_config_count(n);
    CHECK(mc_config_at(n, count) == NULL);
    size_t plen = strlen(path);
    for (size_t i = 0; i < count; i++) {
        const mc_config_node *c = mc_config_at(n, i);
        CHECK(c != NULL);
        const char *cpath = mc_config_path(c);
        /* A child's path extends its parent's with ".key" (just "key" at the root) or "[i]". */
        CHECK(strncmp(cpath, path, plen) == 0);
        if (kind == MC_CONFIG_MAP) {
            const char *key = mc_config_key_at(n, i);
            CHECK(key != NULL);
            /* Duplicate keys are refused at load, so a key finds its own value. */
            CHECK(mc_config_get(n, key) == c);
            CHECK(strcmp(cpath + plen + (plen ? 1 : 0), key) == 0);
            CHECK(plen == 0 || cpath[plen] == '.');
        } else {
            CHECK(mc_config_key_at(n, i) == NULL);
            char idx[32];
            snprintf(idx, sizeof idx, "[%zu]", i);
            CHECK(strcmp(cpath + plen, idx) == 0);
        }
        walk(doc, c, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly `size` bytes, no terminator: the loader must stay within them. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);

    mc_config *doc = NULL;
    mc_error err = {0};
    int rc = mc_config_load_string(text, size, "fuzz.yaml", &doc, &err);
    free(text);
    if (rc != 0) {
        CHECK(doc == NULL);
        check_err(rc, &err);
        return 0;
    }
    CHECK(doc != NULL && strcmp(mc_config_name(doc), "fuzz.yaml") == 0);
    const mc_config_node *root = mc_config_root(doc);
    CHECK(root != NULL);
    CHECK(strcmp(mc_config_path(root), "") == 0);
    walk(doc, root, 0);

    mc_host_config hc;
    mc_error herr = {0};
    rc = mc_host_config_read(doc, &hc, &herr);
    if (rc == 0) {
        CHECK(hc.listen != NULL && strchr(hc.listen, ':') != NULL);
        CHECK(hc.instance_name && hc.redis_address && hc.redis_stream && hc.redis_maxlen >= 1);
        CHECK(hc.backend == MC_BUS_LOCAL || hc.backend == MC_BUS_REDIS);
        CHECK(hc.modules == NULL || mc_config_kind_of(hc.modules) == MC_CONFIG_LIST);
        CHECK(hc.caches.global_factor > 0);
        CHECK(hc.caches.n_per_cache_factors == 0 || hc.factors != NULL);
        for (size_t i = 0; i < hc.caches.n_per_cache_factors; i++)
            CHECK(hc.factors[i].name != NULL && hc.factors[i].factor > 0);
        CHECK(hc.caches.max_cache_memory_usage == 0 ||
              hc.caches.target_cache_memory_usage <= hc.caches.max_cache_memory_usage);
        /* What the daemon does next with the cache section: a registry must accept it. */
        mc_registry *reg = NULL;
        CHECK(mc_registry_create(&hc.caches, &reg) == 0);
        mc_registry_destroy(reg);
        free(hc.factors);
    } else {
        check_err(rc, &herr);
        CHECK(hc.factors == NULL);
    }
    mc_config_free(doc);
    return 0;
}
