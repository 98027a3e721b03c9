/* Snapshots of persistent memoized functions: the file format of modcache/snapshot.h, written
 * from each cache shard by shard and read back with every length checked before it is used. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache/cache_cached.h"
#include "cached/cached_internal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "modcache/snapshot.h"

#define MC__SNAP_MAGIC "MCSNAPSH"
#define MC__SNAP_END "MCSNEND\n"
#define MC__SNAP_HDR 24u     /* magic, version, flags, written */
#define MC__SNAP_TRAILER 24u /* body length, checksum, end magic */
#define MC__SNAP_ORIGIN_MAX 4096u

bool mc_cached_persists(const mc_cached *fn) { return fn && fn->persist; }

const char *mc_snapshot_fault_name(mc_snapshot_fault f)
{
    static const char *const names[MC_SNAPSHOT_NFAULTS] = {"ok", "missing", "unreadable", "foreign",
                                                           "wrong_version", "truncated", "damaged"};
    return (unsigned)f < MC_SNAPSHOT_NFAULTS ? names[f] : "unknown";
}

static uint64_t mc__wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


/* ------------------------------------------------------------------ little-endian fields */

static void mc__put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void mc__put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void mc__put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t mc__get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t mc__get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t mc__get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------------ writing */

/* A growable byte buffer: one shard's records, filled under its lock, written after. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} mc__sbuf;

static unsigned char *mc__sbuf_room(mc__sbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = mc__realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    unsigned char *at = b->p + b->len;
    b->len += n;
    return at;
}

typedef struct {
    int fd;
    XXH3_state_t *hash;
    mc__sbuf out;      /* bytes not yet written to fd */
    mc__sbuf shard;    /* the shard being copied out */
    uint64_t body;     /* body bytes so far */
    int rc;
    mc_error *err;
    const char *tmp;
    mc_snapshot_write_stats st;
} mc__swriter;

static void mc__sw_fail_errno(mc__swriter *w, const char *what)
{
    if (w->rc == 0)
        w->rc = mc__error_set(w->err, MC_EIO, "snapshot %s: %s: %s", w->tmp, what, strerror(errno));
}

static void mc__sw_drain(mc__swriter *w)
{
    size_t off = 0;
    while (w->rc == 0 && off < w->out.len) {
        ssize_t n = write(w->fd, w->out.p + off, w->out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mc__sw_fail_errno(w, "write");
            break;
        }
        off += (size_t)n;
    }
    w->out.len = 0;
}

/* Append body bytes (hashed, buffered, written in large pieces). */
static void mc__sw_bytes(mc__swriter *w, const void *p, size_t n)
{
    if (w->rc || n == 0) /* an empty shard has no buffer yet */
        return;
    XXH3_64bits_update(w->hash, p, n);
    w->body += n;
    if (w->out.len + n > (4u << 20))
        mc__sw_drain(w);
    unsigned char *at = mc__sbuf_room(&w->out, n);
    if (!at) {
        w->rc = mc__error_set(w->err, MC_ENOMEM, "snapshot: out of memory");
        return;
    }
    memcpy(at, p, n);
}

/* One entry of a shard into w->shard (shard lock held: copy only). */
static int mc__sw_visit(void *ud, const mc__entry_view *e)
{
    mc__swriter *w = ud;
    if (e->owned) {
        w->st.skipped++;
        return 0;
    }
    if (e->vlen > UINT32_MAX)
        return 0;
    size_t head = (e->none ? 1 + 4 + 8 + 8 : 1 + 4 + 4 + 8 + 8) + (e->has_write_age ? 8 : 0);
    unsigned char *p = mc__sbuf_room(&w->shard, head + e->klen + (e->none ? 0 : e->vlen));
    if (!p)
        return MC_ENOMEM;
    /* Lower case: the record carries a write age too (a function with write-age rules). */
    *p++ = e->has_write_age ? (e->none ? 'n' : 'v') : (e->none ? 'N' : 'V');
    mc__put_u32(p, (uint32_t)e->klen);
    p += 4;
    if (!e->none) {
        mc__put_u32(p, (uint32_t)e->vlen);
        p += 4;
    }
    mc__put_u64(p, e->weight);
    mc__put_u64(p + 8, e->idle_ns);
    p += 16;
    if (e->has_write_age) {
        mc__put_u64(p, e->write_age_ns);
        p += 8;
    }
    memcpy(p, e->key, e->klen);
    if (!e->none && e->vlen)
        memcpy(p + e->klen, e->value, e->vlen);
    w->st.entries++;
    return 0;
}

