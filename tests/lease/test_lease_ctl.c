// SPDX-License-Identifier: MIT
/*
 * Lease mode through lockctl and the rules that keep the two modes apart.
 *
 *  - lockctl run in lease mode, stopped while COMMAND runs: lockctl can no
 *    longer renew, so its guardian must stop COMMAND at the holder's deadline
 *    on its own (SIGTERM); a second lockctl gets the lease only after that,
 *    and the first one, when continued, exits 75 (lease lost).
 *  - A name is either a kernel-mode lock (a file) or a lease (a directory):
 *    opening it in the other mode is -EINVAL with a message, also when the
 *    other kind appears between open and acquire; LK_MODE_AUTO adopts what
 *    is there. lockctl refuses --ttl with --mode kernel as a usage error, and
 *    status/ls --json describe a lease: mode, state, TTL, engine.
 *
 * COMMAND is this test binary in helper mode (see lharness.h): it stamps
 * CLOCK_BOOTTIME when it starts and when it gets SIGTERM, so the order of
 * events across the two lockctl runs is measured, not guessed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lharness.h"

static char dir[PATH_MAX], store[PATH_MAX + 16];

static void scratch(void)
{
	lh_store_dir(dir, sizeof(dir), "ctl");
	snprintf(store, sizeof(store), "%s/store", dir);
}

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* "<boot ns> <token>" from a helper's stamp file. */
static void read_stamp(const char *path, int64_t *ret_ns, uint64_t *ret_token)
{
	char buf[128];
	long long ns = 0;
	unsigned long long tok = 0;

	if (lh_read_file(path, buf, sizeof(buf)) <= 0 || sscanf(buf, "%lld %llu", &ns, &tok) < 1)
		fail_msg("no stamp in %s", path);
	*ret_ns = ns;
	if (ret_token)
		*ret_token = tok;
}

static void show_err(const char *tag)
{
	char path[PATH_MAX + 32], buf[2048];

	snprintf(path, sizeof(path), "%s/%s.err", dir, tag);
	if (lh_read_file(path, buf, sizeof(buf)) > 0)
		print_message("%s stderr: %s", tag, buf);
}

/* An in-process lease acquire: the engine this run is for is the one used. */
static void check_engine_here(void)
{
	struct lk_store *st = lh_store_open(store);
	struct lk_lock *lk = lh_lease_open(st, "engine-probe", 1000, NULL);

	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	lh_check_engine(st);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * lockctl stopped while it holds a lease
 */

static void test_ctl_stopped(void **state)
{
	char term1[PATH_MAX + 32], ready1[PATH_MAX + 32], start2[PATH_MAX + 32];
	int64_t t_ready, t_stop, t_term, t_start2;
	uint64_t tok1, tok2;
	pid_t l1, l2;
	int rc1, rc2;

	(void)state;
	scratch();
	path_in(term1, sizeof(term1), "term1");
	path_in(ready1, sizeof(ready1), "ready1");
	path_in(start2, sizeof(start2), "start2");

	l1 = lh_lockctl(dir, "l1",
	                (const char *const[]){"-S", store, "run", "job", "--ttl", "1s", "--",
	                                      lh_self(), "--helper", "term", term1, ready1, NULL});
	if (lh_wait_line(ready1, LH_SAFETY_MS) < 0) {
		show_err("l1");
		fail_msg("the first COMMAND never started");
	}
	read_stamp(ready1, &t_ready, &tok1);
	assert_true(tok1 > 0);
	lh_sleep_ms(300);

	/* stop lockctl itself, not its guardian or COMMAND */
	t_stop = lh_boot_ns();
	assert_int_equal(kill(l1, SIGSTOP), 0);
	l2 = lh_lockctl(dir, "l2",
	                (const char *const[]){"-S", store, "run", "job", "-w", "10", "--",
	                                      lh_self(), "--helper", "start", start2, NULL});
	rc2 = lh_wait_pid(l2, LH_SAFETY_MS);
	if (rc2 != 0)
		show_err("l2");
	assert_int_equal(rc2, 0);
	assert_int_equal(kill(l1, SIGCONT), 0);
	rc1 = lh_wait_pid(l1, LH_SAFETY_MS);
	show_err("l1");

	read_stamp(term1, &t_term, NULL);
	read_stamp(start2, &t_start2, &tok2);
	print_message("COMMAND 1 got SIGTERM %lld ms after lockctl stopped; COMMAND 2 started "
	              "%lld ms after that\n",
	              (long long)((t_term - t_stop) / 1000000),
	              (long long)((t_start2 - t_term) / 1000000));
	/* the guardian stopped COMMAND 1 before anyone else ran under the lease */
	assert_true(t_term < t_start2);
	assert_true(t_term > t_stop);
	if (t_term - t_stop > 1500 * 1000000LL)
		fail_msg("COMMAND 1 got SIGTERM %lld ms after lockctl stopped: not at the deadline",
		         (long long)((t_term - t_stop) / 1000000));
	assert_true(tok2 > tok1);
	assert_int_equal(rc1, 75);
	check_engine_here();
}

/* ------------------------------------------------------------------------
 * Kernel mode and lease mode keep apart
 */

static struct lk_lock *open_mode(struct lk_store *st, const char *name, enum lk_mode mode, int *ret)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;

	o.mode = mode;
	if (mode == LK_MODE_LEASE)
		o.ttl_ms = 1000;
	*ret = lk_lock_open(st, name, &o, &lk);
	return *ret == 0 ? lk : NULL;
}

