// SPDX-License-Identifier: MIT
/*
 * Plumbing for the nfs:// tests (see nharness.h).
 *
 * The tests talk to a real nfs-ganesha server on 127.0.0.1 that a ctest
 * fixture started (tools/nfs-server.sh); its URL and the export's local path
 * come from the environment. Every process that opens an nfs:// store gets a
 * libnfs context of its own, with its own connection, so a few forked
 * processes stand for a few hosts. The export is also a plain directory on
 * this machine, which lets a test read what the server really stored
 * without going through any client, for instance while the server is
 * stopped.
 *
 * Some tests stop the server (SIGSTOP) or kill and restart it. A test that
 * fails half-way must not leave it stopped for the tests that follow, nor a
 * test process that dies (its alarm, a crash) either: pausing arms a guard
 * process that continues the server once the test's end of a pipe closes,
 * and the teardown resumes or restarts the server before anything else.
 */
#define _GNU_SOURCE
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
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "nharness.h"
#include "common/tproc.h"

#define MAX_DIRS 64

static pid_t test_pid;
static char *dirs[MAX_DIRS];

static pid_t guard_pid;     /* continues a paused server if the test dies */
static int guard_fd = -1;   /* the test's end of the guard's pipe */
static int restart_pending; /* a restart began and has not been seen through */

void nh_child_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, msg);
	_exit(NH_CHILD_FAILED);
}

void nh_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (getpid() != test_pid)
		nh_child_fail(file, line, "%s", msg);
	print_error("%s\n", msg);
	_fail(file, line);
}

/* ------------------------------------------------------------------------
 * Where the server is
 */

static const char *env_must(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		nh_fail(__FILE__, __LINE__,
		        "%s is not set: run the NFS tests through ctest (label nfs)", name);
	return v ? v : "";
}

/* The test URL without and with its arguments. */
static void url_parts(char *base, size_t blen, const char **ret_query)
{
	const char *url = env_must("LK_NFS_URL");
	const char *q = strchr(url, '?');

	snprintf(base, blen, "%.*s", (int)(q ? q - url : (ptrdiff_t)strlen(url)), url);
	*ret_query = q ? q + 1 : "";
}

const char *nh_export_dir(void)
{
	return env_must("LK_NFS_EXPORT_DIR");
}

void nh_url(char *buf, size_t len, const char *rel, const char *query)
{
	char base[PATH_MAX + 64];
	const char *q;

	url_parts(base, sizeof(base), &q);
	if (query)
		q = query;
	snprintf(buf, len, "%s%s%s%s%s", base, rel && *rel ? "/" : "", rel ? rel : "",
	         *q ? "?" : "", q);
}

void nh_query_with(char *buf, size_t len, const char *key, const char *value)
{
	char base[PATH_MAX + 64];
	const char *q, *p, *amp;
	size_t klen = strlen(key), off = 0;
	int found = 0;

	url_parts(base, sizeof(base), &q);
	buf[0] = 0;
	for (p = q; *p && off < len; p = amp ? amp + 1 : p + strlen(p)) {
		size_t plen;

		amp = strchr(p, '&');
		plen = amp ? (size_t)(amp - p) : strlen(p);
		if (plen > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			off += (size_t)snprintf(buf + off, len - off, "%s%s=%s", off ? "&" : "",
			                        key, value);
			found = 1;
		} else {
			off += (size_t)snprintf(buf + off, len - off, "%s%.*s", off ? "&" : "",
			                        (int)plen, p);
		}
	}
	if (!found && off < len)
		snprintf(buf + off, len - off, "%s%s=%s", off ? "&" : "", key, value);
}

int nh_nfs_port(void)
{
	char base[PATH_MAX + 64];
	const char *q, *p;

	url_parts(base, sizeof(base), &q);
	p = strstr(q, "nfsport=");
	if (!p)
		nh_fail(__FILE__, __LINE__, "LK_NFS_URL names no nfsport");
	return p ? atoi(p + 8) : 0;
}

