// SPDX-License-Identifier: MIT
/*
 * lockctl run as scripts see it: the environment COMMAND gets, the exit
 * status for every outcome, where options may go, which store is used, and
 * what lands on stderr when something goes wrong.
 *
 * Exit statuses are the interface scripts branch on, so each one is checked
 * exactly, and a death by signal is never confused with an exit code (the
 * harness reports it as 256 + N). Error output is checked for being a single
 * line that names the lock, because a wrapper that logs stderr of many
 * lockctl calls needs to tell which lock failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"
#include "lockkit.h"

#define BUF 8192

/* stderr of run tag is exactly one line; it contains name if name != NULL. */
static int one_error_line(struct tc *t, const char *tag, const char *name, char *why, size_t cap)
{
	char file[256], err[BUF];
	ssize_t n;

	snprintf(file, sizeof(file), "%s.err", tag);
	n = tc_read(t, file, err, sizeof(err));
	if (n <= 0) {
		snprintf(why, cap, "nothing on stderr");
		return -1;
	}
	if (tc_lines(err) != 1 || err[n - 1] != '\n') {
		snprintf(why, cap, "%d lines on stderr: <%s>", tc_lines(err), err);
		return -1;
	}
	if (name && !strstr(err, name)) {
		snprintf(why, cap, "stderr does not name lock '%s': <%.*s>", name, (int)n - 1, err);
		return -1;
	}
	return 0;
}

static void assert_error_line(struct tc *t, const char *tag, const char *name)
{
	char why[BUF + 128];

	if (one_error_line(t, tag, name, why, sizeof(why)) < 0)
		fail_msg("%s: %s", tag, why);
}

static void assert_stderr_empty(struct tc *t, const char *tag)
{
	char file[256], err[BUF];

	snprintf(file, sizeof(file), "%s.err", tag);
	if (tc_read(t, file, err, sizeof(err)) != 0)
		fail_msg("%s: unexpected stderr: <%s>", tag, err);
}

static void assert_file_is(struct tc *t, const char *name, const char *want)
{
	char buf[BUF];

	if (tc_read(t, name, buf, sizeof(buf)) < 0)
		fail_msg("%s was not written", name);
	assert_string_equal(buf, want);
}

/* ------------------------------------------------------------------------
 * Environment
 */
static void test_env_name_token_store(void **state)
{
	struct tc *t = *state;
	char script[4 * PATH_MAX], env[BUF], st[BUF], obj[BUF], v[256], want[300];
	char *name, *tok, *store;

	snprintf(script, sizeof(script),
	         "printf '%%s\\n%%s\\n%%s\\n' \"$LOCKCTL_NAME\" \"$LOCKCTL_TOKEN\" "
	         "\"$LOCKCTL_STORE\" > '%s/env'; \"$LOCKCTL\" status envlock --json > '%s/st'",
	         t->dir, t->dir);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "envlock", "--", "sh", "-c", script)), 0);
	assert_stderr_empty(t, "r");

	assert_true(tc_read(t, "env", env, sizeof(env)) > 0);
	name = strtok(env, "\n");
	tok = strtok(NULL, "\n");
	store = strtok(NULL, "\n");
	assert_non_null(store);
	assert_string_equal(name, "envlock");
	assert_string_equal(store, t->store);
	assert_true(strspn(tok, "0123456789") == strlen(tok) && tok[0] != '0');

	/* the token COMMAND sees is the one status reports while it runs */
	assert_true(tc_read(t, "st", st, sizeof(st)) > 0);
	assert_int_equal(tc_json_object(st, "envlock", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "held", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
	assert_int_equal(tc_json_member(obj, "token", v, sizeof(v)), 0);
	assert_string_equal(v, tok);
	snprintf(want, sizeof(want), "\"envlock\"");
	assert_int_equal(tc_json_member(obj, "name", v, sizeof(v)), 0);
	assert_string_equal(v, want);
}

static void test_env_store_absolute_with_relative_S(void **state)
{
	struct tc *t = *state;
	char script[4 * PATH_MAX], got[BUF], st[BUF], obj[BUF], v[64], rel[PATH_MAX + 16];
	struct stat a, b;

	/* COMMAND moves away from the directory -S was relative to */
	snprintf(script, sizeof(script),
	         "cd / && printf '%%s\\n' \"$LOCKCTL_STORE\" > '%s/store.env' && "
	         "\"$LOCKCTL\" status rel --json > '%s/st'",
	         t->dir, t->dir);
	assert_int_equal(
		tc_run(t, "r", TC_ARGV("-S", "relstore", "run", "rel", "--", "sh", "-c", script)),
		0);
	assert_true(tc_read(t, "store.env", got, sizeof(got)) > 0);
	got[strcspn(got, "\n")] = 0;
	if (got[0] != '/')
		fail_msg("LOCKCTL_STORE is not absolute: '%s'", got);
	snprintf(rel, sizeof(rel), "%s/relstore", t->dir);
	assert_int_equal(stat(got, &a), 0);
	assert_int_equal(stat(rel, &b), 0);
	assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);

	/* and it names the store the lock is in, from anywhere */
	assert_true(tc_read(t, "st", st, sizeof(st)) > 0);
	assert_int_equal(tc_json_object(st, "rel", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "held", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
}

/* ------------------------------------------------------------------------
 * Exit statuses
 */
static void test_exit_status_passes_through(void **state)
{
	struct tc *t = *state;

	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "--", "sh", "-c", "exit 0")), 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "--", "sh", "-c", "exit 3")), 3);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "--", "sh", "-c", "exit 42")), 42);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "--", "false")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "-c", "exit 5")), 5);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "--command", "exit 6")), 6);
	assert_stderr_empty(t, "r");
}

