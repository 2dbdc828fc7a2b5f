/* SPDX-License-Identifier: MIT */
/*
 * Events, counters and log lines of a store (events.c). The counters are
 * always kept; events and log lines only reach callers that asked for them.
 */
#ifndef LK_EVENTS_H
#define LK_EVENTS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lockkit.h"

struct lk_store;
struct lk_lock;

/* The size of struct lk_store_opts before the observability fields. */
#define LK__STORE_OPTS_V0 (offsetof(struct lk_store_opts, wait_signal) + sizeof(int))

/* The count is the sum of the buckets: one increment fewer on the fast
 * path. */
struct lk__ahist {
	_Atomic uint64_t sum_ns;
	_Atomic uint64_t buckets[LK_HIST_BUCKETS];
};

/* One per store; every field is updated with relaxed atomics. Successful
 * acquires and releases are the counts of acquire_wait and hold. */
struct lk__stats {
	_Atomic uint64_t acquire_failures, acquires_contended;
	_Atomic uint64_t renewals_ok, renewals_late, renewals_failed;
	_Atomic uint64_t lost, claim_races_lost, expiries_observed;
	_Atomic uint64_t terms, demotions, resignations;
	struct lk__ahist acquire_wait, hold, renewal, leadership, election;
	_Atomic uint64_t seq; /* the last event's number */
};

static inline void lk__count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Record one duration (negative counts as 0). */
void lk__hist_add(struct lk__ahist *h, int64_t ns);

/* What an event is about beyond its type; the lock's name and mode are
 * taken from lock when name is NULL. */
struct lk__ev {
	enum lk_event_type type;
	const char *name;
	enum lk_mode mode;
	int shared;
	uint64_t token;
	int64_t duration_ns;
	int error;
	struct lk_lock *lock;
};

/* Deliver an event to the store's sinks; call only when st->ev_on. */
void lk__emit(struct lk_store *st, const struct lk__ev *ev);
/* The same for an event about a lock handle. */
void lk__emit_lock(struct lk_lock *lk, enum lk_event_type type, uint64_t token, int64_t duration_ns,
                   int error);
/* A log line that is not an event (a warning, say); no-op without on_log. */
void lk__log(struct lk_store *st, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Take the observability options from a caller's lk_store_opts of the
 * given size (older callers pass a smaller one). */
void lk__events_init(struct lk_store *st);

#endif
