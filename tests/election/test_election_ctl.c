// SPDX-License-Identifier: MIT
/*
 * lockctl elect, leader and watch with three candidates as separate lockctl
 * processes. COMMAND is a shell loop that appends its term's token to a
 * shared resource file every 50 ms and logs its start and its SIGTERM.
 *
 *  - failover (kernel and lease mode): SIGKILL the leading lockctl and
 *    exactly one other candidate leads, with a higher token, and the
 *    resource shows no write of the old term after the new term's first;
 *    SIGTERM the next leader and COMMAND is stopped, the term resigned and
 *    the third candidate leads at once (well within the TTL), starting
 *    after the old COMMAND logged its stop. "lockctl watch" sees every
 *    term; "lockctl leader" reports each one with its value.
 *  - stop (lease): the leader and its COMMAND are SIGSTOPped past the TTL;
 *    the guardian kills COMMAND at the deadline, another candidate leads,
 *    and the old lockctl, continued, exits 75 (demoted).
 *  - rejoin (lease): the same with --rejoin: the demoted candidate stands
 *    again and leads once the other one stops.
 *  - usage: exit 3 with no leader, JSON fields, usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
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

#include "eharness.h"

static const char script[] =
	"echo $$ > \"$2/pid.$1\"\n"
	"trap 'echo \"stop $LOCKCTL_TOKEN\" >> \"$2/log\"; exit 0' TERM\n"
	"echo \"start $LOCKCTL_TOKEN $LOCKCTL_LEADER_VALUE\" >> \"$2/log\"\n"
	"while :; do echo \"$LOCKCTL_TOKEN\" >> \"$2/res\"; sleep 0.05; done\n";

static char url[PATH_MAX], dir[PATH_MAX];

static pid_t candidate(int idx, const char *mode_opt, const char *mode_val, int rejoin)
{
	char id[16], value[16], tag[24];
	const char *args[24];
	int n = 0;

	snprintf(id, sizeof(id), "c%d", idx);
	snprintf(value, sizeof(value), "v%d", idx);
	snprintf(tag, sizeof(tag), "cand%d", idx);
	args[n++] = "elect";
	args[n++] = "e";
	args[n++] = "--id";
	args[n++] = id;
	args[n++] = "--value";
	args[n++] = value;
	args[n++] = mode_opt;
	args[n++] = mode_val;
	if (rejoin)
		args[n++] = "--rejoin";
	args[n++] = "--";
	args[n++] = "sh";
	args[n++] = "-c";
	args[n++] = script;
	args[n++] = "sh";
	args[n++] = id;
	args[n++] = dir;
	args[n] = NULL;
	return eh_lockctl(url, dir, tag, args);
}

struct leader {
	int idx;
	unsigned long long token;
	char value[32];
};

/* Ask lockctl leader until someone other than (token) not_token leads. */
static struct leader wait_leader(unsigned long long not_token)
{
	const char *const args[] = {"leader", "e", "--json", NULL};
	int64_t end = eh_boot_ms() + EH_SAFETY_MS;
	char out[2048], buf[64];
	struct leader l;

	for (;;) {
		int rc = eh_lockctl_out(url, args, out, sizeof(out));

		if (rc == 0 && eh_json_get(out, "token", buf, sizeof(buf)) == 0 &&
		    strtoull(buf, NULL, 10) != not_token) {
			assert_int_equal(eh_json_get(out, "leader", buf, sizeof(buf)), 0);
			assert_string_equal(buf, "true");
			assert_int_equal(eh_json_get(out, "token", buf, sizeof(buf)), 0);
			l.token = strtoull(buf, NULL, 10);
			assert_int_equal(eh_json_get(out, "id", buf, sizeof(buf)), 0);
			assert_true(buf[0] == '"' && buf[1] == 'c');
			l.idx = buf[2] - '0';
			if (eh_json_get(out, "value", l.value, sizeof(l.value)) == 0 &&
			    strcmp(l.value, "null")) {
				char want[16];

				snprintf(want, sizeof(want), "\"v%d\"", l.idx);
				assert_string_equal(l.value, want);
				assert_int_equal(eh_json_get(out, "since", buf, sizeof(buf)), 0);
				assert_true(buf[0] == '"');
				return l;
			}
		} else {
			assert_true(rc == 0 || rc == 3);
		}
		if (eh_boot_ms() > end)
			fail_msg("no new leader (last answer %d: %s)", rc, out);
		eh_sleep_ms(50);
	}
}

