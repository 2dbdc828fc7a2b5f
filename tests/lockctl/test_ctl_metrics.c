// SPDX-License-Identifier: MIT
/*
 * lockctl metrics: the exposition shows what status shows (held, token,
 * mode, state, TTL and renewal age for leases, the holder as an _info
 * series), label values are escaped, --textfile replaces the file whole,
 * and promtool (Debian package prometheus) accepts every output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char out[65536];

/* promtool check metrics < path: its exit status, or -1 if it cannot run. */
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
		fail_msg("promtool is not installed (Debian package prometheus; "
		         "tools/install-deps.sh test installs it)");
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The value of the series line that starts with prefix, or -1 if absent. */
static double value(const char *prefix)
{
	const char *p = out;

	while ((p = strstr(p, prefix))) {
		if (p == out || p[-1] == '\n')
			return strtod(p + strlen(prefix), NULL);
		p++;
	}
	return -1;
}

static void test_exposition(void **state)
{
	struct tc *t = *state;
	char path[TC_DIR_MAX + 64], sline[256], tok[64], status_out[4096];
	pid_t k, l;

	assert_int_equal(tc_run(t, "f", TC_ARGV("run", "idle", "--", "true")), 0);
	k = tc_hold(t, "kern", NULL, "k.ready");
	l = tc_hold(t, "lea", "--ttl=3s", "l.ready");
	assert_true(k > 0 && l > 0);
	assert_int_equal(tc_run(t, "m", TC_ARGV("metrics")), 0);
	assert_true(tc_read(t, "m.out", out, sizeof(out)) > 0);
	assert_int_equal(promtool(tc_path(t, "m.out", path, sizeof(path))), 0);

	assert_true(value("lockkit_store_locks ") == 3);
	assert_true(value("lockkit_store_unreadable_locks ") == 0);
	assert_true(value("lockkit_lock_held{lock=\"idle\",mode=\"kernel\",shared=\"false\"} ") == 0);
	assert_true(value("lockkit_lock_held{lock=\"kern\",mode=\"kernel\",shared=\"false\"} ") == 1);
	assert_true(value("lockkit_lock_held{lock=\"lea\",mode=\"lease\",shared=\"false\"} ") == 1);
	assert_true(value("lockkit_lock_state{lock=\"idle\",state=\"free\"} ") == 1);
	assert_true(value("lockkit_lock_state{lock=\"kern\",state=\"held\"} ") == 1);
	assert_true(value("lockkit_lock_state{lock=\"kern\",state=\"free\"} ") == 0);
	assert_true(value("lockkit_lock_ttl_seconds{lock=\"lea\"} ") == 3);
	assert_true(value("lockkit_lock_renewal_age_seconds{lock=\"lea\"} ") >= 0);
	assert_true(value("lockkit_lock_ttl_seconds{lock=\"kern\"} ") == -1);
	assert_non_null(strstr(out, "lockkit_lock_holder_info{lock=\"kern\",owner=\"sh\""));
	assert_null(strstr(out, "lockkit_lock_holder_info{lock=\"idle\""));

	/* the token is the one status reports, digit for digit */
	assert_int_equal(tc_run(t, "s", TC_ARGV("status", "kern", "--json")), 0);
	assert_true(tc_read(t, "s.out", status_out, sizeof(status_out)) > 0);
	assert_int_equal(tc_json_member(status_out, "token", tok, sizeof(tok)), 0);
	snprintf(sline, sizeof(sline), "\nlockkit_lock_token{lock=\"kern\"} %s\n", tok);
	assert_non_null(strstr(out, sline));

	tc_unhold(k);
	tc_unhold(l);
}

static void test_textfile_and_escaping(void **state)
{
	struct tc *t = *state;
	char path[3 * TC_DIR_MAX], dir[TC_DIR_MAX + 64], arg[4 * TC_DIR_MAX];
	struct stat st1, st2;
	pid_t h;

	/* an owner label with characters the format must escape */
	h = tc_spawn(t, "h",
	             TC_ARGV("run", "odd", "--owner", "a\"b\\c", "--", "sh", "-c",
	                     "echo x > odd.ready; exec sleep 60"));
	assert_true(h > 0);
	assert_int_equal(tc_wait_line(t, "odd.ready", TC_BOUND_MS), 0);

	tc_path(t, "collector", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/lockkit.prom", dir);
	snprintf(arg, sizeof(arg), "--textfile=%s", path);
	assert_int_equal(tc_run(t, "m", TC_ARGV("metrics", arg)), 0);
	assert_int_equal(tc_read(t, "m.out", out, sizeof(out)), 0);
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(promtool(path), 0);
	/* rewritten as a new file (rename), nothing else left in the directory */
	assert_int_equal(tc_run(t, "m2", TC_ARGV("metrics", "--textfile", path)), 0);
	assert_int_equal(stat(path, &st2), 0);
	assert_true(st1.st_ino != st2.st_ino);
	{
		FILE *f = fopen(path, "re");
		size_t n;

		assert_non_null(f);
		n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = 0;
		fclose(f);
	}
	assert_non_null(strstr(out, "owner=\"a\\\"b\\\\c\""));
	snprintf(arg, sizeof(arg), "ls -A %s | wc -l > %s/count", dir, t->dir);
	assert_int_equal(system(arg), 0);
	assert_int_equal(tc_read_long(t, "count"), 1);
	kill(h, SIGTERM);

	/* a directory that does not exist: error, nothing written */
	snprintf(path, sizeof(path), "%s/missing/x.prom", dir);
	assert_int_equal(tc_run(t, "m3", TC_ARGV("metrics", "--textfile", path)), 74);
	assert_int_equal(tc_run(t, "m4", TC_ARGV("metrics", "--textfile")), 64);
	assert_int_equal(tc_run(t, "m5", TC_ARGV("metrics", "extra")), 64);
}

static void test_empty_store(void **state)
{
	struct tc *t = *state;
	char path[TC_DIR_MAX + 64];

	/* no store yet: a valid exposition with zero locks, and no store created */
	assert_int_equal(tc_run(t, "m", TC_ARGV("metrics")), 0);
	assert_true(tc_read(t, "m.out", out, sizeof(out)) > 0);
	assert_true(value("lockkit_store_locks ") == 0);
	assert_int_equal(promtool(tc_path(t, "m.out", path, sizeof(path))), 0);
	assert_int_equal(tc_exists(t, "store"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exposition, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_textfile_and_escaping, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_empty_store, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests_name("lockctl metrics", tests, NULL, NULL);
}
