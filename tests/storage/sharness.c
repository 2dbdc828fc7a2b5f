// SPDX-License-Identifier: MIT
/*
 * Plumbing for the security and storage-fault tests (see sharness.h).
 *
 * Other users are real: a child calls setgroups(), setresgid() and
 * setresuid() before it touches the store, so the kernel's permission checks
 * are the ones a deployment meets. Mounts are made in a private mount
 * namespace of the test process, so a failed test cannot leave a full or
 * read-only filesystem behind on the machine; the teardown still unmounts
 * them, innermost first, so that the scratch directories can be removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sharness.h"

#define MAX_DIRS   64
#define MAX_MOUNTS 16

static pid_t test_pid;
static char *dirs[MAX_DIRS];
static char *mounts[MAX_MOUNTS];

void sh_child_fail(const char *file, int line, const char *msg)
{
	fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, msg);
	if (getpid() == test_pid) {
		print_error("%s\n", msg);
		_fail(file, line);
	}
	_exit(SH_CHILD_FAILED);
}

void sh_init(int max_seconds)
{
	test_pid = getpid();
	setvbuf(stderr, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)max_seconds);
}

void sh_tmpdir(char *buf, size_t len, const char *tag)
{
	const char *base = getenv("LK_TEST_TMP");
	char abs[4096];

	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", base, strerror(errno));
	/* other users' children must reach their stores inside */
	chmod(base, 0755);
	if (!realpath(base, abs))
		fail_msg("realpath %s: %s", base, strerror(errno));
	if ((size_t)snprintf(buf, len, "%s/%s.XXXXXX", abs, tag) >= len)
		fail_msg("path too long");
	if (!mkdtemp(buf))
		fail_msg("mkdtemp %s: %s", buf, strerror(errno));
	chmod(buf, 0755);
	for (int i = 0; i < MAX_DIRS; i++)
		if (!dirs[i]) {
			dirs[i] = strdup(buf);
			return;
		}
	fail_msg("too many scratch directories");
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

