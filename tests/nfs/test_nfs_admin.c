// SPDX-License-Identifier: MIT
/*
 * lockctl break and prune on an nfs:// store, against the real server:
 *
 *  - break: a library holder on the store learns at its next renewal that a
 *    newer generation exists (on_lost with -ESTALE), and the BROKEN token is
 *    one above its own;
 *  - prune: a released lease's directory is removed from the export, a held
 *    one is kept with its holder untouched;
 *  - prune racing acquirers: processes loop acquire, critical section,
 *    release over nfs:// while this process prunes the lock as fast as it
 *    can, back to back; an occupancy word in shared memory must never see
 *    two holders, and no acquire may fail (a directory handle that goes
 *    stale again and again is looked up afresh, then taken as removed).
 */
#define _GNU_SOURCE
#include <errno.h>
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

static char tmp[PATH_MAX], url[PATH_MAX + 512], local_store[PATH_MAX + 16];
static char out[PATH_MAX + 16], err[PATH_MAX + 16];

static void scratch(const char *tag)
{
	char local[PATH_MAX], rel[PATH_MAX], rel_store[PATH_MAX + 16];

	nh_scratch(tag, local, sizeof(local), rel, sizeof(rel));
	snprintf(rel_store, sizeof(rel_store), "%s/store", rel);
	snprintf(local_store, sizeof(local_store), "%s/store", local);
	nh_url(url, sizeof(url), rel_store, NULL);
	nh_tmp_dir(tmp, sizeof(tmp), tag);
	snprintf(out, sizeof(out), "%s/out", tmp);
	snprintf(err, sizeof(err), "%s/err", tmp);
}

static int exists_local(const char *name)
{
	char p[2 * PATH_MAX];
	struct stat s;

	snprintf(p, sizeof(p), "%s/%s", local_store, name);
	return lstat(p, &s) == 0;
}

static atomic_int lost_reason, lost_calls;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	(void)userdata;
	atomic_store(&lost_reason, reason);
	atomic_fetch_add(&lost_calls, 1);
}

