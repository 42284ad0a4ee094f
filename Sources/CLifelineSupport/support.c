#define _GNU_SOURCE
#include "CLifelineSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
    if (result == 0) result = posix_spawn(pid, path, &actions, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    return result;
}
