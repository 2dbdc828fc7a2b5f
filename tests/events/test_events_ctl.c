// SPDX-License-Identifier: MIT
/*
 * lockctl's view of the library's events: -v prints them as lines and
 * --log-json as JSON lines on stderr, and "run"/"elect" --metrics-textfile
 * keep the run's counters in a Prometheus textfile that promtool (Debian
 * package prometheus) accepts, replaced whole while COMMAND runs and once
 * more at the end.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lharness.h"

static char buf[1 << 17];

static void read_or_fail(const char *path)
{
	if (lh_read_file(path, buf, sizeof(buf)) < 0)
		fail_msg("cannot read %s", path);
}

static int run_lockctl(const char *dir, const char *tag, const char *const args[])
{
	pid_t p = lh_lockctl(dir, tag, args);

	assert_true(p > 0);
	return lh_wait_pid(p, LH_SAFETY_MS);
}

/* promtool check metrics < path: its exit status. */
static int promtool(const char *path)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || dup2(fd, 0) < 0)
			_exit(126);
		execlp("promtool", "promtool", "check", "metrics", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		fail_msg("promtool is not installed (Debian package prometheus)");
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The value of the series line that starts with prefix in buf, or -1. */
static double value(const char *prefix)
{
	const char *p = buf;

	while ((p = strstr(p, prefix))) {
		if (p == buf || p[-1] == '\n')
			return strtod(p + strlen(prefix), NULL);
		p++;
	}
	return -1;
}

static void test_verbose(void **state)
{
	char dir[512], store[600], path[700];
	int rc;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "evctl-v");
	snprintf(store, sizeof(store), "%s/store", dir);
	{
		const char *const args[] = {"-S", store, "-v", "run", "v1", "--", "true", NULL};

		rc = run_lockctl(dir, "v", args);
	}
	assert_int_equal(rc, 0);
	snprintf(path, sizeof(path), "%s/v.err", dir);
	read_or_fail(path);
	assert_non_null(strstr(buf, "lock v1: acquired (kernel, token "));
	assert_non_null(strstr(buf, "lock v1: released (kernel, token "));
	assert_true(strstr(buf, "acquired") < strstr(buf, "released"));
	/* INFO only: no debug lines without -vv */
	assert_null(strstr(buf, "acquire_attempt"));

	{
		const char *const args[] = {"-S", store, "run", "v1", "--", "true", NULL};

		rc = run_lockctl(dir, "quiet", args);
	}
	assert_int_equal(rc, 0);
	snprintf(path, sizeof(path), "%s/quiet.err", dir);
	read_or_fail(path);
	assert_string_equal(buf, "");

	{
		const char *const args[] = {"-S", store, "-vv", "run", "v1", "--", "true", NULL};

		rc = run_lockctl(dir, "vv", args);
	}
	assert_int_equal(rc, 0);
	snprintf(path, sizeof(path), "%s/vv.err", dir);
	read_or_fail(path);
	assert_non_null(strstr(buf, "debug: lock v1: acquire_attempt"));
}

static void test_log_json(void **state)
{
	char dir[512], store[600], path[700], v[128], tok[64] = "";
	char *line, *save = NULL;
	int rc, n = 0, renewals = 0, released = 0;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "evctl-json");
	snprintf(store, sizeof(store), "%s/store", dir);
	{
		const char *const args[] = {"-S", store, "--log-json", "run", "j1", "--ttl",
		                            "1s", "--",  "sleep",      "0.8", NULL};

		rc = run_lockctl(dir, "j", args);
	}
	assert_int_equal(rc, 0);
	snprintf(path, sizeof(path), "%s/j.err", dir);
	read_or_fail(path);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
		assert_int_equal(lh_json_get(line, "lock", v, sizeof(v)), 0);
		assert_string_equal(v, "\"j1\"");
		assert_int_equal(lh_json_get(line, "mode", v, sizeof(v)), 0);
		assert_string_equal(v, "\"lease\"");
		assert_int_equal(lh_json_get(line, "time", v, sizeof(v)), 0);
		/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" */
		assert_int_equal(strlen(v), 29);
		assert_int_equal(v[11], 'T');
		assert_int_equal(v[27], 'Z');
		assert_int_equal(lh_json_get(line, "event", v, sizeof(v)), 0);
		if (n == 0) {
			assert_string_equal(v, "\"acquire_attempt\"");
			continue;
		}
		if (n == 1) {
			assert_string_equal(v, "\"acquired\"");
			assert_int_equal(lh_json_get(line, "token", tok, sizeof(tok)), 0);
			assert_true(strtoull(tok, NULL, 10) > 0);
			assert_int_equal(lh_json_get(line, "duration_seconds", v, sizeof(v)), 0);
			continue;
		}
		assert_false(released);
		if (!strcmp(v, "\"released\""))
			released = 1;
		else if (!strcmp(v, "\"renewed\"") || !strcmp(v, "\"renew_late\""))
			renewals++;
		else
			fail_msg("unexpected event line: %s", line);
		assert_int_equal(lh_json_get(line, "token", v, sizeof(v)), 0);
		assert_string_equal(v, tok);
	}
	assert_true(released);
	assert_true(renewals >= 1);
}

static int leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

