// SPDX-License-Identifier: MIT
/*
 * An I/O error in every namespace and record operation of the nfs://
 * backend, in lease mode.
 *
 * The store's backend vtable is replaced by a copy whose operations count
 * their calls and fail with EIO at the armed call of one operation: once (a
 * transient error) or from then on (a server that stays broken). Every
 * operation is swept from its first call on, until a run no longer reaches
 * that many calls. A run does what a user does with a lock: status, open,
 * try to acquire, check and look at it while held, release, close, list.
 * The heartbeat engine's own renewals (renew_start, service) are left
 * alone, and only calls from the test's own thread count, so the faults hit
 * what the caller asked for and nothing else.
 *
 * Every failure must come back as a negative errno with a message. After a
 * run the fault is removed and the same lock must work again with a token
 * above every earlier one: a failure may leave a lease held until it
 * expires, never corrupt the lock. And a lease held by another process must
 * never be reported free nor be acquired, whatever fails in the observer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "lockkit/backend.h"
#include "nharness.h"

#define TTL_MS      1000
#define HOLD_TTL_MS 3000
/* Later calls of an operation only repeat what earlier ones covered. */
#define MAX_N 30

enum {
	O_LIST,
	O_ENTRY,
	O_MKDIR,
	O_RMDIR,
	O_WRITE_NEW,
	O_LINK,
	O_RENAME,
	O_UNLINK,
	O_READ,
	O_STAT,
	O_READDIR,
	O_OPEN_RECORD,
	O_WRITE_RECORD,
	O_COUNT
};

static const char *const op_names[O_COUNT + 1] = {
	"list",   "entry", "mkdir", "rmdir",   "write_new",   "link",         "rename",
	"unlink", "read",  "stat",  "readdir", "open_record", "write_record", "nothing",
};

static const struct lk_backend *real;
static struct lk_backend wrapped;
static pthread_t armed_thread;
static int armed = -1; /* the operation that fails, or -1 */
static int nth;        /* at its nth call */
static int lasting;    /* and at every later one */
static int calls[O_COUNT];
static int runs, failures;

static int fault(int which)
{
	if (armed < 0 || !pthread_equal(pthread_self(), armed_thread))
		return 0;
	calls[which]++;
	if (which != armed)
		return 0;
	return calls[which] == nth || (lasting && calls[which] > nth);
}

/* The error the armed call returns: EIO, flagged as the server not
 * answering when as_timeout is set (what the backend says of a timeout). */
static int as_timeout;

static int eio(struct lk_err *err)
{
	if (as_timeout && err) {
		snprintf(err->msg, sizeof(err->msg), "injected: the server did not answer in time");
		err->transient = 1;
	}
	return -EIO;
}

static void arm(int which, int n, int pers)
{
	memset(calls, 0, sizeof(calls));
	armed_thread = pthread_self();
	nth = n;
	lasting = pers;
	armed = which;
}

static void disarm(void)
{
	armed = -1;
}

static int w_list(struct lk_bstore *bs, lk_list_fn fn, void *ud, struct lk_err *err)
{
	return fault(O_LIST) ? eio(err) : real->list(bs, fn, ud, err);
}

static int w_entry(struct lk_bstore *bs, const char *name, struct lk_err *err)
{
	return fault(O_ENTRY) ? eio(err) : real->entry(bs, name, err);
}

static int w_mkdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	return fault(O_MKDIR) ? eio(err) : real->mkdir(bs, path, err);
}

static int w_rmdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	return fault(O_RMDIR) ? eio(err) : real->rmdir(bs, path, err);
}

static int w_write_new(struct lk_bstore *bs, const char *path, const void *buf, size_t len,
                       uint64_t *ret_fileid, struct lk_err *err)
{
	return fault(O_WRITE_NEW) ? eio(err) : real->write_new(bs, path, buf, len, ret_fileid, err);
}

static int w_link(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err)
{
	return fault(O_LINK) ? eio(err) : real->link(bs, from, to, err);
}

static int w_rename(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err)
{
	return fault(O_RENAME) ? eio(err) : real->rename(bs, from, to, err);
}

static int w_unlink(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	return fault(O_UNLINK) ? eio(err) : real->unlink(bs, path, err);
}

static int w_read(struct lk_bstore *bs, const char *path, void *buf, size_t len,
                  uint64_t *ret_fileid, struct lk_err *err)
{
	return fault(O_READ) ? eio(err) : real->read(bs, path, buf, len, ret_fileid, err);
}

