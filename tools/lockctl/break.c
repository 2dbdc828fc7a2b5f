// SPDX-License-Identifier: MIT
/*
 * lockctl break: end a lease by administrative action. The lease protocol
 * has no way to take a lock from a live holder except to claim the next
 * generation, so that is what a break does, in state BROKEN: the holder is
 * fenced by the higher token at once, learns that it lost at its next
 * renewal (whose probe finds the new generation), and everyone else treats
 * BROKEN as held for T*(1+rho) after first seeing it, by when the old holder
 * has stepped down. --now frees the lock at once and leaves the resource's
 * token check as the only protection: it is for holders known to be dead.
 * Kernel-mode locks are refused: the kernel frees them when the holder dies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "internal.h"
#include "lockctl.h"
#include "lrecord.h"

const char *const usage_break =
	"Usage: lockctl [-S STORE] break NAME --force [--reason TEXT] [--now] [--json]\n"
	"\n"
	"End the lease on lock NAME by administrative action. The next generation is\n"
	"claimed in state BROKEN, with a higher fencing token: the holder is fenced by\n"
	"it at once and learns that it lost at its next renewal ('lockctl run' then\n"
	"stops COMMAND and exits 75). Everyone else treats the lock as held for\n"
	"TTL x (1 + rho) after first seeing the break, so the old holder has stepped\n"
	"down before anyone can take over.\n"
	"\n"
	"  --force         required: a break cannot be undone\n"
	"  --reason TEXT   recorded in the BROKEN record (owner field, \"USER: TEXT\")\n"
	"  --now           free the lock at once instead. DANGEROUS: the old holder\n"
	"                  may go on acting until its next renewal, or for good if the\n"
	"                  lock changes hands twice before that; only the resource's\n"
	"                  check of fencing tokens protects it. For holders known dead.\n"
	"  --json          print the result as one JSON object\n"
	"\n"
	"Kernel-mode locks cannot be broken: the kernel frees them when their holder\n"
	"exits, so stop or kill the holder instead.\n"
	"\n"
	"Exit status: 0 broken; 3 nothing to break (free, never used, or already\n"
	"broken); 64 usage error, also without --force; 69 a kernel-mode lock, or\n"
	"the store is unavailable; 74 I/O error; 70 internal error.\n";

/* Nothing to break: the same status 'lockctl leader' gives for no leader. */
#define EXIT_NOTHING 3

static const char *state_word(const struct lk__break_res *b)
{
	if (!b->old_valid)
		return "unreadable";
	switch (b->old_state) {
	case LK_LSTATE_HELD:
		return "held";
	case LK_LSTATE_BROKEN:
		return "broken";
	case LK_LSTATE_RELEASED:
		return "released";
	default:
		return "aborted";
	}
}

/* "USER: REASON": who broke it and why, in the record's owner field. */
static void make_label(char *buf, size_t len, const char *reason)
{
	struct passwd *pw = getpwuid(geteuid());
	char user[64];

	if (pw && pw->pw_name)
		snprintf(user, sizeof(user), "%s", pw->pw_name);
	else
		snprintf(user, sizeof(user), "uid %u", (unsigned)geteuid());
	snprintf(buf, len, "%s: %s", user, reason && *reason ? reason : "lockctl break");
}

static void print_json(const char *name, const struct lk__break_res *b)
{
	char since[64];

	fputs("{\"name\":", stdout);
	json_str(stdout, name);
	printf(",\"broken\":true,\"old_token\":%llu,\"old_state\":\"%s\",",
	       (unsigned long long)b->old_token, state_word(b));
	if (b->old_valid) {
		fputs("\"holder\":{\"owner\":", stdout);
		json_str(stdout, b->old.owner);
		fputs(",\"host\":", stdout);
		json_str(stdout, b->old.host);
		fmt_rfc3339(since, sizeof(since), b->old.since_ns);
		printf(",\"pid\":%d},\"since\":\"%s\"", (int)b->old.pid, since);
	} else {
		fputs("\"holder\":null,\"since\":null", stdout);
	}
	printf(",\"new_token\":%llu,\"now\":%s,\"free_in_ms\":%llu}\n",
	       (unsigned long long)b->new_token, b->freed ? "true" : "false",
	       (unsigned long long)b->wait_ms);
}

