// SPDX-License-Identifier: MIT
/*
 * Damaged and foreign entries in a held lease's directory. Records are
 * self-validating (magic, version, CRC), and whatever cannot be read is held
 * by an unknown claimant: it may be judged free only after it stayed the
 * same for T*(1+rho), like any silent holder, never at once and never by
 * mistake. So, while a live holder renews:
 *
 *  - unrelated entries (README, a directory, hidden and misnamed files) are
 *    ignored: the holder keeps its lease and status keeps reporting it;
 *  - the holder's own record damaged in place (truncated, emptied, a byte
 *    flipped) is rewritten by the next renewal; nobody else gets in;
 *  - garbage under the next generation's name (random bytes, a truncated
 *    record, an empty file, a directory, a symlink) is a newer generation
 *    that nobody can read: the holder steps down (-ESTALE) as for a break,
 *    a waiter gets in no sooner than T*(1+rho) after the garbage appeared,
 *    and status never reports the lock free in between;
 *  - garbage under a later generation's name, with a gap below it, must not
 *    let anyone in while the holder still believes it holds;
 *  - a lock directory without any generation record is an error with a
 *    message, not a free lock.
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
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lharness.h"
#include "lrecord.h"

#define NAME      "gb"
#define TTL_MS    1000
#define RENEW_MS  (TTL_MS / 4)
#define TTL_UP_NS ((int64_t)TTL_MS * 1000000 * 101 / 100) /* T*(1+rho), rho 1% */

enum { CMD_CHECK = 1, CMD_RELEASE = 2 };

static char store[PATH_MAX];

static void gen_path(char *buf, size_t len, uint64_t gen)
{
	char gname[LK_GEN_NAME_LEN + 1];

	lk__gen_name(gname, gen);
	snprintf(buf, len, "%s/%s/%s", store, NAME, gname);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		fail_msg("cannot write %s", path);
	close(fd);
}

/* A valid HELD record of generation gen, as another host would write it. */
static void make_record(uint8_t out[LK_LREC_SIZE], uint64_t gen)
{
	struct lk__lrec r;

	memset(&r, 0, sizeof(r));
	r.gen = gen;
	r.state = LK_LSTATE_HELD;
	r.ttl_ms = TTL_MS;
	r.rho_ppm = 10000;
	getrandom(r.boot_id, sizeof(r.boot_id), 0);
	r.pid = 1;
	r.nonce = 42;
	r.wall_ns = lh_real_ns();
	r.since_ns = r.wall_ns;
	snprintf(r.host, sizeof(r.host), "elsewhere");
	snprintf(r.owner, sizeof(r.owner), "garbage-test");
	lk__lrec_encode(&r, out);
}

/* ------------------------------------------------------------------------
 * Children: a holder that renews and answers questions, and a waiter.
 */

static atomic_int lost_reason;
static atomic_llong lost_at;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	(void)userdata;
	atomic_store(&lost_at, (long long)lh_boot_ns());
	atomic_store(&lost_reason, reason);
}

