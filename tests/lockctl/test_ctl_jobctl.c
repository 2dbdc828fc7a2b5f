// SPDX-License-Identifier: MIT
/*
 * Job control through lockctl run: Ctrl-Z at a terminal must stop COMMAND
 * and must also leave lockctl itself stopped, because that is what the
 * shell waits for to report a stopped job and give the terminal back; a
 * SIGCONT to lockctl (the shell's "fg") must resume COMMAND with the
 * terminal. The same stop and resume must work without a terminal when
 * someone sends SIGTSTP to lockctl.
 *
 * The terminal is a pseudo-terminal whose master the test holds: the
 * suspend and interrupt characters are written to it exactly as a user's
 * keystrokes would be, so the kernel's line discipline picks the foreground
 * process group and sends the signals. One test runs lockctl directly as the
 * terminal's session leader; another runs it from an interactive sh, which
 * is how people meet it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define BUF 16384

struct term {
	int master;
	char out[BUF]; /* everything the terminal printed, for messages */
	size_t len;
};

static void term_drain(struct term *tm)
{
	char buf[1024];
	ssize_t n;

	while ((n = read(tm->master, buf, sizeof(buf))) > 0) {
		size_t keep = sizeof(tm->out) - 1 - (size_t)n;

		if (tm->len > keep) {
			/* keep the tail: that is where the news is */
			memmove(tm->out, tm->out + (tm->len - keep), keep);
			tm->len = keep;
		}
		memcpy(tm->out + tm->len, buf, (size_t)n);
		tm->len += (size_t)n;
		tm->out[tm->len] = 0;
	}
}

static void term_write(struct term *tm, const char *s)
{
	assert_int_equal(write(tm->master, s, strlen(s)), (ssize_t)strlen(s));
}

/* Wait until the terminal's foreground process group is pgrp. */
static int term_wait_fg(struct term *tm, pid_t pgrp)
{
	int64_t end = tc_now_ms() + TC_BOUND_MS;

	for (;;) {
		term_drain(tm);
		if (tcgetpgrp(tm->master) == pgrp)
			return 0;
		if (tc_now_ms() > end)
			return -ETIMEDOUT;
		tc_sleep_ms(5);
	}
}

static int term_wait_text(struct term *tm, const char *text)
{
	int64_t end = tc_now_ms() + TC_BOUND_MS;

	for (;;) {
		term_drain(tm);
		if (strstr(tm->out, text))
			return 0;
		if (tc_now_ms() > end)
			return -ETIMEDOUT;
		tc_sleep_ms(5);
	}
}

/* waitpid with WUNTRACED/WCONTINUED, bounded; the status or -ETIMEDOUT. */
static int wait_event(struct term *tm, pid_t pid, int flags)
{
	int64_t end = tc_now_ms() + TC_BOUND_MS;
	int status;

	for (;;) {
		if (tm)
			term_drain(tm);
		if (waitpid(pid, &status, flags | WNOHANG) == pid)
			return status;
		if (tc_now_ms() > end)
			return -ETIMEDOUT;
		tc_sleep_ms(5);
	}
}

static pid_t wait_child(pid_t parent, const char *name)
{
	int64_t end = tc_now_ms() + TC_BOUND_MS;
	pid_t p;

	while ((p = tc_find_child(parent, name)) < 0 && tc_now_ms() < end)
		tc_sleep_ms(5);
	return p;
}

static pid_t term_spawn(struct tc *t, struct term *tm, char *const argv[])
{
	static const int reset[] = {SIGINT,  SIGQUIT, SIGHUP,  SIGTERM, SIGTSTP,
	                            SIGTTIN, SIGTTOU, SIGPIPE, SIGCHLD, SIGCONT};
	sigset_t none;
	pid_t pid;

	memset(tm, 0, sizeof(*tm));
	fflush(NULL);
	pid = forkpty(&tm->master, NULL, NULL, NULL);
	if (pid == 0) {
		for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
			signal(reset[i], SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (chdir(t->dir) < 0)
			_exit(250);
		setenv("LOCKCTL_STORE", t->store, 1);
		setenv("PS1", "$ ", 1);
		setenv("TERM", "dumb", 1);
		unsetenv("ENV");
		execv(argv[0], argv);
		_exit(251);
	}
	if (pid > 0)
		fcntl(tm->master, F_SETFL, fcntl(tm->master, F_GETFL) | O_NONBLOCK);
	return pid;
}

static void test_ctrl_z_lockctl_session_leader(void **state)
{
	struct tc *t = *state;
	struct term tm;
	pid_t l, g, c;
	int st;

	l = term_spawn(t, &tm,
	               (char *[]){(char *)t->lockctl, "run", "jc", "--", "sleep", "30", NULL});
	assert_true(l > 0);
	g = wait_child(l, "lockctl-guard");
	assert_true(g > 0);
	c = wait_child(g, "sleep");
	assert_true(c > 0);
	/* COMMAND runs in the foreground of the terminal */
	if (term_wait_fg(&tm, c) < 0)
		fail_msg("foreground group is %d, want COMMAND's %d", (int)tcgetpgrp(tm.master),
		         (int)c);

	term_write(&tm, "\x1a");
	st = wait_event(&tm, l, WUNTRACED);
	if (st < 0 || !WIFSTOPPED(st))
		fail_msg("lockctl was not reported stopped after Ctrl-Z (state %c, COMMAND %c)",
		         tc_proc_state(l), tc_proc_state(c));
	assert_int_equal(tc_wait_stopped(c, 1, TC_BOUND_MS), 0);
	/* lockctl took the terminal back before stopping, as a shell would */
	assert_int_equal(term_wait_fg(&tm, l), 0);
	/* the lock is still held */
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "jc", "-n", "true")), 1);

	kill(l, SIGCONT);
	st = wait_event(&tm, l, WCONTINUED);
	assert_true(st >= 0 && WIFCONTINUED(st));
	assert_int_equal(tc_wait_stopped(c, 0, TC_BOUND_MS), 0);
	assert_int_equal(tc_wait_stopped(l, 0, TC_BOUND_MS), 0);
	if (term_wait_fg(&tm, c) < 0)
		fail_msg("after SIGCONT the foreground group is %d, want COMMAND's %d",
		         (int)tcgetpgrp(tm.master), (int)c);

	/* Ctrl-C now reaches COMMAND through the terminal */
	term_write(&tm, "\x03");
	st = wait_event(&tm, l, 0);
	assert_true(st >= 0);
	assert_int_equal(tc_code(st), 128 + SIGINT);
	assert_false(tc_alive(c));
	close(tm.master);
}