static void test_exit_status_signal(void **state)
{
	struct tc *t = *state;

	/* lockctl exits 128 + N; it does not die of the signal itself */
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sig", "--", "sh", "-c", "kill -USR1 $$")),
	                 128 + SIGUSR1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sig", "--", "sh", "-c", "kill -KILL $$")),
	                 128 + SIGKILL);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sig", "--", "sh", "-c", "kill -TERM $$")),
	                 128 + SIGTERM);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sig", "-c", "kill -SEGV $$")),
	                 128 + SIGSEGV);
}

static void test_exit_command_not_found(void **state)
{
	struct tc *t = *state;

	assert_int_equal(tc_run(t, "abs", TC_ARGV("run", "nocmd", "--", "/nonexistent/cmd")), 127);
	assert_int_equal(
		tc_run(t, "path",
	               TC_ARGV("run", "nocmd", "--", "lockkit-no-such-command-here", "arg")),
		127);
	assert_error_line(t, "abs", NULL);
	assert_error_line(t, "path", NULL);
	/* the lock was released: it can be taken at once */
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "nocmd", "-n", "--", "true")), 0);
}

static void test_exit_not_executable(void **state)
{
	struct tc *t = *state;
	char p[PATH_MAX + 16];

	tc_touch(t, "plain-file");
	chmod(tc_path(t, "plain-file", p, sizeof(p)), 0644);
	assert_int_equal(tc_run(t, "ne", TC_ARGV("run", "noexec", "--", p)), 126);
	assert_error_line(t, "ne", NULL);
	/* a directory is not executable either */
	assert_int_equal(tc_run(t, "dir", TC_ARGV("run", "noexec", "--", t->dir)), 126);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "noexec", "-n", "--", "true")), 0);
}

static void test_exit_busy_and_timeout(void **state)
{
	struct tc *t = *state;
	int64_t ms;
	pid_t h = tc_hold(t, "busy", NULL, "busy.ready");

	assert_true(h > 0);
	assert_int_equal(tc_run(t, "nb", TC_ARGV("run", "busy", "-n", "--", "true")), 1);
	assert_error_line(t, "nb", "busy");
	assert_int_equal(tc_run(t, "e9", TC_ARGV("run", "busy", "-n", "-E", "9", "--", "true")), 9);
	assert_error_line(t, "e9", "busy");
	assert_int_equal(tc_run(t, "q", TC_ARGV("run", "busy", "-n", "-q", "--", "true")), 1);
	assert_stderr_empty(t, "q");

	assert_int_equal(tc_run_timed(t, "w",
	                              TC_ARGV("run", "busy", "-w", "0.3", "-E", "5", "--", "true"),
	                              &ms),
	                 5);
	if (ms < 300)
		fail_msg("-w 0.3 gave up after %lld ms", (long long)ms);
	assert_error_line(t, "w", "busy");
	/* the holder was not disturbed */
	assert_true(tc_alive(h));
	assert_int_equal(tc_proc_state(h) == 'Z', 0);
	tc_unhold(h);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "busy", "-n", "--", "true")), 0);
}

