/* SPDX-License-Identifier: MIT */
/*
 * lockkit: locks, leases and fencing tokens built on what the filesystem and
 * the kernel already provide.
 *
 * This is the stable public API. Everything returns >= 0 on success and a
 * negative errno value on failure; errno itself is never used to report
 * errors. The vocabulary is small:
 *
 *   -EWOULDBLOCK  the lock is held by someone else (try acquire)
 *   -ETIMEDOUT    a timed acquire ran out of time
 *   -ECANCELED    a blocked acquire was cancelled with lk_lock_cancel()
 *   -ENOLCK       the handle does not hold the lock (or its lease was lost)
 *   -ESTALE       a lease was superseded by a newer generation (on_lost reason)
 *   -EINVAL       bad name, URL, option or a foreign file where a lock lives
 *   -EOPNOTSUPP   the store or mode cannot do what was asked
 *   -EPROTONOSUPPORT  a store URL scheme this build does not support
 *   -ECHILD       the handle was inherited across fork(); it belongs to the
 *                 parent and refuses to act in the child
 *   -EBUSY        the handle is in use by another call (see thread rules)
 *   -EIO, -ENOMEM, -EACCES, -EPERM, -ENOSPC, -EROFS  from the storage
 *
 * A human-readable detail of the last failure is kept per handle:
 * lk_store_errmsg() for store-level calls (including lk_lock_open()),
 * lk_lock_errmsg() for calls on a lock handle.
 *
 * Thread safety:
 *  - Different handles may be used concurrently from different threads,
 *    including several lock handles on the same name: they conflict with each
 *    other exactly as handles in different processes do.
 *  - A lock handle is used by one thread at a time, with three exceptions that
 *    any thread may call at any time: lk_lock_cancel(), lk_lock_token() and
 *    lk_lock_check().
 *  - A store handle may be shared by threads for lk_lock_open(); its error
 *    message is then only meaningful to a single caller.
 *  - lk_lock_close() and lk_store_close() must not race with other calls on
 *    the same handle. Close every lock before its store.
 *
 * Fork: handles remember the process that opened them. In a child created
 * by fork() every call on an inherited handle fails with -ECHILD, and
 * lk_lock_close() frees the child's copy without releasing the parent's lock.
 *
 * Waiting: a blocking or timed acquire of a kernel-mode lock sleeps in the
 * kernel (F_OFD_SETLKW) and is woken the moment the lock is released. To end
 * that sleep on timeout or cancel, lockkit sends the waiting thread a
 * real-time signal (default SIGRTMAX - 2, chosen by lk_store_opts.wait_signal)
 * whose handler does nothing. lockkit installs that handler on first use if
 * the signal's disposition is SIG_DFL, and refuses (-EBUSY) if the program
 * has its own handler there. The signal is unblocked in the waiting thread
 * only while it waits.
 */
#ifndef LOCKKIT_H
#define LOCKKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LK_BUILDING_LIBRARY) && defined(__GNUC__)
#define LK_API __attribute__((visibility("default")))
#else
#define LK_API
#endif

#define LK_VERSION_MAJOR 0
#define LK_VERSION_MINOR 1
#define LK_VERSION_PATCH 0
#define LK_VERSION_STRING "0.1.0"

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
LK_API const char *lk_version(void);

struct lk_store;
struct lk_lock;

/* ------------------------------------------------------------------------
 * Stores
 */

struct lk_event;
/* Observability callbacks; see "Events, statistics and logging" below. */
typedef void (*lk_event_fn)(const struct lk_event *ev, void *userdata);
typedef void (*lk_log_fn)(int level, const char *msg, void *userdata);

/* lk_store_opts.flags */
#define LK_STORE_NOCREATE (1u << 0) /* fail with -ENOENT if the store is missing */
#define LK_STORE_RDONLY (1u << 1)   /* observe only: no acquire, nothing created */
#define LK_STORE_EXTERNAL_ENGINE (1u << 2) /* the caller drives the heartbeat engine */
/* Write no audit log lines through this handle, whatever its locks ask for.
 * The audit log (docs/protocol.md, "Audit log") is a history of acquire,
 * release, lost, break and elect events kept in <store>/.audit/; lease-mode
 * locks write it by default, kernel-mode locks when opened with
 * LK_LOCK_AUDIT. A failed audit write never fails the lock operation: the
 * operation's result stands and lk_lock_errmsg() says what went wrong. */
#define LK_STORE_NO_AUDIT (1u << 4)

