// SPDX-License-Identifier: MIT
/*
 * The heartbeat engine: one thread per store that renews every lease the
 * store's handles hold, and declares a lease lost at its holder's deadline.
 *
 * The one promise that matters here is that storage which stops answering
 * cannot delay a step-down. So the engine thread itself never blocks in a
 * syscall on the storage path: on io_uring (engine_uring.c) the renewal
 * write and the probe for a newer generation are submitted asynchronously
 * with linked timeouts; the fallback (below, for kernels or containers
 * without io_uring) hands them to a worker thread and only waits on an
 * eventfd with a timeout. Either way the deadline check runs on time.
 *
 * The timing rules (docs/protocol.md, "holder rule"):
 *  - t_submit is read before a renewal's requests are sent; a renewal that
 *    succeeds moves the deadline to t_submit + T*(1-rho) - margin.
 *  - A renewal that completes at or after the deadline then in force is
 *    ignored: once the deadline has passed the lease is lost for good.
 *  - At most one write is in flight per lease on local stores: a write
 *    abandoned by a timeout could otherwise land after a newer one and roll
 *    the record back. On nfs:// a renewal given up on stays queued in the
 *    connection while the next one is sent (docs/protocol.md, section 27,
 *    says what that allows and why it is safe when each write lands once).
 *  - A renewal counts only if the probe shows that g.<N+1> does not exist;
 *    if it does, someone broke or took over the lease: lost at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

static void unlink_lease(struct lk__engine *e, struct lk__lease *l)
{
	for (struct lk__lease **p = &e->leases; *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			l->next = NULL;
			return;
		}
	}
}

/* Mark l lost and run its callback without the mutex. Returns 1 if the
 * mutex was dropped (the caller must restart any list walk). */
static int mark_lost(struct lk__engine *e, struct lk__lease *l, int reason)
{
	int expected = 0;
	int64_t held;

	if (!atomic_compare_exchange_strong(&l->lost, &expected, reason))
		return 0;
	lk__count(&e->st->stats.lost);
	pthread_cond_broadcast(&e->cv);
	if (!l->lk || (!l->on_lost && !e->st->ev_on))
		return 0;
	l->in_callback = 1;
	e->cb_thread = pthread_self();
	held = lk__monotonic_ns() - l->t_added_ns;
	pthread_mutex_unlock(&e->mu);
	if (e->st->ev_on)
		lk__emit_lock(l->lk, LK_EV_LOST, l->gen, held, reason);
	if (l->on_lost)
		l->on_lost(l->lk, reason, l->userdata);
	pthread_mutex_lock(&e->mu);
	l->in_callback = 0;
	pthread_cond_broadcast(&e->cv);
	return 1;
}

/* Report a renewal's outcome found by an I/O completion: the counters at
 * once, the event from the engine loop, where no mutex is held. */
static void deliver_event(struct lk__engine *e, struct lk__lease *l)
{
	int type = l->ev_type, err = l->ev_err;
	int64_t dur = l->ev_dur_ns;
	uint64_t gen = l->gen;
	struct lk_lock *lk = l->lk;

	/* in_callback keeps lk__engine_remove(), and so the handle, waiting */
	l->ev_type = 0;
	l->in_callback = 1;
	e->cb_thread = pthread_self();
	pthread_mutex_unlock(&e->mu);
	lk__emit_lock(lk, (enum lk_event_type)type, gen, dur, err);
	pthread_mutex_lock(&e->mu);
	l->in_callback = 0;
	pthread_cond_broadcast(&e->cv);
}

/*
 * A renewal is late when it completes more than half a renewal interval
 * after it was due (the engine's own delays count too): it still moved the
 * deadline, but a few more like it and the lease would be lost.
 */
static void renewal_result(struct lk__engine *e, struct lk__lease *l, int64_t now, int ok,
			   int err)
{
	struct lk__stats *ss = &e->st->stats;
	int64_t lat = now - l->t_submit;
	int type;

	lk__hist_add(&ss->renewal, lat);
	if (!ok) {
		type = LK_EV_RENEW_FAILED;
		lk__count(&ss->renewals_failed);
	} else if (now - l->t_due > l->renew_ns / 2) {
		type = LK_EV_RENEW_LATE;
		lk__count(&ss->renewals_late);
	} else {
		type = LK_EV_RENEWED;
		lk__count(&ss->renewals_ok);
	}
	if (e->st->ev_on && l->lk) {
		l->ev_type = type;
		l->ev_err = ok ? 0 : err;
		l->ev_dur_ns = lat;
		e->need_step = 1;
	}
}

