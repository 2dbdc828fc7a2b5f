// SPDX-License-Identifier: MIT
/*
 * lockctl prune removes what nobody holds and keeps what somebody does, in
 * both modes, and never lets a removal give a lock two holders: a handle
 * opened before the removal, or a waiter blocked on the removed file, finds
 * out when it gets the lock and uses the name afresh (a test of the
 * acquire side on its own, with the prune held inside its unlink), and
 * processes acquiring in a loop while prunes run against them never
 * overlap, checked by an occupancy word in shared memory that does not use
 * the library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "internal.h"
#include "sys.h"

static char buf[65536];

static struct lk_store *store_open(struct tc *t)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;

	assert_int_equal(lk_store_open(t->store, &o, &st), 0);
	return st;
}

static int entry_exists(struct tc *t, const char *name)
{
	char p[2 * TC_DIR_MAX];
	struct stat s;

	snprintf(p, sizeof(p), "%s/%s", t->store, name);
	return lstat(p, &s) == 0;
}

/* The line of the prune output about name. */
static const char *line_for(const char *out, const char *verb, const char *name)
{
	char want[256];

	snprintf(want, sizeof(want), "%s %s (", verb, name);
	return strstr(out, want);
}

static void test_prune_kernel(void **state)
{
	struct tc *t = *state;
	pid_t h;

	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "--mode", "kernel", "k1", "--", "true")), 0);
	h = tc_hold(t, "k2", NULL, "k2.ready");
	assert_true(h > 0);
	assert_int_equal(tc_run(t, "p", TC_ARGV("prune")), 0);
	assert_true(tc_read(t, "p.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(line_for(buf, "removed", "k1"));
	assert_non_null(strstr(buf, "kept k2 (kernel mode): held"));
	assert_non_null(strstr(buf, "prune: 1 removed, 1 kept"));
	assert_false(entry_exists(t, "k1"));
	assert_true(entry_exists(t, "k2"));
	/* the holder is untouched, and the removed name works again */
	assert_true(tc_alive(h));
	assert_int_equal(tc_run(t, "r2", TC_ARGV("run", "-n", "k2", "--", "true")), 1);
	assert_int_equal(tc_run(t, "r3", TC_ARGV("run", "k1", "--", "true")), 0);
	tc_unhold(h);
}

static void test_prune_lease(void **state)
{
	struct tc *t = *state;
	struct lk_status s = {.size = sizeof(s)}, s2 = {.size = sizeof(s2)};
	struct lk_store *st;
	char obj[1024], v[64], p[2 * TC_DIR_MAX];
	uint64_t old_token;
	pid_t h;
	int fd;

	assert_int_equal(tc_run(t, "r1", TC_ARGV("run", "--ttl=2s", "l1", "--", "true")), 0);
	assert_int_equal(tc_run(t, "r3", TC_ARGV("run", "--ttl=2s", "l3", "--", "true")), 0);
	snprintf(p, sizeof(p), "%s/l3/notes.txt", t->store);
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	h = tc_hold(t, "l2", "--ttl=2s", "l2.ready");
	assert_true(h > 0);
	st = store_open(t);
	assert_int_equal(lk_lock_status(st, "l1", &s), 0);
	old_token = s.token;
	assert_int_equal(lk_lock_status(st, "l2", &s2), 0);

	assert_int_equal(tc_run(t, "p", TC_ARGV("prune", "--json")), 0);
	assert_true(tc_read(t, "p.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_int_equal(tc_json_object(buf, "l1", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "removed", v, sizeof(v)), 0);
	assert_string_equal(v, "true");
	assert_int_equal(tc_json_member(obj, "mode", v, sizeof(v)), 0);
	assert_string_equal(v, "\"lease\"");
	assert_int_equal(tc_json_object(buf, "l2", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "removed", v, sizeof(v)), 0);
	assert_string_equal(v, "false");
	assert_non_null(strstr(obj, "held"));
	assert_int_equal(tc_json_object(buf, "l3", obj, sizeof(obj)), 0);
	assert_int_equal(tc_json_member(obj, "removed", v, sizeof(v)), 0);
	assert_string_equal(v, "false");
	assert_non_null(strstr(obj, "notes.txt"));
	assert_false(entry_exists(t, "l1"));
	assert_true(entry_exists(t, "l2"));
	assert_true(entry_exists(t, "l3/notes.txt"));

	/* the holder still holds, with the same token, and renews */
	tc_sleep_ms(700);
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "l2", &s), 0);
	assert_true(s.held && !s.broken);
	assert_int_equal(s.token, s2.token);
	assert_true(tc_alive(h));
	/* the removed lock is made anew, with higher tokens */
	assert_int_equal(tc_run(t, "r4", TC_ARGV("run", "--ttl=2s", "l1", "--", "true")), 0);
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "l1", &s), 0);
	assert_true(s.token > old_token);
	lk_store_close(st);
	tc_unhold(h);
}

