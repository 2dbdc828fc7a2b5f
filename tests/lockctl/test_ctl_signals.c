// SPDX-License-Identifier: MIT
/*
 * lockctl run and processes: signals sent to lockctl must reach COMMAND,
 * COMMAND must start with the signal dispositions lockctl was started with,
 * and nothing COMMAND started may still run once someone else can hold the
 * lock, whether COMMAND exits, lockctl (or its whole process group) is
 * SIGKILLed, or lockctl's guardian is SIGKILLed.
 *
 * "Dead before the lock is free" is checked from the only place where it
 * means something: a second lockctl waiting for the same lock, whose COMMAND
 * probes the first one's processes (kill -0) as soon as it holds the lock.
 * A probe from the test itself after the fact would pass even if the
 * processes died a moment after the release. The processes probed include a
 * background child, a grandchild that moved to its own session with setsid
 * (out of COMMAND's process group, so a group kill misses it) and one that
 * ignores SIGTERM.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define BUF 8192

/* The waiter's COMMAND: which of the pids in the listed files still exist. */
#define PROBE(files)                                                                               \
	"for p in $(cat " files "); do kill -0 $p 2>/dev/null && echo alive $p; done "             \
	"> check; echo done >> check"

static void assert_check_clean(struct tc *t)
{
	char buf[BUF];

	assert_true(tc_read(t, "check", buf, sizeof(buf)) > 0);
	if (strcmp(buf, "done\n"))
		fail_msg("when the waiter got the lock, processes of the previous holder were "
		         "still there:\n%s",
		         buf);
}

static void wait_code(pid_t pid, int want)
{
	int status;

	if (tc_wait(pid, TC_BOUND_MS, &status) < 0)
		fail_msg("process %d did not finish in %d ms", (int)pid, TC_BOUND_MS);
	if (tc_code(status) != want)
		fail_msg("process %d: status %d, want %d", (int)pid, tc_code(status), want);
}

/* ------------------------------------------------------------------------
 * Forwarding
 */
static const struct {
	int sig;
	const char *name;
	int code;
} fwd[] = {
	{SIGTERM, "TERM", 21},
	{SIGINT, "INT", 22},
	{SIGHUP, "HUP", 23},
	{SIGQUIT, "QUIT", 24},
};

static void test_signals_forwarded_to_command(void **state)
{
	struct tc *t = *state;
	char script[2048], buf[64], want[64], path[PATH_MAX + 16];
	size_t n = 0;

	n += (size_t)snprintf(script + n, sizeof(script) - n, "ulimit -c 0; ");
	for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++)
		n += (size_t)snprintf(script + n, sizeof(script) - n,
		                      "trap 'echo %s > got; exit %d' %s; ", fwd[i].name,
		                      fwd[i].code, fwd[i].name);
	snprintf(script + n, sizeof(script) - n,
	         "echo $$ > ready; i=0; while [ $i -lt 1000 ]; do sleep 0.02; "
	         "i=$((i + 1)); done; exit 99");

	for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++) {
		pid_t l;

		unlink(tc_path(t, "ready", path, sizeof(path)));
		unlink(tc_path(t, "got", path, sizeof(path)));
		l = tc_spawn(t, "fw", TC_ARGV("run", "fwd", "--", "sh", "-c", script));
		assert_true(l > 0);
		assert_int_equal(tc_wait_line(t, "ready", TC_BOUND_MS), 0);
		kill(l, fwd[i].sig);
		wait_code(l, fwd[i].code);
		snprintf(want, sizeof(want), "%s\n", fwd[i].name);
		if (tc_read(t, "got", buf, sizeof(buf)) <= 0 || strcmp(buf, want))
			fail_msg("SIG%s sent to lockctl: COMMAND recorded '%s'", fwd[i].name, buf);
	}
}

