// SPDX-License-Identifier: MIT
/*
 * What a store refuses, and what it lets a group share.
 *
 * A lock store is a directory other people may be able to write to: a group
 * shares it, or it sits in a sticky world-writable directory. Whoever can
 * plant a symbolic link, a hard link or an entry of their own under a lock's
 * name could make lockkit lock, map or write a file of their choosing, or
 * delete a lock under its holders. Each test plants one such thing and
 * checks that the library refuses it with the documented -errno and a
 * message saying why (on the handle and on lockctl's error line), that
 * nothing outside the store was touched, and that the refusal also holds
 * when the entry is swapped between lockkit's first look and its use.
 *
 * The group-shared store is tested with real other users: the test runs as
 * root and children switch to unused numeric ids (61001, 61002 in group
 * 61000; 61003 outside it).
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
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "lrecord.h"
#include "storage/sharness.h"
#include "sys.h"

#define GID_SHARED 61000

static const struct sh_user user_a = {61001, 61001, 1, {GID_SHARED}, 022};
static const struct sh_user user_b = {61002, 61002, 1, {GID_SHARED}, 022};
static const struct sh_user outsider = {61003, 61003, 0, {0}, 022};

static struct lk__posix_sys real;
static char root[PATH_MAX];
static char store[PATH_MAX + 16];
static char outside[PATH_MAX + 16];

static const struct lk_lock_opts kopts = {
	.size = sizeof(struct lk_lock_opts),
	.mode = LK_MODE_KERNEL,
};

static int setup(void **state)
{
	(void)state;
	real = lk__posix_sys;
	sh_tmpdir(root, sizeof(root), "lksec");
	snprintf(store, sizeof(store), "%s/store", root);
	snprintf(outside, sizeof(outside), "%s/outside", root);
	if (mkdir(store, 0700) < 0 || mkdir(outside, 0700) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	lk__posix_sys = real;
	return sh_cleanup(state);
}

static const char *at(const char *dir, const char *rel)
{
	static char buf[8][PATH_MAX + 300];
	static int k;
	char tmp[PATH_MAX + 300];
	int n = snprintf(tmp, sizeof(tmp), "%s/%s", dir, rel);

	if (n < 0 || (size_t)n >= sizeof(tmp))
		fail_msg("path too long");
	k = (k + 1) % 8;
	memcpy(buf[k], tmp, (size_t)n + 1);
	return buf[k];
}

static struct lk_store *open_store(const char *dir)
{
	struct lk_store *st = NULL;
	char msg[256];
	int r = lk_store_open_err(dir, NULL, &st, msg, sizeof(msg));

	if (r < 0)
		fail_msg("cannot open store %s: %s", dir, msg);
	return st;
}

static struct lk_lock_opts lease_opts(void)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;

	o.mode = LK_MODE_LEASE;
	o.ttl_ms = 1000;
	return o;
}

/* Make a lock of either mode in dir, taken and released once. */
static uint64_t make_lock(const char *dir, const char *name, enum lk_mode mode)
{
	struct lk_lock_opts o = mode == LK_MODE_LEASE ? lease_opts() : kopts;
	struct lk_store *st = open_store(dir);
	struct lk_lock *lk = NULL;
	uint64_t tok;

	assert_int_equal(lk_lock_open(st, name, &o, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 5000), 0);
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	return tok;
}

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("\"%s\" does not mention \"%s\"", s, part);
}

/* lk_lock_open() in mode fails with want, and the store's message says why. */
static void refused_open(struct lk_store *st, const char *name, enum lk_mode mode, int want,
                         const char *why)
{
	struct lk_lock_opts o = mode == LK_MODE_LEASE ? lease_opts() : kopts;
	struct lk_lock *lk = (struct lk_lock *)(uintptr_t)0x5e5e;

	if (mode == LK_MODE_AUTO)
		o.mode = LK_MODE_AUTO;
	assert_int_equal(lk_lock_open(st, name, &o, &lk), want);
	assert_ptr_equal(lk, (struct lk_lock *)(uintptr_t)0x5e5e);
	assert_contains(lk_store_errmsg(st), name);
	assert_contains(lk_store_errmsg(st), why);
}

