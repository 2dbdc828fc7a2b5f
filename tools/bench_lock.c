// SPDX-License-Identifier: MIT
/*
 * bench_lock: what lockkit costs over doing the same thing by hand, measured
 * against baselines taken in the same run on the same machine, so that the
 * ratios hold even where the absolute figures (a shared, noisy host) do not.
 *
 *  1. An uncontended acquire and release through the library, against the
 *     least a hand-written lock with a persistent counter needs on an open
 *     descriptor: F_OFD_SETLK on byte 0, an 8-byte pwrite of the counter,
 *     F_OFD_SETLK to unlock. The library does the same job (lock, bump the
 *     token kept in the file, unlock) plus the holder's identity and a
 *     checksummed record, so the raw sequence is the floor it competes with.
 *     A second, informational row sets it against the bare lock and unlock
 *     alone: the library writes its record through a mapping instead of a
 *     pwrite, so that row is where its own user-space work shows.
 *  2. Handing the lock to a waiter blocked in another process: the holder
 *     notes the time just before it releases, the waiter notes when its
 *     blocking acquire returns. The baseline is the same ping-pong with a bare
 *     F_OFD_SETLKW waiter, which is what the library sleeps in; anything above
 *     it is the library's own work on the wake-up path.
 *  3. A holder killed with SIGKILL until a blocked waiter holds the lock. The
 *     kernel frees an OFD lock when its holder dies, so there is nothing else
 *     to compare with; the goal is an absolute bound.
 *  4. "lockctl run NAME -- true" against util-linux "flock FILE true", whole
 *     commands spawned and reaped from here: the same promise to a shell
 *     script, except that lockctl also kills and reaps everything the command
 *     left behind before it releases. Both run in a session of their own, so
 *     neither hands a terminal around and the figures do not depend on where
 *     the benchmark was started.
 *
 * Library and baseline runs alternate batch by batch so that drift (frequency
 * scaling, a neighbour's build) falls on both sides, and every figure is a
 * median. Whether a waiter is really asleep in the kernel is read from
 * /proc/locks (blocked requests are listed under their blocker) rather than
 * guessed with a sleep. The program exits 0 when a goal is missed: it
 * measures, it does not judge; it exits 1 when anything fails to run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "lockkit.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 64

/* How long any wait for the other side may take before the run is failed. */
#define STALL_NS (10 * 1000000000LL)

static const char usage[] =
	"Usage: bench_lock [--quick] [--json] [--lockctl PATH]\n"
	"\n"
	"Measure lockkit against baselines taken in the same run.\n"
	"\n"
	"  --quick          few iterations (a smoke run of a few seconds)\n"
	"  --json           print the results as JSON instead of a table\n"
	"  --lockctl PATH   the lockctl binary (default: $LOCKCTL, else the\n"
	"                   lockctl next to this program)\n"
	"  --only N         run only measurement N (1-4), e.g. under a profiler\n"
	"\n"
	"Exit status: 0 when everything ran (goals missed or not), 1 when a\n"
	"measurement could not run, 64 usage error.\n";

struct params {
	int fast_batches;  /* 1: batches per side */
	long fast_iters;   /* 1: acquire+release pairs per batch */
	int pp_chunks;     /* 2: alternating library/raw chunks (even) */
	int pp_rounds;     /* 2: handoffs per chunk (even) */
	int kill_runs;     /* 3 */
	int cli_runs;      /* 4: runs per command */
};

static const struct params params_default = {
	.fast_batches = 15,
	.fast_iters = 100000,
	.pp_chunks = 20,
	.pp_rounds = 200,
	.kill_runs = 200,
	.cli_runs = 500,
};

static const struct params params_quick = {
	.fast_batches = 5,
	.fast_iters = 10000,
	.pp_chunks = 4,
	.pp_rounds = 50,
	.kill_runs = 20,
	.cli_runs = 20,
};

#define MAX_ROWS 8
#define MAX_NOTES 8
#define NOTE_LEN  256

