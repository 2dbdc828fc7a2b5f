// SPDX-License-Identifier: MIT
/*
 * The lock file's header and record slots are what survives a crash, a torn
 * write or a foreign program scribbling on the store, and the token rule is
 * what keeps fencing tokens increasing across all of that. These tests treat
 * the codecs as a boundary with untrusted input: every single-byte corruption
 * must be noticed, nothing that is not a record may decode as one, and the
 * token rule is checked both case by case and against a model of a machine
 * that loses its page cache at random moments.
 *
 * Labels (owner, host) are shown to humans by lockctl, so the tests also pin
 * down that a cut label stays valid UTF-8 and that control bytes written by
 * someone else never reach a terminal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "krecord.h"
#include "tutil.h"

static const uint8_t boot_a[16] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
				    0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xa0 };
static const uint8_t boot_b[16] = { 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8,
				    0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xb0 };

/* A fixed-seed generator: failures must be reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

static struct lk__krec make_rec(uint64_t seq, uint64_t token, uint64_t reserved,
				const uint8_t boot[16])
{
	struct lk__krec r;

	memset(&r, 0, sizeof(r));
	r.seq = seq;
	r.token = token;
	r.reserved = reserved;
	memcpy(r.boot_id, boot, 16);
	r.since_ns = 1700000000123456789ll;
	r.pid = 4242;
	r.shared = 0;
	r.synced = 1;
	snprintf(r.host, sizeof(r.host), "%s", "build-07.example.org");
	snprintf(r.owner, sizeof(r.owner), "%s", "nightly-backup");
	return r;
}

/* 1 if s[0..n) is well-formed UTF-8 (complete sequences, no stray bytes). */
static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		size_t len;

		if (p[i] < 0x80)
			len = 1;
		else if ((p[i] & 0xe0) == 0xc0)
			len = 2;
		else if ((p[i] & 0xf0) == 0xe0)
			len = 3;
		else if ((p[i] & 0xf8) == 0xf0)
			len = 4;
		else
			return 0;
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
		i += len;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * CRC-32C
 */

static void test_crc32c_known_values(void **state)
{
	static const char digits[] = "123456789";
	uint8_t zeros[32] = { 0 };
	uint8_t buf[1000];

	/* the check values of the CRC-32C (Castagnoli) specification */
	assert_int_equal(lk__crc32c(0, digits, 9), 0xe3069283u);
	assert_int_equal(lk__crc32c(0, zeros, 32), 0x8a9136aau);
	assert_int_equal(lk__crc32c(0, "", 0), 0);
	/* incremental use gives the same result as one call, at any split */
	fill_random(buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut += 37) {
		uint32_t c = lk__crc32c(0, buf, cut);

		assert_int_equal(lk__crc32c(c, buf + cut, sizeof(buf) - cut),
				 lk__crc32c(0, buf, sizeof(buf)));
	}
}

/* ------------------------------------------------------------------------
 * Header
 */

static void test_header_round_trip(void **state)
{
	uint8_t hdr[LK_KFILE_HDR_SIZE], again[LK_KFILE_HDR_SIZE];

	memset(hdr, 0xee, sizeof(hdr));
	lk__kfile_header_encode(hdr);
	assert_int_equal(lk__kfile_header_check(hdr, sizeof(hdr)), 0);
	/* deterministic: the same bytes every time */
	lk__kfile_header_encode(again);
	assert_memory_equal(hdr, again, sizeof(hdr));
	/* a longer buffer (the whole first page) is fine too */
	{
		uint8_t page[LK_KFILE_SIZE];

		memset(page, 0, sizeof(page));
		lk__kfile_header_encode(page);
		assert_int_equal(lk__kfile_header_check(page, sizeof(page)), 0);
	}
}

