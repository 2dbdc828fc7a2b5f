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
 *  - Many fresh names, each taken a few times by four processes that start
 *    as they come up, so that the later ones first list the lock directory
 *    while the earlier ones claim, release and clean up in it: every
 *    acquire must succeed (four nfs:// clients; then two nfs:// and two
 *    posix ones).
 *
 * The counter is read and written through the export's local path with a
 * pause between the read and the write, so that two holders at once would
 * lose an increment as well as trip the detector.
 */
#define _GNU_SOURCE
#include <dirent.h>
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

#include "internal.h"
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
	/* first users: who is inside, and the first overlap seen */
	_Atomic uint64_t holder; /* token << 1 | posix */
	_Atomic uint64_t ov_name, ov_mine, ov_other;
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
	struct lk_status s = {.size = sizeof(s)};

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
			fprintf(stderr, "[%s] command %d: %s: %s\n", a->use_posix ? "posix" : "nfs",
			        c, lk_strerror(r), lk_lock_errmsg(lk));
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
	struct worker_args pa = {.use_posix = 1}, na = {.use_posix = 0};
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
 * First users joining a busy lock
 */

struct first_args {
	int use_posix;
	uint64_t n; /* the name: first<n> */
	int go[2];  /* the round starts when the test closes go[1] */
};

#define FIRST_ROUNDS 4

/*
 * One process per user and name, started afresh like a program that takes a
 * lock now and then: open the store and the lock, wait for the start, then
 * acquire (waiting), hold for a moment and release, a few times. Answers
 * the number of failed acquires.
 */
static void first_user(int rx, int tx, void *arg)
{
	const struct first_args *a = arg;
	struct lk_store *st = nh_store_open(a->use_posix ? posix_path : nfs_url);
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	char name[32], c;
	int failed = 0;

	(void)rx;
	close(a->go[1]);
	snprintf(name, sizeof(name), "first%llu", (unsigned long long)a->n);
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = TTL_MS;
	if (lk_lock_open(st, name, &o, &lk) < 0)
		nh_child_fail(__FILE__, __LINE__, "open %s: %s", name, lk_store_errmsg(st));
	while (read(a->go[0], &c, 1) < 0 && errno == EINTR)
		;
	for (int i = 0; i < FIRST_ROUNDS; i++) {
		int r = lk_lock_acquire(lk, NH_SAFETY_MS);
		uint64_t tok, me, prev;

		if (r < 0) {
			fprintf(stderr, "[%s] %s, acquire %d: %s: %s\n",
			        a->use_posix ? "posix" : "nfs", name, i, lk_strerror(r),
			        lk_lock_errmsg(lk));
			failed++;
			continue;
		}
		tok = lk_lock_token(lk);
		me = tok << 1 | (uint64_t)a->use_posix;
		if (atomic_fetch_add(&sh->inside, 1) != 0 &&
		    atomic_fetch_add(&sh->overlaps, 1) == 0) {
			atomic_store(&sh->ov_name, a->n);
			atomic_store(&sh->ov_mine, me);
			atomic_store(&sh->ov_other, atomic_load(&sh->holder));
		}
		prev = atomic_exchange(&sh->last_token, tok);
		if (tok <= prev && atomic_fetch_add(&sh->token_errors, 1) == 0) {
			atomic_store(&sh->first_bad, tok);
			atomic_store(&sh->first_bad_prev, prev);
		}
		atomic_store(&sh->holder, me);
		nh_sleep_ms(1);
		atomic_fetch_sub(&sh->inside, 1);
		CHILD_EQ(lk_lock_release(lk), 0);
	}
	nh_send(tx, (uint64_t)failed);
	lk_lock_close(lk);
	lk_store_close(st);
}

static int add_name(const char *name, void *userdata)
{
	char *buf = userdata;
	size_t n = strlen(buf);

	if (name[0] == 'g' && n + strlen(name) + 2 < 4096)
		snprintf(buf + n, 4096 - n, " %s", name);
	return 0;
}

/* After a failure: the generations on the server's disk, and those a fresh
 * nfs:// client is shown, so that a stale listing can be told apart. */
