// SPDX-License-Identifier: MIT
/*
 * Network partitions between hosts that share a lease over nfs://.
 *
 * Hosts are network namespaces on a bridge (tools/netns-hosts.sh); the NFS
 * server (tools/nfs-server.sh) listens on the bridge's address. Each host
 * also gets a pid and mount namespace of its own (with its own /proc), so
 * that lockkit sees its processes as another host's: the same-host fast
 * path, which frees a dead local holder at once, cannot apply, and only the
 * TTL can end a hold, as between real machines.
 *
 * Every process that holds the lease writes to a "resource" independent of
 * the library: a log file on this machine's disk, appended with fixed-size
 * records (time from CLOCK_BOOTTIME, which every namespace shares, host,
 * token). From the log alone the test checks that no two critical sections
 * overlapped, that the cut-off holder's step-down (on_lost, or its COMMAND
 * killed by lockctl run) came before the next holder's first write, that
 * tokens increased, that no write carried a token below one already
 * written, and that a healed host rejoined without the lease bouncing back.
 *
 *  - api_link: the library API on three hosts; the holder's interface goes
 *    down, it is healed, then the new holder's host is killed as a whole.
 *  - api_drop: the same with the bridge dropping the holder's frames (a
 *    blackhole: no error, TCP only retransmits).
 *  - ctl_drop: lockctl run -S nfs://... on two hosts; COMMAND ignores
 *    SIGTERM, so only lockctl's SIGKILL at the deadline can stop it. The
 *    cut lasts until the cut-off lockctl has exited, which must come soon
 *    after its deadline: it must not wait on the server it cannot reach.
 *  - api_short_link, api_short_drop: a 3 s TTL and a 1 s cut just after a
 *    renewal, well inside the holder's safety window: it keeps its lease
 *    and token throughout and nobody else acquires. ctl_short_drop: the
 *    same for lockctl run, with a 0.75 s cut at any moment (the test cannot
 *    see its renewals).
 *  - api_past_drop: a blackhole healed just after the holder stepped down,
 *    before anyone may take over: its renewals sent into the cut land
 *    after the heal and must not revive the lease.
 *
 * The test binary is its own COMMAND and host agent: "--cs LOG HOST" runs a
 * critical section for lockctl run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lockkit.h"

#define TTL_MS 2000
/* the short-cut and past-deadline scenarios: a cut of about a third of it
 * is well inside the holder's safety window */
#define TTL_SHORT_MS 3000
#define SAFETY_MS    30000
/* lockctl run exits this long at most after its deadline (its COMMAND gets
 * SIGKILL a few hundred ms after it): several times what it takes, and
 * below the 2 s that one wait on the unreachable server used to cost */
#define CTL_EXIT_BOUND_MS 1500
#define MAX_HOSTS         3
#define NAME              "part"

enum kind { K_ENTER = 1, K_TICK, K_LOST, K_STOP, K_TERM, K_ERR, K_EXIT };

/* One write to the resource. */
struct rec {
	int64_t t;
	uint64_t token;
	int64_t deadline; /* holder's deadline as it knew it (lower bound), 0 if unknown */
	uint32_t host;
	uint32_t kind;
	int32_t aux;
	int32_t pid;
};

static char self_exe[PATH_MAX], logpath[PATH_MAX], url_base[PATH_MAX + 256];
static char export_dir[PATH_MAX], state_dir[PATH_MAX], prefix[16], bridge_addr[32];
static char host_ns[MAX_HOSTS + 1][64];
static pid_t host_pid[MAX_HOSTS + 1];
static char cleanup_cmd[4 * PATH_MAX];
/* the agents' lease TTL: set before the hosts start */
static int ttl_ms = TTL_MS;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		fail_msg("%s is not set: run the partition tests through ctest", name);
	return v;
}

/* Append one record: O_APPEND writes of one record each do not interleave. */
static void put(int fd, uint32_t host, uint32_t kind, uint64_t token, int32_t aux, int64_t deadline)
{
	struct rec r = {.t = now_ns(),
	                .token = token,
	                .deadline = deadline,
	                .host = host,
	                .kind = kind,
	                .aux = aux,
	                .pid = getpid()};

	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(98);
}

