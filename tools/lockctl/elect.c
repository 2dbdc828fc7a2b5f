// SPDX-License-Identifier: MIT
/*
 * lockctl elect, leader and watch: leader election from the shell.
 *
 * "elect" campaigns and runs COMMAND for as long as it leads, under the same
 * supervision as "lockctl run" (guard.c): COMMAND and every process it
 * started are dead before the leadership can pass to anyone else, even when
 * lockctl is SIGKILLed. A fresh guardian serves each term, started before
 * the campaign: in kernel mode it must share the lock's open file
 * description from the start, and in lease mode it is the process whose
 * death tells observers on this host that the term is over.
 *
 * A graceful stop (SIGTERM) is forwarded to COMMAND; the term is resigned
 * only once COMMAND and its processes have exited, so the next candidate
 * takes over at once and the two never overlap. A demotion (lease lost)
 * stops COMMAND within the margin the lease leaves before anyone may take
 * over: SIGTERM at the deadline, SIGKILL at most half the margin later.
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

const char *const usage_elect =
	"Usage: lockctl [-S STORE] elect NAME [OPTIONS] [--] COMMAND [ARG...]\n"
	"       lockctl [-S STORE] elect NAME [OPTIONS] -c 'SHELL COMMAND'\n"
	"\n"
	"Campaign to lead election NAME and run COMMAND while leading, with\n"
	"LOCKCTL_NAME, LOCKCTL_TOKEN (the term's fencing token), LOCKCTL_STORE and\n"
	"LOCKCTL_LEADER_VALUE in its environment. When COMMAND exits, resign and\n"
	"exit with its status. Options may come before or after NAME.\n"
	"\n"
	"      --value V           the value the leader publishes (at most 256 bytes)\n"
	"      --id ID             this candidate's id (default HOST:PID)\n"
	"      --mode kernel|lease election mode (default: that of an existing\n"
	"                          election; for a new one, kernel on local\n"
	"                          filesystems, lease on network filesystems)\n"
	"      --ttl D             lease TTL (default 10s, at least 1s); implies\n"
	"                          --mode lease\n"
	"      --rejoin            when demoted, campaign again instead of exiting 75\n"
	"  -w, --wait, --timeout D give up campaigning after D (exit with the -E code)\n"
	"  -E, --conflict-exit-code N  exit status when -w runs out (default 1)\n"
	"  -c, --command CMD       run CMD with /bin/sh -c\n"
	"      --kill-after D      lease mode: on demotion COMMAND's group gets SIGTERM\n"
	"                          at the deadline and SIGKILL D later (default and\n"
	"                          maximum: half the margin before anyone may take over)\n"
	"      --metrics-textfile PATH  keep this candidate's counters (terms,\n"
	"                          election and leadership durations, renewals,\n"
	"                          losses) in PATH in the Prometheus text format,\n"
	"                          rewritten atomically every 2s and at each change\n"
	"      --grace D           after COMMAND exits, how long its leftover\n"
	"                          processes get between SIGTERM and SIGKILL (1s)\n"
	"\n"
	"Exit status: COMMAND's (128+N if it died of signal N); 75 demoted without\n"
	"--rejoin; 127/126 COMMAND not found/not executable; 64 usage error;\n"
	"69 store unavailable; 74 I/O error; 70 internal error.\n";

const char *const usage_leader =
	"Usage: lockctl [-S STORE] leader NAME [--json]\n"
	"\n"
	"Show the current leader of election NAME: its id, published value, term\n"
	"token and since when it leads. Exit status 0 when there is a leader, 3\n"
	"when there is none (or its lease has run out).\n";

const char *const usage_watch =
	"Usage: lockctl [-S STORE] watch NAME [--json] [--count N] [--poll D]\n"
	"\n"
	"Print one line per election event (elected, resigned, expired, lost) with\n"
	"the term's token and value, starting with the term in progress, until\n"
	"interrupted or N events were printed. Local stores are watched with\n"
	"inotify; shared ones are polled every D (default 250ms).\n";

struct elect_opts {
	struct run_opts ro;
	const char *value;
	const char *id;
	int rejoin;
};

static enum lk_mode mode_arg(const char *s)
{
	if (!strcmp(s, "kernel"))
		return LK_MODE_KERNEL;
	if (!strcmp(s, "lease"))
		return LK_MODE_LEASE;
	if (!strcmp(s, "auto"))
		return LK_MODE_AUTO;
	die_usage("--mode: expected kernel or lease, got '%s'", s);
}

static int int_arg(const char *opt, const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		die_usage("%s: expected a number from 0 to %ld, got '%s'", opt, max, s);
	return (int)v;
}

/* "--key=value" or "--key value": the value, advancing *i for the latter. */
static const char *opt_val(const char *a, const char *key, int argc, char **argv, int *i)
{
	size_t n = strlen(key);

	if (strncmp(a, key, n))
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n])
		return NULL;
	if (*i + 1 >= argc)
		die_usage("%s needs an argument", key);
	return argv[++*i];
}

