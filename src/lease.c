// SPDX-License-Identifier: MIT
/*
 * Lease mode: a lock that nothing arbitrates but the storage's atomic
 * namespace operations, so that any directory several hosts share can
 * coordinate them. docs/protocol.md gives the full protocol and its safety
 * argument; in short:
 *
 *  - A lease lock is a directory <store>/<name> holding generation records
 *    g.<N>; the newest generation is the current lease and N is its fencing
 *    token. The directory is born non-empty (built under a temporary name
 *    with a RELEASED first generation, then renamed into place).
 *  - Taking generation N+1 is one link() of a fully written, synced record:
 *    at most one claimant wins. A retransmitted link can report EEXIST for
 *    its own success, so EEXIST is settled by comparing file ids.
 *  - After a claim the claimant checks that g.N still holds the record it
 *    judged free. Otherwise a paused claimant may have re-created a
 *    generation that clean-up had already deleted: the claim is marked
 *    ABORTED and the claimant looks again. Clean-up deletes generations
 *    below N-1, oldest first, so "g.N exists" proves nothing newer was lost.
 *  - Expiry is judged by each observer on its own CLOCK_BOOTTIME, never by a
 *    remote wall clock: a record (N, counter, state) first seen when a reply
 *    arrived is expired only when a read *sent* T*(1+rho) later still shows
 *    it unchanged. Any change restarts the clock, and an unreadable newest
 *    record counts as held by someone unknown.
 *  - The holder's deadline runs from the local time read *before* the last
 *    renewal that completed in time was sent: t_submit + T*(1-rho) - margin.
 *    The heartbeat engine (engine.c) renews and enforces it.
 *
 * Everything here runs in the caller's thread and may block on storage; the
 * engine never calls into this file's blocking paths.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "internal.h"
#include "krecord.h"
#include "lrecord.h"

#define DEF_TTL_MS 10000
#define MIN_TTL_MS 1000
#define DEF_RHO_PPM 10000

static int64_t ms_ns(uint64_t ms)
{
	return (int64_t)ms * 1000000;
}

/* T * (1 + rho) in ns */
static int64_t ttl_up(int64_t ttl_ns, uint32_t rho_ppm)
{
	return ttl_ns + ttl_ns / 1000000 * rho_ppm;
}

