/* SPDX-License-Identifier: MIT */
/*
 * Shared plumbing of the integration tests: scratch stores, child processes
 * that talk to the test over pipes, and a view of the kernel's lock table.
 *
 * cmocka's assertions unwind with longjmp into the test runner, which is
 * only safe in the process and thread that started the test. Children and
 * worker threads therefore never use them: a child checks with CHILD_ASSERT
 * and exits non-zero with a message, a thread counts its failures, and the
 * test asserts on exit statuses and counts.
 */
#ifndef LK_INTEG_H
#define LK_INTEG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"

/* Every wait for a child, a message or the kernel is bounded by this. */
#define IT_SAFETY_MS 10000

/* Exit status of a child that failed a CHILD_ASSERT. */
#define IT_CHILD_FAILED 99

/* Arm a process-wide alarm so that a hung test dies instead of hanging. */
void it_init(int max_seconds);

/* Kill and reap leftover children, remove stores made by it_store_dir(). */
int it_teardown(void **state);

/* A new empty directory under $LK_TEST_TMP, to be used as a store. */
void it_store_dir(char *buf, size_t len, const char *tag);

/* Open a store at dir with default options; fails the test on error. */
struct lk_store *it_store_open(const char *dir);

/* Open a lock handle; fails the test on error. */
struct lk_lock *it_lock_open(struct lk_store *st, const char *name, uint32_t flags,
                             const char *owner);

/* The full path of lock name in store dir. */
void it_lock_path(char *buf, size_t len, const char *dir, const char *name);

struct it_child {
	pid_t pid;
	int tx; /* test -> child */
	int rx; /* child -> test */
};

/*
 * Fork a child that runs fn(rx, tx, arg) and exits 0 when fn returns. The
 * child dies with the test process (PR_SET_PDEATHSIG).
 */
typedef void (*it_child_fn)(int rx, int tx, void *arg);
void it_spawn(struct it_child *c, it_child_fn fn, void *arg);

/*
 * Wait for a child to exit, at most timeout_ms (then kill it). Returns its
 * exit code, 128 + N when signal N ended it, or -1 when it had to be killed.
 */
int it_reap(struct it_child *c, int timeout_ms);

/* Messages: one uint64_t each way. it_recv() returns 0, or -ETIMEDOUT/-EPIPE. */
void it_send(int fd, uint64_t v);
int it_recv(int fd, uint64_t *ret, int timeout_ms);

/*
 * Wait until at least n lock requests are blocked (sleeping in the kernel)
 * on the file at path, as listed in /proc/locks. 0, or -ETIMEDOUT.
 */
int it_wait_blocked(const char *path, int n, int timeout_ms);

/* Anonymous memory shared with children forked afterwards. */
void *it_shared_mem(size_t len);

int64_t it_mono_ms(void);
int64_t it_real_ns(void);

void it_child_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

#define CHILD_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			it_child_fail(__FILE__, __LINE__, "%s", #cond);                            \
	} while (0)

#define CHILD_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			it_child_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_,    \
			              b_);                                                         \
	} while (0)

#endif