static int open_log(void)
{
	int fd = open(logpath, O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd < 0)
		_exit(97);
	return fd;
}

/* The whole log; *ret_n records. */
static struct rec *read_log(size_t *ret_n)
{
	struct stat sb;
	struct rec *v;
	ssize_t n;
	int fd = open(logpath, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	v = malloc((size_t)sb.st_size + sizeof(*v));
	assert_non_null(v);
	n = pread(fd, v, (size_t)sb.st_size, 0);
	close(fd);
	assert_true(n >= 0);
	*ret_n = (size_t)n / sizeof(*v);
	return v;
}

/* Run a shell command line; its exit status. */
static int sh(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	fflush(NULL);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------------------
 * Hosts
 */

/*
 * Run fn as pid 1 of a new pid namespace (with its own /proc) inside host
 * i's network namespace. Killing the host (netns-hosts.sh kill) kills all
 * of it; so does the death of this test process.
 */
static void host_start(int i, void (*fn)(int host))
{
	char path[128];
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd, st;
		pid_t init;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(0);
		snprintf(path, sizeof(path), "/run/netns/%s", host_ns[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0 ||
		    unshare(CLONE_NEWPID | CLONE_NEWNS) < 0)
			_exit(96);
		close(fd);
		init = fork();
		if (init < 0)
			_exit(96);
		if (init == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
			    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
			            0)
				_exit(96);
			fn(i);
			_exit(0);
		}
		while (waitpid(init, &st, 0) < 0 && errno == EINTR)
			;
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	host_pid[i] = pid;
}

static void host_kill(int i)
{
	assert_int_equal(
		sh("LK_NETNS_PREFIX=%s sh %s kill %d >/dev/null", prefix, env("LK_NETNS_SH"), i),
		0);
	if (host_pid[i] > 0)
		waitpid(host_pid[i], NULL, 0);
	host_pid[i] = 0;
}

static void host_cut(int i, const char *how)
{
	assert_int_equal(
		sh("LK_NETNS_PREFIX=%s sh %s cut %d %s", prefix, env("LK_NETNS_SH"), i, how), 0);
}

static void host_heal(int i)
{
	assert_int_equal(sh("LK_NETNS_PREFIX=%s sh %s heal %d", prefix, env("LK_NETNS_SH"), i), 0);
}

/* ------------------------------------------------------------------------
 * Host programs
 */

static char store_url[PATH_MAX + 512];
static int agent_log = -1, agent_host;

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)userdata;
	put(agent_log, (uint32_t)agent_host, K_LOST, lk_lock_token(lk), reason, 0);
}

/* A library client that wants the lease for ever: hold it while it can,
 * write to the resource every 10 ms while lk_lock_check() allows, and take
 * it again when it can. */
static void api_agent(int host)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	int r;

	agent_host = host;
	agent_log = open_log();
	while ((r = lk_store_open(store_url, NULL, &st)) < 0) {
		put(agent_log, (uint32_t)host, K_ERR, 0, r, 0);
		sleep_ms(100);
	}
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = (uint64_t)ttl_ms;
	o.on_lost = on_lost;
	if (lk_lock_open(st, NAME, &o, &lk) < 0)
		_exit(95);
	for (;;) {
		uint64_t tok;

		r = lk_lock_acquire(lk, -1);
		if (r < 0) {
			put(agent_log, (uint32_t)host, K_ERR, 0, r, 0);
			sleep_ms(100);
			continue;
		}
		tok = lk_lock_token(lk);
		put(agent_log, (uint32_t)host, K_ENTER, tok, 0,
		    now_ns() + (int64_t)lk_lock_remaining_ms(lk) * 1000000);
		while (lk_lock_check(lk) == 0) {
			int64_t dl = now_ns() + (int64_t)lk_lock_remaining_ms(lk) * 1000000;

			put(agent_log, (uint32_t)host, K_TICK, tok, 0, dl);
			sleep_ms(10);
		}
		put(agent_log, (uint32_t)host, K_STOP, tok, 0, 0);
		lk_lock_release(lk);
	}
}

