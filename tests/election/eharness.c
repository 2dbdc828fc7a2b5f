// SPDX-License-Identifier: MIT
/*
 * Plumbing of the election tests (see eharness.h). Children are forked
 * while the test process is single-threaded; they die with it (parent-death
 * signal), and the test process is a subreaper so that nothing a test
 * started, lockctl's guardians included, outlives the teardown.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eharness.h"
#include "common/tproc.h"

static char dirs[16][PATH_MAX];
static int ndirs;

int eh_nfs(void)
{
	const char *s = getenv("LK_ELECTION_STORE");

	return s && !strcmp(s, "nfs");
}

void eh_init(int max_seconds)
{
	alarm((unsigned)max_seconds);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
}

int64_t eh_boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void eh_sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void eh_child_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "child %d: %s:%d: ", (int)getpid(), file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(EH_CHILD_FAILED);
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (d) {
		while ((de = readdir(d))) {
			char p[PATH_MAX];

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
			rm_rf(p);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

int eh_teardown(void **state)
{
	(void)state;
	/* every descendant is ours (subreaper): kill them until none is left */
	for (int round = 0; round < 100; round++) {
		char path[64], buf[4096];
		int fd, n;

		snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)gettid());
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? (int)read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			break;
		buf[n] = 0;
		for (char *p = buf, *end;; p = end) {
			long pid = strtol(p, &end, 10);

			if (end == p)
				break;
			kill(-(pid_t)pid, SIGKILL);
			kill((pid_t)pid, SIGCONT);
			kill((pid_t)pid, SIGKILL);
		}
		while (waitpid(-1, NULL, 0) > 0)
			;
	}
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	for (int i = 0; i < ndirs; i++)
		rm_rf(dirs[i]);
	ndirs = 0;
	return 0;
}

static void remember(const char *d)
{
	if (ndirs < 16)
		snprintf(dirs[ndirs++], PATH_MAX, "%s", d);
}

void eh_store(const char *tag, char *url, size_t ulen, char *local, size_t llen)
{
	char tmpl[PATH_MAX];
	const char *base = getenv("LK_TEST_TMP");

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base, tag);
	if (!mkdtemp(tmpl)) {
		fprintf(stderr, "mkdtemp %s: %s\n", tmpl, strerror(errno));
		abort();
	}
	remember(tmpl);
	snprintf(local, llen, "%s", tmpl);
	if (!eh_nfs()) {
		snprintf(url, ulen, "%s/store", tmpl);
		return;
	}
	{
		const char *u = getenv("LK_NFS_URL"), *ex = getenv("LK_NFS_EXPORT_DIR");
		const char *q;
		char sub[PATH_MAX];

		if (!u || !ex) {
			fprintf(stderr, "LK_NFS_URL and LK_NFS_EXPORT_DIR must be set\n");
			abort();
		}
		snprintf(sub, sizeof(sub), "%s/%s.XXXXXX", ex, tag);
		if (!mkdtemp(sub)) {
			fprintf(stderr, "mkdtemp %s: %s\n", sub, strerror(errno));
			abort();
		}
		remember(sub);
		q = strchr(u, '?');
		snprintf(url, ulen, "%.*s/%s%s", (int)(q ? q - u : (ptrdiff_t)strlen(u)), u,
		         strrchr(sub, '/') + 1, q ? q : "");
	}
}

struct lk_store *eh_store_open(const char *url)
{
	struct lk_store *st = NULL;
	char msg[256];
	int r = lk_store_open_err(url, NULL, &st, msg, sizeof(msg));

	if (r < 0)
		eh_child_fail(__FILE__, __LINE__, "store %s: %s", url, msg);
	return st;
}

void eh_spawn(struct eh_child *c, eh_child_fn fn, void *arg)
{
	if (tp_spawn(getpid(), EH_CHILD_FAILED, -1, fn, arg, &c->pid, &c->tx, &c->rx) < 0)
		abort();
}

void eh_send(int fd, uint64_t v)
{
	ssize_t n;

	do
		n = write(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
}

int eh_recv(int fd, uint64_t *ret, int timeout_ms)
{
	return tp_recv(fd, ret, timeout_ms);
}

int eh_wait_pid(pid_t pid, int timeout_ms)
{
	return tp_wait_pid(pid, timeout_ms, 256);
}

static pid_t start_lockctl(const char *store, const char *out, const char *err,
                           const char *const args[])
{
	const char *lockctl = getenv("LOCKCTL");
	const char *argv[32];
	int n = 0;
	pid_t p;

	argv[n++] = lockctl;
	argv[n++] = "-S";
	argv[n++] = store;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	p = fork();
	if (p == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int i = open("/dev/null", O_RDONLY | O_CLOEXEC);

		setsid();
		dup2(i, 0);
		dup2(o, 1);
		dup2(e, 2);
		alarm(0);
		execv(lockctl, (char *const *)argv);
		_exit(127);
	}
	return p;
}

pid_t eh_lockctl(const char *store, const char *dir, const char *tag, const char *const args[])
{
	char out[PATH_MAX], err[PATH_MAX];

	snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
	snprintf(err, sizeof(err), "%s/%s.err", dir, tag);
	return start_lockctl(store, out, err, args);
}

int eh_lockctl_out(const char *store, const char *const args[], char *out, size_t cap)
{
	char o[64], e[64];
	pid_t p;
	int r;

	snprintf(o, sizeof(o), "/tmp/eh-%d.out", (int)getpid());
	snprintf(e, sizeof(e), "/tmp/eh-%d.err", (int)getpid());
	p = start_lockctl(store, o, e, args);
	r = eh_wait_pid(p, EH_SAFETY_MS);
	if (eh_read_file(o, out, cap) < 0)
		out[0] = 0;
	unlink(o);
	unlink(e);
	return r;
}

ssize_t eh_read_file(const char *path, char *buf, size_t cap)
{
	return tp_read_file(path, buf, cap);
}

int eh_json_get(const char *json, const char *key, char *buf, size_t cap)
{
	char pat[128];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '"') {
		e = strchr(p + 1, '"');
		if (!e)
			return -1;
		e++;
	} else {
		e = p + strcspn(p, ",}\n");
	}
	snprintf(buf, cap, "%.*s", (int)(e - p), p);
	return 0;
}
