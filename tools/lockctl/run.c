// SPDX-License-Identifier: MIT
/*
 * lockctl run: run a command while holding a lock, and make sure the command
 * and everything it started are dead before the lock can be taken by anyone
 * else, even when lockctl itself is SIGKILLed.
 *
 * flock(1) cannot promise that. By default it passes the lock's descriptor
 * to its command, so any background process the command leaves behind keeps
 * the lock after the command is done (and nothing ever kills it); with -o the
 * kernel drops the lock as soon as a SIGKILLed flock(1) closes its files,
 * while the command runs on. A parent-death signal does not close the gap:
 * it is sent after the lock is already gone, and only to the direct child.
 *
 * So three processes take part:
 *
 *   lockctl (L)      takes the lock, forwards signals, handles the terminal,
 *    |               and releases the lock only after G has exited.
 *    +- guardian (G) shares L's open file description of the lock file, so
 *        |           the lock stays held while G lives. G is a child subreaper:
 *        |           every orphaned descendant of the command is re-parented
 *        |           to it. When the command exits, or when L dies (G sees the
 *        |           end of a pipe only L holds), G kills the command's
 *        |           process group and then every child it still has until
 *        |           none is left, and only then exits.
 *        +- COMMAND  in its own process group (the terminal's foreground
 *                    group when lockctl runs in the foreground of one); it
 *                    does not inherit the lock's descriptor.
 *
 * If G is killed, L (also a subreaper) does the same clean-up before it
 * releases. G runs in a process group of its own, so killing lockctl's job
 * or process group leaves it in place to clean up. Only killing L and G by
 * their pids at the same moment can leave COMMAND's descendants running
 * unlocked; COMMAND itself then gets SIGKILL from its parent-death signal.
 *
 * Terminal job control: with COMMAND in the foreground, Ctrl-Z stops only
 * COMMAND's group. G sees it stop and tells L, which takes the terminal back
 * and stops itself, so the shell sees a stopped job; when the shell continues
 * L, L hands the terminal back to COMMAND and continues it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "lockctl.h"

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
	"  -o, --close                 accepted for flock(1) compatibility: the lock's\n"
	"                              descriptor is never passed to COMMAND\n"
	"\n"
	"Exit status: COMMAND's (128+N if it died of signal N); 127 COMMAND not\n"
	"found; 126 COMMAND not executable; the -E code when the lock is busy or the\n"
	"wait timed out; 75 the lease was lost while COMMAND ran; 64 usage error;\n"
	"69 store unavailable; 74 I/O error; 70 internal error.\n";

struct run_opts {
	const char *name;
	int nonblock;
	int64_t wait_ms;
	int conflict_code;
	int shared;
	int mode_set;
	enum lk_mode mode;
	int ttl_set;
	uint64_t ttl_ms;
	int kill_after_set;
	uint64_t kill_after_ms;
	const char *shell_cmd;
	char **cmd;
	const char *owner;
	int quiet;
	uint64_t grace_ms;
};

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
						  "--grace", "--kill-after", NULL };

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

/* ------------------------------------------------------------------------
 * Messages from the guardian to lockctl, over a pipe (8 bytes: atomic).
 */
enum { MSG_PID = 1, MSG_EXECFAIL, MSG_STOPPED, MSG_EXIT };

struct msg {
	int32_t type;
	int32_t val;
};

static void send_msg(int fd, int type, int val)
{
	struct msg m = { type, val };
	ssize_t n;

	do
		n = write(fd, &m, sizeof(m));
	while (n < 0 && errno == EINTR);
}

/* Send sig to every child of this process; returns how many there were. */
static int signal_children(int sig)
{
	char path[64], buf[4096];
	int n = 0, fd;
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)gettid());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		/* One read is a snapshot; a long list is read again next round. */
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len >= 0) {
			char *p = buf, *end;

			buf[len] = 0;
			for (;;) {
				long pid = strtol(p, &end, 10);

				if (end == p)
					break;
				if (pid > 0 && kill((pid_t)pid, sig) == 0)
					n++;
				p = end;
			}
			return n;
		}
	}
	/* No /proc/.../children: scan /proc for our children. */
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t self = getpid();

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char stat[512], *rp;
		long pid = strtol(de->d_name, &rp, 10);
		int ppid = 0;

		if (*rp || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, stat, sizeof(stat) - 1);
		close(fd);
		if (len <= 0)
			continue;
		stat[len] = 0;
		rp = strrchr(stat, ')');
		if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self &&
		    kill((pid_t)pid, sig) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Kill COMMAND's group and every remaining child, and reap them all. */