/* Runs lockctl run in a loop, as a service manager would restart it. */
static void ctl_agent(int host)
{
	char hs[16], ttl[16];
	int fd = open_log();

	snprintf(hs, sizeof(hs), "%d", host);
	snprintf(ttl, sizeof(ttl), "%dms", ttl_ms);
	for (;;) {
		pid_t pid = fork();
		int st;

		if (pid < 0)
			_exit(94);
		if (pid == 0) {
			const char *lockctl = getenv("LOCKCTL");

			execl(lockctl, lockctl, "-S", store_url, "run", "--ttl", ttl, NAME, "--",
			      self_exe, "--cs", logpath, hs, (char *)NULL);
			_exit(127);
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		put(fd, (uint32_t)host, K_EXIT, 0, WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
		sleep_ms(50);
	}
}

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

/* COMMAND of lockctl run: writes until killed, and ignores SIGTERM. */
static int cs_main(const char *log, const char *host)
{
	uint64_t tok = strtoull(getenv("LOCKCTL_TOKEN") ? getenv("LOCKCTL_TOKEN") : "0", NULL, 10);
	uint32_t h = (uint32_t)atoi(host);
	int fd, termed = 0;

	snprintf(logpath, sizeof(logpath), "%s", log);
	fd = open_log();
	signal(SIGTERM, on_term);
	put(fd, h, K_ENTER, tok, 0, 0);
	while (tok) { /* until SIGKILL */
		if (got_term && !termed) {
			put(fd, h, K_TERM, tok, 0, 0);
			termed = 1;
		}
		put(fd, h, K_TICK, tok, 0, 0);
		sleep_ms(10);
	}
	return 1; /* no token: lockctl did not say which hold this is */
}

/* ------------------------------------------------------------------------
 * Reading the resource
 */

/* Index of the first ENTER after time t from a host other than not_host
 * (0: any), or -1. */
static long first_enter(const struct rec *v, size_t n, int64_t t, uint32_t not_host)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].kind == K_ENTER && v[i].t > t && v[i].host != not_host)
			return (long)i;
	return -1;
}

/* Wait until some host other than not_host enters after t; its record. */
static struct rec wait_enter(int64_t t, uint32_t not_host)
{
	int64_t end = now_ns() + (int64_t)SAFETY_MS * 1000000;

	for (;;) {
		size_t n;
		struct rec *v = read_log(&n), r;
		long i = first_enter(v, n, t, not_host);

		if (i >= 0) {
			r = v[i];
			free(v);
			return r;
		}
		free(v);
		if (now_ns() > end)
			fail_msg("no host other than %u entered within %d ms", not_host, SAFETY_MS);
		sleep_ms(20);
	}
}

/* Last write (ENTER or TICK) with token tok: its time and the newest
 * deadline its holder reported. */
static void last_write(const struct rec *v, size_t n, uint64_t tok, int64_t *ret_t,
                       int64_t *ret_deadline)
{
	*ret_t = 0;
	*ret_deadline = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].token != tok || (v[i].kind != K_ENTER && v[i].kind != K_TICK))
			continue;
		if (v[i].t > *ret_t)
			*ret_t = v[i].t;
		if (v[i].deadline > *ret_deadline)
			*ret_deadline = v[i].deadline;
	}
}

/* Checks on the whole log: every critical section ends before the next one
 * starts, tokens increase, no write with a token below one already written. */
static void check_log(size_t min_holds)
{
	size_t n, holds = 0;
	struct rec *v = read_log(&n);
	uint64_t max_tok = 0, prev = 0;
	int64_t prev_last = 0, dl;

	for (size_t i = 0; i < n; i++) {
		if (v[i].kind != K_ENTER && v[i].kind != K_TICK)
			continue;
		if (v[i].token < max_tok)
			fail_msg("host %u wrote with token %llu after token %llu was written",
			         v[i].host, (unsigned long long)v[i].token,
			         (unsigned long long)max_tok);
		max_tok = v[i].token;
		if (v[i].kind != K_ENTER)
			continue;
		holds++;
		if (v[i].token <= prev)
			fail_msg("token %llu entered after %llu", (unsigned long long)v[i].token,
			         (unsigned long long)prev);
		if (prev && v[i].t <= prev_last)
			fail_msg("overlap: host %u entered with token %llu %lld us before the last "
			         "write with token %llu",
			         v[i].host, (unsigned long long)v[i].token,
			         (long long)(prev_last - v[i].t) / 1000, (unsigned long long)prev);
		prev = v[i].token;
		last_write(v, n, prev, &prev_last, &dl);
	}
	assert_true(holds >= min_holds);
	free(v);
}

