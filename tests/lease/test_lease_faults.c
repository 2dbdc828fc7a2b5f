// SPDX-License-Identifier: MIT
/*
 * Storage faults under a held lease, and the holder's timing rule: the
 * deadline is t_submit + T*(1-rho) - margin of the last renewal that
 * completed in time, and it fires on time whatever the storage does.
 *
 * Faults are injected where each engine does its I/O:
 *  - the thread engine calls through lk__engine_sys, so its pwrite is
 *    replaced (for the lease's record descriptor only) by one that hangs,
 *    fails with EIO, or answers only after the deadline;
 *  - the io_uring engine submits to the kernel directly, so the lease's
 *    record descriptor is swapped (under the engine's mutex) for the write
 *    end of a full pipe (a write that hangs until the pipe is drained) or
 *    for a read-only descriptor of the same record (a write that fails).
 * Each scenario runs on the engine this run is for, with the injection that
 * engine allows; the pipe swap runs on both.
 *
 * Covered: a renewal that never returns (lost at the deadline, not before),
 * two failed renewals then success (the lease survives), renewals that
 * always fail (lost at the deadline), a renewal that succeeds only after the
 * deadline (no revival, also when its reply beats the engine's own deadline
 * check, which an externally driven engine makes exact), slow renewals (the
 * deadline runs from when a renewal was sent, not from its reply), and a
 * newer generation found by the renewal probe (lost with -ESTALE within
 * about one renewal interval).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "internal.h"
#include "lharness.h"
#include "lrecord.h"

#define NAME      "ft"
#define TTL_MS    1000
#define RHO_PPM   10000
#define MARGIN_MS 100 /* max(T/10, 100 ms) */
/* T*(1-rho) - margin: the holder's deadline after its last good renewal */
#define DEADLINE_NS                                                                                \
	((int64_t)TTL_MS * 1000000 - (int64_t)TTL_MS * 1000000 / 1000000 * RHO_PPM -               \
	 (int64_t)MARGIN_MS * 1000000)
#define SLACK_NS (500 * 1000000LL)

static char store[PATH_MAX];

static int uring_run(void)
{
	return !strcmp(lh_engine_expected(), "io_uring");
}

/* ------------------------------------------------------------------------
 * The thread engine's syscall, replaced for one descriptor
 */

enum fault { F_NONE, F_HANG, F_EIO, F_LATE, F_SLOW };

#define SLOW_MS 300 /* F_SLOW: every renewal write takes this long, then succeeds */

static atomic_int victim_fd = -1;
static atomic_int fault_mode;
static atomic_int eio_left;       /* F_EIO: fail this many more, then succeed; <0 always */
static atomic_int calls;          /* renewal writes to the victim */
static int unblock[2] = {-1, -1}; /* F_HANG / F_LATE wait here */

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);

static ssize_t fault_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct pollfd p;

	if (fd != atomic_load(&victim_fd))
		return real_pwrite(fd, buf, n, off);
	atomic_fetch_add(&calls, 1);
	switch (atomic_load(&fault_mode)) {
	case F_HANG:
		/* "storage that never answers": 10 s, or until the test is done */
		p.fd = unblock[0];
		p.events = POLLIN;
		poll(&p, 1, 10000);
		errno = EIO;
		return -1;
	case F_LATE:
		/* answers, successfully, once the test lets it (past the deadline) */
		p.fd = unblock[0];
		p.events = POLLIN;
		poll(&p, 1, 10000);
		return real_pwrite(fd, buf, n, off);
	case F_SLOW:
		lh_sleep_ms(SLOW_MS);
		return real_pwrite(fd, buf, n, off);
	case F_EIO:
		if (atomic_load(&eio_left) != 0) {
			if (atomic_load(&eio_left) > 0)
				atomic_fetch_sub(&eio_left, 1);
			errno = EIO;
			return -1;
		}
		return real_pwrite(fd, buf, n, off);
	default:
		return real_pwrite(fd, buf, n, off);
	}
}

