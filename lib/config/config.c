/* YAML configuration: libyaml events built into a tree of maps, lists and scalars with paths and
 * positions, and typed getters whose errors point at the path and line:column of the fault. */
#include "modcache/config.h"

#include "core/alloc.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Nesting beyond this is refused: the builder recurses once per level. */
#define MC__CONFIG_MAX_DEPTH 64

struct mc_config_node {
    mc_config_kind kind;
    const mc_config *doc;
    char *path;
    unsigned line, col;
    /* Scalars. */
    char *text;
    bool is_null;
    /* Lists and maps (keys for maps only). */
    size_t n, cap;
    struct mc_config_node **items;
    char **keys;
};

struct mc_config {
    char *name;
    struct mc_config_node *root;
};

static void mc__node_free(struct mc_config_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        mc__node_free(n->items[i]);
        if (n->keys)
            free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->text);
    free(n->path);
    free(n);
}

void mc_config_free(mc_config *cfg)
{
    if (!cfg)
        return;
    mc__node_free(cfg->root);
    free(cfg->name);
    free(cfg);
}

/* ------------------------------------------------------------------ building */

typedef struct {
    yaml_parser_t parser;
    mc_config *doc;
    mc_error *err;
    int rc;
} mc__builder;

static int mc__next(mc__builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev)) {
        yaml_parser_t *p = &b->parser;
        if (p->error == YAML_MEMORY_ERROR) {
            /* libyaml ran out of memory: not a fault of the document. */
            mc__error_set(b->err, MC_ENOMEM, "%s: out of memory while parsing", b->doc->name);
            return b->rc = MC_ENOMEM;
        }
        mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: %s%s%s", b->doc->name,
                    (unsigned)p->problem_mark.line + 1, (unsigned)p->problem_mark.column + 1,
                    p->problem ? p->problem : "malformed YAML", p->context ? " " : "",
                    p->context ? p->context : "");
        return b->rc = MC_EPARSE;
    }
    return 0;
}

static char *mc__child_path(const char *parent, const char *key, size_t index, bool is_list)
{
    char idx[32];
    size_t plen = strlen(parent);
    if (is_list) {
        snprintf(idx, sizeof idx, "[%zu]", index);
        char *p = mc__malloc(plen + strlen(idx) + 1);
        if (p) {
            memcpy(p, parent, plen);
            strcpy(p + plen, idx);
        }
        return p;
    }
    size_t klen = strlen(key);
    char *p = mc__malloc(plen + 1 + klen + 1);
    if (!p)
        return NULL;
    if (plen) {
        memcpy(p, parent, plen);
        p[plen] = '.';
        memcpy(p + plen + 1, key, klen + 1);
    } else {
        memcpy(p, key, klen + 1);
    }
    return p;
}

static struct mc_config_node *mc__node_new(mc__builder *b, mc_config_kind kind, char *path,
                                           const yaml_mark_t *mark)
{
    struct mc_config_node *n = mc__calloc(1, sizeof *n);
    if (!n) {
        free(path);
        mc__error_set(b->err, MC_ENOMEM, "out of memory");
        b->rc = MC_ENOMEM;
        return NULL;
    }
    n->kind = kind;
    n->doc = b->doc;
    n->path = path;
    n->line = (unsigned)mark->line + 1;
    n->col = (unsigned)mark->column + 1;
    return n;
}

static int mc__add_child(mc__builder *b, struct mc_config_node *parent, struct mc_config_node *child,
                         char *key)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        struct mc_config_node **items = mc__realloc(parent->items, cap * sizeof *items);
        if (!items)
            goto nomem;
        parent->items = items;
        if (parent->kind == MC_CONFIG_MAP) {
            char **keys = mc__realloc(parent->keys, cap * sizeof *keys);
            if (!keys)
                goto nomem;
            parent->keys = keys;
        }
        parent->cap = cap;
    }
    parent->items[parent->n] = child;
    if (parent->kind == MC_CONFIG_MAP)
        parent->keys[parent->n] = key;
    parent->n++;
    return 0;
