// SPDX-License-Identifier: MIT
/*
 * bench_lease: what lease mode costs, measured against baselines taken in the
 * same run on the same machine, so that the ratios hold even where the
 * absolute figures (a shared, noisy host) do not.
 *
 *  1. Holding many leases. For each heartbeat engine (io_uring, then the
 *     thread fallback), in a fresh process per engine and per count so that
 *     the engine is chosen cleanly and no earlier run leaves work behind, N
 *     leases are acquired in one store and then left to renew for a window of
 *     about two renewal rounds. The process CPU time of the window (every
 *     thread, io_uring's kernel workers included) is divided by the renewals
 *     the engine counted in it. The baseline is the one thing a renewal cannot
 *     avoid: a pwrite(2) of a 256-byte record to an open file. It is measured
 *     in the same process, over many files each last written a few
 *     milliseconds earlier, because that is what a renewal meets: a record
 *     file that has not been written for a clock tick, so that the write also
 *     updates its timestamps. Rewriting one file in a tight loop skips that
 *     update and would make a baseline no renewal can reach; the table's
 *     notes give that figure too. Everything a renewal does beyond the write
 *     (the probe for a newer generation, encoding, timers, bookkeeping) shows
 *     as the ratio. Each held lease keeps descriptors open; when the hard
 *     limit cannot hold the count asked for, the largest count that fits is
 *     measured and the table says so.
 *  2. Failover after the holder is SIGKILLed, as a fraction of the TTL. A
 *     waiter in another process sleeps in lk_lock_acquire() until the lease
 *     is free. With the same-host fast path the waiter sees that the holder's
 *     process is gone; without it (the holder's record made to look as if it
 *     came from another boot) the waiter must watch the record stay unchanged
 *     for T*(1+rho), so the bound is the protocol's: (1+rho) plus two polls.
 *  3. Release to a waiter blocked in another process: the holder notes the
 *     time just before it releases, the waiter when its acquire returns. The
 *     baseline is the least any lease handoff needs on this filesystem, the
 *     synced creation and link of one record (what a claim does), sampled
 *     by the holder in every round while the waiter sleeps, so that a disk
 *     shared with other work slows both sides alike; the ratio shows what
 *     waking up, observing and cleaning up add.
 *
 * A waiter counts as blocked only when /proc says its thread sleeps in
 * poll(2), the one place lease mode waits, so no handoff or failover starts
 * before the waiter is really asleep. The program exits 0 when a goal is
 * missed: it measures, it does not judge; it exits 1 when anything fails to
 * run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "engine.h"
#include "internal.h"
#include "lockkit.h"

#define EXIT_FAIL  1
#define EXIT_USAGE 64

/* How long any wait for the other side may take before the run is failed. */
#define STALL_NS (10 * 1000000000LL)

#define RECORD_SIZE  256
#define BASE_FILES   512 /* files the pwrite baseline cycles through */
#define FD_RESERVE   16  /* descriptors kept free for transient use */
#define MAX_HANDOFFS 10000
#define MAX_RUNS     1000
#define ERR_LEN      200

static const char usage[] =
	"Usage: bench_lease [--quick] [--max-leases N] [--window SECONDS] [--runs N]\n"
	"                   [--handoffs N] [--failover-ttl SECONDS] [--engine io_uring|thread]\n"
	"                   [--only 1|2|3] [--verbose]\n"
	"\n"
	"Measure lease mode against baselines taken in the same run.\n"
	"\n"
	"  --quick              100 and 1000 leases, short windows, few runs (~30 s;\n"
	"                       a smoke run for CI)\n"
	"  --max-leases N       cap the lease counts (100, 1000, 10000) at N\n"
	"  --window SECONDS     CPU measurement window per lease count (default 5,\n"
	"                       two renewal rounds at the default TTL of 10 s)\n"
	"  --runs N             failover runs per case (default 5)\n"
	"  --handoffs N         release-to-waiter handoffs (default 200)\n"
	"  --failover-ttl SECONDS  TTL of the failover runs (default 2)\n"
	"  --engine NAME        measurement 1 for one engine only\n"
	"  --only N             run only measurement N (1-3), e.g. under a profiler\n"
	"  --verbose            say when each measurement window starts and ends, and\n"
	"                       in which process (to attach a profiler)\n"
	"\n"
	"Exit status: 0 when everything ran (goals missed or not), 1 when a\n"
	"measurement could not run, 64 usage error.\n";

struct cfg {
	int quick;
	int max_leases;
	double window_s;
	int runs;
	int handoffs;
	uint64_t fo_ttl_ms;
	int engines; /* bit 0: io_uring, bit 1: thread */
	int only;
	int verbose;
};

enum unit {
	U_S,     /* seconds */
	U_US,    /* microseconds */
	U_PCT,   /* percent of one core */
	U_COUNT, /* a number of events */
};

#define MAX_ROWS  64
#define MAX_NOTES 32
#define NOTE_LEN  320

