// SPDX-License-Identifier: MIT
/*
 * Lock handles: validate, resolve the mode of a name, and hand the work to
 * the store's backend. The acquire fast path lives here and in the backend;
 * it must stay at one syscall beyond the lock itself (see tools/bench_lock.c),
 * so nothing here touches the kernel: the fork check reads a page the kernel
 * wipes in children, and the holder's identity was gathered at open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "engine.h"
#include "internal.h"

static int opts_check(const struct lk_lock_opts *o, struct lk_err *err)
{
	if (o->size < sizeof(struct lk_lock_opts) || o->size > 4096) {
		lk__err_set(err, "lk_lock_opts.size is %u; initialise with LK_LOCK_OPTS_INIT",
			    o->size);
		return -EINVAL;
	}
	if (o->flags & ~(LK_LOCK_SHARED | LK_LOCK_AUDIT | LK_LOCK_NO_AUDIT)) {
		lk__err_set(err, "unknown lock flags 0x%x",
			    o->flags & ~(LK_LOCK_SHARED | LK_LOCK_AUDIT | LK_LOCK_NO_AUDIT));
		return -EINVAL;
	}
	if ((o->flags & LK_LOCK_AUDIT) && (o->flags & LK_LOCK_NO_AUDIT)) {
		lk__err_set(err, "LK_LOCK_AUDIT and LK_LOCK_NO_AUDIT contradict each other");
		return -EINVAL;
	}
	if (o->mode != LK_MODE_AUTO && o->mode != LK_MODE_KERNEL && o->mode != LK_MODE_LEASE) {
		lk__err_set(err, "unknown lock mode %d", (int)o->mode);
		return -EINVAL;
	}
	return 0;
}

LK_API int lk_lock_open(struct lk_store *st, const char *name, const struct lk_lock_opts *opts,
			struct lk_lock **ret)
{
	static const struct lk_lock_opts defaults = LK_LOCK_OPTS_INIT;
	struct lk_err err = {0};
	struct lk_lock *lk = NULL;
	enum lk_mode mode;
	int r, entry;

	if (!st || !ret)
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg)) {
		lk__err_set(&err, "store handle was inherited across fork(); open a new one");
		r = -ECHILD;
		goto fail;
	}
	if (!opts)
		opts = &defaults;
	r = opts_check(opts, &err);
	if (r < 0)
		goto fail;
	if (lk_name_valid(name) < 0) {
		lk__err_set(&err,
			    "invalid lock name '%.64s': use 1-255 of [A-Za-z0-9._-], not starting with '.'",
			    name ? name : "(null)");
		r = -EINVAL;
		goto fail;
	}

	entry = st->be->entry(st->bs, name, &err);
	if (entry < 0) {
		r = entry;
		goto fail;
	}
	mode = opts->mode;
	if (mode == LK_MODE_AUTO) {
		if (entry == LK_ENTRY_LEASE)
			mode = LK_MODE_LEASE;
		else if (entry == LK_ENTRY_KERNEL)
			mode = LK_MODE_KERNEL;
		else if (st->be->is_network && st->be->is_network(st->bs))
			mode = LK_MODE_LEASE; /* no trustworthy kernel locks there */
		else
			mode = st->be->caps & LK_CAP_KERNEL_LOCKS ? LK_MODE_KERNEL : LK_MODE_LEASE;
	}
	if (mode == LK_MODE_KERNEL && entry == LK_ENTRY_LEASE) {
		lk__err_set(&err, "lock %s is a lease-mode lock; it cannot be used in kernel mode",
			    name);
		r = -EINVAL;
		goto fail;
	}
	if (mode == LK_MODE_LEASE && entry == LK_ENTRY_KERNEL) {
		lk__err_set(&err, "lock %s is a kernel-mode lock; it cannot be used in lease mode",
			    name);
		r = -EINVAL;
		goto fail;
	}
	if (st->opts.flags & LK_STORE_RDONLY) {
		lk__err_set(&err, "store %s was opened read-only: locks cannot be taken", st->path);
		r = -EROFS;
		goto fail;
	}
	if (mode == LK_MODE_LEASE && !(st->be->caps & LK_CAP_LEASE)) {
		lk__err_set(&err, "the %s backend cannot hold leases", st->be->name);
		r = -EOPNOTSUPP;
		goto fail;
	}
	if (mode == LK_MODE_KERNEL &&
	    (!(st->be->caps & LK_CAP_KERNEL_LOCKS) || !st->be->klock_open)) {
		if (entry == LK_ENTRY_KERNEL)
			lk__err_set(&err,
				    "lock %s is a kernel-mode lock file, which the %s backend cannot "
				    "lock (use it from the host that exports the directory)",
				    name, st->be->name);
		else
			lk__err_set(&err, "kernel mode is not available on %s:// stores; use lease "
					  "mode", st->be->scheme);
		r = -EOPNOTSUPP;
		goto fail;
	}

	lk = calloc(1, sizeof(*lk));
	if (!lk) {
		r = -ENOMEM;
		goto fail;
	}
	r = lk__waiter_init(&lk->waiter, st->opts.wait_signal);
	if (r < 0)
		goto fail_free;
	lk->st = st;
	lk->mode = mode;
	lk->flags = opts->flags;
	/* decided once: an unaudited acquire makes no extra call */
	lk->audit = lk__audit_wanted(st, mode, opts->flags);
	snprintf(lk->name, sizeof(lk->name), "%s", name);
	lk__label_copy(lk->owner, sizeof(lk->owner),
		       opts->owner ? opts->owner : program_invocation_short_name);
	if (mode == LK_MODE_LEASE)
		r = lk__lease_open(lk, opts, &err);
	else
		r = st->be->klock_open(st->bs, name, &lk->bk, &err);
	if (r < 0)
		goto fail_waiter;
	*ret = lk;
	return 0;

