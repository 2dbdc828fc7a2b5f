// SPDX-License-Identifier: MIT
/*
 * Mutual exclusion and fencing tokens between "hosts" that share an NFS
 * export, and between hosts that reach the same directory in different ways.
 *
 *  - Four processes, each with its own nfs:// store (its own libnfs context,
 *    connection and client identity), loop acquire / increment a counter /
 *    release on one lease. The counter must come out exact, a detector in
 *    shared memory must never see two of them inside at once, and every
 *    token must be greater than the one before it.
 *  - A process using the posix backend on the server's own view of the
 *    export (lease mode forced) and one using nfs:// on the same lock exclude
 *    each other in both directions: a try fails, a wait longer than the TTL
 *    times out while the other side renews, a release lets the other in with
 *    a higher token.
 *  - The same loop as the first, with two posix and two nfs:// processes.
 *
 * The counter is read and written through the export's local path with a
 * pause between the read and the write, so that two holders at once would
 * lose an increment as well as trip the detector.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "nharness.h"

#define NAME   "mx"
#define TTL_MS 1000
#define NPROC  4
#define ITER   20

static char local[PATH_MAX], rel[PATH_MAX];
static char nfs_url[PATH_MAX + 512], posix_path[PATH_MAX + 16], counter_path[PATH_MAX + 16];

struct shared {
	atomic_int inside;       /* holders inside the critical section */
	atomic_int overlaps;     /* times someone found another one inside */
	atomic_int token_errors; /* tokens not above the previous one */
	_Atomic uint64_t last_token;
	_Atomic uint64_t first_bad, first_bad_prev;
};

static struct shared *sh;

/* One store directory inside the export, reached both ways, and the
 * counter next to it. */
static void scratch(const char *tag)
{
	char sub[PATH_MAX + 16];

	nh_scratch(tag, local, sizeof(local), rel, sizeof(rel));
	snprintf(posix_path, sizeof(posix_path), "%s/store", local);
	snprintf(counter_path, sizeof(counter_path), "%s/counter", local);
	snprintf(sub, sizeof(sub), "%s/store", rel);
	nh_url(nfs_url, sizeof(nfs_url), sub, NULL);
	if (mkdir(posix_path, 0700) < 0)
		fail_msg("mkdir %s: %s", posix_path, strerror(errno));
	sh = nh_shared(sizeof(*sh));
	memset(sh, 0, sizeof(*sh));
}

static long counter_read(void)
{
	char buf[32];

	if (nh_read_file(counter_path, buf, sizeof(buf)) < 0)
		return 0;
	return atol(buf);
}

