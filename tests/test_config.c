/* Tests for the YAML configuration loader, written against include/modcache/config.h: tree shape,
 * paths and positions, typed getters and their refusals, load errors, fail and allow_keys. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <float.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "modcache.h"

#define NAME "t.yaml"
#define MS 1000000ull
#define SEC (1000ull * MS)
#define MIN (60ull * SEC)
#define HOUR (60ull * MIN)
#define DAY (24ull * HOUR)

/* Everything a test loads or creates is released by the teardown, so that a failed assertion
 * (which longjmps out of the test) leaks neither memory nor temporary files. */
#define MAX_KEPT 64
#define MAX_TEMPS 8
static mc_config *kept[MAX_KEPT];
static size_t nkept;
static struct {
    char path[64];
    bool dir;
} temps[MAX_TEMPS];
static size_t ntemps;

/* Table-driven checks go on after a mismatch so that one run lists every deviation; done() at
 * the end of a test turns what was recorded into its failure. */
static unsigned misses;
#define MISS(...)                                                                        \
    do {                                                                                 \
        print_error(__VA_ARGS__);                                                        \
        print_error("\n");                                                               \
        misses++;                                                                        \
    } while (0)

static void done(void)
{
    unsigned n = misses;
    misses = 0;
    if (n != 0)
        fail_msg("%u check(s) above failed", n);
}

static mc_config *keep(mc_config *cfg)
{
    assert_true(nkept < MAX_KEPT);
    kept[nkept++] = cfg;
    return cfg;
}

static int cleanup(void **state)
{
    (void)state;
    while (nkept > 0)
        mc_config_free(kept[--nkept]);
    while (ntemps > 0) {
        ntemps--;
        if (temps[ntemps].dir)
            rmdir(temps[ntemps].path);
        else
            unlink(temps[ntemps].path);
    }
    /* Misses left behind by a test that stopped on a hard assertion before done(). */
    misses = 0;
    return 0;
}

static const char *temp_file(const char *text, size_t len)
{
    assert_true(ntemps < MAX_TEMPS);
    char *path = temps[ntemps].path;
    snprintf(path, sizeof temps[ntemps].path, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    temps[ntemps].dir = false;
    ntemps++;
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        assert_true(n > 0);
        text += n;
        len -= (size_t)n;
    }
    assert_int_equal(close(fd), 0);
    return path;
}

static const char *temp_dir(void)
{
    assert_true(ntemps < MAX_TEMPS);
    char *path = temps[ntemps].path;
    snprintf(path, sizeof temps[ntemps].path, "/tmp/test_config_dir_XXXXXX");
    assert_non_null(mkdtemp(path));
    temps[ntemps].dir = true;
    ntemps++;
    return path;
}

static mc_config *load_named(const char *text, const char *name)
{
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_string(text, strlen(text), name, &cfg, &err);
    if (rc != 0)
        fail_msg("loading \"%s\": %d (%s)", text, rc, err.message);
    assert_non_null(cfg);
    return keep(cfg);
}

static mc_config *load(const char *text)
{
    return load_named(text, NAME);
}

/* Walks "a.b[2].c"-style paths with the public accessors (keys in tests have no '.' or '['). */
static const mc_config_node *node_at(const mc_config *cfg, const char *path)
{
    const mc_config_node *n = mc_config_root(cfg);
    const char *p = path;
    while (n != NULL && *p != '\0') {
        if (*p == '.') {
            p++;
        } else if (*p == '[') {
            char *end;
            unsigned long i = strtoul(p + 1, &end, 10);
            assert_true(*end == ']');
            n = mc_config_at(n, i);
            p = end + 1;
        } else {
            char key[128];
            size_t k = strcspn(p, ".[");
            assert_true(k < sizeof key);
            memcpy(key, p, k);
            key[k] = '\0';
            n = mc_config_get(n, key);
            p += k;
        }
    }
    if (n == NULL)
        fail_msg("no node at \"%s\"", path);
    return n;
}

static void check_position(const mc_config_node *n, unsigned line, unsigned col)
{
    if (mc_config_line(n) != line || mc_config_column(n) != col)
        MISS("%s: at %u:%u, want %u:%u", mc_config_path(n), mc_config_line(n),
             mc_config_column(n), line, col);
}

/* Finds "<name>:<line>:<col>" in a message; false if absent. */
static bool find_position(const char *msg, const char *name, unsigned *line, unsigned *col)
{
    size_t nlen = strlen(name);
    for (const char *s = strstr(msg, name); s != NULL; s = strstr(s + 1, name)) {
        if (s[nlen] == ':' && sscanf(s + nlen, ":%u:%u", line, col) == 2)
            return true;
    }
    return false;
}

/* A documented refusal: MC_EINVAL, err->code set, and the message in the form
 * "<path>: expected <what> (<name>:<line>:<column>)". line/col 0 means "any". */
static void check_refusal(int rc, const mc_error *err, const char *path, const char *name,
                          unsigned line, unsigned col, const char *what)
{
    const char *msg = err->message;
    if (rc != MC_EINVAL) {
        MISS("%s: returned %d, want MC_EINVAL (message \"%s\")", what, rc, msg);
        return;
    }
    if (err->code != MC_EINVAL) {
        MISS("%s: err->code %d, want MC_EINVAL", what, err->code);
        return;
    }
    size_t plen = strlen(path);
    if (strncmp(msg, path, plen) != 0 || strncmp(msg + plen, ": expected ", 11) != 0) {
        MISS("%s: message \"%s\" does not start with \"%s: expected \"", what, msg, path);
        return;
    }
    const char *open = strrchr(msg, '(');
    size_t nlen = strlen(name);
    unsigned l = 0, c = 0;
    int end = 0;
    if (open == NULL || open <= msg + plen + 11 || open[-1] != ' ' ||
        strncmp(open + 1, name, nlen) != 0 ||
        sscanf(open + 1 + nlen, ":%u:%u)%n", &l, &c, &end) != 2 || end == 0 ||
        open[1 + nlen + (size_t)end] != '\0') {
        MISS("%s: message \"%s\" does not end with \" (%s:<line>:<column>)\"", what, msg, name);
        return;
    }
    if ((line != 0 && l != line) || (col != 0 && c != col))
        MISS("%s: message \"%s\" gives %u:%u, want %u:%u", what, msg, l, c, line, col);
}

/* A load refused with MC_EPARSE and "<name>:<line>:<col>" in the message. */
static void check_parse_error(const char *text, const char *name, unsigned want_line,
                              const char *want_sub)
{
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_string(text, strlen(text), name, &cfg, &err);
    if (rc == 0)
        keep(cfg);
    if (rc != MC_EPARSE) {
        MISS("\"%s\": returned %d, want MC_EPARSE (message \"%s\")", text, rc, err.message);
        return;
    }
    if (err.code != MC_EPARSE) {
        MISS("\"%s\": err.code %d, want MC_EPARSE", text, err.code);
        return;
    }
    unsigned line = 0, col = 0;
    if (!find_position(err.message, name, &line, &col) || line == 0 || col == 0) {
        MISS("\"%s\": message \"%s\" has no %s:<line>:<col>", text, err.message, name);
        return;
    }
    if (want_line != 0 && line != want_line) {
        MISS("\"%s\": message \"%s\" gives line %u, want %u", text, err.message, line,
             want_line);
        return;
    }
    if (want_sub != NULL && strstr(err.message, want_sub) == NULL)
        MISS("\"%s\": message \"%s\" does not name \"%s\"", text, err.message, want_sub);
}