static void test_untrapped_signal_status(void **state)
{
	struct tc *t = *state;
	char path[PATH_MAX + 16];
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};

	for (size_t i = 0; i < 3; i++) {
		pid_t l;

		unlink(tc_path(t, "ready", path, sizeof(path)));
		l = tc_spawn(
			t, "u",
			TC_ARGV("run", "unt", "--", "sh", "-c", "echo $$ > ready; exec sleep 60"));
		assert_true(l > 0);
		assert_int_equal(tc_wait_line(t, "ready", TC_BOUND_MS), 0);
		kill(l, sigs[i]);
		/* COMMAND died of the signal: lockctl exits 128 + N */
		wait_code(l, 128 + sigs[i]);
	}
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "unt", "-n", "true")), 0);
}

/*
 * COMMAND starts with the signal dispositions and mask lockctl was started
 * with: what lockctl blocks or ignores for its own supervision must not leak
 * into it (a COMMAND with SIGPIPE ignored turns "producer | head" into
 * "Broken pipe" errors), while what the caller ignored (nohup) stays ignored.
 */
static void test_command_signal_dispositions(void **state)
{
	struct tc *t = *state;
	char script[PATH_MAX + 128], buf[BUF];

	snprintf(script, sizeof(script), "grep -E '^Sig(Blk|Ign):' /proc/self/status > '%s/sigs'",
	         t->dir);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "disp", "--", "sh", "-c", script)), 0);
	assert_true(tc_read(t, "sigs", buf, sizeof(buf)) > 0);
	if (strcmp(buf, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"))
		fail_msg("COMMAND started with signals blocked or ignored:\n%s", buf);

	/* a writer to a closed pipe dies of SIGPIPE, as it would without lockctl */
	assert_int_equal(
		tc_run(t, "pipe",
	               TC_ARGV("run", "disp", "--", "sh", "-c", "kill -PIPE $$; echo survived")),
		128 + SIGPIPE);
	assert_int_equal(
		tc_run(t, "pipe",
	               TC_ARGV("run", "disp", "-c", "yes | head -n 1 > /dev/null; exit 0")),
		0);
	assert_true(tc_read(t, "pipe.err", buf, sizeof(buf)) == 0);
}

static void test_command_keeps_ignored_signals(void **state)
{
	struct tc *t = *state;
	char buf[BUF];

	/* started under nohup: COMMAND still ignores SIGHUP */
	t->ignore_sig = SIGHUP;
	assert_int_equal(
		tc_run(t, "hup",
	               TC_ARGV("run", "disp", "--", "sh", "-c", "kill -HUP $$; echo survived")),
		0);
	assert_true(tc_read(t, "hup.out", buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "survived\n");
}

/* ------------------------------------------------------------------------
 * Nothing outlives the hold
 */
/*
 * SIGKILL lockctl (or, with whole_group, its whole process group, as
 * "kill -9 %job" or a service manager does) while COMMAND runs with a
 * background child and a grandchild in a session of its own, and another
 * lockctl waits for the lock.
 */
static void sigkill_lockctl(struct tc *t, int whole_group)
{
	static const char script[] =
		"sleep 300 & echo $! > bgpid; "
		"setsid sh -c 'echo $$ > bg2; exec sleep 300' & "
		"while [ ! -s bg2 ]; do sleep 0.01; done; echo $$ > cmdpid; sleep 300";
	pid_t l, w, g, pids[3];
	int status;

	l = tc_spawn(t, "l", TC_ARGV("run", "pd", "--", "sh", "-c", script));
	assert_true(l > 0);
	assert_int_equal(tc_wait_line(t, "cmdpid", TC_BOUND_MS), 0);
	pids[0] = (pid_t)tc_read_long(t, "bgpid");
	pids[1] = (pid_t)tc_read_long(t, "bg2");
	pids[2] = (pid_t)tc_read_long(t, "cmdpid");
	for (int i = 0; i < 3; i++)
		assert_true(pids[i] > 0 && tc_alive(pids[i]));
	/* the grandchild really left COMMAND's session and process group */
	assert_true(getsid(pids[1]) != getsid(pids[2]));
	assert_true(getpgid(pids[1]) != getpgid(pids[2]));
	g = tc_find_child(l, "lockctl-guard");
	assert_true(g > 0);

	w = tc_spawn(t, "w",
	             TC_ARGV("run", "pd", "-w", "15", "--", "sh", "-c", PROBE("bgpid bg2 cmdpid")));
	assert_true(w > 0);
	tc_sleep_ms(200);
	assert_int_equal(waitpid(w, &status, WNOHANG), 0);

	kill(whole_group ? -l : l, SIGKILL);
	wait_code(l, 256 + SIGKILL);
	wait_code(w, 0);
	assert_check_clean(t);
	for (int i = 0; i < 3; i++)
		assert_false(tc_alive(pids[i]));
	/* the guardian (now the test's child, as subreaper) ended cleanly */
	wait_code(g, 0);
}

static void test_sigkill_lockctl_kills_everything_first(void **state)
{
	sigkill_lockctl(*state, 0);
}

static void test_sigkill_lockctl_group_kills_everything_first(void **state)
{
	sigkill_lockctl(*state, 1);
}

static void test_sigkill_lockctl_without_waiter_frees_lock(void **state)
{
	struct tc *t = *state;
	pid_t l, cmd, bg;
	int64_t end;
	char out[BUF];

	l = tc_spawn(t, "l",
	             TC_ARGV("run", "pd2", "--", "sh", "-c",
	                     "sleep 300 & echo $! > bgpid; echo $$ > cmdpid; sleep 300"));
	assert_true(l > 0);
	assert_int_equal(tc_wait_line(t, "cmdpid", TC_BOUND_MS), 0);
	cmd = (pid_t)tc_read_long(t, "cmdpid");
	bg = (pid_t)tc_read_long(t, "bgpid");
	kill(l, SIGKILL);
	wait_code(l, 256 + SIGKILL);
	/* the lock becomes free (bounded wait), and by then both are gone */
	end = tc_now_ms() + TC_BOUND_MS;
	for (;;) {
		assert_int_equal(tc_run(t, "st", TC_ARGV("status", "pd2", "--json")), 0);
		assert_true(tc_read(t, "st.out", out, sizeof(out)) > 0);
		if (strstr(out, "\"held\":false"))
			break;
		if (tc_now_ms() > end)
			fail_msg("lock still held %d ms after lockctl was killed", TC_BOUND_MS);
		tc_sleep_ms(10);
	}
	assert_false(tc_alive(cmd));
	assert_false(tc_alive(bg));
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "pd2", "-n", "true")), 0);
}

