/* modcache/bus.h: the invalidation bus. Invalidations made in one process reach every process
 * reading the same Redis stream, and are applied there to the registry's functions by name.
 *
 * Messages are stream entries (XADD with an approximate MAXLEN) with the fields
 *   v        "1", or "2" when a key is a subtree (shorter than the function's keys, on a tree
 *            function); readers apply both alike, judging each tuple by its length against
 *            their function (a tuple of the wrong length is refused, counted as ignored and
 *            logged); "2" keeps readers older than subtrees from taking a prefix for a key.
 *            Entries of other versions are ignored.
 *   instance the sender's configured instance name (for people reading the stream)
 *   sender   a random identifier of one running bus (readers skip their own entries)
 *   cache    the registered function's name
 *   op       "keys" or "all"
 *   keys     (op "keys") a JSON array of keys in JSON tuple form: [["@alice:example.com"], ...]
 *
 * A bus has two connections, each on its own thread: a sender that drains a bounded queue with
 * pipelined XADDs, and a reader that blocks in XREAD from the last id it applied. Publishing
 * only appends to the queue (a mutex held for a copy): it never waits for Redis, and nothing in
 * the bus touches a cache's read path.
 *
 * An unusable stream (the key replaced by one of another type: WRONGTYPE; a persistent ERR
 * reply; an ACL that denies the bus's commands: NOPERM) is an outage too: the sender keeps every message queued and retries with backoff
 * (the queue collapsing as below), the reader treats it as a lost link (on recovery: catch-up
 * when continuity is proven, a full flush otherwise, always a full flush after WRONGTYPE since
 * the stream was overwritten), and the bus logs one line when the outage starts, with its
 * cause, and one when it ends. mc_bus_stats.stream_usable shows the state.
 *
 * Faults. When Redis goes away both threads log once and reconnect with exponential backoff
 * (backoff_min_ms doubling to backoff_max_ms). Messages published meanwhile wait in the queue;
 * when it holds queue_limit messages, the queue is collapsed into one "all" message per cache
 * name it held, plus the new one, so the bound is kept without losing an invalidation. On
 * reconnect the reader resumes after its last id when it can prove nothing was lost: the
 * stream still exists and its max-deleted-entry-id (XINFO STREAM) is not past that id. Otherwise
 * (trimmed past it, stream deleted or recreated) it invalidates every registered function
 * ("full flush"), logs it, and goes on from the stream's end. A reader that never reached Redis
 * since it started does the same at its first connection, because its caches may hold values
 * whose invalidations it never saw.
 *
 * A new reader starts at the stream's end: history written before it connected is not replayed.
 *
 * Thread safety: every function may be called from any thread, except mc_bus_stop (no other call
 * on the bus may be running or follow). */
#ifndef MODCACHE_BUS_H
#define MODCACHE_BUS_H

#include "cached.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An invalidation bus (opaque), owned by the caller of mc_bus_start (mc_bus_stop). */
typedef struct mc_bus mc_bus;

/* Where a reader stands in its stream: what a snapshot saves (modcache/snapshot.h), so that
 * a restarted host can resume after the last invalidation its entries had seen. */
typedef struct mc_bus_position {
    char stream[256];       /* the stream key */
    char last_id[48];       /* the last entry applied ("0-0": none, the stream was empty or absent) */
    /* The stream's entries-added counter (XINFO STREAM) when last_id was applied: entries are
     * counted from the stream's creation, so a stream deleted and created again is told from
     * the one the position was taken in. */
    uint64_t entries_added;
} mc_bus_position;

/* Receives the bus's log lines (level as mc_log_level: 0 debug, 1 info, 2 warn, 3 error). */
typedef void (*mc_bus_log_fn)(void *ud, int level, const char *message);