static void show_listings(uint64_t n)
{
	char name[32], path[PATH_MAX + 64], disk[4096] = "", seen[4096] = "";
	struct lk_err e = {0};
	struct lk_store *st;
	struct dirent *de;
	DIR *d;

	snprintf(name, sizeof(name), "first%llu", (unsigned long long)n);
	snprintf(path, sizeof(path), "%s/%s", posix_path, name);
	d = opendir(path);
	while (d && (de = readdir(d)))
		add_name(de->d_name, disk);
	if (d)
		closedir(d);
	st = nh_store_open(nfs_url);
	st->be->readdir(st->bs, name, add_name, seen, &e);
	lk_store_close(st);
	print_message("%s on the server's disk:%s\n%s listed over nfs://:%s\n", name, disk, name,
	              seen);
}

static void run_first_users(int with_posix, int names)
{
	struct first_args a[NPROC];
	struct nh_child c[NPROC];
	int failed[2] = {0, 0};

	scratch("first");
	for (uint64_t n = 1; n <= (uint64_t)names; n++) {
		int go[2], round = 0;

		if (pipe(go) < 0)
			fail_msg("pipe: %s", strerror(errno));
		atomic_store(&sh->last_token, 0); /* tokens count per name */
		for (int i = 0; i < NPROC; i++) {
			a[i] = (struct first_args){
				.use_posix = with_posix && i % 2, .n = n, .go = {go[0], go[1]}};
			nh_spawn(&c[i], first_user, &a[i]);
		}
		/* each one starts as soon as its store and lock are open */
		close(go[1]);
		close(go[0]);
		for (int i = 0; i < NPROC; i++) {
			int f = (int)nh_expect(c[i].rx, 2 * NH_SAFETY_MS);

			failed[a[i].use_posix] += f;
			round += f;
			assert_int_equal(nh_reap(&c[i], NH_SAFETY_MS), 0);
		}
		if (round)
			show_listings(n);
	}
	print_message("%d fresh names, %d nfs:// and %d posix users x %d acquires each: %d "
	              "failed over nfs://, %d over posix\n",
	              names, with_posix ? NPROC / 2 : NPROC, with_posix ? NPROC / 2 : 0,
	              FIRST_ROUNDS, failed[0], failed[1]);
	if (atomic_load(&sh->overlaps)) {
		uint64_t mine = atomic_load(&sh->ov_mine), other = atomic_load(&sh->ov_other);

		show_listings(atomic_load(&sh->ov_name));
		fail_msg("two holders at once, %d times; first on first%llu: a %s client with "
		         "token %llu got in while a %s client with token %llu was inside",
		         atomic_load(&sh->overlaps), (unsigned long long)atomic_load(&sh->ov_name),
		         mine & 1 ? "posix" : "nfs://", (unsigned long long)(mine >> 1),
		         other & 1 ? "posix" : "nfs://", (unsigned long long)(other >> 1));
	}
	if (atomic_load(&sh->token_errors))
		fail_msg("%d tokens were not above the one before on their name (first: %llu "
		         "after %llu)",
		         atomic_load(&sh->token_errors),
		         (unsigned long long)atomic_load(&sh->first_bad),
		         (unsigned long long)atomic_load(&sh->first_bad_prev));
	if (failed[0] || failed[1])
		fail_msg("%d of %d acquires failed (messages above)", failed[0] + failed[1],
		         names * NPROC * FIRST_ROUNDS);
}

/*
 * Fresh names, each used by four processes that start as they come up: the
 * first of them creates the lock directory and the others join while it is
 * claimed, released and cleaned up, so clients list lock directories whose
 * entries come and go (claim files, old generations) and the server may
 * answer such a listing with NFS3ERR_NOENT or NFS3ERR_JUKEBOX. Every
 * acquire must succeed: an error about a directory that exists is nothing
 * a caller can act on. First four nfs:// clients, then two nfs:// and two
 * posix ones on the server's own view, whose changes the server learns of
 * only from the filesystem.
 */
static void test_first_users_join_busy_lock(void **state)
{
	(void)state;
	run_first_users(0, 40);
}

static void test_first_users_join_busy_lock_mixed(void **state)
{
	(void)state;
	run_first_users(1, 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_nfs_clients_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_posix_and_nfs_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_mixed_clients_exclude, nh_teardown),
		cmocka_unit_test_teardown(test_first_users_join_busy_lock, nh_teardown),
		cmocka_unit_test_teardown(test_first_users_join_busy_lock_mixed, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_mutex", tests, NULL, NULL);
}