struct bench {
	struct cfg c;
	char dir[256]; /* the temporary directory, removed at exit */
	struct bench_table t;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

const char bench_name[] = "bench_lease";

/* A MAP_SHARED anonymous mapping: results and hand-shakes across fork(). */
static void *shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * The futex words live in a MAP_SHARED mapping used by several processes, so
 * the operations must not be the process-private kind.
 */
static void word_set(_Atomic uint32_t *word, uint32_t v)
{
	atomic_store(word, v);
	syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wait until *word >= want, *failed is set (-ECANCELED) or the run stalls. */
static int word_wait(_Atomic uint32_t *word, uint32_t want, atomic_int *failed, int64_t stall_ns)
{
	int64_t deadline = bench_now_ns() + stall_ns;
	struct timespec ts = {0, 50 * 1000000};
	uint32_t cur;

	while ((cur = atomic_load(word)) < want) {
		if (atomic_load(failed))
			return -ECANCELED;
		if (bench_now_ns() > deadline)
			return -ETIMEDOUT;
		if (syscall(SYS_futex, (void *)word, FUTEX_WAIT, cur, &ts, NULL, 0) < 0 &&
		    errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
			return -errno;
	}
	return 0;
}

/*
 * 1 if the main thread of pid sleeps in poll(2) or ppoll(2), 0 if not. Lease
 * mode waits for a holder in exactly one place, a poll on its cancel eventfd
 * and the lock directory's inotify descriptor, so this says "blocked in
 * lk_lock_acquire()" without guessing with a sleep.
 */
static int in_poll(pid_t pid)
{
	char path[64], buf[128];
	ssize_t n;
	long nr;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = 0;
	if (buf[0] < '0' || buf[0] > '9')
		return 0; /* "running" */
	nr = strtol(buf, NULL, 10);
#ifdef SYS_poll
	if (nr == SYS_poll)
		return 1;
#endif
	return nr == SYS_ppoll;
}

static int wait_in_poll(pid_t pid, atomic_int *failed)
{
	int64_t deadline = bench_now_ns() + STALL_NS;
	int r;

	while ((r = in_poll(pid)) == 0) {
		if (atomic_load(failed))
			return -ECANCELED;
		if (bench_now_ns() > deadline)
			return -ETIMEDOUT;
		bench_sleep_ns(50000);
	}
	return r < 0 ? r : 0;
}

/* Reap pid, killing it if it has not exited by the deadline. */
static int reap(pid_t pid, int64_t stall_ns, int *ret_status)
{
	int64_t deadline = bench_now_ns() + stall_ns;
	int status = 0;
	pid_t w;

	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (bench_now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		bench_sleep_ns(2000000);
	}
	if (ret_status)
		*ret_status = status;
	return 0;
}

/* Children die with the benchmark, whatever happens to it. */
static void child_setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

/* ------------------------------------------------------------------------
 * 1. Holding many leases
 */

struct renew_res {
	int status; /* 0, or -errno with err */
	char err[ERR_LEN];
	char engine[16];
	int n; /* leases actually held */
	int fds_per_lease;
	int fd_limit;
	double acquire_s;
	double window_s; /* measured wall time of the window */
	double cpu_s, user_s, sys_s;
	uint64_t renewals, failures, late;
	int lost_check;         /* lk_lock_check() failed at the end of the window */
	int lost_cb;            /* on_lost callbacks during the whole run */
	int64_t min_left_ms;    /* least lk_lock_remaining_ms() at the end */
	double pwrite_ns;       /* baseline: CPU per pwrite, files last written earlier */
	double pwrite_tight_ns; /* one file rewritten in a tight loop */
	double close_s;
};

struct counters {
	uint64_t renewals, failures, late;
};

static void sum_counters(struct lk_store *st, struct lk_lock **locks, int n, struct counters *c)
{
	struct lk__engine *e = st->engine;

	memset(c, 0, sizeof(*c));
	if (!e)
		return;
	/* The engine updates the counters under its mutex. */
	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < n; i++) {
		const struct lk__lease *l = locks[i]->lease;

		c->renewals += l->renewals;
		c->failures += l->failures;
		c->late += l->late;
	}
	pthread_mutex_unlock(&e->mu);
}

static double thread_cpu_ns(void)
{
	return (double)bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static int write_rec(int fd, const uint8_t *rec)
{
	ssize_t n = pwrite(fd, rec, RECORD_SIZE, 0);

	if (n == RECORD_SIZE)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/*
 * CPU time of one pwrite(2) of a 256-byte record, as a renewal does it: the
 * files are written round-robin in batches with a pause between batches, so
 * that every write finds its file last written a few clock ticks earlier.
 * The per-write figure is a batch's CPU time over its writes (reading the
 * CPU clock costs as much as a write); the result is the median of batches.
 */
static int pwrite_baseline(const char *dir, int batches, struct renew_res *res)
{
	static const uint8_t rec[RECORD_SIZE] = {1};
	double *v = calloc((size_t)batches, sizeof(*v)), t;
	int fds[BASE_FILES], nfd = 0, r = 0;
	char path[PATH_MAX];

	if (!v)
		return -ENOMEM;
	if (mkdir(dir, 0700) < 0) {
		r = -errno;
		goto out;
	}
	for (; nfd < BASE_FILES; nfd++) {
		snprintf(path, sizeof(path), "%s/r%03d", dir, nfd);
		fds[nfd] = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fds[nfd] < 0) {
			r = -errno;
			goto out;
		}
		r = write_rec(fds[nfd], rec);
		if (r < 0) {
			nfd++;
			goto out;
		}
	}
	bench_sleep_ns(20000000);
	for (int b = 0; b < batches; b++) {
		t = thread_cpu_ns();
		for (int i = 0; i < nfd && r == 0; i++)
			r = write_rec(fds[i], rec);
		v[b] = (thread_cpu_ns() - t) / nfd;
		if (r < 0)
			goto out;
		bench_sleep_ns(10000000);
	}
	res->pwrite_ns = bench_median(v, (size_t)batches);
	for (int b = 0; b < batches; b++) {
		t = thread_cpu_ns();
		for (int i = 0; i < nfd && r == 0; i++)
			r = write_rec(fds[0], rec);
		v[b] = (thread_cpu_ns() - t) / nfd;
		if (r < 0)
			goto out;
	}
	res->pwrite_tight_ns = bench_median(v, (size_t)batches);
out:
	for (int i = 0; i < nfd; i++)
		close(fds[i]);
	bench_rm_tree(dir);
	free(v);
	return r;
}

static void on_lost_count(struct lk_lock *lk, int reason, void *userdata)
{
	atomic_fetch_add((atomic_int *)userdata, 1);
}

static double rusage_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void __attribute__((format(printf, 3, 4)))
renew_err(struct renew_res *res, int r, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(res->err, sizeof(res->err), fmt, ap);
	va_end(ap);
	len = strlen(res->err);
	if (r && len < sizeof(res->err))
		snprintf(res->err + len, sizeof(res->err) - len, ": %s", strerror(-r));
	res->status = r ? r : -EIO;
}

/* The body of a measurement-1 child. Fills res; the caller exits. */
static void renew_child(const struct cfg *c, const char *dir, int uring, int n_req,
                        struct renew_res *res)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock **locks;
	struct counters c0, c1;
	struct rusage ru0, ru1;
	struct rlimit rl;
	char store[512], base[520], name[32];
	int64_t t0, cpu0, cpu1, w0, w1;
	int n = n_req, r, fds1 = 0;
	atomic_int lost_cb = 0;

	if (uring)
		unsetenv("LOCKKIT_NO_URING");
	else
		setenv("LOCKKIT_NO_URING", "1", 1);
	getrlimit(RLIMIT_NOFILE, &rl);
	res->fd_limit = (int)rl.rlim_cur;
	snprintf(store, sizeof(store), "%s/renew-%s-%d", dir, uring ? "uring" : "thread", n_req);
	snprintf(base, sizeof(base), "%s.pw", store);

	r = pwrite_baseline(base, c->quick ? 20 : 40, res);
	if (r < 0) {
		renew_err(res, r, "pwrite baseline in %s", base);
		return;
	}
	locks = calloc((size_t)n, sizeof(*locks));
	if (!locks) {
		renew_err(res, -ENOMEM, "allocating");
		return;
	}
	r = lk_store_open(store, NULL, &st);
	if (r < 0) {
		renew_err(res, r, "lk_store_open %s", store);
		goto out;
	}
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = 10000;
	o.owner = "bench_lease";
	o.on_lost = on_lost_count;
	o.userdata = &lost_cb;

	t0 = bench_now_ns();
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "lease-%05d", i);
		r = lk_lock_open(st, name, &o, &locks[i]);
		if (r < 0) {
			renew_err(res, r, "lk_lock_open %s: %s", name, lk_store_errmsg(st));
			n = i;
			goto out;
		}
		r = lk_lock_acquire(locks[i], 0);
		if (r < 0) {
			renew_err(res, r, "acquiring lease %d of %d: %s", i + 1, n,
			          lk_lock_errmsg(locks[i]));
			lk_lock_close(locks[i]);
			n = i;
			goto out;
		}
		/*
		 * Every held lease keeps descriptors open. Learn how many from
		 * the second one (the first also starts the engine) and hold
		 * only as many as the descriptor limit allows.
		 */
		if (i == 0) {
			fds1 = count_fds();
		} else if (i == 1) {
			int per = count_fds() - fds1, fit;

			res->fds_per_lease = per;
			if (per > 0) {
				fit = 2 + (res->fd_limit - fds1 - per - FD_RESERVE) / per;
				if (fit < n)
					n = fit;
			}
		}
	}
	res->acquire_s = (double)(bench_now_ns() - t0) / 1e9;
	res->n = n;
	snprintf(res->engine, sizeof(res->engine), "%s", lk_store_engine(st));

