// SPDX-License-Identifier: MIT
/*
 * Leader election through the library, with candidates in separate
 * processes and real signals.
 *
 *  - basics: the published value, the errors of the API, statistics, and a
 *    value that is never shown with another term's token (a term taken on
 *    the lock directly has no value, not the previous term's).
 *  - kill_resign: three candidates and a watcher. Exactly one leads; SIGKILL
 *    it and exactly one other is elected with a higher token; a resign
 *    hands over at once (well before a lease's TTL). The watcher sees every
 *    term start and end, with the right values; the acts of the leaders on
 *    a shared resource carry non-decreasing tokens.
 *  - stop (lease mode): the leader stops itself (SIGSTOP) right after an
 *    act; past the TTL another candidate is elected and acts; continued,
 *    the old leader is demoted (on_demoted) before it acts again, so the
 *    resource shows no act with the old token after the new term's first.
 *
 * Every program runs against a local store and, with LK_ELECTION_STORE=nfs,
 * against the test NFS server; kernel mode only locally.
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
#include <unistd.h>

#include <cmocka.h>

#include "eharness.h"

enum { MSG_ELECTED = 1, MSG_DEMOTED, MSG_RESIGNED, MSG_STOPPING };
enum { CMD_RESIGN_HOLD = 1, CMD_PAUSE, CMD_EXIT };

#define MSG(code, tok) (((uint64_t)(code) << 56) | (tok))
#define MSG_CODE(m)    ((int)((m) >> 56))
#define MSG_TOKEN(m)   ((m) & ((1ull << 56) - 1))

struct cand {
	const char *url;
	const char *name;
	const char *resource; /* local path the leader appends its token to */
	enum lk_mode mode;
	uint64_t ttl_ms;
	int idx;
};

static int cand_tx = -1;

static void cand_demoted(struct lk_election *e, uint64_t token, int reason, void *userdata)
{
	(void)e;
	(void)reason;
	(void)userdata;
	eh_send(cand_tx, MSG(MSG_DEMOTED, token));
}

static void act(const char *resource, uint64_t token)
{
	char line[32];
	int fd = open(resource, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	int n = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)token);

	CHILD_ASSERT(fd >= 0);
	CHILD_ASSERT(write(fd, line, (size_t)n) == n);
	close(fd);
}

/* A command from the test, if one is waiting (0 if none). */
static int command(int rx, int timeout_ms)
{
	uint64_t v;
	int r = eh_recv(rx, &v, timeout_ms);

	if (r == -EPIPE)
		_exit(0);
	return r == 0 ? (int)v : 0;
}

static void candidate(int rx, int tx, void *arg)
{
	const struct cand *c = arg;
	struct lk_election_opts o = LK_ELECTION_OPTS_INIT;
	struct lk_store *st = eh_store_open(c->url);
	struct lk_election *e;
	char id[16], value[32];
	int leading = 0, held = 0;

	cand_tx = tx;
	snprintf(id, sizeof(id), "c%d", c->idx);
	snprintf(value, sizeof(value), "value-%d", c->idx);
	o.mode = c->mode;
	o.ttl_ms = c->ttl_ms;
	o.id = id;
	o.on_demoted = cand_demoted;
	CHILD_ASSERT(lk_election_open(st, c->name, &o, &e) == 0);
	for (;;) {
		int cmd;

		if (!leading) {
			int r;

			if (held) {
				/* after a resign: stand again only when told */
				cmd = command(rx, -1);
				if (cmd == CMD_EXIT)
					break;
				held = 0;
			}
			/* one uninterrupted wait: a lease takeover needs it (the
			 * test ends waiting candidates with SIGKILL) */
			r = lk_election_campaign(e, value, strlen(value), -1);
			if (r < 0)
				eh_child_fail(__FILE__, __LINE__, "campaign: %s",
				              lk_election_errmsg(e));
			leading = 1;
			eh_send(tx, MSG(MSG_ELECTED, lk_election_token(e)));
			continue;
		}
		cmd = command(rx, 20);
		if (cmd == CMD_EXIT)
			break;
		if (cmd == CMD_RESIGN_HOLD) {
			uint64_t tok = lk_election_token(e);

			CHILD_ASSERT(lk_election_resign(e) == 0);
			leading = 0;
			held = 1;
			eh_send(tx, MSG(MSG_RESIGNED, tok));
			continue;
		}
		if (cmd == CMD_PAUSE) {
			/* stopped here, the next step after waking is the check */
			eh_send(tx, MSG(MSG_STOPPING, lk_election_token(e)));
			raise(SIGSTOP);
			continue;
		}
		if (lk_election_check(e) == 0) {
			act(c->resource, lk_election_token(e));
		} else {
			/* demoted: on_demoted has spoken; stand again */
			CHILD_ASSERT(lk_election_resign(e) == -ENOLCK);
			leading = 0;
		}
	}
	lk_election_close(e);
	lk_store_close(st);
}

