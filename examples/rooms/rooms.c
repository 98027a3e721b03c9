/* examples/rooms/rooms.c: the example_rooms module: room memberships over an in-memory table,
 * memoized three ways: a tree cache (membership by room and user, dropped a room at a time), a
 * batch loader (display names, one lookup for every name a member list misses) and a dependent
 * cache (a room's member list, dropped whenever a display name it shows changes).
 *
 *   GET    /_modcache/client/rooms/v1/rooms/<room>/members         the member list (JSON)
 *   GET    /_modcache/client/rooms/v1/rooms/<room>/members/<user>  "join", or 404
 *   PUT    /_modcache/client/rooms/v1/rooms/<room>/members/<user>  body "join" or "leave"
 *   DELETE /_modcache/client/rooms/v1/rooms/<room>                 everyone leaves
 *   PUT    /_modcache/client/rooms/v1/users/<user>/name            body: the new display name
 *   GET    /_modcache/client/rooms/v1/stats                        how often each loader ran */
#include <modcache/module.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOMS_ROOT "/_modcache/client/rooms/v1"
#define ROOMS_MAX_ID 64
#define ROOMS_MAX_ROWS 256
#define ROOMS_MAX_MEMBERS 64

/* The "database": users with display names, and (room, user) memberships. */
typedef struct {
    char id[ROOMS_MAX_ID + 1];
    char name[ROOMS_MAX_ID + 1];
} rooms_user;

typedef struct {
    char room[ROOMS_MAX_ID + 1];
    char user[ROOMS_MAX_ID + 1];
} rooms_member;

typedef struct rooms_state {
    mc_api *api;
    pthread_mutex_t lock; /* the tables below; never held while calling a cached function */
    rooms_user users[ROOMS_MAX_ROWS];
    size_t nusers;
    rooms_member members[ROOMS_MAX_ROWS];
    size_t nmembers;
    mc_cached *membership;  /* tree: (room, user) -> "join" or no value */
    mc_cached *names;       /* (user) -> display name, with a batch loader */
    mc_cached *member_list; /* (room) -> JSON, depends on `names` */
    _Atomic unsigned long membership_loads, name_batches, names_loaded, member_list_loads;
} rooms_state;

/* A copy of an argument's string, NUL-terminated, cut at ROOMS_MAX_ID. */
static void rooms_arg(const mc_arg *a, char out[ROOMS_MAX_ID + 1])
{
    size_t n = a->v.s.len < ROOMS_MAX_ID ? a->v.s.len : ROOMS_MAX_ID;
    memcpy(out, a->v.s.ptr, n);
    out[n] = 0;
}

static const char *rooms_name_of(const rooms_state *st, const char *user)
{
    for (size_t i = 0; i < st->nusers; i++)
        if (!strcmp(st->users[i].id, user))
            return st->users[i].name;
    return NULL;
}

/* ------------------------------------------------------------------ the tree cache */

/* Keyed (room, user): a room's entries share their first field, so one prefix invalidation
 * drops them all (mc_cached_invalidate_prefix with the room alone). */
static int rooms_load_membership(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    rooms_state *st = self;
    (void)nargs;
    char room[ROOMS_MAX_ID + 1], user[ROOMS_MAX_ID + 1];
    rooms_arg(&args[0], room);
    rooms_arg(&args[1], user);
    atomic_fetch_add(&st->membership_loads, 1);
    bool joined = false;
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < st->nmembers && !joined; i++)
        joined = !strcmp(st->members[i].room, room) && !strcmp(st->members[i].user, user);
    pthread_mutex_unlock(&st->lock);
    return joined ? mc_load_set_copy(load, "join", 4) : mc_load_set_none(load);
}

/* ------------------------------------------------------------------ the batch loader */

/* Display names one at a time (mc_cached_call on a single miss)... */
static int rooms_load_name(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    rooms_state *st = self;
    (void)nargs;
    char user[ROOMS_MAX_ID + 1], name[ROOMS_MAX_ID + 1] = "";
    rooms_arg(&args[0], user);
    atomic_fetch_add(&st->names_loaded, 1);
    pthread_mutex_lock(&st->lock);
    const char *n = rooms_name_of(st, user);
    if (n)
        snprintf(name, sizeof name, "%s", n);
    pthread_mutex_unlock(&st->lock);
    return n ? mc_load_set_copy(load, name, strlen(name)) : mc_load_set_none(load);
}

