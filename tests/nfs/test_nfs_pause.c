// SPDX-License-Identifier: MIT
/*
 * The NFS server stops answering (SIGSTOP) for longer than the TTL while a
 * lease is held and another client waits for it, then goes on (SIGCONT).
 *
 * While it is stopped:
 *  - the holder's on_lost fires with -ETIMEDOUT at its deadline, within the
 *    TTL of sending its last renewal that counted (renewals hang in the
 *    server, but the engine's timer must not hang with them), and
 *    lk_lock_check() fails from then on;
 *  - the waiter, which looks like another host so that no same-host
 *    shortcut applies, takes nothing: no newer generation appears in the
 *    export (read on the server's disk, which needs no server) and the
 *    waiter reports no acquisition.
 * After the server goes on:
 *  - the renewal that was stuck in the server when it stopped is applied
 *    late: the old generation's counter moves on the disk. It must not
 *    revive the old lease: the old holder's check stays -ENOLCK and its
 *    release returns -ENOLCK;
 *  - the waiter acquires only after the resume, and a full T*(1+rho) after
 *    it, since whatever it had seen was forgotten (its acquire failed while
 *    the server was stopped) or changed (the late renewal): a higher token;
 *  - the new holder keeps its lease for more than two TTLs (its renewals
 *    probe for the generation after its own; the late write went to the old
 *    one), and status shows it as the holder.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nharness.h"
#include "stall.h"

#define TTL_MS   2000
#define PAUSE_MS 4500 /* more than T*(1+rho) plus the 2 s a call waits */

static long long ms(int64_t ns)
{
	return (long long)(ns / 1000000);
}

