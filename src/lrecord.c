// SPDX-License-Identifier: MIT
/*
 * Lease-mode generation records: one 256-byte record per file g.<N> in a
 * lock's directory, with a magic, a version and a CRC-32C, so that a torn,
 * truncated or foreign file is never taken for a valid record.
 *
 * The holder rewrites its own record in place on every renewal (one write
 * of the whole record); a reader that catches a write half-way sees a CRC
 * mismatch and treats the record as unreadable for that look, which the
 * protocol handles like any other change. Field layout is little-endian and
 * fixed; docs/protocol.md lists it byte by byte.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "lrecord.h"

#define LREC_MAGIC 0x314c4b4cu /* "LKL1" */
#define LREC_VERSION 1

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_str(uint8_t *dst, size_t cap, const char *s)
{
	size_t n = lk__label_len(s, cap);

	memset(dst, 0, cap);
	if (n)
		memcpy(dst, s, n);
}

static void get_str(char *dst, size_t cap, const uint8_t *src)
{
	size_t n = strnlen((const char *)src, cap - 1);

	memcpy(dst, src, n);
	dst[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = '?';
}

void lk__lrec_encode(const struct lk__lrec *r, uint8_t out[LK_LREC_SIZE])
{
	memset(out, 0, LK_LREC_SIZE);
	put32(out + 0, LREC_MAGIC);
	out[4] = LREC_VERSION;
	out[5] = r->state;
	out[6] = (uint8_t)(LK_LREC_SIZE & 0xff);
	out[7] = (uint8_t)(LK_LREC_SIZE >> 8);
	put64(out + 8, r->gen);
	put64(out + 16, r->counter);
	put32(out + 24, r->ttl_ms);
	put32(out + 28, r->rho_ppm);
	memcpy(out + 32, r->boot_id, 16);
	put64(out + 48, r->pidns);
	put32(out + 56, (uint32_t)r->pid);
	put64(out + 64, r->pid_start);
	put64(out + 72, r->nonce);
	put64(out + 80, (uint64_t)r->wall_ns);
	put64(out + 88, (uint64_t)r->since_ns);
	put_str(out + 96, 64, r->host);
	put_str(out + 160, 64, r->owner);
	put32(out + 224, (uint32_t)r->pid2);
	put64(out + 232, r->pid2_start);
	put32(out + 252, lk__crc32c(0, out, 252));
}

int lk__lrec_decode(const uint8_t *in, size_t len, struct lk__lrec *ret)
{
	if (len != LK_LREC_SIZE)
		return -EBADMSG;
	if (get32(in) != LREC_MAGIC || in[4] != LREC_VERSION ||
	    (in[6] | in[7] << 8) != (int)LK_LREC_SIZE)
		return -EBADMSG;
	if (get32(in + 252) != lk__crc32c(0, in, 252))
		return -EBADMSG;
	memset(ret, 0, sizeof(*ret));
	ret->state = in[5];
	ret->gen = get64(in + 8);
	ret->counter = get64(in + 16);
	ret->ttl_ms = get32(in + 24);
	ret->rho_ppm = get32(in + 28);
	memcpy(ret->boot_id, in + 32, 16);
	ret->pidns = get64(in + 48);
	ret->pid = (int32_t)get32(in + 56);
	ret->pid_start = get64(in + 64);
	ret->nonce = get64(in + 72);
	ret->wall_ns = (int64_t)get64(in + 80);
	ret->since_ns = (int64_t)get64(in + 88);
	get_str(ret->host, sizeof(ret->host), in + 96);
	get_str(ret->owner, sizeof(ret->owner), in + 160);
	ret->pid2 = (int32_t)get32(in + 224);
	ret->pid2_start = get64(in + 232);
	if (ret->state < LK_LSTATE_HELD || ret->state > LK_LSTATE_ABORTED)
		return -EBADMSG;
	if (ret->gen >= (1ull << 53))
		return -EBADMSG;
	return 0;
}

void lk__gen_name(char *buf, uint64_t gen)
{
	snprintf(buf, LK_GEN_NAME_LEN + 1, "g.%016llu", (unsigned long long)gen);
}

int lk__gen_parse(const char *name, uint64_t *ret_gen)
{
	uint64_t v = 0;

	if (strncmp(name, "g.", 2) || strlen(name) != LK_GEN_NAME_LEN)
		return -EINVAL;
	for (int i = 2; i < LK_GEN_NAME_LEN; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	if (v >= (1ull << 53))
		return -EINVAL;
	*ret_gen = v;
	return 0;
}