static void test_run_textfile(void **state)
{
	char dir[512], store[600], prom[700], during[720], cmd[1600];
	int rc;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "evctl-prom");
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(prom, sizeof(prom), "%s/run.prom", dir);
	snprintf(during, sizeof(during), "%s/during.prom", dir);
	/* COMMAND copies the file while the lock is held */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && sleep 0.8", prom, during);
	{
		const char *const args[] = {
			"-S", store, "run", "m1", "--ttl", "1s", "--metrics-textfile",
			prom, "-c",  cmd,   NULL};

		rc = run_lockctl(dir, "m", args);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(promtool(during), 0);
	assert_int_equal(promtool(prom), 0);
	assert_int_equal(leftovers(dir), 0);

	read_or_fail(during);
	assert_true(value("lockkit_holding{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_acquires_total{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_releases_total{lock=\"m1\"} ") == 0);

	read_or_fail(prom);
	assert_non_null(strstr(buf, "# TYPE lockkit_acquires_total counter\n"));
	assert_non_null(strstr(buf, "# TYPE lockkit_hold_seconds histogram\n"));
	assert_non_null(strstr(buf, "# HELP lockkit_renewals_total "));
	assert_true(value("lockkit_holding{lock=\"m1\"} ") == 0);
	assert_true(value("lockkit_token{lock=\"m1\"} ") > 0);
	assert_true(value("lockkit_acquires_total{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_acquire_failures_total{lock=\"m1\"} ") == 0);
	assert_true(value("lockkit_releases_total{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_renewals_total{lock=\"m1\",result=\"ok\"} ") +
	                    value("lockkit_renewals_total{lock=\"m1\",result=\"late\"} ") >=
	            1);
	assert_true(value("lockkit_renewals_total{lock=\"m1\",result=\"failed\"} ") == 0);
	assert_true(value("lockkit_leases_lost_total{lock=\"m1\"} ") == 0);
	assert_true(value("lockkit_hold_seconds_count{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_hold_seconds_sum{lock=\"m1\"} ") >= 0.8);
	assert_true(value("lockkit_hold_seconds_bucket{lock=\"m1\",le=\"+Inf\"} ") == 1);
	assert_true(value("lockkit_acquire_wait_seconds_count{lock=\"m1\"} ") == 1);
	assert_true(value("lockkit_renewal_latency_seconds_count{lock=\"m1\"} ") >= 1);
	/* buckets are cumulative */
	assert_true(value("lockkit_hold_seconds_bucket{lock=\"m1\",le=\"0.0001\"} ") == 0);
	assert_true(value("lockkit_hold_seconds_bucket{lock=\"m1\",le=\"100\"} ") == 1);
	/* an election's series only for elect */
	assert_null(strstr(buf, "lockkit_leadership_terms_total"));
}

static void test_run_busy_textfile(void **state)
{
	char dir[512], store[600], prom[700];
	struct lk_store *st;
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;
	int rc;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "evctl-busy");
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(prom, sizeof(prom), "%s/busy.prom", dir);
	st = lh_store_open(store);
	lo.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_lock_open(st, "b1", &lo, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	{
		const char *const args[] = {"-S", store, "run",  "b1", "-n", "--metrics-textfile",
		                            prom, "--",  "true", NULL};

		rc = run_lockctl(dir, "b", args);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(promtool(prom), 0);
	read_or_fail(prom);
	assert_true(value("lockkit_acquires_total{lock=\"b1\"} ") == 0);
	assert_true(value("lockkit_acquire_failures_total{lock=\"b1\"} ") == 1);
	assert_true(value("lockkit_holding{lock=\"b1\"} ") == 0);
	lk_lock_close(lk);
	lk_store_close(st);
}

static void test_elect_textfile(void **state)
{
	char dir[512], store[600], prom[700];
	int rc;

	(void)state;
	lh_store_dir(dir, sizeof(dir), "evctl-elect");
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(prom, sizeof(prom), "%s/elect.prom", dir);
	{
		const char *const args[] = {
			"-S", store, "--log-json", "elect", "e1", "--metrics-textfile",
			prom, "--",  "sleep",      "0.1",   NULL};

		rc = run_lockctl(dir, "e", args);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(promtool(prom), 0);
	read_or_fail(prom);
	assert_true(value("lockkit_leadership_terms_total{lock=\"e1\"} ") == 1);
	assert_true(value("lockkit_resignations_total{lock=\"e1\"} ") == 1);
	assert_true(value("lockkit_demotions_total{lock=\"e1\"} ") == 0);
	assert_true(value("lockkit_leading{lock=\"e1\"} ") == 0);
	assert_true(value("lockkit_leadership_seconds_count{lock=\"e1\"} ") == 1);
	assert_true(value("lockkit_leadership_seconds_sum{lock=\"e1\"} ") >= 0.1);
	assert_true(value("lockkit_election_seconds_count{lock=\"e1\"} ") == 1);
	/* and the events went to stderr */
	{
		char path[700];

		snprintf(path, sizeof(path), "%s/e.err", dir);
		read_or_fail(path);
		assert_non_null(strstr(buf, "\"event\":\"elected\",\"lock\":\"e1\""));
		assert_non_null(strstr(buf, "\"event\":\"resigned\",\"lock\":\"e1\""));
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_verbose, lh_teardown),
		cmocka_unit_test_teardown(test_log_json, lh_teardown),
		cmocka_unit_test_teardown(test_run_textfile, lh_teardown),
		cmocka_unit_test_teardown(test_run_busy_textfile, lh_teardown),
		cmocka_unit_test_teardown(test_elect_textfile, lh_teardown),
	};
	int r = lh_helper_main(argc, argv);

	if (r >= 0)
		return r;
	lh_init(100);
	return cmocka_run_group_tests_name("events_ctl", tests, NULL, NULL);
}
