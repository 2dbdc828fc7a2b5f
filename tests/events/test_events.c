// SPDX-License-Identifier: MIT
/*
 * Events and counters of a store: what lk_store_opts.on_event and .on_log
 * receive, in which order and from which thread, and what lk_store_stats()
 * counts, for kernel-mode acquires (uncontended, contended, failed), lease
 * acquires and renewals, leases lost by a break (-ESTALE) and by a stopped
 * holder (-ETIMEDOUT), a claim race, an observed expiry and elections.
 *
 * Runs once per heartbeat engine (see CMakeLists.txt): renewal and loss
 * events come from the engine's thread, which differs between the two.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "lharness.h"
#include "lrecord.h"
#include "sys.h"

#define MAXEV 512

struct rec {
	enum lk_event_type type;
	uint64_t seq, token;
	int64_t dur, mono, wall;
	int error, mode, shared;
	int engine_thread; /* not the test's main thread */
	char name[64];
	struct lk_lock *lock;
};

/* What the callbacks saw; they run in the test thread and the engine's. */
static struct {
	pthread_mutex_t mu;
	struct rec ev[MAXEV];
	int n;
	char log[64][256];
	int log_level[64];
	int nlog;
	pthread_t main_thread;
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_event(const struct lk_event *ev, void *ud)
{
	struct rec *r;

	(void)ud;
	pthread_mutex_lock(&seen.mu);
	if (seen.n < MAXEV) {
		r = &seen.ev[seen.n++];
		r->type = ev->type;
		r->seq = ev->seq;
		r->token = ev->token;
		r->dur = ev->duration_ns;
		r->mono = ev->mono_ns;
		r->wall = ev->wall_ns;
		r->error = ev->error;
		r->mode = ev->mode;
		r->shared = ev->shared;
		r->lock = ev->lock;
		r->engine_thread = !pthread_equal(pthread_self(), seen.main_thread);
		snprintf(r->name, sizeof(r->name), "%s", ev->name);
	}
	pthread_mutex_unlock(&seen.mu);
}

static void on_log(int level, const char *msg, void *ud)
{
	(void)ud;
	pthread_mutex_lock(&seen.mu);
	if (seen.nlog < 64) {
		snprintf(seen.log[seen.nlog], sizeof(seen.log[0]), "%s", msg);
		seen.log_level[seen.nlog++] = level;
	}
	pthread_mutex_unlock(&seen.mu);
}

static void reset(void)
{
	pthread_mutex_lock(&seen.mu);
	seen.n = 0;
	seen.nlog = 0;
	seen.main_thread = pthread_self();
	pthread_mutex_unlock(&seen.mu);
}

/* The index of the first log line containing text at level, or -1; and
 * how many lines there are. */
static int log_find(const char *text, int level, int *ret_n)
{
	int found = -1;

	pthread_mutex_lock(&seen.mu);
	for (int k = 0; k < seen.nlog && found < 0; k++)
		if (strstr(seen.log[k], text) && seen.log_level[k] == level)
			found = k;
	if (ret_n)
		*ret_n = seen.nlog;
	pthread_mutex_unlock(&seen.mu);
	return found;
}

static int count(void)
{
	int n;

	pthread_mutex_lock(&seen.mu);
	n = seen.n;
	pthread_mutex_unlock(&seen.mu);
	return n;
}

static struct rec get(int i)
{
	struct rec r;

