// SPDX-License-Identifier: MIT
/*
 * Option and input validation of the store and lock entry points, through
 * the real posix backend on a scratch directory.
 *
 * A lock store is a directory that other programs, other users and mistakes
 * can reach, so most of what is tested here is refusal: options the library
 * does not understand, entries that are not lockkit's own lock files
 * (symlinks, directories, hard-linked or foreign files), and stores that are
 * unsafe to use. Each refusal must come with the documented error code and a
 * message, must leave the caller's out-parameter alone, and must leave the
 * filesystem exactly as it was: a validator that "fixes" a foreign file by
 * overwriting it, or follows a symlink out of the store, would be worse than
 * no validation at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "krecord.h"
#include "tutil.h"

/* A pointer value no successful call would write: proves *ret is untouched. */
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e)

/*
 * For a new name, LK_MODE_AUTO picks lease mode when the store is on a
 * network filesystem; tests about lock files ask for kernel mode.
 */
static const struct lk_lock_opts kopts = {
	.size = sizeof(struct lk_lock_opts),
	.mode = LK_MODE_KERNEL,
};

static char root[512];  /* scratch directory of the current test */
static char store[600]; /* root/store: the store most tests use */

static int setup(void **state)
{
	if (tu_mkdtemp(root, sizeof(root)) < 0)
		return -1;
	snprintf(store, sizeof(store), "%s/store", root);
	return 0;
}

static int teardown(void **state)
{
	return tu_rm_rf(root) < 0 ? -1 : 0;
}

static const char *in_root(const char *rel)
{
	static char buf[4][800];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", root, rel);
	return buf[k];
}

static const char *in_store(const char *rel)
{
	static char buf[4][800];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", store, rel);
	return buf[k];
}

static struct lk_store *open_store(void)
{
	struct lk_store *st = NULL;
	char msg[256] = "";
	int r = lk_store_open_err(store, NULL, &st, msg, sizeof(msg));

	if (r < 0)
		fail_msg("cannot open store %s: %d %s", store, r, msg);
	return st;
}

/* A store-level refusal: the code, a message, and *ret left alone. */
static void expect_store_refused(const char *url, const struct lk_store_opts *o, int code)
{
	struct lk_store *st = SENTINEL;
	char msg[256];
	int r;

	memset(msg, 'X', sizeof(msg));
	r = lk_store_open_err(url, o, &st, msg, sizeof(msg));
	if (r != code)
		fail_msg("lk_store_open(%s): expected %d, got %d (%s)", url, code, r,
			 r < 0 ? msg : "");
	assert_ptr_equal(st, SENTINEL);
	assert_non_null(memchr(msg, 0, sizeof(msg)));
	if (!msg[0])
		fail_msg("lk_store_open(%s) failed with %d but gave no message", url, r);
	/* lk_store_open() agrees */
	assert_int_equal(lk_store_open(url, o, &st), code);
	assert_ptr_equal(st, SENTINEL);
}

/* A refusal from lk_lock_open(): the code, a store message, *ret untouched. */
static void expect_lock_refused(struct lk_store *st, const char *name,
				const struct lk_lock_opts *o, int code)
{
	struct lk_lock *lk = SENTINEL;
	int r = lk_lock_open(st, name, o, &lk);

	if (r == 0 && lk != SENTINEL)
		lk_lock_close(lk);
	if (r != code)
		fail_msg("lk_lock_open(%s): expected %d, got %d (%s)", name ? name : "(null)", code,
			 r, lk_store_errmsg(st));
	assert_ptr_equal(lk, SENTINEL);
	if (!lk_store_errmsg(st)[0])
		fail_msg("lk_lock_open(%s) failed with %d but left no message",
			 name ? name : "(null)", r);
}

static void assert_file_content(const char *path, const void *want, size_t n)
{
	char buf[8192];
	ssize_t got = tu_read_file(path, buf, sizeof(buf));

	if (got < 0)
		fail_msg("cannot read %s: %zd", path, got);
	if ((size_t)got != n || memcmp(buf, want, n))
		fail_msg("%s was changed (%zd bytes, expected %zu)", path, got, n);
}