static void test_leftover_child_killed_before_release(void **state)
{
	struct tc *t = *state;
	static const char script[] =
		"sleep 300 & echo $! > bgpid; i=0; "
		"while [ ! -e go ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i + 1)); done; exit 5";
	pid_t l, w, bg;
	int status;

	l = tc_spawn(t, "l", TC_ARGV("run", "lc", "--", "sh", "-c", script));
	assert_true(l > 0);
	assert_int_equal(tc_wait_line(t, "bgpid", TC_BOUND_MS), 0);
	bg = (pid_t)tc_read_long(t, "bgpid");
	w = tc_spawn(t, "w", TC_ARGV("run", "lc", "-w", "15", "--", "sh", "-c", PROBE("bgpid")));
	assert_true(w > 0);
	tc_sleep_ms(200);
	assert_int_equal(waitpid(w, &status, WNOHANG), 0);
	assert_true(tc_alive(bg));

	tc_touch(t, "go");
	wait_code(l, 5);
	assert_false(tc_alive(bg));
	wait_code(w, 0);
	assert_check_clean(t);
}

static void test_stubborn_and_daemonized_leftovers(void **state)
{
	struct tc *t = *state;
	/* one ignores SIGTERM, one double-forked into its own session */
	static const char script[] =
		"sh -c 'trap \"\" TERM; echo $$ > stubborn; exec sleep 300' & "
		"setsid sh -c 'sleep 300 & echo $! > daemon; exit 0' & "
		"while [ ! -s stubborn ] || [ ! -s daemon ]; do sleep 0.01; done; exit 4";
	pid_t l, w, pids[2];
	int64_t start;
	int status;

	w = -1;
	start = tc_now_ms();
	l = tc_spawn(t, "l", TC_ARGV("run", "sd", "--grace", "0.3", "--", "sh", "-c", script));
	assert_true(l > 0);
	/* a waiter, started once the first run holds the lock */
	assert_int_equal(tc_wait_line(t, "daemon", TC_BOUND_MS), 0);
	assert_int_equal(tc_wait_line(t, "stubborn", TC_BOUND_MS), 0);
	pids[0] = (pid_t)tc_read_long(t, "stubborn");
	pids[1] = (pid_t)tc_read_long(t, "daemon");
	if (waitpid(l, &status, WNOHANG) == 0) {
		w = tc_spawn(t, "w",
		             TC_ARGV("run", "sd", "-w", "15", "--", "sh", "-c",
		                     PROBE("stubborn daemon")));
		assert_true(w > 0);
		wait_code(l, 4);
	} else {
		assert_int_equal(tc_code(status), 4);
	}
	/* the stubborn one needed SIGKILL after the grace period */
	assert_true(tc_now_ms() - start >= 300);
	assert_false(tc_alive(pids[0]));
	assert_false(tc_alive(pids[1]));
	if (w > 0) {
		wait_code(w, 0);
		assert_check_clean(t);
	}
}

