// SPDX-License-Identifier: MIT
/*
 * Fuzz target: lease-mode generation records (src/lrecord.c).
 *
 * Every observer decodes records that any host, any version or any torn
 * write may have left, so the decoder must turn arbitrary bytes into either
 * -EBADMSG or a record that means exactly what its bytes say. The target
 * checks both directions:
 *
 *  - bytes -> record: whatever decodes re-encodes to the same bytes, except
 *    where the format says bytes carry nothing (zero fields, label padding,
 *    control bytes that readers show as '?'); a valid record has a known
 *    state and a generation below 2^53; any one changed byte is noticed; and
 *    only a read of exactly 256 bytes can be a record.
 *  - record -> bytes: a record built from the input encodes to bytes that
 *    decode to the same record, with labels cut at a UTF-8 boundary.
 *
 * Input: the first 256 bytes are a candidate record; byte 256, if present,
 * selects extras (bit 0: put a correct CRC in first, so that mutations reach
 * the checks behind the CRC); the rest, or the whole input when it is
 * shorter, feeds the fields of the record built for the second direction.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "internal.h"
#include "labels.h"
#include "lrecord.h"

static void canonical(const uint8_t *in, uint8_t out[LK_LREC_SIZE])
{
	memcpy(out, in, LK_LREC_SIZE);
	memset(out + 60, 0, 4);   /* zero */
	memset(out + 228, 0, 4);  /* alignment gap before pid2_start */
	memset(out + 240, 0, 12); /* zero */
	fuzz_canon_label(out + 96, 64);
	fuzz_canon_label(out + 160, 64);
	lk__put32(out + 252, lk__crc32c(0, out, 252));
}

static void same_record(const struct lk__lrec *a, const struct lk__lrec *b, const char *what)
{
	FUZZ_CHECK(a->gen == b->gen && a->state == b->state && a->ttl_ms == b->ttl_ms &&
			   a->rho_ppm == b->rho_ppm && a->counter == b->counter,
		   "%s: header fields differ", what);
	FUZZ_CHECK(!memcmp(a->boot_id, b->boot_id, 16) && a->pidns == b->pidns &&
			   a->pid == b->pid && a->pid_start == b->pid_start &&
			   a->pid2 == b->pid2 && a->pid2_start == b->pid2_start,
		   "%s: holder identity differs", what);
	FUZZ_CHECK(a->nonce == b->nonce && a->wall_ns == b->wall_ns && a->since_ns == b->since_ns,
		   "%s: nonce or times differ", what);
	FUZZ_CHECK(!strcmp(a->host, b->host) && !strcmp(a->owner, b->owner),
		   "%s: labels differ", what);
}

static void check_corruption(const uint8_t rec[LK_LREC_SIZE], unsigned pos, uint8_t flip)
{
	uint8_t bad[LK_LREC_SIZE];
	struct lk__lrec r;

	memcpy(bad, rec, sizeof(bad));
	bad[pos % LK_LREC_SIZE] ^= flip ? flip : 0x01;
	FUZZ_CHECK(lk__lrec_decode(bad, sizeof(bad), &r) == -EBADMSG,
		   "a record with byte %u changed still decodes", pos % LK_LREC_SIZE);
}

static void bytes_to_record(const uint8_t *data, size_t size)
{
	uint8_t in[LK_LREC_SIZE], want[LK_LREC_SIZE], again[LK_LREC_SIZE];
	struct lk__lrec a, b;
	int r;

	memcpy(in, data, LK_LREC_SIZE);
	if (size > LK_LREC_SIZE && (data[LK_LREC_SIZE] & 1))
		lk__put32(in + 252, lk__crc32c(0, in, 252));

	/* a short or long read is never a record, whatever its first bytes */
	if (size != LK_LREC_SIZE)
		FUZZ_CHECK(lk__lrec_decode(data, size, &a) == -EBADMSG,
			   "a read of %zu bytes decoded", size);
	r = lk__lrec_decode(in, LK_LREC_SIZE, &a);
	FUZZ_CHECK(r == 0 || r == -EBADMSG, "decode returned %d", r);
	if (r)
		return;
	FUZZ_CHECK(a.state >= LK_LSTATE_HELD && a.state <= LK_LSTATE_ABORTED,
		   "decoded state %u", a.state);
	FUZZ_CHECK(a.gen < (1ull << 53), "decoded generation %llu", (unsigned long long)a.gen);
	fuzz_check_label(a.host, sizeof(a.host), "host");
	fuzz_check_label(a.owner, sizeof(a.owner), "owner");

	lk__lrec_encode(&a, again);
	canonical(in, want);
	for (unsigned i = 0; i < LK_LREC_SIZE; i++)
		FUZZ_CHECK(again[i] == want[i], "re-encoded byte %u is 0x%02x, expected 0x%02x", i,
			   again[i], want[i]);
	FUZZ_CHECK(lk__lrec_decode(again, sizeof(again), &b) == 0, "a re-encoded record fails");
	same_record(&a, &b, "decode(encode(decode(x)))");
	check_corruption(again, size > 258 ? data[257] : 0, size > 258 ? data[258] : 0);
}