fail_waiter:
	lk__waiter_destroy(&lk->waiter);
fail_free:
	free(lk);
fail:
	lk__msg_set(st->errmsg, sizeof(st->errmsg), "%s", err.msg[0] ? err.msg : lk_strerror(r));
	return r;
}

/*
 * Counting an acquire: a kernel-mode lock taken at the first try reads no
 * clock before it and counts a wait of 0, so that the fast path pays one
 * clock read (the start of the hold) and one relaxed increment.
 */
static void acquire_done(struct lk_lock *lk, int r, int64_t t0, int64_t t1, int contended)
{
	struct lk_store *st = lk->st;
	int64_t wait = t0 ? t1 - t0 : 0;

	if (r == 0) {
		lk->t_acquired_ns = t1;
		if (contended)
			lk__count(&st->stats.acquires_contended);
		lk__hist_add(&st->stats.acquire_wait, wait);
	} else {
		lk__count(&st->stats.acquire_failures);
	}
	if (st->ev_on)
		lk__emit_lock(lk, r == 0 ? LK_EV_ACQUIRED : LK_EV_ACQUIRE_FAILED,
			      r == 0 ? atomic_load_explicit(&lk->token, memory_order_relaxed) : 0,
			      wait, r);
}

/* A hold ended by release or close (r: what the release said). */
static void hold_done(struct lk_lock *lk, uint64_t tok, int r)
{
	struct lk_store *st = lk->st;
	int64_t held = lk__monotonic_ns() - lk->t_acquired_ns;

	lk__hist_add(&st->stats.hold, held);
	if (st->ev_on)
		lk__emit_lock(lk, LK_EV_RELEASED, tok, held, r);
}

static int lock_fail(struct lk_lock *lk, const struct lk_err *e, int r)
{
	if (e && e->msg[0])
		lk__msg_set(lk->errmsg, sizeof(lk->errmsg), "%s", e->msg);
	else
		lk__msg_set(lk->errmsg, sizeof(lk->errmsg), "lock %s: %s", lk->name,
			    lk_strerror(r));
	return r;
}

LK_API int lk_lock_acquire(struct lk_lock *lk, int64_t timeout_ms)
{
	struct lk_store *st;
	struct lk_holder_info who;
	struct lk_err err;
	uint64_t tok;
	int64_t t0, t1;
	int r, contended = 0;

	if (!lk)
		return -EINVAL;
	st = lk->st;
	if (!lk__forkguard_ok(&st->fg))
		return lock_fail(lk, NULL, -ECHILD);
	if (atomic_load_explicit(&lk->token, memory_order_relaxed))
		return lock_fail(lk, NULL, -EBUSY);
	/* one acquire per handle at a time: a second would share the first's
	 * open file description and could "succeed" alongside it */
	if (atomic_exchange_explicit(&lk->busy, 1, memory_order_acquire))
		return lock_fail(lk, NULL, -EBUSY);

	if (st->ev_on)
		lk__emit_lock(lk, LK_EV_ACQUIRE_ATTEMPT, 0, 0, 0);

	if (lk->mode == LK_MODE_LEASE) {
		err.msg[0] = 0;
		lk->contended = 0;
		t0 = lk__monotonic_ns();
		r = lk__lease_acquire(lk, timeout_ms, &err);
		if (r == 0)
			atomic_store_explicit(&lk->token, lk->lease->gen, memory_order_release);
		acquire_done(lk, r, t0, lk__monotonic_ns(), lk->contended);
		atomic_store_explicit(&lk->busy, 0, memory_order_release);
		if (r == 0 && lk->audit)
			lk__audit_acquired(lk);
		return r < 0 ? lock_fail(lk, &err, r) : 0;
	}
	who.owner = lk->owner;
	who.host = st->host;
	who.boot_id = st->boot_id;
	who.pid = st->fg.pid;
	err.msg[0] = 0;
	/* Try once first, to tell an acquire that had to wait from one that
	 * did not; a timed acquire reads the clock anyway to keep its limit. */
	t0 = timeout_ms > 0 ? lk__monotonic_ns() : 0;
	r = st->be->klock_acquire(lk->bk, !!(lk->flags & LK_LOCK_SHARED), 0, &who, &lk->waiter,
				  &tok, &err);
	if (r == -EWOULDBLOCK && timeout_ms != 0) {
		int64_t left = timeout_ms;

		contended = 1;
		if (!t0)
			t0 = lk__monotonic_ns();
		if (timeout_ms > 0) {
			left = timeout_ms - (lk__monotonic_ns() - t0) / 1000000;
			if (left < 1)
				left = 1;
		}
		err.msg[0] = 0;
		r = st->be->klock_acquire(lk->bk, !!(lk->flags & LK_LOCK_SHARED), left, &who,
					  &lk->waiter, &tok, &err);
	}
	t1 = lk__monotonic_ns();
	if (r == 0)
		atomic_store_explicit(&lk->token, tok, memory_order_release);
	if (r == -EALREADY)
		r = -EBUSY; /* another thread is already waiting on this handle */
	acquire_done(lk, r, t0, t1, contended);
	atomic_store_explicit(&lk->busy, 0, memory_order_release);
	if (r < 0)
		return lock_fail(lk, &err, r);
	if (lk->audit)
		lk__audit_acquired(lk);
	return 0;
}