/*
 * A creator that read the clock for a lock directory's first token and was
 * paused before renaming the directory into place must not bring the lock
 * back with lower tokens after a prune removed a newer incarnation of it.
 */
static void test_prune_paused_creator(void **state)
{
	struct tc *t = *state;
	struct lk_status s = {.size = sizeof(s)};
	struct lk_store *st = store_open(t);
	struct lk_err e = {0};
	char from[2 * TC_DIR_MAX], to[2 * TC_DIR_MAX];
	uint64_t birth_token, used_token;

	/* the paused creator's directory: made, then moved to its temporary
	 * name, as if its rename had not been sent yet */
	assert_int_equal(lk__lease_create_dir(st, "seed", &e), 0);
	assert_int_equal(lk_lock_status(st, "seed", &s), 0);
	birth_token = s.token;
	snprintf(from, sizeof(from), "%s/seed", t->store);
	snprintf(to, sizeof(to), "%s/.n.00000000deadbeef", t->store);
	assert_int_equal(rename(from, to), 0);
	tc_sleep_ms(5);

	/* meanwhile the lock is made by someone else, used, and pruned */
	assert_int_equal(tc_run(t, "r1", TC_ARGV("run", "--ttl=2s", "p", "--", "true")), 0);
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "p", &s), 0);
	used_token = s.token;
	assert_true(used_token > birth_token);
	assert_int_equal(tc_run(t, "pr", TC_ARGV("prune")), 0);
	assert_false(entry_exists(t, "p"));

	/* the creator resumes: its directory is gone, so its rename fails and
	 * it would start again with a fresh clock reading */
	assert_false(entry_exists(t, ".n.00000000deadbeef"));
	snprintf(from, sizeof(from), "%s/p", t->store);
	assert_int_equal(rename(to, from), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(tc_run(t, "r2", TC_ARGV("run", "--ttl=2s", "p", "--", "true")), 0);
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	assert_int_equal(lk_lock_status(st, "p", &s), 0);
	assert_true(s.token > used_token);
	lk_store_close(st);
}

