/* mcctl invalidate --redis: publishes one invalidation on the fleet's Redis stream through a
 * publish-only bus, so every host reading the stream applies it, without talking to any host. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modcache/bus.h>

#include "mcctl.h"

/* The bus logs from its own threads; mcctl keeps the last complaint for its one message. */
typedef struct {
    pthread_mutex_t lock;
    char last[256];
} quiet_log;

static void on_bus_log(void *ud, int level, const char *message)
{
    quiet_log *q = ud;
    if (level < 2)
        return;
    /* What failed, without the advice meant for hosts that follows a ';'. */
    size_t n = strcspn(message, ";");
    pthread_mutex_lock(&q->lock);
    snprintf(q->last, sizeof q->last, "%.*s", (int)n, message);
    pthread_mutex_unlock(&q->lock);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Check each KEY against the function's key shape as the live hosts announced it, before
 * anything is written: MCCTL_OK with *subtrees set when some KEY names a subtree of a tree
 * function, or MCCTL_BAD_KEY (said on stderr). When no live host has announced the function,
 * or they disagree, nothing is checked here (a warning says so) and each host judges the KEY. */
static int check_shape(const mcctl_args *a, const char *stream, const mcctl_keys *keys, unsigned timeout_ms,
                       bool *subtrees)
{
    const char *name = a->pos[0];
    *subtrees = false;
    mc_bus_shape sh;
    mc_error err = {0};
    if (mc_bus_function_shape(a->redis, stream, name, timeout_ms, &sh, &err) != 0)
        return MCCTL_OK; /* unreachable or not ours: the publish reports it */
    if (sh.live_hosts == 0)
        return MCCTL_OK; /* the no-reader warning follows the publish */
    if (sh.hosts == 0 || sh.disagree) {
        mcctl_say("warning: %s; the KEY length was not checked, each host checks it (and ignores a KEY of the "
                  "wrong length)",
                  sh.hosts == 0 ? "none of the live hosts reading the stream has registered this function (or "
                                  "announced it yet)"
                                : "the live hosts reading the stream register this function with different key shapes");
        return MCCTL_OK;
    }
    for (size_t i = 0; i < keys->n; i++) {
        size_t f = keys->fields[i];
        bool exact = sh.key_length == 0 ? !sh.tree : f == sh.key_length;
        if (exact)
            continue;
        if (sh.tree && (sh.key_length == 0 || f < sh.key_length)) {
            *subtrees = true;
            continue;
        }
        mcctl_say("refused KEY %zu of %s: it has %zu field%s; %s takes %zu%s (as the %zu live host%s reading %s "
                  "registered it)",
                  i + 1, name, f, f == 1 ? "" : "s", name, sh.key_length, sh.tree ? " (or fewer, for a subtree)" : "",
                  sh.hosts, sh.hosts == 1 ? "" : "s", stream);
        mcctl_say("nothing was sent. A KEY has as many fields as the function's keys, or on a tree function fewer "
                  "(a subtree)");
        return MCCTL_BAD_KEY;
    }
    return MCCTL_OK;
}

int mcctl_cmd_invalidate_redis(const mcctl_args *a, const mcctl_keys *keys)
{
    const char *name = a->pos[0];
    const char *stream = a->stream ? a->stream : MCCTL_DEFAULT_STREAM;
    const long long start = now_ms();
    quiet_log q = {.lock = PTHREAD_MUTEX_INITIALIZER};

    mc_bus_options o;
    mc_bus_options_init(&o);
    o.address = a->redis;
    o.stream = stream;
    o.instance = a->instance ? a->instance : MCCTL_DEFAULT_INSTANCE;
    o.registry = NULL; /* publish only: mcctl applies nothing and reads nothing */
    /* Trimming is the hosts' business (their configured maxlen); a one-off publisher that
     * trimmed with its own bound could cut entries lagging hosts still need. */
    o.maxlen = 0;
    /* Starting and stopping each may wait for one connection attempt, and stopping waits that
     * long for the queue: a slice of the budget for them, the rest for the flush, keeps the whole
     * run within --timeout. */
    unsigned half = a->timeout_ms / 2, slice = a->timeout_ms / 4;
    if (slice < 100)
        slice = half < 100 ? half : 100;
    if (slice == 0)
        slice = 1;
    o.timeout_ms = slice;
    if (o.backoff_max_ms > slice)
        o.backoff_max_ms = slice > o.backoff_min_ms ? slice : o.backoff_min_ms;
    o.log = on_bus_log;
    o.log_ud = &q;

    bool subtrees = false;
    if (!a->all) {
        int bad = check_shape(a, stream, keys, slice, &subtrees);
        if (bad != MCCTL_OK)
            return bad;
    }

    mc_bus *bus = NULL;
    mc_error err = {0};
    int rc = mc_bus_start(&o, &bus, &err);
    if (rc != 0) {
        mcctl_say("cannot start publishing to %s: %s", a->redis, err.message[0] ? err.message : mc_strerror(rc));
        return rc == MC_EINVAL ? MCCTL_USAGE : MCCTL_FAIL;
    }

    if (a->all) {
        rc = mc_bus_publish_all(bus, name);
    } else {
        rc = (subtrees ? mc_bus_publish_subtrees : mc_bus_publish_keys)(bus, name, (const char *const *)keys->json,
                                                                        keys->n, &err);
    }
    int status = MCCTL_OK;
    if (rc != 0) {
        /* The keys were checked already; a refusal here is the bus disagreeing with the name. */
        mcctl_say("cannot publish the invalidation of %s: %s", name, err.message[0] ? err.message : mc_strerror(rc));
        status = rc == MC_EPARSE ? MCCTL_BAD_KEY : MCCTL_FAIL;
    } else {
        /* Wait in short slices: a stream that is unusable (its key holds another type) keeps
         * the message queued for good, so it is reported at once rather than at the timeout. */
        long long deadline = start + (long long)a->timeout_ms - slice;
        bool unusable = false;
        for (;;) {
            long long left = deadline - now_ms();
            rc = mc_bus_flush(bus, left > 50 ? 50u : left > 1 ? (unsigned)left : 1u);
            if (rc != MC_ETIMEDOUT || now_ms() >= deadline)
                break;
            mc_bus_stats st;
            mc_bus_stats_get(bus, &st);
            if ((unusable = !st.stream_usable))
                break;
        }
        if (unusable) {
            pthread_mutex_lock(&q.lock);
            mcctl_say("Redis at %s refused the invalidation%s%s%s; is %s a stream? (--stream NAME names it)",
                      a->redis, q.last[0] ? " (" : "", q.last, q.last[0] ? ")" : "", stream);
            pthread_mutex_unlock(&q.lock);
            status = MCCTL_FAIL;
        } else if (rc == MC_ETIMEDOUT) {
            pthread_mutex_lock(&q.lock);
            mcctl_say("cannot reach Redis at %s within %u ms%s%s%s; the invalidation was not confirmed written. "
                      "Is redis-server running there? (--redis HOST:PORT names it, --timeout MS waits longer)",
                      a->redis, a->timeout_ms, q.last[0] ? " (" : "", q.last, q.last[0] ? ")" : "");
            pthread_mutex_unlock(&q.lock);
            status = MCCTL_UNREACHABLE;
        } else if (rc != 0) {
            mcctl_say("publishing to %s failed: %s", a->redis, mc_strerror(rc));
            status = MCCTL_FAIL;
        }
    }
    mc_bus_stop(bus);
    pthread_mutex_destroy(&q.lock);
    if (status != MCCTL_OK)
        return status;

    /* Who will apply it: the hosts whose announcement beside this stream is alive. */
    mc_bus_host *hosts = NULL;
    size_t nhosts = 0;
    long long elapsed = now_ms() - start;
    unsigned left = elapsed < (long long)a->timeout_ms ? (unsigned)(a->timeout_ms - elapsed) : 1u;
    mc_error herr = {0};
    bool known = mc_bus_hosts_list(a->redis, stream, left, &hosts, &nhosts, &herr) == 0;
    mc_bus_hosts_free(hosts);
    if (!known)
        mcctl_say("warning: published, but cannot tell which hosts read %s: %s", stream, herr.message);
    else if (nhosts == 0)
        mcctl_say("warning: no live host reads %s at %s, so nothing applied it; do the hosts use another stream "
                  "(invalidation.redis.stream, --stream NAME)? `mcctl --redis %s hosts` lists the readers",
                  stream, a->redis, a->redis);
    if (a->json) {
        printf("{\"published\": true, \"redis\": ");
        mcctl_print_json_string(a->redis);
        printf(", \"stream\": ");
        mcctl_print_json_string(stream);
        printf(", \"cache\": ");
        mcctl_print_json_string(name);
        if (a->all)
            printf(", \"invalidated\": \"all\"");
        else
            printf(", \"invalidated\": %zu", keys->n);
        if (known)
            printf(", \"live_hosts\": %zu}\n", nhosts);
        else
            printf(", \"live_hosts\": null}\n");
    } else {
        char readers[96];
        if (known)
            snprintf(readers, sizeof readers, "%zu live host%s", nhosts, nhosts == 1 ? "" : "s");
        else
            snprintf(readers, sizeof readers, "every host");
        if (a->all)
            printf("invalidated all entries of %s on %s reading %s at %s\n", name, readers, stream, a->redis);
        else
            printf("invalidated %zu key%s of %s on %s reading %s at %s\n", keys->n, keys->n == 1 ? "" : "s", name,
                   readers, stream, a->redis);
    }
    return fflush(stdout) == 0 ? MCCTL_OK : MCCTL_FAIL;
}

void mcctl_print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* "1.2s", "340ms", "5m" */
static void human_ms(uint64_t ms, char *out, size_t cap)
{
    if (ms < 1000)
        snprintf(out, cap, "%llums", (unsigned long long)ms);
    else if (ms < 60000)
        snprintf(out, cap, "%.1fs", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(out, cap, "%llum", (unsigned long long)(ms / 60000));
    else
        snprintf(out, cap, "%lluh", (unsigned long long)(ms / 3600000));
}

int mcctl_cmd_hosts(const mcctl_args *a)
{
    const char *stream = a->stream ? a->stream : MCCTL_DEFAULT_STREAM;
    mc_bus_host *h = NULL;
    size_t n = 0;
    mc_error err = {0};
    int rc = mc_bus_hosts_list(a->redis, stream, a->timeout_ms, &h, &n, &err);
    if (rc != 0) {
        mcctl_say("cannot list the hosts reading %s: %s%s", stream, err.message[0] ? err.message : mc_strerror(rc),
                  rc == MC_EIO ? "; is redis-server running there? (--redis HOST:PORT names it)" : "");
        return rc == MC_EIO ? MCCTL_UNREACHABLE : MCCTL_FAIL;
    }
    if (a->json) {
        printf("{\"redis\": ");
        mcctl_print_json_string(a->redis);
        printf(", \"stream\": ");
        mcctl_print_json_string(stream);
        printf(", \"hosts\": [");
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"instance\": ", i ? ", " : "");
            mcctl_print_json_string(h[i].instance);
            printf(", \"last_id\": ");
            mcctl_print_json_string(h[i].last_id);
            printf(", \"lag_entries\": %llu, \"lag_ms\": %llu, \"last_seen_ms\": %llu, \"age_ms\": %llu, "
                   "\"started_ms\": %llu, \"link_up\": %s, \"hostname\": ",
                   (unsigned long long)h[i].lag_entries, (unsigned long long)h[i].lag_ms,
                   (unsigned long long)h[i].last_seen_ms, (unsigned long long)h[i].age_ms,
                   (unsigned long long)h[i].started_ms, h[i].link_up ? "true" : "false");
            mcctl_print_json_string(h[i].hostname);
            printf(", \"pid\": %ld, \"version\": ", h[i].pid);
            mcctl_print_json_string(h[i].version);
            printf("}");
        }
        printf("]}\n");
    } else {
        int w = 8;
        for (size_t i = 0; i < n; i++)
            if ((int)strlen(h[i].instance) > w)
                w = (int)strlen(h[i].instance);
        printf("%-*s  %-22s %7s %7s %7s  %-4s  %s\n", w, "INSTANCE", "LAST ID", "LAG", "BEHIND", "SEEN", "LINK",
               "HOST, PID, VERSION");
        for (size_t i = 0; i < n; i++) {
            char behind[16], seen[16];
            human_ms(h[i].lag_ms, behind, sizeof behind);
            human_ms(h[i].age_ms, seen, sizeof seen);
            printf("%-*s  %-22s %7llu %7s %7s  %-4s  %s, %ld, %s\n", w, h[i].instance, h[i].last_id,
                   (unsigned long long)h[i].lag_entries, behind, seen, h[i].link_up ? "up" : "down", h[i].hostname,
                   h[i].pid, h[i].version);
        }
        if (n == 0)
            mcctl_say("no live host reads %s at %s", stream, a->redis);
    }
    mc_bus_hosts_free(h);
    return fflush(stdout) == 0 ? MCCTL_OK : MCCTL_FAIL;
}
