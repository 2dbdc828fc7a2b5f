// SPDX-License-Identifier: MIT
/*
 * A holder SIGKILLed while another client waits, both over nfs://.
 *
 *  - Same host: the waiter's record check finds the holder's boot id and pid
 *    namespace its own and the process dead, so it takes over at once, far
 *    sooner than the TTL.
 *  - Foreign holder: its store's boot id is replaced, so that its record
 *    reads as written on another host and only the TTL can free it. The
 *    waiter must then take over no sooner than the TTL after the holder's
 *    last renewal (it first saw that renewal no earlier than the renewal was
 *    sent, and waits T*(1+rho) from there), and no later than T*(1+rho) plus
 *    one poll after the kill, with slack for a busy machine.
 *
 * The holder's last renewal is known from the holder itself: it keeps
 * publishing now + lk_lock_remaining_ms() in shared memory, which the kill
 * cannot take back. The deadline of a renewal is its send time plus
 * T*(1-rho) - margin, so the newest deadline gives the send time of the
 * newest renewal that counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "nharness.h"

#define NAME "fo"

static char local[PATH_MAX], rel[PATH_MAX], url[PATH_MAX + 512], lockdir[PATH_MAX + 16];

struct shared {
	_Atomic int64_t deadline; /* newest holder deadline seen (lower bound), ns */
};

static struct shared *sh;

struct kill_args {
	uint64_t ttl_ms;
	int foreign;
};

static void holder_child(int rx, int tx, void *arg)
{
	const struct kill_args *a = arg;
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk;
	int r;

	(void)rx;
	if (a->foreign)
		nh_make_foreign(st);
	lk = nh_lease_open(st, NAME, a->ttl_ms, NULL);
	r = lk_lock_acquire(lk, NH_SAFETY_MS);
	if (r < 0)
		nh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	nh_send(tx, lk_lock_token(lk));
	nh_send(tx, (uint64_t)nh_engine_code(lk_store_engine(st)));
	for (;;) { /* until killed */
		int64_t now = nh_boot_ns();
		uint64_t left = lk_lock_remaining_ms(lk);
		int64_t dl = now + (int64_t)left * 1000000;

		/* now + whole ms left never exceeds the real deadline */
		if (left && dl > atomic_load(&sh->deadline))
			atomic_store(&sh->deadline, dl);
		nh_sleep_ms(1);
	}
}