static void test_header_every_byte_corruption(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff };
	uint8_t hdr[LK_KFILE_HDR_SIZE], bad[LK_KFILE_HDR_SIZE];

	lk__kfile_header_encode(hdr);
	for (size_t i = 0; i < sizeof(hdr); i++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			memcpy(bad, hdr, sizeof(hdr));
			bad[i] ^= masks[m];
			if (lk__kfile_header_check(bad, sizeof(bad)) != -EINVAL)
				fail_msg("header byte %zu ^ 0x%02x not detected", i, masks[m]);
		}
	}
}

static void test_header_truncated_and_foreign(void **state)
{
	uint8_t hdr[LK_KFILE_HDR_SIZE], junk[LK_KFILE_SIZE];
	static const char text[] = "# This is a configuration file, not a lock.\n";

	lk__kfile_header_encode(hdr);
	for (size_t len = 0; len < sizeof(hdr); len++)
		assert_int_equal(lk__kfile_header_check(hdr, len), -EINVAL);

	memset(junk, 0, sizeof(junk));
	assert_int_equal(lk__kfile_header_check(junk, sizeof(junk)), -EINVAL);
	memset(junk, 0xff, sizeof(junk));
	assert_int_equal(lk__kfile_header_check(junk, sizeof(junk)), -EINVAL);
	for (size_t off = 0; off < sizeof(junk); off += sizeof(text) - 1)
		memcpy(junk + off, text,
		       sizeof(junk) - off < sizeof(text) - 1 ? sizeof(junk) - off
							     : sizeof(text) - 1);
	assert_int_equal(lk__kfile_header_check(junk, sizeof(junk)), -EINVAL);
	for (int i = 0; i < 10000; i++) {
		fill_random(junk, LK_KFILE_HDR_SIZE);
		assert_int_equal(lk__kfile_header_check(junk, LK_KFILE_HDR_SIZE), -EINVAL);
	}
	/* the right magic with garbage after it is still foreign */
	memcpy(junk, hdr, 8);
	assert_int_equal(lk__kfile_header_check(junk, LK_KFILE_HDR_SIZE), -EINVAL);
}

/* ------------------------------------------------------------------------
 * Record slots
 */

static void assert_rec_equal(const struct lk__krec *a, const struct lk__krec *b)
{
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->token, b->token);
	assert_int_equal(a->reserved, b->reserved);
	assert_memory_equal(a->boot_id, b->boot_id, 16);
	assert_int_equal(a->since_ns, b->since_ns);
	assert_int_equal(a->pid, b->pid);
	assert_int_equal(a->shared, b->shared);
	assert_string_equal(a->host, b->host);
	assert_string_equal(a->owner, b->owner);
}

static void test_slot_round_trip(void **state)
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	in = make_rec(7, 123456, 200000, boot_a);
	lk__krec_encode(&in, slot);
	memset(&out, 0x77, sizeof(out));
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_rec_equal(&in, &out);

	/* edge values of every field */
	in = make_rec(UINT64_MAX, LK_TOKEN_LIMIT - 1, LK_TOKEN_LIMIT - 1, boot_b);
	in.since_ns = INT64_MIN;
	in.pid = INT32_MAX;
	in.shared = 1;
	snprintf(in.owner, sizeof(in.owner), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
	in.host[0] = 0;
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_rec_equal(&in, &out);

	in = make_rec(0, 0, 0, boot_a);
	in.since_ns = -1;
	in.pid = -1;
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_rec_equal(&in, &out);

	/* 63 bytes of label survive whole */
	memset(in.owner, 'o', 63);
	in.owner[63] = 0;
	memset(in.host, 'h', 63);
	in.host[63] = 0;
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_rec_equal(&in, &out);
}

