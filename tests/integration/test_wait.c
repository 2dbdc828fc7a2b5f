// SPDX-License-Identifier: MIT
/*
 * Waiting for a lock: timeouts, wake-up on release, cancellation, and the
 * signal lockkit borrows to end a sleep in F_OFD_SETLKW.
 *
 * The holder is always another process, so that the waiter really sleeps in
 * the kernel; the tests look that up in /proc/locks before they release or
 * cancel, rather than guessing with a sleep. Timing assertions are safety
 * bounds only: a timeout may not fire early, and nothing may take seconds
 * longer than asked.
 *
 * The wait signal's disposition is process-wide and lockkit installs its
 * handler on first use, so the tests that replace it run in a child process
 * of their own, leaving the test process as lockkit set it up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"

#define LOCK_NAME  "wait"
#define TIMEOUT_MS 300
#define SLACK_MS   2000

static char store_dir[256];
static char lock_path[512];

static void fresh_store(const char *tag)
{
	it_store_dir(store_dir, sizeof(store_dir), tag);
	it_lock_path(lock_path, sizeof(lock_path), store_dir, LOCK_NAME);
}

/*
 * Hold the lock exclusively until told: message 1 releases and exits,
 * message 2 waits for one blocked waiter and then releases by itself.
 */
static void child_holder(int rx, int tx, void *arg)
{
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, "holder");
	uint64_t v;

	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	it_send(tx, lk_lock_token(lk));
	CHILD_EQ(it_recv(rx, &v, 40000), 0);
	if (v == 2)
		CHILD_EQ(it_wait_blocked(lock_path, 1, IT_SAFETY_MS), 0);
	CHILD_EQ(lk_lock_release(lk), 0);
	it_send(tx, 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static uint64_t spawn_holder(struct it_child *c)
{
	uint64_t tok;

	it_spawn(c, child_holder, NULL);
	assert_int_equal(it_recv(c->rx, &tok, IT_SAFETY_MS), 0);
	return tok;
}

static void release_holder(struct it_child *c)
{
	uint64_t v;

	it_send(c->tx, 1);
	assert_int_equal(it_recv(c->rx, &v, IT_SAFETY_MS), 0);
	assert_int_equal(it_reap(c, IT_SAFETY_MS), 0);
}

static void test_timed_acquire_times_out(void **state)
{
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *x, *s;
	int64_t t0, dt;

	fresh_store("wait-timeout");
	st = it_store_open(store_dir);
	x = it_lock_open(st, LOCK_NAME, 0, NULL);
	s = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, NULL);
	spawn_holder(&c);

	for (int i = 0; i < 2; i++) {
		struct lk_lock *lk = i ? s : x;

		t0 = it_mono_ms();
		assert_int_equal(lk_lock_acquire(lk, TIMEOUT_MS), -ETIMEDOUT);
		dt = it_mono_ms() - t0;
		assert_true(dt >= TIMEOUT_MS);
		assert_true(dt < TIMEOUT_MS + SLACK_MS);
		assert_int_equal(lk_lock_check(lk), -ENOLCK);
		assert_int_equal(lk_lock_token(lk), 0);
		assert_string_not_equal(lk_lock_errmsg(lk), "");
	}
	/* a try does not wait at all */
	assert_int_equal(lk_lock_acquire(x, 0), -EWOULDBLOCK);

	release_holder(&c);
	assert_int_equal(lk_lock_acquire(x, TIMEOUT_MS), 0);
	lk_lock_close(s);
	lk_lock_close(x);
	lk_store_close(st);
}