/* ...or all the misses of one mc_cached_call_many in one lookup: keys already cached or being
 * loaded by another caller never reach it. Items left unset are cached as "no value". */
static int rooms_load_names(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    rooms_state *st = self;
    atomic_fetch_add(&st->name_batches, 1);
    atomic_fetch_add(&st->names_loaded, nkeys);
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < nkeys && rc == 0; i++) {
        char user[ROOMS_MAX_ID + 1];
        rooms_arg(&keys[i * nargs], user);
        const char *n = rooms_name_of(st, user);
        if (n)
            rc = mc_load_set_copy(mc_load_item(load, i), n, strlen(n));
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ------------------------------------------------------------------ the dependent cache */

/* A room's member list with display names: the names come from the `names` cache in one
 * batch call made through the load (mc_load_call_many), which records that this list depends
 * on each name entry it read: when one of them leaves the cache (a rename, an eviction, an
 * expiry, on any host's invalidation path), this room's list goes too, with no closure to
 * write. A name invalidated while this load runs keeps the list from being stored. */
static int rooms_load_member_list(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    rooms_state *st = self;
    (void)nargs;
    char room[ROOMS_MAX_ID + 1];
    rooms_arg(&args[0], room);
    atomic_fetch_add(&st->member_list_loads, 1);

    char users[ROOMS_MAX_MEMBERS][ROOMS_MAX_ID + 1];
    mc_arg keys[ROOMS_MAX_MEMBERS];
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < st->nmembers && n < ROOMS_MAX_MEMBERS; i++)
        if (!strcmp(st->members[i].room, room)) {
            snprintf(users[n], sizeof users[n], "%s", st->members[i].user);
            keys[n] = MC_ARG_S(users[n]);
            n++;
        }
    pthread_mutex_unlock(&st->lock);

    mc_value *names[ROOMS_MAX_MEMBERS];
    int rcs[ROOMS_MAX_MEMBERS];
    int rc = n ? mc_load_call_many(load, st->names, keys, n, 1, names, rcs) : 0;
    if (rc != 0)
        return rc;
    char json[4096];
    size_t len = (size_t)snprintf(json, sizeof json, "{\"room\": \"%s\", \"members\": [", room);
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] != 0) {
            rc = rcs[i];
            continue;
        }
        const char *name = mc_value_is_none(names[i]) ? "" : mc_value_data(names[i]);
        size_t nlen = mc_value_is_none(names[i]) ? 0 : mc_value_size(names[i]);
        if (len < sizeof json)
            len += (size_t)snprintf(json + len, sizeof json - len, "%s{\"user\": \"%s\", \"name\": \"%.*s\"}",
                                    i ? ", " : "", users[i], (int)nlen, name);
        mc_value_release(names[i]);
    }
    if (rc != 0)
        return rc; /* nothing stored; every caller waiting for this list gets the error */
    if (len < sizeof json)
        len += (size_t)snprintf(json + len, sizeof json - len, "]}");
    return len < sizeof json ? mc_load_set_copy(load, json, len) : MC_E2BIG;
}

/* ------------------------------------------------------------------ writes and invalidation */

static void rooms_set_membership(rooms_state *st, const char *room, const char *user, bool join)
{
    pthread_mutex_lock(&st->lock);
    size_t i = 0;
    while (i < st->nmembers && (strcmp(st->members[i].room, room) || strcmp(st->members[i].user, user)))
        i++;
    if (join && i == st->nmembers && st->nmembers < ROOMS_MAX_ROWS) {
        snprintf(st->members[i].room, sizeof st->members[i].room, "%s", room);
        snprintf(st->members[i].user, sizeof st->members[i].user, "%s", user);
        st->nmembers++;
    } else if (!join && i < st->nmembers) {
        st->members[i] = st->members[--st->nmembers];
    }
    pthread_mutex_unlock(&st->lock);
    /* After the write: one tree entry, and the room's list. */
    mc_api_invalidate_cache(st->api, st->membership, (const mc_arg[]){MC_ARG_S(room), MC_ARG_S(user)}, 2);
    mc_api_invalidate_cache(st->api, st->member_list, (const mc_arg[]){MC_ARG_S(room)}, 1);
}

