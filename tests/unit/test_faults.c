// SPDX-License-Identifier: MIT
/*
 * Storage failures, injected through the posix backend's syscall table.
 *
 * Disks fill up, msync() reports I/O errors and network filesystems fail lock
 * calls; none of that may crash the library, leave a lock held by nobody's
 * handle, hand out a token whose reservation never reached the disk, or leave
 * a half-written file that poisons every later open. Each test replaces one
 * entry of lk__posix_sys, checks the failure is reported with the right code,
 * then restores the table and checks the store still works. The teardown
 * restores the whole table even when an assertion fails half-way.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "krecord.h"
#include "sys.h"
#include "tutil.h"

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e)

/* Kernel mode explicitly: on a network filesystem AUTO would pick leases. */
static const struct lk_lock_opts kopts = {
	.size = sizeof(struct lk_lock_opts),
	.mode = LK_MODE_KERNEL,
};

static struct lk__posix_sys real;
static char root[512];
static char store[600];
static int msync_calls, pwrite_calls, pread_calls, pread_torn, fcntl_fail_cmd;

static int setup(void **state)
{
	real = lk__posix_sys;
	msync_calls = pwrite_calls = pread_calls = pread_torn = 0;
	fcntl_fail_cmd = 0;
	if (tu_mkdtemp(root, sizeof(root)) < 0)
		return -1;
	snprintf(store, sizeof(store), "%s/store", root);
	return 0;
}

static int teardown(void **state)
{
	lk__posix_sys = real;
	return tu_rm_rf(root) < 0 ? -1 : 0;
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
	int r = lk_store_open(store, NULL, &st);

	if (r < 0)
		fail_msg("cannot open store %s: %d", store, r);
	return st;
}

static int count_fds(void)
{
	return tu_count_entries("/proc/self/fd");
}

static off_t file_size(const char *path)
{
	struct stat sb;

	if (lstat(path, &sb) < 0)
		return -1;
	return sb.st_size;
}

/* ------------------------------------------------------------------------
 * Faulty system calls
 */

static ssize_t pwrite_enospc(int fd, const void *buf, size_t n, off_t off)
{
	pwrite_calls++;
	errno = ENOSPC;
	return -1;
}

/* What a nearly full filesystem does: write part, report the part. */
static ssize_t pwrite_short(int fd, const void *buf, size_t n, off_t off)
{
	pwrite_calls++;
	return real.pwrite(fd, buf, n > 1000 ? 1000 : n, off);
}

static int msync_eio(void *addr, size_t len, int flags)
{
	msync_calls++;
	errno = EIO;
	return -1;
}

static int msync_counting(void *addr, size_t len, int flags)
{
	msync_calls++;
	return real.msync(addr, len, flags);
}

static int fcntl_eio(int fd, int cmd, struct flock *fl)
{
	errno = EIO;
	return -1;
}

/*
 * Fail only one command (F_OFD_SETLKW, F_OFD_GETLK), only unlocking (-1), or
 * only taking byte 1, the shared holders' record lock (-2).
 */
static int fcntl_eio_some(int fd, int cmd, struct flock *fl)
{
	if (cmd == fcntl_fail_cmd || (fcntl_fail_cmd == -1 && fl->l_type == F_UNLCK) ||
	    (fcntl_fail_cmd == -2 && fl->l_start == 1 && fl->l_type != F_UNLCK)) {
		errno = EIO;
		return -1;
	}
	return real.fcntl_lock(fd, cmd, fl);
}

/*
 * A reader racing a writer: the first pread_torn reads see both record slots
 * damaged, later reads see the file as it is.
 */

static ssize_t pread_flaky(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r = real.pread(fd, buf, n, off);

	if (r >= (ssize_t)LK_KFILE_READ_SIZE && off == 0 && pread_calls++ < pread_torn) {
		((uint8_t *)buf)[LK_KSLOT0_OFF + 30] ^= 0x55;
		((uint8_t *)buf)[LK_KSLOT1_OFF + 30] ^= 0x55;
	}
	return r;
}

static void *mmap_enomem(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	errno = ENOMEM;
	return MAP_FAILED;
}

/* ------------------------------------------------------------------------
 * Creating the lock file
 */