static void test_release_wakes_waiter(void **state)
{
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	uint64_t tok, v;
	int64_t t0;

	fresh_store("wait-wake");
	st = it_store_open(store_dir);
	for (int i = 0; i < 3; i++) {
		/* exclusive with a deadline, exclusive for ever, shared */
		lk = it_lock_open(st, LOCK_NAME, i == 2 ? LK_LOCK_SHARED : 0, NULL);
		tok = spawn_holder(&c);
		it_send(c.tx, 2); /* release once we are asleep */
		t0 = it_mono_ms();
		/* the alarm set by it_init() bounds the infinite wait */
		assert_int_equal(lk_lock_acquire(lk, i == 1 ? -1 : 20000), 0);
		assert_true(it_mono_ms() - t0 < IT_SAFETY_MS);
		assert_true(lk_lock_token(lk) > tok);
		assert_int_equal(it_recv(c.rx, &v, IT_SAFETY_MS), 0);
		assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
		lk_lock_close(lk);
	}
	lk_store_close(st);
}

struct waiter {
	struct lk_lock *lk;
	int64_t timeout_ms;
	int block_signal; /* block the wait signal in this thread first */
	int signo;
	_Atomic pid_t tid;
	int result;
	int64_t elapsed_ms;
	int mask_same; /* the whole signal mask is as it was before */
	atomic_int done;
};

static int masks_equal(const sigset_t *a, const sigset_t *b)
{
	for (int sig = 1; sig <= SIGRTMAX; sig++)
		if (sigismember(a, sig) != sigismember(b, sig))
			return 0;
	return 1;
}

static void *waiter_thread(void *arg)
{
	struct waiter *w = arg;
	sigset_t set, before, after;
	int64_t t0;

	sigemptyset(&set);
	sigaddset(&set, w->signo);
	pthread_sigmask(w->block_signal ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
	pthread_sigmask(SIG_SETMASK, NULL, &before);
	atomic_store(&w->tid, gettid());
	t0 = it_mono_ms();
	w->result = lk_lock_acquire(w->lk, w->timeout_ms);
	w->elapsed_ms = it_mono_ms() - t0;
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	w->mask_same = masks_equal(&before, &after);
	atomic_store(&w->done, 1);
	return NULL;
}

/*
 * One waiter thread at a time, in static storage: a failed assertion
 * unwinds the test's stack, and a thread still blocked in acquire must not
 * write into it when it finally returns. For the same reason the tests
 * gather what they check while the thread runs and assert after joining.
 */
static struct waiter waiter;
static pthread_t waiter_tid;

static void start_waiter(struct lk_lock *lk, int64_t timeout_ms, int block_signal)
{
	memset(&waiter, 0, sizeof(waiter));
	waiter.lk = lk;
	waiter.timeout_ms = timeout_ms;
	waiter.block_signal = block_signal;
	waiter.signo = SIGRTMAX - 2;
	assert_int_equal(pthread_create(&waiter_tid, NULL, waiter_thread, &waiter), 0);
}

/* Join the waiter thread, but never wait longer than the safety bound. */
static void join_waiter(void)
{
	int64_t end = it_mono_ms() + IT_SAFETY_MS;

	while (!atomic_load(&waiter.done) && it_mono_ms() < end)
		usleep(1000);
	if (!atomic_load(&waiter.done))
		fail_msg("a waiting acquire did not return within %d ms", IT_SAFETY_MS);
	pthread_join(waiter_tid, NULL);
}

/* Cancel the waiter (whatever state it is in) and join it; cancel's result. */
static int cancel_waiter(void)
{
	int r = lk_lock_cancel(waiter.lk);

	join_waiter();
	return r;
}

/* Is signo blocked in thread tid right now (1/0)? Read from /proc; -1: unknown. */
static int blocked_in_thread(pid_t tid, int signo)
{
	char path[64], line[256];
	unsigned long long mask = 0;
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "SigBlk: %llx", &mask) == 1;
	fclose(f);
	return found ? !!(mask & (1ull << (signo - 1))) : -1;
}