struct lk_store_opts {
	uint32_t size;       /* sizeof(struct lk_store_opts); set by the initializer */
	uint32_t flags;      /* LK_STORE_* */
	uint32_t dir_mode;   /* mode for a store directory created by open (0700) */
	uint32_t file_mode;  /* mode for lock files (0600) */
	int wait_signal;     /* signal that interrupts a timed wait; 0: SIGRTMAX - 2 */
	/* Observability (see "Events, statistics and logging" below); a caller
	 * built before these fields existed passes a smaller size and gets
	 * none of them. */
	lk_event_fn on_event; /* NULL: no events */
	void *event_userdata; /* passed to on_event */
	lk_log_fn on_log;     /* NULL: no log lines */
	void *log_userdata;   /* passed to on_log */
	int log_level;        /* most verbose LK_LOG_* passed to on_log; 0: LK_LOG_INFO */
};

#define LK_STORE_OPTS_INIT                                                     \
	{                                                                          \
		.size = sizeof(struct lk_store_opts), .flags = 0, .dir_mode = 0700,    \
		.file_mode = 0600, .wait_signal = 0, .on_event = NULL,                 \
		.event_userdata = NULL, .on_log = NULL, .log_userdata = NULL,          \
		.log_level = 0                                                         \
	}

/*
 * Open a store. url is a directory path ("/run/lockkit", "./locks") or a
 * file URL ("file:///run/lockkit"). The directory is created if missing,
 * with opts->dir_mode, unless LK_STORE_NOCREATE or LK_STORE_RDONLY is set.
 * A world-writable directory without the sticky bit is refused (-EPERM),
 * and so is a file_mode that lets others write (-EINVAL).
 * nfs://SERVER[:PORT]/EXPORT/DIR?version=3 reaches an NFS export through
 * libnfs (leases only): -EOPNOTSUPP for version=4, -EINVAL for arguments
 * that would turn client caching on or that lockkit does not know,
 * -EHOSTUNREACH when nothing can be mounted, -EPROTONOSUPPORT in a build
 * without libnfs. Other schemes: -EINVAL.
 * On failure *ret is untouched; lk_store_open_err() also says why.
 */
LK_API int lk_store_open(const char *url, const struct lk_store_opts *opts,
			 struct lk_store **ret);

/*
 * Like lk_store_open(), but on failure copies a human-readable reason into
 * errbuf (always NUL-terminated when errlen > 0). A store that failed to open
 * has no handle to ask lk_store_errmsg() about.
 */
LK_API int lk_store_open_err(const char *url, const struct lk_store_opts *opts,
			     struct lk_store **ret, char *errbuf, size_t errlen);

/* Close a store. NULL is a no-op. All its locks must be closed first. */
LK_API void lk_store_close(struct lk_store *st);

/* The detail of the last failure on this store handle ("" if none). */
LK_API const char *lk_store_errmsg(const struct lk_store *st);

/* The directory path the store lives in (borrowed, valid until close). */
LK_API const char *lk_store_path(const struct lk_store *st);

/*
 * The heartbeat engine that renews this store's leases: "io_uring",
 * "thread" (the fallback: blocking I/O on a worker thread, never on the
 * timer thread), or "none" before any lease was acquired. The io_uring
 * engine is probed at start; LOCKKIT_NO_URING=1 in the environment forces
 * the fallback.
 */
LK_API const char *lk_store_engine(const struct lk_store *st);

/* The engine a store opened now would start: "io_uring" or "thread". */
LK_API const char *lk_engine_default(void);

/*
 * For programs with their own event loop (store opened with
 * LK_STORE_EXTERNAL_ENGINE): no engine thread is started. Poll the
 * descriptor from lk_store_engine_fd() for POLLIN and call
 * lk_store_engine_process() when it is readable, and at the latest after
 * the timeout the previous call wrote to *ret_timeout_ms. Renewals,
 * deadlines and on_lost callbacks then run inside lk_store_engine_process(),
 * which never blocks on storage. Call both from one thread. The I/O itself
 * still runs asynchronously (io_uring, or the fallback's worker thread), and
 * no late call can postpone a deadline check made by
 * lk_lock_check(). A call made late delays renewals too, so call it by
 * the timeout it asked for. -EINVAL on a store opened without the flag.
 */
LK_API int lk_store_engine_fd(struct lk_store *st);
LK_API int lk_store_engine_process(struct lk_store *st, int64_t *ret_timeout_ms);

/* ------------------------------------------------------------------------
 * Locks
 */

