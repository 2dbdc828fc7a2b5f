// SPDX-License-Identifier: MIT
/*
 * Leader election on top of lock handles. The leader is whoever holds the
 * election's lock; the lock's fencing token is the term's token, so terms
 * inherit every guarantee of the lock: at most one holder, tokens that only
 * grow, and in lease mode a holder that gives up at its own deadline, a
 * margin before anyone else may claim (docs/protocol.md, Part II). That
 * deadline is where a leader is demoted, which is why a new leader can never
 * be elected before the old one has been told.
 *
 * The published value does not fit into the lock records, so each term
 * writes its own value file, named after its token and created exclusively
 * ("v.<token>"). Nothing is ever overwritten: an observer reads the lock's
 * current token first and then the file of exactly that token, so a value is
 * either this term's or reported as not yet known, never another term's.
 * Exclusive creation and unlink are the only operations used, which every
 * backend offers (the posix backend refuses rename over an existing name,
 * and so would an NFS server racing two writers).
 *
 * Where the files live: a lease-mode lock is a directory and the files sit
 * next to its generation records (lease.c only looks at "g.*" names). A
 * kernel-mode lock is a single file, so its values go into a directory of
 * their own whose name no lock can have: ".n." and 32 hex digits of a hash
 * of the name (lock names never start with '.', and the temporary
 * directories lease.c creates while making a lock directory use 16 digits).
 * Each value file repeats the election's name, so a hash collision is
 * detected rather than believed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "audit.h"
#include "codec.h"
#include "internal.h"
#include "lrecord.h"

#define VFILE_MAGIC 0x31454b4cu /* "LKE1" little-endian */
#define VFILE_SIZE 640u
#define VNAME_LEN 22 /* "v." + 20 digits */
#define VDIR_MAX (LK_NAME_MAX + 1)
/* A blocked campaign looks at the election this often to report changes. */
#define CAMPAIGN_SLICE_MS 1000
/* A watcher waits this long for a new leader's value before reporting the
 * term without it. */
#define VALUE_WAIT_NS (1000 * 1000000LL)

struct lk_election {
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk_election_opts o;
	int32_t lock_pid;         /* the pid lk was opened with */
	enum lk_mode mode;
	char name[LK_NAME_MAX + 1];
	char id[LK_OWNER_MAX + 1];
	char vdir[VDIR_MAX];
	pthread_mutex_t mu;       /* stats and term bookkeeping (engine thread too) */
	_Atomic uint64_t token;   /* the current (or demoted) term's token */
	atomic_int demoted;       /* the current term's end was reported */
	atomic_int cancelled;
	int64_t term_start_ns;    /* CLOCK_BOOTTIME */
	int64_t last_term_ns;     /* the length of the term that ended last */
	struct lk_election_stats stats;
	char errmsg[256];
};

/* ------------------------------------------------------------------------
 * Value files
 */

static void u64_hex(char *out, uint64_t v)
{
	snprintf(out, 17, "%016llx", (unsigned long long)v);
}

/* Two FNV-1a variants: 128 bits, only to tell names apart. */
static void value_dir(enum lk_mode mode, const char *name, char *buf, size_t len)
{
	uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
	char ha[17], hb[17];

	if (mode == LK_MODE_LEASE) {
		snprintf(buf, len, "%s", name);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		a = (a ^ *p) * 0x100000001b3ull;
		b = (b ^ (uint64_t)(*p + 0x5b)) * 0x100000001b3ull;
	}
	u64_hex(ha, a);
	u64_hex(hb, b);
	snprintf(buf, len, ".n.%s%s", ha, hb);
}

static void value_name(char *buf, uint64_t token)
{
	snprintf(buf, VNAME_LEN + 1, "v.%020llu", (unsigned long long)token);
}