static void test_cancel(void **state)
{
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	int asleep, r;

	fresh_store("wait-cancel");
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, NULL);

	/* nobody waiting: returns at once, and changes nothing */
	assert_int_equal(lk_lock_cancel(lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_cancel(lk), 0);
	assert_int_equal(lk_lock_check(lk), 0);
	assert_int_equal(lk_lock_release(lk), 0);

	spawn_holder(&c);
	for (int i = 0; i < 4; i++) {
		/* infinite and timed, with the signal blocked or not beforehand */
		start_waiter(lk, i % 2 ? 60000 : -1, i >= 2);
		asleep = it_wait_blocked(lock_path, 1, IT_SAFETY_MS);
		r = cancel_waiter();
		assert_int_equal(asleep, 0);
		assert_int_equal(r, 0);
		assert_int_equal(waiter.result, -ECANCELED);
		assert_true(waiter.elapsed_ms < IT_SAFETY_MS);
		assert_true(waiter.mask_same);
		assert_int_equal(lk_lock_token(lk), 0);
		assert_int_equal(lk_lock_check(lk), -ENOLCK);
	}

	/* a cancelled handle waits and acquires normally afterwards */
	assert_int_equal(lk_lock_acquire(lk, 50), -ETIMEDOUT);
	release_holder(&c);
	assert_int_equal(lk_lock_acquire(lk, 1000), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* The signal mask of the waiting thread, after every way a wait can end. */
static void test_signal_mask_restored(void **state)
{
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	int asleep, open_while_asleep, r;

	fresh_store("wait-mask");
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, NULL);
	for (int blocked = 0; blocked < 2; blocked++) {
		/* timed out */
		spawn_holder(&c);
		start_waiter(lk, TIMEOUT_MS, blocked);
		join_waiter();
		assert_int_equal(waiter.result, -ETIMEDOUT);
		assert_true(waiter.mask_same);

		/* cancelled, after checking the signal is open during the wait */
		start_waiter(lk, -1, blocked);
		asleep = it_wait_blocked(lock_path, 1, IT_SAFETY_MS);
		open_while_asleep = blocked_in_thread(atomic_load(&waiter.tid), waiter.signo) == 0;
		r = cancel_waiter();
		assert_int_equal(asleep, 0);
		assert_true(open_while_asleep);
		assert_int_equal(r, 0);
		assert_int_equal(waiter.result, -ECANCELED);
		assert_true(waiter.mask_same);

		/* acquired after sleeping */
		it_send(c.tx, 2);
		start_waiter(lk, 20000, blocked);
		join_waiter();
		assert_int_equal(waiter.result, 0);
		assert_true(waiter.mask_same);
		assert_int_equal(lk_lock_release(lk), 0);
		assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

/* A handle is one thread's at a time; a second acquire must not wait too. */
static void test_second_acquire_on_handle_is_busy(void **state)
{
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	int asleep, r_inf, r_timed, r_try, r;

	fresh_store("wait-busy");
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, NULL);
	spawn_holder(&c);
	start_waiter(lk, -1, 0);
	asleep = it_wait_blocked(lock_path, 1, IT_SAFETY_MS);

	r_inf = lk_lock_acquire(lk, -1);
	r_timed = lk_lock_acquire(lk, 100);
	r_try = lk_lock_acquire(lk, 0);

	r = cancel_waiter();
	assert_int_equal(asleep, 0);
	assert_int_equal(r, 0);
	assert_int_equal(waiter.result, -ECANCELED);
	assert_int_equal(r_inf, -EBUSY);
	assert_int_equal(r_timed, -EBUSY);
	assert_int_equal(r_try, -EBUSY);
	release_holder(&c);
	lk_lock_close(lk);
	lk_store_close(st);
}

static atomic_int own_handler_calls;

static void own_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&own_handler_calls, 1);
}

static void own_siginfo_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&own_handler_calls, 1);
}

static int install(int sig, int siginfo)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	if (siginfo) {
		sa.sa_sigaction = own_siginfo_handler;
		sa.sa_flags = SA_SIGINFO;
	} else {
		sa.sa_handler = own_handler;
	}
	return sigaction(sig, &sa, NULL);
}

/* Is the program's own handler (of either kind) installed on sig? */
static int handler_is_own(int sig, int siginfo)
{
	struct sigaction sa;

	sigaction(sig, NULL, &sa);
	if (siginfo)
		return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == own_siginfo_handler;
	return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == own_handler;
}