enum lk_mode {
	LK_MODE_AUTO = 0,   /* adopt the mode of an existing lock; for a new name kernel mode
			     * on local filesystems, lease mode on network filesystems */
	LK_MODE_KERNEL = 1, /* OFD locks: the kernel arbitrates, a crash frees at once */
	LK_MODE_LEASE = 2,  /* lease files with a TTL and a heartbeat, for shared storage */
};

/* lk_lock_opts.flags */
#define LK_LOCK_SHARED (1u << 0) /* a shared (read) lock instead of an exclusive one */
/* Audit log (see LK_STORE_NO_AUDIT): record this lock's events, also in
 * kernel mode, where it is off by default (an audited kernel-mode acquire
 * or release costs a few more syscalls; without it, none). */
#define LK_LOCK_AUDIT (1u << 2)
/* Record none of this lock's events, also in lease mode. Without either
 * flag, LOCKKIT_AUDIT=1 (or 0) in the environment turns the log on (or
 * off) for every mode. Both flags at once: -EINVAL. Accepted in
 * lk_election_opts.flags too. */
#define LK_LOCK_NO_AUDIT (1u << 3)

#define LK_OWNER_MAX 63 /* longest owner label kept, in bytes */

/*
 * Called from the store's heartbeat engine when a lease is lost: at the
 * holder's deadline when renewals did not get through (reason -ETIMEDOUT),
 * or as soon as a renewal finds a newer generation, i.e. the lease was broken
 * or taken over (reason -ESTALE). The deadline falls a margin before the
 * earliest moment anyone else may take the lease, so stop acting on the
 * protected resource here. Do not close or release the lock from inside
 * the callback; lk_lock_check() and lk_lock_token() are fine.
 */
typedef void (*lk_lost_fn)(struct lk_lock *lk, int reason, void *userdata);

struct lk_lock_opts {
	uint32_t size;       /* sizeof(struct lk_lock_opts); set by the initializer */
	uint32_t flags;      /* LK_LOCK_* */
	enum lk_mode mode;   /* LK_MODE_* */
	const char *owner;   /* label shown to others (NULL: the program's name) */
	/* Lease mode only (0 means the default): */
	uint64_t ttl_ms;     /* lease duration T: 10000; at least 1000 */
	uint64_t renew_ms;   /* renewal interval: T/4; at most T/2 */
	uint32_t rho_ppm;    /* bound on clock-rate error between hosts: 10000 (1%) */
	lk_lost_fn on_lost;  /* NULL: none; see lk_lost_fn */
	void *userdata;      /* passed to on_lost */
	int32_t pid;         /* process whose death ends the hold at once for observers on
			      * this host (same-host fast path); 0: the caller */
};

#define LK_LOCK_OPTS_INIT                                                      \
	{                                                                          \
		.size = sizeof(struct lk_lock_opts), .flags = 0,                       \
		.mode = LK_MODE_AUTO, .owner = NULL, .ttl_ms = 0, .renew_ms = 0,       \
		.rho_ppm = 0, .on_lost = NULL, .userdata = NULL, .pid = 0              \
	}

/*
 * Open a handle on lock NAME in the store. Names are 1 to 255 characters
 * from [A-Za-z0-9._-] and do not start with '.'; anything else is -EINVAL.
 * In kernel mode the lock's file is created if missing; a lease-mode lock's
 * directory is created by the first acquire. A read-only store refuses with
 * -EROFS. A lock entry that is a symlink, not a regular file (kernel mode),
 * has other hard links or does not carry lockkit's header is refused with
 * -EINVAL and a message; so is a name already used in the other mode, and
 * kernel mode on a store that cannot do it is -EOPNOTSUPP. An entry of
 * either mode that others may write, or whose owner is not the caller, root,
 * the store's owner or (in a store writable by its group) in the store's
 * group, is refused with -EPERM. Opening does not acquire.
 */
LK_API int lk_lock_open(struct lk_store *st, const char *name,
			const struct lk_lock_opts *opts, struct lk_lock **ret);

/*
 * Acquire. timeout_ms < 0 waits for ever, 0 tries once (-EWOULDBLOCK when
 * held elsewhere), > 0 waits at most that long (-ETIMEDOUT). Acquiring a
 * handle that already holds the lock is -EBUSY. On success the hold has a
 * fencing token (lk_lock_token()) strictly greater than that of every
 * earlier acquisition of this lock, exclusive or shared, across crashes and
 * reboots.
 */
LK_API int lk_lock_acquire(struct lk_lock *lk, int64_t timeout_ms);

/* Release. -ENOLCK if this handle does not hold the lock. */
LK_API int lk_lock_release(struct lk_lock *lk);

