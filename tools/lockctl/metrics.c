// SPDX-License-Identifier: MIT
/*
 * lockctl metrics: the store's state in the Prometheus text exposition
 * format, for a scrape through node_exporter's textfile collector (or any
 * tool that reads the format). One observation of every lock: held, token,
 * mode, state, TTL and the age of the last renewal seen for leases, and the
 * holder as an _info series.
 *
 * Why a file and not an endpoint: lockkit has no daemon, and the textfile
 * collector is the usual way for short-lived and cron-driven programs to
 * expose metrics. The file is written to a temporary name in the same
 * directory and renamed over the target, so a scrape never reads half of
 * one; the collector ignores names that do not end in .prom, which the
 * temporary name does not.
 *
 * Names follow the Prometheus conventions: a lockkit_ prefix, base units
 * (seconds), a stateset for the state, _info for the holder. Tokens are
 * exported as gauges; a float64 holds every token below 2^53 exactly,
 * which wall-clock-seeded tokens (twice the microseconds since 1970) stay
 * under until the 2040s; beyond that the value is rounded, so the JSON of
 * `lockctl status` remains the exact source for fencing decisions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "lockctl.h"

const char *const usage_metrics =
	"Usage: lockctl [-S STORE] metrics [--textfile PATH]\n"
	"\n"
	"Print the state of every lock in the store in the Prometheus text format:\n"
	"lockkit_lock_held, lockkit_lock_token, lockkit_lock_state (one series per\n"
	"state), lockkit_lock_ttl_seconds and lockkit_lock_renewal_age_seconds for\n"
	"leases, lockkit_lock_since_timestamp_seconds and lockkit_lock_holder_info.\n"
	"\n"
	"  --textfile PATH   write to PATH atomically (temporary file + rename) instead\n"
	"                    of standard output, for node_exporter's textfile collector\n"
	"                    (PATH should end in .prom)\n"
	"\n"
	"Exit status: 0; 69 store unavailable; 74 a lock could not be read or PATH\n"
	"could not be written (the others are still reported); 64 usage error.\n";

#define MAX_LOCKS_MEM (64u << 20)

struct row {
	char name[LK_NAME_MAX + 1];
	struct lk_status s;
	int ok;
};

struct scan {
	struct lk_store *st;
	struct row *rows;
	size_t n, cap;
	int failed;
};

static int add_row(const char *name, void *userdata)
{
	struct scan *sc = userdata;
	struct row *r;

	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? 2 * sc->cap : 64;
		struct row *p;

		if (cap * sizeof(*p) > MAX_LOCKS_MEM)
			return -ENOMEM;
		p = realloc(sc->rows, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		sc->rows = p;
		sc->cap = cap;
	}
	r = &sc->rows[sc->n++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->s.size = sizeof(r->s);
	if (lk_lock_status(sc->st, name, &r->s) < 0) {
		errline("%s: %s", name, lk_store_errmsg(sc->st));
		sc->failed = EXIT_IOERR;
	} else {
		r->ok = 1;
	}
	return 0;
}

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static const char *mode_of(const struct lk_status *s)
{
	return s->mode == LK_MODE_LEASE ? "lease" : "kernel";
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void series(FILE *f, const char *metric, const struct row *r)
{
	fprintf(f, "%s{lock=", metric);
	label(f, r->name);
	fputc('}', f);
}

static int has_holder(const struct lk_status *s)
{
	return s->held && s->token && (s->mode == LK_MODE_KERNEL || s->ttl_ms);
}

static void expose(FILE *f, const struct scan *sc)
{
	static const char *const states[] = { "free", "held", "released", "expired", "broken" };
	size_t i;
	int unreadable = 0;

	for (i = 0; i < sc->n; i++)
		unreadable += !sc->rows[i].ok;
	family(f, "lockkit_store_locks", "gauge", "Lock entries in the store.");
	fprintf(f, "lockkit_store_locks %zu\n", sc->n);
	family(f, "lockkit_store_unreadable_locks", "gauge",
	       "Lock entries whose state could not be read (damaged, foreign or being written).");
	fprintf(f, "lockkit_store_unreadable_locks %d\n", unreadable);

	family(f, "lockkit_lock_held", "gauge", "1 when the lock is held, 0 when it is free.");
	for (i = 0; i < sc->n; i++) {
		const struct row *r = &sc->rows[i];

		if (!r->ok)
			continue;
		fprintf(f, "lockkit_lock_held{lock=");
		label(f, r->name);
		fprintf(f, ",mode=\"%s\",shared=\"%s\"} %d\n", mode_of(&r->s),
		        r->s.shared ? "true" : "false", r->s.held ? 1 : 0);
	}
	family(f, "lockkit_lock_token", "gauge",
	       "Fencing token of the current hold, or of the last one when free.");
	for (i = 0; i < sc->n; i++)
		if (sc->rows[i].ok && sc->rows[i].s.token) {
			series(f, "lockkit_lock_token", &sc->rows[i]);
			fprintf(f, " %llu\n", (unsigned long long)sc->rows[i].s.token);
		}
	family(f, "lockkit_lock_state", "gauge",
	       "State of the lock: 1 for the state it is in, 0 for the others.");
	for (i = 0; i < sc->n; i++) {
		const struct row *r = &sc->rows[i];
		const char *cur;

		if (!r->ok)
			continue;
		cur = r->s.broken              ? "broken"
		      : r->s.held && r->s.expired ? "expired"
		      : r->s.held               ? "held"
		      : r->s.released           ? "released"
		                                : "free";
		for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
			fprintf(f, "lockkit_lock_state{lock=");
			label(f, r->name);
			fprintf(f, ",state=\"%s\"} %d\n", states[k], !strcmp(states[k], cur));
		}
	}
	family(f, "lockkit_lock_ttl_seconds", "gauge", "TTL of the lease's current holder.");
	for (i = 0; i < sc->n; i++)
		if (sc->rows[i].ok && sc->rows[i].s.mode == LK_MODE_LEASE && sc->rows[i].s.ttl_ms) {
			series(f, "lockkit_lock_ttl_seconds", &sc->rows[i]);
			fprintf(f, " %.3f\n", sc->rows[i].s.ttl_ms / 1000.0);
		}
	family(f, "lockkit_lock_renewal_age_seconds", "gauge",
	       "Seconds since the last renewal of the lease seen in the store, by the wall "
	       "clocks of holder and observer (advisory).");
	for (i = 0; i < sc->n; i++)
		if (sc->rows[i].ok && sc->rows[i].s.mode == LK_MODE_LEASE && sc->rows[i].s.ttl_ms) {
			series(f, "lockkit_lock_renewal_age_seconds", &sc->rows[i]);
			fprintf(f, " %.3f\n", sc->rows[i].s.renew_age_ms / 1000.0);
		}
	family(f, "lockkit_lock_since_timestamp_seconds", "gauge",
	       "When the current holder acquired the lock, as Unix time.");
	for (i = 0; i < sc->n; i++)
		if (sc->rows[i].ok && has_holder(&sc->rows[i].s)) {
			series(f, "lockkit_lock_since_timestamp_seconds", &sc->rows[i]);
			fprintf(f, " %.3f\n", sc->rows[i].s.holder.since_ns / 1e9);
		}
	family(f, "lockkit_lock_holder_info", "gauge",
	       "The current holder of a held lock: owner label, host and pid.");
	for (i = 0; i < sc->n; i++) {
		const struct row *r = &sc->rows[i];

		if (!r->ok || !has_holder(&r->s))
			continue;
		fprintf(f, "lockkit_lock_holder_info{lock=");
		label(f, r->name);
		fputs(",owner=", f);
		label(f, r->s.holder.owner);
		fputs(",host=", f);
		label(f, r->s.holder.host);
		fprintf(f, ",pid=\"%d\"} 1\n", (int)r->s.holder.pid);
	}
}

/*
 * Write what fill prints to a temporary file beside path, sync it, then
 * rename it over path: a reader sees the old file or the new one, never
 * half of one, even across a crash. Shared with "run" and "elect"
 * --metrics-textfile. 0, or an exit status after an error line.
 */