static int w_stat(struct lk_bstore *bs, const char *path, uint64_t *ret_fileid, struct lk_err *err)
{
	return fault(O_STAT) ? eio(err) : real->stat(bs, path, ret_fileid, err);
}

static int w_readdir(struct lk_bstore *bs, const char *path, lk_list_fn fn, void *ud,
                     struct lk_err *err)
{
	return fault(O_READDIR) ? eio(err) : real->readdir(bs, path, fn, ud, err);
}

static int w_open_record(struct lk_bstore *bs, const char *dir, const char *name,
                         struct lk_bfile **ret, struct lk_err *err)
{
	return fault(O_OPEN_RECORD) ? eio(err) : real->open_record(bs, dir, name, ret, err);
}

static int w_write_record(struct lk_bfile *f, const void *buf, size_t len, struct lk_err *err)
{
	return fault(O_WRITE_RECORD) ? eio(err) : real->write_record(f, buf, len, err);
}

/* Open the store at url and put the wrapped operations under it. */
static struct lk_store *open_wrapped(const char *url)
{
	struct lk_store *st = NULL;
	char msg[256];
	int r;

	r = lk_store_open_err(url, NULL, &st, msg, sizeof(msg));
	if (r < 0)
		fail_msg("store %s: %s: %s", url, lk_strerror(r), msg);
	if (!real) {
		real = st->be;
		wrapped = *real;
		wrapped.list = real->list ? w_list : NULL;
		wrapped.entry = real->entry ? w_entry : NULL;
		wrapped.mkdir = real->mkdir ? w_mkdir : NULL;
		wrapped.rmdir = real->rmdir ? w_rmdir : NULL;
		wrapped.write_new = real->write_new ? w_write_new : NULL;
		wrapped.link = real->link ? w_link : NULL;
		wrapped.rename = real->rename ? w_rename : NULL;
		wrapped.unlink = real->unlink ? w_unlink : NULL;
		wrapped.read = real->read ? w_read : NULL;
		wrapped.stat = real->stat ? w_stat : NULL;
		wrapped.readdir = real->readdir ? w_readdir : NULL;
		wrapped.open_record = real->open_record ? w_open_record : NULL;
		wrapped.write_record = real->write_record ? w_write_record : NULL;
	}
	assert_ptr_equal(st->be, real);
	st->be = &wrapped;
	return st;
}

static void record_failure(const char *call, int r, const char *msg)
{
	if (r >= 0)
		return;
	failures++;
	if (getenv("LK_EIO_TRACE"))
		fprintf(stderr, "trace %s %s %d: %s -> %s | %s\n", op_names[armed],
		        lasting ? "lasting" : "once", nth, call, lk_strerror(r), msg);
	if (!msg || !msg[0])
		fail_msg("%s failed with %s but left no message (%s fault at call %d%s)", call,
		         lk_strerror(r), op_names[armed < 0 ? O_COUNT : armed], nth,
		         lasting ? " and later" : "");
}

/* "op:runs" for every operation a sweep reached, for the summary line. */
static void per_op(char *buf, size_t len, const int *reached)
{
	size_t off = 0;

	buf[0] = 0;
	for (int i = 0; i < O_COUNT && off < len; i++)
		if (reached[i])
			off += snprintf(buf + off, len - off, " %s:%d", op_names[i], reached[i]);
}

static int list_cb(const char *name, void *userdata)
{
	(void)name;
	(*(int *)userdata)++;
	return 0;
}

/*
 * One run through a lock's life under the armed fault. other_token != 0:
 * another process holds the lock with that token. Returns the token of the
 * run's acquisition, 0 if none.
 */
