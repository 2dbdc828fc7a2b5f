// SPDX-License-Identifier: MIT
/*
 * chaos: a mutual-exclusion checker for lockkit under abuse.
 *
 * N worker processes loop acquire, critical section, release on one lock
 * while a controller SIGKILLs them (and starts them again) and SIGSTOPs them
 * for a while before SIGCONT (past the TTL in lease mode). Two witnesses
 * that owe nothing to the library watch the run:
 *
 *  - an occupancy word in shared memory, one bit per worker, set on entering
 *    the critical section and cleared on leaving it. A worker that finds
 *    another bit set on entry has found two critical sections running at
 *    once (unless the other worker is already dead: a killed holder never
 *    clears its bit, and its death is what freed the lock);
 *  - a fenced resource: a log guarded by a robust process-shared mutex that
 *    accepts a write only if its token is at least the highest it has
 *    accepted, and logs every accepted write with its token.
 *
 * After the run the checker demands: no overlap unless one of the two
 * sections was paused by the controller (or the older holder had already
 * learnt it lost the lease before the newer one entered); no accepted write
 * below the highest accepted token and no token shared by two sections,
 * re-checked on the log; and every refused write explained by a pause of its
 * writer. It prints a table and exits non-zero on any violation, so that a
 * run is a test. --break makes a worker cheat, to show the checker can fail.
 *
 * Workers are this program again (execv of /proc/self/exe), so that one of
 * them can run under libfaketime, which only an exec can preload. All
 * timestamps the checker uses come from raw clock_gettime system calls:
 * libfaketime replaces the libc function, not the system call, so the
 * harness's own view of time stays true while the library's is faked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lockkit.h>

#define MAX_WORKERS  32
#define MAX_OVERLAPS 4096
#define MAX_EVENTS   4096
#define MAX_CLOCKS   4
#define SHM_MAGIC    0x63686173u /* "chas" */

enum { EV_KILL = 1, EV_PAUSE = 2, EV_STEP = 3 };
enum { BREAK_NONE = 0, BREAK_NOLOCK = 1, BREAK_STALE = 2 };
enum { STEP_NONE = 0, STEP_HOLD = 1, STEP_WAIT = 2 };

struct slot {
	_Atomic int32_t pid;
	_Atomic uint32_t pauses;  /* bumped by the controller while the worker is stopped */
	_Atomic uint32_t steps;   /* clock steps the controller applied to this worker */
	_Atomic int32_t cur_sec;  /* section being run, -1 outside */
	_Atomic int32_t in_fence; /* inside the fenced resource's mutex */
	_Atomic int32_t doomed;   /* SIGKILL sent */
	/* the worker's libc clocks (faked or not) minus the kernel's, in ms */
	_Atomic int64_t rt_off_ms;   /* CLOCK_REALTIME */
	_Atomic int64_t mono_off_ms; /* CLOCK_BOOTTIME */
	_Atomic int32_t started;
};

struct section {
	int32_t worker;
	uint32_t pause0, pause1; /* the worker's pause count before acquiring, on leaving */
	uint32_t step0, step1;
	uint32_t done, killed, stepped_down;
	uint32_t writes_ok, writes_rejected, rejected_unexplained;
	uint32_t ovl_noted; /* an overlap with this section as the older one is logged */
	uint64_t token;
	int64_t t_enter, t_exit, t_last_ok; /* raw CLOCK_MONOTONIC ns */
	int64_t t_last_act;                 /* when its last write returned */
};

struct wentry {
	uint64_t token;
	int32_t sec;
	int32_t worker;
};

struct overlap {
	int32_t sec_in, sec_occ, w_in, w_occ;
	int64_t t;
};

struct event {
	int64_t t;
	int32_t kind, worker, sec;
};

struct clockspec {
	int worker;
	char spec[32]; /* libfaketime offset, or "" for a stepped clock */
	int wall_only;
};

struct config {
	enum lk_mode mode;
	const char *store;
	const char *dir;
	char lockname[64];
	int workers;
	int seconds;
	int sections;
	uint64_t ttl_ms;
	uint64_t seed;
	uint64_t hold_us;
	int writes;
	int faults;
	int brk;
	int expect; /* 0: pass, 1: violations, 2: overlaps with fencing intact */
	int min_sections;
	struct clockspec clocks[MAX_CLOCKS];
	int nclocks;
	int step_when;
	int64_t step_s;
	int step_wall_only;
	const char *profile;
};

struct shared {
	uint32_t magic;
	uint32_t nworkers;
	int32_t max_sections;
	int32_t max_writes;
	_Atomic int32_t stop;
	_Atomic uint64_t occupancy;
	_Atomic int32_t nsec;
	_Atomic int32_t novl;        /* distinct overlaps logged in ovl[] */
	_Atomic int32_t novl_events; /* every entry that found someone inside */
	_Atomic int32_t nerr;
	_Atomic int32_t nrelease_err;
	_Atomic int32_t nacq_eio_paused; /* acquire failed with -EIO after a pause */
	_Atomic int32_t nrel_err_paused; /* release failed after a pause */
	char errmsg[512];

	pthread_mutex_t fence_mu;
	uint64_t fence_max;
	int32_t fence_max_sec;
	int32_t nwrites;
	uint64_t fence_rejected;
	uint64_t fence_dup;

	int32_t nev;
	struct event ev[MAX_EVENTS];
	struct overlap ovl[MAX_OVERLAPS];
	struct slot slots[MAX_WORKERS];
	struct config cfg; /* for the workers; its pointers are fixed up on attach */
	char store[PATH_MAX];
	/* followed by struct section[max_sections] and struct wentry[max_writes] */
};

static struct shared *sh;
static struct section *secs;
static struct wentry *wlog;

