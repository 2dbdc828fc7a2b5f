// SPDX-License-Identifier: MIT
/*
 * Kernel-mode lock files: encoding, validation, and the token rule.
 *
 * A lock file is one 4 KiB page: a fixed header (magic, format, layout) and
 * two 256-byte record slots in different 512-byte sectors. A holder writes the
 * slot that is not current, with a higher sequence number, so a writer killed
 * half-way through (the record is written through a shared mapping, and
 * SIGKILL can land mid-copy) or a torn sector after power loss only damages
 * the slot being written; the other one still holds the previous, valid
 * record. Every slot carries a CRC-32C and is ignored when it does not match.
 *
 * Tokens must increase across crashes, reboots and power loss without an
 * fsync per acquisition. The record keeps the last token and a reservation
 * R that is on stable storage: every token handed out is <= R. While the
 * boot id recorded with R is the current one, tokens are the last token + 1
 * (page cache only); when the next token would pass R, or the boot id differs
 * (the machine restarted, so unsynced tokens may be lost), a new reservation
 * is synced first and counting continues above the old R. The cost is one
 * sync per LK_TOKEN_CHUNK acquisitions and one per boot. A record also says
 * whether its reservation is known to be on disk: it is written unsynced,
 * synced, and only then marked synced, so a writer killed during the sync
 * leaves a mark that makes the next acquisition sync before trusting it.
 *
 * A file with no valid record (new, or both slots damaged) starts above twice
 * the wall clock in microseconds. That keeps tokens increasing on stores that
 * a reboot empties (tmpfs such as /run) and for lock files that were deleted
 * and created again, as long as the wall clock has not gone back by more than
 * the time between the two lives of the file; docs/protocol.md says so.
 */
#include <errno.h>
#include <string.h>

#include "codec.h"
#include "internal.h"
#include "krecord.h"

static const uint8_t kfile_magic[8] = { 'l', 'o', 'c', 'k', 'k', 'i', 't', 0 };
#define KREC_MAGIC 0x31524b4cu /* "LKR1" */
#define KFILE_FORMAT 1u
#define KFILE_KIND_KERNEL 1u

void lk__kfile_header_encode(uint8_t hdr[LK_KFILE_HDR_SIZE])
{
	memset(hdr, 0, LK_KFILE_HDR_SIZE);
	memcpy(hdr, kfile_magic, 8);
	lk__put16(hdr + 8, KFILE_FORMAT);
	lk__put16(hdr + 10, KFILE_KIND_KERNEL);
	lk__put32(hdr + 12, LK_KFILE_SIZE);
	lk__put32(hdr + 16, LK_KSLOT0_OFF);
	lk__put32(hdr + 20, LK_KSLOT1_OFF);
	lk__put32(hdr + 24, LK_KSLOT_SIZE);
	lk__put32(hdr + 60, lk__crc32c(0, hdr, 60));
}

int lk__kfile_header_check(const uint8_t *hdr, size_t len)
{
	if (len < LK_KFILE_HDR_SIZE || memcmp(hdr, kfile_magic, 8))
		return -EINVAL;
	if (lk__get32(hdr + 60) != lk__crc32c(0, hdr, 60))
		return -EINVAL;
	if (lk__get16(hdr + 8) != KFILE_FORMAT || lk__get16(hdr + 10) != KFILE_KIND_KERNEL ||
	    lk__get32(hdr + 12) != LK_KFILE_SIZE || lk__get32(hdr + 16) != LK_KSLOT0_OFF ||
	    lk__get32(hdr + 20) != LK_KSLOT1_OFF || lk__get32(hdr + 24) != LK_KSLOT_SIZE)
		return -EINVAL;
	return 0;
}