static void kill_and_reap_all(pid_t pgid)
{
	for (;;) {
		if (pgid > 0)
			kill(-pgid, SIGKILL);
		signal_children(SIGKILL);
		if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
			return;
	}
}

/* ------------------------------------------------------------------------
 * COMMAND
 */
/* Signals the guardian ignores; COMMAND gets lockctl's original disposition. */
static const int guard_ignored[] = { SIGINT,  SIGQUIT, SIGHUP, SIGTERM,
				     SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE };
#define N_GUARD_IGNORED (sizeof(guard_ignored) / sizeof(guard_ignored[0]))

struct child_args {
	const struct run_opts *o;
	int tty;           /* terminal to hand over, or -1 */
	pid_t guardian;
	int errpipe;       /* write end: errno of a failed exec */
	sigset_t mask;     /* lockctl's original signal mask */
	int ignored[N_GUARD_IGNORED]; /* 1: was SIG_IGN in lockctl (nohup...) */
};

static void __attribute__((noreturn)) child_exec(const struct child_args *a)
{
	struct sigaction dfl;
	int e;

	setpgid(0, 0);
	if (a->tty >= 0)
		tcsetpgrp(a->tty, getpid()); /* SIGTTOU is ignored here */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != a->guardian)
		_exit(EXIT_INTERNAL);
	/*
	 * exec() resets caught signals to their default; only ignored ones
	 * survive it. Give COMMAND back what lockctl was started with, so that
	 * "nohup lockctl run ..." still ignores SIGHUP.
	 */
	memset(&dfl, 0, sizeof(dfl));
	for (size_t i = 0; i < N_GUARD_IGNORED; i++) {
		dfl.sa_handler = a->ignored[i] ? SIG_IGN : SIG_DFL;
		sigaction(guard_ignored[i], &dfl, NULL);
	}
	sigprocmask(SIG_SETMASK, &a->mask, NULL);

	if (a->o->shell_cmd)
		execl("/bin/sh", "sh", "-c", a->o->shell_cmd, (char *)NULL);
	else
		execvp(a->o->cmd[0], a->o->cmd);
	e = errno;
	if (write(a->errpipe, &e, sizeof(e)) < 0) {
		/* the guardian will see a plain exit status instead */
	}
	_exit(e == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC);
}

/*
 * vfork: the guardian is suspended until COMMAND has exec'd (or failed to),
 * and no page tables are copied. The child only makes async-signal-safe calls.
 */
static pid_t __attribute__((noinline)) spawn_command(const struct child_args *ca)
{
	pid_t c = vfork();

	if (c == 0)
		child_exec(ca);
	return c;
}

/* ------------------------------------------------------------------------
 * The guardian
 */

/*
 * Shared with the guardian through an anonymous shared mapping. In lease
 * mode lockctl keeps deadline_ns at the holder's deadline (CLOCK_BOOTTIME,
 * which every process on the host shares); the guardian stops COMMAND when it
 * passes, even if lockctl itself is stopped or hung and can no longer say so.
 * A stale value is an earlier one, so it errs on the safe side.
 */
struct shared_state {
	_Atomic int64_t deadline_ns; /* 0: kernel mode, no deadline */
	int64_t margin_ns;
	int64_t kill_after_ns;
};

struct sup {
	const struct run_opts *o;
	int life[2]; /* lockctl holds [1]; the guardian sees EOF on [0] when it dies */
	int msgp[2]; /* guardian -> lockctl */
	int gop[2];  /* lockctl -> guardian: the token to start with, or EOF to give up */
	int tty;
	int pipe_ignored; /* SIGPIPE was ignored when lockctl started */
	pid_t g;
	struct shared_state *sh;
};

enum { MSG_OUTLIVED = MSG_EXIT + 1, MSG_ENFORCED };

