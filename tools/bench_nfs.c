// SPDX-License-Identifier: MIT
/*
 * bench_nfs: what lease mode costs on an NFS export reached through the
 * nfs:// backend, in the currencies that decide it there: requests sent to
 * the server, round trips waited for, and how long a dead holder keeps a
 * lease from the next one.
 *
 *  1. RPCs per operation. The backend counts every NFS request it sends
 *     (lk__nfs_calls(): it speaks NFSv3 through libnfs's raw RPC layer, one
 *     call one request, so nothing libnfs adds goes uncounted); the kernel's
 *     count of TCP data segments sent on the store's connection
 *     (lk__nfs_rpcs()) is shown next to it as a cross-check: requests sent
 *     back to back may share a segment, a retransmission adds one. The
 *     acquire of a lock that exists and is free is counted by a handle that
 *     has just seen another client release it (two stores, two connections,
 *     taking turns: a lock passed between hosts), and by a fresh handle that
 *     remembers no generation; the acquire after one's own release and the
 *     first acquire, which creates the lock, are shown for reference. A
 *     renewal is counted over a window in which the lease is held and nothing
 *     else touches the store: requests sent divided by renewals made (a
 *     failed one sends its requests too), both sampled only while no renewal
 *     is in flight, so no renewal is cut in half. Release and lk_lock_status() are counted per
 * call; the locks counted there keep the default TTL (10 s) and are held for milliseconds, so no
 * renewal falls inside a counted call. The notes list what each backend primitive costs on the same
 * store, so that a count can be read off the code path that makes it. These goals are absolute
 * counts: there is nothing to compare with.
 *  2. Uncontended acquire latency, the median over acquire+release cycles,
 *     against one GETATTR round trip: nfs_fstat64() on a file opened
 *     beforehand, through a separate libnfs context with its own connection
 *     to the same server. GETATTR is the cheapest request a server answers
 *     and carries no payload, so the ratio says how many of the cheapest
 *     possible round trips an acquire is worth, on whatever network and
 *     server the run meets. Acquire cycles and GETATTRs alternate in batches
 *     so that drift (a neighbour's load, the server's caches) falls on both.
 *  3. Failover after the holder is SIGKILLed, as a fraction of the TTL (2 s).
 *     The holder is a child process with its own store whose boot id is
 *     replaced by a random one before it acquires: its record looks as if it
 *     came from another machine, so the waiter (this process, with a store
 *     and connection of its own) cannot use the same-host fast path and has
 *     to watch the record stay unchanged for T*(1+rho), as a waiter on
 *     another host would. The TTL is the fair baseline because it is what
 *     any lease must wait out when the dead holder cannot say so; the waiter
 *     times it from the last change it saw, which comes before the kill by
 *     up to one renewal interval, so runs a little under 1.0 are expected.
 *     The kill falls at a random phase of the holder's renewal cycle. The
 *     bound for the worst run is the protocol's own: (1+rho) plus two polls
 *     of the waiter.
 *
 * With --start-server the program starts a throwaway nfs-ganesha through
 * tools/nfs-server.sh and a guard process that stops it when this process
 * ends, however it ends. The program exits 0 when a goal is missed: it
 * measures, it does not judge; it exits 1 when anything fails to run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* libnfs.h uses struct timeval without including <sys/time.h> itself. */
#include <nfsc/libnfs.h>

#include "bench_common.h"
#include "engine.h"
#include "internal.h"
#include "lockkit.h"
#include "lrecord.h"

#ifndef LK_HAVE_NFS
#error "bench_nfs needs a build with the nfs:// backend (libnfs)"
#endif

#define EXIT_FAIL  1
#define EXIT_USAGE 64

#define DEF_NFS_PORT "20690"
#define DEF_MNT_PORT "20691"

#define FAIL_TTL_MS    2000 /* 3: the lease the holder dies with */
#define RENEW_TTL_MS   1000 /* 1: the lease whose renewals are counted */
#define RENEW_MS       100  /* 1: ... renewed often, so a short window sees many */
#define ACQ_TIMEOUT_MS 10000

static const char usage[] =
	"Usage: bench_nfs [--quick] [--runs N] URL\n"
	"       bench_nfs [--quick] [--runs N] [--tools DIR] --start-server\n"
	"\n"
	"Measure lease mode on an nfs:// store: RPCs per operation, acquire latency\n"
	"in GETATTR round trips, and failover time over the TTL.\n"
	"\n"
	"  URL             an nfs://SERVER/EXPORT/DIR?version=3... store URL; the\n"
	"                  run's lock directories in it are removed at the end\n"
	"  --start-server  start a throwaway nfs-ganesha with tools/nfs-server.sh in\n"
	"                  a temporary directory (root needed), stopped at the end;\n"
	"                  ports $LK_NFS_PORT and $LK_NFS_MNT_PORT, by default\n"
	"                  " DEF_NFS_PORT " and " DEF_MNT_PORT "\n"
	"  --tools DIR     where nfs-server.sh is (default: tools/ of the source tree\n"
	"                  when built with LK_SOURCE_DIR, else ../tools next to this\n"
	"                  program)\n"
	"  --quick         few iterations (well under 30 s)\n"
	"  --runs N        failover runs (default 7, quick 3)\n"
	"\n"
	"Exit status: 0 when everything ran (goals missed or not), 1 when a\n"
	"measurement could not run, 64 usage error.\n";

struct params {
	int rpc_iters;       /* 1: counted calls per kind of operation */
	int renew_window_ms; /* 1: how long renewals are counted */
	int lat_batches;     /* 2: alternating batches */
	int lat_cycles;      /* 2: acquire+release cycles per batch */
	int lat_getattrs;    /* 2: GETATTRs per batch */
	int fail_runs;       /* 3 */
};

static const struct params params_default = {
	.rpc_iters = 20,
	.renew_window_ms = 5000,
	.lat_batches = 10,
	.lat_cycles = 20,
	.lat_getattrs = 100,
	.fail_runs = 7,
};

static const struct params params_quick = {
	.rpc_iters = 5,
	.renew_window_ms = 1000,
	.lat_batches = 3,
	.lat_cycles = 10,
	.lat_getattrs = 50,
	.fail_runs = 3,
};

enum unit { U_RPC, U_TIME };