/* ------------------------------------------------------------------------
 * Defaults and store options
 */

static void test_null_opts(void **state)
{
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	struct stat sb;

	assert_int_equal(lk_store_open(store, NULL, &st), 0);
	assert_non_null(st);
	assert_string_equal(lk_store_path(st), store);
	assert_string_equal(lk_store_errmsg(st), "");
	assert_int_equal(stat(store, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	/* the default directory mode is private to the owner */
	assert_int_equal(sb.st_mode & 077, 0);

	assert_int_equal(lk_lock_open(st, "a", NULL, &lk), 0);
	assert_non_null(lk);
	assert_string_equal(lk_lock_errmsg(lk), "");
	if (st->be->is_network && st->be->is_network(st->bs)) {
		assert_int_equal(lk_lock_mode(lk), LK_MODE_LEASE);
	} else {
		assert_int_equal(lk_lock_mode(lk), LK_MODE_KERNEL);
		assert_int_equal(lstat(in_store("a"), &sb), 0);
		assert_true(S_ISREG(sb.st_mode));
		assert_int_equal(sb.st_size, LK_KFILE_SIZE);
		assert_int_equal(sb.st_mode & 077, 0);
	}
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);

	/* a file:// URL names the same store */
	{
		char url[700];

		snprintf(url, sizeof(url), "file://%s", store);
		assert_int_equal(lk_store_open(url, NULL, &st), 0);
		assert_string_equal(lk_store_path(st), store);
		lk_store_close(st);
	}
	/* closing nothing is a no-op */
	lk_store_close(NULL);
	lk_lock_close(NULL);
}

static void test_store_creates_missing_parents(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;
	mode_t old = umask(022);
	struct stat sb;

	o.dir_mode = 0750;
	o.file_mode = 0640;
	snprintf(store, sizeof(store), "%s/a/b/c", root);
	assert_int_equal(lk_store_open(store, &o, &st), 0);
	umask(old);
	assert_int_equal(stat(store, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0750);
	{
		struct lk_lock *lk = NULL;

		assert_int_equal(lk_lock_open(st, "m", &kopts, &lk), 0);
		assert_int_equal(stat(in_store("m"), &sb), 0);
		assert_int_equal(sb.st_mode & 07777, 0640);
		lk_lock_close(lk);
	}
	lk_store_close(st);
}

static void test_store_bad_size(void **state)
{
	static const uint32_t sizes[] = { 0, 1, sizeof(struct lk_store_opts) - 1, 4097,
					  UINT32_MAX };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct lk_store_opts o = LK_STORE_OPTS_INIT;

		o.size = sizes[i];
		expect_store_refused(store, &o, -EINVAL);
	}
	assert_false(tu_exists(store));
}

static void test_store_unknown_flags(void **state)
{
	static const uint32_t flags[] = { 1u << 5, 1u << 7, 1u << 31,
					  LK_STORE_NOCREATE | (1u << 3) };

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct lk_store_opts o = LK_STORE_OPTS_INIT;

		o.flags = flags[i];
		expect_store_refused(store, &o, -EINVAL);
	}
	assert_false(tu_exists(store));
}

static void test_store_bad_modes(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;

	o.dir_mode = 010000;
	expect_store_refused(store, &o, -EINVAL);
	o.dir_mode = UINT32_MAX;
	expect_store_refused(store, &o, -EINVAL);
	o.dir_mode = 0700;
	o.file_mode = 04600; /* a lock file has no business being setuid */
	expect_store_refused(store, &o, -EINVAL);
	o.file_mode = 01000;
	expect_store_refused(store, &o, -EINVAL);
	o.file_mode = 0x10000;
	expect_store_refused(store, &o, -EINVAL);
	assert_false(tu_exists(store));
}