nomem:
    mc__node_free(child);
    free(key);
    mc__error_set(b->err, MC_ENOMEM, "out of memory");
    return b->rc = MC_ENOMEM;
}

/* The YAML 1.2 core schema's tags, and the kind of node each may be put on. Anything else
 * (`!!python/object:...`, `!!binary`, `!local`, the non-specific `!`) is refused. */
static bool mc__core_tag(const char *tag, mc_config_kind kind)
{
    static const char *const scalar[] = {"str", "int", "float", "bool", "null", NULL};
    static const char prefix[] = "tag:yaml.org,2002:";
    if (strncmp(tag, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *t = tag + sizeof prefix - 1;
    if (kind == MC_CONFIG_MAP)
        return !strcmp(t, "map");
    if (kind == MC_CONFIG_LIST)
        return !strcmp(t, "seq");
    for (const char *const *s = scalar; *s; s++)
        if (!strcmp(t, *s))
            return true;
    return false;
}

/* Anchors, aliases and tags outside the core schema would let a document mean more than it
 * shows. */
/* A scalar with a NUL inside ("a\0b" in double quotes): C strings would cut it short
 * silently, so it is refused. Returns nonzero (b->rc and the error set) if so. */
static int mc__check_nul(mc__builder *b, const yaml_event_t *ev, const char *path)
{
    if (strlen((const char *)ev->data.scalar.value) == ev->data.scalar.length)
        return 0;
    mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: %s%sstrings must not contain a NUL character", b->doc->name,
                  (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1, path ? path : "",
                  path && *path ? ": " : "");
    b->rc = MC_EPARSE;
    return 1;
}

static int mc__check_props(mc__builder *b, const yaml_char_t *anchor, const yaml_char_t *tag,
                           mc_config_kind kind, const yaml_mark_t *mark)
{
    if (anchor) {
        mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: anchors and aliases are not allowed", b->doc->name,
                    (unsigned)mark->line + 1, (unsigned)mark->column + 1);
        return b->rc = MC_EPARSE;
    }
    if (tag && !mc__core_tag((const char *)tag, kind)) {
        const char *t = (const char *)tag;
        bool std = !strncmp(t, "tag:yaml.org,2002:", 18);
        mc__error_set(b->err, MC_EPARSE,
                    "%s:%u:%u: tag %s%s is not allowed (only the core schema's !!str, !!int, !!float, !!bool, "
                    "!!null on scalars, !!map and !!seq)",
                    b->doc->name, (unsigned)mark->line + 1, (unsigned)mark->column + 1, std ? "!!" : "",
                    std ? t + 18 : t);
        return b->rc = MC_EPARSE;
    }
    return 0;
}

static bool mc__plain_null(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* Build the node that starts with event `ev` (consumed). */
static struct mc_config_node *mc__build(mc__builder *b, yaml_event_t *ev, char *path, int depth);

static struct mc_config_node *mc__build_children(mc__builder *b, struct mc_config_node *n, int depth)
{
    bool is_map = n->kind == MC_CONFIG_MAP;
    for (;;) {
        yaml_event_t ev;
        if (mc__next(b, &ev))
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return n;
        }
        char *key = NULL;
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: %s%skeys must be plain strings",
                            b->doc->name, (unsigned)ev.start_mark.line + 1,
                            (unsigned)ev.start_mark.column + 1, n->path, *n->path ? ": " : "");
                b->rc = MC_EPARSE;
                yaml_event_delete(&ev);
                goto fail;
            }
            if (mc__check_props(b, ev.data.scalar.anchor, ev.data.scalar.tag, MC_CONFIG_SCALAR, &ev.start_mark) ||
                mc__check_nul(b, &ev, n->path)) {
                yaml_event_delete(&ev);
                goto fail;
            }
            key = mc__strdup((const char *)ev.data.scalar.value);
            yaml_mark_t kmark = ev.start_mark;
            yaml_event_delete(&ev);
            if (!key) {
                mc__error_set(b->err, MC_ENOMEM, "out of memory");
                b->rc = MC_ENOMEM;
                goto fail;
            }
            for (size_t i = 0; i < n->n; i++)
                if (!strcmp(n->keys[i], key)) {
                    char *dup = mc__child_path(n->path, key, 0, false);
                    mc__error_set(b->err, MC_EPARSE, "%s: duplicate key (%s:%u:%u)", dup ? dup : key,
                                b->doc->name, (unsigned)kmark.line + 1, (unsigned)kmark.column + 1);
                    free(dup);
                    free(key);
                    b->rc = MC_EPARSE;
                    goto fail;
                }
            if (mc__next(b, &ev)) {
                free(key);
                goto fail;
            }
        }
        char *cpath = mc__child_path(n->path, key, n->n, !is_map);
        if (!cpath) {
            free(key);
            yaml_event_delete(&ev);
            mc__error_set(b->err, MC_ENOMEM, "out of memory");
            b->rc = MC_ENOMEM;
            goto fail;
        }
        struct mc_config_node *child = mc__build(b, &ev, cpath, depth + 1);
        if (!child) {
            free(key);
            goto fail;
        }
        if (mc__add_child(b, n, child, key))
            goto fail;
    }
