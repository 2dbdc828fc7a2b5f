// SPDX-License-Identifier: MIT
/*
 * lockctl run: acquire a lock and run a command under it. The supervision
 * that keeps the command and everything it started from outliving the lock
 * lives in guard.c, shared with lockctl elect; this file parses the command
 * line and takes the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "obs.h"

const char *const usage_run =
	"Usage: lockctl [-S STORE] run NAME [OPTIONS] [--] COMMAND [ARG...]\n"
	"       lockctl [-S STORE] run NAME [OPTIONS] -c 'SHELL COMMAND'\n"
	"\n"
	"Acquire lock NAME, run COMMAND with LOCKCTL_NAME, LOCKCTL_TOKEN and\n"
	"LOCKCTL_STORE in its environment, and release the lock once COMMAND and\n"
	"every process it started have exited. Options may come before or after NAME.\n"
	"\n"
	"  -n, --nonblock, --nb        fail at once if the lock is held\n"
	"  -w, --wait, --timeout D     wait at most D (250ms, 10s, 2m, 1.5 = seconds)\n"
	"  -E, --conflict-exit-code N  exit status when the lock is held or the wait\n"
	"                              times out (default 1)\n"
	"  -s, --shared                take a shared lock\n"
	"  -x, -e, --exclusive         take an exclusive lock (the default)\n"
	"  -c, --command CMD           run CMD with /bin/sh -c\n"
	"      --mode kernel|lease     lock mode (default: that of an existing lock;\n"
	"                              for a new one, kernel on local filesystems,\n"
	"                              lease on network filesystems)\n"
	"      --ttl D                 lease TTL (default 10s, at least 1s); implies\n"
	"                              --mode lease\n"
	"      --kill-after D          lease mode: when the lease is lost, COMMAND's\n"
	"                              group gets SIGTERM at the holder's deadline and\n"
	"                              SIGKILL D later (default and maximum: half the\n"
	"                              margin before anyone may take over)\n"
	"      --owner LABEL           owner label others see (default: COMMAND's name)\n"
	"      --grace D               after COMMAND exits, how long its leftover\n"
	"                              processes get between SIGTERM and SIGKILL (1s)\n"
	"  -q, --quiet                 say nothing when the lock is busy\n"
	"      --metrics-textfile PATH keep this run's counters (acquire wait, hold\n"
	"                              time, renewals, losses) in PATH in the\n"
	"                              Prometheus text format, rewritten atomically\n"
	"                              every 2s and when the state changes\n"
	"  -o, --close                 accepted for flock(1) compatibility: the lock's\n"
	"                              descriptor is never passed to COMMAND\n"
	"\n"
	"Exit status: COMMAND's (128+N if it died of signal N); 127 COMMAND not\n"
	"found; 126 COMMAND not executable; the -E code when the lock is busy or the\n"
	"wait timed out; 75 the lease was lost while COMMAND ran; 64 usage error;\n"
	"69 store unavailable; 74 I/O error; 70 internal error.\n";


/* ------------------------------------------------------------------------
 * Option parsing: options may come before or after NAME; COMMAND starts at
 * the first word after NAME that is not an option, or after "--".
 */

static int parse_int(const char *opt, const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > 255)
		die_usage("%s: expected a number from 0 to 255, got '%s'", opt, s);
	return (int)v;
}

static enum lk_mode parse_mode(const char *s)
{
	if (!strcmp(s, "kernel"))
		return LK_MODE_KERNEL;
	if (!strcmp(s, "lease"))
		return LK_MODE_LEASE;
	if (!strcmp(s, "auto"))
		return LK_MODE_AUTO;
	die_usage("--mode: expected kernel or lease, got '%s'", s);
}