typedef enum getter { G_STRING, G_BOOL, G_INT, G_DOUBLE, G_DURATION, G_SIZE, G_COUNT } getter;
static const char *const getter_names[G_COUNT] = {"string", "bool",     "int",
                                                  "double", "duration", "size"};

static int call_getter(getter g, const mc_config_node *n, mc_error *err)
{
    const char *s;
    bool b;
    int64_t i;
    double d;
    uint64_t u;
    switch (g) {
    case G_STRING: return mc_config_string(n, &s, err);
    case G_BOOL: return mc_config_bool(n, &b, err);
    case G_INT: return mc_config_int(n, &i, err);
    case G_DOUBLE: return mc_config_double(n, &d, err);
    case G_DURATION: return mc_config_duration(n, &u, err);
    case G_SIZE: return mc_config_size(n, &u, err);
    default: fail();
    }
    return 0;
}

/* Single values are placed at "outer.inner", line 2, column 10. */
static const mc_config_node *value_node(const char *value)
{
    char doc[512];
    assert_true((size_t)snprintf(doc, sizeof doc, "outer:\n  inner: %s\n", value) < sizeof doc);
    return node_at(load(doc), "outer.inner");
}

static void refuse_value(getter g, const char *value)
{
    char what[160];
    snprintf(what, sizeof what, "%s getter on \"%s\"", getter_names[g], value);
    mc_error err;
    memset(&err, 0, sizeof err);
    check_refusal(call_getter(g, value_node(value), &err), &err, "outer.inner", NAME, 2, 10, what);
}

/* Success leaves the caller's error struct untouched (common.h). */
static void set_sentinel(mc_error *err)
{
    err->code = 12345;
    snprintf(err->message, sizeof err->message, "sentinel");
}

static void check_sentinel(const mc_error *err, const char *what)
{
    if (err->code != 12345 || strcmp(err->message, "sentinel") != 0)
        MISS("%s: success changed err to %d \"%s\"", what, err->code, err->message);
}

/* ---- loading and the tree ---- */

static void test_load_string_tree(void **state)
{
    (void)state;
    mc_config *cfg = load("server:\n  listen: 127.0.0.1:8008\n  port: 8448\n"
                          "tags: [a, b]\n");
    assert_string_equal(mc_config_name(cfg), NAME);
    const mc_config_node *root = mc_config_root(cfg);
    assert_non_null(root);
    assert_int_equal(mc_config_kind_of(root), MC_CONFIG_MAP);
    assert_string_equal(mc_config_path(root), "");
    assert_ptr_equal(mc_config_of(root), cfg);
    assert_int_equal(mc_config_count(root), 2);
    assert_null(mc_config_text(root));
    assert_false(mc_config_is_null(root));

    const mc_config_node *server = mc_config_get(root, "server");
    assert_non_null(server);
    assert_int_equal(mc_config_kind_of(server), MC_CONFIG_MAP);
    assert_ptr_equal(mc_config_of(server), cfg);
    const mc_config_node *listen = mc_config_get(server, "listen");
    assert_non_null(listen);
    assert_int_equal(mc_config_kind_of(listen), MC_CONFIG_SCALAR);
    assert_string_equal(mc_config_text(listen), "127.0.0.1:8008");
    assert_false(mc_config_is_null(listen));
    assert_ptr_equal(mc_config_of(listen), cfg);

    const mc_config_node *tags = mc_config_get(root, "tags");
    assert_int_equal(mc_config_kind_of(tags), MC_CONFIG_LIST);
    assert_null(mc_config_text(tags));
    assert_int_equal(mc_config_count(tags), 2);
    assert_string_equal(mc_config_text(mc_config_at(tags, 1)), "b");
    done();
}

/* `len` bounds the text: it need not be NUL-terminated and what follows is not read. */
static void test_load_string_respects_len(void **state)
{
    (void)state;
    const char text[] = "a: 1\nb: 2\n";
    mc_config *cfg = NULL;
    mc_error err;
    assert_int_equal(mc_config_load_string(text, 5, NAME, &cfg, &err), 0);
    keep(cfg);
    assert_int_equal(mc_config_count(mc_config_root(cfg)), 1);
    assert_null(mc_config_get(mc_config_root(cfg), "b"));

    char *exact = malloc(4);
    assert_non_null(exact);
    memcpy(exact, "k: v", 4);
    cfg = NULL;
    int rc = mc_config_load_string(exact, 4, NAME, &cfg, &err);
    free(exact);
    assert_int_equal(rc, 0);
    keep(cfg);
    assert_string_equal(mc_config_text(mc_config_get(mc_config_root(cfg), "k")), "v");
    done();
}

static void test_load_file(void **state)
{
    (void)state;
    static const char text[] = "server:\n  port: abc\n  host: example.org\n";
    const char *path = temp_file(text, strlen(text));
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_file(path, &cfg, &err);
    if (rc != 0)
        fail_msg("loading %s: %d (%s)", path, rc, err.message);
    keep(cfg);
    assert_string_equal(mc_config_name(cfg), path);

    const mc_config_node *host = node_at(cfg, "server.host");
    const char *s = NULL;
    assert_int_equal(mc_config_string(host, &s, &err), 0);
    assert_string_equal(s, "example.org");

    /* Errors about a file's nodes are named by its path. */
    const mc_config_node *port = node_at(cfg, "server.port");
    int64_t v;
    check_refusal(mc_config_int(port, &v, &err), &err, "server.port", path, 2, 9, "int on file");
    done();
}

static void test_load_file_parse_error(void **state)
{
    (void)state;
    static const char text[] = "a: 1\nb: [1, 2\n";
    const char *path = temp_file(text, strlen(text));
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_file(path, &cfg, &err);
    if (rc == 0)
        keep(cfg);
    assert_int_equal(rc, MC_EPARSE);
    assert_int_equal(err.code, MC_EPARSE);
    unsigned line = 0, col = 0;
    if (!find_position(err.message, path, &line, &col) || line == 0 || col == 0)
        MISS("message \"%s\" has no %s:<line>:<col>", err.message, path);
    done();
}

static void test_load_file_missing(void **state)
{
    (void)state;
    const char *path = temp_file("", 0);
    assert_int_equal(unlink(path), 0);
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_file(path, &cfg, &err);
    if (rc == 0)
        keep(cfg);
    assert_int_equal(rc, MC_EIO);
    assert_int_equal(err.code, MC_EIO);
    if (strstr(err.message, path) == NULL)
        MISS("message \"%s\" does not name %s", err.message, path);
    done();
}

/* A directory opens but cannot be read as a file. */
static void test_load_file_directory(void **state)
{
    (void)state;
    const char *path = temp_dir();
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_file(path, &cfg, &err);
    if (rc == 0)
        keep(cfg);
    if (rc != MC_EIO) {
        MISS("loading directory %s: %d, want MC_EIO", path, rc);
        return;
    }
    assert_int_equal(err.code, MC_EIO);
    if (strstr(err.message, path) == NULL)
        MISS("message \"%s\" does not name %s", err.message, path);
    done();
}

static void test_empty_document(void **state)
{
    (void)state;
    static const char *const docs[] = {"", "\n", "# only a comment\n", "---\n"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        mc_config *cfg = load(docs[i]);
        const mc_config_node *root = mc_config_root(cfg);
        assert_non_null(root);
        if (mc_config_kind_of(root) != MC_CONFIG_MAP) {
            MISS("\"%s\": root kind %d, want a map", docs[i], mc_config_kind_of(root));
            continue;
        }
        assert_int_equal(mc_config_count(root), 0);
        assert_string_equal(mc_config_path(root), "");
        assert_null(mc_config_at(root, 0));
        assert_null(mc_config_get(root, "a"));
    }
    done();
}