	pthread_mutex_lock(&seen.mu);
	r = seen.ev[i];
	pthread_mutex_unlock(&seen.mu);
	return r;
}

/* Index of the first event of type at or after from, or -1. */
static int find(int from, enum lk_event_type type)
{
	int n = count();

	for (int i = from; i < n; i++)
		if (get(i).type == type)
			return i;
	return -1;
}

/* Wait (at most the safety bound) for an event of type; its index. */
static int wait_for(enum lk_event_type type)
{
	int64_t end = lh_boot_ms() + LH_SAFETY_MS;
	int i;

	while ((i = find(0, type)) < 0) {
		if (lh_boot_ms() > end)
			fail_msg("no %s event within %d ms", lk_event_name(type), LH_SAFETY_MS);
		lh_sleep_ms(5);
	}
	return i;
}

static void check_order(void)
{
	int n = count();

	for (int i = 1; i < n; i++) {
		struct rec a = get(i - 1), b = get(i);

		/* events of one store are numbered in the order they happened;
		 * the two threads may record them in either order */
		assert_true(a.seq != b.seq);
	}
	for (int i = 0; i < n; i++) {
		struct rec a = get(i);

		assert_true(a.seq >= 1);
		assert_true(a.wall > 0);
		assert_true(a.mono > 0);
	}
}

static struct lk_store *open_store(const char *dir, int log_level)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;
	char err[256] = "";
	int r;

	o.on_event = on_event;
	o.event_userdata = &seen;
	o.on_log = on_log;
	o.log_level = log_level;
	r = lk_store_open_err(dir, &o, &st, err, sizeof(err));
	if (r < 0)
		fail_msg("lk_store_open(%s): %s: %s", dir, lk_strerror(r), err);
	return st;
}

static struct lk_lock *kopen(struct lk_store *st, const char *name)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;

	lo.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_lock_open(st, name, &lo, &lk), 0);
	return lk;
}

static uint64_t bucket_sum(const struct lk_hist *h)
{
	uint64_t s = 0;

	for (unsigned i = 0; i < LK_HIST_BUCKETS; i++)
		s += h->buckets[i];
	return s;
}

static struct lk_store_stats stats(struct lk_store *st)
{
	struct lk_store_stats s;

	memset(&s, 0xff, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_store_stats(st, &s), 0);
	assert_int_equal(bucket_sum(&s.acquire_wait), s.acquire_wait.count);
	assert_int_equal(bucket_sum(&s.hold), s.hold.count);
	assert_int_equal(bucket_sum(&s.renewal), s.renewal.count);
	assert_int_equal(bucket_sum(&s.leadership), s.leadership.count);
	assert_int_equal(bucket_sum(&s.election), s.election.count);
	return s;
}

/* ------------------------------------------------------------------------
 * Kernel mode
 */

static void test_kernel(void **state)
{
	char dir[512];
	struct lk_store *st;
	struct lk_lock *lk, *other;
	struct lk_store_stats s;
	struct rec a, b, c;
	uint64_t tok;
	int64_t before = lh_real_ns();

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-kernel");
	st = open_store(dir, 0);
	lk = kopen(st, "k1");
	assert_int_equal(lk_lock_acquire(lk, -1), 0);
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);

	assert_int_equal(count(), 3);
	a = get(0);
	b = get(1);
	c = get(2);
	assert_int_equal(a.type, LK_EV_ACQUIRE_ATTEMPT);
	assert_int_equal(b.type, LK_EV_ACQUIRED);
	assert_int_equal(c.type, LK_EV_RELEASED);
	assert_int_equal(a.seq, 1);
	assert_int_equal(b.seq, 2);
	assert_int_equal(c.seq, 3);
	assert_string_equal(b.name, "k1");
	assert_int_equal(b.mode, LK_MODE_KERNEL);
	assert_int_equal(b.shared, 0);
	assert_int_equal(b.token, tok);
	assert_int_equal(c.token, tok);
	assert_int_equal(b.error, 0);
	assert_int_equal(c.error, 0);
	assert_ptr_equal(b.lock, lk);
	assert_int_equal(b.engine_thread, 0);
	/* the first try succeeded: no wait, and nothing timed */
	assert_int_equal(b.dur, 0);
	assert_true(c.dur > 0);
	assert_true(a.mono <= b.mono && b.mono <= c.mono);
	assert_true(b.wall >= before - 1000000000LL && b.wall <= lh_real_ns() + 1000000000LL);
	check_order();

	/* INFO by default: acquired and released, not the attempt */
	{
		int n;

		assert_int_equal(log_find("lock k1: acquired (kernel, token ", LK_LOG_INFO, &n), 0);
		assert_int_equal(log_find("lock k1: released (kernel, token ", LK_LOG_INFO, NULL),
		                 1);
		assert_int_equal(n, 2);
	}

	for (int i = 0; i < 4; i++) {
		assert_int_equal(lk_lock_acquire(lk, 1000), 0);
		assert_int_equal(lk_lock_release(lk), 0);
	}
	/* held elsewhere: a try fails with an event and a count */
	other = kopen(st, "k1");
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_acquire(other, 0), -EWOULDBLOCK);
	a = get(count() - 1);
	assert_int_equal(a.type, LK_EV_ACQUIRE_FAILED);
	assert_int_equal(a.error, -EWOULDBLOCK);
	assert_int_equal(a.token, 0);
	assert_ptr_equal(a.lock, other);
	lk_lock_close(lk); /* close releases: counted as a release */
	a = get(count() - 1);
	assert_int_equal(a.type, LK_EV_RELEASED);

	s = stats(st);
	assert_int_equal(s.size, sizeof(s));
	assert_int_equal(s.acquires, 6);
	assert_int_equal(s.releases, 6);
	assert_int_equal(s.acquire_failures, 1);
	assert_int_equal(s.acquires_contended, 0);
	assert_int_equal(s.acquire_wait.count, 6);
	assert_int_equal(s.hold.count, 6);
	assert_true(s.hold.sum_ns > 0);
	assert_int_equal(s.renewal.count, 0);
	assert_int_equal(s.lost, 0);
	lk_lock_close(other);
	lk_store_close(st);
}

