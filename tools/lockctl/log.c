// SPDX-License-Identifier: MIT
/*
 * lockctl log: the audit log of a store, merged across the files of every
 * process and host that wrote it, in time order.
 *
 * The files are read through the store's backend (a local directory or an
 * nfs:// export alike) and never trusted: whoever can write the store can
 * write there, so a line is shown only when it parses as an audit record,
 * text is shown with control characters replaced, and anything else (a torn
 * last line, a corrupt line, a file no writer makes) is reported on stderr
 * and skipped. Time order is the writers' wall clocks: lines from hosts
 * whose clocks disagree interleave by those clocks (each writer's own lines
 * keep their order through its sequence numbers when times tie).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "lockctl.h"

const char *const usage_log =
	"Usage: lockctl [-S STORE] log [NAME] [--json] [--since DURATION] [--quiet]\n"
	"\n"
	"Show the audit log: acquire, release, lost, break, elect, resign and demote\n"
	"events of lock NAME (every lock when NAME is left out), from every process\n"
	"and host that uses the store, merged in time order. One line per event:\n"
	"time, host, pid, event, lock, token, owner and details.\n"
	"\n"
	"  --json              print the events' JSON lines as stored\n"
	"  --since DURATION    only events of the last DURATION (10m, 2h, ...)\n"
	"  -q, --quiet         do not report torn, corrupt or foreign entries\n"
	"\n"
	"Lease-mode locks are recorded by default; kernel-mode locks when opened with\n"
	"LK_LOCK_AUDIT or LOCKKIT_AUDIT=1 (lockctl --audit). See lockctl(1).\n";

struct entry {
	struct lk__audit_rec rec;
	char *raw;
	size_t idx;
};

struct logst {
	const char *name;
	int64_t since_ns;
	int json, quiet;
	struct entry *v;
	size_t n, cap;
	unsigned skipped;
	int nomem;
};

/* Well-formed UTF-8 (what --json may pass through untouched). */
static int utf8_ok(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n;

		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = (s[i] & 0xe0) == 0xc0   ? 2
		    : (s[i] & 0xf0) == 0xe0 ? 3
		    : (s[i] & 0xf8) == 0xf0 ? 4
		                            : 0;
		if (!n || i + n > len || (n == 2 && s[i] < 0xc2))
			return 0;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += n;
	}
	return 1;
}

static void warn_item(const struct lk__audit_item *it)
{
	if (it->lineno)
		fprintf(stderr, "lockctl: audit: %s: line %llu: skipped: %s\n", it->file,
		        (unsigned long long)it->lineno, it->why);
	else
		fprintf(stderr, "lockctl: audit: %s: skipped: %s\n", it->file, it->why);
}

static int on_item(const struct lk__audit_item *it, void *userdata)
{
	struct logst *s = userdata;
	struct entry *e;

	if (it->kind != LK_AUDIT_LINE) {
		s->skipped++;
		if (!s->quiet)
			warn_item(it);
		return 0;
	}
	if (s->name && strcmp(it->rec->lock, s->name))
		return 0;
	if (it->rec->time_ns < s->since_ns)
		return 0;
	if (s->json && !utf8_ok((const unsigned char *)it->text, it->len)) {
		struct lk__audit_item w = *it;

		w.why = "not UTF-8";
		s->skipped++;
		if (!s->quiet)
			warn_item(&w);
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct entry *v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			s->nomem = 1;
			return -ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	e = &s->v[s->n];
	e->rec = *it->rec;
	e->idx = s->n;
	e->raw = strndup(it->text, it->len);
	if (!e->raw) {
		s->nomem = 1;
		return -ENOMEM;
	}
	s->n++;
	return 0;
}

static int cmp_entry(const void *x, const void *y)
{
	const struct entry *a = x, *b = y;
	int c;

	if (a->rec.time_ns != b->rec.time_ns)
		return a->rec.time_ns < b->rec.time_ns ? -1 : 1;
	c = strcmp(a->rec.host, b->rec.host);
	if (c)
		return c;
	if (a->rec.pid != b->rec.pid)
		return a->rec.pid < b->rec.pid ? -1 : 1;
	if (a->rec.seq != b->rec.seq)
		return a->rec.seq < b->rec.seq ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Text from the store, shown on a terminal: no control characters. */
static void put_text(const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, stdout);
}

static void print_human(const struct lk__audit_rec *r)
{
	char t[40];

	lk__audit_time(t, sizeof(t), r->time_ns);
	fputs(t, stdout);
	fputc(' ', stdout);
	put_text(r->host[0] ? r->host : "-");
	printf(" %lld ", (long long)r->pid);
	put_text(r->event);
	fputc(' ', stdout);
	put_text(r->lock);
	printf(" token=%llu owner=", (unsigned long long)r->token);
	put_text(r->owner[0] ? r->owner : "-");
	if (r->mode[0]) {
		fputs(" mode=", stdout);
		put_text(r->mode);
	}
	if (r->reason[0]) {
		fputs(" reason=", stdout);
		put_text(r->reason);
	}
	if (r->detail[0]) {
		fputs(" ", stdout);
		put_text(r->detail);
	}
	fputc('\n', stdout);
}

int cmd_log(struct ctx *c, int argc, char **argv)
{
	struct logst s = {0};
	struct lk_store *st = NULL;
	struct lk_err err = {0};
	int rc, r;

	s.since_ns = INT64_MIN;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json")) {
			s.json = 1;
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			s.quiet = 1;
		} else if (!strcmp(a, "--since") || !strncmp(a, "--since=", 8)) {
			const char *v = a[7] == '=' ? a + 8 : NULL;
			uint64_t ms;

			if (!v) {
				if (i + 1 >= argc)
					die_usage("log: --since needs a DURATION");
				v = argv[++i];
			}
			parse_duration_arg("--since", v, &ms);
			s.since_ns =
				lk__realtime_ns() -
				(int64_t)(ms > INT64_MAX / 2000000 ? INT64_MAX / 2 : ms * 1000000);
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_log, stdout);
			return 0;
		} else if (a[0] == '-') {
			die_usage("log: unknown option '%s'", a);
		} else if (!s.name) {
			if (lk_name_valid(a) < 0)
				die_usage("log: invalid lock name '%s'", a);
			s.name = a;
		} else {
			die_usage("log: unexpected argument '%s'", a);
		}
	}
	lockctl_lock_name = s.name;
	rc = open_store(c, 1, &st);
	if (rc)
		return rc;
	if (!st)
		return 0; /* no store: nothing was ever recorded */
	r = lk__audit_scan(st, on_item, &s, &err);
	if (r < 0) {
		if (s.nomem)
			errline("out of memory");
		else
			errline("%s", err.msg[0] ? err.msg : lk_strerror(r));
		/* the audit directory is the store's, not the user's mistake: a
		 * foreign entry there (EINVAL) is an I/O error, as for locks */
		rc = s.nomem                       ? EXIT_INTERNAL
		     : r == -EACCES || r == -EPERM ? EXIT_UNAVAILABLE
		                                   : EXIT_IOERR;
		goto out;
	}
	if (s.n > 1)
		qsort(s.v, s.n, sizeof(*s.v), cmp_entry);
	for (size_t i = 0; i < s.n; i++) {
		if (s.json)
			printf("%s\n", s.v[i].raw);
		else
			print_human(&s.v[i].rec);
	}
	if (fflush(stdout) != 0)
		rc = EXIT_IOERR;
out:
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i].raw);
	free(s.v);
	lk_store_close(st);
	return rc;
}