struct err_case {
	const char *const *args;
	int code;
	const char *name; /* lock name the message must mention, or NULL */
};

static const struct err_case usage_cases[] = {
	{TC_ARGV("run"), 64, NULL},
	{TC_ARGV("run", "-n"), 64, NULL},
	{TC_ARGV("run", "-n", "--", "true"), 64, NULL},
	{TC_ARGV("run", "bad/name", "--", "true"), 64, "bad/name"},
	{TC_ARGV("run", ".hidden", "--", "true"), 64, ".hidden"},
	{TC_ARGV("run", "okname", "--bogus", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "--bogus", "okname", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "-Z", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "-w", "abc", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--wait=1x", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "-w", "-1", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "-E", "300", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "-E", "x", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname"), 64, "okname"},
	{TC_ARGV("run", "okname", "-n", "--"), 64, "okname"},
	{TC_ARGV("run", "okname", "-c", "true", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--ttl", "5s", "--mode", "kernel", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--mode", "kernel", "--ttl", "5s", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--mode", "bogus", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--ttl", "0.5", "--", "true"), 64, "okname"},
	{TC_ARGV("run", "okname", "--kill-after", "1s", "--", "true"), 64, "okname"},
	{TC_ARGV("status"), 64, NULL},
	{TC_ARGV("status", "bad/name"), 64, "bad/name"},
	{TC_ARGV("status", "okname", "--bogus"), 64, NULL},
	{TC_ARGV("ls", "--bogus"), 64, NULL},
	{TC_ARGV("--bogus", "run", "okname", "--", "true"), 64, NULL},
	{TC_ARGV("frobnicate"), 64, NULL},
};

static void describe(const char *const *args, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = 0;
	for (int i = 0; args[i] && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " " : "", args[i]);
}

/*
 * Run every case; check_name selects the part of the contract checked (the
 * status and a single line, or that the line names the lock), so that the
 * two are reported apart.
 */
static void run_cases(struct tc *t, const struct err_case *cases, size_t n, int check_name)
{
	char why[BUF + 128], cmd[512];
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		int rc = tc_run(t, "u", cases[i].args);

		describe(cases[i].args, cmd, sizeof(cmd));
		if (!check_name && rc != cases[i].code) {
			print_message("lockctl %s: exit %d, want %d\n", cmd, rc, cases[i].code);
			bad++;
		} else if (!check_name && one_error_line(t, "u", NULL, why, sizeof(why)) < 0) {
			print_message("lockctl %s: %s\n", cmd, why);
			bad++;
		} else if (check_name && cases[i].name &&
		           one_error_line(t, "u", cases[i].name, why, sizeof(why)) < 0) {
			print_message("lockctl %s: %s\n", cmd, why);
			bad++;
		}
	}
	if (bad)
		fail_msg("%d of %zu cases broke the contract (listed above)", bad, n);
}

static void test_usage_errors_exit_64_one_line(void **state)
{
	run_cases(*state, usage_cases, sizeof(usage_cases) / sizeof(usage_cases[0]), 0);
}

static void test_usage_errors_name_the_lock(void **state)
{
	run_cases(*state, usage_cases, sizeof(usage_cases) / sizeof(usage_cases[0]), 1);
}