/* Options of mc_bus_start; mc_bus_options_init fills the defaults given below. */
typedef struct mc_bus_options {
    const char *address;       /* "host:port" or a bare host for port 6379 (default "127.0.0.1:6379") */
    const char *stream;        /* stream key (default "modcache:invalidations") */
    uint64_t maxlen;           /* approximate MAXLEN of every XADD (default 100000; 0: no trim) */
    const char *instance;      /* instance name written with each message (default "modcache") */
    /* Where received invalidations are applied (mc_registry_apply, as remote ones), and whose
     * invalidations are sent: the bus subscribes to it (mc_registry_subscribe) until
     * mc_bus_stop, so everything applied through the registry here reaches the stream.
     * NULL: publish only (no reader thread). */
    mc_registry *registry;
    size_t queue_limit;        /* messages waiting while Redis is away (default 10000) */
    unsigned backoff_min_ms;   /* first reconnect delay (default 100) */
    unsigned backoff_max_ms;   /* longest reconnect delay (default 5000) */
    unsigned timeout_ms;       /* connect and command timeout (default 2000) */
    mc_bus_log_fn log;         /* NULL: "<time> <level> [bus] <message>" lines on stderr, info and
                                  above (mc_logger_bus_fn with the defaults; modcache/log.h) */
    void *log_ud;
    /* A bus that reads (registry set) announces itself beside the stream every this many ms
     * (default MC_BUS_ANNOUNCE_DEFAULT_MS): see mc_bus_hosts_list. Publish-only buses do not. */
    unsigned announce_interval_ms;
    /* Bounded staleness (0: off, the default): when the reader cannot confirm that it has
     * applied everything in the stream for longer than 3/4 of this (link down, stream
     * unusable, catch-up not done), the registry's functions bypass their caches
     * (mc_registry_set_bypass) until it can; then they are flushed and used again. With a
     * registry only. Confirmation comes with each read that reaches the stream's tail; the
     * reader then blocks at most max_staleness_ms / 8 (10 ms to 1 s) per read. */
    unsigned max_staleness_ms;
    /* Resume from this position (copied) instead of the stream's end, if continuity can be
     * proven: the same stream key, the stream not deleted or recreated since (its
     * entries-added not below the saved one, the saved entry still there or trimmed exactly up
     * to it) and nothing after the saved entry trimmed. The reader waits for mc_bus_resume
     * before it connects, so that the caller restores its entries first; then it replays
     * every entry after the position, or, continuity not proven, invalidates every registered
     * function (a full flush). NULL: start at the stream's end. */
    const mc_bus_position *resume;
} mc_bus_options;

/* How often a reading bus announces itself by default; its announcement expires after three
 * intervals without one. */
#define MC_BUS_ANNOUNCE_DEFAULT_MS 5000u

/* Fill *opts with the defaults listed in mc_bus_options. */
MC_API void mc_bus_options_init(mc_bus_options *opts);

/* Start a bus: copies the options, tries one connection per thread, then returns; an
 * unreachable Redis is not an error (the threads keep trying; see mc_bus_stats.link_up).
 * Returns 0; MC_EINVAL (bad address, empty stream or instance, backoff_min > backoff_max);
 * MC_ENOMEM; MC_EIO (a thread could not start). */
MC_API int mc_bus_start(const mc_bus_options *opts, mc_bus **out, mc_error *err);

/* Stop both threads (waiting at most timeout_ms for queued messages to be sent) and free the
 * bus. Messages still queued after that are dropped and counted in the log. NULL is a no-op. */
MC_API void mc_bus_stop(mc_bus *bus);

/* Queue an invalidation of `nkeys` keys of the function named `cache`, each key in JSON tuple
 * form (checked here: MC_EPARSE with err naming the key), written as format version 1 (the
 * bus cannot know the key length: readers judge each tuple). Nothing is applied locally:
 * these are for publishers without the function (mcctl --redis); a process with the
 * function applies through its registry, which hands the invalidation to the bus. Returns 0,
 * MC_EINVAL, MC_EPARSE, MC_ENOMEM. */
MC_API int mc_bus_publish_keys(mc_bus *bus, const char *cache, const char *const *json_keys,
                               size_t nkeys, mc_error *err);
/* The same, written as format version 2: some of the tuples are shorter than the function's
 * key and invalidate subtrees of a tree function (what mcctl --redis writes once the live hosts'
 * announcements showed it such a function). Readers that predate subtrees refuse the entry
 * rather than take a prefix for a key. */
MC_API int mc_bus_publish_subtrees(mc_bus *bus, const char *cache, const char *const *json_keys,
                                   size_t nkeys, mc_error *err);
/* The same for an encoded key tuple (mc_key_encode). */
MC_API int mc_bus_publish_args(mc_bus *bus, const char *cache, const mc_arg *args, size_t nargs);
/* Queue an invalidation of every entry of the function named `cache`. */
MC_API int mc_bus_publish_all(mc_bus *bus, const char *cache);