struct waiter {
	struct lk_lock *lk;
	int r;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->r = lk_lock_acquire(w->lk, -1);
	return NULL;
}

/* A waiter blocked on the lock file's inode shows in /proc/locks as "->". */
static int blocked_on(const char *path)
{
	struct stat sb;
	char line[256], ino[64];
	FILE *f;
	int found = 0;

	if (stat(path, &sb) < 0 || !(f = fopen("/proc/locks", "re")))
		return 0;
	snprintf(ino, sizeof(ino), ":%llu ", (unsigned long long)sb.st_ino);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "->") && strstr(line, ino))
			found = 1;
	fclose(f);
	return found;
}

static void test_kernel_contended(void **state)
{
	char dir[512], path[600];
	struct lk_store *st;
	struct lk_lock *a;
	struct waiter w = {0};
	struct lk_store_stats s;
	pthread_t t;
	int64_t end;
	int i;
	struct rec ev;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-contended");
	st = open_store(dir, 0);
	a = kopen(st, "c1");
	w.lk = kopen(st, "c1");
	assert_int_equal(lk_lock_acquire(a, -1), 0);
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	snprintf(path, sizeof(path), "%s/c1", dir);
	end = lh_boot_ms() + LH_SAFETY_MS;
	while (!blocked_on(path)) {
		if (lh_boot_ms() > end)
			fail_msg("the waiter never blocked on %s", path);
		lh_sleep_ms(2);
	}
	lh_sleep_ms(20);
	assert_int_equal(lk_lock_release(a), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.r, 0);

	/* the waiter's acquire may be reported before the release that woke
	 * it: each is reported after it happened, by its own thread */
	i = find(0, LK_EV_ACQUIRED);
	assert_true(i >= 0);
	assert_ptr_equal(get(i).lock, a);
	i = find(i + 1, LK_EV_ACQUIRED);
	assert_true(i >= 0);
	ev = get(i);
	assert_ptr_equal(ev.lock, w.lk);
	assert_true(find(0, LK_EV_RELEASED) >= 0);
	assert_int_equal(ev.token, lk_lock_token(w.lk));
	/* it waited at least the 20 ms it was seen blocked */
	assert_true(ev.dur >= 20000000);
	s = stats(st);
	assert_int_equal(s.acquires, 2);
	assert_int_equal(s.acquires_contended, 1);
	assert_true(s.acquire_wait.sum_ns >= 20000000);
	assert_int_equal(lk_lock_release(w.lk), 0);
	lk_lock_close(w.lk);
	lk_lock_close(a);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Lease mode
 */

static struct lk_lock *lopen(struct lk_store *st, const char *name)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;

	lo.mode = LK_MODE_LEASE;
	lo.ttl_ms = 1000;
	assert_int_equal(lk_lock_open(st, name, &lo, &lk), 0);
	return lk;
}