static void parse_elect(struct elect_opts *eo, int argc, char **argv)
{
	struct run_opts *o = &eo->ro;
	const char *v;
	int i, ttl_set = 0, mode_set = 0;

	memset(eo, 0, sizeof(*eo));
	o->wait_ms = -1;
	o->conflict_code = 1;
	o->mode = LK_MODE_AUTO;
	o->grace_ms = 1000;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_elect, stdout);
			exit(0);
		} else if (!strcmp(a, "--rejoin")) {
			eo->rejoin = 1;
		} else if ((v = opt_val(a, "--value", argc, argv, &i))) {
			if (strlen(v) > LK_ELECTION_VALUE_MAX)
				die_usage("--value: at most %d bytes", LK_ELECTION_VALUE_MAX);
			eo->value = v;
		} else if ((v = opt_val(a, "--id", argc, argv, &i))) {
			eo->id = v;
		} else if ((v = opt_val(a, "--mode", argc, argv, &i))) {
			o->mode = mode_arg(v);
			mode_set = 1;
		} else if ((v = opt_val(a, "--ttl", argc, argv, &i))) {
			parse_duration_arg("--ttl", v, &o->ttl_ms);
			if (o->ttl_ms < 1000)
				die_usage("--ttl must be at least 1s");
			ttl_set = 1;
		} else if ((v = opt_val(a, "--kill-after", argc, argv, &i))) {
			parse_duration_arg("--kill-after", v, &o->kill_after_ms);
			o->kill_after_set = 1;
		} else if ((v = opt_val(a, "--metrics-textfile", argc, argv, &i))) {
			if (!*v)
				die_usage("--metrics-textfile needs a PATH");
			o->metrics_textfile = v;
		} else if ((v = opt_val(a, "--grace", argc, argv, &i))) {
			parse_duration_arg("--grace", v, &o->grace_ms);
		} else if ((v = opt_val(a, "--wait", argc, argv, &i)) ||
			   (v = opt_val(a, "--timeout", argc, argv, &i)) ||
			   (v = opt_val(a, "-w", argc, argv, &i))) {
			uint64_t ms;

			parse_duration_arg("--wait", v, &ms);
			o->wait_ms = (int64_t)ms;
		} else if ((v = opt_val(a, "--conflict-exit-code", argc, argv, &i)) ||
			   (v = opt_val(a, "-E", argc, argv, &i))) {
			o->conflict_code = int_arg("--conflict-exit-code", v, 255);
		} else if ((v = opt_val(a, "--command", argc, argv, &i)) ||
			   (v = opt_val(a, "-c", argc, argv, &i))) {
			o->shell_cmd = v;
		} else if (a[0] == '-' && a[1]) {
			die_usage("elect: unknown option '%s'", a);
		} else if (!o->name) {
			o->name = a;
			if (lk_name_valid(a) == 0)
				lockctl_lock_name = a;
		} else {
			break;
		}
	}
	if (!o->name)
		die_usage("elect: missing NAME (see 'lockctl elect --help')");
	if (lk_name_valid(o->name) < 0)
		die_usage("invalid election name '%s': use 1-255 of [A-Za-z0-9._-], not starting "
			  "with '.'",
			  o->name);
	if (o->shell_cmd && i < argc)
		die_usage("elect: give either -c 'COMMAND' or COMMAND [ARG...], not both");
	if (!o->shell_cmd && i >= argc)
		die_usage("elect: missing COMMAND (see 'lockctl elect --help')");
	o->cmd = o->shell_cmd ? NULL : argv + i;
	if (ttl_set && mode_set && o->mode == LK_MODE_KERNEL)
		die_usage("elect: --ttl applies to lease mode, not --mode kernel");
	if (ttl_set)
		o->mode = LK_MODE_LEASE;
	if (o->kill_after_set && o->mode == LK_MODE_KERNEL)
		die_usage("elect: --kill-after applies to lease mode, not --mode kernel");
}