static void record_to_bytes(const uint8_t *data, size_t size)
{
	struct fuzz_reader rd = { data, size };
	char host[96], owner[96];
	uint8_t buf[LK_LREC_SIZE];
	struct lk__lrec a, b;
	unsigned pos;
	uint8_t flip;

	memset(&a, 0, sizeof(a));
	a.gen = fuzz_take(&rd, 8) & ((1ull << 53) - 1);
	a.state = (uint8_t)(LK_LSTATE_HELD + fuzz_take(&rd, 1) % 4);
	a.ttl_ms = (uint32_t)fuzz_take(&rd, 4);
	a.rho_ppm = (uint32_t)fuzz_take(&rd, 4);
	a.counter = fuzz_take(&rd, 8);
	for (int i = 0; i < 16; i++)
		a.boot_id[i] = (uint8_t)fuzz_take(&rd, 1);
	a.pidns = fuzz_take(&rd, 8);
	a.pid = (int32_t)(uint32_t)fuzz_take(&rd, 4);
	a.pid_start = fuzz_take(&rd, 8);
	a.pid2 = (int32_t)(uint32_t)fuzz_take(&rd, 4);
	a.pid2_start = fuzz_take(&rd, 8);
	a.nonce = fuzz_take(&rd, 8);
	a.wall_ns = (int64_t)fuzz_take(&rd, 8);
	a.since_ns = (int64_t)fuzz_take(&rd, 8);
	pos = (unsigned)fuzz_take(&rd, 1);
	flip = (uint8_t)fuzz_take(&rd, 1);
	/* labels longer than the field, to exercise the cut */
	fuzz_take_label(&rd, host, sizeof(host) - 1);
	fuzz_take_label(&rd, owner, sizeof(owner) - 1);
	lk__label_copy(a.host, sizeof(a.host), host);
	lk__label_copy(a.owner, sizeof(a.owner), owner);
	fuzz_check_label_cut(host, a.host, sizeof(a.host), 0, "host (copy)");

	lk__lrec_encode(&a, buf);
	FUZZ_CHECK(lk__get32(buf) == 0x314c4b4cu && buf[4] == 1, "encoded magic or version");
	FUZZ_CHECK(lk__lrec_decode(buf, sizeof(buf), &b) == 0, "an encoded record does not decode");
	fuzz_check_label_cut(host, b.host, sizeof(b.host), 1, "host");
	fuzz_check_label_cut(owner, b.owner, sizeof(b.owner), 1, "owner");
	/* labels aside (control bytes come back as '?'), the record is the same */
	strcpy(a.host, b.host);
	strcpy(a.owner, b.owner);
	same_record(&a, &b, "decode(encode(r))");
	check_corruption(buf, pos, flip);

	/* generations at or above 2^53 are refused, however well formed */
	a.gen |= 1ull << 53;
	lk__lrec_encode(&a, buf);
	FUZZ_CHECK(lk__lrec_decode(buf, sizeof(buf), &b) == -EBADMSG,
		   "generation %llu decoded", (unsigned long long)a.gen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= LK_LREC_SIZE) {
		bytes_to_record(data, size);
		record_to_bytes(data + LK_LREC_SIZE, size - LK_LREC_SIZE);
	} else {
		struct lk__lrec r;

		FUZZ_CHECK(lk__lrec_decode(data, size, &r) == -EBADMSG,
			   "a read of %zu bytes decoded", size);
		record_to_bytes(data, size);
	}
	return 0;
}
