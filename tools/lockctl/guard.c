// SPDX-License-Identifier: MIT
/*
 * Supervision for lockctl run and lockctl elect: run a command while holding a
 * lock, and make sure the command and everything it started are dead before
 * the lock can be taken by anyone else, even when lockctl itself is SIGKILLed.
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
 *
 * lockctl elect (elect.c) uses the same pieces with a fresh guardian for
 * each term, forked before it campaigns.
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

#include "guard.h"
#include "internal.h"

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


void guard_on_lost(struct lk_lock *lk, int reason, void *userdata)
{
	struct run_state *rs = userdata;
	char b = 1;

	(void)lk;
	atomic_store(&rs->reason, reason);
	if (write(rs->lostfd[1], &b, 1) < 0) {
		/* lockctl notices on its next check anyway */
	}
}

int guard_start(struct sup *s)
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

unsigned guard_file_epoch(struct lk_lock *lk)
{
	return lk && lk->mode == LK_MODE_KERNEL && lk->bk ? lk->bk->reopened : 0;
}

/* Tell the guardian to give up, and wait for it. */
void guard_stop(struct sup *s)
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

int guard_supervise(struct sup *s, struct lk_lock *lk, struct run_state *rs)
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
		int was_lost = lost;

		if (s->tick) {
			int t = s->tick(s->tick_ud, 0);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
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
					lk_lock_errmsg(lk)[0]		   ? lk_lock_errmsg(lk)
					: atomic_load(&rs->reason) == -ESTALE ? "a newer generation "
										"exists: broken or "
										"taken over"
										: "not renewed in time");
			} else {
				publish_deadline(s, lk);
			}
		}
		if (pfd[2].revents) {
			char b[16];

			while (read(rs->lostfd[0], b, sizeof(b)) > 0)
				;
		}
		if (s->tick && lost != was_lost)
			s->tick(s->tick_ud, 1);
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
					if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP ||
					    sig == SIGQUIT)
						s->stop_signal = sig;
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

int guard_init(struct sup *s, const struct run_opts *o)
{
	s->o = o;
	s->tty = -1;
	s->sh = mmap(NULL, sizeof(*s->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		     -1, 0);
	if (s->sh == MAP_FAILED) {
		s->sh = NULL;
		return -errno;
	}
	return 0;
}