struct bench {
	struct params p;
	const char *lockctl;
	char dir[64];        /* the temporary directory, removed at exit */
	char store[128];     /* dir/store: the lockkit store */
	struct lk_store *st;
	struct bench_table t;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

const char bench_name[] = "bench_lock";

/* Every figure here is a duration in nanoseconds: the unit is not used. */
static void add_row(struct bench *b, const char *name, double lk_ns, double base_ns,
                    enum bench_goal goal, double goal_val)
{
	bench_set_row(bench_add_row(&b->t, "%s", name), 0, lk_ns, base_ns, goal, goal_val);
}

/*
 * The futex words live in a MAP_SHARED mapping used by two processes, so the
 * operations must not be the process-private kind.
 */
static void futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wait until *word == want, *failed is set (-ECANCELED) or the run stalls. */
static int futex_wait_for(_Atomic uint32_t *word, uint32_t want, atomic_int *failed)
{
	int64_t deadline = bench_now_ns() + STALL_NS;
	struct timespec ts = { 0, 50 * 1000000 };
	uint32_t cur;

	while ((cur = atomic_load(word)) != want) {
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
 * 1 if /proc/locks lists a blocked request whose line contains needle (the
 * ":INODE " of the file's device:inode field), 0 if not.
 */
static int locks_has_waiter(const char *needle)
{
	char buf[8192];
	size_t have = 0;
	int fd, found = 0;

	fd = open("/proc/locks", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *line, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			found = -errno;
			break;
		}
		have += (size_t)n;
		buf[have] = 0;
		line = buf;
		while ((nl = strchr(line, '\n')) || (n == 0 && *line)) {
			if (nl)
				*nl = 0;
			/* "7: -> OFDLCK ADVISORY  WRITE -1 fe:00:1234 0 0" */
			if (strstr(line, "-> ") && strstr(line, needle))
				found = 1;
			line = nl ? nl + 1 : line + strlen(line);
		}
		if (n == 0 || found)
			break;
		have = strlen(line);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0; /* a line this long is not one of ours */
	}
	close(fd);
	return found;
}

/*
 * Wait until someone sleeps in F_OFD_SETLKW on the file at path, so that a
 * handoff measures a real wake-up and not a waiter that had not yet arrived.
 */
static int wait_for_waiter(const char *path, atomic_int *failed)
{
	int64_t deadline = bench_now_ns() + STALL_NS;
	char needle[48];
	struct stat s;
	int r;

	if (stat(path, &s) < 0)
		return -errno;
	snprintf(needle, sizeof(needle), ":%lu ", (unsigned long)s.st_ino);
	for (;;) {
		r = locks_has_waiter(needle);
		if (r != 0)
			return r < 0 ? r : 0;
		if (failed && atomic_load(failed))
			return -ECANCELED;
		if (bench_now_ns() > deadline)
			return -ETIMEDOUT;
		sched_yield();
	}
}

static int ofd(int fd, int cmd, short type)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 1,
		.l_pid = 0,
	};

	while (fcntl(fd, cmd, &fl) < 0) {
		if (errno != EINTR || cmd != F_OFD_SETLKW)
			return -errno;
	}
	return 0;
}

/* A plain file laid out like a lock file (one page), for the raw baselines. */
static int raw_file_create(const char *path)
{
	static const char page[4096];
	int fd, r = 0;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return bench_fail(-errno, "cannot create %s", path);
	if (pwrite(fd, page, sizeof(page), 0) != (ssize_t)sizeof(page))
		r = bench_fail(-EIO, "cannot write %s", path);
	close(fd);
	return r;
}

static void lock_path(const struct bench *b, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", b->store, name);
}

/* ------------------------------------------------------------------------
 * 1. Uncontended acquire + release
 */

static int fast_lib_batch(struct lk_lock *lk, long iters, double *ret_ns)
{
	int64_t t0 = bench_now_ns();
	int r;

	for (long i = 0; i < iters; i++) {
		r = lk_lock_acquire(lk, 0);
		if (r < 0)
			return bench_fail(r, "lk_lock_acquire: %s", lk_lock_errmsg(lk));
		r = lk_lock_release(lk);
		if (r < 0)
			return bench_fail(r, "lk_lock_release: %s", lk_lock_errmsg(lk));
	}
	*ret_ns = (double)(bench_now_ns() - t0) / (double)iters;
	return 0;
}

/* counter == NULL: the bare lock and unlock, the floor under both sides. */
static int fast_raw_batch(int fd, long iters, uint64_t *counter, double *ret_ns)
{
	int64_t t0 = bench_now_ns();
	int r;

	for (long i = 0; i < iters; i++) {
		r = ofd(fd, F_OFD_SETLK, F_WRLCK);
		if (r < 0)
			return bench_fail(r, "F_OFD_SETLK");
		if (counter) {
			(*counter)++;
			if (pwrite(fd, counter, sizeof(*counter), 512) != (ssize_t)sizeof(*counter))
				return bench_fail(-errno, "pwrite");
		}
		r = ofd(fd, F_OFD_SETLK, F_UNLCK);
		if (r < 0)
			return bench_fail(r, "F_OFD_SETLK unlock");
	}
	*ret_ns = (double)(bench_now_ns() - t0) / (double)iters;
	return 0;
}

enum { FAST_LIB, FAST_RAW, FAST_FLOOR, FAST_SIDES };

static int fast_batch(int side, struct lk_lock *lk, int fd, long iters, uint64_t *counter,
		      double *ret_ns)
{
	if (side == FAST_LIB)
		return fast_lib_batch(lk, iters, ret_ns);
	return fast_raw_batch(fd, iters, side == FAST_RAW ? counter : NULL, ret_ns);
}

static int bench_fast(struct bench *b)
{
	const int nb = b->p.fast_batches;
	const long iters = b->p.fast_iters;
	struct lk_lock *lk = NULL;
	double *v[FAST_SIDES] = { NULL }, med[FAST_SIDES], junk;
	uint64_t counter = 0;
	char path[256];
	int fd = -1, r;

	snprintf(path, sizeof(path), "%s/raw-fast", b->dir);
	r = raw_file_create(path);
	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return bench_fail(-errno, "open %s", path);
	r = lk_lock_open(b->st, "bench-fast", NULL, &lk);
	if (r < 0) {
		bench_fail(r, "lk_lock_open bench-fast: %s", lk_store_errmsg(b->st));
		goto out;
	}
	for (int s = 0; s < FAST_SIDES; s++) {
		v[s] = calloc((size_t)nb, sizeof(double));
		if (!v[s]) {
			r = bench_fail(-ENOMEM, "allocating");
			goto out;
		}
	}
	/* Warm up every path; the library's first acquisition also syncs. */
	for (int s = 0; s < FAST_SIDES && r == 0; s++)
		r = fast_batch(s, lk, fd, iters / 10 + 1, &counter, &junk);
	/* Rotate which side goes first, so that no side always follows another. */
	for (int i = 0; i < nb && r == 0; i++)
		for (int k = 0; k < FAST_SIDES && r == 0; k++) {
			int s = (i + k) % FAST_SIDES;

			r = fast_batch(s, lk, fd, iters, &counter, &v[s][i]);
		}
	if (r < 0)
		goto out;
	for (int s = 0; s < FAST_SIDES; s++)
		med[s] = bench_median(v[s], (size_t)nb);
	add_row(b, "1. uncontended acquire+release", med[FAST_LIB], med[FAST_RAW], BENCH_GOAL_RATIO,
	        1.2);
	add_row(b, "   vs bare lock+unlock (no write)", med[FAST_LIB], med[FAST_FLOOR],
	        BENCH_GOAL_NONE, 0);
	bench_note(&b->t,
	           "1: %d batches x %ld pairs per side; per-batch ns/pair lockkit %.0f..%.0f, "
	           "raw %.0f..%.0f, bare %.0f..%.0f",
	           nb, iters, v[FAST_LIB][0], v[FAST_LIB][nb - 1], v[FAST_RAW][0],
	           v[FAST_RAW][nb - 1], v[FAST_FLOOR][0], v[FAST_FLOOR][nb - 1]);
out:
	for (int s = 0; s < FAST_SIDES; s++)
		free(v[s]);
	lk_lock_close(lk);
	close(fd);
	return r;
}

/* ------------------------------------------------------------------------
 * 2. Handoff to a blocked waiter, ping-pong between two processes
 */

enum { MODE_LIB, MODE_RAW };

struct pp_shm {
	_Atomic uint32_t ready;  /* process 0 holds both locks */
	_Atomic uint32_t got;    /* handoffs completed */
	atomic_int failed;       /* either side gave up */
	_Atomic int64_t t_release; /* the holder's clock just before release */
	int64_t lat[];           /* per handoff, ns */
};

struct pp_side {
	struct lk_store *st;
	struct lk_lock *lk;
	int fd;
};

static int pp_mode(int chunk)
{
	return chunk % 2 ? MODE_RAW : MODE_LIB;
}

static int pp_acquire(struct pp_side *s, int mode, int64_t timeout_ms)
{
	int r;

	if (mode == MODE_RAW) {
		r = ofd(s->fd, timeout_ms == 0 ? F_OFD_SETLK : F_OFD_SETLKW, F_WRLCK);
		return r < 0 ? bench_fail(r, "raw F_OFD_SETLKW") : 0;
	}
	r = lk_lock_acquire(s->lk, timeout_ms);
	return r < 0 ? bench_fail(r, "lk_lock_acquire: %s", lk_lock_errmsg(s->lk)) : 0;
}

static int pp_release(struct pp_side *s, int mode)
{
	int r;

	if (mode == MODE_RAW) {
		r = ofd(s->fd, F_OFD_SETLK, F_UNLCK);
		return r < 0 ? bench_fail(r, "raw F_OFD_SETLK unlock") : 0;
	}
	r = lk_lock_release(s->lk);
	return r < 0 ? bench_fail(r, "lk_lock_release: %s", lk_lock_errmsg(s->lk)) : 0;
}

/*
 * One side of the ping-pong. In round i of a chunk process i % 2 holds: it
 * waits until the other is asleep on the lock, notes the time and releases,
 * then waits until the other has taken the lock and logged the latency. The
 * rounds per chunk are even, so process 0 holds at the start of every chunk;
 * it takes both locks once at the start and hands each back and forth.
 */
static int pp_run(const struct bench *b, int me, struct pp_shm *shm)
{
	struct pp_side s = { NULL, NULL, -1 };
	char lib_path[256], raw_path[256];
	uint32_t seq = 0;
	int r;

	lock_path(b, "bench-handoff", lib_path, sizeof(lib_path));
	snprintf(raw_path, sizeof(raw_path), "%s/raw-handoff", b->dir);
	r = lk_store_open(b->store, NULL, &s.st);
	if (r < 0) {
		bench_fail(r, "lk_store_open %s", b->store);
		goto out;
	}
	r = lk_lock_open(s.st, "bench-handoff", NULL, &s.lk);
	if (r < 0) {
		bench_fail(r, "lk_lock_open bench-handoff: %s", lk_store_errmsg(s.st));
		goto out;
	}
	s.fd = open(raw_path, O_RDWR | O_CLOEXEC);
	if (s.fd < 0) {
		r = bench_fail(-errno, "open %s", raw_path);
		goto out;
	}

	if (me == 0) {
		r = pp_acquire(&s, MODE_LIB, 0);
		if (r == 0)
			r = pp_acquire(&s, MODE_RAW, 0);
		if (r < 0)
			goto out;
		atomic_store(&shm->ready, 1);
		futex_wake(&shm->ready);
	} else {
		r = futex_wait_for(&shm->ready, 1, &shm->failed);
		if (r < 0) {
			bench_fail(r, "waiting for the other process to start");
			goto out;
		}
	}

	for (int c = 0; c < b->p.pp_chunks; c++) {
		int mode = pp_mode(c);
		const char *path = mode == MODE_RAW ? raw_path : lib_path;

		for (int i = 0; i < b->p.pp_rounds; i++, seq++) {
			if (i % 2 == me) {
				r = wait_for_waiter(path, &shm->failed);
				if (r < 0) {
					bench_fail(r, "waiting for a blocked waiter on %s", path);
					goto out;
				}
				atomic_store(&shm->t_release, bench_now_ns());
				r = pp_release(&s, mode);
				if (r < 0)
					goto out;
				r = futex_wait_for(&shm->got, seq + 1, &shm->failed);
				if (r < 0) {
					bench_fail(r, "waiting for the handoff");
					goto out;
				}
			} else {
				int64_t t;

				r = pp_acquire(&s, mode, -1);
				t = bench_now_ns();
				if (r < 0)
					goto out;
				shm->lat[seq] = t - atomic_load(&shm->t_release);
				atomic_store(&shm->got, seq + 1);
				futex_wake(&shm->got);
			}
		}
	}
	if (me == 0) {
		r = pp_release(&s, MODE_LIB);
		if (r == 0)
			r = pp_release(&s, MODE_RAW);
	}
out:
	if (r < 0) {
		atomic_store(&shm->failed, 1);
		futex_wake(&shm->ready);
		futex_wake(&shm->got);
	}
	if (s.fd >= 0)
		close(s.fd);
	lk_lock_close(s.lk);
	lk_store_close(s.st);
	return r;
}

/*
 * Pick two of the CPUs in set, so the two sides of the ping-pong can each
 * have one. Left to itself the scheduler sometimes stacks both on
 * one CPU, where a handoff is a context switch (a few us), and sometimes
 * spreads them, where it is a cross-CPU wake-up (tens of us); which one a
 * chunk gets would then decide the figures more than the lock does.
 */
static int pick_two_cpus(const cpu_set_t *set, int ret[2])
{
	int n = 0;

	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, set))
			ret[n++] = c;
	return n == 2;
}