fail:
    mc__node_free(n);
    return NULL;
}

static struct mc_config_node *mc__build(mc__builder *b, yaml_event_t *ev, char *path, int depth)
{
    struct mc_config_node *n = NULL;
    yaml_mark_t mark = ev->start_mark;
    if (depth > MC__CONFIG_MAX_DEPTH) {
        mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: nested too deeply", b->doc->name,
                    (unsigned)mark.line + 1, (unsigned)mark.column + 1);
        b->rc = MC_EPARSE;
        goto out;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (mc__check_props(b, ev->data.scalar.anchor, ev->data.scalar.tag, MC_CONFIG_SCALAR, &mark) ||
            mc__check_nul(b, ev, path))
            goto out;
        n = mc__node_new(b, MC_CONFIG_SCALAR, path, &mark);
        path = NULL;
        if (!n)
            goto out;
        n->is_null = mc__plain_null(ev);
        n->text = mc__strdup((const char *)ev->data.scalar.value);
        if (!n->text) {
            mc__node_free(n);
            n = NULL;
            mc__error_set(b->err, MC_ENOMEM, "out of memory");
            b->rc = MC_ENOMEM;
        }
        goto out;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        bool map = ev->type == YAML_MAPPING_START_EVENT;
        const yaml_char_t *anchor = map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        const yaml_char_t *tag = map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        if (mc__check_props(b, anchor, tag, map ? MC_CONFIG_MAP : MC_CONFIG_LIST, &mark))
            goto out;
        n = mc__node_new(b, map ? MC_CONFIG_MAP : MC_CONFIG_LIST, path, &mark);
        path = NULL;
        yaml_event_delete(ev);
        return n ? mc__build_children(b, n, depth) : NULL;
    }
    case YAML_ALIAS_EVENT:
        mc__check_props(b, (const yaml_char_t *)"alias", NULL, MC_CONFIG_SCALAR, &mark);
        goto out;
    default:
        mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: unexpected YAML event", b->doc->name,
                    (unsigned)mark.line + 1, (unsigned)mark.column + 1);
        b->rc = MC_EPARSE;
        goto out;
    }
out:
    free(path);
    yaml_event_delete(ev);
    return n;
}

