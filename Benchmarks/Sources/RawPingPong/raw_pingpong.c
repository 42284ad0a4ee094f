// The physical floor of the transport benchmark: two plain processes on a Unix-domain socket
// pair, no Lifeline. Prints `rtt_us_median=… rtt_us_p99=… bandwidth_gbps=…`.
//
// usage: raw-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES
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

static int full(int fd, char *buffer, size_t length, int reading) {
    size_t done = 0;
    while (done < length) {
        ssize_t n = reading ? read(fd, buffer + done, length - done) : write(fd, buffer + done, length - done);
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
        for (int i = 0; i < trips; i++) {
            if (full(pair[1], small, sizeof small, 1) || full(pair[1], small, sizeof small, 0)) _exit(1);
        }
        for (int i = 0; i < messages; i++) {
            if (full(pair[1], big, bytes, 1)) _exit(1);
        }
        if (full(pair[1], small, 1, 0)) _exit(1);
        _exit(0);
    }
    close(pair[1]);
    double *samples = malloc(sizeof(double) * (size_t)trips);
    memset(small, 7, sizeof small);
    for (int i = 0; i < trips; i++) {
        double start = now_seconds();
        if (full(pair[0], small, sizeof small, 0) || full(pair[0], small, sizeof small, 1)) return 1;
        samples[i] = (now_seconds() - start) * 1e6;
    }
    double start = now_seconds();
    for (int i = 0; i < messages; i++) {
        if (full(pair[0], big, bytes, 0)) return 1;
    }
    if (full(pair[0], small, 1, 1)) return 1;
    double seconds = now_seconds() - start;
    waitpid(child, NULL, 0);
    qsort(samples, (size_t)trips, sizeof(double), compare);
    printf("rtt_us_median=%.3f rtt_us_p99=%.3f bandwidth_gbps=%.3f\n", samples[trips / 2],
           samples[(size_t)(trips * 0.99)], (double)bytes * messages / seconds / 1e9);
    return 0;
}
