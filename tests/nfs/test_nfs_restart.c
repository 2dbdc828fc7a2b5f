// SPDX-License-Identifier: MIT
/*
 * The NFS server is killed (SIGKILL) and started again on the same export
 * and ports while a lease is held, with a TTL long enough to ride it out.
 *
 * The records live on the server's disk and its file handles outlive the
 * process (ganesha's VFS backend hands out the kernel's handles), so once
 * the client has reconnected the holder's renewals go on: lk_lock_check()
 * never fails, before, during or for two TTLs after the restart, on_lost
 * never fires, renewals are counted again after the restart and reach the
 * disk, and the release at the end works. A client that opened its store
 * before the restart then sees the lease released and takes it at once,
 * with the next token.
 *
 * If the restart took longer than the holder's deadline allows (the last
 * renewal before it plus T*(1-rho) - margin), the lease would be lost, and
 * rightly; the test says so instead of blaming the library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nharness.h"

#define NAME   "rs"
#define TTL_MS 5000

static char url[PATH_MAX + 512];

struct shared {
	_Atomic int64_t deadline;    /* newest deadline seen */
	_Atomic int64_t advanced_at; /* when the deadline last moved on */
	atomic_int advances;         /* renewals counted (deadline moved on) */
	atomic_int check_failures;
	_Atomic int64_t first_failure;
	atomic_int lost_calls;
};

static struct shared *sh;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	(void)reason;
	(void)userdata;
	atomic_fetch_add(&sh->lost_calls, 1);
}

static void holder_child(int rx, int tx, void *arg)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk;
	struct pollfd p = {.fd = rx, .events = POLLIN};
	int r;

	(void)arg;
	o.on_lost = on_lost;
	lk = nh_lease_open(st, NAME, TTL_MS, &o);
	r = lk_lock_acquire(lk, NH_SAFETY_MS);
	if (r < 0)
		nh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	nh_send(tx, lk_lock_token(lk));
	nh_send(tx, (uint64_t)nh_engine_code(lk_store_engine(st)));
	while (poll(&p, 1, 1) == 0) {
		int64_t now = nh_boot_ns();
		uint64_t left = lk_lock_remaining_ms(lk);
		int64_t dl = now + (int64_t)left * 1000000;

		/* whole ms: a deadline read again can look up to 1 ms later */
		if (left && dl > atomic_load(&sh->deadline) + 2000000) {
			atomic_store(&sh->deadline, dl);
			atomic_store(&sh->advanced_at, now);
			atomic_fetch_add(&sh->advances, 1);
		}
		if (lk_lock_check(lk) != 0 && atomic_fetch_add(&sh->check_failures, 1) == 0)
			atomic_store(&sh->first_failure, now);
	}
	nh_expect(rx, NH_SAFETY_MS);
	nh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	nh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_server_restart_during_lease(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], sub[PATH_MAX + 16], lockdir[PATH_MAX + 32];
	struct lk__lrec rec_before, rec;
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st;
	struct lk_lock *lk;
	struct nh_child h;
	uint64_t tok;
	int64_t t_restart, restart_ms, dl_before, until;
	int adv_before, adv_after;

	(void)state;
	nh_scratch("restart", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	snprintf(lockdir, sizeof(lockdir), "%s/store/%s", local, NAME);
	nh_url(url, sizeof(url), sub, NULL);
	sh = nh_shared(sizeof(*sh));
	memset(sh, 0, sizeof(*sh));

	nh_spawn(&h, holder_child, NULL);
	tok = nh_expect(h.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), nh_engine_code(nh_engine_expected()));
	/* an observer whose connection will have to survive the restart too */
	st = nh_store_open(url);
	nh_sleep_ms(TTL_MS / 4 + 300); /* at least one renewal before */

	adv_before = atomic_load(&sh->advances);
	dl_before = atomic_load(&sh->deadline);
	assert_int_equal(nh_read_gen(lockdir, tok, &rec_before), 0);
	t_restart = nh_boot_ns();
	restart_ms = nh_server_restart();
	print_message("server killed and started again in %lld ms; the holder's deadline was "
	              "%lld ms away when it began\n",
	              (long long)restart_ms, (long long)((dl_before - t_restart) / 1000000));
	if (t_restart + restart_ms * 1000000 > dl_before)
		fail_msg("the restart took %lld ms, longer than the %lld ms left to the holder's "
		         "deadline: losing the lease would be right, so this run proves nothing",
		         (long long)restart_ms, (long long)((dl_before - t_restart) / 1000000));

	/* two TTLs of renewals against the new server process */
	until = t_restart + 2LL * TTL_MS * 1000000;
	while (nh_boot_ns() < until && !atomic_load(&sh->check_failures))
		nh_sleep_ms(10);
	adv_after = atomic_load(&sh->advances) - adv_before;
	if (atomic_load(&sh->check_failures))
		fail_msg("lk_lock_check() failed %lld ms after the restart began (the restart "
		         "took %lld ms)",
		         (long long)((atomic_load(&sh->first_failure) - t_restart) / 1000000),
		         (long long)restart_ms);
	assert_int_equal(atomic_load(&sh->lost_calls), 0);
	/* renewals count again: at least one per renew interval, less a few */
	if (adv_after < 2 * TTL_MS / (TTL_MS / 4) - 3)
		fail_msg("only %d renewals counted in the two TTLs after the restart", adv_after);
	assert_int_equal(nh_read_gen(lockdir, tok, &rec), 0);
	assert_int_equal(rec.state, LK_LSTATE_HELD);
	assert_true(rec.counter > rec_before.counter);

	/* the observer's old store works against the new server process */
	assert_int_equal(lk_lock_status(st, NAME, &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok);
	assert_int_equal(s.holder.pid, h.pid);

	nh_send(h.tx, 1);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), 0);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&h, NH_SAFETY_MS), 0);
	assert_int_equal(atomic_load(&sh->check_failures), 0);
	assert_int_equal(atomic_load(&sh->lost_calls), 0);

	/* released: free at once for the observer, with the next token */
	lk = nh_lease_open(st, NAME, TTL_MS, NULL);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_token(lk), tok + 1);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	print_message("%d renewals counted in the two TTLs after the restart; token %llu -> "
	              "%llu\n",
	              adv_after, (unsigned long long)tok, (unsigned long long)tok + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_server_restart_during_lease, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_restart", tests, NULL, NULL);
}