static int file_has(const char *name, const char *line)
{
	static char buf[1 << 20];
	char path[PATH_MAX + 16];
	size_t n = strlen(line);

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (eh_read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	for (char *p = buf; (p = strstr(p, line)); p += n)
		if ((p == buf || p[-1] == '\n') && (p[n] == '\n' || p[n] == ' ' || !p[n]))
			return 1;
	return 0;
}

static void wait_file_has(const char *name, const char *line)
{
	int64_t end = eh_boot_ms() + EH_SAFETY_MS;

	while (!file_has(name, line)) {
		if (eh_boot_ms() > end)
			fail_msg("%s never got '%s'", name, line);
		eh_sleep_ms(10);
	}
}

/* Wait until the watcher has reported term token as elected. */
static void wait_watched(unsigned long long token)
{
	static char buf[1 << 16];
	char path[PATH_MAX + 16], want[64];
	int64_t end = eh_boot_ms() + EH_SAFETY_MS;

	snprintf(path, sizeof(path), "%s/watch.out", dir);
	snprintf(want, sizeof(want), "\"token\":%llu,", token);
	for (;;) {
		if (eh_read_file(path, buf, sizeof(buf)) > 0 && strstr(buf, want))
			return;
		if (eh_boot_ms() > end)
			fail_msg("lockctl watch did not report term %llu:\n%s", token, buf);
		eh_sleep_ms(10);
	}
}

/* In the resource, no write of term old after the first write of term new. */
static void check_no_late_write(unsigned long long old, unsigned long long new)
{
	static char buf[1 << 20];
	char path[PATH_MAX + 16], line[32];
	char *first;

	snprintf(path, sizeof(path), "%s/res", dir);
	assert_true(eh_read_file(path, buf, sizeof(buf)) > 0);
	snprintf(line, sizeof(line), "%llu\n", new);
	first = strstr(buf, line);
	assert_non_null(first);
	snprintf(line, sizeof(line), "\n%llu\n", old);
	if (strstr(first - 1, line))
		fail_msg("term %llu wrote after term %llu's first write", old, new);
}

/* Offset of a log line, for ordering. */
static long log_pos(const char *line)
{
	static char buf[1 << 16];
	char path[PATH_MAX + 16];
	char *p;

	snprintf(path, sizeof(path), "%s/log", dir);
	assert_true(eh_read_file(path, buf, sizeof(buf)) > 0);
	p = strstr(buf, line);
	if (!p)
		fail_msg("log lacks '%s':\n%s", line, buf);
	return p - buf;
}

static int cmd_pid(int idx)
{
	char path[PATH_MAX + 16], buf[32];

	snprintf(path, sizeof(path), "%s/pid.c%d", dir, idx);
	assert_true(eh_read_file(path, buf, sizeof(buf)) > 0);
	return atoi(buf);
}

static void failover(const char *mode_opt, const char *mode_val)
{
	const char *const wargs[] = {"watch", "e", "--json", "--count", "5", NULL};
	const char *const largs[] = {"leader", "e", NULL};
	char local[PATH_MAX], line[64], path[PATH_MAX + 16], out[4096];
	static char wbuf[8192];
	struct leader l1, l2, l3;
	pid_t pid[3], watch;
	int64_t t0;

	eh_store("ctl", url, sizeof(url), local, sizeof(local));
	snprintf(dir, sizeof(dir), "%s", local);
	watch = eh_lockctl(url, dir, "watch", wargs);
	eh_sleep_ms(200);
	for (int i = 0; i < 3; i++)
		pid[i] = candidate(i, mode_opt, mode_val, 0);

	l1 = wait_leader(0);
	snprintf(line, sizeof(line), "%llu", l1.token);
	wait_file_has("res", line);
	wait_watched(l1.token);
	kill(pid[l1.idx], SIGKILL);
	assert_int_equal(eh_wait_pid(pid[l1.idx], EH_SAFETY_MS), 256 + SIGKILL);

	l2 = wait_leader(l1.token);
	assert_true(l2.idx != l1.idx);
	assert_true(l2.token > l1.token);
	snprintf(line, sizeof(line), "%llu", l2.token);
	wait_file_has("res", line);
	check_no_late_write(l1.token, l2.token);
	wait_watched(l2.token);

	/* graceful stop: COMMAND ends, the term is resigned, the next leads */
	kill(pid[l2.idx], SIGTERM);
	t0 = eh_boot_ms();
	assert_int_equal(eh_wait_pid(pid[l2.idx], EH_SAFETY_MS), 0);
	l3 = wait_leader(l2.token);
	assert_true(eh_boot_ms() - t0 < 2500);
	assert_int_equal(l3.idx, 3 - l1.idx - l2.idx);
	assert_true(l3.token > l2.token);
	snprintf(line, sizeof(line), "stop %llu", l2.token);
	snprintf(out, sizeof(out), "start %llu v%d", l3.token, l3.idx);
	wait_file_has("log", out);
	assert_true(log_pos(line) < log_pos(out));
	assert_int_equal(eh_lockctl_out(url, largs, out, sizeof(out)), 0);
	snprintf(line, sizeof(line), "token %llu, value 'v%d'", l3.token, l3.idx);
	assert_non_null(strstr(out, line));

	/* the watcher saw all three terms, and how the first two ended */
	{
		int wrc = eh_wait_pid(watch, EH_SAFETY_MS);

		snprintf(path, sizeof(path), "%s/watch.out", dir);
		if (wrc != 0) {
			eh_read_file(path, wbuf, sizeof(wbuf));
			fail_msg("lockctl watch: %d, output:\n%s", wrc, wbuf);
		}
	}
	assert_true(eh_read_file(path, wbuf, sizeof(wbuf)) > 0);
	{
		char *p = wbuf, want[128];
		const struct leader *terms[] = {&l1, &l2, &l3};

		for (int i = 0; i < 3; i++) {
			snprintf(want, sizeof(want), "{\"event\":\"elected\",");
			p = strstr(p, want);
			assert_non_null(p);
			snprintf(want, sizeof(want),
			         "\"token\":%llu,\"id\":\"c%d\",\"value\":\"v%d\"", terms[i]->token,
			         terms[i]->idx, terms[i]->idx);
			if (!strstr(p, want) || strchr(p, '\n') < strstr(p, want))
				fail_msg("watch: expected %s in\n%s", want, wbuf);
			assert_non_null(strstr(p, "\"time\":\""));
			p = strchr(p, '\n') + 1;
			if (i == 2)
				break;
			if (i == 0)
				assert_true(!strncmp(p, "{\"event\":\"lost\"", 15) ||
				            !strncmp(p, "{\"event\":\"expired\"", 18));
			else
				assert_true(!strncmp(p, "{\"event\":\"resigned\"", 19));
			snprintf(want, sizeof(want), "\"token\":%llu,", terms[i]->token);
			assert_non_null(strstr(p, want));
			assert_true(strstr(p, want) < strchr(p, '\n'));
			p = strchr(p, '\n') + 1;
		}
	}

	kill(pid[l3.idx], SIGTERM);
	assert_int_equal(eh_wait_pid(pid[l3.idx], EH_SAFETY_MS), 0);
	assert_int_equal(eh_lockctl_out(url, largs, out, sizeof(out)), 3);
}

static void test_failover_kernel(void **state)
{
	(void)state;
	failover("--mode", "kernel");
}

static void test_failover_lease(void **state)
{
	(void)state;
	failover("--ttl", "5s");
}

/* Stop the leading lockctl and its COMMAND past the TTL. */
static void stop_leader(int rejoin)
{
	char local[PATH_MAX], line[64], path[PATH_MAX + 16];
	static char err[8192];
	struct leader l1, l2, l3;
	pid_t pid[2];
	int cpid;

	eh_store("stop", url, sizeof(url), local, sizeof(local));
	snprintf(dir, sizeof(dir), "%s", local);
	pid[0] = candidate(0, "--ttl", "1s", rejoin);
	l1 = wait_leader(0);
	assert_int_equal(l1.idx, 0);
	pid[1] = candidate(1, "--ttl", "1s", 0);
	snprintf(line, sizeof(line), "%llu", l1.token);
	wait_file_has("res", line);
	cpid = cmd_pid(0);
	kill(pid[0], SIGSTOP);
	kill(-cpid, SIGSTOP);

	l2 = wait_leader(l1.token);
	assert_int_equal(l2.idx, 1);
	assert_true(l2.token > l1.token);
	snprintf(line, sizeof(line), "%llu", l2.token);
	wait_file_has("res", line);
	/* the guardian killed the stopped COMMAND before anyone took over */
	assert_true(kill(cpid, 0) < 0);
	kill(pid[0], SIGCONT);
	if (!rejoin) {
		assert_int_equal(eh_wait_pid(pid[0], EH_SAFETY_MS), 75);
	} else {
		/* demoted, it stands again and leads when the other stops */
		eh_sleep_ms(1500);
		assert_int_equal(waitpid(pid[0], NULL, WNOHANG), 0);
		kill(pid[1], SIGTERM);
		assert_int_equal(eh_wait_pid(pid[1], EH_SAFETY_MS), 0);
		l3 = wait_leader(l2.token);
		assert_int_equal(l3.idx, 0);
		assert_true(l3.token > l2.token);
		snprintf(path, sizeof(path), "%s/cand0.err", dir);
		assert_true(eh_read_file(path, err, sizeof(err)) > 0);
		assert_non_null(strstr(err, "campaigning again"));
		snprintf(line, sizeof(line), "start %llu v0", l3.token);
		wait_file_has("log", line);
		kill(pid[0], SIGTERM);
		assert_int_equal(eh_wait_pid(pid[0], EH_SAFETY_MS), 0);
	}
	check_no_late_write(l1.token, l2.token);
}

static void test_stop_lease(void **state)
{
	(void)state;
	stop_leader(0);
}

static void test_rejoin_lease(void **state)
{
	(void)state;
	stop_leader(1);
}

static void test_usage(void **state)
{
	const char *const none[] = {"leader", "nobody", "--json", NULL};
	const char *const nocmd[] = {"elect", "x", NULL};
	const char *const badname[] = {"leader", ".x", NULL};
	char local[PATH_MAX], out[2048], buf[64], big[LK_ELECTION_VALUE_MAX + 2];
	const char *const bigval[] = {"elect", "x", "--value", big, "--", "true", NULL};
	const char *const quick[] = {
		"elect",
		"q",
		"--value",
		"hello",
		"--",
		"sh",
		"-c",
		"test \"$LOCKCTL_LEADER_VALUE\" = hello && test -n \"$LOCKCTL_TOKEN\" && exit 7",
		NULL};

	(void)state;
	eh_store("usage", url, sizeof(url), local, sizeof(local));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(eh_lockctl_out(url, none, out, sizeof(out)), 3);
	assert_int_equal(eh_json_get(out, "leader", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "false");
	assert_int_equal(eh_json_get(out, "name", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "\"nobody\"");
	assert_int_equal(eh_lockctl_out(url, nocmd, out, sizeof(out)), 64);
	assert_int_equal(eh_lockctl_out(url, badname, out, sizeof(out)), 64);
	assert_int_equal(eh_lockctl_out(url, bigval, out, sizeof(out)), 64);
	/* COMMAND's status comes back; the term is resigned */
	assert_int_equal(eh_lockctl_out(url, quick, out, sizeof(out)), 7);
	{
		const char *const q[] = {"leader", "q", "--json", NULL};

		assert_int_equal(eh_lockctl_out(url, q, out, sizeof(out)), 3);
		assert_int_equal(eh_json_get(out, "token", buf, sizeof(buf)), 0);
		assert_true(strtoull(buf, NULL, 10) > 0);
	}
}

int main(void)
{
	const struct CMUnitTest local[] = {
		cmocka_unit_test_teardown(test_usage, eh_teardown),
		cmocka_unit_test_teardown(test_failover_kernel, eh_teardown),
		cmocka_unit_test_teardown(test_failover_lease, eh_teardown),
		cmocka_unit_test_teardown(test_stop_lease, eh_teardown),
		cmocka_unit_test_teardown(test_rejoin_lease, eh_teardown),
	};
	const struct CMUnitTest nfs[] = {
		cmocka_unit_test_teardown(test_usage, eh_teardown),
		cmocka_unit_test_teardown(test_failover_lease, eh_teardown),
		cmocka_unit_test_teardown(test_stop_lease, eh_teardown),
		cmocka_unit_test_teardown(test_rejoin_lease, eh_teardown),
	};

	eh_init(140);
	if (eh_nfs())
		return cmocka_run_group_tests_name("election_ctl_nfs", nfs, NULL, NULL);
	return cmocka_run_group_tests_name("election_ctl", local, NULL, NULL);
}