static int value_name_parse(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (strncmp(s, "v.", 2) || strlen(s) != VNAME_LEN)
		return -EINVAL;
	for (const char *p = s + 2; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ret = v;
	return 0;
}

/*
 * Layout (little-endian): magic, version, token, since_ns, id[64],
 * value_len (u16), name_len (u16), value[256], name[256], then CRC-32C of
 * everything before it at the end.
 */
static void vfile_encode(uint8_t *out, uint64_t token, int64_t since_ns, const char *id,
			 const char *name, const void *value, size_t vlen)
{
	size_t nlen = strlen(name);
	uint8_t *p = out;

	memset(out, 0, VFILE_SIZE);
	lk__put32(p, VFILE_MAGIC);
	lk__put32(p + 4, 1);
	lk__put64(p + 8, token);
	lk__put64(p + 16, (uint64_t)since_ns);
	memcpy(p + 24, id, strnlen(id, LK_OWNER_MAX));
	lk__put16(p + 88, (uint16_t)vlen);
	lk__put16(p + 90, (uint16_t)nlen);
	if (vlen)
		memcpy(p + 92, value, vlen);
	memcpy(p + 92 + LK_ELECTION_VALUE_MAX, name, nlen);
	lk__put32(out + VFILE_SIZE - 4, lk__crc32c(0, out, VFILE_SIZE - 4));
}

static int vfile_decode(const uint8_t *in, size_t len, const char *name, uint64_t token,
			struct lk_leader *ret)
{
	size_t vlen, nlen;

	if (len != VFILE_SIZE || lk__get32(in) != VFILE_MAGIC || lk__get32(in + 4) != 1 ||
	    lk__get32(in + VFILE_SIZE - 4) != lk__crc32c(0, in, VFILE_SIZE - 4))
		return -EBADMSG;
	vlen = lk__get16(in + 88);
	nlen = lk__get16(in + 90);
	if (vlen > LK_ELECTION_VALUE_MAX || nlen != strlen(name) ||
	    memcmp(in + 92 + LK_ELECTION_VALUE_MAX, name, nlen) || lk__get64(in + 8) != token)
		return -EBADMSG;
	memcpy(ret->value, in + 92, vlen);
	ret->value[vlen] = 0;
	ret->value_len = (uint32_t)vlen;
	ret->value_known = 1;
	return 0;
}

/* Read the value of term token into ret: 1 if found, 0 if not (yet). */
static int value_read(struct lk_store *st, const char *vdir, const char *name, uint64_t token,
		      struct lk_leader *ret, struct lk_err *err)
{
	char path[VDIR_MAX + VNAME_LEN + 2], vname[VNAME_LEN + 1];
	uint8_t buf[VFILE_SIZE + 1];
	uint64_t fid;
	int n;

	value_name(vname, token);
	snprintf(path, sizeof(path), "%s/%s", vdir, vname);
	n = st->be->read(st->bs, path, buf, sizeof(buf), &fid, err);
	if (n == -ENOENT || n == -ENOTDIR) {
		err->msg[0] = 0;
		return 0;
	}
	if (n < 0)
		return n;
	/* a file that does not check out is not this term's value */
	return vfile_decode(buf, (size_t)n, name, token, ret) == 0;
}

struct old_values {
	uint64_t below;
	uint64_t v[32];
	int n;
};

static int collect_values(const char *ename, void *userdata)
{
	struct old_values *ov = userdata;
	uint64_t t;

	char v[VNAME_LEN + 1];

	/* values and resign marks alike */
	snprintf(v, sizeof(v), "%s", ename);
	if (v[0] == 'r')
		v[0] = 'v';
	if (value_name_parse(v, &t) < 0 || t >= ov->below || ov->n == 32)
		return 0;
	ov->v[ov->n++] = t;
	return 0;
}

/* Remove the value files of terms before the previous one (best effort);
 * the previous one stays for watchers that are a step behind. */
static void values_cleanup(struct lk_election *e, uint64_t token)
{
	struct lk_store *st = e->st;
	struct old_values ov = { .below = token, .n = 0 };
	char path[VDIR_MAX + VNAME_LEN + 2], vname[VNAME_LEN + 1];
	uint64_t keep = 0;

	if (st->be->readdir(st->bs, e->vdir, collect_values, &ov, NULL) < 0)
		return;
	for (int i = 0; i < ov.n; i++)
		if (ov.v[i] > keep)
			keep = ov.v[i];
	for (int i = 0; i < ov.n; i++) {
		if (ov.v[i] == keep)
			continue;
		value_name(vname, ov.v[i]);
		snprintf(path, sizeof(path), "%s/%s", e->vdir, vname);
		st->be->unlink(st->bs, path, NULL);
		vname[0] = 'r';
		snprintf(path, sizeof(path), "%s/%s", e->vdir, vname);
		st->be->unlink(st->bs, path, NULL);
	}
}

static int value_publish(struct lk_election *e, uint64_t token, const void *value, size_t len,
			 struct lk_err *err)
{
	struct lk_store *st = e->st;
	char path[VDIR_MAX + VNAME_LEN + 2], vname[VNAME_LEN + 1];
	uint8_t buf[VFILE_SIZE];
	uint64_t fid;
	int r;

	if (e->mode == LK_MODE_KERNEL) {
		r = st->be->mkdir(st->bs, e->vdir, err);
		if (r < 0 && r != -EEXIST)
			return r;
		err->msg[0] = 0;
	}
	vfile_encode(buf, token, lk__realtime_ns(), e->id, e->name, value, len);
	value_name(vname, token);
	snprintf(path, sizeof(path), "%s/%s", e->vdir, vname);
	r = st->be->write_new(st->bs, path, buf, sizeof(buf), &fid, err);
	if (r == -EEXIST) {
		/* our own retransmitted create, or a leftover of a token that
		 * cannot be ours: only the first would read back as ours */
		struct lk_leader chk;

		memset(&chk, 0, sizeof(chk));
		err->msg[0] = 0;
		r = value_read(st, e->vdir, e->name, token, &chk, err);
		if (r < 0)
			return r;
		if (r == 0 || chk.value_len != len || (len && memcmp(chk.value, value, len))) {
			lk__err_set(err, "election %s: a value file for token %llu exists already",
				    e->name, (unsigned long long)token);
			return -EEXIST;
		}
		r = 0;
	}
	if (r < 0)
		return r;
	values_cleanup(e, token);
	return 0;
}

/* ------------------------------------------------------------------------
 * Candidates
 */

static int64_t ns_ms(int64_t ns)
{
	return ns > 0 ? ns / 1000000 : 0;
}

static void fail_msg(struct lk_election *e, const char *msg, int r)
{
	if (msg && msg[0])
		lk__msg_set(e->errmsg, sizeof(e->errmsg), "%s", msg);
	else
		lk__msg_set(e->errmsg, sizeof(e->errmsg), "election %s: %s", e->name,
			    lk_strerror(r));
}

/* End the current term's bookkeeping; call with mu held. */
static void term_end_locked(struct lk_election *e, int resigned)
{
	int64_t ns = lk__boottime_ns() - e->term_start_ns;
	uint64_t ms = (uint64_t)ns_ms(ns);

	e->last_term_ns = ns;
	lk__hist_add(&e->st->stats.leadership, ns);
	lk__count(resigned ? &e->st->stats.resignations : &e->st->stats.demotions);

	e->stats.leader_ms_total += ms;
	e->stats.leader_ms_last = ms;
	if (ms > e->stats.leader_ms_max)
		e->stats.leader_ms_max = ms;
	if (resigned)
		e->stats.resignations++;
	else
		e->stats.demotions++;
	e->term_start_ns = 0;
}

/* An election event to the store's sinks (events.c). */
static void election_event(struct lk_election *e, enum lk_event_type type, uint64_t token,
			   int64_t duration_ns, int error)
{
	struct lk__ev ev = {
		.type = type,
		.name = e->name,
		.mode = lk_lock_mode(e->lk),
		.token = token,
		.duration_ns = duration_ns,
		.error = error,
		.lock = e->lk,
	};

	if (e->st->ev_on)
		lk__emit(e->st, &ev);
}

/* Report the end of the current term once, whoever notices it first. */
static void demote(struct lk_election *e, int reason)
{
	uint64_t tok = atomic_load(&e->token);
	int64_t term_ns;

	if (!tok || atomic_exchange(&e->demoted, 1))
		return;
	pthread_mutex_lock(&e->mu);
	term_end_locked(e, 0);
	term_ns = e->last_term_ns;
	pthread_mutex_unlock(&e->mu);
	election_event(e, LK_EV_DEMOTED, tok, term_ns, reason);
	if (e->o.on_demoted)
		e->o.on_demoted(e, tok, reason, e->o.userdata);
}

static void on_lock_lost(struct lk_lock *lk, int reason, void *userdata)
{
	(void)lk;
	demote(userdata, reason);
}

static int lock_open(struct lk_election *e, struct lk_err *err)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	int r;

	lo.mode = e->mode;
	lo.flags = e->o.flags; /* the audit flags */
	lo.owner = e->id;
	lo.ttl_ms = e->o.ttl_ms;
	lo.renew_ms = e->o.renew_ms;
	lo.rho_ppm = e->o.rho_ppm;
	lo.pid = e->o.pid;
	lo.on_lost = on_lock_lost;
	lo.userdata = e;
	r = lk_lock_open(e->st, e->name, &lo, &e->lk);
	if (r < 0) {
		lk__err_set(err, "%s", lk_store_errmsg(e->st));
		return r;
	}
	e->mode = lk_lock_mode(e->lk);
	e->lock_pid = e->o.pid;
	return 0;
}

