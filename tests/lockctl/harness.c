// SPDX-License-Identifier: MIT
/*
 * Harness for the lockctl integration tests.
 *
 * The tests run the real binary as a separate process, with real signals,
 * so the harness has two jobs beyond spawning: no wait may hang (every wait
 * is bounded, and a process that overstays is killed), and no process may
 * outlive its test. lockctl deliberately moves processes around (COMMAND in
 * its own group, setsid'd grandchildren, a guardian that survives lockctl),
 * so tracking pids by hand would miss some. Instead the test process makes
 * itself a child subreaper: whatever a test starts stays its descendant, and
 * the teardown kills and reaps children until none is left.
 *
 * lockctl is started in a session of its own, so that a terminal the tests
 * happen to run in is never its controlling terminal, and with the signals
 * it forwards reset to their defaults: a test runner that ignores SIGHUP or
 * SIGINT would otherwise hand that to COMMAND, and a shell cannot trap a
 * signal it was started with ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

int64_t tc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tc_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void tc_init(void)
{
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* Children of this process, from /proc; returns how many were stored. */
static int list_children(pid_t parent, pid_t *out, int cap)
{
	char path[64], buf[8192], *p, *end;
	ssize_t len;
	int fd, n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	buf[len] = 0;
	for (p = buf; n < cap; p = end) {
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		out[n++] = (pid_t)v;
	}
	return n;
}

static void kill_descendants(void)
{
	int64_t end = tc_now_ms() + TC_BOUND_MS;
	pid_t kids[512], p;

	for (;;) {
		int n = list_children(getpid(), kids, 512);

		for (int i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (p < 0 && errno == ECHILD)
			return;
		if (tc_now_ms() > end) {
			fprintf(stderr, "harness: children left after %d ms\n", TC_BOUND_MS);
			return;
		}
		tc_sleep_ms(5);
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 ? -1 : 0;
}

int tc_setup(void **state)
{
	const char *base = getenv("LK_TEST_TMP");
	const char *bin = getenv("LOCKCTL");
	char tmpl[PATH_MAX], real[PATH_MAX];
	struct tc *t;

	if (!bin || !*bin) {
		fprintf(stderr, "LOCKCTL is not set: run the tests through ctest\n");
		return -1;
	}
	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		return -1;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	snprintf(tmpl, sizeof(tmpl), "%s/lkctl.XXXXXX", base);
	/* absolute, so paths handed to commands in other directories work */
	if (!mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= sizeof(t->dir)) {
		fprintf(stderr, "cannot make a scratch directory under %s\n", base);
		free(t);
		return -1;
	}
	memcpy(t->dir, real, strlen(real) + 1);
	snprintf(t->store, sizeof(t->store), "%s/store", t->dir);
	t->lockctl = bin;
	t->store_env = t->store;
	*state = t;
	return 0;
}

int tc_teardown(void **state)
{
	struct tc *t = *state;

	kill_descendants();
	if (t) {
		nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		free(t);
	}
	*state = NULL;
	return 0;
}

const char *tc_path(const struct tc *t, const char *name, char *buf, size_t cap)
{
	if (name[0] == '/')
		snprintf(buf, cap, "%s", name);
	else
		snprintf(buf, cap, "%s/%s", t->dir, name);
	return buf;
}

int tc_exists(const struct tc *t, const char *name)
{
	char p[PATH_MAX + 64];
	struct stat st;

	return lstat(tc_path(t, name, p, sizeof(p)), &st) == 0;
}

void tc_touch(const struct tc *t, const char *name)
{
	char p[PATH_MAX + 64];
	int fd = open(tc_path(t, name, p, sizeof(p)), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	if (fd >= 0)
		close(fd);
}

static void __attribute__((noreturn))
child_exec(struct tc *t, const char *tag, const char *const args[])
{
	static const int reset[] = {SIGINT,  SIGQUIT, SIGHUP,  SIGTERM, SIGTSTP, SIGTTIN,
	                            SIGTTOU, SIGPIPE, SIGCHLD, SIGCONT, SIGUSR1, SIGUSR2};
	char out[PATH_MAX + 64], err[PATH_MAX + 64];
	const char *argv[64];
	sigset_t none;
	int n = 0, fd;

	setsid();
	for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
		signal(reset[i], SIG_DFL);
	if (t->ignore_sig)
		signal(t->ignore_sig, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (chdir(t->cwd ? t->cwd : t->dir) < 0)
		_exit(250);
	if (t->store_env)
		setenv("LOCKCTL_STORE", t->store_env, 1);
	else
		unsetenv("LOCKCTL_STORE");

	snprintf(out, sizeof(out), "%s/%s.out", t->dir, tag);
	snprintf(err, sizeof(err), "%s/%s.err", t->dir, tag);
	fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 0) < 0)
		_exit(250);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0)
		_exit(250);
	fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, 2) < 0)
		_exit(250);
	/* nothing but 0, 1 and 2 reaches lockctl */
	for (fd = 3; fd < 1024; fd++)
		close(fd);

	argv[n++] = "lockctl";
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	execv(t->lockctl, (char *const *)argv);
	_exit(251);
}

