// SPDX-License-Identifier: MIT
/*
 * Mutual exclusion under contention: many processes, then many threads with
 * a handle each, hammer one exclusive lock and do a read-modify-write of a
 * counter kept in a plain file inside the critical section.
 *
 * Two independent witnesses catch a broken lock. The counter loses updates
 * when two holders overlap (both read n, both write n + 1), so its final
 * value must be exactly the number of acquisitions. Lost updates need an
 * unlucky interleaving, so a flag in shared memory is also swapped in on
 * entry and out on exit: any overlap at all finds it already set. The
 * yield between read and write widens the window a broken lock would leave
 * open. Tokens are checked on the way: each holder must see a token greater
 * than the one the previous holder saw.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"

#define NPROC     8
#define NTHREAD   8
#define NITER     2000
#define LOCK_NAME "counter"

struct witness {
	atomic_int inside;     /* 1 while someone is in the critical section */
	atomic_int overlaps;   /* entries or exits that found the flag wrong */
	atomic_int bad_tokens; /* tokens not above the previous holder's */
	atomic_int errors;     /* lockkit or I/O calls that failed */
	_Atomic uint64_t last_token;
};

struct run {
	char dir[256];
	char counter_path[300];
	struct witness *w;
	struct lk_store *st; /* threads only: shared for lk_lock_open() */
	pthread_barrier_t *start;
};

