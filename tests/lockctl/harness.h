/* SPDX-License-Identifier: MIT */
/*
 * A small harness for driving the real lockctl binary from cmocka tests:
 * scratch directories, spawning lockctl with its output captured in files,
 * bounded waits for processes and files, clean-up of every process a test
 * started, and just enough JSON reading to check what lockctl prints.
 */
#ifndef LK_TEST_CTL_HARNESS_H
#define LK_TEST_CTL_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every wait in these tests gives up after this long: a safety bound only. */
#define TC_BOUND_MS 20000
/* Scratch paths are kept short, so that paths built from them always fit. */
#define TC_DIR_MAX 1024

/* A NULL-terminated argument vector for lockctl (without argv[0]). */
#define TC_ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

struct tc {
	char dir[TC_DIR_MAX];       /* scratch directory, absolute, removed at teardown */
	char store[TC_DIR_MAX + 8]; /* <dir>/store: LOCKCTL_STORE given to lockctl */
	const char *lockctl;        /* path of the binary under test ($LOCKCTL) */
	const char *store_env;      /* what LOCKCTL_STORE is set to (NULL: unset) */
	const char *cwd;            /* working directory of lockctl (NULL: dir) */
	int ignore_sig;             /* a signal lockctl is started with ignored, or 0 */
};

/*
 * cmocka fixtures: a struct tc with a fresh scratch directory; teardown
 * kills and reaps every descendant of the test process and removes the
 * directory. main() must call tc_init() first.
 */
int tc_setup(void **state);
int tc_teardown(void **state);
/* Make the test process the subreaper of everything it starts. */
void tc_init(void);

/*
 * Start lockctl with args in its own session, stdin from /dev/null, stdout
 * and stderr into <dir>/<tag>.out and <dir>/<tag>.err. Returns the pid.
 */
pid_t tc_spawn(struct tc *t, const char *tag, const char *const args[]);
/* Wait for pid at most timeout_ms; on timeout SIGKILL and reap it and
 * return -ETIMEDOUT. Returns 0 and the wait status otherwise. */
int tc_wait(pid_t pid, int timeout_ms, int *ret_status);
/* An exit code, or 256 + N for death by signal N: never confused. */
int tc_code(int status);
/* tc_spawn + tc_wait(TC_BOUND_MS): the tc_code, or -1 on timeout. */
int tc_run(struct tc *t, const char *tag, const char *const args[]);
/* As tc_run, and the elapsed wall time in ms. */
int tc_run_timed(struct tc *t, const char *tag, const char *const args[], int64_t *ret_ms);

/* Read <dir>/<name> (or an absolute path) into buf, NUL-terminated.
 * Returns its length, or -1 if it cannot be read. */
ssize_t tc_read(const struct tc *t, const char *name, char *buf, size_t cap);
/* Wait until <dir>/<name> holds a complete line. 0 or -ETIMEDOUT. */
int tc_wait_line(const struct tc *t, const char *name, int timeout_ms);
/* The first number in <dir>/<name>, or -1. */
long tc_read_long(const struct tc *t, const char *name);
/* Create <dir>/<name> (empty). */
void tc_touch(const struct tc *t, const char *name);
/* <dir>/<name> into buf. */
const char *tc_path(const struct tc *t, const char *name, char *buf, size_t cap);
int tc_exists(const struct tc *t, const char *name);

/* Number of lines in s (a final line without '\n' counts too). */
int tc_lines(const char *s);
int64_t tc_now_ms(void);
void tc_sleep_ms(int ms);
/* 1 while pid exists (zombies included), 0 once kill() says ESRCH. */
int tc_alive(pid_t pid);
/* The state letter in /proc/<pid>/stat ('R', 'S', 'T', 'Z'...), or 0. */
char tc_proc_state(pid_t pid);
/* Wait until pid's state is (want != 0) or is not (want == 0) 'T'. */
int tc_wait_stopped(pid_t pid, int stopped, int timeout_ms);
/* The first child of parent whose comm is name, or -1. */
pid_t tc_find_child(pid_t parent, const char *name);

/*
 * Start "lockctl run NAME [OPT] -- sh -c 'echo $$ > READY; exec sleep 60'"
 * and wait until it holds the lock (READY written). opt may be NULL.
 * Returns lockctl's pid, or -1.
 */
pid_t tc_hold(struct tc *t, const char *name, const char *opt, const char *ready);
/* End a holder started by tc_hold (SIGTERM, forwarded to its sleep). */
void tc_unhold(pid_t pid);

/*
 * The object in json (a single object or an array of them) whose "name" is
 * name, copied into buf. Returns 0 or -ENOENT.
 */
int tc_json_object(const char *json, const char *name, char *buf, size_t cap);
/*
 * The raw text of the top-level member key of object obj ("true", "123",
 * "\"kernel\"", "{...}", "null"), copied into buf. Returns 0 or -ENOENT.
 */
int tc_json_member(const char *obj, const char *key, char *buf, size_t cap);

#endif