/* Interrupt a blocked lk_lock_acquire() on this handle from another thread:
 * it returns -ECANCELED. Returns 0 once that acquire has returned, or at once
 * when no acquire is waiting. */
LK_API int lk_lock_cancel(struct lk_lock *lk);

/* Token of the current hold, 0 when not held. A lease that was lost keeps
 * reporting its token until lk_lock_release(), so that it can still be
 * logged; lk_lock_check() says whether the hold is still valid. */
LK_API uint64_t lk_lock_token(const struct lk_lock *lk);

/*
 * 0 while held; -ENOLCK when not held or when a lease was lost; -ECHILD in a
 * forked child. In lease mode it reads the clock itself: it fails from the
 * holder's deadline on, even if the heartbeat engine has not run yet.
 */
LK_API int lk_lock_check(struct lk_lock *lk);

/*
 * Lease mode: milliseconds until the holder's deadline (0 when not held or
 * lost). Kernel mode: UINT64_MAX while held, 0 otherwise.
 */
LK_API uint64_t lk_lock_remaining_ms(const struct lk_lock *lk);

/* The lease parameters in force for this handle (ttl, renew interval,
 * rho, margin), 0 on success; -EINVAL for kernel-mode handles. */
struct lk_lease_params {
	uint64_t ttl_ms;
	uint64_t renew_ms;
	uint32_t rho_ppm;
	uint64_t margin_ms; /* time between the holder's deadline and the earliest takeover */
};
LK_API int lk_lock_lease_params(const struct lk_lock *lk, struct lk_lease_params *ret);

/* Close the handle, releasing the lock if held. NULL is a no-op. */
LK_API void lk_lock_close(struct lk_lock *lk);

/* The detail of the last failure on this lock handle ("" if none). */
LK_API const char *lk_lock_errmsg(const struct lk_lock *lk);

/* The mode this handle resolved to (never LK_MODE_AUTO after open). */
LK_API enum lk_mode lk_lock_mode(const struct lk_lock *lk);

/* ------------------------------------------------------------------------
 * Observing without acquiring
 */

struct lk_holder {
	char owner[LK_OWNER_MAX + 1];
	char host[64];
	int32_t pid;
	int64_t since_ns; /* acquisition time, CLOCK_REALTIME ns (for humans only) */
};

struct lk_status {
	uint32_t size;       /* sizeof(struct lk_status); the caller sets it */
	enum lk_mode mode;   /* LK_MODE_KERNEL or LK_MODE_LEASE; AUTO if never used */
	int held;            /* 1 when held by anyone */
	int shared;          /* 1 when held in shared mode */
	int exists;          /* 1 when the name has ever been used in this store */
	uint64_t token;      /* token of the current hold, or of the last one when free */
	struct lk_holder holder; /* the (latest) holder; valid when token != 0 */
	/* Lease mode only: */
	uint64_t ttl_ms;     /* the holder's TTL */
	int released;        /* the last holder released it */
	int broken;          /* ended by an administrative break */
	int expired;         /* the holder is known dead (same host), or its last
			      * renewal is older than TTL by the wall clock: advisory */
	int64_t renew_age_ms; /* age of the last renewal by the wall clocks (advisory) */
};

/*
 * Report whether NAME is held, by whom and with which token, without
 * acquiring it and without creating anything. A name never used is reported
 * free with exists == 0. A lock whose record cannot be read (corrupted or
 * being written) is retried; if it stays unreadable the call fails with
 * -EBADMSG rather than reporting anything it cannot prove.
 */
LK_API int lk_lock_status(struct lk_store *st, const char *name, struct lk_status *ret);

/*
 * Call fn once for every lock entry in the store, in name order, with its
 * name. A non-zero return from fn stops the walk and is returned. Entries
 * that are not valid lock names are skipped.
 */
typedef int (*lk_list_fn)(const char *name, void *userdata);
LK_API int lk_store_list(struct lk_store *st, lk_list_fn fn, void *userdata);

/* ------------------------------------------------------------------------
 * Leader election
 *
 * An election is a lock NAME whose holder is the leader. A candidate
 * campaigns by acquiring it (kernel mode on local stores, lease mode on
 * local and nfs:// stores); the acquisition's fencing token is the term's
 * token, strictly greater than that of every earlier term. The leader
 * publishes a value of up to LK_ELECTION_VALUE_MAX bytes (an address, say)
 * that observers read together with the leader's id, token and start time.
 * A published value is tied to its term: observers never see one term's
 * value with another term's token (see docs/protocol.md, Part III).
 *
 * In lease mode an old leader is demoted (on_demoted, and
 * lk_election_check() fails) at its own deadline, which comes a margin
 * before anyone else may be elected. Kernel-mode leadership ends only with
 * lk_election_resign(), lk_election_close() or the death of the process.
 *
 * Thread safety: as for a lock handle. lk_election_cancel(),
 * lk_election_check() and lk_election_token() may be called from any
 * thread at any time.
 */