static void on_demoted(struct lk_election *e, uint64_t token, int reason, void *userdata)
{
	(void)token;
	guard_on_lost(lk_election_lock(e), reason, userdata);
}

static int elect_fail(struct lk_election *e, const struct run_opts *o, int r)
{
	if (r == -ETIMEDOUT || r == -EWOULDBLOCK) {
		errline("%s: not elected within the wait", o->name);
		return o->conflict_code;
	}
	errline("%s: %s", o->name, lk_election_errmsg(e));
	return exit_for_lock_error(r);
}

int cmd_elect(struct ctx *c, int argc, char **argv)
{
	struct lk_election_opts opts = LK_ELECTION_OPTS_INIT;
	struct elect_opts eo;
	struct run_opts *o = &eo.ro;
	struct run_state rs = { { -1, -1 }, 0 };
	struct sup s = { 0 };
	struct lk_store *st = NULL;
	struct lk_election *e = NULL;
	struct run_metrics m = { 0 };
	char abs[PATH_MAX + 8];
	const char *store_env = c->store;
	int r, rc, lease;
	unsigned epoch;

	parse_elect(&eo, argc, argv);
	rc = open_store(c, 0, &st);
	if (rc)
		return rc;
	m.path = o->metrics_textfile;
	m.name = o->name;
	m.st = st;
	m.election = 1;
	if (m.path) {
		s.tick = run_metrics_tick;
		s.tick_ud = &m;
	}
	if (guard_init(&s, o) < 0 || pipe2(rs.lostfd, O_CLOEXEC | O_NONBLOCK) < 0) {
		errline("%s: %s", o->name, strerror(errno));
		lk_store_close(st);
		return EXIT_INTERNAL;
	}
	opts.mode = o->mode;
	opts.ttl_ms = o->ttl_ms;
	opts.id = eo.id;
	opts.on_demoted = on_demoted;
	opts.userdata = &rs;
	r = lk_election_open(st, o->name, &opts, &e);
	if (r < 0) {
		errline("%s: %s", o->name, lk_store_errmsg(st));
		lk_store_close(st);
		return exit_for_lock_error(r);
	}
	lease = lk_lock_mode(lk_election_lock(e)) == LK_MODE_LEASE;
	if (lease) {
		struct lk_lease_params lp;

		lk_lock_lease_params(lk_election_lock(e), &lp);
		if (o->kill_after_set && o->kill_after_ms > lp.margin_ms / 2)
			die_usage("elect: --kill-after must be at most half the margin (%llu ms for "
				  "this TTL)",
				  (unsigned long long)(lp.margin_ms / 2));
		s.sh->margin_ns = (int64_t)lp.margin_ms * 1000000;
		s.sh->kill_after_ns =
			(int64_t)(o->kill_after_set ? o->kill_after_ms : lp.margin_ms / 2) * 1000000;
	} else if (o->kill_after_set) {
		die_usage("elect: --kill-after applies to lease mode; %s is a kernel-mode election",
			  o->name);
	}

	if (c->store[0] != '/' && !strstr(c->store, "://")) {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd))) {
			snprintf(abs, sizeof(abs), "%s/%s", cwd, c->store);
			store_env = abs;
		}
	}
	setenv("LOCKCTL_NAME", o->name, 1);
	setenv("LOCKCTL_STORE", store_env, 1);
	setenv("LOCKCTL_LEADER_VALUE", eo.value ? eo.value : "", 1);
	{
		struct sigaction old;

		s.pipe_ignored = sigaction(SIGPIPE, NULL, &old) == 0 &&
				 !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
	}
	signal(SIGPIPE, SIG_IGN);

	for (;;) {
		char b[16];

		s.stop_signal = 0;
		atomic_store(&s.sh->deadline_ns, 0);
		while (read(rs.lostfd[0], b, sizeof(b)) > 0)
			;
		epoch = guard_file_epoch(lk_election_lock(e));
		r = guard_start(&s);
		if (r < 0) {
			errline("%s: cannot start the supervisor: %s", o->name, strerror(-r));
			rc = EXIT_INTERNAL;
			break;
		}
		if (lease)
			lk_election_set_pid(e, s.g);
		r = lk_election_campaign(e, eo.value, eo.value ? strlen(eo.value) : 0, o->wait_ms);
		if (r == 0 && guard_file_epoch(lk_election_lock(e)) != epoch) {
			/* kernel mode: the lock file was pruned and reopened while
			 * we waited; the guardian shares the old one (see run.c) */
			lk_election_resign(e);
			guard_stop(&s);
			continue;
		}
		/* the campaign may have reopened the lock (lease mode) */
		m.lk = lk_election_lock(e);
		m.leading = r == 0;
		run_metrics_write(&m);
		if (r < 0) {
			rc = elect_fail(e, o, r);
			guard_stop(&s);
			break;
		}
		rc = guard_supervise(&s, lk_election_lock(e), &rs);
		m.leading = 0;
		if (rc != EXIT_LOST || s.stop_signal) {
			/* COMMAND is done and everything it started is dead */
			if (lk_election_resign(e) < 0 && lease && rc != EXIT_LOST) {
				errline("%s: %s", o->name, lk_election_errmsg(e));
				rc = EXIT_LOST;
			}
			break;
		}
		lk_election_resign(e);
		if (!eo.rejoin) {
			errline("%s: demoted (token %llu); leaving", o->name,
				(unsigned long long)lk_lock_token(lk_election_lock(e)));
			break;
		}
		errline("%s: demoted; campaigning again", o->name);
	}
	run_metrics_write(&m);
	lk_election_close(e);
	lk_store_close(st);
	return rc;
}