static void test_store_is_regular_file(void **state)
{
	struct tc *t = *state;
	char p[PATH_MAX + 16];

	tc_touch(t, "not-a-dir");
	t->store_env = tc_path(t, "not-a-dir", p, sizeof(p));
	assert_int_equal(tc_run(t, "sf", TC_ARGV("run", "sflock", "--", "true")), 69);
	assert_error_line(t, "sf", NULL);
	assert_int_equal(tc_run(t, "sfS", TC_ARGV("-S", p, "run", "sflock", "--", "true")), 69);
	assert_error_line(t, "sfS", NULL);
	assert_int_equal(tc_run(t, "sfst", TC_ARGV("status", "sflock")), 69);
	assert_error_line(t, "sfst", NULL);
}

static void test_store_is_regular_file_names_lock(void **state)
{
	struct tc *t = *state;
	char p[PATH_MAX + 16];

	tc_touch(t, "not-a-dir");
	assert_int_equal(tc_run(t, "sf",
	                        TC_ARGV("-S", tc_path(t, "not-a-dir", p, sizeof(p)), "run",
	                                "sflock", "--", "true")),
	                 69);
	assert_error_line(t, "sf", "sflock");
}

static void test_missing_or_noexec_command_names_lock(void **state)
{
	struct tc *t = *state;
	char p[PATH_MAX + 16];

	assert_int_equal(tc_run(t, "nf", TC_ARGV("run", "cmdlock", "--", "/nonexistent/cmd")), 127);
	assert_error_line(t, "nf", "cmdlock");
	tc_touch(t, "plain-file");
	chmod(tc_path(t, "plain-file", p, sizeof(p)), 0644);
	assert_int_equal(tc_run(t, "ne", TC_ARGV("run", "cmdlock", "--", p)), 126);
	assert_error_line(t, "ne", "cmdlock");
}

/*
 * Lease mode arrived with the lease engine: --mode lease and --ttl run
 * COMMAND under a lease. A name already used in kernel mode keeps its mode,
 * and asking for the other one is an error naming the lock.
 */
static void test_mode_lease(void **state)
{
	struct tc *t = *state;
	char script[2 * PATH_MAX], out[BUF], obj[BUF], v[64], tok[64];
	int rc;

	snprintf(script, sizeof(script),
	         "printf '%%s\\n' \"$LOCKCTL_TOKEN\" > '%s/tok'; "
	         "\"$LOCKCTL\" status leaselock --json > '%s/st'; exit 3",
	         t->dir, t->dir);
	assert_int_equal(
		tc_run(t, "ls",
	               TC_ARGV("run", "leaselock", "--mode", "lease", "--", "sh", "-c", script)),
		3);
	assert_stderr_empty(t, "ls");
	assert_true(tc_read(t, "st", out, sizeof(out)) > 0);
	assert_int_equal(tc_json_object(out, "leaselock", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"lease\"");
	assert_int_equal(tc_json_member(obj, "held", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
	assert_int_equal(tc_json_member(obj, "token", v, sizeof(v)), 0);
	assert_true(tc_read(t, "tok", tok, sizeof(tok)) > 0);
	tok[strcspn(tok, "\n")] = 0;
	assert_string_equal(v, tok);
	/* --mode=lease, and --ttl alone (it implies lease mode) */
	assert_int_equal(tc_run(t, "ls2", TC_ARGV("run", "leaselock", "--mode=lease", "true")), 0);
	assert_int_equal(tc_run(t, "ls3", TC_ARGV("run", "leaselock", "--ttl", "5s", "true")), 0);

	/* a kernel-mode lock cannot be taken as a lease */
	assert_int_equal(tc_run(t, "k", TC_ARGV("run", "kernlock", "true")), 0);
	rc = tc_run(t, "kl", TC_ARGV("run", "kernlock", "--mode", "lease", "--", "true"));
	/* lockctl(1): 74 for "a lock of the other mode than asked for" */
	if (rc != 74)
		fail_msg("--mode lease on a kernel-mode lock: exit %d, want 74", rc);
	assert_error_line(t, "kl", "kernlock");
	assert_int_equal(tc_run(t, "k", TC_ARGV("run", "kernlock", "--mode", "kernel", "true")), 0);
}

/* ------------------------------------------------------------------------
 * Option placement
 */
static void test_options_before_and_after_name(void **state)
{
	struct tc *t = *state;
	int64_t ms;
	pid_t h = tc_hold(t, "op", NULL, "op.ready");

	assert_true(h > 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "-n", "op", "--", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-n", "--", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-n", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "-E", "2", "op", "-n", "true")), 2);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-nE", "3", "--", "true")), 3);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-nE3", "true")), 3);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "--nonblock", "op", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "--nb", "op", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "--no-wait", "true")), 1);
	/* -w 0 is -n (lockctl(1)) */
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-w", "0", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "-w0", "-E5", "true")), 5);
	assert_int_equal(tc_run(t, "q", TC_ARGV("run", "op", "-nq", "true")), 1);
	assert_stderr_empty(t, "q");
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "op", "--nonblock", "-E", "4", "true")), 4);
	assert_int_equal(
		tc_run(t, "r",
	               TC_ARGV("run", "op", "-n", "--conflict-exit-code", "7", "--", "true")),
		7);
	assert_int_equal(
		tc_run(t, "r", TC_ARGV("run", "op", "-n", "--conflict-exit-code=8", "true")), 8);

	assert_int_equal(tc_run_timed(t, "r", TC_ARGV("run", "op", "--wait=1s", "--", "true"), &ms),
	                 1);
	assert_true(ms >= 1000);
	assert_int_equal(tc_run_timed(t, "r",
	                              TC_ARGV("run", "--timeout", "1", "-E", "6", "op", "true"),
	                              &ms),
	                 6);
	assert_true(ms >= 1000);
	assert_int_equal(tc_run_timed(t, "r", TC_ARGV("run", "op", "--wait", "250ms", "true"), &ms),
	                 1);
	assert_true(ms >= 250);
	tc_unhold(h);
}