/* ------------------------------------------------------------------------
 * Set-up and teardown
 */

void nh_init(int max_seconds)
{
	test_pid = getpid();
	setvbuf(stderr, NULL, _IONBF, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGALRM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)max_seconds);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void kill_children(void)
{
	int64_t end = nh_boot_ns() / 1000000 + NH_SAFETY_MS;
	char path[64], buf[8192];
	pid_t p;

	for (;;) {
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)test_pid,
		         (int)test_pid);
		if (nh_read_file(path, buf, sizeof(buf)) > 0) {
			char *s = buf, *e;

			for (;;) {
				long v = strtol(s, &e, 10);

				if (e == s)
					break;
				kill((pid_t)v, SIGKILL);
				s = e;
			}
		}
		while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (p < 0 && errno == ECHILD)
			return;
		if (nh_boot_ns() / 1000000 > end) {
			fprintf(stderr, "teardown: children left after %d ms\n", NH_SAFETY_MS);
			return;
		}
		nh_sleep_ms(2);
	}
}

int nh_teardown(void **state)
{
	(void)state;
	if (guard_fd >= 0) {
		fprintf(stderr, "teardown: the server was left paused; resuming it\n");
		nh_server_resume();
	}
	if (restart_pending) {
		restart_pending = 0;
		if (nh_server("status") != 0) {
			fprintf(stderr, "teardown: the server is not running; restarting it\n");
			nh_server("restart");
		}
	}
	kill_children();
	for (int i = 0; i < MAX_DIRS; i++) {
		if (!dirs[i])
			continue;
		if (getenv("LK_TEST_KEEP")) /* kept for a look after a failure */
			fprintf(stderr, "kept %s\n", dirs[i]);
		else
			nftw(dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(dirs[i]);
		dirs[i] = NULL;
	}
	return 0;
}

static void remember_dir(const char *path)
{
	int i;

	if (getpid() != test_pid)
		return;
	for (i = 0; i < MAX_DIRS && dirs[i]; i++)
		;
	if (i < MAX_DIRS)
		dirs[i] = strdup(path);
}

void nh_scratch(const char *tag, char *local, size_t llen, char *rel, size_t rlen)
{
	char tmpl[PATH_MAX];

	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", nh_export_dir(), tag);
	if (!mkdtemp(tmpl))
		nh_fail(__FILE__, __LINE__, "cannot make a directory in the export %s: %s",
		        nh_export_dir(), strerror(errno));
	remember_dir(tmpl);
	snprintf(local, llen, "%s", tmpl);
	snprintf(rel, rlen, "%s", strrchr(tmpl, '/') + 1);
}

void nh_tmp_dir(char *buf, size_t len, const char *tag)
{
	const char *base = getenv("LK_TEST_TMP");
	char tmpl[PATH_MAX];

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base, tag);
	if (!mkdtemp(tmpl))
		nh_fail(__FILE__, __LINE__, "cannot make a scratch directory under %s: %s", base,
		        strerror(errno));
	remember_dir(tmpl);
	snprintf(buf, len, "%s", tmpl);
}

/* ------------------------------------------------------------------------
 * Stores and locks
 */

struct lk_store *nh_store_open(const char *url)
{
	struct lk_store *st = NULL;
	char err[256] = "";
	int r = lk_store_open_err(url, NULL, &st, err, sizeof(err));

	if (r < 0)
		nh_fail(__FILE__, __LINE__, "lk_store_open(%s): %s: %s", url, lk_strerror(r), err);
	return st;
}

struct lk_lock *nh_lease_open(struct lk_store *st, const char *name, uint64_t ttl_ms,
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
		nh_fail(__FILE__, __LINE__, "lk_lock_open(%s): %s: %s", name, lk_strerror(r),
		        lk_store_errmsg(st));
	if (r == 0 && lk_lock_mode(lk) != LK_MODE_LEASE)
		nh_fail(__FILE__, __LINE__, "lock %s did not open in lease mode", name);
	return lk;
}