static int64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void __attribute__((noreturn)) guardian(struct sup *s)
{
	const struct run_opts *o = s->o;
	struct sigaction old;
	struct child_args ca;
	sigset_t chld, orig;
	uint64_t token = 0;
	char tok[32];
	int sfd, ep[2], e = 0, c_done = 0, c_status = 0, all_gone = 0, enforced = 0;
	int64_t kill_at = -1, enforce_deadline = 0;
	pid_t c;
	ssize_t n;

	close(s->life[1]);
	close(s->msgp[0]);
	close(s->gop[1]);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	prctl(PR_SET_NAME, "lockctl-guard");
	/* Terminal and job-control signals are lockctl's business, not ours. */
	for (size_t i = 0; i < N_GUARD_IGNORED; i++) {
		ca.ignored[i] = sigaction(guard_ignored[i], NULL, &old) == 0 &&
				!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
		if (guard_ignored[i] == SIGPIPE)
			ca.ignored[i] = s->pipe_ignored;
		signal(guard_ignored[i], SIG_IGN);
	}
	/*
	 * A group of our own: "kill -9 %job" or a service manager killing
	 * lockctl's process group must not take the guardian along, or the lock
	 * would be freed while COMMAND's children run on.
	 */
	setpgid(0, 0);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &orig);

	/* Wait for lockctl to hold the lock; EOF means it gave up or died. */
	do
		n = read(s->gop[0], &token, sizeof(token));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(token))
		_exit(0);
	/* gop stays open: lockctl pokes it when it learns the lease is lost */
	fcntl(s->gop[0], F_SETFL, O_NONBLOCK);
	snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
	setenv("LOCKCTL_TOKEN", tok, 1);

	sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		send_msg(s->msgp[1], MSG_EXECFAIL, -errno);
		_exit(EXIT_INTERNAL);
	}
	ca.o = o;
	ca.tty = s->tty;
	ca.guardian = getpid();
	ca.errpipe = ep[1];
	ca.mask = orig;
	c = spawn_command(&ca);
	if (c < 0) {
		send_msg(s->msgp[1], MSG_EXECFAIL, -errno);
		_exit(EXIT_INTERNAL);
	}
	setpgid(c, c);
	close(ep[1]);
	while (read(ep[0], &e, sizeof(e)) < 0 && errno == EINTR)
		;
	close(ep[0]);
	if (e)
		send_msg(s->msgp[1], MSG_EXECFAIL, e);
	else
		send_msg(s->msgp[1], MSG_PID, (int)c);

	for (;;) {
		struct pollfd pfd[3] = { { sfd, POLLIN, 0 },
					 { s->life[0], POLLIN, 0 },
					 { s->gop[0], POLLIN, 0 } };
		int64_t dl = atomic_load(&s->sh->deadline_ns), wake = -1, now;
		int timeout = -1, status;
		pid_t p;

		if (kill_at >= 0)
			wake = kill_at;
		/* the deadline binds leftovers too, after COMMAND itself is gone */
		if (dl && !enforced && (wake < 0 || dl < wake))
			wake = dl;
		if (wake >= 0) {
			int64_t left = wake - boot_ns();

			timeout = left > 0 ? (int)((left + 999999) / 1000000) : 0;
		}
		if (poll(pfd, 3, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[2].revents) {
			char b[16];

			/* a poke (the deadline moved in), or lockctl closed its end */
			if (read(s->gop[0], b, sizeof(b)) == 0) {
				close(s->gop[0]);
				s->gop[0] = -1;
			}
		}
		if (pfd[1].revents) {
			/* lockctl is gone: nobody renews or supervises any more */
			kill_and_reap_all(c);
			_exit(0);
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) > 0)
				;
		}
		while ((p = waitpid(-1, &status, WNOHANG | WUNTRACED | WCONTINUED)) > 0) {
			if (p != c || c_done)
				continue;
			if (WIFSTOPPED(status)) {
				send_msg(s->msgp[1], MSG_STOPPED, WSTOPSIG(status));
			} else if (!WIFCONTINUED(status)) {
				c_done = 1;
				c_status = status;
				/*
				 * Every descendant still alive is now our child
				 * or below one (we are their subreaper): if we
				 * have none, nothing is left to stop.
				 */
				if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) {
					all_gone = 1;
					break;
				}
				/* leftovers get SIGTERM, then SIGKILL after the grace */
				kill(-c, SIGTERM);
				signal_children(SIGTERM);
				kill(-c, SIGCONT);
				signal_children(SIGCONT);
				if (kill_at < 0)
					kill_at = boot_ns() + (int64_t)o->grace_ms * 1000000;
			}
		}
		if (all_gone || (c_done && p < 0 && errno == ECHILD))
			break;
		now = boot_ns();
		dl = atomic_load(&s->sh->deadline_ns);
		if (dl && !enforced && now >= dl) {
			/* The lease ran out: stop COMMAND and whatever it left behind
			 * before anyone may take over. */
			enforced = 1;
			enforce_deadline = dl;
			kill(-c, SIGTERM);
			signal_children(SIGTERM);
			kill(-c, SIGCONT);
			signal_children(SIGCONT);
			if (kill_at < 0 || now + s->sh->kill_after_ns < kill_at)
				kill_at = now + s->sh->kill_after_ns;
			send_msg(s->msgp[1], MSG_ENFORCED, 0);
		}
		if (kill_at >= 0 && now >= kill_at) {
			kill_and_reap_all(c);
			break;
		}
	}
	if (enforced) {
		int64_t over = boot_ns() - (enforce_deadline + s->sh->margin_ns);

		if (over > 0)
			send_msg(s->msgp[1], MSG_OUTLIVED, (int)(over / 1000000));
	}
	send_msg(s->msgp[1], MSG_EXIT, c_status);
	_exit(0);
}

