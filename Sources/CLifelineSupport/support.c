#define _GNU_SOURCE
#include "CLifelineSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <sys/file.h>
#include <sys/mman.h>
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

int lifeline_peer_uid(int fd, uid_t *uid) {
#ifdef __linux__
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    return 0;
#else
    (void)fd;
    (void)uid;
    errno = ENOTSUP;
    return -1;
#endif
}

uint64_t lifeline_peer_source(int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getpeername(fd, (struct sockaddr *)&address, &length) != 0) return 0;
    switch (address.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&address;
        return (UINT64_C(4) << 32) | ntohl(v4->sin_addr.s_addr);
    }
    case AF_INET6: {
        // FNV-1a over the 16 bytes; the top byte marks the family.
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&address;
        uint64_t hash = UINT64_C(14695981039346656037);
        for (int index = 0; index < 16; index++) {
            hash ^= v6->sin6_addr.s6_addr[index];
            hash *= UINT64_C(1099511628211);
        }
        return (hash >> 8) | (UINT64_C(6) << 56);
    }
#ifdef __linux__
    case AF_UNIX: {
        struct ucred credentials;
        socklen_t size = sizeof credentials;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return 0;
        return (UINT64_C(1) << 40) | (uint32_t)credentials.pid;
    }
#endif
    default:
        return 0;
    }
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

/* In the child between fork and exec: only async-signal-safe calls. Reports a failure as
   {stage, errno} on `report` (close-on-exec: the parent reads end-of-file when exec succeeded). */