static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static int bench_handoff(struct bench *b)
{
	const size_t n = (size_t)b->p.pp_chunks * (size_t)b->p.pp_rounds;
	const size_t per = n / 2;
	size_t shm_len = sizeof(struct pp_shm) + n * sizeof(int64_t), nl = 0, nr = 0;
	int64_t *lib = NULL, *raw = NULL;
	struct pp_shm *shm;
	cpu_set_t orig;
	char path[256];
	int cpus[2], pinned, status, r;
	pid_t child;

	snprintf(path, sizeof(path), "%s/raw-handoff", b->dir);
	r = raw_file_create(path);
	if (r < 0)
		return r;
	shm = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		return bench_fail(-errno, "mmap");

	pinned = sched_getaffinity(0, sizeof(orig), &orig) == 0 && pick_two_cpus(&orig, cpus);
	fflush(NULL);
	child = fork();
	if (child < 0) {
		r = bench_fail(-errno, "fork");
		goto out;
	}
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (pinned)
			pin_to(cpus[1]);
		_exit(pp_run(b, 1, shm) < 0 ? EXIT_FAIL : 0);
	}
	if (pinned)
		pin_to(cpus[0]);
	r = pp_run(b, 0, shm);
	if (r < 0)
		kill(child, SIGKILL);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (pinned)
		sched_setaffinity(0, sizeof(orig), &orig);
	if (r < 0)
		goto out;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		r = bench_fail(0, "the handoff partner process failed (status 0x%x)", status);
		goto out;
	}

	lib = malloc(per * sizeof(*lib));
	raw = malloc(per * sizeof(*raw));
	if (!lib || !raw) {
		r = bench_fail(-ENOMEM, "allocating");
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		int c = (int)(k / (size_t)b->p.pp_rounds);

		if (pp_mode(c) == MODE_LIB)
			lib[nl++] = shm->lat[k];
		else
			raw[nr++] = shm->lat[k];
	}
	qsort(lib, nl, sizeof(*lib), bench_cmp_i64);
	qsort(raw, nr, sizeof(*raw), bench_cmp_i64);
	add_row(b, "2. handoff to blocked waiter, median", bench_median_sorted(lib, nl),
	        bench_median_sorted(raw, nr), BENCH_GOAL_RATIO, 1.3);
	add_row(b, "   handoff to blocked waiter, p99", bench_pct_sorted(lib, nl, 99),
	        bench_pct_sorted(raw, nr, 99), BENCH_GOAL_NONE, 0);
	bench_note(&b->t,
	           "2: %zu handoffs per side in %d alternating chunks, %s; min lockkit %.1f us, "
	           "raw %.1f us",
	           per, b->p.pp_chunks, pinned ? "one process per CPU" : "not pinned (one CPU)",
	           (double)lib[0] / 1e3, (double)raw[0] / 1e3);