/* Long options: returns 1 if it consumed the next word too. */
static int parse_long(struct run_opts *o, const char *a, const char *next)
{
	const char *eq = strchr(a, '=');
	char key[32];
	const char *val = NULL;
	size_t klen = eq ? (size_t)(eq - a) : strlen(a);
	int used_next = 0;

	if (klen >= sizeof(key))
		die_usage("run: unknown option '%s'", a);
	memcpy(key, a, klen);
	key[klen] = 0;

#define NEED_VAL()                                                                             \
	do {                                                                                   \
		if (eq)                                                                        \
			val = eq + 1;                                                          \
		else if (next) {                                                               \
			val = next;                                                            \
			used_next = 1;                                                         \
		} else                                                                         \
			die_usage("%s needs an argument", key);                                \
	} while (0)
#define NO_VAL()                                                                               \
	do {                                                                                   \
		if (eq)                                                                        \
			die_usage("%s takes no argument", key);                                \
	} while (0)

	if (!strcmp(key, "--nonblock") || !strcmp(key, "--nb") || !strcmp(key, "--no-wait")) {
		NO_VAL();
		o->nonblock = 1;
	} else if (!strcmp(key, "--wait") || !strcmp(key, "--timeout")) {
		uint64_t ms;

		NEED_VAL();
		parse_duration_arg(key, val, &ms);
		o->wait_ms = (int64_t)ms;
	} else if (!strcmp(key, "--conflict-exit-code")) {
		NEED_VAL();
		o->conflict_code = parse_int(key, val);
	} else if (!strcmp(key, "--shared")) {
		NO_VAL();
		o->shared = 1;
	} else if (!strcmp(key, "--exclusive")) {
		NO_VAL();
		o->shared = 0;
	} else if (!strcmp(key, "--command")) {
		NEED_VAL();
		o->shell_cmd = val;
	} else if (!strcmp(key, "--mode")) {
		NEED_VAL();
		o->mode = parse_mode(val);
		o->mode_set = 1;
	} else if (!strcmp(key, "--ttl")) {
		uint64_t ms;

		NEED_VAL();
		parse_duration_arg(key, val, &ms);
		if (ms < 1000)
			die_usage("--ttl must be at least 1s");
		o->ttl_set = 1;
		o->ttl_ms = ms;
	} else if (!strcmp(key, "--kill-after")) {
		NEED_VAL();
		parse_duration_arg(key, val, &o->kill_after_ms);
		o->kill_after_set = 1;
	} else if (!strcmp(key, "--owner")) {
		NEED_VAL();
		o->owner = val;
	} else if (!strcmp(key, "--grace")) {
		NEED_VAL();
		parse_duration_arg(key, val, &o->grace_ms);
	} else if (!strcmp(key, "--metrics-textfile")) {
		NEED_VAL();
		if (!*val)
			die_usage("--metrics-textfile needs a PATH");
		o->metrics_textfile = val;
	} else if (!strcmp(key, "--quiet")) {
		NO_VAL();
		o->quiet = 1;
	} else if (!strcmp(key, "--close")) {
		NO_VAL();
	} else if (!strcmp(key, "--help")) {
		fputs(usage_run, stdout);
		exit(0);
	} else {
		die_usage("run: unknown option '%s'", a);
	}
#undef NEED_VAL
#undef NO_VAL
	return used_next;
}

/* A cluster of short options ("-nE3", "-w 5"): returns 1 if it used next. */
static int parse_short(struct run_opts *o, const char *a, const char *next)
{
	for (const char *p = a + 1; *p; p++) {
		const char *val = NULL;
		int used_next = 0;
		char opt[3] = { '-', *p, 0 };

		if (strchr("wEc", *p)) {
			if (p[1])
				val = p + 1;
			else if (next) {
				val = next;
				used_next = 1;
			} else
				die_usage("%s needs an argument", opt);
		}
		switch (*p) {
		case 'n':
			o->nonblock = 1;
			break;
		case 's':
			o->shared = 1;
			break;
		case 'x':
		case 'e':
			o->shared = 0;
			break;
		case 'o':
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'h':
			fputs(usage_run, stdout);
			exit(0);
		case 'w': {
			uint64_t ms;

			parse_duration_arg(opt, val, &ms);
			o->wait_ms = (int64_t)ms;
			return used_next;
		}
		case 'E':
			o->conflict_code = parse_int(opt, val);
			return used_next;
		case 'c':
			o->shell_cmd = val;
			return used_next;
		default:
			die_usage("run: unknown option '%s'", opt);
		}
	}
	return 0;
}

/* Find NAME before parsing, so that every error line can name the lock. */
static const char *prescan_name(int argc, char **argv)
{
	static const char *const with_value[] = { "--wait", "--timeout", "--conflict-exit-code",
						  "--command", "--mode", "--ttl", "--owner",
						  "--grace", "--kill-after", "--metrics-textfile",
						  NULL };

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--"))
			return i + 1 < argc ? argv[i + 1] : NULL;
		if (a[0] == '-' && a[1] == '-') {
			for (int k = 0; with_value[k]; k++)
				if (!strcmp(a, with_value[k]))
					i++;
		} else if (a[0] == '-' && a[1]) {
			const char *v = strpbrk(a + 1, "wEc");

			if (v && !v[1])
				i++;
		} else {
			return a;
		}
	}
	return NULL;
}

