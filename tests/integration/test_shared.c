// SPDX-License-Identifier: MIT
/*
 * Shared (reader) holds across processes, and what lk_lock_status() tells
 * an observer about any hold.
 *
 * Shared holders are separate processes here, each with its own store and
 * handle, driven step by step over pipes: "acquire", "release", "try
 * exclusive", and so on. That keeps every step deterministic: a try-acquire
 * is only made once the holds it must collide with are known to be in
 * place.
 *
 * A try-acquire of a shared lock must succeed whenever no exclusive holder
 * exists, however many shared holders come and go at the same moment; the
 * stress case below checks exactly that, since shared holders briefly
 * serialise among themselves while they write the record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"

#define LOCK_NAME    "shared"
#define NREADERS     4
#define STRESS_PROCS 4
#define STRESS_ITERS 3000

/* Commands the test sends a driven child; replies are results or tokens. */
enum {
	CMD_ACQUIRE_SHARED = 1, /* try-acquire shared; reply: 0 or -errno, then the token */
	CMD_ACQUIRE_EXCL,       /* try-acquire exclusive; reply: 0 or -errno, then the token */
	CMD_RELEASE,            /* reply: 0 or -errno */
	CMD_EXIT,
};

static char store_dir[256];

struct driven_arg {
	const char *owner;
};

static void child_driven(int rx, int tx, void *arg)
{
	const struct driven_arg *a = arg;
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *s = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, a->owner);
	struct lk_lock *x = it_lock_open(st, LOCK_NAME, 0, a->owner);
	struct lk_lock *held = NULL;
	uint64_t cmd;

	for (;;) {
		int r;

		CHILD_EQ(it_recv(rx, &cmd, 30000), 0);
		switch (cmd) {
		case CMD_ACQUIRE_SHARED:
		case CMD_ACQUIRE_EXCL:
			CHILD_ASSERT(!held);
			held = cmd == CMD_ACQUIRE_SHARED ? s : x;
			r = lk_lock_acquire(held, 0);
			it_send(tx, (uint64_t)(int64_t)r);
			it_send(tx, lk_lock_token(held));
			if (r < 0)
				held = NULL;
			break;
		case CMD_RELEASE:
			CHILD_ASSERT(held);
			it_send(tx, (uint64_t)(int64_t)lk_lock_release(held));
			held = NULL;
			break;
		case CMD_EXIT:
			lk_lock_close(s);
			lk_lock_close(x);
			lk_store_close(st);
			return;
		default:
			CHILD_ASSERT(!"unknown command");
		}
	}
}

/* Run one command in child c; returns its result, *ret_token if asked. */
static int drive(struct it_child *c, uint64_t cmd, uint64_t *ret_token)
{
	uint64_t r, tok;

	it_send(c->tx, cmd);
	assert_int_equal(it_recv(c->rx, &r, IT_SAFETY_MS), 0);
	if (cmd == CMD_ACQUIRE_SHARED || cmd == CMD_ACQUIRE_EXCL) {
		assert_int_equal(it_recv(c->rx, &tok, IT_SAFETY_MS), 0);
		if ((int64_t)r == 0)
			assert_true(tok > 0);
		else
			assert_int_equal(tok, 0);
		if (ret_token)
			*ret_token = tok;
	}
	return (int)(int64_t)r;
}

static void get_status(struct lk_store *st, struct lk_status *s)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	r = lk_lock_status(st, LOCK_NAME, s);
	if (r < 0)
		fail_msg("lk_lock_status: %s (%s)", lk_strerror(r), lk_store_errmsg(st));
}