void lk__krec_encode(const struct lk__krec *r, uint8_t out[LK_KSLOT_SIZE])
{
	memset(out, 0, LK_KSLOT_SIZE);
	lk__put32(out + 0, KREC_MAGIC);
	lk__put16(out + 4, 1);
	lk__put16(out + 6, LK_KSLOT_SIZE);
	lk__put64(out + 8, r->seq);
	lk__put64(out + 16, r->token);
	lk__put64(out + 24, r->reserved);
	memcpy(out + 32, r->boot_id, 16);
	lk__put64(out + 48, (uint64_t)r->since_ns);
	lk__put32(out + 56, (uint32_t)r->pid);
	out[60] = (uint8_t)((r->shared ? 1 : 0) | (r->synced ? 2 : 0));
	lk__put_label(out + 64, 64, r->host);
	lk__put_label(out + 128, 64, r->owner);
	lk__put32(out + 252, lk__crc32c(0, out, 252));
}

int lk__krec_decode(const uint8_t *in, size_t len, struct lk__krec *ret)
{
	if (len < LK_KSLOT_SIZE)
		return -EBADMSG;
	if (lk__get32(in) != KREC_MAGIC || lk__get16(in + 4) != 1 || lk__get16(in + 6) != LK_KSLOT_SIZE)
		return -EBADMSG;
	if (lk__get32(in + 252) != lk__crc32c(0, in, 252))
		return -EBADMSG;
	ret->seq = lk__get64(in + 8);
	ret->token = lk__get64(in + 16);
	ret->reserved = lk__get64(in + 24);
	memcpy(ret->boot_id, in + 32, 16);
	ret->since_ns = (int64_t)lk__get64(in + 48);
	ret->pid = (int32_t)lk__get32(in + 56);
	ret->shared = in[60] & 1;
	ret->synced = (in[60] >> 1) & 1;
	lk__get_label(ret->host, sizeof(ret->host), in + 64);
	lk__get_label(ret->owner, sizeof(ret->owner), in + 128);
	if (ret->token > ret->reserved || ret->reserved >= LK_TOKEN_LIMIT)
		return -EBADMSG;
	return 0;
}

int lk__kfile_pick(const uint8_t *file, size_t len, struct lk__krec *ret)
{
	struct lk__krec a, b;
	int va, vb;

	if (len < LK_KFILE_READ_SIZE)
		return -EBADMSG;
	va = lk__krec_decode(file + LK_KSLOT0_OFF, LK_KSLOT_SIZE, &a) == 0;
	vb = lk__krec_decode(file + LK_KSLOT1_OFF, LK_KSLOT_SIZE, &b) == 0;
	if (va && (!vb || a.seq >= b.seq)) {
		*ret = a;
		return 0;
	}
	if (vb) {
		*ret = b;
		return 1;
	}
	return -EBADMSG;
}

uint64_t lk__ktoken_seed(int64_t now_ns)
{
	if (now_ns < 0)
		now_ns = 0;
	return (uint64_t)(now_ns / 1000) * 2;
}

int lk__ktoken_next(const struct lk__krec *cur, const uint8_t boot_id[16], int64_t now_ns,
		    uint64_t *ret_token, uint64_t *ret_reserved, int *ret_sync)
{
	uint64_t tok, res;
	int sync = 0;

	if (!cur) {
		tok = lk__ktoken_seed(now_ns) + 1;
		res = 0;
		sync = 1;
	} else {
		static const uint8_t unknown[16];

		tok = cur->token + 1;
		res = cur->reserved;
		/*
		 * Sync first when the reservation was never confirmed on disk (its
		 * writer may have died before its sync finished) or when this boot
		 * cannot be told apart from others (no boot id).
		 */
		if (!cur->synced || !memcmp(boot_id, unknown, 16))
			sync = 1;
		if (memcmp(cur->boot_id, boot_id, 16) || !memcmp(boot_id, unknown, 16)) {
			/* tokens above token may have been handed out and lost */
			tok = cur->reserved + 1;
			sync = 1;
		}
	}
	if (tok > res)
		sync = 1;
	if (sync)
		res = tok + LK_TOKEN_CHUNK;
	if (res >= LK_TOKEN_LIMIT) {
		res = LK_TOKEN_LIMIT - 1;
		if (tok > res)
			return -EOVERFLOW;
	}
	*ret_token = tok;
	*ret_reserved = res;
	*ret_sync = sync;
	return 0;
}
