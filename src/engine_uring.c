// SPDX-License-Identifier: MIT
/*
 * The io_uring heartbeat engine. A renewal is two independent chains
 * submitted together: WRITE of the record linked to a LINK_TIMEOUT, and
 * STATX of g.<N+1> (the probe for a newer generation) linked to another.
 * The engine thread then sleeps in io_uring_wait_cqe_timeout() until the
 * next renewal or deadline, so a request stuck in the kernel or on the wire
 * delays nothing but its own completion. Many leases share one ring, so a
 * round of renewals is a handful of io_uring_enter() calls, not one per
 * syscall.
 *
 * io_uring is probed, not assumed: the ring must come up and every opcode
 * used must be supported, or the store falls back to the thread engine.
 * Container runtimes commonly block io_uring with seccomp, and
 * kernel.io_uring_disabled can turn it off; LOCKKIT_NO_URING=1 forces the
 * fallback too.
 *
 * Only the engine thread touches the ring; other threads wake it through an
 * eventfd that the ring polls. Renewals of nfs:// records go out on the
 * store's own NFS connection (the backend's renew_start and service, see
 * engine.c); while one is out the ring polls that connection too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"

#define TAG_IGNORE (~0ull)
#define TAG_WAKE (~1ull)
#define TAG_BACKEND (~2ull)

struct uengine {
	struct io_uring ring;
	int evfd;
	uint64_t evbuf;
	int ev_armed;
	int bk_armed; /* a poll on the backend's connection is in the ring */
	struct __kernel_timespec bk_ts;
	struct lk__iowork io; /* for backends without descriptors (nfs://) */
};

struct ulease {
	struct statx stx;
	struct __kernel_timespec ts;
};

static int uengine_init(struct lk__engine *e)
{
	static const int ops[] = { IORING_OP_WRITE, IORING_OP_STATX, IORING_OP_LINK_TIMEOUT,
				   IORING_OP_POLL_ADD, IORING_OP_TIMEOUT, IORING_OP_READ };
	struct io_uring_probe *probe;
	struct uengine *u = calloc(1, sizeof(*u));
	int r;

	if (!u)
		return -ENOMEM;
	struct io_uring_params p;

	/* A renewal is four entries and four completions; size the completion
	 * queue for thousands of leases renewing in one round. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 16384;
	r = io_uring_queue_init_params(1024, &u->ring, &p);
	if (r < 0) {
		free(u);
		return r;
	}
	probe = io_uring_get_probe_ring(&u->ring);
	if (!probe) {
		r = -EOPNOTSUPP;
		goto fail;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, ops[i])) {
			r = -EOPNOTSUPP;
			break;
		}
	}
	io_uring_free_probe(probe);
	if (r < 0)
		goto fail;
	u->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->evfd < 0) {
		r = -errno;
		goto fail;
	}
	e->impl = u;
	return 0;
fail:
	io_uring_queue_exit(&u->ring);
	free(u);
	return r;
}

static int uengine_fini(struct lk__engine *e)
{
	struct uengine *u = e->impl;

	if (lk__iowork_stop(e, &u->io) < 0)
		return -EBUSY; /* leak u: a stuck worker may still touch it */
	io_uring_queue_exit(&u->ring);
	close(u->evfd);
	free(u);
	return 0;
}

static struct io_uring_sqe *get_sqe(struct uengine *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static void uengine_submit(struct lk__engine *e, struct lk__lease *l)
{
	struct uengine *u = e->impl;
	struct ulease *ul = l->io;
	struct io_uring_sqe *sqe;

	if (lk__engine_backend_submit(e, l))
		return; /* the backend's own connection, polled below */
	if (l->f->fd < 0) {
		/* no descriptors to hand the ring: the worker does it */
		if (lk__iowork_start(e, &u->io) < 0) {
			lk__engine_io_done(e, l, LK_IO_WRITE, -ENOMEM);
			lk__engine_io_done(e, l, LK_IO_PROBE, -ENOMEM);
			return;
		}
		lk__iowork_submit(&u->io, l);
		return;
	}
	if (!ul) {
		ul = calloc(1, sizeof(*ul));
		if (!ul) {
			lk__engine_io_done(e, l, LK_IO_WRITE, -ENOMEM);
			lk__engine_io_done(e, l, LK_IO_PROBE, -ENOMEM);
			return;
		}
		l->io = ul;
	}
	ul->ts.tv_sec = l->io_ns / 1000000000;
	ul->ts.tv_nsec = l->io_ns % 1000000000;

	/* Room for all four entries, so that no chain is split across submits. */
	if (io_uring_sq_space_left(&u->ring) < 4)
		io_uring_submit(&u->ring);

	sqe = get_sqe(u);
	io_uring_prep_write(sqe, l->f->fd, l->wbuf, sizeof(l->wbuf), 0);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | LK_IO_WRITE);
	sqe = get_sqe(u);
	io_uring_prep_link_timeout(sqe, &ul->ts, 0);
	io_uring_sqe_set_data64(sqe, TAG_IGNORE);

	sqe = get_sqe(u);
	io_uring_prep_statx(sqe, l->f->dirfd, l->probe, AT_SYMLINK_NOFOLLOW, STATX_INO, &ul->stx);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | LK_IO_PROBE);
	sqe = get_sqe(u);
	io_uring_prep_link_timeout(sqe, &ul->ts, 0);
	io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	/* submitted by the next wait(), together with every other renewal */
}

