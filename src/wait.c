// SPDX-License-Identifier: MIT
/*
 * Interruptible kernel waits.
 *
 * A waiter for a kernel-mode lock sleeps in fcntl(F_OFD_SETLKW) so that the
 * kernel wakes it the instant the lock is released: no polling, no extra
 * latency. The only way to end that sleep early (on a timeout, or when another
 * thread cancels the acquire) is a signal delivered to the sleeping thread,
 * which makes fcntl() fail with EINTR.
 *
 * So a wait with a deadline arms a POSIX timer that sends a reserved real-time
 * signal to this very thread (SIGEV_THREAD_ID), and lk__wait_cancel() sends
 * the same signal with pthread_kill(). The handler does nothing; it exists so
 * that the signal interrupts the syscall instead of killing the process, and
 * it is installed without SA_RESTART for the same reason.
 *
 * There is an unavoidable window between checking "am I cancelled / past the
 * deadline?" and entering fcntl(): a signal landing there is consumed before
 * the sleep starts. Both senders therefore repeat themselves: the timer has a
 * 1 ms interval after its first expiry, and lk__wait_cancel() re-sends every
 * millisecond until the waiter has left. A lost wake-up costs at most 1 ms,
 * and only after a deadline has already passed or a cancel was requested.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wait.h"

static void lk__wake_handler(int sig)
{
	(void)sig;
}

/* Make sure signo runs our empty handler. */
static int install_handler(int signo)
{
	struct sigaction old, sa;

	if (sigaction(signo, NULL, &old) < 0)
		return -errno;
	if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == lk__wake_handler)
		return 0;
	if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
		return -EBUSY;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lk__wake_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: the point is to interrupt */
	if (sigaction(signo, &sa, NULL) < 0)
		return -errno;
	return 0;
}

int lk__waiter_init(struct lk__waiter *w, int signo)
{
	pthread_condattr_t ca;
	int r;

	memset(w, 0, sizeof(*w));
	if (pthread_mutex_init(&w->mu, NULL))
		return -ENOMEM;
	/* cancel's short waits must not stretch when the wall clock steps back */
	if (pthread_condattr_init(&ca)) {
		pthread_mutex_destroy(&w->mu);
		return -ENOMEM;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	r = pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (r) {
		pthread_mutex_destroy(&w->mu);
		return -ENOMEM;
	}
	w->signo = signo ? signo : SIGRTMAX - 2;
	return 0;
}

void lk__waiter_destroy(struct lk__waiter *w)
{
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

static void ts_add_ms(struct timespec *ts, int64_t ms)
{
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int lk__wait_begin(struct lk__waiter *w, int64_t timeout_ms)
{
	sigset_t set, old;
	int r;

	r = install_handler(w->signo);
	if (r < 0)
		return r;

	pthread_mutex_lock(&w->mu);
	if (w->waiting) {
		pthread_mutex_unlock(&w->mu);
		return -EALREADY;
	}
	w->waiting = 1;
	w->thread = pthread_self();
	atomic_store(&w->cancel, 0);
	w->have_timer = 0;
	w->unblocked = 0;
	w->deadline.tv_sec = -1;
	pthread_mutex_unlock(&w->mu);

	sigemptyset(&set);
	sigaddset(&set, w->signo);
	if (pthread_sigmask(SIG_UNBLOCK, &set, &old) == 0 && sigismember(&old, w->signo))
		w->unblocked = 1;

	if (timeout_ms >= 0) {
		struct sigevent sev;
		struct itimerspec its;

		clock_gettime(CLOCK_MONOTONIC, &w->deadline);
		ts_add_ms(&w->deadline, timeout_ms);

		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = w->signo;
		sev._sigev_un._tid = gettid();
		if (timer_create(CLOCK_MONOTONIC, &sev, &w->timer) < 0) {
			r = -errno;
			lk__wait_end(w);
			return r;
		}
		w->have_timer = 1;
		memset(&its, 0, sizeof(its));
		its.it_value = w->deadline;
		its.it_interval.tv_nsec = 1000000;
		if (timer_settime(w->timer, TIMER_ABSTIME, &its, NULL) < 0) {
			r = -errno;
			lk__wait_end(w);
			return r;
		}
	}
	return 0;
}

int lk__wait_check(struct lk__waiter *w)
{
	struct timespec now;

	if (atomic_load(&w->cancel))
		return -ECANCELED;
	if (w->deadline.tv_sec >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > w->deadline.tv_sec ||
		    (now.tv_sec == w->deadline.tv_sec && now.tv_nsec >= w->deadline.tv_nsec))
			return -ETIMEDOUT;
	}
	return 0;
}

void lk__wait_end(struct lk__waiter *w)
{
	if (w->have_timer) {
		timer_delete(w->timer);
		w->have_timer = 0;
	}
	if (w->unblocked) {
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, w->signo);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		w->unblocked = 0;
	}
	pthread_mutex_lock(&w->mu);
	w->waiting = 0;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int lk__wait_cancel(struct lk__waiter *w)
{
	pthread_mutex_lock(&w->mu);
	if (w->waiting && pthread_equal(w->thread, pthread_self())) {
		pthread_mutex_unlock(&w->mu);
		return -EDEADLK;
	}
	while (w->waiting) {
		struct timespec ts;

		atomic_store(&w->cancel, 1);
		pthread_kill(w->thread, w->signo);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts_add_ms(&ts, 1);
		pthread_cond_timedwait(&w->cv, &w->mu, &ts);
	}
	pthread_mutex_unlock(&w->mu);
	return 0;
}
