/* SPDX-License-Identifier: MIT */
/*
 * Plumbing shared by the election tests: a scratch store that is either a
 * local directory or a directory inside the test NFS server's export
 * (LK_ELECTION_STORE=nfs), child processes that talk to the test over
 * pipes, lockctl started in the background, and small file helpers.
 *
 * The same programs run against both kinds of store, so that every scenario
 * proven locally is proven over nfs:// too; on NFS only lease mode exists.
 */
#ifndef LK_EHARNESS_H
#define LK_EHARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"

/* Every wait for a child, a message or a file gives up after this long. */
#define EH_SAFETY_MS    20000
#define EH_CHILD_FAILED 99

/* Alarm against hangs, subreaper for everything started; call from main(). */
void eh_init(int max_seconds);
/* cmocka teardown: kill and reap every descendant, remove scratch dirs. */
int eh_teardown(void **state);
/* 1 when the tests run against the NFS server. */
int eh_nfs(void);

/* A fresh store: url for the library and lockctl, local a directory on this
 * host for files the test itself writes (resource logs). */
void eh_store(const char *tag, char *url, size_t ulen, char *local, size_t llen);
struct lk_store *eh_store_open(const char *url);

struct eh_child {
	pid_t pid;
	int tx; /* test -> child */
	int rx; /* child -> test */
};
typedef void (*eh_child_fn)(int rx, int tx, void *arg);
void eh_spawn(struct eh_child *c, eh_child_fn fn, void *arg);
/* 0 and *ret, -ETIMEDOUT, -EPIPE */
void eh_send(int fd, uint64_t v);
int eh_recv(int fd, uint64_t *ret, int timeout_ms);
/* Wait at most timeout_ms for a pid; exit code, 256 + N for signal N,
 * -1 after killing it on timeout. */
int eh_wait_pid(pid_t pid, int timeout_ms);

/* Start $LOCKCTL -S store args... in a session of its own, output into
 * <dir>/<tag>.out and .err. */
pid_t eh_lockctl(const char *store, const char *dir, const char *tag, const char *const args[]);
/* Run it to the end: exit code as eh_wait_pid; stdout into out (cap). */
int eh_lockctl_out(const char *store, const char *const args[], char *out, size_t cap);

ssize_t eh_read_file(const char *path, char *buf, size_t cap);
int eh_json_get(const char *json, const char *key, char *buf, size_t cap);
int64_t eh_boot_ms(void);
void eh_sleep_ms(int64_t ms);
void eh_child_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

#define CHILD_ASSERT(cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			eh_child_fail(__FILE__, __LINE__, "%s", #cond);                            \
	} while (0)

#endif