static uint64_t one_run(const char *url, const char *name, uint64_t other_token)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = open_wrapped(url);
	struct lk_lock *lk = NULL;
	uint64_t tok = 0;
	int r, n = 0;

	lo.mode = LK_MODE_LEASE;
	lo.ttl_ms = TTL_MS;
	runs++;
	r = lk_lock_status(st, name, &s);
	record_failure("lk_lock_status", r, lk_store_errmsg(st));
	if (r == 0 && other_token && (!s.held || s.token != other_token))
		fail_msg("%s held elsewhere with token %llu reported %s, token %llu (%s fault at "
		         "call %d%s)",
		         name, (unsigned long long)other_token, s.held ? "held" : "FREE",
		         (unsigned long long)s.token, op_names[armed], nth,
		         lasting ? " and later" : "");

	r = lk_lock_open(st, name, &lo, &lk);
	record_failure("lk_lock_open", r, lk_store_errmsg(st));
	if (r == 0) {
		r = lk_lock_acquire(lk, 0);
		if (other_token && r == 0)
			fail_msg("%s acquired while held elsewhere (%s fault at call %d%s)", name,
			         op_names[armed], nth, lasting ? " and later" : "");
		if (!other_token || r != -EWOULDBLOCK)
			record_failure("lk_lock_acquire", r, lk_lock_errmsg(lk));
		if (r == 0) {
			tok = lk_lock_token(lk);
			assert_true(tok > 0);
			r = lk_lock_check(lk);
			record_failure("lk_lock_check", r, lk_lock_errmsg(lk));
			r = lk_lock_status(st, name, &s);
			record_failure("lk_lock_status (held)", r, lk_store_errmsg(st));
			if (r == 0 && (!s.held || s.token != tok))
				fail_msg("%s held here with token %llu reported %s, token %llu "
				         "(%s fault at call %d%s)",
				         name, (unsigned long long)tok, s.held ? "held" : "FREE",
				         (unsigned long long)s.token, op_names[armed], nth,
				         lasting ? " and later" : "");
			r = lk_lock_release(lk);
			record_failure("lk_lock_release", r, lk_lock_errmsg(lk));
		}
		lk_lock_close(lk);
	}
	r = lk_store_list(st, list_cb, &n);
	record_failure("lk_store_list", r, lk_store_errmsg(st));
	lk_store_close(st);
	return tok;
}

/* With the fault gone: the lock works, with a token above min. */
static uint64_t works_again(const char *url, const char *name, uint64_t min, int which, int n)
{
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk = nh_lease_open(st, name, TTL_MS, NULL);
	uint64_t tok;
	int r;

	/* a lease whose release failed stays held until it expires */
	r = lk_lock_acquire(lk, 4 * TTL_MS);
	if (r < 0)
		fail_msg("after a %s fault at call %d: %s: %s", op_names[which], n, lk_strerror(r),
		         lk_lock_errmsg(lk));
	tok = lk_lock_token(lk);
	if (tok <= min)
		fail_msg("after a %s fault at call %d: token %llu is not above %llu",
		         op_names[which], n, (unsigned long long)tok, (unsigned long long)min);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	return tok;
}

/* A name of its own in a store of its own per run: a shared store would
 * make every list call per-entry operations once more than the run before. */
static void sweep_free(const char *rel, int pers)
{
	char sub[PATH_MAX + 64], url[PATH_MAX + 512], name[64], ops[512];
	int reached = 0, by_op[O_COUNT] = {0};
	int64_t t0 = nh_boot_ns();

	for (int which = 0; which < O_COUNT; which++) {
		for (int n = 1; n <= MAX_N; n++) {
			uint64_t tok;

			snprintf(sub, sizeof(sub), "%s/%s-%d-%d", rel, op_names[which], pers, n);
			snprintf(name, sizeof(name), "eio-%d-%d-%d", which, pers, n);
			nh_url(url, sizeof(url), sub, NULL);
			arm(which, n, pers);
			tok = one_run(url, name, 0);
			disarm();
			if (calls[which] < n)
				break;
			reached++;
			by_op[which]++;
			works_again(url, name, tok, which, n);
		}
	}
	per_op(ops, sizeof(ops), by_op);
	print_message("free lock, %s faults: %d runs reached a fault in %lld ms (%s )\n",
	              pers ? "lasting" : "transient", reached,
	              (long long)((nh_boot_ns() - t0) / 1000000), ops);
	assert_true(reached >= 10);
}

static char held_url[PATH_MAX + 512];
#define HELD_NAME "held"