#define MAX_ROWS  16
#define MAX_NOTES 16
#define NOTE_LEN  512
#define MAX_MADE  8

struct bench {
	struct params p;
	char url[4200];
	char prefix[32];      /* lock names of this run start with it */
	struct lk_store *st;  /* client A */
	struct lk_store *st2; /* client B: another connection, as another host */
	double renew_rpcs;    /* 1: counted before the rows are added */
	double own_acq_rpcs;  /* 1 -> 2: what the acquires of section 2 send */
	struct bench_table t;
	char made[MAX_MADE][LK_NAME_MAX + 1]; /* lock directories to remove */
	int nmade;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

const char bench_name[] = "bench_nfs";

static void add_row(struct bench *b, const char *name, enum unit unit, double val, double base,
                    enum bench_goal goal, double goal_val)
{
	bench_set_row(bench_add_row(&b->t, "%s", name), unit, val, base, goal, goal_val);
}

/* The lock name for one part of the run, remembered for the clean-up. */
static const char *lock_name(struct bench *b, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", b->prefix, what);
	for (int i = 0; i < b->nmade; i++)
		if (!strcmp(b->made[i], buf))
			return buf;
	if (b->nmade < MAX_MADE)
		snprintf(b->made[b->nmade++], sizeof(b->made[0]), "%s", buf);
	return buf;
}

static int open_lease(struct lk_store *st, const char *name, uint64_t ttl_ms, uint64_t renew_ms,
                      struct lk_lock **ret)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	int r;

	o.mode = LK_MODE_LEASE;
	o.ttl_ms = ttl_ms;
	o.renew_ms = renew_ms;
	o.owner = "bench_nfs";
	r = lk_lock_open(st, name, &o, ret);
	if (r < 0)
		return bench_fail(r, "lk_lock_open %s: %s", name, lk_store_errmsg(st));
	return 0;
}

static int acquire(struct lk_lock *lk)
{
	int r = lk_lock_acquire(lk, ACQ_TIMEOUT_MS);

	return r < 0 ? bench_fail(r, "lk_lock_acquire: %s", lk_lock_errmsg(lk)) : 0;
}

static int release(struct lk_lock *lk)
{
	int r = lk_lock_release(lk);

	return r < 0 ? bench_fail(r, "lk_lock_release: %s", lk_lock_errmsg(lk)) : 0;
}

/* ------------------------------------------------------------------------
 * Counting requests
 */

struct tally {
	int64_t rpcs;   /* NFS requests the backend sent */
	uint64_t calls; /* TCP data segments sent on the store's connection */
};

struct sum {
	double rpcs, calls;
	int n;
};

static int tally_now(struct lk_store *st, struct tally *ret)
{
	int64_t n = lk__nfs_rpcs(st->bs);

	if (n < 0)
		return bench_fail((int)n,
		                  "cannot read the segment count of the store's connection");
	ret->rpcs = (int64_t)lk__nfs_calls(st->bs);
	ret->calls = (uint64_t)n;
	return 0;
}

static void sum_add(struct sum *s, const struct tally *t0, const struct tally *t1)
{
	if (!s)
		return;
	s->rpcs += (double)(t1->rpcs - t0->rpcs);
	s->calls += (double)(t1->calls - t0->calls);
	s->n++;
}

static double avg_rpcs(const struct sum *s)
{
	return s->n ? s->rpcs / s->n : 0;
}

static double avg_calls(const struct sum *s)
{
	return s->n ? s->calls / s->n : 0;
}

/* Acquire (or release) lk and add what it sent on st to s (NULL: not counted). */
static int counted_acquire(struct lk_store *st, struct lk_lock *lk, struct sum *s)
{
	struct tally t0 = {0, 0}, t1 = {0, 0};
	int r = tally_now(st, &t0);

	if (r == 0)
		r = acquire(lk);
	if (r == 0)
		r = tally_now(st, &t1);
	if (r == 0)
		sum_add(s, &t0, &t1);
	return r;
}

static int counted_release(struct lk_store *st, struct lk_lock *lk, struct sum *s)
{
	struct tally t0 = {0, 0}, t1 = {0, 0};
	int r = tally_now(st, &t0);

	if (r == 0)
		r = release(lk);
	if (r == 0)
		r = tally_now(st, &t1);
	if (r == 0)
		sum_add(s, &t0, &t1);
	return r;
}

/* ------------------------------------------------------------------------
 * 1a. What each backend primitive sends, for reading the counts below
 */

struct prim {
	const char *what;
	int64_t rpcs;
	uint64_t calls;
};

