// SPDX-License-Identifier: MIT
/*
 * Holder and waiter processes for the tests that stall the NFS server or a
 * single client's connection to it (see stall.h).
 *
 * The holder watches its own lease from its main thread while the engine
 * runs in the background: what a program protected by the lease would see.
 * Whenever lk_lock_check() says "held" at a moment past the newest deadline
 * it has seen, or after on_lost has run, that is counted: a lease must never
 * look valid again once it is gone, whatever the server does later. The
 * deadline it publishes is now plus the whole milliseconds left, which is
 * never later than the real one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stall.h"

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	struct stall_shared *sh = userdata;

	(void)lk;
	if (atomic_fetch_add(&sh->lost_calls, 1) == 0) {
		atomic_store(&sh->lost_reason, reason);
		atomic_store(&sh->lost_at, nh_boot_ns());
	}
}

void stall_holder(int rx, int tx, void *arg)
{
	const struct stall_args *a = arg;
	struct stall_shared *sh = a->sh;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = nh_store_open(a->url);
	struct lk_lock *lk;
	struct pollfd p = {.fd = rx, .events = POLLIN};
	int r;

	o.on_lost = on_lost;
	o.userdata = sh;
	lk = nh_lease_open(st, "stall", a->ttl_ms, &o);
	r = lk_lock_acquire(lk, NH_SAFETY_MS);
	if (r < 0)
		nh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	nh_send(tx, lk_lock_token(lk));
	nh_send(tx, (uint64_t)nh_engine_code(lk_store_engine(st)));

	while (poll(&p, 1, 1) == 0) {
		int64_t now = nh_boot_ns(), dl = atomic_load(&sh->deadline);
		uint64_t left = lk_lock_remaining_ms(lk);
		int lost = atomic_load(&sh->lost_at) != 0;

		if (left && now + (int64_t)left * 1000000 > dl)
			atomic_store(&sh->deadline, now + (int64_t)left * 1000000);
		if (lk_lock_check(lk) == 0) {
			if (lost)
				atomic_fetch_add(&sh->valid_after_lost, 1);
			/* the published deadline may be up to a millisecond early */
			if (dl && now > dl + 2000000)
				atomic_fetch_add(&sh->valid_after_deadline, 1);
		}
	}
	nh_expect(rx, NH_SAFETY_MS);
	nh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	nh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
	nh_send(tx, lk_lock_token(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

void stall_waiter(int rx, int tx, void *arg)
{
	const struct stall_args *a = arg;
	struct stall_shared *sh = a->sh;
	struct lk_store *st = nh_store_open(a->url);
	struct lk_lock *lk;
	int64_t t_acq, end;
	int r, failed = 0;
	uint64_t ms;

	if (a->foreign)
		nh_make_foreign(st);
	lk = nh_lease_open(st, "stall", a->ttl_ms, NULL);
	nh_send(tx, 1);
	for (;;) {
		r = lk_lock_acquire(lk, 2 * NH_SAFETY_MS);
		if (r != -EIO)
			break;
		/* the documented outcome of a call the stopped server never
		 * answered: try again, as a caller would */
		if (atomic_fetch_add(&sh->errors, 1) == 0)
			atomic_store(&sh->first_error, nh_boot_ns());
		atomic_store(&sh->last_error, nh_boot_ns());
		nh_sleep_ms(5);
	}
	t_acq = nh_boot_ns();
	if (r < 0)
		nh_child_fail(__FILE__, __LINE__, "acquire: %s: %s", lk_strerror(r),
		              lk_lock_errmsg(lk));
	nh_send(tx, (uint64_t)t_acq);
	nh_send(tx, lk_lock_token(lk));
	nh_send(tx, (uint64_t)nh_engine_code(lk_store_engine(st)));

	ms = nh_expect(rx, 4 * NH_SAFETY_MS);
	end = nh_boot_ns() + (int64_t)ms * 1000000;
	while (nh_boot_ns() < end) {
		if (lk_lock_check(lk) != 0)
			failed++;
		nh_sleep_ms(2);
	}
	nh_send(tx, (uint64_t)failed);
	nh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	nh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}