static void test_shared_and_exclusive_flags(void **state)
{
	struct tc *t = *state;
	pid_t h = tc_hold(t, "sx", "--shared", "sx.ready");

	assert_true(h > 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "--shared", "-n", "--", "true")), 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "-s", "sx", "-n", "true")), 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "-sn", "true")), 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "-n", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "--exclusive", "-n", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "-x", "-n", "true")), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "sx", "-e", "-n", "true")), 1);
	/* the last of -s / -x wins */
	assert_int_equal(
		tc_run(t, "r", TC_ARGV("run", "sx", "--shared", "--exclusive", "-n", "true")), 1);
	assert_int_equal(
		tc_run(t, "r", TC_ARGV("run", "sx", "--exclusive", "--shared", "-n", "true")), 0);
	tc_unhold(h);
}

static void test_command_options_not_eaten(void **state)
{
	struct tc *t = *state;
	char out[BUF];

	assert_int_equal(tc_run(t, "echo", TC_ARGV("run", "ce", "echo", "-n", "hi")), 0);
	assert_int_equal(tc_read(t, "echo.out", out, sizeof(out)), 2);
	assert_string_equal(out, "hi");
	assert_int_equal(tc_run(t, "echo2", TC_ARGV("run", "-n", "ce", "echo", "-n", "-E", "hi")),
	                 0);
	assert_file_is(t, "echo2.out", "hi");

	tc_touch(t, "listed-file");
	assert_int_equal(tc_run(t, "ls", TC_ARGV("run", "ce", "--", "ls", "-l")), 0);
	assert_true(tc_read(t, "ls.out", out, sizeof(out)) > 0);
	if (strncmp(out, "total ", 6) || !strstr(out, "-rw") || !strstr(out, "listed-file"))
		fail_msg("ls -l output does not look like a long listing: %s", out);

	/* everything after COMMAND is COMMAND's, options and "--" included */
	assert_int_equal(tc_run(t, "args",
	                        TC_ARGV("run", "ce", "--", "sh", "-c", "printf '%s|' \"$@\"", "sh",
	                                "-n", "-E", "3", "--wait=1", "--", "-c", "x")),
	                 0);
	assert_file_is(t, "args.out", "-n|-E|3|--wait=1|--|-c|x|");
	/* a COMMAND word that looks like a lock name is still COMMAND */
	assert_int_equal(tc_run(t, "two", TC_ARGV("run", "ce", "printf", "%s,", "ce", "-s")), 0);
	/* an attached option value: -w5s */
	assert_int_equal(tc_run(t, "att", TC_ARGV("run", "-w5s", "ce", "echo", "-n", "ok")), 0);
	assert_file_is(t, "att.out", "ok");
	assert_file_is(t, "two.out", "ce,-s,");
}