static void test_lease_renewals(void **state)
{
	char dir[512];
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk_store_stats s;
	uint64_t tok;
	int n, renewals = 0, first, last;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-lease");
	st = open_store(dir, LK_LOG_DEBUG);
	lk = lopen(st, "l1");
	assert_int_equal(lk_lock_acquire(lk, 5000), 0);
	lh_check_engine(st);
	tok = lk_lock_token(lk);
	/* renew every 250 ms: wait for three renewals */
	for (int64_t end = lh_boot_ms() + LH_SAFETY_MS;;) {
		s = stats(st);
		if (s.renewals_ok + s.renewals_late + s.renewals_failed >= 3)
			break;
		if (lh_boot_ms() > end)
			fail_msg("fewer than 3 renewals within %d ms", LH_SAFETY_MS);
		lh_sleep_ms(20);
	}
	/* the event of the third renewal may still be on its way */
	lh_sleep_ms(100);
	assert_int_equal(lk_lock_release(lk), 0);

	n = count();
	assert_int_equal(get(0).type, LK_EV_ACQUIRE_ATTEMPT);
	first = find(0, LK_EV_ACQUIRED);
	assert_int_equal(first, 1);
	assert_int_equal(get(1).token, tok);
	assert_int_equal(get(1).mode, LK_MODE_LEASE);
	assert_true(get(1).dur > 0); /* lease acquires are always timed */
	last = n - 1;
	assert_int_equal(get(last).type, LK_EV_RELEASED);
	assert_int_equal(get(last).token, tok);
	assert_int_equal(get(last).error, 0);
	for (int i = first + 1; i < last; i++) {
		struct rec r = get(i);

		assert_true(r.type == LK_EV_RENEWED || r.type == LK_EV_RENEW_LATE);
		assert_int_equal(r.token, tok);
		assert_int_equal(r.error, 0);
		assert_true(r.dur > 0);
		assert_string_equal(r.name, "l1");
		/* from the heartbeat engine */
		assert_int_equal(r.engine_thread, 1);
		renewals++;
	}
	assert_true(renewals >= 3);
	check_order();
	s = stats(st);
	assert_int_equal(s.renewals_ok + s.renewals_late, renewals);
	assert_int_equal(s.renewals_failed, 0);
	assert_int_equal(s.renewal.count, renewals);
	assert_int_equal(s.acquires, 1);
	assert_int_equal(s.releases, 1);
	assert_int_equal(s.lost, 0);
	assert_true(s.hold.sum_ns >= 500000000LL);
	/* debug level: the attempt and the renewals were logged too */
	assert_int_equal(log_find("lock l1: acquire_attempt", LK_LOG_DEBUG, NULL), 0);
	assert_true(log_find("lock l1: renew", LK_LOG_DEBUG, NULL) > 0 ||
	            log_find("lock l1: renew_late", LK_LOG_WARNING, NULL) > 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* Put g.<gen> in the lock directory, as a break or a takeover would. */
static void plant_generation(const char *dir, const char *name, uint64_t gen)
{
	char path[1024], g[LK_GEN_NAME_LEN + 1];
	int fd;

	lk__gen_name(g, gen);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, name, g);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static void test_lease_lost_stale(void **state)
{
	char dir[512];
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk_store_stats s;
	struct rec lost, rel;
	uint64_t tok;
	int i, f;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-stale");
	st = open_store(dir, 0);
	lk = lopen(st, "s1");
	assert_int_equal(lk_lock_acquire(lk, 5000), 0);
	tok = lk_lock_token(lk);
	plant_generation(dir, "s1", tok + 1);
	i = wait_for(LK_EV_LOST);
	lost = get(i);
	assert_int_equal(lost.error, -ESTALE);
	assert_int_equal(lost.token, tok);
	assert_int_equal(lost.engine_thread, 1);
	assert_true(lost.dur > 0);
	/* the renewal that found it came first */
	f = find(0, LK_EV_RENEW_FAILED);
	assert_true(f >= 0 && f < i);
	assert_int_equal(get(f).error, -ESTALE);
	assert_true(get(f).seq < lost.seq);
	assert_int_equal(lk_lock_check(lk), -ENOLCK);
	assert_int_equal(lk_lock_release(lk), -ENOLCK);
	rel = get(count() - 1);
	assert_int_equal(rel.type, LK_EV_RELEASED);
	assert_int_equal(rel.error, -ENOLCK);
	s = stats(st);
	assert_int_equal(s.lost, 1);
	assert_true(s.renewals_failed >= 1);
	assert_int_equal(s.hold.count, 1);
	/* the loss was logged as an error, the failed renewal as a warning */
	assert_true(log_find("lock s1: lost (lease, token ", LK_LOG_ERR, NULL) >= 0);
	assert_true(log_find("lock s1: renew_failed", LK_LOG_WARNING, NULL) >= 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* A child that holds lease NAME in dir and reports its events' types and
 * errors over the pipe: type << 16 | -error. */
static int child_tx = -1;
static uint64_t child_ttl_ms = 1000;

static void child_event(const struct lk_event *ev, void *ud)
{
	(void)ud;
	lh_send(child_tx, (uint64_t)ev->type << 16 | (uint64_t)(-ev->error & 0xffff));
}

static void holder_child(int rx, int tx, void *arg)
{
	const char *dir = arg;
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	uint64_t v;

	child_tx = tx;
	o.on_event = child_event;
	CHILD_EQ(lk_store_open(dir, &o, &st), 0);
	lo.mode = LK_MODE_LEASE;
	lo.ttl_ms = child_ttl_ms;
	CHILD_EQ(lk_lock_open(st, "h1", &lo, &lk), 0);
	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	lh_send(tx, 0);
	lh_send(tx, lk_lock_token(lk));
	lh_recv(rx, &v, LH_SAFETY_MS);
	_exit(0);
}

static void test_lease_lost_stopped(void **state)
{
	char dir[512];
	struct lh_child c;
	uint64_t v;
	int lost = 0, err = 0;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "ev-stopped");
	lh_spawn(&c, holder_child, dir);
	/* its events until the hold is reported */
	do
		v = lh_expect(c.rx, LH_SAFETY_MS);
	while (v != 0);
	lh_expect(c.rx, LH_SAFETY_MS);
	/* stopped past its TTL: on waking, the engine finds the deadline gone */
	kill(c.pid, SIGSTOP);
	lh_sleep_ms(1600);
	kill(c.pid, SIGCONT);
	for (int64_t end = lh_boot_ms() + LH_SAFETY_MS; !lost && lh_boot_ms() < end;) {
		if (lh_recv(c.rx, &v, 1000) < 0)
			continue;
		if ((v >> 16) == LK_EV_LOST) {
			lost = 1;
			err = (int)(v & 0xffff);
		}
	}
	assert_true(lost);
	assert_int_equal(err, ETIMEDOUT);
	lh_send(c.tx, 1);
	assert_int_equal(lh_reap(&c, LH_SAFETY_MS), 0);
}

/*
 * A holder stopped for less than its lease but longer than half a renewal
 * interval: the renewal that fell due meanwhile completes late, still in
 * time. TTL 2 s: renewals every 500 ms, late after 250 ms; stopped 900 ms,
 * so the first renewal due in the pause is at least 400 ms late, while the
 * deadline is at least 1.28 s after the pause began.
 */
static void test_renew_late(void **state)
{
	char dir[512];
	struct lh_child c;
	uint64_t v;
	int late = 0, lost = 0;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "ev-late");
	child_ttl_ms = 2000;
	lh_spawn(&c, holder_child, dir);
	child_ttl_ms = 1000;
	do
		v = lh_expect(c.rx, LH_SAFETY_MS);
	while (v != 0);
	lh_expect(c.rx, LH_SAFETY_MS);
	kill(c.pid, SIGSTOP);
	lh_sleep_ms(900);
	kill(c.pid, SIGCONT);
	for (int64_t end = lh_boot_ms() + LH_SAFETY_MS; !late && lh_boot_ms() < end;) {
		if (lh_recv(c.rx, &v, 1000) < 0)
			continue;
		if ((v >> 16) == LK_EV_RENEW_LATE)
			late = 1;
		if ((v >> 16) == LK_EV_LOST || (v >> 16) == LK_EV_RENEW_FAILED)
			lost = 1;
	}
	assert_false(lost);
	assert_true(late);
	lh_send(c.tx, 1);
	assert_int_equal(lh_reap(&c, LH_SAFETY_MS), 0);
}

/* An observer that takes over a holder stopped past its TTL sees it expire,
 * and counts a contended acquire. */
static void test_expiry_observed(void **state)
{
	char dir[512];
	struct lh_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk_store_stats s;
	struct rec ex, acq;
	uint64_t v, tok_child;
	int i;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "ev-expiry");
	lh_spawn(&c, holder_child, dir);
	do
		v = lh_expect(c.rx, LH_SAFETY_MS);
	while (v != 0);
	tok_child = lh_expect(c.rx, LH_SAFETY_MS);
	kill(c.pid, SIGSTOP);
	reset();
	st = open_store(dir, 0);
	lk = lopen(st, "h1");
	assert_int_equal(lk_lock_acquire(lk, LH_SAFETY_MS), 0);
	i = find(0, LK_EV_EXPIRY_OBSERVED);
	assert_true(i >= 0);
	ex = get(i);
	assert_int_equal(ex.token, tok_child);
	assert_int_equal(ex.error, 0); /* stopped, not dead */
	/* watched unchanged for the TTL at least */
	assert_true(ex.dur >= 1000000000LL);
	acq = get(find(i, LK_EV_ACQUIRED));
	assert_true(acq.token > tok_child);
	assert_true(acq.dur >= ex.dur);
	s = stats(st);
	assert_int_equal(s.expiries_observed, 1);
	assert_int_equal(s.acquires_contended, 1);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	kill(c.pid, SIGKILL);
	lh_reap_now(&c);
}

/*
 * A claim race, made certain: the first link of a generation record is
 * preceded by a rival's whole acquire (another store in this process), so
 * the claimant's link finds its generation taken.
 */
static int (*real_linkat)(int, const char *, int, const char *, int);
static struct lk_lock *rival;
static int rival_r = 1;
static int in_rival;

static int racing_linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
	const char *base = strrchr(to, '/');

	base = base ? base + 1 : to;
	if (rival && !in_rival && !strncmp(base, "g.", 2)) {
		in_rival = 1;
		rival_r = lk_lock_acquire(rival, 0);
		in_rival = 0;
		rival = NULL;
	}
	return real_linkat(ofd, from, nfd, to, flags);
}