static void test_slot_every_byte_corruption(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff };
	uint8_t slot[LK_KSLOT_SIZE], bad[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	in = make_rec(3, 1000, 70000, boot_a);
	lk__krec_encode(&in, slot);
	for (size_t i = 0; i < sizeof(slot); i++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			memcpy(bad, slot, sizeof(slot));
			bad[i] ^= masks[m];
			if (lk__krec_decode(bad, sizeof(bad), &out) != -EBADMSG)
				fail_msg("slot byte %zu ^ 0x%02x not detected", i, masks[m]);
		}
	}
	/* a slot torn at any point (new bytes up to k, old bytes after) */
	{
		struct lk__krec in2 = make_rec(4, 1001, 70000, boot_a);
		uint8_t newer[LK_KSLOT_SIZE];

		in2.pid = 99;
		lk__krec_encode(&in2, newer);
		for (size_t k = 1; k < sizeof(slot); k++) {
			memcpy(bad, newer, k);
			memcpy(bad + k, slot + k, sizeof(slot) - k);
			if (!memcmp(bad, newer, sizeof(bad)) || !memcmp(bad, slot, sizeof(bad)))
				continue;
			if (lk__krec_decode(bad, sizeof(bad), &out) != -EBADMSG)
				fail_msg("slot torn after byte %zu not detected", k);
		}
	}
}

static void test_slot_truncated(void **state)
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	in = make_rec(1, 5, 10, boot_a);
	lk__krec_encode(&in, slot);
	for (size_t len = 0; len < LK_KSLOT_SIZE; len++)
		assert_int_equal(lk__krec_decode(slot, len, &out), -EBADMSG);
	assert_int_equal(lk__krec_decode(slot, LK_KSLOT_SIZE, &out), 0);
}

static void test_slot_foreign_content(void **state)
{
	static const char text[] = "[Unit]\nDescription=not a lock record\n";
	uint8_t buf[LK_KSLOT_SIZE];
	struct lk__krec out;

	memset(buf, 0, sizeof(buf));
	assert_int_equal(lk__krec_decode(buf, sizeof(buf), &out), -EBADMSG);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(lk__krec_decode(buf, sizeof(buf), &out), -EBADMSG);
	for (size_t off = 0; off < sizeof(buf); off++)
		buf[off] = (uint8_t)text[off % (sizeof(text) - 1)];
	assert_int_equal(lk__krec_decode(buf, sizeof(buf), &out), -EBADMSG);
	for (int i = 0; i < 20000; i++) {
		fill_random(buf, sizeof(buf));
		assert_int_equal(lk__krec_decode(buf, sizeof(buf), &out), -EBADMSG);
	}
	/* a header is not a record either */
	memset(buf, 0, sizeof(buf));
	lk__kfile_header_encode(buf);
	assert_int_equal(lk__krec_decode(buf, sizeof(buf), &out), -EBADMSG);
}

static void test_slot_impossible_values(void **state)
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	/* a token above its own reservation: never written by lockkit */
	in = make_rec(1, 11, 10, boot_a);
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), -EBADMSG);

	in = make_rec(1, UINT64_MAX, 10, boot_a);
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), -EBADMSG);

	/* a reservation at or past the token limit */
	in = make_rec(1, 10, LK_TOKEN_LIMIT, boot_a);
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), -EBADMSG);
	in = make_rec(1, LK_TOKEN_LIMIT, LK_TOKEN_LIMIT, boot_a);
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), -EBADMSG);

	/* token == reserved is the normal state right after a sync */
	in = make_rec(1, 10, 10, boot_a);
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
}

/* ------------------------------------------------------------------------
 * Picking the current slot
 */

static void build_file(uint8_t *file, const struct lk__krec *s0, const struct lk__krec *s1)
{
	memset(file, 0, LK_KFILE_SIZE);
	lk__kfile_header_encode(file);
	if (s0)
		lk__krec_encode(s0, file + LK_KSLOT0_OFF);
	if (s1)
		lk__krec_encode(s1, file + LK_KSLOT1_OFF);
}

