// SPDX-License-Identifier: MIT
/*
 * What lockctl shows of the library's own events: -v prints them as lines,
 * --log-json as JSON lines, both on stderr; and the Prometheus textfile that
 * "run" and "elect" keep with --metrics-textfile.
 *
 * Events come from the library's callbacks, some on the heartbeat engine's
 * thread while the main thread may be printing too, so every line is built
 * in a buffer and handed to one write(2): lines from the two threads (and
 * from COMMAND, which shares stderr) never interleave inside a line.
 *
 * The textfile is written by the lockctl process itself, not the guardian:
 * lockctl holds the store handle whose counters it reports, and it is the
 * process that learns of every acquire, renewal and loss. Its counters are
 * those of this one lockctl process (a run of one command), so a scraper
 * sees them start from zero at each run, as Prometheus expects of a
 * restarted target; _total counters and histograms in base units follow
 * the naming conventions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"
#include "obs.h"

/* ------------------------------------------------------------------------
 * -v and --log-json
 */

static void put_line(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static const char *level_word(int level)
{
	if (level <= LK_LOG_ERR)
		return "error: ";
	if (level == LK_LOG_WARNING)
		return "warning: ";
	if (level >= LK_LOG_DEBUG)
		return "debug: ";
	return "";
}

static void on_log(int level, const char *msg, void *userdata)
{
	char line[640];
	int n;

	(void)userdata;
	n = snprintf(line, sizeof(line), "lockctl[%d]: %s%s\n", (int)getpid(), level_word(level),
	             msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (n > 0)
		put_line(line, (size_t)n);
}

/* Appends to a fixed buffer; whatever does not fit is cut. */
struct sbuf {
	char b[1024];
	size_t n;
};

static void sb_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->n >= sizeof(s->b) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(s->b + s->n, sizeof(s->b) - s->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		s->n += (size_t)n < sizeof(s->b) - s->n ? (size_t)n : sizeof(s->b) - s->n - 1;
}

/* Names are [A-Za-z0-9._-], and strerror texts plain ASCII; escape anyway. */
static void sb_json_str(struct sbuf *s, const char *v)
{
	sb_printf(s, "\"");
	for (; *v; v++) {
		unsigned char ch = (unsigned char)*v;

		if (ch == '"' || ch == '\\')
			sb_printf(s, "\\%c", ch);
		else if (ch < 0x20)
			sb_printf(s, "\\u%04x", ch);
		else
			sb_printf(s, "%c", ch);
	}
	sb_printf(s, "\"");
}

static void on_event_json(const struct lk_event *ev, void *userdata)
{
	struct sbuf s = {.n = 0};
	char when[64];

	(void)userdata;
	fmt_rfc3339(when, sizeof(when), ev->wall_ns);
	sb_printf(&s, "{\"time\":\"%s\",\"event\":\"%s\",\"lock\":", when, lk_event_name(ev->type));
	sb_json_str(&s, ev->name);
	sb_printf(&s, ",\"token\":%llu,\"mode\":\"%s\",\"seq\":%llu,\"pid\":%d",
	          (unsigned long long)ev->token, ev->mode == LK_MODE_LEASE ? "lease" : "kernel",
	          (unsigned long long)ev->seq, (int)getpid());
	if (ev->shared)
		sb_printf(&s, ",\"shared\":true");
	if (ev->duration_ns)
		sb_printf(&s, ",\"duration_seconds\":%.6f", (double)ev->duration_ns / 1e9);
	if (ev->error) {
		sb_printf(&s, ",\"errno\":%d,\"error\":", -ev->error);
		sb_json_str(&s, lk_strerror(ev->error));
	}
	sb_printf(&s, "}\n");
	if (s.b[s.n - 1] != '\n') { /* cut: still one line */
		s.b[s.n - 1] = '\n';
	}
	put_line(s.b, s.n);
}

void log_setup(const struct ctx *c, struct lk_store_opts *o)
{
	if (c->log_json) {
		o->on_event = on_event_json;
	} else if (c->verbose) {
		o->on_log = on_log;
		o->log_level = c->verbose > 1 ? LK_LOG_DEBUG : LK_LOG_INFO;
	}
}

/* ------------------------------------------------------------------------
 * --metrics-textfile
 */

#define REFRESH_NS (2 * 1000000000LL)

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const struct run_metrics *m, const char *name, const char *help,
                    uint64_t v)
{
	family(f, name, "counter", help);
	fprintf(f, "%s{lock=\"%s\"} %llu\n", name, m->name, (unsigned long long)v);
}

static void gauge(FILE *f, const struct run_metrics *m, const char *name, const char *help,
                  double v)
{
	family(f, name, "gauge", help);
	fprintf(f, "%s{lock=\"%s\"} %.17g\n", name, m->name, v);
}

static void histogram(FILE *f, const struct run_metrics *m, const char *name, const char *help,
                      const struct lk_hist *h)
{
	uint64_t cum = 0;

	family(f, name, "histogram", help);
	for (unsigned i = 0; i < LK_HIST_BUCKETS; i++) {
		uint64_t le = lk_hist_le_us(i);

		cum += h->buckets[i];
		if (le == UINT64_MAX)
			fprintf(f, "%s_bucket{lock=\"%s\",le=\"+Inf\"} %llu\n", name, m->name,
			        (unsigned long long)cum);
		else
			fprintf(f, "%s_bucket{lock=\"%s\",le=\"%g\"} %llu\n", name, m->name,
			        (double)le / 1e6, (unsigned long long)cum);
	}
	fprintf(f, "%s_sum{lock=\"%s\"} %.9f\n", name, m->name, (double)h->sum_ns / 1e9);
	fprintf(f, "%s_count{lock=\"%s\"} %llu\n", name, m->name, (unsigned long long)h->count);
}

static void fill(FILE *f, const void *ud)
{
	const struct run_metrics *m = ud;
	struct lk_store_stats s = {.size = sizeof(s)};
	struct timespec now;
	int holding = m->lk && lk_lock_check(m->lk) == 0;

	lk_store_stats(m->st, &s);
	clock_gettime(CLOCK_REALTIME, &now);
	gauge(f, m, "lockkit_holding", "1 while this lockctl holds the lock", holding);
	gauge(f, m, "lockkit_token", "fencing token of the current or last hold (0: none)",
	      (double)m->last_token);
	if (m->election)
		gauge(f, m, "lockkit_leading", "1 while this lockctl leads the election",
		      m->leading && holding);
	counter(f, m, "lockkit_acquires_total", "successful acquires", s.acquires);
	counter(f, m, "lockkit_acquire_failures_total",
	        "acquires that failed (busy, timed out, cancelled or an error)",
	        s.acquire_failures);
	counter(f, m, "lockkit_acquires_contended_total",
	        "successful acquires that found the lock held and waited", s.acquires_contended);
	counter(f, m, "lockkit_releases_total", "holds ended by release", s.releases);
	family(f, "lockkit_renewals_total", "counter",
	       "lease renewals by result: ok, late (counted but more than half an interval "
	       "after due) or failed");
	fprintf(f, "lockkit_renewals_total{lock=\"%s\",result=\"ok\"} %llu\n", m->name,
	        (unsigned long long)s.renewals_ok);
	fprintf(f, "lockkit_renewals_total{lock=\"%s\",result=\"late\"} %llu\n", m->name,
	        (unsigned long long)s.renewals_late);
	fprintf(f, "lockkit_renewals_total{lock=\"%s\",result=\"failed\"} %llu\n", m->name,
	        (unsigned long long)s.renewals_failed);
	counter(f, m, "lockkit_leases_lost_total", "leases lost while held", s.lost);
	counter(f, m, "lockkit_claim_races_lost_total", "lease claims another claimant won",
	        s.claim_races_lost);
	counter(f, m, "lockkit_expiries_observed_total",
	        "silent leases of others judged expired before a takeover", s.expiries_observed);
	if (m->election) {
		counter(f, m, "lockkit_leadership_terms_total", "leadership terms begun", s.terms);
		counter(f, m, "lockkit_demotions_total", "terms ended by demotion", s.demotions);
		counter(f, m, "lockkit_resignations_total", "terms ended by resigning",
		        s.resignations);
	}
	histogram(f, m, "lockkit_acquire_wait_seconds", "time spent in successful acquires",
	          &s.acquire_wait);
	histogram(f, m, "lockkit_hold_seconds", "time from acquire to release", &s.hold);
	histogram(f, m, "lockkit_renewal_latency_seconds", "lease renewals from send to completion",
	          &s.renewal);
	if (m->election) {
		histogram(f, m, "lockkit_leadership_seconds", "length of ended terms",
		          &s.leadership);
		histogram(f, m, "lockkit_election_seconds", "campaign start to elected",
		          &s.election);
	}
	family(f, "lockkit_metrics_updated_timestamp_seconds", "gauge",
	       "when lockctl wrote this file");
	fprintf(f, "lockkit_metrics_updated_timestamp_seconds{lock=\"%s\"} %lld.%03ld\n", m->name,
	        (long long)now.tv_sec, now.tv_nsec / 1000000);
}

int run_metrics_write(struct run_metrics *m)
{
	if (!m->path || !m->st)
		return 0;
	if (m->lk && lk_lock_token(m->lk))
		m->last_token = lk_lock_token(m->lk);
	m->next_ns = mono_ns() + REFRESH_NS;
	return textfile_write(m->path, fill, m);
}

int run_metrics_tick(void *ud, int force)
{
	struct run_metrics *m = ud;

	if (!m->path)
		return -1;
	if (!force && mono_ns() < m->next_ns)
		return m->path ? (int)((m->next_ns - mono_ns()) / 1000000) + 1 : -1;
	run_metrics_write(m);
	return (int)(REFRESH_NS / 1000000);
}