static int mc__load(mc__builder *b)
{
    yaml_event_t ev;
    if (mc__next(b, &ev))
        return b->rc;
    yaml_event_delete(&ev); /* stream start */
    if (mc__next(b, &ev))
        return b->rc;
    if (ev.type == YAML_STREAM_END_EVENT) {
        /* An empty file: an empty map. */
        yaml_mark_t m = ev.start_mark;
        yaml_event_delete(&ev);
        char *p = mc__strdup("");
        if (!p) {
            mc__error_set(b->err, MC_ENOMEM, "out of memory");
            return b->rc = MC_ENOMEM;
        }
        b->doc->root = mc__node_new(b, MC_CONFIG_MAP, p, &m); /* reports its own failure */
        return b->doc->root ? 0 : b->rc;
    }
    yaml_event_delete(&ev); /* document start */
    if (mc__next(b, &ev))
        return b->rc;
    char *p = mc__strdup("");
    if (!p) {
        yaml_event_delete(&ev);
        mc__error_set(b->err, MC_ENOMEM, "out of memory");
        return b->rc = MC_ENOMEM;
    }
    struct mc_config_node *root = mc__build(b, &ev, p, 0);
    if (!root)
        return b->rc ? b->rc : MC_EPARSE;
    if (root->kind == MC_CONFIG_SCALAR && root->is_null) {
        /* A document holding only comments: an empty map. */
        root->kind = MC_CONFIG_MAP;
        free(root->text);
        root->text = NULL;
        root->is_null = false;
    }
    b->doc->root = root;
    if (mc__next(b, &ev))
        return b->rc;
    yaml_event_delete(&ev); /* document end */
    if (mc__next(b, &ev))
        return b->rc;
    if (ev.type != YAML_STREAM_END_EVENT) {
        mc__error_set(b->err, MC_EPARSE, "%s:%u:%u: only one YAML document is allowed", b->doc->name,
                    (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1);
        yaml_event_delete(&ev);
        return b->rc = MC_EPARSE;
    }
    yaml_event_delete(&ev);
    return 0;
}

int mc_config_load_string(const char *text, size_t len, const char *name, mc_config **out,
                          mc_error *err)
{
    if (!out || (!text && len)) {
        mc__error_set(err, MC_EINVAL, "invalid argument: NULL text or output");
        return MC_EINVAL;
    }
    *out = NULL;
    mc_config *doc = mc__calloc(1, sizeof *doc);
    if (!doc || !(doc->name = mc__strdup(name ? name : "<string>"))) {
        free(doc);
        mc__error_set(err, MC_ENOMEM, "out of memory");
        return MC_ENOMEM;
    }
    mc__builder b = {.doc = doc, .err = err};
    if (!yaml_parser_initialize(&b.parser)) {
        mc_config_free(doc);
        mc__error_set(err, MC_ENOMEM, "out of memory");
        return MC_ENOMEM;
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)(text ? text : ""), len);
    int rc = mc__load(&b);
    yaml_parser_delete(&b.parser);
    if (rc != 0) {
        mc_config_free(doc);
        return rc;
    }
    *out = doc;
    return 0;
}

int mc_config_load_file(const char *path, mc_config **out, mc_error *err)
{
    if (!path || !out) {
        mc__error_set(err, MC_EINVAL, "invalid argument: NULL path or output");
        return MC_EINVAL;
    }
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        mc__error_set(err, MC_EIO, "%s: cannot open: %s", path, strerror(errno));
        return MC_EIO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = mc__realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                mc__error_set(err, MC_ENOMEM, "out of memory");
                return MC_ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        mc__error_set(err, MC_EIO, "%s: read error", path);
        return MC_EIO;
    }
    int rc = mc_config_load_string(buf, len, path, out, err);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ access */

const mc_config_node *mc_config_root(const mc_config *cfg) { return cfg ? cfg->root : NULL; }
const char *mc_config_name(const mc_config *cfg) { return cfg ? cfg->name : ""; }
mc_config_kind mc_config_kind_of(const mc_config_node *n) { return n ? n->kind : MC_CONFIG_SCALAR; }
const char *mc_config_path(const mc_config_node *n) { return n ? n->path : ""; }
unsigned mc_config_line(const mc_config_node *n) { return n ? n->line : 0; }
unsigned mc_config_column(const mc_config_node *n) { return n ? n->col : 0; }
const mc_config *mc_config_of(const mc_config_node *n) { return n ? n->doc : NULL; }