static void holder_child(int rx, int tx, void *arg)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk;
	int r;

	(void)arg;
	o.on_lost = on_lost;
	o.owner = "holder";
	lk = lh_lease_open(st, NAME, TTL_MS, &o);
	r = lk_lock_acquire(lk, LH_SAFETY_MS);
	if (r < 0)
		lh_child_fail(__FILE__, __LINE__, "acquire: %s", lk_lock_errmsg(lk));
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));
	for (;;) {
		uint64_t cmd = lh_expect(rx, 60000);

		if (cmd == CMD_CHECK) {
			lh_send(tx, (uint64_t)(int64_t)lk_lock_check(lk));
			lh_send(tx, (uint64_t)(int64_t)atomic_load(&lost_reason));
			lh_send(tx, (uint64_t)atomic_load(&lost_at));
		} else {
			lh_send(tx, (uint64_t)(int64_t)lk_lock_release(lk));
			break;
		}
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

struct holder_state {
	int check, reason;
	int64_t lost_at;
};

static void ask_holder(struct lh_child *h, struct holder_state *ret)
{
	lh_send(h->tx, CMD_CHECK);
	ret->check = (int)(int64_t)lh_expect(h->rx, LH_SAFETY_MS);
	ret->reason = (int)(int64_t)lh_expect(h->rx, LH_SAFETY_MS);
	ret->lost_at = (int64_t)lh_expect(h->rx, LH_SAFETY_MS);
}

struct waiter_args {
	int64_t timeout_ms;
};

/* Wait for the lease; report 0 and when and which token, or the error. */
static void waiter_child(int rx, int tx, void *arg)
{
	const struct waiter_args *a = arg;
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, TTL_MS, NULL);
	int r;

	lh_send(tx, 1);
	r = lk_lock_acquire(lk, a->timeout_ms);
	lh_send(tx, (uint64_t)(int64_t)r);
	lh_send(tx, (uint64_t)lh_boot_ns());
	lh_send(tx, lk_lock_token(lk));
	lh_send(tx, (uint64_t)lh_engine_code(lk_store_engine(st)));
	if (r == 0) {
		lh_expect(rx, LH_SAFETY_MS);
		CHILD_EQ(lk_lock_check(lk), 0);
		CHILD_EQ(lk_lock_release(lk), 0);
	} else if (r != -ETIMEDOUT) {
		fprintf(stderr, "[waiter] acquire: %s: %s\n", lk_strerror(r), lk_lock_errmsg(lk));
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

struct waiter_result {
	int r;
	int64_t t;
	uint64_t token;
	int64_t first_free; /* when status first said "free" (0: never) */
};

/*
 * Read the waiter's report; until it comes, keep asking for the lock's
 * status from the test's own store handle, and note when (if ever) it said
 * the lock was free. While the holder still holds, that is a false "free";
 * once the holder stepped down, a claim that aborted (a record state the
 * protocol counts as free) may legitimately show for a moment.
 */
static void watch_until_waiter(struct lh_child *w, struct lk_store *st, int allow_badmsg,
                               struct waiter_result *ret)
{
	int64_t end = lh_boot_ms() + LH_SAFETY_MS;
	int looks = 0;
	uint64_t v;

	ret->first_free = 0;
	for (;;) {
		struct lk_status s = {.size = sizeof(s)};
		int r = lh_recv(w->rx, &v, 10);

		if (r == 0)
			break;
		assert_int_equal(r, -ETIMEDOUT);
		if (lh_boot_ms() > end)
			fail_msg("the waiter never answered");
		r = lk_lock_status(st, NAME, &s);
		looks++;
		if (r == -EBADMSG && allow_badmsg && strlen(lk_store_errmsg(st)) > 10)
			continue; /* "damaged, cannot tell": allowed, it is not "free" */
		if (r < 0)
			fail_msg("lk_lock_status failed while the lock was held: %s: %s",
			         lk_strerror(r), lk_store_errmsg(st));
		if (!s.held && !ret->first_free)
			ret->first_free = lh_boot_ns();
	}
	ret->r = (int)(int64_t)v;
	ret->t = (int64_t)lh_expect(w->rx, LH_SAFETY_MS);
	ret->token = lh_expect(w->rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(w->rx, LH_SAFETY_MS), lh_engine_code(lh_engine_expected()));
	/* a waiter told at once that the directory is damaged needs no watching */
	assert_true(looks > 0 || (allow_badmsg && ret->r == -EBADMSG));
}

static uint64_t start_holder(struct lh_child *h)
{
	uint64_t tok;

	lh_store_dir(store, sizeof(store), "gb");
	atomic_store(&lost_reason, 0);
	atomic_store(&lost_at, 0);
	lh_spawn(h, holder_child, NULL);
	tok = lh_expect(h->rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(h->rx, LH_SAFETY_MS), lh_engine_code(lh_engine_expected()));
	return tok;
}

static void stop_holder(struct lh_child *h, int want_release)
{
	lh_send(h->tx, CMD_RELEASE);
	assert_int_equal((int)(int64_t)lh_expect(h->rx, LH_SAFETY_MS), want_release);
	assert_int_equal(lh_reap(h, LH_SAFETY_MS), 0);
}

/* The test process takes the lease last: it works and the token is higher. */
static void take_last(uint64_t above)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, NAME, TTL_MS, NULL);
	int r = lk_lock_acquire(lk, 5000);

	if (r < 0)
		fail_msg("final acquire: %s: %s", lk_strerror(r), lk_lock_errmsg(lk));
	lh_check_engine(st);
	assert_true(lk_lock_token(lk) > above);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Entries that are not generation records
 */

static void test_unrelated_entries(void **state)
{
	char path[PATH_MAX + 64];
	uint8_t junk[300];
	struct lh_child h, w;
	struct waiter_args wa = {.timeout_ms = 2 * TTL_MS + TTL_MS / 2};
	struct waiter_result res;
	struct holder_state hs;
	struct lk_store *st;
	uint64_t tok;

	(void)state;
	tok = start_holder(&h);
	getrandom(junk, sizeof(junk), 0);
	snprintf(path, sizeof(path), "%s/%s/README", store, NAME);
	write_file(path, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/%s/.hidden", store, NAME);
	write_file(path, junk, 10);
	snprintf(path, sizeof(path), "%s/%s/g.1", store, NAME);
	write_file(path, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/%s/g.99999999999999999", store, NAME);
	write_file(path, junk, 0);
	snprintf(path, sizeof(path), "%s/%s/g.000000000000000x1", store, NAME);
	write_file(path, junk, LK_LREC_SIZE);
	snprintf(path, sizeof(path), "%s/%s/subdir", store, NAME);
	assert_int_equal(mkdir(path, 0700), 0);

	/* a waiter gives up after 2.5 TTLs; status says held all along */
	st = lh_store_open(store);
	lh_spawn(&w, waiter_child, &wa);
	lh_expect(w.rx, LH_SAFETY_MS);
	watch_until_waiter(&w, st, 0, &res);
	assert_int_equal(res.r, -ETIMEDOUT);
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	if (res.first_free)
		fail_msg("lk_lock_status reported the lock free while it was held");

	ask_holder(&h, &hs);
	assert_int_equal(hs.check, 0);
	assert_int_equal(hs.reason, 0);
	stop_holder(&h, 0);
	take_last(tok);
	/* clean-up of old generations left the foreign entries alone */
	snprintf(path, sizeof(path), "%s/%s/README", store, NAME);
	assert_int_equal(access(path, F_OK), 0);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * The holder's own record damaged in place
 */

static void test_own_record_damaged(void **state)
{
	char path[PATH_MAX + 64];
	struct lh_child h, w;
	struct waiter_args wa = {.timeout_ms = 2 * TTL_MS + TTL_MS / 2};
	struct holder_state hs;
	struct lk_store *st;
	struct lk_lock *lk;
	uint64_t tok, v;
	int round = 0, r;

	(void)state;
	tok = start_holder(&h);
	gen_path(path, sizeof(path), tok);
	st = lh_store_open(store);
	lk = lh_lease_open(st, NAME, TTL_MS, NULL);
	lh_spawn(&w, waiter_child, &wa);
	lh_expect(w.rx, LH_SAFETY_MS);

	/*
	 * Damage the record now and then until the waiter gives up (2.5 TTLs);
	 * each renewal repairs it, and the waiter sees it change all along.
	 */
	while ((r = lh_recv(w.rx, &v, 80 + (int)(lh_boot_ns() / 1000 % 120))) == -ETIMEDOUT) {
		struct lk_status s = {.size = sizeof(s)};
		int fd = open(path, O_RDWR | O_CLOEXEC);
		uint8_t b;

		assert_true(fd >= 0);
		switch (round++ % 3) {
		case 0:
			assert_int_equal(ftruncate(fd, 100), 0);
			break;
		case 1:
			assert_int_equal(ftruncate(fd, 0), 0);
			break;
		default:
			if (pread(fd, &b, 1, 40) == 1) {
				b ^= 0x5a;
				assert_int_equal(pwrite(fd, &b, 1, 40), 1);
			}
		}
		close(fd);
		r = lk_lock_status(st, NAME, &s);
		if (r < 0)
			fail_msg("lk_lock_status: %s: %s", lk_strerror(r), lk_store_errmsg(st));
		if (!s.held)
			fail_msg("lk_lock_status reported a damaged, renewed lease free");
		r = lk_lock_acquire(lk, 0);
		if (r != -EWOULDBLOCK)
			fail_msg("try-acquire of a renewed lease: %s", lk_strerror(r));
	}
	assert_int_equal(r, 0);
	assert_int_equal((int)(int64_t)v, -ETIMEDOUT);
	lh_expect(w.rx, LH_SAFETY_MS);
	lh_expect(w.rx, LH_SAFETY_MS);
	assert_int_equal(lh_expect(w.rx, LH_SAFETY_MS), lh_engine_code(lh_engine_expected()));
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	assert_true(round > 5);

	lh_check_engine(st);
	ask_holder(&h, &hs);
	assert_int_equal(hs.check, 0);
	assert_int_equal(hs.reason, 0);
	stop_holder(&h, 0);
	lk_lock_close(lk);
	lk_store_close(st);
	take_last(tok);
}

/* ------------------------------------------------------------------------
 * Garbage where the next generation would be
 */

enum garbage { G_RANDOM, G_TRUNCATED, G_EMPTY, G_DIRECTORY, G_SYMLINK };

static const char *const garbage_name[] = {"random bytes", "truncated record", "empty file",
                                           "directory", "symlink"};

static void plant(enum garbage g, const char *path, uint64_t gen)
{
	uint8_t buf[LK_LREC_SIZE] = {0};

	switch (g) {
	case G_RANDOM:
		getrandom(buf, sizeof(buf), 0);
		write_file(path, buf, sizeof(buf));
		break;
	case G_TRUNCATED:
		make_record(buf, gen);
		write_file(path, buf, 100);
		break;
	case G_EMPTY:
		write_file(path, buf, 0);
		break;
	case G_DIRECTORY:
		assert_int_equal(mkdir(path, 0700), 0);
		break;
	case G_SYMLINK: {
		char target[LK_GEN_NAME_LEN + 1];

		/* points at the holder's valid record; must not be followed */
		lk__gen_name(target, gen - 1);
		assert_int_equal(symlink(target, path), 0);
		break;
	}
	}
}

static void garbage_next(enum garbage g)
{
	char path[PATH_MAX + 64];
	struct lh_child h, w;
	struct waiter_args wa = {.timeout_ms = LH_SAFETY_MS};
	struct waiter_result res;
	struct holder_state hs;
	struct lk_store *st;
	uint64_t tok;
	int64_t t_g;

	tok = start_holder(&h);
	st = lh_store_open(store);
	lh_spawn(&w, waiter_child, &wa);
	lh_expect(w.rx, LH_SAFETY_MS);
	lh_sleep_ms(RENEW_MS * 2); /* the waiter watches the holder renew */

	gen_path(path, sizeof(path), tok + 1);
	t_g = lh_boot_ns();
	plant(g, path, tok + 1);
	watch_until_waiter(&w, st, 0, &res);
	if (res.r < 0)
		fail_msg("%s: waiter: %s", garbage_name[g], lk_strerror(res.r));
	assert_true(res.token > tok + 1);
	if (res.t - t_g < TTL_UP_NS)
		fail_msg("%s: the waiter held %lld ms after unreadable generation %llu appeared, "
		         "before T*(1+rho) = %lld ms",
		         garbage_name[g], (long long)((res.t - t_g) / 1000000),
		         (unsigned long long)(tok + 1), (long long)(TTL_UP_NS / 1000000));

	/* the holder saw a newer generation and stepped down, within about one
	 * renewal interval, before the waiter got in */
	ask_holder(&h, &hs);
	assert_int_equal(hs.check, -ENOLCK);
	assert_int_equal(hs.reason, -ESTALE);
	assert_true(hs.lost_at > t_g);
	assert_true(hs.lost_at < res.t);
	if (res.first_free && res.first_free < hs.lost_at)
		fail_msg("%s: lk_lock_status reported the lock free while the holder still held it",
		         garbage_name[g]);
	if (hs.lost_at - t_g > (RENEW_MS + 500) * 1000000LL)
		fail_msg("%s: holder stepped down %lld ms after generation %llu appeared",
		         garbage_name[g], (long long)((hs.lost_at - t_g) / 1000000),
		         (unsigned long long)(tok + 1));
	stop_holder(&h, -ENOLCK);

	lh_send(w.tx, 1);
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	take_last(res.token);
	lk_store_close(st);
	print_message("%s as g.N+1: holder lost after %lld ms, waiter held after %lld ms\n",
	              garbage_name[g], (long long)((hs.lost_at - t_g) / 1000000),
	              (long long)((res.t - t_g) / 1000000));
}

static void test_next_random(void **state)
{
	(void)state;
	garbage_next(G_RANDOM);
}

static void test_next_truncated(void **state)
{
	(void)state;
	garbage_next(G_TRUNCATED);
}

static void test_next_empty(void **state)
{
	(void)state;
	garbage_next(G_EMPTY);
}

static void test_next_directory(void **state)
{
	(void)state;
	garbage_next(G_DIRECTORY);
}

static void test_next_symlink(void **state)
{
	(void)state;
	garbage_next(G_SYMLINK);
}

/*
 * Garbage two generations up, nothing in between. Whatever the library
 * makes of it, two holders at once is not allowed: a waiter that gets in
 * must find the old holder already stepped down.
 */
static void test_gap_garbage(void **state)
{
	char path[PATH_MAX + 64];
	uint8_t buf[LK_LREC_SIZE];
	struct lh_child h, w;
	struct waiter_args wa = {.timeout_ms = 3 * TTL_MS};
	struct waiter_result res;
	struct holder_state hs;
	struct lk_store *st;
	uint64_t tok;

	(void)state;
	tok = start_holder(&h);
	st = lh_store_open(store);
	gen_path(path, sizeof(path), tok + 2);
	getrandom(buf, sizeof(buf), 0);
	write_file(path, buf, sizeof(buf));

	lh_spawn(&w, waiter_child, &wa);
	lh_expect(w.rx, LH_SAFETY_MS);
	watch_until_waiter(&w, st, 1, &res);
	ask_holder(&h, &hs);
	if (res.first_free && (!hs.reason || res.first_free < hs.lost_at))
		fail_msg("lk_lock_status reported the lock free while the holder still held it");
	if (res.r == 0) {
		if (!hs.reason || hs.lost_at > res.t)
			fail_msg("two holders: a waiter took token %llu over garbage generation "
			         "%llu while holder of %llu still held its lease (check %d)",
			         (unsigned long long)res.token, (unsigned long long)(tok + 2),
			         (unsigned long long)tok, hs.check);
		lh_send(w.tx, 1);
	} else {
		/* kept out, or told the directory is damaged: both are fine */
		if (res.r != -ETIMEDOUT && res.r != -EBADMSG)
			fail_msg("waiter: %s", lk_strerror(res.r));
		assert_int_equal(hs.check, 0);
	}
	assert_int_equal(lh_reap(&w, LH_SAFETY_MS), 0);
	stop_holder(&h, hs.check);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * A lock directory without generation records
 */

static void test_no_generations(void **state)
{
	char path[PATH_MAX + 64];
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st;
	struct lk_lock *lk;
	struct stat sb;
	int r;

	(void)state;
	lh_store_dir(store, sizeof(store), "gb");
	snprintf(path, sizeof(path), "%s/%s", store, NAME);
	assert_int_equal(mkdir(path, 0700), 0);
	st = lh_store_open(store);

	/* With only foreign files in it: damaged, and left alone. */
	snprintf(path, sizeof(path), "%s/%s/README", store, NAME);
	write_file(path, "x", 1);
	r = lk_lock_status(st, NAME, &s);
	assert_int_equal(r, -EBADMSG);
	assert_true(strlen(lk_store_errmsg(st)) > 10);
	print_message("status: %s\n", lk_store_errmsg(st));
	lk = lh_lease_open(st, NAME, TTL_MS, NULL);
	assert_int_equal(lk_lock_acquire(lk, 0), -EBADMSG);
	assert_true(strlen(lk_lock_errmsg(lk)) > 10);
	assert_int_equal(lk_lock_acquire(lk, 300), -EBADMSG);
	assert_int_equal(lk_lock_check(lk), -ENOLCK);
	assert_int_equal(stat(path, &sb), 0);
	lh_check_engine(st);

	/*
	 * Empty (what an interrupted prune leaves): status says so, and an
	 * acquire removes it and makes the lock anew, since nobody can hold
	 * a lease in a directory without generations.
	 */
	assert_int_equal(unlink(path), 0);
	r = lk_lock_status(st, NAME, &s);
	assert_int_equal(r, -EBADMSG);
	print_message("status: %s\n", lk_store_errmsg(st));
	assert_non_null(strstr(lk_store_errmsg(st), "prune"));
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > 0);
	assert_int_equal(lk_lock_status(st, NAME, &s), 0);
	assert_true(s.held);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_unrelated_entries, lh_teardown),
		cmocka_unit_test_teardown(test_own_record_damaged, lh_teardown),
		cmocka_unit_test_teardown(test_next_random, lh_teardown),
		cmocka_unit_test_teardown(test_next_truncated, lh_teardown),
		cmocka_unit_test_teardown(test_next_empty, lh_teardown),
		cmocka_unit_test_teardown(test_next_directory, lh_teardown),
		cmocka_unit_test_teardown(test_next_symlink, lh_teardown),
		cmocka_unit_test_teardown(test_gap_garbage, lh_teardown),
		cmocka_unit_test_teardown(test_no_generations, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("lease_garbage", tests, NULL, NULL);
}
