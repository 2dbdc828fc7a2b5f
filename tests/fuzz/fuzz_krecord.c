// SPDX-License-Identifier: MIT
/*
 * Fuzz target: kernel-mode lock files (src/krecord.c).
 *
 * A lock file is read by every acquirer, after crashes, torn sectors and
 * whatever else wrote to it, and the token rule decides from what it reads
 * which fencing token comes next. The target checks:
 *
 *  - a record slot that decodes re-encodes to the same bytes, except for
 *    bytes the format leaves meaningless (zero fields, unused flag bits,
 *    label padding, control bytes shown as '?'); any one changed byte is
 *    noticed; a decoded record never has token > reserved or reserved at or
 *    above 2^53;
 *  - a record built from the input encodes and decodes to itself;
 *  - of two slots the newest valid one is picked, and a file with no valid
 *    slot is reported as such;
 *  - the token rule, from any decoded record: the next token is above the
 *    last one, at most the reservation, the reservation stays below 2^53, a
 *    token above the recorded reservation is handed out only with a sync,
 *    and after a reboot (another boot id) only tokens above the old
 *    reservation are handed out.
 *
 * Input: bytes 0-255 and 256-511 are the two slots (bit 0 of byte 512 puts
 * correct CRCs in first, so that mutations reach the checks behind them);
 * bytes 513 on feed a record built from fields, a boot id and a clock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "internal.h"
#include "krecord.h"
#include "labels.h"

static void canonical(const uint8_t *in, uint8_t out[LK_KSLOT_SIZE])
{
	memcpy(out, in, LK_KSLOT_SIZE);
	out[60] &= 3;               /* shared, synced */
	memset(out + 61, 0, 3);
	memset(out + 192, 0, 60);   /* zero */
	fuzz_canon_label(out + 64, 64);
	fuzz_canon_label(out + 128, 64);
	lk__put32(out + 252, lk__crc32c(0, out, 252));
}

static void same_record(const struct lk__krec *a, const struct lk__krec *b, const char *what)
{
	FUZZ_CHECK(a->seq == b->seq && a->token == b->token && a->reserved == b->reserved,
		   "%s: seq, token or reservation differ", what);
	FUZZ_CHECK(!memcmp(a->boot_id, b->boot_id, 16) && a->since_ns == b->since_ns &&
			   a->pid == b->pid && a->shared == b->shared && a->synced == b->synced,
		   "%s: boot id, time, pid or flags differ", what);
	FUZZ_CHECK(!strcmp(a->host, b->host) && !strcmp(a->owner, b->owner),
		   "%s: labels differ", what);
}

static void check_corruption(const uint8_t slot[LK_KSLOT_SIZE], unsigned pos, uint8_t flip)
{
	uint8_t bad[LK_KSLOT_SIZE];
	struct lk__krec r;

	memcpy(bad, slot, sizeof(bad));
	bad[pos % LK_KSLOT_SIZE] ^= flip ? flip : 0x80;
	FUZZ_CHECK(lk__krec_decode(bad, sizeof(bad), &r) == -EBADMSG,
		   "a slot with byte %u changed still decodes", pos % LK_KSLOT_SIZE);
}

static void check_valid(const struct lk__krec *r)
{
	FUZZ_CHECK(r->token <= r->reserved, "token %llu above reservation %llu",
		   (unsigned long long)r->token, (unsigned long long)r->reserved);
	FUZZ_CHECK(r->reserved < LK_TOKEN_LIMIT, "reservation %llu",
		   (unsigned long long)r->reserved);
	FUZZ_CHECK(r->shared <= 1 && r->synced <= 1, "flags %u %u", r->shared, r->synced);
	fuzz_check_label(r->host, sizeof(r->host), "host");
	fuzz_check_label(r->owner, sizeof(r->owner), "owner");
}