static void test_claim_race(void **state)
{
	char dir[512];
	struct lk_store *st, *st2;
	struct lk_lock *lk, *r2;
	struct lk_store_stats s;
	struct rec race;
	uint64_t setup_tok;
	int i;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-race");
	st = open_store(dir, 0);
	st2 = lh_store_open(dir); /* no callbacks: its events are not ours */
	lk = lopen(st, "r1");
	r2 = lopen(st2, "r1");
	/* make the directory, and a released generation */
	assert_int_equal(lk_lock_acquire(lk, 5000), 0);
	setup_tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	reset();

	real_linkat = lk__posix_sys.linkat;
	rival = r2;
	lk__posix_sys.linkat = racing_linkat;
	i = lk_lock_acquire(lk, 0);
	lk__posix_sys.linkat = real_linkat;
	assert_int_equal(rival_r, 0);
	assert_int_equal(i, -EWOULDBLOCK);

	i = find(0, LK_EV_CLAIM_RACE_LOST);
	assert_true(i >= 0);
	race = get(i);
	/* the generation after the released one; the rival holds it (or, on
	 * a machine so loaded that its claim outlasted the lease, a later one
	 * after giving that back) */
	assert_int_equal(race.token, setup_tok + 1);
	assert_true(lk_lock_token(r2) >= race.token);
	assert_string_equal(race.name, "r1");
	assert_int_equal(get(find(i, LK_EV_ACQUIRE_FAILED)).error, -EWOULDBLOCK);
	s = stats(st);
	assert_int_equal(s.claim_races_lost, 1);
	assert_int_equal(s.acquire_failures, 1);
	assert_int_equal(lk_lock_release(r2), 0);
	lk_lock_close(r2);
	lk_lock_close(lk);
	lk_store_close(st2);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Elections
 */

static void test_election_kernel(void **state)
{
	struct lk_election_opts eo = LK_ELECTION_OPTS_INIT;
	char dir[512];
	struct lk_store *st;
	struct lk_election *e = NULL;
	struct lk_store_stats s;
	struct rec el, rs;
	int i;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-elect");
	st = open_store(dir, 0);
	eo.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_election_open(st, "e1", &eo, &e), 0);
	assert_int_equal(lk_election_campaign(e, "v", 1, 1000), 0);
	lh_sleep_ms(10);
	assert_int_equal(lk_election_resign(e), 0);
	i = find(0, LK_EV_ELECTED);
	assert_true(i >= 0);
	el = get(i);
	assert_string_equal(el.name, "e1");
	assert_int_equal(el.token, get(find(0, LK_EV_ACQUIRED)).token);
	assert_true(el.dur > 0);
	i = find(i, LK_EV_RESIGNED);
	assert_true(i >= 0);
	rs = get(i);
	assert_int_equal(rs.token, el.token);
	assert_true(rs.dur >= 10000000);
	/* the lock is released after the term is over */
	assert_true(find(i, LK_EV_RELEASED) > i);
	s = stats(st);
	assert_int_equal(s.terms, 1);
	assert_int_equal(s.resignations, 1);
	assert_int_equal(s.demotions, 0);
	assert_int_equal(s.election.count, 1);
	assert_int_equal(s.leadership.count, 1);
	assert_true(s.leadership.sum_ns >= 10000000);
	lk_election_close(e);
	lk_store_close(st);
}