static int64_t raw_ns(clockid_t c)
{
	struct timespec ts;

	/* the system call, not the libc wrapper libfaketime replaces */
	syscall(SYS_clock_gettime, c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
	return raw_ns(CLOCK_MONOTONIC);
}

static void raw_sleep_us(uint64_t us)
{
	struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};

	while (syscall(SYS_nanosleep, &ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + (hi > lo ? rng_next(s) % (hi - lo + 1) : 0);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "chaos: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static size_t shm_size(int max_sections, int max_writes)
{
	return sizeof(struct shared) + (size_t)max_sections * sizeof(struct section) +
	       (size_t)max_writes * sizeof(struct wentry);
}

static void shm_attach(const char *path, int create, int max_sections, int max_writes)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);
	size_t size;
	void *p;

	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	if (!create) {
		struct shared hdr;

		if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
		    hdr.magic != SHM_MAGIC)
			die("%s is not a chaos shared area", path);
		max_sections = hdr.max_sections;
		max_writes = hdr.max_writes;
	}
	size = shm_size(max_sections, max_writes);
	if (create && ftruncate(fd, (off_t)size) < 0)
		die("ftruncate: %s", strerror(errno));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	sh = p;
	secs = (struct section *)(sh + 1);
	wlog = (struct wentry *)(secs + max_sections);
	if (create) {
		pthread_mutexattr_t a;

		sh->max_sections = max_sections;
		sh->max_writes = max_writes;
		pthread_mutexattr_init(&a);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		/* a worker killed inside the resource must not wedge the others */
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&sh->fence_mu, &a);
		pthread_mutexattr_destroy(&a);
		for (int i = 0; i < MAX_WORKERS; i++)
			sh->slots[i].cur_sec = -1;
		sh->magic = SHM_MAGIC;
	}
}

/* ------------------------------------------------------------------------
 * Worker
 */

static void worker_error(const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (atomic_fetch_add(&sh->nerr, 1) == 0)
		snprintf(sh->errmsg, sizeof(sh->errmsg), "%s", buf);
	fprintf(stderr, "chaos worker: %s\n", buf);
}

/* Dead or a zombie: /proc says so. A killed worker still inside its section
 * never clears its occupancy bit; its death is what freed the lock. */
static int proc_dead(int32_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return !p || p[1] == 0 || p[2] == 'Z' || p[2] == 'X' || p[2] == 'x';
}

/*
 * A worker sent SIGKILL runs no more user code, but the kernel drops its
 * locks early in exit, before /proc shows it as a zombie: give it a moment.
 */
static int doomed_dies(int32_t pid)
{
	for (int i = 0; i < 2000; i++) {
		if (proc_dead(pid))
			return 1;
		raw_sleep_us(1000);
	}
	return 0;
}

/* Returns 1 if the write was accepted. */
static int fence_write(struct slot *me, int w, int32_t sec, uint64_t token)
{
	int r, ok;

	atomic_store(&me->in_fence, 1);
	r = pthread_mutex_lock(&sh->fence_mu);
	if (r == EOWNERDEAD)
		pthread_mutex_consistent(&sh->fence_mu);
	if (token > sh->fence_max || (token == sh->fence_max && sec == sh->fence_max_sec)) {
		if (sh->nwrites < sh->max_writes) {
			struct wentry *e = &wlog[sh->nwrites];

			e->token = token;
			e->sec = sec;
			e->worker = w;
		}
		/* the high-water mark first: a writer killed before the count
		 * moves loses its log entry, never the fence */
		sh->fence_max = token;
		sh->fence_max_sec = sec;
		if (sh->nwrites < sh->max_writes)
			sh->nwrites++;
		ok = 1;
	} else {
		if (token == sh->fence_max)
			sh->fence_dup++;
		sh->fence_rejected++;
		ok = 0;
	}
	pthread_mutex_unlock(&sh->fence_mu);
	atomic_store(&me->in_fence, 0);
	return ok;
}

static void note_overlaps(int w, int32_t sec, uint64_t others)
{
	for (int o = 0; o < MAX_WORKERS; o++) {
		struct slot *so = &sh->slots[o];
		int32_t n, cur;

		if (!(others & (1ull << o)))
			continue;
		if (atomic_load(&so->doomed) && doomed_dies(atomic_load(&so->pid)))
			continue;
		atomic_fetch_add(&sh->novl_events, 1);
		/* one entry per older section: a paused holder overlaps with
		 * every section run while it sleeps, and one verdict covers all */
		cur = atomic_load(&so->cur_sec);
		if (cur >= 0 && __atomic_exchange_n(&secs[cur].ovl_noted, 1, __ATOMIC_SEQ_CST))
			continue;
		n = atomic_fetch_add(&sh->novl, 1);
		if (n < MAX_OVERLAPS) {
			sh->ovl[n].sec_in = sec;
			sh->ovl[n].sec_occ = cur;
			sh->ovl[n].w_in = w;
			sh->ovl[n].w_occ = o;
			sh->ovl[n].t = now_ns();
		}
	}
}

static void record_clock_view(struct slot *me)
{
	struct timespec ts;
	int64_t rt, mono;

	clock_gettime(CLOCK_REALTIME, &ts); /* the libc view, faked or not */
	rt = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	mono = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	atomic_store(&me->rt_off_ms, (rt - raw_ns(CLOCK_REALTIME)) / 1000000);
	atomic_store(&me->mono_off_ms, (mono - raw_ns(CLOCK_BOOTTIME)) / 1000000);
}