int sh_cleanup(void **state)
{
	int r = 0;

	(void)state;
	for (int i = MAX_MOUNTS - 1; i >= 0; i--)
		if (mounts[i]) {
			if (umount2(mounts[i], MNT_DETACH) < 0) {
				fprintf(stderr, "umount %s: %s\n", mounts[i], strerror(errno));
				r = -1;
			}
			free(mounts[i]);
			mounts[i] = NULL;
		}
	for (int i = 0; i < MAX_DIRS; i++)
		if (dirs[i]) {
			if (nftw(dirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 &&
			    errno != ENOENT) {
				fprintf(stderr, "cannot remove %s: %s\n", dirs[i], strerror(errno));
				r = -1;
			}
			free(dirs[i]);
			dirs[i] = NULL;
		}
	return r;
}

int sh_private_mounts(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		return -errno;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	return 0;
}

static void remember_mount(const char *dir)
{
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (!mounts[i]) {
			mounts[i] = strdup(dir);
			return;
		}
	fail_msg("too many mounts");
}

int sh_mount_tmpfs(const char *dir, const char *opts)
{
	if (mount("lktest", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		return -errno;
	remember_mount(dir);
	return 0;
}

int sh_bind(const char *src, const char *dst, int ro)
{
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		return -errno;
	remember_mount(dst);
	if (ro && mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		return -errno;
	return 0;
}

int sh_remount(const char *dir, int ro)
{
	if (mount(NULL, dir, NULL, MS_REMOUNT | (ro ? MS_RDONLY : 0), NULL) < 0)
		return -errno;
	return 0;
}

static void become(const struct sh_user *u)
{
	if (!u)
		return;
	if (setgroups((size_t)u->ngroups, u->groups) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
	    setresuid(u->uid, u->uid, u->uid) < 0) {
		fprintf(stderr, "cannot become uid %u: %s\n", (unsigned)u->uid, strerror(errno));
		_exit(SH_CHILD_FAILED);
	}
	umask(u->umask);
}

static int reap(pid_t pid, int timeout_ms)
{
	struct timespec ts = {0, 2000000};
	int status;

	for (int waited = 0;; waited += 2) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int sh_run_as(const struct sh_user *u, int (*fn)(void *arg), void *arg)
{
	pid_t pid = fork();

	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		alarm(SH_SAFETY_MS / 1000);
		become(u);
		_exit(fn(arg));
	}
	return reap(pid, SH_SAFETY_MS);
}

/* ------------------------------------------------------------------------
 * Holders
 */

static int read_u64(int fd, uint64_t *v, int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	size_t got = 0;

	while (got < sizeof(*v)) {
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		n = read(fd, (char *)v + got, sizeof(*v) - got);
		if (n <= 0)
			return -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

static void write_u64(int fd, uint64_t v)
{
	if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
		/* the other side is gone; it notices on its own */
	}
}

static void holder_main(int rx, int tx, const char *store, const char *name, enum lk_mode mode,
                        uint64_t ttl_ms)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char msg[256];
	uint64_t cmd;
	int r;

	o.mode = mode;
	o.ttl_ms = mode == LK_MODE_LEASE ? ttl_ms : 0;
	o.owner = "holder";
	r = lk_store_open_err(store, NULL, &st, msg, sizeof(msg));
	if (r < 0) {
		fprintf(stderr, "holder: %s\n", msg);
		_exit(SH_CHILD_FAILED);
	}
	r = lk_lock_open(st, name, &o, &lk);
	if (r < 0) {
		fprintf(stderr, "holder: %s\n", lk_store_errmsg(st));
		_exit(SH_CHILD_FAILED);
	}
	r = lk_lock_acquire(lk, SH_SAFETY_MS);
	if (r < 0) {
		fprintf(stderr, "holder: %s\n", lk_lock_errmsg(lk));
		_exit(SH_CHILD_FAILED);
	}
	write_u64(tx, lk_lock_token(lk));
	/* 1: still holding?  EOF or 0: release and exit */
	while (read_u64(rx, &cmd, -1) == 0 && cmd == 1)
		write_u64(tx, lk_lock_check(lk) == 0);
	r = lk_lock_release(lk);
	write_u64(tx, (uint64_t)(int64_t)r);
	lk_lock_close(lk);
	lk_store_close(st);
	_exit(0);
}

void sh_holder_start(struct sh_holder *h, const struct sh_user *u, const char *store,
                     const char *name, enum lk_mode mode, uint64_t ttl_ms)
{
	int down[2], up[2];

	if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
		fail_msg("pipe: %s", strerror(errno));
	h->pid = fork();
	if (h->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (h->pid == 0) {
		close(down[1]);
		close(up[0]);
		alarm(60);
		become(u);
		holder_main(down[0], up[1], store, name, mode, ttl_ms);
	}
	close(down[0]);
	close(up[1]);
	h->tx = down[1];
	h->rx = up[0];
	if (read_u64(h->rx, &h->token, SH_SAFETY_MS) < 0) {
		int st = reap(h->pid, 1000);

		fail_msg("holder of %s did not acquire (exit %d)", name, st);
	}
}

int sh_holder_holds(struct sh_holder *h)
{
	uint64_t v = 0;

	write_u64(h->tx, 1);
	if (read_u64(h->rx, &v, SH_SAFETY_MS) < 0)
		fail_msg("holder does not answer");
	return (int)v;
}

int sh_holder_stop(struct sh_holder *h)
{
	uint64_t v = (uint64_t)-EPIPE;
	int st;

	write_u64(h->tx, 0);
	close(h->tx);
	if (read_u64(h->rx, &v, SH_SAFETY_MS) < 0)
		v = (uint64_t)-EPIPE;
	close(h->rx);
	st = reap(h->pid, SH_SAFETY_MS);
	if (st != 0)
		fail_msg("holder exited with %d", st);
	return (int)(int64_t)v;
}

/* ------------------------------------------------------------------------
 * lockctl
 */

int sh_lockctl(const struct sh_user *u, char *errbuf, size_t errlen, const char *const args[])
{
	const char *lockctl = getenv("LOCKCTL");
	char *argv[32];
	int p[2], n = 0, st;
	size_t got = 0;
	pid_t pid;

	if (!lockctl)
		fail_msg("LOCKCTL is not set");
	argv[n++] = (char *)lockctl;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0)
		fail_msg("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		become(u);
		dup2(null, 0);
		dup2(null, 1);
		dup2(p[1], 2);
		execv(lockctl, argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		struct pollfd pf = {p[0], POLLIN, 0};
		ssize_t r;

		if (poll(&pf, 1, SH_SAFETY_MS) <= 0)
			break;
		r = read(p[0], errbuf + got, errlen - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got >= errlen - 1)
			break;
	}
	errbuf[got] = 0;
	close(p[0]);
	st = reap(pid, SH_SAFETY_MS);
	return st >= 128 ? 256 + st - 128 : st;
}

int sh_write(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t n = strlen(s);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, n) != (ssize_t)n)
		r = -EIO;
	close(fd);
	return r;
}

ssize_t sh_read(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

int sh_mode(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -1;
	return (int)(st.st_mode & 07777);
}