size_t mc_config_count(const mc_config_node *n)
{
    return n && n->kind != MC_CONFIG_SCALAR ? n->n : 0;
}

const mc_config_node *mc_config_at(const mc_config_node *n, size_t i)
{
    return n && n->kind != MC_CONFIG_SCALAR && i < n->n ? n->items[i] : NULL;
}

const char *mc_config_key_at(const mc_config_node *n, size_t i)
{
    return n && n->kind == MC_CONFIG_MAP && i < n->n ? n->keys[i] : NULL;
}

const mc_config_node *mc_config_get(const mc_config_node *map, const char *key)
{
    if (!map || !key || map->kind != MC_CONFIG_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key))
            return map->items[i];
    return NULL;
}

const char *mc_config_text(const mc_config_node *n)
{
    return n && n->kind == MC_CONFIG_SCALAR ? n->text : NULL;
}

bool mc_config_is_null(const mc_config_node *n) { return n && n->kind == MC_CONFIG_SCALAR && n->is_null; }

/* ------------------------------------------------------------------ errors and getters */

static int mc__vfail(const mc_config_node *n, mc_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        char msg[200];
        vsnprintf(msg, sizeof msg, fmt, ap);
        err->code = code;
        if (n && *n->path)
            snprintf(err->message, sizeof err->message, "%s: %s (%s:%u:%u)", n->path, msg,
                     n->doc->name, n->line, n->col);
        else if (n)
            snprintf(err->message, sizeof err->message, "%s (%s:%u:%u)", msg, n->doc->name, n->line,
                     n->col);
        else
            snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

int mc_config_fail(const mc_config_node *n, mc_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = mc__vfail(n, err, code, fmt, ap);
    va_end(ap);
    return rc;
}

static int mc__null_out(mc_error *err)
{
    mc__error_set(err, MC_EINVAL, "invalid argument: NULL output");
    return MC_EINVAL;
}

/* The scalar text of a non-null scalar, or NULL after reporting "expected <what>". */
static const char *mc__scalar(const mc_config_node *n, mc_error *err, const char *what)
{
    if (!n || n->kind != MC_CONFIG_SCALAR || n->is_null) {
        mc_config_fail(n, err, MC_EINVAL, "expected %s", what);
        return NULL;
    }
    return n->text;
}

int mc_config_string(const mc_config_node *n, const char **out, mc_error *err)
{
    if (!out)
        return mc__null_out(err);
    const char *t = mc__scalar(n, err, "a string");
    if (!t)
        return MC_EINVAL;
    *out = t;
    return 0;
}

int mc_config_bool(const mc_config_node *n, bool *out, mc_error *err)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    if (!out)
        return mc__null_out(err);
    const char *t = mc__scalar(n, err, "a boolean (true or false)");
    if (!t)
        return MC_EINVAL;
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(t, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(t, no[i])) {
            *out = false;
            return 0;
        }
    }
    return mc_config_fail(n, err, MC_EINVAL, "expected a boolean (true or false)");
}

/* Digits only (after an optional sign for signed values): what strtoll alone would not check. */
static bool mc__decimal(const char *t, bool allow_sign)
{
    if (allow_sign && (*t == '-' || *t == '+'))
        t++;
    if (!isdigit((unsigned char)*t))
        return false;
    while (isdigit((unsigned char)*t))
        t++;
    return *t == 0;
}

int mc_config_int(const mc_config_node *n, int64_t *out, mc_error *err)
{
    if (!out)
        return mc__null_out(err);
    const char *t = mc__scalar(n, err, "an integer");
    if (!t)
        return MC_EINVAL;
    if (!mc__decimal(t, true))
        return mc_config_fail(n, err, MC_EINVAL, "expected an integer");
    errno = 0;
    long long v = strtoll(t, NULL, 10);
    if (errno == ERANGE)
        return mc_config_fail(n, err, MC_EINVAL, "expected an integer in 64-bit range");
    *out = (int64_t)v;
    return 0;
}

