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
#include <sys/inotify.h>
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

/*
 * A new lock directory is born non-empty: made under a temporary name
 * (".n.<16 hex>"), given its first generation, then renamed into place.
 * Its first token comes from the wall clock (above twice the time in µs,
 * like a new kernel lock file), so that a lock deleted by lockctl prune and
 * made anew still gets higher tokens. The clock is read only once the
 * temporary directory exists: lockctl prune removes every one it finds
 * after its tombstone's token was issued (prune_births()), so a directory
 * renamed into place afterwards was made after that, and its first token
 * is above every token of the lock it replaces. A creator whose temporary
 * directory prune removed starts again.
 */
int lk__lease_create_dir(struct lk_store *st, const char *name, struct lk_err *err)
{
	const struct lk_backend *be = st->be;
	struct lk__lrec rec;
	uint8_t buf[LK_LREC_SIZE];
	char tmp[64], path[64 + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	uint64_t id;
	int r = 0;

	for (int attempt = 0; attempt < 20; attempt++) {
		snprintf(tmp, sizeof(tmp), ".n.%016llx", (unsigned long long)lk__random64());
		r = be->mkdir(st->bs, tmp, err);
		if (r < 0) {
			lk__err_set(err, "cannot create lock directory %s: %s", name, strerror(-r));
			return r;
		}
		memset(&rec, 0, sizeof(rec));
		rec.gen = lk__ktoken_seed(lk__realtime_ns());
		rec.state = LK_LSTATE_RELEASED;
		rec.wall_ns = lk__realtime_ns();
		memcpy(rec.boot_id, st->boot_id, 16);
		lk__label_copy(rec.host, sizeof(rec.host), st->host);
		lk__lrec_encode(&rec, buf);
		lk__gen_name(gname, rec.gen);
		snprintf(path, sizeof(path), "%s/%s", tmp, gname);
		r = be->write_new(st->bs, path, buf, sizeof(buf), &id, err);
		if (r == 0) {
			r = be->rename(st->bs, tmp, name, err);
			if (r == 0)
				return 0;
		}
		be->unlink(st->bs, path, NULL);
		be->rmdir(st->bs, tmp, NULL);
		if (r != -ENOENT)
			break;
		/* a prune removed the temporary directory: start again */
		err->msg[0] = 0;
	}
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

/* Generations below `below`: the 64 oldest of them. */
struct oldgens {
	uint64_t below;
	uint64_t v[64];
	int n;
};

static int collect_old(const char *name, void *userdata);

struct obs {
	int found;      /* a newest generation exists */
	int empty;      /* -EBADMSG: the directory stayed without any generation */
	int probed;     /* found by probing from a remembered generation, not a listing */
	uint64_t gen;
	int valid;      /* its record decoded */
	struct lk__lrec rec;
	uint8_t raw[LK_LREC_SIZE + 1]; /* one more: a longer file is no record */
	int rawlen;
	int64_t t_sent;    /* CLOCK_BOOTTIME before the first request */
	int64_t t_arrived; /* CLOCK_BOOTTIME after the last reply */
	/* from a listing: the oldest generations in it, for clean-up after a
	 * claim without listing again */
	struct oldgens old;
};

struct newest {
	uint64_t gen;    /* the newest generation listed */
	int found;
	int older;       /* some generation older than the newest exists */
	int has_prev;    /* gen - 1 exists */
	uint64_t max2;   /* the second newest */
	struct oldgens *old; /* collects every generation listed */
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
	return collect_old(name, n->old);
}

static int observe(struct lk__lease *l, struct obs *o, struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	int r, attempts = 0, gap_looks = 0, empty_looks = 0;

	memset(o, 0, sizeof(*o));
	o->t_sent = lk__boottime_ns();
again:
	if (++attempts > 20) {
		lk__err_set(err, "lock %s keeps changing under observation", l->dir);
		return -EBUSY;
	}
	if (l->hint_gen && !l->net) {
		/*
		 * Probe the next generation instead of listing the directory. Not
		 * on network stores: there a listing is one request that returns
		 * every name, a probe one request per name, and a claim needs a
		 * listing anyway.
		 */
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
		struct newest n = { .old = &o->old };

		o->old.below = UINT64_MAX;
		o->old.n = 0;
		r = be->readdir(l->st->bs, l->dir, find_newest, &n, err);
		if (r < 0)
			return r;
		if (!n.found) {
			/*
			 * lockctl prune empties a lock directory just before it
			 * removes it: look again a few times, by when it is gone
			 * (-ENOENT, and the acquire makes it anew).
			 */
			if (++empty_looks < 5) {
				struct timespec ts = { 0, 10000000 };

				nanosleep(&ts, NULL);
				goto again;
			}
			o->empty = 1;
			lk__err_set(err,
				    "lock directory %s has no generation records (a lockctl "
				    "prune that was interrupted, or damage from outside); "
				    "lockctl prune removes it",
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

static int same_as_seen(const struct lk__seen *s, const struct obs *o)
{
	if (!s->have || s->gen != o->gen || s->valid != o->valid)
		return 0;
	if (!o->valid) /* unreadable: unchanged only if byte for byte the same */
		return s->rawlen == o->rawlen &&
		       s->rawcrc == lk__crc32c(0, o->raw, (size_t)o->rawlen);
	return s->counter == o->rec.counter && s->state == o->rec.state && s->nonce == o->rec.nonce;
}

static void remember(struct lk__lease *l, struct lk__seen *s, const struct obs *o)
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
static int judge(struct lk__lease *l, const struct lk__seen *s, const struct obs *o, int64_t *ret_when)
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

/* An acquire is about to claim over a holder it judged gone (not one that
 * released): counted, and reported to the store's event sinks. */
static void expiry_observed(struct lk__lease *l, const struct lk__seen *s, const struct obs *o)
{
	struct lk_store *st = l->st;
	int dead;

	lk__count(&st->stats.expiries_observed);
	if (!st->ev_on)
		return;
	dead = o->valid && o->rec.state == LK_LSTATE_HELD && holder_dead_here(st, &o->rec);
	lk__emit_lock(l->lk, LK_EV_EXPIRY_OBSERVED, o->gen, o->t_sent - s->first_ns,
		      dead ? -ESRCH : 0);
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

/*
 * Delete generations below gen - 1, oldest first. Best effort. known: the
 * generations the claim's own listing found (it was made before the claim,
 * and the only generation created since is ours), or NULL to list again.
 */
static void cleanup_old(struct lk__lease *l, uint64_t gen, const struct oldgens *known)
{
	const struct lk_backend *be = l->st->be;
	struct oldgens og = { .below = gen - 1, .n = 0 };
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	int r;

	if (known) {
		for (int i = 0; i < known->n; i++)
			if (known->v[i] < og.below)
				og.v[og.n++] = known->v[i];
	} else if (be->readdir(l->st->bs, l->dir, collect_old, &og, NULL) < 0) {
		return;
	}
	qsort(og.v, (size_t)og.n, sizeof(og.v[0]), cmp_u64);
	for (int i = 0; i < og.n; i++) {
		lk__gen_name(gname, og.v[i]);
		snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
		r = be->unlink(l->st->bs, path, NULL);
		/* gone already: whoever deleted it had deleted the older ones */
		if (r < 0 && r != -ENOENT)
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

/*
 * A claim whose predecessor is gone re-created a generation below the newest
 * (clean-up deleted it), or in a lock directory that lockctl prune removed
 * and someone made anew, far below its first generation. Marked ABORTED it
 * is harmless to the protocol, but in a new directory it looks like a gap
 * (observe() refuses those), so it goes, if it is still ours.
 */
static void drop_stray_claim(struct lk__lease *l, const char *gname, uint64_t id)
{
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2];
	uint64_t now_id = 0;

	snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
	if (l->st->be->stat(l->st->bs, path, &now_id, NULL) == 0 && now_id == id)
		l->st->be->unlink(l->st->bs, path, NULL);
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
		if (n == -ENOENT)
			drop_stray_claim(l, gname, id_tmp);
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

/* Read every pending inotify event; 1 if the watched directory is gone
 * (IN_IGNORED: deleted, or the watch removed with it). */
static int watch_drain(int fd, char *buf, size_t len)
{
	ssize_t n;
	int gone = 0;

	while ((n = read(fd, buf, len)) > 0) {
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ie = (const void *)(buf + off);

			if (ie->mask & IN_IGNORED)
				gone = 1;
			off += (ssize_t)sizeof(*ie) + ie->len;
		}
	}
	return gone;
}

static int64_t jitter(int64_t ns)
{
	/* "equal jitter": uniform in [ns/2, ns] keeps waiters from marching in
	 * step while bounding how soon they look again */
	if (ns <= 1)
		return ns;
	return ns / 2 + (int64_t)(lk__random64() % (uint64_t)(ns / 2 + 1));
}

/* Looks in a row that an acquire lets fail because the server did not
 * answer, while it may still wait, before it reports the error. */
#define MAX_SILENT_LOOKS 3

int lk__lease_acquire(struct lk_lock *lk, int64_t timeout_ms, struct lk_err *err)
{
	struct lk__lease *l = lk->lease;
	struct lk_store *st = lk->st;
	struct lk__engine *e;
	struct obs o;
	int64_t t0 = lk__boottime_ns(), end = -1, backoff = ms_ns(5);
	int64_t poll_ns = l->ttl_ns / 10;
	int watch = -1, pidfd = -1, r, missing = 0, silent = 0;
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
	l->net = st->be->is_network && st->be->is_network(st->bs);
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

		err->transient = 0;
		r = observe(l, &o, err);
		if (r < 0 && err->transient && timeout_ms != 0 && ++silent <= MAX_SILENT_LOOKS &&
		    (end < 0 || lk__boottime_ns() < end)) {
			/*
			 * The server did not answer (a loaded server, a short
			 * network cut): an acquire that may still wait looks
			 * again after a pause, and reports the error only when
			 * the server stays silent. Nothing was claimed.
			 */
			int64_t ms = jitter(poll_ns) / 1000000, left;
			struct pollfd pfd = { l->cancel_fd, POLLIN, 0 };

			if (end >= 0 && (left = (end - lk__boottime_ns()) / 1000000) < ms)
				ms = left;
			if (poll(&pfd, 1, (int)(ms > 0 ? ms : 0)) > 0) {
				r = -ECANCELED;
				goto out;
			}
			err->msg[0] = 0;
			continue;
		}
		if (r == 0)
			silent = 0;
		if (r == -EBADMSG && o.empty && missing < 50) {
			/*
			 * A lock directory without generations has no holder,
			 * and nobody can come to hold one in it (a claim needs a
			 * predecessor): a prune emptied it and is slow to remove
			 * it, or was killed before. Remove it (only if empty) and
			 * make it anew, as the prune would have.
			 */
			int r2 = st->be->rmdir(st->bs, l->dir, NULL);

			if (r2 == 0 || r2 == -ENOENT) {
				err->msg[0] = 0;
				r = -ENOENT;
			}
		}
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
		if (!same_as_seen(&l->seen, &o))
			remember(l, &l->seen, &o);
		if (judge(l, &l->seen, &o, &when) && o.probed) {
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
		if (judge(l, &l->seen, &o, &when)) {
			if (!o.valid || (o.rec.state != LK_LSTATE_RELEASED &&
					 o.rec.state != LK_LSTATE_ABORTED))
				expiry_observed(l, &l->seen, &o);
			r = claim(l, &o, &t_submit, err);
			if (r == -ENOENT && ++missing < 50) {
				/* the lock directory went away under the claim (lockctl
				 * prune): the next look finds out and makes it anew */
				l->hint_gen = 0;
				err->msg[0] = 0;
				continue;
			}
			if (r < 0)
				goto out;
			if (r == CLAIM_LOST) {
				lk__count(&st->stats.claim_races_lost);
				if (st->ev_on)
					lk__emit_lock(lk, LK_EV_CLAIM_RACE_LOST, o.gen + 1, 0, 0);
			}
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
				cleanup_old(l, l->gen, o.probed ? NULL : &o.old);
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

		lk->contended = 1; /* it will wait, or has lost a race */
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
			char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

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
				if (watch >= 0 && pfd[1].revents &&
				    watch_drain(watch, ev, sizeof(ev))) {
					/* the directory went (lockctl prune): watch
					 * the one made anew on the next wait */
					close(l->watch_fd);
					l->watch_fd = -1;
				}
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
			/*
			 * Only what the caller set, and what no engine thread
			 * writes: the rest of *l belongs to the engine now.
			 */
			n->lk = lk;
			n->st = st;
			n->ttl_ns = l->ttl_ns;
			n->renew_ns = l->renew_ns;
			n->margin_ns = l->margin_ns;
			n->io_ns = l->io_ns;
			n->rho_ppm = l->rho_ppm;
			n->on_lost = l->on_lost;
			n->userdata = l->userdata;
			n->pid = l->pid;
			n->pid_start = l->pid_start;
			n->cancel_fd = -1;
			n->watch_fd = -1;
			pthread_mutex_init(&n->cancel_mu, NULL);
			memcpy(n->dir, l->dir, sizeof(n->dir));
			n->net = l->net;
			pthread_mutex_lock(&st->engine->mu);
			l->lk = NULL;
			pthread_mutex_unlock(&st->engine->mu);
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
		for (int attempt = 0;; attempt++) {
			err->transient = 0;
			r = st->be->write_record(l->f, l->wbuf, sizeof(l->wbuf), err);
			/*
			 * The server did not answer: try again while the lease
			 * lasts (twice more at most), or waiters wait out T.
			 * Writing RELEASED late is harmless: a newer generation
			 * makes this one old whatever it says.
			 */
			if (r == 0 || !err->transient || attempt >= 2 ||
			    lk__boottime_ns() >= atomic_load(&l->deadline_ns))
				break;
			{
				struct timespec ts = { 0, 10000000 + (long)(lk__random64() % 20000000) };

				nanosleep(&ts, NULL);
			}
			err->msg[0] = 0;
		}
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

/* ------------------------------------------------------------------------
 * Administration: lockctl break and lockctl prune (docs/protocol.md, section
 * 26a). Both act through the protocol's one arbiter, the claim of the next
 * generation, so that whatever else happens to the lock at the same time
 * (an acquire, a renewal, another administrator) is ordered by it: a break
 * is a claim in state BROKEN, and a prune first claims a tombstone that no
 * one else can claim past without seeing it, and only then deletes.
 */

/* A lease without a handle of the caller's, for one administrative act. */
static void admin_init(struct lk_store *st, const char *name, const char *label,
		       struct lk__lease *l, struct lk_lock *lk)
{
	memset(l, 0, sizeof(*l));
	memset(lk, 0, sizeof(*lk));
	lk->st = st;
	lk->mode = LK_MODE_LEASE;
	snprintf(lk->name, sizeof(lk->name), "%s", name);
	lk__label_copy(lk->owner, sizeof(lk->owner), label ? label : "");
	l->lk = lk;
	l->st = st;
	l->ttl_ns = ms_ns(DEF_TTL_MS);
	l->renew_ns = l->ttl_ns / 4;
	l->rho_ppm = DEF_RHO_PPM;
	l->margin_ns = l->ttl_ns / 10;
	l->pid = (int32_t)getpid();
	l->pid_start = lk__pid_start(l->pid);
	l->cancel_fd = -1;
	l->watch_fd = -1;
	l->net = st->be->is_network && st->be->is_network(st->bs);
	snprintf(l->dir, sizeof(l->dir), "%s", name);
}

/*
 * Claim generation judged->gen + 1 with record rec, as claim() does (link of
 * a written, synced record; file ids settle EEXIST; the post-claim check),
 * but for a record that nobody renews.
 */
static int admin_claim(struct lk__lease *l, const struct obs *judged, struct lk__lrec *rec,
		       struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char tmp[LK_NAME_MAX + 32], path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2];
	char gname[LK_GEN_NAME_LEN + 1];
	uint8_t buf[LK_LREC_SIZE], now_raw[LK_LREC_SIZE + 1];
	uint64_t id_tmp = 0, id_gen = 0;
	int r, n;

	rec->gen = judged->gen + 1;
	if (rec->gen >= LK_TOKEN_LIMIT) {
		lk__err_set(err, "lock %s has used up its token space", l->dir);
		return -EOVERFLOW;
	}
	lk__lrec_encode(rec, buf);
	lk__gen_name(gname, rec->gen);
	snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
	snprintf(tmp, sizeof(tmp), "%s/.c.%016llx", l->dir, (unsigned long long)rec->nonce);
	r = be->write_new(l->st->bs, tmp, buf, sizeof(buf), &id_tmp, err);
	if (r < 0)
		return r;
	r = be->link(l->st->bs, tmp, path, err);
	if (r == -EEXIST) {
		if (be->stat(l->st->bs, path, &id_gen, err) == 0 && id_gen == id_tmp)
			r = 0;
	} else if (r < 0 && be->stat(l->st->bs, path, &id_gen, NULL) == 0 && id_gen == id_tmp) {
		abort_claim(l, rec, gname);
	}
	be->unlink(l->st->bs, tmp, NULL);
	if (r == -EEXIST) {
		err->msg[0] = 0;
		return CLAIM_LOST;
	}
	if (r < 0)
		return r;
	lk__gen_name(gname, judged->gen);
	snprintf(tmp, sizeof(tmp), "%s/%s", l->dir, gname);
	n = be->read(l->st->bs, tmp, now_raw, sizeof(now_raw), NULL, err);
	lk__gen_name(gname, rec->gen);
	if (n < 0 && n != -ENOENT && n != -EBADMSG && n != -ELOOP && n != -EISDIR) {
		abort_claim(l, rec, gname);
		return n;
	}
	if (n != judged->rawlen || memcmp(now_raw, judged->raw, (size_t)judged->rawlen)) {
		abort_claim(l, rec, gname);
		if (n == -ENOENT)
			drop_stray_claim(l, gname, id_tmp);
		err->msg[0] = 0;
		return CLAIM_ABORTED;
	}
	return CLAIM_WON;
}

/* Rewrite our own generation rec->gen in place (one whole-record write). */
static int admin_rewrite(struct lk__lease *l, struct lk__lrec *rec, struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char gname[LK_GEN_NAME_LEN + 1];
	uint8_t buf[LK_LREC_SIZE];
	struct lk_bfile *f;
	int r;

	rec->wall_ns = lk__realtime_ns();
	lk__lrec_encode(rec, buf);
	lk__gen_name(gname, rec->gen);
	r = be->open_record(l->st->bs, l->dir, gname, &f, err);
	if (r < 0)
		return r;
	r = be->write_record(f, buf, sizeof(buf), err);
	be->close_record(f);
	return r;
}

static void admin_pause(void)
{
	struct timespec ts = { 0, 5000000 + (long)(lk__random64() % 15000000) };

	nanosleep(&ts, NULL);
}

int lk__lease_break(struct lk_store *st, const char *name, const char *label, unsigned flags,
		    struct lk__break_res *ret, struct lk_err *err)
{
	struct lk__lease l;
	struct lk_lock lk;
	struct lk__lrec rec;
	struct obs o;
	int r = CLAIM_LOST;

	admin_init(st, name, label, &l, &lk);
	ret->mode = LK_MODE_LEASE;
	ret->exists = 1;
	for (int attempt = 0; attempt < 10 && r != CLAIM_WON; attempt++) {
		if (attempt)
			admin_pause();
		l.hint_gen = 0;
		r = observe(&l, &o, err);
		if (r < 0)
			return r;
		ret->old_token = o.gen;
		ret->old_valid = o.valid;
		ret->old_state = o.valid ? o.rec.state : 0;
		memset(&ret->old, 0, sizeof(ret->old));
		if (o.valid) {
			lk__label_copy(ret->old.owner, sizeof(ret->old.owner), o.rec.owner);
			lk__label_copy(ret->old.host, sizeof(ret->old.host), o.rec.host);
			ret->old.pid = o.rec.pid;
			ret->old.since_ns = o.rec.since_ns;
		}
		if (o.valid &&
		    (o.rec.state == LK_LSTATE_RELEASED || o.rec.state == LK_LSTATE_ABORTED)) {
			lk__err_set(err, "lock %s is free (last token %llu): nothing to break", name,
				    (unsigned long long)o.gen);
			return -ENOLCK;
		}
		if (o.valid && o.rec.state == LK_LSTATE_BROKEN && !(flags & LK__BREAK_NOW)) {
			lk__err_set(err, "lock %s is already broken (token %llu)", name,
				    (unsigned long long)o.gen);
			return -EALREADY;
		}
		/*
		 * The BROKEN record carries the old holder's T and rho, so that
		 * observers wait out as long as the old holder can still believe
		 * it holds (an unreadable record: our default T, as an observer
		 * would). The rest describes the breaker.
		 */
		fill_record(&l, &rec, 0);
		rec.state = LK_LSTATE_BROKEN;
		if (o.valid && o.rec.ttl_ms)
			rec.ttl_ms = o.rec.ttl_ms;
		if (o.valid && o.rec.rho_ppm > rec.rho_ppm)
			rec.rho_ppm = o.rec.rho_ppm;
		r = admin_claim(&l, &o, &rec, err);
		if (r < 0)
			return r;
	}
	if (r != CLAIM_WON) {
		lk__err_set(err, "lock %s keeps changing hands; try again", name);
		return -EBUSY;
	}
	ret->new_token = rec.gen;
	ret->wait_ms = (uint64_t)(ttl_up(ms_ns(rec.ttl_ms), rec.rho_ppm) / 1000000);
	if (flags & LK__BREAK_NOW) {
		/* our generation, given back at once: waiters take over now */
		rec.state = LK_LSTATE_RELEASED;
		r = admin_rewrite(&l, &rec, err);
		if (r < 0)
			return r;
		ret->freed = 1;
		ret->wait_ms = 0;
	}
	return 0;
}

/* What a lock directory holds, for prune. */
struct prune_scan {
	uint64_t tomb;           /* our tombstone generation (0: not yet) */
	uint64_t *below;         /* generations below tomb (all of them) */
	size_t n_below, cap;
	int above;               /* some generation above tomb exists */
	uint64_t above_gen;      /* the newest of them */
	char **extra;            /* claimants' temporary files, election values */
	size_t n_extra, cap_extra;
	char foreign[LK_NAME_MAX + 1]; /* the first name lockkit does not make */
	int enomem;
};

static int prune_ours(const char *name)
{
	/* .c.<16 hex>: a claimant's record before its link; v.<20 digits> and
	 * r.<20 digits>: an election's published value and resignation mark */
	if (!strncmp(name, ".c.", 3))
		return strlen(name) == 19;
	if (!strncmp(name, "v.", 2) || !strncmp(name, "r.", 2))
		return strlen(name) == 22 && strspn(name + 2, "0123456789") == 20;
	return 0;
}

static int prune_collect(const char *name, void *userdata)
{
	struct prune_scan *ps = userdata;
	uint64_t g;

	if (lk__gen_parse(name, &g) == 0) {
		if (ps->tomb && g > ps->tomb) {
			if (!ps->above || g > ps->above_gen)
				ps->above_gen = g;
			ps->above = 1;
		} else if (!ps->tomb || g < ps->tomb) {
			if (ps->n_below == ps->cap) {
				size_t nc = ps->cap ? ps->cap * 2 : 16;
				uint64_t *nv = realloc(ps->below, nc * sizeof(*nv));

				if (!nv) {
					ps->enomem = 1;
					return 1;
				}
				ps->below = nv;
				ps->cap = nc;
			}
			ps->below[ps->n_below++] = g;
		}
		return 0;
	}
	if (prune_ours(name)) {
		if (ps->n_extra == ps->cap_extra) {
			size_t nc = ps->cap_extra ? ps->cap_extra * 2 : 8;
			char **nv = realloc(ps->extra, nc * sizeof(*nv));

			if (!nv) {
				ps->enomem = 1;
				return 1;
			}
			ps->extra = nv;
			ps->cap_extra = nc;
		}
		ps->extra[ps->n_extra] = strdup(name);
		if (!ps->extra[ps->n_extra]) {
			ps->enomem = 1;
			return 1;
		}
		ps->n_extra++;
		return 0;
	}
	if (!ps->foreign[0])
		snprintf(ps->foreign, sizeof(ps->foreign), "%s", name);
	return 0;
}

static void prune_scan_free(struct prune_scan *ps)
{
	for (size_t i = 0; i < ps->n_extra; i++)
		free(ps->extra[i]);
	free(ps->extra);
	free(ps->below);
	ps->extra = NULL;
	ps->below = NULL;
	ps->n_extra = ps->n_below = ps->cap = ps->cap_extra = 0;
	ps->above = 0;
	ps->foreign[0] = 0;
}

static int prune_list(struct lk__lease *l, struct prune_scan *ps, struct lk_err *err)
{
	uint64_t tomb = ps->tomb;
	int r;

	prune_scan_free(ps);
	ps->tomb = tomb;
	r = l->st->be->readdir(l->st->bs, l->dir, prune_collect, ps, err);
	if (ps->enomem)
		return -ENOMEM;
	if (r == 0 && ps->n_below)
		qsort(ps->below, ps->n_below, sizeof(ps->below[0]), cmp_u64);
	return r;
}

/* Delete what the scan found below the tombstone: generations oldest first
 * (so that what is left is always the newest ones), then the rest. */
static int prune_delete(struct lk__lease *l, struct prune_scan *ps, struct lk_err *err)
{
	const struct lk_backend *be = l->st->be;
	char path[2 * LK_NAME_MAX + 2], gname[LK_GEN_NAME_LEN + 1];
	int r;

	for (size_t i = 0; i < ps->n_below; i++) {
		lk__gen_name(gname, ps->below[i]);
		snprintf(path, sizeof(path), "%s/%s", l->dir, gname);
		r = be->unlink(l->st->bs, path, err);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	for (size_t i = 0; i < ps->n_extra; i++) {
		snprintf(path, sizeof(path), "%s/%s", l->dir, ps->extra[i]);
		r = be->unlink(l->st->bs, path, err);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	return 0;
}

/* Names of lock directories in the making (lk__lease_create_dir()). */
struct births {
	char (*v)[20];
	size_t n, cap;
	int enomem;
};

static int birth_collect(const char *name, void *userdata)
{
	struct births *b = userdata;

	if (strncmp(name, ".n.", 3) || strlen(name) != 19 ||
	    strspn(name + 3, "0123456789abcdef") != 16)
		return 0;
	if (b->n == b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 8;
		char(*nv)[20] = realloc(b->v, nc * sizeof(*nv));

		if (!nv) {
			b->enomem = 1;
			return 1;
		}
		b->v = nv;
		b->cap = nc;
	}
	memcpy(b->v[b->n++], name, 20);
	return 0;
}

struct birth_ents {
	const struct lk_backend *be;
	struct lk_bstore *bs;
	const char *dir;
};

static int birth_unlink(const char *name, void *userdata)
{
	struct birth_ents *e = userdata;
	char path[64 + LK_NAME_MAX + 2];

	snprintf(path, sizeof(path), "%s/%s", e->dir, name);
	e->be->unlink(e->bs, path, NULL);
	return 0;
}

/*
 * Remove every lock directory in the making, of any lock: a creator that
 * read the clock before this prune's tombstone was claimed must not rename
 * its directory into place after the prune, with a first token below the
 * tombstone's. It finds its temporary directory gone and starts again
 * (lk__lease_create_dir()); one that began after this listing read the
 * clock after the tombstone's token was issued.
 */
static int prune_births(struct lk_store *st, struct lk_err *err)
{
	const struct lk_backend *be = st->be;
	struct births b = { 0 };
	int r = be->readdir(st->bs, "", birth_collect, &b, err);

	if (b.enomem)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < b.n; i++) {
		struct birth_ents e = { be, st->bs, b.v[i] };

		for (int attempt = 0;; attempt++) {
			int rd = be->readdir(st->bs, b.v[i], birth_unlink, &e, NULL);

			if (rd == -ENOENT)
				break; /* renamed into place, or given up */
			rd = be->rmdir(st->bs, b.v[i], NULL);
			if (rd == 0 || rd == -ENOENT)
				break;
			if ((rd != -ENOTEMPTY && rd != -EEXIST) || attempt >= 50) {
				lk__err_set(err, "cannot remove lock directory in the making %s: %s",
					    b.v[i], strerror(-rd));
				r = rd;
				break;
			}
			admin_pause();
		}
	}
	free(b.v);
	return r;
}

int lk__lease_prune(struct lk_store *st, const char *name, const char *label,
		    int64_t older_than_ms, unsigned flags, struct lk__prune_res *ret,
		    struct lk_err *err)
{
	const struct lk_backend *be = st->be;
	struct prune_scan ps = { 0 };
	struct lk__seen s = { 0 };
	struct lk__lease l;
	struct lk_lock lk;
	struct lk__lrec rec;
	struct obs o;
	char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
	int64_t when;
	int r, free_now;

	admin_init(st, name, label, &l, &lk);
	ret->mode = LK_MODE_LEASE;
	ret->removed = 0;
	ret->why[0] = 0;

	/* Only what lockkit makes: anything else stays, with the directory. */
	r = prune_list(&l, &ps, err);
	if (r < 0)
		goto out;
	if (ps.foreign[0]) {
		lk__msg_set(ret->why, sizeof(ret->why), "holds %s, which lockkit did not make",
			    ps.foreign);
		goto out;
	}
	r = observe(&l, &o, err);
	if (r < 0)
		goto out;
	ret->token = o.gen;
	if (!o.valid) {
		lk__msg_set(ret->why, sizeof(ret->why),
			    "newest record unreadable: held by an unknown claimant");
		goto out;
	}
	ret->last_ns = o.rec.wall_ns;
	if (older_than_ms >= 0 && lk__realtime_ns() - o.rec.wall_ns < ms_ns((uint64_t)older_than_ms)) {
		lk__msg_set(ret->why, sizeof(ret->why), "active %llds ago",
			    (long long)((lk__realtime_ns() - o.rec.wall_ns) / 1000000000));
		goto out;
	}
	remember(&l, &s, &o);
	free_now = judge(&l, &s, &o, &when);
	if (!free_now && (flags & LK__PRUNE_WAIT) &&
	    (o.rec.state == LK_LSTATE_BROKEN ||
	     lk__realtime_ns() - o.rec.wall_ns > ms_ns(o.rec.ttl_ms) + ms_ns(o.rec.ttl_ms) / 10)) {
		/*
		 * Looks abandoned by the wall clocks (advisory): watch it as a
		 * waiter would, and confirm with a look sent T*(1+rho) after
		 * the first one arrived.
		 */
		int64_t d = when - lk__boottime_ns();

		if (d > 0) {
			struct timespec ts = { d / 1000000000, d % 1000000000 };

			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		r = observe(&l, &o, err);
		if (r < 0)
			goto out;
		free_now = same_as_seen(&s, &o) && judge(&l, &s, &o, &when);
	}
	if (!free_now) {
		lk__msg_set(ret->why, sizeof(ret->why), "%s, token %llu, owner %s, pid %d on %s",
			    o.valid && o.rec.state == LK_LSTATE_BROKEN ? "broken" : "held",
			    (unsigned long long)o.gen, o.valid ? o.rec.owner : "?",
			    o.valid ? (int)o.rec.pid : 0, o.valid ? o.rec.host : "?");
		goto out;
	}

	/*
	 * The tombstone: a HELD record of ours at N+1. From here on nobody
	 * claims N+1, and N+2 only over a tombstone judged gone (this process
	 * dead, or silent for T*(1+rho)); whatever happens, nothing above the
	 * tombstone is ever deleted, so a holder that comes after it keeps its
	 * directory.
	 */
	if (o.valid && o.rec.ttl_ms >= MIN_TTL_MS)
		l.ttl_ns = ms_ns(o.rec.ttl_ms);
	fill_record(&l, &rec, 0);
	r = admin_claim(&l, &o, &rec, err);
	if (r < 0)
		goto out;
	if (r != CLAIM_WON) {
		lk__msg_set(ret->why, sizeof(ret->why), "taken by someone else meanwhile");
		r = 0;
		goto out;
	}
	ret->token = rec.gen;
	ps.tomb = rec.gen;
	r = prune_births(st, err);
	if (r < 0)
		goto give_back;
	r = prune_list(&l, &ps, err);
	if (r == 0 && ps.foreign[0]) {
		lk__msg_set(ret->why, sizeof(ret->why), "holds %s, which lockkit did not make",
			    ps.foreign);
		goto give_back;
	}
	if (r == 0 && !ps.above)
		r = prune_delete(&l, &ps, err);
	if (r < 0)
		goto give_back;
	if (ps.above)
		goto taken;

	/* Everything below the tombstone is gone; now the tombstone, then the
	 * directory. Stray claims (ABORTED, by claimants paused since they
	 * judged) and temporary files can still appear: delete them too. */
	lk__gen_name(gname, rec.gen);
	snprintf(path, sizeof(path), "%s/%s", name, gname);
	for (int attempt = 0;; attempt++) {
		r = prune_list(&l, &ps, err);
		if (r == -ENOENT) {
			r = 0;
			break;
		}
		if (r < 0)
			goto give_back;
		if (ps.above && attempt == 0)
			goto taken;
		if (ps.above) {
			/*
			 * Our tombstone is gone, so a claim above it is either
			 * someone who got past it before (theirs now) or a stray
			 * that fails its post-claim check, marks itself ABORTED
			 * and removes itself: wait for that.
			 */
			uint8_t raw[LK_LREC_SIZE];
			struct lk__lrec a;
			char ap[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], an[LK_GEN_NAME_LEN + 1];
			int n;

			lk__gen_name(an, ps.above_gen);
			snprintf(ap, sizeof(ap), "%s/%s", name, an);
			n = be->read(st->bs, ap, raw, sizeof(raw), NULL, NULL);
			if (n == (int)sizeof(raw) && lk__lrec_decode(raw, sizeof(raw), &a) == 0 &&
			    a.state != LK_LSTATE_ABORTED)
				goto taken;
			if (attempt >= 50) {
				lk__err_set(err,
					    "lock directory %s keeps a stray generation; run lockctl "
					    "prune again",
					    name);
				r = -EBUSY;
				goto out;
			}
			admin_pause();
			continue;
		}
		if (ps.foreign[0]) {
			lk__msg_set(ret->why, sizeof(ret->why), "holds %s, which lockkit did not make",
				    ps.foreign);
			goto give_back;
		}
		r = prune_delete(&l, &ps, err);
		if (r < 0)
			goto give_back;
		r = be->unlink(st->bs, path, err);
		if (r < 0 && r != -ENOENT)
			goto give_back;
		r = be->rmdir(st->bs, name, err);
		if (r == 0 || r == -ENOENT) {
			r = 0;
			break;
		}
		if ((r != -ENOTEMPTY && r != -EEXIST) || attempt >= 50) {
			lk__err_set(err,
				    "lock directory %s was emptied but could not be removed (%s); "
				    "run lockctl prune again",
				    name, strerror(-r));
			goto out;
		}
		admin_pause();
	}
	ret->removed = 1;
	goto out;

taken:
	/* someone claimed past our tombstone (we were slow): theirs now */
	lk__msg_set(ret->why, sizeof(ret->why), "acquired by someone else during the prune");
	r = 0;
	goto out;
give_back:
	/* keep the lock usable at once: our tombstone, released */
	{
		int r2 = r;

		if (!ret->why[0] && r2 < 0)
			lk__msg_set(ret->why, sizeof(ret->why), "%s", err->msg);
		rec.state = LK_LSTATE_RELEASED;
		admin_rewrite(&l, &rec, NULL);
		r = r2;
	}
out:
	prune_scan_free(&ps);
	return r;
}