static int worker_main(const struct config *c, int w)
{
	struct lk_store_opts so = LK_STORE_OPTS_INIT;
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct slot *me = &sh->slots[w];
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char err[256];
	uint64_t rng = c->seed * 0x9e3779b97f4a7c15ull + (uint64_t)getpid() * 2654435761u + 1;
	int cheat = c->brk != BREAK_NONE && w == 0;
	int r;

	atomic_store(&me->pid, (int32_t)getpid());
	record_clock_view(me);
	atomic_store(&me->started, 1);
	r = lk_store_open_err(c->store, &so, &st, err, sizeof(err));
	if (r < 0) {
		worker_error("worker %d: store %s: %s", w, c->store, err);
		return 3;
	}
	lo.mode = c->mode;
	lo.owner = "chaos";
	lo.ttl_ms = c->mode == LK_MODE_LEASE ? c->ttl_ms : 0;
	r = lk_lock_open(st, c->lockname, &lo, &lk);
	if (r < 0) {
		worker_error("worker %d: open lock: %s (%s)", w, lk_strerror(r),
		             lk_store_errmsg(st));
		lk_store_close(st);
		return 3;
	}

	while (!atomic_load(&sh->stop)) {
		uint32_t pause0 = atomic_load(&me->pauses), step0 = atomic_load(&me->steps);
		uint64_t token, bit = 1ull << w, old;
		struct section *s;
		int32_t idx;

		if (cheat && c->brk == BREAK_NOLOCK) {
			/* breaks safety on purpose: enters without the lock */
			token = sh->fence_max;
			raw_sleep_us(rng_range(&rng, 0, c->hold_us));
		} else {
			/* a waiter judges a silent lease free only after watching it
			 * for a TTL within one acquire call: keep calls long */
			r = lk_lock_acquire(
				lk, c->mode == LK_MODE_LEASE ? (int64_t)c->ttl_ms * 2 + 500 : 300);
			/* a worker whose clock was stepped while it waited may
			 * never get the lock again before the run ends */
			record_clock_view(me);
			if (r == -ETIMEDOUT)
				continue;
			if (r == -EIO && atomic_load(&me->pauses) != pause0) {
				/* nfs://: a request under way while this process was
				 * stopped times out, and acquire reports it (README.md,
				 * "Verification"); counted, not fatal */
				atomic_fetch_add(&sh->nacq_eio_paused, 1);
				continue;
			}
			if (r < 0) {
				worker_error("worker %d: acquire: %s (%s)%s", w, lk_strerror(r),
				             lk_lock_errmsg(lk),
				             atomic_load(&me->pauses) != pause0
				                     ? " [paused during this acquire]"
				                     : "");
				break;
			}
			token = lk_lock_token(lk);
			if (cheat && c->brk == BREAK_STALE && token > 1)
				token--; /* breaks fencing on purpose: an old token */
		}
		idx = atomic_fetch_add(&sh->nsec, 1);
		if (idx >= sh->max_sections) {
			atomic_store(&sh->stop, 1);
			if (!(cheat && c->brk == BREAK_NOLOCK))
				lk_lock_release(lk);
			break;
		}
		s = &secs[idx];
		s->worker = w;
		s->pause0 = pause0;
		s->step0 = step0;
		s->token = token;
		s->t_enter = now_ns();
		atomic_store(&me->cur_sec, idx);
		record_clock_view(me);

		old = atomic_fetch_or(&sh->occupancy, bit);
		if (old & ~bit)
			note_overlaps(w, idx, old & ~bit);

		for (int k = 0; k < c->writes && !atomic_load(&sh->stop); k++) {
			raw_sleep_us(rng_range(&rng, 0, 2 * c->hold_us / (uint64_t)c->writes));
			if (c->mode == LK_MODE_LEASE && !cheat) {
				if (lk_lock_check(lk) < 0) {
					s->stepped_down = 1; /* lost: stop acting */
					break;
				}
				s->t_last_ok = now_ns();
				/* work between the check and the write: the window
				 * in which only the fence can stop a paused holder */
				raw_sleep_us(rng_range(&rng, 0, c->hold_us / 2));
			}
			r = fence_write(me, w, idx, token);
			s->t_last_act = now_ns();
			if (r) {
				s->writes_ok++;
			} else {
				s->writes_rejected++;
				if (atomic_load(&me->pauses) == pause0)
					s->rejected_unexplained++;
			}
		}

		record_clock_view(me);
		s->pause1 = atomic_load(&me->pauses);
		s->step1 = atomic_load(&me->steps);
		s->t_exit = now_ns();
		atomic_fetch_and(&sh->occupancy, ~bit);
		atomic_store(&me->cur_sec, -1);
		s->done = 1;
		if (!(cheat && c->brk == BREAK_NOLOCK)) {
			r = lk_lock_release(lk);
			/* a lease lost while paused is no longer ours to release,
			 * and on nfs:// a request caught by a pause times out */
			if (r < 0 && !(r == -ENOLCK && c->mode == LK_MODE_LEASE)) {
				if (c->mode == LK_MODE_LEASE &&
				    atomic_load(&me->pauses) != pause0) {
					atomic_fetch_add(&sh->nrel_err_paused, 1);
				} else {
					atomic_fetch_add(&sh->nrelease_err, 1);
					worker_error("worker %d: release: %s (%s)", w,
					             lk_strerror(r), lk_lock_errmsg(lk));
				}
			}
		}
		if (c->hold_us && (rng_next(&rng) & 3) == 0)
			raw_sleep_us(rng_range(&rng, 0, c->hold_us / 2));
	}
	lk_lock_close(lk);
	lk_store_close(st);
	return atomic_load(&sh->nerr) ? 3 : 0;
}

/* ------------------------------------------------------------------------
 * Controller
 */

struct ctl {
	const struct config *c;
	const char *self;
	const char *shm_path;
	char step_file[PATH_MAX];
	char **argv;
	pid_t pids[MAX_WORKERS];
	uint64_t rng;
	int kills, pauses, pause_retries, restarts, steps, worker_fail;
	int64_t step_offset_s;
};

static const struct clockspec *clock_of(const struct config *c, int w)
{
	for (int i = 0; i < c->nclocks; i++)
		if (c->clocks[i].worker == w)
			return &c->clocks[i];
	return NULL;
}

static const char *faketime_lib(void)
{
	static const char *cands[] = {
		"/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
		"/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
		"/usr/lib/faketime/libfaketimeMT.so.1",
		"/usr/local/lib/faketime/libfaketimeMT.so.1",
	};
	const char *e = getenv("LK_FAKETIME_LIB");

	if (e && *e)
		return e;
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (access(cands[i], R_OK) == 0)
			return cands[i];
	return NULL;
}

static void write_step_file(struct ctl *x)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", x->step_file);
	f = fopen(tmp, "w");
	if (!f)
		die("cannot write %s: %s", tmp, strerror(errno));
	fprintf(f, "%+" PRId64 "\n", x->step_offset_s);
	if (fclose(f) != 0 || rename(tmp, x->step_file) < 0)
		die("cannot write %s: %s", x->step_file, strerror(errno));
}