static void test_server_paused_past_ttl(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], sub[PATH_MAX + 16], url[PATH_MAX + 512];
	char lockdir[PATH_MAX + 32];
	struct stall_shared *sh = nh_shared(sizeof(*sh));
	struct stall_args ha, wa;
	struct nh_child h, w;
	struct lk__lrec rec_paused, rec, next;
	struct lk_store *st;
	struct lk_status s = {.size = sizeof(s)};
	uint64_t tok_h, tok_w, v;
	int64_t t_pause, t_resume, t_landed = 0, t_acq, lost_at, dl, last_sent, end;
	int want = nh_engine_code(nh_engine_expected());

	(void)state;
	memset(sh, 0, sizeof(*sh));
	nh_scratch("pause", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	nh_url(url, sizeof(url), sub, NULL);
	snprintf(lockdir, sizeof(lockdir), "%s/store/stall", local);
	ha = (struct stall_args){.url = url, .ttl_ms = TTL_MS, .foreign = 0, .sh = sh};
	wa = (struct stall_args){.url = url, .ttl_ms = TTL_MS, .foreign = 1, .sh = sh};

	nh_spawn(&h, stall_holder, &ha);
	tok_h = nh_expect(h.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), want);
	nh_spawn(&w, stall_waiter, &wa);
	nh_expect(w.rx, NH_SAFETY_MS);
	nh_sleep_ms(700); /* the waiter watches the holder renew */

	t_pause = nh_boot_ns();
	nh_server_pause();
	assert_int_equal(nh_read_gen(lockdir, tok_h, &rec_paused), 0);
	assert_int_equal(rec_paused.state, LK_LSTATE_HELD);

	/* the holder steps down while the server is still stopped */
	end = nh_boot_ns() + (int64_t)NH_SAFETY_MS * 1000000;
	while (!atomic_load(&sh->lost_at) && nh_boot_ns() < end)
		nh_sleep_ms(5);
	lost_at = atomic_load(&sh->lost_at);
	if (!lost_at)
		fail_msg("on_lost did not fire within %d ms of stopping the server", NH_SAFETY_MS);

	/* nobody takes over while the server cannot answer */
	end = t_pause + (int64_t)PAUSE_MS * 1000000;
	if (nh_recv(w.rx, &v, (int)((end - nh_boot_ns()) / 1000000) + 1) != -ETIMEDOUT)
		fail_msg("the waiter acquired (or died) while the server was stopped");
	assert_int_equal(nh_read_gen(lockdir, tok_h + 1, &next), -ENOENT);
	assert_int_equal(nh_read_gen(lockdir, tok_h, &rec), 0);
	assert_int_equal(rec.counter, rec_paused.counter);

	t_resume = nh_boot_ns();
	nh_server_resume();

	/* the renewal the holder sent into the stopped server lands now */
	end = nh_boot_ns() + 5000 * 1000000LL;
	while (nh_boot_ns() < end) {
		if (nh_read_gen(lockdir, tok_h, &rec) == 0 && rec.counter != rec_paused.counter) {
			t_landed = nh_boot_ns();
			break;
		}
		nh_sleep_ms(2);
	}

	t_acq = (int64_t)nh_expect(w.rx, 2 * NH_SAFETY_MS);
	tok_w = nh_expect(w.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(w.rx, NH_SAFETY_MS), want);
	nh_send(w.tx, 5 * TTL_MS / 2); /* the new holder watches its lease */

	dl = atomic_load(&sh->deadline);
	last_sent = dl - nh_hold_ns(TTL_MS);
	print_message("last renewal %lld ms before the pause, on_lost %lld ms after it "
	              "(deadline %+lld ms); waiter: %d failed acquires while stopped, held "
	              "%lld ms after the resume; late renewal landed %lld ms after the resume "
	              "(counter %llu -> %llu); token %llu -> %llu\n",
	              ms(t_pause - last_sent), ms(lost_at - last_sent), ms(lost_at - dl),
	              atomic_load(&sh->errors), ms(t_acq - t_resume),
	              t_landed ? ms(t_landed - t_resume) : -1LL,
	              (unsigned long long)rec_paused.counter, (unsigned long long)rec.counter,
	              (unsigned long long)tok_h, (unsigned long long)tok_w);

	/* the holder: lost at its deadline, within T of its last counted renewal */
	assert_int_equal(atomic_load(&sh->lost_calls), 1);
	assert_int_equal(atomic_load(&sh->lost_reason), -ETIMEDOUT);
	if (lost_at < dl)
		fail_msg("on_lost fired %lld ms before the holder's deadline", ms(dl - lost_at));
	if (lost_at - last_sent > (int64_t)TTL_MS * 1000000)
		fail_msg("on_lost fired %lld ms after the last counted renewal was sent: later "
		         "than the TTL (%d ms)",
		         ms(lost_at - last_sent), TTL_MS);
	assert_true(lost_at < t_resume);

	/* the waiter: only after the resume, with a higher token */
	if (t_acq < t_resume)
		fail_msg("the waiter held %lld ms before the server was resumed",
		         ms(t_resume - t_acq));
	if (atomic_load(&sh->errors) && t_acq - t_resume < nh_ttl_up_ns(TTL_MS))
		fail_msg("the waiter held %lld ms after the resume, less than T*(1+rho) after "
		         "anything it could have seen",
		         ms(t_acq - t_resume));
	if (tok_w <= tok_h)
		fail_msg("the waiter's token %llu is not above %llu", (unsigned long long)tok_w,
		         (unsigned long long)tok_h);

	/* the late renewal did land, on the old generation only */
	if (!t_landed)
		fail_msg("no renewal stuck in the stopped server was applied after the resume: "
		         "the scenario this test is about did not happen");
	assert_int_equal(rec.gen, tok_h);
	assert_int_equal(rec.state, LK_LSTATE_HELD);

	/* ... and revived nothing: the old holder stays lost, its release too */
	nh_send(h.tx, 1);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), -ENOLCK);
	assert_int_equal((int64_t)nh_expect(h.rx, NH_SAFETY_MS), -ENOLCK);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&h, NH_SAFETY_MS), 0);
	assert_int_equal(atomic_load(&sh->valid_after_lost), 0);
	assert_int_equal(atomic_load(&sh->valid_after_deadline), 0);

	/* the new holder is the one everybody sees, and it keeps its lease */
	st = nh_store_open(url);
	assert_int_equal(lk_lock_status(st, "stall", &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok_w);
	assert_int_equal(s.holder.pid, w.pid);
	lk_store_close(st);
	assert_int_equal(nh_expect(w.rx, 2 * NH_SAFETY_MS), 0); /* checks that failed */
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0);
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&w, NH_SAFETY_MS), 0);
	assert_int_equal(nh_read_gen(lockdir, tok_w + 1, &next), -ENOENT);
	assert_int_equal(nh_read_gen(lockdir, tok_w, &rec), 0);
	assert_int_equal(rec.state, LK_LSTATE_RELEASED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_server_paused_past_ttl, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_pause", tests, NULL, NULL);
}