LK_API int lk_election_open(struct lk_store *st, const char *name,
			    const struct lk_election_opts *opts, struct lk_election **ret)
{
	static const struct lk_election_opts defaults = LK_ELECTION_OPTS_INIT;
	struct lk_err err = {0};
	struct lk_election *e;
	int r;

	if (!st || !ret)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (opts->size < sizeof(struct lk_election_opts) || opts->size > 4096) {
		lk__msg_set(st->errmsg, sizeof(st->errmsg),
			    "lk_election_opts.size is %u; initialise with LK_ELECTION_OPTS_INIT",
			    opts->size);
		return -EINVAL;
	}
	if (opts->flags & ~(LK_LOCK_AUDIT | LK_LOCK_NO_AUDIT)) {
		lk__msg_set(st->errmsg, sizeof(st->errmsg), "unknown election flags 0x%x",
			    opts->flags & ~(LK_LOCK_AUDIT | LK_LOCK_NO_AUDIT));
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->st = st;
	e->o = *opts;
	e->o.id = NULL;
	e->mode = opts->mode;
	snprintf(e->name, sizeof(e->name), "%s", name ? name : "");
	if (opts->id) {
		lk__label_copy(e->id, sizeof(e->id), opts->id);
	} else {
		char id[LK_HOST_MAX + 32];

		snprintf(id, sizeof(id), "%s:%d", st->host, (int)getpid());
		lk__label_copy(e->id, sizeof(e->id), id);
	}
	pthread_mutex_init(&e->mu, NULL);
	r = lock_open(e, &err);
	if (r < 0) {
		/* lk_lock_open() left its message on the store */
		pthread_mutex_destroy(&e->mu);
		free(e);
		return r;
	}
	value_dir(e->mode, e->name, e->vdir, sizeof(e->vdir));
	*ret = e;
	return 0;
}

static void leader_change(struct lk_election *e, uint64_t *seen)
{
	struct lk_leader l = { .size = sizeof(l) };
	uint64_t key;

	if (!e->o.on_leader_change || lk_election_leader(e->st, e->name, &l) < 0)
		return;
	/* a term's start and its end are both changes */
	key = l.present ? l.token * 2 + 1 : l.token * 2;
	if (key == *seen)
		return;
	*seen = key;
	e->o.on_leader_change(e, &l, e->o.userdata);
}

LK_API int lk_election_campaign(struct lk_election *e, const void *value, size_t len,
				int64_t timeout_ms)
{
	struct lk_err err = {0};
	int64_t start, took, deadline = 0;
	uint64_t tok, seen = UINT64_MAX;
	int r;

	if (!e)
		return -EINVAL;
	if (!lk__forkguard_ok(&e->st->fg))
		return -ECHILD;
	if (len > LK_ELECTION_VALUE_MAX || (len && !value)) {
		lk__msg_set(e->errmsg, sizeof(e->errmsg),
			    "election %s: a value has at most %d bytes", e->name,
			    LK_ELECTION_VALUE_MAX);
		return -EMSGSIZE;
	}
	if (atomic_load(&e->token)) {
		if (!atomic_load(&e->demoted) && lk_election_check(e) == 0) {
			lk__msg_set(e->errmsg, sizeof(e->errmsg), "election %s: already leading",
				    e->name);
			return -EBUSY;
		}
		/* the last term was lost: let go of what is left of it */
		lk__audit_lock_event(e->lk, "demote", atomic_load(&e->token), NULL);
		lk_lock_release(e->lk);
		atomic_store(&e->token, 0);
	}
	if (e->mode == LK_MODE_LEASE && e->lock_pid != e->o.pid) {
		lk_lock_close(e->lk);
		e->lk = NULL;
		r = lock_open(e, &err);
		if (r < 0) {
			fail_msg(e, err.msg, r);
			return r;
		}
	}
	atomic_store(&e->cancelled, 0);
	start = lk__boottime_ns();
	if (timeout_ms > 0)
		deadline = start + timeout_ms * 1000000;
	pthread_mutex_lock(&e->mu);
	e->stats.campaigns++;
	pthread_mutex_unlock(&e->mu);

	if (e->o.on_leader_change)
		leader_change(e, &seen);
	for (;;) {
		int64_t slice = timeout_ms;

		/*
		 * Kernel mode waits in slices to report changes: a kernel lock
		 * wait is woken the moment the lock is free and remembers
		 * nothing. A lease wait must not be cut short: a takeover needs
		 * one acquire to watch the holder's record stay unchanged for
		 * the whole TTL.
		 */
		if (e->o.on_leader_change && timeout_ms != 0 && e->mode == LK_MODE_KERNEL) {
			slice = CAMPAIGN_SLICE_MS;
			if (timeout_ms > 0) {
				int64_t left = (deadline - lk__boottime_ns()) / 1000000;

				if (left <= 0)
					slice = 0;
				else if (left < slice)
					slice = left;
			}
		}
		r = lk_lock_acquire(e->lk, slice);
		if (r == 0)
			break;
		if (slice != timeout_ms && e->o.on_leader_change && r != -ECANCELED)
			leader_change(e, &seen);
		if ((r == -ETIMEDOUT || r == -EWOULDBLOCK) && slice != timeout_ms &&
		    !atomic_load(&e->cancelled) &&
		    (timeout_ms < 0 || lk__boottime_ns() < deadline))
			continue;
		if (r == -EWOULDBLOCK && slice != timeout_ms)
			r = -ETIMEDOUT;
		if (atomic_load(&e->cancelled) && r != -ECANCELED)
			r = -ECANCELED;
		fail_msg(e, lk_lock_errmsg(e->lk), r);
		goto failed;
	}

	tok = lk_lock_token(e->lk);
	atomic_store(&e->demoted, 0);
	r = value_publish(e, tok, value, len, &err);
	if (r < 0) {
		fail_msg(e, err.msg, r);
		lk_lock_release(e->lk);
		goto failed;
	}
	pthread_mutex_lock(&e->mu);
	e->term_start_ns = lk__boottime_ns();
	{
		uint64_t ms = (uint64_t)ns_ms(e->term_start_ns - start);

		e->stats.election_ms_total += ms;
		e->stats.election_ms_last = ms;
		if (ms > e->stats.election_ms_max)
			e->stats.election_ms_max = ms;
	}
	e->stats.terms++;
	e->stats.token = tok;
	/* the engine thread may end the term (and clear its start) at once */
	took = e->term_start_ns - start;
	pthread_mutex_unlock(&e->mu);
	lk__count(&e->st->stats.terms);
	lk__hist_add(&e->st->stats.election, took);
	atomic_store(&e->token, tok);
	/* a lease that ran out while the value was being written is caught
	 * here, before anyone is told of a term that is already over */
	if (lk_election_check(e) < 0)
		return 0;
	election_event(e, LK_EV_ELECTED, tok, took, 0);
	lk__audit_lock_event(e->lk, "elect", tok, NULL);
	if (e->o.on_elected)
		e->o.on_elected(e, tok, e->o.userdata);
	if (e->o.on_leader_change)
		leader_change(e, &seen);
	return 0;

failed:
	pthread_mutex_lock(&e->mu);
	e->stats.failed_campaigns++;
	pthread_mutex_unlock(&e->mu);
	return r;
}

LK_API int lk_election_cancel(struct lk_election *e)
{
	if (!e)
		return -EINVAL;
	atomic_store(&e->cancelled, 1);
	return lk_lock_cancel(e->lk);
}

/*
 * Kernel mode: a released lock looks the same as one whose holder died, so
 * a resigning leader leaves "r.<token>" next to its value for watchers to
 * tell the two apart. Best effort: without it the end reads as "lost".
 */
static void resign_mark(struct lk_election *e, uint64_t token)
{
	char path[VDIR_MAX + VNAME_LEN + 2], vname[VNAME_LEN + 1];
	uint64_t fid;

	value_name(vname, token);
	vname[0] = 'r';
	snprintf(path, sizeof(path), "%s/%s", e->vdir, vname);
	e->st->be->write_new(e->st->bs, path, "", 0, &fid, NULL);
}

LK_API int lk_election_resign(struct lk_election *e)
{
	int r, lost;

	if (!e)
		return -EINVAL;
	if (!lk__forkguard_ok(&e->st->fg))
		return -ECHILD;
	if (!atomic_load(&e->token)) {
		lk__msg_set(e->errmsg, sizeof(e->errmsg), "election %s: not leading", e->name);
		return -ENOLCK;
	}
	/* from here on the term counts as over, for callbacks too */
	lost = atomic_exchange(&e->demoted, 1);
	if (!lost) {
		int64_t term_ns;

		pthread_mutex_lock(&e->mu);
		term_end_locked(e, 1);
		term_ns = e->last_term_ns;
		pthread_mutex_unlock(&e->mu);
		election_event(e, LK_EV_RESIGNED, atomic_load(&e->token), term_ns, 0);
	}
	if (!lost && e->mode == LK_MODE_KERNEL)
		resign_mark(e, atomic_load(&e->token));
	lk__audit_lock_event(e->lk, lost ? "demote" : "resign", atomic_load(&e->token), NULL);
	r = lk_lock_release(e->lk);
	atomic_store(&e->token, 0);
	if (r < 0) {
		fail_msg(e, lk_lock_errmsg(e->lk), r);
		return r == -ESTALE ? -ENOLCK : r;
	}
	if (lost) {
		lk__msg_set(e->errmsg, sizeof(e->errmsg), "election %s: the term was already lost",
			    e->name);
		return -ENOLCK;
	}
	return 0;
}

LK_API int lk_election_check(struct lk_election *e)
{
	int r;

	if (!e)
		return -EINVAL;
	if (!atomic_load(&e->token) || atomic_load(&e->demoted))
		return -ENOLCK;
	r = lk_lock_check(e->lk);
	if (r == -ECHILD)
		return r;
	if (r < 0) {
		demote(e, -ETIMEDOUT);
		return -ENOLCK;
	}
	return 0;
}

LK_API uint64_t lk_election_token(const struct lk_election *e)
{
	return e ? atomic_load(&((struct lk_election *)e)->token) : 0;
}

LK_API int lk_election_set_pid(struct lk_election *e, int32_t pid)
{
	if (!e || pid < 0)
		return -EINVAL;
	if (atomic_load(&e->token) && !atomic_load(&e->demoted))
		return -EBUSY;
	e->o.pid = pid;
	return 0;
}

LK_API struct lk_lock *lk_election_lock(struct lk_election *e)
{
	return e ? e->lk : NULL;
}

LK_API int lk_election_stats(const struct lk_election *e, struct lk_election_stats *ret)
{
	struct lk_election *m = (struct lk_election *)e;
	struct lk_election_stats s;

	if (!e || !ret || ret->size < sizeof(struct lk_election_stats))
		return -EINVAL;
	pthread_mutex_lock(&m->mu);
	s = m->stats;
	if (m->term_start_ns)
		s.current_term_ms = (uint64_t)ns_ms(lk__boottime_ns() - m->term_start_ns);
	pthread_mutex_unlock(&m->mu);
	s.size = sizeof(s);
	*ret = s;
	return 0;
}

LK_API void lk_election_close(struct lk_election *e)
{
	if (!e)
		return;
	if (lk__forkguard_ok(&e->st->fg) && atomic_load(&e->token))
		lk_election_resign(e);
	/* the engine may still be inside on_lock_lost: closing the lock
	 * waits for it, so the mutex outlives every callback */
	lk_lock_close(e->lk);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

LK_API const char *lk_election_errmsg(const struct lk_election *e)
{
	return e ? e->errmsg : "";
}

/* ------------------------------------------------------------------------
 * Observers
 */

/* 1 if the leader of term token left a resign mark (kernel mode). */
static int resigned_mark(struct lk_store *st, const char *vdir, uint64_t token)
{
	char path[VDIR_MAX + VNAME_LEN + 2], vname[VNAME_LEN + 1];

	value_name(vname, token);
	vname[0] = 'r';
	snprintf(path, sizeof(path), "%s/%s", vdir, vname);
	return st->be->stat(st->bs, path, NULL, NULL) == 0;
}

LK_API int lk_election_leader(struct lk_store *st, const char *name, struct lk_leader *ret)
{
	struct lk_status s = { .size = sizeof(s) };
	struct lk_err err = {0};
	struct lk_leader l;
	char vdir[VDIR_MAX];
	int r;

	if (!st || !ret || ret->size < sizeof(struct lk_leader))
		return -EINVAL;
	r = lk_lock_status(st, name, &s);
	if (r < 0)
		return r;
	memset(&l, 0, sizeof(l));
	l.size = sizeof(l);
	l.mode = s.mode;
	l.token = s.token;
	if (s.exists && s.token) {
		l.present = s.held && !s.released && !s.broken;
		l.expired = l.present && s.expired;
		l.since_ns = s.holder.since_ns;
		l.pid = s.holder.pid;
		memcpy(l.id, s.holder.owner, sizeof(l.id));
		memcpy(l.host, s.holder.host, sizeof(l.host));
		value_dir(s.mode, name, vdir, sizeof(vdir));
		if (l.present && s.mode == LK_MODE_KERNEL && resigned_mark(st, vdir, s.token)) {
			/* the lock is taken again and its record names the leader
			 * that resigned: the new leader is writing its own */
			l.present = 0;
		}
		r = value_read(st, vdir, name, s.token, &l, &err);
		if (r < 0) {
			lk__msg_set(st->errmsg, sizeof(st->errmsg), "%s",
				    err.msg[0] ? err.msg : lk_strerror(r));
			return r;
		}
	}
	*ret = l;
	return 0;
}

struct lk_election_watch {
	struct lk_store *st;
	char name[LK_NAME_MAX + 1];
	int64_t poll_ns;
	int local;
	int epfd;
	int ino[3];          /* inotify: the store, the lock directory or the value directory */
	int started;
	uint64_t ended;      /* token of the last term seen to end */
	struct lk_leader last;
	int64_t value_wait_until; /* reporting last's start waits for its value */
	int elected_pending;
	struct lk_election_event q[4];
	int qh, qn;
};

static void watch_arm(struct lk_election_watch *w, enum lk_mode mode)
{
	const struct lk_backend *be = w->st->be;
	char vdir[VDIR_MAX];
	const char *paths[3];

	if (!w->local || w->epfd < 0 || !be->watch)
		return;
	/*
	 * The store's own directory shows a lock being created and every write
	 * to a kernel-mode lock file; a lease's records and the values live in
	 * directories of their own, watched once they exist.
	 */
	paths[0] = "";
	if (mode == LK_MODE_AUTO) {
		paths[1] = paths[2] = NULL;
	} else {
		value_dir(mode, w->name, vdir, sizeof(vdir));
		paths[1] = mode == LK_MODE_LEASE ? w->name : NULL;
		paths[2] = mode == LK_MODE_KERNEL ? vdir : NULL;
	}
	for (int i = 0; i < 3; i++) {
		struct epoll_event ev = { .events = EPOLLIN };

		if (w->ino[i] >= 0 || !paths[i])
			continue;
		w->ino[i] = be->watch(w->st->bs, paths[i], NULL);
		if (w->ino[i] < 0)
			continue;
		ev.data.fd = w->ino[i];
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ino[i], &ev);
	}
}

LK_API int lk_election_watch_open(struct lk_store *st, const char *name, uint64_t poll_ms,
				  struct lk_election_watch **ret)
{
	struct lk_election_watch *w;

	if (!st || !ret || poll_ms > 3600000)
		return -EINVAL;
	if (lk_name_valid(name) < 0) {
		lk__msg_set(st->errmsg, sizeof(st->errmsg), "invalid election name '%.64s'",
			    name ? name : "(null)");
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->st = st;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->poll_ns = (int64_t)(poll_ms ? poll_ms : 250) * 1000000;
	w->local = !(st->be->is_network && st->be->is_network(st->bs));
	w->ino[0] = w->ino[1] = w->ino[2] = -1;
	w->epfd = w->local ? epoll_create1(EPOLL_CLOEXEC) : -1;
	*ret = w;
	return 0;
}

static void push(struct lk_election_watch *w, enum lk_election_event_type type,
		 const struct lk_leader *l)
{
	struct lk_election_event *ev;

	if (w->qn == 4)
		return; /* cannot happen: at most two per look */
	ev = &w->q[(w->qh + w->qn++) % 4];
	memset(ev, 0, sizeof(*ev));
	ev->size = sizeof(*ev);
	ev->type = type;
	ev->time_ns = lk__realtime_ns();
	ev->leader = *l;
}

/* How did term l end, when the watcher missed the moment? */
static enum lk_election_event_type how_ended(struct lk_election_watch *w,
					     const struct lk_leader *l)
{
	struct lk_store *st = w->st;

	if (l->mode == LK_MODE_LEASE) {
		char path[LK_NAME_MAX + LK_GEN_NAME_LEN + 2], gname[LK_GEN_NAME_LEN + 1];
		uint8_t buf[LK_LREC_SIZE];
		struct lk__lrec rec;
		uint64_t fid;
		int n;

		/* the successor keeps its predecessor's record (lease.c) */
		lk__gen_name(gname, l->token);
		snprintf(path, sizeof(path), "%s/%s", w->name, gname);
		n = st->be->read(st->bs, path, buf, sizeof(buf), &fid, NULL);
		if (n > 0 && lk__lrec_decode(buf, (size_t)n, &rec) == 0) {
			if (rec.state == LK_LSTATE_RELEASED)
				return LK_ELECTION_RESIGNED;
			if (rec.state == LK_LSTATE_HELD)
				return LK_ELECTION_EXPIRED;
		}
		return LK_ELECTION_LOST;
	}
	/* kernel mode: a resigning leader leaves a mark before it lets go */
	{
		char vdir[VDIR_MAX];

		value_dir(LK_MODE_KERNEL, w->name, vdir, sizeof(vdir));
		if (resigned_mark(st, vdir, l->token))
			return LK_ELECTION_RESIGNED;
	}
	return LK_ELECTION_LOST;
}

static int watch_look(struct lk_election_watch *w)
{
	struct lk_leader cur = { .size = sizeof(cur) };
	struct lk_leader *last = &w->last;
	int r;

	r = lk_election_leader(w->st, w->name, &cur);
	if (r < 0)
		return r;
	watch_arm(w, cur.mode);
	/*
	 * A term that ended cannot come back. A kernel-mode lock is taken
	 * before its record names the new holder, so a look in between sees
	 * the previous holder's record on a held lock: wait for the record.
	 */
	if (cur.present && w->ended && cur.token <= w->ended)
		cur.present = 0;
	if (!w->started) {
		w->started = 1;
		*last = cur;
		if (cur.present) {
			w->elected_pending = 1;
			w->value_wait_until = lk__boottime_ns() + VALUE_WAIT_NS;
		}
		goto pending;
	}
	if (last->present && last->token == cur.token && cur.present) {
		if (cur.expired && !last->expired) {
			push(w, LK_ELECTION_EXPIRED, &cur);
		}
		if (!last->value_known && cur.value_known)
			*last = cur;
		last->expired = cur.expired;
		goto pending;
	}
	if (last->present) {
		/* the term we knew has ended */
		struct lk_leader ended = *last;
		enum lk_election_event_type t;

		if (w->elected_pending) {
			/* its start was never reported: report it now */
			push(w, LK_ELECTION_ELECTED, last);
			w->elected_pending = 0;
		}
		w->ended = last->token;
		ended.present = 0;
		t = how_ended(w, last);
		/* an expiry already reported is how this term ended */
		if (t == LK_ELECTION_EXPIRED && last->expired)
			goto next;
		push(w, t, &ended);
	}
next:
	*last = cur;
	if (cur.present) {
		w->elected_pending = 1;
		w->value_wait_until = lk__boottime_ns() + VALUE_WAIT_NS;
	}
pending:
	if (w->elected_pending &&
	    (last->value_known || lk__boottime_ns() >= w->value_wait_until)) {
		push(w, LK_ELECTION_ELECTED, last);
		w->elected_pending = 0;
	}
	return 0;
}

LK_API int lk_election_watch_next(struct lk_election_watch *w, int64_t timeout_ms,
				  struct lk_election_event *ret)
{
	int64_t deadline = timeout_ms >= 0 ? lk__boottime_ns() + timeout_ms * 1000000 : 0;

	if (!w || !ret || ret->size < sizeof(struct lk_election_event))
		return -EINVAL;
	if (!lk__forkguard_ok(&w->st->fg))
		return -ECHILD;
	for (;;) {
		int64_t now, wait;
		int r;

		if (!w->qn) {
			r = watch_look(w);
			if (r < 0)
				return r;
		}
		if (w->qn) {
			*ret = w->q[w->qh];
			w->qh = (w->qh + 1) % 4;
			w->qn--;
			return 0;
		}
		now = lk__boottime_ns();
		if (timeout_ms >= 0 && now >= deadline)
			return -ETIMEDOUT;
		wait = w->poll_ns;
		if (w->elected_pending && w->value_wait_until - now < wait)
			wait = w->value_wait_until - now > 0 ? w->value_wait_until - now : 0;
		if (timeout_ms >= 0 && deadline - now < wait)
			wait = deadline - now;
		if (w->epfd >= 0) {
			struct epoll_event evs[3];
			int n = epoll_wait(w->epfd, evs, 3, (int)((wait + 999999) / 1000000));

			if (n < 0 && errno == EINTR)
				return -EINTR;
			for (int i = 0; i < n; i++) {
				char buf[4096];

				while (read(evs[i].data.fd, buf, sizeof(buf)) > 0)
					;
			}
		} else {
			struct timespec ts = { wait / 1000000000, wait % 1000000000 };

			if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
				return -EINTR;
		}
	}
}

LK_API int lk_election_watch_fd(const struct lk_election_watch *w)
{
	return w ? w->epfd : -1;
}

LK_API void lk_election_watch_close(struct lk_election_watch *w)
{
	if (!w)
		return;
	for (int i = 0; i < 3; i++)
		if (w->ino[i] >= 0)
			close(w->ino[i]);
	if (w->epfd >= 0)
		close(w->epfd);
	free(w);
}

LK_API const char *lk_election_event_name(enum lk_election_event_type type)
{
	switch (type) {
	case LK_ELECTION_ELECTED:
		return "elected";
	case LK_ELECTION_RESIGNED:
		return "resigned";
	case LK_ELECTION_EXPIRED:
		return "expired";
	case LK_ELECTION_LOST:
		return "lost";
	}
	return "unknown";
}
