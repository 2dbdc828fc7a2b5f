// SPDX-License-Identifier: MIT
/*
 * lockctl prune: remove lock entries that nobody holds. Deleting a lock in
 * use is how two processes end up holding "the same" lock (the unlink race,
 * docs/protocol.md sections 1 and 11), so nothing here deletes on the
 * strength of a look alone: a kernel-mode file is removed under its own
 * lock, marked so that waiters on it open the name again; a lease directory
 * only after a tombstone generation was claimed above a free one, so that
 * no one can claim it meanwhile without seeing that. What cannot be proven
 * free is kept, and the reason printed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "lockctl.h"

const char *const usage_prune =
	"Usage: lockctl [-S STORE] prune [--older-than DURATION] [--no-wait] [--json]\n"
	"\n"
	"Remove the lock entries of the store that nobody holds, and say for each\n"
	"entry whether it was removed or kept, and why.\n"
	"\n"
	"Kernel-mode locks are removed under their own lock (taken without waiting:\n"
	"a held lock is kept); processes waiting for one, or holding a handle to it,\n"
	"find out at their next acquisition and use the name afresh. Lease-mode locks\n"
	"are removed when their newest generation is released, or its holder is\n"
	"dead (same host) or silent for TTL x (1 + rho); a tombstone generation is\n"
	"claimed first, so that a concurrent acquisition either sees the lock or\n"
	"makes a new one. Entries holding files lockkit did not make are kept.\n"
	"\n"
	"  --older-than D   only entries whose last activity (acquisition, renewal or\n"
	"                   release) is at least D ago (by the wall clocks)\n"
	"  --no-wait        keep held leases without watching them; by default a\n"
	"                   lease that looks abandoned by the wall clocks is watched\n"
	"                   for TTL x (1 + rho), as a waiter would, before removal\n"
	"  --json           one JSON object per entry: name, mode, removed, token,\n"
	"                   last_active (RFC 3339 or null), reason\n"
	"\n"
	"Exit status: 0, also when entries were kept; 69 store unavailable; 74 an\n"
	"entry could not be examined or removed (the others still are).\n";

static void report(int json, const char *name, const struct lk__prune_res *p, const char *err)
{
	const char *mode = p->mode == LK_MODE_LEASE ? "lease" : "kernel";
	char when[64];

	if (p->last_ns > 0)
		fmt_rfc3339(when, sizeof(when), p->last_ns);
	if (json) {
		fputs("{\"name\":", stdout);
		json_str(stdout, name);
		printf(",\"mode\":\"%s\",\"removed\":%s,\"token\":%llu,\"last_active\":", mode,
		       p->removed ? "true" : "false", (unsigned long long)p->token);
		if (p->last_ns > 0)
			printf("\"%s\"", when);
		else
			fputs("null", stdout);
		fputs(",\"reason\":", stdout);
		json_str(stdout, err ? err : p->removed ? "free" : p->why);
		fputs("}\n", stdout);
		return;
	}
	if (err)
		printf("kept %s (%s mode): error: %s\n", name, mode, err);
	else if (p->removed)
		printf("removed %s (%s mode, last token %llu%s%s)\n", name, mode,
		       (unsigned long long)p->token, p->last_ns > 0 ? ", last active " : "",
		       p->last_ns > 0 ? when : "");
	else
		printf("kept %s (%s mode): %s\n", name, mode, p->why);
}

int cmd_prune(struct ctx *c, int argc, char **argv)
{
	struct lk__names ns = {0};
	struct lk_store *st = NULL;
	struct passwd *pw;
	char label[LK_OWNER_MAX + 1];
	int64_t older = -1;
	unsigned flags = LK__PRUNE_WAIT;
	int json = 0, failed = 0, removed = 0, kept = 0, r, rc;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		uint64_t ms;

		if (!strcmp(a, "--older-than")) {
			if (i + 1 >= argc)
				die_usage("prune: --older-than needs a DURATION");
			parse_duration_arg(a, argv[++i], &ms);
			older = (int64_t)ms;
		} else if (!strncmp(a, "--older-than=", 13)) {
			parse_duration_arg("--older-than", a + 13, &ms);
			older = (int64_t)ms;
		} else if (!strcmp(a, "--no-wait")) {
			flags &= ~LK__PRUNE_WAIT;
		} else if (!strcmp(a, "--json")) {
			json = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_prune, stdout);
			return 0;
		} else {
			die_usage("prune: unexpected argument '%s'", a);
		}
	}
	rc = open_store(c, 0, &st);
	if (rc)
		return rc;
	pw = getpwuid(geteuid());
	snprintf(label, sizeof(label), "%s: lockctl prune", pw && pw->pw_name ? pw->pw_name : "?");
	/* the whole list first: entries go away under the listing otherwise */
	r = lk_store_list(st, lk__names_add, &ns);
	if (r < 0) {
		errline("%s", lk_store_errmsg(st));
		rc = r == -ENOMEM ? EXIT_INTERNAL : exit_for_store_error(r);
		goto out;
	}
	for (size_t i = 0; i < ns.n; i++) {
		struct lk__prune_res p;
		struct lk_err err = {0};

		r = lk__lock_prune(st, ns.v[i], label, older, flags, &p, &err);
		if (r < 0) {
			report(json, ns.v[i], &p, err.msg[0] ? err.msg : lk_strerror(r));
			errline("%s: %s", ns.v[i], err.msg[0] ? err.msg : lk_strerror(r));
			if (!failed)
				failed = exit_for_lock_error(r);
			kept++;
			continue;
		}
		report(json, ns.v[i], &p, NULL);
		if (p.removed)
			removed++;
		else
			kept++;
	}
	if (!json)
		printf("prune: %d removed, %d kept\n", removed, kept);
	rc = failed;
out:
	lk__names_free(&ns);
	lk_store_close(st);
	return rc;
}