static void test_election_demoted(void **state)
{
	struct lk_election_opts eo = LK_ELECTION_OPTS_INIT;
	char dir[512];
	struct lk_store *st;
	struct lk_election *e = NULL;
	struct lk_store_stats s;
	struct rec d;
	uint64_t tok;
	int i;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-demote");
	st = open_store(dir, 0);
	eo.mode = LK_MODE_LEASE;
	eo.ttl_ms = 1000;
	assert_int_equal(lk_election_open(st, "e2", &eo, &e), 0);
	assert_int_equal(lk_election_campaign(e, NULL, 0, 5000), 0);
	tok = lk_election_token(e);
	plant_generation(dir, "e2", tok + 1);
	i = wait_for(LK_EV_DEMOTED);
	d = get(i);
	assert_int_equal(d.error, -ESTALE);
	assert_int_equal(d.token, tok);
	assert_int_equal(d.engine_thread, 1);
	/* the lease's loss is what demoted it */
	assert_true(find(0, LK_EV_LOST) >= 0);
	assert_true(find(0, LK_EV_LOST) < i);
	assert_int_equal(lk_election_check(e), -ENOLCK);
	s = stats(st);
	assert_int_equal(s.terms, 1);
	assert_int_equal(s.demotions, 1);
	assert_int_equal(s.leadership.count, 1);
	assert_int_equal(s.lost, 1);
	lk_election_close(e);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * API edges
 */

static void test_api(void **state)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store_stats s = {.size = 0};
	char dir[512];
	struct lk_store *st = NULL;
	struct lk_lock *lk;

	(void)state;
	reset();
	lh_store_dir(dir, sizeof(dir), "ev-api");
	/* a caller built before the observability fields */
	o.size = (uint32_t)LK__STORE_OPTS_V0;
	o.on_event = on_event; /* beyond its size: must be ignored */
	assert_int_equal(lk_store_open(dir, &o, &st), 0);
	lk = kopen(st, "a1");
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	assert_int_equal(count(), 0);
	assert_int_equal(lk_store_stats(st, &s), -EINVAL);
	s.size = (uint32_t)offsetof(struct lk_store_stats, acquire_wait);
	assert_int_equal(lk_store_stats(st, &s), 0);
	assert_int_equal(s.acquires, 1);
	assert_int_equal(s.acquire_failures, 0);
	assert_int_equal(lk_store_stats(NULL, &s), -EINVAL);
	lk_lock_close(lk);
	lk_store_close(st);
	o.size = (uint32_t)LK__STORE_OPTS_V0 - 1;
	assert_int_equal(lk_store_open(dir, &o, &st), -EINVAL);

	assert_string_equal(lk_event_name(LK_EV_RENEW_LATE), "renew_late");
	assert_string_equal(lk_event_name(LK_EV_CLAIM_RACE_LOST), "claim_race_lost");
	assert_string_equal(lk_event_name((enum lk_event_type)999), "unknown");
	assert_int_equal(lk_hist_le_us(0), 100);
	assert_int_equal(lk_hist_le_us(12), 1000000);
	assert_int_equal(lk_hist_le_us(LK_HIST_BUCKETS - 2), 100000000);
	assert_true(lk_hist_le_us(LK_HIST_BUCKETS - 1) == UINT64_MAX);
	for (unsigned i = 1; i < LK_HIST_BUCKETS; i++)
		assert_true(lk_hist_le_us(i) > lk_hist_le_us(i - 1));
}

