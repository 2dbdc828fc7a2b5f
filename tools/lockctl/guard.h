/* SPDX-License-Identifier: MIT */
/*
 * The supervision shared by "lockctl run" and "lockctl elect": a guardian
 * process that shares the lock, runs COMMAND in its own process group and
 * makes sure COMMAND and everything it started are dead before the lock can
 * be taken by anyone else (see guard.c).
 */
#ifndef LOCKCTL_GUARD_H
#define LOCKCTL_GUARD_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockctl.h"

/* The command line of "run"; "elect" fills the fields that apply to it
 * (name, mode, ttl_ms, kill_after_*, shell_cmd, cmd, wait_ms,
 * conflict_code, grace_ms). */
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
	const char *metrics_textfile; /* --metrics-textfile PATH, or NULL */
};

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
	int stop_signal; /* the last SIGTERM, SIGINT, SIGHUP or SIGQUIT forwarded */
	/* Called by guard_supervise() on every wake-up (force: the lease was
	 * just lost); returns the ms until it wants to run again, -1: never.
	 * NULL: none. (--metrics-textfile) */
	int (*tick)(void *ud, int force);
	void *tick_ud;
};

struct run_state {
	int lostfd[2]; /* the engine's on_lost callback writes here */
	_Atomic int reason; /* on_lost's reason: -ETIMEDOUT or -ESTALE */
};

/* Map the state shared with guardians (s->sh); 0 or -errno. */
int guard_init(struct sup *s, const struct run_opts *o);
/* Fork the guardian; it waits for the token (guard_supervise) or for
 * guard_stop(). In kernel mode the lock must already be open, so that the
 * guardian shares its open file description. */
int guard_start(struct sup *s);
/* Tell a guardian that never got a token to give up, and wait for it. */
void guard_stop(struct sup *s);
/* Hand the held lock's token to the guardian, forward signals, enforce the
 * lease deadline and return once the guardian and everything under it have
 * exited: COMMAND's exit status, or an EXIT_* code (EXIT_LOST when the lease
 * was lost). rs->lostfd[0] becomes readable when the lease is lost. */
int guard_supervise(struct sup *s, struct lk_lock *lk, struct run_state *rs);
/*
 * Kernel mode: how often the lock's file was reopened under the handle (it
 * was pruned while we waited). The guardian shares the open file description
 * it was forked with; when this changes across an acquire, the guardian must
 * be started again before COMMAND runs, or the lock would not outlive a
 * SIGKILLed lockctl.
 */
unsigned guard_file_epoch(struct lk_lock *lk);
/* An lk_lost_fn for the lock: pokes rs->lostfd (userdata is the run_state). */
void guard_on_lost(struct lk_lock *lk, int reason, void *userdata);

#endif