struct watcher {
	const char *url;
	const char *name;
	const char *out;
};

static void watcher(int rx, int tx, void *arg)
{
	const struct watcher *w = arg;
	struct lk_store *st = eh_store_open(w->url);
	struct lk_election_watch *ew;
	FILE *f = fopen(w->out, "w");

	(void)rx;
	CHILD_ASSERT(f);
	CHILD_ASSERT(lk_election_watch_open(st, w->name, 100, &ew) == 0);
	eh_send(tx, 1);
	for (;;) {
		struct lk_election_event ev = {.size = sizeof(ev)};
		int r = lk_election_watch_next(ew, -1, &ev);

		if (r == -EINTR)
			continue;
		CHILD_ASSERT(r == 0);
		fprintf(f, "%s %llu %s\n", lk_election_event_name(ev.type),
		        (unsigned long long)ev.leader.token,
		        ev.leader.value_known ? ev.leader.value : "-");
		fflush(f);
	}
}

/* Wait for a message with code from any of n children; its index, or -1. */
static int wait_msg(struct eh_child *c, int n, int code, int timeout_ms, uint64_t *ret_token)
{
	int64_t end = eh_boot_ms() + timeout_ms;

	while (eh_boot_ms() < end) {
		for (int i = 0; i < n; i++) {
			uint64_t v;

			if (c[i].pid <= 0 || eh_recv(c[i].rx, &v, 0) < 0)
				continue;
			if (MSG_CODE(v) == code) {
				*ret_token = MSG_TOKEN(v);
				return i;
			}
			fail_msg("child %d: unexpected message %d (token %llu)", i, MSG_CODE(v),
			         (unsigned long long)MSG_TOKEN(v));
		}
		eh_sleep_ms(5);
	}
	return -1;
}

static void check_leader(struct lk_store *st, const char *name, uint64_t token, int idx)
{
	struct lk_leader l = {.size = sizeof(l)};
	char want[32];

	assert_int_equal(lk_election_leader(st, name, &l), 0);
	assert_true(l.present);
	assert_int_equal(l.token, token);
	snprintf(want, sizeof(want), "c%d", idx);
	assert_string_equal(l.id, want);
	assert_true(l.value_known);
	snprintf(want, sizeof(want), "value-%d", idx);
	assert_string_equal(l.value, want);
}

/* Tokens in the resource file never go down. */
static void check_resource(const char *path)
{
	static char buf[1 << 20];
	unsigned long long prev = 0;

	assert_true(eh_read_file(path, buf, sizeof(buf)) > 0);
	for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
		unsigned long long t = strtoull(p, NULL, 10);

		if (t < prev)
			fail_msg("the resource saw token %llu after %llu", t, prev);
		prev = t;
	}
}

