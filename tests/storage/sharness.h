/* SPDX-License-Identifier: MIT */
/*
 * Plumbing shared by the security and storage-fault tests: scratch
 * directories, children that run as other users (the tests run as root and
 * switch to unused numeric ids, which need no /etc/passwd entries), a child
 * that holds a lock until told to let go, lockctl runs with their stderr
 * captured, and private mount namespaces so that the small, read-only or
 * full filesystems a test mounts vanish with it.
 *
 * cmocka's assertions unwind with longjmp, which only works in the test
 * process: children check with SC_CHECK and exit with SH_CHILD_FAILED.
 */
#ifndef LK_SHARNESS_H
#define LK_SHARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"

#define SH_CHILD_FAILED 99
#define SH_SAFETY_MS    20000

/* Alarm against hangs; call once from main(). */
void sh_init(int max_seconds);

/* A new empty directory under $LK_TEST_TMP, removed by sh_cleanup(). */
void sh_tmpdir(char *buf, size_t len, const char *tag);
/* Unmount what sh_mount_tmpfs() mounted, remove every sh_tmpdir(). */
int sh_cleanup(void **state);

/* Put the test process in a mount namespace of its own, with private
 * propagation: nothing it mounts is seen outside, and it all goes away when
 * the process exits. 0 or -errno. */
int sh_private_mounts(void);
/* Mount a tmpfs with options opts on dir (remembered for sh_cleanup). */
int sh_mount_tmpfs(const char *dir, const char *opts);
/* Bind-mount src on dst, read-only if ro (remembered for sh_cleanup). */
int sh_bind(const char *src, const char *dst, int ro);
/* Remount the filesystem mounted at dir read-only (1) or read-write (0). */
int sh_remount(const char *dir, int ro);

/* Credentials a child switches to: uid, primary gid, supplementary groups. */
struct sh_user {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[4];
	mode_t umask;
};

/*
 * Run fn(arg) in a forked child under user u (NULL: as root); returns the
 * child's exit status (fn's return value), 128 + N if it died of signal N,
 * or -1 if it had to be killed after SH_SAFETY_MS.
 */
int sh_run_as(const struct sh_user *u, int (*fn)(void *arg), void *arg);

/* A child process holding a lock until sh_holder_stop(). */
struct sh_holder {
	pid_t pid;
	int tx, rx;
	uint64_t token;
};
/* Start a holder of name in store (mode LK_MODE_KERNEL or LK_MODE_LEASE, lease
 * TTL ttl_ms) under user u (NULL: root); fails the test unless it acquired. */
void sh_holder_start(struct sh_holder *h, const struct sh_user *u, const char *store,
                     const char *name, enum lk_mode mode, uint64_t ttl_ms);
/* Ask the holder whether it still holds (lk_lock_check() == 0). */
int sh_holder_holds(struct sh_holder *h);
/* Let it release and exit; returns lk_lock_release()'s result. */
int sh_holder_stop(struct sh_holder *h);

/*
 * Run $LOCKCTL with args (NULL-terminated, without argv[0]) under user u
 * (NULL: root); its stderr goes to errbuf (NUL-terminated). Returns the exit
 * code, 256 + N for signal N, or -1 on timeout.
 */
int sh_lockctl(const struct sh_user *u, char *errbuf, size_t errlen, const char *const args[]);

/* Create or truncate path (mode 0600) holding the string s; 0 or -errno. */
int sh_write(const char *path, const char *s);
/* Read a whole small file; bytes read or -errno. */
ssize_t sh_read(const char *path, void *buf, size_t cap);
/* Mode bits (07777) of path, without following a final symlink; -1 if absent. */
int sh_mode(const char *path);

/* Fail the test from the test process, exit from a child. */
void sh_child_fail(const char *file, int line, const char *msg) __attribute__((noreturn));

#define SC_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond))                                                                       \
			sh_child_fail(__FILE__, __LINE__, #cond);                                  \
	} while (0)

#endif
