// SPDX-License-Identifier: MIT
/*
 * Real storage faults: a full filesystem (ENOSPC), a read-only one (EROFS)
 * and a store the process may not write (EACCES).
 *
 * Injected faults (test_storage_eio.c) show what each code path does with an
 * error; these show that the errors the kernel really returns reach the
 * caller the same way. A small tmpfs gives a real ENOSPC, a read-only bind
 * mount or a read-only remount a real EROFS, and a child running as another
 * user a real EACCES. Every mount is made in a private mount namespace of
 * the test process, so none outlives it.
 *
 * For each fault: the call fails with that -errno and a message naming the
 * lock, lockctl exits 74 (I/O) or 69 (store unavailable) with an error line
 * naming the lock, a lock held by someone else is never reported free, and
 * once the fault is gone the same locks work again with higher tokens.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "krecord.h"
#include "sharness.h"

#define TTL_MS 1000

static const struct sh_user outsider = {61003, 61003, 0, {0}, 022};

static char root[PATH_MAX];
static char mnt[PATH_MAX + 16];
static char store[PATH_MAX + 32];

static const struct lk_lock_opts kopts = {
	.size = sizeof(struct lk_lock_opts),
	.mode = LK_MODE_KERNEL,
};

static struct lk_lock_opts lopts(void)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;

	o.mode = LK_MODE_LEASE;
	o.ttl_ms = TTL_MS;
	return o;
}

static int setup(void **state)
{
	(void)state;
	sh_tmpdir(root, sizeof(root), "lkstor");
	snprintf(mnt, sizeof(mnt), "%s/mnt", root);
	snprintf(store, sizeof(store), "%s/store", mnt);
	return mkdir(mnt, 0755) < 0 ? -1 : 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("\"%s\" does not mention \"%s\"", s, part);
}

static struct lk_store *open_store(const char *dir)
{
	struct lk_store *st = NULL;
	char msg[256];

	if (lk_store_open_err(dir, NULL, &st, msg, sizeof(msg)) < 0)
		fail_msg("cannot open store %s: %s", dir, msg);
	return st;
}

/* Take and release name once; returns the token. */
static uint64_t use_lock(const char *dir, const char *name, enum lk_mode mode)
{
	struct lk_lock_opts o = mode == LK_MODE_LEASE ? lopts() : kopts;
	struct lk_store *st = open_store(dir);
	struct lk_lock *lk = NULL;
	uint64_t tok;

	if (lk_lock_open(st, name, &o, &lk) < 0)
		fail_msg("open %s: %s", name, lk_store_errmsg(st));
	if (lk_lock_acquire(lk, 3 * TTL_MS) < 0)
		fail_msg("acquire %s: %s", name, lk_lock_errmsg(lk));
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	return tok;
}

/* The lock is held by someone (never "free"), status as seen from dir. */
static void assert_held(const char *dir, const char *name, uint64_t token)
{
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = NULL;
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	char msg[256];

	o.flags = LK_STORE_RDONLY;
	assert_int_equal(lk_store_open_err(dir, &o, &st, msg, sizeof(msg)), 0);
	if (lk_lock_status(st, name, &s) < 0)
		fail_msg("status %s: %s", name, lk_store_errmsg(st));
	assert_int_equal(s.held, 1);
	assert_int_equal(s.token, token);
	assert_string_equal(s.holder.owner, "holder");
	lk_store_close(st);
}

/* lk_lock_open() + lk_lock_acquire(0) fail with want; message names the lock. */
static void assert_cannot_take(struct lk_store *st, const char *name, enum lk_mode mode, int want,
                               const char *why)
{
	struct lk_lock_opts o = mode == LK_MODE_LEASE ? lopts() : kopts;
	struct lk_lock *lk = NULL;
	int r = lk_lock_open(st, name, &o, &lk);
	const char *msg;

	if (r == 0) {
		r = lk_lock_acquire(lk, 0);
		msg = lk_lock_errmsg(lk);
		assert_int_equal(lk_lock_token(lk), 0);
		assert_int_equal(lk_lock_check(lk), -ENOLCK);
	} else {
		msg = lk_store_errmsg(st);
	}
	if (r != want)
		fail_msg("%s: %d (%s), wanted %d", name, r, msg, want);
	assert_contains(msg, name);
	assert_contains(msg, why);
	if (lk)
		lk_lock_close(lk);
}

static void lockctl_fails(const struct sh_user *u, const char *dir, const char *name,
                          const char *mode, int code, const char *why)
{
	const char *run[] = {"-S", dir, "run", "-n", "--mode", mode, name, "--", "true", NULL};
	char err[2048], line[300];

	snprintf(line, sizeof(line), "lockctl: %s: ", name);
	assert_int_equal(sh_lockctl(u, err, sizeof(err), run), code);
	assert_contains(err, line);
	assert_contains(err, why);
}