void (*mc__snapshot_test_hook)(mc_cached *fn, unsigned shard);

static void mc__sw_function(void *ud, mc_cached *fn, const mc_cached_stats *stats)
{
    mc__swriter *w = ud;
    if (w->rc || !fn->persist || !fn->name[0])
        return;
    if (atomic_load_explicit(&fn->has_deps, memory_order_relaxed)) {
        /* Its entries depend on other functions' entries through records a new process would
         * not have: restored, they would outlive an invalidation of what they were built from. */
        w->st.skipped += stats->cache.entries;
        return;
    }
    size_t nlen = strlen(fn->name);
    unsigned char hdr[1 + 2 + MC__NAME_MAX + 1];
    hdr[0] = 'F';
    mc__put_u16(hdr + 1, (uint16_t)nlen);
    memcpy(hdr + 3, fn->name, nlen);
    hdr[3 + nlen] = fn->iterable ? 1 : 0;
    mc__sw_bytes(w, hdr, 4 + nlen);
    w->st.functions++;
    unsigned n = mc__cache_shards(fn->cache);
    uint64_t first = w->st.entries;
    for (unsigned s = 0; s < n && w->rc == 0; s++) {
        w->shard.len = 0;
        uint64_t before = w->st.entries;
        if (mc__cache_visit_shard(fn->cache, s, mc__sw_visit, w) != 0 || w->shard.oom) {
            w->rc = mc__error_set(w->err, MC_ENOMEM, "snapshot: out of memory");
            break;
        }
        if (mc__snapshot_test_hook)
            mc__snapshot_test_hook(fn, s);
        if (atomic_load_explicit(&fn->has_deps, memory_order_relaxed)) {
            /* A first dependency recorded while the shards were copied: the flag is set
             * before the dependent entry is stored (under the shard lock), so a shard copied
             * before it was set holds no dependent entry, and this one may. It and the rest
             * are left out, as the whole function would have been. */
            w->st.entries = before;
            uint64_t written = before - first;
            w->st.skipped += stats->cache.entries > written ? stats->cache.entries - written : 0;
            break;
        }
        mc__sw_bytes(w, w->shard.p, w->shard.len);
    }
}

/* fsync the directory holding `path`, so that the rename itself is durable. */
static int mc__fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return -1;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mc_snapshot_write(mc_registry *reg, const void *origin, size_t origin_len, const char *path,
                      mc_snapshot_write_stats *st, mc_error *err)
{
    if (st)
        memset(st, 0, sizeof *st);
    if (!reg || !path || !*path || (!origin && origin_len))
        return mc__error_set(err, MC_EINVAL, "snapshot: bad arguments");
    if (origin_len > MC__SNAP_ORIGIN_MAX)
        return mc__error_set(err, MC_EINVAL, "snapshot: origin of %zu bytes (at most %u)", origin_len,
                             MC__SNAP_ORIGIN_MAX);
    uint64_t t0 = mc__mono_now();
    size_t plen = strlen(path);
    char *tmp = mc__malloc(plen + 5);
    if (!tmp)
        return mc__error_set(err, MC_ENOMEM, "snapshot: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    mc__swriter w = {.fd = -1, .err = err, .tmp = tmp};
    w.hash = XXH3_createState();
    if (!w.hash) {
        free(tmp);
        return mc__error_set(err, MC_ENOMEM, "snapshot: out of memory");
    }
    XXH3_64bits_reset(w.hash);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        mc__sw_fail_errno(&w, "open");
    } else {
        unsigned char hdr[MC__SNAP_HDR];
        memcpy(hdr, MC__SNAP_MAGIC, 8);
        mc__put_u32(hdr + 8, MC_SNAPSHOT_VERSION);
        mc__put_u32(hdr + 12, 0);
        mc__put_u64(hdr + 16, mc__wall_ns());
        /* The header is hashed, not counted in the body. */
        XXH3_64bits_update(w.hash, hdr, sizeof hdr);
        unsigned char *at = mc__sbuf_room(&w.out, sizeof hdr);
        if (at)
            memcpy(at, hdr, sizeof hdr);
        else
            w.rc = mc__error_set(err, MC_ENOMEM, "snapshot: out of memory");
        unsigned char olen[4];
        mc__put_u32(olen, (uint32_t)origin_len);
        mc__sw_bytes(&w, olen, 4);
        if (origin_len)
            mc__sw_bytes(&w, origin, origin_len);
        mc_registry_list(reg, mc__sw_function, &w);
        mc__sw_bytes(&w, "E", 1);
        if (w.rc == 0) {
            unsigned char tr[MC__SNAP_TRAILER];
            mc__put_u64(tr, w.body);
            mc__put_u64(tr + 8, XXH3_64bits_digest(w.hash));
            memcpy(tr + 16, MC__SNAP_END, 8);
            at = mc__sbuf_room(&w.out, sizeof tr);
            if (!at)
                w.rc = mc__error_set(err, MC_ENOMEM, "snapshot: out of memory");
            else
                memcpy(at, tr, sizeof tr);
        }
        mc__sw_drain(&w);
        if (w.rc == 0 && fsync(w.fd) != 0)
            mc__sw_fail_errno(&w, "fsync");
        if (close(w.fd) != 0)
            mc__sw_fail_errno(&w, "close");
        w.st.bytes = MC__SNAP_HDR + w.body + MC__SNAP_TRAILER;
        if (w.rc == 0 && rename(tmp, path) != 0) {
            if (w.rc == 0)
                w.rc = mc__error_set(err, MC_EIO, "snapshot %s: rename to %s: %s", tmp, path, strerror(errno));
        }
        if (w.rc != 0)
            unlink(tmp);
        else if (mc__fsync_dir(path) != 0)
            w.rc = mc__error_set(err, MC_EIO, "snapshot %s: fsync of its directory: %s", path, strerror(errno));
    }
    XXH3_freeState(w.hash);
    free(w.out.p);
    free(w.shard.p);
    free(tmp);
    w.st.duration_ns = mc__mono_now() - t0;
    if (st)
        *st = w.st;
    return w.rc;
}