static void test_pick_newest(void **state)
{
	static uint8_t file[LK_KFILE_SIZE];
	struct lk__krec a = make_rec(5, 100, 1000, boot_a);
	struct lk__krec b = make_rec(6, 101, 1000, boot_a);
	struct lk__krec out;

	build_file(file, &a, &b);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 1);
	assert_int_equal(out.seq, 6);
	assert_int_equal(out.token, 101);

	build_file(file, &b, &a);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 0);
	assert_int_equal(out.seq, 6);
	assert_int_equal(out.token, 101);

	/* the reader only needs the bytes up to the end of slot 1 */
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_READ_SIZE, &out), 0);
	assert_int_equal(out.token, 101);

	/* a huge sequence number in either slot still wins */
	b.seq = UINT64_MAX;
	build_file(file, &a, &b);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 1);
	assert_int_equal(out.seq, UINT64_MAX);
}

static void test_pick_falls_back(void **state)
{
	static uint8_t file[LK_KFILE_SIZE];
	struct lk__krec a = make_rec(5, 100, 1000, boot_a);
	struct lk__krec b = make_rec(6, 101, 1000, boot_a);
	struct lk__krec out;

	/* the newer slot is damaged: the older one is current */
	for (size_t i = 0; i < LK_KSLOT_SIZE; i += 17) {
		build_file(file, &a, &b);
		file[LK_KSLOT1_OFF + i] ^= 0x40;
		assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 0);
		assert_int_equal(out.seq, 5);
		assert_int_equal(out.token, 100);

		build_file(file, &b, &a);
		file[LK_KSLOT0_OFF + i] ^= 0x40;
		assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 1);
		assert_int_equal(out.seq, 5);
	}
	/* only one slot was ever written */
	build_file(file, &a, NULL);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 0);
	assert_int_equal(out.token, 100);
	build_file(file, NULL, &b);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), 1);
	assert_int_equal(out.token, 101);
}

static void test_pick_both_bad(void **state)
{
	static uint8_t file[LK_KFILE_SIZE];
	struct lk__krec a = make_rec(5, 100, 1000, boot_a);
	struct lk__krec b = make_rec(6, 101, 1000, boot_a);
	struct lk__krec out;

	build_file(file, NULL, NULL);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), -EBADMSG);

	build_file(file, &a, &b);
	file[LK_KSLOT0_OFF + 20] ^= 1;
	file[LK_KSLOT1_OFF + 200] ^= 1;
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), -EBADMSG);

	memset(file, 0, LK_KFILE_SIZE);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), -EBADMSG);
	fill_random(file, LK_KFILE_SIZE);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_SIZE, &out), -EBADMSG);

	/* too short to hold both slots, even if what is there is valid */
	build_file(file, &a, &b);
	assert_int_equal(lk__kfile_pick(file, LK_KFILE_READ_SIZE - 1, &out), -EBADMSG);
	assert_int_equal(lk__kfile_pick(file, 0, &out), -EBADMSG);
}

/* ------------------------------------------------------------------------
 * The token rule
 */

#define NOW_NS 1700000000000000000ll /* November 2023 */

