/* SPDX-License-Identifier: MIT */
/*
 * Internal declarations shared by the core and the bundled backends.
 * Nothing here is part of the public API; non-static helpers are prefixed
 * lk__ and are not exported from the shared library.
 */
#ifndef LK_INTERNAL_H
#define LK_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"
#include "lockkit/backend.h"
#include "events.h"
#include "wait.h"

#define LK_HOST_MAX 63
#define LK_NAME_MAX 255

/* Fork detection: a page that the kernel wipes in a forked child. */
struct lk__forkguard {
	volatile uint64_t *page; /* MADV_WIPEONFORK page, or NULL */
	pid_t pid;               /* fallback when the page is not available */
};

int lk__forkguard_init(struct lk__forkguard *fg);
void lk__forkguard_free(struct lk__forkguard *fg);
/* 1 if the caller is the process that initialised fg. */
int lk__forkguard_ok(const struct lk__forkguard *fg);

struct lk_store {
	const struct lk_backend *be;
	struct lk_bstore *bs;
	struct lk_store_opts opts;
	char *url;
	char *path;
	struct lk__forkguard fg;
	char host[LK_HOST_MAX + 1];
	uint8_t boot_id[16];
	uint64_t pidns;          /* inode of our pid namespace (0 if unknown) */
	pthread_mutex_t engine_mu;
	struct lk__engine *engine; /* started by the first lease */
	char errmsg[256];
	struct lk__audit *audit; /* audit log writer (audit.c); NULL: none */
	struct lk__stats stats;  /* events.c */
	int ev_on;               /* on_event or on_log is set */
};

struct lk__engine;
struct lk__lease;

struct lk_lock {
	struct lk_store *st;
	struct lk__lease *lease; /* lease mode only */
	struct lk_bklock *bk;
	enum lk_mode mode;
	uint32_t flags;
	_Atomic uint64_t token; /* 0 when not held */
	atomic_int busy;        /* an acquire is running on this handle */
	struct lk__waiter waiter;
	char name[LK_NAME_MAX + 1];
	char owner[LK_OWNER_MAX + 1];
	char errmsg[256];
	int audit;              /* records its events in the audit log (audit.c) */
	int64_t t_acquired_ns;  /* CLOCK_MONOTONIC when the hold began (events.c) */
	int contended;          /* set by lease.c when an acquire had to wait */
};

/* Error messages */
void lk__err_set(struct lk_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lk__msg_set(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Labels (owner, host) are cut to fit fixed fields at a UTF-8 character
 * boundary, never inside a character. */
size_t lk__label_len(const char *s, size_t cap);
void lk__label_copy(char *dst, size_t cap, const char *src);

/* Names gathered by a listing (an lk_list_fn), sorted by lk__names_sort(). */
struct lk__names {
	char **v;
	size_t n, cap;
};
int lk__names_add(const char *name, void *names);
void lk__names_sort(struct lk__names *l);
void lk__names_free(struct lk__names *l);

/* Store URL parsing: fills *ret with pointers into buf (which it owns). */
struct lk__url_buf {
	struct lk_url url;
	char buf[2 * 4096 + 512];
};
int lk__url_parse(const char *s, struct lk__url_buf *ret, struct lk_err *err);

/* CRC-32C (Castagnoli) */
uint32_t lk__crc32c(uint32_t crc, const void *buf, size_t len);

/* Host facts read once per store. */
int lk__read_boot_id(uint8_t ret[16]);
void lk__hostname(char *buf, size_t len);

/* Clocks */
int64_t lk__boottime_ns(void);
int64_t lk__monotonic_ns(void);
int64_t lk__realtime_ns(void);
uint64_t lk__random64(void);
/* Start time of a process (clock ticks after boot), 0 if it does not exist. */
uint64_t lk__pid_start(int32_t pid);
/* The same, and its state letter from /proc (R, S, Z...). */
uint64_t lk__pid_stat(int32_t pid, char *ret_state);

/* Lease mode (lease.c) */
int lk__lease_open(struct lk_lock *lk, const struct lk_lock_opts *o, struct lk_err *err);
void lk__lease_close(struct lk_lock *lk);
int lk__lease_acquire(struct lk_lock *lk, int64_t timeout_ms, struct lk_err *err);
int lk__lease_release(struct lk_lock *lk, struct lk_err *err);
int lk__lease_cancel(struct lk_lock *lk);
int lk__lease_check(const struct lk_lock *lk);
uint64_t lk__lease_remaining_ms(const struct lk_lock *lk);
int lk__lease_params(const struct lk_lock *lk, struct lk_lease_params *ret);
int lk__lease_status(struct lk_store *st, const char *name, struct lk_status *ret,
		     struct lk_err *err);
/* Create lock directory name, born non-empty; 0 also when it already exists. */
int lk__lease_create_dir(struct lk_store *st, const char *name, struct lk_err *err);

/*
 * Administration (lockctl break / prune; docs/protocol.md, section 26a).
 * Neither is public API: both end or remove what others may be using, and
 * only an administrator should decide that.
 */
#define LK__BREAK_NOW 1u  /* free at once; fencing tokens are the only protection */
struct lk__break_res {
	int exists;            /* the lock has been used */
	enum lk_mode mode;
	uint64_t old_token;    /* the generation that was ended */
	int old_valid;         /* its record could be read */
	uint8_t old_state;     /* enum lk__lstate */
	struct lk_holder old;  /* its holder */
	uint64_t new_token;    /* the BROKEN generation */
	int freed;             /* LK__BREAK_NOW: rewritten RELEASED */
	uint64_t wait_ms;      /* T*(1+rho): how long others treat it as held */
};
/* 0; -ENOLCK free, -EALREADY already broken, -EOPNOTSUPP kernel mode. */
int lk__lock_break(struct lk_store *st, const char *name, const char *label, unsigned flags,
		   struct lk__break_res *ret, struct lk_err *err);
int lk__lease_break(struct lk_store *st, const char *name, const char *label, unsigned flags,
		    struct lk__break_res *ret, struct lk_err *err);

#define LK__PRUNE_WAIT 1u /* watch held leases that look expired for T*(1+rho) */
struct lk__prune_res {
	enum lk_mode mode;
	int removed;           /* 1: the entry is gone */
	uint64_t token;        /* its newest token (0: unknown) */
	int64_t last_ns;       /* CLOCK_REALTIME of its last activity (0: unknown) */
	char why[200];         /* why it was kept */
};
/* older_than_ms < 0: any age. 0 (removed or kept, see ret) or -errno. */
int lk__lock_prune(struct lk_store *st, const char *name, const char *label,
		   int64_t older_than_ms, unsigned flags, struct lk__prune_res *ret,
		   struct lk_err *err);
int lk__lease_prune(struct lk_store *st, const char *name, const char *label,
		    int64_t older_than_ms, unsigned flags, struct lk__prune_res *ret,
		    struct lk_err *err);

/* Backends bundled in this build. */
extern const struct lk_backend lk__posix_backend;
#ifdef LK_HAVE_NFS
extern const struct lk_backend lk__nfs_backend;
/* NFS requests an nfs:// store has sent, and TCP data segments sent on
 * its connection (for the benchmark). */
uint64_t lk__nfs_calls(struct lk_bstore *bs);
int64_t lk__nfs_rpcs(struct lk_bstore *bs);
/* 0 if an nfs:// query string (NULL: none) holds only accepted arguments. */
int lk__nfs_check_args(const char *query, struct lk_err *err);
#endif

#endif