static void check_reinitialised(struct lk_store *st, const char *name)
{
	uint8_t page[LK_KFILE_SIZE];
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, name, &kopts, &lk), 0);
	assert_int_equal(file_size(in_store(name)), LK_KFILE_SIZE);
	assert_int_equal(tu_read_file(in_store(name), page, sizeof(page)), LK_KFILE_SIZE);
	assert_int_equal(lk__kfile_header_check(page, sizeof(page)), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
}

static void test_create_enospc(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = SENTINEL;
	int fds = count_fds();

	lk__posix_sys.pwrite = pwrite_enospc;
	assert_int_equal(lk_lock_open(st, "full", &kopts, &lk), -ENOSPC);
	assert_ptr_equal(lk, SENTINEL);
	assert_true(pwrite_calls > 0);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_int_equal(count_fds(), fds);
	/* nothing half-written is left behind */
	assert_true(file_size(in_store("full")) <= 0);

	/* the disk has room again: the same name works */
	lk__posix_sys.pwrite = real.pwrite;
	check_reinitialised(st, "full");
	lk_store_close(st);
}

static void test_create_short_write(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = SENTINEL;

	lk__posix_sys.pwrite = pwrite_short;
	assert_int_equal(lk_lock_open(st, "part", &kopts, &lk), -ENOSPC);
	assert_ptr_equal(lk, SENTINEL);
	assert_true(pwrite_calls > 0);
	assert_true(file_size(in_store("part")) <= 0);

	lk__posix_sys.pwrite = real.pwrite;
	check_reinitialised(st, "part");
	lk_store_close(st);
}

static void test_create_mmap_fails(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = SENTINEL;
	int fds = count_fds();

	lk__posix_sys.mmap = mmap_enomem;
	assert_int_equal(lk_lock_open(st, "nomap", &kopts, &lk), -ENOMEM);
	assert_ptr_equal(lk, SENTINEL);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_int_equal(count_fds(), fds);

	lk__posix_sys.mmap = real.mmap;
	check_reinitialised(st, "nomap");
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * msync failing while the first acquisition syncs its reservation
 */

static void test_acquire_sync_eio(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *a = NULL, *b = NULL;
	struct lk_status s = { .size = sizeof(s) };
	uint64_t tb;

	assert_int_equal(lk_lock_open(st, "s", &kopts, &a), 0);
	assert_int_equal(lk_lock_open(st, "s", &kopts, &b), 0);

	lk__posix_sys.msync = msync_eio;
	assert_int_equal(lk_lock_acquire(a, 0), -EIO);
	assert_true(msync_calls > 0);
	assert_int_equal(lk_lock_token(a), 0);
	assert_int_equal(lk_lock_check(a), -ENOLCK);
	assert_true(lk_lock_errmsg(a)[0] != 0);
	assert_int_equal(lk_lock_release(a), -ENOLCK);

	/* the failed acquisition did not leave the lock held */
	assert_int_equal(lk_lock_status(st, "s", &s), 0);
	assert_int_equal(s.held, 0);
	lk__posix_sys.msync = real.msync;
	assert_int_equal(lk_lock_acquire(b, 0), 0);
	tb = lk_lock_token(b);
	assert_true(tb > 0);
	assert_int_equal(lk_lock_acquire(a, 0), -EWOULDBLOCK);
	assert_int_equal(lk_lock_release(b), 0);

	/* and the first handle is usable again */
	assert_int_equal(lk_lock_acquire(a, 0), 0);
	assert_true(lk_lock_token(a) > tb);
	lk_lock_close(a);
	lk_lock_close(b);
	lk_store_close(st);
}

/* Write a record into both slots of a lock file, as a previous holder would. */
static void write_record(const char *path, uint64_t token, uint64_t reserved,
			 const uint8_t boot[16])
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec rec;
	int fd;

	memset(&rec, 0, sizeof(rec));
	rec.seq = 1;
	rec.token = token;
	rec.reserved = reserved;
	memcpy(rec.boot_id, boot, 16);
	rec.pid = 1;
	lk__krec_encode(&rec, slot);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, slot, sizeof(slot), LK_KSLOT0_OFF), LK_KSLOT_SIZE);
	assert_int_equal(pwrite(fd, slot, sizeof(slot), LK_KSLOT1_OFF), LK_KSLOT_SIZE);
	close(fd);
}