	bench_sleep_ns(100000000);
	if (c->verbose)
		fprintf(stderr, "bench_lease: pid %d: %d leases held, window of %.1f s starts\n",
		        (int)getpid(), n, c->window_s);
	sum_counters(st, locks, n, &c0);
	getrusage(RUSAGE_SELF, &ru0);
	cpu0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	w0 = bench_now_ns();
	bench_sleep_ns((int64_t)(c->window_s * 1e9));
	w1 = bench_now_ns();
	cpu1 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	getrusage(RUSAGE_SELF, &ru1);
	sum_counters(st, locks, n, &c1);
	if (c->verbose)
		fprintf(stderr, "bench_lease: pid %d: window ends\n", (int)getpid());

	res->window_s = (double)(w1 - w0) / 1e9;
	res->cpu_s = (double)(cpu1 - cpu0) / 1e9;
	res->user_s = rusage_s(&ru1.ru_utime) - rusage_s(&ru0.ru_utime);
	res->sys_s = rusage_s(&ru1.ru_stime) - rusage_s(&ru0.ru_stime);
	res->renewals = c1.renewals - c0.renewals;
	res->failures = c1.failures - c0.failures;
	res->late = c1.late;
	res->min_left_ms = INT64_MAX;
	for (int i = 0; i < n; i++) {
		int64_t left = (int64_t)lk_lock_remaining_ms(locks[i]);

		if (lk_lock_check(locks[i]) < 0)
			res->lost_check++;
		if (left < res->min_left_ms)
			res->min_left_ms = left;
	}
	res->status = 0;
out:
	t0 = bench_now_ns();
	for (int i = 0; i < n; i++)
		lk_lock_close(locks[i]);
	lk_store_close(st);
	res->close_s = (double)(bench_now_ns() - t0) / 1e9;
	res->lost_cb = atomic_load(&lost_cb);
	free(locks);
}