/* ------------------------------------------------------------------ reading */

struct mc__snapfn {
    char name[MC__NAME_MAX + 1];
    bool iterable;
    uint64_t entries;
    size_t first, end; /* its records: [first, end) of the data */
};

struct mc_snapshot {
    unsigned char *data;
    size_t len;
    uint64_t written_ns;
    size_t origin_off, origin_len;
    struct mc__snapfn *fns;
    size_t nfns;
};

/* One entry record at data[off] (already checked by the parser). */
typedef struct {
    bool none;
    const unsigned char *key, *value;
    size_t klen, vlen;
    uint64_t weight, age_ns;
    bool has_write_age;
    uint64_t write_age_ns;
    size_t next;
} mc__srec;

/* Parse the entry record at off within [.., end). False if it does not fit or is malformed. */
static bool mc__srec_at(const unsigned char *d, size_t off, size_t end, mc__srec *r)
{
    if (off >= end)
        return false;
    unsigned char tag = d[off];
    if (tag != 'V' && tag != 'N' && tag != 'v' && tag != 'n')
        return false;
    r->none = tag == 'N' || tag == 'n';
    r->has_write_age = tag == 'v' || tag == 'n';
    size_t head = (r->none ? 1 + 4 + 8 + 8 : 1 + 4 + 4 + 8 + 8) + (r->has_write_age ? 8 : 0);
    if (end - off < head)
        return false;
    const unsigned char *p = d + off + 1;
    r->klen = mc__get_u32(p);
    p += 4;
    r->vlen = 0;
    if (!r->none) {
        r->vlen = mc__get_u32(p);
        p += 4;
    }
    r->weight = mc__get_u64(p);
    r->age_ns = mc__get_u64(p + 8);
    r->write_age_ns = r->has_write_age ? mc__get_u64(p + 16) : 0;
    if (r->klen > MC_KEY_MAX)
        return false;
    size_t rest = end - off - head;
    if (r->klen > rest || r->vlen > rest - r->klen)
        return false;
    r->key = d + off + head;
    r->value = r->key + r->klen;
    r->next = off + head + r->klen + r->vlen;
    return true;
}

static int mc__refuse(mc_snapshot_fault *fault, mc_snapshot_fault f, mc_error *err, const char *where,
                      const char *why)
{
    if (fault)
        *fault = f;
    return mc__error_set(err, MC_EPARSE, "snapshot %s refused (%s): %s", where, mc_snapshot_fault_name(f), why);
}

