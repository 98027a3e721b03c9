/* The example_rooms module under mchost: its tree cache drops a room's memberships with one
 * prefix invalidation, its batch loader fetches only the names a member list misses, in one
 * call, and its dependent cache drops member lists when a display name they show changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc.h"

#define ROOT "/_modcache/client/rooms/v1"

static char dir[] = "/tmp/mc-rooms-XXXXXX";
static mct_proc host;
static unsigned port;
static char out[8192];

static int req(const char *method, const char *path, const char *body)
{
    char full[256];
    snprintf(full, sizeof full, ROOT "%s", path);
    return mct_http(port, method, full, NULL, body, out, sizeof out);
}

typedef struct {
    unsigned long membership_loads, name_batches, names_loaded, member_list_loads;
} stats;

static stats get_stats(void)
{
    stats s;
    assert_int_equal(req("GET", "/stats", NULL), 200);
    assert_int_equal(sscanf(out,
                            "{\"membership_loads\": %lu, \"name_batches\": %lu, \"names_loaded\": %lu, "
                            "\"member_list_loads\": %lu}",
                            &s.membership_loads, &s.name_batches, &s.names_loaded, &s.member_list_loads),
                     4);
    return s;
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    char cfg[256], text[512];
    snprintf(cfg, sizeof cfg, "%s/host.yaml", dir);
    snprintf(text, sizeof text, "server:\n  listen: 127.0.0.1:0\nmodules:\n  - module: %s\n", ROOMS_MODULE);
    assert_int_equal(mct_write_file(cfg, text), 0);
    assert_int_equal(mct_spawn(&host, (const char *[]){MCHOST, "-c", cfg, NULL}, NULL), 0);
    assert_true(mct_wait_for(&host, 0, "serving HTTP on 127.0.0.1:", 10000));
    const char *at = strstr(host.log, "serving HTTP on 127.0.0.1:");
    assert_int_equal(sscanf(at + strlen("serving HTTP on 127.0.0.1:"), "%u", &port), 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int st = mct_finish(&host, 15);
    free(host.log);
    char path[300];
    snprintf(path, sizeof path, "%s/host.yaml", dir);
    unlink(path);
    rmdir(dir);
    return st == 0 ? 0 : -1;
}

/* Member lists load their names in one batch, and only the names not cached yet. */
static void test_batch(void **state)
{
    (void)state;
    stats s0 = get_stats();
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_string_equal(out, "{\"room\": \"!lobby\", \"members\": [{\"user\": \"@alice\", \"name\": \"Alice\"}, "
                             "{\"user\": \"@bob\", \"name\": \"Bob\"}, {\"user\": \"@carol\", \"name\": \"Carol\"}]}");
    stats s1 = get_stats();
    assert_int_equal(s1.member_list_loads - s0.member_list_loads, 1);
    assert_int_equal(s1.name_batches - s0.name_batches, 1);
    assert_int_equal(s1.names_loaded - s0.names_loaded, 3);
    /* A hit: no loader at all. */
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    stats s2 = get_stats();
    assert_int_equal(s2.member_list_loads, s1.member_list_loads);
    assert_int_equal(s2.names_loaded, s1.names_loaded);
    /* !dev has @alice (cached) and @dave: the batch loads @dave alone. */
    assert_int_equal(req("GET", "/rooms/!dev/members", NULL), 200);
    assert_non_null(strstr(out, "\"name\": \"Dave\""));
    stats s3 = get_stats();
    assert_int_equal(s3.name_batches - s2.name_batches, 1);
    assert_int_equal(s3.names_loaded - s2.names_loaded, 1);
}

/* A new display name invalidates the name, and through the dependency every member list that
 * shows it (both rooms of @alice), while a list that does not show it stays cached. */
static void test_dependent(void **state)
{
    (void)state;
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_int_equal(req("GET", "/rooms/!dev/members", NULL), 200);
    stats s0 = get_stats();
    assert_int_equal(req("PUT", "/users/@alice/name", "Alicia"), 200);
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_non_null(strstr(out, "{\"user\": \"@alice\", \"name\": \"Alicia\"}"));
    assert_int_equal(req("GET", "/rooms/!dev/members", NULL), 200);
    assert_non_null(strstr(out, "{\"user\": \"@alice\", \"name\": \"Alicia\"}"));
    stats s1 = get_stats();
    assert_int_equal(s1.member_list_loads - s0.member_list_loads, 2);
    assert_int_equal(s1.names_loaded - s0.names_loaded, 1); /* @alice once; the rest were cached */
    /* @dave's new name drops !dev's list only. */
    assert_int_equal(req("PUT", "/users/@dave/name", "David"), 200);
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_int_equal(req("GET", "/rooms/!dev/members", NULL), 200);
    assert_non_null(strstr(out, "\"name\": \"David\""));
    stats s2 = get_stats();
    assert_int_equal(s2.member_list_loads - s1.member_list_loads, 1);
}

/* Memberships are cached per (room, user); leaving drops one entry, clearing a room drops every
 * entry under it with one prefix invalidation (cached "join"s would answer 200 otherwise). */
static void test_tree(void **state)
{
    (void)state;
    stats s0 = get_stats();
    assert_int_equal(req("GET", "/rooms/!lobby/members/@bob", NULL), 200);
    assert_string_equal(out, "join");
    assert_int_equal(req("GET", "/rooms/!lobby/members/@bob", NULL), 200);
    assert_int_equal(req("GET", "/rooms/!lobby/members/@carol", NULL), 200);
    assert_int_equal(req("GET", "/rooms/!dev/members/@dave", NULL), 200);
    assert_int_equal(req("GET", "/rooms/!lobby/members/@dave", NULL), 404);
    stats s1 = get_stats();
    assert_int_equal(s1.membership_loads - s0.membership_loads, 4);

    assert_int_equal(req("PUT", "/rooms/!lobby/members/@bob", "leave"), 200);
    assert_int_equal(req("GET", "/rooms/!lobby/members/@bob", NULL), 404);
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_null(strstr(out, "@bob"));
    assert_int_equal(req("GET", "/rooms/!lobby/members/@alice", NULL), 200);

    /* Cached now: !lobby's @alice and @carol (join), @bob and @dave (no value); !dev's @dave. */
    assert_int_equal(req("DELETE", "/rooms/!lobby", NULL), 200);
    assert_string_equal(out, "cleared: 4 cached membership(s) dropped");
    assert_int_equal(req("GET", "/rooms/!lobby/members/@alice", NULL), 404);
    assert_int_equal(req("GET", "/rooms/!lobby/members/@carol", NULL), 404);
    assert_int_equal(req("GET", "/rooms/!lobby/members", NULL), 200);
    assert_string_equal(out, "{\"room\": \"!lobby\", \"members\": []}");
    /* Another room's entries stayed: a hit, no load. */
    stats s2 = get_stats();
    assert_int_equal(req("GET", "/rooms/!dev/members/@dave", NULL), 200);
    assert_int_equal(get_stats().membership_loads, s2.membership_loads);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_dependent),
        cmocka_unit_test(test_tree),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