static void test_guardian_killed(void **state)
{
	struct tc *t = *state;
	pid_t l, g = -1, cmd, bg;
	int64_t end;
	int status, code;
	char err[BUF];

	l = tc_spawn(t, "l",
	             TC_ARGV("run", "gk", "--", "sh", "-c",
	                     "sleep 300 & echo $! > bgpid; echo $$ > cmdpid; sleep 300"));
	assert_true(l > 0);
	assert_int_equal(tc_wait_line(t, "cmdpid", TC_BOUND_MS), 0);
	cmd = (pid_t)tc_read_long(t, "cmdpid");
	bg = (pid_t)tc_read_long(t, "bgpid");
	end = tc_now_ms() + TC_BOUND_MS;
	while ((g = tc_find_child(l, "lockctl-guard")) < 0 && tc_now_ms() < end)
		tc_sleep_ms(5);
	assert_true(g > 0);
	/* COMMAND is the guardian's child, not lockctl's */
	assert_int_equal(tc_find_child(g, "sh"), cmd);

	kill(g, SIGKILL);
	assert_int_equal(tc_wait(l, TC_BOUND_MS, &status), 0);
	code = tc_code(status);
	/* non-zero; lockctl(1) documents 70 for "the supervising process died" */
	if (code != 70)
		fail_msg("lockctl exited with status %d after its guardian was killed, want 70",
		         code);
	assert_false(tc_alive(cmd));
	assert_false(tc_alive(bg));
	assert_true(tc_read(t, "l.err", err, sizeof(err)) > 0);
	assert_int_equal(tc_lines(err), 1);
	assert_non_null(strstr(err, "gk"));

	assert_int_equal(tc_run(t, "st", TC_ARGV("status", "gk", "--json")), 0);
	assert_true(tc_read(t, "st.out", err, sizeof(err)) > 0);
	assert_non_null(strstr(err, "\"held\":false"));
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "gk", "-n", "true")), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signals_forwarded_to_command, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_untrapped_signal_status, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_command_signal_dispositions, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_command_keeps_ignored_signals, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_lockctl_kills_everything_first,
	                                        tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_lockctl_group_kills_everything_first,
	                                        tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_lockctl_without_waiter_frees_lock,
	                                        tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_leftover_child_killed_before_release, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_stubborn_and_daemonized_leftovers, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_guardian_killed, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