static int count_entries(const char *name, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static int bench_prims(struct bench *b)
{
	const struct lk_backend *be = b->st->be;
	struct lk_bstore *bs = b->st->bs;
	struct prim p[16];
	struct lk_err err = {0};
	struct lk_bfile *f = NULL;
	uint8_t buf[LK_LREC_SIZE + 1];
	char dir[LK_NAME_MAX + 1], rec[LK_NAME_MAX + 32], lnk[LK_NAME_MAX + 32];
	char miss[LK_NAME_MAX + 32], line[512];
	struct tally t0 = {0, 0}, t1 = {0, 0};
	uint64_t id;
	int np = 0, entries = 0, r = 0;
	size_t off = 0;

	/* A directory at the depth of a lock's, a record file in it. */
	lock_name(b, "scratch", dir, sizeof(dir));
	snprintf(rec, sizeof(rec), "%s/rec", dir);
	snprintf(lnk, sizeof(lnk), "%s/lnk", dir);
	snprintf(miss, sizeof(miss), "%s/g.none", dir);
	memset(buf, 0x5a, sizeof(buf));

#define PRIM(label, expr, ok)                                                                      \
	do {                                                                                       \
		int pr_;                                                                           \
		if (r < 0)                                                                         \
			break;                                                                     \
		r = tally_now(b->st, &t0);                                                         \
		if (r < 0)                                                                         \
			break;                                                                     \
		pr_ = (expr);                                                                      \
		r = tally_now(b->st, &t1);                                                         \
		if (r < 0)                                                                         \
			break;                                                                     \
		if (!(ok)) {                                                                       \
			r = bench_fail(pr_ < 0 ? pr_ : 0, "backend %s on %s gave %d %s", label,    \
			               dir, pr_, err.msg);                                         \
			break;                                                                     \
		}                                                                                  \
		p[np].what = label;                                                                \
		p[np].rpcs = t1.rpcs - t0.rpcs;                                                    \
		p[np].calls = t1.calls - t0.calls;                                                 \
		np++;                                                                              \
	} while (0)

	PRIM("mkdir", be->mkdir(bs, dir, &err), pr_ == 0);
	PRIM("write_new", be->write_new(bs, rec, buf, LK_LREC_SIZE, &id, &err), pr_ == 0);
	PRIM("entry", be->entry(bs, dir, &err), pr_ == LK_ENTRY_LEASE);
	PRIM("stat dir", be->stat(bs, dir, NULL, &err), pr_ == 0);
	PRIM("stat file", be->stat(bs, rec, NULL, &err), pr_ == 0);
	PRIM("stat missing", be->stat(bs, miss, NULL, &err), pr_ == -ENOENT);
	PRIM("read", be->read(bs, rec, buf, sizeof(buf), NULL, &err), pr_ == (int)LK_LREC_SIZE);
	PRIM("link", be->link(bs, rec, lnk, &err), pr_ == 0);
	PRIM("unlink", be->unlink(bs, lnk, &err), pr_ == 0);
	PRIM("readdir", be->readdir(bs, dir, count_entries, &entries, &err), pr_ == 0);
	PRIM("open_record", be->open_record(bs, dir, "rec", &f, &err), pr_ == 0);
	PRIM("write_record", be->write_record(f, buf, LK_LREC_SIZE, &err), pr_ == 0);
	PRIM("close_record", (be->close_record(f), f = NULL, 0), 1);
#undef PRIM
	if (f)
		be->close_record(f);
	if (r < 0)
		return r;

	off = (size_t)snprintf(line, sizeof(line),
	                       "1: RPCs (TCP segments) per backend primitive, "
	                       "on a file in a lock-level directory:");
	for (int i = 0; i < np && off < sizeof(line); i++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s %s %lld (%llu)",
		                        i ? "," : "", p[i].what, (long long)p[i].rpcs,
		                        (unsigned long long)p[i].calls);
	bench_note(&b->t, "%s", line);
	/*
	 * The backend keeps handles: the store's, each lock directory's and the
	 * records' it has seen, so a name costs one LOOKUP only when its
	 * handle is not known, and entry and open_record of a known lock and
	 * record cost nothing.
	 */
	bench_note(&b->t,
	           "1: handles kept: entry of a known lock directory %lld RPC, open_record of the "
	           "record just written %lld; a stat is one LOOKUP in the kept directory handle "
	           "(%lld), write_new a GUARDED CREATE and one FILE_SYNC WRITE, no COMMIT (%lld)",
	           (long long)p[2].rpcs, (long long)p[10].rpcs, (long long)p[4].rpcs,
	           (long long)p[1].rpcs);
	return 0;
}

/* ------------------------------------------------------------------------
 * 1b. RPCs per acquire, release, status
 */

static int bench_rpcs(struct bench *b)
{
	struct sum create = {0}, other = {0}, first = {0}, own = {0}, rel = {0}, status = {0};
	struct lk_lock *a = NULL, *o = NULL, *f = NULL;
	struct tally t0 = {0, 0}, t1 = {0, 0};
	char name[LK_NAME_MAX + 1];
	int iters = b->p.rpc_iters, r;

	lock_name(b, "rpc", name, sizeof(name));
	r = open_lease(b->st, name, 0, 0, &a);
	if (r == 0)
		r = open_lease(b->st2, name, 0, 0, &o);
	if (r < 0)
		goto out;

	/* The very first acquire also creates the lock directory. */
	r = counted_acquire(b->st, a, &create);
	if (r == 0)
		r = counted_release(b->st, a, &rel);

	/* Passed between two clients; one round first so that both remember a
	 * generation, as a client that has used the lock before does. */
	for (int i = 0; i <= iters && r == 0; i++) {
		struct sum *s = i ? &other : NULL;

		r = counted_acquire(b->st2, o, s);
		if (r == 0)
			r = counted_release(b->st2, o, s ? &rel : NULL);
		if (r == 0)
			r = counted_acquire(b->st, a, s);
		if (r == 0)
			r = counted_release(b->st, a, s ? &rel : NULL);
	}

	/* Status from A while B holds the lock. */
	if (r == 0)
		r = acquire(o);
	for (int i = 0; i < iters && r == 0; i++) {
		struct lk_status s = {.size = sizeof(s)};

		r = tally_now(b->st, &t0);
		if (r == 0) {
			r = lk_lock_status(b->st, name, &s);
			if (r < 0)
				r = bench_fail(r, "lk_lock_status: %s", lk_store_errmsg(b->st));
			else if (!s.held)
				r = bench_fail(
					0,
					"lk_lock_status says free while another client holds it");
		}
		if (r == 0)
			r = tally_now(b->st, &t1);
		if (r == 0)
			sum_add(&status, &t0, &t1);
	}
	if (r == 0)
		r = release(o);

	/* A fresh handle each time: nothing remembered, the lock released by
	 * the previous handle. Opening the handle is not counted. */
	for (int i = 0; i < iters && r == 0; i++) {
		r = open_lease(b->st, name, 0, 0, &f);
		if (r == 0)
			r = counted_acquire(b->st, f, &first);
		if (r == 0)
			r = release(f);
		lk_lock_close(f);
		f = NULL;
	}

	/* The same handle again and again (what section 2 times). */
	if (r == 0)
		r = acquire(a);
	if (r == 0)
		r = release(a);
	for (int i = 0; i < iters && r == 0; i++) {
		r = counted_acquire(b->st, a, &own);
		if (r == 0)
			r = release(a);
	}
	if (r < 0)
		goto out;

	b->own_acq_rpcs = avg_rpcs(&own);
	add_row(b, "1. RPCs: acquire after another's release", U_RPC, avg_rpcs(&other), -1,
	        BENCH_GOAL_ABS, 6);
	add_row(b, "   RPCs: acquire by a fresh handle", U_RPC, avg_rpcs(&first), -1,
	        BENCH_GOAL_ABS, 6);
	add_row(b, "   RPCs: acquire after own release", U_RPC, avg_rpcs(&own), -1, BENCH_GOAL_NONE,
	        0);
	add_row(b, "   RPCs: first acquire (creates the lock)", U_RPC, avg_rpcs(&create), -1,
	        BENCH_GOAL_NONE, 0);
	add_row(b, "   RPCs: renewal", U_RPC, b->renew_rpcs, -1, BENCH_GOAL_ABS, 2);
	add_row(b, "   RPCs: release", U_RPC, avg_rpcs(&rel), -1, BENCH_GOAL_ABS, 2);
	add_row(b, "   RPCs: lk_lock_status", U_RPC, avg_rpcs(&status), -1, BENCH_GOAL_ABS, 2);
	bench_note(&b->t,
	           "1: TCP data segments per operation: acquire after another's release %.1f, by a "
	           "fresh handle %.1f, after own release %.1f, first %.1f; release %.1f; status %.1f",
	           avg_calls(&other), avg_calls(&first), avg_calls(&own), avg_calls(&create),
	           avg_calls(&rel), avg_calls(&status));
	bench_note(&b->t,
	           "1: samples: %d acquires after another's release (two stores taking turns), %d "
	           "by fresh handles, %d after own release, %d releases, %d status calls",
	           other.n, first.n, own.n, rel.n, status.n);
	bench_note(&b->t,
	           "1: the audit log is off (LOCKKIT_AUDIT=0), so these are the lease protocol's "
	           "own requests; with it on, an acquire and a release each add one WRITE of "
	           "their audit line");
out:
	lk_lock_close(a);
	lk_lock_close(o);
	return r;
}

/* ------------------------------------------------------------------------
 * 1c. RPCs per renewal
 */

/*
 * The store's request count and the lease's renewal counters, read while no
 * renewal is in flight: with the engine's mutex held and nothing pending, no
 * renewal can start or be half done, so the two counts match.
 */
static int quiet_sample(struct lk_lock *lk, struct tally *t, uint64_t *ret_renewals,
                        uint64_t *ret_failures, uint64_t *ret_late)
{
	struct lk__engine *e = lk->st->engine;
	struct lk__lease *l = lk->lease;
	int64_t end = bench_now_ns() + 5000000000LL;
	int r;

	for (;;) {
		pthread_mutex_lock(&e->mu);
		if (!l->pending) {
			r = tally_now(lk->st, t);
			*ret_renewals = l->renewals;
			*ret_failures = l->failures;
			*ret_late = l->late;
			pthread_mutex_unlock(&e->mu);
			return r;
		}
		pthread_mutex_unlock(&e->mu);
		if (bench_now_ns() > end)
			return bench_fail(-ETIMEDOUT, "a renewal stayed in flight for 5 s");
		bench_sleep_ns(1000000);
	}
}

static int bench_renew(struct bench *b)
{
	struct lk_lock *lk = NULL;
	struct tally t0 = {0, 0}, t1 = {0, 0};
	uint64_t n0, n1, f0, f1, l0, l1, tries;
	char name[LK_NAME_MAX + 1];
	int r;

	lock_name(b, "renew", name, sizeof(name));
	r = open_lease(b->st, name, RENEW_TTL_MS, RENEW_MS, &lk);
	if (r == 0)
		r = acquire(lk);
	if (r < 0)
		goto out;
	/* let the first renewal go by: the window then holds only steady ones */
	bench_sleep_ns((int64_t)RENEW_MS * 1500000);
	r = quiet_sample(lk, &t0, &n0, &f0, &l0);
	if (r == 0) {
		bench_sleep_ns((int64_t)b->p.renew_window_ms * 1000000);
		r = quiet_sample(lk, &t1, &n1, &f1, &l1);
	}
	if (r == 0 && lk_lock_check(lk) < 0)
		r = bench_fail(-ENOLCK, "the lease was lost while its renewals were counted");
	if (r == 0 && n1 == n0)
		r = bench_fail(0, "no renewal completed in %d ms", b->p.renew_window_ms);
	if (r == 0)
		r = release(lk);
	if (r < 0)
		goto out;
	/* a failed or late renewal sent its requests all the same */
	tries = (n1 - n0) + (f1 - f0) + (l1 - l0);
	b->renew_rpcs = (double)(t1.rpcs - t0.rpcs) / (double)tries;
	bench_note(&b->t,
	           "1: renewals: %llu in %d ms (TTL %d ms, every %d ms, engine %s), %.2f TCP "
	           "segments each; %llu failed and %llu late, counted as renewals",
	           (unsigned long long)(n1 - n0), b->p.renew_window_ms, RENEW_TTL_MS, RENEW_MS,
	           lk_store_engine(b->st), (double)(t1.calls - t0.calls) / (double)tries,
	           (unsigned long long)(f1 - f0), (unsigned long long)(l1 - l0));
out:
	lk_lock_close(lk);
	return r;
}

/* ------------------------------------------------------------------------
 * 2. Uncontended acquire latency against a GETATTR round trip
 */

static int64_t ctx_segs(struct nfs_context *ctx)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd = nfs_get_fd(ctx);

	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	return (int64_t)ti.tcpi_data_segs_out;
}