/* ------------------------------------------------------------------------
 * Scenarios
 */

static void fresh_store(const char *tag)
{
	char dir[PATH_MAX + 64];
	int fd;

	snprintf(dir, sizeof(dir), "%s/%s.%d", export_dir, tag, (int)getpid());
	mkdir(dir, 0700);
	snprintf(store_url, sizeof(store_url), "nfs://%s%s?%s", bridge_addr, dir,
	         strchr(url_base, '?') + 1);
	snprintf(logpath, sizeof(logpath), "%s/%s.log", env("LK_TEST_TMP"), tag);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
}

/* The holder's step-down: on_lost, or (lockctl) SIGTERM to COMMAND. */
static int64_t step_down(const struct rec *v, size_t n, uint32_t host, uint64_t tok, int kind)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].host == host && v[i].token == tok && (int)v[i].kind == kind)
			return v[i].t;
	return 0;
}

/* Time of the first record of this kind by host with token tok (any token
 * if tok is 0) after t, or 0. */
static int64_t find_rec(const struct rec *v, size_t n, uint32_t host, int kind, uint64_t tok,
                        int64_t t)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].host == host && (int)v[i].kind == kind && (!tok || v[i].token == tok) &&
		    v[i].t > t)
			return v[i].t;
	return 0;
}

/*
 * Cut host 1 off until another host enters; heal it then or, if heal_after
 * is a record kind, once host 1 has written it (lockctl run exited).
 */
static void run_partition(const char *how, int nhosts, void (*agent)(int), int stepdown_kind,
                          int heal_after)
{
	struct rec first, next, after;
	int64_t t_cut, t_heal, t_kill, last, dl, sd;
	size_t n, moves = 0;
	struct rec *v;

	host_start(1, agent);
	first = wait_enter(0, 0);
	assert_int_equal(first.host, 1);
	for (int i = 2; i <= nhosts; i++)
		host_start(i, agent);
	sleep_ms(ttl_ms); /* the others watch host 1 renew */

	t_cut = now_ns();
	host_cut(1, how);
	next = wait_enter(t_cut, 1);
	v = read_log(&n);
	last_write(v, n, first.token, &last, &dl);
	sd = step_down(v, n, 1, first.token, stepdown_kind);
	free(v);
	if (!sd)
		fail_msg("the cut-off holder recorded no step-down before host %u entered",
		         next.host);
	if (sd >= next.t)
		fail_msg("host 1 stepped down %lld ms after host %u entered",
		         (long long)(sd - next.t) / 1000000, next.host);
	if (last >= next.t)
		fail_msg("host 1 wrote %lld ms after host %u entered",
		         (long long)(last - next.t) / 1000000, next.host);
	if (dl && next.t <= dl)
		fail_msg("host %u entered before host 1's deadline", next.host);
	assert_true(next.token > first.token);
	print_message(
		"%s cut: host 1 stepped down %lld ms after the cut, its last write %lld ms "
		"before host %u entered, %lld ms (%.2f TTL) after the cut; token %llu -> %llu\n",
		how, (long long)(sd - t_cut) / 1000000, (long long)(next.t - last) / 1000000,
		next.host, (long long)(next.t - t_cut) / 1000000,
		(double)(next.t - t_cut) / 1e6 / ttl_ms, (unsigned long long)first.token,
		(unsigned long long)next.token);

	while (heal_after) {
		v = read_log(&n);
		t_heal = find_rec(v, n, 1, heal_after, 0, t_cut);
		free(v);
		if (t_heal)
			break;
		if (now_ns() - t_cut > (int64_t)SAFETY_MS * 1000000)
			fail_msg("host 1 wrote no record %d within %d ms of the cut", heal_after,
			         SAFETY_MS);
		sleep_ms(5);
	}

	/* heal: host 1 must come back as a waiter, not take the lease back */
	t_heal = now_ns();
	host_heal(1);
	sleep_ms(3 * ttl_ms);
	v = read_log(&n);
	for (size_t i = 0; i < n; i++)
		if (v[i].kind == K_ENTER && v[i].t > t_heal)
			moves++;
	free(v);
	if (moves > 1)
		fail_msg("%zu acquisitions in %d ms after the heal: the lease flapped", moves,
		         3 * ttl_ms);
	print_message("%s heal: %zu acquisitions in the %d ms after it\n", how, moves, 3 * ttl_ms);

	/* kill hosts other than 1 until host 1 holds: it has rejoined */
	after = next;
	for (int round = 0; after.host != 1 && round < nhosts; round++) {
		v = read_log(&n);
		for (size_t i = 0; i < n; i++)
			if (v[i].kind == K_ENTER && v[i].t > after.t)
				after = v[i];
		free(v);
		if (after.host == 1)
			break;
		t_kill = now_ns();
		host_kill((int)after.host);
		next = wait_enter(t_kill, after.host);
		v = read_log(&n);
		last_write(v, n, after.token, &last, &dl);
		free(v);
		if (dl && next.t <= dl)
			fail_msg("host %u entered before killed host %u's deadline", next.host,
			         after.host);
		assert_true(next.token > after.token);
		print_message("host %u killed: host %u entered %lld ms (%.2f TTL) later\n",
		              after.host, next.host, (long long)(next.t - t_kill) / 1000000,
		              (double)(next.t - t_kill) / 1e6 / ttl_ms);
		after = next;
	}
	if (after.host != 1)
		fail_msg("the healed host 1 never took the lease again");
	for (int i = 1; i <= nhosts; i++)
		if (host_pid[i] > 0)
			host_kill(i);
	check_log(2);
}