static void start_worker(struct ctl *x, int w)
{
	const struct config *c = x->c;
	const struct clockspec *ck = clock_of(c, w);
	char wbuf[16];
	pid_t pid;

	snprintf(wbuf, sizeof(wbuf), "%d", w);
	atomic_store(&sh->slots[w].doomed, 0);
	atomic_store(&sh->slots[w].started, 0);
	atomic_store(&sh->slots[w].cur_sec, -1);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		char *args[] = {(char *)x->self, "--worker",          wbuf,
		                "--shm",         (char *)x->shm_path, NULL};

		if (ck) {
			const char *lib = faketime_lib();

			if (!lib) {
				fprintf(stderr,
				        "chaos: libfaketime not found (package libfaketime)\n");
				_exit(4);
			}
			setenv("LD_PRELOAD", lib, 1);
			/* in an ASan build the sanitizer runtime must come first in
			 * the library list; with libfaketime preloaded it cannot */
			if (getenv("ASAN_OPTIONS")) {
				char opt[512];

				snprintf(opt, sizeof(opt), "%s:verify_asan_link_order=0",
				         getenv("ASAN_OPTIONS"));
				setenv("ASAN_OPTIONS", opt, 1);
			} else {
				setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
			}
			if (ck->spec[0]) {
				setenv("FAKETIME", ck->spec, 1);
			} else {
				unsetenv("FAKETIME");
				setenv("FAKETIME_TIMESTAMP_FILE", x->step_file, 1);
				setenv("FAKETIME_NO_CACHE", "1", 1);
			}
			if (ck->wall_only)
				setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
			else
				unsetenv("FAKETIME_DONT_FAKE_MONOTONIC");
		}
		execv(x->self, args);
		_exit(4);
	}
	x->pids[w] = pid;
	atomic_store(&sh->slots[w].pid, (int32_t)pid);
}

static void add_event(int kind, int w, int32_t sec)
{
	if (sh->nev < MAX_EVENTS) {
		sh->ev[sh->nev].t = now_ns();
		sh->ev[sh->nev].kind = kind;
		sh->ev[sh->nev].worker = w;
		sh->ev[sh->nev].sec = sec;
		sh->nev++;
	}
}

/* After a worker died: clear what it could not. */
static void bury(struct ctl *x, int w)
{
	struct slot *s = &sh->slots[w];
	int32_t cur = atomic_load(&s->cur_sec);

	if (cur >= 0) {
		secs[cur].killed = 1;
		secs[cur].pause1 = atomic_load(&s->pauses);
		secs[cur].step1 = atomic_load(&s->steps);
		secs[cur].t_exit = now_ns();
	}
	atomic_fetch_and(&sh->occupancy, ~(1ull << w));
	atomic_store(&s->cur_sec, -1);
	x->pids[w] = 0;
}

static void reap(struct ctl *x, int restart)
{
	int status;
	pid_t p;

	while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int w = 0; w < x->c->workers; w++) {
			if (x->pids[w] != p)
				continue;
			if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
				x->worker_fail++;
				fprintf(stderr, "chaos: worker %d exited with %d\n", w,
				        WEXITSTATUS(status));
			} else if (WIFSIGNALED(status) && !atomic_load(&sh->slots[w].doomed)) {
				x->worker_fail++;
				fprintf(stderr, "chaos: worker %d died of signal %d\n", w,
				        WTERMSIG(status));
			}
			bury(x, w);
			/* a worker that failed on its own is not restarted: the
			 * run has failed already, and a restart loop would spin */
			if (restart && !atomic_load(&sh->stop) && !x->worker_fail) {
				start_worker(x, w);
				x->restarts++;
			}
		}
	}
}

/* A victim: the holder more often than not, so that faults hit holds. */
static int pick_victim(struct ctl *x)
{
	uint64_t occ = atomic_load(&sh->occupancy);
	int n = x->c->workers;

	if (occ && rng_range(&x->rng, 0, 99) < 65) {
		for (int w = 0; w < n; w++)
			if ((occ & (1ull << w)) && x->pids[w])
				return w;
	}
	return (int)rng_range(&x->rng, 0, (uint64_t)n - 1);
}

static void do_kill(struct ctl *x, int w)
{
	struct slot *s = &sh->slots[w];
	pid_t pid = x->pids[w];
	int status;

	if (!pid)
		return;
	atomic_store(&s->doomed, 1);
	add_event(EV_KILL, w, atomic_load(&s->cur_sec));
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	x->kills++;
	bury(x, w);
	start_worker(x, w);
	x->restarts++;
}

static void do_pause(struct ctl *x, int w)
{
	const struct config *c = x->c;
	struct slot *s = &sh->slots[w];
	pid_t pid = x->pids[w];
	uint64_t ms;
	int status;

	if (!pid || !atomic_load(&s->started))
		return;
	kill(pid, SIGSTOP);
	if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status)) {
		/* it died on its own; reap() will see to it */
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
				x->worker_fail++;
			bury(x, w);
			start_worker(x, w);
		}
		return;
	}
	if (atomic_load(&s->in_fence)) {
		/* stopped inside the resource itself, which stands for an
		 * atomic service: not a pause of a client, try later */
		kill(pid, SIGCONT);
		x->pause_retries++;
		return;
	}
	atomic_fetch_add(&s->pauses, 1);
	add_event(EV_PAUSE, w, atomic_load(&s->cur_sec));
	if (c->mode == LK_MODE_LEASE)
		ms = rng_range(&x->rng, c->ttl_ms * 13 / 10, c->ttl_ms * 18 / 10);
	else
		ms = rng_range(&x->rng, 20, 200);
	raw_sleep_us(ms * 1000);
	kill(pid, SIGCONT);
	x->pauses++;
}

/* Clock steps: worker 0 runs with a libfaketime offset read from a file
 * the controller rewrites. Returns the ms to sleep before looking again. */