static void test_store_wait_signal(void **state)
{
	const int bad[] = { -1, 1, SIGINT, SIGKILL, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM,
			    SIGRTMIN - 1, SIGRTMAX + 1, 1000, INT32_MIN };
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.wait_signal = bad[i];
		expect_store_refused(store, &o, -EINVAL);
	}
	assert_false(tu_exists(store));

	o.wait_signal = SIGRTMAX;
	assert_int_equal(lk_store_open(store, &o, &st), 0);
	lk_store_close(st);
	o.wait_signal = SIGRTMIN;
	assert_int_equal(lk_store_open(store, &o, &st), 0);
	lk_store_close(st);
}

static void test_store_bad_arguments(void **state)
{
	struct lk_store *st = SENTINEL;
	char msg[64];
	int r;

	assert_int_equal(lk_store_open(store, NULL, NULL), -EINVAL);
	assert_int_equal(lk_store_open_err(NULL, NULL, &st, msg, sizeof(msg)), -EINVAL);
	assert_ptr_equal(st, SENTINEL);
	assert_true(msg[0] != 0);
	assert_int_equal(lk_store_open("", NULL, &st), -EINVAL);
	assert_int_equal(lk_store_open("gopher://x/y", NULL, &st), -EINVAL);
	/* nothing listens on port 1: a clear failure, no handle */
	r = lk_store_open("nfs://127.0.0.1/export?version=3&nfsport=1&mountport=1", NULL, &st);
	assert_true(r < 0);
	assert_ptr_equal(st, SENTINEL);
	assert_int_equal(lk_store_open("nfs://127.0.0.1/export?version=4", NULL, &st), -EOPNOTSUPP);
	assert_int_equal(lk_store_open("nfs://127.0.0.1/export?pagecache=1", NULL, &st), -EINVAL);
	assert_int_equal(lk_store_open("nfs://127.0.0.1/export?bogus=1", NULL, &st), -EINVAL);
	assert_ptr_equal(st, SENTINEL);
}

static void test_store_open_err_buffer(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = SENTINEL;
	char msg[16];

	o.flags = 1u << 9;
	/* a message longer than the buffer is cut, and NUL-terminated */
	memset(msg, 'X', sizeof(msg));
	assert_int_equal(lk_store_open_err(store, &o, &st, msg, 8), -EINVAL);
	assert_non_null(memchr(msg, 0, 8));
	assert_true(strlen(msg) > 0);
	assert_int_equal(msg[8], 'X'); /* nothing written past errlen */
	memset(msg, 'X', sizeof(msg));
	assert_int_equal(lk_store_open_err(store, &o, &st, msg, 1), -EINVAL);
	assert_int_equal(msg[0], 0);
	assert_int_equal(msg[1], 'X');
	/* no buffer at all */
	assert_int_equal(lk_store_open_err(store, &o, &st, NULL, 0), -EINVAL);
	memset(msg, 'X', sizeof(msg));
	assert_int_equal(lk_store_open_err(store, &o, &st, msg, 0), -EINVAL);
	assert_int_equal(msg[0], 'X');
	assert_ptr_equal(st, SENTINEL);
}

/* ------------------------------------------------------------------------
 * Missing, read-only and unsafe stores
 */

static void test_nocreate_missing(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;

	o.flags = LK_STORE_NOCREATE;
	expect_store_refused(store, &o, -ENOENT);
	snprintf(store, sizeof(store), "%s/x/y/z", root);
	expect_store_refused(store, &o, -ENOENT);
	o.flags = LK_STORE_RDONLY;
	expect_store_refused(store, &o, -ENOENT);
	o.flags = LK_STORE_RDONLY | LK_STORE_NOCREATE;
	expect_store_refused(store, &o, -ENOENT);
	assert_int_equal(tu_count_entries(root), 0);
}

