// SPDX-License-Identifier: MIT
/*
 * The code the benchmark programs have in common. Each of them measures
 * lockkit against a baseline taken in the same run and prints one table:
 * measurement, value, baseline, ratio, goal, verdict, then free-form notes.
 * Keeping the statistics and that table here means a median or a verdict is
 * computed the same way in every program, so their figures can be read side
 * by side; what differs between them (units, how a goal is worded, column
 * widths) is passed in by each program through struct bench_layout.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t bench_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * BENCH_NS_PER_S + ts.tv_nsec;
}

int64_t bench_now_ns(void)
{
	return bench_clock_ns(CLOCK_MONOTONIC);
}

/* An absolute deadline, so that signals interrupting the sleep do not stretch it. */
void bench_sleep_ns(int64_t ns)
{
	struct timespec ts;
	int64_t until = bench_now_ns() + ns;

	ts.tv_sec = until / BENCH_NS_PER_S;
	ts.tv_nsec = until % BENCH_NS_PER_S;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int rm_entry(const char *path, const struct stat *s, int flag, struct FTW *ftw)
{
	if (remove(path) < 0)
		fprintf(stderr, "%s: cannot remove %s: %s\n", bench_name, path, strerror(errno));
	return 0;
}

/* Depth first, so that a directory is empty when its turn comes. */
void bench_rm_tree(const char *path)
{
	nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

int bench_fail(int r, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", bench_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (r)
		fprintf(stderr, ": %s", strerror(-r));
	fputc('\n', stderr);
	return r ? r : -EIO;
}

static int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int bench_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_median_sorted(const int64_t *v, size_t n)
{
	return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

double bench_pct_sorted(const int64_t *v, size_t n, double pct)
{
	size_t k = (size_t)((pct / 100.0) * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1];
}

double bench_percentile(double *v, size_t n, double pct)
{
	double x = pct / 100.0 * (double)n;
	size_t k = (size_t)x;

	if ((double)k < x)
		k++;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

double bench_max_of(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		if (v[i] > m)
			m = v[i];
	return m;
}

void bench_fmt_dur(char *buf, size_t len, double ns, int sec_digits)
{
	if (ns < 1e3)
		snprintf(buf, len, "%.0f ns", ns);
	else if (ns < 1e6)
		snprintf(buf, len, "%.1f us", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, len, "%.2f ms", ns / 1e6);
	else
		snprintf(buf, len, "%.*f s", sec_digits, ns / 1e9);
}

void bench_table_init(struct bench_table *t, int max_rows, int max_notes, size_t note_len)
{
	t->nrows = 0;
	t->nnotes = 0;
	t->max_rows = max_rows < BENCH_MAX_ROWS ? max_rows : BENCH_MAX_ROWS;
	t->max_notes = max_notes < BENCH_MAX_NOTES ? max_notes : BENCH_MAX_NOTES;
	t->note_len = note_len < BENCH_NOTE_LEN ? note_len : BENCH_NOTE_LEN;
}

void bench_note(struct bench_table *t, const char *fmt, ...)
{
	va_list ap;

	if (t->nnotes >= t->max_notes)
		return;
	va_start(ap, fmt);
	vsnprintf(t->notes[t->nnotes++], t->note_len, fmt, ap);
	va_end(ap);
}

struct bench_row *bench_add_row(struct bench_table *t, const char *fmt, ...)
{
	struct bench_row *r;
	va_list ap;

	if (t->nrows >= t->max_rows)
		return NULL;
	r = &t->rows[t->nrows++];
	memset(r, 0, sizeof(*r));
	r->base = -1;
	va_start(ap, fmt);
	vsnprintf(r->name, sizeof(r->name), fmt, ap);
	va_end(ap);
	return r;
}

void bench_set_row(struct bench_row *r, int unit, double value, double base, enum bench_goal goal,
                   double goal_val)
{
	if (!r)
		return;
	r->unit = unit;
	r->value = value;
	r->base = base;
	r->goal = goal;
	r->goal_val = goal_val;
}

const char *bench_verdict(const struct bench_layout *l, const struct bench_row *r)
{
	switch (r->goal) {
	case BENCH_GOAL_RATIO:
		return r->base > 0 && r->value <= r->goal_val * r->base ? "ok" : l->missed;
	case BENCH_GOAL_ABS:
		return r->value <= r->goal_val + l->abs_slack ? "ok" : l->missed;
	default:
		return "-";
	}
}

void bench_print_table(const struct bench_layout *l, const struct bench_table *t)
{
	char val[32], base[32], ratio[32], goal[32];

	printf("%-*s %*s %*s %*s  %-*s %s\n", l->name_w, "measurement", l->value_w, l->value_head,
	       l->value_w, "baseline", l->ratio_w, "ratio", l->goal_w, "goal", "verdict");
	for (int i = 0; i < t->nrows; i++) {
		const struct bench_row *r = &t->rows[i];

		l->fmt_val(val, sizeof(val), r->unit, r->value);
		if (l->base_if_positive ? r->base > 0 : r->base >= 0) {
			l->fmt_val(base, sizeof(base), r->unit, r->base);
			snprintf(ratio, sizeof(ratio), "%.*f", l->ratio_digits, r->value / r->base);
		} else {
			snprintf(base, sizeof(base), "-");
			snprintf(ratio, sizeof(ratio), "-");
		}
		if (r->goal == BENCH_GOAL_NONE)
			snprintf(goal, sizeof(goal), "-");
		else
			l->fmt_goal(goal, sizeof(goal), r);
		printf("%-*s %*s %*s %*s  %-*s %s\n", l->name_w, r->name, l->value_w, val,
		       l->value_w, base, l->ratio_w, ratio, l->goal_w, goal, bench_verdict(l, r));
	}
	printf("\n");
	for (int i = 0; i < t->nnotes; i++)
		printf("%s\n", t->notes[i]);
}