static void waiter_child(int rx, int tx, void *arg)
{
	const struct kill_args *a = arg;
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk = nh_lease_open(st, NAME, a->ttl_ms, NULL);
	int64_t t_acq;
	int r;

	nh_send(tx, 1);
	r = lk_lock_acquire(lk, NH_SAFETY_MS);
	t_acq = nh_boot_ns();
	if (r < 0)
		nh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	nh_send(tx, (uint64_t)t_acq);
	nh_send(tx, lk_lock_token(lk));
	nh_expect(rx, NH_SAFETY_MS);
	nh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	nh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

struct failover {
	uint64_t tok_h, tok_w;
	int64_t t_kill, t_acq, last_deadline;
};

static void run_kill(const struct kill_args *a, struct failover *f)
{
	struct nh_child h, w;
	struct lk__lrec rec;
	uint8_t boot_id[16];
	char sub[PATH_MAX + 16];

	nh_scratch("fo", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	nh_url(url, sizeof(url), sub, NULL);
	snprintf(lockdir, sizeof(lockdir), "%s/store/%s", local, NAME);
	sh = nh_shared(sizeof(*sh));
	memset(sh, 0, sizeof(*sh));

	nh_spawn(&h, holder_child, (void *)a);
	f->tok_h = nh_expect(h.rx, NH_SAFETY_MS);
	assert_int_equal(nh_expect(h.rx, NH_SAFETY_MS), nh_engine_code(nh_engine_expected()));

	/* the variant is what it claims to be: the record names another boot, or ours */
	assert_int_equal(nh_read_gen(lockdir, f->tok_h, &rec), 0);
	assert_int_equal(rec.state, LK_LSTATE_HELD);
	assert_int_equal(lk__read_boot_id(boot_id), 0);
	assert_int_equal(!!memcmp(rec.boot_id, boot_id, 16), a->foreign);
	assert_int_equal(rec.pid, h.pid);

	nh_spawn(&w, waiter_child, (void *)a);
	nh_expect(w.rx, NH_SAFETY_MS);
	/* let the waiter watch the holder renew for a while */
	nh_sleep_ms((int64_t)a->ttl_ms * 3 / 4);

	f->t_kill = nh_boot_ns();
	assert_int_equal(kill(h.pid, SIGKILL), 0);
	f->t_acq = (int64_t)nh_expect(w.rx, NH_SAFETY_MS);
	f->tok_w = nh_expect(w.rx, NH_SAFETY_MS);
	assert_int_equal(nh_reap(&h, NH_SAFETY_MS), 128 + SIGKILL);
	f->last_deadline = atomic_load(&sh->deadline);
	assert_true(f->last_deadline > 0);

	nh_send(w.tx, 1);
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0); /* still held */
	assert_int_equal((int64_t)nh_expect(w.rx, NH_SAFETY_MS), 0); /* released */
	assert_int_equal(nh_reap(&w, NH_SAFETY_MS), 0);
	if (f->tok_w <= f->tok_h)
		fail_msg("waiter's token %llu is not above the dead holder's %llu",
		         (unsigned long long)f->tok_w, (unsigned long long)f->tok_h);
	print_message(
		"%s holder killed: waiter held %lld ms after the kill, %lld ms after the "
		"holder's last counted renewal was sent; token %llu -> %llu\n",
		a->foreign ? "foreign" : "same-host", (long long)((f->t_acq - f->t_kill) / 1000000),
		(long long)((f->t_acq - (f->last_deadline - nh_hold_ns(a->ttl_ms))) / 1000000),
		(unsigned long long)f->tok_h, (unsigned long long)f->tok_w);
}

static void test_kill_same_host(void **state)
{
	struct kill_args a = {.ttl_ms = 4000, .foreign = 0};
	struct failover f;

	(void)state;
	run_kill(&a, &f);
	/*
	 * By the TTL the waiter could take over no sooner than T after the last
	 * renewal, which was at most a renewal interval (T/4) before the kill:
	 * 3 s here. The fast path is far quicker than that.
	 */
	if (f.t_acq - f.t_kill >= (int64_t)a.ttl_ms * 1000000 / 2)
		fail_msg("same-host failover took %lld ms: the dead holder was not noticed",
		         (long long)((f.t_acq - f.t_kill) / 1000000));
}

static void test_kill_foreign(void **state)
{
	struct kill_args a = {.ttl_ms = 1000, .foreign = 1};
	int64_t ttl_ns = (int64_t)a.ttl_ms * 1000000, poll_ns = ttl_ns / 10;
	int64_t slack = 1500 * 1000000LL;
	int64_t last_sent;
	struct failover f;

	(void)state;
	run_kill(&a, &f);
	last_sent = f.last_deadline - nh_hold_ns(a.ttl_ms);
	if (f.t_acq - last_sent < ttl_ns)
		fail_msg("takeover %lld ms after the dead holder's last renewal was sent: less "
		         "than the TTL (%llu ms)",
		         (long long)((f.t_acq - last_sent) / 1000000),
		         (unsigned long long)a.ttl_ms);
	if (f.t_acq - f.t_kill > nh_ttl_up_ns(a.ttl_ms) + poll_ns + slack)
		fail_msg("takeover %lld ms after the kill: beyond T*(1+rho) + one poll + %lld ms",
		         (long long)((f.t_acq - f.t_kill) / 1000000), (long long)(slack / 1000000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_kill_same_host, nh_teardown),
		cmocka_unit_test_teardown(test_kill_foreign, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_failover", tests, NULL, NULL);
}
