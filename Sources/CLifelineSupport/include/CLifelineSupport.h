#ifndef CLIFELINE_SUPPORT_H
#define CLIFELINE_SUPPORT_H

#include <sys/types.h>
#include <stdint.h>
#include "lifeline_ring.h"
#include "lifeline_sync_time.h"

/// Asks the kernel to send `signal` to this process when its parent dies (Linux only; 0 elsewhere).
int lifeline_set_parent_death_signal(int signal);

/// accept4 with SOCK_CLOEXEC; -1 with errno on failure (EAGAIN on a non-blocking listener: none pending).
int lifeline_accept(int listener);

/// The user id of the process at the other end of a Unix-domain socket (SO_PEERCRED).
/// Returns 0, or -1 with errno where the platform does not say.
int lifeline_peer_uid(int fd, uid_t *uid);

/// Where the connection `fd` comes from, as a key: the peer's address without its port (TCP
/// over IPv4 or IPv6; an IPv6 address folded to 64 bits), or the peer's process id (a
/// Unix-domain socket, SO_PEERCRED). 0 when the platform does not say. Two connections from
/// one source have the same key; two sources rarely share one.
uint64_t lifeline_peer_source(int fd);

/// Flushes the C standard output and error streams.
void lifeline_flush_stdio(void);

/// Decodes a wait status: 1 and the code when the child exited, 2 and the signal when a signal
/// ended it, 0 otherwise.
int lifeline_wait_status(int status, int *detail);

/// Spawns `path` with `argv` and `envp`, stdin from /dev/null and stdout/stderr appended to the
/// two files (created with mode 0600), in a process group of its own, with SIGKILL as its
/// parent-death signal (Linux) set before exec: it dies with the calling thread's process
/// whether or not it ever joins. Signals are unblocked in the child. Returns 0 and the pid, or
/// an errno value and, in `failed_stage`, the step that failed (also when exec failed: the child
/// is then reaped).
int lifeline_spawn(pid_t *pid, int *failed_stage, const char *path, char *const argv[], char *const envp[],
                   const char *stdout_path, const char *stderr_path);

/// `lifeline_spawn` with standard input from `stdin_fd` (a pipe's read end, say) instead of
/// /dev/null; -1 is /dev/null.
int lifeline_spawn_input(pid_t *pid, int *failed_stage, const char *path, char *const argv[], char *const envp[],
                         int stdin_fd, const char *stdout_path, const char *stderr_path);

/// The steps of `lifeline_spawn` that can fail.
enum {
    /// fork, the process group, the parent-death signal, standard input.
    LIFELINE_SPAWN_SETUP = 0,
    /// Opening the standard output file.
    LIFELINE_SPAWN_STDOUT = 1,
    /// Opening the standard error file.
    LIFELINE_SPAWN_STDERR = 2,
    /// execve of the program.
    LIFELINE_SPAWN_EXEC = 3,
};

/// Makes SIGINT and SIGTERM write their number (one byte) to `fd` instead of ending the
/// process, so a poll loop can act on them. Returns 0, or -1 with errno.
int lifeline_route_stop_signals(int fd);

/// Keeps large message buffers in the heap instead of fresh mmaps, so receiving a stream of
/// big messages reuses memory rather than faulting in new zeroed pages for each one.
void lifeline_tune_allocator(void);

/// Takes an exclusive, non-blocking advisory lock on the open file `fd` (flock). Returns 0 when
/// taken, -1 with errno (EWOULDBLOCK when another process holds it).
int lifeline_lock_file(int fd);

/// Starts writing the dirty pages of the open file `fd` to its device without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere). Durability still
/// needs an fsync, which then has less left to wait for. Returns 0, or -1 with errno.
int lifeline_start_writeback(int fd);

/// Records the last safe point the program passed (one store: cheap at every safe point).
void lifeline_note_step(int64_t step);

/// On a crash (SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE: a Swift runtime error, an
/// uncaught error, a bad access), writes `frame` to `fd` once with the last noted step in the 8
/// little-endian bytes at `step_offset`, then hands the signal to the handler that was there
/// before. So the supervisor learns the step a rank died at. Returns 0, or -1 when the frame
/// does not fit (64 bytes) or a handler cannot be set.
int lifeline_report_step_on_crash(int fd, const unsigned char *frame, size_t length, size_t step_offset);

/// Makes an anonymous shared-memory file of `bytes` bytes (memfd, close-on-exec), for a ring two
/// processes map, sealed against shrinking and growing (so a mapping of it never faults past its
/// end). Returns its descriptor, or -1 with errno.
int lifeline_shared_memory_create(size_t bytes);

/// 1 when the file `fd` is sealed against shrinking and growing, 0 otherwise.
int lifeline_shared_memory_is_sealed(int fd);

/// Sends `length` bytes on the stream socket `socket` with the descriptor `fd` attached
/// (SCM_RIGHTS), without SIGPIPE. Returns the bytes sent, or -1 with errno.
ssize_t lifeline_send_with_descriptor(int socket, const void *bytes, size_t length, int fd);

/// Receives up to `length` bytes from `socket` without waiting, and a descriptor sent with them:
/// the first one that arrives goes to `*fd` when it holds -1, and is closed otherwise, as is any
/// other (a peer cannot leave descriptors open in this process). Returns the bytes received, 0
/// at the end of the stream, or -1 with errno.
ssize_t lifeline_receive_with_descriptor(int socket, void *bytes, size_t length, int *fd);

#endif