static void test_token_fresh(void **state)
{
	uint64_t tok = 0, res = 0;
	int sync = 0;

	assert_int_equal(lk__ktoken_seed(NOW_NS), 2 * (uint64_t)(NOW_NS / 1000));
	assert_int_equal(lk__ktoken_next(NULL, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, lk__ktoken_seed(NOW_NS) + 1);
	assert_int_equal(sync, 1);
	assert_true(res >= tok);
	assert_true(res < LK_TOKEN_LIMIT);

	/* a later first life of the file starts higher */
	{
		uint64_t tok2, res2;
		int sync2;

		assert_int_equal(lk__ktoken_next(NULL, boot_b, NOW_NS + 1000, &tok2, &res2, &sync2),
				 0);
		assert_true(tok2 > tok);
		assert_int_equal(sync2, 1);
	}
	/* a clock before the epoch still gives a valid token */
	assert_int_equal(lk__ktoken_next(NULL, boot_a, -5000000000ll, &tok, &res, &sync), 0);
	assert_true(tok >= 1);
	assert_true(res >= tok && res < LK_TOKEN_LIMIT);
	assert_int_equal(sync, 1);
}

static void test_token_unsynced_or_unknown_boot(void **state)
{
	static const uint8_t zero[16];
	struct lk__krec cur = make_rec(9, 100, 1000, boot_a);
	uint64_t tok, res;
	int sync = -1;

	/* a reservation whose writer died before its sync finished */
	cur.synced = 0;
	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(sync, 1);
	assert_true(tok > 100);
	/* the flag survives encoding */
	{
		uint8_t buf[LK_KSLOT_SIZE];
		struct lk__krec back;

		lk__krec_encode(&cur, buf);
		assert_int_equal(lk__krec_decode(buf, sizeof(buf), &back), 0);
		assert_int_equal(back.synced, 0);
		cur.synced = 1;
		lk__krec_encode(&cur, buf);
		assert_int_equal(lk__krec_decode(buf, sizeof(buf), &back), 0);
		assert_int_equal(back.synced, 1);
	}
	/* no boot id: every acquisition syncs and starts above the reservation */
	cur = make_rec(9, 100, 1000, zero);
	assert_int_equal(lk__ktoken_next(&cur, zero, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(sync, 1);
	assert_int_equal(tok, 1001);
}

static void test_token_same_boot(void **state)
{
	struct lk__krec cur = make_rec(9, 100, 1000, boot_a);
	uint64_t tok, res;
	int sync = -1;

	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, 101);
	assert_int_equal(sync, 0);
	/* without a sync the reservation on disk is still the old one */
	assert_int_equal(res, 1000);

	/* the last token inside the reservation needs no sync either */
	cur = make_rec(9, 999, 1000, boot_a);
	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, 1000);
	assert_int_equal(sync, 0);
	assert_int_equal(res, 1000);
}

static void test_token_crossing_reservation(void **state)
{
	struct lk__krec cur = make_rec(9, 1000, 1000, boot_a);
	uint64_t tok, res;
	int sync = 0;

	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, 1001);
	assert_int_equal(sync, 1);
	assert_true(res > 1000);
	assert_true(res >= tok);
	/* a reservation worth having: more than one token ahead */
	assert_true(res > tok);
}

static void test_token_new_boot(void **state)
{
	struct lk__krec cur = make_rec(9, 100, 5000, boot_a);
	uint64_t tok, res;
	int sync = 0;

	/* tokens 101..5000 may have been handed out and lost with the page cache */
	assert_int_equal(lk__ktoken_next(&cur, boot_b, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, 5001);
	assert_int_equal(sync, 1);
	assert_true(res >= tok && res < LK_TOKEN_LIMIT);

	/* an all-zero boot id (unknown) is a different boot too */
	{
		static const uint8_t zero[16];

		assert_int_equal(lk__ktoken_next(&cur, zero, NOW_NS, &tok, &res, &sync), 0);
		assert_int_equal(tok, 5001);
		assert_int_equal(sync, 1);
	}
	/* a boot id that differs in its last byte only */
	{
		uint8_t near[16];

		memcpy(near, boot_a, 16);
		near[15] ^= 1;
		assert_int_equal(lk__ktoken_next(&cur, near, NOW_NS, &tok, &res, &sync), 0);
		assert_int_equal(tok, 5001);
		assert_int_equal(sync, 1);
	}
}

static void test_token_limit(void **state)
{
	struct lk__krec cur;
	uint64_t tok = 111, res = 222;
	int sync = 333;

	/* the very last token can still be handed out */
	cur = make_rec(1, LK_TOKEN_LIMIT - 2, LK_TOKEN_LIMIT - 1, boot_a);
	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, LK_TOKEN_LIMIT - 1);
	assert_true(res < LK_TOKEN_LIMIT);

	cur = make_rec(1, LK_TOKEN_LIMIT - 3, LK_TOKEN_LIMIT - 3, boot_a);
	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), 0);
	assert_int_equal(tok, LK_TOKEN_LIMIT - 2);
	assert_int_equal(sync, 1);
	assert_true(res >= tok && res < LK_TOKEN_LIMIT);

	/* and after it, nothing: out-parameters untouched */
	tok = 111, res = 222, sync = 333;
	cur = make_rec(1, LK_TOKEN_LIMIT - 1, LK_TOKEN_LIMIT - 1, boot_a);
	assert_int_equal(lk__ktoken_next(&cur, boot_a, NOW_NS, &tok, &res, &sync), -EOVERFLOW);
	assert_int_equal(tok, 111);
	assert_int_equal(res, 222);
	assert_int_equal(sync, 333);

	/* a new boot must skip the whole reservation, which reaches the limit */
	cur = make_rec(1, 5, LK_TOKEN_LIMIT - 1, boot_a);
	assert_int_equal(lk__ktoken_next(&cur, boot_b, NOW_NS, &tok, &res, &sync), -EOVERFLOW);

	/* a wall clock so far ahead that the seed is past the limit */
	assert_int_equal(lk__ktoken_next(NULL, boot_a, INT64_MAX, &tok, &res, &sync), -EOVERFLOW);
}