/* One slot: 0 and *ret if it decodes (checking the round trip), else -1. */
static int check_slot(const uint8_t *slot, unsigned pos, uint8_t flip, struct lk__krec *ret)
{
	uint8_t want[LK_KSLOT_SIZE], again[LK_KSLOT_SIZE];
	struct lk__krec b;
	int r;

	r = lk__krec_decode(slot, LK_KSLOT_SIZE, ret);
	FUZZ_CHECK(r == 0 || r == -EBADMSG, "decode returned %d", r);
	if (r)
		return -1;
	check_valid(ret);
	lk__krec_encode(ret, again);
	canonical(slot, want);
	for (unsigned i = 0; i < LK_KSLOT_SIZE; i++)
		FUZZ_CHECK(again[i] == want[i], "re-encoded byte %u is 0x%02x, expected 0x%02x", i,
			   again[i], want[i]);
	FUZZ_CHECK(lk__krec_decode(again, sizeof(again), &b) == 0, "a re-encoded slot fails");
	same_record(ret, &b, "decode(encode(decode(x)))");
	check_corruption(again, pos, flip);
	return 0;
}

static void check_token_rule(const struct lk__krec *cur, const uint8_t boot[16], int64_t now)
{
	static const uint8_t unknown[16];
	uint64_t tok = 0, res = 0;
	int sync = -1, r;

	r = lk__ktoken_next(cur, boot, now, &tok, &res, &sync);
	FUZZ_CHECK(r == 0 || r == -EOVERFLOW, "token rule returned %d", r);
	if (r) {
		/* only when the space is really used up: by the record, or by
		 * a wall clock so far ahead that the seed passes 2^53 */
		if (cur)
			FUZZ_CHECK(cur->reserved + 1 >= LK_TOKEN_LIMIT,
				   "-EOVERFLOW with reservation %llu",
				   (unsigned long long)cur->reserved);
		else
			FUZZ_CHECK(lk__ktoken_seed(now) + 1 >= LK_TOKEN_LIMIT,
				   "-EOVERFLOW with seed %llu",
				   (unsigned long long)lk__ktoken_seed(now));
		return;
	}
	FUZZ_CHECK(sync == 0 || sync == 1, "sync %d", sync);
	FUZZ_CHECK(tok <= res && res < LK_TOKEN_LIMIT, "token %llu, reservation %llu",
		   (unsigned long long)tok, (unsigned long long)res);
	if (!cur) {
		FUZZ_CHECK(sync, "a file without a record hands out a token without a sync");
		FUZZ_CHECK(tok > lk__ktoken_seed(now), "token %llu not above the seed",
			   (unsigned long long)tok);
		return;
	}
	FUZZ_CHECK(tok > cur->token, "token %llu after %llu", (unsigned long long)tok,
		   (unsigned long long)cur->token);
	if (tok > cur->reserved || !cur->synced)
		FUZZ_CHECK(sync, "token %llu (reservation %llu, synced %u) without a sync",
			   (unsigned long long)tok, (unsigned long long)cur->reserved, cur->synced);
	if (!sync)
		FUZZ_CHECK(res == cur->reserved, "reservation moved without a sync");
	if (memcmp(cur->boot_id, boot, 16) || !memcmp(boot, unknown, 16))
		FUZZ_CHECK(tok > cur->reserved && sync,
			   "after a reboot: token %llu, old reservation %llu, sync %d",
			   (unsigned long long)tok, (unsigned long long)cur->reserved, sync);
}

