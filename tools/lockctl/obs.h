/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus textfile of "run" and "elect" (--metrics-textfile), kept
 * by the lockctl process from its store's counters (obs.c).
 */
#ifndef LOCKCTL_OBS_H
#define LOCKCTL_OBS_H

#include <stdint.h>

#include "lockctl.h"

struct run_metrics {
	const char *path; /* NULL: no textfile */
	const char *name; /* the lock or election */
	struct lk_store *st;
	struct lk_lock *lk; /* NULL until opened */
	int election;       /* an "elect": leadership series too */
	int leading;
	uint64_t last_token; /* of the current or last hold */
	int64_t next_ns;     /* CLOCK_MONOTONIC of the next periodic write */
};

/* Write the file now; 0 or an exit status (after an error line). */
int run_metrics_write(struct run_metrics *m);
/* A guardian tick: write if force or a refresh is due; returns the
 * milliseconds until the next one (-1: no textfile). */
int run_metrics_tick(void *ud, int force);

#endif