/* Random states: every answer obeys the rule or is a justified -EOVERFLOW. */
static void test_token_invariants(void **state)
{
	for (int i = 0; i < 200000; i++) {
		struct lk__krec cur;
		uint64_t reserved, token, tok = 0, res = 0;
		int same = rng() & 1, sync = -1, r;

		switch (rng() % 4) {
		case 0:
			reserved = rng() % 100000;
			break;
		case 1:
			reserved = LK_TOKEN_LIMIT - 1 - rng() % 100000;
			break;
		case 2:
			reserved = LK_TOKEN_LIMIT - 1 - rng() % 4;
			break;
		default:
			reserved = rng() % LK_TOKEN_LIMIT;
			break;
		}
		token = rng() % 3 ? reserved - rng() % (reserved + 1) % 70000 : reserved;
		cur = make_rec(rng(), token, reserved, boot_a);
		r = lk__ktoken_next(&cur, same ? boot_a : boot_b, NOW_NS, &tok, &res, &sync);
		if (r == -EOVERFLOW) {
			uint64_t need = same ? token + 1 : reserved + 1;

			if (need < LK_TOKEN_LIMIT)
				fail_msg("-EOVERFLOW for token %llu reserved %llu same boot %d",
					 (unsigned long long)token, (unsigned long long)reserved,
					 same);
			continue;
		}
		assert_int_equal(r, 0);
		assert_true(tok > token);
		assert_true(tok < LK_TOKEN_LIMIT);
		assert_true(tok <= res);
		assert_true(res < LK_TOKEN_LIMIT);
		assert_true(sync == 0 || sync == 1);
		if (!same) {
			assert_true(tok > reserved);
			assert_int_equal(sync, 1);
		}
		if (tok > reserved)
			assert_int_equal(sync, 1);
		if (!sync)
			assert_int_equal(res, reserved);
	}
}

/*
 * A model of the machine: the page cache holds the latest record, the disk
 * holds whatever was last synced plus any later record the kernel happened
 * to write back. Power loss replaces the cache with one of those and brings
 * a new boot id. Every token handed out must exceed every earlier one.
 */
static void test_token_survives_power_loss(void **state)
{
	struct lk__krec cache, history[64];
	uint8_t boot[16];
	uint64_t last = 0, tok, res;
	int64_t now = NOW_NS;
	size_t nhist = 0;
	int have = 0, sync;

	memcpy(boot, boot_a, 16);
	for (int i = 0; i < 300000; i++) {
		unsigned int ev = (unsigned int)(rng() % 1000);

		now += 1000000; /* 1 ms per event */
		if (ev == 0 && have) {
			/* power loss: the disk holds the synced record or a later one */
			cache = history[rng() % nhist];
			nhist = 1;
			history[0] = cache;
			boot[0]++;
			boot[1] = (uint8_t)rng();
			continue;
		}
		assert_int_equal(lk__ktoken_next(have ? &cache : NULL, boot, now, &tok, &res, &sync),
				 0);
		if (tok <= last)
			fail_msg("event %d: token %llu after %llu", i, (unsigned long long)tok,
				 (unsigned long long)last);
		last = tok;
		cache = make_rec(have ? cache.seq + 1 : 1, tok, res, boot);
		have = 1;
		if (sync) {
			nhist = 0;
		} else if (nhist == sizeof(history) / sizeof(history[0])) {
			/* keep the synced record, forget a random unsynced one */
			history[1 + rng() % (nhist - 1)] = history[nhist - 1];
			nhist--;
		}
		history[nhist++] = cache;
	}
}

