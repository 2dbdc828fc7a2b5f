/* SPDX-License-Identifier: MIT */
/*
 * Interruptible kernel waits. A blocking F_OFD_SETLKW can only be ended from
 * outside by a signal; see wait.c for why and how.
 */
#ifndef LK_WAIT_H
#define LK_WAIT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

struct lk__waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int waiting;      /* a thread is inside lk__wait_begin .. lk__wait_end */
	atomic_int cancel; /* set by lk__wait_cancel */
	pthread_t thread;
	int signo;
	int have_timer;
	timer_t timer;
	int unblocked;    /* we unblocked signo and must block it again */
	struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec < 0: none */
};

int lk__waiter_init(struct lk__waiter *w, int signo);
void lk__waiter_destroy(struct lk__waiter *w);

/*
 * Enter a wait that may block in the kernel. timeout_ms < 0: no deadline.
 * Returns 0, or -errno when the wait cannot be set up (-EBUSY if the program
 * owns the signal, -EALREADY if the handle is already waiting).
 */
int lk__wait_begin(struct lk__waiter *w, int64_t timeout_ms);
/*
 * Call after a blocking syscall returned EINTR: -ECANCELED, -ETIMEDOUT, or 0
 * to go round again.
 */
int lk__wait_check(struct lk__waiter *w);
void lk__wait_end(struct lk__waiter *w);
/* From another thread: make the waiting call return -ECANCELED. */
int lk__wait_cancel(struct lk__waiter *w);

#endif