out:
	free(lib);
	free(raw);
	munmap(shm, shm_len);
	return r;
}

/* ------------------------------------------------------------------------
 * 3. Holder killed with SIGKILL until a blocked waiter holds
 */

struct kill_waiter {
	struct lk_lock *lk;
	int r;
	int64_t t;
};

static void *kill_waiter_main(void *arg)
{
	struct kill_waiter *w = arg;

	w->r = lk_lock_acquire(w->lk, -1);
	w->t = bench_now_ns();
	return NULL;
}

/* The doomed holder: take the lock, say so, and wait for SIGKILL. */
static void __attribute__((noreturn)) kill_child(const struct bench *b, int ready_fd)
{
	struct lk_store *st;
	struct lk_lock *lk;
	int r;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	r = lk_store_open(b->store, NULL, &st);
	if (r < 0) {
		bench_fail(r, "child: lk_store_open");
		_exit(EXIT_FAIL);
	}
	r = lk_lock_open(st, "bench-kill", NULL, &lk);
	if (r < 0) {
		bench_fail(r, "child: lk_lock_open: %s", lk_store_errmsg(st));
		_exit(EXIT_FAIL);
	}
	r = lk_lock_acquire(lk, 5000);
	if (r < 0) {
		bench_fail(r, "child: lk_lock_acquire: %s", lk_lock_errmsg(lk));
		_exit(EXIT_FAIL);
	}
	if (write(ready_fd, "1", 1) != 1)
		_exit(EXIT_FAIL);
	for (;;)
		pause();
}

