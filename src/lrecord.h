/* SPDX-License-Identifier: MIT */
/*
 * The on-disk format of lease-mode generation records (see docs/protocol.md).
 */
#ifndef LK_LRECORD_H
#define LK_LRECORD_H

#include <stddef.h>
#include <stdint.h>

#define LK_LREC_SIZE 256u
/* "g." + 16 digits: generations (= tokens) stay below 2^53 < 10^16. */
#define LK_GEN_NAME_LEN 18

enum lk__lstate {
	LK_LSTATE_HELD = 1,
	LK_LSTATE_RELEASED = 2,
	LK_LSTATE_BROKEN = 3,
	LK_LSTATE_ABORTED = 4, /* a claim that found its predecessor gone */
};

struct lk__lrec {
	uint64_t gen;       /* generation N: the fencing token */
	uint8_t state;      /* enum lk__lstate */
	uint32_t ttl_ms;
	uint32_t rho_ppm;
	uint64_t counter;   /* heartbeat counter, +1 per renewal */
	uint8_t boot_id[16];
	uint64_t pidns;     /* inode of the holder's pid namespace */
	int32_t pid;        /* process whose life stands for the hold */
	uint64_t pid_start; /* its start time (clock ticks since boot) */
	int32_t pid2;       /* a second process that must also be gone (0: none) */
	uint64_t pid2_start;
	uint64_t nonce;     /* random per claim */
	int64_t wall_ns;    /* CLOCK_REALTIME of the write: for humans and audit only */
	int64_t since_ns;   /* CLOCK_REALTIME of the claim: for humans and audit only */
	char host[64];
	char owner[64];
};

void lk__lrec_encode(const struct lk__lrec *r, uint8_t out[LK_LREC_SIZE]);
/* 0, or -EBADMSG for anything torn, truncated, foreign or corrupted. */
int lk__lrec_decode(const uint8_t *in, size_t len, struct lk__lrec *ret);

/* "g.%016llu" into buf (at least LK_GEN_NAME_LEN + 1 bytes). */
void lk__gen_name(char *buf, uint64_t gen);
/* 0 and the generation if name is a generation record name, else -EINVAL. */
int lk__gen_parse(const char *name, uint64_t *ret_gen);

#endif