int mc_config_double(const mc_config_node *n, double *out, mc_error *err)
{
    if (!out)
        return mc__null_out(err);
    const char *t = mc__scalar(n, err, "a number");
    if (!t)
        return MC_EINVAL;
    /* strtod also reads hex floats, inf and nan: only plain decimal notation is a number here. */
    for (const char *p = t; *p; p++)
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p))
            return mc_config_fail(n, err, MC_EINVAL, "expected a number");
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (end == t || *end || errno == ERANGE || !isfinite(v))
        return mc_config_fail(n, err, MC_EINVAL, "expected a finite number");
    *out = v;
    return 0;
}

/* A non-negative integer followed by a unit suffix, scaled; false on syntax or overflow. */
static bool mc__scaled(const char *t, const char *const *units, const uint64_t *scale, size_t nunits,
                       uint64_t bare, uint64_t *out)
{
    if (!isdigit((unsigned char)*t))
        return false;
    uint64_t v = 0;
    while (isdigit((unsigned char)*t)) {
        unsigned d = (unsigned)(*t++ - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    uint64_t mul = bare;
    if (*t) {
        size_t i = 0;
        while (i < nunits && strcmp(t, units[i]) != 0)
            i++;
        if (i == nunits)
            return false;
        mul = scale[i];
    }
    if (v && mul > UINT64_MAX / v)
        return false;
    *out = v * mul;
    return true;
}

int mc_config_duration(const mc_config_node *n, uint64_t *out_ns, mc_error *err)
{
    static const char *const units[] = {"ms", "s", "m", "h", "d", "w", "y"};
    static const uint64_t ns[] = {1000000ull, 1000000000ull, 60000000000ull, 3600000000000ull,
                                  86400000000000ull, 604800000000000ull, 31536000000000000ull};
    if (!out_ns)
        return mc__null_out(err);
    const char *what = "a duration (like 250ms, 30s, 5m, 2h, 1d, 1w, 1y)";
    const char *t = mc__scalar(n, err, what);
    if (!t)
        return MC_EINVAL;
    if (!mc__scaled(t, units, ns, 7, 1000000ull, out_ns))
        return mc_config_fail(n, err, MC_EINVAL, "expected %s", what);
    return 0;
}

int mc_config_size(const mc_config_node *n, uint64_t *out_bytes, mc_error *err)
{
    static const char *const units[] = {"K", "M", "G", "T"};
    static const uint64_t bytes[] = {1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40};
    if (!out_bytes)
        return mc__null_out(err);
    const char *what = "a size (like 512K, 100M, 1G)";
    const char *t = mc__scalar(n, err, what);
    if (!t)
        return MC_EINVAL;
    if (!mc__scaled(t, units, bytes, 4, 1, out_bytes))
        return mc_config_fail(n, err, MC_EINVAL, "expected %s", what);
    return 0;
}

int mc_config_allow_keys(const mc_config_node *map, const char *const *keys, mc_error *err)
{
    if (!map || !keys) {
        mc__error_set(err, MC_EINVAL, "invalid argument: NULL map or key list");
        return MC_EINVAL;
    }
    if (map->kind != MC_CONFIG_MAP)
        return mc_config_fail(map, err, MC_EINVAL, "expected a map");
    for (size_t i = 0; i < map->n; i++) {
        bool known = false;
        for (const char *const *k = keys; *k && !known; k++)
            known = !strcmp(*k, map->keys[i]);
        if (!known) {
            /* Reported at the key's value, under the key's own path. */
            return mc_config_fail(map->items[i], err, MC_EINVAL, "unknown key");
        }
    }
    return 0;
}