static int kill_once(struct bench *b, struct lk_lock *lk, const char *path, int64_t *ret_ns)
{
	struct kill_waiter w = { lk, 0, 0 };
	int p[2], status, r = 0, have_thread = 0;
	pthread_t th;
	int64_t t0;
	ssize_t n;
	char c;
	pid_t child;

	if (pipe2(p, O_CLOEXEC) < 0)
		return bench_fail(-errno, "pipe");
	fflush(NULL);
	child = fork();
	if (child < 0) {
		r = bench_fail(-errno, "fork");
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (child == 0) {
		close(p[0]);
		kill_child(b, p[1]);
	}
	close(p[1]);
	do
		n = read(p[0], &c, 1);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n != 1) {
		r = bench_fail(0, "the holder process did not take the lock");
		goto reap;
	}

	r = -pthread_create(&th, NULL, kill_waiter_main, &w);
	if (r < 0) {
		bench_fail(r, "pthread_create");
		goto reap;
	}
	have_thread = 1;
	r = wait_for_waiter(path, NULL);
	if (r < 0) {
		bench_fail(r, "waiting for the waiter to block on %s", path);
		goto reap;
	}
	t0 = bench_now_ns();
	if (kill(child, SIGKILL) < 0) {
		r = bench_fail(-errno, "kill");
		goto reap;
	}
	pthread_join(th, NULL);
	have_thread = 0;
	if (w.r < 0) {
		r = bench_fail(w.r, "lk_lock_acquire after the holder died: %s",
		               lk_lock_errmsg(lk));
		goto reap;
	}
	*ret_ns = w.t - t0;
	r = lk_lock_release(lk);
	if (r < 0)
		bench_fail(r, "lk_lock_release: %s", lk_lock_errmsg(lk));
reap:
	kill(child, SIGKILL);
	if (have_thread) {
		/* the holder is dead now, so the waiter returns */
		pthread_join(th, NULL);
		if (w.r == 0)
			lk_lock_release(lk);
	}
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (r == 0 && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		r = bench_fail(0, "the holder process ended unexpectedly (status 0x%x)", status);
	return r;
}

static int bench_kill(struct bench *b)
{
	const int n = b->p.kill_runs;
	struct lk_lock *lk = NULL;
	int64_t *lat;
	char path[256];
	int r = 0;

	lat = calloc((size_t)n, sizeof(*lat));
	if (!lat)
		return bench_fail(-ENOMEM, "allocating");
	r = lk_lock_open(b->st, "bench-kill", NULL, &lk);
	if (r < 0) {
		bench_fail(r, "lk_lock_open bench-kill: %s", lk_store_errmsg(b->st));
		goto out;
	}
	lock_path(b, "bench-kill", path, sizeof(path));
	for (int i = 0; i < n && r == 0; i++)
		r = kill_once(b, lk, path, &lat[i]);
	if (r < 0)
		goto out;
	qsort(lat, (size_t)n, sizeof(*lat), bench_cmp_i64);
	add_row(b, "3. holder SIGKILL to next holder, median", bench_median_sorted(lat, (size_t)n),
	        -1, BENCH_GOAL_ABS, 1e6);
	add_row(b, "   holder SIGKILL to next holder, max", (double)lat[n - 1], -1, BENCH_GOAL_NONE,
	        0);
	bench_note(&b->t, "3: %d runs; min %.1f us, p90 %.1f us", n, (double)lat[0] / 1e3,
	           bench_pct_sorted(lat, (size_t)n, 90) / 1e3);
out:
	lk_lock_close(lk);
	free(lat);
	return r;
}

/* ------------------------------------------------------------------------
 * 4. lockctl run vs flock(1)
 */

/*
 * Run a command to completion and time it. Both commands get a session of
 * their own (no controlling terminal), so that neither hands a terminal
 * around and the figures do not depend on where the benchmark runs.
 */
static int spawn_timed(char *const argv[], int64_t *ret_ns)
{
	posix_spawnattr_t attr;
	int64_t t0, t1;
	int status, r;
	pid_t pid;

	r = posix_spawnattr_init(&attr);
	if (r)
		return bench_fail(-r, "posix_spawnattr_init");
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	t0 = bench_now_ns();
	r = posix_spawn(&pid, argv[0], NULL, &attr, argv, environ);
	if (r) {
		posix_spawnattr_destroy(&attr);
		return bench_fail(-r, "cannot run %s", argv[0]);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			posix_spawnattr_destroy(&attr);
			return bench_fail(-errno, "waitpid");
		}
	}
	t1 = bench_now_ns();
	posix_spawnattr_destroy(&attr);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return bench_fail(0, "%s %s ... failed (status 0x%x)", argv[0], argv[1], status);
	*ret_ns = t1 - t0;
	return 0;
}

