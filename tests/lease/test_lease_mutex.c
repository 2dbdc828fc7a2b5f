// SPDX-License-Identifier: MIT
/*
 * Mutual exclusion of lease-mode locks between real processes, the first
 * invariant of the protocol: at no instant do two holders both believe they
 * hold a lock. Nothing arbitrates a lease but link() and the observers'
 * clocks, so the checks here are the ones a broken protocol fails first:
 *
 *  - processes hammer one lease and update a counter in a file with a plain
 *    read-modify-write; a lost update or an overlap seen by a detector in
 *    shared memory means two holders at once, and the tokens logged inside
 *    the critical section must rise strictly in the order holds happened;
 *  - processes released at the same instant all try once for a free lease:
 *    generation N+1 can be linked only once, so exactly one wins each round;
 *  - a claimant paused between judging the lease free and linking its claim
 *    (held back inside the posix backend's linkat) while others go through
 *    several generations must neither reuse an old token nor hold alongside
 *    the current holder.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lharness.h"
#include "sys.h"

#define NAME        "mx"
#define MX_PROCS    4
#define MX_ROUNDS   25
#define RACE_PROCS  8
#define RACE_ROUNDS 12
/* Long enough that a holder descheduled inside its short critical section on
 * a busy machine keeps its lease: hand-overs here go by release, not expiry. */
#define MX_TTL_MS 2000

/* ------------------------------------------------------------------------
 * Exclusion under contention
 */

struct mx_shared {
	atomic_int inside;   /* holders in the critical section right now */
	atomic_int overlaps; /* times someone entered while another was inside */
	atomic_uint nlog;
	atomic_int engine_bad;
	struct mx_entry {
		uint64_t token;
		int64_t t_enter, t_leave; /* CLOCK_BOOTTIME */
		int64_t remaining_ms;     /* lk_lock_remaining_ms() on entry */
		int pid;
	} log[MX_PROCS * MX_ROUNDS];
};

struct mx_args {
	const char *store;
	const char *counter;
	struct mx_shared *sh;
};

