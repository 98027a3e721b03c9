/* Rate-limited log lines for a fault that repeats (refused connections, dropped messages): one
 * line when it starts, a count at most once per interval while it lasts, one line when it ends. */
#ifndef MC_CORE_RATELOG_H
#define MC_CORE_RATELOG_H

#include "core/internal_api.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One repeating fault. Zero-initialise the counters and call mc__ratelog_init for the lock;
 * every function may be called from any thread. */
typedef struct mc__ratelog {
    pthread_mutex_t lock;
    bool active;       /* the fault is going on */
    uint64_t total;    /* occurrences since it started */
    uint64_t pending;  /* occurrences not yet reported in a line */
    uint64_t start_ns, last_ns, reported_ns;
} mc__ratelog;

/* What the caller should log after an occurrence. */
typedef enum mc__ratelog_action {
    MC__RATELOG_QUIET = 0, /* counted: log nothing now */
    MC__RATELOG_START = 1, /* the first occurrence: log it in full */
    MC__RATELOG_COUNT = 2, /* an interval has passed: log "*count more in the last ..." */
} mc__ratelog_action;

MC_INTERNAL void mc__ratelog_init(mc__ratelog *rl);
MC_INTERNAL void mc__ratelog_destroy(mc__ratelog *rl);

/* Record one occurrence at `now_ns`. *count receives the occurrences since the last line when
 * the answer is MC__RATELOG_COUNT (including this one). `interval_ns`: at most one count line
 * per interval. */
MC_INTERNAL mc__ratelog_action mc__ratelog_hit(mc__ratelog *rl, uint64_t now_ns, uint64_t interval_ns, uint64_t *count);

/* True once when the fault is over: it was active and nothing happened for `quiet_ns` (0: it is
 * known to be over now). *total and *duration_ns describe the whole episode. */
MC_INTERNAL bool mc__ratelog_end(mc__ratelog *rl, uint64_t now_ns, uint64_t quiet_ns, uint64_t *total,
                     uint64_t *duration_ns);

/* CLOCK_MONOTONIC in nanoseconds. */
MC_INTERNAL uint64_t mc__ratelog_now(void);

#endif
