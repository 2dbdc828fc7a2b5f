/* SPDX-License-Identifier: MIT */
/*
 * Shared plumbing of the lease-mode tests: scratch stores, child processes
 * that talk to the test over pipes, CLOCK_BOOTTIME readings that every
 * process on the host can compare, the engine each run is meant to exercise,
 * and a small helper mode of the test binaries themselves that lockctl can
 * run as COMMAND.
 *
 * Every test program is registered twice, once for the io_uring engine and
 * once with LOCKKIT_NO_URING=1; LK_TEST_ENGINE names the engine the run must
 * actually get, and lh_check_engine() fails a test that silently ran on the
 * other one.
 *
 * cmocka's assertions unwind with longjmp into the test runner, which only
 * works in the process and thread that started the test. Children check with
 * CHILD_ASSERT/CHILD_EQ and exit with LH_CHILD_FAILED; threads record what
 * they saw and the test asserts on it afterwards.
 */
#ifndef LK_LHARNESS_H
#define LK_LHARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"

/* Every wait for a child, a message or a file gives up after this long. */
#define LH_SAFETY_MS 20000
/* Exit status of a child that failed a check. */
#define LH_CHILD_FAILED 99

/* Alarm against hangs, subreaper for everything started; call from main(). */
void lh_init(int max_seconds);
/* cmocka teardown: kill and reap every descendant, remove scratch stores. */
int lh_teardown(void **state);

/* A new empty directory under $LK_TEST_TMP (absolute path). */
void lh_store_dir(char *buf, size_t len, const char *tag);
/* Open a store; fails the test (or the child) on error. */
struct lk_store *lh_store_open(const char *dir);
/* Open a lease-mode lock handle with ttl_ms (and the rest from o, if any). */
struct lk_lock *lh_lease_open(struct lk_store *st, const char *name, uint64_t ttl_ms,
                              const struct lk_lock_opts *o);

/* The engine this run must use: "io_uring" or "thread" (LK_TEST_ENGINE). */
const char *lh_engine_expected(void);
/* Fail unless st's heartbeat engine is the expected one (after an acquire). */
void lh_check_engine(struct lk_store *st);
/* 1 for "io_uring", 2 for "thread", 0 otherwise: engine names over pipes. */
int lh_engine_code(const char *name);

struct lh_child {
	pid_t pid;
	int tx; /* test -> child */
	int rx; /* child -> test */
};

/* Fork a child running fn(rx, tx, arg); it exits 0 when fn returns and
 * dies with the test process. */
typedef void (*lh_child_fn)(int rx, int tx, void *arg);
void lh_spawn(struct lh_child *c, lh_child_fn fn, void *arg);
/* Wait at most timeout_ms for a child (then SIGKILL it). Returns its exit
 * code, 128 + N for signal N, or -1 when it had to be killed. */
int lh_reap(struct lh_child *c, int timeout_ms);
/* Reap a child that was just killed; returns as lh_reap. */
int lh_reap_now(struct lh_child *c);

/* One uint64_t per message. lh_recv: 0, -ETIMEDOUT or -EPIPE. */
void lh_send(int fd, uint64_t v);
int lh_recv(int fd, uint64_t *ret, int timeout_ms);
/* lh_recv that fails the test (or child) on timeout or EOF. */
uint64_t lh_expect(int fd, int timeout_ms);

/* Anonymous memory shared with children forked afterwards. */
void *lh_shared(size_t len);

/* Clocks: CLOCK_BOOTTIME (shared by all processes of the host, used by the
 * library for every lease decision) and CLOCK_REALTIME. */
int64_t lh_boot_ns(void);
int64_t lh_boot_ms(void);
int64_t lh_real_ns(void);
void lh_sleep_ms(int64_t ms);

/*
 * lockctl: start $LOCKCTL with args (NULL-terminated, without argv[0]) in a
 * session of its own, stdin from /dev/null, stdout and stderr into
 * <dir>/<tag>.out and .err. lh_wait_pid waits at most timeout_ms and returns
 * the exit code, 256 + N for signal N, or -1 after killing it on timeout.
 */
pid_t lh_lockctl(const char *dir, const char *tag, const char *const args[]);
int lh_wait_pid(pid_t pid, int timeout_ms);
/* Path of the running test binary, for lockctl to run it in helper mode. */
const char *lh_self(void);

/* Read a whole small file into buf (NUL-terminated); length or -1. */
ssize_t lh_read_file(const char *path, char *buf, size_t cap);
/* Wait until path holds a complete line; 0 or -ETIMEDOUT. */
int lh_wait_line(const char *path, int timeout_ms);
/* The value of "key" in a flat JSON object, raw ("true", "12", "\"x\""). */
int lh_json_get(const char *json, const char *key, char *buf, size_t cap);

/*
 * Helper mode: a test program's main() first calls lh_helper_main(argc,
 * argv); it returns -1 unless argv[1] is "--helper", else an exit status.
 *   --helper term FILE READY  write "<boot ns> <token>" to READY, wait; on
 *                             SIGTERM write "<boot ns>" to FILE and exit 0
 *   --helper start FILE       write "<boot ns> <token>" to FILE and exit 0
 *   --helper wait FILE READY  write "<boot ns> <token>" to READY, exit 0
 *                             once FILE exists
 * (token: $LOCKCTL_TOKEN).
 */
int lh_helper_main(int argc, char **argv);

void lh_child_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
/* Fail from the test process through cmocka, from a child by exiting. */
void lh_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define CHILD_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			lh_child_fail(__FILE__, __LINE__, "%s", #cond);                            \
	} while (0)

#define CHILD_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			lh_child_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_,    \
			              b_);                                                         \
	} while (0)

#endif
