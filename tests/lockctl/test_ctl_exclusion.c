// SPDX-License-Identifier: MIT
/*
 * Mutual exclusion through lockctl run, checked the way sanlock's checker
 * does it: make the critical section racy on purpose and look for damage.
 *
 * Each COMMAND reads a counter, sleeps, and writes the counter plus one: any
 * two that overlap lose an update. A directory created with mkdir (atomic)
 * at the start of the section and removed at its end also catches an
 * overlap directly. The tokens COMMANDs see must increase in the order they
 * held the lock, which is the order of their lines in the token log.
 *
 * For shared locks the test asks for the opposite: all shared holders must
 * be inside at the same time (each waits, bounded, to see the others), and
 * an exclusive run must only start after every shared holder has finished,
 * which the exclusive COMMAND checks itself, so no timing is assumed.
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

#include <cmocka.h>

#include "harness.h"

#define BUF      16384
#define NWORKERS 16

static void wait_all(pid_t *pids, int n, int *codes)
{
	for (int i = 0; i < n; i++) {
		int status;

		if (tc_wait(pids[i], TC_BOUND_MS, &status) < 0)
			fail_msg("lockctl %d did not finish in %d ms", (int)pids[i], TC_BOUND_MS);
		codes[i] = tc_code(status);
	}
}

static void test_exclusive_no_lost_update(void **state)
{
	struct tc *t = *state;
	static const char script[] = "mkdir inside 2>/dev/null || echo overlap >> bad; "
				     "n=$(cat counter); sleep 0.02; echo $((n + 1)) > counter; "
				     "echo \"$LOCKCTL_TOKEN\" >> tokens; rmdir inside";
	pid_t pids[NWORKERS];
	int codes[NWORKERS];
	char buf[BUF], tag[32], *line, *save;
	unsigned long long prev = 0;
	int lines = 0;

	assert_int_equal(tc_run(t, "init", TC_ARGV("run", "cnt", "-c", "echo 0 > counter")), 0);
	for (int i = 0; i < NWORKERS; i++) {
		snprintf(tag, sizeof(tag), "w%d", i);
		pids[i] = tc_spawn(t, tag,
		                   TC_ARGV("run", "cnt", "-w", "20", "--", "sh", "-c", script));
		assert_true(pids[i] > 0);
	}
	wait_all(pids, NWORKERS, codes);
	for (int i = 0; i < NWORKERS; i++)
		if (codes[i] != 0)
			fail_msg("worker %d exited %d", i, codes[i]);

	if (tc_exists(t, "bad"))
		fail_msg("two COMMANDs were inside the critical section at once");
	assert_int_equal(tc_read_long(t, "counter"), NWORKERS);

	assert_true(tc_read(t, "tokens", buf, sizeof(buf)) > 0);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long tok = strtoull(line, NULL, 10);

		if (tok <= prev)
			fail_msg("token %llu after %llu: not increasing", tok, prev);
		prev = tok;
		lines++;
	}
	assert_int_equal(lines, NWORKERS);
}

static void test_shared_holders_overlap(void **state)
{
	struct tc *t = *state;
	/* $1 is this holder's number; wait (bounded) until all three are in */
	static const char script[] =
		"echo in > in.$1; i=0; while [ $i -lt 750 ]; do "
		"if [ -e in.1 ] && [ -e in.2 ] && [ -e in.3 ]; then echo ok > done.$1; exit 0; fi; "
		"sleep 0.02; i=$((i + 1)); done; echo alone > done.$1; exit 1";
	pid_t pids[3];
	int codes[3];
	char buf[64], name[32], tag[32];

	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%d", i + 1);
		snprintf(tag, sizeof(tag), "s%d", i + 1);
		pids[i] = tc_spawn(t, tag,
		                   TC_ARGV("run", "shared", "-s", "-w", "20", "--", "sh", "-c",
		                           script, "sh", name));
		assert_true(pids[i] > 0);
	}
	wait_all(pids, 3, codes);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "done.%d", i + 1);
		assert_true(tc_read(t, name, buf, sizeof(buf)) > 0);
		if (strcmp(buf, "ok\n") || codes[i] != 0)
			fail_msg("shared holder %d did not see the others inside: %s (exit %d)",
			         i + 1, buf, codes[i]);
	}
}

static void test_exclusive_waits_for_shared(void **state)
{
	struct tc *t = *state;
	static const char shared_script[] =
		"echo in > s.$1; i=0; while [ ! -e release ] && [ $i -lt 1000 ]; do "
		"sleep 0.02; i=$((i + 1)); done; echo out > end.$1";
	static const char excl_script[] =
		"if [ -e end.1 ] && [ -e end.2 ]; then echo ok > excl; else echo early > excl; fi";
	pid_t s1, s2, x;
	int codes[3], status;
	char buf[64];

	s1 = tc_spawn(
		t, "s1",
		TC_ARGV("run", "mix", "--shared", "--", "sh", "-c", shared_script, "sh", "1"));
	s2 = tc_spawn(t, "s2",
	              TC_ARGV("run", "mix", "-s", "--", "sh", "-c", shared_script, "sh", "2"));
	assert_true(s1 > 0 && s2 > 0);
	assert_int_equal(tc_wait_line(t, "s.1", TC_BOUND_MS), 0);
	assert_int_equal(tc_wait_line(t, "s.2", TC_BOUND_MS), 0);

	/* while shared holders are in, an exclusive try fails at once */
	assert_int_equal(tc_run(t, "try", TC_ARGV("run", "mix", "-n", "--", "true")), 1);

	x = tc_spawn(t, "x", TC_ARGV("run", "mix", "-w", "20", "--", "sh", "-c", excl_script));
	assert_true(x > 0);
	/* give it time to block; it must not get in while the shared are held */
	tc_sleep_ms(300);
	assert_int_equal(tc_exists(t, "excl"), 0);
	assert_int_equal(waitpid(x, &status, WNOHANG), 0);

	tc_touch(t, "release");
	wait_all((pid_t[]){s1, s2, x}, 3, codes);
	assert_int_equal(codes[0], 0);
	assert_int_equal(codes[1], 0);
	assert_int_equal(codes[2], 0);
	assert_true(tc_read(t, "excl", buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "ok\n");
}

static void test_exclusive_excludes_shared(void **state)
{
	struct tc *t = *state;
	pid_t h = tc_hold(t, "ex", NULL, "ready");
	int64_t ms;

	assert_true(h > 0);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "-s", "-n", "--", "true")), 1);
	assert_int_equal(
		tc_run_timed(t, "r",
	                     TC_ARGV("run", "ex", "-s", "-w", "200ms", "-E", "3", "--", "true"),
	                     &ms),
		3);
	assert_true(ms >= 200);
	tc_unhold(h);
	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "ex", "-s", "-n", "--", "true")), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exclusive_no_lost_update, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_shared_holders_overlap, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_exclusive_waits_for_shared, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_exclusive_excludes_shared, tc_setup,
	                                        tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