/* ------------------------------------------------------------------------
 * Observers
 */

/* The fields of a leader, without the braces around them. */
static void print_leader_json(FILE *f, const char *name, const struct lk_leader *l)
{
	char since[64];

	fputs("\"name\":", f);
	json_str(f, name);
	fprintf(f, ",\"leader\":%s,\"expired\":%s,\"mode\":\"%s\",\"token\":%llu",
		l->present && !l->expired ? "true" : "false", l->expired ? "true" : "false",
		l->mode == LK_MODE_KERNEL ? "kernel" : l->mode == LK_MODE_LEASE ? "lease" : "none",
		(unsigned long long)l->token);
	fputs(",\"id\":", f);
	if (l->token)
		json_str(f, l->id);
	else
		fputs("null", f);
	fputs(",\"value\":", f);
	if (l->value_known)
		json_str(f, l->value);
	else
		fputs("null", f);
	if (l->token) {
		fmt_rfc3339(since, sizeof(since), l->since_ns);
		fputs(",\"since\":", f);
		json_str(f, since);
		fputs(",\"host\":", f);
		json_str(f, l->host);
		fprintf(f, ",\"pid\":%d", (int)l->pid);
	} else {
		fputs(",\"since\":null,\"host\":null,\"pid\":null", f);
	}
}