/* ------------------------------------------------------------------------
 * Labels
 */

/*
 * Fill a 64-byte label field completely (no NUL: the label was longer) with
 * prefix ASCII bytes followed by copies of the multi-byte character ch.
 */
static void fill_label(char field[64], size_t prefix, const char *ch)
{
	size_t w = strlen(ch), i;

	memset(field, 'a', prefix);
	for (i = prefix; i < 64; i++)
		field[i] = ch[(i - prefix) % w];
}

static void check_cut(const char *field, const char *got, size_t width)
{
	size_t n = strlen(got);

	if (n > LK_OWNER_MAX)
		fail_msg("label of %zu bytes kept, limit %d", n, LK_OWNER_MAX);
	if (memcmp(got, field, n))
		fail_msg("label is not a prefix of the original");
	if (!utf8_valid(got, n))
		fail_msg("label cut inside a %zu-byte UTF-8 character (kept %zu bytes, last "
			 "bytes %02x %02x)",
			 width, n, n > 1 ? (unsigned char)got[n - 2] : 0,
			 n ? (unsigned char)got[n - 1] : 0);
	/* at most the one character that did not fit is dropped */
	if (n + width - 1 < LK_OWNER_MAX)
		fail_msg("label cut too short: %zu bytes for a %zu-byte character", n, width);
}

static void test_label_cut_at_utf8_boundary(void **state)
{
	static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x92" };
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	for (size_t c = 0; c < 3; c++) {
		for (size_t prefix = 0; prefix < 4; prefix++) {
			in = make_rec(1, 1, 2, boot_a);
			fill_label(in.owner, prefix, chars[c]);
			fill_label(in.host, prefix, chars[c]);
			lk__krec_encode(&in, slot);
			assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
			check_cut(in.owner, out.owner, strlen(chars[c]));
			check_cut(in.host, out.host, strlen(chars[c]));
		}
	}
}

static void test_label_control_chars_sanitized(void **state)
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;

	in = make_rec(1, 1, 2, boot_a);
	snprintf(in.owner, sizeof(in.owner), "a\x01" "b\x1f" "c\x7f" "d\te\nf\x1b[31mg");
	snprintf(in.host, sizeof(in.host), "h\ro\bst\x07");
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_string_equal(out.owner, "a?b?c?d?e?f?[31mg");
	assert_string_equal(out.host, "h?o?st?");

	/* UTF-8 is not a control character */
	snprintf(in.owner, sizeof(in.owner), "caf\xc3\xa9");
	lk__krec_encode(&in, slot);
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_string_equal(out.owner, "caf\xc3\xa9");
}

/* A slot written by someone else, with a label field that has no NUL. */
static void test_label_unterminated_field(void **state)
{
	uint8_t slot[LK_KSLOT_SIZE];
	struct lk__krec in, out;
	uint32_t crc;

	in = make_rec(1, 1, 2, boot_a);
	lk__krec_encode(&in, slot);
	memset(slot + 64, 'H', 64);
	memset(slot + 128, '\n', 64);
	crc = lk__crc32c(0, slot, 252);
	for (int i = 0; i < 4; i++)
		slot[252 + i] = (uint8_t)(crc >> (8 * i));
	memset(&out, 0x41, sizeof(out));
	assert_int_equal(lk__krec_decode(slot, sizeof(slot), &out), 0);
	assert_true(memchr(out.host, 0, sizeof(out.host)) != NULL);
	assert_true(strlen(out.host) <= LK_HOST_MAX);
	assert_true(strspn(out.host, "H") == strlen(out.host));
	assert_true(memchr(out.owner, 0, sizeof(out.owner)) != NULL);
	assert_true(strlen(out.owner) <= LK_OWNER_MAX);
	assert_true(strspn(out.owner, "?") == strlen(out.owner));
}