struct lk_election;

#define LK_ELECTION_VALUE_MAX 256 /* longest published value, in bytes */

/* What an observer knows about a term. */
struct lk_leader {
	uint32_t size;       /* sizeof(struct lk_leader); the caller sets it */
	enum lk_mode mode;   /* of the election's lock; AUTO if never used */
	int present;         /* 1 while someone leads (possibly expired, see below) */
	int expired;         /* lease mode: the leader's renewals stopped (advisory);
			      * a new leader can be elected once the lease runs out */
	uint64_t token;      /* the term's token; the last term's when none leads */
	int64_t since_ns;    /* start of the term, CLOCK_REALTIME ns (for humans) */
	char id[LK_OWNER_MAX + 1]; /* the leader's id */
	char host[64];
	int32_t pid;
	int value_known;     /* 1 when value holds this term's published value; 0
			      * while the new leader has not published it yet */
	uint32_t value_len;
	char value[LK_ELECTION_VALUE_MAX + 1]; /* NUL-terminated for convenience */
};

/* Called once per term when the handle becomes leader, before
 * lk_election_campaign() returns. */
typedef void (*lk_elected_fn)(struct lk_election *e, uint64_t token, void *userdata);
/*
 * Called once per term when leadership ends other than by resign/close: in
 * lease mode from the heartbeat engine at the leader's deadline (reason
 * -ETIMEDOUT) or when the lease was broken or taken over (-ESTALE), or from
 * lk_election_check() if that notices it first. Stop acting as leader here.
 * Do not resign, campaign or close from inside the callback.
 */
typedef void (*lk_demoted_fn)(struct lk_election *e, uint64_t token, int reason,
			      void *userdata);
/*
 * Called from lk_election_campaign() with the leader it finds when it
 * starts, and with itself once elected. In kernel mode it also looks once
 * a second while it waits and reports every change it sees; a lease-mode
 * wait is one uninterrupted observation of the holder (see
 * docs/protocol.md), so use lk_election_watch_open() to follow the terms of
 * others while campaigning.
 */
typedef void (*lk_leader_change_fn)(struct lk_election *e, const struct lk_leader *leader,
				    void *userdata);

struct lk_election_opts {
	uint32_t size;       /* sizeof(struct lk_election_opts); set by the initializer */
	uint32_t flags;      /* LK_LOCK_AUDIT or LK_LOCK_NO_AUDIT, or 0 */
	enum lk_mode mode;   /* LK_MODE_*, as for lk_lock_opts */
	const char *id;      /* this candidate's id, at most LK_OWNER_MAX bytes
			      * (NULL: "HOST:PID") */
	uint64_t ttl_ms;     /* lease mode: as lk_lock_opts.ttl_ms */
	uint64_t renew_ms;   /* lease mode: as lk_lock_opts.renew_ms */
	uint32_t rho_ppm;    /* lease mode: as lk_lock_opts.rho_ppm */
	lk_elected_fn on_elected;
	lk_demoted_fn on_demoted;
	lk_leader_change_fn on_leader_change;
	void *userdata;      /* passed to the callbacks */
	int32_t pid;         /* as lk_lock_opts.pid; see lk_election_set_pid() */
};

#define LK_ELECTION_OPTS_INIT                                                  \
	{                                                                          \
		.size = sizeof(struct lk_election_opts), .flags = 0,                   \
		.mode = LK_MODE_AUTO, .id = NULL, .ttl_ms = 0, .renew_ms = 0,          \
		.rho_ppm = 0, .on_elected = NULL, .on_demoted = NULL,                  \
		.on_leader_change = NULL, .userdata = NULL, .pid = 0                   \
	}

/*
 * Open a candidate's handle on election NAME (a lock name, see
 * lk_lock_open(), whose errors it shares). Opening does not campaign.
 */
LK_API int lk_election_open(struct lk_store *st, const char *name,
			    const struct lk_election_opts *opts, struct lk_election **ret);

