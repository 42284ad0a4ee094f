#ifndef LIFELINE_SYNC_TIME_H
#define LIFELINE_SYNC_TIME_H

// The time during which at least one rank of a host was making its message log durable: the
// union of the ranks' sync intervals, kept in a page the supervisor and its local ranks share.
// The sum of the ranks' sync times counts twice what overlaps (two ranks syncing at once on one
// device wait for each other); the slowest rank's misses what alternates (a master and a worker
// that sync in turn each wait for the other's sync). The union is neither.
//
// Layout, each field on a cache line of its own:
//   [0]   active: ranks inside a sync now
//   [64]  since: the monotonic nanoseconds at which `active` last went from 0 to 1
//   [128] total: nanoseconds summed over the intervals in which `active` was above 0
//
// The rank that takes `active` from 0 stores `since`; the one that takes it back to 0 adds the
// interval. `since` is read before the decrement, while this rank still counts in `active`, so
// no new interval can have begun and overwritten it. A rank killed inside a sync leaves
// `active` above 0 for good; the supervisor then reports nothing.

#include <stdint.h>

static inline int64_t *lifeline_sync_time_field(void *page, int offset) {
    return (int64_t *)((char *)page + offset);
}

/// A sync begins at `now_ns`.
static inline void lifeline_sync_time_enter(void *page, int64_t now_ns) {
    if (__atomic_fetch_add(lifeline_sync_time_field(page, 0), 1, __ATOMIC_SEQ_CST) == 0) {
        __atomic_store_n(lifeline_sync_time_field(page, 64), now_ns, __ATOMIC_SEQ_CST);
    }
}

/// A sync that `lifeline_sync_time_enter` began ends at `now_ns`.
static inline void lifeline_sync_time_leave(void *page, int64_t now_ns) {
    int64_t since = __atomic_load_n(lifeline_sync_time_field(page, 64), __ATOMIC_SEQ_CST);
    if (__atomic_fetch_sub(lifeline_sync_time_field(page, 0), 1, __ATOMIC_SEQ_CST) == 1 && since > 0 && now_ns > since) {
        __atomic_fetch_add(lifeline_sync_time_field(page, 128), now_ns - since, __ATOMIC_SEQ_CST);
    }
}

/// The union's nanoseconds so far, or -1 while a sync is under way (or was left unfinished).
static inline int64_t lifeline_sync_time_total(void *page) {
    if (__atomic_load_n(lifeline_sync_time_field(page, 0), __ATOMIC_SEQ_CST) != 0) return -1;
    return __atomic_load_n(lifeline_sync_time_field(page, 128), __ATOMIC_SEQ_CST);
}

#endif