/* Check and index data (owned by s from here on, freed on failure by the caller). */
static int mc__snap_index(mc_snapshot *s, const char *where, mc_snapshot_fault *fault, mc_error *err)
{
    const unsigned char *d = s->data;
    size_t len = s->len;
    if (len < 8 || memcmp(d, MC__SNAP_MAGIC, 8) != 0) {
        if (len < 8 && memcmp(d, MC__SNAP_MAGIC, len) == 0)
            return mc__refuse(fault, MC_SNAPSHOT_TRUNCATED, err, where, "shorter than its header");
        return mc__refuse(fault, MC_SNAPSHOT_FOREIGN, err, where, "not a modcache snapshot");
    }
    if (len < MC__SNAP_HDR)
        return mc__refuse(fault, MC_SNAPSHOT_TRUNCATED, err, where, "shorter than its header");
    uint32_t version = mc__get_u32(d + 8);
    if (version != MC_SNAPSHOT_VERSION) {
        char why[96];
        snprintf(why, sizeof why, "format version %u, this library reads version %u", version, MC_SNAPSHOT_VERSION);
        return mc__refuse(fault, MC_SNAPSHOT_WRONG_VERSION, err, where, why);
    }
    if (len < MC__SNAP_HDR + MC__SNAP_TRAILER || memcmp(d + len - 8, MC__SNAP_END, 8) != 0)
        return mc__refuse(fault, MC_SNAPSHOT_TRUNCATED, err, where, "its end marker is missing");
    uint64_t body = mc__get_u64(d + len - MC__SNAP_TRAILER);
    if (body != len - MC__SNAP_HDR - MC__SNAP_TRAILER)
        return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "its length does not match its trailer");
    if (XXH3_64bits(d, len - MC__SNAP_TRAILER) != mc__get_u64(d + len - MC__SNAP_TRAILER + 8))
        return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "checksum mismatch");
    s->written_ns = mc__get_u64(d + 16);

    size_t end = len - MC__SNAP_TRAILER, off = MC__SNAP_HDR;
    if (end - off < 4)
        return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "no origin");
    uint32_t olen = mc__get_u32(d + off);
    off += 4;
    if (olen > MC__SNAP_ORIGIN_MAX || olen > end - off)
        return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "bad origin length");
    s->origin_off = off;
    s->origin_len = olen;
    off += olen;
    size_t cap = 0;
    struct mc__snapfn *cur = NULL;
    for (;;) {
        if (off >= end)
            return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "records end without their end mark");
        unsigned char tag = d[off];
        if (tag == 'E') {
            if (cur)
                cur->end = off;
            if (off + 1 != end)
                return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "bytes after the end mark");
            return 0;
        }
        if (tag == 'F') {
            if (end - off < 3)
                return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "a cut function record");
            uint16_t nlen = mc__get_u16(d + off + 1);
            if (nlen == 0 || nlen > MC__NAME_MAX || (size_t)nlen + 1 > end - off - 3)
                return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "a bad function name length");
            if (memchr(d + off + 3, 0, nlen))
                return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, "a function name holding NUL");
            if (cur)
                cur->end = off;
            if (s->nfns == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                struct mc__snapfn *n = mc__realloc(s->fns, ncap * sizeof *n);
                if (!n) {
                    if (fault)
                        *fault = MC_SNAPSHOT_OK;
                    return mc__error_set(err, MC_ENOMEM, "snapshot %s: out of memory", where);
                }
                s->fns = n;
                cap = ncap;
            }
            cur = &s->fns[s->nfns++];
            memcpy(cur->name, d + off + 3, nlen);
            cur->name[nlen] = 0;
            cur->iterable = (d[off + 3 + nlen] & 1) != 0;
            cur->entries = 0;
            off += 4 + (size_t)nlen;
            cur->first = cur->end = off;
            continue;
        }
        mc__srec r;
        if (!cur || !mc__srec_at(d, off, end, &r))
            return mc__refuse(fault, MC_SNAPSHOT_DAMAGED, err, where, cur ? "a malformed entry record" : "an entry outside any function");
        cur->entries++;
        off = r.next;
    }
}

