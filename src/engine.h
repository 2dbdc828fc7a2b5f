/* SPDX-License-Identifier: MIT */
/*
 * The heartbeat engine: one per store, renews every lease the store's
 * handles hold and fires on_lost at each holder's deadline. See engine.c.
 */
#ifndef LK_ENGINE_H
#define LK_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "internal.h"
#include "lrecord.h"

/*
 * An observer's memory of the newest record and when it first saw it. It
 * lives in the handle, so that acquires with short timeouts, one after the
 * other, still add up to the wait that lets them take over a silent lease.
 */
struct lk__seen {
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

struct lk__lease {
	struct lk_lock *lk;
	struct lk_store *st;

	/* parameters, nanoseconds */
	int64_t ttl_ns, renew_ns, margin_ns, io_ns;
	uint32_t rho_ppm;
	lk_lost_fn on_lost;
	void *userdata;
	int32_t pid;
	uint64_t pid_start;

	/* waiting */
	pthread_mutex_t cancel_mu; /* guards cancel_fd against lk_lock_cancel() */
	int cancel_fd;     /* eventfd written by lk_lock_cancel(); only while acquiring */
	int watch_fd;      /* inotify on the lock directory, made on the first wait */
	uint64_t hint_gen; /* newest generation seen, to probe instead of listing */
	struct lk__seen seen; /* what the last acquire saw, and since when */
	int net;           /* the store is on a network filesystem: list, never probe */

	/* holding (gen != 0) */
	uint64_t gen;
	struct lk__lrec rec; /* our record as last submitted */
	struct lk_bfile *f;
	char dir[LK_NAME_MAX + 1];
	char probe[LK_NAME_MAX + LK_GEN_NAME_LEN + 2]; /* <dir>/g.<gen + 1> */
	_Atomic int64_t deadline_ns;     /* CLOCK_BOOTTIME */
	atomic_int lost;                 /* 0, -ETIMEDOUT or -ESTALE */

	/* engine bookkeeping, under the engine's mutex */
	struct lk__lease *next;
	struct lk__lease *qnext; /* thread engine's work queue */
	int registered;    /* renewing */
	int orphan;        /* the handle is gone; free when I/O completes */
	int pending;       /* I/O completions still to come */
	int in_callback;
	int stale;         /* a probe found g.<N+1>: to be reported as lost */
	int write_res, probe_res;
	int64_t t_submit, next_renew;
	uint8_t wbuf[LK_LREC_SIZE];
	void *io;          /* engine-private per-lease state */
	uint64_t renewals, failures, late;
	/* observability (events.c): when the renewal in flight was due, and the
	 * outcome of the last one, waiting for the engine loop to report it
	 * without the mutex (ev_type 0: none) */
	int64_t t_due, t_added_ns; /* CLOCK_BOOTTIME, CLOCK_MONOTONIC */
	int ev_type, ev_err;
	int64_t ev_dur_ns;
};

struct lk__engine;

struct lk__engine_ops {
	const char *name;
	int (*init)(struct lk__engine *e);
	/* 0, or -EBUSY when I/O is stuck in the kernel or on the wire and the
	 * engine's state cannot be freed safely (it is then left allocated). */
	int (*fini)(struct lk__engine *e);
	/* Start the renewal I/O of l: write l->wbuf, probe l->probe.
	 * Called with the engine mutex held; l->pending is already 2. */
	void (*submit)(struct lk__engine *e, struct lk__lease *l);
	/* Sleep until until_ns (CLOCK_BOOTTIME) or an event; report finished
	 * I/O with lk__engine_io_done(). Called without the mutex. Returns how
	 * many events it handled (0: none). */
	int (*wait)(struct lk__engine *e, int64_t until_ns);
	/* Make wait() return soon; any thread. */
	void (*wake)(struct lk__engine *e);
	/* A descriptor that is readable when wait() has something to reap. */
	int (*fd)(struct lk__engine *e);
	/* Free per-lease state once no I/O is pending. */
	void (*lease_gone)(struct lk__engine *e, struct lk__lease *l);
};

struct lk__engine {
	struct lk_store *st;
	const struct lk__engine_ops *ops;
	void *impl;
	pthread_t thread;
	int threaded;      /* 0: driven by lk_store_engine_process() */
	pthread_t cb_thread; /* the thread running an on_lost callback */
	int need_step;     /* a result needs the engine to look at every lease */
	int64_t next_wake; /* when the engine means to look again (under mu) */
	/* A backend the engine services itself (be->service): when it wants
	 * servicing again and what to poll meanwhile; the engine's thread
	 * only (or lk_store_engine_process()'s caller). */
	int64_t bk_due;
	int bk_fd;
	short bk_events;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	struct lk__lease *leases;
};

enum { LK_IO_WRITE = 0, LK_IO_PROBE = 1 };

int lk__engine_get(struct lk_store *st, struct lk__engine **ret);
/* pthread_create with every signal blocked in the new thread; -errno. */
int lk__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
/* 0, or -EBUSY if stuck I/O kept it from freeing everything: the backend
 * must then stay open too. */
int lk__engine_free(struct lk__engine *e);
void lk__engine_add(struct lk__engine *e, struct lk__lease *l);
/*
 * Stop renewing l and wait until it has no I/O in flight, at most until its
 * deadline. Returns 1 if l is quiet and still the caller's, 0 if I/O is
 * still in flight: the engine then owns l (and its record) and frees it.
 */
int lk__engine_remove(struct lk__engine *e, struct lk__lease *l);
/* Renewals the backend sends itself (be->renew_start): 1 if l's renewal
 * went that way (or failed and was reported), 0 if the caller must do it.
 * With the engine mutex held. */
int lk__engine_backend_submit(struct lk__engine *e, struct lk__lease *l);
/* Service such a backend (no mutex held); returns the engine's bk_due. */
int64_t lk__engine_backend_service(struct lk__engine *e);
/* From an implementation, with the mutex held. */
void lk__engine_io_done(struct lk__engine *e, struct lk__lease *l, int which, int res);
void lk__lease_free(struct lk__lease *l);

/* The fallback engine's syscalls, replaceable by tests to inject faults. */
struct lk__engine_sys {
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fstatat)(int dfd, const char *path, struct stat *st, int flags);
};
extern struct lk__engine_sys lk__engine_sys;

/* The blocking-I/O worker shared by both engines. */
struct lk__iowork {
	struct lk__engine *e;
	pthread_t worker;
	pthread_cond_t wcv;
	int started, stop, exited; /* exited: set by the worker, under the engine mutex */
	struct lk__lease *head, **tail;
};
int lk__iowork_start(struct lk__engine *e, struct lk__iowork *w);
int lk__iowork_stop(struct lk__engine *e, struct lk__iowork *w);
void lk__iowork_submit(struct lk__iowork *w, struct lk__lease *l);

extern const struct lk__engine_ops lk__engine_thread_ops;
#ifdef LK_HAVE_URING
extern const struct lk__engine_ops lk__engine_uring_ops;
#endif

#endif