static void spawn_child(pid_t parent, int report, const char *path, char *const argv[], char *const envp[],
                        int stdin_fd, const char *stdout_path, const char *stderr_path) {
    int error = 0;
    int stage = LIFELINE_SPAWN_SETUP;
    /* Each rank in a process group of its own: a Ctrl-C at the terminal reaches the
       supervisor alone, which stops the job with a checkpoint. */
    if (setpgid(0, 0) != 0) error = errno;
#ifdef __linux__
    /* Dies with the supervisor even before it joins the job (a program that never joins, or
       one killed while it starts); a supervisor already gone is caught by the getppid check. */
    if (error == 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) error = errno;
    if (error == 0 && getppid() != parent) error = ESRCH;
#endif
    const char *paths[3] = {"/dev/null", stdout_path, stderr_path};
    const int flags[3] = {O_RDONLY, O_WRONLY | O_CREAT | O_APPEND, O_WRONLY | O_CREAT | O_APPEND};
    if (error == 0 && stdin_fd >= 0 && dup2(stdin_fd, 0) < 0) error = errno;
    for (int target = stdin_fd >= 0 ? 1 : 0; target < 3 && error == 0; target++) {
        if (target == 1) stage = LIFELINE_SPAWN_STDOUT;
        if (target == 2) stage = LIFELINE_SPAWN_STDERR;
        int fd = open(paths[target], flags[target] | O_CLOEXEC, 0600);
        if (fd < 0) {
            error = errno;
        } else if (fd == target) {
            /* The parent had this standard descriptor closed: keep it open across exec. */
            if (fcntl(fd, F_SETFD, 0) < 0) error = errno;
        } else if (dup2(fd, target) < 0) {
            error = errno;
        }
        if (fd >= 0 && fd != target) close(fd);
    }
    if (error == 0) {
        /* The parent blocked every signal around fork, so none of its handlers ran here: put
           them back to their defaults, then let the program have its signals. */
        for (int signal = 1; signal < NSIG; signal++) {
            struct sigaction current;
            if (sigaction(signal, NULL, &current) != 0) continue;
            if (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN) continue;
            struct sigaction reset;
            memset(&reset, 0, sizeof reset);
            reset.sa_handler = SIG_DFL;
            sigemptyset(&reset.sa_mask);
            (void)sigaction(signal, &reset, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        stage = LIFELINE_SPAWN_EXEC;
        execve(path, argv, envp);
        error = errno;
    }
    int failure[2] = {stage, error};
    (void)!write(report, failure, sizeof failure);
    _exit(127);
}

int lifeline_spawn(pid_t *pid, int *failed_stage, const char *path, char *const argv[], char *const envp[],
                   const char *stdout_path, const char *stderr_path) {
    return lifeline_spawn_input(pid, failed_stage, path, argv, envp, -1, stdout_path, stderr_path);
}

int lifeline_spawn_input(pid_t *pid, int *failed_stage, const char *path, char *const argv[], char *const envp[],
                         int stdin_fd, const char *stdout_path, const char *stderr_path) {
    *failed_stage = LIFELINE_SPAWN_SETUP;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    /* No signal handler of the parent's may run in the child before exec (a Ctrl-C there would
       write to the supervisor's stop pipe): block them all across fork. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t child = fork();
    if (child != 0) pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (child < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    if (child == 0) {
        close(report[0]);
        spawn_child(parent, report[1], path, argv, envp, stdin_fd, stdout_path, stderr_path);
    }
    close(report[1]);
    int failure[2] = {0, 0};
    ssize_t count;
    do {
        count = read(report[0], failure, sizeof failure);
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof failure && failure[1] != 0) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
        *failed_stage = failure[0];
        return failure[1];
    }
    *pid = child;
    return 0;
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

/* The last safe point, and what to write on a crash: a heartbeat frame carrying it. */
static volatile int64_t lifeline_step = -1;
static int crash_fd = -1;
static unsigned char crash_frame[64];
static size_t crash_frame_length = 0;
static size_t crash_step_offset = 0;
static struct sigaction crash_previous[NSIG];

void lifeline_note_step(int64_t step) {
    lifeline_step = step;
}

static void report_step_on_crash(int signal, siginfo_t *info, void *context) {
    (void)info;
    (void)context;
    if (crash_fd >= 0) {
        unsigned char frame[sizeof crash_frame];
        int64_t step = lifeline_step;
        memcpy(frame, crash_frame, crash_frame_length);
        memcpy(frame + crash_step_offset, &step, sizeof step);
        ssize_t written = write(crash_fd, frame, crash_frame_length);
        (void)written;
        crash_fd = -1;
    }
    /* The signal goes to whoever had it before (the Swift runtime's backtracer, or the default
       action): a fault re-executes its instruction when this returns; a raised signal is
       raised again. */
    sigaction(signal, &crash_previous[signal], NULL);
    if (signal == SIGABRT || signal == SIGTRAP) raise(signal);
}

int lifeline_report_step_on_crash(int fd, const unsigned char *frame, size_t length, size_t step_offset) {
    if (length > sizeof crash_frame || step_offset + sizeof(int64_t) > length) return -1;
    memcpy(crash_frame, frame, length);
    crash_frame_length = length;
    crash_step_offset = step_offset;
    crash_fd = fd;
    static const int signals[] = {SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE};
    for (size_t index = 0; index < sizeof signals / sizeof signals[0]; index++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = report_step_on_crash;
        action.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&action.sa_mask);
        if (sigaction(signals[index], &action, &crash_previous[signals[index]]) != 0) return -1;
    }
    return 0;
}

int lifeline_shared_memory_create(size_t bytes) {
#ifdef __linux__
    int fd = memfd_create("lifeline-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)bytes) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
#else
    (void)bytes;
    errno = ENOSYS;
    return -1;
#endif
}

int lifeline_shared_memory_is_sealed(int fd) {
#ifdef __linux__
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK) && (seals & F_SEAL_GROW);
#else
    (void)fd;
    return 0;
#endif
}

ssize_t lifeline_send_with_descriptor(int socket, const void *bytes, size_t length, int fd) {
    struct iovec vector = {.iov_base = (void *)bytes, .iov_len = length};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {0};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *attached = CMSG_FIRSTHDR(&message);
    attached->cmsg_level = SOL_SOCKET;
    attached->cmsg_type = SCM_RIGHTS;
    attached->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(attached), &fd, sizeof(int));
    ssize_t sent;
    do {
        sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent;
}

ssize_t lifeline_receive_with_descriptor(int socket, void *bytes, size_t length, int *fd) {
    struct iovec vector = {.iov_base = bytes, .iov_len = length};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(8 * sizeof(int))];
    } control;
    struct msghdr message = {0};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    int flags = MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
    flags |= MSG_CMSG_CLOEXEC;
#endif
    ssize_t received = recvmsg(socket, &message, flags);
    if (received < 0) return received;
    for (struct cmsghdr *attached = CMSG_FIRSTHDR(&message); attached; attached = CMSG_NXTHDR(&message, attached)) {
        if (attached->cmsg_level != SOL_SOCKET || attached->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (attached->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t index = 0; index < count; index++) {
            int passed;
            memcpy(&passed, CMSG_DATA(attached) + index * sizeof(int), sizeof(int));
            if (*fd < 0) {
                *fd = passed;
            } else {
                close(passed);
            }
        }
    }
    return received;
}