/* ------------------------------------------------------------------------
 * The lock's descriptor stays with lockctl
 */
static void test_lock_fd_not_inherited(void **state)
{
	struct tc *t = *state;
	char script[2 * PATH_MAX], fds[BUF], lockfile[PATH_MAX + 16];

	snprintf(script, sizeof(script),
	         "for f in /proc/$$/fd/*; do readlink \"$f\" || :; done > '%s/fds'", t->dir);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "fdlock", "--", "sh", "-c", script)), 0);
	assert_true(tc_read(t, "fds", fds, sizeof(fds)) > 0);
	/* the listing is live: it shows the file it is written to */
	assert_non_null(strstr(fds, "/fds\n"));
	snprintf(lockfile, sizeof(lockfile), "%s/fdlock\n", t->store);
	if (strstr(fds, lockfile))
		fail_msg("COMMAND has a descriptor of the lock file:\n%s", fds);
	if (strstr(fds, "/store\n"))
		fail_msg("COMMAND has a descriptor of the store directory:\n%s", fds);

	/* same for a directly executed COMMAND, and with -o */
	assert_int_equal(
		tc_run(t, "ls", TC_ARGV("run", "fdlock", "-o", "--", "ls", "-l", "/proc/self/fd/")),
		0);
	assert_true(tc_read(t, "ls.out", fds, sizeof(fds)) > 0);
	assert_non_null(strstr(fds, "ls.out"));
	lockfile[strlen(lockfile) - 1] = 0;
	if (strstr(fds, lockfile))
		fail_msg("COMMAND has a descriptor of the lock file:\n%s", fds);
}

/* ------------------------------------------------------------------------
 * Help and version
 */
static void assert_help(struct tc *t, const char *const *args, const char *want)
{
	char out[BUF], cmd[256];

	describe(args, cmd, sizeof(cmd));
	if (tc_run(t, "h", args) != 0)
		fail_msg("lockctl %s did not exit 0", cmd);
	assert_stderr_empty(t, "h");
	assert_true(tc_read(t, "h.out", out, sizeof(out)) > 0);
	if (strncmp(out, "Usage: lockctl", 14) || !strstr(out, want))
		fail_msg("lockctl %s: unexpected help text:\n%s", cmd, out);
}

static void test_help_and_version(void **state)
{
	struct tc *t = *state;
	char out[BUF], want[64];

	assert_help(t, TC_ARGV("--help"), "Commands:");
	assert_help(t, TC_ARGV("-h"), "Commands:");
	assert_help(t, TC_ARGV("help"), "Commands:");
	assert_help(t, TC_ARGV("run", "--help"), "run NAME");
	assert_help(t, TC_ARGV("run", "-h"), "--conflict-exit-code");
	assert_help(t, TC_ARGV("run", "somelock", "--help"), "run NAME");
	assert_help(t, TC_ARGV("help", "run"), "run NAME");
	assert_help(t, TC_ARGV("status", "--help"), "status NAME");
	assert_help(t, TC_ARGV("help", "status"), "status NAME");
	assert_help(t, TC_ARGV("ls", "--help"), " ls ");
	assert_help(t, TC_ARGV("help", "ls"), " ls ");
	/* help never needs or creates a store */
	assert_int_equal(tc_exists(t, "store"), 0);

	snprintf(want, sizeof(want), "lockctl %s", LK_VERSION_STRING);
	assert_int_equal(tc_run(t, "v", TC_ARGV("--version")), 0);
	assert_true(tc_read(t, "v.out", out, sizeof(out)) > 0);
	assert_int_equal(strncmp(out, want, strlen(want)), 0);
	assert_int_equal(tc_lines(out), 1);
	assert_int_equal(tc_run(t, "v", TC_ARGV("-V")), 0);
	assert_true(tc_read(t, "v.out", out, sizeof(out)) > 0);
	assert_int_equal(strncmp(out, want, strlen(want)), 0);

	/* no command at all: usage on stderr, exit 64 */
	assert_int_equal(tc_run(t, "none", TC_ARGV("-S", t->store)), 64);
	assert_true(tc_read(t, "none.err", out, sizeof(out)) > 0);
	assert_int_equal(strncmp(out, "Usage: lockctl", 14), 0);
}