static void test_paths(void **state)
{
    (void)state;
    mc_config *cfg = load("caches:\n"
                          "  global_factor: 1.0\n"
                          "  per_cache_factors:\n"
                          "    a: 2.0\n"
                          "modules:\n"
                          "  - module: one.so\n"
                          "    config:\n"
                          "      database: d.db\n"
                          "  - module: two.so\n"
                          "matrix:\n"
                          "  - [1, 2]\n"
                          "  - [3, [4, 5]]\n");
    static const char *const paths[] = {
        "caches",
        "caches.global_factor",
        "caches.per_cache_factors",
        "caches.per_cache_factors.a",
        "modules",
        "modules[0]",
        "modules[0].module",
        "modules[0].config",
        "modules[0].config.database",
        "modules[1]",
        "modules[1].module",
        "matrix[0][1]",
        "matrix[1][1]",
        "matrix[1][1][0]",
    };
    assert_string_equal(mc_config_path(mc_config_root(cfg)), "");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const mc_config_node *n = node_at(cfg, paths[i]);
        if (strcmp(mc_config_path(n), paths[i]) != 0)
            MISS("node reached by \"%s\" has path \"%s\"", paths[i], mc_config_path(n));
    }
    assert_string_equal(mc_config_text(node_at(cfg, "modules[0].config.database")), "d.db");
    assert_string_equal(mc_config_text(node_at(cfg, "matrix[1][1][0]")), "4");
    assert_int_equal(mc_config_kind_of(node_at(cfg, "modules[0]")), MC_CONFIG_MAP);
    assert_int_equal(mc_config_kind_of(node_at(cfg, "matrix[1]")), MC_CONFIG_LIST);
    done();
}

static void test_positions(void **state)
{
    (void)state;
    mc_config *cfg = load("server:\n"
                          "  listen: 127.0.0.1:8008\n"
                          "  name: \"quoted value\"\n"
                          "list:\n"
                          "  - a\n"
                          "  -   b\n"
                          "  - {x: 1, y: [2, 3]}\n");
    check_position(mc_config_root(cfg), 1, 1);
    check_position(node_at(cfg, "server"), 2, 3);
    check_position(node_at(cfg, "server.listen"), 2, 11);
    check_position(node_at(cfg, "server.name"), 3, 9);
    assert_string_equal(mc_config_text(node_at(cfg, "server.name")), "quoted value");
    check_position(node_at(cfg, "list"), 5, 3);
    check_position(node_at(cfg, "list[0]"), 5, 5);
    check_position(node_at(cfg, "list[1]"), 6, 7);
    check_position(node_at(cfg, "list[2]"), 7, 5);
    check_position(node_at(cfg, "list[2].x"), 7, 9);
    check_position(node_at(cfg, "list[2].y"), 7, 15);
    check_position(node_at(cfg, "list[2].y[1]"), 7, 19);
    done();
}