LK_API int lk_lock_release(struct lk_lock *lk)
{
	struct lk_err err;
	uint64_t tok;
	int r;

	if (!lk)
		return -EINVAL;
	if (!lk__forkguard_ok(&lk->st->fg))
		return lock_fail(lk, NULL, -ECHILD);
	if (!atomic_load_explicit(&lk->token, memory_order_relaxed))
		return lock_fail(lk, NULL, -ENOLCK);
	err.msg[0] = 0;
	tok = atomic_load_explicit(&lk->token, memory_order_relaxed);
	if (lk->mode == LK_MODE_LEASE) {
		struct lk__audit_hold ah;

		if (lk->audit)
			lk__audit_hold(lk, &ah);
		r = lk__lease_release(lk, &err);
		atomic_store_explicit(&lk->token, 0, memory_order_release);
		hold_done(lk, tok, r);
		if (lk->audit)
			lk__audit_released(lk, &ah, r);
		return r < 0 ? lock_fail(lk, &err, r) : 0;
	}
	r = lk->st->be->klock_release(lk->bk, &err);
	if (r < 0)
		return lock_fail(lk, &err, r);
	atomic_store_explicit(&lk->token, 0, memory_order_release);
	hold_done(lk, tok, 0);
	if (lk->audit)
		lk__audit_lock_event(lk, "release", tok, NULL);
	return 0;
}

LK_API int lk_lock_cancel(struct lk_lock *lk)
{
	if (!lk)
		return -EINVAL;
	if (!lk__forkguard_ok(&lk->st->fg))
		return -ECHILD;
	if (lk->mode == LK_MODE_LEASE)
		return lk__lease_cancel(lk);
	return lk__wait_cancel(&lk->waiter);
}

LK_API uint64_t lk_lock_token(const struct lk_lock *lk)
{
	if (!lk || !lk__forkguard_ok(&lk->st->fg))
		return 0;
	return atomic_load_explicit(&((struct lk_lock *)lk)->token, memory_order_acquire);
}

LK_API int lk_lock_check(struct lk_lock *lk)
{
	if (!lk)
		return -EINVAL;
	if (!lk__forkguard_ok(&lk->st->fg))
		return -ECHILD;
	if (!atomic_load_explicit(&lk->token, memory_order_acquire))
		return -ENOLCK;
	if (lk->mode == LK_MODE_LEASE)
		return lk__lease_check(lk);
	return 0;
}

LK_API uint64_t lk_lock_remaining_ms(const struct lk_lock *lk)
{
	if (!lk || !lk__forkguard_ok(&lk->st->fg) ||
	    !atomic_load(&((struct lk_lock *)lk)->token))
		return 0;
	if (lk->mode == LK_MODE_LEASE)
		return lk__lease_remaining_ms(lk);
	return UINT64_MAX;
}

LK_API int lk_lock_lease_params(const struct lk_lock *lk, struct lk_lease_params *ret)
{
	if (!lk || !ret || lk->mode != LK_MODE_LEASE)
		return -EINVAL;
	return lk__lease_params(lk, ret);
}

