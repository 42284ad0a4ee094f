// The physical floor of the transport benchmark: two plain processes on a Unix-domain socket
// pair, no Lifeline. The round trips are measured twice: waiting in read(2), and busy-polling
// with non-blocking reads as Lifeline does while every rank has a core (so the ratio compares
// like with like). Prints `rtt_us_median=… rtt_us_p99=…` (busy-polling),
// `rtt_blocking_us_median=… rtt_blocking_us_p99=…` and `bandwidth_gbps=…`.
//
// usage: raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES
//        raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES shared-memory RING_BYTES
//        raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES tcp-server ADDRESS PORT
//        raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES tcp-client ADDRESS PORT
// The TCP form is the floor between two hosts: the server takes one connection and answers,
// the client (started after it; it retries its connect for 10 s) measures and prints.
// The shared-memory form is the floor of Lifeline's rings: the same ring code
// (`lifeline_ring.h`), two rings of RING_BYTES in an anonymous shared mapping, each side
// busy-polling; it prints `rtt_us_median=… rtt_us_p99=… bandwidth_gbps=…`.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "CLifelineSupport.h"
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Reads (reading != 0) or writes all of `length` bytes; a read that `spins` polls without
   blocking until the bytes are there. */
static int full(int fd, char *buffer, size_t length, int reading, int spins) {
    size_t done = 0;
    while (done < length) {
        ssize_t n = !reading ? write(fd, buffer + done, length - done)
            : spins ? recv(fd, buffer + done, length - done, MSG_DONTWAIT) : read(fd, buffer + done, length - done);
        if (n < 0 && spins && reading && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The answering side: echoes the round trips (blocking, then busy-polling), takes the
   bandwidth messages, and says it has them all. */
static int serve(int fd, int trips, int messages, char *big, size_t bytes) {
    char small[64];
    for (int spins = 0; spins < 2; spins++) {
        for (int i = 0; i < trips; i++) {
            if (full(fd, small, sizeof small, 1, spins) || full(fd, small, sizeof small, 0, 0)) return 1;
        }
    }
    for (int i = 0; i < messages; i++) {
        if (full(fd, big, bytes, 1, 0)) return 1;
    }
    return full(fd, small, 1, 0, 0) ? 1 : 0;
}

/* The measuring side: the round trips twice, then the stream; prints the figures. */
static int measure(int fd, int trips, int messages, char *big, size_t bytes) {
    char small[64];
    double *blocking = malloc(sizeof(double) * (size_t)trips), *spinning = malloc(sizeof(double) * (size_t)trips);
    memset(small, 7, sizeof small);
    for (int spins = 0; spins < 2; spins++) {
        double *samples = spins ? spinning : blocking;
        for (int i = 0; i < trips; i++) {
            double start = now_seconds();
            if (full(fd, small, sizeof small, 0, 0) || full(fd, small, sizeof small, 1, spins)) return 1;
            samples[i] = (now_seconds() - start) * 1e6;
        }
        qsort(samples, (size_t)trips, sizeof(double), compare);
    }
    double start = now_seconds();
    for (int i = 0; i < messages; i++) {
        if (full(fd, big, bytes, 0, 0)) return 1;
    }
    if (full(fd, small, 1, 1, 0)) return 1;
    double seconds = now_seconds() - start;
    printf("rtt_us_median=%.3f rtt_us_p99=%.3f rtt_blocking_us_median=%.3f rtt_blocking_us_p99=%.3f bandwidth_gbps=%.3f\n",
           spinning[trips / 2], spinning[(size_t)(trips * 0.99)], blocking[trips / 2], blocking[(size_t)(trips * 0.99)],
           (double)bytes * messages / seconds / 1e9);
    return 0;
}

/* Large socket buffers, as Lifeline sets them; over TCP, no Nagle delay. */
static void tune(int fd, int tcp) {
    int size = 4 << 20, on = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (tcp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

static int tcp(const char *role, const char *address, int port, int trips, int messages, char *big, size_t bytes) {
    struct sockaddr_in where;
    memset(&where, 0, sizeof where);
    where.sin_family = AF_INET;
    where.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &where.sin_addr) != 1) return 2;
    if (strcmp(role, "tcp-server") == 0) {
        int listener = socket(AF_INET, SOCK_STREAM, 0), on = 1;
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(listener, (struct sockaddr *)&where, sizeof where) != 0 || listen(listener, 1) != 0) return 1;
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) return 1;
        tune(fd, 1);
        return serve(fd, trips, messages, big, bytes);
    }
    for (int attempt = 0; attempt < 1000; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&where, sizeof where) == 0) {
            tune(fd, 1);
            return measure(fd, trips, messages, big, bytes);
        }
        close(fd);
        usleep(10000);
    }
    return 1;
}