static void refused_status(struct lk_store *st, const char *name, int want, const char *why)
{
	struct lk_status s = {.size = sizeof(s)};

	assert_int_equal(lk_lock_status(st, name, &s), want);
	assert_contains(lk_store_errmsg(st), why);
}

/* lockctl status and run both refuse, exit with code, and name the lock. */
static void refused_lockctl(const struct sh_user *u, const char *dir, const char *name, int code,
                            const char *why)
{
	char err[2048], line[300];
	const char *status[] = {"-S", dir, "status", name, NULL};
	const char *run[] = {"-S", dir, "run", "-n", name, "--", "true", NULL};

	snprintf(line, sizeof(line), "lockctl: %s: ", name);
	assert_int_equal(sh_lockctl(u, err, sizeof(err), status), code);
	assert_contains(err, line);
	assert_contains(err, why);
	assert_int_equal(sh_lockctl(u, err, sizeof(err), run), code);
	assert_contains(err, line);
	assert_contains(err, why);
}

/* ------------------------------------------------------------------------
 * Swapping an entry between the first look and the use: the hook runs the
 * real fstatat() (what lk_lock_open()'s mode check sees), then exchanges
 * swap_from and swap_to.
 */

static const char *swap_name, *swap_from, *swap_to;
static int swapped;

static int fstatat_then_swap(int dfd, const char *path, struct stat *st, int flags)
{
	int r = real.fstatat(dfd, path, st, flags);

	if (swap_name && !swapped && !strcmp(path, swap_name)) {
		swapped = 1;
		if (renameat2(AT_FDCWD, swap_from, AT_FDCWD, swap_to, RENAME_EXCHANGE) < 0)
			fprintf(stderr, "swap %s -> %s: %s\n", swap_from, swap_to, strerror(errno));
	}
	return r;
}

static void arm_swap(const char *name, const char *from, const char *to)
{
	swap_name = name;
	swap_from = from;
	swap_to = to;
	swapped = 0;
	lk__posix_sys.fstatat = fstatat_then_swap;
}

static void disarm_swap(void)
{
	lk__posix_sys.fstatat = real.fstatat;
	assert_int_equal(swapped, 1);
	swap_name = NULL;
}

/* ------------------------------------------------------------------------
 * Symbolic links
 */