static void parse_run(struct run_opts *o, int argc, char **argv)
{
	int i;

	lockctl_lock_name = prescan_name(argc, argv);
	if (lockctl_lock_name && lk_name_valid(lockctl_lock_name) < 0)
		lockctl_lock_name = NULL;

	memset(o, 0, sizeof(*o));
	o->wait_ms = -1;
	o->conflict_code = 1;
	o->mode = LK_MODE_AUTO;
	o->grace_ms = 1000;

	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] == '-' && a[1] == '-')
			i += parse_long(o, a, next);
		else if (a[0] == '-' && a[1])
			i += parse_short(o, a, next);
		else if (!o->name)
			o->name = a;
		else
			break;
	}
	if (!o->name) {
		if (i < argc)
			o->name = argv[i++];
		else
			die_usage("run: missing NAME (see 'lockctl run --help')");
	}
	if (lk_name_valid(o->name) < 0) {
		lockctl_lock_name = NULL;
		die_usage("invalid lock name '%s': use 1-255 of [A-Za-z0-9._-], not starting with '.'",
			  o->name);
	}
	lockctl_lock_name = o->name;
	if (o->shell_cmd && i < argc)
		die_usage("run: give either -c 'COMMAND' or COMMAND [ARG...], not both");
	if (!o->shell_cmd && i >= argc)
		die_usage("run: missing COMMAND (see 'lockctl run --help')");
	o->cmd = o->shell_cmd ? NULL : argv + i;

	if (o->ttl_set && o->mode_set && o->mode == LK_MODE_KERNEL)
		die_usage("run: --ttl applies to lease mode, not --mode kernel");
	if (o->kill_after_set && o->mode_set && o->mode == LK_MODE_KERNEL)
		die_usage("run: --kill-after applies to lease mode, not --mode kernel");
	if (o->ttl_set)
		o->mode = LK_MODE_LEASE;
	if (o->shared && o->mode == LK_MODE_LEASE)
		die_usage("run: shared locks (-s) exist only in kernel mode");
}

static void report_busy(struct lk_store *st, const struct run_opts *o, int r)
{
	struct lk_status s = { .size = sizeof(s) };
	char since[64];

	if (o->quiet)
		return;
	if (lk_lock_status(st, o->name, &s) == 0 && s.held && s.token &&
	    (s.mode == LK_MODE_KERNEL || s.ttl_ms)) {
		fmt_rfc3339(since, sizeof(since), s.holder.since_ns);
		errline("%s: %s; held%s by %s (pid %d on %s) since %s, token %llu", o->name,
			r == -ETIMEDOUT ? "timed out waiting" : "lock is busy",
			s.shared ? " shared" : "", s.holder.owner[0] ? s.holder.owner : "-",
			(int)s.holder.pid, s.holder.host, since, (unsigned long long)s.token);
	} else {
		errline("%s: %s", o->name, r == -ETIMEDOUT ? "timed out waiting" : "lock is busy");
	}
}