/* The program owns the default wait signal: lockkit must refuse to wait. */
static void child_own_handler(int rx, int tx, void *arg)
{
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, NULL);
	const int sig = SIGRTMAX - 2;

	for (int siginfo = 0; siginfo < 2; siginfo++) {
		CHILD_EQ(install(sig, siginfo), 0);
		CHILD_EQ(lk_lock_acquire(lk, -1), -EBUSY);
		CHILD_EQ(lk_lock_acquire(lk, 200), -EBUSY);
		CHILD_EQ(lk_lock_acquire(lk, 0), -EWOULDBLOCK);
		CHILD_ASSERT(lk_lock_errmsg(lk)[0] != 0);
		/* the program's handler is left alone, and was never called */
		CHILD_ASSERT(handler_is_own(sig, siginfo));
		CHILD_EQ(atomic_load(&own_handler_calls), 0);
	}

	/* given back to the default, lockkit can wait again */
	signal(sig, SIG_DFL);
	CHILD_EQ(lk_lock_acquire(lk, 200), -ETIMEDOUT);
	lk_lock_close(lk);
	lk_store_close(st);
}

struct canceller {
	struct lk_lock *lk;
	const char *path;
	int result;
};

static void *cancel_thread(void *arg)
{
	struct canceller *cc = arg;

	if (it_wait_blocked(cc->path, 1, IT_SAFETY_MS) < 0) {
		cc->result = -ETIMEDOUT;
		return NULL;
	}
	cc->result = lk_lock_cancel(cc->lk);
	return NULL;
}

/* A store opened with another wait signal uses it, and only it. */
static void child_other_signal(int rx, int tx, void *arg)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct canceller cc;
	struct lk_store *st = NULL, *bad = NULL;
	struct lk_lock *lk;
	struct sigaction sa;
	pthread_t t;
	const int sig = SIGRTMIN + 4;

	CHILD_EQ(install(SIGRTMAX - 2, 0), 0);
	CHILD_ASSERT(sig != SIGRTMAX - 2);
	signal(sig, SIG_DFL);

	o.wait_signal = SIGUSR1;
	CHILD_EQ(lk_store_open(store_dir, &o, &bad), -EINVAL);
	CHILD_ASSERT(bad == NULL);
	o.wait_signal = sig;
	CHILD_EQ(lk_store_open(store_dir, &o, &st), 0);
	lk = it_lock_open(st, LOCK_NAME, 0, NULL);

	CHILD_EQ(lk_lock_acquire(lk, 200), -ETIMEDOUT);
	sigaction(sig, NULL, &sa);
	CHILD_ASSERT(sa.sa_handler != SIG_DFL); /* lockkit's handler is there now */

	cc.lk = lk;
	cc.path = lock_path;
	cc.result = 1;
	CHILD_EQ(pthread_create(&t, NULL, cancel_thread, &cc), 0);
	CHILD_EQ(lk_lock_acquire(lk, 20000), -ECANCELED);
	pthread_join(t, NULL);
	CHILD_EQ(cc.result, 0);

	/* the program's handler on the default signal never ran and is still there */
	CHILD_EQ(atomic_load(&own_handler_calls), 0);
	CHILD_ASSERT(handler_is_own(SIGRTMAX - 2, 0));
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_wait_signal_ownership(void **state)
{
	struct it_child c, h;

	fresh_store("wait-signal");
	spawn_holder(&h);
	it_spawn(&c, child_own_handler, NULL);
	assert_int_equal(it_reap(&c, 20000), 0);
	it_spawn(&c, child_other_signal, NULL);
	assert_int_equal(it_reap(&c, 20000), 0);
	release_holder(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_timed_acquire_times_out, it_teardown),
		cmocka_unit_test_teardown(test_release_wakes_waiter, it_teardown),
		cmocka_unit_test_teardown(test_cancel, it_teardown),
		cmocka_unit_test_teardown(test_signal_mask_restored, it_teardown),
		cmocka_unit_test_teardown(test_second_acquire_on_handle_is_busy, it_teardown),
		cmocka_unit_test_teardown(test_wait_signal_ownership, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