/* Wait until every message queued before this call has been handed to Redis: written, or
 * refused by it for good (counted in mc_bus_stats.failed and logged). Returns 0;
 * MC_ETIMEDOUT when timeout_ms passed first (Redis unreachable, for instance). */
MC_API int mc_bus_flush(mc_bus *bus, unsigned timeout_ms);

/* The reader's position now: the last entry it applied (the stream's entries-added with it).
 * Read it before copying out entries that must be consistent with it: every invalidation up to
 * the position was applied before this returns. Returns 0; MC_ENOENT when the reader has no
 * position yet (it never reached Redis, or waits for mc_bus_resume) or the bus has no
 * reader; MC_EINVAL. */
MC_API int mc_bus_position_get(mc_bus *bus, mc_bus_position *out);

/* A position as text ("<stream>\n<last id>\n<entries-added>", at most 320 bytes) and back.
 * encode returns the length written (buf of cap bytes, NUL-terminated) or MC_ERANGE;
 * decode returns 0 or MC_EPARSE for anything else. */
MC_API int mc_bus_position_encode(const mc_bus_position *pos, char *buf, size_t cap);
MC_API int mc_bus_position_decode(const void *data, size_t len, mc_bus_position *out);

/* Why mc_bus_resume could not resume (its *reason; "" when it did). */
#define MC_BUS_RESUME_OTHER_STREAM "other_stream"     /* the position is of another stream key */
#define MC_BUS_RESUME_DELETED "stream_deleted"        /* the stream is gone */
#define MC_BUS_RESUME_RECREATED "stream_recreated"    /* the key holds another stream now */
#define MC_BUS_RESUME_TRIMMED "stream_trimmed"        /* entries after the position were trimmed */
#define MC_BUS_RESUME_UNUSABLE "stream_unusable"      /* the key held another type meanwhile */
#define MC_BUS_RESUME_UNREACHABLE "stream_unreachable" /* Redis not reached within the timeout */

/* With mc_bus_options.resume: let the reader connect and wait until it has applied every
 * entry after the position (returns 0) or up to timeout_ms. *reason (may be NULL) gets "" or
 * one of the MC_BUS_RESUME_* words and err a sentence. Returns 0; MC_ECANCELED (continuity
 * not proven: every registered function was invalidated, the reader goes on from the
 * stream's end); MC_ETIMEDOUT (Redis not reached or the replay not finished: the caller must
 * drop what it restored; the reader, once it connects, goes on as after any start whose
 * first connection came late, with a full flush); MC_EINVAL (no resume position, or called
 * twice). Call once, from the thread that started the bus. */
MC_API int mc_bus_resume(mc_bus *bus, unsigned timeout_ms, const char **reason, mc_error *err);

/* Counters of a bus since it started, and its state now (mc_bus_stats_get). */
typedef struct mc_bus_stats {
    uint64_t sent;         /* messages written to the stream */
    uint64_t received;     /* entries read from the stream from other senders */
    uint64_t own;          /* entries read back that this bus sent (skipped) */
    uint64_t applied;      /* received entries applied to a registered function */
    uint64_t ignored;      /* received entries for unknown names, malformed, or refused (a key of
                            * the wrong length for the function; logged) */
    uint64_t catchups;     /* reconnects that resumed after the last applied id */
    uint64_t full_flushes; /* times every registered function was invalidated */
    uint64_t collapsed;    /* times the outage queue was collapsed into "all" messages */
    uint64_t reconnects;   /* connections made after a failure (both threads) */
    uint64_t failed;       /* messages lost because the queue could not grow (out of memory);
                            * error replies never drop a message (see `resent`) */
    uint64_t queued;       /* messages waiting to be sent now */
    bool link_up;          /* both connections are up */
    char last_id[48];      /* last stream id the reader handled ("0-0" before any) */
    /* Filled by mc_bus_stats_get_sized only (programs built against headers from before
     * these fields call the unsized symbol, which stops at `resent`). */
    uint64_t resent;         /* messages written again after a failed or unconfirmed write
                              * (counted in `sent` once, here for every write after the first) */
    uint64_t stream_outages; /* times the stream became unusable (WRONGTYPE, persistent ERR, NOPERM) */
    bool stream_usable;      /* false while either connection finds the stream unusable */
    bool bypassing;          /* max_staleness: the registry's caches are bypassed now */
    uint64_t bypass_periods; /* times the bypass began */
    uint64_t unconfirmed_ms; /* max_staleness: since the reader last confirmed it was current */
} mc_bus_stats;