/*
 * Campaign: wait to become leader, then publish value (len bytes, at most
 * LK_ELECTION_VALUE_MAX; NULL with 0 publishes an empty value) and call
 * on_elected. timeout_ms as for lk_lock_acquire(): -EWOULDBLOCK, -ETIMEDOUT,
 * -ECANCELED. -EBUSY if this handle already leads; a handle whose term was
 * demoted may campaign again at once. -EMSGSIZE for a value too long. If
 * the value cannot be published the term is given up and the storage error
 * returned.
 */
LK_API int lk_election_campaign(struct lk_election *e, const void *value, size_t len,
				int64_t timeout_ms);

/* End a blocked lk_election_campaign() from another thread (-ECANCELED). */
LK_API int lk_election_cancel(struct lk_election *e);

/*
 * Give up leadership at once, so that a waiting candidate is elected
 * without delay. 0, or -ENOLCK when this handle does not lead (or its
 * lease was already lost; the term is over either way).
 */
LK_API int lk_election_resign(struct lk_election *e);

/*
 * 0 while this handle leads; -ENOLCK otherwise. In lease mode it reads the
 * clock itself, and the first failure of a term calls on_demoted.
 */
LK_API int lk_election_check(struct lk_election *e);

/* The current term's token while leading (kept after a demotion until the
 * next campaign or resign, for logging), 0 otherwise. */
LK_API uint64_t lk_election_token(const struct lk_election *e);

/*
 * The process whose life stands for the leadership on this host (the
 * same-host fast path of lk_lock_opts.pid); takes effect at the next
 * campaign. -EBUSY while leading.
 */
LK_API int lk_election_set_pid(struct lk_election *e, int32_t pid);

/*
 * The lock that carries the leadership (borrowed, valid until close), for
 * lk_lock_check(), lk_lock_remaining_ms(), lk_lock_lease_params() and
 * lk_lock_mode(). Never acquire, release or close it directly.
 */
LK_API struct lk_lock *lk_election_lock(struct lk_election *e);

/* Per-handle statistics, since open. Durations are whole milliseconds. */
struct lk_election_stats {
	uint32_t size;             /* sizeof(struct lk_election_stats); the caller sets it */
	uint64_t campaigns;        /* calls to lk_election_campaign() */
	uint64_t terms;            /* times elected */
	uint64_t resignations;     /* terms ended by resign or close */
	uint64_t demotions;        /* terms ended by on_demoted */
	uint64_t failed_campaigns; /* campaigns that did not end in a term */
	uint64_t leader_ms_total;  /* time led, over all ended terms */
	uint64_t leader_ms_max;
	uint64_t leader_ms_last;   /* the last ended term */
	uint64_t election_ms_total; /* time from campaign start to elected */
	uint64_t election_ms_max;
	uint64_t election_ms_last;
	uint64_t current_term_ms;  /* time in the current term, 0 when not leading */
	uint64_t token;            /* the current or last term's token, 0 if none */
};
LK_API int lk_election_stats(const struct lk_election *e, struct lk_election_stats *ret);

/* Resign if leading, then free the handle. NULL is a no-op. */
LK_API void lk_election_close(struct lk_election *e);

/* The detail of the last failure on this handle ("" if none). */
LK_API const char *lk_election_errmsg(const struct lk_election *e);

/*
 * Observe without campaigning: the current leader of NAME, or present == 0
 * when nobody leads (token then names the last term, 0 if none). Nothing is
 * created. Errors as lk_lock_status().
 */
LK_API int lk_election_leader(struct lk_store *st, const char *name, struct lk_leader *ret);

/* Watching an election: one event per change of its terms. */
struct lk_election_watch;

enum lk_election_event_type {
	LK_ELECTION_ELECTED = 1,  /* a term began (or was in progress at open) */
	LK_ELECTION_RESIGNED = 2, /* the leader gave up its term */
	LK_ELECTION_EXPIRED = 3,  /* lease mode: the leader stopped renewing */
	LK_ELECTION_LOST = 4,     /* the term ended otherwise: the leader died,
				   * its lease was broken or taken over */
};

struct lk_election_event {
	uint32_t size;            /* sizeof(struct lk_election_event); the caller sets it */
	enum lk_election_event_type type;
	int64_t time_ns;          /* when it was observed, CLOCK_REALTIME ns */
	struct lk_leader leader;  /* the term the event is about */
};

/*
 * Watch election NAME: inotify on local stores, polling every poll_ms
 * (0: 250) on shared ones and, on local ones, for what inotify cannot see
 * (a kernel-mode leader's death).
 */
LK_API int lk_election_watch_open(struct lk_store *st, const char *name, uint64_t poll_ms,
				  struct lk_election_watch **ret);
