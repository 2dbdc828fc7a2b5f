// SPDX-License-Identifier: MIT
/*
 * lockctl status / ls: report locks without taking them and without creating
 * anything. Whether a lock is held comes from the kernel (or, for leases, the
 * protocol's own rules), never from the record alone, so a stale or damaged
 * record can never make a held lock look free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lockctl.h"

const char *const usage_status =
	"Usage: lockctl [-S STORE] status NAME [--json]\n"
	"\n"
	"Show whether lock NAME is held, in which mode, with which fencing token,\n"
	"by whom and since when. A name never used is reported free.\n"
	"\n"
	"  --json   one JSON object: name, held, shared, mode, token, holder\n"
	"           {owner, host, pid} or null, since (RFC 3339) or null, exists,\n"
	"           state (free, held, released, expired, broken); for leases also\n"
	"           ttl_ms and renewed_ago_ms (by the wall clocks: advisory)\n"
	"\n"
	"A lease's holder cannot be proven dead from one look: 'expired' means its\n"
	"process is gone (same host) or its last renewal is older than 1.1 x its TTL by\n"
	"the wall clocks; such a lease is still reported held. This host's\n"
	"heartbeat engine: %s.\n";

const char *const usage_ls =
	"Usage: lockctl [-S STORE] ls [--json]\n"
	"\n"
	"List every lock in the store, one line each (or a JSON array of the\n"
	"objects 'status --json' prints), in name order.\n";

static const char *mode_name(enum lk_mode m)
{
	return m == LK_MODE_LEASE ? "lease" : "kernel";
}

/* One word for the state: free, held, released, expired (advisory), broken. */
static const char *state_name(const struct lk_status *s)
{
	if (s->broken)
		return "broken";
	if (s->held && s->expired)
		return "expired";
	if (s->held)
		return "held";
	if (s->released)
		return "released";
	return "free";
}

static void print_json(FILE *f, const char *name, const struct lk_status *s)
{
	char since[64];
	/* an unreadable lease record has a token but no known holder */
	int has_holder = s->held && s->token && (s->mode == LK_MODE_KERNEL || s->ttl_ms);

	fputs("{\"name\":", f);
	json_str(f, name);
	fprintf(f, ",\"held\":%s,\"shared\":%s,\"mode\":\"%s\",\"token\":%llu,",
		s->held ? "true" : "false", s->shared ? "true" : "false", mode_name(s->mode),
		(unsigned long long)s->token);
	if (has_holder) {
		fputs("\"holder\":{\"owner\":", f);
		json_str(f, s->holder.owner);
		fputs(",\"host\":", f);
		json_str(f, s->holder.host);
		fmt_rfc3339(since, sizeof(since), s->holder.since_ns);
		fprintf(f, ",\"pid\":%d},\"since\":\"%s\"", (int)s->holder.pid, since);
	} else {
		fputs("\"holder\":null,\"since\":null", f);
	}
	fprintf(f, ",\"exists\":%s,\"state\":\"%s\"", s->exists ? "true" : "false", state_name(s));
	if (s->mode == LK_MODE_LEASE)
		fprintf(f, ",\"ttl_ms\":%llu,\"renewed_ago_ms\":%lld,\"engine\":\"%s\"",
			(unsigned long long)s->ttl_ms, (long long)s->renew_age_ms, lk_engine_default());
	fputc('}', f);
}

