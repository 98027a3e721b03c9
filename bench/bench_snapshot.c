/* Warm restarts: how long writing a snapshot of N entries takes (mc_snapshot_write: copy-out,
 * checksum, fsync, rename), and reading it back and restoring it into a fresh function
 * (mc_snapshot_read + mc_snapshot_restore). Target: each at most 2 s for 1,000,000 entries.
 *
 *   bench_snapshot [entries (1000000)] [directory (.)] [runs (3)]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <modcache.h>

#include "bench_time.h"

#define TARGET_NS 2000000000ull

static int load(void *self, const mc_arg *args, size_t nargs, mc_load *l)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_none(l);
}

static mc_cached *make(mc_registry *reg, size_t n)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "bench.departments";
    o.max_entries = n;
    o.num_args = 1;
    o.registry = reg;
    o.persist = true;
    mc_cached *fn = NULL;
    if (mc_cached_create(&o, load, NULL, &fn) != 0) {
        fprintf(stderr, "mc_cached_create failed\n");
        exit(1);
    }
    return fn;
}

static int cmp(const void *a, const void *b) { return cmp_u64(a, b); }

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    const char *dir = argc > 2 ? argv[2] : ".";
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    if (n == 0 || runs < 1 || runs > 20) {
        fprintf(stderr, "usage: bench_snapshot [entries] [directory] [runs]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.snapshot", dir);

    /* user ids as keys, department-like JSON as values (about 40 bytes), as example_dept holds. */
    static const char *const depts[] = {"Engineering", "Sales", "Marketing", "Finance", "Support", "Research"};
    mc_registry *reg = NULL;
    mc_registry_create(NULL, &reg);
    mc_cached *fn = make(reg, n);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        char user[32], value[64];
        snprintf(user, sizeof user, "user%zu", i);
        int len = snprintf(value, sizeof value, "{\"department\": \"%s\"}", depts[i % 6]);
        if (mc_cached_prefill(fn, (const mc_arg[]){MC_ARG_S(user)}, 1, value, (size_t)len) != 0) {
            fprintf(stderr, "prefill failed at %zu\n", i);
            return 1;
        }
    }
    printf("filled %zu entries in %.3f s (%zu held)\n", n, (double)(now_ns() - t0) / 1e9,
           mc_cache_size(mc_cached_cache(fn)));

    uint64_t w[20], r[20], bytes = 0, restored = 0, written = 0;
    for (int k = 0; k < runs; k++) {
        mc_snapshot_write_stats ws;
        mc_error err = {0};
        t0 = now_ns();
        if (mc_snapshot_write(reg, "bench", 5, path, &ws, &err) != 0) {
            fprintf(stderr, "write: %s\n", err.message);
            return 1;
        }
        w[k] = now_ns() - t0;
        bytes = ws.bytes;
        written = ws.entries;

        mc_registry *reg2 = NULL;
        mc_registry_create(NULL, &reg2);
        mc_cached *fn2 = make(reg2, n);
        t0 = now_ns();
        mc_snapshot *snap = NULL;
        if (mc_snapshot_read(path, &snap, NULL, &err) != 0) {
            fprintf(stderr, "read: %s\n", err.message);
            return 1;
        }
        uint64_t t_read = now_ns() - t0;
        mc_snapshot_restore_stats rs;
        mc_snapshot_restore(snap, reg2, &rs);
        mc_snapshot_free(snap);
        r[k] = now_ns() - t0;
        restored = rs.restored;
        printf("run %d: write %.3f s (%" PRIu64 " entries, %.1f MiB), read + restore %.3f s (read and check %.3f s; %" PRIu64
               " restored)\n",
               k + 1, (double)w[k] / 1e9, ws.entries, (double)bytes / 1048576.0, (double)r[k] / 1e9, (double)t_read / 1e9,
               restored);
        mc_cached_destroy(fn2);
        mc_registry_destroy(reg2);
    }
    qsort(w, (size_t)runs, sizeof w[0], cmp);
    qsort(r, (size_t)runs, sizeof r[0], cmp);
    uint64_t wm = w[runs / 2], rm = r[runs / 2];
    printf("median of %d: write %.3f s, read + restore %.3f s, file %.1f MiB (target: each at most 2 s for "
           "1,000,000 entries): %s\n",
           runs, (double)wm / 1e9, (double)rm / 1e9, (double)bytes / 1048576.0,
           wm <= TARGET_NS && rm <= TARGET_NS && restored == written ? "met" : "MISSED");
    unlink(path);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
    return 0;
}
