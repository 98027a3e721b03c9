/* Rate-limited log lines (ratelog.h): the state of one repeating fault under a mutex; the
 * caller formats the lines, so each keeps its own wording. */
#include "core/ratelog.h"

#include <time.h>

void mc__ratelog_init(mc__ratelog *rl)
{
    pthread_mutex_init(&rl->lock, NULL);
    rl->active = false;
    rl->total = rl->pending = 0;
    rl->start_ns = rl->last_ns = rl->reported_ns = 0;
}

void mc__ratelog_destroy(mc__ratelog *rl) { pthread_mutex_destroy(&rl->lock); }

uint64_t mc__ratelog_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

mc__ratelog_action mc__ratelog_hit(mc__ratelog *rl, uint64_t now_ns, uint64_t interval_ns, uint64_t *count)
{
    mc__ratelog_action a = MC__RATELOG_QUIET;
    pthread_mutex_lock(&rl->lock);
    rl->last_ns = now_ns;
    if (!rl->active) {
        rl->active = true;
        rl->total = 1;
        rl->pending = 0;
        rl->start_ns = rl->reported_ns = now_ns;
        a = MC__RATELOG_START;
    } else {
        rl->total++;
        rl->pending++;
        if (now_ns - rl->reported_ns >= interval_ns) {
            if (count)
                *count = rl->pending;
            rl->pending = 0;
            rl->reported_ns = now_ns;
            a = MC__RATELOG_COUNT;
        }
    }
    pthread_mutex_unlock(&rl->lock);
    return a;
}

bool mc__ratelog_end(mc__ratelog *rl, uint64_t now_ns, uint64_t quiet_ns, uint64_t *total,
                     uint64_t *duration_ns)
{
    bool ended = false;
    pthread_mutex_lock(&rl->lock);
    if (rl->active && now_ns - rl->last_ns >= quiet_ns) {
        rl->active = false;
        ended = true;
        if (total)
            *total = rl->total;
        if (duration_ns)
            *duration_ns = rl->last_ns - rl->start_ns;
    }
    pthread_mutex_unlock(&rl->lock);
    return ended;
}
