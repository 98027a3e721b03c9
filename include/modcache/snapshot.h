/* modcache/snapshot.h: snapshots of memoized functions' entries, so that a restarted process
 * starts warm. A snapshot holds, for every registered function created with `persist`, its
 * name and its entries (key bytes, value bytes or "no value", weight, and age: the time since
 * the entry was last read or written), plus an opaque "origin" chosen by the writer (the
 * host stores the invalidation stream's position there, see modcache/bus.h), so that a reader
 * can prove that nothing it restores was invalidated meanwhile.
 *
 * File format (all integers little-endian; version 1):
 *   header   "MCSNAPSH", u32 version (1), u32 flags (0), u64 written (Unix time, ns)
 *   body     u32 origin length, origin bytes; then records, each a one-byte tag:
 *              'F' u16 name length, name, u8 flags (bit 0: iterable)   a function; its
 *                  entries follow
 *              'V' u32 klen, u32 vlen, u64 weight, u64 age_ns, key, value   an entry
 *              'N' u32 klen, u64 weight, u64 age_ns, key                 a "no value" entry
 *              'v', 'n' as 'V' and 'N' with a u64 write_age_ns after age_ns (functions with
 *                  write-age rules: refresh_after, expire_after_write, none_ttl)
 *              'E'                                                   the end of the records
 *   trailer  u64 body length, u64 XXH3-64 of header and body, "MCSNEND\n"
 * A file is written to "<path>.tmp", fsync'd, renamed over `path` and its directory fsync'd,
 * so a reader finds the previous snapshot or the new one, whole, never a mixture.
 *
 * Thread safety: every function may be called from any thread. mc_snapshot_write runs
 * beside calls and invalidations of the functions it writes (each cache shard is locked for
 * the time its entries are copied out, never for disk writes); a snapshot read from a file
 * is immutable and may be read by several threads until mc_snapshot_free. */
#ifndef MODCACHE_SNAPSHOT_H
#define MODCACHE_SNAPSHOT_H

#include <stdbool.h>

#include "cached.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the file format this library writes and reads. */
#define MC_SNAPSHOT_VERSION 1

/* A snapshot read from a file or from memory (opaque), owned by the caller (mc_snapshot_free). */
typedef struct mc_snapshot mc_snapshot;

/* Why a snapshot was refused. */
typedef enum mc_snapshot_fault {
    MC_SNAPSHOT_OK = 0,
    MC_SNAPSHOT_MISSING = 1,    /* no such file */
    MC_SNAPSHOT_UNREADABLE = 2, /* the file could not be opened or read */
    MC_SNAPSHOT_FOREIGN = 3,    /* not a snapshot (another kind of file) */
    MC_SNAPSHOT_WRONG_VERSION = 4, /* a snapshot of another format version */
    MC_SNAPSHOT_TRUNCATED = 5,  /* cut short (an interrupted copy, a full disk) */
    MC_SNAPSHOT_DAMAGED = 6,    /* checksum mismatch, or records that do not parse */
} mc_snapshot_fault;
/* Number of mc_snapshot_fault values. */
#define MC_SNAPSHOT_NFAULTS 7

/* The fault's short name ("ok", "missing", "unreadable", "foreign", "wrong_version",
 * "truncated", "damaged"), for logs and metric labels. */
MC_API const char *mc_snapshot_fault_name(mc_snapshot_fault fault);

/* What mc_snapshot_write wrote. */
typedef struct mc_snapshot_write_stats {
    uint64_t functions;   /* persistent functions written */
    uint64_t entries;     /* entries written */
    uint64_t skipped;     /* entries left out: values handed over (mc_load_set_owned), and every
                           * entry of a function whose loads recorded dependencies on other
                           * functions (mc_load_call, mc_load_depends_on); when the first such
                           * load ends during the write, the shards copied before it (which
                           * hold no dependent entry) are written and the rest left out */
    uint64_t bytes;       /* size of the file */
    uint64_t duration_ns; /* from the start of the call to the rename */
} mc_snapshot_write_stats;