/*
 * A libnfs context of our own on the store's file at rel (a path inside the
 * store). Mounted the way the backend does it: the longest leading part of
 * the URL's path that the server agrees to mount is the export.
 */
static int rtt_open(const struct bench *b, const char *rel, struct nfs_context **ret_ctx,
                    struct nfsfh **ret_fh)
{
	struct nfs_context *ctx = NULL;
	struct nfs_url *u = NULL;
	char full[4096] = "", path[4096] = "", file[8192];
	int r;

	for (;;) {
		ctx = nfs_init_context();
		if (!ctx)
			return bench_fail(-ENOMEM, "nfs_init_context");
		u = nfs_parse_url_dir(ctx, b->url);
		if (!u) {
			r = bench_fail(0, "cannot parse %s: %s", b->url, nfs_get_error(ctx));
			nfs_destroy_context(ctx);
			return r;
		}
		nfs_set_timeout(ctx, 5000);
		if (!path[0] || !full[0]) {
			snprintf(full, sizeof(full), "%s", u->path ? u->path : "/");
			snprintf(path, sizeof(path), "%s", full);
		}
		if (nfs_mount(ctx, u->server, path[0] ? path : "/") == 0)
			break;
		nfs_destroy_url(u);
		nfs_destroy_context(ctx);
		{
			char *slash = strrchr(path, '/');

			if (!slash || slash == path)
				return bench_fail(0, "cannot mount any part of %s", b->url);
			*slash = 0;
		}
	}
	nfs_destroy_url(u);
	snprintf(file, sizeof(file), "%s/%s", full + strlen(path), rel);
	r = nfs_open(ctx, file, O_RDONLY, ret_fh);
	if (r < 0) {
		bench_fail(r, "nfs_open %s: %s", file, nfs_get_error(ctx));
		nfs_destroy_context(ctx);
		return r;
	}
	*ret_ctx = ctx;
	return 0;
}