int lk__lease_open(struct lk_lock *lk, const struct lk_lock_opts *o, struct lk_err *err)
{
	struct lk__lease *l;
	uint64_t ttl = o->ttl_ms ? o->ttl_ms : DEF_TTL_MS;
	uint64_t renew = o->renew_ms ? o->renew_ms : ttl / 4;
	uint32_t rho = o->rho_ppm ? o->rho_ppm : DEF_RHO_PPM;

	if (ttl < MIN_TTL_MS || ttl > 24ull * 3600 * 1000) {
		lk__err_set(err, "lease TTL must be between 1 s and 24 h");
		return -EINVAL;
	}
	if (renew > ttl / 2 || renew < 10) {
		lk__err_set(err, "renewal interval must be between 10 ms and half the TTL");
		return -EINVAL;
	}
	if (rho >= 100000) {
		lk__err_set(err, "clock-rate bound must be below 10%% (100000 ppm)");
		return -EINVAL;
	}
	if (o->flags & LK_LOCK_SHARED) {
		lk__err_set(err, "shared locks exist only in kernel mode");
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->lk = lk;
	l->st = lk->st;
	l->ttl_ns = ms_ns(ttl);
	l->renew_ns = ms_ns(renew);
	l->rho_ppm = rho;
	l->margin_ns = l->ttl_ns / 10 > ms_ns(100) ? l->ttl_ns / 10 : ms_ns(100);
	l->io_ns = l->renew_ns;
	l->on_lost = o->on_lost;
	l->userdata = o->userdata;
	l->pid = o->pid ? o->pid : (int32_t)getpid();
	l->pid_start = lk__pid_start(l->pid);
	/* Descriptors only while waiting: a process may hold thousands of
	 * leases, and each held one costs just its record's descriptor. */
	l->cancel_fd = -1;
	l->watch_fd = -1;
	pthread_mutex_init(&l->cancel_mu, NULL);
	snprintf(l->dir, sizeof(l->dir), "%s", lk->name);
	lk->lease = l;
	return 0;
}

void lk__lease_free(struct lk__lease *l)
{
	if (!l)
		return;
	if (l->f)
		l->st->be->close_record(l->f);
	if (l->cancel_fd >= 0)
		close(l->cancel_fd);
	if (l->watch_fd >= 0)
		close(l->watch_fd);
	pthread_mutex_destroy(&l->cancel_mu);
	free(l);
}

void lk__lease_close(struct lk_lock *lk)
{
	struct lk__lease *l = lk->lease;

	if (!l)
		return;
	lk->lease = NULL;
	if (l->gen && l->st->engine && !lk__engine_remove(l->st->engine, l)) {
		/* the engine frees it when its I/O completes */
		l->lk = NULL;
		return;
	}
	lk__lease_free(l);
}

/* ------------------------------------------------------------------------
 * Creating a lock directory
 */

int lk__lease_create_dir(struct lk_store *st, const char *name, struct lk_err *err)
{
	const struct lk_backend *be = st->be;
	struct lk__lrec rec;
	uint8_t buf[LK_LREC_SIZE];
	char tmp[64], path[64 + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	uint64_t id;
	int r;

	memset(&rec, 0, sizeof(rec));
	/* First generation: above twice the wall clock in µs, like a new kernel
	 * lock file, so a deleted and re-created lock still gets higher tokens. */
	rec.gen = lk__ktoken_seed(lk__realtime_ns());
	rec.state = LK_LSTATE_RELEASED;
	rec.wall_ns = lk__realtime_ns();
	memcpy(rec.boot_id, st->boot_id, 16);
	lk__label_copy(rec.host, sizeof(rec.host), st->host);
	lk__lrec_encode(&rec, buf);
	lk__gen_name(gname, rec.gen);

	snprintf(tmp, sizeof(tmp), ".n.%016llx", (unsigned long long)lk__random64());
	snprintf(path, sizeof(path), "%s/%s", tmp, gname);
	r = be->mkdir(st->bs, tmp, err);
	if (r < 0) {
		lk__err_set(err, "cannot create lock directory %s: %s", name, strerror(-r));
		return r;
	}
	r = be->write_new(st->bs, path, buf, sizeof(buf), &id, err);
	if (r == 0) {
		r = be->rename(st->bs, tmp, name, err);
		if (r == 0)
			return 0;
	}
	be->unlink(st->bs, path, NULL);
	be->rmdir(st->bs, tmp, NULL);
	if (r == -EEXIST && be->entry(st->bs, name, NULL) == LK_ENTRY_KERNEL)
		r = -ENOTDIR; /* RENAME_NOREPLACE says EEXIST for a file too */
	if (r == -EEXIST)
		return 0; /* someone else created it first */
	if (r == -ENOTDIR || r == -EISDIR) {
		lk__err_set(err, "lock %s exists as a kernel-mode lock; it cannot be used in lease mode",
			    name);
		return -EINVAL;
	}
	lk__err_set(err, "cannot create lock directory %s: %s", name, strerror(-r));
	return r;
}

/* ------------------------------------------------------------------------
 * Observing
 */

struct obs {
	int found;      /* a newest generation exists */
	int probed;     /* found by probing from a remembered generation, not a listing */
	uint64_t gen;
	int valid;      /* its record decoded */
	struct lk__lrec rec;
	uint8_t raw[LK_LREC_SIZE + 1]; /* one more: a longer file is no record */
	int rawlen;
	int64_t t_sent;    /* CLOCK_BOOTTIME before the first request */
	int64_t t_arrived; /* CLOCK_BOOTTIME after the last reply */
};

struct newest {
	uint64_t gen;    /* the newest generation listed */
	int found;
	int older;       /* some generation older than the newest exists */
	int has_prev;    /* gen - 1 exists */
	uint64_t max2;   /* the second newest */
};

static int find_newest(const char *name, void *userdata)
{
	struct newest *n = userdata;
	uint64_t g;

	if (lk__gen_parse(name, &g) < 0)
		return 0;
	if (!n->found || g > n->gen) {
		if (n->found) {
			n->older = 1;
			n->max2 = n->gen;
		}
		n->gen = g;
		n->found = 1;
	} else if (g < n->gen) {
		if (!n->older || g > n->max2)
			n->max2 = g;
		n->older = 1;
	}
	n->has_prev = n->older && n->max2 == n->gen - 1;
	return 0;
}

static int observe(struct lk__lease *l, struct obs *o, struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	int r, attempts = 0, gap_looks = 0;

	memset(o, 0, sizeof(*o));
	o->t_sent = lk__boottime_ns();
again:
	if (++attempts > 20) {
		lk__err_set(err, "lock %s keeps changing under observation", l->dir);
		return -EBUSY;
	}
	if (l->hint_gen) {
		/* Probe the next generation instead of listing the directory. */
		uint64_t g = l->hint_gen;

		for (;;) {
			lk__gen_name(gname, g + 1);
			snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
			r = be->stat(l->st->bs, path, NULL, err);
			if (r == -ENOENT)
				break;
			if (r < 0)
				return r;
			g++;
		}
		o->gen = g;
		o->found = 1;
		o->probed = 1;
	} else {
		struct newest n = { 0 };

		r = be->readdir(l->st->bs, l->dir, find_newest, &n, err);
		if (r < 0)
			return r;
		if (!n.found) {
			lk__err_set(err,
				    "lock directory %s has no generation records; it was damaged "
				    "from outside and needs an administrator",
				    l->dir);
			return -EBADMSG;
		}
		/*
		 * The newest generation always has its predecessor (clean-up keeps
		 * N-1), unless it is the first one. A gap means a file was put
		 * there from outside: claiming above it would go unseen by the
		 * real holder, whose renewals probe only the next generation.
		 */
		if (n.older && !n.has_prev) {
			if (++gap_looks < 2) {
				l->hint_gen = 0;
				goto again;
			}
			lk__err_set(err,
				    "lock directory %s has a generation record with no predecessor "
				    "(g.%016llu); it was damaged from outside and needs an "
				    "administrator",
				    l->dir, (unsigned long long)n.gen);
			return -EBADMSG;
		}
		o->gen = n.gen;
		o->found = 1;
		o->probed = 0;
	}
	lk__gen_name(gname, o->gen);
	snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
	r = be->read(l->st->bs, path, o->raw, sizeof(o->raw), NULL, err);
	if (r == -ENOENT) {
		/* deleted since we listed it: look again from scratch */
		l->hint_gen = 0;
		goto again;
	}
	if (r < 0 && r != -EBADMSG && r != -ELOOP && r != -EISDIR)
		return r;
	o->rawlen = r < 0 ? 0 : r;
	o->valid = r >= 0 && lk__lrec_decode(o->raw, (size_t)o->rawlen, &o->rec) == 0 &&
		   o->rec.gen == o->gen;
	o->t_arrived = lk__boottime_ns();
	l->hint_gen = o->gen;
	err->msg[0] = 0;
	return 0;
}

/* The observer's memory of the newest record and when it first saw it. */
struct seen {
	int have;
	uint64_t gen;
	int valid;
	uint64_t counter;
	uint8_t state;
	uint64_t nonce;
	int64_t first_ns;
	int64_t ttl_ns;   /* the holder's TTL, or ours when unreadable */
	uint32_t rho_ppm;
	int rawlen;       /* unreadable records: length and checksum of the bytes */
	uint32_t rawcrc;
};

static int same_as_seen(const struct seen *s, const struct obs *o)
{
	if (!s->have || s->gen != o->gen || s->valid != o->valid)
		return 0;
	if (!o->valid) /* unreadable: unchanged only if byte for byte the same */
		return s->rawlen == o->rawlen &&
		       s->rawcrc == lk__crc32c(0, o->raw, (size_t)o->rawlen);
	return s->counter == o->rec.counter && s->state == o->rec.state && s->nonce == o->rec.nonce;
}

static void remember(struct lk__lease *l, struct seen *s, const struct obs *o)
{
	int64_t last_ttl = s->have && s->gen == o->gen ? s->ttl_ns : 0;

	s->have = 1;
	s->gen = o->gen;
	s->valid = o->valid;
	s->first_ns = o->t_arrived;
	s->rawlen = o->rawlen;
	s->rawcrc = lk__crc32c(0, o->raw, (size_t)o->rawlen);
	if (o->valid) {
		s->counter = o->rec.counter;
		s->state = o->rec.state;
		s->nonce = o->rec.nonce;
		s->ttl_ns = ms_ns(o->rec.ttl_ms);
		s->rho_ppm = o->rec.rho_ppm;
	} else {
		/* Unknown claimant: wait at least our own TTL, or longer if this
		 * generation was seen with a longer one. */
		s->ttl_ns = last_ttl > l->ttl_ns ? last_ttl : l->ttl_ns;
		s->rho_ppm = 0;
	}
	if (s->ttl_ns < l->ttl_ns && !o->valid)
		s->ttl_ns = l->ttl_ns;
	if (s->rho_ppm < l->rho_ppm)
		s->rho_ppm = l->rho_ppm;
}

/* The record was written on this host: same boot and pid namespace. */
static int holder_here(const struct lk_store *st, const struct lk__lrec *r)
{
	return !memcmp(r->boot_id, st->boot_id, 16) && st->pidns && r->pidns == st->pidns &&
	       r->pid > 0;
}

/* On this host: is that process gone? */
static int pid_dead(int32_t pid, uint64_t pid_start)
{
	uint64_t start;
	char state = 0;

	if (kill(pid, 0) == 0 || errno == EPERM) {
		start = lk__pid_stat(pid, &state);
		/* an exited process not yet reaped is dead too */
		if (start && (state == 'Z' || state == 'X'))
			return 1;
		/* a recycled pid has another start time; unreadable means alive */
		return start && pid_start && start != pid_start;
	}
	return errno == ESRCH;
}

/*
 * Same host, and the holder is gone: the process named by the hold and, when
 * the record names a second one (the process that renews on behalf of a
 * guardian, as lockctl does), that one too.
 */
static int holder_dead_here(const struct lk_store *st, const struct lk__lrec *r)
{
	if (!holder_here(st, r))
		return 0;
	if (!pid_dead(r->pid, r->pid_start))
		return 0;
	return r->pid2 <= 0 || pid_dead(r->pid2, r->pid2_start);
}

/* The process to watch with a pidfd: the first of the two still alive. */
static int32_t holder_watch_pid(const struct lk__lrec *r)
{
	if (!pid_dead(r->pid, r->pid_start))
		return r->pid;
	return r->pid2 > 0 ? r->pid2 : r->pid;
}

/* When the observed lease is free: 1 now, 0 not yet (*ret_when: the
 * earliest CLOCK_BOOTTIME a confirming read may be sent, or -1). */
static int judge(struct lk__lease *l, const struct seen *s, const struct obs *o, int64_t *ret_when)
{
	int64_t until = s->first_ns + ttl_up(s->ttl_ns, s->rho_ppm);

	*ret_when = -1;
	if (o->valid) {
		if (o->rec.state == LK_LSTATE_RELEASED || o->rec.state == LK_LSTATE_ABORTED)
			return 1;
		if (o->rec.state == LK_LSTATE_HELD && holder_dead_here(l->st, &o->rec))
			return 1;
	}
	/* HELD, BROKEN, or unreadable: free once unchanged for T*(1+rho),
	 * confirmed by a read sent after that. */
	if (o->t_sent >= until)
		return 1;
	*ret_when = until;
	return 0;
}

/* ------------------------------------------------------------------------
 * Claiming
 */

enum { CLAIM_WON = 0, CLAIM_LOST = 1, CLAIM_ABORTED = 2 };

static void fill_record(struct lk__lease *l, struct lk__lrec *rec, uint64_t gen)
{
	struct lk_store *st = l->st;

	memset(rec, 0, sizeof(*rec));
	rec->gen = gen;
	rec->state = LK_LSTATE_HELD;
	rec->ttl_ms = (uint32_t)(l->ttl_ns / 1000000);
	rec->rho_ppm = l->rho_ppm;
	rec->counter = 0;
	memcpy(rec->boot_id, st->boot_id, 16);
	rec->pidns = st->pidns;
	rec->pid = l->pid;
	rec->pid_start = l->pid_start;
	if (l->pid != (int32_t)getpid()) {
		/* we renew on behalf of l->pid: the hold ends when both are gone */
		rec->pid2 = (int32_t)getpid();
		rec->pid2_start = lk__pid_start(rec->pid2);
	}
	rec->nonce = lk__random64();
	rec->wall_ns = lk__realtime_ns();
	rec->since_ns = rec->wall_ns;
	lk__label_copy(rec->host, sizeof(rec->host), st->host);
	lk__label_copy(rec->owner, sizeof(rec->owner), l->lk->owner);
}

static int collect_old(const char *name, void *userdata);

struct oldgens {
	uint64_t below;
	uint64_t v[64];
	int n;
};

static int collect_old(const char *name, void *userdata)
{
	struct oldgens *og = userdata;
	uint64_t g;

	if (lk__gen_parse(name, &g) < 0 || g >= og->below)
		return 0;
	if (og->n < 64) {
		og->v[og->n++] = g;
	} else {
		/* keep the 64 oldest: clean-up must go oldest first */
		int max = 0;

		for (int i = 1; i < 64; i++)
			if (og->v[i] > og->v[max])
				max = i;
		if (g < og->v[max])
			og->v[max] = g;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Delete generations below gen - 1, oldest first. Best effort. */
static void cleanup_old(struct lk__lease *l, uint64_t gen)
{
	const struct lk_backend *be = l->st->be;
	struct oldgens og = { .below = gen - 1, .n = 0 };
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];

	if (be->readdir(l->st->bs, l->dir, collect_old, &og, NULL) < 0)
		return;
	qsort(og.v, (size_t)og.n, sizeof(og.v[0]), cmp_u64);
	for (int i = 0; i < og.n; i++) {
		lk__gen_name(gname, og.v[i]);
		snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
		if (be->unlink(l->st->bs, path, NULL) < 0)
			break; /* keep the oldest-first order: stop at the first failure */
	}
}

/* Mark our own generation ABORTED (best effort): a claim that failed half-way
 * must not keep others waiting out a TTL for a holder that never was. */
static void abort_claim(struct lk__lease *l, struct lk__lrec *rec, const char *gname)
{
	const struct lk_backend *be = l->st->be;
	uint8_t buf[LK_LREC_SIZE];
	struct lk_bfile *f;

	rec->state = LK_LSTATE_ABORTED;
	lk__lrec_encode(rec, buf);
	if (be->open_record(l->st->bs, l->dir, gname, &f, NULL) == 0) {
		be->write_record(f, buf, sizeof(buf), NULL);
		be->close_record(f);
	}
}

static int claim(struct lk__lease *l, const struct obs *judged, int64_t *ret_t_submit,
		 struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char tmp[LK_NAME_MAX + 32], path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2];
	char gname[LK_GEN_NAME_LEN + 1];
	uint8_t buf[LK_LREC_SIZE], now_raw[LK_LREC_SIZE + 1];
	struct lk__lrec rec;
	uint64_t gen = judged->gen + 1, id_tmp = 0, id_gen = 0;
	int64_t t_submit;
	int r, n;

	if (gen >= LK_TOKEN_LIMIT) {
		lk__err_set(err, "lock %s has used up its token space", l->dir);
		return -EOVERFLOW;
	}
	fill_record(l, &rec, gen);
	lk__lrec_encode(&rec, buf);
	lk__gen_name(gname, gen);
	snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
	snprintf(tmp, sizeof(tmp), "%s/.c.%016llx", l->dir, (unsigned long long)rec.nonce);

	/* A claim counts as renewal 0: the deadline runs from before it was sent. */
	t_submit = lk__boottime_ns();
	r = be->write_new(l->st->bs, tmp, buf, sizeof(buf), &id_tmp, err);
	if (r < 0)
		return r;
	r = be->link(l->st->bs, tmp, path, err);
	if (r == -EEXIST) {
		/* Lost the race, or our own link was retransmitted: compare ids. */
		if (be->stat(l->st->bs, path, &id_gen, err) == 0 && id_gen == id_tmp)
			r = 0;
	} else if (r < 0 && be->stat(l->st->bs, path, &id_gen, NULL) == 0 && id_gen == id_tmp) {
		/* the link landed but was not made durable (a failed directory
		 * sync): the token cannot be trusted, give the generation back
		 * (compared before the temporary name goes, while its id is ours) */
		abort_claim(l, &rec, gname);
	}
	be->unlink(l->st->bs, tmp, NULL);
	if (r == -EEXIST) {
		err->msg[0] = 0;
		return CLAIM_LOST;
	}
	if (r < 0)
		return r;

	/* g.N must still hold the very record we judged free. */
	lk__gen_name(gname, judged->gen);
	snprintf(tmp, sizeof(tmp), "%s/%s", l->dir, gname);
	n = be->read(l->st->bs, tmp, now_raw, sizeof(now_raw), NULL, err);
	lk__gen_name(gname, gen);
	if (n < 0 && n != -ENOENT && n != -EBADMSG && n != -ELOOP && n != -EISDIR) {
		/* cannot tell: not a hold, and an error the caller should see */
		abort_claim(l, &rec, gname);
		return n;
	}
	if (n != judged->rawlen || memcmp(now_raw, judged->raw, (size_t)judged->rawlen)) {
		abort_claim(l, &rec, gname);
		err->msg[0] = 0;
		return CLAIM_ABORTED;
	}

	r = be->open_record(l->st->bs, l->dir, gname, &l->f, err);
	if (r < 0) {
		abort_claim(l, &rec, gname);
		return r;
	}
	l->gen = gen;
	l->rec = rec;
	*ret_t_submit = t_submit;
	return CLAIM_WON;
}

/* ------------------------------------------------------------------------
 * Acquire, release
 */

static int64_t jitter(int64_t ns)
{
	/* "equal jitter": uniform in [ns/2, ns] keeps waiters from marching in
	 * step while bounding how soon they look again */
	if (ns <= 1)
		return ns;
	return ns / 2 + (int64_t)(lk__random64() % (uint64_t)(ns / 2 + 1));
}

int lk__lease_acquire(struct lk_lock *lk, int64_t timeout_ms, struct lk_err *err)
{
	struct lk__lease *l = lk->lease;
	struct lk_store *st = lk->st;
	struct lk__engine *e;
	struct seen s = { 0 };
	struct obs o;
	int64_t t0 = lk__boottime_ns(), end = -1, backoff = ms_ns(5);
	int64_t poll_ns = l->ttl_ns / 10;
	int watch = -1, pidfd = -1, r, missing = 0;
	int32_t pidfd_pid = 0;

	if (poll_ns > ms_ns(1000))
		poll_ns = ms_ns(1000);
	if (timeout_ms >= 0)
		end = t0 + ms_ns((uint64_t)timeout_ms);
	pthread_mutex_lock(&l->cancel_mu);
	if (l->cancel_fd < 0)
		l->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = l->cancel_fd < 0 ? -errno : 0;
	pthread_mutex_unlock(&l->cancel_mu);
	if (r < 0)
		return r;

	r = lk__engine_get(st, &e);
	if (r < 0) {
		lk__err_set(err, "cannot start the heartbeat engine: %s", strerror(-r));
		return r;
	}
	r = st->be->entry(st->bs, l->dir, err);
	if (r == LK_ENTRY_KERNEL) {
		lk__err_set(err, "lock %s is a kernel-mode lock; it cannot be used in lease mode",
			    l->dir);
		return -EINVAL;
	}
	if (r == LK_ENTRY_NONE)
		r = lk__lease_create_dir(st, l->dir, err);
	if (r < 0)
		return r;

	for (;;) {
		int64_t when, now, wait_until, t_submit = 0;

		r = observe(l, &o, err);
		if (r == -ENOENT && ++missing < 50) {
			/*
			 * The directory was there (or we just made it) and now is
			 * not: an NFS server whose caches lag behind changes made
			 * in its exported directory locally, or a lock removed by
			 * an administrator. Make it again if it is really gone.
			 */
			struct timespec ts = { 0, 20000000 };

			nanosleep(&ts, NULL);
			l->hint_gen = 0;
			r = st->be->entry(st->bs, l->dir, err);
			if (r == LK_ENTRY_NONE)
				r = lk__lease_create_dir(st, l->dir, err);
			if (r < 0)
				goto out;
			continue;
		}
		if (r < 0)
			goto out;
		if (!same_as_seen(&s, &o))
			remember(l, &s, &o);
		if (judge(l, &s, &o, &when) && o.probed) {
			/*
			 * Free by a probe from a remembered generation: confirm with a
			 * full listing before claiming. Probing upwards stops at the
			 * first missing name, and a claimant paused long enough can
			 * have re-created (and aborted) a generation that clean-up had
			 * deleted, below the real newest one.
			 */
			l->hint_gen = 0;
			continue;
		}
		if (judge(l, &s, &o, &when)) {
			r = claim(l, &o, &t_submit, err);
			if (r < 0)
				goto out;
			if (r == CLAIM_WON) {
				int64_t dl = t_submit + l->ttl_ns - l->ttl_ns / 1000000 * l->rho_ppm -
					     l->margin_ns;

				if (lk__boottime_ns() >= dl) {
					/* the claim itself took longer than the lease: give it back */
					l->rec.state = LK_LSTATE_RELEASED;
					lk__lrec_encode(&l->rec, l->wbuf);
					st->be->write_record(l->f, l->wbuf, sizeof(l->wbuf), NULL);
					st->be->close_record(l->f);
					l->f = NULL;
					l->gen = 0;
					continue;
				}
				atomic_store(&l->lost, 0);
				atomic_store(&l->deadline_ns, dl);
				snprintf(l->probe, sizeof(l->probe), "%s/g.%016llu", l->dir,
					 (unsigned long long)(l->gen + 1));
				lk__engine_add(e, l);
				cleanup_old(l, l->gen);
				l->hint_gen = l->gen;
				r = 0;
				goto out;
			}
			/* lost the race or aborted: look again after a jittered pause */
			when = lk__boottime_ns() + jitter(backoff);
			if (backoff < poll_ns)
				backoff *= 2;
			if (timeout_ms == 0) {
				r = -EWOULDBLOCK;
				goto out;
			}
		} else if (timeout_ms == 0) {
			r = -EWOULDBLOCK;
			goto out;
		}

		now = lk__boottime_ns();
		if (end >= 0 && now >= end) {
			r = -ETIMEDOUT;
			goto out;
		}
		/* On a local store, see changes to the lock directory at once. The
		 * inotify descriptor is made on the first wait and kept with the
		 * handle: closing one costs the kernel a grace period (up to
		 * milliseconds), which a waiter should not pay on every acquire. */
		if (l->watch_fd < 0 && st->be->watch && !st->be->is_network(st->bs))
			l->watch_fd = st->be->watch(st->bs, l->dir, NULL);
		watch = l->watch_fd;
		/* A holder on this host: its death ends the hold, so watch for it
		 * (a pidfd turns readable when the process exits) instead of
		 * noticing only at the next poll. */
		if (o.valid && o.rec.state == LK_LSTATE_HELD && holder_here(st, &o.rec) &&
		    holder_watch_pid(&o.rec) != pidfd_pid) {
			int32_t wp = holder_watch_pid(&o.rec);

			if (pidfd >= 0)
				close(pidfd);
			pidfd = (int)syscall(SYS_pidfd_open, wp, 0);
			pidfd_pid = pidfd >= 0 ? wp : 0;
		}
		wait_until = now + jitter(poll_ns);
		if (when >= 0 && when < wait_until)
			wait_until = when;
		if (end >= 0 && end < wait_until)
			wait_until = end;
		{
			struct pollfd pfd[3] = { { l->cancel_fd, POLLIN, 0 },
						 { watch, POLLIN, 0 },
						 { pidfd, POLLIN, 0 } };
			int64_t ms = (wait_until - now + 999999) / 1000000;
			char ev[4096];

			if (ms < 0)
				ms = 0;
			if (poll(pfd, 3, (int)ms) > 0) {
				if (pfd[2].revents) {
					close(pidfd);
					pidfd = -1;
					pidfd_pid = 0;
				}
				if (pfd[0].revents) {
					r = -ECANCELED;
					goto out;
				}
				if (watch >= 0 && pfd[1].revents)
					while (read(watch, ev, sizeof(ev)) > 0)
						;
			}
		}
	}
out:
	if (pidfd >= 0)
		close(pidfd);
	pthread_mutex_lock(&l->cancel_mu);
	close(l->cancel_fd);
	l->cancel_fd = -1;
	pthread_mutex_unlock(&l->cancel_mu);
	return r;
}

int lk__lease_release(struct lk_lock *lk, struct lk_err *err)
{
	struct lk__lease *l = lk->lease;
	struct lk_store *st = lk->st;
	int r = 0, lost;

	if (!l->gen)
		return -ENOLCK;
	if (!lk__engine_remove(st->engine, l)) {
		/* A renewal write never came back before the deadline: the lease
		 * is lost, and the engine now owns this state. Start afresh. */
		struct lk__lease *n = calloc(1, sizeof(*n));

		lk__err_set(err, "lease %s was lost (storage did not answer)", l->dir);
		if (n) {
			*n = *l;
			n->gen = 0;
			n->f = NULL;
			n->cancel_fd = -1;
			n->watch_fd = -1;
			pthread_mutex_init(&n->cancel_mu, NULL);
			n->next = NULL;
			n->registered = n->orphan = n->pending = n->in_callback = 0;
			n->io = NULL;
			l->lk = NULL;
			lk->lease = n;
		}
		return -ENOLCK;
	}
	lost = lk__lease_check(lk);
	if (lost == 0) {
		/* RELEASED lets waiters take over at once instead of waiting out T. */
		l->rec.state = LK_LSTATE_RELEASED;
		l->rec.wall_ns = lk__realtime_ns();
		lk__lrec_encode(&l->rec, l->wbuf);
		r = st->be->write_record(l->f, l->wbuf, sizeof(l->wbuf), err);
	} else {
		lk__err_set(err, "lease %s was lost before release (%s)", l->dir,
			    lk_strerror(atomic_load(&l->lost) ? atomic_load(&l->lost) : -ETIMEDOUT));
		r = -ENOLCK;
	}
	st->be->close_record(l->f);
	l->f = NULL;
	l->gen = 0;
	atomic_store(&l->deadline_ns, 0);
	return r;
}

int lk__lease_cancel(struct lk_lock *lk)
{
	uint64_t one = 1;
	struct timespec ms = { 0, 1000000 };

	/* Return once the acquire has (it checks between storage calls). Keep
	 * poking: an acquire that was just starting may have drained a poke. */
	while (atomic_load(&lk->busy)) {
		struct lk__lease *l = lk->lease;

		pthread_mutex_lock(&l->cancel_mu);
		if (l->cancel_fd >= 0 && write(l->cancel_fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is full, the acquire will see it */
		}
		pthread_mutex_unlock(&l->cancel_mu);
		nanosleep(&ms, NULL);
	}
	return 0;
}

int lk__lease_check(const struct lk_lock *lk)
{
	const struct lk__lease *l = lk->lease;

	if (!l || !l->gen || atomic_load(&((struct lk__lease *)l)->lost))
		return -ENOLCK;
	if (lk__boottime_ns() >= atomic_load(&((struct lk__lease *)l)->deadline_ns))
		return -ENOLCK;
	return 0;
}

uint64_t lk__lease_remaining_ms(const struct lk_lock *lk)
{
	const struct lk__lease *l = lk->lease;
	int64_t left;

	if (lk__lease_check(lk) < 0)
		return 0;
	left = atomic_load(&((struct lk__lease *)l)->deadline_ns) - lk__boottime_ns();
	return left > 0 ? (uint64_t)(left / 1000000) : 0;
}

int lk__lease_params(const struct lk_lock *lk, struct lk_lease_params *ret)
{
	const struct lk__lease *l = lk->lease;

	if (!l)
		return -EINVAL;
	ret->ttl_ms = (uint64_t)(l->ttl_ns / 1000000);
	ret->renew_ms = (uint64_t)(l->renew_ns / 1000000);
	ret->rho_ppm = l->rho_ppm;
	ret->margin_ms = (uint64_t)(l->margin_ns / 1000000);
	return 0;
}

/* ------------------------------------------------------------------------
 * Status: one look, no waiting. Whether a remote holder is alive cannot be
 * proven without watching for T, so "expired" here is advisory (wall
 * clocks, or a dead process on this host); lk_lock_acquire() never uses it.
 */
int lk__lease_status(struct lk_store *st, const char *name, struct lk_status *ret,
		     struct lk_err *err)
{
	struct lk__lease l;
	struct lk_lock lk;
	struct obs o;
	int r;

	memset(&l, 0, sizeof(l));
	memset(&lk, 0, sizeof(lk));
	lk.st = st;
	l.lk = &lk;
	l.st = st;
	l.ttl_ns = ms_ns(DEF_TTL_MS);
	snprintf(l.dir, sizeof(l.dir), "%s", name);
	ret->mode = LK_MODE_LEASE;
	ret->exists = 1;
	r = observe(&l, &o, err);
	if (r < 0)
		return r;
	if (!o.valid) {
		/* unreadable: held by someone unknown; never reported free */
		ret->held = 1;
		ret->token = o.gen;
		return 0;
	}
	ret->token = o.rec.gen;
	ret->ttl_ms = o.rec.ttl_ms;
	lk__label_copy(ret->holder.owner, sizeof(ret->holder.owner), o.rec.owner);
	lk__label_copy(ret->holder.host, sizeof(ret->holder.host), o.rec.host);
	ret->holder.pid = o.rec.pid;
	ret->holder.since_ns = o.rec.since_ns;
	ret->renew_age_ms = (lk__realtime_ns() - o.rec.wall_ns) / 1000000;
	switch (o.rec.state) {
	case LK_LSTATE_RELEASED:
	case LK_LSTATE_ABORTED:
		ret->released = 1;
		break;
	case LK_LSTATE_BROKEN:
		ret->broken = 1;
		ret->held = 1;
		break;
	default:
		ret->held = 1;
		if (holder_dead_here(st, &o.rec) ||
		    ret->renew_age_ms > (int64_t)o.rec.ttl_ms + (int64_t)o.rec.ttl_ms / 10) {
			ret->expired = 1;
		}
	}
	return 0;
}