static void test_prune_older_than(void **state)
{
	struct tc *t = *state;

	assert_int_equal(tc_run(t, "r1", TC_ARGV("run", "--mode", "kernel", "k", "--", "true")), 0);
	assert_int_equal(tc_run(t, "r2", TC_ARGV("run", "--ttl=2s", "l", "--", "true")), 0);
	assert_int_equal(tc_run(t, "p1", TC_ARGV("prune", "--older-than", "1h")), 0);
	assert_true(tc_read(t, "p1.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "kept k (kernel mode): used"));
	assert_non_null(strstr(buf, "kept l (lease mode): active"));
	assert_true(entry_exists(t, "k") && entry_exists(t, "l"));
	tc_sleep_ms(1100);
	assert_int_equal(tc_run(t, "p2", TC_ARGV("prune", "--older-than=1s")), 0);
	assert_true(tc_read(t, "p2.out", buf, sizeof(buf)) > 0);
	assert_non_null(line_for(buf, "removed", "k"));
	assert_non_null(line_for(buf, "removed", "l"));
	assert_false(entry_exists(t, "k") || entry_exists(t, "l"));
	assert_int_equal(tc_run(t, "p3", TC_ARGV("prune", "--older-than")), 64);
	assert_int_equal(tc_run(t, "p4", TC_ARGV("prune", "--older-than", "soon")), 64);
}

/* A lease whose holder died on this host is free at once; a broken one is
 * watched for T*(1+rho) first, or kept with --no-wait. */
static void test_prune_dead_and_broken(void **state)
{
	struct tc *t = *state;
	int64_t t0;
	pid_t kid, h;
	int status;

	kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		struct lk_store_opts so = LK_STORE_OPTS_INIT;
		struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
		struct lk_store *st;
		struct lk_lock *lk;

		o.mode = LK_MODE_LEASE;
		o.ttl_ms = 10000;
		if (lk_store_open(t->store, &so, &st) < 0 ||
		    lk_lock_open(st, "dead", &o, &lk) < 0 || lk_lock_acquire(lk, 0) < 0)
			_exit(2);
		_exit(0); /* no release: the record stays HELD by a dead process */
	}
	assert_int_equal(tc_wait(kid, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 0);

	h = tc_hold(t, "brk", "--ttl=2s", "brk.ready");
	assert_true(h > 0);
	assert_int_equal(tc_run(t, "b", TC_ARGV("break", "brk", "--force")), 0);
	t0 = tc_now_ms();
	assert_int_equal(tc_wait(h, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 75);

	assert_int_equal(tc_run(t, "p1", TC_ARGV("prune", "--no-wait")), 0);
	assert_true(tc_read(t, "p1.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(line_for(buf, "removed", "dead"));
	assert_non_null(strstr(buf, "kept brk (lease mode): broken"));
	assert_false(entry_exists(t, "dead"));
	assert_true(entry_exists(t, "brk"));

	assert_int_equal(tc_run(t, "p2", TC_ARGV("prune")), 0);
	assert_true(tc_read(t, "p2.out", buf, sizeof(buf)) > 0);
	print_message("%s", buf);
	assert_non_null(line_for(buf, "removed", "brk"));
	assert_false(entry_exists(t, "brk"));
	/* watched as a waiter would: not before T*(1+rho) after the break */
	assert_true(tc_now_ms() - t0 >= 2020);
}

/* A handle opened before the removal must not lock the removed file while
 * someone else locks the new one. */
static void test_prune_stale_handle(void **state)
{
	struct tc *t = *state;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = store_open(t);
	struct lk_status s = {.size = sizeof(s)};
	struct lk_lock *lk = NULL;
	pid_t h;

	o.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_lock_open(st, "w", &o, &lk), 0);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_int_equal(lk_lock_release(lk), 0);
	assert_int_equal(tc_run(t, "p", TC_ARGV("prune")), 0);
	assert_false(entry_exists(t, "w"));
	h = tc_hold(t, "w", NULL, "w.ready");
	assert_true(h > 0);
	assert_int_equal(lk_lock_acquire(lk, 0), -EWOULDBLOCK);
	assert_int_equal(lk_lock_acquire(lk, 200), -ETIMEDOUT);
	assert_int_equal(lk_lock_status(st, "w", &s), 0);
	tc_unhold(h);
	assert_int_equal(lk_lock_acquire(lk, TC_BOUND_MS), 0);
	assert_true(lk_lock_token(lk) > s.token);
	lk_lock_close(lk);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * A waiter blocked on the file while the prune holds it: the prune is kept
 * inside its unlink (through the posix backend's syscall table) until the
 * waiter is asleep in the kernel.
 */
static atomic_int in_unlink, slow_unlink;
static int (*real_unlinkat)(int, const char *, int);

static int slow_unlinkat(int dfd, const char *path, int flags)
{
	if (atomic_load(&slow_unlink) && !strcmp(path, "bw")) {
		atomic_store(&in_unlink, 1);
		tc_sleep_ms(400);
	}
	return real_unlinkat(dfd, path, flags);
}

struct waiter {
	struct lk_lock *lk;
	atomic_int done;
	int r;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->r = lk_lock_acquire(w->lk, TC_BOUND_MS);
	atomic_store(&w->done, 1);
	return NULL;
}

struct pruner {
	struct lk_store *st;
	struct lk__prune_res res;
	struct lk_err err;
	int r;
};

static void *prune_thread(void *arg)
{
	struct pruner *p = arg;

	p->r = lk__lock_prune(p->st, "bw", "test: prune", -1, 0, &p->res, &p->err);
	return NULL;
}

static void test_prune_blocked_waiter(void **state)
{
	struct tc *t = *state;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = store_open(t);
	struct lk_status s = {.size = sizeof(s)};
	struct pruner p = {.st = store_open(t), .r = 1};
	struct waiter w = {.r = 1};
	struct lk_lock *other = NULL;
	pthread_t pth, wth;
	uint64_t first;
	int64_t t0;

	o.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_lock_open(st, "bw", &o, &w.lk), 0);
	assert_int_equal(lk_lock_acquire(w.lk, 0), 0);
	first = lk_lock_token(w.lk);
	assert_int_equal(lk_lock_release(w.lk), 0);

	real_unlinkat = lk__posix_sys.unlinkat;
	lk__posix_sys.unlinkat = slow_unlinkat;
	atomic_store(&in_unlink, 0);
	atomic_store(&slow_unlink, 1);
	assert_int_equal(pthread_create(&pth, NULL, prune_thread, &p), 0);
	t0 = tc_now_ms();
	while (!atomic_load(&in_unlink) && tc_now_ms() - t0 < TC_BOUND_MS)
		tc_sleep_ms(1);
	assert_true(atomic_load(&in_unlink));
	/* the prune holds the file, marked, and is about to unlink it */
	assert_int_equal(pthread_create(&wth, NULL, wait_thread, &w), 0);
	tc_sleep_ms(100);
	assert_false(atomic_load(&w.done));
	pthread_join(pth, NULL);
	atomic_store(&slow_unlink, 0);
	lk__posix_sys.unlinkat = real_unlinkat;
	assert_int_equal(p.r, 0);
	assert_int_equal(p.res.removed, 1);
	pthread_join(wth, NULL);
	assert_int_equal(w.r, 0);

	/* what the waiter holds is the lock that the name stands for now */
	assert_int_equal(lk_lock_status(st, "bw", &s), 0);
	assert_true(s.exists && s.held);
	assert_int_equal(s.token, lk_lock_token(w.lk));
	assert_true(s.token > first);
	assert_int_equal(lk_lock_open(st, "bw", &o, &other), 0);
	assert_int_equal(lk_lock_acquire(other, 0), -EWOULDBLOCK);
	lk_lock_close(other);
	lk_lock_close(w.lk);
	lk_store_close(p.st);
	lk_store_close(st);
}

/* ------------------------------------------------------------------------
 * Prunes racing acquirers: processes loop acquire, critical section,
 * release on one lock, some with a handle kept open for the whole run and
 * some opening it anew each time, while this process prunes the lock as
 * fast as it can. The witness is an occupancy word in shared memory.
 */
struct shared {
	atomic_int stop;
	atomic_int occ;
	atomic_int overlaps;
	atomic_int sections;
	atomic_int errors;
	atomic_int stale;
	atomic_ullong max_tok;
	char errmsg[256];
};

static void child_loop(const char *store, struct shared *sh, const char *name, enum lk_mode mode,
                       int reopen)
{
	struct lk_store_opts so = LK_STORE_OPTS_INIT;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	unsigned seed = (unsigned)getpid();
	int r;

	if (lk_store_open(store, &so, &st) < 0)
		_exit(2);
	o.mode = mode;
	if (mode == LK_MODE_LEASE)
		o.ttl_ms = 1000;
	while (!atomic_load(&sh->stop)) {
		uint64_t tok;

		if (!lk && (r = lk_lock_open(st, name, &o, &lk)) < 0) {
			atomic_fetch_add(&sh->errors, 1);
			snprintf(sh->errmsg, sizeof(sh->errmsg), "open: %s", lk_store_errmsg(st));
			lk = NULL;
			usleep(1000);
			continue;
		}
		r = lk_lock_acquire(lk, 5000);
		if (r < 0) {
			atomic_fetch_add(&sh->errors, 1);
			snprintf(sh->errmsg, sizeof(sh->errmsg), "acquire: %d %s", r,
			         lk_lock_errmsg(lk));
			continue;
		}
		if (atomic_fetch_add(&sh->occ, 1) != 0)
			atomic_fetch_add(&sh->overlaps, 1);
		tok = lk_lock_token(lk);
		if (tok <= atomic_load(&sh->max_tok))
			atomic_fetch_add(&sh->stale, 1);
		atomic_store(&sh->max_tok, tok);
		usleep(100 + rand_r(&seed) % 400);
		atomic_fetch_sub(&sh->occ, 1);
		atomic_fetch_add(&sh->sections, 1);
		if (lk_lock_release(lk) < 0) {
			atomic_fetch_add(&sh->errors, 1);
			snprintf(sh->errmsg, sizeof(sh->errmsg), "release: %s", lk_lock_errmsg(lk));
		}
		if (reopen) {
			lk_lock_close(lk);
			lk = NULL;
		}
		usleep(rand_r(&seed) % 600);
	}
	lk_lock_close(lk);
	lk_store_close(st);
	_exit(0);
}

static void race(struct tc *t, const char *name, enum lk_mode mode, int ms)
{
	struct shared *sh =
		mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct lk_store *st;
	pid_t kids[3], parent;
	int removed = 0, kept = 0, perr = 0, status;
	char lastperr[512] = "";
	int64_t t0;

	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	parent = getpid();
	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			/* never outlive the test, even one killed by a timeout */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(3);
			child_loop(t->store, sh, name, mode, i != 0);
		}
	}
	st = store_open(t);
	t0 = tc_now_ms();
	while (tc_now_ms() - t0 < ms) {
		struct lk__prune_res res;
		struct lk_err err = {0};
		int r = lk__lock_prune(st, name, "test: prune", -1, 0, &res, &err);

		if (r < 0) {
			perr++;
			snprintf(lastperr, sizeof(lastperr), "%d %s", r, err.msg);
		} else if (res.removed) {
			removed++;
		} else {
			kept++;
		}
		usleep(200);
	}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(tc_wait(kids[i], TC_BOUND_MS, &status), 0);
		assert_int_equal(tc_code(status), 0);
	}
	lk_store_close(st);
	print_message("%s: %d sections, %d prunes removed the lock, %d kept it, %d prune "
	              "errors (%s); %d overlaps, %d stale tokens, %d acquirer errors (%s)\n",
	              name, atomic_load(&sh->sections), removed, kept, perr, lastperr,
	              atomic_load(&sh->overlaps), atomic_load(&sh->stale), atomic_load(&sh->errors),
	              sh->errmsg);
	assert_int_equal(atomic_load(&sh->overlaps), 0);
	assert_int_equal(atomic_load(&sh->stale), 0);
	assert_int_equal(atomic_load(&sh->errors), 0);
	assert_int_equal(perr, 0);
	assert_true(atomic_load(&sh->sections) > 20);
	assert_true(removed > 5);
	munmap(sh, sizeof(*sh));
}

static void test_prune_race_kernel(void **state)
{
	race(*state, "rk", LK_MODE_KERNEL, 3000);
}

static void test_prune_race_lease(void **state)
{
	race(*state, "rl", LK_MODE_LEASE, 4000);
}

/* Somebody waits in the kernel for a lock on the file with this inode. */
static int blocked_on(ino_t ino)
{
	char line[256], want[64];
	FILE *f = fopen("/proc/locks", "re");
	int found = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), ":%llu ", (unsigned long long)ino);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "->") && strstr(line, want);
	fclose(f);
	return found;
}