/* Everyone leaves: every (room, *) entry of the tree goes with one prefix invalidation. */
static size_t rooms_clear_room(rooms_state *st, const char *room)
{
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < st->nmembers;)
        if (!strcmp(st->members[i].room, room))
            st->members[i] = st->members[--st->nmembers];
        else
            i++;
    pthread_mutex_unlock(&st->lock);
    size_t removed = 0;
    mc_cached_invalidate_prefix(st->membership, (const mc_arg[]){MC_ARG_S(room)}, 1, &removed);
    mc_api_invalidate_cache(st->api, st->member_list, (const mc_arg[]){MC_ARG_S(room)}, 1);
    return removed;
}

/* A new display name: its cache entry is invalidated, and with it (through the dependencies
 * recorded above) every member list that shows it. */
static void rooms_rename(rooms_state *st, const char *user, const char *name, size_t len)
{
    pthread_mutex_lock(&st->lock);
    size_t i = 0;
    while (i < st->nusers && strcmp(st->users[i].id, user))
        i++;
    if (i == st->nusers && st->nusers < ROOMS_MAX_ROWS)
        snprintf(st->users[st->nusers++].id, sizeof st->users[i].id, "%s", user);
    if (i < st->nusers)
        snprintf(st->users[i].name, sizeof st->users[i].name, "%.*s", (int)len, name);
    pthread_mutex_unlock(&st->lock);
    mc_api_invalidate_cache(st->api, st->names, (const mc_arg[]){MC_ARG_S(user)}, 1);
}

/* ------------------------------------------------------------------ HTTP */

static void rooms_text(mc_http_response *resp, unsigned status, const char *text, size_t len)
{
    mc_http_set_status(resp, status);
    mc_http_add_header(resp, "Content-Type", "text/plain");
    mc_http_set_body(resp, text, len);
}

/* The next path segment into seg (at most ROOMS_MAX_ID bytes); the rest after it. */
static const char *rooms_segment(const char *p, char seg[ROOMS_MAX_ID + 1])
{
    if (*p != '/')
        return NULL;
    p++;
    size_t n = strcspn(p, "/");
    if (n == 0 || n > ROOMS_MAX_ID)
        return NULL;
    memcpy(seg, p, n);
    seg[n] = 0;
    return p + n;
}

static void rooms_serve(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    rooms_state *st = ud;
    const char *p = req->path + strlen(ROOMS_ROOT);
    bool get = !strcmp(req->method, "GET"), put = !strcmp(req->method, "PUT");
    char a[ROOMS_MAX_ID + 1], room[ROOMS_MAX_ID + 1], user[ROOMS_MAX_ID + 1];
    if (!strcmp(p, "/stats") && get) {
        char body[256];
        int n = snprintf(body, sizeof body,
                         "{\"membership_loads\": %lu, \"name_batches\": %lu, \"names_loaded\": %lu, "
                         "\"member_list_loads\": %lu}",
                         atomic_load(&st->membership_loads), atomic_load(&st->name_batches),
                         atomic_load(&st->names_loaded), atomic_load(&st->member_list_loads));
        rooms_text(resp, 200, body, (size_t)n);
        return;
    }
    if (!(p = rooms_segment(p, a)))
        goto not_found;
    if (!strcmp(a, "users") && (p = rooms_segment(p, user)) && !strcmp(p, "/name")) {
        if (!put) {
            mc_http_method_not_allowed(resp, "PUT");
            return;
        }
        rooms_rename(st, user, req->body, req->body_len);
        rooms_text(resp, 200, "renamed", 7);
        return;
    }
    if (strcmp(a, "rooms") != 0 || !(p = rooms_segment(p, room)))
        goto not_found;
    if (!*p) {
        if (strcmp(req->method, "DELETE") != 0) {
            mc_http_method_not_allowed(resp, "DELETE");
            return;
        }
        char body[64];
        int n = snprintf(body, sizeof body, "cleared: %zu cached membership(s) dropped", rooms_clear_room(st, room));
        rooms_text(resp, 200, body, (size_t)n);
        return;
    }
    mc_value *v = NULL;
    if (!strcmp(p, "/members")) {
        if (!get) {
            mc_http_method_not_allowed(resp, "GET");
            return;
        }
        if (MC_CACHED_CALL(st->member_list, &v, MC_ARG_S(room)) != 0) {
            rooms_text(resp, 503, "unavailable", 11);
            return;
        }
        mc_http_add_header(resp, "Content-Type", "application/json");
        mc_http_set_body(resp, mc_value_data(v), mc_value_size(v));
        mc_value_release(v);
        return;
    }
    if (strncmp(p, "/members", 8) != 0 || !(p = rooms_segment(p + 8, user)) || *p)
        goto not_found;
    if (put) {
        bool join = req->body_len == 4 && !memcmp(req->body, "join", 4);
        if (!join && !(req->body_len == 5 && !memcmp(req->body, "leave", 5))) {
            rooms_text(resp, 400, "join or leave", 13);
            return;
        }
        rooms_set_membership(st, room, user, join);
        rooms_text(resp, 200, join ? "joined" : "left", join ? 6 : 4);
        return;
    }
    if (!get) {
        mc_http_method_not_allowed(resp, "GET, PUT");
        return;
    }
    if (MC_CACHED_CALL(st->membership, &v, MC_ARG_S(room), MC_ARG_S(user)) != 0) {
        rooms_text(resp, 503, "unavailable", 11);
        return;
    }
    if (mc_value_is_none(v))
        rooms_text(resp, 404, "not a member", 12);
    else
        rooms_text(resp, 200, mc_value_data(v), mc_value_size(v));
    mc_value_release(v);
    return;
not_found:
    rooms_text(resp, 404, "not found", 9);
}