/*
 * The next event: 0 and *ret, -ETIMEDOUT when none came within timeout_ms
 * (< 0: wait for ever), -EINTR when a signal interrupted the wait, or a
 * storage error. The first events describe the term in progress, if any.
 * A term shorter than the polling interval may go unseen on shared stores.
 */
LK_API int lk_election_watch_next(struct lk_election_watch *w, int64_t timeout_ms,
				  struct lk_election_event *ret);
/* A descriptor that is readable when something may have changed (-1 when
 * the store offers none); lk_election_watch_next() then has work to do. */
LK_API int lk_election_watch_fd(const struct lk_election_watch *w);
LK_API void lk_election_watch_close(struct lk_election_watch *w);
/* A static name for an event type ("elected", "resigned", ...). */
LK_API const char *lk_election_event_name(enum lk_election_event_type type);

/* ------------------------------------------------------------------------
 * Events, statistics and logging
 *
 * Each store counts what its handles do (lk_store_stats(), always on) and,
 * when lk_store_opts.on_event or .on_log is set, reports every event as it
 * happens: a typed struct lk_event to on_event, a human-readable line to
 * on_log. Both see the same events; on_log also gets warnings that are not
 * events (a store closed with storage I/O still stuck, say).
 *
 * Which thread calls the callbacks:
 *  - acquire, release, claim race, expiry observed, elected and resigned:
 *    the thread that called lk_lock_acquire(), lk_lock_release(),
 *    lk_lock_close(), lk_election_campaign() or lk_election_resign(),
 *    inside that call;
 *  - renewals and lost leases, and demotions caused by them: the store's
 *    heartbeat engine thread (or, with LK_STORE_EXTERNAL_ENGINE, the thread
 *    inside lk_store_engine_process()), with no lock of the library held. A
 *    demotion noticed first by lk_election_check() is reported there.
 * Callbacks of one store can therefore run concurrently in several threads.
 * Each event is reported just after it happened, so the seq numbers order
 * the events of one thread exactly, but across threads they follow the
 * reports: a waiter woken by a release may report its acquire before the
 * releasing thread reports the release.
 *
 * A callback must return quickly: renewal events hold up the next round of
 * the heartbeat engine, which renews every lease of the store. It must not
 * call anything that blocks on a handle of the same store (acquire, release,
 * close, campaign, resign, lk_store_close()); lk_lock_token(),
 * lk_lock_check(), lk_lock_remaining_ms(), lk_store_stats() and
 * lk_event_name() are fine. struct lk_event and the message are valid only
 * during the call.
 */

enum lk_event_type {
	LK_EV_ACQUIRE_ATTEMPT = 1, /* lk_lock_acquire() starts */
	LK_EV_ACQUIRED = 2,        /* duration: time spent in the acquire */
	LK_EV_ACQUIRE_FAILED = 3,  /* duration: as above; error: what it returned */
	LK_EV_RELEASED = 4,        /* duration: time held; error: -ENOLCK if the lease
				    * had been lost before the release */
	LK_EV_RENEWED = 5,         /* duration: renewal latency, send to completion */
	LK_EV_RENEW_LATE = 6,      /* a renewal that counted, but completed more than
				    * half a renewal interval after it was due */
	LK_EV_RENEW_FAILED = 7,    /* error: -EIO, -ETIMEDOUT (storage did not answer,
				    * or answered after the deadline)... */
	LK_EV_LOST = 8,            /* error: -ETIMEDOUT (not renewed in time) or -ESTALE
				    * (broken or taken over); duration: time held */
	LK_EV_CLAIM_RACE_LOST = 9, /* lease mode: another claimant won the generation;
				    * token: that generation */
	LK_EV_ELECTED = 10,        /* duration: from campaign start to elected */
	LK_EV_DEMOTED = 11,        /* leadership ended other than by resign; error: the
				    * reason as for on_demoted; duration: term length */
	LK_EV_RESIGNED = 12,       /* duration: term length */
	LK_EV_EXPIRY_OBSERVED = 13, /* lease mode: an acquire judged the holder's lease
				     * over and is about to claim; token: the expired
				     * generation; duration: how long it watched it
				     * unchanged; error: 0, or -ESRCH when the holder was
				     * seen dead on this host */
};