static void test_readers_and_writers(void **state)
{
	static const struct driven_arg arg = {"reader"};
	struct it_child c[NREADERS], other;
	struct lk_store *st;
	struct lk_lock *x, *s;
	struct lk_status stat;
	uint64_t tok, last = 0;

	it_store_dir(store_dir, sizeof(store_dir), "shared-rw");
	st = it_store_open(store_dir);
	x = it_lock_open(st, LOCK_NAME, 0, "writer");
	s = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, "reader-main");
	for (int i = 0; i < NREADERS; i++)
		it_spawn(&c[i], child_driven, (void *)&arg);
	it_spawn(&other, child_driven, (void *)&arg);

	/* All readers get in at once, each with a new, higher token. */
	for (int i = 0; i < NREADERS; i++) {
		assert_int_equal(drive(&c[i], CMD_ACQUIRE_SHARED, &tok), 0);
		assert_true(tok > last);
		last = tok;
	}
	assert_int_equal(lk_lock_acquire(s, 0), 0);
	assert_true(lk_lock_token(s) > last);
	last = lk_lock_token(s);
	assert_int_equal(lk_lock_release(s), 0);

	get_status(st, &stat);
	assert_int_equal(stat.exists, 1);
	assert_int_equal(stat.mode, LK_MODE_KERNEL);
	assert_int_equal(stat.held, 1);
	assert_int_equal(stat.shared, 1);
	assert_int_equal(stat.token, last);

	/* No writer while any reader is in, here or in another process. */
	assert_int_equal(lk_lock_acquire(x, 0), -EWOULDBLOCK);
	assert_int_equal(drive(&other, CMD_ACQUIRE_EXCL, NULL), -EWOULDBLOCK);
	for (int i = 0; i < NREADERS; i++) {
		assert_int_equal(drive(&c[i], CMD_RELEASE, NULL), 0);
		get_status(st, &stat);
		if (i < NREADERS - 1) {
			assert_int_equal(stat.held, 1);
			assert_int_equal(stat.shared, 1);
			assert_int_equal(lk_lock_acquire(x, 0), -EWOULDBLOCK);
		} else {
			assert_int_equal(stat.held, 0);
			assert_int_equal(stat.shared, 0);
		}
	}
	assert_int_equal(lk_lock_acquire(x, 0), 0);
	assert_true(lk_lock_token(x) > last);
	last = lk_lock_token(x);

	/* A writer keeps readers and other writers out. */
	get_status(st, &stat);
	assert_int_equal(stat.held, 1);
	assert_int_equal(stat.shared, 0);
	assert_int_equal(stat.token, last);
	for (int i = 0; i < NREADERS; i++)
		assert_int_equal(drive(&c[i], CMD_ACQUIRE_SHARED, NULL), -EWOULDBLOCK);
	assert_int_equal(drive(&other, CMD_ACQUIRE_EXCL, NULL), -EWOULDBLOCK);
	assert_int_equal(lk_lock_acquire(s, 0), -EWOULDBLOCK);
	assert_int_equal(lk_lock_acquire(s, 50), -ETIMEDOUT);
	assert_int_equal(lk_lock_release(x), 0);

	/* And once it is gone, readers come back with higher tokens. */
	assert_int_equal(drive(&c[0], CMD_ACQUIRE_SHARED, &tok), 0);
	assert_true(tok > last);
	assert_int_equal(drive(&c[0], CMD_RELEASE, NULL), 0);
	get_status(st, &stat);
	assert_int_equal(stat.held, 0);
	assert_int_equal(stat.token, tok);

	for (int i = 0; i < NREADERS; i++) {
		it_send(c[i].tx, CMD_EXIT);
		assert_int_equal(it_reap(&c[i], IT_SAFETY_MS), 0);
	}
	it_send(other.tx, CMD_EXIT);
	assert_int_equal(it_reap(&other, IT_SAFETY_MS), 0);
	lk_lock_close(s);
	lk_lock_close(x);
	lk_store_close(st);
}

struct stress {
	atomic_int spurious; /* shared try-acquires that failed */
	atomic_int first_err;
	atomic_long ok;
};

