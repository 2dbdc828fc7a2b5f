// SPDX-License-Identifier: MIT
/*
 * Plumbing the multi-process test harnesses share (integration, lease, nfs,
 * election): clocks, bounded waits, the 8-byte messages parents and
 * children exchange over pipes, shared memory, files and JSON fields. None
 * of it fails a test by itself: each harness reports errors its own way.
 */
#ifndef LOCKKIT_TESTS_TPROC_H
#define LOCKKIT_TESTS_TPROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int64_t tp_boot_ns(void); /* CLOCK_BOOTTIME */
int64_t tp_real_ns(void); /* CLOCK_REALTIME */
void tp_sleep_ms(int64_t ms);

/* One 8-byte message: 0, or -errno (-EPIPE for a short write). */
int tp_send(int fd, uint64_t v);
/* Wait for one (timeout 0: only what is there; < 0: no limit): 0, -ETIMEDOUT, or -EPIPE
 * when the other side closed. */
int tp_recv(int fd, uint64_t *ret, int timeout_ms);

/* Anonymous shared memory that survives fork(), or NULL. */
void *tp_shared(size_t len);

/* Wait for pid, killing it (SIGKILL) after timeout_ms: its exit code,
 * sig_base + the signal that ended it, or -1 (killed, or not our child). */
int tp_wait_pid(pid_t pid, int timeout_ms, int sig_base);
/* The same code from a wait status. */
int tp_status_code(int status, int sig_base);

/*
 * Fork a child that runs fn(rx, tx, arg) and exits 0 when it returns, with
 * a pipe each way. The child dies with its parent, exits orphan_code at
 * once if parent is no longer its parent, and closes extra_fd (if >= 0).
 * 0, or -errno with nothing left open.
 */
int tp_spawn(pid_t parent, int orphan_code, int extra_fd, void (*fn)(int rx, int tx, void *arg),
             void *arg, pid_t *ret_pid, int *ret_tx, int *ret_rx);

/* Read up to cap - 1 bytes and terminate them: the length, or -1. */
ssize_t tp_read_file(const char *path, char *buf, size_t cap);

/* The raw value of "key": in a flat or nested JSON text (strings keep
 * their quotes), or -ENOENT. */
int tp_json_get(const char *json, const char *key, char *buf, size_t cap);

#endif