pid_t tc_spawn(struct tc *t, const char *tag, const char *const args[])
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0)
		child_exec(t, tag, args);
	return pid;
}

int tc_wait(pid_t pid, int timeout_ms, int *ret_status)
{
	int64_t end = tc_now_ms() + timeout_ms;
	int status;
	pid_t p;

	for (;;) {
		p = waitpid(pid, &status, WNOHANG);
		if (p == pid) {
			*ret_status = status;
			return 0;
		}
		if (p < 0 && errno != EINTR)
			return -errno;
		if (tc_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		tc_sleep_ms(2);
	}
}

int tc_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 256 + WTERMSIG(status);
	return 512;
}

int tc_run_timed(struct tc *t, const char *tag, const char *const args[], int64_t *ret_ms)
{
	int64_t start = tc_now_ms();
	int status;
	pid_t pid = tc_spawn(t, tag, args);

	if (pid < 0)
		return -1;
	if (tc_wait(pid, TC_BOUND_MS, &status) < 0)
		return -1;
	if (ret_ms)
		*ret_ms = tc_now_ms() - start;
	return tc_code(status);
}

int tc_run(struct tc *t, const char *tag, const char *const args[])
{
	return tc_run_timed(t, tag, args, NULL);
}

ssize_t tc_read(const struct tc *t, const char *name, char *buf, size_t cap)
{
	char p[PATH_MAX + 64];
	size_t len = 0;
	ssize_t n;
	int fd;

	buf[0] = 0;
	fd = open(tc_path(t, name, p, sizeof(p)), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = 0;
	return (ssize_t)len;
}

int tc_wait_line(const struct tc *t, const char *name, int timeout_ms)
{
	int64_t end = tc_now_ms() + timeout_ms;
	char buf[256];

	for (;;) {
		ssize_t n = tc_read(t, name, buf, sizeof(buf));

		if (n > 0 && buf[n - 1] == '\n')
			return 0;
		if (tc_now_ms() > end)
			return -ETIMEDOUT;
		tc_sleep_ms(5);
	}
}

long tc_read_long(const struct tc *t, const char *name)
{
	char buf[64], *end;
	long v;

	if (tc_read(t, name, buf, sizeof(buf)) <= 0)
		return -1;
	v = strtol(buf, &end, 10);
	return end == buf ? -1 : v;
}

int tc_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		if (*s == '\n' || !s[1])
			n++;
	return n;
}

int tc_alive(pid_t pid)
{
	return !(kill(pid, 0) < 0 && errno == ESRCH);
}

char tc_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* the command name may contain anything, so look after its ')' */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

int tc_wait_stopped(pid_t pid, int stopped, int timeout_ms)
{
	int64_t end = tc_now_ms() + timeout_ms;

	for (;;) {
		char s = tc_proc_state(pid);

		if (stopped ? s == 'T' : (s != 'T' && s != 0))
			return 0;
		if (tc_now_ms() > end)
			return -ETIMEDOUT;
		tc_sleep_ms(5);
	}
}