static void handle(struct lk__engine *e, struct uengine *u, struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	struct lk__lease *l;
	int which, res = cqe->res;

	if (tag == TAG_IGNORE)
		return;
	if (tag == TAG_BACKEND) {
		/* readable, or the poll's own timeout: the engine services the
		 * backend next either way */
		u->bk_armed = 0;
		return;
	}
	if (tag == TAG_WAKE) {
		uint64_t v;

		u->ev_armed = 0;
		while (read(u->evfd, &v, sizeof(v)) > 0)
			;
		return;
	}
	l = (struct lk__lease *)(uintptr_t)(tag & ~1ull);
	which = (int)(tag & 1);
	/* a timed-out request reports -ECANCELED or -EINTR: a failed renewal */
	pthread_mutex_lock(&e->mu);
	lk__engine_io_done(e, l, which, res);
	pthread_mutex_unlock(&e->mu);
}

static int uengine_wait(struct lk__engine *e, int64_t until_ns)
{
	struct uengine *u = e->impl;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	int64_t left = until_ns - lk__boottime_ns();
	unsigned head, n = 0;

	if (!u->ev_armed) {
		struct io_uring_sqe *sqe = get_sqe(u);

		io_uring_prep_poll_add(sqe, u->evfd, POLLIN);
		io_uring_sqe_set_data64(sqe, TAG_WAKE);
		u->ev_armed = 1;
	}
	if (e->bk_fd >= 0 && !u->bk_armed && io_uring_sq_space_left(&u->ring) >= 2) {
		/*
		 * One-shot, with a timeout of its own: libnfs may put a new
		 * connection under the same descriptor number when it
		 * reconnects, and a poll on the old one would never fire.
		 */
		struct io_uring_sqe *sqe = get_sqe(u);

		io_uring_prep_poll_add(sqe, e->bk_fd, (unsigned)e->bk_events);
		sqe->flags |= IOSQE_IO_LINK;
		io_uring_sqe_set_data64(sqe, TAG_BACKEND);
		u->bk_ts.tv_sec = 0;
		u->bk_ts.tv_nsec = 100000000;
		sqe = get_sqe(u);
		io_uring_prep_link_timeout(sqe, &u->bk_ts, 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
		u->bk_armed = 1;
	}
	if (left < 0)
		left = 0;
	ts.tv_sec = left / 1000000000;
	ts.tv_nsec = left % 1000000000;
	io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		handle(e, u, cqe);
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	return (int)n;
}

static void uengine_wake(struct lk__engine *e)
{
	struct uengine *u = e->impl;
	uint64_t one = 1;

	if (write(u->evfd, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
}

static int uengine_fd(struct lk__engine *e)
{
	struct uengine *u = e->impl;

	/* completions make the ring readable; arm the wake-up poll first */
	uengine_wait(e, 0);
	return u->ring.ring_fd;
}

static void uengine_lease_gone(struct lk__engine *e, struct lk__lease *l)
{
	(void)e;
	free(l->io);
	l->io = NULL;
}

const struct lk__engine_ops lk__engine_uring_ops = {
	.name = "io_uring",
	.init = uengine_init,
	.fini = uengine_fini,
	.submit = uengine_submit,
	.wait = uengine_wait,
	.wake = uengine_wake,
	.fd = uengine_fd,
	.lease_gone = uengine_lease_gone,
};
