#define _POSIX_C_SOURCE 200809L
/* Memoizing a slow lookup: a cached function in front of a "database" call, invalidated after
 * a write, caching "no value" for a missing user. Exits non-zero if anything misbehaves. */
#include <modcache.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The slow lookup being memoized: a user's department. */
static const char *departments[] = {"engineering", "sales", "support"};
static int db_department[100];
static int db_queries;

static int load_department(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    db_queries++;
    nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL); /* the round trip caching saves */
    int64_t user = args[0].v.i;
    if (user < 0 || user >= 100)
        return mc_load_set_none(load); /* no such user: cached as "no value" */
    const char *d = departments[db_department[user]];
    return mc_load_set_copy(load, d, strlen(d));
}

int main(void)
{
    mc_cached *dept;
    int rc = mc_cached_create(&MC_CACHED_OPTS("example.get_department", 1000), load_department, NULL,
                              &dept);
    if (rc != 0) {
        fprintf(stderr, "mc_cached_create: %s\n", mc_strerror(rc));
        return 1;
    }
    mc_value *v;
    for (int round = 0; round < 3; round++) {
        if (MC_CACHED_CALL(dept, &v, MC_ARG_I(42)) != 0)
            return 2;
        printf("user 42: %.*s (database queries so far: %d)\n", (int)mc_value_size(v),
               (const char *)mc_value_data(v), db_queries);
        mc_value_release(v);
    }
    /* A write to the database, then the invalidation that keeps the cache honest. */
    db_department[42] = 1;
    mc_cached_invalidate(dept, (const mc_arg[]){MC_ARG_I(42)}, 1);
    if (MC_CACHED_CALL(dept, &v, MC_ARG_I(42)) != 0)
        return 3;
    printf("after the move: %.*s (queries: %d)\n", (int)mc_value_size(v), (const char *)mc_value_data(v),
           db_queries);
    int ok = mc_value_size(v) == 5 && memcmp(mc_value_data(v), "sales", 5) == 0 && db_queries == 2;
    mc_value_release(v);
    /* The copy-out call: the result lands in our buffer and nothing is pinned on a hit. */
    char name[32];
    size_t n;
    mc_arg arg = MC_ARG_I(42);
    if (mc_cached_call_copy(dept, &arg, 1, name, sizeof name, &n) != 0)
        return 6;
    printf("copied out: %.*s (queries: %d)\n", (int)n, name, db_queries);
    ok = ok && n == 5 && memcmp(name, "sales", 5) == 0 && db_queries == 2;
    /* The borrowed call: a pointer into the cached value, valid until mc_read_end, with no
     * copy and no reference count. */
    mc_read_begin();
    const void *p;
    size_t plen;
    if (mc_cached_call_borrow(dept, &arg, 1, &p, &plen) != 0) {
        mc_read_end();
        return 7;
    }
    printf("borrowed: %.*s (queries: %d)\n", (int)plen, (const char *)p, db_queries);
    ok = ok && plen == 5 && memcmp(p, "sales", 5) == 0 && db_queries == 2;
    mc_read_end();
    if (MC_CACHED_CALL(dept, &v, MC_ARG_I(1000)) != 0 || !mc_value_is_none(v))
        return 4;
    mc_value_release(v);
    mc_cached_stats st;
    mc_cached_stats_get(dept, &st);
    printf("loads %llu, hits %llu, misses %llu\n", (unsigned long long)st.loads,
           (unsigned long long)st.cache.hits, (unsigned long long)st.cache.misses);
    mc_cached_destroy(dept);
    return ok ? 0 : 5;
}
