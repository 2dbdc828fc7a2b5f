// SPDX-License-Identifier: MIT
/*
 * lockctl break: a live lease holder is fenced (the BROKEN generation has a
 * higher token), learns it lost at its next renewal (on_lost with -ESTALE;
 * lockctl run stops COMMAND and exits 75), and a waiter takes over only
 * T*(1+rho) after the break, unless --now freed the lock at once. Kernel-mode
 * locks are refused, free and never-used locks have nothing to break, and
 * nothing happens without --force.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "lockkit.h"

static char buf[16384];

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t json_u64(const char *json, const char *key)
{
	char v[64];

	assert_int_equal(tc_json_member(json, key, v, sizeof(v)), 0);
	return strtoull(v, NULL, 10);
}

static struct lk_store *store_open(struct tc *t)
{
	struct lk_store *st = NULL;

	assert_int_equal(lk_store_open(t->store, NULL, &st), 0);
	return st;
}

static void status_of(struct tc *t, const char *name, struct lk_status *s)
{
	struct lk_store *st = store_open(t);

	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	assert_int_equal(lk_lock_status(st, name, s), 0);
	lk_store_close(st);
}

/*
 * The holder runs under lockctl run with a 2 s TTL; a waiter queues behind
 * it. After the break the holder exits 75 well before its lease would have
 * ended, with a token below the BROKEN one, and the waiter's claim comes no
 * earlier than T*(1+rho) = 2.02 s after the break began.
 */