static void test_map_order_and_get(void **state)
{
    (void)state;
    mc_config *cfg = load("block:\n  zeta: 1\n  alpha: 2\n  mid: 3\n  beta: 4\n"
                          "flow: {c: x, a: y, b: z}\n");
    static const char *const block_keys[] = {"zeta", "alpha", "mid", "beta"};
    const mc_config_node *block = node_at(cfg, "block");
    assert_int_equal(mc_config_count(block), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(mc_config_key_at(block, i), block_keys[i]);
        const mc_config_node *v = mc_config_at(block, i);
        assert_non_null(v);
        char want[2] = {(char)('1' + i), '\0'};
        assert_string_equal(mc_config_text(v), want);
        assert_ptr_equal(mc_config_get(block, block_keys[i]), v);
    }
    assert_null(mc_config_at(block, 4));
    assert_null(mc_config_at(block, SIZE_MAX));
    assert_null(mc_config_key_at(block, 4));

    static const char *const flow_keys[] = {"c", "a", "b"};
    const mc_config_node *flow = node_at(cfg, "flow");
    assert_int_equal(mc_config_count(flow), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(mc_config_key_at(flow, i), flow_keys[i]);
    assert_string_equal(mc_config_text(mc_config_get(flow, "a")), "y");

    /* Absent keys, near misses, and lookups on nodes that are not maps. */
    assert_null(mc_config_get(block, "Zeta"));
    assert_null(mc_config_get(block, "zet"));
    assert_null(mc_config_get(block, "zetaa"));
    assert_null(mc_config_get(block, ""));
    assert_null(mc_config_get(mc_config_get(block, "zeta"), "zeta"));
    mc_config *lists = load("l: [zeta]\n");
    assert_null(mc_config_get(node_at(lists, "l"), "zeta"));
    assert_null(mc_config_get(node_at(lists, "l"), "0"));
    done();
}

static void test_lists(void **state)
{
    (void)state;
    mc_config *cfg = load("l: [a, b, c]\nblock:\n  - x\n  - [y]\n  - {k: z}\ne: []\nm: {}\n");
    const mc_config_node *l = node_at(cfg, "l");
    assert_int_equal(mc_config_kind_of(l), MC_CONFIG_LIST);
    assert_int_equal(mc_config_count(l), 3);
    assert_string_equal(mc_config_text(mc_config_at(l, 0)), "a");
    assert_string_equal(mc_config_text(mc_config_at(l, 2)), "c");
    assert_string_equal(mc_config_path(mc_config_at(l, 2)), "l[2]");
    assert_null(mc_config_at(l, 3));
    assert_null(mc_config_at(l, SIZE_MAX));
    assert_false(mc_config_is_null(l));

    const mc_config_node *block = node_at(cfg, "block");
    assert_int_equal(mc_config_count(block), 3);
    assert_int_equal(mc_config_kind_of(mc_config_at(block, 0)), MC_CONFIG_SCALAR);
    assert_int_equal(mc_config_kind_of(mc_config_at(block, 1)), MC_CONFIG_LIST);
    assert_int_equal(mc_config_kind_of(mc_config_at(block, 2)), MC_CONFIG_MAP);
    assert_string_equal(mc_config_text(node_at(cfg, "block[2].k")), "z");

    const mc_config_node *e = node_at(cfg, "e");
    assert_int_equal(mc_config_kind_of(e), MC_CONFIG_LIST);
    assert_int_equal(mc_config_count(e), 0);
    assert_null(mc_config_at(e, 0));
    const mc_config_node *m = node_at(cfg, "m");
    assert_int_equal(mc_config_kind_of(m), MC_CONFIG_MAP);
    assert_int_equal(mc_config_count(m), 0);
    assert_null(mc_config_at(m, 0));
    assert_null(mc_config_key_at(m, 0));
    done();
}

static void test_null_scalars(void **state)
{
    (void)state;
    mc_config *cfg = load("a: ~\n"
                          "b: null\n"
                          "c:\n"
                          "d: x\n"
                          "list:\n"
                          "  - ~\n"
                          "  -\n"
                          "  - null\n"
                          "  - y\n"
                          "e: \"null\"\n"
                          "f: '~'\n");
    static const struct {
        const char *path, *text;
        bool null;
        unsigned line;
    } cases[] = {
        {"a", "~", true, 1},        {"b", "null", true, 2},     {"c", "", true, 3},
        {"d", "x", false, 4},       {"list[0]", "~", true, 6},  {"list[1]", "", true, 7},
        {"list[2]", "null", true, 8}, {"list[3]", "y", false, 9}, {"e", "null", false, 10},
        {"f", "~", false, 11},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mc_config_node *n = node_at(cfg, cases[i].path);
        assert_int_equal(mc_config_kind_of(n), MC_CONFIG_SCALAR);
        if (mc_config_is_null(n) != cases[i].null) {
            MISS("%s: is_null %d, want %d", cases[i].path, mc_config_is_null(n),
                 cases[i].null);
            continue;
        }
        const char *text = mc_config_text(n);
        if (text == NULL || strcmp(text, cases[i].text) != 0) {
            MISS("%s: text \"%s\", want \"%s\"", cases[i].path, text ? text : "(NULL)",
                 cases[i].text);
            continue;
        }
        if (!cases[i].null)
            continue;
        /* A null is not a value of any type. */
        for (getter g = 0; g < G_COUNT; g++) {
            char what[96];
            snprintf(what, sizeof what, "%s getter on null %s", getter_names[g], cases[i].path);
            mc_error err;
            memset(&err, 0, sizeof err);
            check_refusal(call_getter(g, n, &err), &err, cases[i].path, NAME, cases[i].line, 0,
                          what);
        }
    }
    const char *s = NULL;
    mc_error err;
    assert_int_equal(mc_config_string(node_at(cfg, "e"), &s, &err), 0);
    assert_string_equal(s, "null");
    assert_int_equal(mc_config_string(node_at(cfg, "f"), &s, &err), 0);
    assert_string_equal(s, "~");
    done();
}

/* ---- typed getters ---- */

static void test_string(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"hello", "hello"},     {"42", "42"},
        {"true", "true"},       {"1.5", "1.5"},
        {"'single'", "single"}, {"\"double quoted\"", "double quoted"},
        {"a b c", "a b c"},     {"127.0.0.1:8008", "127.0.0.1:8008"},
        {"!!str 12", "12"},     {"\"a\\tb\"", "a\tb"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        const char *s = NULL;
        int rc = mc_config_string(value_node(ok[i].in), &s, &err);
        if (rc != 0) {
            MISS("string \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (s == NULL || strcmp(s, ok[i].want) != 0)
            MISS("string \"%s\": got \"%s\", want \"%s\"", ok[i].in, s ? s : "(NULL)",
                 ok[i].want);
    }

    mc_config *cfg = load("text: |\n  line1\n  line2\n");
    const char *s = NULL;
    mc_error err;
    assert_int_equal(mc_config_string(node_at(cfg, "text"), &s, &err), 0);
    assert_string_equal(s, "line1\nline2\n");

    static const char *const bad[] = {"~", "null", "", "[1, 2]", "{a: 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "string getter on \"%s\"", bad[i]);
        memset(&err, 0, sizeof err);
        /* The empty value's column is not pinned down; the others start at column 10. */
        check_refusal(mc_config_string(value_node(bad[i]), &s, &err), &err, "outer.inner", NAME,
                      2, bad[i][0] ? 10 : 0, what);
    }
    done();
}

static void test_bool(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool want;
    } ok[] = {
        {"true", true},  {"True", true},   {"TRUE", true},   {"tRuE", true},   {"false", false},
        {"False", false}, {"FALSE", false}, {"yes", true},    {"Yes", true},    {"YES", true},
        {"no", false},   {"No", false},    {"NO", false},    {"on", true},     {"On", true},
        {"ON", true},    {"off", false},   {"Off", false},   {"OFF", false},   {"oFf", false},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        bool b = !ok[i].want;
        int rc = mc_config_bool(value_node(ok[i].in), &b, &err);
        if (rc != 0) {
            MISS("bool \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (b != ok[i].want)
            MISS("bool \"%s\": got %d", ok[i].in, b);
    }
    /* Only the six words: not numbers, not YAML 1.1's y/n, not prefixes or near misses. */
    static const char *const bad[] = {
        "2", "1", "0", "-1", "y", "n", "t", "tru", "truee", "enable", "''", "\"\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_value(G_BOOL, bad[i]);
    done();
}

static void test_int(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"42", 42},
        {"-42", -42},
        {"+42", 42},
        {"-0", 0},
        {"100000", 100000},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"9223372036854775806", INT64_MAX - 1},
        {"-9223372036854775807", INT64_MIN + 1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        int64_t v = 7;
        int rc = mc_config_int(value_node(ok[i].in), &v, &err);
        if (rc != 0) {
            MISS("int \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (v != ok[i].want)
            MISS("int \"%s\": got %" PRId64 ", want %" PRId64, ok[i].in, v, ok[i].want);
    }
    static const char *const bad[] = {
        /* out of range */
        "9223372036854775808", "-9223372036854775809", "18446744073709551616",
        "99999999999999999999999",
        /* not a decimal integer */
        "1.5", "1.0", "1e3", "0x10", "abc", "12abc", "1_000", "1 2", "'-'", "+", "--1", "+-1",
        /* empty */
        "''",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_value(G_INT, bad[i]);
    done();
}

static void test_double(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        double want;
    } ok[] = {
        {"1.0", 1.0},       {"-2.5", -2.5},     {"0", 0.0},
        {"42", 42.0},       {"1e3", 1000.0},    {"1.5e-3", 1.5e-3},
        {"+0.25", 0.25},    {"2.0", 2.0},       {"1.7976931348623157e308", DBL_MAX},
        {"-1.7976931348623157e308", -DBL_MAX},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        double v = -1234.5;
        int rc = mc_config_double(value_node(ok[i].in), &v, &err);
        if (rc != 0) {
            MISS("double \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (v != ok[i].want)
            MISS("double \"%s\": got %.17g, want %.17g", ok[i].in, v, ok[i].want);
    }
    static const char *const bad[] = {
        /* not finite, including YAML's spellings and overflow to infinity */
        "nan", "NaN", "-nan", "inf", "-inf", "Infinity", ".inf", ".nan", "1e999", "-1e999",
        /* not a decimal number */
        "abc", "1.0x", "0x10", "1,5", "1.2.3", "'-'", "e5", "1e", "1.5 2", "''",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_value(G_DOUBLE, bad[i]);
    done();
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t want;
    } ok[] = {
        {"250ms", 250 * MS},
        {"1ms", MS},
        {"1s", SEC},
        {"45s", 45 * SEC},
        {"30m", 30 * MIN},
        {"2h", 2 * HOUR},
        {"5d", 5 * DAY},
        {"1w", 7 * DAY},
        {"2w", 14 * DAY},
        {"1y", 365 * DAY},
        {"1500", 1500 * MS},
        {"0", 0},
        {"0s", 0},
        {"584y", 584 * 365 * DAY},
        /* The largest whole amounts of each unit that fit in uint64 nanoseconds. */
        {"18446744073709", 18446744073709ull * MS},
        {"18446744073709ms", 18446744073709ull * MS},
        {"18446744073s", 18446744073ull * SEC},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        uint64_t v = 7;
        int rc = mc_config_duration(value_node(ok[i].in), &v, &err);
        if (rc != 0) {
            MISS("duration \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (v != ok[i].want)
            MISS("duration \"%s\": got %" PRIu64 " ns, want %" PRIu64, ok[i].in, v,
                 ok[i].want);
    }
    static const char *const bad[] = {
        /* negative, unknown unit, no number, not an integer */
        "-1s", "-1", "5x", "1msx", "1s2", "s", "ms", "1.5s", "1.5", "1e3s", "1_000ms", "1 s",
        "abc", "''",
        /* one past the largest of each: more than UINT64_MAX nanoseconds */
        "585y", "18446744073710", "18446744074s", "99999999999999999999999ms",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_value(G_DURATION, bad[i]);
    done();
}

static void test_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t want;
    } ok[] = {
        {"0", 0},
        {"100", 100},
        {"512K", 524288},
        {"1K", 1024},
        {"1M", 1048576},
        {"768M", 768ull << 20},
        {"1G", 1ull << 30},
        {"3T", 3ull << 40},
        {"18446744073709551615", UINT64_MAX},
        {"16777215T", 16777215ull << 40},
        {"17179869183G", 17179869183ull << 30},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mc_error err;
        set_sentinel(&err);
        uint64_t v = 7;
        int rc = mc_config_size(value_node(ok[i].in), &v, &err);
        if (rc != 0) {
            MISS("size \"%s\": %d (%s)", ok[i].in, rc, err.message);
            continue;
        }
        check_sentinel(&err, ok[i].in);
        if (v != ok[i].want)
            MISS("size \"%s\": got %" PRIu64 ", want %" PRIu64, ok[i].in, v, ok[i].want);
    }
    static const char *const bad[] = {
        /* units are K M G T alone; negative, fractional and other forms are not sizes */
        "1KB", "1B", "1P", "K", "-1", "-1K", "1.5K", "1e3", "1_024", "1 K", "abc", "''",
        /* 2^64 bytes and beyond */
        "16777216T", "17179869184G", "18446744073709551616", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_value(G_SIZE, bad[i]);
    done();
}

/* Every getter refuses lists and maps, naming where they start. */
static void test_getters_on_collections(void **state)
{
    (void)state;
    mc_config *cfg = load("outer:\n  list: [1, 2]\n  map: {a: 1}\n  block:\n    - x\n"
                          "  nested:\n    k: v\n");
    static const struct {
        const char *path;
        unsigned line, col;
    } nodes[] = {
        {"outer.list", 2, 9},
        {"outer.map", 3, 8},
        {"outer.block", 5, 5},
        {"outer.nested", 7, 5},
        {"outer", 2, 3},
    };
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        const mc_config_node *n = node_at(cfg, nodes[i].path);
        check_position(n, nodes[i].line, nodes[i].col);
        for (getter g = 0; g < G_COUNT; g++) {
            char what[96];
            snprintf(what, sizeof what, "%s getter on %s", getter_names[g], nodes[i].path);
            mc_error err;
            memset(&err, 0, sizeof err);
            check_refusal(call_getter(g, n, &err), &err, nodes[i].path, NAME, nodes[i].line,
                          nodes[i].col, what);
        }
    }
    done();
}

/* The message is cut to fit, never overflowing the caller's struct. */
static void test_long_path_message(void **state)
{
    (void)state;
    char doc[700];
    memset(doc, 'k', 600);
    memcpy(doc + 600, ": abc\n", 7);
    mc_config *cfg = load(doc);
    const mc_config_node *n = mc_config_at(mc_config_root(cfg), 0);
    assert_non_null(n);
    assert_int_equal(strlen(mc_config_path(n)), 600);
    mc_error err;
    memset(&err, 'x', sizeof err);
    int64_t v;
    assert_int_equal(mc_config_int(n, &v, &err), MC_EINVAL);
    assert_int_equal(err.code, MC_EINVAL);
    assert_non_null(memchr(err.message, '\0', sizeof err.message));
    /* The path comes first, so what survives the cut begins with it. */
    assert_true(strncmp(err.message, "kkkkkkkkkkkkkkkk", 16) == 0);
    done();
}

/* ---- refused documents ---- */

static void test_malformed(void **state)
{
    (void)state;
    check_parse_error("a: [1, 2\nb: 3\n", "bad.yaml", 0, NULL);     /* unclosed bracket */
    check_parse_error("a: {x: 1\n", "bad.yaml", 0, NULL);           /* unclosed brace */
    check_parse_error("a:\n  b: 1\n c: 2\n", "bad.yaml", 0, NULL);  /* bad indentation */
    check_parse_error("a: 1\n  b: 2\n", "bad.yaml", 2, NULL);       /* value then deeper key */
    check_parse_error("a:\n\tb: 1\n", "bad.yaml", 2, NULL);         /* tab indentation */
    check_parse_error("a: \"unterminated\n", "bad.yaml", 0, NULL);  /* open quote */
    check_parse_error("- a\nb: 1\n", "bad.yaml", 0, NULL);          /* list then map */
    done();
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    check_parse_error("listen: 1\nport: 2\nlisten: 3\n", "dup.yaml", 3, "listen");
    check_parse_error("server:\n  port: 1\n  host: h\n  port: 2\n", "dup.yaml", 4, "server.port");
    check_parse_error("modules:\n  - config: {database: a, database: b}\n", "dup.yaml", 2,
                      "modules[0].config.database");
    check_parse_error("a: 1\n\"a\": 2\n", "dup.yaml", 2, NULL);
    check_parse_error("flow: {x: 1, y: 2, x: 3}\n", "dup.yaml", 1, "flow.x");
    /* The same key in different maps is fine. */
    mc_config *cfg = load("a: {k: 1}\nb: {k: 2}\nl:\n  - k: 3\n  - k: 4\n");
    assert_string_equal(mc_config_text(node_at(cfg, "l[1].k")), "4");
    done();
}

static void test_anchors_aliases_tags(void **state)
{
    (void)state;
    check_parse_error("a: &x 1\n", "ref.yaml", 1, NULL);
    check_parse_error("a: &x 1\nb: *x\n", "ref.yaml", 0, NULL);
    check_parse_error("base: &b {k: 1}\nother:\n  <<: *b\n", "ref.yaml", 0, NULL);
    check_parse_error("list:\n  - &item a\n  - *item\n", "ref.yaml", 0, NULL);
    check_parse_error("a: !custom 1\n", "ref.yaml", 1, NULL);
    check_parse_error("a: !<tag:example.com,2000:thing> 1\n", "ref.yaml", 1, NULL);
    /* Tags outside the core schema, even under the standard prefix, and core tags on the
     * wrong kind of node. */
    check_parse_error("a: !!python/object:os.system x\n", "ref.yaml", 1, "!!python/object:os.system is not allowed");
    check_parse_error("a:\n  b: !!python/object/apply:os.system [ls]\n", "ref.yaml", 2, "!!python/object/apply");
    check_parse_error("a: !!binary aGVsbG8=\n", "ref.yaml", 1, "!!binary");
    check_parse_error("a: !!timestamp 2001-12-14\n", "ref.yaml", 1, "!!timestamp");
    check_parse_error("a: !!set {x: null}\n", "ref.yaml", 1, "!!set");
    check_parse_error("a: !!omap [x: 1]\n", "ref.yaml", 1, "!!omap");
    check_parse_error("a: ! 1\n", "ref.yaml", 1, "tag ! is not allowed");
    /* A NUL inside a double-quoted string would cut the C string short: refused, in values
     * and in keys. */
    check_parse_error("server: {listen: \"127.0.0.1:1\\0junk\"}\n", "ref.yaml", 1, "must not contain a NUL");
    check_parse_error("a:\n  \"listen\\0x\": 1\n", "ref.yaml", 2, "must not contain a NUL");
    check_parse_error("a: !!map x\n", "ref.yaml", 1, "!!map");
    check_parse_error("a: !!str [1]\n", "ref.yaml", 1, "!!str");
    check_parse_error("a: !!seq {k: 1}\n", "ref.yaml", 1, "!!seq");
    check_parse_error("%TAG !e! tag:example.com,2000:\n---\na: !e!thing 1\n", "ref.yaml", 3, "tag:example.com");
    /* The core schema's tags are not refused. */
    mc_config *cfg = load("a: !!str 12\nb: !!int 3\nc: !!float 1.5\nd: !!bool true\ne: !!null ''\n"
                          "f: !!map {k: v}\ng: !!seq [1]\n!!str h: 1\n");
    assert_string_equal(mc_config_text(node_at(cfg, "a")), "12");
    assert_string_equal(mc_config_text(node_at(cfg, "g[0]")), "1");
    done();
}

static void test_non_scalar_keys(void **state)
{
    (void)state;
    check_parse_error("? [a, b]\n: 1\n", "key.yaml", 0, NULL);
    check_parse_error("? {k: v}\n: 1\n", "key.yaml", 0, NULL);
    check_parse_error("{[a]: 1}\n", "key.yaml", 0, NULL);
    check_parse_error("outer:\n  ? - x\n  : 1\n", "key.yaml", 0, NULL);
    done();
}

/* ---- validation helpers ---- */

static void test_fail(void **state)
{
    (void)state;
    mc_config *cfg = load("server:\n  port: 99999\n");
    mc_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_fail(node_at(cfg, "server.port"), &err, MC_EINVAL,
                                    "must be below %d", 65536),
                     MC_EINVAL);
    assert_int_equal(err.code, MC_EINVAL);
    assert_string_equal(err.message, "server.port: must be below 65536 (t.yaml:2:9)");

    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_fail(node_at(cfg, "server"), &err, MC_ENOTSUP, "%s", "unsupported"),
                     MC_ENOTSUP);
    assert_int_equal(err.code, MC_ENOTSUP);
    assert_string_equal(err.message, "server: unsupported (t.yaml:2:3)");

    /* A message longer than the struct is cut, still NUL-terminated. */
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memset(&err, 'z', sizeof err);
    assert_int_equal(mc_config_fail(node_at(cfg, "server.port"), &err, MC_EPARSE, "%s", big),
                     MC_EPARSE);
    assert_int_equal(err.code, MC_EPARSE);
    assert_non_null(memchr(err.message, '\0', sizeof err.message));
    assert_true(strncmp(err.message, "server.port: xxx", 16) == 0);
    done();
}

static void test_allow_keys(void **state)
{
    (void)state;
    mc_config *cfg = load("server:\n"
                          "  listen: a\n"
                          "  port: 1\n"
                          "  tls: x\n"
                          "  extra: y\n"
                          "list: [1]\n"
                          "scalar: s\n"
                          "empty: {}\n");
    const mc_config_node *server = node_at(cfg, "server");
    mc_error err;

    static const char *const all[] = {"listen", "port", "tls", "extra", NULL};
    static const char *const more[] = {"other", "extra", "tls", "port", "listen", "x", NULL};
    set_sentinel(&err);
    assert_int_equal(mc_config_allow_keys(server, all, &err), 0);
    assert_int_equal(mc_config_allow_keys(server, more, &err), 0);
    check_sentinel(&err, "allow_keys");

    /* The first unknown key in document order is the one reported. */
    static const char *const some[] = {"listen", "port", NULL};
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_allow_keys(server, some, &err), MC_EINVAL);
    assert_int_equal(err.code, MC_EINVAL);
    if (strncmp(err.message, "server.tls: unknown key (t.yaml:4:", 34) != 0)
        MISS("message \"%s\", want \"server.tls: unknown key (t.yaml:4:<col>)\"",
             err.message);

    static const char *const none[] = {NULL};
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_allow_keys(server, none, &err), MC_EINVAL);
    if (strncmp(err.message, "server.listen: unknown key (t.yaml:2:", 37) != 0)
        MISS("message \"%s\", want \"server.listen: unknown key (t.yaml:2:<col>)\"",
             err.message);

    /* At the root the key stands alone. */
    const mc_config_node *root = mc_config_root(cfg);
    static const char *const top[] = {"server", "scalar", "empty", NULL};
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_allow_keys(root, top, &err), MC_EINVAL);
    if (strncmp(err.message, "list: unknown key (t.yaml:6:", 28) != 0)
        MISS("message \"%s\", want \"list: unknown key (t.yaml:6:<col>)\"", err.message);
    static const char *const top_all[] = {"server", "list", "scalar", "empty", NULL};
    assert_int_equal(mc_config_allow_keys(root, top_all, &err), 0);

    assert_int_equal(mc_config_allow_keys(node_at(cfg, "empty"), none, &err), 0);

    /* Lists and scalars are not maps. */
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_allow_keys(node_at(cfg, "list"), all, &err), MC_EINVAL);
    assert_int_equal(err.code, MC_EINVAL);
    if (strncmp(err.message, "list: ", 6) != 0 || strstr(err.message, "(t.yaml:6:7)") == NULL)
        MISS("non-map list: message \"%s\"", err.message);
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_config_allow_keys(node_at(cfg, "scalar"), all, &err), MC_EINVAL);
    assert_int_equal(err.code, MC_EINVAL);
    if (strncmp(err.message, "scalar: ", 8) != 0 || strstr(err.message, "(t.yaml:7:9)") == NULL)
        MISS("non-map scalar: message \"%s\"", err.message);
    done();
}

