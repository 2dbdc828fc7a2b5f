// SPDX-License-Identifier: MIT
/*
 * Lease hand-over between processes: what a waiter sees when the holder
 * dies, freezes or lets go.
 *
 *  - A SIGKILLed holder on this host is noticed at once (same boot id and
 *    pid namespace, process gone): the waiter holds long before the TTL.
 *  - Without that fast path (the holder's record made to look as if it came
 *    from another host) the waiter must wait out T*(1+rho) after it last saw
 *    the record change, and must not take much longer than that plus a poll.
 *  - A holder stopped past its TTL loses the lease to a waiter with a higher
 *    token; when it is continued it learns so before anything else: the very
 *    first lk_lock_check() fails, on_lost has fired with -ETIMEDOUT, and its
 *    release fails with -ENOLCK without disturbing the new holder.
 *  - A release wakes a waiter at once on a local store (inotify), with a TTL
 *    so long that expiry cannot be what let it in.
 *
 * Every bound is measured on CLOCK_BOOTTIME, the clock the library judges
 * by, across processes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "lharness.h"
#include "lrecord.h"

#define NAME    "fo"
#define RHO_PPM 10000 /* the default: 1% */

static char store[PATH_MAX];

/* The record of generation gen of lock NAME, read straight from the store. */
static int read_gen(uint64_t gen, struct lk__lrec *ret)
{
	char gname[LK_GEN_NAME_LEN + 1], path[PATH_MAX + 64];
	uint8_t buf[LK_LREC_SIZE + 1];
	int fd;
	ssize_t n;

	lk__gen_name(gname, gen);
	snprintf(path, sizeof(path), "%s/%s/%s", store, NAME, gname);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
		return -errno;
	return lk__lrec_decode(buf, (size_t)n, ret);
}

/* ------------------------------------------------------------------------
 * Holder killed
 */

struct kill_args {
	uint64_t ttl_ms;
	int foreign; /* make the holder's record look as if from another host */
};

static void holder_child(int rx, int tx, void *arg)
{
	const struct kill_args *a = arg;
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk;
	uint64_t v;
	int r;

	if (a->foreign) {
		/* another boot id: the record is no longer "this host's" */
		CHILD_EQ(getrandom(st->boot_id, sizeof(st->boot_id), 0),
		         (ssize_t)sizeof(st->boot_id));
	}
	lk = lh_lease_open(st, NAME, a->ttl_ms, NULL);
	r = lk_lock_acquire(lk, LH_SAFETY_MS);
	if (r < 0)
		lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));
	lh_recv(rx, &v, 60000); /* killed before this returns */
	_exit(3);
}

/* Wait for the lease; report when (CLOCK_BOOTTIME and CLOCK_REALTIME) and
 * with which token. */
