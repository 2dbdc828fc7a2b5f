// SPDX-License-Identifier: MIT
/*
 * Holders that die without releasing: the kernel drops an OFD lock when the
 * last descriptor of its open file description goes away, so a SIGKILLed
 * holder must free the lock at once for whoever is waiting, and the token
 * sequence must carry on above everything the dead holder was given.
 *
 * A holder can also die half-way through writing its record into the
 * shared mapping. The record format keeps two slots for that reason, and a
 * reader must fall back to the older, intact one. The random kills below
 * land mostly in syscalls, so they rarely tear a record; a deterministic
 * case writes half a record into the slot the next holder would use, which
 * is exactly what a writer killed mid-copy leaves behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include "krecord.h"

#define LOCK_NAME "crash"
#define NKILLS    200

static char store_dir[256];

/* Take the lock, report the token, then wait to be killed. */
static void child_hold(int rx, int tx, void *arg)
{
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, "doomed");
	uint64_t v;

	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	it_send(tx, lk_lock_token(lk));
	it_recv(rx, &v, 60000);
	_exit(3); /* never reached in a passing run: the test kills us first */
}

struct killer {
	const char *path;
	struct lk_lock *lk; /* the test's handle, blocked in acquire */
	pid_t victim;
	int saw_waiter;
	atomic_int done;
	int cancelled;
};

/*
 * Kill the holder once the test is asleep in the kernel; if the lock never
 * comes through, cancel the test's acquire so that it fails, not hangs.
 */
static void *killer_thread(void *arg)
{
	struct killer *k = arg;
	int64_t end;

	k->saw_waiter = it_wait_blocked(k->path, 1, IT_SAFETY_MS) == 0;
	kill(k->victim, SIGKILL);
	end = it_mono_ms() + IT_SAFETY_MS;
	while (!atomic_load(&k->done) && it_mono_ms() < end)
		usleep(1000);
	if (!atomic_load(&k->done)) {
		k->cancelled = 1;
		lk_lock_cancel(k->lk);
	}
	return NULL;
}

static void test_killed_holder_frees_blocked_waiter(void **state)
{
	struct lk_status s = {.size = sizeof(s)};
	struct killer k = {0};
	struct it_child c;
	struct lk_store *st;
	struct lk_lock *lk;
	char path[512];
	pthread_t t;
	uint64_t dead_tok;
	int r;

	it_store_dir(store_dir, sizeof(store_dir), "crash-wait");
	it_lock_path(path, sizeof(path), store_dir, LOCK_NAME);
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, "survivor");

	it_spawn(&c, child_hold, NULL);
	assert_int_equal(it_recv(c.rx, &dead_tok, IT_SAFETY_MS), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), -EWOULDBLOCK);

	k.path = path;
	k.lk = lk;
	k.victim = c.pid;
	assert_int_equal(pthread_create(&t, NULL, killer_thread, &k), 0);
	r = lk_lock_acquire(lk, -1);
	atomic_store(&k.done, 1);
	pthread_join(t, NULL);

	assert_true(k.saw_waiter); /* the acquire really slept in the kernel */
	assert_false(k.cancelled);
	assert_int_equal(r, 0);
	assert_true(lk_lock_token(lk) > dead_tok);
	assert_int_equal(it_reap(&c, IT_SAFETY_MS), 128 + SIGKILL);

	assert_int_equal(lk_lock_status(st, LOCK_NAME, &s), 0);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.token, lk_lock_token(lk));
	assert_int_equal(s.holder.pid, getpid());
	assert_string_equal(s.holder.owner, "survivor");
	lk_lock_close(lk);
	lk_store_close(st);
}

struct loop_shm {
	_Atomic uint64_t max_token; /* highest token a looping child was given */
	atomic_int ready;
	atomic_long rounds;
};

/* Acquire and release as fast as possible, exclusive and shared in turn. */
static void child_loop(int rx, int tx, void *arg)
{
	struct loop_shm *sh = arg;
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *x = it_lock_open(st, LOCK_NAME, 0, "looper-x");
	struct lk_lock *s = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, "looper-s");

	atomic_store(&sh->ready, 1);
	for (unsigned long i = 0;; i++) {
		struct lk_lock *lk = i % 4 == 3 ? s : x;

		CHILD_EQ(lk_lock_acquire(lk, -1), 0);
		atomic_store(&sh->max_token, lk_lock_token(lk));
		CHILD_EQ(lk_lock_release(lk), 0);
		atomic_fetch_add(&sh->rounds, 1);
	}
}