/* Snapshot of a bus's counters (zeros for a NULL bus), filling the fields up to last_id: the
 * symbol programs built against older headers call. New code gets mc_bus_stats_get_sized
 * through the macro below. */
MC_API void mc_bus_stats_get(mc_bus *bus, mc_bus_stats *out);
/* Snapshot of every field a struct of `size` bytes holds (sizeof *out). */
MC_API void mc_bus_stats_get_sized(mc_bus *bus, mc_bus_stats *out, size_t size);
/* mc_bus_stats_get(bus, out): the sized snapshot, for the struct the caller was built with. */
#define mc_bus_stats_get(bus, out) mc_bus_stats_get_sized((bus), (out), sizeof *(out))

/* ---- the fleet: who reads a stream ----
 * Every reading bus keeps, beside its stream S, a hash "S:host:<instance>" (the fields below;
 * it expires three announcement intervals after the last one) and its instance name in the
 * sorted set "S:hosts" (scored by the last announcement, in ms since the epoch). A clean stop
 * removes both. Instance names should be unique per stream: two hosts with one name share one
 * announcement. */
typedef struct mc_bus_host {
    char instance[128];
    char last_id[48];      /* the last stream id it applied ("0-0" before any) */
    uint64_t lag_entries;  /* stream entries after last_id when it announced (at most 1000) */
    uint64_t lag_ms;       /* how long the oldest of them had waited then, in ms (0: caught up) */
    uint64_t last_seen_ms; /* its last announcement, ms since the epoch */
    uint64_t age_ms;       /* how long ago that was, when listed */
    uint64_t started_ms;   /* when its bus started */
    bool link_up;          /* both its connections to Redis were up */
    char hostname[128];
    long pid;
    char version[32];      /* its libmodcache version */
} mc_bus_host;

/* The live hosts reading `stream` (NULL: "modcache:invalidations") at Redis `address`, in name
 * order: those whose announcement has not expired. *hosts (free with mc_bus_hosts_free) and *n.
 * Returns 0; MC_EINVAL (a bad address; the keys hold other types); MC_EIO (Redis unreachable,
 * err says why); MC_ENOMEM. Any thread; its own connection, closed before returning. */
MC_API int mc_bus_hosts_list(const char *address, const char *stream, unsigned timeout_ms, mc_bus_host **hosts,
                             size_t *n, mc_error *err);
MC_API void mc_bus_hosts_free(mc_bus_host *hosts);

/* Each reading bus also announces the key shape of every function its registry holds, in the
 * hash "S:host:<instance>:functions" (field: the function's name; value: "<key length> tree"
 * or "<key length> exact", key length 0 when the function declares none), written with each
 * announcement (and at once by mc_bus_announce) and expiring with it. */
typedef struct mc_bus_shape {
    size_t live_hosts; /* hosts whose announcement beside the stream is alive */
    size_t hosts;      /* of those, the ones that have registered the function */
    size_t key_length; /* its key length as the first of them announced it (0: any) */
    bool tree;         /* whether shorter tuples invalidate subtrees there */
    bool disagree;     /* some of them announced another shape */
} mc_bus_shape;

/* How the live hosts reading `stream` (NULL: "modcache:invalidations") at Redis `address` have
 * registered the function `name`: *out (hosts 0: none has it, or none announced it yet).
 * Returns 0; MC_EINVAL (bad arguments or address; the keys hold other types); MC_EIO (Redis
 * unreachable, err says why). Any thread; its own connection, closed before returning. */
MC_API int mc_bus_function_shape(const char *address, const char *stream, const char *name, unsigned timeout_ms,
                                 mc_bus_shape *out, mc_error *err);

/* Announce now rather than at the end of the interval: a host calls it once its modules have
 * registered their functions, so that their shapes are listed at once. No-op for a NULL or
 * publish-only bus. Thread-safe. */
MC_API void mc_bus_announce(mc_bus *bus);

#ifdef __cplusplus
}
#endif

#endif