/* Read, pause, write: two writers at once lose an increment. */
static void counter_bump(void)
{
	long v = counter_read();
	char buf[32];
	int fd, n;

	nh_sleep_ms(1);
	n = snprintf(buf, sizeof(buf), "%ld\n", v + 1);
	fd = open(counter_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHILD_ASSERT(fd >= 0);
	CHILD_EQ(write(fd, buf, (size_t)n), n);
	close(fd);
}

/* ------------------------------------------------------------------------
 * The acquire / increment / release loop
 */

struct worker_args {
	int use_posix;
};

static void worker(int rx, int tx, void *arg)
{
	const struct worker_args *a = arg;
	struct lk_store *st = nh_store_open(a->use_posix ? posix_path : nfs_url);
	struct lk_lock *lk = nh_lease_open(st, NAME, TTL_MS, NULL);

	nh_send(tx, 1);
	nh_expect(rx, NH_SAFETY_MS); /* everyone starts together */
	for (int i = 0; i < ITER; i++) {
		uint64_t tok, prev;
		int r = lk_lock_acquire(lk, NH_SAFETY_MS);

		if (r < 0)
			nh_child_fail(__FILE__, __LINE__, "%s acquire %d: %s: %s",
				      a->use_posix ? "posix" : "nfs", i, lk_strerror(r),
				      lk_lock_errmsg(lk));
		if (atomic_fetch_add(&sh->inside, 1) != 0)
			atomic_fetch_add(&sh->overlaps, 1);
		tok = lk_lock_token(lk);
		prev = atomic_load(&sh->last_token);
		if (tok <= prev && atomic_fetch_add(&sh->token_errors, 1) == 0) {
			atomic_store(&sh->first_bad, tok);
			atomic_store(&sh->first_bad_prev, prev);
		}
		atomic_store(&sh->last_token, tok);
		counter_bump();
		CHILD_EQ(lk_lock_check(lk), 0);
		atomic_fetch_sub(&sh->inside, 1);
		r = lk_lock_release(lk);
		if (r < 0)
			nh_child_fail(__FILE__, __LINE__, "release %d: %s: %s", i, lk_strerror(r),
				      lk_lock_errmsg(lk));
		nh_sleep_ms(i % 3);
	}
	nh_send(tx, (uint64_t)nh_engine_code(lk_store_engine(st)));
	lk_lock_close(lk);
	lk_store_close(st);
}

/* Use the lock once, so that the loop starts on an existing lock (racing
 * first uses have a test of their own) and its tokens must beat this one. */
static void first_use(void)
{
	struct lk_store *st = nh_store_open(nfs_url);
	struct lk_lock *lk = nh_lease_open(st, NAME, TTL_MS, NULL);

	assert_int_equal(lk_lock_acquire(lk, NH_SAFETY_MS), 0);
	atomic_store(&sh->last_token, lk_lock_token(lk));
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void run_loop(const struct worker_args *args, int n)
{
	struct nh_child c[NPROC];
	int64_t t0;
	struct lk_store *st;
	struct lk_status s = { .size = sizeof(s) };

	first_use();
	for (int i = 0; i < n; i++)
		nh_spawn(&c[i], worker, (void *)&args[i]);
	for (int i = 0; i < n; i++)
		nh_expect(c[i].rx, NH_SAFETY_MS);
	t0 = nh_boot_ns();
	for (int i = 0; i < n; i++)
		nh_send(c[i].tx, 1);
	for (int i = 0; i < n; i++) {
		assert_int_equal(nh_expect(c[i].rx, 2 * NH_SAFETY_MS),
				 nh_engine_code(nh_engine_expected()));
		assert_int_equal(nh_reap(&c[i], NH_SAFETY_MS), 0);
	}
	print_message("%d processes x %d rounds in %lld ms, last token %llu\n", n, ITER,
		      (long long)((nh_boot_ns() - t0) / 1000000),
		      (unsigned long long)atomic_load(&sh->last_token));
	if (atomic_load(&sh->overlaps))
		fail_msg("two holders at once, %d times", atomic_load(&sh->overlaps));
	if (atomic_load(&sh->token_errors))
		fail_msg("%d tokens were not above the previous one (first: %llu after %llu)",
			 atomic_load(&sh->token_errors),
			 (unsigned long long)atomic_load(&sh->first_bad),
			 (unsigned long long)atomic_load(&sh->first_bad_prev));
	assert_int_equal(counter_read(), n * ITER);

	/* the last release is what the server shows to a fresh client */
	st = nh_store_open(nfs_url);
	assert_int_equal(lk_lock_status(st, NAME, &s), 0);
	assert_int_equal(s.mode, LK_MODE_LEASE);
	assert_false(s.held);
	assert_true(s.released);
	assert_int_equal(s.token, atomic_load(&sh->last_token));
	lk_store_close(st);
}

static void test_nfs_clients_exclude(void **state)
{
	struct worker_args a[NPROC];

	(void)state;
	scratch("mx");
	for (int i = 0; i < NPROC; i++)
		a[i].use_posix = 0;
	run_loop(a, NPROC);
}

static void test_mixed_clients_exclude(void **state)
{
	struct worker_args a[NPROC];

	(void)state;
	scratch("mix");
	for (int i = 0; i < NPROC; i++)
		a[i].use_posix = i % 2;
	run_loop(a, NPROC);
}

/* ------------------------------------------------------------------------
 * posix <-> nfs, step by step
 */

enum { CMD_ACQUIRE = 1, CMD_RELEASE, CMD_CHECK, CMD_QUIT };

static uint64_t cmd(int c, int64_t arg)
{
	return (uint64_t)c << 48 | ((uint64_t)arg & 0xffffffffffffull);
}

/* A lock handle driven over the pipe; each command answers result, token. */
static void driven(int rx, int tx, void *arg)
{
	const struct worker_args *a = arg;
	struct lk_store *st = nh_store_open(a->use_posix ? posix_path : nfs_url);
	struct lk_lock *lk = nh_lease_open(st, NAME, TTL_MS, NULL);

	nh_send(tx, 1);
	for (;;) {
		uint64_t m = nh_expect(rx, 4 * NH_SAFETY_MS);
		int c = (int)(m >> 48), r = 0;
		int64_t arg48 = (int64_t)(m & 0xffffffffffffull);

		if (arg48 & 0x800000000000ll)
			arg48 -= 0x1000000000000ll;
		if (c == CMD_QUIT)
			break;
		if (c == CMD_ACQUIRE)
			r = lk_lock_acquire(lk, arg48);
		else if (c == CMD_RELEASE)
			r = lk_lock_release(lk);
		else if (c == CMD_CHECK)
			r = lk_lock_check(lk);
		if (r < 0 && r != -EWOULDBLOCK && r != -ETIMEDOUT)
			fprintf(stderr, "[%s] command %d: %s: %s\n", a->use_posix ? "posix" : "nfs", c,
				lk_strerror(r), lk_lock_errmsg(lk));
		nh_send(tx, (uint64_t)(int64_t)r);
		nh_send(tx, lk_lock_token(lk));
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

static int ask(struct nh_child *c, int what, int64_t arg, uint64_t *ret_token)
{
	int r;

	nh_send(c->tx, cmd(what, arg));
	r = (int)(int64_t)nh_expect(c->rx, 2 * NH_SAFETY_MS);
	*ret_token = nh_expect(c->rx, NH_SAFETY_MS);
	return r;
}

/* holder takes the lease; other cannot, neither at once nor by waiting out
 * more than a TTL; after the release other gets it with a higher token. */
static uint64_t hand_over(struct nh_child *holder, struct nh_child *other, uint64_t prev,
			  const char *dir)
{
	uint64_t tok_h, tok_o, t;

	assert_int_equal(ask(holder, CMD_ACQUIRE, NH_SAFETY_MS, &tok_h), 0);
	if (tok_h <= prev)
		fail_msg("%s: holder's token %llu after %llu", dir, (unsigned long long)tok_h,
			 (unsigned long long)prev);
	assert_int_equal(ask(other, CMD_ACQUIRE, 0, &t), -EWOULDBLOCK);
	assert_int_equal(t, 0);
	/* longer than T*(1+rho): only renewals keep other out now */
	assert_int_equal(ask(other, CMD_ACQUIRE, TTL_MS * 5 / 2, &t), -ETIMEDOUT);
	assert_int_equal(ask(holder, CMD_CHECK, 0, &t), 0);
	assert_int_equal(t, tok_h);
	assert_int_equal(ask(holder, CMD_RELEASE, 0, &t), 0);
	assert_int_equal(ask(other, CMD_ACQUIRE, NH_SAFETY_MS, &tok_o), 0);
	if (tok_o <= tok_h)
		fail_msg("%s: token %llu after %llu", dir, (unsigned long long)tok_o,
			 (unsigned long long)tok_h);
	assert_int_equal(ask(other, CMD_CHECK, 0, &t), 0);
	assert_int_equal(ask(other, CMD_RELEASE, 0, &t), 0);
	assert_int_equal(t, 0);
	return tok_o;
}

static void test_posix_and_nfs_exclude(void **state)
{
	struct worker_args pa = { .use_posix = 1 }, na = { .use_posix = 0 };
	struct nh_child p, n;
	uint64_t tok;

	(void)state;
	scratch("pn");
	nh_spawn(&p, driven, &pa);
	nh_spawn(&n, driven, &na);
	nh_expect(p.rx, NH_SAFETY_MS);
	nh_expect(n.rx, NH_SAFETY_MS);
	tok = hand_over(&p, &n, 0, "posix -> nfs");
	tok = hand_over(&n, &p, tok, "nfs -> posix");
	tok = hand_over(&p, &n, tok, "posix -> nfs again");
	nh_send(p.tx, cmd(CMD_QUIT, 0));
	nh_send(n.tx, cmd(CMD_QUIT, 0));
	assert_int_equal(nh_reap(&p, NH_SAFETY_MS), 0);
	assert_int_equal(nh_reap(&n, NH_SAFETY_MS), 0);
	print_message("posix and nfs:// handed the lease back and forth; last token %llu\n",
		      (unsigned long long)tok);
}

/* ------------------------------------------------------------------------
 * Racing first uses
 */

#define RACE_NAMES 60

struct first_args {
	int use_posix;
	uint64_t n;     /* the name: first<n> */
	int go[2];      /* the round starts when the test closes go[1] */
};

/* One process per user and name, started afresh like a program that takes a
 * lock once: open the store and the lock, say so, wait for the start, then
 * acquire (waiting), hold for a moment and release. Answers the result. */
static void first_user(int rx, int tx, void *arg)
{
	const struct first_args *a = arg;
	struct lk_store *st = nh_store_open(a->use_posix ? posix_path : nfs_url);
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	char name[32], c;
	int r;

	(void)rx;
	close(a->go[1]);
	snprintf(name, sizeof(name), "first%llu", (unsigned long long)a->n);
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = TTL_MS;
	r = lk_lock_open(st, name, &o, &lk);
	nh_send(tx, 1);
	while (read(a->go[0], &c, 1) < 0 && errno == EINTR)
		;
	if (r == 0) {
		r = lk_lock_acquire(lk, NH_SAFETY_MS);
		if (r == 0) {
			if (atomic_fetch_add(&sh->inside, 1) != 0)
				atomic_fetch_add(&sh->overlaps, 1);
			nh_sleep_ms(1);
			atomic_fetch_sub(&sh->inside, 1);
			r = lk_lock_release(lk);
		} else {
			fprintf(stderr, "[%s] first use of %s: %s: %s\n",
				a->use_posix ? "posix" : "nfs", name, lk_strerror(r),
				lk_lock_errmsg(lk));
		}
		lk_lock_close(lk);
	}
	nh_send(tx, (uint64_t)(int64_t)r);
	lk_store_close(st);
}

/*
 * Every lease acquire creates the lock directory when it finds none, so the
 * first users of a name race to create it, through the server and, for the
 * posix processes, behind its back. Each of them must get the lock in turn;
 * an error is a failure of the lock's very first use.
 */
static void test_first_use_race(void **state)
{
	struct first_args a[NPROC];
	struct nh_child c[NPROC];
	int errors[2] = { 0, 0 }, wins = 0;

	(void)state;
	scratch("first");
	for (uint64_t n = 1; n <= RACE_NAMES; n++) {
		int go[2];

		if (pipe(go) < 0)
			fail_msg("pipe: %s", strerror(errno));
		for (int i = 0; i < NPROC; i++) {
			a[i] = (struct first_args){ .use_posix = i % 2, .n = n,
						    .go = { go[0], go[1] } };
			nh_spawn(&c[i], first_user, &a[i]);
		}
		for (int i = 0; i < NPROC; i++)
			nh_expect(c[i].rx, NH_SAFETY_MS);
		close(go[1]); /* all four wake at once */
		close(go[0]);
		for (int i = 0; i < NPROC; i++) {
			int r = (int)(int64_t)nh_expect(c[i].rx, 2 * NH_SAFETY_MS);

			if (r == 0)
				wins++;
			else
				errors[a[i].use_posix]++;
			assert_int_equal(nh_reap(&c[i], NH_SAFETY_MS), 0);
		}
	}
	print_message("%d fresh names, 2 nfs:// and 2 posix first users each: %d acquisitions, "
		      "%d failed over nfs://, %d over posix\n",
		      RACE_NAMES, wins, errors[0], errors[1]);
	assert_int_equal(atomic_load(&sh->overlaps), 0);
	if (errors[0] || errors[1])
		fail_msg("%d acquires of a lock's first use failed (messages above)",
			 errors[0] + errors[1]);
	assert_int_equal(wins, RACE_NAMES * NPROC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_nfs_clients_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_posix_and_nfs_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_mixed_clients_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_first_use_race, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_mutex", tests, NULL, NULL);
}