/* This process's count of the bytes it read from its inbound ring (each side reads one). */
static uint64_t read_head = 0;

/* Moves all of `length` bytes through a ring, spinning while it is full (writing) or empty;
   a read publishes its count as Lifeline's does (`lifeline_ring_release`). */
static void ring_full(void *ring, uint64_t capacity, char *buffer, size_t length, int reading) {
    size_t done = 0;
    int corrupt = 0;
    while (done < length) {
        if (reading) {
            done += lifeline_ring_read(ring, capacity, &read_head, buffer + done, length - done, &corrupt);
            lifeline_ring_release(ring, capacity, read_head);
        } else {
            done += lifeline_ring_write(ring, capacity, buffer + done, length - done, NULL, 0, &corrupt);
        }
    }
}

/* The shared-memory floor: a ring each way, the child echoes, the parent measures. */
static int shared_memory(size_t ring_bytes, int trips, int messages, char *big, size_t bytes) {
    size_t each = LIFELINE_RING_HEADER_BYTES + ring_bytes;
    char *mapping = mmap(NULL, 2 * each, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) return 1;
    void *to_child = mapping, *to_parent = mapping + each;
    char small[64];
    memset(small, 7, sizeof small);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < trips; i++) {
            ring_full(to_child, ring_bytes, small, sizeof small, 1);
            ring_full(to_parent, ring_bytes, small, sizeof small, 0);
        }
        for (int i = 0; i < messages; i++) ring_full(to_child, ring_bytes, big, bytes, 1);
        ring_full(to_parent, ring_bytes, small, 1, 0);
        _exit(0);
    }
    double *samples = malloc(sizeof(double) * (size_t)trips);
    for (int i = 0; i < trips; i++) {
        double start = now_seconds();
        ring_full(to_child, ring_bytes, small, sizeof small, 0);
        ring_full(to_parent, ring_bytes, small, sizeof small, 1);
        samples[i] = (now_seconds() - start) * 1e6;
    }
    qsort(samples, (size_t)trips, sizeof(double), compare);
    double start = now_seconds();
    for (int i = 0; i < messages; i++) ring_full(to_child, ring_bytes, big, bytes, 0);
    ring_full(to_parent, ring_bytes, small, 1, 1);
    double seconds = now_seconds() - start;
    waitpid(child, NULL, 0);
    printf("rtt_us_median=%.3f rtt_us_p99=%.3f bandwidth_gbps=%.3f\n", samples[trips / 2],
           samples[(size_t)(trips * 0.99)], (double)bytes * messages / seconds / 1e9);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[4], "shared-memory") == 0) {
        char *buffer = calloc(1, (size_t)atol(argv[3]));
        return shared_memory((size_t)atol(argv[5]), atoi(argv[1]), atoi(argv[2]), buffer, (size_t)atol(argv[3]));
    }
    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES [shared-memory RING_BYTES | tcp-server|tcp-client ADDRESS PORT]\n");
        return 2;
    }
    int trips = atoi(argv[1]), messages = atoi(argv[2]);
    size_t bytes = (size_t)atol(argv[3]);
    char *big = calloc(1, bytes);
    if (argc == 7) return tcp(argv[4], argv[5], atoi(argv[6]), trips, messages, big, bytes);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 1;
    tune(pair[0], 0);
    tune(pair[1], 0);
    pid_t child = fork();
    if (child == 0) {
        close(pair[0]);
        _exit(serve(pair[1], trips, messages, big, bytes));
    }
    close(pair[1]);
    int status = measure(pair[0], trips, messages, big, bytes);
    waitpid(child, NULL, 0);
    return status;
}