static int run_renew(struct bench *b, int uring, int n_req)
{
	const struct cfg *c = &b->c;
	struct renew_res *res = shared_alloc(sizeof(*res));
	char store[512], label[64];
	int status = 0, r;
	pid_t pid;

	if (!res)
		return bench_fail(-errno, "mmap");
	res->status = -ECHILD;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = bench_fail(-errno, "fork");
		goto out;
	}
	if (pid == 0) {
		child_setup();
		renew_child(c, b->dir, uring, n_req, res);
		_exit(0);
	}
	/* 10,000 synced claims take a while on a slow disk; a hang does not. */
	r = reap(pid,
	         (int64_t)n_req * 50000000 + (int64_t)(c->window_s * 1e9) + 120 * BENCH_NS_PER_S,
	         &status);
	snprintf(store, sizeof(store), "%s/renew-%s-%d", b->dir, uring ? "uring" : "thread", n_req);
	bench_rm_tree(store);
	if (r < 0) {
		r = bench_fail(r, "the %d-lease run did not finish", n_req);
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		r = bench_fail(0, "the %d-lease run died (status 0x%x)", n_req, status);
		goto out;
	}
	if (res->status < 0) {
		r = bench_fail(0, "%d leases, %s engine: %s", n_req, uring ? "io_uring" : "thread",
		               res->err);
		goto out;
	}
	if (strcmp(res->engine, uring ? "io_uring" : "thread"))
		bench_note(&b->t, "1: asked for the %s engine, the store chose %s",
		           uring ? "io_uring" : "thread", res->engine);
	if (res->n < n_req)
		bench_note(&b->t,
		           "1: %d leases do not fit in %d descriptors (%d per held lease): held %d",
		           n_req, res->fd_limit, res->fds_per_lease, res->n);

	snprintf(label, sizeof(label), "1. %s N=%d", res->engine, res->n);
	bench_set_row(bench_add_row(&b->t, "%s: acquire all", label), U_S, res->acquire_s, -1,
	              BENCH_GOAL_NONE, 0);
	/* The CPU goal is stated for 10,000 leases; smaller counts are shown. */
	bench_set_row(bench_add_row(&b->t, "   CPU, %% of one core"), U_PCT,
	              100.0 * res->cpu_s / res->window_s, -1,
	              n_req >= 10000 ? BENCH_GOAL_ABS : BENCH_GOAL_NONE, 10.0);
	if (res->renewals)
		bench_set_row(bench_add_row(&b->t, "   CPU per renewal vs pwrite"), U_US,
		              res->cpu_s * 1e6 / (double)res->renewals, res->pwrite_ns / 1e3,
		              BENCH_GOAL_RATIO, 1.5);
	else
		bench_note(&b->t, "1: %s N=%d: no renewal in the window", res->engine, res->n);
	bench_set_row(bench_add_row(&b->t, "   late renewals"), U_COUNT, (double)res->late, -1,
	              BENCH_GOAL_ABS, 0);
	/* lost: lk_lock_check() failed at the end, or on_lost ran at any time */
	bench_set_row(bench_add_row(&b->t, "   leases lost"), U_COUNT,
	              (double)(res->lost_check > res->lost_cb ? res->lost_check : res->lost_cb), -1,
	              BENCH_GOAL_ABS, 0);
	bench_note(
		&b->t,
		"1: %s N=%d: %.3f ms/acquire; window %.2f s: %llu renewals (%.0f/s), %llu failed, "
		"user %.3f s sys %.3f s; late %llu, lost %d+%d; least time left %lld ms; "
		"pwrite %.2f us (tight loop on one file %.2f us); close all %.2f s",
		res->engine, res->n, res->acquire_s * 1e3 / res->n, res->window_s,
		(unsigned long long)res->renewals, (double)res->renewals / res->window_s,
		(unsigned long long)res->failures, res->user_s, res->sys_s,
		(unsigned long long)res->late, res->lost_check, res->lost_cb,
		(long long)res->min_left_ms, res->pwrite_ns / 1e3, res->pwrite_tight_ns / 1e3,
		res->close_s);
	r = 0;
out:
	munmap(res, sizeof(*res));
	return r;
}

