/* SPDX-License-Identifier: MIT */
/*
 * Shared plumbing of the nfs:// tests: where the test server is, scratch
 * directories inside its export, stores opened through libnfs (each one its
 * own client, so several processes are several "hosts"), child processes
 * that talk to the test over pipes, CLOCK_BOOTTIME readings every process
 * can compare, control of the server (pause, resume, restart) and a look at
 * generation records through the server's own view of the export.
 *
 * Children check with CHILD_ASSERT/CHILD_EQ and exit NH_CHILD_FAILED, since
 * cmocka's assertions only work in the test process's own thread.
 */
#ifndef LK_NHARNESS_H
#define LK_NHARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"
#include "lrecord.h"

/* Every wait for a child, a message or the server gives up after this. */
#define NH_SAFETY_MS 30000
/* Exit status of a child that failed a check. */
#define NH_CHILD_FAILED 99
/* The clock-rate bound every test uses: the default, 1%. */
#define NH_RHO_PPM 10000

/* Alarm against hangs, subreaper for everything started; call from main(). */
void nh_init(int max_seconds);
/* cmocka teardown: resume or restart the server if a test left it stopped,
 * kill and reap every descendant, remove scratch directories. */
int nh_teardown(void **state);

/* A fresh directory inside the export. local: its path on this host (the
 * server's view); rel: its path relative to the export. */
void nh_scratch(const char *tag, char *local, size_t llen, char *rel, size_t rlen);
/* The nfs:// URL of rel inside the export, with the test URL's arguments,
 * or with query instead of them when query is not NULL. */
void nh_url(char *buf, size_t len, const char *rel, const char *query);
/* The test URL's arguments with one of them replaced (or added). */
void nh_query_with(char *buf, size_t len, const char *key, const char *value);
/* The export's path on this host. */
const char *nh_export_dir(void);

/* Open a store (fails the test or the child on error). */
struct lk_store *nh_store_open(const char *url);
/* A lease-mode handle with ttl_ms (the rest from o, if given). */
struct lk_lock *nh_lease_open(struct lk_store *st, const char *name, uint64_t ttl_ms,
                              const struct lk_lock_opts *o);
/* Make every record this store writes look as if it came from another host:
 * another boot id, so the same-host fast path cannot apply to it. */
void nh_make_foreign(struct lk_store *st);

/* T*(1+rho) and T*(1-rho) - margin, in ns, as the library computes them. */
int64_t nh_ttl_up_ns(uint64_t ttl_ms);
int64_t nh_hold_ns(uint64_t ttl_ms);

/* The engine this run must use: "io_uring" or "thread" (LK_TEST_ENGINE). */
const char *nh_engine_expected(void);
/* 1 for "io_uring", 2 for "thread", 0 otherwise: engine names over pipes. */
int nh_engine_code(const char *name);

/* The server: run tools/nfs-server.sh CMD on the test's state directory and
 * return its exit status. Pause arms a guard process that continues the
 * server if the test dies before nh_server_resume(). */
int nh_server(const char *cmd);
void nh_server_pause(void);
void nh_server_resume(void);
/* Restart (SIGKILL, start again); returns how long it took, in ms. */
int64_t nh_server_restart(void);
/* TCP port of the server's NFS service (from the test URL). */
int nh_nfs_port(void);

struct nh_child {
	pid_t pid;
	int tx; /* test -> child */
	int rx; /* child -> test */
};

/* Fork a child running fn(rx, tx, arg); it exits 0 when fn returns and dies
 * with the test process. */
typedef void (*nh_child_fn)(int rx, int tx, void *arg);
void nh_spawn(struct nh_child *c, nh_child_fn fn, void *arg);
/* Wait at most timeout_ms for a child (then SIGKILL it). Returns its exit
 * code, 128 + N for signal N, or -1 when it had to be killed. */
int nh_reap(struct nh_child *c, int timeout_ms);

/* One 64-bit value per message. nh_recv: 0, -ETIMEDOUT or -EPIPE. */
void nh_send(int fd, uint64_t v);
int nh_recv(int fd, uint64_t *ret, int timeout_ms);
/* nh_recv that fails the test (or child) on timeout or EOF. */
uint64_t nh_expect(int fd, int timeout_ms);

/* Anonymous memory shared with children forked afterwards. */
void *nh_shared(size_t len);

int64_t nh_boot_ns(void);
void nh_sleep_ms(int64_t ms);

/* Generation gen of the lease lock directory lockdir (a local path), read
 * straight from the export: 0, -errno, or -EBADMSG if not a valid record. */
int nh_read_gen(const char *lockdir, uint64_t gen, struct lk__lrec *ret);

/* Start $LOCKCTL with args (NULL-terminated, without argv[0]) in a session
 * of its own; stdin /dev/null, stdout and stderr into out and err. extra_env
 * ("K=V" or NULL) is added to its environment. */
pid_t nh_lockctl(const char *out, const char *err, const char *extra_env, const char *const args[]);
/* Exit code, 256 + N for signal N, or -1 after killing it on timeout. */
int nh_wait_pid(pid_t pid, int timeout_ms);
/* Run lockctl to the end: exit code as nh_wait_pid. */
int nh_lockctl_run(const char *out, const char *err, const char *const args[]);
/* Read a small file into buf (NUL-terminated); length or -1. */
ssize_t nh_read_file(const char *path, char *buf, size_t cap);
/* The raw value of "key" in a flat JSON object (first occurrence). */
int nh_json_get(const char *json, const char *key, char *buf, size_t cap);
/* A new empty local directory under $LK_TEST_TMP (removed at teardown). */
void nh_tmp_dir(char *buf, size_t len, const char *tag);

void nh_child_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
/* From the test process through cmocka, from a child by exiting. */
void nh_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define CHILD_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			nh_child_fail(__FILE__, __LINE__, "%s", #cond);                            \
	} while (0)

#define CHILD_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			nh_child_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_,    \
			              b_);                                                         \
	} while (0)

#endif