/*
 * Wait until the holder (host 1, token tok) has just renewed: its newest
 * write, at most 50 ms old, shows at least min_left_ms to its deadline.
 * Cutting then leaves it nearly its whole safety window.
 */
static void wait_renewed(uint64_t tok, int64_t min_left_ms)
{
	int64_t end = now_ns() + (int64_t)SAFETY_MS * 1000000;

	for (;;) {
		size_t n;
		struct rec *v = read_log(&n);
		int64_t now = now_ns(), left = -1;

		for (size_t i = n; i-- > 0;)
			if (v[i].host == 1 && v[i].kind == K_TICK && v[i].token == tok) {
				if (now - v[i].t < 50000000)
					left = (v[i].deadline - v[i].t) / 1000000;
				break;
			}
		free(v);
		if (left >= min_left_ms)
			return;
		if (now > end)
			fail_msg("host 1 did not renew within %d ms", SAFETY_MS);
		sleep_ms(5);
	}
}

/*
 * A cut shorter than the holder's safety window, then healed: the holder
 * keeps its lease throughout (no step-down, the same token, its writes go
 * on after the heal) and nobody else acquires during or after the cut.
 * stepdown_kind is the record a step-down would leave (besides STOP, LOST
 * and EXIT, which no host 1 record may be either).
 */