static void test_nocreate_existing(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;

	assert_int_equal(mkdir(store, 0700), 0);
	o.flags = LK_STORE_NOCREATE;
	assert_int_equal(lk_store_open(store, &o, &st), 0);
	/* NOCREATE is about the store; lock files are still created */
	assert_int_equal(lk_lock_open(st, "n", &kopts, &lk), 0);
	assert_true(tu_exists(in_store("n")));
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_rdonly_store(void **state)
{
	struct lk_store_opts ro = LK_STORE_OPTS_INIT;
	struct lk_store *st = open_store(), *rs = NULL;
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, "busy", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);

	ro.flags = LK_STORE_RDONLY;
	assert_int_equal(lk_store_open(store, &ro, &rs), 0);
	expect_lock_refused(rs, "busy", NULL, -EROFS);
	expect_lock_refused(rs, "fresh", NULL, -EROFS);
	expect_lock_refused(rs, "fresh", &kopts, -EROFS);
	{
		/* observing only: no lease can be taken either */
		struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;

		lo.mode = LK_MODE_LEASE;
		expect_lock_refused(rs, "fresh", &lo, -EROFS);
	}
	assert_false(tu_exists(in_store("fresh")));

	assert_int_equal(lk_lock_status(rs, "busy", &s), 0);
	assert_int_equal(s.exists, 1);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.shared, 0);
	assert_int_equal(s.mode, LK_MODE_KERNEL);
	assert_int_equal(s.token, lk_lock_token(lk));
	assert_int_equal(s.holder.pid, getpid());

	memset(&s, 0x6b, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(rs, "fresh", &s), 0);
	assert_int_equal(s.exists, 0);
	assert_int_equal(s.held, 0);
	assert_false(tu_exists(in_store("fresh")));
	assert_int_equal(tu_count_entries(store), 1);

	lk_lock_close(lk);
	lk_store_close(rs);
	lk_store_close(st);
}

static void test_store_is_a_file(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;

	assert_int_equal(tu_write_file(store, "data\n", 5), 0);
	expect_store_refused(store, NULL, -ENOTDIR);
	o.flags = LK_STORE_NOCREATE;
	expect_store_refused(store, &o, -ENOTDIR);
	expect_store_refused(in_root("store/sub"), NULL, -ENOTDIR);
	assert_file_content(store, "data\n", 5);
}

