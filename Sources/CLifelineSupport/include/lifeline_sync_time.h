#ifndef LIFELINE_SYNC_TIME_H
#define LIFELINE_SYNC_TIME_H

// The time during which at least one rank of a host was making its message log durable: the
// union of the ranks' sync intervals, kept in a page the supervisor and its local ranks share.
// The sum of the ranks' sync times counts twice what overlaps (two ranks syncing at once on one
// device wait for each other); the slowest rank's misses what alternates (a master and a worker
// that sync in turn each wait for the other's sync). The union is neither.
//
// Layout, each field on a cache line of its own:
//   [0]   state: the ranks inside a sync now (high 16 bits) and the monotonic microseconds at
//         which that count last went from 0 to 1 (low 48 bits: 8.9 years of uptime)
//   [128] total: nanoseconds summed over the intervals in which the count was above 0
//
// The count and the start of the interval change together, by compare-and-swap, so the rank
// that takes the count back to 0 adds the interval that its own swap ended. (Kept apart, a rank
// could read the start of the previous interval while another rank began a new one and had not
// yet stored its start: the job's whole length added once.) Each clock read sits just before
// the swap it stamps, retried with it; what is left is the preemption of a rank between the
// two, an interval's edge moved by that much. A rank killed inside a sync leaves the count
// above 0 for good; the supervisor then reports nothing.

#include <stdint.h>
#include <time.h>

#define LIFELINE_SYNC_TIME_ONE (INT64_C(1) << 48)
#define LIFELINE_SYNC_TIME_SINCE_MASK (LIFELINE_SYNC_TIME_ONE - 1)

static inline int64_t *lifeline_sync_time_field(void *page, int offset) {
    return (int64_t *)((char *)page + offset);
}

static inline int64_t lifeline_sync_time_now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000) & LIFELINE_SYNC_TIME_SINCE_MASK;
}

/// A sync begins now.
static inline void lifeline_sync_time_enter(void *page) {
    int64_t *state = lifeline_sync_time_field(page, 0);
    int64_t old = __atomic_load_n(state, __ATOMIC_SEQ_CST);
    while (1) {
        int64_t new_state = (old & ~LIFELINE_SYNC_TIME_SINCE_MASK) == 0
            ? LIFELINE_SYNC_TIME_ONE | lifeline_sync_time_now_us()
            : old + LIFELINE_SYNC_TIME_ONE;
        if (__atomic_compare_exchange_n(state, &old, new_state, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return;
    }
}

/// The sync that `lifeline_sync_time_enter` began ends now.
static inline void lifeline_sync_time_leave(void *page) {
    int64_t *state = lifeline_sync_time_field(page, 0);
    int64_t old = __atomic_load_n(state, __ATOMIC_SEQ_CST);
    while (1) {
        int64_t now = lifeline_sync_time_now_us();
        if (__atomic_compare_exchange_n(state, &old, old - LIFELINE_SYNC_TIME_ONE, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            int64_t since = old & LIFELINE_SYNC_TIME_SINCE_MASK;
            if ((old >> 48) == 1 && now > since) {
                __atomic_fetch_add(lifeline_sync_time_field(page, 128), (now - since) * 1000, __ATOMIC_SEQ_CST);
            }
            return;
        }
    }
}

/// The union's nanoseconds so far, or -1 while a sync is under way (or was left unfinished).
static inline int64_t lifeline_sync_time_total(void *page) {
    if ((__atomic_load_n(lifeline_sync_time_field(page, 0), __ATOMIC_SEQ_CST) & ~LIFELINE_SYNC_TIME_SINCE_MASK) != 0) return -1;
    return __atomic_load_n(lifeline_sync_time_field(page, 128), __ATOMIC_SEQ_CST);
}

#endif
