#ifndef LIFELINE_RING_H
#define LIFELINE_RING_H

// A byte ring in memory shared by two processes: one producer, one consumer, a stream of bytes
// with no framing of its own (the connection's frames travel in it as they would in a socket).
//
// Layout (the header's fields each on a cache line of their own, so the two sides never write
// the same line):
//   [0]   tail: bytes ever written (producer stores, release)
//   [64]  head: bytes ever read, as far as the consumer has published it (consumer stores,
//         release): the producer's measure of the room it has
//   [128] consumer_sleeping: 1 while the consumer may sleep in poll(2)
//   [192] producer_waiting: 1 while the producer waits for room
//   [256] the data, `capacity` bytes, a power of two; byte n of the stream is at n % capacity.
//
// The consumer counts what it reads in its own memory and publishes the count (`head`) only
// once an eighth of the ring was read since it last did (`lifeline_ring_release`): a store to
// the line the producer reads would cost the consumer a transfer of that line on every
// message, and the next locked instruction it runs (any reference count) would wait for it.
// The producer sees less room than there is by less than an eighth, which takes no progress
// away: a ring that looks full to it holds more than seven eighths unread, and reading them
// publishes.
//
// Wake-ups are Dekker-style: each side stores its flag, then a full fence, then reads the other
// side's counter; the other side publishes its counter, then a full fence, then reads the flag.
// At least one of the two sees the other's store, so a sleeper is never left with data (or room)
// that nobody tells it about. The wake-up itself is a byte on the socket beside the ring.
//
// The peer is another process of the job, but its memory is read defensively: a counter that
// says more is there than the ring holds is reported (`corrupt`) instead of followed.

#include <stdint.h>
#include <stddef.h>
#include <string.h>

/// The bytes before a ring's data.
#define LIFELINE_RING_HEADER_BYTES 256

static inline uint64_t *lifeline_ring_field(void *ring, size_t offset) {
    return (uint64_t *)((char *)ring + offset);
}

/// Copies as much of `a` then `b` into the ring as fits, publishes it, and returns how many bytes
/// it took (0 when the ring is full). Sets `*corrupt` when the consumer's counter is impossible.
static inline size_t lifeline_ring_write(void *ring, uint64_t capacity, const void *a, size_t a_length,
                                         const void *b, size_t b_length, int *corrupt) {
    uint64_t tail = __atomic_load_n(lifeline_ring_field(ring, 0), __ATOMIC_RELAXED);
    uint64_t head = __atomic_load_n(lifeline_ring_field(ring, 64), __ATOMIC_ACQUIRE);
    uint64_t used = tail - head;
    if (used > capacity) {
        *corrupt = 1;
        return 0;
    }
    uint64_t space = capacity - used;
    unsigned char *data = (unsigned char *)ring + LIFELINE_RING_HEADER_BYTES;
    size_t taken = 0;
    const unsigned char *pieces[2] = {(const unsigned char *)a, (const unsigned char *)b};
    size_t lengths[2] = {a_length, b_length};
    for (int piece = 0; piece < 2 && space > 0; piece++) {
        size_t length = lengths[piece] < space ? lengths[piece] : (size_t)space;
        const unsigned char *source = pieces[piece];
        size_t done = 0;
        while (done < length) {
            uint64_t at = (tail + taken + done) & (capacity - 1);
            size_t run = length - done;
            if (run > capacity - at) run = (size_t)(capacity - at);
            memcpy(data + at, source + done, run);
            done += run;
        }
        taken += length;
        space -= length;
    }
    if (taken > 0) __atomic_store_n(lifeline_ring_field(ring, 0), tail + taken, __ATOMIC_RELEASE);
    return taken;
}

/// The count of bytes read that the consumer last published: where its own count starts when it
/// opens a ring another process may have read before.
static inline uint64_t lifeline_ring_published_head(void *ring) {
    return __atomic_load_n(lifeline_ring_field(ring, 64), __ATOMIC_ACQUIRE);
}