static void run_short_cut(const char *how, void (*agent)(int), int cut_ms, int stepdown_kind)
{
	struct rec first;
	int64_t t_cut, t_heal, t_end, last, dl, min_left = INT64_MAX;
	size_t n;
	struct rec *v;

	host_start(1, agent);
	first = wait_enter(0, 0);
	assert_int_equal(first.host, 1);
	host_start(2, agent);
	sleep_ms(ttl_ms); /* host 2 watches host 1 renew */
	if (first.deadline)
		wait_renewed(first.token, (first.deadline - first.t) / 1000000 - ttl_ms / 8);

	t_cut = now_ns();
	host_cut(1, how);
	sleep_ms(cut_ms);
	t_heal = now_ns();
	host_heal(1);
	/* long enough for host 2 to have taken over twice over had host 1
	 * stopped renewing at the cut */
	sleep_ms(3 * ttl_ms);
	t_end = now_ns();

	v = read_log(&n);
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind == K_ENTER && v[i].t > first.t)
			fail_msg("host %u acquired (token %llu) %lld ms after a %d ms cut of the "
			         "holder began",
			         v[i].host, (unsigned long long)v[i].token,
			         (long long)(v[i].t - t_cut) / 1000000, cut_ms);
		if (v[i].host != 1 || v[i].t <= t_cut)
			continue;
		if ((int)v[i].kind == stepdown_kind || v[i].kind == K_STOP || v[i].kind == K_EXIT ||
		    v[i].kind == K_LOST)
			fail_msg("host 1 stepped down (record %u, %lld ms after the cut) over a "
			         "%d ms cut",
			         v[i].kind, (long long)(v[i].t - t_cut) / 1000000, cut_ms);
		if (v[i].kind == K_TICK && v[i].token != first.token)
			fail_msg("host 1 wrote with token %llu, not %llu",
			         (unsigned long long)v[i].token, (unsigned long long)first.token);
		if (v[i].kind == K_TICK && v[i].deadline && v[i].t < t_heal + ttl_ms * 1000000ll &&
		    v[i].deadline - v[i].t < min_left)
			min_left = v[i].deadline - v[i].t;
	}
	last_write(v, n, first.token, &last, &dl);
	free(v);
	/* it held on: still writing at the end, a whole 3 TTL after the heal */
	if (t_end - last > (int64_t)ttl_ms * 1000000 / 2)
		fail_msg("host 1's last write came %lld ms before the end",
		         (long long)(t_end - last) / 1000000);
	if (min_left != INT64_MAX)
		print_message("%s cut of %d ms: host 1 kept token %llu; at least %lld ms were "
		              "left to its deadline\n",
		              how, cut_ms, (unsigned long long)first.token,
		              (long long)min_left / 1000000);
	else
		print_message("%s cut of %d ms: host 1 kept token %llu\n", how, cut_ms,
		              (unsigned long long)first.token);
	for (int i = 1; i <= 2; i++)
		if (host_pid[i] > 0)
			host_kill(i);
	check_log(1);
}

/*
 * A cut that outlasts the holder's deadline by a little: healed as soon as
 * the holder has stepped down, before anyone may take over. Its renewals
 * sent into the cut reach the server after the heal; they must not revive
 * the lease, and the holder must have stopped before the next one writes.
 */
static void run_past_deadline(const char *how, void (*agent)(int), int stepdown_kind)
{
	struct rec first, next;
	int64_t t_cut, t_heal, sd = 0, last, dl, end;
	size_t n, moves = 0;
	struct rec *v;

	host_start(1, agent);
	first = wait_enter(0, 0);
	assert_int_equal(first.host, 1);
	host_start(2, agent);
	sleep_ms(ttl_ms);

	t_cut = now_ns();
	host_cut(1, how);
	end = t_cut + (int64_t)SAFETY_MS * 1000000;
	while (!sd) {
		v = read_log(&n);
		sd = find_rec(v, n, 1, stepdown_kind, first.token, t_cut);
		free(v);
		if (!sd && now_ns() > end)
			fail_msg("host 1 did not step down within %d ms of the cut", SAFETY_MS);
		if (!sd)
			sleep_ms(5);
	}
	t_heal = now_ns();
	host_heal(1);
	next = wait_enter(t_cut, 0);
	v = read_log(&n);
	last_write(v, n, first.token, &last, &dl);
	free(v);
	if (sd >= next.t)
		fail_msg("host 1 stepped down %lld ms after host %u entered",
		         (long long)(sd - next.t) / 1000000, next.host);
	if (last >= next.t)
		fail_msg("host 1 wrote %lld ms after host %u entered",
		         (long long)(last - next.t) / 1000000, next.host);
	if (last >= t_heal)
		fail_msg("host 1 wrote with token %llu %lld ms after the heal: the lease revived",
		         (unsigned long long)first.token, (long long)(last - t_heal) / 1000000);
	if (dl && next.t <= dl)
		fail_msg("host %u entered before host 1's deadline", next.host);
	assert_true(next.token > first.token);
	print_message("%s cut past the deadline: host 1 stepped down %lld ms after the cut and "
	              "was healed %lld ms later; host %u entered %lld ms after the heal, "
	              "token %llu -> %llu\n",
	              how, (long long)(sd - t_cut) / 1000000, (long long)(t_heal - sd) / 1000000,
	              next.host, (long long)(next.t - t_heal) / 1000000,
	              (unsigned long long)first.token, (unsigned long long)next.token);

	sleep_ms(3 * ttl_ms);
	v = read_log(&n);
	for (size_t i = 0; i < n; i++)
		if (v[i].kind == K_ENTER && v[i].t > next.t)
			moves++;
	free(v);
	if (moves)
		fail_msg("%zu more acquisitions in %d ms after host %u's: the lease flapped", moves,
		         3 * ttl_ms, next.host);
	for (int i = 1; i <= 2; i++)
		if (host_pid[i] > 0)
			host_kill(i);
	check_log(2);
}