/*
 * A reservation whose msync failed is not on disk. Holding it only in the
 * page cache and trusting it later would let tokens above the durable
 * reservation be handed out without a sync; after a power loss the next boot
 * restarts above the durable one and repeats them. So the acquisition after
 * a failed sync must sync again.
 */
static void test_failed_sync_is_not_trusted(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = NULL;
	int fresh_synced, used_synced;
	uint8_t boot[16];
	uint64_t tok;

	/* baseline: an acquisition inside a synced reservation does not sync */
	assert_int_equal(lk_lock_open(st, "base", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk__posix_sys.msync = msync_counting;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(msync_calls, 0);
	lk_lock_close(lk);

	/* a new file: the first acquisition must sync, and it fails */
	lk__posix_sys.msync = msync_eio;
	assert_int_equal(lk_lock_open(st, "fresh", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), -EIO);
	lk__posix_sys.msync = msync_counting;
	msync_calls = 0;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	fresh_synced = msync_calls > 0;
	lk_lock_close(lk);

	/* an existing file whose reservation is used up */
	assert_int_equal(lk__read_boot_id(boot), 0);
	assert_int_equal(lk_lock_open(st, "used", &kopts, &lk), 0);
	write_record(in_store("used"), 5000, 5000, boot);
	lk__posix_sys.msync = msync_eio;
	assert_int_equal(lk_lock_acquire(lk, 0), -EIO);
	lk__posix_sys.msync = msync_counting;
	msync_calls = 0;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	used_synced = msync_calls > 0;
	tok = lk_lock_token(lk);
	lk_lock_close(lk);
	lk_store_close(st);

	assert_true(tok > 5000);
	if (!fresh_synced)
		print_error("new lock: the first successful acquisition did not sync its "
			    "reservation after the previous sync failed\n");
	if (!used_synced)
		print_error("used-up reservation: token %llu handed out above the durable "
			    "reservation 5000 without a sync\n",
			    (unsigned long long)tok);
	if (!fresh_synced || !used_synced)
		fail_msg("a reservation whose msync failed was trusted later");
}

/* ------------------------------------------------------------------------
 * fcntl failing
 */

static void test_fcntl_eio_acquire(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, "f", &kopts, &lk), 0);
	lk__posix_sys.fcntl_lock = fcntl_eio;
	assert_int_equal(lk_lock_acquire(lk, 0), -EIO);
	assert_int_equal(lk_lock_token(lk), 0);
	assert_true(lk_lock_errmsg(lk)[0] != 0);
	/* waiting calls fail the same way instead of waiting */
	assert_int_equal(lk_lock_acquire(lk, 200), -EIO);
	assert_int_equal(lk_lock_acquire(lk, -1), -EIO);
	assert_int_equal(lk_lock_token(lk), 0);

	lk__posix_sys.fcntl_lock = real.fcntl_lock;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_fcntl_eio_while_waiting(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *a = NULL, *b = NULL;
	struct lk_lock_opts shared = LK_LOCK_OPTS_INIT;

	assert_int_equal(lk_lock_open(st, "w", &kopts, &a), 0);
	assert_int_equal(lk_lock_open(st, "w", &kopts, &b), 0);
	assert_int_equal(lk_lock_acquire(a, 0), 0);

	/* the lock is busy, so b goes to sleep in F_OFD_SETLKW, which fails */
	fcntl_fail_cmd = F_OFD_SETLKW;
	lk__posix_sys.fcntl_lock = fcntl_eio_some;
	assert_int_equal(lk_lock_acquire(b, -1), -EIO);
	assert_int_equal(lk_lock_acquire(b, 5000), -EIO);
	assert_int_equal(lk_lock_token(b), 0);
	lk__posix_sys.fcntl_lock = real.fcntl_lock;

	/* nothing was left behind: a times out normally, then gets it */
	assert_int_equal(lk_lock_acquire(b, 0), -EWOULDBLOCK);
	assert_int_equal(lk_lock_release(a), 0);
	assert_int_equal(lk_lock_acquire(b, 1000), 0);
	lk_lock_close(b);

	/* a shared acquire that fails on byte 1 gives byte 0 back */
	shared.flags = LK_LOCK_SHARED;
	shared.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_lock_open(st, "w", &shared, &b), 0);
	fcntl_fail_cmd = -2;
	lk__posix_sys.fcntl_lock = fcntl_eio_some;
	assert_int_equal(lk_lock_acquire(b, 0), -EIO);
	assert_int_equal(lk_lock_token(b), 0);
	lk__posix_sys.fcntl_lock = real.fcntl_lock;
	assert_int_equal(lk_lock_acquire(a, 0), 0);
	lk_lock_close(a);
	lk_lock_close(b);
	lk_store_close(st);
}