static void test_break_fences_holder(void **state)
{
	struct tc *t = *state;
	struct lk_status s;
	uint64_t htok, btok, wtok;
	int64_t t0_wall, t0, t_exit;
	int status;
	pid_t h, w;

	h = tc_spawn(t, "h",
	             TC_ARGV("run", "--ttl=2s", "job", "--", "sh", "-c",
	                     "echo $LOCKCTL_TOKEN > h.tok; exec sleep 60"));
	assert_true(h > 0);
	assert_int_equal(tc_wait_line(t, "h.tok", TC_BOUND_MS), 0);
	htok = (uint64_t)tc_read_long(t, "h.tok");
	w = tc_spawn(
		t, "w",
		TC_ARGV("run", "--ttl=2s", "job", "--", "sh", "-c", "echo $LOCKCTL_TOKEN > w.tok"));
	assert_true(w > 0);
	tc_sleep_ms(300); /* the waiter is watching the held lease */
	assert_int_equal(tc_exists(t, "w.tok"), 0);

	t0_wall = wall_ns();
	t0 = tc_now_ms();
	assert_int_equal(
		tc_run(t, "b",
	               TC_ARGV("break", "job", "--force", "--reason", "disk replaced", "--json")),
		0);
	assert_true(tc_read(t, "b.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_int_equal(json_u64(buf, "old_token"), htok);
	btok = json_u64(buf, "new_token");
	assert_true(btok > htok);
	assert_non_null(strstr(buf, "\"now\":false"));
	assert_non_null(strstr(buf, "\"free_in_ms\":2020"));

	/* the record says who broke it and why */
	status_of(t, "job", &s);
	assert_true(s.held && s.broken);
	assert_int_equal(s.token, btok);
	assert_non_null(strstr(s.holder.owner, ": disk replaced"));
	assert_int_equal(s.ttl_ms, 2000);

	/* the old holder learns at its next renewal (every 500 ms), then its
	 * guardian stops COMMAND; 75 is "lease lost" */
	assert_int_equal(tc_wait(h, TC_BOUND_MS, &status), 0);
	t_exit = tc_now_ms();
	assert_int_equal(tc_code(status), 75);
	print_message("holder exited %lld ms after the break began\n", (long long)(t_exit - t0));
	assert_true(t_exit - t0 < 1500);
	assert_true(tc_read(t, "h.err", buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "lease lost"));

	/* the waiter: a higher token, claimed no earlier than T*(1+rho) after
	 * the break (its claim's wall time, read after it judged the lock free) */
	assert_int_equal(tc_wait(w, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 0);
	wtok = (uint64_t)tc_read_long(t, "w.tok");
	assert_true(wtok > btok);
	status_of(t, "job", &s);
	assert_int_equal(s.token, wtok);
	print_message("waiter claimed %lld ms after the break began\n",
	              (long long)((s.holder.since_ns - t0_wall) / 1000000));
	assert_true(s.holder.since_ns - t0_wall >= 2020LL * 1000000);
}

static atomic_int lost_reason;
static atomic_int lost_calls;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	(void)userdata;
	atomic_store(&lost_reason, reason);
	atomic_fetch_add(&lost_calls, 1);
}

/* A library holder: on_lost fires with -ESTALE (a newer generation), not
 * -ETIMEDOUT, and the handle's check and release say it is lost. */
static void test_break_on_lost_estale(void **state)
{
	struct tc *t = *state;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = store_open(t);
	struct lk_lock *lk = NULL;
	uint64_t tok;
	int64_t t0;

	atomic_store(&lost_reason, 0);
	atomic_store(&lost_calls, 0);
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = 2000;
	o.on_lost = on_lost;
	assert_int_equal(lk_lock_open(st, "lib", &o, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_check(lk), 0);

	assert_int_equal(tc_run(t, "b", TC_ARGV("break", "lib", "--force", "--json")), 0);
	assert_true(tc_read(t, "b.out", buf, sizeof(buf)) > 0);
	assert_int_equal(json_u64(buf, "old_token"), tok);
	assert_int_equal(json_u64(buf, "new_token"), tok + 1);
	t0 = tc_now_ms();
	while (!atomic_load(&lost_calls) && tc_now_ms() - t0 < TC_BOUND_MS)
		tc_sleep_ms(5);
	print_message("on_lost after %lld ms\n", (long long)(tc_now_ms() - t0));
	assert_int_equal(atomic_load(&lost_calls), 1);
	assert_int_equal(atomic_load(&lost_reason), -ESTALE);
	assert_int_equal(lk_lock_check(lk), -ENOLCK);
	assert_int_equal(lk_lock_token(lk), tok);
	assert_int_equal(lk_lock_release(lk), -ENOLCK);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* --now: the waiter gets in at once (the lease's 10 s TTL would otherwise
 * keep it out for 10.1 s), the old holder still learns and exits 75. */
static void test_break_now(void **state)
{
	struct tc *t = *state;
	struct lk_status s;
	uint64_t htok, btok, wtok;
	int64_t t0_wall;
	int status;
	pid_t h, w;

	h = tc_spawn(t, "h",
	             TC_ARGV("run", "--ttl=10s", "now", "--", "sh", "-c",
	                     "echo $LOCKCTL_TOKEN > h.tok; exec sleep 60"));
	assert_true(h > 0);
	assert_int_equal(tc_wait_line(t, "h.tok", TC_BOUND_MS), 0);
	htok = (uint64_t)tc_read_long(t, "h.tok");
	w = tc_spawn(t, "w",
	             TC_ARGV("run", "--ttl=10s", "now", "--", "sh", "-c",
	                     "echo $LOCKCTL_TOKEN > w.tok"));
	assert_true(w > 0);
	tc_sleep_ms(300);
	t0_wall = wall_ns();
	assert_int_equal(tc_run(t, "b", TC_ARGV("break", "now", "--force", "--now")), 0);
	assert_true(tc_read(t, "b.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "released at once"));

	assert_int_equal(tc_wait(w, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 0);
	wtok = (uint64_t)tc_read_long(t, "w.tok");
	btok = htok + 1;
	assert_true(wtok > btok);
	status_of(t, "now", &s);
	assert_int_equal(s.token, wtok);
	print_message("waiter claimed %lld ms after the break began\n",
	              (long long)((s.holder.since_ns - t0_wall) / 1000000));
	assert_true(s.holder.since_ns - t0_wall < 5000LL * 1000000);

	/* the old holder: its next renewal (every 2.5 s) finds the newer
	 * generations */
	assert_int_equal(tc_wait(h, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 75);
}

static void test_break_kernel_refused(void **state)
{
	struct tc *t = *state;
	struct lk_status s;
	pid_t h;

	h = tc_hold(t, "kern", NULL, "k.ready");
	assert_true(h > 0);
	status_of(t, "kern", &s);
	assert_int_equal(tc_run(t, "b", TC_ARGV("break", "kern", "--force")), 69);
	assert_true(tc_read(t, "b.err", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "kernel-mode"));
	assert_non_null(strstr(buf, "holder"));
	/* still held, same token */
	{
		struct lk_status s2;

		status_of(t, "kern", &s2);
		assert_true(s2.held);
		assert_int_equal(s2.token, s.token);
	}
	tc_unhold(h);
}

static void test_break_free(void **state)
{
	struct tc *t = *state;
	struct lk_status s;

	/* never used */
	assert_int_equal(tc_run(t, "b0", TC_ARGV("break", "none", "--force")), 3);
	assert_true(tc_read(t, "b0.err", buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "never used"));
	/* released */
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "--ttl=2s", "free", "--", "true")), 0);
	status_of(t, "free", &s);
	assert_int_equal(tc_run(t, "b1", TC_ARGV("break", "free", "--force", "--json")), 3);
	assert_true(tc_read(t, "b1.err", buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "free"));
	assert_true(tc_read(t, "b1.out", buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"broken\":false"));
	{
		struct lk_status s2;

		status_of(t, "free", &s2);
		assert_int_equal(s2.token, s.token); /* nothing claimed */
		assert_false(s2.held);
	}
	/* already broken: once is enough (--now would still free it) */
	{
		pid_t h = tc_hold(t, "twice", "--ttl=2s", "tw.ready");

		assert_true(h > 0);
		assert_int_equal(tc_run(t, "b2", TC_ARGV("break", "twice", "--force")), 0);
		assert_int_equal(tc_run(t, "b3", TC_ARGV("break", "twice", "--force")), 3);
		assert_true(tc_read(t, "b3.err", buf, sizeof(buf)) > 0);
		assert_non_null(strstr(buf, "already broken"));
		tc_unhold(h);
	}
}

static void test_break_needs_force(void **state)
{
	struct tc *t = *state;
	struct lk_status s, s2;
	pid_t h = tc_hold(t, "f", "--ttl=2s", "f.ready");

	assert_true(h > 0);
	status_of(t, "f", &s);
	assert_int_equal(tc_run(t, "b", TC_ARGV("break", "f")), 64);
	assert_true(tc_read(t, "b.err", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "--force"));
	assert_int_equal(tc_run(t, "b2", TC_ARGV("break", "f", "--now")), 64);
	assert_int_equal(tc_run(t, "b3", TC_ARGV("break", "--force")), 64);
	assert_int_equal(tc_run(t, "b4", TC_ARGV("break", "f", "--force", "--bogus")), 64);
	status_of(t, "f", &s2);
	assert_true(s2.held && !s2.broken);
	assert_int_equal(s2.token, s.token);
	assert_true(tc_alive(h));
	tc_unhold(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_break_fences_holder, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_break_on_lost_estale, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_break_now, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_break_kernel_refused, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_break_free, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_break_needs_force, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests_name("lockctl break", tests, NULL, NULL);
}