/* ------------------------------------------------------------------------
 * Which store
 */
static void test_store_env_and_S_override(void **state)
{
	struct tc *t = *state;
	char a[PATH_MAX + 8], b[PATH_MAX + 8], c[PATH_MAX + 8], out[BUF], obj[BUF], v[64];
	char envstore[PATH_MAX + 16], script[PATH_MAX * 2], opt[PATH_MAX + 16];

	snprintf(a, sizeof(a), "%s/A", t->dir);
	snprintf(b, sizeof(b), "%s/B", t->dir);
	snprintf(c, sizeof(c), "%s/C", t->dir);
	t->store_env = a;

	snprintf(script, sizeof(script), "printf '%%s\\n' \"$LOCKCTL_STORE\" > '%s/seen'", t->dir);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "one", "--", "sh", "-c", script)), 0);
	assert_int_equal(tc_exists(t, "A/one"), 1);
	assert_int_equal(tc_exists(t, "B"), 0);
	snprintf(envstore, sizeof(envstore), "%s\n", a);
	assert_file_is(t, "seen", envstore);

	assert_int_equal(tc_run(t, "r", TC_ARGV("-S", b, "run", "two", "--", "sh", "-c", script)),
	                 0);
	assert_int_equal(tc_exists(t, "B/two"), 1);
	assert_int_equal(tc_exists(t, "A/two"), 0);
	snprintf(envstore, sizeof(envstore), "%s\n", b);
	assert_file_is(t, "seen", envstore);

	snprintf(opt, sizeof(opt), "--store=%s", c);
	assert_int_equal(tc_run(t, "r", TC_ARGV(opt, "run", "three", "true")), 0);
	assert_int_equal(tc_exists(t, "C/three"), 1);
	snprintf(opt, sizeof(opt), "-S%s", c);
	assert_int_equal(tc_run(t, "r", TC_ARGV(opt, "run", "four", "true")), 0);
	assert_int_equal(tc_exists(t, "C/four"), 1);
	assert_int_equal(tc_run(t, "r", TC_ARGV("--store", c, "run", "five", "true")), 0);
	assert_int_equal(tc_exists(t, "C/five"), 1);
	assert_int_equal(
		tc_exists(t, "A/three") || tc_exists(t, "A/four") || tc_exists(t, "A/five"), 0);

	/* status reads the store it is pointed at */
	assert_int_equal(tc_run(t, "st", TC_ARGV("status", "one", "--json")), 0);
	assert_true(tc_read(t, "st.out", out, sizeof(out)) > 0);
	assert_int_equal(tc_json_object(out, "one", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "exists", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
	assert_int_equal(tc_run(t, "st", TC_ARGV("-S", b, "status", "one", "--json")), 0);
	assert_true(tc_read(t, "st.out", out, sizeof(out)) > 0);
	assert_int_equal(tc_json_object(out, "one", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "exists", v, sizeof(v)), 0);
	assert_string_equal(v, "false");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_env_name_token_store, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_env_store_absolute_with_relative_S, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_status_passes_through, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_status_signal, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_command_not_found, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_not_executable, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_busy_and_timeout, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors_exit_64_one_line, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors_name_the_lock, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_store_is_regular_file, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_store_is_regular_file_names_lock, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_missing_or_noexec_command_names_lock, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_mode_lease, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_options_before_and_after_name, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_shared_and_exclusive_flags, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_command_options_not_eaten, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_lock_fd_not_inherited, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_help_and_version, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_store_env_and_S_override, tc_setup,
	                                        tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
