/* SPDX-License-Identifier: MIT */
/*
 * The on-disk format of a kernel-mode lock file (see docs/protocol.md).
 */
#ifndef LK_KRECORD_H
#define LK_KRECORD_H

#include <stddef.h>
#include <stdint.h>

#define LK_KFILE_SIZE 4096u
#define LK_KFILE_HDR_SIZE 64u
#define LK_KSLOT_SIZE 256u
#define LK_KSLOT0_OFF 512u
#define LK_KSLOT1_OFF 1024u
/* Bytes a reader needs to see the header and both slots. */
#define LK_KFILE_READ_SIZE (LK_KSLOT1_OFF + LK_KSLOT_SIZE)

/* Tokens stay below 2^53 so that JSON readers keep them exact. */
#define LK_TOKEN_LIMIT (1ull << 53)
/* Tokens handed out between two synced reservations. */
#define LK_TOKEN_CHUNK 65536u

struct lk__krec {
	uint64_t seq;      /* write counter: the higher of the two slots is current */
	uint64_t token;    /* last token handed out */
	uint64_t reserved; /* every token handed out is <= reserved, which is on disk */
	uint8_t boot_id[16]; /* boot during which reserved was last synced */
	int64_t since_ns;  /* CLOCK_REALTIME of the last acquisition, for humans */
	int32_t pid;
	uint8_t shared;
	uint8_t synced;    /* reserved is known to be on stable storage */
	char host[64];
	char owner[64];
};

void lk__kfile_header_encode(uint8_t hdr[LK_KFILE_HDR_SIZE]);
/* 0 if hdr is a lockkit kernel-lock header, -EINVAL otherwise. */
int lk__kfile_header_check(const uint8_t *hdr, size_t len);

void lk__krec_encode(const struct lk__krec *r, uint8_t out[LK_KSLOT_SIZE]);
/* 0, or -EBADMSG for a torn, truncated, foreign or corrupted slot. */
int lk__krec_decode(const uint8_t *in, size_t len, struct lk__krec *ret);

/*
 * Pick the current record of a file image of at least LK_KFILE_READ_SIZE
 * bytes. Returns the slot index (0 or 1) of the newest valid record, or
 * -EBADMSG when neither slot is valid.
 */
int lk__kfile_pick(const uint8_t *file, size_t len, struct lk__krec *ret);

/*
 * The next token after record cur (NULL: no valid record, e.g. a new or
 * damaged file), for an acquisition at wall time now_ns during boot boot_id.
 * Writes the token and the reservation to keep; *ret_sync is 1 when the
 * reservation must reach stable storage before the token is handed out.
 * -EOVERFLOW when the token space is exhausted.
 */
int lk__ktoken_next(const struct lk__krec *cur, const uint8_t boot_id[16], int64_t now_ns,
		    uint64_t *ret_token, uint64_t *ret_reserved, int *ret_sync);

/* The token a record-less lock starts above: twice the wall clock in µs. */
uint64_t lk__ktoken_seed(int64_t now_ns);

#endif
