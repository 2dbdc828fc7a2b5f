// SPDX-License-Identifier: MIT
/*
 * What a store's handles did, for the people who run them: counters and
 * histograms that are always kept, and events and log lines for callers
 * that install a callback.
 *
 * The counters sit on the kernel-mode acquire path, which is a couple of
 * microseconds in all (tools/bench_lock.c), so they are plain relaxed
 * atomics on the store: no lock, no allocation, nothing ordered against
 * anything else. A snapshot can be a little ragged while others work, and
 * that is the price of not slowing every acquire down for the rare reader.
 * The histogram buckets are fixed (1, 2.5, 5 per decade from 100 us to
 * 100 s) so that figures from many processes add up, and so that exporting
 * them as Prometheus histograms needs no configuration.
 *
 * Events cost nothing unless a callback is installed: every call site tests
 * st->ev_on first. The log line for an event is built here, from the event,
 * so that the typed and the human view can never disagree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Upper bounds in nanoseconds; the last bucket has none. */
static const int64_t bounds_ns[LK_HIST_BUCKETS - 1] = {
	100000,     250000,      500000,      1000000,     2500000,      5000000,    10000000,
	25000000,   50000000,    100000000,   250000000,   500000000,    1000000000, 2500000000,
	5000000000, 10000000000, 25000000000, 50000000000, 100000000000,
};

LK_API uint64_t lk_hist_le_us(unsigned i)
{
	if (i >= LK_HIST_BUCKETS - 1)
		return UINT64_MAX;
	return (uint64_t)(bounds_ns[i] / 1000);
}