static void child_stress(int rx, int tx, void *arg)
{
	struct stress *sh = arg;
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, "stress");
	uint64_t go;

	it_send(tx, 1);
	CHILD_EQ(it_recv(rx, &go, IT_SAFETY_MS), 0);
	for (int i = 0; i < STRESS_ITERS; i++) {
		int r = lk_lock_acquire(lk, 0);

		if (r < 0) {
			int zero = 0;

			atomic_fetch_add(&sh->spurious, 1);
			atomic_compare_exchange_strong(&sh->first_err, &zero, r);
			continue;
		}
		atomic_fetch_add(&sh->ok, 1);
		CHILD_EQ(lk_lock_release(lk), 0);
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

/* With no writer anywhere, a shared try-acquire has nothing to fail on. */
static void test_shared_tries_never_collide(void **state)
{
	struct stress *sh = it_shared_mem(sizeof(*sh));
	struct it_child c[STRESS_PROCS];
	uint64_t v;

	memset(sh, 0, sizeof(*sh));
	it_store_dir(store_dir, sizeof(store_dir), "shared-stress");
	for (int i = 0; i < STRESS_PROCS; i++)
		it_spawn(&c[i], child_stress, sh);
	for (int i = 0; i < STRESS_PROCS; i++)
		assert_int_equal(it_recv(c[i].rx, &v, IT_SAFETY_MS), 0);
	for (int i = 0; i < STRESS_PROCS; i++)
		it_send(c[i].tx, 1);
	for (int i = 0; i < STRESS_PROCS; i++)
		assert_int_equal(it_reap(&c[i], 40000), 0);
	if (atomic_load(&sh->spurious))
		fail_msg("%d of %d shared try-acquires failed (first: %s) although no "
		         "exclusive holder ever existed",
		         atomic_load(&sh->spurious), STRESS_PROCS * STRESS_ITERS,
		         lk_strerror(atomic_load(&sh->first_err)));
	assert_int_equal(atomic_load(&sh->ok), STRESS_PROCS * STRESS_ITERS);
}

struct holder_arg {
	uint32_t flags;
	const char *owner;
};

/* Hold the lock and tell the test who we are; release when told. */
static void child_holder(int rx, int tx, void *arg)
{
	const struct holder_arg *a = arg;
	struct lk_store *st = it_store_open(store_dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, a->flags, a->owner);
	uint64_t v;

	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	it_send(tx, (uint64_t)getpid());
	it_send(tx, lk_lock_token(lk));
	CHILD_EQ(it_recv(rx, &v, 30000), 0);
	CHILD_EQ(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void check_holder_seen(struct lk_store *st, const struct holder_arg *a,
                              const char *want_owner)
{
	struct lk_status s;
	struct utsname u;
	struct it_child c;
	int64_t before, after;
	uint64_t pid, tok;

	before = it_real_ns();
	it_spawn(&c, child_holder, (void *)a);
	assert_int_equal(it_recv(c.rx, &pid, IT_SAFETY_MS), 0);
	assert_int_equal(it_recv(c.rx, &tok, IT_SAFETY_MS), 0);
	after = it_real_ns();

	get_status(st, &s);
	assert_int_equal(s.exists, 1);
	assert_int_equal(s.held, 1);
	assert_int_equal(s.shared, !!(a->flags & LK_LOCK_SHARED));
	assert_int_equal(s.mode, LK_MODE_KERNEL);
	assert_int_equal(s.token, tok);
	assert_int_equal(s.holder.pid, (int32_t)pid);
	assert_int_equal(s.holder.pid, c.pid);
	assert_string_equal(s.holder.owner, want_owner);
	assert_int_equal(uname(&u), 0);
	assert_string_equal(s.holder.host, u.nodename);
	/* the child took the lock between before and after; allow clock noise */
	assert_true(s.holder.since_ns >= before - 2000000000LL);
	assert_true(s.holder.since_ns <= after + 2000000000LL);

	it_send(c.tx, 1);
	assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
	get_status(st, &s);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.shared, 0);
	assert_int_equal(s.token, tok); /* the last hold, for the record */
	assert_int_equal(s.holder.pid, (int32_t)pid);
}

static void test_status_shows_holder(void **state)
{
	static const struct holder_arg excl = {0, "billing-job-7"};
	static const struct holder_arg shrd = {LK_LOCK_SHARED, "report reader"};
	static const struct holder_arg dflt = {0, NULL};
	static const char long_owner[] = "a-very-long-owner-label-that-goes-on-and-on-well-past-"
					 "the-sixty-three-bytes-kept";
	static const struct holder_arg lng = {0, long_owner};
	struct lk_status s = {.size = sizeof(s)};
	char cut[LK_OWNER_MAX + 1], path[512];
	struct lk_store *st;

	it_store_dir(store_dir, sizeof(store_dir), "shared-status");
	st = it_store_open(store_dir);

	/* a name never used: free, no record, and nothing gets created */
	assert_int_equal(lk_lock_status(st, LOCK_NAME, &s), 0);
	assert_int_equal(s.exists, 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.token, 0);
	it_lock_path(path, sizeof(path), store_dir, LOCK_NAME);
	assert_int_equal(access(path, F_OK), -1);

	check_holder_seen(st, &excl, "billing-job-7");
	check_holder_seen(st, &shrd, "report reader");
	check_holder_seen(st, &dflt, program_invocation_short_name);
	memcpy(cut, long_owner, LK_OWNER_MAX);
	cut[LK_OWNER_MAX] = 0;
	check_holder_seen(st, &lng, cut);
	lk_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_readers_and_writers, it_teardown),
		cmocka_unit_test_teardown(test_shared_tries_never_collide, it_teardown),
		cmocka_unit_test_teardown(test_status_shows_holder, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