static void start_renewal(struct lk__engine *e, struct lk__lease *l, int64_t now)
{
	l->rec.counter++;
	l->rec.wall_ns = lk__realtime_ns();
	lk__lrec_encode(&l->rec, l->wbuf);
	l->pending = 2;
	l->write_res = l->probe_res = 1;
	l->t_submit = lk__boottime_ns();
	l->t_due = l->next_renew < l->t_submit ? l->next_renew : l->t_submit;
	l->next_renew = now + l->renew_ns;
	e->ops->submit(e, l);
}

void lk__engine_io_done(struct lk__engine *e, struct lk__lease *l, int which, int res)
{
	int64_t now, dl;

	if (which == LK_IO_WRITE)
		l->write_res = res;
	else
		l->probe_res = res;
	if (--l->pending > 0)
		return;
	pthread_cond_broadcast(&e->cv);
	if (l->orphan) {
		e->need_step = 1;
		unlink_lease(e, l);
		if (e->ops->lease_gone)
			e->ops->lease_gone(e, l);
		lk__lease_free(l);
		return;
	}
	if (!l->registered)
		return;
	now = lk__boottime_ns();
	dl = atomic_load(&l->deadline_ns);
	if (now >= dl) {
		/* too late: no late reply revives a lease */
		l->late++;
		e->need_step = 1;
		if (!atomic_load(&l->lost))
			renewal_result(e, l, now, 0, -ETIMEDOUT);
		return;
	}
	if (atomic_load(&l->lost))
		return;
	if (l->probe_res == 0) {
		/* g.<N+1> exists: broken or taken over. Caller of io_done holds
		 * the mutex; the callback runs from the engine loop. */
		l->stale = 1;
		e->need_step = 1;
		renewal_result(e, l, now, 0, -ESTALE);
		return;
	}
	if (l->write_res == (int)LK_LREC_SIZE && l->probe_res == -ENOENT) {
		int64_t ndl = l->t_submit + l->ttl_ns - l->ttl_ns / 1000000 * l->rho_ppm - l->margin_ns;

		if (ndl > dl)
			atomic_store(&l->deadline_ns, ndl);
		l->renewals++;
		renewal_result(e, l, now, 1, 0);
		/* The engine planned its wake-up while this renewal was in
		 * flight, without it: make it plan again if the next renewal
		 * falls due earlier. */
		if (l->next_renew - l->renew_ns / 8 < e->next_wake)
			e->need_step = 1;
		return;
	}
	/* EIO, a timeout, a short write: try again soon, until the deadline */
	renewal_result(e, l, now, 0,
		       l->write_res < 0   ? l->write_res
		       : l->probe_res < 0 && l->probe_res != -ENOENT ? l->probe_res
								     : -EIO);
	l->failures++;
	l->next_renew = now + l->renew_ns / 4;
	e->need_step = 1;
}

/* One round of the engine: deadlines, renewals due, callbacks. Called with
 * the mutex held; returns the CLOCK_BOOTTIME at which to run again. */
static int64_t engine_step(struct lk__engine *e)
{
	int64_t now = lk__boottime_ns(), next = now + 1000000000;
	struct lk__lease *l;
again:
	for (l = e->leases; l; l = l->next) {
		int64_t dl;

		if (l->ev_type) {
			/* before a loss this renewal may have caused */
			if (!l->orphan && l->registered && l->lk) {
				deliver_event(e, l);
				goto again;
			}
			l->ev_type = 0;
		}
		if (l->orphan || !l->registered || atomic_load(&l->lost))
			continue;
		dl = atomic_load(&l->deadline_ns);
		if (l->stale) {
			/* a renewal's probe found a newer generation */
			if (mark_lost(e, l, -ESTALE))
				goto again;
			continue;
		}
		if (now >= dl) {
			if (mark_lost(e, l, -ETIMEDOUT))
				goto again;
			continue;
		}
		/* Renewing a little early is harmless and lets renewals that fall
		 * close together share one wake-up and one submission. */
		if (!l->pending && now >= l->next_renew - l->renew_ns / 8)
			start_renewal(e, l, now);
		if (dl < next)
			next = dl;
		/* wake for the earliest renewal due; the ones due within renew/8
		 * of it go out in the same round */
		if (!l->pending && l->next_renew < next)
			next = l->next_renew;
	}
	return next;
}