/* Records a NULL-argument call that did not return MC_EINVAL or did not say so in err. */
static void check_einval(int rc, const mc_error *err, const char *what)
{
    if (rc != MC_EINVAL)
        MISS("%s: returned %d, want MC_EINVAL", what, rc);
    else if (err != NULL && err->code != MC_EINVAL)
        MISS("%s: returned MC_EINVAL but err->code is %d, message \"%s\"", what, err->code,
             err->message);
}

static void test_null_arguments(void **state)
{
    (void)state;
    mc_config *cfg = NULL;
    mc_error err;

    memset(&err, 0, sizeof err);
    check_einval(mc_config_load_string(NULL, 4, NAME, &cfg, &err), &err, "load_string(NULL text)");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_load_string("a: 1", 4, NAME, NULL, &err), &err,
                 "load_string(NULL out)");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_load_file(NULL, &cfg, &err), &err, "load_file(NULL path)");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_load_file("/nonexistent/test_config.yaml", NULL, &err), &err,
                 "load_file(NULL out)");
    assert_null(cfg);
    mc_config_free(NULL);

    mc_config *doc = load("v: 1\nm: {a: 1}\n");
    const mc_config_node *n = node_at(doc, "v");
    for (getter g = 0; g < G_COUNT; g++) {
        char what[64];
        snprintf(what, sizeof what, "%s getter on a NULL node", getter_names[g]);
        memset(&err, 0, sizeof err);
        check_einval(call_getter(g, NULL, &err), &err, what);
        snprintf(what, sizeof what, "%s getter on a NULL node, NULL err", getter_names[g]);
        check_einval(call_getter(g, NULL, NULL), NULL, what);
    }
    memset(&err, 0, sizeof err);
    check_einval(mc_config_string(n, NULL, &err), &err, "string getter with NULL out");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_bool(n, NULL, &err), &err, "bool getter with NULL out");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_int(n, NULL, &err), &err, "int getter with NULL out");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_double(n, NULL, &err), &err, "double getter with NULL out");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_duration(n, NULL, &err), &err, "duration getter with NULL out");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_size(n, NULL, &err), &err, "size getter with NULL out");

    static const char *const keys[] = {"v", NULL};
    memset(&err, 0, sizeof err);
    check_einval(mc_config_allow_keys(NULL, keys, &err), &err, "allow_keys(NULL map)");
    memset(&err, 0, sizeof err);
    check_einval(mc_config_allow_keys(mc_config_root(doc), NULL, &err), &err,
                 "allow_keys(NULL keys)");
    done();
}

