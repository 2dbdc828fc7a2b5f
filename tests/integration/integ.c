// SPDX-License-Identifier: MIT
/*
 * Plumbing for the integration tests (see integ.h).
 *
 * Tests that race processes against each other must know when a competitor
 * is really asleep in the kernel waiting for a lock, not merely about to ask
 * for it; a sleep() would make them slow on idle machines and wrong on busy
 * ones. The kernel lists every blocked lock request in /proc/locks with a
 * "->" marker, so it_wait_blocked() polls that table for the lock file's
 * device and inode.
 *
 * Every child is recorded so that a failed assertion in the test process,
 * which unwinds past the code that would have reaped it, still leaves no
 * process behind: the teardown kills and reaps whatever is left.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"
#include "common/tproc.h"

#define MAX_CHILDREN 64
#define MAX_DIRS     64

static pid_t test_pid;
static pid_t children[MAX_CHILDREN];
static char *dirs[MAX_DIRS];

void it_init(int max_seconds)
{
	test_pid = getpid();
	setvbuf(stderr, NULL, _IONBF, 0);
	/* SIGALRM's default action ends the process: a hang becomes a failure. */
	signal(SIGALRM, SIG_DFL);
	alarm((unsigned)max_seconds);
}

void it_child_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, msg);
	_exit(IT_CHILD_FAILED);
}

/* Fail from the test process through cmocka, from a child by exiting. */
static void check(int ok, const char *what, int r)
{
	if (ok)
		return;
	if (getpid() != test_pid)
		it_child_fail(__FILE__, __LINE__, "%s: %s", what, lk_strerror(r));
	fail_msg("%s: %d (%s)", what, r, lk_strerror(r));
}

static void remove_dir(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);

	if (d) {
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	rmdir(path);
}

int it_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (!children[i])
			continue;
		kill(children[i], SIGKILL);
		waitpid(children[i], NULL, 0);
		children[i] = 0;
	}
	for (int i = 0; i < MAX_DIRS; i++) {
		if (!dirs[i])
			continue;
		remove_dir(dirs[i]);
		free(dirs[i]);
		dirs[i] = NULL;
	}
	return 0;
}

void it_store_dir(char *buf, size_t len, const char *tag)
{
	const char *base = getenv("LK_TEST_TMP");
	char tmpl[512];
	int i;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0700); /* the parent of LK_TEST_TMP exists: it is the build dir */
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base, tag);
	check(mkdtemp(tmpl) != NULL, "mkdtemp", -errno);
	snprintf(buf, len, "%s", tmpl);
	for (i = 0; i < MAX_DIRS && dirs[i]; i++)
		;
	if (i < MAX_DIRS)
		dirs[i] = strdup(tmpl);
}

struct lk_store *it_store_open(const char *dir)
{
	struct lk_store *st = NULL;
	int r = lk_store_open(dir, NULL, &st);

	check(r == 0, "lk_store_open", r);
	return st;
}

struct lk_lock *it_lock_open(struct lk_store *st, const char *name, uint32_t flags,
                             const char *owner)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	int r;

	/* these tests are about kernel-mode (OFD) locks, wherever the store is */
	o.mode = LK_MODE_KERNEL;
	o.flags = flags;
	o.owner = owner;
	r = lk_lock_open(st, name, &o, &lk);
	check(r == 0, "lk_lock_open", r);
	check(lk_lock_mode(lk) == LK_MODE_KERNEL, "lk_lock_mode", -EINVAL);
	return lk;
}

void it_lock_path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

void it_spawn(struct it_child *c, it_child_fn fn, void *arg)
{
	int down[2], up[2];
	pid_t pid;
	int i;

	check(pipe2(down, O_CLOEXEC) == 0 && pipe2(up, O_CLOEXEC) == 0, "pipe2", -errno);
	pid = fork();
	check(pid >= 0, "fork", -errno);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != test_pid)
			_exit(IT_CHILD_FAILED);
		/* the child's own checks must not unwind into cmocka */
		test_pid = -1;
		close(down[1]);
		close(up[0]);
		fn(down[0], up[1], arg);
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	c->pid = pid;
	c->tx = down[1];
	c->rx = up[0];
	for (i = 0; i < MAX_CHILDREN && children[i]; i++)
		;
	if (i < MAX_CHILDREN)
		children[i] = pid;
}

static void forget_child(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

int it_reap(struct it_child *c, int timeout_ms)
{
	int64_t end = it_mono_ms() + timeout_ms;
	int status, code = -1;
	pid_t r;

	for (;;) {
		r = waitpid(c->pid, &status, WNOHANG);
		if (r == c->pid)
			break;
		if (r < 0 && errno != EINTR) {
			code = -1;
			goto out;
		}
		if (it_mono_ms() >= end) {
			fprintf(stderr, "child %d did not exit in %d ms; killing it\n", (int)c->pid,
			        timeout_ms);
			kill(c->pid, SIGKILL);
			waitpid(c->pid, NULL, 0);
			code = -1;
			goto out;
		}
		usleep(1000);
	}
	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		code = 128 + WTERMSIG(status);
out:
	forget_child(c->pid);
	close(c->tx);
	close(c->rx);
	c->pid = 0;
	return code;
}

void it_send(int fd, uint64_t v)
{
	ssize_t n;

	do {
		n = write(fd, &v, sizeof(v));
	} while (n < 0 && errno == EINTR);
	check(n == (ssize_t)sizeof(v), "write to pipe", n < 0 ? -errno : -EPIPE);
}

int it_recv(int fd, uint64_t *ret, int timeout_ms)
{
	return tp_recv(fd, ret, timeout_ms);
}

/* Count the blocked requests on (dev, ino) in /proc/locks. */
static int count_blocked(dev_t dev, ino_t ino)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/locks", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned int maj, min;
		unsigned long long i;
		char *p;

		if (!strstr(line, "->"))
			continue;
		/* "N: -> OFDLCK ADVISORY WRITE -1 fe:00:12345 0 0" */
		for (p = strtok(line, " \t"); p; p = strtok(NULL, " \t")) {
			if (sscanf(p, "%x:%x:%llu", &maj, &min, &i) == 3 &&
			    strchr(p, ':') != strrchr(p, ':'))
				break;
		}
		if (p && maj == major(dev) && min == minor(dev) && i == (unsigned long long)ino)
			n++;
	}
	fclose(f);
	return n;
}

int it_wait_blocked(const char *path, int n, int timeout_ms)
{
	int64_t end = it_mono_ms() + timeout_ms;
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	for (;;) {
		int c = count_blocked(st.st_dev, st.st_ino);

		if (c < 0)
			return c;
		if (c >= n)
			return 0;
		if (it_mono_ms() >= end)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

void *it_shared_mem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	check(p != MAP_FAILED, "mmap shared", -errno);
	return p;
}

int64_t it_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t it_real_ns(void)
{
	return tp_real_ns();
}
