// SPDX-License-Identifier: MIT
/*
 * Plumbing for the lease-mode tests (see lharness.h).
 *
 * Lease tests measure time across processes: when a holder was killed, when
 * a waiter got the lease, when a command saw SIGTERM. They all read
 * CLOCK_BOOTTIME, the clock the library judges expiry by, so that numbers
 * from different processes compare directly and a test's bound means the
 * same thing as the protocol's.
 *
 * The test process makes itself a child subreaper: lockctl moves processes
 * around (a guardian, COMMAND in its own group) and a failed assertion
 * unwinds past the code that would have reaped them, so the teardown kills
 * and reaps whatever descendants are left, from every thread's child list.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lharness.h"
#include "common/tproc.h"

#define MAX_DIRS 64

static pid_t test_pid;
static char *dirs[MAX_DIRS];
static char self_path[PATH_MAX];

void lh_child_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, msg);
	_exit(LH_CHILD_FAILED);
}

void lh_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (getpid() != test_pid)
		lh_child_fail(file, line, "%s", msg);
	print_error("%s\n", msg);
	_fail(file, line);
}

void lh_init(int max_seconds)
{
	ssize_t n;

	test_pid = getpid();
	setvbuf(stderr, NULL, _IONBF, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGALRM, SIG_DFL);
	alarm((unsigned)max_seconds);
	n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	self_path[n > 0 ? n : 0] = 0;
}

const char *lh_self(void)
{
	return self_path;
}

/* Every child of every thread of this process, from /proc. */
static int list_children(pid_t *out, int cap)
{
	char path[300], buf[8192], *p, *end;
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc/self/task");

	if (!d)
		return 0;
	while ((de = readdir(d)) && n < cap) {
		ssize_t len;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/children", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		for (p = buf; n < cap; p = end) {
			long v = strtol(p, &end, 10);

			if (end == p)
				break;
			out[n++] = (pid_t)v;
		}
	}
	closedir(d);
	return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

int lh_teardown(void **state)
{
	int64_t end = lh_boot_ms() + LH_SAFETY_MS;
	pid_t kids[256], p;

	(void)state;
	for (;;) {
		int n = list_children(kids, 256);

		for (int i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (p < 0 && errno == ECHILD)
			break;
		if (lh_boot_ms() > end) {
			fprintf(stderr, "teardown: children left after %d ms\n", LH_SAFETY_MS);
			break;
		}
		lh_sleep_ms(2);
	}
	for (int i = 0; i < MAX_DIRS; i++) {
		if (!dirs[i])
			continue;
		nftw(dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(dirs[i]);
		dirs[i] = NULL;
	}
	return 0;
}

void lh_store_dir(char *buf, size_t len, const char *tag)
{
	const char *base = getenv("LK_TEST_TMP");
	char tmpl[PATH_MAX], real[PATH_MAX];
	int i;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base, tag);
	if (!mkdtemp(tmpl) || !realpath(tmpl, real))
		lh_fail(__FILE__, __LINE__, "cannot make a scratch directory under %s: %s", base,
		        strerror(errno));
	snprintf(buf, len, "%s", real);
	for (i = 0; i < MAX_DIRS && dirs[i]; i++)
		;
	if (i < MAX_DIRS && getpid() == test_pid)
		dirs[i] = strdup(real);
}

struct lk_store *lh_store_open(const char *dir)
{
	struct lk_store *st = NULL;
	char err[256] = "";
	int r = lk_store_open_err(dir, NULL, &st, err, sizeof(err));

	if (r < 0)
		lh_fail(__FILE__, __LINE__, "lk_store_open(%s): %s: %s", dir, lk_strerror(r), err);
	return st;
}

struct lk_lock *lh_lease_open(struct lk_store *st, const char *name, uint64_t ttl_ms,
                              const struct lk_lock_opts *o)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	int r;

	if (o)
		lo = *o;
	lo.mode = LK_MODE_LEASE;
	lo.ttl_ms = ttl_ms;
	r = lk_lock_open(st, name, &lo, &lk);
	if (r < 0)
		lh_fail(__FILE__, __LINE__, "lk_lock_open(%s): %s: %s", name, lk_strerror(r),
		        lk_store_errmsg(st));
	if (lk_lock_mode(lk) != LK_MODE_LEASE)
		lh_fail(__FILE__, __LINE__, "lock %s did not open in lease mode", name);
	return lk;
}

const char *lh_engine_expected(void)
{
	const char *e = getenv("LK_TEST_ENGINE");

	return e && *e ? e : "io_uring";
}

void lh_check_engine(struct lk_store *st)
{
	const char *got = lk_store_engine(st), *want = lh_engine_expected();

	if (strcmp(got, want))
		lh_fail(__FILE__, __LINE__, "heartbeat engine is '%s', this run is for '%s'", got,
		        want);
}

int lh_engine_code(const char *name)
{
	if (!strcmp(name, "io_uring"))
		return 1;
	if (!strcmp(name, "thread"))
		return 2;
	return 0;
}

void lh_spawn(struct lh_child *c, lh_child_fn fn, void *arg)
{
	int r = tp_spawn(test_pid, LH_CHILD_FAILED, -1, fn, arg, &c->pid, &c->tx, &c->rx);

	if (r < 0)
		lh_fail(__FILE__, __LINE__, "cannot start a child: %s", strerror(-r));
}