static void *engine_main(void *arg)
{
	struct lk__engine *e = arg;

	pthread_mutex_lock(&e->mu);
	int64_t next = 0;

	while (!e->stop) {
		int64_t until;

		/*
		 * A walk over every lease only when a timer is due or a
		 * completion asked for one: a renewal that succeeded has already
		 * moved its deadline and needs nothing more.
		 */
		if (e->need_step || lk__boottime_ns() >= next) {
			e->need_step = 0;
			next = engine_step(e);
			e->next_wake = next;
		}
		pthread_mutex_unlock(&e->mu);
		/* send what the step queued, reap what has come back */
		until = lk__engine_backend_service(e);
		if (until > next)
			until = next;
		pthread_mutex_lock(&e->mu);
		if (e->need_step || e->stop)
			continue;
		pthread_mutex_unlock(&e->mu);
		e->ops->wait(e, until);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

LK_API int lk_store_engine_fd(struct lk_store *st)
{
	struct lk__engine *e;
	int r;

	if (!st || !(st->opts.flags & LK_STORE_EXTERNAL_ENGINE))
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg))
		return -ECHILD;
	r = lk__engine_get(st, &e);
	if (r < 0)
		return r;
	return e->ops->fd(e);
}

LK_API int lk_store_engine_process(struct lk_store *st, int64_t *ret_timeout_ms)
{
	struct lk__engine *e;
	int64_t next = 0, left;
	int r;

	if (!st || !(st->opts.flags & LK_STORE_EXTERNAL_ENGINE))
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg))
		return -ECHILD;
	r = lk__engine_get(st, &e);
	if (r < 0)
		return r;
	/* Act on what has finished and send what is due, then reap; repeat
	 * until a reap finds nothing, so that the timeout below is computed from
	 * every result there is and nothing queued is left unsent. */
	for (int round = 0; round < 8; round++) {
		int64_t due;
		int more;

		pthread_mutex_lock(&e->mu);
		next = engine_step(e);
		e->next_wake = next;
		pthread_mutex_unlock(&e->mu);
		due = lk__engine_backend_service(e);
		if (due < next)
			next = due;
		more = e->ops->wait(e, 0) > 0;
		pthread_mutex_lock(&e->mu);
		more |= e->need_step;
		pthread_mutex_unlock(&e->mu);
		if (!more)
			break;
	}
	left = next - lk__boottime_ns();
	if (ret_timeout_ms)
		*ret_timeout_ms = left > 0 ? (left + 999999) / 1000000 : 0;
	return 0;
}

static int uring_disabled(void)
{
	const char *no = getenv("LOCKKIT_NO_URING");

	return no && *no && strcmp(no, "0");
}

LK_API const char *lk_engine_default(void)
{
#ifdef LK_HAVE_URING
	struct lk__engine e;

	if (uring_disabled())
		return "thread";
	memset(&e, 0, sizeof(e));
	if (lk__engine_uring_ops.init(&e) == 0) {
		pthread_mutex_init(&e.mu, NULL);
		lk__engine_uring_ops.fini(&e);
		pthread_mutex_destroy(&e.mu);
		return "io_uring";
	}
#endif
	return "thread";
}

/*
 * The library's threads must never take a signal meant for the program (a
 * SIGTERM delivered to an engine thread would run the default action and
 * kill the process behind the program's back): they start with every signal
 * blocked.
 */
int lk__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

