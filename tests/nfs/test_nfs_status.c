// SPDX-License-Identifier: MIT
/*
 * lk_lock_status() on a busy lease over nfs://.
 *
 * Status makes one observation: it lists the lock directory and reads the
 * newest generation. While other clients claim, release and clean up in
 * that directory, the server has to answer listings of a directory whose
 * entries come and go (ganesha then sometimes fails a READDIRPLUS with
 * NFS3ERR_NOENT or NFS3ERR_JUKEBOX). None of that may reach the caller: the
 * lock exists, so every call must succeed, and the newest generation one
 * observer reports never goes back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "nharness.h"

#define NAME    "busy"
#define TTL_MS  1000
#define CLIENTS 3
#define LOOKS   6000

static char url[PATH_MAX + 512];
static atomic_int *stop;

/* Take and give back the lease until told to stop; answer how many times. */
static void churner(int rx, int tx, void *arg)
{
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk = nh_lease_open(st, NAME, TTL_MS, NULL);
	uint64_t n = 0;

	(void)arg;
	nh_expect(rx, NH_SAFETY_MS); /* the lock exists */
	while (!atomic_load(stop)) {
		int r = lk_lock_acquire(lk, 2 * TTL_MS);

		if (r == -ETIMEDOUT)
			continue;
		if (r < 0)
			nh_child_fail(__FILE__, __LINE__, "acquire: %s: %s", lk_strerror(r),
			              lk_lock_errmsg(lk));
		CHILD_EQ(lk_lock_release(lk), 0);
		n++;
	}
	nh_send(tx, n);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_status_of_busy_lock(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], sub[PATH_MAX + 16], first_err[256] = "";
	struct nh_child c[CLIENTS];
	struct lk_store *st;
	struct lk_lock *lk;
	uint64_t last = 0, acquired = 0;
	int errors = 0, backwards = 0, held = 0, released = 0, looks = 0;
	int64_t t0;

	(void)state;
	nh_scratch("status", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	nh_url(url, sizeof(url), sub, NULL);
	stop = nh_shared(sizeof(*stop));
	atomic_store(stop, 0);

	/* the churners are forked before this process starts threads (a
	 * thread sanitizer cannot follow a fork from a threaded process) and
	 * start once the lock exists: it does before anyone looks */
	for (int i = 0; i < CLIENTS; i++)
		nh_spawn(&c[i], churner, NULL);
	st = nh_store_open(url);
	lk = nh_lease_open(st, NAME, TTL_MS, NULL);
	assert_int_equal(lk_lock_acquire(lk, NH_SAFETY_MS), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	for (int i = 0; i < CLIENTS; i++)
		nh_send(c[i].tx, 1);
	t0 = nh_boot_ns();
	/* for long enough that the clients take the lease many times, however
	 * cheap a look is */
	for (; looks < LOOKS || nh_boot_ns() - t0 < 3000000000LL; looks++) {
		struct lk_status s = {.size = sizeof(s)};
		int r = lk_lock_status(st, NAME, &s);

		if (r < 0) {
			if (!errors++)
				snprintf(first_err, sizeof(first_err), "%s: %s", lk_strerror(r),
				         lk_store_errmsg(st));
			continue;
		}
		if (s.token < last)
			backwards++;
		last = s.token > last ? s.token : last;
		held += s.held;
		released += s.released;
	}
	atomic_store(stop, 1);
	for (int i = 0; i < CLIENTS; i++) {
		acquired += nh_expect(c[i].rx, 2 * NH_SAFETY_MS);
		assert_int_equal(nh_reap(&c[i], NH_SAFETY_MS), 0);
	}
	lk_store_close(st);
	print_message("%d looks in %lld ms while %d clients took the lease %llu times: %d held, "
	              "%d released, %d failed%s%s\n",
	              looks, (long long)((nh_boot_ns() - t0) / 1000000), CLIENTS,
	              (unsigned long long)acquired, held, released, errors,
	              errors ? ", first: " : "", first_err);
	/* it was busy: the looks saw it change hands */
	assert_true(acquired > 100);
	assert_true(held > 0 && released > 0);
	if (errors)
		fail_msg("%d of %d status calls on an existing lock failed (first: %s)", errors,
		         looks, first_err);
	assert_int_equal(backwards, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_status_of_busy_lock, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_status", tests, NULL, NULL);
}