struct lk_event {
	uint32_t size;           /* sizeof(struct lk_event) of the library */
	enum lk_event_type type;
	uint64_t seq;            /* per store, from 1, in the order of the reports */
	const char *name;        /* the lock's (or election's) name */
	enum lk_mode mode;       /* LK_MODE_KERNEL or LK_MODE_LEASE */
	int shared;              /* 1 for a shared kernel-mode lock */
	uint64_t token;          /* the hold's (or term's) token; 0 if none */
	int64_t duration_ns;     /* see the type; 0 when none applies */
	int error;               /* 0 or a negative errno value */
	int64_t mono_ns;         /* when, CLOCK_MONOTONIC */
	int64_t wall_ns;         /* when, CLOCK_REALTIME (for humans) */
	struct lk_lock *lock;    /* the handle, NULL when it is already gone */
};

/* A static name for an event type ("acquired", "renew_late", ...); "unknown"
 * for anything else. Never NULL. */
LK_API const char *lk_event_name(enum lk_event_type type);

/* lk_store_opts.log_level and on_log's level: syslog's numbers. Acquire
 * attempts, renewals on time and claim races are DEBUG; acquisitions,
 * releases, elections, resignations and observed expiries INFO; late or
 * failed renewals and demotions WARNING; lost leases ERR. */
#define LK_LOG_ERR 3
#define LK_LOG_WARNING 4
#define LK_LOG_INFO 6
#define LK_LOG_DEBUG 7

/*
 * Histograms: fixed buckets for every duration, so that they can be added
 * up across processes and exported as Prometheus histograms. The upper
 * bounds go 1, 2.5, 5 per decade from 100 us to 100 s (see lk_hist_le_us());
 * the last bucket takes everything above. buckets[i] counts observations in
 * bucket i alone (not cumulative).
 */
#define LK_HIST_BUCKETS 20

struct lk_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t buckets[LK_HIST_BUCKETS];
};

/* Upper bound of bucket i in microseconds (inclusive); UINT64_MAX for the
 * last bucket and for i out of range. */
LK_API uint64_t lk_hist_le_us(unsigned i);

/*
 * Counters since the store was opened, over all its handles. Every counter
 * is updated with relaxed atomics by whichever thread saw the event, so a
 * snapshot taken while others work is a little ragged (a count may run one
 * ahead of its histogram) but every value only grows.
 */
struct lk_store_stats {
	uint32_t size;                /* sizeof(struct lk_store_stats); the caller sets it */
	uint64_t acquires;            /* successful acquires */
	uint64_t acquire_failures;    /* acquires that returned an error, -EWOULDBLOCK,
				       * -ETIMEDOUT and -ECANCELED included */
	uint64_t acquires_contended;  /* successful acquires that found the lock held
				       * and had to wait */
	uint64_t releases;            /* holds ended by release or close */
	uint64_t renewals_ok;         /* renewals on time */
	uint64_t renewals_late;       /* renewals that counted but were late */
	uint64_t renewals_failed;     /* renewals that did not count */
	uint64_t lost;                /* leases lost */
	uint64_t claim_races_lost;
	uint64_t expiries_observed;
	uint64_t terms;               /* leadership terms begun */
	uint64_t demotions;
	uint64_t resignations;
	struct lk_hist acquire_wait;  /* successful acquires: time in lk_lock_acquire()
				       * (a kernel-mode lock taken at the first try
				       * counts as 0: no clock is read for it) */
	struct lk_hist hold;          /* time from acquired to released (lost leases
				       * too, at their release) */
	struct lk_hist renewal;       /* latency of every completed renewal */
	struct lk_hist leadership;    /* length of ended terms */
	struct lk_hist election;      /* campaign start to elected */
};

/*
 * Copy the store's counters to *ret (ret->size set by the caller; a smaller
 * size from an older caller gets the fields that fit). -EINVAL for a NULL
 * argument or a size too small for the counters.
 */
LK_API int lk_store_stats(const struct lk_store *st, struct lk_store_stats *ret);

/* ------------------------------------------------------------------------
 * Helpers shared with tools
 */

/* A static description of a (negative or positive) errno value. Never NULL. */
LK_API const char *lk_strerror(int err);

/* 0 if name is a valid lock name, -EINVAL otherwise. */
LK_API int lk_name_valid(const char *name);

/*
 * Parse a duration: "250ms", "10s", "2m", "1h", "1500us" or a bare number of
 * seconds with an optional fraction ("0.5"). Writes milliseconds, rounded up
 * to a whole millisecond. -EINVAL on anything else, -ERANGE on overflow.
 */
LK_API int lk_parse_duration_ms(const char *s, uint64_t *ret_ms);

#ifdef __cplusplus
}
#endif

#endif /* LOCKKIT_H */