static int bench_renew(struct bench *b)
{
	static const int counts_full[] = {100, 1000, 10000};
	static const int counts_quick[] = {100, 1000};
	const int *counts = b->c.quick ? counts_quick : counts_full;
	int ncounts = b->c.quick ? 2 : 3, r;

	for (int e = 0; e < 2; e++) {
		int last = 0;

		if (!(b->c.engines & (1 << e)))
			continue;
		for (int i = 0; i < ncounts; i++) {
			int n = counts[i] < b->c.max_leases ? counts[i] : b->c.max_leases;

			if (n == last)
				continue;
			last = n;
			fprintf(stderr, "bench_lease: 1. %s engine, %d leases\n",
			        e == 0 ? "io_uring" : "thread", n);
			r = run_renew(b, e == 0, n);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * 2. Failover after SIGKILL
 */

struct fo_shm {
	_Atomic uint32_t holder_ready;
	_Atomic uint32_t waiter_ready;
	atomic_int failed;
	uint64_t holder_token;
	uint64_t waiter_token;
	int64_t t_acq;
	char err[ERR_LEN];
};

static void __attribute__((format(printf, 3, 4))) shm_err(char *buf, int r, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(buf, ERR_LEN, fmt, ap);
	va_end(ap);
	len = strlen(buf);
	if (r && len < ERR_LEN)
		snprintf(buf + len, ERR_LEN - len, ": %s", strerror(-r));
}

static int open_lease(const char *store, const char *name, uint64_t ttl_ms,
                      struct lk_store **ret_st, struct lk_lock **ret_lk, char *err)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	int r;

	r = lk_store_open(store, NULL, ret_st);
	if (r < 0) {
		shm_err(err, r, "lk_store_open %s", store);
		return r;
	}
	o.mode = LK_MODE_LEASE;
	o.ttl_ms = ttl_ms;
	o.owner = "bench_lease";
	r = lk_lock_open(*ret_st, name, &o, ret_lk);
	if (r < 0) {
		shm_err(err, r, "lk_lock_open %s: %s", name, lk_store_errmsg(*ret_st));
		lk_store_close(*ret_st);
	}
	return r;
}

static void fo_holder(const char *store, const char *name, uint64_t ttl_ms, int foreign,
                      struct fo_shm *s)
{
	struct lk_store *st;
	struct lk_lock *lk;
	int r;

	if (open_lease(store, name, ttl_ms, &st, &lk, s->err) < 0)
		goto failed;
	/*
	 * Make the record look as if it came from another boot: observers on
	 * this host then cannot tell that the process is gone and must wait
	 * out the TTL, as they would for a holder on another machine.
	 */
	if (foreign)
		for (size_t i = 0; i < sizeof(st->boot_id); i++)
			st->boot_id[i] ^= 0x5a;
	r = lk_lock_acquire(lk, 0);
	if (r < 0) {
		shm_err(s->err, r, "holder: lk_lock_acquire: %s", lk_lock_errmsg(lk));
		goto failed;
	}
	s->holder_token = lk_lock_token(lk);
	word_set(&s->holder_ready, 1);
	for (;;)
		pause();
failed:
	atomic_store(&s->failed, 1);
	word_set(&s->holder_ready, 1);
	_exit(1);
}

static void fo_waiter(const char *store, const char *name, uint64_t ttl_ms, struct fo_shm *s)
{
	struct lk_store *st;
	struct lk_lock *lk;
	int r;

	if (open_lease(store, name, ttl_ms, &st, &lk, s->err) < 0)
		goto failed;
	word_set(&s->waiter_ready, 1);
	r = lk_lock_acquire(lk, -1);
	s->t_acq = bench_now_ns();
	if (r < 0) {
		shm_err(s->err, r, "waiter: lk_lock_acquire: %s", lk_lock_errmsg(lk));
		goto failed;
	}
	s->waiter_token = lk_lock_token(lk);
	lk_lock_close(lk);
	lk_store_close(st);
	_exit(0);
failed:
	atomic_store(&s->failed, 1);
	word_set(&s->waiter_ready, 1);
	_exit(1);
}

/* One failover: kill -> acquired, in ns. */
static int failover_once(struct bench *b, const char *store, const char *name, int foreign,
                         double *ret_ns)
{
	uint64_t ttl_ms = b->c.fo_ttl_ms;
	struct fo_shm *s = shared_alloc(sizeof(*s));
	pid_t holder = -1, waiter = -1;
	int64_t t_kill;
	int r, status;

	if (!s)
		return bench_fail(-errno, "mmap");
	fflush(NULL);
	holder = fork();
	if (holder < 0) {
		r = bench_fail(-errno, "fork");
		goto out;
	}
	if (holder == 0) {
		child_setup();
		fo_holder(store, name, ttl_ms, foreign, s);
	}
	r = word_wait(&s->holder_ready, 1, &s->failed, STALL_NS);
	if (r < 0 || atomic_load(&s->failed)) {
		r = bench_fail(r, "failover holder: %s", s->err[0] ? s->err : "did not start");
		goto out;
	}
	waiter = fork();
	if (waiter < 0) {
		r = bench_fail(-errno, "fork");
		goto out;
	}
	if (waiter == 0) {
		child_setup();
		fo_waiter(store, name, ttl_ms, s);
	}
	r = word_wait(&s->waiter_ready, 1, &s->failed, STALL_NS);
	if (r == 0)
		r = wait_in_poll(waiter, &s->failed);
	if (r < 0 || atomic_load(&s->failed)) {
		r = bench_fail(r, "failover waiter: %s", s->err[0] ? s->err : "did not block");
		goto out;
	}
	/* Kill at a random point of the renewal cycle. */
	bench_sleep_ns((int64_t)(drand48() * (double)ttl_ms / 4 * 1e6));
	t_kill = bench_now_ns();
	kill(holder, SIGKILL);
	/*
	 * Reap at once, as init would: the fast path asks kill(pid, 0), and a
	 * zombie still answers.
	 */
	waitpid(holder, NULL, 0);
	holder = -1;
	r = reap(waiter, (int64_t)ttl_ms * 3 * 1000000 + STALL_NS, &status);
	waiter = -1;
	if (r < 0) {
		r = bench_fail(r, "failover waiter did not acquire");
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || atomic_load(&s->failed)) {
		r = bench_fail(0, "failover waiter failed (status 0x%x): %s", status, s->err);
		goto out;
	}
	if (s->waiter_token <= s->holder_token) {
		r = bench_fail(0, "failover: token %llu after %llu",
		               (unsigned long long)s->waiter_token,
		               (unsigned long long)s->holder_token);
		goto out;
	}
	*ret_ns = (double)(s->t_acq - t_kill);
	r = 0;
out:
	if (holder > 0) {
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
	}
	if (waiter > 0) {
		kill(waiter, SIGKILL);
		waitpid(waiter, NULL, 0);
	}
	munmap(s, sizeof(*s));
	return r;
}

static int bench_failover(struct bench *b)
{
	const int runs = b->c.runs;
	const double ttl_ns = (double)b->c.fo_ttl_ms * 1e6;
	/* lease.c's defaults: rho 1%, a poll every T/10 but at most 1 s */
	const double rho = 0.01, poll_ns = ttl_ns / 10 < 1e9 ? ttl_ns / 10 : 1e9;
	double *v = calloc((size_t)runs, sizeof(*v));
	char store[512], name[32];
	int r = 0;

	if (!v)
		return bench_fail(-ENOMEM, "allocating");
	snprintf(store, sizeof(store), "%s/failover", b->dir);
	for (int foreign = 1; foreign >= 0 && r == 0; foreign--) {
		double med, mx;

		for (int i = 0; i < runs && r == 0; i++) {
			fprintf(stderr, "bench_lease: 2. failover %s, run %d/%d\n",
			        foreign ? "without fast path" : "same-host fast path", i + 1, runs);
			snprintf(name, sizeof(name), "fo-%s-%d", foreign ? "far" : "near", i);
			r = failover_once(b, store, name, foreign, &v[i]);
		}
		if (r < 0)
			break;
		mx = bench_max_of(v, (size_t)runs);
		med = bench_median(v, (size_t)runs);
		if (foreign) {
			bench_set_row(bench_add_row(&b->t, "2. failover, no fast path: median"),
			              U_S, med / 1e9, ttl_ns / 1e9, BENCH_GOAL_RATIO, 1.15);
			bench_set_row(bench_add_row(&b->t, "   failover, no fast path: max"), U_S,
			              mx / 1e9, ttl_ns / 1e9, BENCH_GOAL_RATIO,
			              1 + rho + 2 * poll_ns / ttl_ns);
		} else {
			/* At most one poll plus a claim: two polls is generous. */
			bench_set_row(bench_add_row(&b->t, "   failover, fast path: median"), U_S,
			              med / 1e9, ttl_ns / 1e9, BENCH_GOAL_NONE, 0);
			bench_set_row(bench_add_row(&b->t, "   failover, fast path: max"), U_S,
			              mx / 1e9, ttl_ns / 1e9, BENCH_GOAL_RATIO,
			              2 * poll_ns / ttl_ns);
		}
		bench_note(&b->t,
		           "2: %s: %d runs, TTL %.2f s, baseline column is the TTL, ratio = "
		           "failover/TTL",
		           foreign ? "no fast path" : "fast path", runs, ttl_ns / 1e9);
	}
	bench_rm_tree(store);
	free(v);
	return r;
}

/* ------------------------------------------------------------------------
 * 3. Release to a blocked waiter
 */

struct ho_shm {
	_Atomic uint32_t started;   /* process 0 holds the lease */
	_Atomic uint32_t announced; /* round i's waiter is about to acquire: i + 1 */
	_Atomic uint32_t acquired;  /* round i's waiter holds the lease: i + 1 */
	atomic_int failed;
	pid_t pid[2];
	char err[ERR_LEN];
	int64_t t_rel[MAX_HANDOFFS];
	int64_t t_acq[MAX_HANDOFFS];
	int64_t floor_ns[MAX_HANDOFFS]; /* the baseline, sampled in the same round */
	uint64_t token[MAX_HANDOFFS + 1];
};

/*
 * The least a handoff costs here: a claim writes a 256-byte record to a new
 * file, syncs it and links it into place. One sample, in ns, in directory dir
 * (which exists); what it leaves behind is removed untimed.
 */
static int claim_sample(const char *dir, int i, int64_t *ret_ns)
{
	static const uint8_t rec[RECORD_SIZE] = {2};
	char tmp[PATH_MAX], gen[PATH_MAX];
	int64_t t0 = bench_now_ns();
	int r = 0, fd;

	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	snprintf(gen, sizeof(gen), "%s/g.%d", dir, i);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || pwrite(fd, rec, sizeof(rec), 0) != sizeof(rec) || fsync(fd) < 0 ||
	    link(tmp, gen) < 0 || unlink(tmp) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	*ret_ns = bench_now_ns() - t0;
	unlink(gen);
	return r;
}

/*
 * Process k of two. Process 0 takes the lease first; in round i the holder
 * is process i % 2. The waiter announces itself and calls lk_lock_acquire(-1);
 * the holder waits until /proc shows it asleep, notes the time and releases;
 * the waiter notes the time its acquire returns and holds for round i + 1.
 * The old holder waits for that before it becomes the next waiter, so it can
 * never take the lease back first. While the waiter sleeps, the holder also
 * takes one sample of the baseline, so that both see the same disk weather.
 */
static void ho_proc(const char *store, int k, int rounds, struct ho_shm *s)
{
	struct lk_store *st;
	struct lk_lock *lk;
	char floor_dir[600];
	int r;

	snprintf(floor_dir, sizeof(floor_dir), "%s.floor%d", store, k);
	if (mkdir(floor_dir, 0700) < 0) {
		shm_err(s->err, -errno, "mkdir %s", floor_dir);
		goto failed;
	}
	if (open_lease(store, "handoff", 10000, &st, &lk, s->err) < 0)
		goto failed;
	if (k == 0) {
		r = lk_lock_acquire(lk, -1);
		if (r < 0) {
			shm_err(s->err, r, "first lk_lock_acquire: %s", lk_lock_errmsg(lk));
			goto failed;
		}
		s->token[0] = lk_lock_token(lk);
		word_set(&s->started, 1);
	}
	for (int i = 0; i < rounds; i++) {
		if (i % 2 == k) {
			r = word_wait(&s->announced, (uint32_t)i + 1, &s->failed, STALL_NS);
			if (r == 0)
				r = wait_in_poll(s->pid[1 - k], &s->failed);
			if (r < 0) {
				shm_err(s->err, r, "round %d: waiter did not block", i);
				goto failed;
			}
			r = claim_sample(floor_dir, i, &s->floor_ns[i]);
			if (r < 0) {
				shm_err(s->err, r, "baseline in %s", floor_dir);
				goto failed;
			}
			s->t_rel[i] = bench_now_ns();
			r = lk_lock_release(lk);
			if (r < 0) {
				shm_err(s->err, r, "lk_lock_release: %s", lk_lock_errmsg(lk));
				goto failed;
			}
			r = word_wait(&s->acquired, (uint32_t)i + 1, &s->failed, STALL_NS);
			if (r < 0) {
				shm_err(s->err, r, "round %d: waiter did not acquire", i);
				goto failed;
			}
		} else {
			if (i == 0 && word_wait(&s->started, 1, &s->failed, STALL_NS) < 0) {
				shm_err(s->err, 0, "the first holder did not start");
				goto failed;
			}
			word_set(&s->announced, (uint32_t)i + 1);
			r = lk_lock_acquire(lk, -1);
			s->t_acq[i] = bench_now_ns();
			if (r < 0) {
				shm_err(s->err, r, "round %d: lk_lock_acquire: %s", i,
				        lk_lock_errmsg(lk));
				goto failed;
			}
			s->token[i + 1] = lk_lock_token(lk);
			word_set(&s->acquired, (uint32_t)i + 1);
		}
	}
	lk_lock_close(lk);
	lk_store_close(st);
	_exit(0);
failed:
	atomic_store(&s->failed, 1);
	word_set(&s->started, UINT32_MAX);
	word_set(&s->announced, UINT32_MAX);
	word_set(&s->acquired, UINT32_MAX);
	_exit(1);
}

static int bench_handoff(struct bench *b)
{
	const int rounds = b->c.handoffs;
	struct ho_shm *s = shared_alloc(sizeof(*s));
	char store[512], floor_dir[600];
	double *v = calloc((size_t)rounds, sizeof(*v)), *fl = calloc((size_t)rounds, sizeof(*fl));
	double med, p99, fl_med, fl_p99;
	pid_t pid[2] = {-1, -1};
	int r = 0, status;

	if (!s || !v || !fl) {
		r = bench_fail(-ENOMEM, "allocating");
		goto out;
	}
	snprintf(store, sizeof(store), "%s/handoff", b->dir);
	fprintf(stderr, "bench_lease: 3. %d handoffs\n", rounds);
	fflush(NULL);
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		if (pid[k] < 0) {
			r = bench_fail(-errno, "fork");
			goto out;
		}
		if (pid[k] == 0) {
			child_setup();
			/* the peer's pid, for /proc: wait until the parent wrote it */
			while (!atomic_load(&s->failed) && (!s->pid[0] || !s->pid[1]))
				bench_sleep_ns(100000);
			ho_proc(store, k, rounds, s);
		}
	}
	s->pid[0] = pid[0];
	atomic_thread_fence(memory_order_seq_cst);
	s->pid[1] = pid[1];
	for (int k = 0; k < 2; k++) {
		int rr = reap(pid[k], (int64_t)rounds * BENCH_NS_PER_S + 2 * STALL_NS, &status);

		pid[k] = -1;
		if (rr < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			atomic_store(&s->failed, 1);
			if (r == 0)
				r = bench_fail(rr, "handoff process %d failed (status 0x%x): %s", k,
				               rr < 0 ? 0 : status, s->err);
		}
	}
	if (r < 0)
		goto out;
	for (int i = 0; i < rounds; i++) {
		if (s->token[i + 1] <= s->token[i]) {
			r = bench_fail(0, "handoff %d: token %llu after %llu", i,
			               (unsigned long long)s->token[i + 1],
			               (unsigned long long)s->token[i]);
			goto out;
		}
		v[i] = (double)(s->t_acq[i] - s->t_rel[i]);
		fl[i] = (double)s->floor_ns[i];
	}
	med = bench_median(v, (size_t)rounds);
	p99 = bench_percentile(v, (size_t)rounds, 99);
	fl_med = bench_median(fl, (size_t)rounds);
	fl_p99 = bench_percentile(fl, (size_t)rounds, 99);
	bench_set_row(bench_add_row(&b->t, "3. release -> waiter: median"), U_US, med / 1e3,
	              fl_med / 1e3, BENCH_GOAL_NONE, 0);
	bench_set_row(bench_add_row(&b->t, "   release -> waiter: p99"), U_US, p99 / 1e3,
	              fl_p99 / 1e3, BENCH_GOAL_NONE, 0);
	bench_note(&b->t,
	           "3: %d handoffs: p90 %.0f us, p95 %.0f us, max %.0f us; baseline: create + "
	           "pwrite + fsync + link of one 256-byte record, sampled in every round",
	           rounds, bench_percentile(v, (size_t)rounds, 90) / 1e3,
	           bench_percentile(v, (size_t)rounds, 95) / 1e3,
	           bench_max_of(v, (size_t)rounds) / 1e3);
out:
	for (int k = 0; k < 2; k++) {
		if (pid[k] > 0) {
			kill(pid[k], SIGKILL);
			waitpid(pid[k], NULL, 0);
		}
	}
	bench_rm_tree(store);
	for (int k = 0; k < 2; k++) {
		snprintf(floor_dir, sizeof(floor_dir), "%s.floor%d", store, k);
		bench_rm_tree(floor_dir);
	}
	if (s)
		munmap(s, sizeof(*s));
	free(v);
	free(fl);
	return r;
}

/* ------------------------------------------------------------------------
 * Output
 */

static void fmt_val(char *buf, size_t len, int u, double v)
{
	switch (u) {
	case U_S:
		snprintf(buf, len, "%.3f s", v);
		break;
	case U_US:
		snprintf(buf, len, "%.2f us", v);
		break;
	case U_PCT:
		snprintf(buf, len, "%.3f %%", v);
		break;
	default:
		snprintf(buf, len, "%.0f", v);
	}
}

static void fmt_goal(char *buf, size_t len, const struct bench_row *r)
{
	if (r->goal == BENCH_GOAL_RATIO)
		snprintf(buf, len, "<= %.2f", r->goal_val);
	else if (r->goal_val == 0)
		snprintf(buf, len, "= 0");
	else
		snprintf(buf, len, "< %g%s", r->goal_val, r->unit == U_PCT ? " %" : "");
}

static const struct bench_layout layout = {
	.value_head = "value",
	.name_w = 40,
	.value_w = 12,
	.ratio_w = 7,
	.goal_w = 10,
	.ratio_digits = 3,
	.missed = "MISSED",
	.fmt_val = fmt_val,
	.fmt_goal = fmt_goal,
};

/* ------------------------------------------------------------------------
 * Setup
 */

static int parse_int(const char *s, int min, int max, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

static int parse_secs(const char *s, double min, double max, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct cfg *c)
{
	int max_set = 0, win_set = 0, runs_set = 0, ho_set = 0;
	double d;

	memset(c, 0, sizeof(*c));
	c->engines = 3;
	c->fo_ttl_ms = 2000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			exit(0);
		}
		if (!strcmp(a, "--quick")) {
			c->quick = 1;
			continue;
		}
		if (!strcmp(a, "--verbose")) {
			c->verbose = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr,
			        "bench_lease: unknown argument or missing value: '%s'\n\n%s", a,
			        usage);
			return -EINVAL;
		}
		i++;
		if (!strcmp(a, "--max-leases")) {
			bad = parse_int(v, 1, 1000000, &c->max_leases);
			max_set = 1;
		} else if (!strcmp(a, "--window")) {
			bad = parse_secs(v, 0.1, 3600, &c->window_s);
			win_set = 1;
		} else if (!strcmp(a, "--runs")) {
			bad = parse_int(v, 1, MAX_RUNS, &c->runs);
			runs_set = 1;
		} else if (!strcmp(a, "--handoffs")) {
			bad = parse_int(v, 1, MAX_HANDOFFS, &c->handoffs);
			ho_set = 1;
		} else if (!strcmp(a, "--failover-ttl")) {
			bad = parse_secs(v, 1, 3600, &d);
			c->fo_ttl_ms = (uint64_t)(d * 1000 + 0.5);
		} else if (!strcmp(a, "--engine")) {
			if (!strcmp(v, "io_uring"))
				c->engines = 1;
			else if (!strcmp(v, "thread"))
				c->engines = 2;
			else
				bad = 1;
		} else if (!strcmp(a, "--only")) {
			bad = parse_int(v, 1, 3, &c->only);
		} else {
			fprintf(stderr, "bench_lease: unknown argument '%s'\n\n%s", a, usage);
			return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, "bench_lease: bad value for %s: '%s'\n", a, v);
			return -EINVAL;
		}
	}
	if (!max_set)
		c->max_leases = c->quick ? 1000 : 10000;
	if (!win_set)
		c->window_s = c->quick ? 2.5 : 5;
	if (!runs_set)
		c->runs = c->quick ? 2 : 5;
	if (!ho_set)
		c->handoffs = c->quick ? 50 : 200;
	return 0;
}

