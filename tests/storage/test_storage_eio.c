// SPDX-License-Identifier: MIT
/*
 * An I/O error in every call the posix backend makes, in both modes.
 *
 * Every entry of the backend's syscall table (fs_backends/posix/sys.h) is
 * made to fail with EIO at its first call, then at its second, and so on,
 * until a run no longer reaches that many calls: once failing only that call
 * (a transient error) and once failing it and every later call (storage that
 * stays broken). Each run goes through what a user does with a lock: open
 * the store, open the lock, try to acquire it, look at it with status and
 * list, release it, close everything. Three situations, in kernel mode and
 * in lease mode:
 *
 *  - a name never used before, in a store that does not exist yet (the
 *    store directory and the lock file or directory are created);
 *  - an existing free lock (tokens must keep increasing across all runs);
 *  - a lock held by another process, which must never be reported free
 *    and never be acquired, whatever fails.
 *
 * After each run the fault is removed and the same lock must work again
 * with a token above every earlier one (nothing was corrupted), no
 * descriptor may be left open, and every failure must have come back as a
 * negative errno with a message. Faults are injected only into calls made by
 * the test's own thread, so the heartbeat engine of a holder in the same
 * process is not disturbed by accident. LK_EIO_TRACE=1 in the environment
 * prints every failure a run returned.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "sharness.h"
#include "sys.h"

#define TTL_MS 1000

enum {
	S_OPENAT,
	S_CLOSE,
	S_FSTAT,
	S_FSTATAT,
	S_FCNTL,
	S_PREAD,
	S_PWRITE,
	S_FTRUNCATE,
	S_MMAP,
	S_MUNMAP,
	S_MSYNC,
	S_MKDIR,
	S_MKDIRAT,
	S_LINKAT,
	S_RENAMEAT,
	S_RENAMEAT2,
	S_UNLINKAT,
	S_FSYNC,
	S_FCHMOD,
	S_READDIR,
	S_COUNT
};

static const char *const sys_names[S_COUNT + 1] = {
	"openat",    "close",     "fstat",    "fstatat", "fcntl",  "pread",   "pwrite",
	"ftruncate", "mmap",      "munmap",   "msync",   "mkdir",  "mkdirat", "linkat",
	"renameat",  "renameat2", "unlinkat", "fsync",   "fchmod", "readdir", "nothing",
};

static struct lk__posix_sys real;
static pthread_t armed_thread;
static int armed = -1; /* the entry that fails, or -1 */
static int nth;        /* at its nth call */
static int persistent; /* and at every later one */
static int calls[S_COUNT];
static int hits;

static int fault(int which)
{
	if (armed < 0 || !pthread_equal(pthread_self(), armed_thread))
		return 0;
	calls[which]++;
	if (which != armed)
		return 0;
	if (calls[which] == nth || (persistent && calls[which] > nth)) {
		hits++;
		errno = EIO;
		return 1;
	}
	return 0;
}

static int f_openat(int dfd, const char *path, int flags, mode_t mode)
{
	return fault(S_OPENAT) ? -1 : real.openat(dfd, path, flags, mode);
}

static int f_close(int fd)
{
	/* Linux closes the descriptor even when close() reports an error */
	int r = real.close(fd);

	return fault(S_CLOSE) ? -1 : r;
}

static int f_fstat(int fd, struct stat *st)
{
	return fault(S_FSTAT) ? -1 : real.fstat(fd, st);
}

static int f_fstatat(int dfd, const char *path, struct stat *st, int flags)
{
	return fault(S_FSTATAT) ? -1 : real.fstatat(dfd, path, st, flags);
}

static int f_fcntl(int fd, int cmd, struct flock *fl)
{
	return fault(S_FCNTL) ? -1 : real.fcntl_lock(fd, cmd, fl);
}

static ssize_t f_pread(int fd, void *buf, size_t n, off_t off)
{
	return fault(S_PREAD) ? -1 : real.pread(fd, buf, n, off);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return fault(S_PWRITE) ? -1 : real.pwrite(fd, buf, n, off);
}

static int f_ftruncate(int fd, off_t len)
{
	return fault(S_FTRUNCATE) ? -1 : real.ftruncate(fd, len);
}

static void *f_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return fault(S_MMAP) ? MAP_FAILED : real.mmap(addr, len, prot, flags, fd, off);
}

static int f_munmap(void *addr, size_t len)
{
	int r = real.munmap(addr, len);

	return fault(S_MUNMAP) ? -1 : r;
}

static int f_msync(void *addr, size_t len, int flags)
{
	return fault(S_MSYNC) ? -1 : real.msync(addr, len, flags);
}

static int f_mkdir(const char *path, mode_t mode)
{
	return fault(S_MKDIR) ? -1 : real.mkdir(path, mode);
}

