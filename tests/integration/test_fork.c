// SPDX-License-Identifier: MIT
/*
 * Handles across fork(): a child shares its parent's open file
 * descriptions, and with them the parent's OFD locks. If the child could
 * release through an inherited handle it would drop the parent's lock
 * behind the parent's back, so every call on an inherited handle must fail
 * with -ECHILD, and closing it must only free the child's copy.
 *
 * Whether the parent's lock survived is judged by a third process with its
 * own handle, the way any competitor would see it, after the child has not
 * only closed its copies but exited (which closes every descriptor it had).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"

#define LOCK_NAME "forked"

static char store_dir[256];

/* The parent's handles, as the forked child sees them. */
static struct lk_store *parent_st;
static struct lk_lock *parent_lk;
static struct lk_lock *parent_idle; /* a handle that holds nothing */
static uint64_t parent_token;
static pid_t parent_pid;

static int count_name(const char *name, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static void child_inherits(int rx, int tx, void *arg)
{
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st;
	struct lk_lock *lk, *opened = NULL;
	uint64_t v;
	int n = 0;

	/* every call on the inherited handles refuses to act */
	CHILD_EQ(lk_lock_token(parent_lk), 0);
	CHILD_EQ(lk_lock_check(parent_lk), -ECHILD);
	CHILD_EQ(lk_lock_release(parent_lk), -ECHILD);
	CHILD_EQ(lk_lock_acquire(parent_lk, 0), -ECHILD);
	CHILD_EQ(lk_lock_acquire(parent_lk, -1), -ECHILD);
	CHILD_EQ(lk_lock_acquire(parent_lk, 100), -ECHILD);
	CHILD_EQ(lk_lock_cancel(parent_lk), -ECHILD);
	CHILD_EQ(lk_lock_acquire(parent_idle, 0), -ECHILD);
	CHILD_EQ(lk_lock_release(parent_idle), -ECHILD);
	CHILD_EQ(lk_lock_check(parent_idle), -ECHILD);
	CHILD_EQ(lk_lock_token(parent_idle), 0);
	CHILD_EQ(lk_lock_open(parent_st, LOCK_NAME, NULL, &opened), -ECHILD);
	CHILD_ASSERT(opened == NULL);
	CHILD_EQ(lk_lock_status(parent_st, LOCK_NAME, &s), -ECHILD);
	CHILD_EQ(lk_store_list(parent_st, count_name, &n), -ECHILD);
	/* and still refuses after those failures */
	CHILD_EQ(lk_lock_check(parent_lk), -ECHILD);

	/* closing the copies must leave the parent's lock alone */
	lk_lock_close(parent_lk);
	lk_lock_close(parent_idle);
	lk_store_close(parent_st);

	/* a store and handle of the child's own work, and see the parent's hold */
	st = it_store_open(store_dir);
	lk = it_lock_open(st, LOCK_NAME, 0, "child");
	CHILD_EQ(lk_lock_acquire(lk, 0), -EWOULDBLOCK);
	CHILD_EQ(lk_lock_acquire(lk, 200), -ETIMEDOUT);
	CHILD_EQ(lk_lock_status(st, LOCK_NAME, &s), 0);
	CHILD_EQ(s.held, 1);
	CHILD_EQ(s.token, parent_token);
	CHILD_EQ(s.holder.pid, parent_pid);
	CHILD_EQ(lk_store_list(st, count_name, &n), 0);
	CHILD_EQ(n, 1);
	it_send(tx, 1);

	/* once the parent lets go, the child's own handle gets the lock */
	CHILD_EQ(it_recv(rx, &v, IT_SAFETY_MS), 0);
	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	CHILD_ASSERT(lk_lock_token(lk) > parent_token);
	it_send(tx, lk_lock_token(lk));
	CHILD_EQ(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* A competitor: try once, report the result and what status says. */
static void child_probe(int rx, int tx, void *arg)
{
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, "probe");

	it_send(tx, (uint64_t)(int64_t)lk_lock_acquire(lk, 0));
	CHILD_EQ(lk_lock_status(st, LOCK_NAME, &s), 0);
	it_send(tx, (uint64_t)s.held);
	it_send(tx, s.token);
	it_send(tx, (uint64_t)s.holder.pid);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void probe(int *ret_acquire, int *ret_held, uint64_t *ret_token, pid_t *ret_pid)
{
	struct it_child c;
	uint64_t v[4];

	it_spawn(&c, child_probe, NULL);
	for (int i = 0; i < 4; i++)
		assert_int_equal(it_recv(c.rx, &v[i], IT_SAFETY_MS), 0);
	assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
	*ret_acquire = (int)(int64_t)v[0];
	*ret_held = (int)v[1];
	*ret_token = v[2];
	*ret_pid = (pid_t)v[3];
}

static void fork_while_holding(uint32_t flags, const char *tag)
{
	struct it_child c;
	uint64_t v, child_tok;
	uint64_t tok;
	pid_t pid;
	int acq, held;

	it_store_dir(store_dir, sizeof(store_dir), tag);
	parent_st = it_store_open(store_dir);
	parent_lk = it_lock_open(parent_st, LOCK_NAME, flags, "parent");
	parent_idle = it_lock_open(parent_st, LOCK_NAME, 0, "parent-idle");
	assert_int_equal(lk_lock_acquire(parent_lk, 0), 0);
	parent_token = lk_lock_token(parent_lk);
	parent_pid = getpid();

	it_spawn(&c, child_inherits, NULL);
	assert_int_equal(it_recv(c.rx, &v, IT_SAFETY_MS), 0);

	/* the child closed its copies: a third process still finds the lock held */
	assert_int_equal(lk_lock_check(parent_lk), 0);
	probe(&acq, &held, &tok, &pid);
	assert_int_equal(acq, -EWOULDBLOCK);
	assert_int_equal(held, 1);
	assert_int_equal(tok, parent_token);
	assert_int_equal(pid, getpid());

	assert_int_equal(lk_lock_release(parent_lk), 0);
	it_send(c.tx, 1);
	assert_int_equal(it_recv(c.rx, &child_tok, IT_SAFETY_MS), 0);
	assert_true(child_tok > parent_token);
	assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);

	/* the parent's handles still work after the child is gone */
	assert_int_equal(lk_lock_acquire(parent_lk, 1000), 0);
	assert_true(lk_lock_token(parent_lk) > child_tok);
	lk_lock_close(parent_idle);
	lk_lock_close(parent_lk);
	lk_store_close(parent_st);
}

static void test_fork_exclusive(void **state)
{
	fork_while_holding(0, "fork-x");
}

static void test_fork_shared(void **state)
{
	fork_while_holding(LK_LOCK_SHARED, "fork-s");
}

static void child_close_and_exit(int rx, int tx, void *arg)
{
	lk_lock_close(parent_lk);
	lk_lock_close(parent_idle);
	lk_store_close(parent_st);
}

/* The child closes its copies and exits at once, without doing anything else. */
static void test_child_exit_keeps_lock(void **state)
{
	struct it_child c;
	uint64_t tok;
	pid_t pid;
	int acq, held;

	it_store_dir(store_dir, sizeof(store_dir), "fork-exit");
	parent_st = it_store_open(store_dir);
	parent_lk = it_lock_open(parent_st, LOCK_NAME, 0, "parent");
	parent_idle = it_lock_open(parent_st, LOCK_NAME, 0, "parent-idle");
	assert_int_equal(lk_lock_acquire(parent_lk, 0), 0);

	for (int i = 0; i < 3; i++) {
		it_spawn(&c, child_close_and_exit, NULL);
		assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
	}
	probe(&acq, &held, &tok, &pid);
	assert_int_equal(acq, -EWOULDBLOCK);
	assert_int_equal(held, 1);
	assert_int_equal(tok, lk_lock_token(parent_lk));
	assert_int_equal(pid, getpid());

	/* and releasing in the parent really frees it */
	assert_int_equal(lk_lock_release(parent_lk), 0);
	probe(&acq, &held, &tok, &pid);
	assert_int_equal(acq, 0);
	lk_lock_close(parent_idle);
	lk_lock_close(parent_lk);
	lk_store_close(parent_st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fork_exclusive, it_teardown),
		cmocka_unit_test_teardown(test_fork_shared, it_teardown),
		cmocka_unit_test_teardown(test_child_exit_keeps_lock, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