static void test_ctrl_z_from_interactive_shell(void **state)
{
	struct tc *t = *state;
	char line[PATH_MAX + 64];
	struct term tm;
	pid_t sh, l, g, c;
	int st;

	sh = term_spawn(t, &tm, (char *[]){"/bin/sh", "-i", NULL});
	assert_true(sh > 0);
	assert_int_equal(term_wait_text(&tm, "$ "), 0);
	snprintf(line, sizeof(line), "'%s' run jc2 -- sleep 30\n", t->lockctl);
	term_write(&tm, line);

	l = wait_child(sh, "lockctl");
	assert_true(l > 0);
	g = wait_child(l, "lockctl-guard");
	assert_true(g > 0);
	c = wait_child(g, "sleep");
	assert_true(c > 0);
	assert_int_equal(term_wait_fg(&tm, c), 0);

	term_write(&tm, "\x1a");
	assert_int_equal(tc_wait_stopped(c, 1, TC_BOUND_MS), 0);
	if (tc_wait_stopped(l, 1, TC_BOUND_MS) < 0)
		fail_msg("lockctl not stopped after Ctrl-Z (state %c); terminal:\n%s",
		         tc_proc_state(l), tm.out);
	/* the shell has the terminal back and says the job stopped */
	assert_int_equal(term_wait_fg(&tm, sh), 0);
	if (term_wait_text(&tm, "Stopped") < 0)
		fail_msg("the shell did not report a stopped job:\n%s", tm.out);

	term_write(&tm, "fg\n");
	assert_int_equal(tc_wait_stopped(c, 0, TC_BOUND_MS), 0);
	assert_int_equal(tc_wait_stopped(l, 0, TC_BOUND_MS), 0);
	if (term_wait_fg(&tm, c) < 0)
		fail_msg("after fg the foreground group is %d, want COMMAND's %d; terminal:\n%s",
		         (int)tcgetpgrp(tm.master), (int)c, tm.out);

	term_write(&tm, "\x03");
	assert_int_equal(term_wait_fg(&tm, sh), 0);
	term_write(&tm, "echo status=$?\n");
	if (term_wait_text(&tm, "status=130") < 0)
		fail_msg("lockctl's status after Ctrl-C is not 130; terminal:\n%s", tm.out);
	assert_false(tc_alive(l));
	assert_false(tc_alive(c));
	term_write(&tm, "exit\n");
	st = wait_event(&tm, sh, 0);
	assert_true(st >= 0);
	close(tm.master);
}

static void test_sigtstp_without_terminal(void **state)
{
	struct tc *t = *state;
	pid_t l, g, c;
	int st;

	l = tc_spawn(t, "l", TC_ARGV("run", "tstp", "--", "sleep", "30"));
	assert_true(l > 0);
	g = wait_child(l, "lockctl-guard");
	assert_true(g > 0);
	c = wait_child(g, "sleep");
	assert_true(c > 0);

	kill(l, SIGTSTP);
	st = wait_event(NULL, l, WUNTRACED);
	if (st < 0 || !WIFSTOPPED(st))
		fail_msg("lockctl not stopped by SIGTSTP (state %c, COMMAND %c)", tc_proc_state(l),
		         tc_proc_state(c));
	assert_int_equal(tc_wait_stopped(c, 1, TC_BOUND_MS), 0);

	kill(l, SIGCONT);
	st = wait_event(NULL, l, WCONTINUED);
	assert_true(st >= 0 && WIFCONTINUED(st));
	assert_int_equal(tc_wait_stopped(c, 0, TC_BOUND_MS), 0);

	/* and it still forwards and exits normally */
	kill(l, SIGTERM);
	st = wait_event(NULL, l, 0);
	assert_true(st >= 0);
	assert_int_equal(tc_code(st), 128 + SIGTERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ctrl_z_lockctl_session_leader, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_z_from_interactive_shell, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_sigtstp_without_terminal, tc_setup,
	                                        tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