static int setup(void **state)
{
	(void)state;
	if (!real_pwrite)
		real_pwrite = lk__engine_sys.pwrite;
	lk__engine_sys.pwrite = fault_pwrite;
	atomic_store(&victim_fd, -1);
	atomic_store(&fault_mode, F_NONE);
	atomic_store(&calls, 0);
	if (pipe2(unblock, O_CLOEXEC) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	/* let a hung renewal go before anything is freed */
	if (unblock[1] >= 0 && write(unblock[1], "x", 1) < 0) {
		/* the worker times out on its own */
	}
	atomic_store(&victim_fd, -1);
	lk__engine_sys.pwrite = real_pwrite;
	lh_teardown(state);
	close(unblock[0]);
	close(unblock[1]);
	unblock[0] = unblock[1] = -1;
	return 0;
}

static void let_go(void)
{
	assert_int_equal(write(unblock[1], "x", 1), 1);
}

/* ------------------------------------------------------------------------
 * The lease under test, held by the test process
 */

static atomic_int lost_reason;
static atomic_llong lost_at;
static atomic_int check_in_cb = 1, remaining_in_cb = -1;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)userdata;
	atomic_store(&lost_at, (long long)lh_boot_ns());
	atomic_store(&check_in_cb, lk_lock_check(lk));
	atomic_store(&remaining_in_cb, (int)lk_lock_remaining_ms(lk));
	atomic_store(&lost_reason, reason);
}

struct victim {
	struct lk_store *st;
	struct lk_lock *lk;
	int64_t t_before, t_after; /* around the acquire: the claim was sent in between */
	int orig_fd;
};

static void victim_open(struct victim *v, uint64_t renew_ms)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lease_params p;

	atomic_store(&lost_reason, 0);
	atomic_store(&lost_at, 0);
	atomic_store(&check_in_cb, 1);
	atomic_store(&remaining_in_cb, -1);
	lh_store_dir(store, sizeof(store), "ft");
	v->st = lh_store_open(store);
	o.on_lost = on_lost;
	o.renew_ms = renew_ms;
	v->lk = lh_lease_open(v->st, NAME, TTL_MS, &o);
	v->t_before = lh_boot_ns();
	assert_int_equal(lk_lock_acquire(v->lk, LH_SAFETY_MS), 0);
	v->t_after = lh_boot_ns();
	lh_check_engine(v->st);
	assert_int_equal(lk_lock_lease_params(v->lk, &p), 0);
	assert_int_equal(p.ttl_ms, TTL_MS);
	assert_int_equal(p.renew_ms, renew_ms ? renew_ms : TTL_MS / 4);
	assert_int_equal(p.rho_ppm, RHO_PPM);
	assert_int_equal(p.margin_ms, MARGIN_MS);
	assert_int_equal(lk_lock_check(v->lk), 0);
	/* the deadline runs from before the claim: at most T*(1-rho) - margin away */
	assert_true(lk_lock_remaining_ms(v->lk) > 0);
	assert_true(lk_lock_remaining_ms(v->lk) <= (uint64_t)(DEADLINE_NS / 1000000));
	v->orig_fd = v->lk->lease->f->fd;
	atomic_store(&victim_fd, v->orig_fd);
}

/* Point the lease's record descriptor at fd; the engine reads it under its
 * mutex when it submits a renewal. */
static void swap_fd(struct victim *v, int fd)
{
	struct lk__engine *e = v->st->engine;

	pthread_mutex_lock(&e->mu);
	v->lk->lease->f->fd = fd;
	pthread_mutex_unlock(&e->mu);
}

static uint64_t lease_counter(struct victim *v, int which)
{
	struct lk__engine *e = v->st->engine;
	uint64_t n;

	pthread_mutex_lock(&e->mu);
	n = which ? v->lk->lease->failures : v->lk->lease->renewals;
	pthread_mutex_unlock(&e->mu);
	return n;
}

static void victim_close(struct victim *v, int want_release)
{
	assert_int_equal(lk_lock_release(v->lk), want_release);
	assert_int_equal(lk_lock_check(v->lk), -ENOLCK);
	lk_lock_close(v->lk);
	lk_store_close(v->st);
}