int lk__engine_get(struct lk_store *st, struct lk__engine **ret)
{
	struct lk__engine *e;
	int r = 0;

	pthread_mutex_lock(&st->engine_mu);
	if (st->engine) {
		*ret = st->engine;
		goto out;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	e->st = st;
	e->bk_due = INT64_MAX;
	e->bk_fd = -1;
	pthread_mutex_init(&e->mu, NULL);
	cond_init_mono(&e->cv);
	r = -EOPNOTSUPP;
#ifdef LK_HAVE_URING
	if (!uring_disabled()) {
		e->ops = &lk__engine_uring_ops;
		r = e->ops->init(e);
	}
#endif
	if (r < 0) {
		e->ops = &lk__engine_thread_ops;
		r = e->ops->init(e);
	}
	if (r < 0)
		goto fail;
	if (!(st->opts.flags & LK_STORE_EXTERNAL_ENGINE)) {
		r = lk__thread_create(&e->thread, engine_main, e);
		if (r < 0) {
			e->ops->fini(e);
			goto fail;
		}
		e->threaded = 1;
	}
	st->engine = e;
	*ret = e;
	goto out;
fail:
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
out:
	pthread_mutex_unlock(&st->engine_mu);
	return r;
}

int lk__engine_free(struct lk__engine *e)
{
	if (!e)
		return 0;
	pthread_mutex_lock(&e->mu);
	e->stop = 1;
	pthread_mutex_unlock(&e->mu);
	e->ops->wake(e);
	if (e->threaded)
		pthread_join(e->thread, NULL);
	if (e->ops->fini(e) < 0)
		return -EBUSY; /* a worker is stuck in storage: leave everything be */
	while (e->leases) {
		struct lk__lease *l = e->leases;

		e->leases = l->next;
		if (l->orphan)
			lk__lease_free(l);
	}
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
	return 0;
}

void lk__engine_add(struct lk__engine *e, struct lk__lease *l)
{
	pthread_mutex_lock(&e->mu);
	l->registered = 1;
	l->pending = 0;
	l->orphan = 0;
	l->stale = 0;
	l->failures = 0;
	l->ev_type = 0;
	l->t_added_ns = lk__monotonic_ns();
	l->next_renew = lk__boottime_ns() + l->renew_ns;
	l->next = e->leases;
	e->leases = l;
	e->need_step = 1;
	pthread_mutex_unlock(&e->mu);
	e->ops->wake(e);
}

int lk__engine_remove(struct lk__engine *e, struct lk__lease *l)
{
	int self;

	pthread_mutex_lock(&e->mu);
	/* From inside on_lost (documented as not allowed, but not worth a hang):
	 * the callback that pins l is our own caller. */
	self = (e->threaded && pthread_equal(pthread_self(), e->thread)) ||
	       (l->in_callback && pthread_equal(pthread_self(), e->cb_thread));
	l->registered = 0;
	if (self && l->pending) {
		/* only this thread could reap that I/O: let the engine free l */
		l->orphan = 1;
		pthread_mutex_unlock(&e->mu);
		return 0;
	}
	while (l->pending || (l->in_callback && !self)) {
		int64_t dl = atomic_load(&l->deadline_ns), now = lk__boottime_ns();
		struct timespec ts;
		int64_t until;

		if (!l->in_callback && now >= dl) {
			/* the write never came back in time: hand l to the engine */
			l->orphan = 1;
			pthread_mutex_unlock(&e->mu);
			return 0;
		}
		if (!e->threaded && e->st->be->service && !l->in_callback) {
			/*
			 * Nobody else may be servicing the backend (the caller
			 * drives the engine, and may be this very thread):
			 * service it here, without the mutex its completions
			 * take.
			 */
			int fd;
			short ev;

			pthread_mutex_unlock(&e->mu);
			e->st->be->service(e->st->bs, &fd, &ev);
			if (fd >= 0) {
				struct pollfd p = { fd, ev, 0 };

				poll(&p, 1, 1);
			}
			pthread_mutex_lock(&e->mu);
			continue;
		}
		until = lk__monotonic_ns() +
			(dl - now < 1000000 ? 1000000 : dl - now < 50000000 ? dl - now : 50000000);
		ts.tv_sec = until / 1000000000;
		ts.tv_nsec = until % 1000000000;
		pthread_cond_timedwait(&e->cv, &e->mu, &ts);
	}
	unlink_lease(e, l);
	if (e->ops->lease_gone)
		e->ops->lease_gone(e, l);
	pthread_mutex_unlock(&e->mu);
	return 1;
}

/* ------------------------------------------------------------------------
 * Backends that the engine services itself (nfs://): the renewal's
 * requests go out on the backend's own connection, and the engine polls
 * that connection's descriptor along with its timers. Completions arrive
 * from whichever thread services the backend: the engine's, or a caller's
 * blocking call on the same store, which services every request on the
 * connection while it waits for its own.
 */

static void backend_done(void *arg, int which, int res)
{
	struct lk__lease *l = arg;
	struct lk__engine *e = l->st->engine;
	int wake;

	pthread_mutex_lock(&e->mu);
	lk__engine_io_done(e, l, which == LK_RENEW_WRITE ? LK_IO_WRITE : LK_IO_PROBE, res);
	/* l may be gone now */
	wake = e->need_step;
	pthread_mutex_unlock(&e->mu);
	if (wake)
		e->ops->wake(e);
}

int lk__engine_backend_submit(struct lk__engine *e, struct lk__lease *l)
{
	const struct lk_backend *be = e->st->be;
	int r;

	if (!be->renew_start || !be->service || l->f->fd >= 0)
		return 0;
	r = be->renew_start(l->f, l->wbuf, sizeof(l->wbuf), l->probe, l->t_submit + l->io_ns,
			    backend_done, l);
	if (r < 0) {
		lk__engine_io_done(e, l, LK_IO_WRITE, r);
		lk__engine_io_done(e, l, LK_IO_PROBE, r);
	}
	return 1;
}

int64_t lk__engine_backend_service(struct lk__engine *e)
{
	const struct lk_backend *be = e->st->be;

	if (!be->service) {
		e->bk_fd = -1;
		e->bk_due = INT64_MAX;
		return INT64_MAX;
	}
	e->bk_due = be->service(e->st->bs, &e->bk_fd, &e->bk_events);
	return e->bk_due;
}

/* ------------------------------------------------------------------------
 * The fallback engine: blocking I/O on a worker thread, never on the timer
 * thread. If storage hangs, the worker hangs with it, and the timer thread
 * still declares the lease lost on time.
 */

struct lk__engine_sys lk__engine_sys = {
	.pwrite = pwrite,
	.fstatat = fstatat,
};

/*
 * The I/O worker: one thread that performs renewals with blocking calls, so
 * that the engine's own thread never does. The fallback engine sends every
 * renewal here; the io_uring engine sends those of backends that have no
 * descriptors for it to use (nfs://).
 */
static void *worker_main(void *arg)
{
	struct lk__iowork *w = arg;
	struct lk__engine *e = w->e;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct lk__lease *l;
		uint8_t buf[LK_LREC_SIZE];
		char probe[LK_NAME_MAX + LK_GEN_NAME_LEN + 2];
		struct lk_bfile *f;
		int wres, pres;
		struct stat st;
		ssize_t n;

		while (!w->stop && !w->head) {
			/* the queue ran dry: tell the engine if a result needs it */
			if (e->need_step)
				e->ops->wake(e);
			pthread_cond_wait(&w->wcv, &e->mu);
		}
		if (w->stop)
			break;
		l = w->head;
		w->head = l->qnext;
		if (!w->head)
			w->tail = &w->head;
		l->qnext = NULL;
		memcpy(buf, l->wbuf, sizeof(buf));
		memcpy(probe, l->probe, sizeof(probe));
		f = l->f; /* not closed while I/O is pending (lk__engine_remove) */
		pthread_mutex_unlock(&e->mu);

		if (f->fd >= 0) {
			n = lk__engine_sys.pwrite(f->fd, buf, sizeof(buf), 0);
			wres = n < 0 ? -errno : (int)n;
			pres = lk__engine_sys.fstatat(f->dirfd, probe, &st, AT_SYMLINK_NOFOLLOW) < 0
				       ? -errno
				       : 0;
		} else {
			const struct lk_backend *be = f->bs->be;

			wres = be->write_record(f, buf, sizeof(buf), NULL);
			if (wres == 0)
				wres = (int)sizeof(buf);
			pres = be->stat(f->bs, probe, NULL, NULL);
		}

		pthread_mutex_lock(&e->mu);
		lk__engine_io_done(e, l, LK_IO_WRITE, wres);
		lk__engine_io_done(e, l, LK_IO_PROBE, pres);
	}
	w->exited = 1;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

int lk__iowork_start(struct lk__engine *e, struct lk__iowork *w)
{
	int r;

	if (w->started)
		return 0;
	w->e = e;
	w->tail = &w->head;
	w->stop = w->exited = 0;
	pthread_cond_init(&w->wcv, NULL);
	r = lk__thread_create(&w->worker, worker_main, w);
	if (r < 0) {
		pthread_cond_destroy(&w->wcv);
		return r;
	}
	w->started = 1;
	return 0;
}

/* Returns 0 if the worker was joined, -EBUSY if it is stuck in a syscall on
 * dead storage and was left detached (w must then not be freed). */
int lk__iowork_stop(struct lk__engine *e, struct lk__iowork *w)
{
	struct timespec ts;
	int exited;

	if (!w->started)
		return 0;
	/*
	 * A blocked call returns within its own timeout on nfs:// stores (a
	 * few seconds); a hung local filesystem may never return. The wait is
	 * on the engine's condition variable, which runs on CLOCK_MONOTONIC
	 * (a timed join would take a wall-clock deadline), and the join comes
	 * only once the worker said it is leaving.
	 */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&e->mu);
	w->stop = 1;
	pthread_cond_broadcast(&w->wcv);
	while (!w->exited && pthread_cond_timedwait(&e->cv, &e->mu, &ts) != ETIMEDOUT)
		;
	exited = w->exited;
	pthread_mutex_unlock(&e->mu);
	if (!exited) {
		pthread_detach(w->worker);
		return -EBUSY;
	}
	pthread_join(w->worker, NULL);
	pthread_cond_destroy(&w->wcv);
	w->started = 0;
	return 0;
}

