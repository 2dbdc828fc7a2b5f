/* SPDX-License-Identifier: MIT */
/*
 * The two sides of the storage-stall tests (test_nfs_pause.c,
 * test_nfs_late_write.c): a holder that watches its own lease and a waiter
 * on another "host" that keeps trying to take it over.
 */
#ifndef LK_NFS_STALL_H
#define LK_NFS_STALL_H

#include <stdatomic.h>
#include <stdint.h>

#include "nharness.h"

/* What the children see, in memory shared with the test. Times are
 * CLOCK_BOOTTIME in ns. */
struct stall_shared {
	/* holder */
	_Atomic int64_t deadline; /* newest deadline seen (never above the real one) */
	_Atomic int64_t lost_at;  /* when on_lost ran, 0 before */
	atomic_int lost_reason;
	atomic_int lost_calls;
	atomic_int valid_after_lost;     /* lk_lock_check() == 0 after on_lost */
	atomic_int valid_after_deadline; /* lk_lock_check() == 0 past the deadline */
	/* waiter */
	atomic_int errors; /* acquires that failed with -EIO */
	_Atomic int64_t first_error, last_error;
};

struct stall_args {
	const char *url; /* the store, as this side reaches it */
	uint64_t ttl_ms;
	int foreign; /* waiter: make its view that of another host */
	struct stall_shared *sh;
};

/*
 * Holder: acquire, send token and engine code, then watch the lease (every
 * millisecond) until the test sends a message; then answer lk_lock_check(),
 * lk_lock_release() and the token after it, and exit.
 */
void stall_holder(int rx, int tx, void *arg);

/*
 * Waiter: send 1 when its handle is open, then acquire, trying again after
 * each storage error (-EIO: a call timed out on the stopped server); send
 * the time it got the lease, its token and engine code. Then, on the test's
 * message N, watch its lease for N ms and answer how many checks failed,
 * lk_lock_check() and lk_lock_release().
 */
void stall_waiter(int rx, int tx, void *arg);

#endif