pid_t tc_find_child(pid_t parent, const char *name)
{
	pid_t kids[64];
	int n = list_children(parent, kids, 64);

	for (int i = 0; i < n; i++) {
		char path[64], comm[64];
		ssize_t len;
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)kids[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (len <= 0)
			continue;
		comm[len] = 0;
		comm[strcspn(comm, "\n")] = 0;
		if (!strcmp(comm, name))
			return kids[i];
	}
	return -1;
}

pid_t tc_hold(struct tc *t, const char *name, const char *opt, const char *ready)
{
	char script[PATH_MAX + 128], p[PATH_MAX + 64], tag[128];
	int status;
	pid_t pid;

	snprintf(script, sizeof(script), "echo $$ > '%s'; exec sleep 60",
	         tc_path(t, ready, p, sizeof(p)));
	snprintf(tag, sizeof(tag), "hold.%s", ready);
	if (opt)
		pid = tc_spawn(t, tag, TC_ARGV("run", name, opt, "--", "sh", "-c", script));
	else
		pid = tc_spawn(t, tag, TC_ARGV("run", name, "--", "sh", "-c", script));
	if (pid < 0)
		return -1;
	if (tc_wait_line(t, ready, TC_BOUND_MS) < 0) {
		kill(pid, SIGKILL);
		tc_wait(pid, TC_BOUND_MS, &status);
		return -1;
	}
	return pid;
}

void tc_unhold(pid_t pid)
{
	int status;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	tc_wait(pid, TC_BOUND_MS, &status);
}

/* ------------------------------------------------------------------------
 * JSON: only enough to find a member's raw text; lockctl's output is
 * compact, but whitespace between tokens is allowed anyway.
 */
static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *skip_string(const char *p)
{
	for (p++; *p && *p != '"'; p++)
		if (*p == '\\' && p[1])
			p++;
	return *p ? p + 1 : NULL;
}

static const char *skip_value(const char *p)
{
	int depth = 0;

	if (*p == '"')
		return skip_string(p);
	if (*p != '{' && *p != '[') {
		while (*p && !strchr(",}] \n\t\r", *p))
			p++;
		return p;
	}
	while (*p) {
		if (*p == '"') {
			p = skip_string(p);
			if (!p)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

static int copy_span(const char *a, const char *b, char *buf, size_t cap)
{
	size_t n = (size_t)(b - a);

	if (n >= cap)
		return -ENOSPC;
	memcpy(buf, a, n);
	buf[n] = 0;
	return 0;
}

int tc_json_member(const char *obj, const char *key, char *buf, size_t cap)
{
	const char *p = skip_ws(obj), *k, *ke, *v, *ve;
	size_t klen = strlen(key);

	if (*p != '{')
		return -ENOENT;
	p++;
	for (;;) {
		p = skip_ws(p);
		if (*p != '"')
			return -ENOENT;
		k = p + 1;
		ke = skip_string(p);
		if (!ke)
			return -ENOENT;
		p = skip_ws(ke);
		if (*p != ':')
			return -ENOENT;
		v = skip_ws(p + 1);
		ve = skip_value(v);
		if (!ve)
			return -ENOENT;
		if ((size_t)(ke - 1 - k) == klen && !memcmp(k, key, klen))
			return copy_span(v, ve, buf, cap);
		p = skip_ws(ve);
		if (*p != ',')
			return -ENOENT;
		p++;
	}
}

int tc_json_object(const char *json, const char *name, char *buf, size_t cap)
{
	char want[300], got[300];
	const char *p = json, *end;

	snprintf(want, sizeof(want), "\"%s\"", name);
	while ((p = strchr(p, '{'))) {
		end = skip_value(p);
		if (!end)
			return -ENOENT;
		if (copy_span(p, end, buf, cap) == 0 &&
		    tc_json_member(buf, "name", got, sizeof(got)) == 0 && !strcmp(got, want))
			return 0;
		p = end;
	}
	return -ENOENT;
}
