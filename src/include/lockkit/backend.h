/* SPDX-License-Identifier: MIT */
/*
 * lockkit storage backends: the interface between the core (lock handles,
 * tokens, the lease protocol) and a kind of storage (a local or mounted
 * directory, an NFS export reached through libnfs, memory for tests).
 *
 * This header is for backend authors. Unlike lockkit.h it may change between
 * minor versions; a backend states the LK_BACKEND_VERSION it was built for and
 * the core refuses one built for another.
 *
 * A backend is a static const struct lk_backend. Each backend's store and lock
 * objects embed struct lk_bstore / struct lk_bklock as their first member, so
 * the core passes the base pointer and the backend casts it back. Optional
 * operations may be NULL; the core then returns -EOPNOTSUPP with a message.
 * Capability bits tell the core what a backend can do, so no call site needs
 * an #ifdef.
 *
 * Every operation returns >= 0 or -errno, and may write a one-line reason
 * into the struct lk_err it is given.
 */
#ifndef LOCKKIT_BACKEND_H
#define LOCKKIT_BACKEND_H

#include <lockkit.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LK_BACKEND_VERSION 1

/* Capability bits */
#define LK_CAP_KERNEL_LOCKS (1u << 0) /* kernel-arbitrated locks (OFD) */
#define LK_CAP_LEASE (1u << 1)        /* the namespace operations lease mode needs */
#define LK_CAP_LOCAL (1u << 2)        /* storage is on this host only */

struct lk_err {
	char msg[256];
	/* Set by a backend along with an error when the storage did not answer
	 * (a timeout, a lost connection): the same call may succeed if tried
	 * again. The core clears it before the calls where it looks. Declare
	 * one as struct lk_err e = {0}. */
	int transient;
};

/* What a holder writes about itself into a lock's record. */
struct lk_holder_info {
	const char *owner;     /* label, at most LK_OWNER_MAX bytes are kept */
	const char *host;      /* host name */
	const uint8_t *boot_id; /* 16 bytes: this kernel's boot id */
	int32_t pid;
};

struct lk_backend;

struct lk_bstore {
	const struct lk_backend *be;
};

struct lk_bklock {
	struct lk_bstore *bs;
	/* times the backend reopened the lock's name under this handle (a file
	 * removed by lockctl prune): a process that shares the handle's open
	 * file description (lockctl's guardian) must share it again */
	unsigned reopened;
};

/*
 * An open lease record, rewritten in place by renewals. When the backend is
 * file-descriptor based, fd is the record and dirfd the directory that
 * "<lock>/<entry>" paths are relative to (the store; borrowed, not owned),
 * so that the heartbeat engine can issue the I/O itself (io_uring); both are
 * -1 otherwise.
 */
struct lk_bfile {
	struct lk_bstore *bs;
	int fd;
	int dirfd;
};

/* Parsed store location handed to a backend's store_open. */
struct lk_url {
	const char *scheme; /* "file", "nfs" */
	const char *path;   /* file: the decoded path; nfs: the whole URL */
	const char *host;   /* nfs: SERVER[:PORT]; NULL for file */
	const char *query;  /* raw query string or NULL */
};

/* What is stored under a name, as far as the backend can tell. */
enum lk_entry {
	LK_ENTRY_NONE = 0,   /* nothing: the name was never used */
	LK_ENTRY_KERNEL = 1, /* a kernel-mode lock file */
	LK_ENTRY_LEASE = 2,  /* a lease-mode lock directory */
};

/* Waiting: how a blocking call is bounded and interrupted. */
struct lk__waiter;

/* Engine-driven renewals (renew_start below): which request finished. */
enum { LK_RENEW_WRITE = 0, LK_RENEW_PROBE = 1 };
typedef void (*lk_renew_done_fn)(void *arg, int which, int res);

struct lk_backend {
	uint32_t version; /* LK_BACKEND_VERSION */
	const char *name;
	const char *scheme;
	uint32_t caps;

	int (*store_open)(const struct lk_url *url, const struct lk_store_opts *opts,
			  struct lk_bstore **ret, struct lk_err *err);
	void (*store_close)(struct lk_bstore *bs);
	/* Call fn for every lock entry (name order is the core's job). */
	int (*list)(struct lk_bstore *bs, lk_list_fn fn, void *userdata, struct lk_err *err);
	/* What is stored under name (>= 0 is an enum lk_entry). */
	int (*entry)(struct lk_bstore *bs, const char *name, struct lk_err *err);

	/* Kernel-mode locks (LK_CAP_KERNEL_LOCKS). */
	int (*klock_open)(struct lk_bstore *bs, const char *name, struct lk_bklock **ret,
			  struct lk_err *err);
	/*
	 * Acquire; shared selects a read lock. timeout_ms as for lk_lock_acquire().
	 * waiter is the handle's waiting state, which the backend uses to sleep
	 * interruptibly (see src/wait.h). On success the backend has recorded the
	 * holder and returns the new token in *ret_token.
	 */
	int (*klock_acquire)(struct lk_bklock *k, int shared, int64_t timeout_ms,
			     const struct lk_holder_info *who, struct lk__waiter *waiter,
			     uint64_t *ret_token, struct lk_err *err);
	int (*klock_release)(struct lk_bklock *k, struct lk_err *err);
	void (*klock_close)(struct lk_bklock *k);
	int (*klock_status)(struct lk_bstore *bs, const char *name, struct lk_status *ret,
			    struct lk_err *err);