static int bench_latency(struct bench *b)
{
	const int nb = b->p.lat_batches, nc = b->p.lat_cycles, ng = b->p.lat_getattrs;
	struct nfs_context *ctx = NULL;
	struct nfsfh *fh = NULL;
	struct lk_lock *lk = NULL;
	int64_t *acq = NULL, *rel = NULL, *ga = NULL, segs0, segs1;
	char name[LK_NAME_MAX + 1], rec[LK_NAME_MAX + 32], ratio[160];
	size_t na = 0, ngt = 0;
	int r;

	acq = calloc((size_t)(nb * nc), sizeof(*acq));
	rel = calloc((size_t)(nb * nc), sizeof(*rel));
	ga = calloc((size_t)(nb * ng), sizeof(*ga));
	if (!acq || !rel || !ga) {
		r = bench_fail(-ENOMEM, "allocating");
		goto out;
	}
	snprintf(rec, sizeof(rec), "%sscratch/rec", b->prefix);
	r = rtt_open(b, rec, &ctx, &fh);
	if (r < 0)
		goto out;
	lock_name(b, "lat", name, sizeof(name));
	r = open_lease(b->st, name, 0, 0, &lk);
	/* warm both paths: the lock exists, the server has seen the file */
	for (int i = 0; i < 3 && r == 0; i++) {
		struct nfs_stat_64 s;

		r = acquire(lk);
		if (r == 0)
			r = release(lk);
		if (r == 0 && nfs_fstat64(ctx, fh, &s) < 0)
			r = bench_fail(0, "nfs_fstat64: %s", nfs_get_error(ctx));
	}
	if (r < 0)
		goto out;
	segs0 = ctx_segs(ctx);
	for (int bt = 0; bt < nb && r == 0; bt++) {
		for (int i = 0; i < nc && r == 0; i++) {
			int64_t t0 = bench_now_ns(), t1, t2;

			r = acquire(lk);
			t1 = bench_now_ns();
			if (r == 0)
				r = release(lk);
			t2 = bench_now_ns();
			acq[na] = t1 - t0;
			rel[na++] = t2 - t1;
		}
		for (int i = 0; i < ng && r == 0; i++) {
			struct nfs_stat_64 s;
			int64_t t0 = bench_now_ns();

			if (nfs_fstat64(ctx, fh, &s) < 0)
				r = bench_fail(0, "nfs_fstat64: %s", nfs_get_error(ctx));
			ga[ngt++] = bench_now_ns() - t0;
		}
	}
	segs1 = ctx_segs(ctx);
	if (r < 0)
		goto out;
	qsort(acq, na, sizeof(*acq), bench_cmp_i64);
	qsort(rel, na, sizeof(*rel), bench_cmp_i64);
	qsort(ga, ngt, sizeof(*ga), bench_cmp_i64);
	add_row(b, "2. uncontended acquire, median", U_TIME, bench_median_sorted(acq, na),
	        bench_median_sorted(ga, ngt), BENCH_GOAL_NONE, 0);
	add_row(b, "   uncontended release, median", U_TIME, bench_median_sorted(rel, na),
	        bench_median_sorted(ga, ngt), BENCH_GOAL_NONE, 0);
	if (b->own_acq_rpcs > 0)
		snprintf(ratio, sizeof(ratio),
		         "; for its %.1f RPCs that is %.2f GETATTR round trips "
		         "per RPC",
		         b->own_acq_rpcs,
		         bench_median_sorted(acq, na) / bench_median_sorted(ga, ngt) /
		                 b->own_acq_rpcs);
	else
		ratio[0] = 0;
	bench_note(
		&b->t,
		"2: %zu acquire+release cycles (same handle, so acquire after own release) and "
		"%zu GETATTRs in %d alternating batches; baseline = median GETATTR round trip on a "
		"separate connection (%.2f requests per GETATTR counted there)",
		na, ngt, nb,
		segs0 >= 0 && segs1 >= 0 ? (double)(segs1 - segs0) / (double)ngt : -1.0);
	bench_note(&b->t, "2: acquire p10 %.2f ms, p90 %.2f ms; GETATTR p10 %.1f us, p90 %.1f us%s",
	           bench_pct_sorted(acq, na, 10) / 1e6, bench_pct_sorted(acq, na, 90) / 1e6,
	           bench_pct_sorted(ga, ngt, 10) / 1e3, bench_pct_sorted(ga, ngt, 90) / 1e3, ratio);
out:
	lk_lock_close(lk);
	if (fh)
		nfs_close(ctx, fh);
	if (ctx)
		nfs_destroy_context(ctx);
	free(acq);
	free(rel);
	free(ga);
	return r;
}

/* ------------------------------------------------------------------------
 * 3. Failover after SIGKILL, over the TTL
 */

/*
 * The doomed holder, run as "bench_nfs --holder-child URL NAME TTL_MS PPID":
 * take the lease on a store of its own, report on fd 3, wait for SIGKILL.
 */
static int holder_main(int argc, char **argv)
{
	struct lk_store *st;
	struct lk_lock *lk;
	int r;

	if (argc != 6)
		return EXIT_USAGE;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != (pid_t)atol(argv[5]))
		return EXIT_FAIL; /* the parent is gone already */
	r = lk_store_open(argv[2], NULL, &st);
	if (r < 0) {
		bench_fail(r, "holder: lk_store_open %s", argv[2]);
		return EXIT_FAIL;
	}
	/* A record from "another boot": observers on this host cannot tell
	 * that its process died and must time the lease out, as they would for
	 * a holder on another machine. */
	for (int i = 0; i < 2; i++) {
		uint64_t v = lk__random64();

		memcpy(st->boot_id + 8 * i, &v, 8);
	}
	r = open_lease(st, argv[3], (uint64_t)atol(argv[4]), 0, &lk);
	if (r == 0)
		r = acquire(lk);
	if (r < 0)
		return EXIT_FAIL;
	if (write(3, "1", 1) != 1)
		return EXIT_FAIL;
	close(3);
	for (;;)
		pause();
}