static void waiter_child(int rx, int tx, void *arg)
{
	const struct kill_args *a = arg;
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, a->ttl_ms, NULL);
	int64_t t_boot, t_real;
	uint64_t v;
	int r;

	lh_send(tx, 1);
	r = lk_lock_acquire(lk, LH_SAFETY_MS);
	t_boot = lh_boot_ns();
	t_real = lh_real_ns();
	if (r < 0)
		lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	lh_send(tx, (uint64_t)t_boot);
	lh_send(tx, (uint64_t)t_real);
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));
	lh_recv(rx, &v, LH_SAFETY_MS);
	CHILD_EQ(lk_lock_check(lk), 0);
	CHILD_EQ(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

struct failover {
	uint64_t tok_holder, tok_waiter;
	int64_t t_kill, t_acq, t_acq_real;
	int64_t last_write_real; /* wall time of the dead holder's last renewal */
};

static void run_kill(const struct kill_args *a, struct failover *ret)
{
	struct lh_child h, w;
	struct lk__lrec rec;
	int want = lh_engine_code(lh_engine_expected());

	lh_store_dir(store, sizeof(store), "fo");
	lh_spawn(&h, holder_child, (void *)a);
	ret->tok_holder = lh_expect(h.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(h.rx, LH_SAFETY_MS), want);

	lh_spawn(&w, waiter_child, (void *)a);
	lh_expect(w.rx, LH_SAFETY_MS);
	/* let the waiter see the live holder renew a few times */
	lh_sleep_ms((int64_t)a->ttl_ms / 2);

	ret->t_kill = lh_boot_ns();
	assert_int_equal(kill(h.pid, SIGKILL), 0);
	ret->t_acq = (int64_t)lh_expect(w.rx, LH_SAFETY_MS);
	ret->t_acq_real = (int64_t)lh_expect(w.rx, LH_SAFETY_MS);
	ret->tok_waiter = lh_expect(w.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(w.rx, LH_SAFETY_MS), want);
	assert_int_equal(lh_reap_now(&h), 128 + SIGKILL);

	/* the dead holder's generation is still there (clean-up keeps N-1) */
	assert_int_equal(read_gen(ret->tok_holder, &rec), 0);
	assert_int_equal(rec.state, LK_LSTATE_HELD);
	ret->last_write_real = rec.wall_ns;

	lh_send(w.tx, 1);
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	assert_true(ret->tok_waiter > ret->tok_holder);
	print_message("holder killed: waiter held after %lld ms (%lld ms after the last "
	              "renewal), token %llu -> %llu\n",
	              (long long)((ret->t_acq - ret->t_kill) / 1000000),
	              (long long)((ret->t_acq_real - ret->last_write_real) / 1000000),
	              (unsigned long long)ret->tok_holder, (unsigned long long)ret->tok_waiter);
}

static void test_kill_same_host(void **state)
{
	struct kill_args a = {.ttl_ms = 2000, .foreign = 0};
	struct failover f;

	(void)state;
	run_kill(&a, &f);
	/*
	 * The fast path: far sooner than the TTL, counted from the kill and
	 * from the dead holder's last renewal (without the fast path the
	 * waiter would have to see that renewal unchanged for T*(1+rho)).
	 */
	if (f.t_acq - f.t_kill >= (int64_t)a.ttl_ms * 1000000 / 2 ||
	    f.t_acq_real - f.last_write_real >= (int64_t)a.ttl_ms * 1000000)
		fail_msg("same-host failover took %lld ms after the kill, %lld ms after the last "
		         "renewal: not much less than the TTL (%llu ms)",
		         (long long)((f.t_acq - f.t_kill) / 1000000),
		         (long long)((f.t_acq_real - f.last_write_real) / 1000000),
		         (unsigned long long)a.ttl_ms);
}

static void test_kill_foreign(void **state)
{
	struct kill_args a = {.ttl_ms = 1000, .foreign = 1};
	int64_t ttl_ns = (int64_t)a.ttl_ms * 1000000;
	int64_t ttl_up = ttl_ns + ttl_ns / 1000000 * RHO_PPM;
	int64_t poll_ns = ttl_ns / 10, slack = 1000 * 1000000LL;
	struct failover f;

	(void)state;
	run_kill(&a, &f);
	/*
	 * The waiter may take over only after it has seen the holder's last
	 * record unchanged for T*(1+rho); it saw that record no earlier than
	 * it was written, so at least the TTL lies between the last renewal
	 * and the takeover.
	 */
	if (f.t_acq_real - f.last_write_real < ttl_ns)
		fail_msg("takeover %lld ms after the dead holder's last renewal: less than the "
		         "TTL (%llu ms)",
		         (long long)((f.t_acq_real - f.last_write_real) / 1000000),
		         (unsigned long long)a.ttl_ms);
	/* ... and not much later than T*(1+rho) + one poll after the kill */
	if (f.t_acq - f.t_kill > ttl_up + poll_ns + slack)
		fail_msg("takeover %lld ms after the kill: beyond T*(1+rho) + poll + %lld ms",
		         (long long)((f.t_acq - f.t_kill) / 1000000), (long long)(slack / 1000000));
}

/* ------------------------------------------------------------------------
 * Holder stopped past its TTL
 */

static atomic_int lost_reason;
static atomic_llong lost_at;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	(void)userdata;
	atomic_store(&lost_at, (long long)lh_boot_ns());
	atomic_store(&lost_reason, reason);
}

static void stopped_holder_child(int rx, int tx, void *arg)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk;
	uint64_t v;
	int r, first_check, reason;
	int64_t end;

	(void)arg;
	o.on_lost = on_lost;
	lk = lh_lease_open(st, NAME, 1000, &o);
	r = lk_lock_acquire(lk, LH_SAFETY_MS);
	if (r < 0)
		lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));

	/* stopped and continued in here; the test then asks what we know */
	v = lh_expect(rx, 60000);
	first_check = lk_lock_check(lk); /* the first call after waking up */
	lh_send(tx, (uint64_t)(int64_t)first_check);
	lh_send(tx, lk_lock_remaining_ms(lk));
	end = lh_boot_ms() + 2000;
	while (!atomic_load(&lost_reason) && lh_boot_ms() < end)
		lh_sleep_ms(1);
	reason = atomic_load(&lost_reason);
	lh_send(tx, (uint64_t)(int64_t)reason);
	lh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	lh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
	lh_send(tx, lk_lock_token(lk));
	lk_lock_close(lk);
	lk_store_close(st);
	(void)v;
}