static void test_random_kills(void **state)
{
	struct loop_shm *sh = it_shared_mem(sizeof(*sh));
	struct lk_store *st;
	struct lk_lock *lk;
	unsigned int seed = (unsigned int)getpid();
	uint64_t last = 0;
	long mid_acquire = 0;

	it_store_dir(store_dir, sizeof(store_dir), "crash-loop");
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, "checker");

	for (int i = 0; i < NKILLS; i++) {
		struct lk_status s = {.size = sizeof(s)};
		struct it_child c;
		int64_t end;
		int r;

		atomic_store(&sh->ready, 0);
		it_spawn(&c, child_loop, sh);
		end = it_mono_ms() + IT_SAFETY_MS;
		while (!atomic_load(&sh->ready) && it_mono_ms() < end)
			usleep(100);
		assert_true(atomic_load(&sh->ready));
		usleep(rand_r(&seed) % 2000);
		kill(c.pid, SIGKILL);
		assert_int_equal(it_reap(&c, IT_SAFETY_MS), 128 + SIGKILL);

		r = lk_lock_status(st, LOCK_NAME, &s);
		if (r < 0)
			fail_msg("kill %d: lk_lock_status: %s (%s)", i, lk_strerror(r),
			         lk_store_errmsg(st));
		assert_int_equal(s.exists, 1);
		assert_int_equal(s.held, 0);
		assert_true(s.token >= atomic_load(&sh->max_token));
		assert_true(s.token >= last);

		r = lk_lock_acquire(lk, 0);
		if (r < 0)
			fail_msg("kill %d: acquire after the holder died: %s (%s)", i,
			         lk_strerror(r), lk_lock_errmsg(lk));
		if (lk_lock_token(lk) <= s.token || lk_lock_token(lk) <= last)
			fail_msg("kill %d: token %llu not above %llu", i,
			         (unsigned long long)lk_lock_token(lk),
			         (unsigned long long)(s.token > last ? s.token : last));
		/* killed after writing its record, before acquire returned */
		mid_acquire += s.token > atomic_load(&sh->max_token);
		last = lk_lock_token(lk);
		assert_int_equal(lk_lock_release(lk), 0);
	}
	print_message("%d kills over %ld rounds, %ld of them inside an acquire\n", NKILLS,
	              atomic_load(&sh->rounds), mid_acquire);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* What a writer killed after copying part of its record leaves behind. */
static void test_torn_record(void **state)
{
	struct lk_status s = {.size = sizeof(s)};
	uint8_t file[LK_KFILE_SIZE], slot[LK_KSLOT_SIZE];
	struct lk__krec cur, torn;
	struct lk_store *st;
	struct lk_lock *lk;
	char path[512];
	uint64_t tok;
	int fd, idx;

	it_store_dir(store_dir, sizeof(store_dir), "crash-torn");
	it_lock_path(path, sizeof(path), store_dir, LOCK_NAME);
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, "tearer");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(lk_lock_acquire(lk, 0), 0);
		assert_int_equal(lk_lock_release(lk), 0);
	}
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);

	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, file, sizeof(file), 0), sizeof(file));
	idx = lk__kfile_pick(file, sizeof(file), &cur);
	assert_true(idx >= 0);
	assert_int_equal(cur.token, tok);

	/* The next record, cut short, in the slot the next holder writes. */
	torn = cur;
	torn.seq++;
	torn.token++;
	torn.pid = 1;
	snprintf(torn.owner, sizeof(torn.owner), "torn");
	lk__krec_encode(&torn, slot);
	assert_int_equal(
		pwrite(fd, slot, LK_KSLOT_SIZE / 2, idx == 0 ? LK_KSLOT1_OFF : LK_KSLOT0_OFF),
		LK_KSLOT_SIZE / 2);
	close(fd);

	assert_int_equal(lk_lock_status(st, LOCK_NAME, &s), 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.token, tok);
	assert_string_equal(s.holder.owner, "tearer");

	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > tok);
	tok = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	assert_int_equal(lk_lock_status(st, LOCK_NAME, &s), 0);
	assert_int_equal(s.token, tok);
	assert_string_equal(s.holder.owner, "tearer");
	lk_lock_close(lk);
	lk_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_killed_holder_frees_blocked_waiter, it_teardown),
		cmocka_unit_test_teardown(test_random_kills, it_teardown),
		cmocka_unit_test_teardown(test_torn_record, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