/* With the engine mutex held. */
void lk__iowork_submit(struct lk__iowork *w, struct lk__lease *l)
{
	int was_empty = !w->head;

	l->qnext = NULL;
	*w->tail = l;
	w->tail = &l->qnext;
	if (was_empty) /* a busy worker finds the rest on its own */
		pthread_cond_signal(&w->wcv);
}

struct tengine {
	int evfd;
	struct lk__iowork io;
};

static int tengine_init(struct lk__engine *e)
{
	struct tengine *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	t->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->evfd < 0) {
		free(t);
		return -errno;
	}
	e->impl = t;
	r = lk__iowork_start(e, &t->io);
	if (r < 0) {
		close(t->evfd);
		free(t);
		e->impl = NULL;
	}
	return r;
}

static int tengine_fini(struct lk__engine *e)
{
	struct tengine *t = e->impl;

	if (lk__iowork_stop(e, &t->io) < 0)
		return -EBUSY; /* leak t: the stuck worker may still touch it */
	close(t->evfd);
	free(t);
	return 0;
}

static void tengine_submit(struct lk__engine *e, struct lk__lease *l)
{
	struct tengine *t = e->impl;

	if (lk__engine_backend_submit(e, l))
		return;
	lk__iowork_submit(&t->io, l);
}