	/*
	 * Lease mode (LK_CAP_LEASE): the storage's atomic namespace operations.
	 * Paths are relative to the store and use '/' between a lock directory
	 * and its entries. Every call is synchronous and bounded by the backend's
	 * own I/O deadline; none follows symbolic links.
	 */
	/* 1 when the store's filesystem is shared over a network, 0 if local. */
	int (*is_network)(struct lk_bstore *bs);
	int (*mkdir)(struct lk_bstore *bs, const char *path, struct lk_err *err);
	int (*rmdir)(struct lk_bstore *bs, const char *path, struct lk_err *err);
	/* Create path exclusively with buf as its content, stable on storage
	 * before returning; *ret_fileid identifies the file (inode). */
	int (*write_new)(struct lk_bstore *bs, const char *path, const void *buf, size_t len,
			 uint64_t *ret_fileid, struct lk_err *err);
	/* link(2): -EEXIST when to exists (callers check file ids: a retransmitted
	 * link can report EEXIST for its own success). */
	int (*link)(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err);
	/* rename(2); for directories it fails when to exists and is not empty. */
	int (*rename)(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err);
	int (*unlink)(struct lk_bstore *bs, const char *path, struct lk_err *err);
	/* Read up to len bytes from the start of path; returns the byte count. */
	int (*read)(struct lk_bstore *bs, const char *path, void *buf, size_t len,
		    uint64_t *ret_fileid, struct lk_err *err);
	/* 0 and the file id if path exists, -ENOENT if not. */
	int (*stat)(struct lk_bstore *bs, const char *path, uint64_t *ret_fileid,
		    struct lk_err *err);
	/* Call fn for every entry of directory path except "." and "..";
	 * path "" is the store's own directory, every entry unfiltered. */
	int (*readdir)(struct lk_bstore *bs, const char *path, lk_list_fn fn, void *userdata,
		       struct lk_err *err);
	int (*open_record)(struct lk_bstore *bs, const char *dir, const char *name,
			   struct lk_bfile **ret, struct lk_err *err);
	/* Write len bytes at offset 0 of an open record. */
	int (*write_record)(struct lk_bfile *f, const void *buf, size_t len, struct lk_err *err);
	void (*close_record)(struct lk_bfile *f);
	/* A descriptor that becomes readable when directory path changes
	 * (inotify), or -EOPNOTSUPP; the caller closes it. */
	int (*watch)(struct lk_bstore *bs, const char *path, struct lk_err *err);

	/*
	 * Optional: renewals the heartbeat engine drives itself, for backends
	 * that talk to storage over a connection they can service without
	 * blocking (nfs://). Both NULL: renewals go through write_record and
	 * stat on a worker thread.
	 *
	 * renew_start queues one renewal of record f: write buf (len bytes at
	 * offset 0, stable on storage when it succeeds) and probe path (which
	 * must not exist). It never blocks and may be called from any thread.
	 * done(arg, LK_RENEW_WRITE, res) and done(arg, LK_RENEW_PROBE, res)
	 * each follow exactly once, from whichever thread services the store,
	 * without any backend lock the caller could be waiting for: res is the
	 * byte count or -errno for the write, 0 (exists), -ENOENT or -errno
	 * for the probe; an unanswered request reports -ETIMEDOUT once
	 * deadline_ns (CLOCK_BOOTTIME) has passed. Returns 0 or -errno (then
	 * done is never called).
	 *
	 * service does whatever can be done now without blocking: sends what is
	 * queued, reads replies, reports completions and timeouts. Another
	 * thread may be servicing the store at that moment (a blocking call in
	 * progress does it too); then service returns at once. It returns the
	 * CLOCK_BOOTTIME by which it wants to be called again (INT64_MAX: when
	 * idle), and in *ret_fd / *ret_events a descriptor whose readiness is
	 * worth a call, or -1.
	 */
	int (*renew_start)(struct lk_bfile *f, const void *buf, size_t len, const char *probe,
			   int64_t deadline_ns, lk_renew_done_fn done, void *arg);
	int64_t (*service)(struct lk_bstore *bs, int *ret_fd, short *ret_events);

	/*
	 * Optional: files written a line at a time (the audit log, src/audit.c).
	 * Neither the lock nor the lease protocol uses them; NULL makes the audit
	 * log unavailable on the store, nothing else.
	 *
	 * write_at writes len bytes at offset of path in one request (one
	 * pwrite, one NFS WRITE) and returns the byte count (a short count is
	 * possible) or -errno. At offset 0 the file is created if missing, with
	 * the store's file mode; at any other offset a missing file is -ENOENT
	 * (the writer then starts a new file rather than leave a hole). Nothing
	 * is synced: the bytes may be lost with the host or the server.
	 * read_at reads up to len bytes at offset (0 at the end of the file).
	 * Neither follows symbolic links; a path that is not a regular file is
	 * -EBADMSG.
	 */
	int (*write_at)(struct lk_bstore *bs, const char *path, uint64_t offset, const void *buf,
			size_t len, struct lk_err *err);
	int (*read_at)(struct lk_bstore *bs, const char *path, uint64_t offset, void *buf,
		       size_t len, struct lk_err *err);

	/*
	 * Optional: remove kernel-mode lock file name if nobody holds it and,
	 * when older_than_ms >= 0, its last acquisition is at least that old
	 * (lockctl prune). Waiters and idle handles of the removed file must
	 * find out at their next acquisition and open the name again
	 * (docs/protocol.md, section 26a). Returns 1 removed, 0 kept (why
	 * says why), or -errno; *ret_token and *ret_last_ns (CLOCK_REALTIME)
	 * describe the last acquisition when known. NULL: -EOPNOTSUPP.
	 */
	int (*klock_prune)(struct lk_bstore *bs, const char *name, int64_t older_than_ms,
			   uint64_t *ret_token, int64_t *ret_last_ns, char *why, size_t why_len,
			   struct lk_err *err);
};

#ifdef __cplusplus
}
#endif

#endif /* LOCKKIT_BACKEND_H */