int lh_reap(struct lh_child *c, int timeout_ms)
{
	int code;

	if (c->pid <= 0)
		return -1;
	code = tp_wait_pid(c->pid, timeout_ms, 128);
	close(c->tx);
	close(c->rx);
	c->pid = 0;
	return code;
}

int lh_reap_now(struct lh_child *c)
{
	int status, code = -1;

	if (waitpid(c->pid, &status, 0) == c->pid)
		code = tp_status_code(status, 128);
	close(c->tx);
	close(c->rx);
	c->pid = 0;
	return code;
}

void lh_send(int fd, uint64_t v)
{
	int r = tp_send(fd, v);

	if (r < 0)
		lh_fail(__FILE__, __LINE__, "write to pipe: %s", strerror(-r));
}

int lh_recv(int fd, uint64_t *ret, int timeout_ms)
{
	return tp_recv(fd, ret, timeout_ms);
}

uint64_t lh_expect(int fd, int timeout_ms)
{
	uint64_t v = 0;
	int r = lh_recv(fd, &v, timeout_ms);

	if (r < 0)
		lh_fail(__FILE__, __LINE__, "no message from the other side: %s",
		        r == -EPIPE ? "it exited (see its message above)" : "timed out");
	return v;
}

void *lh_shared(size_t len)
{
	void *p = tp_shared(len);

	if (!p)
		lh_fail(__FILE__, __LINE__, "mmap: %s", strerror(errno));
	return p;
}

int64_t lh_boot_ns(void)
{
	return tp_boot_ns();
}

int64_t lh_boot_ms(void)
{
	return lh_boot_ns() / 1000000;
}

int64_t lh_real_ns(void)
{
	return tp_real_ns();
}

void lh_sleep_ms(int64_t ms)
{
	tp_sleep_ms(ms);
}

pid_t lh_lockctl(const char *dir, const char *tag, const char *const args[])
{
	const char *bin = getenv("LOCKCTL");
	char out[PATH_MAX], err[PATH_MAX];
	const char *argv[64];
	pid_t pid;
	int n = 0;

	if (!bin || !*bin)
		lh_fail(__FILE__, __LINE__, "LOCKCTL is not set: run the tests through ctest");
	argv[n++] = bin;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
	snprintf(err, sizeof(err), "%s/%s.err", dir, tag);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		lh_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
	if (pid == 0) {
		static const int dfl[] = {SIGINT,  SIGQUIT, SIGHUP,  SIGTERM, SIGTSTP, SIGTTIN,
		                          SIGTTOU, SIGPIPE, SIGCHLD, SIGCONT, SIGALRM};
		sigset_t none;
		int fd;

		setsid();
		alarm(0);
		for (size_t i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
			signal(dfl[i], SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, 1);
		fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int lh_wait_pid(pid_t pid, int timeout_ms)
{
	return tp_wait_pid(pid, timeout_ms, 256);
}

ssize_t lh_read_file(const char *path, char *buf, size_t cap)
{
	return tp_read_file(path, buf, cap);
}

int lh_wait_line(const char *path, int timeout_ms)
{
	int64_t end = lh_boot_ms() + timeout_ms;
	char buf[256];

	for (;;) {
		if (lh_read_file(path, buf, sizeof(buf)) > 0 && strchr(buf, '\n'))
			return 0;
		if (lh_boot_ms() >= end)
			return -ETIMEDOUT;
		lh_sleep_ms(2);
	}
}

int lh_json_get(const char *json, const char *key, char *buf, size_t cap)
{
	return tp_json_get(json, key, buf, cap);
}

/* ------------------------------------------------------------------------
 * Helper mode, run by lockctl as COMMAND. The SIGTERM handler formats and
 * writes the time itself: lockctl follows SIGTERM with SIGKILL after a
 * short grace, too short to spawn date(1).
 */

static int term_fd = -1;

static size_t fmt_u64(char *buf, uint64_t v)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

static void on_term(int sig)
{
	char buf[32];
	size_t n;

	(void)sig;
	n = fmt_u64(buf, (uint64_t)lh_boot_ns());
	buf[n++] = '\n';
	if (write(term_fd, buf, n) < 0) {
		/* nothing to do about it from a signal handler */
	}
	_exit(0);
}

static int write_stamp(const char *path)
{
	const char *tok = getenv("LOCKCTL_TOKEN");
	char buf[96];
	int fd, n;

	n = snprintf(buf, sizeof(buf), "%lld %s\n", (long long)lh_boot_ns(), tok ? tok : "0");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, (size_t)n) != n)
		return 1;
	close(fd);
	return 0;
}

int lh_helper_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--helper"))
		return -1;
	if (argc == 5 && !strcmp(argv[2], "term")) {
		struct sigaction sa;

		term_fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (term_fd < 0)
			return 1;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_term;
		sigaction(SIGTERM, &sa, NULL);
		if (write_stamp(argv[4]))
			return 1;
		for (;;)
			pause();
	}
	if (argc == 4 && !strcmp(argv[2], "start"))
		return write_stamp(argv[3]);
	if (argc == 5 && !strcmp(argv[2], "wait")) {
		struct stat st;

		if (write_stamp(argv[4]))
			return 1;
		while (stat(argv[3], &st) < 0)
			lh_sleep_ms(5);
		return 0;
	}
	fprintf(stderr, "helper: bad arguments\n");
	return 2;
}