/* ---- the example from DESIGN.md ---- */

static const char design_yaml[] =
    "server:\n"
    "  listen: 127.0.0.1:8008          # loopback by default\n"
    "  admin_token_file: admin.token    # admin API needs \"Authorization: Bearer <token>\"\n"
    "caches:\n"
    "  global_factor: 1.0               # multiplies every cache's max_entries\n"
    "  per_cache_factors: {example_dept.get_department_for_user: 2.0}\n"
    "  expire_caches: true\n"
    "  cache_entry_ttl: 30m             # durations: ms s m h d w y; sizes: K M G T (binary)\n"
    "  cache_autotuning: {max_cache_memory_usage: 1G, target_cache_memory_usage: 768M, "
    "min_cache_ttl: 5m}\n"
    "invalidation:\n"
    "  backend: local                   # or redis\n"
    "  instance_name: worker1\n"
    "  redis: {address: 127.0.0.1:6379, stream: modcache:invalidations, maxlen: 100000}\n"
    "modules:\n"
    "  - module: examples/dept/libexample_dept.so\n"
    "    config: {database: dept.db}\n";

static void check_string(const mc_config *cfg, const char *path, const char *want)
{
    const char *s = NULL;
    mc_error err;
    int rc = mc_config_string(node_at(cfg, path), &s, &err);
    if (rc != 0) {
        MISS("%s: %d (%s)", path, rc, err.message);
        return;
    }
    if (strcmp(s, want) != 0)
        MISS("%s: \"%s\", want \"%s\"", path, s, want);
}