static int bench_cli(struct bench *b)
{
	const int n = b->p.cli_runs;
	char flock_file[256], flock_bin[] = "/usr/bin/flock", s_opt[] = "-S", run[] = "run",
		name[] = "bench-cli", dashes[] = "--", cmd[] = "true";
	char *lc_argv[] = { (char *)b->lockctl, s_opt, b->store, run, name, dashes, cmd, NULL };
	char *fl_argv[] = { flock_bin, flock_file, cmd, NULL };
	int64_t *lc, *fl, junk;
	int r = 0;

	snprintf(flock_file, sizeof(flock_file), "%s/flock-file", b->dir);
	if (access(flock_bin, X_OK) < 0)
		return bench_fail(-errno, "%s (util-linux) is needed for the baseline", flock_bin);
	lc = calloc((size_t)n, sizeof(*lc));
	fl = calloc((size_t)n, sizeof(*fl));
	if (!lc || !fl) {
		r = bench_fail(-ENOMEM, "allocating");
		goto out;
	}
	/* warm the page cache and check that both commands work */
	r = spawn_timed(lc_argv, &junk);
	if (r == 0)
		r = spawn_timed(fl_argv, &junk);
	for (int i = 0; i < n && r == 0; i++) {
		if (i % 2 == 0) {
			r = spawn_timed(lc_argv, &lc[i]);
			if (r == 0)
				r = spawn_timed(fl_argv, &fl[i]);
		} else {
			r = spawn_timed(fl_argv, &fl[i]);
			if (r == 0)
				r = spawn_timed(lc_argv, &lc[i]);
		}
	}
	if (r < 0)
		goto out;
	qsort(lc, (size_t)n, sizeof(*lc), bench_cmp_i64);
	qsort(fl, (size_t)n, sizeof(*fl), bench_cmp_i64);
	add_row(b, "4. lockctl run vs flock(1), median", bench_median_sorted(lc, (size_t)n),
	        bench_median_sorted(fl, (size_t)n), BENCH_GOAL_RATIO, 1.1);
	bench_note(&b->t,
	           "4: %d runs per command; p90 lockctl %.2f ms, flock %.2f ms; lockctl is %s", n,
	           bench_pct_sorted(lc, (size_t)n, 90) / 1e6,
	           bench_pct_sorted(fl, (size_t)n, 90) / 1e6, b->lockctl);
out:
	free(lc);
	free(fl);
	return r;
}

