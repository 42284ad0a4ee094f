// The physical floor of the transport benchmark: two plain processes on a Unix-domain socket
// pair, no Lifeline. The round trips are measured twice: waiting in read(2), and busy-polling
// with non-blocking reads as Lifeline does while every rank has a core (so the ratio compares
// like with like). Prints `rtt_us_median=… rtt_us_p99=…` (busy-polling),
// `rtt_blocking_us_median=… rtt_blocking_us_p99=…` and `bandwidth_gbps=…`.
//
// usage: raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES\n");
        return 2;
    }
    int trips = atoi(argv[1]), messages = atoi(argv[2]);
    size_t bytes = (size_t)atol(argv[3]);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 1;
    int size = 4 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(pair[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        setsockopt(pair[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    char small[64];
    char *big = calloc(1, bytes);
    pid_t child = fork();
    if (child == 0) {
        close(pair[0]);
        for (int spins = 0; spins < 2; spins++) {
            for (int i = 0; i < trips; i++) {
                if (full(pair[1], small, sizeof small, 1, spins) || full(pair[1], small, sizeof small, 0, 0)) _exit(1);
            }
        }
        for (int i = 0; i < messages; i++) {
            if (full(pair[1], big, bytes, 1, 0)) _exit(1);
        }
        if (full(pair[1], small, 1, 0, 0)) _exit(1);
        _exit(0);
    }
    close(pair[1]);
    double *blocking = malloc(sizeof(double) * (size_t)trips), *spinning = malloc(sizeof(double) * (size_t)trips);
    memset(small, 7, sizeof small);
    for (int spins = 0; spins < 2; spins++) {
        double *samples = spins ? spinning : blocking;
        for (int i = 0; i < trips; i++) {
            double start = now_seconds();
            if (full(pair[0], small, sizeof small, 0, 0) || full(pair[0], small, sizeof small, 1, spins)) return 1;
            samples[i] = (now_seconds() - start) * 1e6;
        }
        qsort(samples, (size_t)trips, sizeof(double), compare);
    }
    double start = now_seconds();
    for (int i = 0; i < messages; i++) {
        if (full(pair[0], big, bytes, 0, 0)) return 1;
    }
    if (full(pair[0], small, 1, 1, 0)) return 1;
    double seconds = now_seconds() - start;
    waitpid(child, NULL, 0);
    printf("rtt_us_median=%.3f rtt_us_p99=%.3f rtt_blocking_us_median=%.3f rtt_blocking_us_p99=%.3f bandwidth_gbps=%.3f\n",
           spinning[trips / 2], spinning[(size_t)(trips * 0.99)], blocking[trips / 2], blocking[(size_t)(trips * 0.99)],
           (double)bytes * messages / seconds / 1e9);
    return 0;
}