static void check_design(const mc_config *cfg, const char *name)
{
    mc_error err;
    assert_string_equal(mc_config_name(cfg), name);
    check_string(cfg, "server.listen", "127.0.0.1:8008");
    check_string(cfg, "server.admin_token_file", "admin.token");

    double d = 0;
    assert_int_equal(mc_config_double(node_at(cfg, "caches.global_factor"), &d, &err), 0);
    assert_true(d == 1.0);
    const mc_config_node *factors = node_at(cfg, "caches.per_cache_factors");
    assert_string_equal(mc_config_path(factors), "caches.per_cache_factors");
    assert_int_equal(mc_config_kind_of(factors), MC_CONFIG_MAP);
    assert_int_equal(mc_config_count(factors), 1);
    assert_string_equal(mc_config_key_at(factors, 0), "example_dept.get_department_for_user");
    assert_int_equal(mc_config_double(mc_config_at(factors, 0), &d, &err), 0);
    assert_true(d == 2.0);
    assert_ptr_equal(mc_config_get(factors, "example_dept.get_department_for_user"),
                     mc_config_at(factors, 0));

    bool b = false;
    assert_int_equal(mc_config_bool(node_at(cfg, "caches.expire_caches"), &b, &err), 0);
    assert_true(b);
    uint64_t u = 0;
    assert_int_equal(mc_config_duration(node_at(cfg, "caches.cache_entry_ttl"), &u, &err), 0);
    assert_true(u == 30 * MIN);
    const mc_config_node *tuning = node_at(cfg, "caches.cache_autotuning");
    static const char *const tuning_keys[] = {"max_cache_memory_usage", "target_cache_memory_usage",
                                              "min_cache_ttl", NULL};
    assert_int_equal(mc_config_allow_keys(tuning, tuning_keys, &err), 0);
    assert_int_equal(mc_config_size(mc_config_get(tuning, "max_cache_memory_usage"), &u, &err), 0);
    assert_true(u == 1ull << 30);
    assert_int_equal(mc_config_size(mc_config_get(tuning, "target_cache_memory_usage"), &u, &err),
                     0);
    assert_true(u == 768ull << 20);
    assert_int_equal(mc_config_duration(mc_config_get(tuning, "min_cache_ttl"), &u, &err), 0);
    assert_true(u == 5 * MIN);

    check_string(cfg, "invalidation.backend", "local");
    check_string(cfg, "invalidation.instance_name", "worker1");
    check_string(cfg, "invalidation.redis.address", "127.0.0.1:6379");
    check_string(cfg, "invalidation.redis.stream", "modcache:invalidations");
    int64_t i = 0;
    assert_int_equal(mc_config_int(node_at(cfg, "invalidation.redis.maxlen"), &i, &err), 0);
    assert_int_equal(i, 100000);

    const mc_config_node *modules = node_at(cfg, "modules");
    assert_int_equal(mc_config_kind_of(modules), MC_CONFIG_LIST);
    assert_int_equal(mc_config_count(modules), 1);
    check_string(cfg, "modules[0].module", "examples/dept/libexample_dept.so");
    check_string(cfg, "modules[0].config.database", "dept.db");
    const mc_config_node *db = node_at(cfg, "modules[0].config.database");
    assert_string_equal(mc_config_path(db), "modules[0].config.database");
    check_position(db, 16, 24);
    memset(&err, 0, sizeof err);
    check_refusal(mc_config_int(db, &i, &err), &err, "modules[0].config.database", name, 16, 24,
                  "int on database");

    static const char *const top[] = {"server", "caches", "invalidation", "modules", NULL};
    assert_int_equal(mc_config_allow_keys(mc_config_root(cfg), top, &err), 0);
}

static void test_design_example_string(void **state)
{
    (void)state;
    check_design(load_named(design_yaml, "dept.yaml"), "dept.yaml");
    done();
}

static void test_design_example_file(void **state)
{
    (void)state;
    const char *path = temp_file(design_yaml, strlen(design_yaml));
    mc_config *cfg = NULL;
    mc_error err;
    memset(&err, 0, sizeof err);
    int rc = mc_config_load_file(path, &cfg, &err);
    if (rc != 0)
        fail_msg("loading %s: %d (%s)", path, rc, err.message);
    check_design(keep(cfg), path);
    done();
}

/* The header's own example message, reproduced. */
static void test_header_example_message(void **state)
{
    (void)state;
    mc_config *cfg = load_named("server:\n"
                                "  listen: 127.0.0.1:8008\n"
                                "caches:\n"
                                "  global_factor: 1.0\n"
                                "  expire_caches: true\n"
                                "invalidation:\n"
                                "  backend: local\n"
                                "  instance_name: worker1\n"
                                "# modules\n"
                                "\n"
                                "modules:\n"
                                "  - module: libx.so\n"
                                "    config:\n"
                                "      database: [dept.db]\n",
                                "host.yaml");
    mc_error err;
    memset(&err, 0, sizeof err);
    const char *s = NULL;
    check_refusal(mc_config_string(node_at(cfg, "modules[0].config.database"), &s, &err), &err,
                  "modules[0].config.database", "host.yaml", 14, 17, "string on a list");
    done();
}

#define T(f) cmocka_unit_test_teardown(f, cleanup)

/* ---- the caches: block ---- */

static int read_caches_doc(const char *text, mc_cache_config *cc, mc_cache_factor **f, mc_error *err,
                           mc_config **keep)
{
    mc_config *c = NULL;
    int rc = mc_config_load_string(text, strlen(text), "h.yaml", &c, err);
    if (rc != 0)
        return rc;
    rc = mc_config_read_caches(mc_config_get(mc_config_root(c), "caches"), cc, f, err);
    *keep = c;
    return rc;
}