static void test_api_link(void **state)
{
	(void)state;
	ttl_ms = TTL_MS;
	fresh_store("api_link");
	run_partition("link", 3, api_agent, K_LOST, 0);
}

static void test_api_drop(void **state)
{
	(void)state;
	ttl_ms = TTL_MS;
	fresh_store("api_drop");
	run_partition("drop", 3, api_agent, K_LOST, 0);
}

static void test_ctl_drop(void **state)
{
	size_t n;
	struct rec *v;
	int exits75 = 0;
	int64_t t_term = 0, t_exit = 0;

	(void)state;
	ttl_ms = TTL_MS;
	fresh_store("ctl_drop");
	/* healed only once lockctl has exited: it must not wait for the server */
	run_partition("drop", 2, ctl_agent, K_TERM, K_EXIT);
	/* the cut-off lockctl run said the lease was lost, and soon: its
	 * deadline is when it sent COMMAND SIGTERM */
	v = read_log(&n);
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind == K_TERM && v[i].host == 1 && !t_term)
			t_term = v[i].t;
		if (v[i].kind == K_EXIT && v[i].host == 1 && v[i].aux == 75) {
			exits75++;
			if (!t_exit)
				t_exit = v[i].t;
		}
	}
	free(v);
	assert_int_equal(exits75, 1);
	assert_true(t_term > 0 && t_exit > t_term);
	print_message("lockctl run exited 75 %lld ms after its deadline\n",
	              (long long)(t_exit - t_term) / 1000000);
	if (t_exit - t_term > (int64_t)CTL_EXIT_BOUND_MS * 1000000)
		fail_msg("lockctl run exited %lld ms after its deadline (bound %d ms)",
		         (long long)(t_exit - t_term) / 1000000, CTL_EXIT_BOUND_MS);
}

static void test_api_short_link(void **state)
{
	(void)state;
	ttl_ms = TTL_SHORT_MS;
	fresh_store("api_short_link");
	run_short_cut("link", api_agent, TTL_SHORT_MS / 3, K_LOST);
}

static void test_api_short_drop(void **state)
{
	(void)state;
	ttl_ms = TTL_SHORT_MS;
	fresh_store("api_short_drop");
	run_short_cut("drop", api_agent, TTL_SHORT_MS / 3, K_LOST);
}

static void test_api_past_drop(void **state)
{
	(void)state;
	ttl_ms = TTL_SHORT_MS;
	fresh_store("api_past_drop");
	run_past_deadline("drop", api_agent, K_LOST);
}

/* lockctl's holder cannot report a fresh renewal, so the cut is shorter:
 * a quarter of the TTL whenever it falls between renewals */
static void test_ctl_short_drop(void **state)
{
	(void)state;
	ttl_ms = TTL_SHORT_MS;
	fresh_store("ctl_short_drop");
	run_short_cut("drop", ctl_agent, TTL_SHORT_MS / 4, K_TERM);
}

/* ------------------------------------------------------------------------
 * Hosts and server for the whole program
 */

static void cleanup(void)
{
	if (cleanup_cmd[0])
		sh("%s", cleanup_cmd);
	cleanup_cmd[0] = 0;
}