static void test_stopped_holder(void **state)
{
	struct kill_args wa = {.ttl_ms = 1000, .foreign = 0};
	int want = lh_engine_code(lh_engine_expected());
	struct lh_child h, w;
	uint64_t tok_h, tok_w, remaining;
	int64_t t_stop, t_acq, first_check, reason, check_after, release;
	struct lk_store *st;
	struct lk_status s = {.size = sizeof(s)};

	(void)state;
	lh_store_dir(store, sizeof(store), "stop");
	lh_spawn(&h, stopped_holder_child, NULL);
	tok_h = lh_expect(h.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(h.rx, LH_SAFETY_MS), want);
	lh_sleep_ms(300);
	t_stop = lh_boot_ns();
	assert_int_equal(kill(h.pid, SIGSTOP), 0);

	/* a waiter takes over once the stopped holder's record stayed still */
	lh_spawn(&w, waiter_child, &wa);
	lh_expect(w.rx, LH_SAFETY_MS);
	t_acq = (int64_t)lh_expect(w.rx, LH_SAFETY_MS);
	lh_expect(w.rx, LH_SAFETY_MS);
	tok_w = lh_expect(w.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(w.rx, LH_SAFETY_MS), want);
	assert_true(tok_w > tok_h);
	/* the holder was alive (stopped) on this host: no fast path, the TTL */
	if (t_acq - t_stop < 1000 * 1000000LL * 9 / 10)
		fail_msg("waiter held %lld ms after the holder stopped: a stopped holder "
		         "was treated as dead",
		         (long long)((t_acq - t_stop) / 1000000));

	assert_int_equal(kill(h.pid, SIGCONT), 0);
	lh_send(h.tx, 1);
	first_check = (int64_t)lh_expect(h.rx, LH_SAFETY_MS);
	remaining = lh_expect(h.rx, LH_SAFETY_MS);
	reason = (int64_t)lh_expect(h.rx, LH_SAFETY_MS);
	check_after = (int64_t)lh_expect(h.rx, LH_SAFETY_MS);
	release = (int64_t)lh_expect(h.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(h.rx, LH_SAFETY_MS), 0); /* token after release */
	assert_int_equal(lh_reap(&h, LH_SAFETY_MS), 0);

	assert_int_equal(first_check, -ENOLCK);
	assert_int_equal(remaining, 0);
	assert_int_equal(reason, -ETIMEDOUT);
	assert_int_equal(check_after, -ENOLCK);
	assert_int_equal(release, -ENOLCK);

	/* the old holder's failed release left the new holder's lease alone */
	st = lh_store_open(store);
	assert_int_equal(lk_lock_status(st, NAME, &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok_w);
	lk_store_close(st);
	lh_send(w.tx, 1);
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
}

/* ------------------------------------------------------------------------
 * Short timed acquires add up
 */

static void plain_holder_child(int rx, int tx, void *arg)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, 1000, NULL);

	(void)arg;
	if (lk_lock_acquire(lk, LH_SAFETY_MS) < 0)
		lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	lh_send(tx, lk_lock_token(lk));
	lh_expect(rx, 60000);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* Acquire with 150 ms timeouts, one after the other, until one succeeds. */