static void test_read_caches(void **state)
{
    (void)state;
    mc_cache_config cc;
    mc_cache_factor *f = NULL;
    mc_error err = {0};
    mc_config *c = NULL;
    const char *doc = "caches:\n"
                      "  global_factor: 1.5\n"
                      "  per_cache_factors: {example_dept.get_department_for_user: 2.0, b: 0.5}\n"
                      "  expire_caches: true\n"
                      "  cache_entry_ttl: 10m\n"
                      "  cache_autotuning: {max_cache_memory_usage: 1G, target_cache_memory_usage: 768M, "
                      "min_cache_ttl: 5m}\n"
                      "  maintenance_interval: 250ms\n";
    assert_int_equal(read_caches_doc(doc, &cc, &f, &err, &c), 0);
    assert_true(cc.global_factor == 1.5);
    assert_int_equal(cc.n_per_cache_factors, 2);
    assert_string_equal(cc.per_cache_factors[0].name, "example_dept.get_department_for_user");
    assert_true(cc.per_cache_factors[0].factor == 2.0);
    assert_ptr_equal(cc.per_cache_factors, f);
    assert_true(cc.expire_caches);
    assert_int_equal(cc.cache_entry_ttl_ns, 600000000000ull);
    assert_int_equal(cc.max_cache_memory_usage, 1ull << 30);
    assert_int_equal(cc.target_cache_memory_usage, 768ull << 20);
    assert_int_equal(cc.min_cache_ttl_ns, 300000000000ull);
    assert_int_equal(cc.maintenance_interval_ns, 250000000ull);
    /* The result is accepted by a registry, which copies the factors. */
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cc, &reg), 0);
    free(f);
    mc_config_free(c);
    mc_registry_destroy(reg);

    /* Defaults: no block at all, or an empty one; expire_caches alone gets a 30m TTL. */
    assert_int_equal(read_caches_doc("other: 1\n", &cc, &f, &err, &c), 0);
    assert_true(cc.global_factor == 1.0);
    assert_null(f);
    mc_config_free(c);
    assert_int_equal(read_caches_doc("caches:\n  expire_caches: yes\n", &cc, &f, &err, &c), 0);
    assert_int_equal(cc.cache_entry_ttl_ns, 30ull * 60 * 1000000000ull);
    mc_config_free(c);

    /* Faults, each named by path and position. */
    const struct {
        const char *doc;
        const char *msg;
    } bad[] = {
        {"caches:\n  global_factor: 0\n", "caches.global_factor: expected a factor above 0 (h.yaml:2:18)"},
        {"caches:\n  per_cache_factors: {a: -1}\n", "caches.per_cache_factors.a: expected a factor above 0"},
        {"caches:\n  per_cache_factors: [1]\n", "caches.per_cache_factors: expected a map"},
        {"caches:\n  bogus: 1\n", "caches.bogus: unknown key (h.yaml:2:10)"},
        {"caches:\n  cache_entry_ttl: 5 minutes\n", "caches.cache_entry_ttl: expected a duration"},
        {"caches:\n  cache_autotuning: {max_cache_memory_usage: 1M, target_cache_memory_usage: 2M}\n",
         "caches.cache_autotuning.target_cache_memory_usage: target_cache_memory_usage is above"},
        {"caches:\n  cache_autotuning: {max_cache_memory: 1M}\n", "caches.cache_autotuning.max_cache_memory: unknown key"},
        {"caches: [1]\n", "caches: expected a map"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        c = NULL;
        assert_int_equal(read_caches_doc(bad[i].doc, &cc, &f, &err, &c), MC_EINVAL);
        if (strncmp(err.message, bad[i].msg, strlen(bad[i].msg)) != 0)
            fail_msg("for %s got '%s', want '%s...'", bad[i].doc, err.message, bad[i].msg);
        assert_null(f);
        mc_config_free(c);
    }
    assert_int_equal(mc_config_read_caches(NULL, NULL, &f, &err), MC_EINVAL);
}

/* per_cache_timings and load_pool_threads: read into the config, in the block *factors
 * holds, accepted and copied by a registry; faults named by path. */
static void test_read_cache_timings(void **state)
{
    (void)state;
    mc_cache_config cc;
    mc_cache_factor *f = NULL;
    mc_error err = {0};
    mc_config *c = NULL;
    const char *doc = "caches:\n"
                      "  load_pool_threads: 8\n"
                      "  per_cache_timings:\n"
                      "    a.lookup: {refresh_after: 1m, expire_after_write: 10m, none_ttl: 5s}\n"
                      "    b.lookup: {none_ttl: 250ms}\n";
    assert_int_equal(read_caches_doc(doc, &cc, &f, &err, &c), 0);
    assert_int_equal(cc.load_pool_threads, 8);
    assert_int_equal(cc.n_per_cache_factors, 0);
    assert_int_equal(cc.n_timings, 2);
    assert_non_null(f); /* the one block to free */
    assert_string_equal(cc.timings[0].name, "a.lookup");
    assert_int_equal(cc.timings[0].refresh_after_ns, 60000000000ull);
    assert_int_equal(cc.timings[0].expire_after_write_ns, 600000000000ull);
    assert_int_equal(cc.timings[0].none_ttl_ns, 5000000000ull);
    assert_string_equal(cc.timings[1].name, "b.lookup");
    assert_int_equal(cc.timings[1].refresh_after_ns, 0);
    assert_int_equal(cc.timings[1].none_ttl_ns, 250000000ull);
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cc, &reg), 0);
    free(f);
    mc_config_free(c);
    mc_registry_destroy(reg);

    const struct {
        const char *doc;
        const char *msg;
    } bad[] = {
        {"caches:\n  load_pool_threads: 0\n", "caches.load_pool_threads: expected a thread count from 1 to 1024"},
        {"caches:\n  per_cache_timings: {a: {refresh: 1m}}\n", "caches.per_cache_timings.a.refresh: unknown key"},
        {"caches:\n  per_cache_timings: {a: {none_ttl: soon}}\n", "caches.per_cache_timings.a.none_ttl: expected a duration"},
        {"caches:\n  per_cache_timings: {a: {refresh_after: 10m, expire_after_write: 1m}}\n",
         "caches.per_cache_timings.a.refresh_after: refresh_after must be shorter than expire_after_write"},
        {"caches:\n  per_cache_timings: [a]\n", "caches.per_cache_timings: expected a map"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        c = NULL;
        assert_int_equal(read_caches_doc(bad[i].doc, &cc, &f, &err, &c), MC_EINVAL);
        if (strncmp(err.message, bad[i].msg, strlen(bad[i].msg)) != 0)
            fail_msg("for %s got '%s', want '%s...'", bad[i].doc, err.message, bad[i].msg);
        assert_null(f);
        mc_config_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_load_string_tree),
        T(test_read_caches),
        T(test_read_cache_timings),
        T(test_load_string_respects_len),
        T(test_load_file),
        T(test_load_file_parse_error),
        T(test_load_file_missing),
        T(test_load_file_directory),
        T(test_empty_document),
        T(test_paths),
        T(test_positions),
        T(test_map_order_and_get),
        T(test_lists),
        T(test_null_scalars),
        T(test_string),
        T(test_bool),
        T(test_int),
        T(test_double),
        T(test_duration),
        T(test_size),
        T(test_getters_on_collections),
        T(test_long_path_message),
        T(test_malformed),
        T(test_duplicate_keys),
        T(test_anchors_aliases_tags),
        T(test_non_scalar_keys),
        T(test_fail),
        T(test_allow_keys),
        T(test_null_arguments),
        T(test_design_example_string),
        T(test_design_example_file),
        T(test_header_example_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
