/* SPDX-License-Identifier: MIT */
/*
 * What the benchmark programs (bench_lock, bench_lease, bench_nfs) share: the
 * statistics they reduce their samples with, the clocks they time with, and
 * the result table they print. Each program keeps its own words for a goal
 * and its own units; the table takes those through struct bench_layout so
 * that the rows are kept, judged and lined up in one place.
 */
#ifndef LK_BENCH_COMMON_H
#define LK_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The program's name, defined by each program, for its messages. */
extern const char bench_name[];

#define BENCH_NS_PER_S 1000000000LL

int64_t bench_clock_ns(clockid_t id);
int64_t bench_now_ns(void);
void bench_sleep_ns(int64_t ns);

/* Remove path and all below it, saying what could not be removed. */
void bench_rm_tree(const char *path);

/* Print why something failed (prefixed with bench_name) and pass r on. */
int __attribute__((format(printf, 2, 3))) bench_fail(int r, const char *fmt, ...);

int bench_cmp_i64(const void *a, const void *b);
/* Median of v; sorts v. */
double bench_median(double *v, size_t n);
/* Median of an already sorted array. */
double bench_median_sorted(const int64_t *v, size_t n);
/* Nearest-rank percentile of a sorted array, pct in (0, 100]. */
double bench_pct_sorted(const int64_t *v, size_t n, double pct);
/* Nearest-rank percentile, pct in (0, 100]; sorts v. */
double bench_percentile(double *v, size_t n, double pct);
double bench_max_of(const double *v, size_t n);

/* "812 ns", "3.4 us", "1.25 ms"; seconds with sec_digits decimals. */
void bench_fmt_dur(char *buf, size_t len, double ns, int sec_digits);

enum bench_goal {
	BENCH_GOAL_NONE,  /* informational row */
	BENCH_GOAL_RATIO, /* value / baseline <= goal */
	BENCH_GOAL_ABS,   /* value <= goal */
};

struct bench_row {
	char name[96];
	int unit; /* the program's own unit, passed back to its formatters */
	double value;
	double base; /* < 0: no baseline */
	enum bench_goal goal;
	double goal_val;
};

#define BENCH_MAX_ROWS  64
#define BENCH_MAX_NOTES 32
#define BENCH_NOTE_LEN  512

/* Rows and notes; the limits are the program's, at most the BENCH_MAX_*. */
struct bench_table {
	struct bench_row rows[BENCH_MAX_ROWS];
	int nrows, max_rows;
	char notes[BENCH_MAX_NOTES][BENCH_NOTE_LEN];
	int nnotes, max_notes;
	size_t note_len;
};

/* How a program prints its table. */
struct bench_layout {
	const char *value_head; /* heading of the value column */
	int name_w, value_w, ratio_w, goal_w;
	int ratio_digits;
	const char *missed;   /* the verdict word for a missed goal */
	double abs_slack;     /* an absolute goal still met this far above it */
	int base_if_positive; /* a baseline shows only when > 0, not >= 0 */
	void (*fmt_val)(char *buf, size_t len, int unit, double v);
	void (*fmt_goal)(char *buf, size_t len, const struct bench_row *r);
};

void bench_table_init(struct bench_table *t, int max_rows, int max_notes, size_t note_len);
void __attribute__((format(printf, 2, 3))) bench_note(struct bench_table *t, const char *fmt, ...);
/* A new row named by fmt, without a baseline or goal; NULL when full. */
struct bench_row *__attribute__((format(printf, 2, 3)))
bench_add_row(struct bench_table *t, const char *fmt, ...);
/* Fill a row from bench_add_row(); r may be NULL (the table was full). */
void bench_set_row(struct bench_row *r, int unit, double value, double base, enum bench_goal goal,
                   double goal_val);
const char *bench_verdict(const struct bench_layout *l, const struct bench_row *r);
void bench_print_table(const struct bench_layout *l, const struct bench_table *t);

#endif