static void test_mode_rules(void **state)
{
	struct lk_store *st;
	struct lk_lock *k, *l, *x, *late;
	uint64_t tok;
	int r;

	(void)state;
	scratch();
	st = lh_store_open(store);

	/* a kernel-mode name refuses lease mode */
	k = open_mode(st, "kname", LK_MODE_KERNEL, &r);
	assert_int_equal(r, 0);
	assert_int_equal(lk_lock_acquire(k, 0), 0);
	x = open_mode(st, "kname", LK_MODE_LEASE, &r);
	assert_null(x);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(lk_store_errmsg(st), "kernel"));
	print_message("lease open of a kernel lock: %s\n", lk_store_errmsg(st));
	assert_int_equal(lk_lock_release(k), 0);
	lk_lock_close(k);

	/* a lease refuses kernel mode */
	l = open_mode(st, "lname", LK_MODE_LEASE, &r);
	assert_int_equal(r, 0);
	assert_int_equal(lk_lock_acquire(l, 0), 0);
	lh_check_engine(st);
	tok = lk_lock_token(l);
	x = open_mode(st, "lname", LK_MODE_KERNEL, &r);
	assert_null(x);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(lk_store_errmsg(st), "lease"));
	print_message("kernel open of a lease: %s\n", lk_store_errmsg(st));
	assert_int_equal(lk_lock_release(l), 0);
	lk_lock_close(l);

	/* AUTO adopts the existing mode of each */
	x = open_mode(st, "lname", LK_MODE_AUTO, &r);
	assert_int_equal(r, 0);
	assert_int_equal(lk_lock_mode(x), LK_MODE_LEASE);
	assert_int_equal(lk_lock_acquire(x, 0), 0);
	assert_true(lk_lock_token(x) > tok);
	assert_true(lk_lock_remaining_ms(x) > 0 && lk_lock_remaining_ms(x) != UINT64_MAX);
	{
		struct lk_lease_params p;

		assert_int_equal(lk_lock_lease_params(x, &p), 0);
		/* the handle's own TTL: the default, not the previous holder's */
		assert_int_equal(p.ttl_ms, 10000);
	}
	assert_int_equal(lk_lock_release(x), 0);
	lk_lock_close(x);
	x = open_mode(st, "kname", LK_MODE_AUTO, &r);
	assert_int_equal(r, 0);
	assert_int_equal(lk_lock_mode(x), LK_MODE_KERNEL);
	{
		struct lk_lease_params p;

		assert_int_equal(lk_lock_lease_params(x, &p), -EINVAL);
	}
	lk_lock_close(x);

	/*
	 * The other kind appears between open and acquire: a lease handle
	 * opened on an unused name, then a kernel lock file created under it.
	 */
	late = open_mode(st, "late", LK_MODE_LEASE, &r);
	assert_int_equal(r, 0);
	k = open_mode(st, "late", LK_MODE_KERNEL, &r);
	assert_int_equal(r, 0);
	assert_int_equal(lk_lock_acquire(k, 0), 0);
	r = lk_lock_acquire(late, 0);
	print_message("lease acquire on a kernel lock file: %s: %s\n", lk_strerror(r),
	              lk_lock_errmsg(late));
	assert_int_equal(r, -EINVAL);
	assert_true(strlen(lk_lock_errmsg(late)) > 0);
	assert_int_equal(lk_lock_release(k), 0);
	lk_lock_close(k);
	lk_lock_close(late);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * lockctl and lease mode
 */