/* ------------------------------------------------------------------------
 * lockctl's side
 */

struct run_state {
	int lostfd[2]; /* the engine's on_lost callback writes here */
};

static void on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	struct run_state *rs = userdata;
	char b = 1;

	(void)lk;
	(void)reason;
	if (write(rs->lostfd[1], &b, 1) < 0) {
		/* lockctl notices on its next check anyway */
	}
}

static int start_guardian(struct sup *s)
{
	if (pipe2(s->life, O_CLOEXEC) < 0 || pipe2(s->msgp, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pipe2(s->gop, O_CLOEXEC) < 0)
		return -errno;
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* In the foreground of a terminal, COMMAND gets the terminal. */
	s->tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (s->tty >= 0 && tcgetpgrp(s->tty) != getpgrp()) {
		close(s->tty);
		s->tty = -1;
	}
	fflush(NULL);
	s->g = fork();
	if (s->g < 0)
		return -errno;
	if (s->g == 0)
		guardian(s);
	close(s->life[0]);
	close(s->msgp[1]);
	close(s->gop[0]);
	return 0;
}

/* Tell the guardian to give up, and wait for it. */
static void stop_guardian(struct sup *s)
{
	close(s->gop[1]);
	while (waitpid(s->g, NULL, 0) < 0 && errno == EINTR)
		;
	close(s->life[1]);
	close(s->msgp[0]);
	if (s->tty >= 0)
		close(s->tty);
}

static void publish_deadline(struct sup *s, struct lk_lock *lk)
{
	uint64_t left = lk_lock_remaining_ms(lk);

	if (lk_lock_mode(lk) != LK_MODE_LEASE)
		return;
	atomic_store(&s->sh->deadline_ns, boot_ns() + (int64_t)left * 1000000);
}

static int supervise(struct sup *s, struct lk_lock *lk, struct run_state *rs)
{
	const struct run_opts *o = s->o;
	sigset_t fwd, orig;
	int sfd, status = 0, have_status = 0, exec_err = 0, lost = 0, outlived = -1;
	int pending[NSIG] = { 0 }, self_stop = 0, rc, lease = lk_lock_mode(lk) == LK_MODE_LEASE;
	uint64_t token = lk_lock_token(lk);
	struct lk_lease_params lp = { 0 };
	pid_t c = 0;

	sigemptyset(&fwd);
	sigaddset(&fwd, SIGINT);
	sigaddset(&fwd, SIGTERM);
	sigaddset(&fwd, SIGHUP);
	sigaddset(&fwd, SIGQUIT);
	sigaddset(&fwd, SIGTSTP);
	sigaddset(&fwd, SIGTTIN);
	sigaddset(&fwd, SIGTTOU);
	sigaddset(&fwd, SIGCONT);
	sigaddset(&fwd, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &fwd, &orig) < 0)
		return EXIT_INTERNAL;
	sfd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		errline("%s: cannot set up supervision: %s", o->name, strerror(errno));
		return EXIT_INTERNAL;
	}
	if (lease) {
		lk_lock_lease_params(lk, &lp);
		publish_deadline(s, lk);
	}
	if (write(s->gop[1], &token, sizeof(token)) != (ssize_t)sizeof(token)) {
		errline("%s: supervisor process is gone", o->name);
		close(sfd);
		return EXIT_INTERNAL;
	}

	for (;;) {
		struct pollfd pfd[3] = { { sfd, POLLIN, 0 },
					 { s->msgp[0], POLLIN, 0 },
					 { lease ? rs->lostfd[0] : -1, POLLIN, 0 } };
		int timeout = lease ? (int)(lp.renew_ms / 2 ? lp.renew_ms / 2 : 1) : -1;

		if (poll(pfd, 3, timeout) < 0 && errno != EINTR)
			break;
		if (lease && !lost) {
			if (lk_lock_check(lk) < 0) {
				/* The lease is gone: COMMAND must stop before anyone may
				 * take over. The guardian enforces the deadline too; pull
				 * it in so that it acts now. */
				lost = 1;
				atomic_store(&s->sh->deadline_ns, boot_ns());
				/* wake the guardian so that it acts now, not at the old deadline */
				if (write(s->gop[1], "!", 1) < 0) {
					/* it is gone already */
				}
				if (c > 0)
					kill(-c, SIGTERM);
				errline("%s: lease lost (%s); stopping COMMAND", o->name,
					lk_lock_errmsg(lk)[0] ? lk_lock_errmsg(lk) : "not renewed in time");
			} else {
				publish_deadline(s, lk);
			}
		}
		if (pfd[2].revents) {
			char b[16];

			while (read(rs->lostfd[0], b, sizeof(b)) > 0)
				;
		}
		if (pfd[1].revents) {
			struct msg m;

			while (read(s->msgp[0], &m, sizeof(m)) == (ssize_t)sizeof(m)) {
				switch (m.type) {
				case MSG_PID:
					c = (pid_t)m.val;
					for (int sig = 1; sig < NSIG; sig++)
						if (pending[sig]) {
							kill(-c, sig);
							pending[sig] = 0;
						}
					break;
				case MSG_EXECFAIL:
					exec_err = m.val;
					break;
				case MSG_STOPPED:
					if (s->tty >= 0 || self_stop) {
						/* show the shell a stopped job */
						if (s->tty >= 0)
							tcsetpgrp(s->tty, getpgrp());
						self_stop = 0;
						kill(getpid(), SIGSTOP);
					}
					break;
				case MSG_ENFORCED:
					lost = 1;
					break;
				case MSG_OUTLIVED:
					outlived = m.val;
					break;
				case MSG_EXIT:
					status = m.val;
					have_status = 1;
					break;
				}
			}
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				int sig = (int)si.ssi_signo;

				switch (sig) {
				case SIGCHLD:
					break;
				case SIGCONT:
					if (c > 0) {
						if (s->tty >= 0 && tcgetpgrp(s->tty) == getpgrp())
							tcsetpgrp(s->tty, c);
						kill(-c, SIGCONT);
					}
					break;
				case SIGTSTP:
				case SIGTTIN:
				case SIGTTOU:
					/* someone stopped lockctl: stop COMMAND, then ourselves */
					self_stop = 1;
					if (c > 0)
						kill(-c, SIGTSTP);
					else
						pending[SIGTSTP] = 1;
					break;
				default:
					if (c > 0)
						kill(-c, sig);
					else
						pending[sig] = 1;
				}
			}
		}
		/* Has the guardian exited? Only then is everything dead. Once it
		 * has said its last word, it is about to: wait for it. */
		int gs;
		pid_t p;

		do
			p = waitpid(s->g, &gs, have_status || exec_err ? 0 : WNOHANG);
		while (p < 0 && errno == EINTR);

		if (p == s->g) {
			/* its last messages were written before it exited */
			struct msg m;

			while (read(s->msgp[0], &m, sizeof(m)) == (ssize_t)sizeof(m)) {
				if (m.type == MSG_EXIT) {
					status = m.val;
					have_status = 1;
				} else if (m.type == MSG_EXECFAIL) {
					exec_err = m.val;
				} else if (m.type == MSG_OUTLIVED) {
					outlived = m.val;
				} else if (m.type == MSG_ENFORCED) {
					lost = 1;
				}
			}
			if (!have_status && !exec_err) {
				/* the guardian died: clean up in its place */
				errline("%s: supervisor process died (%s); killing COMMAND", o->name,
					WIFSIGNALED(gs) ? strsignal(WTERMSIG(gs)) : "exited");
				kill_and_reap_all(c);
				status = -1;
			}
			/* its orphans, if any, came to us: none may outlive the lock */
			if (!(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD))
				kill_and_reap_all(c);
			break;
		}
	}

	if (s->tty >= 0) {
		tcsetpgrp(s->tty, getpgrp());
		close(s->tty);
		s->tty = -1;
	}
	close(sfd);
	close(s->msgp[0]);
	close(s->life[1]);
	close(s->gop[1]);
	sigprocmask(SIG_SETMASK, &orig, NULL);

	if (outlived >= 0)
		errline("%s: COMMAND outlived the earliest possible takeover by %d ms; it may have "
			"acted after another holder took over (fencing tokens catch that)",
			o->name, outlived);
	if (lease && !lost && lk_lock_check(lk) < 0)
		lost = 1;
	if (exec_err > 0) {
		errline("%s: %s: %s", o->name, o->shell_cmd ? "/bin/sh" : o->cmd[0],
			strerror(exec_err));
		return exec_err == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC;
	}
	if (exec_err < 0) {
		errline("%s: cannot start COMMAND: %s", o->name, strerror(-exec_err));
		return EXIT_INTERNAL;
	}
	if (lost)
		return EXIT_LOST;
	if (status == -1)
		return EXIT_INTERNAL;
	if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		rc = 128 + WTERMSIG(status);
	else
		rc = EXIT_INTERNAL;
	return rc;
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
	struct run_state rs = { { -1, -1 } };
	struct sup s = { 0 };
	struct lk_store *st = NULL;
	struct lk_lock *lk = NULL;
	char abs[PATH_MAX + 8];
	const char *store_env = c->store;
	int r, rc;

	parse_run(&o, argc, argv);
	rc = open_store(c, 0, &st);
	if (rc)
		return rc;

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

	s.o = &o;
	s.tty = -1;
	s.sh = mmap(NULL, sizeof(*s.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s.sh == MAP_FAILED || pipe2(rs.lostfd, O_CLOEXEC | O_NONBLOCK) < 0) {
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

	r = start_guardian(&s);
	if (r < 0) {
		errline("%s: cannot start the supervisor: %s", o.name, strerror(-r));
		lk_lock_close(lk);
		lk_store_close(st);
		return EXIT_INTERNAL;
	}
	if (!lk) {
		lo.mode = LK_MODE_LEASE;
		lo.pid = s.g;
		lo.on_lost = on_lost;
		lo.userdata = &rs;
		r = lk_lock_open(st, o.name, &lo, &lk);
		if (r < 0) {
			errline("%s: %s", o.name, lk_store_errmsg(st));
			stop_guardian(&s);
			lk_store_close(st);
			return exit_for_lock_error(r);
		}
	}

	r = lk_lock_acquire(lk, o.nonblock ? 0 : o.wait_ms);
	if (r < 0) {
		if (r == -EWOULDBLOCK || r == -ETIMEDOUT) {
			report_busy(st, &o, r);
			rc = o.conflict_code;
		} else {
			errline("%s: %s", o.name, lk_lock_errmsg(lk));
			rc = exit_for_lock_error(r);
		}
		stop_guardian(&s);
		lk_lock_close(lk);
		lk_store_close(st);
		return rc;
	}

	rc = supervise(&s, lk, &rs);

	if (lk_lock_release(lk) < 0 && rc != EXIT_LOST && lk_lock_mode(lk) == LK_MODE_LEASE) {
		errline("%s: %s", o.name, lk_lock_errmsg(lk));
		rc = EXIT_LOST;
	}
	lk_lock_close(lk);
	lk_store_close(st);
	return rc;
}