static void print_text(FILE *f, const char *name, const struct lk_status *s)
{
	char since[64];

	if (!s->held) {
		if (!s->exists)
			fprintf(f, "%s: free (never used)\n", name);
		else if (s->token)
			fprintf(f, "%s: free%s (%s mode, last token %llu)\n", name,
				s->released ? ", released" : "", mode_name(s->mode),
				(unsigned long long)s->token);
		else
			fprintf(f, "%s: free (%s mode)\n", name, mode_name(s->mode));
		return;
	}
	fprintf(f, "%s: %s%s (%s mode), token %llu", name, s->broken ? "broken" : "held",
		s->shared ? " shared" : "", mode_name(s->mode), (unsigned long long)s->token);
	if (s->mode == LK_MODE_LEASE && s->ttl_ms)
		fprintf(f, ", ttl %llums, renewed %lldms ago%s", (unsigned long long)s->ttl_ms,
			(long long)s->renew_age_ms,
			s->expired ? " (expired: holder dead or silent longer than its TTL)" : "");
	if (s->mode == LK_MODE_LEASE && !s->ttl_ms)
		fprintf(f, ", newest record unreadable (held by an unknown claimant)");
	if (s->token && s->ttl_ms + (s->mode == LK_MODE_KERNEL)) {
		fmt_rfc3339(since, sizeof(since), s->holder.since_ns);
		fprintf(f, ", %sowner %s, pid %d on %s, since %s", s->shared ? "latest " : "",
			s->holder.owner[0] ? s->holder.owner : "-", (int)s->holder.pid,
			s->holder.host, since);
	}
	fputc('\n', f);
}

static int get_status(struct lk_store *st, const char *name, struct lk_status *s)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	s->mode = LK_MODE_KERNEL;
	if (!st)
		return 0; /* no store yet: nothing was ever locked */
	r = lk_lock_status(st, name, s);
	if (r < 0)
		return r;
	if (s->mode == LK_MODE_AUTO)
		s->mode = LK_MODE_KERNEL;
	return 0;
}

int cmd_status(struct ctx *c, int argc, char **argv)
{
	struct lk_store *st = NULL;
	struct lk_status s;
	const char *name = NULL;
	int json = 0, r, rc;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf(usage_status, lk_engine_default());
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1])
			die_usage("status: unknown option '%s'", argv[i]);
		else if (!name)
			name = argv[i];
		else
			die_usage("status: unexpected argument '%s'", argv[i]);
	}
	if (!name)
		die_usage("status: missing NAME");
	lockctl_lock_name = lk_name_valid(name) == 0 ? name : NULL;
	if (lk_name_valid(name) < 0)
		die_usage("invalid lock name '%s': use 1-255 of [A-Za-z0-9._-], not starting with '.'",
			  name);
	rc = open_store(c, 1, &st);
	if (rc)
		return rc;
	r = get_status(st, name, &s);
	if (r < 0) {
		errline("%s: %s", name, lk_store_errmsg(st));
		lk_store_close(st);
		return exit_for_lock_error(r);
	}
	if (json) {
		print_json(stdout, name, &s);
		fputc('\n', stdout);
	} else {
		print_text(stdout, name, &s);
	}
	lk_store_close(st);
	return 0;
}

struct ls_state {
	struct lk_store *st;
	int json;
	int count;
	int failed;
};

static int ls_one(const char *name, void *userdata)
{
	struct ls_state *ls = userdata;
	struct lk_status s;
	int r = get_status(ls->st, name, &s);

	if (r < 0) {
		errline("%s: %s", name, lk_store_errmsg(ls->st));
		if (!ls->failed)
			ls->failed = exit_for_lock_error(r);
		return 0;
	}
	if (ls->json) {
		fputs(ls->count ? ",\n" : "\n", stdout);
		print_json(stdout, name, &s);
	} else {
		print_text(stdout, name, &s);
	}
	ls->count++;
	return 0;
}

int cmd_ls(struct ctx *c, int argc, char **argv)
{
	struct ls_state ls = { 0 };
	int rc, r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			ls.json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_ls, stdout);
			return 0;
		} else
			die_usage("ls: unexpected argument '%s'", argv[i]);
	}
	rc = open_store(c, 1, &ls.st);
	if (rc)
		return rc;
	if (ls.json)
		fputc('[', stdout);
	if (ls.st) {
		r = lk_store_list(ls.st, ls_one, &ls);
		if (r < 0) {
			errline("%s", lk_store_errmsg(ls.st));
			ls.failed = exit_for_store_error(r);
		}
	}
	if (ls.json)
		fputs(ls.count ? "\n]\n" : "]\n", stdout);
	lk_store_close(ls.st);
	return ls.failed;
}