void nh_make_foreign(struct lk_store *st)
{
	if (getrandom(st->boot_id, sizeof(st->boot_id), 0) != (ssize_t)sizeof(st->boot_id))
		nh_fail(__FILE__, __LINE__, "getrandom: %s", strerror(errno));
}

int64_t nh_ttl_up_ns(uint64_t ttl_ms)
{
	int64_t t = (int64_t)ttl_ms * 1000000;

	return t + t / 1000000 * NH_RHO_PPM;
}

int64_t nh_hold_ns(uint64_t ttl_ms)
{
	int64_t t = (int64_t)ttl_ms * 1000000;
	int64_t margin = t / 10 > 100000000 ? t / 10 : 100000000;

	return t - t / 1000000 * NH_RHO_PPM - margin;
}

const char *nh_engine_expected(void)
{
	const char *e = getenv("LK_TEST_ENGINE");

	return e && *e ? e : lk_engine_default();
}

int nh_engine_code(const char *name)
{
	if (!strcmp(name, "io_uring"))
		return 1;
	if (!strcmp(name, "thread"))
		return 2;
	return 0;
}

/* ------------------------------------------------------------------------
 * The server
 */

int nh_server(const char *cmd)
{
	const char *sh = env_must("LK_NFS_SERVER_SH"), *state = env_must("LK_NFS_STATE_DIR");
	pid_t pid;
	int rc;

	/*
	 * The script leaves a (re)started server behind when it exits. That
	 * orphan must go to init, not to this process (a subreaper), whose
	 * teardown kills every descendant it has.
	 */
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		nh_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* its messages belong in the test's log, between the test's own */
		dup2(2, 1);
		alarm(0);
		if (guard_fd >= 0)
			close(guard_fd);
		execl("/bin/sh", "sh", sh, cmd, state, (char *)NULL);
		_exit(127);
	}
	rc = nh_wait_pid(pid, 2 * NH_SAFETY_MS);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	return rc;
}

static pid_t server_pid(void)
{
	char buf[32];

	if (nh_read_file(env_must("LK_NFS_SERVER_PID_FILE"), buf, sizeof(buf)) <= 0)
		nh_fail(__FILE__, __LINE__, "no pid file: is the NFS server running?");
	return (pid_t)atoi(buf);
}

/* The guard: continue the server once the test's end of the pipe closes,
 * unless the process with that pid is not the server any more. */
static void guard_main(int fd, pid_t srv)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char path[64], cmd[4096];

	setsid();
	poll(&p, 1, 120000);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)srv);
	if (nh_read_file(path, cmd, sizeof(cmd)) > 0 && strstr(cmd, "ganesha"))
		kill(srv, SIGCONT);
	_exit(0);
}

void nh_server_pause(void)
{
	pid_t srv = server_pid();
	int p[2], rc;

	if (guard_fd >= 0)
		nh_fail(__FILE__, __LINE__, "the server is paused already");
	if (pipe2(p, O_CLOEXEC) < 0)
		nh_fail(__FILE__, __LINE__, "pipe2: %s", strerror(errno));
	fflush(NULL);
	guard_pid = fork();
	if (guard_pid < 0)
		nh_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
	if (guard_pid == 0) {
		alarm(0);
		close(p[1]);
		guard_main(p[0], srv);
	}
	close(p[0]);
	guard_fd = p[1];
	rc = nh_server("pause");
	if (rc != 0)
		nh_fail(__FILE__, __LINE__, "nfs-server.sh pause failed (%d)", rc);
}