static void print_text(const char *name, const struct lk__break_res *b)
{
	char since[64];

	printf("%s: broken: token %llu ", name, (unsigned long long)b->old_token);
	if (b->old_valid) {
		fmt_rfc3339(since, sizeof(since), b->old.since_ns);
		printf("(%s by %s, pid %d on %s, since %s)", state_word(b),
		       b->old.owner[0] ? b->old.owner : "-", (int)b->old.pid, b->old.host, since);
	} else {
		printf("(record unreadable: an unknown claimant)");
	}
	printf(" ended; new token %llu", (unsigned long long)b->new_token);
	if (b->freed)
		printf(", released at once (--now): the lock is free; the old holder may still "
		       "act until its next renewal, only fencing tokens stop it\n");
	else
		printf(" (BROKEN): the old holder loses at its next renewal; others may take "
		       "over %llu ms after they first see it\n",
		       (unsigned long long)b->wait_ms);
}

int cmd_break(struct ctx *c, int argc, char **argv)
{
	struct lk__break_res b;
	struct lk_err err = {0};
	struct lk_store *st = NULL;
	const char *name = NULL, *reason = NULL;
	char label[512]; /* cut to LK_OWNER_MAX at a character boundary by the library */
	int force = 0, now = 0, json = 0, r, rc;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--force"))
			force = 1;
		else if (!strcmp(a, "--now"))
			now = 1;
		else if (!strcmp(a, "--json"))
			json = 1;
		else if (!strcmp(a, "--reason")) {
			if (i + 1 >= argc)
				die_usage("break: --reason needs TEXT");
			reason = argv[++i];
		} else if (!strncmp(a, "--reason=", 9))
			reason = a + 9;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_break, stdout);
			return 0;
		} else if (a[0] == '-' && a[1])
			die_usage("break: unknown option '%s'", a);
		else if (!name)
			name = a;
		else
			die_usage("break: unexpected argument '%s'", a);
	}
	if (!name)
		die_usage("break: missing NAME (see 'lockctl break --help')");
	if (lk_name_valid(name) < 0)
		die_usage("invalid lock name '%s': use 1-255 of [A-Za-z0-9._-], not starting with "
		          "'.'",
		          name);
	lockctl_lock_name = name;
	if (!force)
		die_usage("break: refusing without --force. Breaking ends the holder's lease: it "
		          "is fenced at once and loses at its next renewal, and nothing undoes "
		          "that. If that is what you want, add --force");

	rc = open_store(c, 0, &st);
	if (rc)
		return rc;
	make_label(label, sizeof(label), reason);
	r = lk__lock_break(st, name, label, now ? LK__BREAK_NOW : 0, &b, &err);
	if (r == 0) {
		char detail[160];

		/* the store's audit log, when it keeps one; best effort */
		snprintf(detail, sizeof(detail), "ended token %llu (%s)%s",
		         (unsigned long long)b.old_token, b.old_valid ? b.old.owner : "unreadable",
		         b.freed ? "; freed at once (--now)" : "");
		lk__audit_note(st, "break", name, LK_MODE_LEASE, b.new_token, label, detail);
	}
	lk_store_close(st);
	if (r == -ENOLCK || r == -EALREADY) {
		if (json) {
			fputs("{\"name\":", stdout);
			json_str(stdout, name);
			printf(",\"broken\":false,\"reason\":\"%s\"}\n", r == -EALREADY
			                                                         ? "already broken"
			                                                 : b.exists ? "free"
			                                                            : "never used");
		}
		errline("%s: %s", name, err.msg);
		return EXIT_NOTHING;
	}
	if (r == -EOPNOTSUPP) {
		errline("%s: %s", name, err.msg);
		return EXIT_UNAVAILABLE;
	}
	if (r < 0) {
		errline("%s: %s", name, err.msg[0] ? err.msg : lk_strerror(r));
		return exit_for_lock_error(r);
	}
	if (json)
		print_json(name, &b);
	else
		print_text(name, &b);
	return 0;
}