static int f_mkdirat(int dfd, const char *path, mode_t mode)
{
	return fault(S_MKDIRAT) ? -1 : real.mkdirat(dfd, path, mode);
}

static int f_linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
	return fault(S_LINKAT) ? -1 : real.linkat(ofd, from, nfd, to, flags);
}

static int f_renameat(int ofd, const char *from, int nfd, const char *to)
{
	return fault(S_RENAMEAT) ? -1 : real.renameat(ofd, from, nfd, to);
}

static int f_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	return fault(S_RENAMEAT2) ? -1 : real.renameat2(ofd, from, nfd, to, flags);
}

static int f_unlinkat(int dfd, const char *path, int flags)
{
	return fault(S_UNLINKAT) ? -1 : real.unlinkat(dfd, path, flags);
}

static int f_fsync(int fd)
{
	return fault(S_FSYNC) ? -1 : real.fsync(fd);
}

static int f_fchmod(int fd, mode_t mode)
{
	return fault(S_FCHMOD) ? -1 : real.fchmod(fd, mode);
}

static struct dirent *f_readdir(DIR *d)
{
	return fault(S_READDIR) ? NULL : real.readdir(d);
}

static const struct lk__posix_sys faulty = {
	.openat = f_openat,
	.close = f_close,
	.fstat = f_fstat,
	.fstatat = f_fstatat,
	.fcntl_lock = f_fcntl,
	.pread = f_pread,
	.pwrite = f_pwrite,
	.ftruncate = f_ftruncate,
	.mmap = f_mmap,
	.munmap = f_munmap,
	.msync = f_msync,
	.mkdir = f_mkdir,
	.mkdirat = f_mkdirat,
	.linkat = f_linkat,
	.renameat = f_renameat,
	.renameat2 = f_renameat2,
	.unlinkat = f_unlinkat,
	.fsync = f_fsync,
	.fchmod = f_fchmod,
	.readdir = f_readdir,
};

static void arm(int which, int n, int pers)
{
	memset(calls, 0, sizeof(calls));
	hits = 0;
	nth = n;
	persistent = pers;
	armed_thread = pthread_self();
	armed = which;
}

/* For messages: the fault of the last run. */
static int last_armed = S_COUNT;

static void disarm(void)
{
	if (armed >= 0)
		last_armed = armed;
	armed = -1;
}

/* ------------------------------------------------------------------------
 * Test state
 */

static char root[PATH_MAX];
static char store[PATH_MAX + 16];
/* one group-shared store too, so that fchmod is reached */
static char gstore[PATH_MAX + 16];
static int runs, failures;