/* ------------------------------------------------------------------------
 * Output
 */

static void fmt_val(char *buf, size_t len, int unit, double ns)
{
	bench_fmt_dur(buf, len, ns, 2);
}

static void fmt_goal(char *buf, size_t len, const struct bench_row *r)
{
	char d[24];

	if (r->goal == BENCH_GOAL_RATIO) {
		snprintf(buf, len, "<= %.1f", r->goal_val);
	} else {
		bench_fmt_dur(d, sizeof(d), r->goal_val, 2);
		snprintf(buf, len, "<= %s", d);
	}
}

static const struct bench_layout layout = {
	.value_head = "lockkit",
	.name_w = 42,
	.value_w = 10,
	.ratio_w = 6,
	.goal_w = 10,
	.ratio_digits = 2,
	.missed = "OVER",
	.fmt_val = fmt_val,
	.fmt_goal = fmt_goal,
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_json(const struct bench *b, int quick)
{
	printf("{\"lockkit\": \"%s\", \"quick\": %s, \"results\": [", lk_version(),
	       quick ? "true" : "false");
	for (int i = 0; i < b->t.nrows; i++) {
		const struct bench_row *r = &b->t.rows[i];
		const char *name = r->name;

		while (*name == ' ')
			name++;
		printf("%s\n  {\"name\": ", i ? "," : "");
		json_str(name);
		printf(", \"lockkit_ns\": %.0f", r->value);
		if (r->base >= 0)
			printf(", \"baseline_ns\": %.0f, \"ratio\": %.3f", r->base,
			       r->value / r->base);
		else
			printf(", \"baseline_ns\": null, \"ratio\": null");
		if (r->goal == BENCH_GOAL_RATIO)
			printf(", \"goal\": {\"max_ratio\": %.2f}", r->goal_val);
		else if (r->goal == BENCH_GOAL_ABS)
			printf(", \"goal\": {\"max_ns\": %.0f}", r->goal_val);
		else
			printf(", \"goal\": null");
		if (r->goal == BENCH_GOAL_NONE)
			printf(", \"ok\": null}");
		else
			printf(", \"ok\": %s}",
			       strcmp(bench_verdict(&layout, r), "ok") ? "false" : "true");
	}
	printf("\n], \"notes\": [");
	for (int i = 0; i < b->t.nnotes; i++) {
		printf("%s\n  ", i ? "," : "");
		json_str(b->t.notes[i]);
	}
	printf("\n]}\n");
}

/* ------------------------------------------------------------------------
 * Setup
 */

/* $LOCKCTL, else the lockctl installed next to this program. */
static const char *find_lockctl(char *buf, size_t len)
{
	const char *env = getenv("LOCKCTL");
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return NULL;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(buf, len, "%s/lockctl", self);
	return buf;
}

int main(int argc, char **argv)
{
	struct bench *b;
	char lockctl_buf[PATH_MAX + 16];
	const char *lockctl = NULL;
	int quick = 0, json = 0, only = 0, r = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = 1;
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--lockctl") && i + 1 < argc) {
			lockctl = argv[++i];
		} else if (!strncmp(argv[i], "--lockctl=", 10)) {
			lockctl = argv[i] + 10;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = atoi(argv[++i]);
			if (only < 1 || only > 4) {
				fprintf(stderr, "bench_lock: --only takes 1 to 4\n");
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "bench_lock: unknown argument '%s'\n\n%s", argv[i], usage);
			return EXIT_USAGE;
		}
	}
	if (!lockctl)
		lockctl = find_lockctl(lockctl_buf, sizeof(lockctl_buf));
	if ((!only || only == 4) && (!lockctl || access(lockctl, X_OK) < 0)) {
		fprintf(stderr, "bench_lock: no lockctl binary at %s; use --lockctl PATH\n",
			lockctl ? lockctl : "(unknown)");
		return EXIT_FAIL;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return EXIT_FAIL;
	b->p = quick ? params_quick : params_default;
	bench_table_init(&b->t, MAX_ROWS, MAX_NOTES, NOTE_LEN);
	b->lockctl = lockctl;
	snprintf(b->dir, sizeof(b->dir), "/tmp/lk-bench-XXXXXX");
	if (!mkdtemp(b->dir)) {
		fprintf(stderr, "bench_lock: mkdtemp: %s\n", strerror(errno));
		free(b);
		return EXIT_FAIL;
	}
	snprintf(b->store, sizeof(b->store), "%s/store", b->dir);
	r = lk_store_open(b->store, NULL, &b->st);
	if (r < 0) {
		bench_fail(r, "lk_store_open %s", b->store);
		goto out;
	}

	for (int m = 0; m < 4 && r == 0; m++) {
		static const char *const what[] = {
			"uncontended acquire+release",
			"handoff to a blocked waiter",
			"holder SIGKILL to next holder",
			"lockctl run vs flock(1)",
		};
		static int (*const run[])(struct bench *) = {
			bench_fast,
			bench_handoff,
			bench_kill,
			bench_cli,
		};

		if (only && only != m + 1)
			continue;
		fprintf(stderr, "bench_lock: %d/4 %s\n", m + 1, what[m]);
		r = run[m](b);
	}
	if (r == 0) {
		if (json)
			print_json(b, quick);
		else
			bench_print_table(&layout, &b->t);
	}
out:
	lk_store_close(b->st);
	bench_rm_tree(b->dir);
	free(b);
	return r < 0 ? EXIT_FAIL : 0;
}