static void test_ctl_usage_and_status(void **state)
{
	char done[PATH_MAX + 32], ready[PATH_MAX + 32], out[PATH_MAX + 32], buf[8192], v[256];
	char want_engine[64];
	const char *obj;
	int64_t t_ready;
	uint64_t tok;
	pid_t l;
	int rc;

	(void)state;
	scratch();
	snprintf(want_engine, sizeof(want_engine), "\"%s\"", lh_engine_expected());

	/* --ttl is a lease option: with --mode kernel it is a usage error */
	rc = lh_wait_pid(lh_lockctl(dir, "u1",
	                            (const char *const[]){"-S", store, "run", "job", "--ttl", "1s",
	                                                  "--mode", "kernel", "--", "true", NULL}),
	                 LH_SAFETY_MS);
	assert_int_equal(rc, 64);
	rc = lh_wait_pid(
		lh_lockctl(dir, "u2",
	                   (const char *const[]){"-S", store, "run", "job", "--mode", "kernel",
	                                         "--ttl", "2s", "--", "true", NULL}),
		LH_SAFETY_MS);
	assert_int_equal(rc, 64);

	/* a kernel lock next to the lease, so that ls shows both modes */
	rc = lh_wait_pid(lh_lockctl(dir, "k",
	                            (const char *const[]){"-S", store, "run", "kjob", "--mode",
	                                                  "kernel", "--", "true", NULL}),
	                 LH_SAFETY_MS);
	assert_int_equal(rc, 0);
	/* and lease mode on it is refused, with a message */
	rc = lh_wait_pid(lh_lockctl(dir, "k2",
	                            (const char *const[]){"-S", store, "run", "kjob", "--ttl", "1s",
	                                                  "--", "true", NULL}),
	                 LH_SAFETY_MS);
	assert_true(rc != 0 && rc != 64);
	path_in(out, sizeof(out), "k2.err");
	assert_true(lh_read_file(out, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "kernel"));

	path_in(done, sizeof(done), "done");
	path_in(ready, sizeof(ready), "ready");
	l = lh_lockctl(dir, "hold",
	               (const char *const[]){"-S", store, "run", "job", "--ttl", "1s", "--",
	                                     lh_self(), "--helper", "wait", done, ready, NULL});
	if (lh_wait_line(ready, LH_SAFETY_MS) < 0) {
		show_err("hold");
		fail_msg("COMMAND never started");
	}
	read_stamp(ready, &t_ready, &tok);

	/* status --json while held, across a few renewals */
	lh_sleep_ms(600);
	rc = lh_wait_pid(
		lh_lockctl(dir, "st1",
	                   (const char *const[]){"-S", store, "status", "job", "--json", NULL}),
		LH_SAFETY_MS);
	assert_int_equal(rc, 0);
	path_in(out, sizeof(out), "st1.out");
	assert_true(lh_read_file(out, buf, sizeof(buf)) > 0);
	print_message("status --json: %s", buf);
	assert_int_equal(lh_json_get(buf, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"lease\"");
	assert_int_equal(lh_json_get(buf, "state", v, sizeof(v)), 0);
	assert_string_equal(v, "\"held\"");
	assert_int_equal(lh_json_get(buf, "held", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
	assert_int_equal(lh_json_get(buf, "ttl_ms", v, sizeof(v)), 0);
	assert_string_equal(v, "1000");
	assert_int_equal(lh_json_get(buf, "engine", v, sizeof(v)), 0);
	assert_string_equal(v, want_engine);
	assert_int_equal(lh_json_get(buf, "token", v, sizeof(v)), 0);
	assert_int_equal(strtoull(v, NULL, 10), tok);

	/* ls --json: the lease and the kernel lock, each with its own mode */
	rc = lh_wait_pid(
		lh_lockctl(dir, "ls1", (const char *const[]){"-S", store, "ls", "--json", NULL}),
		LH_SAFETY_MS);
	assert_int_equal(rc, 0);
	path_in(out, sizeof(out), "ls1.out");
	assert_true(lh_read_file(out, buf, sizeof(buf)) > 0);
	print_message("ls --json: %s", buf);
	obj = strstr(buf, "\"name\":\"job\"");
	assert_non_null(obj);
	assert_int_equal(lh_json_get(obj, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"lease\"");
	assert_int_equal(lh_json_get(obj, "state", v, sizeof(v)), 0);
	assert_string_equal(v, "\"held\"");
	assert_int_equal(lh_json_get(obj, "ttl_ms", v, sizeof(v)), 0);
	assert_string_equal(v, "1000");
	assert_int_equal(lh_json_get(obj, "engine", v, sizeof(v)), 0);
	assert_string_equal(v, want_engine);
	obj = strstr(buf, "\"name\":\"kjob\"");
	assert_non_null(obj);
	assert_int_equal(lh_json_get(obj, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"kernel\"");

	/* COMMAND exits 0; the lease is released */
	close(open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	rc = lh_wait_pid(l, LH_SAFETY_MS);
	if (rc != 0)
		show_err("hold");
	assert_int_equal(rc, 0);
	rc = lh_wait_pid(
		lh_lockctl(dir, "st2",
	                   (const char *const[]){"-S", store, "status", "job", "--json", NULL}),
		LH_SAFETY_MS);
	assert_int_equal(rc, 0);
	path_in(out, sizeof(out), "st2.out");
	assert_true(lh_read_file(out, buf, sizeof(buf)) > 0);
	assert_int_equal(lh_json_get(buf, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"lease\"");
	assert_int_equal(lh_json_get(buf, "state", v, sizeof(v)), 0);
	assert_string_equal(v, "\"released\"");
	assert_int_equal(lh_json_get(buf, "held", v, sizeof(v)), 0);
	assert_string_equal(v, "false");
	assert_int_equal(lh_json_get(buf, "engine", v, sizeof(v)), 0);
	assert_string_equal(v, want_engine);
	check_engine_here();
}

/*
 * SIGTERM to lockctl goes to COMMAND, in lease mode as in kernel mode:
 * COMMAND gets to clean up, and lockctl exits with COMMAND's status after
 * releasing the lease.
 */
static void test_ctl_sigterm_forwarded(void **state)
{
	char term[PATH_MAX + 32], ready[PATH_MAX + 32], out[PATH_MAX + 32], buf[4096], v[64];
	int64_t t_ready, t_term, t_kill;
	uint64_t tok;
	pid_t l;
	int rc;

	(void)state;
	scratch();
	path_in(term, sizeof(term), "term");
	path_in(ready, sizeof(ready), "ready");
	l = lh_lockctl(dir, "hold",
	               (const char *const[]){"-S", store, "run", "job", "--ttl", "1s", "--",
	                                     lh_self(), "--helper", "term", term, ready, NULL});
	if (lh_wait_line(ready, LH_SAFETY_MS) < 0) {
		show_err("hold");
		fail_msg("COMMAND never started");
	}
	read_stamp(ready, &t_ready, &tok);
	lh_sleep_ms(300);
	t_kill = lh_boot_ns();
	assert_int_equal(kill(l, SIGTERM), 0);
	rc = lh_wait_pid(l, LH_SAFETY_MS);
	show_err("hold");
	if (lh_wait_line(term, 1000) < 0)
		fail_msg("COMMAND never saw the SIGTERM sent to lockctl (lockctl exit %s%d)",
		         rc >= 256 ? "signal " : "", rc >= 256 ? rc - 256 : rc);
	read_stamp(term, &t_term, NULL);
	assert_true(t_term >= t_kill);
	if (rc >= 256)
		fail_msg("lockctl died of signal %d instead of forwarding it", rc - 256);
	assert_int_equal(rc, 0);

	/* and it released the lease on the way out */
	rc = lh_wait_pid(
		lh_lockctl(dir, "st",
	                   (const char *const[]){"-S", store, "status", "job", "--json", NULL}),
		LH_SAFETY_MS);
	assert_int_equal(rc, 0);
	path_in(out, sizeof(out), "st.out");
	assert_true(lh_read_file(out, buf, sizeof(buf)) > 0);
	assert_int_equal(lh_json_get(buf, "state", v, sizeof(v)), 0);
	assert_string_equal(v, "\"released\"");
	check_engine_here();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ctl_stopped, lh_teardown),
		cmocka_unit_test_teardown(test_mode_rules, lh_teardown),
		cmocka_unit_test_teardown(test_ctl_usage_and_status, lh_teardown),
		cmocka_unit_test_teardown(test_ctl_sigterm_forwarded, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("lease_ctl", tests, NULL, NULL);
}