/* Write every registered function of reg created with `persist`, its live entries and
 * `origin` (origin_len bytes, at most 4096; may be NULL when 0) to `path`, replacing it
 * atomically (see the file comment). st (may be NULL) gets what was written. Returns 0;
 * MC_EINVAL (NULL reg or path, origin too long); MC_EIO (a system call failed: err says
 * which, the old file is left in place and the temporary file removed); MC_ENOMEM. */
MC_API int mc_snapshot_write(mc_registry *reg, const void *origin, size_t origin_len, const char *path,
                             mc_snapshot_write_stats *st, mc_error *err);

/* Read and check the file at `path`: magic, version, length and checksum, then every record.
 * On success *out is the snapshot (mc_snapshot_free). On failure *out is NULL, *fault (may be
 * NULL) says why and err gives one line naming the file: MC_ENOENT (missing), MC_EIO
 * (unreadable), MC_EPARSE (foreign, wrong version, truncated, damaged), MC_ENOMEM,
 * MC_EINVAL. Never reads past the file's bytes, whatever they hold. */
MC_API int mc_snapshot_read(const char *path, mc_snapshot **out, mc_snapshot_fault *fault, mc_error *err);

/* mc_snapshot_read for `len` bytes in memory (copied). */
MC_API int mc_snapshot_parse(const void *data, size_t len, mc_snapshot **out, mc_snapshot_fault *fault,
                             mc_error *err);

/* Free a snapshot. NULL is a no-op. */
MC_API void mc_snapshot_free(mc_snapshot *snap);

/* The origin bytes the writer stored (borrowed from snap; *len gets their length). */
MC_API const void *mc_snapshot_origin(const mc_snapshot *snap, size_t *len);
/* When the snapshot was written (Unix time in nanoseconds). */
MC_API uint64_t mc_snapshot_written_ns(const mc_snapshot *snap);
/* The number of functions it holds, and the name and entry count of the i-th (NULL and 0 for
 * i out of range; the name is borrowed from snap). */
MC_API size_t mc_snapshot_function_count(const mc_snapshot *snap);
MC_API const char *mc_snapshot_function_name(const mc_snapshot *snap, size_t i);
MC_API uint64_t mc_snapshot_function_entries(const mc_snapshot *snap, size_t i);

/* What mc_snapshot_restore did. */
typedef struct mc_snapshot_restore_stats {
    uint64_t restored;  /* entries stored */
    uint64_t expired;   /* entries left out: older than their function's TTL by now, or than its
                         * write-age lifetime (expire_after_write, none_ttl for "no value"), or
                         * saved without a write age and restored into a function with one */
    uint64_t present;   /* entries left out: the key was already cached (loaded since start) */
    uint64_t failed;    /* entries the cache refused (over a bound on its own, no memory) */
    uint64_t functions; /* functions restored into */
    uint64_t unknown;   /* functions of the snapshot not registered in reg, or not `persist` now */
} mc_snapshot_restore_stats;

/* Store the snapshot's entries into the functions registered in reg under the same names
 * that are created with `persist`; other functions of the snapshot are skipped. Each entry's
 * age is its saved age plus the time since the snapshot was written (wall clock; none when it
 * went backwards): an entry older than its function's TTL is left out, the others expire that
 * much sooner. Entries are stored oldest first, so that when a function's bound is now
 * smaller than what was saved, its bound holds and the most recently used entries stay.
 * A key already cached is left alone (a load made since start is newer than the snapshot).
 * A function's entries are stored by the calling thread and, for more than 65,536 of them, one
 * more thread started for the call (each taking half of the cache's shards).
 * Nothing here proves the entries current: the caller decides that (modcache/bus.h). Returns
 * 0 or MC_EINVAL; st (may be NULL) gets the counts. */
MC_API int mc_snapshot_restore(const mc_snapshot *snap, mc_registry *reg, mc_snapshot_restore_stats *st);

#ifdef __cplusplus
}
#endif

#endif
