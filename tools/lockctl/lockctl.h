/* SPDX-License-Identifier: MIT */
#ifndef LOCKCTL_H
#define LOCKCTL_H

#include <stdint.h>
#include <stdio.h>

#include "lockkit.h"

/* Exit statuses (sysexits.h values where one fits). */
#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69
#define EXIT_INTERNAL 70
#define EXIT_IOERR 74
#define EXIT_LOST 75
#define EXIT_NOEXEC 126
#define EXIT_NOTFOUND 127

struct ctx {
	const char *store;   /* as given or defaulted */
	int store_is_default;
	int verbose;         /* -v: events as lines on stderr (-vv: debug too) */
	int log_json;        /* --log-json: events as JSON lines on stderr */
};

/* obs.c: -v and --log-json, installed on every store lockctl opens */
void log_setup(const struct ctx *c, struct lk_store_opts *o);
/* metrics.c: write a file atomically (temporary file, fsync, rename);
 * 0 or an exit status */
int textfile_write(const char *path, void (*fill)(FILE *f, const void *ud), const void *ud);

/* util.c */
/* The lock a command is about: error lines name it once it is known. */
extern const char *lockctl_lock_name;
void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void errline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int exit_for_store_error(int err);
int exit_for_lock_error(int err);
/* Open the store; for read-only commands a missing store is not an error
 * (*ret = NULL, returns 0). Prints the reason and returns an exit status on
 * failure. */
int open_store(struct ctx *c, int readonly, struct lk_store **ret);
void json_str(FILE *f, const char *s);
void fmt_rfc3339(char *buf, size_t len, int64_t ns);
int parse_duration_arg(const char *opt, const char *arg, uint64_t *ret_ms);
int want_help(int argc, char **argv);

/* commands */
int cmd_run(struct ctx *c, int argc, char **argv);
int cmd_status(struct ctx *c, int argc, char **argv);
int cmd_ls(struct ctx *c, int argc, char **argv);
int cmd_doctor(struct ctx *c, int argc, char **argv);
int cmd_metrics(struct ctx *c, int argc, char **argv);
int cmd_elect(struct ctx *c, int argc, char **argv);
int cmd_leader(struct ctx *c, int argc, char **argv);
int cmd_watch(struct ctx *c, int argc, char **argv);
int cmd_break(struct ctx *c, int argc, char **argv);
int cmd_prune(struct ctx *c, int argc, char **argv);
int cmd_log(struct ctx *c, int argc, char **argv);

extern const char *const usage_run;
extern const char *const usage_status;
extern const char *const usage_ls;
extern const char *const usage_doctor;
extern const char *const usage_metrics;
extern const char *const usage_elect;
extern const char *const usage_leader;
extern const char *const usage_watch;
extern const char *const usage_break;
extern const char *const usage_prune;
extern const char *const usage_log;

#endif