static void test_break(void **state)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st;
	struct lk_lock *lk;
	char o_buf[4096], v[64];
	uint64_t tok;
	int64_t t0;

	(void)state;
	scratch("brk");
	st = nh_store_open(url);
	o.on_lost = on_lost;
	lk = nh_lease_open(st, "b", 2000, &o);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	tok = lk_lock_token(lk);
	{
		const char *args[] = {"-S", url, "break", "b", "--force", "--json", NULL};

		assert_int_equal(nh_lockctl_run(out, err, args), 0);
	}
	assert_true(nh_read_file(out, o_buf, sizeof(o_buf)) > 0);
	print_message("%s", o_buf);
	assert_int_equal(nh_json_get(o_buf, "new_token", v, sizeof(v)), 0);
	assert_int_equal(strtoull(v, NULL, 10), tok + 1);
	t0 = nh_boot_ns();
	while (!atomic_load(&lost_calls) && nh_boot_ns() - t0 < 10000000000LL)
		nh_sleep_ms(5);
	assert_int_equal(atomic_load(&lost_calls), 1);
	assert_int_equal(atomic_load(&lost_reason), -ESTALE);
	assert_int_equal(lk_lock_check(lk), -ENOLCK);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_prune(void **state)
{
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk_status s = {.size = sizeof(s)};
	char o_buf[8192];
	uint64_t tok;

	(void)state;
	scratch("prn");
	{
		const char *args[] = {"-S",   url,  "run",       "--ttl", "2s",
		                      "free", "--", "/bin/true", NULL};

		assert_int_equal(nh_lockctl_run(out, err, args), 0);
	}
	st = nh_store_open(url);
	lk = nh_lease_open(st, "held", 2000, NULL);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	tok = lk_lock_token(lk);
	assert_true(exists_local("free") && exists_local("held"));
	{
		const char *args[] = {"-S", url, "prune", NULL};

		assert_int_equal(nh_lockctl_run(out, err, args), 0);
	}
	assert_true(nh_read_file(out, o_buf, sizeof(o_buf)) > 0);
	print_message("%s", o_buf);
	assert_non_null(strstr(o_buf, "removed free (lease mode"));
	assert_non_null(strstr(o_buf, "kept held (lease mode): held"));
	assert_false(exists_local("free"));
	assert_true(exists_local("held"));
	nh_sleep_ms(700); /* renewals go on */
	assert_int_equal(lk_lock_check(lk), 0);
	assert_int_equal(lk_lock_status(st, "held", &s), 0);
	assert_true(s.held);
	assert_int_equal(s.token, tok);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

struct shared {
	atomic_int stop, occ, overlaps, sections, errors, stale;
	atomic_ullong max_tok;
	char errmsg[256];
};

static struct shared *sh;

static void acquirer(int rx, int tx, void *arg)
{
	struct lk_store *st = nh_store_open(url);
	struct lk_lock *lk = nh_lease_open(st, "race", 1000, NULL);
	unsigned seed = (unsigned)getpid();

	(void)rx;
	(void)tx;
	(void)arg;
	while (!atomic_load(&sh->stop)) {
		uint64_t tok;
		int r = lk_lock_acquire(lk, 8000);

		if (r < 0) {
			atomic_fetch_add(&sh->errors, 1);
			snprintf(sh->errmsg, sizeof(sh->errmsg), "acquire: %d %s", r,
			         lk_lock_errmsg(lk));
			continue;
		}
		if (atomic_fetch_add(&sh->occ, 1) != 0)
			atomic_fetch_add(&sh->overlaps, 1);
		tok = lk_lock_token(lk);
		if (tok <= atomic_load(&sh->max_tok))
			atomic_fetch_add(&sh->stale, 1);
		atomic_store(&sh->max_tok, tok);
		usleep(1000 + rand_r(&seed) % 2000);
		atomic_fetch_sub(&sh->occ, 1);
		atomic_fetch_add(&sh->sections, 1);
		if (lk_lock_release(lk) < 0) {
			atomic_fetch_add(&sh->errors, 1);
			snprintf(sh->errmsg, sizeof(sh->errmsg), "release: %s", lk_lock_errmsg(lk));
		}
		usleep(rand_r(&seed) % 5000);
	}
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_prune_race(void **state)
{
	struct nh_child kids[2];
	struct lk_store *st;
	int removed = 0, perr = 0;
	char lastperr[512] = "";
	int64_t t0;

	(void)state;
	scratch("race");
	sh = nh_shared(sizeof(*sh));
	memset(sh, 0, sizeof(*sh));
	st = nh_store_open(url);
	for (int i = 0; i < 2; i++)
		nh_spawn(&kids[i], acquirer, NULL);
	t0 = nh_boot_ns();
	while (nh_boot_ns() - t0 < 4000000000LL) {
		struct lk__prune_res res;
		struct lk_err e = {0};
		int r = lk__lock_prune(st, "race", "test: prune", -1, 0, &res, &e);

		if (r < 0) {
			perr++;
			snprintf(lastperr, sizeof(lastperr), "%d %s", r, e.msg);
		} else if (res.removed) {
			removed++;
		}
	}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < 2; i++)
		assert_int_equal(nh_reap(&kids[i], 30000), 0);
	lk_store_close(st);
	print_message("%d sections, %d removals, %d prune errors (%s); %d overlaps, %d stale, "
	              "%d acquirer errors (%s)\n",
	              atomic_load(&sh->sections), removed, perr, lastperr,
	              atomic_load(&sh->overlaps), atomic_load(&sh->stale), atomic_load(&sh->errors),
	              sh->errmsg);
	assert_int_equal(atomic_load(&sh->overlaps), 0);
	assert_int_equal(atomic_load(&sh->stale), 0);
	assert_int_equal(atomic_load(&sh->errors), 0);
	assert_int_equal(perr, 0);
	assert_true(atomic_load(&sh->sections) > 5);
	assert_true(removed > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_break, nh_teardown),
		cmocka_unit_test_teardown(test_prune, nh_teardown),
		cmocka_unit_test_teardown(test_prune_race, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_admin", tests, NULL, NULL);
}