static void short_waits_child(int rx, int tx, void *arg)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, 1000, NULL);
	int64_t t0 = lh_boot_ns(), end = lh_boot_ms() + LH_SAFETY_MS;
	uint64_t tries = 0;
	int r;

	(void)arg;
	do {
		tries++;
		r = lk_lock_acquire(lk, 150);
		if (r < 0 && r != -ETIMEDOUT)
			lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	} while (r < 0 && lh_boot_ms() < end);
	lh_send(tx, (uint64_t)(int64_t)r);
	lh_send(tx, tries);
	lh_send(tx, (uint64_t)(lh_boot_ns() - t0));
	lh_send(tx, lk_lock_token(lk));
	lh_expect(rx, 60000);
	if (r == 0)
		CHILD_EQ(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/*
 * A caller that polls with short timeouts must still take over a lease
 * whose holder went silent: what one attempt saw, and since when, counts
 * for the next. Each attempt alone is far shorter than T*(1+rho).
 */
static void test_short_timeouts_add_up(void **state)
{
	struct lh_child h, w;
	uint64_t tok_h, tries, took, tok_w;
	int64_t r;

	(void)state;
	lh_store_dir(store, sizeof(store), "short");
	lh_spawn(&h, plain_holder_child, NULL);
	tok_h = lh_expect(h.rx, LH_SAFETY_MS);
	assert_int_equal(kill(h.pid, SIGSTOP), 0);

	lh_spawn(&w, short_waits_child, NULL);
	r = (int64_t)lh_expect(w.rx, LH_SAFETY_MS + 5000);
	tries = lh_expect(w.rx, LH_SAFETY_MS);
	took = lh_expect(w.rx, LH_SAFETY_MS);
	tok_w = lh_expect(w.rx, LH_SAFETY_MS);
	if (r != 0)
		fail_msg("%llu timed acquires of 150 ms over %llu ms never took over the silent "
		         "lease: %s",
		         (unsigned long long)tries, (unsigned long long)(took / 1000000),
		         lk_strerror((int)r));
	assert_true(tries > 1);
	assert_true(tok_w > tok_h);
	/* and not before the stopped holder's lease ran out */
	assert_true(took >= 1000 * 1000000ull * 9 / 10);
	lh_send(w.tx, 1);
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	assert_int_equal(kill(h.pid, SIGKILL), 0);
	lh_reap_now(&h);
}

/* ------------------------------------------------------------------------
 * Release wakes a waiter
 */

#define WAKE_ROUNDS 5

static void release_waiter_child(int rx, int tx, void *arg)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, 10000, NULL);

	(void)arg;
	for (int i = 0; i < WAKE_ROUNDS; i++) {
		int r;

		lh_expect(rx, LH_SAFETY_MS);
		lh_send(tx, 1);
		r = lk_lock_acquire(lk, LH_SAFETY_MS);
		if (r < 0)
			lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
		lh_send(tx, (uint64_t)lh_boot_ns());
		lh_send(tx, lk_lock_token(lk));
		CHILD_EQ(lk_lock_release(lk), 0);
		lh_send(tx, 2);
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_release_wakes_waiter(void **state)
{
	struct lk_store *st;
	struct lk_lock *lk;
	struct lh_child w;
	int64_t worst = 0;

	(void)state;
	lh_store_dir(store, sizeof(store), "rel");
	st = lh_store_open(store);
	lk = lh_lease_open(st, NAME, 10000, NULL);
	lh_spawn(&w, release_waiter_child, NULL);
	for (int i = 0; i < WAKE_ROUNDS; i++) {
		int64_t t_rel, t_acq;
		uint64_t tok, tok_w;

		assert_int_equal(lk_lock_acquire(lk, LH_SAFETY_MS), 0);
		lh_check_engine(st);
		tok = lk_lock_token(lk);
		lh_send(w.tx, 1);
		lh_expect(w.rx, LH_SAFETY_MS);
		/* the waiter is now blocked; vary where its poll cycle stands */
		lh_sleep_ms(200 + 97 * i % 300);
		assert_int_equal(lk_lock_check(lk), 0);
		t_rel = lh_boot_ns();
		assert_int_equal(lk_lock_release(lk), 0);
		t_acq = (int64_t)lh_expect(w.rx, LH_SAFETY_MS);
		tok_w = lh_expect(w.rx, LH_SAFETY_MS);
		lh_expect(w.rx, LH_SAFETY_MS);
		assert_true(tok_w > tok);
		if (t_acq - t_rel > worst)
			worst = t_acq - t_rel;
		/* well under a second: woken by the release, not by a poll or expiry */
		if (t_acq - t_rel > 400 * 1000000LL)
			fail_msg("round %d: waiter held %lld ms after the release", i,
			         (long long)((t_acq - t_rel) / 1000000));
	}
	print_message("slowest hand-over after release: %lld ms\n", (long long)(worst / 1000000));
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_kill_same_host, lh_teardown),
		cmocka_unit_test_teardown(test_kill_foreign, lh_teardown),
		cmocka_unit_test_teardown(test_stopped_holder, lh_teardown),
		cmocka_unit_test_teardown(test_short_timeouts_add_up, lh_teardown),
		cmocka_unit_test_teardown(test_release_wakes_waiter, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("lease_failover", tests, NULL, NULL);
}