static void test_hist_buckets(void **state)
{
	struct lk__ahist h;
	struct lk_store_stats s;
	struct lk_store st;

	(void)state;
	memset(&h, 0, sizeof(h));
	lk__hist_add(&h, 0);
	lk__hist_add(&h, 100000);              /* exactly 100 us: bucket 0 (le is inclusive) */
	lk__hist_add(&h, 100001);              /* bucket 1 */
	lk__hist_add(&h, 1500000000);          /* 1.5 s: le 2.5 */
	lk__hist_add(&h, 1000LL * 1000000000); /* above 100 s: the last */
	assert_int_equal(atomic_load(&h.buckets[0]), 2);
	assert_int_equal(atomic_load(&h.buckets[1]), 1);
	assert_int_equal(atomic_load(&h.buckets[13]), 1);
	assert_int_equal(lk_hist_le_us(13), 2500000);
	assert_int_equal(atomic_load(&h.buckets[LK_HIST_BUCKETS - 1]), 1);
	memset(&st, 0, sizeof(st));
	memcpy(&st.stats.hold, &h, sizeof(h));
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_store_stats(&st, &s), 0);
	assert_int_equal(s.hold.count, 5);
	assert_int_equal(s.releases, 5);
	assert_int_equal(s.hold.sum_ns, 100000 + 100001 + 1500000000ULL + 1000000000000ULL);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test_teardown(test_api, lh_teardown),
		cmocka_unit_test_teardown(test_kernel, lh_teardown),
		cmocka_unit_test_teardown(test_kernel_contended, lh_teardown),
		cmocka_unit_test_teardown(test_lease_renewals, lh_teardown),
		cmocka_unit_test_teardown(test_lease_lost_stale, lh_teardown),
		cmocka_unit_test_teardown(test_lease_lost_stopped, lh_teardown),
		cmocka_unit_test_teardown(test_renew_late, lh_teardown),
		cmocka_unit_test_teardown(test_expiry_observed, lh_teardown),
		cmocka_unit_test_teardown(test_claim_race, lh_teardown),
		cmocka_unit_test_teardown(test_election_kernel, lh_teardown),
		cmocka_unit_test_teardown(test_election_demoted, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