static void test_fcntl_eio_release(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *a = NULL, *b = NULL;

	assert_int_equal(lk_lock_open(st, "r", &kopts, &a), 0);
	assert_int_equal(lk_lock_open(st, "r", &kopts, &b), 0);
	assert_int_equal(lk_lock_acquire(a, 0), 0);
	fcntl_fail_cmd = -1;
	lk__posix_sys.fcntl_lock = fcntl_eio_some;
	assert_int_equal(lk_lock_release(a), -EIO);
	assert_true(lk_lock_errmsg(a)[0] != 0);
	lk__posix_sys.fcntl_lock = real.fcntl_lock;
	/* closing the handle releases for certain */
	lk_lock_close(a);
	assert_int_equal(lk_lock_acquire(b, 0), 0);
	lk_lock_close(b);
	lk_store_close(st);
}

static void test_fcntl_eio_status(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;
	int fds;

	assert_int_equal(lk_lock_open(st, "t", &kopts, &lk), 0);
	lk_lock_close(lk);
	fds = count_fds();
	fcntl_fail_cmd = F_OFD_GETLK;
	lk__posix_sys.fcntl_lock = fcntl_eio_some;
	assert_int_equal(lk_lock_status(st, "t", &s), -EIO);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_int_equal(count_fds(), fds);
	lk__posix_sys.fcntl_lock = real.fcntl_lock;
	assert_int_equal(lk_lock_status(st, "t", &s), 0);
	assert_int_equal(s.exists, 1);
	lk_store_close(st);
}

/* lk_lock_status() retries a held lock whose record reads as damaged. */
static void test_status_retries_torn_record(void **state)
{
	struct lk_store *st = open_store();
	struct lk_status s = { .size = sizeof(s) };
	struct lk_lock *lk = NULL;

	assert_int_equal(lk_lock_open(st, "torn", &kopts, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	lk__posix_sys.pread = pread_flaky;
	pread_torn = 5;
	assert_int_equal(lk_lock_status(st, "torn", &s), 0);
	assert_true(pread_calls > 5);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.token, lk_lock_token(lk));

	/* damaged for good: an error, never a made-up answer */
	pread_calls = 0;
	pread_torn = 1000000;
	assert_int_equal(lk_lock_status(st, "torn", &s), -EBADMSG);
	lk__posix_sys.pread = real.pread;
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_fcntl_eio_create(void **state)
{
	struct lk_store *st = open_store();
	struct lk_lock *lk = SENTINEL;
	int fds = count_fds();

	lk__posix_sys.fcntl_lock = fcntl_eio;
	assert_int_equal(lk_lock_open(st, "c", &kopts, &lk), -EIO);
	assert_ptr_equal(lk, SENTINEL);
	assert_true(lk_store_errmsg(st)[0] != 0);
	assert_int_equal(count_fds(), fds);
	assert_true(file_size(in_store("c")) <= 0);
	lk__posix_sys.fcntl_lock = real.fcntl_lock;
	check_reinitialised(st, "c");
	lk_store_close(st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_create_enospc),
		T(test_create_short_write),
		T(test_create_mmap_fails),
		T(test_acquire_sync_eio),
		T(test_failed_sync_is_not_trusted),
		T(test_fcntl_eio_acquire),
		T(test_fcntl_eio_while_waiting),
		T(test_fcntl_eio_release),
		T(test_fcntl_eio_status),
		T(test_fcntl_eio_create),
		T(test_status_retries_torn_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