static long read_counter(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		return -1;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

static void mx_child(int rx, int tx, void *arg)
{
	struct mx_args *a = arg;
	struct lk_store *st = lh_store_open(a->store);
	struct lk_lock *lk = lh_lease_open(st, NAME, MX_TTL_MS, NULL);
	int fd = open(a->counter, O_RDWR | O_CLOEXEC);

	(void)rx;
	CHILD_ASSERT(fd >= 0);
	for (int i = 0; i < MX_ROUNDS; i++) {
		struct mx_entry *e;
		char buf[32];
		long v;
		int n, r;

		r = lk_lock_acquire(lk, LH_SAFETY_MS);
		if (r < 0)
			lh_child_fail(__FILE__, __LINE__, "acquire: %s: %s", lk_strerror(r),
			              lk_lock_errmsg(lk));
		if (i == 0 && strcmp(lk_store_engine(st), lh_engine_expected()))
			atomic_fetch_add(&a->sh->engine_bad, 1);
		if (atomic_fetch_add(&a->sh->inside, 1) != 0)
			atomic_fetch_add(&a->sh->overlaps, 1);
		CHILD_EQ(lk_lock_check(lk), 0);
		e = &a->sh->log[atomic_fetch_add(&a->sh->nlog, 1)];
		e->t_enter = lh_boot_ns();
		e->token = lk_lock_token(lk);
		e->remaining_ms = (int64_t)lk_lock_remaining_ms(lk);
		e->pid = (int)getpid();

		/* a read-modify-write that loses updates if two run at once */
		v = read_counter(fd);
		CHILD_ASSERT(v >= 0);
		usleep(300);
		n = snprintf(buf, sizeof(buf), "%ld\n", v + 1);
		CHILD_EQ(pwrite(fd, buf, (size_t)n, 0), n);

		CHILD_EQ(lk_lock_check(lk), 0);
		e->t_leave = lh_boot_ns();
		atomic_fetch_sub(&a->sh->inside, 1);
		r = lk_lock_release(lk);
		if (r < 0)
			lh_child_fail(__FILE__, __LINE__, "release: %s: %s", lk_strerror(r),
			              lk_lock_errmsg(lk));
	}
	close(fd);
	lk_lock_close(lk);
	lk_store_close(st);
	lh_send(tx, 1);
}

static void test_exclusion(void **state)
{
	char store[PATH_MAX], scratch[PATH_MAX], counter[PATH_MAX + 16], buf[64];
	struct mx_shared *sh = lh_shared(sizeof(*sh));
	struct lh_child c[MX_PROCS];
	struct mx_args a;
	int64_t t0 = lh_boot_ms();
	int fd;

	(void)state;
	lh_store_dir(store, sizeof(store), "mx");
	lh_store_dir(scratch, sizeof(scratch), "mxc");
	snprintf(counter, sizeof(counter), "%s/counter", scratch);
	fd = open(counter, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0\n", 2), 2);
	close(fd);

	a.store = store;
	a.counter = counter;
	a.sh = sh;
	for (int i = 0; i < MX_PROCS; i++)
		lh_spawn(&c[i], mx_child, &a);
	for (int i = 0; i < MX_PROCS; i++) {
		uint64_t v;

		assert_int_equal(lh_recv(c[i].rx, &v, 50000), 0);
		assert_int_equal(lh_reap(&c[i], LH_SAFETY_MS), 0);
	}
	print_message("%d lease holds in %lld ms\n", MX_PROCS * MX_ROUNDS,
	              (long long)(lh_boot_ms() - t0));

	assert_int_equal(atomic_load(&sh->engine_bad), 0);
	assert_int_equal(atomic_load(&sh->overlaps), 0);
	assert_true(lh_read_file(counter, buf, sizeof(buf)) > 0);
	assert_int_equal(strtol(buf, NULL, 10), MX_PROCS * MX_ROUNDS);
	assert_int_equal(atomic_load(&sh->nlog), MX_PROCS * MX_ROUNDS);
	for (int i = 1; i < MX_PROCS * MX_ROUNDS; i++) {
		if (sh->log[i].token > sh->log[i - 1].token)
			continue;
		for (int j = i < 4 ? 0 : i - 4; j < MX_PROCS * MX_ROUNDS && j < i + 3; j++)
			print_message("hold %d: pid %d token %llu, in at %lld ms, out at %lld ms, "
			              "%lld ms left on entry\n",
			              j, sh->log[j].pid, (unsigned long long)sh->log[j].token,
			              (long long)((sh->log[j].t_enter - t0 * 1000000) / 1000000),
			              (long long)((sh->log[j].t_leave - t0 * 1000000) / 1000000),
			              (long long)sh->log[j].remaining_ms);
		fail_msg("token %d (%llu) is not above token %d (%llu)", i,
		         (unsigned long long)sh->log[i].token, i - 1,
		         (unsigned long long)sh->log[i - 1].token);
	}

	/* the test process sees the same lease, free, with a higher token */
	{
		struct lk_store *st = lh_store_open(store);
		struct lk_lock *lk = lh_lease_open(st, NAME, MX_TTL_MS, NULL);

		assert_int_equal(lk_lock_acquire(lk, 0), 0);
		lh_check_engine(st);
		assert_true(lk_lock_token(lk) > sh->log[MX_PROCS * MX_ROUNDS - 1].token);
		assert_int_equal(lk_lock_release(lk), 0);
		lk_lock_close(lk);
		lk_store_close(st);
	}
}

/* ------------------------------------------------------------------------
 * Claimants released at one instant
 */

struct race_shared {
	_Atomic uint32_t go;      /* round number the children may start */
	_Atomic uint32_t release; /* round whose winner may release */
	atomic_int done;          /* children that made their attempt */
	atomic_int released;      /* winners that released */
	atomic_int won;
	atomic_int other_error;
	atomic_int engine_bad;
	uint64_t token[RACE_ROUNDS + 1];
};

struct race_args {
	const char *store;
	struct race_shared *sh;
};

static void futex_wait_for(_Atomic uint32_t *a, uint32_t want)
{
	int64_t end = lh_boot_ms() + LH_SAFETY_MS;

	for (;;) {
		uint32_t v = atomic_load(a);
		struct timespec ts = {0, 50000000};

		if (v >= want)
			return;
		if (lh_boot_ms() > end)
			lh_fail(__FILE__, __LINE__, "waited too long for round %u", want);
		syscall(SYS_futex, a, FUTEX_WAIT, v, &ts, NULL, 0);
	}
}

static void futex_set(_Atomic uint32_t *a, uint32_t v)
{
	atomic_store(a, v);
	syscall(SYS_futex, a, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void race_child(int rx, int tx, void *arg)
{
	struct race_args *a = arg;
	struct race_shared *sh = a->sh;
	struct lk_store *st = lh_store_open(a->store);
	struct lk_lock *lk = lh_lease_open(st, NAME, MX_TTL_MS, NULL);

	(void)rx;
	lh_send(tx, 1); /* ready: the store and handle are open */
	for (uint32_t round = 1; round <= RACE_ROUNDS; round++) {
		int r;

		futex_wait_for(&sh->go, round);
		r = lk_lock_acquire(lk, 0);
		if (strcmp(lk_store_engine(st), lh_engine_expected()))
			atomic_fetch_add(&sh->engine_bad, 1);
		if (r == 0) {
			sh->token[round] = lk_lock_token(lk);
			atomic_fetch_add(&sh->won, 1);
		} else if (r != -EWOULDBLOCK) {
			fprintf(stderr, "[child %d] try-acquire: %s: %s\n", (int)getpid(),
			        lk_strerror(r), lk_lock_errmsg(lk));
			atomic_fetch_add(&sh->other_error, 1);
		}
		atomic_fetch_add(&sh->done, 1);
		if (r == 0) {
			futex_wait_for(&sh->release, round);
			CHILD_EQ(lk_lock_check(lk), 0);
			CHILD_EQ(lk_lock_release(lk), 0);
			atomic_fetch_add(&sh->released, 1);
		}
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

static void wait_count(atomic_int *a, int want)
{
	int64_t end = lh_boot_ms() + LH_SAFETY_MS;

	while (atomic_load(a) < want) {
		if (lh_boot_ms() > end)
			fail_msg("only %d of %d children got there", atomic_load(a), want);
		lh_sleep_ms(1);
	}
}

static void test_claim_race(void **state)
{
	char store[PATH_MAX];
	struct race_shared *sh = lh_shared(sizeof(*sh));
	struct lh_child c[RACE_PROCS];
	struct race_args a;

	(void)state;
	lh_store_dir(store, sizeof(store), "race");
	/* the lease exists and is free (RELEASED) before the first round */
	{
		struct lk_store *st = lh_store_open(store);
		struct lk_lock *lk = lh_lease_open(st, NAME, MX_TTL_MS, NULL);

		assert_int_equal(lk_lock_acquire(lk, 0), 0);
		lh_check_engine(st);
		sh->token[0] = lk_lock_token(lk);
		assert_int_equal(lk_lock_release(lk), 0);
		lk_lock_close(lk);
		lk_store_close(st);
	}
	a.store = store;
	a.sh = sh;
	for (int i = 0; i < RACE_PROCS; i++)
		lh_spawn(&c[i], race_child, &a);
	for (int i = 0; i < RACE_PROCS; i++)
		lh_expect(c[i].rx, LH_SAFETY_MS);

	for (uint32_t round = 1; round <= RACE_ROUNDS; round++) {
		atomic_store(&sh->done, 0);
		atomic_store(&sh->won, 0);
		atomic_store(&sh->released, 0);
		futex_set(&sh->go, round);
		wait_count(&sh->done, RACE_PROCS);
		if (atomic_load(&sh->won) != 1)
			fail_msg("round %u: %d of %d claimants won a free lease", round,
			         atomic_load(&sh->won), RACE_PROCS);
		assert_int_equal(atomic_load(&sh->other_error), 0);
		assert_true(sh->token[round] > sh->token[round - 1]);
		futex_set(&sh->release, round);
		wait_count(&sh->released, 1);
	}
	for (int i = 0; i < RACE_PROCS; i++)
		assert_int_equal(lh_reap(&c[i], LH_SAFETY_MS), 0);
	assert_int_equal(atomic_load(&sh->engine_bad), 0);
}

/* ------------------------------------------------------------------------
 * A claimant paused between judging a lease free and linking its claim
 */

#define PAUSE_CYCLES 5

static int pause_rx = -1, pause_tx = -1, paused_once;
static int (*real_linkat)(int, const char *, int, const char *, int);

/* The first link is the claim: hold it back until the test says go. */
static int pausing_linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
	if (!paused_once) {
		paused_once = 1;
		lh_send(pause_tx, 1);
		lh_expect(pause_rx, LH_SAFETY_MS);
	}
	return real_linkat(ofd, from, nfd, to, flags);
}

static void paused_child(int rx, int tx, void *arg)
{
	const char *dir = arg;
	struct lk_store *st;
	struct lk_lock *lk;
	int r;

	lh_expect(rx, LH_SAFETY_MS); /* the lock exists */
	st = lh_store_open(dir);
	lk = lh_lease_open(st, NAME, 1000, NULL);
	pause_rx = rx;
	pause_tx = tx;
	real_linkat = lk__posix_sys.linkat;
	lk__posix_sys.linkat = pausing_linkat;
	r = lk_lock_acquire(lk, 1500);
	lh_send(tx, (uint64_t)(int64_t)r);
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));
	if (r == 0)
		lh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

/*
 * While the paused claimant waits to link generation N+1, others go through
 * several generations, clean-up deletes the old ones, and one holds the
 * newest. The claimant's late link re-creates a deleted generation; it must
 * notice (its predecessor is gone), and must not climb from there to a
 * token that was already handed out, let alone hold while the newest holder
 * still does.
 */
static void test_paused_claimant(void **state)
{
	char store[PATH_MAX];
	struct lk_store *st;
	struct lk_lock *lk;
	struct lh_child c;
	uint64_t tok, tok_c;
	int64_t r;
	int code;

	(void)state;
	lh_store_dir(store, sizeof(store), "pause");
	/* forked before this process starts threads (a thread sanitizer
	 * cannot follow a fork from a threaded process) */
	lh_spawn(&c, paused_child, store);
	st = lh_store_open(store);
	lk = lh_lease_open(st, NAME, 1000, NULL);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	lh_check_engine(st);
	assert_int_equal(lk_lock_release(lk), 0);
	lh_send(c.tx, 1);
	lh_expect(c.rx, LH_SAFETY_MS); /* judged free, about to link */
	for (int i = 0; i < PAUSE_CYCLES; i++) {
		assert_int_equal(lk_lock_acquire(lk, LH_SAFETY_MS), 0);
		assert_int_equal(lk_lock_release(lk), 0);
	}
	assert_int_equal(lk_lock_acquire(lk, LH_SAFETY_MS), 0);
	tok = lk_lock_token(lk);
	lh_send(c.tx, 1); /* go */

	r = (int64_t)lh_expect(c.rx, LH_SAFETY_MS);
	tok_c = lh_expect(c.rx, LH_SAFETY_MS);
	code = (int)lh_expect(c.rx, LH_SAFETY_MS);
	if (r == 0) {
		int check = (int)(int64_t)lh_expect(c.rx, LH_SAFETY_MS);

		fail_msg("the paused claimant got token %llu (check %d) while token %llu was held "
		         "and renewed (check %d)",
		         (unsigned long long)tok_c, check, (unsigned long long)tok,
		         lk_lock_check(lk));
	}
	assert_int_equal(r, -ETIMEDOUT);
	assert_int_equal(code, lh_engine_code(lh_engine_expected()));
	assert_int_equal(lk_lock_check(lk), 0);
	assert_int_equal(lh_reap(&c, LH_SAFETY_MS), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_exclusion, lh_teardown),
		cmocka_unit_test_teardown(test_claim_race, lh_teardown),
		cmocka_unit_test_teardown(test_paused_claimant, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("lease_mutex", tests, NULL, NULL);
}