/* Start a holder of name and wait until it holds the lease. */
static int spawn_holder(const struct bench *b, const char *name, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	char ttl[24], ppid[24];
	char *argv[] = {(char *)"bench_nfs",
	                (char *)"--holder-child",
	                (char *)b->url,
	                (char *)name,
	                ttl,
	                ppid,
	                NULL};
	struct pollfd pfd;
	int p[2], w, r;
	pid_t pid;
	char c;

	snprintf(ttl, sizeof(ttl), "%d", FAIL_TTL_MS);
	snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
	if (pipe2(p, O_CLOEXEC) < 0)
		return bench_fail(-errno, "pipe");
	/* keep the write end off fd 3, where dup2 would leave it close-on-exec */
	w = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
	close(p[1]);
	if (w < 0) {
		close(p[0]);
		return bench_fail(-errno, "fcntl");
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, w, 3);
	r = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(w);
	if (r) {
		close(p[0]);
		return bench_fail(-r, "cannot start the holder process");
	}
	pfd.fd = p[0];
	pfd.events = POLLIN;
	r = poll(&pfd, 1, 20000);
	if (r <= 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return bench_fail(0, "the holder process did not take the lease");
	}
	close(p[0]);
	*ret_pid = pid;
	return 0;
}

struct waiter {
	struct lk_lock *lk;
	atomic_int done;
	int r;
	int64_t t;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->r = lk_lock_acquire(w->lk, -1);
	w->t = bench_now_ns();
	atomic_store(&w->done, 1);
	return NULL;
}

static int failover_once(struct bench *b, struct lk_lock *lk, const char *name,
                         const struct lk_lease_params *lp, int64_t poll_ns, int64_t *ret_ns)
{
	struct waiter w = {.lk = lk};
	struct timespec dl;
	pthread_t th;
	int64_t t0;
	int status, r;
	pid_t child = 0;

	r = spawn_holder(b, name, &child);
	if (r < 0)
		return r;
	r = -pthread_create(&th, NULL, waiter_main, &w);
	if (r < 0) {
		bench_fail(r, "pthread_create");
		goto reap;
	}
	/* Two polls: the waiter has seen the held record. Then a random phase
	 * of the holder's renewal cycle, so that the runs sample all of it. */
	bench_sleep_ns(2 * poll_ns + (int64_t)(lk__random64() % (lp->renew_ms * 1000000)));
	if (atomic_load(&w.done)) {
		pthread_join(th, NULL);
		r = bench_fail(w.r, "the waiter's acquire returned while the holder lived");
		if (w.r == 0)
			lk_lock_release(lk);
		goto reap;
	}
	t0 = bench_now_ns();
	if (kill(child, SIGKILL) < 0) {
		r = bench_fail(-errno, "kill");
		lk_lock_cancel(lk);
		pthread_join(th, NULL);
		goto reap;
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)(5 * lp->ttl_ms / 1000 + 10);
	if (pthread_timedjoin_np(th, NULL, &dl) != 0) {
		lk_lock_cancel(lk);
		pthread_join(th, NULL);
		r = bench_fail(
			0, "the waiter did not get the lease within 5 TTLs of the holder's death");
		if (w.r == 0)
			lk_lock_release(lk);
		goto reap;
	}
	if (w.r < 0) {
		r = bench_fail(w.r, "the waiter's acquire: %s", lk_lock_errmsg(lk));
		goto reap;
	}
	*ret_ns = w.t - t0;
	r = release(lk);
reap:
	kill(child, SIGKILL);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (r == 0 && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		r = bench_fail(0, "the holder process ended on its own (status 0x%x)", status);
	return r;
}

static int bench_failover(struct bench *b)
{
	const int n = b->p.fail_runs;
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	struct lk_lease_params lp;
	char name[LK_NAME_MAX + 1];
	int64_t *lat, poll_ns;
	double ttl, bound;
	int r;

	lat = calloc((size_t)n, sizeof(*lat));
	if (!lat)
		return bench_fail(-ENOMEM, "allocating");
	lock_name(b, "failover", name, sizeof(name));
	r = lk_store_open(b->url, NULL, &st);
	if (r < 0) {
		bench_fail(r, "lk_store_open %s", b->url);
		goto out;
	}
	r = open_lease(st, name, FAIL_TTL_MS, 0, &lk);
	if (r == 0) {
		r = lk_lock_lease_params(lk, &lp);
		if (r < 0)
			bench_fail(r, "lk_lock_lease_params");
	}
	if (r < 0)
		goto out;
	/* the waiter's poll interval, as lease.c sets it: T/10, at most 1 s */
	poll_ns = (int64_t)lp.ttl_ms * 100000;
	if (poll_ns > 1000000000)
		poll_ns = 1000000000;
	for (int i = 0; i < n && r == 0; i++) {
		fprintf(stderr, "bench_nfs:     run %d/%d\n", i + 1, n);
		r = failover_once(b, lk, name, &lp, poll_ns, &lat[i]);
	}
	if (r < 0)
		goto out;
	qsort(lat, (size_t)n, sizeof(*lat), bench_cmp_i64);
	ttl = (double)lp.ttl_ms * 1e6;
	bound = 1.0 + lp.rho_ppm / 1e6 + 2.0 * (double)poll_ns / ttl;
	add_row(b, "3. failover after SIGKILL, median", U_TIME, bench_median_sorted(lat, (size_t)n),
	        ttl, BENCH_GOAL_RATIO, 1.15);
	add_row(b, "   failover after SIGKILL, max", U_TIME, (double)lat[n - 1], ttl,
	        BENCH_GOAL_RATIO, bound);
	bench_note(&b->t,
	           "3: %d runs; baseline = TTL %llu ms (renewal every %llu ms, rho %u ppm, waiter "
	           "polls every %lld ms); min %.3f s; max bound (1+rho) + 2 polls/TTL = %.2f",
	           n, (unsigned long long)lp.ttl_ms, (unsigned long long)lp.renew_ms, lp.rho_ppm,
	           (long long)(poll_ns / 1000000), (double)lat[0] / 1e9, bound);
out:
	lk_lock_close(lk);
	lk_store_close(st);
	free(lat);
	return r;
}

/* ------------------------------------------------------------------------
 * Output
 */

static void fmt_val(char *buf, size_t len, int u, double v)
{
	if (u == U_RPC)
		snprintf(buf, len, "%.1f", v);
	else
		bench_fmt_dur(buf, len, v, 3);
}

static void fmt_goal(char *buf, size_t len, const struct bench_row *r)
{
	if (r->goal == BENCH_GOAL_RATIO)
		snprintf(buf, len, "<= %.2f", r->goal_val);
	else
		snprintf(buf, len, "<= %g", r->goal_val);
}

/* A count of requests is a whole number: a goal met to the last bit is met. */
static const struct bench_layout layout = {
	.value_head = "value",
	.name_w = 44,
	.value_w = 10,
	.ratio_w = 7,
	.goal_w = 8,
	.ratio_digits = 2,
	.missed = "OVER",
	.abs_slack = 1e-9,
	.base_if_positive = 1,
	.fmt_val = fmt_val,
	.fmt_goal = fmt_goal,
};

/* ------------------------------------------------------------------------
 * Clean-up of the run's lock directories
 */

struct names {
	char v[64][LK_NAME_MAX + 1];
	int n;
};

static int collect_name(const char *name, void *userdata)
{
	struct names *nl = userdata;

	if (nl->n < 64)
		snprintf(nl->v[nl->n++], sizeof(nl->v[0]), "%s", name);
	return 0;
}

/* Best effort: the generations, any temporary file, then the directory. */
static void remove_lockdir(struct lk_store *st, const char *dir)
{
	const struct lk_backend *be = st->be;
	char path[2 * LK_NAME_MAX + 2];
	struct names *nl = malloc(sizeof(*nl));

	if (!nl)
		return;
	for (int round = 0; round < 4; round++) {
		nl->n = 0;
		if (be->readdir(st->bs, dir, collect_name, nl, NULL) < 0 || nl->n == 0)
			break;
		for (int i = 0; i < nl->n; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, nl->v[i]);
			be->unlink(st->bs, path, NULL);
		}
	}
	be->rmdir(st->bs, dir, NULL);
	free(nl);
}