/* pid has a descriptor open on the file with this device and inode. */
static int has_fd_on(pid_t pid, dev_t dev, ino_t ino)
{
	char dir[64], p[PATH_MAX];
	struct dirent *d;
	struct stat s;
	DIR *dp;
	int found = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	if (!dp)
		return 0;
	while (!found && (d = readdir(dp))) {
		snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
		found = d->d_name[0] != '.' && stat(p, &s) == 0 && s.st_dev == dev &&
		        s.st_ino == ino;
	}
	closedir(dp);
	return found;
}

/*
 * lockctl run's guardian shares the lock's open file description, so that
 * the lock outlives a SIGKILLed lockctl until COMMAND is dead. A waiter
 * whose file is pruned under it takes the lock on the file now at the name:
 * its guardian must share that one, not the removed file.
 */
static void test_prune_under_run_waiter(void **state)
{
	struct tc *t = *state;
	char path[2 * TC_DIR_MAX], ready[TC_DIR_MAX + 32], script[TC_DIR_MAX + 96];
	struct stat before, now;
	pid_t h, w, g, cmd;
	int status;
	int64_t end;

	h = tc_hold(t, "k", NULL, "h.ready");
	assert_true(h > 0);
	snprintf(path, sizeof(path), "%s/k", t->store);
	assert_int_equal(stat(path, &before), 0);
	snprintf(script, sizeof(script), "echo $$ > '%s'; exec sleep 60",
	         tc_path(t, "w.ready", ready, sizeof(ready)));
	w = tc_spawn(t, "w", TC_ARGV("run", "k", "--", "sh", "-c", script));
	assert_true(w > 0);
	for (end = tc_now_ms() + TC_BOUND_MS; !blocked_on(before.st_ino);) {
		assert_true(tc_now_ms() < end);
		tc_sleep_ms(5);
	}
	/* stopped, the waiter cannot take the lock when it is let go */
	assert_int_equal(kill(w, SIGSTOP), 0);
	assert_int_equal(tc_wait_stopped(w, 1, TC_BOUND_MS), 0);
	tc_unhold(h);
	assert_int_equal(tc_run(t, "p", TC_ARGV("prune")), 0);
	assert_int_equal(tc_read(t, "p.out", buf, sizeof(buf)) > 0, 1);
	assert_non_null(line_for(buf, "removed", "k"));
	assert_int_equal(kill(w, SIGCONT), 0);

	/* it holds the lock on the new file, and so does its guardian */
	assert_int_equal(tc_wait_line(t, "w.ready", TC_BOUND_MS), 0);
	assert_int_equal(stat(path, &now), 0);
	assert_true(now.st_ino != before.st_ino || now.st_dev != before.st_dev);
	g = tc_find_child(w, "lockctl-guard");
	assert_true(g > 0);
	if (!has_fd_on(g, now.st_dev, now.st_ino))
		fail_msg("the guardian does not share the lock file at the name: a SIGKILLed "
		         "lockctl would free the lock while COMMAND runs");
	assert_int_equal(tc_run(t, "busy", TC_ARGV("run", "-n", "k", "--", "true")), 1);
	/*
	 * SIGKILL lockctl: the lock stays held until COMMAND is gone. Whenever
	 * a try finds it free, COMMAND must already be dead (a process alive
	 * after the try was alive during it).
	 */
	cmd = (pid_t)tc_read_long(t, "w.ready");
	assert_true(cmd > 0);
	assert_int_equal(kill(w, SIGKILL), 0);
	tc_wait(w, TC_BOUND_MS, &status);
	for (end = tc_now_ms() + TC_BOUND_MS;;) {
		int free_now = tc_run(t, "free", TC_ARGV("run", "-n", "k", "--", "true")) == 0;
		char st = tc_proc_state(cmd);

		if (free_now) {
			if (st && st != 'Z')
				fail_msg("the lock was free while COMMAND (pid %d, state %c) ran",
				         (int)cmd, st);
			break;
		}
		assert_true(tc_now_ms() < end);
		tc_sleep_ms(5);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prune_kernel, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_lease, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_paused_creator, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_older_than, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_dead_and_broken, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_stale_handle, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_blocked_waiter, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_under_run_waiter, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_race_kernel, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_prune_race_lease, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests_name("lockctl prune", tests, NULL, NULL);
}
