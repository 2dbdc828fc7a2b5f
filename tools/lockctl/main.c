// SPDX-License-Identifier: MIT
/*
 * lockctl: the command-line face of lockkit. This file picks the store and
 * dispatches to a command; each command lives in its own file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lockctl.h"

static const char usage_main[] =
	"Usage: lockctl [-S STORE] [-v] [--log-json] COMMAND [ARGS...]\n"
	"\n"
	"Locks with fencing tokens between processes, on one host or on shared storage.\n"
	"\n"
	"Commands:\n"
	"  run NAME [OPTIONS] [--] COMMAND [ARG...]   run COMMAND while holding lock NAME\n"
	"  status NAME [--json]                        show whether NAME is held, and by whom\n"
	"  ls [--json]                                 list every lock in the store\n"
	"  doctor [--json]                             check the store and this machine\n"
	"  metrics [--textfile PATH]                   the store's state for Prometheus\n"
	"  elect NAME [OPTIONS] [--] COMMAND [ARG...]  lead election NAME, run COMMAND while leading\n"
	"  leader NAME [--json]                        show the leader of election NAME\n"
	"  watch NAME [--json] [--count N]             print election NAME's events as they happen\n"
	"  log [NAME] [--json] [--since DURATION]      the audit log, merged across hosts\n"
	"  break NAME --force [--reason T] [--now]     end a lease by administrative action\n"
	"  prune [--older-than DURATION]               remove lock entries nobody holds\n"
	"\n"
	"Options:\n"
	"  -S, --store STORE   the store: a directory or file:///dir URL. Default:\n"
	"                      $LOCKCTL_STORE, else /run/lockkit for root,\n"
	"                      else /tmp/lockkit-$UID\n"
	"      --audit         record kernel-mode locks in the audit log too\n"
	"                      (sets LOCKKIT_AUDIT=1, which COMMAND inherits)\n"
	"      --no-audit      record nothing in the audit log (LOCKKIT_AUDIT=0)\n"
	"  -v, --verbose       print what the library does (acquired, renewed late,\n"
	"                      lost...) as lines on stderr; -vv adds debug lines\n"
	"      --log-json      print the same events as JSON lines on stderr\n"
	"  -h, --help          this help; 'lockctl COMMAND --help' for a command\n"
	"  -V, --version       print the version\n"
	"\n"
	"Exit status: see lockctl(1); 64 usage error, 69 store unavailable,\n"
	"74 I/O error, 70 internal error.\n";

static char default_store[64];

static const char *pick_store(int *is_default)
{
	const char *s = getenv("LOCKCTL_STORE");

	*is_default = 0;
	if (s && *s)
		return s;
	*is_default = 1;
	if (geteuid() == 0)
		return "/run/lockkit";
	snprintf(default_store, sizeof(default_store), "/tmp/lockkit-%u", (unsigned)getuid());
	return default_store;
}

int main(int argc, char **argv)
{
	struct ctx c = { 0 };
	const char *store = NULL;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-S") || !strcmp(a, "--store")) {
			if (i + 1 >= argc)
				die_usage("%s needs a STORE argument", a);
			store = argv[++i];
		} else if (!strncmp(a, "--store=", 8)) {
			store = a + 8;
		} else if (!strncmp(a, "-S", 2) && a[2]) {
			store = a + 2;
		} else if (!strcmp(a, "--audit") || !strcmp(a, "--no-audit")) {
			/* the library reads it when a lock is opened */
			setenv("LOCKKIT_AUDIT", a[2] == 'a' ? "1" : "0", 1);
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			c.verbose++;
		} else if (!strcmp(a, "-vv")) {
			c.verbose += 2;
		} else if (!strcmp(a, "--log-json")) {
			c.log_json = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_main, stdout);
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("lockctl %s (liblockkit %s)\n", LK_VERSION_STRING, lk_version());
			return 0;
		} else if (a[0] == '-') {
			die_usage("unknown option '%s'", a);
		} else {
			break;
		}
	}
	if (i >= argc) {
		fputs(usage_main, stderr);
		return EXIT_USAGE;
	}
	if (store) {
		if (!*store)
			die_usage("empty STORE");
		c.store = store;
	} else {
		c.store = pick_store(&c.store_is_default);
	}

	const char *cmd = argv[i];
	argc -= i + 1;
	argv += i + 1;
	if (!strcmp(cmd, "run"))
		return cmd_run(&c, argc, argv);
	if (!strcmp(cmd, "status"))
		return cmd_status(&c, argc, argv);
	if (!strcmp(cmd, "ls") || !strcmp(cmd, "list"))
		return cmd_ls(&c, argc, argv);
	if (!strcmp(cmd, "doctor"))
		return cmd_doctor(&c, argc, argv);
	if (!strcmp(cmd, "metrics"))
		return cmd_metrics(&c, argc, argv);
	if (!strcmp(cmd, "elect"))
		return cmd_elect(&c, argc, argv);
	if (!strcmp(cmd, "leader"))
		return cmd_leader(&c, argc, argv);
	if (!strcmp(cmd, "watch"))
		return cmd_watch(&c, argc, argv);
	if (!strcmp(cmd, "log"))
		return cmd_log(&c, argc, argv);
	if (!strcmp(cmd, "break"))
		return cmd_break(&c, argc, argv);
	if (!strcmp(cmd, "prune"))
		return cmd_prune(&c, argc, argv);
	if (!strcmp(cmd, "help")) {
		if (argc > 0 && !strcmp(argv[0], "run"))
			fputs(usage_run, stdout);
		else if (argc > 0 && !strcmp(argv[0], "status"))
			printf(usage_status, lk_engine_default());
		else if (argc > 0 && !strcmp(argv[0], "ls"))
			fputs(usage_ls, stdout);
		else if (argc > 0 && !strcmp(argv[0], "doctor"))
			fputs(usage_doctor, stdout);
		else if (argc > 0 && !strcmp(argv[0], "metrics"))
			fputs(usage_metrics, stdout);
		else if (argc > 0 && !strcmp(argv[0], "elect"))
			fputs(usage_elect, stdout);
		else if (argc > 0 && !strcmp(argv[0], "leader"))
			fputs(usage_leader, stdout);
		else if (argc > 0 && !strcmp(argv[0], "watch"))
			fputs(usage_watch, stdout);
		else if (argc > 0 && !strcmp(argv[0], "log"))
			fputs(usage_log, stdout);
		else if (argc > 0 && !strcmp(argv[0], "break"))
			fputs(usage_break, stdout);
		else if (argc > 0 && !strcmp(argv[0], "prune"))
			fputs(usage_prune, stdout);
		else
			fputs(usage_main, stdout);
		return 0;
	}
	die_usage("unknown command '%s' (try 'lockctl --help')", cmd);
}