static void test_symlink_lock_file(void **state)
{
	static const char precious[] = "not a lock file\n";
	struct lk_store *st;
	struct lk_lock *lk = NULL;
	char buf[64];

	(void)state;
	assert_int_equal(sh_write(at(outside, "victim"), precious), 0);
	assert_int_equal(symlink(at(outside, "victim"), at(store, "k")), 0);
	assert_int_equal(symlink(at(outside, "none"), at(store, "dangling")), 0);
	st = open_store(store);
	refused_open(st, "k", LK_MODE_KERNEL, -EINVAL, "symbolic link");
	refused_open(st, "k", LK_MODE_AUTO, -EINVAL, "symbolic link");
	refused_status(st, "k", -EINVAL, "symbolic link");
	refused_open(st, "dangling", LK_MODE_KERNEL, -EINVAL, "symbolic link");
	refused_lockctl(NULL, store, "k", 74, "symbolic link");

	/* swapped in after the mode check: O_NOFOLLOW on the open refuses it */
	assert_int_equal(lk_lock_open(st, "race", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(symlink(at(outside, "victim"), at(root, "race-link")), 0);
	arm_swap("race", at(root, "race-link"), at(store, "race"));
	refused_open(st, "race", LK_MODE_KERNEL, -EINVAL, "symbolic link");
	disarm_swap();
	lk_store_close(st);

	/* the targets were neither written nor created */
	assert_int_equal(sh_read(at(outside, "victim"), buf, sizeof(buf)), sizeof(precious) - 1);
	assert_memory_equal(buf, precious, sizeof(precious) - 1);
	assert_int_equal(sh_mode(at(outside, "none")), -1);
}

static int count_entries(const char *dir)
{
	char cmd[PATH_MAX + 64];
	int n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	f = popen(cmd, "r");
	if (!f || fscanf(f, "%d", &n) != 1)
		n = -1;
	if (f)
		pclose(f);
	return n;
}

static void test_symlink_lock_dir(void **state)
{
	struct lk_lock_opts o = lease_opts();
	struct lk_store *st;
	struct lk_lock *lk = NULL;
	char elsewhere[PATH_MAX + 32];
	int before;

	(void)state;
	/* a real lease lock in another store, reached through a link */
	make_lock(outside, "l", LK_MODE_LEASE);
	snprintf(elsewhere, sizeof(elsewhere), "%s/l", outside);
	before = count_entries(elsewhere);
	assert_int_equal(symlink(elsewhere, at(store, "l")), 0);
	st = open_store(store);
	refused_open(st, "l", LK_MODE_LEASE, -EINVAL, "symbolic link");
	refused_open(st, "l", LK_MODE_AUTO, -EINVAL, "symbolic link");
	refused_status(st, "l", -EINVAL, "symbolic link");
	refused_lockctl(NULL, store, "l", 74, "symbolic link");

	/* swapped in after the handle was opened and the mode checked */
	make_lock(store, "race", LK_MODE_LEASE);
	assert_int_equal(lk_lock_open(st, "race", &o, &lk), 0);
	assert_int_equal(symlink(elsewhere, at(root, "race-link")), 0);
	arm_swap("race", at(root, "race-link"), at(store, "race"));
	assert_int_equal(lk_lock_acquire(lk, 0), -EINVAL);
	assert_contains(lk_lock_errmsg(lk), "symbolic link");
	disarm_swap();
	assert_int_equal(lk_lock_token(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	assert_int_equal(count_entries(elsewhere), before);
}

/* A generation record that is a symbolic link is unreadable: held, never free. */
static void test_symlink_record(void **state)
{
	char gname[LK_GEN_NAME_LEN + 1], path[PATH_MAX + 64], target[PATH_MAX + 64];
	struct lk_status s = {.size = sizeof(s)};
	struct lk_lock_opts o = lease_opts();
	struct lk_store *st;
	struct lk_lock *lk = NULL;
	uint64_t tok;

	(void)state;
	tok = make_lock(store, "r", LK_MODE_LEASE);
	/* a RELEASED record for N+1 elsewhere, linked in as g.N+1 */
	lk__gen_name(gname, tok);
	snprintf(path, sizeof(path), "%s/r/%s", store, gname);
	snprintf(target, sizeof(target), "%s/rec", outside);
	assert_int_equal(link(path, target), 0);
	lk__gen_name(gname, tok + 1);
	snprintf(path, sizeof(path), "%s/r/%s", store, gname);
	assert_int_equal(symlink(target, path), 0);

	st = open_store(store);
	assert_int_equal(lk_lock_status(st, "r", &s), 0);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.released, 0);
	assert_int_equal(lk_lock_open(st, "r", &o, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), -EWOULDBLOCK);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Hard links
 */

static void test_hardlink_lock_file(void **state)
{
	static const char secret[] = "secret\n";
	struct lk_store *st;
	char buf[64];

	(void)state;
	make_lock(store, "k", LK_MODE_KERNEL);
	assert_int_equal(link(at(store, "k"), at(outside, "k2")), 0);
	/* a file from outside, linked in under a lock's name */
	assert_int_equal(sh_write(at(outside, "secret"), secret), 0);
	assert_int_equal(link(at(outside, "secret"), at(store, "s")), 0);

	st = open_store(store);
	refused_open(st, "k", LK_MODE_KERNEL, -EINVAL, "hard links");
	refused_open(st, "k", LK_MODE_AUTO, -EINVAL, "hard links");
	refused_status(st, "k", -EINVAL, "hard links");
	refused_open(st, "s", LK_MODE_KERNEL, -EINVAL, "hard links");
	refused_lockctl(NULL, store, "k", 74, "hard links");
	lk_store_close(st);
	assert_int_equal(sh_read(at(outside, "secret"), buf, sizeof(buf)), sizeof(secret) - 1);
	assert_memory_equal(buf, secret, sizeof(secret) - 1);

	/* once the second name is gone the lock works again */
	assert_int_equal(unlink(at(outside, "k2")), 0);
	make_lock(store, "k", LK_MODE_KERNEL);
}

/* ------------------------------------------------------------------------
 * Entries owned by someone else
 */

static int chown_tree(const char *path, uid_t uid, gid_t gid)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "chown -hR %u:%u '%s'", (unsigned)uid, (unsigned)gid, path);
	return system(cmd);
}

static void test_foreign_owner(void **state)
{
	struct lk_lock_opts o = lease_opts();
	struct lk_store *st;
	struct lk_lock *lk = NULL;

	(void)state;
	make_lock(store, "k", LK_MODE_KERNEL);
	make_lock(store, "l", LK_MODE_LEASE);
	/* modes that would let their owner share them: ownership alone counts */
	assert_int_equal(chown_tree(at(store, "k"), 61001, 61001), 0);
	assert_int_equal(chown_tree(at(store, "l"), 61001, 61001), 0);

	st = open_store(store);
	refused_open(st, "k", LK_MODE_KERNEL, -EPERM, "owned by uid 61001");
	refused_open(st, "l", LK_MODE_LEASE, -EPERM, "owned by uid 61001");
	refused_open(st, "l", LK_MODE_AUTO, -EPERM, "owned by uid 61001");
	refused_status(st, "k", -EPERM, "owned by uid 61001");
	refused_status(st, "l", -EPERM, "owned by uid 61001");
	refused_lockctl(NULL, store, "k", 69, "owned by uid 61001");
	refused_lockctl(NULL, store, "l", 69, "owned by uid 61001");

	/* a foreign lock directory swapped in after the mode check */
	make_lock(store, "race", LK_MODE_LEASE);
	assert_int_equal(lk_lock_open(st, "race", &o, &lk), 0);
	make_lock(outside, "race", LK_MODE_LEASE);
	assert_int_equal(chown_tree(at(outside, "race"), 61001, 61001), 0);
	arm_swap("race", at(outside, "race"), at(store, "race"));
	assert_int_equal(lk_lock_acquire(lk, 0), -EPERM);
	assert_contains(lk_lock_errmsg(lk), "owned by uid 61001");
	disarm_swap();
	lk_lock_close(lk);
	lk_store_close(st);
}

/* The owner of the store is trusted: it could replace anything anyway. */
static void test_store_owner_trusted(void **state)
{
	struct lk_store *st;
	struct lk_status s = {.size = sizeof(s)};

	(void)state;
	make_lock(store, "k", LK_MODE_KERNEL);
	make_lock(store, "l", LK_MODE_LEASE);
	assert_int_equal(chown_tree(store, 61001, 61001), 0);
	st = open_store(store);
	assert_int_equal(lk_lock_status(st, "k", &s), 0);
	assert_int_equal(s.exists, 1);
	assert_int_equal(lk_lock_status(st, "l", &s), 0);
	assert_int_equal(s.exists, 1);
	lk_store_close(st);
	make_lock(store, "k", LK_MODE_KERNEL);
	make_lock(store, "l", LK_MODE_LEASE);
}

/* ------------------------------------------------------------------------
 * World-writable stores and entries
 */

static int outsider_plants(void *arg)
{
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	struct lk_lock_opts o = lease_opts();
	const char *dir = arg;

	SC_CHECK(lk_store_open(dir, NULL, &st) == 0);
	SC_CHECK(lk_lock_open(st, "planted-k", &kopts, &lk) == 0);
	lk_lock_close(lk);
	SC_CHECK(lk_lock_open(st, "planted-l", &o, &lk) == 0);
	SC_CHECK(lk_lock_acquire(lk, 0) == 0);
	lk_lock_close(lk);
	lk_store_close(st);
	return 0;
}

static int member_refuses_planted(void *arg)
{
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	const char *dir = arg;

	SC_CHECK(lk_store_open(dir, NULL, &st) == 0);
	SC_CHECK(lk_lock_open(st, "planted-k", NULL, &lk) == -EPERM);
	SC_CHECK(strstr(lk_store_errmsg(st), "owned by uid 61003"));
	SC_CHECK(lk_lock_open(st, "planted-l", NULL, &lk) == -EPERM);
	lk_store_close(st);
	return 0;
}

static void test_world_writable(void **state)
{
	struct lk_store *st = NULL;
	char msg[256], err[2048];
	const char *args[] = {"-S", store, "run", "-n", "x", "--", "true", NULL};

	(void)state;
	assert_int_equal(chmod(store, 0777), 0);
	assert_int_equal(lk_store_open_err(store, NULL, &st, msg, sizeof(msg)), -EPERM);
	assert_null(st);
	assert_contains(msg, "world-writable without the sticky bit");
	assert_int_equal(sh_lockctl(NULL, err, sizeof(err), args), 69);
	assert_contains(err, "world-writable without the sticky bit");

	/* sticky, like /tmp: usable, but entries of other users are refused */
	assert_int_equal(chmod(store, 01777), 0);
	assert_int_equal(sh_run_as(&outsider, outsider_plants, store), 0);
	st = open_store(store);
	refused_open(st, "planted-k", LK_MODE_AUTO, -EPERM, "owned by uid 61003");
	refused_open(st, "planted-l", LK_MODE_AUTO, -EPERM, "owned by uid 61003");
	lk_store_close(st);
	assert_int_equal(sh_run_as(&user_b, member_refuses_planted, store), 0);
	make_lock(store, "mine", LK_MODE_KERNEL);
	assert_int_equal(chmod(store, 0700), 0);

	/* entries that anyone may write */
	make_lock(store, "k", LK_MODE_KERNEL);
	make_lock(store, "l", LK_MODE_LEASE);
	assert_int_equal(chmod(at(store, "k"), 0666), 0);
	assert_int_equal(chmod(at(store, "l"), 0777), 0);
	st = open_store(store);
	refused_open(st, "k", LK_MODE_KERNEL, -EPERM, "writable by anyone");
	refused_open(st, "l", LK_MODE_LEASE, -EPERM, "writable by anyone");
	refused_status(st, "l", -EPERM, "writable by anyone");
	lk_store_close(st);
	refused_lockctl(NULL, store, "k", 69, "writable by anyone");
}

/* ------------------------------------------------------------------------
 * Names that try to leave the store
 */

static void test_traversal_names(void **state)
{
	static const char *const bad[] = {
		"",     ".",       "..",   "../x", "../../etc/passwd", "a/b",   "/etc/passwd",
		"x/..", ".hidden", "a\nb", "a b",  "\xc3\xbc",         "..\\x", "%2e%2e",
	};
	char longname[300], err[2048];
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st;
	struct lk_lock *lk = NULL;
	struct lk_err e = {0};
	struct lk_bklock *bk = NULL;
	struct lk_bfile *bf = NULL;
	uint64_t id;
	int rootn, storen;

	(void)state;
	st = open_store(store);
	rootn = count_entries(root);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int m = 0; m < 3; m++) {
			struct lk_lock_opts o = LK_LOCK_OPTS_INIT;

			o.mode = (enum lk_mode)m;
			assert_int_equal(lk_lock_open(st, bad[i], &o, &lk), -EINVAL);
			assert_contains(lk_store_errmsg(st), "invalid lock name");
		}
		assert_int_equal(lk_lock_status(st, bad[i], &s), -EINVAL);
		assert_contains(lk_store_errmsg(st), "invalid lock name");
	}
	memset(longname, 'a', 256);
	longname[256] = 0;
	assert_int_equal(lk_lock_open(st, longname, NULL, &lk), -EINVAL);
	longname[255] = 0;
	assert_int_equal(lk_lock_open(st, longname, &kopts, &lk), 0);
	lk_lock_close(lk);

	/* the backend checks again where names become paths */
	assert_int_equal(st->be->entry(st->bs, "../outside", &e), -EINVAL);
	assert_int_equal(st->be->klock_open(st->bs, "../escape", &bk, &e), -EINVAL);
	assert_int_equal(st->be->mkdir(st->bs, "../d", &e), -EINVAL);
	assert_int_equal(st->be->mkdir(st->bs, "..", &e), -EINVAL);
	assert_int_equal(st->be->write_new(st->bs, "../outside/x", "x", 1, &id, &e), -EINVAL);
	assert_int_equal(st->be->write_new(st->bs, "ok/../../x", "x", 1, &id, &e), -EINVAL);
	assert_int_equal(st->be->readdir(st->bs, "..", NULL, NULL, &e), -EINVAL);
	assert_int_equal(st->be->open_record(st->bs, "..", "outside", &bf, &e), -EINVAL);
	assert_int_equal(st->be->open_record(st->bs, "ok", "..", &bf, &e), -EINVAL);
	assert_int_equal(st->be->rename(st->bs, "..", "x", &e), -EINVAL);
	assert_int_equal(st->be->unlink(st->bs, "../outside", &e), -EINVAL);
	lk_store_close(st);
	assert_int_equal(sh_mode(at(root, "escape")), -1);
	assert_int_equal(sh_mode(at(root, "d")), -1);
	assert_int_equal(sh_mode(at(root, "x")), -1);
	assert_int_equal(count_entries(root), rootn);
	storen = count_entries(store);
	assert_int_equal(storen, 1); /* only the 255-byte name */

	{
		const char *st1[] = {"-S", store, "status", "../x", NULL};
		const char *st2[] = {"-S", store, "run", "../../etc/passwd", "--", "true", NULL};
		const char *st3[] = {"-S", store, "run", "a/b", "--", "true", NULL};

		assert_int_equal(sh_lockctl(NULL, err, sizeof(err), st1), 64);
		assert_contains(err, "invalid lock name");
		assert_int_equal(sh_lockctl(NULL, err, sizeof(err), st2), 64);
		assert_contains(err, "invalid lock name");
		assert_int_equal(sh_lockctl(NULL, err, sizeof(err), st3), 64);
		assert_contains(err, "invalid lock name");
	}
	assert_int_equal(count_entries(root), rootn);
	assert_int_equal(count_entries(store), storen);
}