static char tmpdir[512];

static int dir_setup(void **state)
{
	return tu_mkdtemp(tmpdir, sizeof(tmpdir)) < 0 ? -1 : 0;
}

static int dir_teardown(void **state)
{
	return tu_rm_rf(tmpdir) < 0 ? -1 : 0;
}

/*
 * The same through the library: a long UTF-8 owner label given to
 * lk_lock_open() and read back with lk_lock_status().
 */
static void test_label_end_to_end(void **state)
{
	static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x92" };
	struct lk_lock_opts lo = LK_LOCK_OPTS_INIT;
	struct lk_store *st = NULL;
	char owner[200];
	int failed = 0;

	lo.mode = LK_MODE_KERNEL;
	assert_int_equal(lk_store_open(tmpdir, NULL, &st), 0);
	for (size_t c = 0; c < 3; c++) {
		for (size_t prefix = 0; prefix < 4; prefix++) {
			struct lk_status s = { .size = sizeof(s) };
			struct lk_lock *lk = NULL;
			char name[32];
			size_t w = strlen(chars[c]), n;

			memset(owner, 'a', prefix);
			owner[prefix] = 0;
			while (strlen(owner) + w < sizeof(owner))
				strcat(owner, chars[c]);
			lo.owner = owner;
			snprintf(name, sizeof(name), "label-%zu-%zu", c, prefix);
			assert_int_equal(lk_lock_open(st, name, &lo, &lk), 0);
			assert_int_equal(lk_lock_acquire(lk, 0), 0);
			assert_int_equal(lk_lock_status(st, name, &s), 0);
			lk_lock_close(lk);
			assert_int_equal(s.held, 1);
			n = strlen(s.holder.owner);
			assert_true(n >= 2);
			if (!utf8_valid(s.holder.owner, n) || memcmp(s.holder.owner, owner, n) ||
			    n + w - 1 < LK_OWNER_MAX || n > LK_OWNER_MAX) {
				print_error("owner of %zu-byte characters after %zu ASCII bytes came "
					    "back as %zu bytes ending in %02x %02x\n",
					    w, prefix, n, (unsigned char)s.holder.owner[n - 2],
					    (unsigned char)s.holder.owner[n - 1]);
				failed = 1;
			}
		}
	}
	lk_store_close(st);
	if (failed)
		fail_msg("a long owner label was cut inside a UTF-8 character");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_known_values),
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_every_byte_corruption),
		cmocka_unit_test(test_header_truncated_and_foreign),
		cmocka_unit_test(test_slot_round_trip),
		cmocka_unit_test(test_slot_every_byte_corruption),
		cmocka_unit_test(test_slot_truncated),
		cmocka_unit_test(test_slot_foreign_content),
		cmocka_unit_test(test_slot_impossible_values),
		cmocka_unit_test(test_pick_newest),
		cmocka_unit_test(test_pick_falls_back),
		cmocka_unit_test(test_pick_both_bad),
		cmocka_unit_test(test_token_fresh),
		cmocka_unit_test(test_token_same_boot),
		cmocka_unit_test(test_token_unsynced_or_unknown_boot),
		cmocka_unit_test(test_token_crossing_reservation),
		cmocka_unit_test(test_token_new_boot),
		cmocka_unit_test(test_token_limit),
		cmocka_unit_test(test_token_invariants),
		cmocka_unit_test(test_token_survives_power_loss),
		cmocka_unit_test(test_label_cut_at_utf8_boundary),
		cmocka_unit_test(test_label_control_chars_sanitized),
		cmocka_unit_test(test_label_unterminated_field),
		cmocka_unit_test_setup_teardown(test_label_end_to_end, dir_setup, dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