static int setup(void **state)
{
	(void)state;
	real = lk__posix_sys;
	lk__posix_sys = faulty;
	disarm();
	sh_tmpdir(root, sizeof(root), "lkeio");
	snprintf(store, sizeof(store), "%s/store", root);
	snprintf(gstore, sizeof(gstore), "%s/gstore", root);
	if (mkdir(gstore, 0770) < 0 || chmod(gstore, 02770) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	disarm();
	lk__posix_sys = real;
	return sh_cleanup(state);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static struct lk_lock_opts lock_opts(enum lk_mode mode)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;

	o.mode = mode;
	o.ttl_ms = mode == LK_MODE_LEASE ? TTL_MS : 0;
	return o;
}

/* What one run saw. */
struct outcome {
	int failed;     /* some call returned an error */
	uint64_t token; /* token of the acquisition, 0 if none */
	char where[64];
};

static void record_failure(struct outcome *o, const char *call, int r, const char *msg)
{
	if (r >= 0)
		return;
	o->failed = 1;
	failures++;
	if (getenv("LK_EIO_TRACE"))
		fprintf(stderr, "trace %s %s%s %d: %s -> %s | %s\n", sys_names[armed],
		        persistent ? "lasting" : "once", "", nth, call, lk_strerror(r), msg);
	snprintf(o->where, sizeof(o->where), "%s", call);
	if (r != -EIO)
		fail_msg(
			"%s failed with %s (%s), not with the injected I/O error (%s fault at call "
			"%d%s)",
			call, lk_strerror(r), msg ? msg : "",
			sys_names[armed < 0 ? S_COUNT : armed], nth,
			persistent ? " and later" : "");
	if (!msg || !msg[0])
		fail_msg("%s failed with %s but left no message (%s fault at call %d%s)", call,
		         lk_strerror(r), sys_names[armed], nth, persistent ? " and later" : "");
}

static int list_cb(const char *name, void *userdata)
{
	(void)name;
	(*(int *)userdata)++;
	return 0;
}

/*
 * One run through a lock's life under the armed fault. other_token != 0:
 * another process holds the lock with that token.
 */
static void one_run(const char *dir, const char *name, enum lk_mode mode, uint64_t other_token,
                    struct outcome *o)
{
	struct lk_lock_opts lo = lock_opts(mode);
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char msg[256];
	int r, n = 0;

	memset(o, 0, sizeof(*o));
	runs++;
	r = lk_store_open_err(dir, NULL, &st, msg, sizeof(msg));
	record_failure(o, "lk_store_open", r, msg);
	if (r < 0)
		return;

	r = lk_lock_status(st, name, &s);
	record_failure(o, "lk_lock_status", r, lk_store_errmsg(st));
	if (r == 0 && other_token) {
		if (!s.held || s.token != other_token)
			fail_msg("%s held by another process with token %llu reported %s, token "
			         "%llu (%s fault at call %d)",
			         name, (unsigned long long)other_token, s.held ? "held" : "FREE",
			         (unsigned long long)s.token, sys_names[armed], nth);
	}

	r = lk_lock_open(st, name, &lo, &lk);
	record_failure(o, "lk_lock_open", r, lk_store_errmsg(st));
	if (r == 0) {
		r = lk_lock_acquire(lk, 0);
		if (other_token) {
			if (r == 0)
				fail_msg("%s acquired while another process holds it (%s fault at "
				         "call %d)",
				         name, sys_names[armed], nth);
			if (r != -EWOULDBLOCK)
				record_failure(o, "lk_lock_acquire", r, lk_lock_errmsg(lk));
		} else {
			record_failure(o, "lk_lock_acquire", r, lk_lock_errmsg(lk));
		}
		if (r == 0) {
			o->token = lk_lock_token(lk);
			assert_true(o->token > 0);
			assert_int_equal(lk_lock_check(lk), 0);
			/* ours now: status must say held, with our token */
			r = lk_lock_status(st, name, &s);
			record_failure(o, "lk_lock_status (held)", r, lk_store_errmsg(st));
			if (r == 0 && (!s.held || s.token != o->token))
				fail_msg(
					"%s held by this process reported %s (%s fault at call %d)",
					name, s.held ? "held with another token" : "FREE",
					sys_names[armed], nth);
			r = lk_lock_release(lk);
			record_failure(o, "lk_lock_release", r, lk_lock_errmsg(lk));
		} else {
			assert_int_equal(lk_lock_token(lk), 0);
		}
		lk_lock_close(lk);
	}
	r = lk_store_list(st, list_cb, &n);
	record_failure(o, "lk_store_list", r, lk_store_errmsg(st));
	lk_store_close(st);
}

/* With the fault gone: the lock works, with a token above min. */
static uint64_t works_again(const char *dir, const char *name, enum lk_mode mode, uint64_t min)
{
	struct lk_lock_opts lo = lock_opts(mode);
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char msg[256];
	uint64_t tok;
	int r;

	if (lk_store_open_err(dir, NULL, &st, msg, sizeof(msg)) < 0)
		fail_msg("after %s fault at call %d: store: %s", sys_names[last_armed], nth, msg);
	if (lk_lock_open(st, name, &lo, &lk) < 0)
		fail_msg("after %s fault at call %d: %s", sys_names[last_armed], nth,
		         lk_store_errmsg(st));
	/* a lease whose release failed stays held until it expires */
	r = lk_lock_acquire(lk, 4 * TTL_MS);
	if (r < 0)
		fail_msg("after %s fault at call %d: %s", sys_names[last_armed], nth,
		         lk_lock_errmsg(lk));
	tok = lk_lock_token(lk);
	if (tok <= min)
		fail_msg("after %s fault at call %d: token %llu is not above %llu",
		         sys_names[last_armed], nth, (unsigned long long)tok,
		         (unsigned long long)min);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	return tok;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

/* Remove a per-run store; it may not exist if the run failed early. */
static void remove_tree(const char *path)
{
	if (nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		fail_msg("cannot remove %s: %s", path, strerror(errno));
}

/*
 * Sweep every entry of the table over its calls. kind: 0 a new name each
 * run, 1 one existing free lock, 2 a lock held by a child process.
 */
static void sweep(const char *dir, enum lk_mode mode, int kind, int pers)
{
	const char *mname = mode == LK_MODE_LEASE ? "lease" : "kernel";
	char name[64], sub[PATH_MAX];
	const char *rdir = dir;
	uint64_t last = 0;
	struct sh_holder h;
	struct outcome o;
	int fds, reached = 0;

	snprintf(name, sizeof(name), "%s-%d-%d", mname, kind, pers);
	if (kind >= 1)
		last = works_again(dir, name, mode, 0);
	if (kind == 2)
		sh_holder_start(&h, NULL, dir, name, mode, TTL_MS);
	fds = count_fds();
	for (int which = 0; which < S_COUNT; which++) {
		for (int n = 1;; n++) {
			/*
			 * A new name goes into a store of its own, created by the
			 * run: listing a shared store would make every run call
			 * per-entry functions once more than the run before, and
			 * the sweep would never reach the end.
			 */
			if (kind == 0) {
				snprintf(sub, sizeof(sub), "%s/%s-new-%d-%d-%d", dir, mname, pers,
				         which, n);
				rdir = sub;
			}
			arm(which, n, pers);
			one_run(rdir, name, mode, kind == 2 ? h.token : 0, &o);
			if (calls[which] < n) {
				disarm();
				if (kind == 0)
					remove_tree(sub);
				break;
			}
			reached++;
			if (kind == 2) {
				disarm();
				if (sh_holder_holds(&h) != 1)
					fail_msg("the holder lost %s after a %s fault in an "
					         "observer",
					         name, sys_names[which]);
			} else {
				uint64_t min = last > o.token ? last : o.token;

				disarm();
				last = works_again(rdir, name, mode, min);
				if (kind == 0)
					remove_tree(sub);
			}
			if (count_fds() != fds)
				fail_msg("%d descriptors open after a %s fault at call %d, %d "
				         "before",
				         count_fds(), sys_names[which], n, fds);
		}
	}
	if (kind == 2)
		assert_int_equal(sh_holder_stop(&h), 0);
	print_message("%s, %s, %s faults: %d runs reached a fault\n", mname,
	              kind == 0   ? "new lock"
	              : kind == 1 ? "free lock"
	                          : "held elsewhere",
	              pers ? "lasting" : "one-off", reached);
	assert_true(reached > 10);
}

static void test_kernel_new(void **state)
{
	(void)state;
	sweep(store, LK_MODE_KERNEL, 0, 0);
	sweep(store, LK_MODE_KERNEL, 0, 1);
}

static void test_kernel_free(void **state)
{
	(void)state;
	sweep(store, LK_MODE_KERNEL, 1, 0);
	sweep(store, LK_MODE_KERNEL, 1, 1);
}

static void test_kernel_held(void **state)
{
	(void)state;
	sweep(store, LK_MODE_KERNEL, 2, 0);
	sweep(store, LK_MODE_KERNEL, 2, 1);
}

static void test_lease_new(void **state)
{
	(void)state;
	sweep(store, LK_MODE_LEASE, 0, 0);
	sweep(store, LK_MODE_LEASE, 0, 1);
}

static void test_lease_free(void **state)
{
	(void)state;
	sweep(store, LK_MODE_LEASE, 1, 0);
	sweep(store, LK_MODE_LEASE, 1, 1);
}

static void test_lease_held(void **state)
{
	(void)state;
	sweep(store, LK_MODE_LEASE, 2, 0);
	sweep(store, LK_MODE_LEASE, 2, 1);
}

/* A group-shared store: new entries are widened with fchmod. */
static void test_shared_store_new(void **state)
{
	(void)state;
	sweep(gstore, LK_MODE_KERNEL, 0, 0);
	sweep(gstore, LK_MODE_LEASE, 0, 0);
}

/* Every entry of the table was reached by some run. */
static void test_all_reached(void **state)
{
	static const enum lk_mode modes[] = {LK_MODE_KERNEL, LK_MODE_LEASE};
	int seen[S_COUNT] = {0};
	struct outcome o;

	(void)state;
	for (int m = 0; m < 2; m++) {
		for (int kind = 0; kind < 2; kind++) {
			char name[32];
			const char *dir = kind ? gstore : store;

			snprintf(name, sizeof(name), "all-%d-%d", m, kind);
			arm(S_COUNT, 1, 0);
			one_run(dir, name, modes[m], 0, &o);
			disarm();
			for (int i = 0; i < S_COUNT; i++)
				seen[i] += calls[i];
		}
	}
	/* a failed first acquisition's sync, and the fallback rename */
	for (int i = 0; i < S_COUNT; i++) {
		if (i == S_FTRUNCATE || i == S_RENAMEAT || i == S_MKDIR)
			continue; /* only on failure paths or when creating the store */
		if (!seen[i])
			fail_msg("no run calls %s: the sweep would not test it", sys_names[i]);
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_all_reached), T(test_kernel_new),       T(test_kernel_free),
		T(test_kernel_held), T(test_lease_new),        T(test_lease_free),
		T(test_lease_held),  T(test_shared_store_new),
	};
	int r;

	sh_init(240);
	r = cmocka_run_group_tests_name("storage_eio", tests, NULL, NULL);
	print_message("%d runs, %d calls failed\n", runs, failures);
	return r;
}