/* ------------------------------------------------------------------------
 * Modes of what lockkit creates
 */

static void check_lease_modes(const char *dir, const char *name, int dmode, int fmode)
{
	char path[PATH_MAX + 300];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(sh_mode(path), dmode);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "g.", 2)) {
			assert_int_equal(sh_mode(at(path, de->d_name)), fmode);
			n++;
		}
	closedir(d);
	assert_true(n > 0);
}

static void test_modes(void **state)
{
	struct lk_store_opts so = LK_STORE_OPTS_INIT;
	struct lk_lock_opts lo = lease_opts();
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char dir[PATH_MAX + 32];
	mode_t old;

	(void)state;
	/* defaults, under the usual umask */
	old = umask(022);
	snprintf(dir, sizeof(dir), "%s/new/store", root);
	assert_int_equal(lk_store_open(dir, NULL, &st), 0);
	assert_int_equal(sh_mode(dir), 0700);
	assert_int_equal(sh_mode(at(root, "new")), 0700);
	assert_int_equal(lk_lock_open(st, "k", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(sh_mode(at(dir, "k")), 0600);
	assert_int_equal(lk_lock_open(st, "l", &lo, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	lk_lock_close(lk);
	check_lease_modes(dir, "l", 0700, 0600);
	lk_store_close(st);

	/* modes from the options, less the umask */
	so.dir_mode = 0750;
	so.file_mode = 0640;
	snprintf(dir, sizeof(dir), "%s/opt", root);
	assert_int_equal(lk_store_open(dir, &so, &st), 0);
	assert_int_equal(sh_mode(dir), 0750);
	assert_int_equal(lk_lock_open(st, "k", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(sh_mode(at(dir, "k")), 0640);
	assert_int_equal(lk_lock_open(st, "l", &lo, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	lk_lock_close(lk);
	check_lease_modes(dir, "l", 0750, 0640);
	umask(077);
	assert_int_equal(lk_lock_open(st, "k2", &kopts, &lk), 0);
	lk_lock_close(lk);
	assert_int_equal(sh_mode(at(dir, "k2")), 0600);
	lk_store_close(st);
	umask(old);

	/* a mode that would let others write a lock is refused up front */
	so.file_mode = 0662;
	assert_int_equal(lk_store_open(dir, &so, &st), -EINVAL);
}

/* ------------------------------------------------------------------------
 * A store shared by a group
 */

struct shared_arg {
	const char *dir;
	const char *k, *l;
	uint64_t min_k, min_l; /* tokens must be above these */
	int expect;            /* 0: acquire; -EWOULDBLOCK: held elsewhere */
};

static int member_uses(void *arg)
{
	struct shared_arg *a = arg;
	struct lk_lock_opts lo = lease_opts();
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = NULL;
	struct lk_lock *k = NULL, *l = NULL;
	char msg[256];
	int r;

	r = lk_store_open_err(a->dir, NULL, &st, msg, sizeof(msg));
	if (r < 0)
		fprintf(stderr, "member %u: %s\n", (unsigned)getuid(), msg);
	SC_CHECK(r == 0);
	r = lk_lock_open(st, a->k, &kopts, &k);
	if (r < 0)
		fprintf(stderr, "member %u: %s\n", (unsigned)getuid(), lk_store_errmsg(st));
	SC_CHECK(r == 0);
	r = lk_lock_open(st, a->l, &lo, &l);
	SC_CHECK(r == 0);
	r = lk_lock_acquire(k, 0);
	if (r != a->expect)
		fprintf(stderr, "member %u: kernel acquire %d: %s\n", (unsigned)getuid(), r,
		        lk_lock_errmsg(k));
	SC_CHECK(r == a->expect);
	r = lk_lock_acquire(l, 0);
	if (r != a->expect)
		fprintf(stderr, "member %u: lease acquire %d: %s\n", (unsigned)getuid(), r,
		        lk_lock_errmsg(l));
	SC_CHECK(r == a->expect);
	if (a->expect == 0) {
		SC_CHECK(lk_lock_token(k) > a->min_k);
		SC_CHECK(lk_lock_token(l) > a->min_l);
		SC_CHECK(lk_lock_release(k) == 0);
		SC_CHECK(lk_lock_release(l) == 0);
	}
	SC_CHECK(lk_lock_status(st, a->k, &s) == 0);
	SC_CHECK(s.exists == 1);
	SC_CHECK(s.held == (a->expect != 0));
	SC_CHECK(lk_lock_status(st, a->l, &s) == 0);
	SC_CHECK(s.held == (a->expect != 0));
	lk_lock_close(k);
	lk_lock_close(l);
	lk_store_close(st);
	return 0;
}

static int outsider_refused(void *arg)
{
	struct shared_arg *a = arg;
	struct lk_store *st = NULL;
	char msg[256];

	SC_CHECK(lk_store_open_err(a->dir, NULL, &st, msg, sizeof(msg)) == -EACCES);
	SC_CHECK(strstr(msg, a->dir) != NULL);
	SC_CHECK(strstr(msg, "Permission denied") != NULL);
	return 0;
}

static void check_owner(const char *path, uid_t uid, gid_t gid, int mode)
{
	struct stat sb;

	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_uid, uid);
	assert_int_equal(sb.st_gid, gid);
	assert_int_equal(sb.st_mode & 07777, mode);
}

static void test_group_shared_store(void **state)
{
	struct shared_arg a = {.dir = store, .k = "k", .l = "l", .expect = 0};
	struct lk_status s = {.size = sizeof(s)};
	struct sh_holder h;
	struct lk_store *st;
	char err[2048];
	DIR *d;
	struct dirent *de;

	(void)state;
	assert_int_equal(chown(store, 0, GID_SHARED), 0);
	assert_int_equal(chmod(store, 02770), 0);

	/* a creates both locks (umask 022); they are open to the group */
	assert_int_equal(sh_run_as(&user_a, member_uses, &a), 0);
	check_owner(at(store, "k"), 61001, GID_SHARED, 0660);
	check_owner(at(store, "l"), 61001, GID_SHARED, 02770);
	d = opendir(at(store, "l"));
	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "g.", 2))
			check_owner(at(at(store, "l"), de->d_name), 61001, GID_SHARED, 0660);
	closedir(d);

	/* b uses them after a, with higher tokens */
	st = open_store(store);
	assert_int_equal(lk_lock_status(st, "k", &s), 0);
	a.min_k = s.token;
	assert_int_equal(lk_lock_status(st, "l", &s), 0);
	a.min_l = s.token;
	assert_true(a.min_k > 0 && a.min_l > 0);
	assert_int_equal(sh_run_as(&user_b, member_uses, &a), 0);

	/* a holds both: b is excluded and sees them held */
	sh_holder_start(&h, &user_a, store, "k", LK_MODE_KERNEL, 0);
	{
		struct sh_holder hl;

		sh_holder_start(&hl, &user_a, store, "l", LK_MODE_LEASE, 1000);
		a.expect = -EWOULDBLOCK;
		assert_int_equal(sh_run_as(&user_b, member_uses, &a), 0);
		assert_int_equal(sh_holder_holds(&hl), 1);
		assert_int_equal(sh_holder_stop(&hl), 0);
	}
	assert_int_equal(sh_holder_stop(&h), 0);

	/* lockctl works for members too, on locks the other member made */
	{
		const char *run_k[] = {"-S", store, "run", "-n", "k", "--", "true", NULL};
		const char *run_l[] = {"-S", store, "run", "-n", "l", "--", "true", NULL};
		const char *run_n[] = {"-S", store, "run", "-n", "new", "--", "true", NULL};

		assert_int_equal(sh_lockctl(&user_b, err, sizeof(err), run_k), 0);
		assert_int_equal(sh_lockctl(&user_b, err, sizeof(err), run_l), 0);
		assert_int_equal(sh_lockctl(&user_a, err, sizeof(err), run_n), 0);
		assert_int_equal(sh_lockctl(&user_b, err, sizeof(err), run_n), 0);
	}

	/* someone outside the group cannot even open the store */
	assert_int_equal(sh_run_as(&outsider, outsider_refused, &a), 0);
	refused_lockctl(&outsider, store, "k", 69, "Permission denied");

	/* a member's entry that left the group is no longer trusted */
	assert_int_equal(lchown(at(store, "new"), 61001, 61009), 0);
	refused_open(st, "new", LK_MODE_AUTO, -EPERM, "owned by uid 61001 (group 61009)");
	lk_store_close(st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_symlink_lock_file),  T(test_symlink_lock_dir), T(test_symlink_record),
		T(test_hardlink_lock_file), T(test_foreign_owner),    T(test_store_owner_trusted),
		T(test_world_writable),     T(test_traversal_names),  T(test_modes),
		T(test_group_shared_store),
	};

	sh_init(120);
	return cmocka_run_group_tests_name("security", tests, NULL, NULL);
}