/* ------------------------------------------------------------------------
 * The throwaway server
 */

struct server {
	char script[PATH_MAX];
	char state[64];
	pid_t guard;
	int guard_fd; /* closing it tells the guard to stop the server */
};

static int exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n < 0)
		return -errno;
	buf[n] = 0;
	slash = strrchr(buf, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	return 0;
}

static int find_script(const char *tools, char *buf, size_t len)
{
	char dir[PATH_MAX - 32];

	if (tools) {
		snprintf(buf, len, "%s/nfs-server.sh", tools);
		return access(buf, R_OK) == 0 ? 0 : bench_fail(-errno, "%s", buf);
	}
#ifdef LK_SOURCE_DIR
	snprintf(buf, len, "%s/tools/nfs-server.sh", LK_SOURCE_DIR);
	if (access(buf, R_OK) == 0)
		return 0;
#endif
	if (exe_dir(dir, sizeof(dir)) == 0) {
		snprintf(buf, len, "%s/../tools/nfs-server.sh", dir);
		if (access(buf, R_OK) == 0)
			return 0;
	}
	return bench_fail(-ENOENT, "cannot find tools/nfs-server.sh; use --tools DIR");
}

/* sh SCRIPT CMD STATE; its output to stderr, or into out when given. */
static int run_script(const struct server *sv, const char *cmd, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	char *argv[] = {(char *)"sh", (char *)sv->script, (char *)cmd, (char *)sv->state, NULL};
	int p[2] = {-1, -1}, status, r;
	size_t have = 0;
	pid_t pid;

	if (out && pipe2(p, O_CLOEXEC) < 0)
		return bench_fail(-errno, "pipe");
	posix_spawn_file_actions_init(&fa);
	if (out)
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	else
		posix_spawn_file_actions_adddup2(&fa, 2, 1);
	r = posix_spawnp(&pid, "sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (out)
		close(p[1]);
	if (r) {
		if (out)
			close(p[0]);
		return bench_fail(-r, "cannot run sh %s", sv->script);
	}
	if (out) {
		for (;;) {
			ssize_t n = read(p[0], out + have, outlen - 1 - have);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			if (have == outlen - 1)
				break;
		}
		out[have] = 0;
		close(p[0]);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return bench_fail(-errno, "waitpid");
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return bench_fail(0, "%s %s %s failed (status 0x%x)", sv->script, cmd, sv->state,
		                  status);
	return 0;
}

static int rm_entry(const char *path, const struct stat *s, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

/*
 * The guard: a process of its own session (a terminal's Ctrl-C does not
 * reach it) that waits for this program to end, by any means, SIGKILL
 * included, and then stops the server and removes its directory. Forked
 * before any thread or store exists.
 */
static int start_guard(struct server *sv)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return bench_fail(-errno, "pipe");
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return bench_fail(-errno, "fork");
	}
	if (pid == 0) {
		close(p[1]);
		setsid();
		dup2(2, 1); /* never keep the table's reader waiting */
		/* nothing is ever written: EOF is the end of the program */
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		run_script(sv, "stop", NULL, 0);
		nftw(sv->state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		_exit(0);
	}
	close(p[0]);
	sv->guard = pid;
	sv->guard_fd = p[1];
	return 0;
}

static void stop_server(struct server *sv)
{
	int status;

	if (sv->guard <= 0)
		return;
	close(sv->guard_fd);
	while (waitpid(sv->guard, &status, 0) < 0 && errno == EINTR)
		;
	sv->guard = 0;
}

/* Start the server; write the URL of a store directory in its export. */
static int start_server(struct server *sv, const char *tools, char *url, size_t urllen)
{
	char dir[PATH_MAX], probe[PATH_MAX + 32], out[2048], *s, *e, *q;
	int r;

	r = find_script(tools, sv->script, sizeof(sv->script));
	if (r < 0)
		return r;
	/* the ports are the script's to read; unset means ours, not its own */
	setenv("LK_NFS_PORT", DEF_NFS_PORT, 0);
	setenv("LK_NFS_MNT_PORT", DEF_MNT_PORT, 0);
	/* a real mount as the readiness check, when the build has the probe */
	if (!getenv("LK_NFS_PROBE") && exe_dir(dir, sizeof(dir)) == 0) {
		snprintf(probe, sizeof(probe), "%s/tests/nfs/nfs-probe", dir);
		if (access(probe, X_OK) == 0)
			setenv("LK_NFS_PROBE", probe, 1);
	}
	snprintf(sv->state, sizeof(sv->state), "/tmp/lk-bnfs-XXXXXX");
	if (!mkdtemp(sv->state))
		return bench_fail(-errno, "mkdtemp");
	r = start_guard(sv);
	if (r < 0) {
		rmdir(sv->state);
		return r;
	}
	fprintf(stderr, "bench_nfs: starting nfs-ganesha in %s (ports %s, %s)\n", sv->state,
	        getenv("LK_NFS_PORT"), getenv("LK_NFS_MNT_PORT"));
	r = run_script(sv, "start", NULL, 0);
	if (r == 0)
		r = run_script(sv, "env", out, sizeof(out));
	if (r < 0)
		return r;
	s = strstr(out, "LK_NFS_URL='");
	e = s ? strchr(s + 12, '\'') : NULL;
	if (!e)
		return bench_fail(0, "no LK_NFS_URL in the output of %s env", sv->script);
	s += 12;
	*e = 0;
	/* a store directory inside the export, as a real deployment has */
	q = strchr(s, '?');
	if (q) {
		*q = 0;
		r = snprintf(url, urllen, "%s/store?%s", s, q + 1);
	} else {
		r = snprintf(url, urllen, "%s/store", s);
	}
	return r < 0 || (size_t)r >= urllen ? bench_fail(-ENAMETOOLONG, "URL") : 0;
}

/* ------------------------------------------------------------------------
 * Main
 */

static int open_store(const char *url, struct lk_store **ret)
{
	char why[256];
	int r = lk_store_open_err(url, NULL, ret, why, sizeof(why));

	if (r < 0)
		return bench_fail(r, "lk_store_open %s: %s", url, why);
	if ((*ret)->be != &lk__nfs_backend) {
		lk_store_close(*ret);
		*ret = NULL;
		return bench_fail(-EINVAL, "%s is not an nfs:// store", url);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct server sv = {.guard = 0, .guard_fd = -1};
	const char *url = NULL, *tools = NULL;
	struct bench *b;
	int quick = 0, runs = 0, start = 0, r = 0;

	/* count the lease protocol's requests, not the audit log's (one
	 * WRITE per acquire and per release, noted in the output) */
	setenv("LOCKKIT_AUDIT", "0", 1);
	if (argc >= 2 && !strcmp(argv[1], "--holder-child"))
		return holder_main(argc, argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = 1;
		} else if (!strcmp(argv[i], "--start-server")) {
			start = 1;
		} else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
			runs = atoi(argv[++i]);
			if (runs < 1 || runs > 1000) {
				fprintf(stderr, "bench_nfs: --runs takes 1 to 1000\n");
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--tools") && i + 1 < argc) {
			tools = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (argv[i][0] != '-' && !url) {
			url = argv[i];
		} else {
			fprintf(stderr, "bench_nfs: unknown argument '%s'\n\n%s", argv[i], usage);
			return EXIT_USAGE;
		}
	}
	if (!!url == !!start) {
		fprintf(stderr, "bench_nfs: give either an nfs:// URL or --start-server\n\n%s",
		        usage);
		return EXIT_USAGE;
	}

	/* before anything is opened: a plain path would make a local store */
	if (url && strncmp(url, "nfs://", 6)) {
		fprintf(stderr, "bench_nfs: '%s' is not an nfs:// URL\n", url);
		return EXIT_USAGE;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return EXIT_FAIL;
	b->p = quick ? params_quick : params_default;
	bench_table_init(&b->t, MAX_ROWS, MAX_NOTES, NOTE_LEN);
	if (runs)
		b->p.fail_runs = runs;
	snprintf(b->prefix, sizeof(b->prefix), "bnfs-%d-", (int)getpid());
	if (start) {
		r = start_server(&sv, tools, b->url, sizeof(b->url));
		if (r < 0)
			goto out;
	} else if (snprintf(b->url, sizeof(b->url), "%s", url) >= (int)sizeof(b->url)) {
		r = bench_fail(-ENAMETOOLONG, "URL");
		goto out;
	}
	/*
	 * Once first, to create the store if it is missing: the backend mounts
	 * the longest part of the path the server will mount, so a store that
	 * did not exist yet would leave the first client one directory higher
	 * (a longer lookup to find the store) than the second.
	 */
	r = open_store(b->url, &b->st);
	if (r == 0) {
		lk_store_close(b->st);
		b->st = NULL;
		r = open_store(b->url, &b->st);
	}
	if (r == 0)
		r = open_store(b->url, &b->st2);
	if (r < 0)
		goto out;
	fprintf(stderr, "bench_nfs: store %s\n", b->url);

	for (int m = 0; m < 5 && r == 0; m++) {
		static const char *const what[] = {
			"1/3 RPCs per backend primitive",
			"1/3 RPCs per renewal",
			"1/3 RPCs per acquire, release, status",
			"2/3 acquire latency against a GETATTR round trip",
			"3/3 failover after SIGKILL",
		};
		static int (*const run[])(struct bench *) = {
			bench_prims, bench_renew, bench_rpcs, bench_latency, bench_failover,
		};

		fprintf(stderr, "bench_nfs: %s\n", what[m]);
		r = run[m](b);
	}
	if (r == 0) {
		printf("bench_nfs: lockkit %s, %s%s, engine %s\n\n", lk_version(), b->url,
		       start ? " (throwaway server)" : "", lk_store_engine(b->st));
		bench_print_table(&layout, &b->t);
		fflush(stdout);
	}
out:
	if (b->st) {
		for (int i = 0; i < b->nmade; i++)
			remove_lockdir(b->st, b->made[i]);
	}
	lk_store_close(b->st);
	lk_store_close(b->st2);
	stop_server(&sv);
	free(b);
	return r < 0 ? EXIT_FAIL : 0;
}
