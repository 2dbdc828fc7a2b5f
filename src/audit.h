/* SPDX-License-Identifier: MIT */
/*
 * The audit log: a history of acquisitions, releases, lost leases, breaks
 * and elections, kept in the store as JSON lines, one file per writing
 * store handle. See audit.c for the design and docs/protocol.md for the
 * format.
 */
#ifndef LK_AUDIT_H
#define LK_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define LK_AUDIT_DIR ".audit"
/* Longest line written (a longer detail is cut). */
#define LK_AUDIT_LINE_MAX 4096
/* Defaults, each replaceable from the environment (see audit.c). */
#define LK_AUDIT_DEF_MAX_BYTES  (1024 * 1024)
#define LK_AUDIT_DEF_MAX_AGE_MS (7ull * 24 * 3600 * 1000)
#define LK_AUDIT_DEF_MAX_FILES  1000

struct lk__audit;

/* The store's writer: no I/O until the first line. NULL in *ret (and 0)
 * when the store cannot or must not write (read-only, LK_STORE_NO_AUDIT,
 * a backend without write_at). */
int lk__audit_open(struct lk_store *st, struct lk__audit **ret);
void lk__audit_free(struct lk__audit *a);

/* Whether a lock handle opened with these flags records its events. */
int lk__audit_wanted(const struct lk_store *st, enum lk_mode mode, uint32_t flags);

/*
 * Lock events, written from the thread that made the call (never from the
 * heartbeat engine). Each returns 0 or -errno; a failure never changes the
 * outcome of the lock operation, it leaves a message on the handle.
 */
int lk__audit_acquired(struct lk_lock *lk);
/* What a release needs to know about the hold, taken before releasing. */
struct lk__audit_hold {
	uint64_t token;
	int lost;            /* the engine's reason, 0 if it has not declared a loss */
	int64_t deadline_ns; /* the holder's deadline, CLOCK_BOOTTIME (0: none) */
};
void lk__audit_hold(const struct lk_lock *lk, struct lk__audit_hold *ret);
/* After the release: r is its result; -ENOLCK means the lease was lost. */
int lk__audit_released(struct lk_lock *lk, const struct lk__audit_hold *h, int r);
/* Any other event about a handle's lock ("elect", "resign", "demote"). */
int lk__audit_lock_event(struct lk_lock *lk, const char *event, uint64_t token, const char *detail);

/*
 * An event that no lock handle of this process makes: an administrative
 * break, say. Written whatever the lock's audit setting (the store's
 * LK_STORE_NO_AUDIT still applies). owner and detail may be NULL.
 * 0, -EOPNOTSUPP when the store does not write audit lines, or the storage
 * error; the failure is also left on the store (lk_store_errmsg()).
 */
int lk__audit_note(struct lk_store *st, const char *event, const char *lock, enum lk_mode mode,
                   uint64_t token, const char *owner, const char *detail);

/* Lines written and failures so far on this store; the last failure's
 * message into msg (may be NULL). */
void lk__audit_counts(struct lk_store *st, uint64_t *ret_written, uint64_t *ret_failed, char *msg,
                      size_t len);

/* ------------------------------------------------------------------------
 * Reading
 */

struct lk__audit_rec {
	int64_t time_ns; /* CLOCK_REALTIME of the event */
	uint64_t token;
	int64_t pid;
	uint64_t seq; /* the writer's line number, across its files */
	char event[32];
	char lock[LK_NAME_MAX + 1];
	char mode[16];
	char owner[LK_OWNER_MAX + 1];
	char host[LK_HOST_MAX + 1];
	char reason[32];
	char detail[512];
};

enum lk__audit_kind {
	LK_AUDIT_LINE = 0,   /* a valid record: rec is set */
	LK_AUDIT_TORN,       /* a last line without its newline: being written, or cut */
	LK_AUDIT_BAD,        /* a line that is not a record */
	LK_AUDIT_FOREIGN,    /* a file in the audit directory that no writer makes */
	LK_AUDIT_UNREADABLE, /* a file that could not be read */
};

struct lk__audit_item {
	enum lk__audit_kind kind;
	const char *file; /* its name inside the audit directory */
	uint64_t lineno;  /* 1-based; 0 for whole files */
	const char *text; /* the line, without its newline (not NUL-terminated) */
	size_t len;
	const struct lk__audit_rec *rec;
	const char *why; /* what is wrong (not LK_AUDIT_LINE) */
};

typedef int (*lk__audit_fn)(const struct lk__audit_item *it, void *userdata);

/*
 * Every line of every audit file of the store, file by file, in file
 * order. A store without an audit directory has no lines (0). A non-zero
 * return from fn stops the scan and is returned.
 */
int lk__audit_scan(struct lk_store *st, lk__audit_fn fn, void *userdata, struct lk_err *err);
/* Parse one line (no newline): 0, or -EBADMSG with *ret_why. */
int lk__audit_parse(const char *line, size_t len, struct lk__audit_rec *ret, const char **ret_why);
/* "2026-01-02T03:04:05.678Z" into buf (at least 32 bytes). */
void lk__audit_time(char *buf, size_t len, int64_t ns);

#endif