/* The write end of a pipe with no room for a record: a write that blocks. */
static void full_pipe(int p[2])
{
	char buf[4096];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	while (write(p[1], buf, sizeof(buf)) > 0)
		;
	while (write(p[1], buf, 1) > 0)
		;
	/* blocking again: io_uring must wait for room, not fail with EAGAIN */
	assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
}

/* Empty a non-blocking pipe; how many bytes were in it. */
static size_t drain_pipe(int fd)
{
	char buf[4096];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	return total;
}

/*
 * Watch lk_lock_check() from this thread until the lease has been lost and
 * for a while after: when it first failed, and whether it ever came back.
 */
struct loss {
	int64_t first_fail;
	int revived;
};

static void watch_loss(struct victim *v, int64_t after_ms, struct loss *ret)
{
	int64_t end = lh_boot_ns() + (int64_t)LH_SAFETY_MS * 1000000, stop = -1;

	memset(ret, 0, sizeof(*ret));
	for (;;) {
		int c = lk_lock_check(v->lk);
		int64_t now = lh_boot_ns(); /* read after the check: never before it failed */

		if (c != 0 && c != -ENOLCK)
			fail_msg("lk_lock_check: %s", lk_strerror(c));
		if (c == -ENOLCK && !ret->first_fail)
			ret->first_fail = now;
		if (c == 0 && ret->first_fail)
			ret->revived = 1;
		if (ret->first_fail && atomic_load(&lost_reason) && stop < 0)
			stop = now + after_ms * 1000000;
		if (stop >= 0 && now >= stop)
			break;
		if (now > end)
			fail_msg("the lease was never lost");
		lh_sleep_ms(2);
	}
	assert_int_equal(ret->revived, 0);
	assert_int_equal(lk_lock_remaining_ms(v->lk), 0);
	assert_int_equal(atomic_load(&check_in_cb), -ENOLCK);
	assert_int_equal(atomic_load(&remaining_in_cb), 0);
}

/* Lost at the deadline of the claim: not before, not much after. */
static void assert_lost_at_deadline(const struct victim *v, const struct loss *x)
{
	int64_t at = atomic_load(&lost_at);

	assert_int_equal(atomic_load(&lost_reason), -ETIMEDOUT);
	if (at < v->t_before + DEADLINE_NS || x->first_fail < v->t_before + DEADLINE_NS)
		fail_msg("lost %lld ms (check failed %lld ms) after the acquire began: before the "
		         "deadline T*(1-rho)-margin = %lld ms",
		         (long long)((at - v->t_before) / 1000000),
		         (long long)((x->first_fail - v->t_before) / 1000000),
		         (long long)(DEADLINE_NS / 1000000));
	if (at > v->t_after + (int64_t)TTL_MS * 1000000 + SLACK_NS ||
	    x->first_fail > v->t_after + (int64_t)TTL_MS * 1000000 + SLACK_NS)
		fail_msg(
			"lost %lld ms (check failed %lld ms) after the acquire: later than the TTL "
			"plus %lld ms",
			(long long)((at - v->t_after) / 1000000),
			(long long)((x->first_fail - v->t_after) / 1000000),
			(long long)(SLACK_NS / 1000000));
	print_message("lost %lld ms after the acquire began (deadline %lld ms)\n",
	              (long long)((at - v->t_before) / 1000000),
	              (long long)(DEADLINE_NS / 1000000));
}

/* ------------------------------------------------------------------------
 * (a) a renewal that never returns
 */

static void test_write_hangs(void **state)
{
	struct victim v;
	struct loss x;
	int p[2] = {-1, -1};

	(void)state;
	atomic_store(&fault_mode, F_HANG);
	victim_open(&v, 0);
	if (uring_run()) {
		full_pipe(p);
		swap_fd(&v, p[1]);
	}
	watch_loss(&v, 300, &x);
	assert_lost_at_deadline(&v, &x);
	if (uring_run()) {
		swap_fd(&v, v.orig_fd);
		drain_pipe(p[0]);
		close(p[0]);
		close(p[1]);
	} else {
		assert_int_equal(atomic_load(&calls), 1); /* one write in flight, no more */
		let_go();
	}
	victim_close(&v, -ENOLCK);
}