int mc_snapshot_parse(const void *data, size_t len, mc_snapshot **out, mc_snapshot_fault *fault, mc_error *err)
{
    if (fault)
        *fault = MC_SNAPSHOT_OK;
    if (!out || (!data && len))
        return mc__error_set(err, MC_EINVAL, "snapshot: bad arguments");
    *out = NULL;
    mc_snapshot *s = mc__calloc(1, sizeof *s);
    unsigned char *copy = mc__malloc(len ? len : 1);
    if (!s || !copy) {
        free(s);
        free(copy);
        return mc__error_set(err, MC_ENOMEM, "snapshot: out of memory");
    }
    if (len)
        memcpy(copy, data, len);
    s->data = copy;
    s->len = len;
    int rc = mc__snap_index(s, "(memory)", fault, err);
    if (rc) {
        mc_snapshot_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int mc_snapshot_read(const char *path, mc_snapshot **out, mc_snapshot_fault *fault, mc_error *err)
{
    if (fault)
        *fault = MC_SNAPSHOT_OK;
    if (!out || !path)
        return mc__error_set(err, MC_EINVAL, "snapshot: bad arguments");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        bool missing = errno == ENOENT;
        if (fault)
            *fault = missing ? MC_SNAPSHOT_MISSING : MC_SNAPSHOT_UNREADABLE;
        return mc__error_set(err, missing ? MC_ENOENT : MC_EIO, "snapshot %s: %s", path, strerror(errno));
    }
    struct stat sb;
    bool statted = fstat(fd, &sb) == 0;
    if (!statted || !S_ISREG(sb.st_mode)) {
        int e = errno;
        close(fd);
        if (fault)
            *fault = MC_SNAPSHOT_UNREADABLE;
        return mc__error_set(err, MC_EIO, "snapshot %s: %s", path, statted ? "not a regular file" : strerror(e));
    }
    mc_snapshot *s = mc__calloc(1, sizeof *s);
    size_t cap = (size_t)sb.st_size;
    unsigned char *buf = mc__malloc(cap ? cap : 1);
    if (!s || !buf) {
        close(fd);
        free(s);
        free(buf);
        return mc__error_set(err, MC_ENOMEM, "snapshot %s: out of memory", path);
    }
    /* Read what is there (the file may change size meanwhile: the checks below judge it). */
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(s);
            free(buf);
            if (fault)
                *fault = MC_SNAPSHOT_UNREADABLE;
            return mc__error_set(err, MC_EIO, "snapshot %s: read: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    s->data = buf;
    s->len = len;
    int rc = mc__snap_index(s, path, fault, err);
    if (rc) {
        mc_snapshot_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void mc_snapshot_free(mc_snapshot *s)
{
    if (!s)
        return;
    free(s->data);
    free(s->fns);
    free(s);
}

const void *mc_snapshot_origin(const mc_snapshot *s, size_t *len)
{
    if (len)
        *len = s ? s->origin_len : 0;
    return s ? s->data + s->origin_off : NULL;
}

uint64_t mc_snapshot_written_ns(const mc_snapshot *s) { return s ? s->written_ns : 0; }

size_t mc_snapshot_function_count(const mc_snapshot *s) { return s ? s->nfns : 0; }

const char *mc_snapshot_function_name(const mc_snapshot *s, size_t i)
{
    return s && i < s->nfns ? s->fns[i].name : NULL;
}

uint64_t mc_snapshot_function_entries(const mc_snapshot *s, size_t i)
{
    return s && i < s->nfns ? s->fns[i].entries : 0;
}

/* ------------------------------------------------------------------ restoring */

typedef struct {
    size_t off;
    uint64_t age;
} mc__sorder;

static int mc__older_first(const void *a, const void *b)
{
    uint64_t x = ((const mc__sorder *)a)->age, y = ((const mc__sorder *)b)->age;
    if (x != y)
        return x > y ? -1 : 1;
    /* Ties in file order: qsort is not stable. */
    size_t p = ((const mc__sorder *)a)->off, q = ((const mc__sorder *)b)->off;
    return p < q ? -1 : p > q;
}

/* Entries of a restore above this many are stored by two threads. */
#define MC__RESTORE_SPLIT 65536

/* One thread's share of a function's restore: the entries of shards of one parity (-1: all). */
typedef struct {
    const mc_snapshot *s;
    const struct mc__snapfn *sf;
    mc_cached *fn;
    const mc__sorder *order;
    size_t n;
    int parity;
    uint64_t down; /* time between the write and the restore */
    mc_snapshot_restore_stats st;
} mc__rpart;

/* A saved age plus the time since the snapshot was written, saturating. */
static uint64_t mc__plus_down(uint64_t age, uint64_t down)
{
    return age > UINT64_MAX - down ? UINT64_MAX : age + down;
}

static void mc__restore_part(mc__rpart *p)
{
    mc__srec r;
    for (size_t i = 0; i < p->n; i++) {
        mc__srec_at(p->s->data, p->order[i].off, p->sf->end, &r);
        if (p->parity >= 0 && (int)(mc__cache_shard_index(p->fn->cache, r.key, r.klen) & 1) != p->parity)
            continue;
        mc__put_args a = {
            .key = r.key,
            .klen = r.klen,
            .value = r.value,
            .vlen = r.vlen,
            .none = r.none,
            .weight = p->fn->iterable ? (r.weight ? r.weight : 1) : 0,
            .flags = MC_PUT_IF_ABSENT,
            /* Out of line, as loads store them (attached callbacks compare entries). */
            .out_of_line = true,
            .age_ns = p->order[i].age,
            .restored = true,
            .has_write_age = r.has_write_age,
            .write_age_ns = mc__plus_down(r.write_age_ns, p->down),
        };
        int rc = mc__cache_put_ex(p->fn->cache, &a);
        if (rc == 0)
            p->st.restored++;
        else if (rc == MC_EEXIST)
            p->st.present++;
        else
            p->st.failed++;
    }
}

static void *mc__restore_part_main(void *arg)
{
    mc__restore_part(arg);
    return NULL;
}

static void mc__restore_fn(const mc_snapshot *s, const struct mc__snapfn *sf, mc_cached *fn, uint64_t down,
                           mc_snapshot_restore_stats *st)
{
    mc__sorder *order = sf->entries ? mc__malloc(sf->entries * sizeof *order) : NULL;
    uint64_t ttl = mc__cache_ttl(fn->cache);
    size_t n = 0;
    mc__srec r;
    for (size_t off = sf->first; off < sf->end && mc__srec_at(s->data, off, sf->end, &r); off = r.next) {
        uint64_t age = mc__plus_down(r.age_ns, down);
        /* Expire-after-access counts from the saved last access, a write-age lifetime
         * (expire_after_write, and none_ttl for "no value") from the saved write age; an entry
         * saved without one (its function had no write-age rules then) cannot be proven young
         * enough for such a lifetime. */
        uint64_t life = fn->expire_after_write_ns;
        if (r.none && fn->none_ttl_ns && (!life || fn->none_ttl_ns < life))
            life = fn->none_ttl_ns;
        if ((ttl && age >= ttl) || (life && (!r.has_write_age || mc__plus_down(r.write_age_ns, down) >= life))) {
            st->expired++;
            continue;
        }
        if (order)
            order[n] = (mc__sorder){off, age};
        n++;
    }
    if (!order && sf->entries) {
        /* No memory to order them: nothing is restored for this function. */
        st->failed += n;
        return;
    }
    if (n == 0) {
        free(order);
        return;
    }
    qsort(order, n, sizeof *order, mc__older_first);
    /* Large restores on two threads, each taking the shards of one parity: the order within
     * every shard (oldest first) is kept, and the threads' puts never share a shard lock. */
    mc__rpart parts[2] = {{.s = s, .sf = sf, .fn = fn, .order = order, .n = n, .parity = 0, .down = down},
                          {.s = s, .sf = sf, .fn = fn, .order = order, .n = n, .parity = 1, .down = down}};
    pthread_t helper;
    bool two = n >= MC__RESTORE_SPLIT && mc__cache_shards(fn->cache) > 1 &&
               pthread_create(&helper, NULL, mc__restore_part_main, &parts[1]) == 0;
    if (!two)
        parts[0].parity = -1; /* every shard, on this thread */
    mc__restore_part(&parts[0]);
    if (two)
        pthread_join(helper, NULL);
    for (int i = 0; i < 2; i++) {
        st->restored += parts[i].st.restored;
        st->present += parts[i].st.present;
        st->failed += parts[i].st.failed;
    }
    free(order);
}

int mc_snapshot_restore(const mc_snapshot *s, mc_registry *reg, mc_snapshot_restore_stats *out)
{
    mc_snapshot_restore_stats st = {0};
    if (out)
        *out = st;
    if (!s || !reg)
        return MC_EINVAL;
    uint64_t now = mc__wall_ns();
    uint64_t down = now > s->written_ns ? now - s->written_ns : 0;
    for (size_t i = 0; i < s->nfns; i++) {
        mc_cached *fn = NULL;
        if (mc_registry_acquire(reg, s->fns[i].name, &fn) != 0) {
            st.unknown++;
            continue;
        }
        if (!fn->persist || fn->iterable != s->fns[i].iterable) {
            st.unknown++;
        } else {
            mc__restore_fn(s, &s->fns[i], fn, down, &st);
            st.functions++;
        }
        mc_registry_release(fn);
    }
    if (out)
        *out = st;
    return 0;
}