/* ------------------------------------------------------------------ lifecycle */

static void rooms_fini(void *state)
{
    rooms_state *st = state;
    if (!st)
        return;
    /* Either order is safe: the lists' dependencies on `names` stop reaching a destroyed
     * list function, and destroying `names` first would invalidate the lists. */
    mc_cached_destroy(st->member_list);
    st->member_list = NULL;
    mc_cached_destroy(st->names);
    mc_cached_destroy(st->membership);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static void rooms_seed(rooms_state *st)
{
    static const char *const users[][2] = {
        {"@alice", "Alice"}, {"@bob", "Bob"}, {"@carol", "Carol"}, {"@dave", "Dave"}};
    static const char *const members[][2] = {
        {"!lobby", "@alice"}, {"!lobby", "@bob"}, {"!lobby", "@carol"}, {"!dev", "@alice"}, {"!dev", "@dave"}};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        snprintf(st->users[i].id, sizeof st->users[i].id, "%s", users[i][0]);
        snprintf(st->users[i].name, sizeof st->users[i].name, "%s", users[i][1]);
    }
    st->nusers = sizeof users / sizeof users[0];
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        snprintf(st->members[i].room, sizeof st->members[i].room, "%s", members[i][0]);
        snprintf(st->members[i].user, sizeof st->members[i].user, "%s", members[i][1]);
    }
    st->nmembers = sizeof members / sizeof members[0];
}

static int rooms_init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    rooms_state *st = calloc(1, sizeof *st);
    if (!st)
        return MC_ENOMEM;
    st->api = api;
    pthread_mutex_init(&st->lock, NULL);
    rooms_seed(st);
    mc_registry *reg = mc_api_registry(api);
    int rc = mc_cached_create(&MC_CACHED_OPTS("example_rooms.get_membership", 10000, .tree = true, .registry = reg),
                              rooms_load_membership, st, &st->membership);
    if (rc == 0)
        rc = mc_cached_create(&MC_CACHED_OPTS("example_rooms.get_display_name", 10000,
                                              .batch_loader = rooms_load_names, .registry = reg),
                              rooms_load_name, st, &st->names);
    if (rc == 0)
        rc = mc_cached_create(&MC_CACHED_OPTS("example_rooms.get_member_list", 1000, .registry = reg),
                              rooms_load_member_list, st, &st->member_list);
    mc_cached *fns[] = {st->membership, st->names, st->member_list};
    for (size_t i = 0; i < 3 && rc == 0; i++)
        rc = mc_api_register_cached_function(api, fns[i]);
    if (rc == 0)
        rc = mc_api_register_web_resource(api, ROOMS_ROOT, rooms_serve, st);
    if (rc != 0) {
        snprintf(err->message, sizeof err->message, "cannot set up: %s", mc_strerror(rc));
        rooms_fini(st);
        return rc;
    }
    mc_api_log(api, MC_LOG_INFO, "serving %s: memberships (tree), display names (batch), member lists (dependent)",
               ROOMS_ROOT);
    *state = st;
    return 0;
}

MC_MODULE("example_rooms", NULL, rooms_init, rooms_fini, NULL);