/* ------------------------------------------------------------------------
 * (b) two failed renewals, then success: the lease survives
 */

static void test_two_failures_survive(void **state)
{
	struct victim v;
	int64_t end;
	int ro = -1;

	(void)state;
	atomic_store(&eio_left, 2);
	atomic_store(&fault_mode, F_EIO);
	victim_open(&v, 0);
	if (uring_run()) {
		char path[PATH_MAX + 64], gname[LK_GEN_NAME_LEN + 1];
		int64_t until = lh_boot_ms() + LH_SAFETY_MS;

		lk__gen_name(gname, lk_lock_token(v.lk));
		snprintf(path, sizeof(path), "%s/%s/%s", store, NAME, gname);
		ro = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(ro >= 0);
		/* writes to a read-only descriptor fail (EBADF) until it is put back */
		swap_fd(&v, ro);
		while (lease_counter(&v, 1) < 2 && lh_boot_ms() < until)
			lh_sleep_ms(1);
		swap_fd(&v, v.orig_fd);
		assert_true(lease_counter(&v, 1) >= 2);
	}
	/* more than two TTLs, checked all along */
	end = lh_boot_ns() + 2500 * 1000000LL;
	while (lh_boot_ns() < end) {
		int c = lk_lock_check(v.lk);

		if (c != 0)
			fail_msg("lease lost after transient renewal failures: %s (reason %s)",
			         lk_strerror(c), lk_strerror(atomic_load(&lost_reason)));
		lh_sleep_ms(5);
	}
	assert_int_equal(atomic_load(&lost_reason), 0);
	if (!uring_run()) {
		assert_int_equal(atomic_load(&eio_left), 0);
		assert_true(atomic_load(&calls) >= 4);
	}
	assert_true(lease_counter(&v, 0) >= 4); /* renewals went through again */
	assert_true(lk_lock_remaining_ms(v.lk) > 0);
	victim_close(&v, 0);
	if (ro >= 0)
		close(ro);
}

/* ------------------------------------------------------------------------
 * (c) renewals that always fail
 */

static void test_always_failing(void **state)
{
	struct victim v;
	struct loss x;
	int ro = -1;

	(void)state;
	atomic_store(&eio_left, -1);
	atomic_store(&fault_mode, F_EIO);
	victim_open(&v, 0);
	if (uring_run()) {
		char path[PATH_MAX + 64], gname[LK_GEN_NAME_LEN + 1];

		lk__gen_name(gname, lk_lock_token(v.lk));
		snprintf(path, sizeof(path), "%s/%s/%s", store, NAME, gname);
		ro = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(ro >= 0);
		swap_fd(&v, ro);
	}
	watch_loss(&v, 300, &x);
	assert_lost_at_deadline(&v, &x);
	assert_true(lease_counter(&v, 1) >= 2); /* it kept trying until the deadline */
	assert_int_equal(lease_counter(&v, 0), 0);
	if (uring_run())
		swap_fd(&v, v.orig_fd);
	victim_close(&v, -ENOLCK);
	if (ro >= 0)
		close(ro);
}

/* ------------------------------------------------------------------------
 * (d) a renewal that succeeds only after the deadline
 */

static void test_late_success(void **state)
{
	struct victim v;
	struct loss x;
	int p[2] = {-1, -1}, calls_then;
	int64_t end;

	(void)state;
	atomic_store(&fault_mode, F_LATE);
	/* renew every T/2: the first renewal is still in flight at the deadline */
	victim_open(&v, TTL_MS / 2);
	if (uring_run()) {
		full_pipe(p);
		swap_fd(&v, p[1]);
	}
	/* wait for the loss, then let the pending write complete at once */
	end = lh_boot_ms() + LH_SAFETY_MS;
	while (!atomic_load(&lost_reason) && lh_boot_ms() < end)
		lh_sleep_ms(1);
	assert_int_equal(atomic_load(&lost_reason), -ETIMEDOUT);
	if (uring_run())
		drain_pipe(p[0]);
	else
		let_go();
	calls_then = atomic_load(&calls);

	/* nothing brings it back, and nothing more is written */
	watch_loss(&v, 1200, &x);
	assert_lost_at_deadline(&v, &x);
	assert_int_equal(lk_lock_check(v.lk), -ENOLCK);
	assert_int_equal(lk_lock_remaining_ms(v.lk), 0);
	assert_int_equal(lease_counter(&v, 0), 0);
	if (uring_run()) {
		/* at most the one write that was in flight got through late */
		size_t late = drain_pipe(p[0]);

		print_message("late write of %zu bytes after the deadline\n", late);
		assert_true(late == 0 || late == LK_LREC_SIZE);
		swap_fd(&v, v.orig_fd);
		close(p[0]);
		close(p[1]);
	} else {
		assert_int_equal(calls_then, 1);
		assert_int_equal(atomic_load(&calls), calls_then);
	}
	victim_close(&v, -ENOLCK);
}