void nh_server_resume(void)
{
	int rc = nh_server("resume");

	/* the guard has nothing left to do; it must not continue a later pause */
	if (guard_pid > 0) {
		kill(guard_pid, SIGKILL);
		waitpid(guard_pid, NULL, 0);
		guard_pid = 0;
	}
	if (guard_fd >= 0)
		close(guard_fd);
	guard_fd = -1;
	if (rc != 0)
		nh_fail(__FILE__, __LINE__, "nfs-server.sh resume failed (%d)", rc);
}

int64_t nh_server_restart(void)
{
	int64_t t0 = nh_boot_ns();
	int rc;

	restart_pending = 1;
	rc = nh_server("restart");
	if (rc != 0)
		nh_fail(__FILE__, __LINE__, "nfs-server.sh restart failed (%d)", rc);
	restart_pending = 0;
	return (nh_boot_ns() - t0) / 1000000;
}

/* ------------------------------------------------------------------------
 * Children and pipes
 */

void nh_spawn(struct nh_child *c, nh_child_fn fn, void *arg)
{
	int r = tp_spawn(test_pid, NH_CHILD_FAILED, guard_fd, fn, arg, &c->pid, &c->tx, &c->rx);

	if (r < 0)
		nh_fail(__FILE__, __LINE__, "cannot start a child: %s", strerror(-r));
}

int nh_reap(struct nh_child *c, int timeout_ms)
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

void nh_send(int fd, uint64_t v)
{
	int r = tp_send(fd, v);

	if (r < 0)
		nh_fail(__FILE__, __LINE__, "write to pipe: %s", strerror(-r));
}

int nh_recv(int fd, uint64_t *ret, int timeout_ms)
{
	return tp_recv(fd, ret, timeout_ms);
}

uint64_t nh_expect(int fd, int timeout_ms)
{
	uint64_t v = 0;
	int r = nh_recv(fd, &v, timeout_ms);

	if (r < 0)
		nh_fail(__FILE__, __LINE__, "no message from the other side: %s",
		        r == -EPIPE ? "it exited (see its message above)" : "timed out");
	return v;
}

void *nh_shared(size_t len)
{
	void *p = tp_shared(len);

	if (!p)
		nh_fail(__FILE__, __LINE__, "mmap: %s", strerror(errno));
	return p;
}

int64_t nh_boot_ns(void)
{
	return tp_boot_ns();
}

void nh_sleep_ms(int64_t ms)
{
	tp_sleep_ms(ms);
}

/* ------------------------------------------------------------------------
 * Records, files, lockctl
 */

int nh_read_gen(const char *lockdir, uint64_t gen, struct lk__lrec *ret)
{
	char gname[LK_GEN_NAME_LEN + 1], path[PATH_MAX + 64];
	uint8_t buf[LK_LREC_SIZE + 1];
	ssize_t n;
	int fd;

	lk__gen_name(gname, gen);
	snprintf(path, sizeof(path), "%s/%s", lockdir, gname);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
		return -errno;
	return lk__lrec_decode(buf, (size_t)n, ret);
}

ssize_t nh_read_file(const char *path, char *buf, size_t cap)
{
	return tp_read_file(path, buf, cap);
}

pid_t nh_lockctl(const char *out, const char *err, const char *extra_env, const char *const args[])
{
	const char *bin = getenv("LOCKCTL");
	const char *argv[64];
	pid_t pid;
	int n = 0;

	if (!bin || !*bin)
		nh_fail(__FILE__, __LINE__, "LOCKCTL is not set: run the tests through ctest");
	argv[n++] = bin;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		nh_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		int fd;

		setsid();
		alarm(0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (extra_env)
			putenv((char *)extra_env);
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

int nh_wait_pid(pid_t pid, int timeout_ms)
{
	return tp_wait_pid(pid, timeout_ms, 256);
}

int nh_lockctl_run(const char *out, const char *err, const char *const args[])
{
	return nh_wait_pid(nh_lockctl(out, err, NULL, args), NH_SAFETY_MS);
}

int nh_json_get(const char *json, const char *key, char *buf, size_t cap)
{
	return tp_json_get(json, key, buf, cap);
}