/* Each held lease keeps descriptors open: allow as many as the hard limit. */
static void raise_fd_limit(struct bench *b)
{
	struct utsname un;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	if (uname(&un) < 0)
		snprintf(un.release, sizeof(un.release), "?");
	bench_note(&b->t, "descriptor limit %llu; default engine %s; kernel %s",
	           (unsigned long long)rl.rlim_cur, lk_engine_default(), un.release);
}

int main(int argc, char **argv)
{
	struct bench *b;
	const char *tmp = getenv("TMPDIR");
	int r = 0;

	b = calloc(1, sizeof(*b));
	if (!b)
		return EXIT_FAIL;
	bench_table_init(&b->t, MAX_ROWS, MAX_NOTES, NOTE_LEN);
	if (parse_args(argc, argv, &b->c) < 0) {
		free(b);
		return EXIT_USAGE;
	}
	srand48(bench_now_ns() ^ getpid());
	raise_fd_limit(b);
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (strlen(tmp) > sizeof(b->dir) - 32) {
		fprintf(stderr, "bench_lease: TMPDIR is too long: %s\n", tmp);
		free(b);
		return EXIT_FAIL;
	}
	snprintf(b->dir, sizeof(b->dir), "%s/lk-bench-lease-XXXXXX", tmp);
	if (!mkdtemp(b->dir)) {
		fprintf(stderr, "bench_lease: mkdtemp %s: %s\n", b->dir, strerror(errno));
		free(b);
		return EXIT_FAIL;
	}

	for (int m = 0; m < 3; m++) {
		static int (*const run[])(struct bench *) = {
			bench_renew,
			bench_failover,
			bench_handoff,
		};

		if (b->c.only && b->c.only != m + 1)
			continue;
		if (run[m](b) < 0)
			r = -EIO; /* go on: the other measurements may still run */
	}
	bench_print_table(&layout, &b->t);
	bench_rm_tree(b->dir);
	free(b);
	return r < 0 ? EXIT_FAIL : 0;
}