int cmd_leader(struct ctx *c, int argc, char **argv)
{
	struct lk_leader l = { .size = sizeof(l) };
	struct lk_store *st = NULL;
	const char *name = NULL;
	int json = 0, r, rc;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_leader, stdout);
			return 0;
		} else if (argv[i][0] == '-')
			die_usage("leader: unknown option '%s'", argv[i]);
		else if (!name)
			name = argv[i];
		else
			die_usage("leader: one NAME only");
	}
	if (!name)
		die_usage("leader: missing NAME");
	if (lk_name_valid(name) < 0)
		die_usage("invalid election name '%s'", name);
	lockctl_lock_name = name;
	rc = open_store(c, 1, &st);
	if (rc)
		return rc;
	if (st) {
		r = lk_election_leader(st, name, &l);
		if (r < 0) {
			errline("%s: %s", name, lk_store_errmsg(st));
			lk_store_close(st);
			return exit_for_lock_error(r);
		}
		lk_store_close(st);
	}
	if (json) {
		fputs("{", stdout);
		print_leader_json(stdout, name, &l);
		fputs("}\n", stdout);
	} else if (l.present && !l.expired) {
		char since[64];

		fmt_rfc3339(since, sizeof(since), l.since_ns);
		printf("%s: leader %s (pid %d on %s) since %s, token %llu, value %s%s%s\n", name,
		       l.id, (int)l.pid, l.host, since, (unsigned long long)l.token,
		       l.value_known ? "'" : "", l.value_known ? l.value : "not yet published",
		       l.value_known ? "'" : "");
	} else if (l.present) {
		printf("%s: no leader (term %llu of %s expired)\n", name,
		       (unsigned long long)l.token, l.id);
	} else {
		printf("%s: no leader\n", name);
	}
	return l.present && !l.expired ? 0 : 3;
}

static volatile sig_atomic_t watch_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	watch_stop = 1;
}

int cmd_watch(struct ctx *c, int argc, char **argv)
{
	struct lk_election_watch *w = NULL;
	struct lk_store *st = NULL;
	struct sigaction sa;
	const char *name = NULL, *v;
	uint64_t poll_ms = 0;
	long count = -1, seen = 0;
	int json = 0, r, rc = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json"))
			json = 1;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_watch, stdout);
			return 0;
		} else if ((v = opt_val(a, "--count", argc, argv, &i)) ||
			   (v = opt_val(a, "-n", argc, argv, &i)))
			count = int_arg("--count", v, 1000000000L);
		else if ((v = opt_val(a, "--poll", argc, argv, &i)))
			parse_duration_arg("--poll", v, &poll_ms);
		else if (a[0] == '-')
			die_usage("watch: unknown option '%s'", a);
		else if (!name)
			name = a;
		else
			die_usage("watch: one NAME only");
	}
	if (!name)
		die_usage("watch: missing NAME");
	if (lk_name_valid(name) < 0)
		die_usage("invalid election name '%s'", name);
	if (count == 0)
		return 0;
	lockctl_lock_name = name;
	/* watching may start before the first candidate creates the store */
	rc = open_store(c, 0, &st);
	if (rc)
		return rc;
	r = lk_election_watch_open(st, name, poll_ms, &w);
	if (r < 0) {
		errline("%s: %s", name, lk_store_errmsg(st));
		lk_store_close(st);
		return exit_for_lock_error(r);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal; /* no SA_RESTART: the wait returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	while (!watch_stop && (count < 0 || seen < count)) {
		struct lk_election_event ev = { .size = sizeof(ev) };
		char when[64];

		r = lk_election_watch_next(w, 1000, &ev);
		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		if (r < 0) {
			errline("%s: %s", name, lk_store_errmsg(st));
			rc = exit_for_lock_error(r);
			break;
		}
		fmt_rfc3339(when, sizeof(when), ev.time_ns);
		if (json) {
			fputs("{\"event\":", stdout);
			json_str(stdout, lk_election_event_name(ev.type));
			fputs(",\"time\":", stdout);
			json_str(stdout, when);
			fputs(",", stdout);
			print_leader_json(stdout, name, &ev.leader);
			fputs("}\n", stdout);
		} else {
			printf("%s %s %s token=%llu id=%s value=%s\n", when, name,
			       lk_election_event_name(ev.type), (unsigned long long)ev.leader.token,
			       ev.leader.id, ev.leader.value_known ? ev.leader.value : "-");
		}
		fflush(stdout);
		seen++;
	}
	lk_election_watch_close(w);
	lk_store_close(st);
	return rc;
}