static uint64_t read_counter(int fd)
{
	uint64_t v = 0;

	if (pread(fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
		return UINT64_MAX;
	return v;
}

/* NITER rounds of acquire, read, yield, write, release. Returns failures. */
static int hammer(struct lk_lock *lk, int fd, struct witness *w)
{
	int bad = 0;

	for (int i = 0; i < NITER; i++) {
		uint64_t v, tok, last;
		int r;

		r = lk_lock_acquire(lk, -1);
		if (r < 0) {
			fprintf(stderr, "acquire: %s (%s)\n", lk_strerror(r), lk_lock_errmsg(lk));
			bad++;
			break;
		}
		if (atomic_exchange(&w->inside, 1) != 0)
			atomic_fetch_add(&w->overlaps, 1);

		tok = lk_lock_token(lk);
		last = atomic_load(&w->last_token);
		if (tok <= last)
			atomic_fetch_add(&w->bad_tokens, 1);
		atomic_store(&w->last_token, tok);

		v = read_counter(fd);
		if (i % 2)
			usleep(0);
		else
			sched_yield();
		v++;
		if (pwrite(fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
			bad++;

		if (atomic_exchange(&w->inside, 0) != 1)
			atomic_fetch_add(&w->overlaps, 1);
		r = lk_lock_release(lk);
		if (r < 0) {
			fprintf(stderr, "release: %s (%s)\n", lk_strerror(r), lk_lock_errmsg(lk));
			bad++;
			break;
		}
	}
	return bad;
}

static void proc_worker(int rx, int tx, void *arg)
{
	struct run *run = arg;
	struct lk_store *st = it_store_open(run->dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, "mutex-proc");
	int fd = open(run->counter_path, O_RDWR | O_CLOEXEC);
	uint64_t go;
	int bad;

	CHILD_ASSERT(fd >= 0);
	it_send(tx, 1);
	CHILD_EQ(it_recv(rx, &go, IT_SAFETY_MS), 0);
	bad = hammer(lk, fd, run->w);
	atomic_fetch_add(&run->w->errors, bad);
	lk_lock_close(lk);
	lk_store_close(st);
	close(fd);
	CHILD_EQ(bad, 0);
}

static void setup_run(struct run *run, const char *tag)
{
	uint64_t zero = 0;
	int fd;

	memset(run, 0, sizeof(*run));
	it_store_dir(run->dir, sizeof(run->dir), tag);
	snprintf(run->counter_path, sizeof(run->counter_path), "%s/.counter", run->dir);
	fd = open(run->counter_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &zero, sizeof(zero), 0), sizeof(zero));
	close(fd);
	run->w = it_shared_mem(sizeof(*run->w));
	memset(run->w, 0, sizeof(*run->w));
}

static uint64_t final_counter(const struct run *run)
{
	int fd = open(run->counter_path, O_RDONLY | O_CLOEXEC);
	uint64_t v;

	assert_true(fd >= 0);
	v = read_counter(fd);
	close(fd);
	return v;
}

static void test_processes(void **state)
{
	struct it_child c[NPROC];
	struct run run;
	uint64_t v;

	setup_run(&run, "mutex-proc");
	for (int i = 0; i < NPROC; i++)
		it_spawn(&c[i], proc_worker, &run);
	for (int i = 0; i < NPROC; i++)
		assert_int_equal(it_recv(c[i].rx, &v, IT_SAFETY_MS), 0);
	for (int i = 0; i < NPROC; i++)
		it_send(c[i].tx, 1);
	for (int i = 0; i < NPROC; i++)
		assert_int_equal(it_reap(&c[i], 50000), 0);

	assert_int_equal(atomic_load(&run.w->errors), 0);
	assert_int_equal(atomic_load(&run.w->overlaps), 0);
	assert_int_equal(atomic_load(&run.w->bad_tokens), 0);
	assert_int_equal(final_counter(&run), (uint64_t)NPROC * NITER);
}

static void *thread_worker(void *arg)
{
	struct run *run = arg;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	int fd, r, bad = 0;

	o.owner = "mutex-thread";
	o.mode = LK_MODE_KERNEL;
	r = lk_lock_open(run->st, LOCK_NAME, &o, &lk);
	fd = open(run->counter_path, O_RDWR | O_CLOEXEC);
	pthread_barrier_wait(run->start);
	if (r < 0 || fd < 0) {
		fprintf(stderr, "thread setup: %s\n", lk_strerror(r < 0 ? r : -errno));
		bad = 1;
	} else {
		bad = hammer(lk, fd, run->w);
	}
	atomic_fetch_add(&run->w->errors, bad);
	lk_lock_close(lk);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* OFD locks belong to the handle, not the process: threads exclude each other. */
static void test_threads(void **state)
{
	pthread_t t[NTHREAD];
	pthread_barrier_t start;
	struct run run;

	setup_run(&run, "mutex-thread");
	run.st = it_store_open(run.dir);
	run.start = &start;
	assert_int_equal(pthread_barrier_init(&start, NULL, NTHREAD), 0);
	for (int i = 0; i < NTHREAD; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_worker, &run), 0);
	for (int i = 0; i < NTHREAD; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	lk_store_close(run.st);

	assert_int_equal(atomic_load(&run.w->errors), 0);
	assert_int_equal(atomic_load(&run.w->overlaps), 0);
	assert_int_equal(atomic_load(&run.w->bad_tokens), 0);
	assert_int_equal(final_counter(&run), (uint64_t)NTHREAD * NITER);
}

/* Two handles of one thread: the second cannot take what the first holds. */
static void test_handles_conflict_in_one_thread(void **state)
{
	char dir[256];
	struct lk_store *st;
	struct lk_lock *a, *b;

	it_store_dir(dir, sizeof(dir), "mutex-self");
	st = it_store_open(dir);
	a = it_lock_open(st, LOCK_NAME, 0, NULL);
	b = it_lock_open(st, LOCK_NAME, 0, NULL);
	assert_int_equal(lk_lock_release(a), -ENOLCK);
	assert_int_equal(lk_lock_acquire(a, 0), 0);
	/* holding already: not a second hold, and not a deadlock on itself */
	assert_int_equal(lk_lock_acquire(a, 0), -EBUSY);
	assert_int_equal(lk_lock_acquire(a, -1), -EBUSY);
	assert_int_equal(lk_lock_acquire(b, 0), -EWOULDBLOCK);
	assert_int_equal(lk_lock_acquire(b, 50), -ETIMEDOUT);
	assert_int_equal(lk_lock_release(a), 0);
	assert_int_equal(lk_lock_release(a), -ENOLCK);
	assert_int_equal(lk_lock_acquire(b, 0), 0);
	assert_true(lk_lock_token(b) > 0);
	assert_int_equal(lk_lock_acquire(a, 0), -EWOULDBLOCK);
	lk_lock_close(b); /* closing releases */
	assert_int_equal(lk_lock_acquire(a, 0), 0);
	lk_lock_close(a);
	lk_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_processes, it_teardown),
		cmocka_unit_test_teardown(test_threads, it_teardown),
		cmocka_unit_test_teardown(test_handles_conflict_in_one_thread, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