static void on_alarm(int sig)
{
	(void)sig;
	fprintf(stderr, "partition: safety alarm; cleaning up\n");
	cleanup();
	_exit(1);
}

static int reset_hosts(void **state)
{
	(void)state;
	for (int i = 1; i <= MAX_HOSTS; i++) {
		if (host_pid[i] > 0)
			host_kill(i);
		sh("LK_NETNS_PREFIX=%s sh %s heal %d 2>/dev/null", prefix, env("LK_NETNS_SH"), i);
	}
	return 0;
}

static int setup(void **state)
{
	char buf[8192], path[PATH_MAX + 16];
	uint32_t h = 2166136261u;
	const char *tmp = env("LK_TEST_TMP");
	FILE *f;

	(void)state;
	for (const char *p = tmp; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(prefix, sizeof(prefix), "lkp%06x", h & 0xffffff);
	snprintf(state_dir, sizeof(state_dir), "%s", env("LK_PART_STATE_DIR"));
	mkdir(tmp, 0700);
	snprintf(cleanup_cmd, sizeof(cleanup_cmd),
	         "sh %s stop %s >/dev/null; LK_NETNS_PREFIX=%s sh %s down", env("LK_NFS_SERVER_SH"),
	         state_dir, prefix, env("LK_NETNS_SH"));
	snprintf(path, sizeof(path), "%s/hosts.env", tmp);
	if (sh("LK_NETNS_PREFIX=%s sh %s up %d >%s", prefix, env("LK_NETNS_SH"), MAX_HOSTS, path))
		fail_msg("netns-hosts.sh up failed");
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(buf, sizeof(buf), f)) {
		int i;
		char val[64];

		if (sscanf(buf, "LK_NETNS_BRIDGE_ADDR='%31[0-9.]'", bridge_addr) == 1)
			continue;
		if (sscanf(buf, "LK_NETNS_HOST_%d_NS='%63[a-z0-9-]'", &i, val) == 2 && i >= 1 &&
		    i <= MAX_HOSTS)
			snprintf(host_ns[i], sizeof(host_ns[i]), "%s", val);
	}
	fclose(f);
	assert_true(bridge_addr[0] && host_ns[MAX_HOSTS][0]);
	if (sh("sh %s stop %s >/dev/null && LK_NFS_ADDR=%s LK_NFS_PORT=%s LK_NFS_MNT_PORT=%s "
	       "sh %s start %s",
	       env("LK_NFS_SERVER_SH"), state_dir, bridge_addr, env("LK_PART_NFS_PORT"),
	       env("LK_PART_NFS_MNT_PORT"), env("LK_NFS_SERVER_SH"), state_dir))
		fail_msg("nfs-server.sh start on %s failed", bridge_addr);
	snprintf(path, sizeof(path), "%s/env", state_dir);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(buf, sizeof(buf), f)) {
		sscanf(buf, "LK_NFS_URL='%[^']'", url_base);
		sscanf(buf, "LK_NFS_EXPORT_DIR='%[^']'", export_dir);
	}
	fclose(f);
	assert_true(url_base[0] && export_dir[0] && strchr(url_base, '?'));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	reset_hosts(NULL);
	cleanup();
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_api_link, reset_hosts),
		cmocka_unit_test_teardown(test_api_drop, reset_hosts),
		cmocka_unit_test_teardown(test_ctl_drop, reset_hosts),
		cmocka_unit_test_teardown(test_api_short_link, reset_hosts),
		cmocka_unit_test_teardown(test_api_short_drop, reset_hosts),
		cmocka_unit_test_teardown(test_api_past_drop, reset_hosts),
		cmocka_unit_test_teardown(test_ctl_short_drop, reset_hosts),
	};
	ssize_t n;

	if (argc == 4 && !strcmp(argv[1], "--cs"))
		return cs_main(argv[2], argv[3]);
	/* one scenario per run keeps each run well under a minute */
	if (argc == 2)
		cmocka_set_test_filter(argv[1]);
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 1;
	self_exe[n] = 0;
	setvbuf(stderr, NULL, _IONBF, 0);
	signal(SIGALRM, on_alarm);
	alarm(100);
	return cmocka_run_group_tests_name("partition", tests, setup, teardown);
}