int textfile_write(const char *path, void (*fill)(FILE *f, const void *ud), const void *ud)
{
	char tmp[PATH_MAX];
	FILE *f;
	int fd, bad;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		errline("metrics: %s: path too long", path);
		return EXIT_USAGE;
	}
	/* a leftover of a writer killed between create and rename */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		errline("metrics: cannot create %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_IOERR;
	}
	fill(f, ud);
	bad = fflush(f) != 0 || fsync(fd) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0) {
		errline("metrics: cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return EXIT_IOERR;
	}
	return 0;
}

static void expose_scan(FILE *f, const void *ud)
{
	expose(f, ud);
}

int cmd_metrics(struct ctx *c, int argc, char **argv)
{
	struct scan sc = { 0 };
	const char *textfile = NULL;
	int rc, r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--textfile")) {
			if (i + 1 >= argc || !argv[i + 1][0])
				die_usage("metrics: --textfile needs a PATH");
			textfile = argv[++i];
		} else if (!strncmp(argv[i], "--textfile=", 11) && argv[i][11]) {
			textfile = argv[i] + 11;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_metrics, stdout);
			return 0;
		} else {
			die_usage("metrics: unexpected argument '%s'", argv[i]);
		}
	}
	rc = open_store(c, 1, &sc.st);
	if (rc)
		return rc;
	if (sc.st) {
		r = lk_store_list(sc.st, add_row, &sc);
		if (r < 0) {
			errline("%s", r == -ENOMEM ? "metrics: too many locks" : lk_store_errmsg(sc.st));
			free(sc.rows);
			lk_store_close(sc.st);
			return r == -ENOMEM ? EXIT_INTERNAL : exit_for_store_error(r);
		}
	}
	if (textfile) {
		rc = textfile_write(textfile, expose_scan, &sc);
	} else {
		expose(stdout, &sc);
		rc = fflush(stdout) ? EXIT_IOERR : 0;
	}
	free(sc.rows);
	lk_store_close(sc.st);
	return rc ? rc : sc.failed;
}