int cmd_run(struct ctx *c, int argc, char **argv)
{
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_lease_params lp;
	struct run_opts o;
	struct run_state rs = { { -1, -1 }, 0 };
	struct sup s = { 0 };
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	struct run_metrics m = { 0 };
	char abs[PATH_MAX + 8];
	const char *store_env = c->store;
	unsigned epoch;
	int r, rc;

	parse_run(&o, argc, argv);
	rc = open_store(c, 0, &st);
	if (rc)
		return rc;
	m.path = o.metrics_textfile;
	m.name = o.name;
	m.st = st;

	if (o.owner) {
		lo.owner = o.owner;
	} else {
		const char *base = o.shell_cmd ? "sh" : o.cmd[0];
		const char *slash = strrchr(base, '/');

		lo.owner = slash ? slash + 1 : base; /* the library cuts it to fit */
	}
	lo.mode = o.mode;
	lo.flags = o.shared ? LK_LOCK_SHARED : 0;
	lo.ttl_ms = o.ttl_ms;
	r = lk_lock_open(st, o.name, &lo, &lk);
	if (r < 0) {
		errline("%s: %s", o.name, lk_store_errmsg(st));
		lk_store_close(st);
		return exit_for_lock_error(r);
	}

	if (guard_init(&s, &o) < 0 || pipe2(rs.lostfd, O_CLOEXEC | O_NONBLOCK) < 0) {
		errline("%s: %s", o.name, strerror(errno));
		return EXIT_INTERNAL;
	}
	if (lk_lock_mode(lk) == LK_MODE_LEASE) {
		lk_lock_lease_params(lk, &lp);
		if (o.kill_after_set && o.kill_after_ms > lp.margin_ms / 2)
			die_usage("run: --kill-after must be at most half the margin (%llu ms for this TTL)",
				  (unsigned long long)(lp.margin_ms / 2));
		s.sh->margin_ns = (int64_t)lp.margin_ms * 1000000;
		s.sh->kill_after_ns =
			(int64_t)(o.kill_after_set ? o.kill_after_ms : lp.margin_ms / 2) * 1000000;
		/* Reopened once the guardian exists: observers on this host treat
		 * the hold as over when the guardian dies, which happens only
		 * after COMMAND and everything it started are dead. */
		lk_lock_close(lk);
		lk = NULL;
	} else if (o.kill_after_set) {
		die_usage("run: --kill-after applies to lease mode; %s is a kernel-mode lock", o.name);
	}

	/* COMMAND may change directory: hand it an absolute store path. */
	if (c->store[0] != '/' && !strstr(c->store, "://")) {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd))) {
			snprintf(abs, sizeof(abs), "%s/%s", cwd, c->store);
			store_env = abs;
		}
	}
	setenv("LOCKCTL_NAME", o.name, 1);
	setenv("LOCKCTL_STORE", store_env, 1);
	/* lockctl must survive writing to a guardian that died; COMMAND gets
	 * the disposition lockctl itself was started with */
	{
		struct sigaction old;

		s.pipe_ignored = sigaction(SIGPIPE, NULL, &old) == 0 &&
				 !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
	}
	signal(SIGPIPE, SIG_IGN);

	epoch = guard_file_epoch(lk);
	r = guard_start(&s);
	if (r < 0) {
		errline("%s: cannot start the supervisor: %s", o.name, strerror(-r));
		lk_lock_close(lk);
		lk_store_close(st);
		return EXIT_INTERNAL;
	}
	if (!lk) {
		lo.mode = LK_MODE_LEASE;
		lo.pid = s.g;
		lo.on_lost = guard_on_lost;
		lo.userdata = &rs;
		r = lk_lock_open(st, o.name, &lo, &lk);
		if (r < 0) {
			errline("%s: %s", o.name, lk_store_errmsg(st));
			guard_stop(&s);
			lk_store_close(st);
			return exit_for_lock_error(r);
		}
	}

	m.lk = lk;
	r = lk_lock_acquire(lk, o.nonblock ? 0 : o.wait_ms);
	while (r == 0 && guard_file_epoch(lk) != epoch) {
		/*
		 * The lock file was pruned while we waited and the lock taken on
		 * the file now at its name: the guardian still shares the old
		 * one. Let go, and start again with a guardian that shares it.
		 */
		lk_lock_release(lk);
		guard_stop(&s);
		epoch = guard_file_epoch(lk);
		r = guard_start(&s);
		if (r < 0) {
			errline("%s: cannot start the supervisor: %s", o.name, strerror(-r));
			lk_lock_close(lk);
			lk_store_close(st);
			return EXIT_INTERNAL;
		}
		r = lk_lock_acquire(lk, o.nonblock ? 0 : o.wait_ms);
	}
	run_metrics_write(&m);
	if (r < 0) {
		if (r == -EWOULDBLOCK || r == -ETIMEDOUT) {
			report_busy(st, &o, r);
			rc = o.conflict_code;
		} else {
			errline("%s: %s", o.name, lk_lock_errmsg(lk));
			rc = exit_for_lock_error(r);
		}
		guard_stop(&s);
		lk_lock_close(lk);
		lk_store_close(st);
		return rc;
	}

	if (m.path) {
		s.tick = run_metrics_tick;
		s.tick_ud = &m;
	}
	rc = guard_supervise(&s, lk, &rs);

	if (lk_lock_release(lk) < 0 && rc != EXIT_LOST && lk_lock_mode(lk) == LK_MODE_LEASE) {
		errline("%s: %s", o.name, lk_lock_errmsg(lk));
		rc = EXIT_LOST;
	}
	/* a textfile that cannot be written is said on stderr; the exit
	 * status stays COMMAND's */
	run_metrics_write(&m);
	lk_lock_close(lk);
	lk_store_close(st);
	return rc;
}
