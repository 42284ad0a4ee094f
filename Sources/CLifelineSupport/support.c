#define _GNU_SOURCE
#include "CLifelineSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/file.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

int lifeline_set_parent_death_signal(int signal) {
#ifdef __linux__
    return prctl(PR_SET_PDEATHSIG, signal);
#else
    (void)signal;
    return 0;
#endif
}

int lifeline_accept(int listener) {
#ifdef __linux__
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC);
#else
    return accept(listener, NULL, NULL);
#endif
}

void lifeline_flush_stdio(void) {
    fflush(stdout);
    fflush(stderr);
}

int lifeline_wait_status(int status, int *detail) {
    if (WIFEXITED(status)) {
        *detail = WEXITSTATUS(status);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        *detail = WTERMSIG(status);
        return 2;
    }
    *detail = 0;
    return 0;
}

int lifeline_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                   const char *stdout_path, const char *stderr_path) {
    posix_spawn_file_actions_t actions;
    int result = posix_spawn_file_actions_init(&actions);
    if (result != 0) return result;
    result = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (result == 0)
        result = posix_spawn_file_actions_addopen(&actions, 1, stdout_path,
                                                  O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (result == 0)
        result = posix_spawn_file_actions_addopen(&actions, 2, stderr_path,
                                                  O_WRONLY | O_CREAT | O_APPEND, 0644);
    /* Each rank in a process group of its own: a Ctrl-C at the terminal reaches the
       supervisor alone, which stops the job with a checkpoint. */
    posix_spawnattr_t attributes;
    if (result == 0) result = posix_spawnattr_init(&attributes);
    if (result == 0) {
        result = posix_spawnattr_setpgroup(&attributes, 0);
        if (result == 0) result = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
        if (result == 0) result = posix_spawn(pid, path, &actions, &attributes, argv, envp);
        posix_spawnattr_destroy(&attributes);
    }
    posix_spawn_file_actions_destroy(&actions);
    return result;
}

static volatile int stop_signal_fd = -1;

static void route_stop_signal(int signal) {
    unsigned char byte = (unsigned char)signal;
    int saved = errno;
    if (stop_signal_fd >= 0) (void)!write(stop_signal_fd, &byte, 1);
    errno = saved;
}

int lifeline_route_stop_signals(int fd) {
    stop_signal_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = route_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &action, NULL) != 0) return -1;
    if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
    /* A launcher may have started us with these blocked (Foundation's Process does). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

int lifeline_lock_file(int fd) {
    return flock(fd, LOCK_EX | LOCK_NB);
}

void lifeline_tune_allocator(void) {
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 16 << 20); /* at most 32 MiB on 64-bit glibc */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

int lifeline_start_writeback(int fd) {
#ifdef __linux__
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    return 0;
#endif
}