/// Copies up to `length` bytes out of the ring from `*head` (the consumer's count of the bytes
/// it read, in its own memory) into `target`, advances `*head`, and returns how many it took (0
/// when it is empty). Their room is freed for the producer by `lifeline_ring_release`. Sets
/// `*corrupt` when the producer's counter is impossible.
static inline size_t lifeline_ring_read(void *ring, uint64_t capacity, uint64_t *head_count, void *target, size_t length,
                                        int *corrupt) {
    uint64_t head = *head_count;
    uint64_t tail = __atomic_load_n(lifeline_ring_field(ring, 0), __ATOMIC_ACQUIRE);
    uint64_t available = tail - head;
    if (available > capacity) {
        *corrupt = 1;
        return 0;
    }
    size_t taken = available < length ? (size_t)available : length;
    const unsigned char *data = (const unsigned char *)ring + LIFELINE_RING_HEADER_BYTES;
    size_t done = 0;
    while (done < taken) {
        uint64_t at = (head + done) & (capacity - 1);
        size_t run = taken - done;
        if (run > capacity - at) run = (size_t)(capacity - at);
        memcpy((unsigned char *)target + done, data + at, run);
        done += run;
    }
    *head_count = head + taken;
    return taken;
}

/// After a read: publishes the consumer's count `head` when an eighth of the ring or more was
/// read since it last did, and returns 1 when it did (the caller then asks
/// `lifeline_ring_producer_needs_wake`; room the producer cannot see wakes nobody).
static inline int lifeline_ring_release(void *ring, uint64_t capacity, uint64_t head) {
    if (head - __atomic_load_n(lifeline_ring_field(ring, 64), __ATOMIC_RELAXED) < capacity / 8) return 0;
    __atomic_store_n(lifeline_ring_field(ring, 64), head, __ATOMIC_RELEASE);
    return 1;
}

/// Whether the ring holds bytes past the consumer's count `head` (one load: what a spinning
/// consumer checks).
static inline int lifeline_ring_has_data(void *ring, uint64_t head) {
    return __atomic_load_n(lifeline_ring_field(ring, 0), __ATOMIC_ACQUIRE) != head;
}

/// Whether the ring has room for a byte (two loads: what a spinning producer checks).
static inline int lifeline_ring_has_room(void *ring, uint64_t capacity) {
    return __atomic_load_n(lifeline_ring_field(ring, 0), __ATOMIC_RELAXED)
        - __atomic_load_n(lifeline_ring_field(ring, 64), __ATOMIC_ACQUIRE) < capacity;
}

/// The consumer, whose count is `head`, is about to sleep: marks it so, then says whether bytes
/// are there after all (1: do not sleep; the mark is cleared again).
static inline int lifeline_ring_arm_consumer(void *ring, uint64_t head) {
    __atomic_store_n(lifeline_ring_field(ring, 128), 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (lifeline_ring_has_data(ring, head)) {
        __atomic_store_n(lifeline_ring_field(ring, 128), 0, __ATOMIC_RELAXED);
        return 1;
    }
    return 0;
}

/// The consumer is awake again.
static inline void lifeline_ring_disarm_consumer(void *ring) {
    __atomic_store_n(lifeline_ring_field(ring, 128), 0, __ATOMIC_RELAXED);
}

/// After a write: 1 when the consumer may be asleep and must be woken (the mark is taken, so
/// one wake-up serves it).
static inline int lifeline_ring_consumer_needs_wake(void *ring) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(lifeline_ring_field(ring, 128), __ATOMIC_RELAXED) == 0) return 0;
    return __atomic_exchange_n(lifeline_ring_field(ring, 128), 0, __ATOMIC_RELAXED) != 0;
}

/// The producer is about to wait for room: marks it so, then says whether room is there after
/// all (1: do not wait; the mark is cleared again).
static inline int lifeline_ring_arm_producer(void *ring, uint64_t capacity) {
    __atomic_store_n(lifeline_ring_field(ring, 192), 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t tail = __atomic_load_n(lifeline_ring_field(ring, 0), __ATOMIC_RELAXED);
    uint64_t head = __atomic_load_n(lifeline_ring_field(ring, 64), __ATOMIC_ACQUIRE);
    if (tail - head < capacity) {
        __atomic_store_n(lifeline_ring_field(ring, 192), 0, __ATOMIC_RELAXED);
        return 1;
    }
    return 0;
}

/// After a read that published (`lifeline_ring_release`): 1 when the producer may be waiting for
/// room and must be woken.
static inline int lifeline_ring_producer_needs_wake(void *ring) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(lifeline_ring_field(ring, 192), __ATOMIC_RELAXED) == 0) return 0;
    return __atomic_exchange_n(lifeline_ring_field(ring, 192), 0, __ATOMIC_RELAXED) != 0;
}

#endif