static uint64_t maybe_step(struct ctl *x)
{
	const struct config *c = x->c;
	struct slot *s = &sh->slots[0];
	int inside = atomic_load(&s->cur_sec) >= 0;
	uint64_t occ = atomic_load(&sh->occupancy);

	if (!atomic_load(&s->started))
		return 10;
	if (c->step_when == STEP_HOLD && !inside)
		return 5;
	/* a waiter: step while someone else holds */
	if (c->step_when == STEP_WAIT && (inside || !(occ & ~1ull)))
		return 5;
	x->step_offset_s += c->step_s;
	write_step_file(x);
	atomic_fetch_add(&s->steps, 1);
	add_event(EV_STEP, 0, atomic_load(&s->cur_sec));
	x->steps++;
	return c->ttl_ms * 2;
}

/* ------------------------------------------------------------------------
 * Checker
 */

struct verdict {
	int64_t sections, killed_in, stepped_down, paused_secs;
	int64_t writes_ok, writes_rej, rej_unexplained;
	int64_t ovl_total, ovl_paused, ovl_after_loss, ovl_bad;
	int64_t stale_accepted, dup_tokens, log_writes;
	uint64_t max_token;
	int64_t fail_kill_max, fail_kill_med, fail_pause_max, fail_pause_med;
	int nfail_kill, nfail_pause;
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int sec_paused(const struct section *s)
{
	return s->pause1 != s->pause0;
}

/* Time from a fault on a holder to the next section of another worker. */
static void failovers(int kind, int64_t nsec, int64_t *ret_max, int64_t *ret_med, int *ret_n)
{
	static int64_t d[MAX_EVENTS];
	int n = 0;

	for (int i = 0; i < sh->nev; i++) {
		const struct event *e = &sh->ev[i];

		if (e->kind != kind || e->sec < 0)
			continue;
		for (int64_t j = e->sec + 1; j < nsec; j++) {
			if (secs[j].worker != e->worker && secs[j].t_enter > e->t) {
				d[n++] = secs[j].t_enter - e->t;
				break;
			}
		}
	}
	*ret_n = n;
	*ret_max = *ret_med = 0;
	if (n) {
		qsort(d, (size_t)n, sizeof(d[0]), cmp_i64);
		*ret_max = d[n - 1];
		*ret_med = d[n / 2];
	}
}

static void judge(struct verdict *v)
{
	int64_t nsec = atomic_load(&sh->nsec);
	int novl = atomic_load(&sh->novl);

	memset(v, 0, sizeof(*v));
	if (nsec > sh->max_sections)
		nsec = sh->max_sections;
	v->sections = nsec;
	for (int64_t i = 0; i < nsec; i++) {
		const struct section *s = &secs[i];

		v->killed_in += s->killed;
		v->stepped_down += s->stepped_down;
		v->paused_secs += sec_paused(s);
		v->writes_ok += s->writes_ok;
		v->writes_rej += s->writes_rejected;
		v->rej_unexplained += s->rejected_unexplained;
	}
	v->ovl_total = novl;
	for (int i = 0; i < novl && i < MAX_OVERLAPS; i++) {
		const struct overlap *o = &sh->ovl[i];
		const struct section *in = &secs[o->sec_in];
		const struct section *occ = o->sec_occ >= 0 ? &secs[o->sec_occ] : NULL;

		if (sec_paused(in) || (occ && sec_paused(occ)))
			v->ovl_paused++;
		else if (occ && occ->stepped_down && occ->t_last_act < in->t_enter)
			v->ovl_after_loss++; /* the older holder had acted for the last time */
		else
			v->ovl_bad++;
	}
	if (novl > MAX_OVERLAPS)
		v->ovl_bad += novl - MAX_OVERLAPS; /* unclassified: count against */
	/* re-check the resource's log on its own */
	v->log_writes = sh->nwrites;
	for (int i = 0; i < sh->nwrites; i++) {
		const struct wentry *e = &wlog[i];

		if (e->token > v->max_token)
			v->max_token = e->token;
		if (i == 0)
			continue;
		if (e->token < wlog[i - 1].token)
			v->stale_accepted++;
		else if (e->token == wlog[i - 1].token && e->sec != wlog[i - 1].sec)
			v->dup_tokens++;
	}
	v->dup_tokens += (int64_t)sh->fence_dup;
	failovers(EV_KILL, nsec, &v->fail_kill_max, &v->fail_kill_med, &v->nfail_kill);
	failovers(EV_PAUSE, nsec, &v->fail_pause_max, &v->fail_pause_med, &v->nfail_pause);
}

static const char *mode_name(enum lk_mode m)
{
	return m == LK_MODE_KERNEL ? "kernel" : m == LK_MODE_LEASE ? "lease" : "auto";
}

static void print_table(const struct ctl *x, const struct verdict *v, double secs_run)
{
	const struct config *c = x->c;
	const char *eng = getenv("LOCKKIT_NO_URING");

	printf("chaos: mode %s, store %s, engine %s, workers %d, ttl %" PRIu64 " ms, seed %" PRIu64
	       ", profile %s\n",
	       mode_name(c->mode), c->store,
	       c->mode == LK_MODE_LEASE
	               ? (eng && !strcmp(eng, "1") ? "thread" : lk_engine_default())
	               : "-",
	       c->workers, c->ttl_ms, c->seed, c->profile);
	printf("  %-34s %12.1f\n", "run time (s)", secs_run);
	printf("  %-34s %12" PRId64 "\n", "critical sections", v->sections);
	printf("  %-34s %12d\n", "kills (SIGKILL)", x->kills);
	printf("  %-34s %12" PRId64 "\n", "  of which inside a section", v->killed_in);
	printf("  %-34s %12d\n", "pauses (SIGSTOP/SIGCONT)", x->pauses);
	printf("  %-34s %12" PRId64 "\n", "  sections with a pause", v->paused_secs);
	if (c->nclocks || x->steps)
		printf("  %-34s %12d\n", "clock steps", x->steps);
	printf("  %-34s %12d\n", "worker restarts", x->restarts);
	printf("  %-34s %12" PRId64 "\n", "sections stepped down (lost)", v->stepped_down);
	printf("  %-34s %12" PRId64 "\n", "accepted writes", v->writes_ok);
	printf("  %-34s %12" PRId64 "\n", "rejected writes", v->writes_rej);
	printf("  %-34s %12" PRId64 "\n", "  not explained by a pause", v->rej_unexplained);
	printf("  %-34s %12d\n", "entries finding a holder inside", atomic_load(&sh->novl_events));
	printf("  %-34s %12" PRId64 "\n", "overlaps (distinct older sections)", v->ovl_total);
	printf("  %-34s %12" PRId64 "\n", "  with a paused holder", v->ovl_paused);
	printf("  %-34s %12" PRId64 "\n", "  after the holder stepped down", v->ovl_after_loss);
	printf("  %-34s %12" PRId64 "\n", "  unexplained", v->ovl_bad);
	printf("  %-34s %12" PRId64 "\n", "stale-token writes accepted", v->stale_accepted);
	printf("  %-34s %12" PRId64 "\n", "tokens shared by two sections", v->dup_tokens);
	printf("  %-34s %12" PRIu64 "\n", "max token", v->max_token);
	printf("  %-34s %12d\n", "worker errors", x->worker_fail + atomic_load(&sh->nerr));
	printf("  %-34s %12d\n", "unexpected release errors", atomic_load(&sh->nrelease_err));
	printf("  %-34s %12d\n", "acquire -EIO after a pause", atomic_load(&sh->nacq_eio_paused));
	printf("  %-34s %12d\n", "release error after a pause", atomic_load(&sh->nrel_err_paused));
	if (v->nfail_kill)
		printf("  %-34s %8.1f / %.1f\n", "failover after kill, ms (med/max)",
		       v->fail_kill_med / 1e6, v->fail_kill_max / 1e6);
	if (v->nfail_pause)
		printf("  %-34s %8.1f / %.1f\n", "failover after pause, ms (med/max)",
		       v->fail_pause_med / 1e6, v->fail_pause_max / 1e6);
	for (int w = 0; w < c->workers; w++) {
		const struct clockspec *ck = clock_of(c, w);

		if (ck)
			printf("  worker %d clock: %s%s, last seen realtime %+" PRId64
			       " ms, boottime %+" PRId64 " ms\n",
			       w, ck->spec[0] ? ck->spec : "stepped",
			       ck->wall_only ? " (wall only)" : "",
			       atomic_load(&sh->slots[w].rt_off_ms),
			       atomic_load(&sh->slots[w].mono_off_ms));
	}
	fflush(stdout);
}

/* Whether the faked clocks were really in force: a test that ran without
 * libfaketime would prove nothing. */
static int clocks_ok(const struct ctl *x)
{
	const struct config *c = x->c;
	int ok = 1;

	for (int i = 0; i < c->nclocks; i++) {
		const struct slot *s = &sh->slots[c->clocks[i].worker];
		int64_t rt = atomic_load(&s->rt_off_ms), mono = atomic_load(&s->mono_off_ms);

		if (c->clocks[i].spec[0] && llabs(rt) < 3600 * 1000) {
			printf("chaos: worker %d did not run with a faked wall clock\n",
			       c->clocks[i].worker);
			ok = 0;
		}
		if (!c->clocks[i].spec[0] && x->steps && llabs(rt) < 60 * 1000) {
			printf("chaos: worker %d's clock was never stepped\n", c->clocks[i].worker);
			ok = 0;
		}
		if (c->clocks[i].wall_only && llabs(mono) > 60 * 1000) {
			printf("chaos: worker %d's boottime was faked despite wall-only\n",
			       c->clocks[i].worker);
			ok = 0;
		}
		if (!c->clocks[i].wall_only && llabs(mono) < 60 * 1000) {
			printf("chaos: worker %d's boottime was not faked\n", c->clocks[i].worker);
			ok = 0;
		}
	}
	return ok;
}

static int controller(struct config *c, const char *self)
{
	struct ctl x = {0};
	char shm_path[PATH_MAX];
	struct verdict v;
	int64_t t0, t_end, t_next_fault;
	int violations = 0, sanity = 1, rc;
	int max_sections;

	x.c = c;
	x.self = self;
	x.rng = c->seed ? c->seed : 1;
	snprintf(shm_path, sizeof(shm_path), "%s/chaos-shm.%d", c->dir, (int)getpid());
	x.shm_path = shm_path;
	snprintf(x.step_file, sizeof(x.step_file), "%s/faketimerc.%d", c->dir, (int)getpid());
	if (c->step_when) {
		x.step_offset_s = 0;
		write_step_file(&x);
		if (c->nclocks == 0) {
			c->clocks[0].worker = 0;
			c->clocks[0].spec[0] = 0;
			c->clocks[0].wall_only = c->step_wall_only;
			c->nclocks = 1;
		}
	}
	max_sections = c->sections > 0 ? c->sections : 2000000;
	shm_attach(shm_path, 1, max_sections, max_sections * c->writes + 16);
	sh->nworkers = (uint32_t)c->workers;
	sh->cfg = *c;
	snprintf(sh->store, sizeof(sh->store), "%s", c->store);

	t0 = now_ns();
	/* worker 0 first: with a clock spec it is the one that creates the
	 * lock, so a faked wall clock seeds the first token */
	start_worker(&x, 0);
	while (atomic_load(&sh->nsec) < 1 && now_ns() - t0 < 10 * 1000000000ll) {
		raw_sleep_us(2000);
		reap(&x, 1);
	}
	for (int w = 1; w < c->workers; w++)
		start_worker(&x, w);

	t_end = t0 + (int64_t)c->seconds * 1000000000;
	t_next_fault = now_ns() + 200 * 1000000ll;
	while (!atomic_load(&sh->stop)) {
		int64_t now = now_ns();
		uint64_t nap = 20;

		if (c->seconds > 0 && now >= t_end)
			break;
		if (c->sections > 0 && atomic_load(&sh->nsec) >= c->sections)
			break;
		reap(&x, 1);
		if (c->step_when)
			nap = maybe_step(&x);
		if (c->faults && now >= t_next_fault) {
			int w = pick_victim(&x);

			if (rng_range(&x.rng, 0, 99) < 50)
				do_kill(&x, w);
			else
				do_pause(&x, w);
			t_next_fault = now_ns() + (int64_t)rng_range(&x.rng, 100, 600) * 1000000;
		}
		raw_sleep_us(nap * 1000);
	}
	atomic_store(&sh->stop, 1);

	/* workers notice within one timed acquire and one section */
	for (int64_t until = now_ns() + 30 * 1000000000ll;;) {
		int left = 0;

		reap(&x, 0);
		for (int w = 0; w < c->workers; w++)
			left += x.pids[w] != 0;
		if (!left)
			break;
		if (now_ns() >= until) {
			fprintf(stderr, "chaos: workers did not stop; killing them\n");
			x.worker_fail++;
			for (int w = 0; w < c->workers; w++) {
				if (x.pids[w]) {
					atomic_store(&sh->slots[w].doomed, 1);
					kill(x.pids[w], SIGKILL);
				}
			}
			until = now_ns() + 3600 * 1000000000ll;
		}
		raw_sleep_us(5000);
	}

	judge(&v);
	print_table(&x, &v, (double)(now_ns() - t0) / 1e9);

	if (v.ovl_bad)
		printf("VIOLATION: %" PRId64 " overlapping critical sections among holders "
		       "that were not paused\n",
		       v.ovl_bad);
	if (v.stale_accepted)
		printf("VIOLATION: %" PRId64 " stale-token writes accepted\n", v.stale_accepted);
	if (v.dup_tokens)
		printf("VIOLATION: %" PRId64 " tokens reused (not strictly increasing)\n",
		       v.dup_tokens);
	if (v.rej_unexplained)
		printf("VIOLATION: %" PRId64 " rejected writes not explained by a pause\n",
		       v.rej_unexplained);
	violations =
		v.ovl_bad > 0 || v.stale_accepted > 0 || v.dup_tokens > 0 || v.rej_unexplained > 0;

	if (x.worker_fail || atomic_load(&sh->nerr) || atomic_load(&sh->nrelease_err)) {
		printf("FAILED: workers failed%s%s\n", sh->errmsg[0] ? ": " : "", sh->errmsg);
		sanity = 0;
	}
	if (v.sections < c->min_sections) {
		printf("FAILED: only %" PRId64 " critical sections (at least %d expected)\n",
		       v.sections, c->min_sections);
		sanity = 0;
	}
	if (c->faults && c->brk == BREAK_NONE && (x.kills == 0 || x.pauses == 0)) {
		printf("FAILED: the run injected no %s\n", x.kills ? "pause" : "kill");
		sanity = 0;
	}
	if (c->mode == LK_MODE_LEASE && c->faults && c->brk == BREAK_NONE && !v.paused_secs) {
		printf("FAILED: no pause hit a holder\n");
		sanity = 0;
	}
	if (c->step_when && !x.steps) {
		printf("FAILED: no clock step happened\n");
		sanity = 0;
	}
	if (!clocks_ok(&x))
		sanity = 0;

	if (c->expect == 1) {
		rc = violations ? 0 : 1;
		printf("%s: violations %s (expected: the checker must see them)\n",
		       rc ? "FAILED" : "OK", violations ? "found" : "not found");
	} else if (c->expect == 2) {
		/* mutual exclusion broken by the clock, fencing intact */
		int64_t early = v.ovl_bad + v.ovl_after_loss;
		int ok = early > 0 && !v.stale_accepted && !v.dup_tokens && sanity;

		rc = ok ? 0 : 1;
		printf("%s: expected takeovers of holders that were not paused, with fencing "
		       "intact: takeovers %" PRId64 " (%" PRId64 " while the old holder still "
		       "acted), stale accepted %" PRId64 ", reused tokens %" PRId64 "\n",
		       rc ? "FAILED" : "OK", early, v.ovl_bad, v.stale_accepted, v.dup_tokens);
	} else if (c->expect == 3) {
		/* a holder whose clock jumped forward must have stepped down */
		rc = violations || !sanity || !v.stepped_down ? 1 : 0;
		printf("%s: no violation %s, holders that stepped down early: %" PRId64 "\n",
		       rc ? "FAILED" : "OK", violations ? "FAILED" : "held", v.stepped_down);
	} else {
		rc = violations || !sanity ? 1 : 0;
		printf("%s\n", rc ? "FAILED" : "OK: no violation");
	}
	unlink(shm_path);
	unlink(x.step_file);
	return rc;
}

/* ------------------------------------------------------------------------
 * Options
 */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: chaos [options]\n"
	        "  --mode kernel|lease      locking mode (kernel)\n"
	        "  --store URL              store path or nfs:// URL, or env:NAME to read it from\n"
	        "                           the environment (default: a fresh directory under "
	        "--dir)\n"
	        "  --dir DIR                scratch directory ($LK_TEST_TMP or /tmp)\n"
	        "  --workers N              worker processes (4, at most %d)\n"
	        "  --seconds S              run for S seconds\n"
	        "  --sections N             stop after N critical sections\n"
	        "  --ttl MS                 lease TTL in ms (1000)\n"
	        "  --hold-us US             mean time inside a section (2000)\n"
	        "  --writes N               fenced writes per section (2)\n"
	        "  --seed N                 random seed (time)\n"
	        "  --profile ci|long        ci: 30 s; long: 100000 sections\n"
	        "  --no-faults              no kills or pauses\n"
	        "  --clock W:SPEC[:wall]    run worker W under libfaketime with offset SPEC\n"
	        "                           (\"+1d\"); wall: FAKETIME_DONT_FAKE_MONOTONIC=1\n"
	        "  --clock-step hold|wait   step worker 0's clock while it holds / waits\n"
	        "  --step SECONDS           size of each step (+3600)\n"
	        "  --step-wall-only         steps leave the monotonic clocks alone\n"
	        "  --min-sections N         fail with fewer sections (50)\n",
	        MAX_WORKERS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"mode", required_argument, NULL, 'm'},
		{"store", required_argument, NULL, 's'},
		{"dir", required_argument, NULL, 'd'},
		{"workers", required_argument, NULL, 'w'},
		{"seconds", required_argument, NULL, 'S'},
		{"sections", required_argument, NULL, 'n'},
		{"ttl", required_argument, NULL, 't'},
		{"hold-us", required_argument, NULL, 'H'},
		{"writes", required_argument, NULL, 'W'},
		{"seed", required_argument, NULL, 'r'},
		{"profile", required_argument, NULL, 'p'},
		{"no-faults", no_argument, NULL, 'F'},
		{"clock", required_argument, NULL, 'c'},
		{"clock-step", required_argument, NULL, 'C'},
		{"step", required_argument, NULL, 'T'},
		{"step-wall-only", no_argument, NULL, 'X'},
		{"min-sections", required_argument, NULL, 'M'},
		/* hidden: break safety on purpose, and say what the run must show */
		{"break", required_argument, NULL, 'B'},
		{"expect", required_argument, NULL, 'E'},
		/* internal: run as worker W on the shared area */
		{"worker", required_argument, NULL, 'k'},
		{"shm", required_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static struct config c;
	static char store_buf[PATH_MAX];
	const char *shm = NULL, *tmp;
	int worker = -1, opt, made_store = 0, r;

	c.mode = LK_MODE_KERNEL;
	c.workers = 4;
	c.ttl_ms = 1000;
	c.hold_us = 2000;
	c.writes = 2;
	c.faults = 1;
	c.min_sections = 50;
	c.step_s = 3600;
	c.seed = (uint64_t)now_ns() ^ (uint64_t)getpid() << 20;
	c.profile = "custom";
	tmp = getenv("LK_TEST_TMP");
	c.dir = tmp && *tmp ? tmp : "/tmp";

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (!strcmp(optarg, "kernel"))
				c.mode = LK_MODE_KERNEL;
			else if (!strcmp(optarg, "lease"))
				c.mode = LK_MODE_LEASE;
			else
				die("--mode: kernel or lease");
			break;
		case 's':
			/* env:NAME takes the store from the environment (the
			 * test NFS server's URL is known only there) */
			if (!strncmp(optarg, "env:", 4)) {
				c.store = getenv(optarg + 4);
				if (!c.store || !*c.store)
					die("--store %s: %s is not set", optarg, optarg + 4);
			} else {
				c.store = optarg;
			}
			break;
		case 'd':
			c.dir = optarg;
			break;
		case 'w':
			c.workers = atoi(optarg);
			break;
		case 'S':
			c.seconds = atoi(optarg);
			break;
		case 'n':
			c.sections = atoi(optarg);
			break;
		case 't':
			c.ttl_ms = strtoull(optarg, NULL, 10);
			break;
		case 'H':
			c.hold_us = strtoull(optarg, NULL, 10);
			break;
		case 'W':
			c.writes = atoi(optarg);
			break;
		case 'r':
			c.seed = strtoull(optarg, NULL, 10);
			break;
		case 'p':
			c.profile = optarg;
			if (!strcmp(optarg, "ci")) {
				c.seconds = 30;
			} else if (!strcmp(optarg, "long")) {
				c.sections = 100000;
				c.seconds = 0;
			} else {
				die("--profile: ci or long");
			}
			break;
		case 'F':
			c.faults = 0;
			break;
		case 'c': {
			struct clockspec *ck = &c.clocks[c.nclocks];
			char *p, *q;

			if (c.nclocks == MAX_CLOCKS)
				die("at most %d --clock", MAX_CLOCKS);
			ck->worker = (int)strtol(optarg, &p, 10);
			if (*p != ':')
				die("--clock W:SPEC[:wall]");
			q = strchr(p + 1, ':');
			snprintf(ck->spec, sizeof(ck->spec), "%.*s",
			         (int)(q ? q - (p + 1) : (ptrdiff_t)strlen(p + 1)), p + 1);
			ck->wall_only = q && !strcmp(q + 1, "wall");
			if (!ck->spec[0])
				die("--clock: empty offset");
			c.nclocks++;
			break;
		}
		case 'C':
			if (!strcmp(optarg, "hold"))
				c.step_when = STEP_HOLD;
			else if (!strcmp(optarg, "wait"))
				c.step_when = STEP_WAIT;
			else
				die("--clock-step: hold or wait");
			break;
		case 'T':
			c.step_s = strtoll(optarg, NULL, 10);
			break;
		case 'X':
			c.step_wall_only = 1;
			break;
		case 'M':
			c.min_sections = atoi(optarg);
			break;
		case 'B':
			if (!strcmp(optarg, "nolock"))
				c.brk = BREAK_NOLOCK;
			else if (!strcmp(optarg, "stale"))
				c.brk = BREAK_STALE;
			else
				die("--break: nolock or stale");
			break;
		case 'E':
			if (!strcmp(optarg, "violation"))
				c.expect = 1;
			else if (!strcmp(optarg, "fenced-overlap"))
				c.expect = 2;
			else if (!strcmp(optarg, "stepdown"))
				c.expect = 3;
			else
				die("--expect: violation, fenced-overlap or stepdown");
			break;
		case 'k':
			worker = atoi(optarg);
			break;
		case 'K':
			shm = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (worker >= 0) {
		if (!shm || worker >= MAX_WORKERS)
			die("--worker needs --shm");
		shm_attach(shm, 0, 0, 0);
		/* a private copy: the pointers in it are this process's own */
		c = sh->cfg;
		c.store = sh->store;
		c.dir = NULL;
		c.profile = NULL;
		return worker_main(&c, worker);
	}
	if (c.workers < 2 || c.workers > MAX_WORKERS)
		die("--workers: 2 to %d", MAX_WORKERS);
	if (c.writes < 1)
		die("--writes: at least 1");
	if (c.seconds <= 0 && c.sections <= 0)
		c.seconds = 30;
	if (!c.store) {
		snprintf(store_buf, sizeof(store_buf), "%s/chaos-store.XXXXXX", c.dir);
		if (mkdir(c.dir, 0700) < 0 && errno != EEXIST)
			die("cannot create %s: %s", c.dir, strerror(errno));
		if (!mkdtemp(store_buf))
			die("cannot create a store under %s: %s", c.dir, strerror(errno));
		c.store = store_buf;
		made_store = 1;
	}
	snprintf(c.lockname, sizeof(c.lockname), "chaos-%s-%d",
	         c.mode == LK_MODE_KERNEL ? "k" : "l", (int)getpid());
	r = controller(&c, "/proc/self/exe");
	if (made_store)
		rm_tree(store_buf);
	return r;
}