LK_API void lk_lock_close(struct lk_lock *lk)
{
	if (!lk)
		return;
	/*
	 * In a forked child the OFD lock is shared with the parent: unlocking
	 * here would release the parent's hold. Only free the child's copy;
	 * closing its descriptor leaves the parent's open file description, and
	 * with it the lock, in place.
	 */
	if (lk->mode == LK_MODE_LEASE) {
		if (lk__forkguard_ok(&lk->st->fg)) {
			struct lk_err err;

			uint64_t tok = atomic_load(&lk->token);
			struct lk__audit_hold ah;

			if (tok && lk->audit)
				lk__audit_hold(lk, &ah);
			if (tok) {
				int r = lk__lease_release(lk, &err);

				hold_done(lk, tok, r);
				if (lk->audit)
					lk__audit_released(lk, &ah, r);
			}
			lk__lease_close(lk);
		}
	} else {
		uint64_t tok = atomic_load(&lk->token);

		if (lk__forkguard_ok(&lk->st->fg) && tok &&
		    lk->st->be->klock_release(lk->bk, NULL) == 0) {
			hold_done(lk, tok, 0);
			if (lk->audit)
				lk__audit_lock_event(lk, "release", tok, "closed");
		}
		lk->st->be->klock_close(lk->bk);
	}
	lk__waiter_destroy(&lk->waiter);
	free(lk);
}

LK_API const char *lk_lock_errmsg(const struct lk_lock *lk)
{
	return lk ? lk->errmsg : "";
}

LK_API enum lk_mode lk_lock_mode(const struct lk_lock *lk)
{
	return lk ? lk->mode : LK_MODE_AUTO;
}

/* ------------------------------------------------------------------------
 * Administration (lockctl break / prune): which mode the name is in decides
 * who does the work; see lease.c and the backend's klock_prune.
 */

static int admin_entry(struct lk_store *st, const char *name, struct lk_err *err)
{
	if (!st || !name)
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg)) {
		lk__err_set(err, "store handle was inherited across fork(); open a new one");
		return -ECHILD;
	}
	if (lk_name_valid(name) < 0) {
		lk__err_set(err, "invalid lock name '%.64s'", name);
		return -EINVAL;
	}
	if (st->opts.flags & LK_STORE_RDONLY) {
		lk__err_set(err, "store %s was opened read-only", st->path);
		return -EROFS;
	}
	return st->be->entry(st->bs, name, err);
}

int lk__lock_break(struct lk_store *st, const char *name, const char *label, unsigned flags,
		   struct lk__break_res *ret, struct lk_err *err)
{
	int entry = admin_entry(st, name, err);

	memset(ret, 0, sizeof(*ret));
	if (entry < 0)
		return entry;
	if (entry == LK_ENTRY_NONE) {
		ret->mode = LK_MODE_AUTO;
		lk__err_set(err, "lock %s was never used: nothing to break", name);
		return -ENOLCK;
	}
	if (entry == LK_ENTRY_KERNEL) {
		ret->mode = LK_MODE_KERNEL;
		ret->exists = 1;
		lk__err_set(err,
			    "lock %s is a kernel-mode lock: it cannot be broken. The kernel frees "
			    "it the moment its holder exits, so stop (or kill) the holder instead",
			    name);
		return -EOPNOTSUPP;
	}
	entry = lk__lease_break(st, name, label, flags, ret, err);
	if (entry == -ENOENT) {
		/* removed (lockctl prune) while we looked: nothing left to break */
		lk__err_set(err, "lock %s was removed meanwhile: nothing to break", name);
		ret->exists = 0;
		entry = -ENOLCK;
	}
	return entry;
}

int lk__lock_prune(struct lk_store *st, const char *name, const char *label,
		   int64_t older_than_ms, unsigned flags, struct lk__prune_res *ret,
		   struct lk_err *err)
{
	int entry = admin_entry(st, name, err), r;

	memset(ret, 0, sizeof(*ret));
	if (entry < 0)
		return entry;
	if (entry == LK_ENTRY_NONE) {
		lk__msg_set(ret->why, sizeof(ret->why), "gone already");
		return 0;
	}
	if (entry == LK_ENTRY_KERNEL) {
		ret->mode = LK_MODE_KERNEL;
		if (!st->be->klock_prune) {
			lk__err_set(err, "the %s backend cannot remove kernel-mode locks",
				    st->be->name);
			return -EOPNOTSUPP;
		}
		r = st->be->klock_prune(st->bs, name, older_than_ms, &ret->token, &ret->last_ns,
					ret->why, sizeof(ret->why), err);
		if (r < 0)
			return r;
		ret->removed = r == 1;
		return 0;
	}
	r = lk__lease_prune(st, name, label, older_than_ms, flags, ret, err);
	if (r == -ENOENT) {
		/* removed by someone else (another prune) while we looked */
		lk__msg_set(ret->why, sizeof(ret->why), "gone already");
		err->msg[0] = 0;
		r = 0;
	}
	return r;
}