/* Write path until the filesystem is full. */
static void fill(const char *path)
{
	char buf[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	assert_true(fd >= 0);
	memset(buf, 0xaa, sizeof(buf));
	do
		n = write(fd, buf, sizeof(buf));
	while (n > 0);
	assert_int_equal(errno, ENOSPC);
	/* whatever is left of a page */
	while (write(fd, buf, 1) > 0)
		;
	close(fd);
}

static int count_prefix(const char *dir, const char *prefix)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix));
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------
 * ENOSPC
 */

static void test_enospc(void **state)
{
	char fillpath[PATH_MAX + 32], path[PATH_MAX + 64];
	uint64_t tk, tl, tl2, t;
	struct sh_holder hk, hl;
	struct lk_store *st;
	struct lk_lock *lk = NULL;
	uint8_t page[LK_KFILE_SIZE];

	(void)state;
	assert_int_equal(sh_mount_tmpfs(mnt, "size=256k,mode=0755"), 0);
	snprintf(fillpath, sizeof(fillpath), "%s/fill", mnt);
	tk = use_lock(store, "k", LK_MODE_KERNEL);
	tl = use_lock(store, "l", LK_MODE_LEASE);
	tl2 = use_lock(store, "l2", LK_MODE_LEASE);
	sh_holder_start(&hk, NULL, store, "k", LK_MODE_KERNEL, 0);
	sh_holder_start(&hl, NULL, store, "l", LK_MODE_LEASE, TTL_MS);
	assert_true(hk.token > tk && hl.token > tl);
	fill(fillpath);

	st = open_store(store);
	/* new locks need room: refused, and nothing half-made is left */
	assert_cannot_take(st, "knew", LK_MODE_KERNEL, -ENOSPC, "No space left on device");
	snprintf(path, sizeof(path), "%s/knew", store);
	assert_true(sh_read(path, page, sizeof(page)) <= 0);
	assert_cannot_take(st, "lnew", LK_MODE_LEASE, -ENOSPC, "No space left on device");
	assert_int_equal(count_prefix(store, ".n."), 0);
	/* a free lease needs a new generation file: refused too */
	assert_cannot_take(st, "l2", LK_MODE_LEASE, -ENOSPC, "No space left on device");
	snprintf(path, sizeof(path), "%s/l2", store);
	assert_int_equal(count_prefix(path, ".c."), 0);
	lockctl_fails(NULL, store, "knew2", "kernel", 74, "No space left on device");
	lockctl_fails(NULL, store, "lnew2", "lease", 74, "No space left on device");

	/* held locks stay held: renewals rewrite a record in place, status
	 * never says free, nobody else gets them */
	sleep_ms(2 * TTL_MS + TTL_MS / 2);
	assert_int_equal(sh_holder_holds(&hl), 1);
	assert_int_equal(sh_holder_holds(&hk), 1);
	assert_held(store, "k", hk.token);
	assert_held(store, "l", hl.token);
	assert_cannot_take(st, "k", LK_MODE_KERNEL, -EWOULDBLOCK, "");
	assert_cannot_take(st, "l", LK_MODE_LEASE, -EWOULDBLOCK, "");

	/* an existing kernel lock needs no room to be taken */
	assert_int_equal(sh_holder_stop(&hk), 0);
	assert_int_equal(lk_lock_open(st, "k", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > hk.token);
	t = lk_lock_token(lk);
	lk_lock_close(lk);
	assert_int_equal(sh_holder_stop(&hl), 0);
	lk_store_close(st);

	/* room again: everything works, tokens keep increasing */
	assert_int_equal(unlink(fillpath), 0);
	assert_true(use_lock(store, "k", LK_MODE_KERNEL) > t);
	assert_true(use_lock(store, "l", LK_MODE_LEASE) > hl.token);
	assert_true(use_lock(store, "l2", LK_MODE_LEASE) > tl2);
	assert_true(use_lock(store, "knew", LK_MODE_KERNEL) > 0);
	snprintf(path, sizeof(path), "%s/knew", store);
	assert_int_equal(sh_read(path, page, sizeof(page)), LK_KFILE_SIZE);
	assert_int_equal(lk__kfile_header_check(page, sizeof(page)), 0);
	assert_true(use_lock(store, "lnew", LK_MODE_LEASE) > 0);
}

/* Out of inodes rather than blocks: the same answers. */
static void test_enospc_inodes(void **state)
{
	char path[PATH_MAX + 64];
	struct lk_store *st;
	int i;

	(void)state;
	assert_int_equal(sh_mount_tmpfs(mnt, "size=1m,nr_inodes=16,mode=0755"), 0);
	use_lock(store, "k", LK_MODE_KERNEL);
	for (i = 0; i < 64; i++) {
		snprintf(path, sizeof(path), "%s/f%d", mnt, i);
		if (sh_write(path, "") < 0)
			break;
	}
	assert_true(i < 64);
	st = open_store(store);
	assert_cannot_take(st, "knew", LK_MODE_KERNEL, -ENOSPC, "No space left on device");
	assert_cannot_take(st, "lnew", LK_MODE_LEASE, -ENOSPC, "No space left on device");
	lk_store_close(st);
	assert_true(use_lock(store, "k", LK_MODE_KERNEL) > 0);
	snprintf(path, sizeof(path), "%s/f0", mnt);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/f1", mnt);
	assert_int_equal(unlink(path), 0);
	assert_true(use_lock(store, "knew", LK_MODE_KERNEL) > 0);
}

/* ------------------------------------------------------------------------
 * EROFS
 */

static void test_erofs(void **state)
{
	char ro[PATH_MAX + 32], rostore[PATH_MAX + 64], missing[PATH_MAX + 64];
	struct lk_store *st = NULL;
	struct lk_status s = {.size = sizeof(s)};
	struct sh_holder hk, hl;
	char msg[256];
	uint64_t tk, tl;

	(void)state;
	assert_int_equal(sh_mount_tmpfs(mnt, "size=1m,mode=0755"), 0);
	use_lock(store, "k", LK_MODE_KERNEL);
	use_lock(store, "l", LK_MODE_LEASE);
	use_lock(store, "l2", LK_MODE_LEASE);
	snprintf(ro, sizeof(ro), "%s/ro", root);
	snprintf(rostore, sizeof(rostore), "%s/store", ro);
	assert_int_equal(mkdir(ro, 0755), 0);
	assert_int_equal(sh_bind(mnt, ro, 1), 0);

	/* held through the writable mount, looked at through the read-only one */
	sh_holder_start(&hk, NULL, store, "k", LK_MODE_KERNEL, 0);
	sh_holder_start(&hl, NULL, store, "l", LK_MODE_LEASE, TTL_MS);
	/* the kernel will not make a filesystem read-only under a writer */
	assert_int_equal(sh_remount(mnt, 1), -EBUSY);
	st = open_store(rostore);
	assert_cannot_take(st, "k", LK_MODE_KERNEL, -EROFS, "Read-only file system");
	assert_cannot_take(st, "knew", LK_MODE_KERNEL, -EROFS, "Read-only file system");
	assert_cannot_take(st, "lnew", LK_MODE_LEASE, -EROFS, "Read-only file system");
	assert_cannot_take(st, "l2", LK_MODE_LEASE, -EROFS, "Read-only file system");
	/* held is held, even where nothing can be written */
	assert_cannot_take(st, "l", LK_MODE_LEASE, -EWOULDBLOCK, "");
	assert_held(rostore, "k", hk.token);
	assert_held(rostore, "l", hl.token);
	lockctl_fails(NULL, rostore, "k", "kernel", 69, "Read-only file system");
	lockctl_fails(NULL, rostore, "l2", "lease", 69, "Read-only file system");
	lockctl_fails(NULL, rostore, "knew", "kernel", 69, "Read-only file system");
	snprintf(missing, sizeof(missing), "%s/nostore", ro);
	assert_int_equal(lk_store_open_err(missing, NULL, &st, msg, sizeof(msg)), -EROFS);
	assert_contains(msg, "Read-only file system");
	sleep_ms(TTL_MS + TTL_MS / 2);
	assert_int_equal(sh_holder_holds(&hl), 1);
	assert_int_equal(sh_holder_stop(&hk), 0);
	assert_int_equal(sh_holder_stop(&hl), 0);

	/* the whole filesystem read-only once nobody writes */
	assert_int_equal(sh_remount(mnt, 1), 0);
	assert_cannot_take(st, "k", LK_MODE_KERNEL, -EROFS, "Read-only file system");
	lk_store_close(st);
	st = open_store(store);
	assert_cannot_take(st, "k", LK_MODE_KERNEL, -EROFS, "Read-only file system");
	assert_cannot_take(st, "l", LK_MODE_LEASE, -EROFS, "Read-only file system");
	assert_int_equal(lk_lock_status(st, "k", &s), 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.token, hk.token);
	assert_int_equal(lk_lock_status(st, "l", &s), 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.token, hl.token);
	lk_store_close(st);
	lockctl_fails(NULL, store, "l", "lease", 69, "Read-only file system");

	/* writable again: same locks, higher tokens */
	assert_int_equal(sh_remount(mnt, 0), 0);
	tk = use_lock(store, "k", LK_MODE_KERNEL);
	tl = use_lock(store, "l", LK_MODE_LEASE);
	assert_true(tk > hk.token);
	assert_true(tl > hl.token);
}

/* ------------------------------------------------------------------------
 * EACCES
 */

struct eacces_arg {
	const char *dir;
	uint64_t tk, tl;
};

static int outsider_is_refused(void *p)
{
	struct eacces_arg *a = p;
	struct lk_lock_opts o = lopts();
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char msg[256];
	int r;

	SC_CHECK(lk_store_open_err(a->dir, NULL, &st, msg, sizeof(msg)) == 0);
	/* kernel lock file 0600: cannot be opened, status cannot look */
	SC_CHECK(lk_lock_open(st, "k", &kopts, &lk) == -EACCES);
	SC_CHECK(strstr(lk_store_errmsg(st), "k"));
	SC_CHECK(strstr(lk_store_errmsg(st), "Permission denied"));
	r = lk_lock_status(st, "k", &s);
	SC_CHECK(r == -EACCES || (r == 0 && s.held));
	/* lease directory 0700 */
	r = lk_lock_status(st, "l", &s);
	SC_CHECK(r == -EACCES || (r == 0 && s.held));
	SC_CHECK(lk_lock_open(st, "l", &o, &lk) == 0);
	r = lk_lock_acquire(lk, 0);
	SC_CHECK(r == -EACCES);
	SC_CHECK(strstr(lk_lock_errmsg(lk), "Permission denied"));
	lk_lock_close(lk);
	/* nothing new can be made in a store it may only read */
	SC_CHECK(lk_lock_open(st, "knew", &kopts, &lk) == -EACCES);
	SC_CHECK(lk_lock_open(st, "lnew", &o, &lk) == 0);
	SC_CHECK(lk_lock_acquire(lk, 0) == -EACCES);
	SC_CHECK(strstr(lk_lock_errmsg(lk), "lnew"));
	lk_lock_close(lk);
	lk_store_close(st);
	return 0;
}

static int outsider_cannot_open(void *p)
{
	struct eacces_arg *a = p;
	struct lk_store *st = NULL;
	char msg[256];

	SC_CHECK(lk_store_open_err(a->dir, NULL, &st, msg, sizeof(msg)) == -EACCES);
	SC_CHECK(strstr(msg, "Permission denied"));
	return 0;
}

static void test_eacces(void **state)
{
	struct eacces_arg a = {.dir = store};
	struct sh_holder hk, hl;

	(void)state;
	assert_int_equal(chmod(mnt, 0755), 0);
	use_lock(store, "k", LK_MODE_KERNEL);
	use_lock(store, "l", LK_MODE_LEASE);
	assert_int_equal(chmod(store, 0755), 0);
	sh_holder_start(&hk, NULL, store, "k", LK_MODE_KERNEL, 0);
	sh_holder_start(&hl, NULL, store, "l", LK_MODE_LEASE, TTL_MS);
	assert_int_equal(sh_run_as(&outsider, outsider_is_refused, &a), 0);
	lockctl_fails(&outsider, store, "k", "kernel", 69, "Permission denied");
	lockctl_fails(&outsider, store, "l", "lease", 69, "Permission denied");
	lockctl_fails(&outsider, store, "knew", "kernel", 69, "Permission denied");
	assert_held(store, "k", hk.token);
	assert_held(store, "l", hl.token);
	assert_int_equal(sh_holder_stop(&hk), 0);
	assert_int_equal(sh_holder_stop(&hl), 0);

	assert_int_equal(chmod(store, 0700), 0);
	assert_int_equal(sh_run_as(&outsider, outsider_cannot_open, &a), 0);
	lockctl_fails(&outsider, store, "k", "kernel", 69, "Permission denied");

	/* the owner's locks are unharmed */
	assert_true(use_lock(store, "k", LK_MODE_KERNEL) > hk.token);
	assert_true(use_lock(store, "l", LK_MODE_LEASE) > hl.token);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, sh_cleanup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_enospc),
		T(test_enospc_inodes),
		T(test_erofs),
		T(test_eacces),
	};
	int r;

	sh_init(120);
	r = sh_private_mounts();
	if (r < 0) {
		fprintf(stderr, "cannot make a private mount namespace: %s (run as root)\n",
		        strerror(-r));
		return 1;
	}
	return cmocka_run_group_tests_name("storage_fs", tests, NULL, NULL);
}