/*
 * The same, with the reply reaching the engine after the deadline but before
 * the engine has acted on the deadline: nothing but the "too late" rule stands
 * between that reply and a revived lease. The store's engine is driven by
 * hand (LK_STORE_EXTERNAL_ENGINE), so the order of events is exact: the
 * renewal is sent, the deadline passes, the reply arrives, and only then does
 * the engine run again.
 */
static void test_late_success_unnoticed(void **state)
{
	struct lk_store_opts so = LK_STORE_OPTS_INIT;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk__engine *e;
	int64_t end, dl, to;
	int p[2] = {-1, -1}, orig = -1, pending, r;
	uint64_t late, renewals;

	(void)state;
	atomic_store(&fault_mode, F_LATE);
	atomic_store(&lost_reason, 0);
	lh_store_dir(store, sizeof(store), "ft");
	so.flags = LK_STORE_EXTERNAL_ENGINE;
	r = lk_store_open(store, &so, &st);
	assert_int_equal(r, 0);
	o.on_lost = on_lost;
	o.renew_ms = TTL_MS / 2;
	lk = lh_lease_open(st, NAME, TTL_MS, &o);
	assert_int_equal(lk_lock_acquire(lk, LH_SAFETY_MS), 0);
	lh_check_engine(st);
	e = st->engine;
	atomic_store(&victim_fd, lk->lease->f->fd);
	if (uring_run()) {
		full_pipe(p);
		pthread_mutex_lock(&e->mu);
		orig = lk->lease->f->fd;
		lk->lease->f->fd = p[1];
		pthread_mutex_unlock(&e->mu);
	}

	/* drive the engine until the first renewal is on its way */
	end = lh_boot_ms() + LH_SAFETY_MS;
	do {
		assert_int_equal(lk_store_engine_process(st, &to), 0);
		pthread_mutex_lock(&e->mu);
		pending = lk->lease->pending;
		pthread_mutex_unlock(&e->mu);
		if (!pending)
			lh_sleep_ms(5);
	} while (!pending && lh_boot_ms() < end);
	assert_true(pending > 0);
	assert_int_equal(lk_lock_check(lk), 0);
	dl = atomic_load(&lk->lease->deadline_ns);

	if (uring_run()) {
		/* the write lands before the deadline; its reply is read after it */
		lh_sleep_ms((dl - lh_boot_ns()) / 1000000 - 100);
		drain_pipe(p[0]);
		lh_sleep_ms((dl - lh_boot_ns()) / 1000000 + 20);
		assert_int_equal(lk_store_engine_process(st, &to), 0);
	} else {
		/* the worker's write succeeds after the deadline */
		lh_sleep_ms((dl - lh_boot_ns()) / 1000000 + 20);
		let_go();
		end = lh_boot_ms() + LH_SAFETY_MS;
		do {
			lh_sleep_ms(1);
			pthread_mutex_lock(&e->mu);
			pending = lk->lease->pending;
			pthread_mutex_unlock(&e->mu);
		} while (pending && lh_boot_ms() < end);
		assert_int_equal(pending, 0);
		/* the engine has not run since: only the deadline says "lost" */
		assert_int_equal(atomic_load(&lost_reason), 0);
		assert_int_equal(lk_lock_check(lk), -ENOLCK);
		assert_int_equal(lk_store_engine_process(st, &to), 0);
	}
	pthread_mutex_lock(&e->mu);
	late = lk->lease->late;
	renewals = lk->lease->renewals;
	pthread_mutex_unlock(&e->mu);
	assert_int_equal(renewals, 0);
	assert_int_equal(late, 1); /* the reply was seen, and seen as too late */
	assert_int_equal(lk_lock_check(lk), -ENOLCK);
	assert_int_equal(lk_lock_remaining_ms(lk), 0);
	assert_int_equal(atomic_load(&lost_reason), -ETIMEDOUT);

	/* the engine keeps running; the lease stays lost and is not renewed */
	end = lh_boot_ms() + 500;
	while (lh_boot_ms() < end) {
		assert_int_equal(lk_store_engine_process(st, &to), 0);
		assert_int_equal(lk_lock_check(lk), -ENOLCK);
		lh_sleep_ms(10);
	}
	if (uring_run()) {
		pthread_mutex_lock(&e->mu);
		lk->lease->f->fd = orig;
		pthread_mutex_unlock(&e->mu);
		assert_int_equal(drain_pipe(p[0]), 0);
		close(p[0]);
		close(p[1]);
	} else {
		assert_int_equal(atomic_load(&calls), 1);
	}
	assert_int_equal(lk_lock_release(lk), -ENOLCK);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Slow renewals: the deadline runs from when a renewal was sent, not from
 * when it came back, so a renewal that took SLOW_MS buys SLOW_MS less time.
 */

static void fill_pipe(int fd)
{
	char buf[4096];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	while (write(fd, buf, sizeof(buf)) > 0)
		;
	while (write(fd, buf, 1) > 0)
		;
	assert_int_equal(fcntl(fd, F_SETFL, 0), 0);
}

static void test_slow_renewals(void **state)
{
	struct victim v;
	struct lk__engine *e;
	int64_t t_start, end, drained_for = 0, max_left = 0;
	int p[2] = {-1, -1}, refill = 0;
	uint64_t renewals;

	(void)state;
	atomic_store(&fault_mode, F_SLOW);
	/* renew every T/2: the I/O deadline (the renewal interval) exceeds SLOW_MS */
	victim_open(&v, TTL_MS / 2);
	e = v.st->engine;
	if (uring_run()) {
		full_pipe(p);
		swap_fd(&v, p[1]);
	}
	t_start = lh_boot_ns();
	end = t_start + 3000 * 1000000LL;
	while (lh_boot_ns() < end) {
		int64_t now = lh_boot_ns(), t_submit;
		uint64_t left;
		int pending, c = lk_lock_check(v.lk);

		if (c != 0)
			fail_msg("lease lost under slow but successful renewals: %s (reason %s)",
			         lk_strerror(c), lk_strerror(atomic_load(&lost_reason)));
		pthread_mutex_lock(&e->mu);
		pending = v.lk->lease->pending;
		t_submit = v.lk->lease->t_submit;
		pthread_mutex_unlock(&e->mu);
		if (uring_run()) {
			/* let each renewal write through SLOW_MS after it was sent */
			if (pending && t_submit != drained_for &&
			    now >= t_submit + SLOW_MS * 1000000LL) {
				drain_pipe(p[0]);
				drained_for = t_submit;
				refill = 1;
			} else if (!pending && refill) {
				fill_pipe(p[1]);
				refill = 0;
			}
		}
		/* after the first renewal is back, never more than
		 * T*(1-rho) - margin - SLOW_MS left */
		left = lk_lock_remaining_ms(v.lk);
		if (now > t_start + 800 * 1000000LL && (int64_t)left > max_left)
			max_left = (int64_t)left;
		lh_sleep_ms(2);
	}
	pthread_mutex_lock(&e->mu);
	renewals = v.lk->lease->renewals;
	pthread_mutex_unlock(&e->mu);
	print_message("%llu slow renewals; at most %lld ms left after one (limit %lld)\n",
	              (unsigned long long)renewals, (long long)max_left,
	              (long long)(DEADLINE_NS / 1000000 - SLOW_MS));
	assert_true(renewals >= 3);
	if (max_left > DEADLINE_NS / 1000000 - SLOW_MS + 5)
		fail_msg("%lld ms left after a renewal that took %d ms: the deadline ran from the "
		         "reply, not from when the renewal was sent",
		         (long long)max_left, SLOW_MS);
	assert_int_equal(atomic_load(&lost_reason), 0);
	if (uring_run()) {
		swap_fd(&v, v.orig_fd);
		drain_pipe(p[0]);
		close(p[0]);
		close(p[1]);
		victim_close(&v, 0);
	} else {
		victim_close(&v, 0);
	}
}

/* ------------------------------------------------------------------------
 * (e) the record descriptor swapped for a full pipe, on either engine
 */

static void test_pipe_swap(void **state)
{
	struct victim v;
	struct loss x;
	int p[2];

	(void)state;
	victim_open(&v, 0);
	full_pipe(p);
	swap_fd(&v, p[1]);
	watch_loss(&v, 300, &x);
	assert_lost_at_deadline(&v, &x);
	assert_int_equal(lease_counter(&v, 0), 0);
	swap_fd(&v, v.orig_fd);
	drain_pipe(p[0]);
	victim_close(&v, -ENOLCK);
	close(p[0]);
	close(p[1]);
}

/* ------------------------------------------------------------------------
 * (f) the renewal probe finds generation N+1
 */

static void test_probe_finds_next(void **state)
{
	char path[PATH_MAX + 64], gname[LK_GEN_NAME_LEN + 1];
	uint8_t buf[LK_LREC_SIZE], back[LK_LREC_SIZE];
	struct lk_status s = {.size = sizeof(s)};
	struct lk__lrec r;
	struct victim v;
	struct lk_store *other;
	uint64_t tok;
	int64_t t_made, end, at;
	int fd;

	(void)state;
	victim_open(&v, 0);
	lh_sleep_ms(300);
	tok = lk_lock_token(v.lk);

	/* another host's valid record for N+1, written from outside */
	memset(&r, 0, sizeof(r));
	r.gen = tok + 1;
	r.state = LK_LSTATE_HELD;
	r.ttl_ms = TTL_MS;
	r.rho_ppm = RHO_PPM;
	memset(r.boot_id, 0xab, sizeof(r.boot_id));
	r.pid = 1;
	r.nonce = 7;
	r.wall_ns = lh_real_ns();
	r.since_ns = r.wall_ns;
	snprintf(r.host, sizeof(r.host), "other-host");
	snprintf(r.owner, sizeof(r.owner), "intruder");
	lk__lrec_encode(&r, buf);
	lk__gen_name(gname, tok + 1);
	snprintf(path, sizeof(path), "%s/%s/%s", store, NAME, gname);
	t_made = lh_boot_ns();
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);

	end = lh_boot_ms() + LH_SAFETY_MS;
	while (!atomic_load(&lost_reason) && lh_boot_ms() < end)
		lh_sleep_ms(1);
	at = atomic_load(&lost_at);
	assert_int_equal(atomic_load(&lost_reason), -ESTALE);
	assert_true(at > t_made);
	/* within about one renewal interval */
	if (at - t_made > (TTL_MS / 4) * 1000000LL + SLACK_NS)
		fail_msg("probe noticed generation N+1 only after %lld ms",
		         (long long)((at - t_made) / 1000000));
	print_message("stepped down %lld ms after N+1 appeared\n",
	              (long long)((at - t_made) / 1000000));
	assert_int_equal(lk_lock_check(v.lk), -ENOLCK);
	assert_int_equal(atomic_load(&check_in_cb), -ENOLCK);
	assert_int_equal(lk_lock_remaining_ms(v.lk), 0);
	victim_close(&v, -ENOLCK);

	/* the intruder's record is untouched, and is what status reports */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
	close(fd);
	assert_memory_equal(buf, back, sizeof(buf));
	other = lh_store_open(store);
	assert_int_equal(lk_lock_status(other, NAME, &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok + 1);
	assert_string_equal(s.holder.owner, "intruder");
	lk_store_close(other);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_hangs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_failures_survive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_always_failing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_success_unnoticed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_renewals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipe_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_finds_next, setup, teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("lease_faults", tests, NULL, NULL);
}