/* Hold the lease until told to stop, then say whether it held throughout. */
static void holder(int rx, int tx, void *arg)
{
	struct lk_store *st = nh_store_open(held_url);
	struct lk_lock *lk = nh_lease_open(st, HELD_NAME, HOLD_TTL_MS, NULL);

	(void)arg;
	CHILD_EQ(lk_lock_acquire(lk, NH_SAFETY_MS), 0);
	nh_send(tx, lk_lock_token(lk));
	nh_expect(rx, 2 * NH_SAFETY_MS);
	CHILD_EQ(lk_lock_check(lk), 0);
	CHILD_EQ(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static int sweep_held(uint64_t token, int pers)
{
	int reached = 0, by_op[O_COUNT] = {0};
	char ops[512];
	int64_t t0 = nh_boot_ns();

	for (int which = 0; which < O_COUNT; which++) {
		for (int n = 1; n <= MAX_N; n++) {
			arm(which, n, pers);
			one_run(held_url, HELD_NAME, token);
			disarm();
			if (calls[which] < n)
				break;
			reached++;
			by_op[which]++;
		}
	}
	per_op(ops, sizeof(ops), by_op);
	print_message("held elsewhere, %s faults: %d runs reached a fault in %lld ms (%s )\n",
	              pers ? "lasting" : "transient", reached,
	              (long long)((nh_boot_ns() - t0) / 1000000), ops);
	return reached;
}

/* First in the program: the holder is forked before this process has
 * started any thread. */
static void test_held_elsewhere(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], sub[PATH_MAX + 16];
	struct nh_child c;
	uint64_t token;
	int reached;

	(void)state;
	nh_scratch("eio-held", local, sizeof(local), rel, sizeof(rel));
	snprintf(sub, sizeof(sub), "%s/store", rel);
	nh_url(held_url, sizeof(held_url), sub, NULL);
	nh_spawn(&c, holder, NULL);
	token = nh_expect(c.rx, NH_SAFETY_MS);
	assert_true(token > 0);
	/* an observer calls few operations: count both sweeps together */
	reached = sweep_held(token, 0);
	reached += sweep_held(token, 1);
	assert_true(reached >= 10);
	nh_send(c.tx, 1);
	assert_int_equal(nh_reap(&c, NH_SAFETY_MS), 0);
}

static void test_free_transient(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX];

	(void)state;
	nh_scratch("eio-once", local, sizeof(local), rel, sizeof(rel));
	sweep_free(rel, 0);
}

static void test_free_lasting(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX];

	(void)state;
	nh_scratch("eio-lasting", local, sizeof(local), rel, sizeof(rel));
	sweep_free(rel, 1);
}

/*
 * The server not answering (a timeout, flagged transient by the backend):
 * an acquire that may still wait looks again, up to 3 times in a row, and a
 * release write is tried again, so that waiters need not wait out T.
 */
static void test_server_silent(void **state)
{
	char local[PATH_MAX], rel[PATH_MAX], url[PATH_MAX + 512];
	struct lk_store *st;
	struct lk_lock *lk, *lk2;
	uint64_t t1;

	(void)state;
	nh_scratch("silent", local, sizeof(local), rel, sizeof(rel));
	nh_url(url, sizeof(url), rel, NULL);
	st = open_wrapped(url);
	lk = nh_lease_open(st, "s", TTL_MS, NULL);
	lk2 = nh_lease_open(st, "s", TTL_MS, NULL);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	t1 = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	as_timeout = 1;

	/* one silent look: reported when the acquire may not wait, looked
	 * again when it may */
	arm(O_READDIR, 1, 0);
	assert_int_equal(lk_lock_acquire(lk, 0), -EIO);
	assert_non_null(strstr(lk_lock_errmsg(lk), "did not answer"));
	arm(O_READDIR, 1, 0);
	assert_int_equal(lk_lock_acquire(lk, 5000), 0);
	assert_true(calls[O_READDIR] >= 2);
	disarm();
	assert_true(lk_lock_token(lk) > t1);

	/* a silent release write is tried again: the lock is free at once */
	arm(O_WRITE_RECORD, 1, 0);
	assert_int_equal(lk_lock_release(lk), 0);
	assert_int_equal(calls[O_WRITE_RECORD], 2);
	disarm();
	assert_int_equal(lk_lock_acquire(lk2, 0), 0);
	t1 = lk_lock_token(lk2);
	assert_int_equal(lk_lock_release(lk2), 0);

	/* silent for good: reported after the first look and 3 more */
	arm(O_READDIR, 1, 1);
	assert_int_equal(lk_lock_acquire(lk, 5000), -EIO);
	assert_int_equal(calls[O_READDIR], 4);
	assert_non_null(strstr(lk_lock_errmsg(lk), "did not answer"));
	disarm();
	as_timeout = 0;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > t1);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk2);
	lk_lock_close(lk);
	lk_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_held_elsewhere, nh_teardown),
		cmocka_unit_test_teardown(test_free_transient, nh_teardown),
		cmocka_unit_test_teardown(test_free_lasting, nh_teardown),
		cmocka_unit_test_teardown(test_server_silent, nh_teardown),
	};
	int r;

	nh_init(110);
	r = cmocka_run_group_tests_name("nfs_eio", tests, NULL, NULL);
	print_message("%d runs, %d calls failed\n", runs, failures);
	return r;
}