static int tengine_wait(struct lk__engine *e, int64_t until_ns)
{
	struct tengine *t = e->impl;
	/* the backend's connection too, when it has requests out */
	struct pollfd pfd[2] = { { t->evfd, POLLIN, 0 }, { e->bk_fd, e->bk_events, 0 } };
	int64_t left = until_ns - lk__boottime_ns();
	uint64_t v;
	int n = 0;

	if (left > 0 && poll(pfd, e->bk_fd >= 0 ? 2 : 1, (int)((left + 999999) / 1000000)) > 0 &&
	    e->bk_fd >= 0 && pfd[1].revents)
		n++;
	while (read(t->evfd, &v, sizeof(v)) > 0)
		n++;
	return n;
}

static int tengine_fd(struct lk__engine *e)
{
	return ((struct tengine *)e->impl)->evfd;
}

static void tengine_wake(struct lk__engine *e)
{
	struct tengine *t = e->impl;
	uint64_t one = 1;

	if (write(t->evfd, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
}

const struct lk__engine_ops lk__engine_thread_ops = {
	.name = "thread",
	.init = tengine_init,
	.fini = tengine_fini,
	.submit = tengine_submit,
	.wait = tengine_wait,
	.wake = tengine_wake,
	.fd = tengine_fd,
	.lease_gone = NULL,
};