static int has_line(const char *path, const char *line)
{
	static char buf[1 << 20];
	size_t n = strlen(line);

	if (eh_read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	for (char *p = buf; (p = strstr(p, line)); p += n)
		if ((p == buf || p[-1] == '\n') && (p[n] == '\n' || !p[n]))
			return 1;
	return 0;
}

/* The watcher's lines, checked in order against what happened. */
static void check_watch(const char *path, const char *const expect[], int n)
{
	static char buf[1 << 16];
	int64_t end = eh_boot_ms() + EH_SAFETY_MS;
	char *p;
	int i;

	for (;;) {
		assert_true(eh_read_file(path, buf, sizeof(buf)) >= 0);
		p = buf;
		for (i = 0; i < n; i++) {
			char *hit = strstr(p, expect[i]);

			if (!hit)
				break;
			p = hit + strlen(expect[i]);
		}
		if (i == n)
			return;
		if (eh_boot_ms() > end)
			fail_msg("watcher output lacks '%s' (in order):\n%s", expect[i], buf);
		eh_sleep_ms(50);
	}
}

static void basics(enum lk_mode mode)
{
	char url[PATH_MAX], local[PATH_MAX], big[LK_ELECTION_VALUE_MAX + 2];
	struct lk_election_opts o = LK_ELECTION_OPTS_INIT;
	struct lk_election_stats s = {.size = sizeof(s)};
	struct lk_leader l = {.size = sizeof(l)};
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_election *e, *e2;
	struct lk_store *st;
	struct lk_lock *lk;
	uint64_t t1;

	eh_store("basics", url, sizeof(url), local, sizeof(local));
	st = eh_store_open(url);
	o.mode = mode;
	o.ttl_ms = 2000;
	o.id = "alpha";
	assert_int_equal(lk_election_leader(st, "b", &l), 0);
	assert_false(l.present);
	assert_int_equal(l.token, 0);

	assert_int_equal(lk_election_open(st, "b", &o, &e), 0);
	o.id = "beta";
	assert_int_equal(lk_election_open(st, "b", &o, &e2), 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(lk_election_campaign(e, big, LK_ELECTION_VALUE_MAX + 1, 0), -EMSGSIZE);
	assert_int_equal(lk_election_resign(e), -ENOLCK);
	assert_int_equal(lk_election_check(e), -ENOLCK);

	assert_int_equal(lk_election_campaign(e, big, LK_ELECTION_VALUE_MAX, 0), 0);
	t1 = lk_election_token(e);
	assert_true(t1 > 0);
	assert_int_equal(lk_election_check(e), 0);
	assert_int_equal(lk_election_campaign(e, "v", 1, 0), -EBUSY);
	assert_int_equal(lk_election_campaign(e2, "w", 1, 0), -EWOULDBLOCK);
	assert_int_equal(lk_election_campaign(e2, "w", 1, 300), -ETIMEDOUT);
	assert_int_equal(lk_election_leader(st, "b", &l), 0);
	assert_true(l.present);
	assert_false(l.expired);
	assert_int_equal(l.token, t1);
	assert_string_equal(l.id, "alpha");
	assert_true(l.value_known);
	assert_int_equal(l.value_len, LK_ELECTION_VALUE_MAX);
	assert_memory_equal(l.value, big, LK_ELECTION_VALUE_MAX);

	assert_int_equal(lk_election_resign(e), 0);
	assert_int_equal(lk_election_token(e), 0);
	assert_int_equal(lk_election_leader(st, "b", &l), 0);
	assert_false(l.present);
	assert_int_equal(l.token, t1);

	/* the next term, elected at once, publishes its own value */
	assert_int_equal(lk_election_campaign(e2, "w", 1, 0), 0);
	assert_true(lk_election_token(e2) > t1);
	assert_int_equal(lk_election_leader(st, "b", &l), 0);
	assert_int_equal(l.token, lk_election_token(e2));
	assert_string_equal(l.value, "w");
	assert_string_equal(l.id, "beta");
	assert_int_equal(lk_election_resign(e2), 0);

	assert_int_equal(lk_election_stats(e, &s), 0);
	assert_int_equal(s.terms, 1);
	assert_int_equal(s.resignations, 1);
	assert_int_equal(s.demotions, 0);
	assert_int_equal(s.campaigns, 1);
	assert_int_equal(s.failed_campaigns, 0);
	assert_int_equal(s.token, t1);
	assert_int_equal(s.current_term_ms, 0);
	assert_int_equal(lk_election_stats(e2, &s), 0);
	assert_int_equal(s.terms, 1);
	assert_int_equal(s.campaigns, 3);
	assert_int_equal(s.failed_campaigns, 2);

	/* a term that publishes nothing shows no value, not the last one */
	lo.mode = mode;
	if (mode == LK_MODE_LEASE)
		lo.ttl_ms = 2000;
	assert_int_equal(lk_lock_open(st, "b", &lo, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_election_leader(st, "b", &l), 0);
	assert_true(l.present);
	assert_int_equal(l.token, lk_lock_token(lk));
	assert_false(l.value_known);
	assert_string_equal(l.value, "");
	lk_lock_close(lk);

	lk_election_close(e);
	lk_election_close(e2);
	lk_store_close(st);
}

static void test_basics_kernel(void **state)
{
	(void)state;
	basics(LK_MODE_KERNEL);
}

static void test_basics_lease(void **state)
{
	(void)state;
	basics(LK_MODE_LEASE);
}

static void kill_resign(enum lk_mode mode)
{
	char url[PATH_MAX], local[PATH_MAX], res[PATH_MAX + 16], wout[PATH_MAX + 16];
	char e1[64], e2[64], e3[64], end1[64], end2[64];
	struct cand cfg[3];
	struct eh_child c[3], wc;
	struct watcher w;
	struct lk_store *st;
	uint64_t t1, t2, t3, v;
	int i1, i2, i3, other;
	int64_t t0;

	eh_store("kill", url, sizeof(url), local, sizeof(local));
	snprintf(res, sizeof(res), "%s/resource", local);
	snprintf(wout, sizeof(wout), "%s/watch", local);
	st = eh_store_open(url);
	w.url = url;
	w.name = "k";
	w.out = wout;
	eh_spawn(&wc, watcher, &w);
	assert_int_equal(eh_recv(wc.rx, &v, EH_SAFETY_MS), 0);
	for (int i = 0; i < 3; i++) {
		cfg[i] = (struct cand){url, "k", res, mode, 5000, i};
		eh_spawn(&c[i], candidate, &cfg[i]);
	}

	i1 = wait_msg(c, 3, MSG_ELECTED, EH_SAFETY_MS, &t1);
	assert_true(i1 >= 0);
	/* exactly one: nobody else is elected while it leads */
	assert_int_equal(wait_msg(c, 3, MSG_ELECTED, 500, &v), -1);
	check_leader(st, "k", t1, i1);

	kill(c[i1].pid, SIGKILL);
	assert_int_equal(eh_wait_pid(c[i1].pid, EH_SAFETY_MS), 256 + SIGKILL);
	c[i1].pid = 0;
	i2 = wait_msg(c, 3, MSG_ELECTED, EH_SAFETY_MS, &t2);
	assert_true(i2 >= 0 && i2 != i1);
	assert_true(t2 > t1);
	assert_int_equal(wait_msg(c, 3, MSG_ELECTED, 500, &v), -1);
	check_leader(st, "k", t2, i2);

	/* a resign hands over at once: without it, the lease would have to
	 * run out (5 s), or the kernel lock would stay held */
	eh_send(c[i2].tx, CMD_RESIGN_HOLD);
	t0 = eh_boot_ms();
	assert_int_equal(eh_recv(c[i2].rx, &v, EH_SAFETY_MS), 0);
	assert_int_equal(MSG_CODE(v), MSG_RESIGNED);
	other = 3 - i1 - i2;
	i3 = wait_msg(c, 3, MSG_ELECTED, EH_SAFETY_MS, &t3);
	assert_int_equal(i3, other);
	assert_true(eh_boot_ms() - t0 < 2500);
	assert_true(t3 > t2);
	check_leader(st, "k", t3, i3);
	eh_sleep_ms(200);

	snprintf(e1, sizeof(e1), "elected %llu value-%d", (unsigned long long)t1, i1);
	snprintf(end1, sizeof(end1), " %llu value-%d", (unsigned long long)t1, i1);
	snprintf(e2, sizeof(e2), "elected %llu value-%d", (unsigned long long)t2, i2);
	snprintf(end2, sizeof(end2), "resigned %llu value-%d", (unsigned long long)t2, i2);
	snprintf(e3, sizeof(e3), "elected %llu value-%d", (unsigned long long)t3, i3);
	{
		/* the killed leader's term ends as lost (kernel) or expired (lease:
		 * its process is known dead on this host) */
		const char *const expect[] = {e1, end1, e2, end2, e3};

		check_watch(wout, expect, 5);
	}
	check_resource(res);
	eh_send(c[i3].tx, CMD_EXIT);
	eh_send(c[i2].tx, CMD_EXIT);
	assert_int_equal(eh_wait_pid(c[i3].pid, EH_SAFETY_MS), 0);
	assert_int_equal(eh_wait_pid(c[i2].pid, EH_SAFETY_MS), 0);
	kill(wc.pid, SIGKILL);
	lk_store_close(st);
}

static void test_kill_resign_kernel(void **state)
{
	(void)state;
	kill_resign(LK_MODE_KERNEL);
}

static void test_kill_resign_lease(void **state)
{
	(void)state;
	kill_resign(LK_MODE_LEASE);
}

/* Wait until pid is stopped (state T in /proc). */
static void wait_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	int64_t end = eh_boot_ms() + EH_SAFETY_MS;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (;;) {
		if (eh_read_file(path, buf, sizeof(buf)) > 0 && (p = strrchr(buf, ')')) &&
		    (p[2] == 'T' || p[2] == 't'))
			return;
		if (eh_boot_ms() > end)
			fail_msg("process %d did not stop", (int)pid);
		eh_sleep_ms(5);
	}
}

static void test_stop_lease(void **state)
{
	char url[PATH_MAX], local[PATH_MAX], res[PATH_MAX + 16], line[32];
	static char buf[1 << 20];
	struct cand cfg[3];
	struct eh_child c[3];
	uint64_t t1, t2, v;
	int i1, i2;
	char *first;

	(void)state;
	eh_store("stop", url, sizeof(url), local, sizeof(local));
	snprintf(res, sizeof(res), "%s/resource", local);
	for (int i = 0; i < 3; i++) {
		cfg[i] = (struct cand){url, "s", res, LK_MODE_LEASE, 1000, i};
		eh_spawn(&c[i], candidate, &cfg[i]);
	}
	i1 = wait_msg(c, 3, MSG_ELECTED, EH_SAFETY_MS, &t1);
	assert_true(i1 >= 0);
	eh_sleep_ms(100); /* a few acts */
	eh_send(c[i1].tx, CMD_PAUSE);
	assert_int_equal(eh_recv(c[i1].rx, &v, EH_SAFETY_MS), 0);
	assert_int_equal(MSG_CODE(v), MSG_STOPPING);
	wait_stopped(c[i1].pid);

	/* past the TTL (and the margin) another candidate takes over... */
	i2 = wait_msg(c, 3, MSG_ELECTED, EH_SAFETY_MS, &t2);
	assert_true(i2 >= 0 && i2 != i1);
	assert_true(t2 > t1);
	/* ...and acts */
	snprintf(line, sizeof(line), "%llu", (unsigned long long)t2);
	for (int64_t end = eh_boot_ms() + EH_SAFETY_MS; !has_line(res, line);) {
		assert_true(eh_boot_ms() < end);
		eh_sleep_ms(10);
	}
	/* continued, the old leader learns it was demoted before acting */
	kill(c[i1].pid, SIGCONT);
	assert_int_equal(eh_recv(c[i1].rx, &v, EH_SAFETY_MS), 0);
	assert_int_equal(MSG_CODE(v), MSG_DEMOTED);
	assert_int_equal(MSG_TOKEN(v), t1);
	eh_sleep_ms(300);

	assert_true(eh_read_file(res, buf, sizeof(buf)) > 0);
	first = strstr(buf, line);
	assert_non_null(first);
	snprintf(line, sizeof(line), "%llu\n", (unsigned long long)t1);
	if (strstr(first, line))
		fail_msg("the old leader acted with token %llu after the new term's first act",
		         (unsigned long long)t1);
	check_resource(res);
	eh_send(c[i2].tx, CMD_EXIT);
	assert_int_equal(eh_wait_pid(c[i2].pid, EH_SAFETY_MS), 0);
}

int main(void)
{
	const struct CMUnitTest local[] = {
		cmocka_unit_test_teardown(test_basics_kernel, eh_teardown),
		cmocka_unit_test_teardown(test_basics_lease, eh_teardown),
		cmocka_unit_test_teardown(test_kill_resign_kernel, eh_teardown),
		cmocka_unit_test_teardown(test_kill_resign_lease, eh_teardown),
		cmocka_unit_test_teardown(test_stop_lease, eh_teardown),
	};
	const struct CMUnitTest nfs[] = {
		cmocka_unit_test_teardown(test_basics_lease, eh_teardown),
		cmocka_unit_test_teardown(test_kill_resign_lease, eh_teardown),
		cmocka_unit_test_teardown(test_stop_lease, eh_teardown),
	};

	eh_init(110);
	if (eh_nfs())
		return cmocka_run_group_tests_name("election_api_nfs", nfs, NULL, NULL);
	return cmocka_run_group_tests_name("election_api", local, NULL, NULL);
}