static void test_world_writable_store(void **state)
{
	struct lk_store *st = NULL;

	assert_int_equal(mkdir(store, 0700), 0);
	assert_int_equal(chmod(store, 0777), 0);
	expect_store_refused(store, NULL, -EPERM);
	assert_int_equal(chmod(store, 0703), 0);
	expect_store_refused(store, NULL, -EPERM);
	/* like /tmp: others may create but not replace each other's files */
	assert_int_equal(chmod(store, 01777), 0);
	assert_int_equal(lk_store_open(store, NULL, &st), 0);
	lk_store_close(st);
	/* group-writable is the owner's choice */
	assert_int_equal(chmod(store, 0770), 0);
	assert_int_equal(lk_store_open(store, NULL, &st), 0);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Lock options and names
 */

static void test_lock_bad_opts(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock_opts o;

	o = (struct lk_lock_opts)LK_LOCK_OPTS_INIT;
	o.size = 0;
	expect_lock_refused(st, "x", &o, -EINVAL);
	o.size = sizeof(o) - 1;
	expect_lock_refused(st, "x", &o, -EINVAL);
	o.size = 4097;
	expect_lock_refused(st, "x", &o, -EINVAL);

	o = (struct lk_lock_opts)LK_LOCK_OPTS_INIT;
	o.flags = 1u << 1;
	expect_lock_refused(st, "x", &o, -EINVAL);
	o.flags = LK_LOCK_SHARED | (1u << 31);
	expect_lock_refused(st, "x", &o, -EINVAL);

	o = (struct lk_lock_opts)LK_LOCK_OPTS_INIT;
	o.mode = (enum lk_mode)3;
	expect_lock_refused(st, "x", &o, -EINVAL);
	o.mode = (enum lk_mode)-1;
	expect_lock_refused(st, "x", &o, -EINVAL);
	o.mode = (enum lk_mode)1000;
	expect_lock_refused(st, "x", &o, -EINVAL);

	assert_int_equal(tu_count_entries(store), 0);
	lk_store_close(st);
}

static void test_lock_bad_arguments(void **state)
{
	static const char *const bad[] = { "", ".", "..", ".x", "a/b", "../escape", "/abs",
					   "sp ace", "nl\n" };
	struct lk_store *st = open_store();
	struct lk_lock *lk = SENTINEL;
	char longname[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_lock_refused(st, bad[i], NULL, -EINVAL);
	expect_lock_refused(st, NULL, NULL, -EINVAL);
	memset(longname, 'l', 256);
	longname[256] = 0;
	expect_lock_refused(st, longname, NULL, -EINVAL);
	assert_int_equal(tu_count_entries(store), 0);
	assert_false(tu_exists(in_root("escape")));

	assert_int_equal(lk_lock_open(NULL, "a", NULL, &lk), -EINVAL);
	assert_int_equal(lk_lock_open(st, "a", NULL, NULL), -EINVAL);
	assert_ptr_equal(lk, SENTINEL);

	/* the longest name is fine */
	longname[255] = 0;
	assert_int_equal(lk_lock_open(st, longname, &kopts, &lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_lease_opts(void **state)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = open_store();
	struct lk_lease_params lp;
	struct lk_lock *lk = NULL;

	o.mode = LK_MODE_LEASE;
	o.ttl_ms = 999;
	expect_lock_refused(st, "leased", &o, -EINVAL);
	o.ttl_ms = 2000;
	o.renew_ms = 1001; /* more than half the TTL */
	expect_lock_refused(st, "leased", &o, -EINVAL);
	assert_int_equal(tu_count_entries(store), 0);

	/* the boundaries themselves are fine */
	o.ttl_ms = 1000;
	o.renew_ms = 500;
	assert_int_equal(lk_lock_open(st, "leased", &o, &lk), 0);
	assert_int_equal(lk_lock_mode(lk), LK_MODE_LEASE);
	assert_int_equal(lk_lock_lease_params(lk, &lp), 0);
	assert_int_equal(lp.ttl_ms, 1000);
	assert_int_equal(lp.renew_ms, 500);
	lk_lock_close(lk);

	/* defaults as documented */
	o = (struct lk_lock_opts)LK_LOCK_OPTS_INIT;
	o.mode = LK_MODE_LEASE;
	assert_int_equal(lk_lock_open(st, "leased", &o, &lk), 0);
	assert_int_equal(lk_lock_lease_params(lk, &lp), 0);
	assert_int_equal(lp.ttl_ms, 10000);
	assert_int_equal(lp.renew_ms, 2500);
	assert_int_equal(lp.rho_ppm, 10000);
	lk_lock_close(lk);

	/* lease parameters of a kernel-mode handle do not exist */
	assert_int_equal(lk_lock_open(st, "kern", &kopts, &lk), 0);
	assert_int_equal(lk_lock_lease_params(lk, &lp), -EINVAL);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * What lives under the lock's name
 */

static void test_directory_at_name(void **state)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = open_store();
	struct stat sb;

	assert_int_equal(mkdir(in_store("d"), 0700), 0);
	o.mode = LK_MODE_KERNEL;
	expect_lock_refused(st, "d", &o, -EINVAL);
	assert_int_equal(lstat(in_store("d"), &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(tu_count_entries(in_store("d")), 0);
	lk_store_close(st);
}

static void test_symlink_at_name(void **state)
{
	static const char precious[] = "precious data\n";
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;
	struct stat sb;

	/* a symlink to a file outside the store */
	assert_int_equal(tu_write_file(in_root("target"), precious, sizeof(precious) - 1), 0);
	assert_int_equal(symlink(in_root("target"), in_store("link")), 0);
	expect_lock_refused(st, "link", NULL, -EINVAL);
	assert_file_content(in_root("target"), precious, sizeof(precious) - 1);
	assert_int_equal(lstat(in_store("link"), &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	assert_int_equal(lk_lock_status(st, "link", &s), -EINVAL);
	assert_file_content(in_root("target"), precious, sizeof(precious) - 1);

	/* a dangling symlink must not create its target */
	assert_int_equal(symlink(in_root("nowhere"), in_store("dangle")), 0);
	expect_lock_refused(st, "dangle", NULL, -EINVAL);
	assert_false(tu_exists(in_root("nowhere")));

	/* even a symlink to a genuine lock file is refused */
	assert_int_equal(lk_lock_open(st, "real", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(symlink("real", in_store("alias")), 0);
	expect_lock_refused(st, "alias", NULL, -EINVAL);
	lk_store_close(st);
}

static void test_hard_linked_file(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;
	struct stat sb;

	assert_int_equal(lk_lock_open(st, "hl", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(link(in_store("hl"), in_root("second-name")), 0);
	expect_lock_refused(st, "hl", NULL, -EINVAL);
	assert_int_equal(lk_lock_status(st, "hl", &s), -EINVAL);
	assert_int_equal(stat(in_store("hl"), &sb), 0);
	assert_int_equal(sb.st_nlink, 2);

	/* an empty file with a second name is not adopted either */
	assert_int_equal(tu_write_file(in_store("e"), "", 0), 0);
	assert_int_equal(link(in_store("e"), in_root("e2")), 0);
	expect_lock_refused(st, "e", NULL, -EINVAL);
	assert_int_equal(stat(in_store("e"), &sb), 0);
	assert_int_equal(sb.st_size, 0);
	lk_store_close(st);
}

static void test_foreign_file(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };

	assert_int_equal(tu_write_file(in_store("hello"), "hello", 5), 0);
	expect_lock_refused(st, "hello", NULL, -EINVAL);
	assert_file_content(in_store("hello"), "hello", 5);
	assert_int_equal(lk_lock_status(st, "hello", &s), -EINVAL);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_file_content(in_store("hello"), "hello", 5);
	lk_store_close(st);
}

static void test_zero_page_file(void **state)
{
	static uint8_t zeros[LK_KFILE_SIZE];
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };

	assert_int_equal(tu_write_file(in_store("z"), zeros, sizeof(zeros)), 0);
	expect_lock_refused(st, "z", NULL, -EINVAL);
	assert_file_content(in_store("z"), zeros, sizeof(zeros));
	assert_int_equal(lk_lock_status(st, "z", &s), -EINVAL);
	lk_store_close(st);
}

static void test_wrong_size_file(void **state)
{
	static uint8_t page[LK_KFILE_SIZE + 100];
	struct lk_store *st = open_store();

	/* a genuine header on a file of the wrong size: mapping it could fault */
	lk__kfile_header_encode(page);
	assert_int_equal(tu_write_file(in_store("big"), page, sizeof(page)), 0);
	expect_lock_refused(st, "big", NULL, -EINVAL);
	assert_file_content(in_store("big"), page, sizeof(page));
	assert_int_equal(tu_write_file(in_store("short"), page, LK_KFILE_SIZE - 1), 0);
	expect_lock_refused(st, "short", NULL, -EINVAL);
	assert_file_content(in_store("short"), page, LK_KFILE_SIZE - 1);
	lk_store_close(st);
}

static void test_empty_file_adopted(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	uint8_t page[LK_KFILE_SIZE];
	struct lk_lock *lk = NULL;

	assert_int_equal(tu_write_file(in_store("empty"), "", 0), 0);
	assert_int_equal(lk_lock_status(st, "empty", &s), 0);
	assert_int_equal(s.held, 0);

	assert_int_equal(lk_lock_open(st, "empty", NULL, &lk), 0);
	assert_int_equal(tu_read_file(in_store("empty"), page, sizeof(page)), LK_KFILE_SIZE);
	assert_int_equal(lk__kfile_header_check(page, sizeof(page)), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > 0);
	assert_int_equal(lk_lock_status(st, "empty", &s), 0);
	assert_int_equal(s.exists, 1);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.token, lk_lock_token(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * lk_lock_status
 */

static void test_status_never_used(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s;

	memset(&s, 0x55, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "never", &s), 0);
	assert_int_equal(s.exists, 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.shared, 0);
	assert_int_equal(s.token, 0);
	assert_int_equal(s.mode, LK_MODE_AUTO);
	assert_int_equal(tu_count_entries(store), 0);
	lk_store_close(st);
}

static void test_status_bad_arguments(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s;

	memset(&s, 0, sizeof(s));
	s.size = sizeof(s) - 1;
	assert_int_equal(lk_lock_status(st, "x", &s), -EINVAL);
	s.size = 0;
	assert_int_equal(lk_lock_status(st, "x", &s), -EINVAL);
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "x", NULL), -EINVAL);
	assert_int_equal(lk_lock_status(NULL, "x", &s), -EINVAL);
	assert_int_equal(lk_lock_status(st, "../x", &s), -EINVAL);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_int_equal(lk_lock_status(st, NULL, &s), -EINVAL);
	assert_int_equal(lk_lock_status(st, "", &s), -EINVAL);
	lk_store_close(st);
}

/* Flip a byte in both record slots of a lock file, as a failing disk might. */
static void corrupt_both_slots(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b;

	assert_true(fd >= 0);
	for (int i = 0; i < 2; i++) {
		off_t off = (i ? LK_KSLOT1_OFF : LK_KSLOT0_OFF) + 20;

		assert_int_equal(pread(fd, &b, 1, off), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, off), 1);
	}
	close(fd);
}

static void test_status_corrupt_free(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, "c", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	corrupt_both_slots(in_store("c"));

	/* nobody holds it: that much is certain, whatever the record says */
	assert_int_equal(lk_lock_status(st, "c", &s), 0);
	assert_int_equal(s.exists, 1);
	assert_int_equal(s.held, 0);
	lk_store_close(st);
}

static void test_status_corrupt_held(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, "c", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	corrupt_both_slots(in_store("c"));

	s.held = 0;
	assert_int_equal(lk_lock_status(st, "c", &s), -EBADMSG);
	assert_true(lk_store_errmsg(st)[0] != 0);

	/* shared holders too */
	lk_lock_close(lk);
	{
		struct lk_lock_opts o = LK_LOCK_OPTS_INIT;

		o.flags = LK_LOCK_SHARED;
		assert_int_equal(lk_lock_open(st, "c", &o, &lk), 0);
		assert_int_equal(lk_lock_acquire(lk, 0), 0);
		corrupt_both_slots(in_store("c"));
		assert_int_equal(lk_lock_status(st, "c", &s), -EBADMSG);
		lk_lock_close(lk);
	}
	lk_store_close(st);
}

static void test_errmsg_null(void **state)
{
	assert_non_null(lk_store_errmsg(NULL));
	assert_string_equal(lk_store_errmsg(NULL), "");
	assert_non_null(lk_lock_errmsg(NULL));
	assert_string_equal(lk_lock_errmsg(NULL), "");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_null_opts),
		T(test_store_creates_missing_parents),
		T(test_store_bad_size),
		T(test_store_unknown_flags),
		T(test_store_bad_modes),
		T(test_store_wait_signal),
		T(test_store_bad_arguments),
		T(test_store_open_err_buffer),
		T(test_nocreate_missing),
		T(test_nocreate_existing),
		T(test_rdonly_store),
		T(test_store_is_a_file),
		T(test_world_writable_store),
		T(test_lock_bad_opts),
		T(test_lock_bad_arguments),
		T(test_lease_opts),
		T(test_directory_at_name),
		T(test_symlink_at_name),
		T(test_hard_linked_file),
		T(test_foreign_file),
		T(test_zero_page_file),
		T(test_wrong_size_file),
		T(test_empty_file_adopted),
		T(test_status_never_used),
		T(test_status_bad_arguments),
		T(test_status_corrupt_free),
		T(test_status_corrupt_held),
		T(test_errmsg_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