void lk__hist_add(struct lk__ahist *h, int64_t ns)
{
	unsigned i = 0;

	if (ns < 0)
		ns = 0;
	while (i < LK_HIST_BUCKETS - 1 && ns > bounds_ns[i])
		i++;
	atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
	if (ns)
		atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

static uint64_t ld(const _Atomic uint64_t *v)
{
	return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

static void hist_copy(struct lk_hist *dst, const struct lk__ahist *src)
{
	dst->count = 0;
	dst->sum_ns = ld(&src->sum_ns);
	for (unsigned i = 0; i < LK_HIST_BUCKETS; i++) {
		dst->buckets[i] = ld(&src->buckets[i]);
		dst->count += dst->buckets[i];
	}
}

LK_API int lk_store_stats(const struct lk_store *st, struct lk_store_stats *ret)
{
	const struct lk__stats *s;
	struct lk_store_stats v;
	size_t n;

	if (!st || !ret || ret->size < offsetof(struct lk_store_stats, acquire_wait))
		return -EINVAL;
	s = &st->stats;
	memset(&v, 0, sizeof(v));
	v.acquire_failures = ld(&s->acquire_failures);
	v.acquires_contended = ld(&s->acquires_contended);
	v.renewals_ok = ld(&s->renewals_ok);
	v.renewals_late = ld(&s->renewals_late);
	v.renewals_failed = ld(&s->renewals_failed);
	v.lost = ld(&s->lost);
	v.claim_races_lost = ld(&s->claim_races_lost);
	v.expiries_observed = ld(&s->expiries_observed);
	v.terms = ld(&s->terms);
	v.demotions = ld(&s->demotions);
	v.resignations = ld(&s->resignations);
	hist_copy(&v.acquire_wait, &s->acquire_wait);
	hist_copy(&v.hold, &s->hold);
	hist_copy(&v.renewal, &s->renewal);
	hist_copy(&v.leadership, &s->leadership);
	hist_copy(&v.election, &s->election);
	v.acquires = v.acquire_wait.count;
	v.releases = v.hold.count;
	n = ret->size < sizeof(v) ? ret->size : sizeof(v);
	v.size = (uint32_t)n;
	memcpy(ret, &v, n);
	return 0;
}

LK_API const char *lk_event_name(enum lk_event_type type)
{
	switch (type) {
	case LK_EV_ACQUIRE_ATTEMPT:
		return "acquire_attempt";
	case LK_EV_ACQUIRED:
		return "acquired";
	case LK_EV_ACQUIRE_FAILED:
		return "acquire_failed";
	case LK_EV_RELEASED:
		return "released";
	case LK_EV_RENEWED:
		return "renewed";
	case LK_EV_RENEW_LATE:
		return "renew_late";
	case LK_EV_RENEW_FAILED:
		return "renew_failed";
	case LK_EV_LOST:
		return "lost";
	case LK_EV_CLAIM_RACE_LOST:
		return "claim_race_lost";
	case LK_EV_ELECTED:
		return "elected";
	case LK_EV_DEMOTED:
		return "demoted";
	case LK_EV_RESIGNED:
		return "resigned";
	case LK_EV_EXPIRY_OBSERVED:
		return "expiry_observed";
	}
	return "unknown";
}

void lk__events_init(struct lk_store *st)
{
	/* store.c copied only the caller's size; the rest is zero */
	if (!st->opts.log_level)
		st->opts.log_level = LK_LOG_INFO;
	st->ev_on = st->opts.on_event || st->opts.on_log;
}

static int level_of(const struct lk_event *ev)
{
	switch (ev->type) {
	case LK_EV_ACQUIRE_ATTEMPT:
	case LK_EV_RENEWED:
	case LK_EV_CLAIM_RACE_LOST:
		return LK_LOG_DEBUG;
	case LK_EV_RENEW_LATE:
	case LK_EV_RENEW_FAILED:
	case LK_EV_DEMOTED:
		return LK_LOG_WARNING;
	case LK_EV_LOST:
		return LK_LOG_ERR;
	case LK_EV_ACQUIRE_FAILED:
		/* busy and timed out are what a try or a timeout asks about */
		return ev->error == -EWOULDBLOCK || ev->error == -ETIMEDOUT ||
		                       ev->error == -ECANCELED
		               ? LK_LOG_INFO
		               : LK_LOG_WARNING;
	default:
		return LK_LOG_INFO;
	}
}

/* "12.3 ms" and the like: three significant figures are plenty for people. */
static void fmt_dur(char *buf, size_t len, int64_t ns)
{
	if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
}

static void log_event(struct lk_store *st, const struct lk_event *ev)
{
	const char *what =
		ev->type == LK_EV_ELECTED || ev->type == LK_EV_DEMOTED || ev->type == LK_EV_RESIGNED
			? "election"
			: "lock";
	char line[512], d[32], tail[160] = "";
	int level = level_of(ev);
	size_t n = 0;

	if (level > st->opts.log_level)
		return;
	fmt_dur(d, sizeof(d), ev->duration_ns);
	switch (ev->type) {
	case LK_EV_ACQUIRED:
	case LK_EV_ACQUIRE_FAILED:
		/* 0: a kernel-mode lock taken at the first try, not timed */
		if (ev->duration_ns)
			n = (size_t)snprintf(tail, sizeof(tail), " after %s", d);
		break;
	case LK_EV_RELEASED:
	case LK_EV_LOST:
	case LK_EV_DEMOTED:
	case LK_EV_RESIGNED:
		n = (size_t)snprintf(tail, sizeof(tail), ", held %s", d);
		break;
	case LK_EV_RENEWED:
	case LK_EV_RENEW_LATE:
	case LK_EV_RENEW_FAILED:
		n = (size_t)snprintf(tail, sizeof(tail), " in %s", d);
		break;
	case LK_EV_ELECTED:
		n = (size_t)snprintf(tail, sizeof(tail), " after campaigning %s", d);
		break;
	case LK_EV_EXPIRY_OBSERVED:
		n = (size_t)snprintf(tail, sizeof(tail), " after watching it %s%s", d,
		                     ev->error == -ESRCH ? " (holder dead on this host)" : "");
		break;
	default:
		break;
	}
	if (ev->error && ev->type != LK_EV_EXPIRY_OBSERVED && n < sizeof(tail))
		snprintf(tail + n, sizeof(tail) - n, ": %s", lk_strerror(ev->error));
	snprintf(line, sizeof(line), "%s %s: %s (%s%s, token %llu)%s", what, ev->name,
	         lk_event_name(ev->type), ev->mode == LK_MODE_LEASE ? "lease" : "kernel",
	         ev->shared ? ", shared" : "", (unsigned long long)ev->token, tail);
	st->opts.on_log(level, line, st->opts.log_userdata);
}

void lk__emit(struct lk_store *st, const struct lk__ev *e)
{
	struct lk_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = e->type;
	ev.seq = atomic_fetch_add_explicit(&st->stats.seq, 1, memory_order_relaxed) + 1;
	ev.name = e->name ? e->name : e->lock ? e->lock->name : "";
	ev.mode = e->name || !e->lock ? e->mode : e->lock->mode;
	ev.shared = e->name || !e->lock ? e->shared : !!(e->lock->flags & LK_LOCK_SHARED);
	ev.token = e->token;
	ev.duration_ns = e->duration_ns;
	ev.error = e->error;
	ev.mono_ns = lk__monotonic_ns();
	ev.wall_ns = lk__realtime_ns();
	ev.lock = e->lock;
	if (st->opts.on_event)
		st->opts.on_event(&ev, st->opts.event_userdata);
	if (st->opts.on_log)
		log_event(st, &ev);
}

void lk__emit_lock(struct lk_lock *lk, enum lk_event_type type, uint64_t token, int64_t duration_ns,
                   int error)
{
	struct lk__ev e = {
		.type = type,
		.token = token,
		.duration_ns = duration_ns,
		.error = error,
		.lock = lk,
	};

	lk__emit(lk->st, &e);
}

void lk__log(struct lk_store *st, int level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!st->opts.on_log || level > st->opts.log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	st->opts.on_log(level, line, st->opts.log_userdata);
}