static void record_to_bytes(struct fuzz_reader *rd)
{
	char host[96], owner[96];
	uint8_t buf[LK_KSLOT_SIZE];
	struct lk__krec a, b;
	unsigned pos;
	uint8_t flip;

	memset(&a, 0, sizeof(a));
	a.seq = fuzz_take(rd, 8);
	a.reserved = fuzz_take(rd, 8) % LK_TOKEN_LIMIT;
	a.token = a.reserved ? fuzz_take(rd, 8) % (a.reserved + 1) : 0;
	for (int i = 0; i < 16; i++)
		a.boot_id[i] = (uint8_t)fuzz_take(rd, 1);
	a.since_ns = (int64_t)fuzz_take(rd, 8);
	a.pid = (int32_t)(uint32_t)fuzz_take(rd, 4);
	a.shared = (uint8_t)(fuzz_take(rd, 1) & 1);
	a.synced = (uint8_t)(fuzz_take(rd, 1) & 1);
	pos = (unsigned)fuzz_take(rd, 1);
	flip = (uint8_t)fuzz_take(rd, 1);
	fuzz_take_label(rd, host, sizeof(host) - 1);
	fuzz_take_label(rd, owner, sizeof(owner) - 1);
	lk__label_copy(a.host, sizeof(a.host), host);
	lk__label_copy(a.owner, sizeof(a.owner), owner);

	lk__krec_encode(&a, buf);
	FUZZ_CHECK(lk__krec_decode(buf, sizeof(buf), &b) == 0, "an encoded slot does not decode");
	fuzz_check_label_cut(host, b.host, sizeof(b.host), 1, "host");
	fuzz_check_label_cut(owner, b.owner, sizeof(b.owner), 1, "owner");
	strcpy(a.host, b.host);
	strcpy(a.owner, b.owner);
	same_record(&a, &b, "decode(encode(r))");
	check_corruption(buf, pos, flip);

	/* a token above the reservation is a damaged record */
	if (a.reserved + 1 < LK_TOKEN_LIMIT) {
		a.token = a.reserved + 1;
		lk__krec_encode(&a, buf);
		FUZZ_CHECK(lk__krec_decode(buf, sizeof(buf), &b) == -EBADMSG,
			   "token above its reservation decoded");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t file[LK_KFILE_SIZE];
	struct lk__krec s[2], picked;
	struct fuzz_reader rd;
	uint8_t boot[16];
	int valid[2], idx, fix;
	int64_t now;

	/* the two slots of a file image with a correct header */
	memset(file, 0, sizeof(file));
	lk__kfile_header_encode(file);
	FUZZ_CHECK(lk__kfile_header_check(file, LK_KFILE_HDR_SIZE) == 0, "own header refused");
	FUZZ_CHECK(lk__kfile_header_check(file, LK_KFILE_HDR_SIZE - 1) == -EINVAL,
		   "short header accepted");
	memcpy(file + LK_KSLOT0_OFF, data, size < 256 ? size : 256);
	if (size > 256)
		memcpy(file + LK_KSLOT1_OFF, data + 256, size < 512 ? size - 256 : 256);
	fix = size > 512 && (data[512] & 1);
	if (fix) {
		lk__put32(file + LK_KSLOT0_OFF + 252, lk__crc32c(0, file + LK_KSLOT0_OFF, 252));
		lk__put32(file + LK_KSLOT1_OFF + 252, lk__crc32c(0, file + LK_KSLOT1_OFF, 252));
	}
	/* a header check of arbitrary bytes only says yes or no */
	idx = lk__kfile_header_check(data, size);
	FUZZ_CHECK(idx == 0 || idx == -EINVAL, "header check returned %d", idx);

	rd.p = size > 513 ? data + 513 : data;
	rd.n = size > 513 ? size - 513 : size;
	valid[0] = check_slot(file + LK_KSLOT0_OFF, (unsigned)fuzz_take(&rd, 1),
			      (uint8_t)fuzz_take(&rd, 1), &s[0]) == 0;
	valid[1] = check_slot(file + LK_KSLOT1_OFF, (unsigned)fuzz_take(&rd, 1),
			      (uint8_t)fuzz_take(&rd, 1), &s[1]) == 0;

	FUZZ_CHECK(lk__kfile_pick(file, LK_KFILE_READ_SIZE - 1, &picked) == -EBADMSG,
		   "a short file image was picked from");
	idx = lk__kfile_pick(file, LK_KFILE_READ_SIZE, &picked);
	if (!valid[0] && !valid[1]) {
		FUZZ_CHECK(idx == -EBADMSG, "picked slot %d of a file with no valid slot", idx);
	} else {
		FUZZ_CHECK(idx == 0 || idx == 1, "pick returned %d", idx);
		FUZZ_CHECK(valid[idx], "picked invalid slot %d", idx);
		same_record(&picked, &s[idx], "picked record");
		if (valid[!idx])
			FUZZ_CHECK(s[idx].seq > s[!idx].seq || (s[idx].seq == s[!idx].seq && !idx),
				   "picked seq %llu over %llu", (unsigned long long)s[idx].seq,
				   (unsigned long long)s[!idx].seq);
	}

	for (int i = 0; i < 16; i++)
		boot[i] = (uint8_t)fuzz_take(&rd, 1);
	if (fuzz_take(&rd, 1) & 1 && idx >= 0)
		memcpy(boot, picked.boot_id, 16); /* same boot as the record */
	now = (int64_t)fuzz_take(&rd, 8);
	check_token_rule(idx >= 0 ? &picked : NULL, boot, now);
	record_to_bytes(&rd);
	return 0;
}
