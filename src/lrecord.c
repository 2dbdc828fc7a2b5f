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

#include "codec.h"
#include "internal.h"
#include "lrecord.h"

#define LREC_MAGIC 0x314c4b4cu /* "LKL1" */
#define LREC_VERSION 1

void lk__lrec_encode(const struct lk__lrec *r, uint8_t out[LK_LREC_SIZE])
{
	memset(out, 0, LK_LREC_SIZE);
	lk__put32(out + 0, LREC_MAGIC);
	out[4] = LREC_VERSION;
	out[5] = r->state;
	out[6] = (uint8_t)(LK_LREC_SIZE & 0xff);
	out[7] = (uint8_t)(LK_LREC_SIZE >> 8);
	lk__put64(out + 8, r->gen);
	lk__put64(out + 16, r->counter);
	lk__put32(out + 24, r->ttl_ms);
	lk__put32(out + 28, r->rho_ppm);
	memcpy(out + 32, r->boot_id, 16);
	lk__put64(out + 48, r->pidns);
	lk__put32(out + 56, (uint32_t)r->pid);
	lk__put64(out + 64, r->pid_start);
	lk__put64(out + 72, r->nonce);
	lk__put64(out + 80, (uint64_t)r->wall_ns);
	lk__put64(out + 88, (uint64_t)r->since_ns);
	lk__put_label(out + 96, 64, r->host);
	lk__put_label(out + 160, 64, r->owner);
	lk__put32(out + 224, (uint32_t)r->pid2);
	lk__put64(out + 232, r->pid2_start);
	lk__put32(out + 252, lk__crc32c(0, out, 252));
}

int lk__lrec_decode(const uint8_t *in, size_t len, struct lk__lrec *ret)
{
	if (len != LK_LREC_SIZE)
		return -EBADMSG;
	if (lk__get32(in) != LREC_MAGIC || in[4] != LREC_VERSION ||
	    (in[6] | in[7] << 8) != (int)LK_LREC_SIZE)
		return -EBADMSG;
	if (lk__get32(in + 252) != lk__crc32c(0, in, 252))
		return -EBADMSG;
	memset(ret, 0, sizeof(*ret));
	ret->state = in[5];
	ret->gen = lk__get64(in + 8);
	ret->counter = lk__get64(in + 16);
	ret->ttl_ms = lk__get32(in + 24);
	ret->rho_ppm = lk__get32(in + 28);
	memcpy(ret->boot_id, in + 32, 16);
	ret->pidns = lk__get64(in + 48);
	ret->pid = (int32_t)lk__get32(in + 56);
	ret->pid_start = lk__get64(in + 64);
	ret->nonce = lk__get64(in + 72);
	ret->wall_ns = (int64_t)lk__get64(in + 80);
	ret->since_ns = (int64_t)lk__get64(in + 88);
	lk__get_label(ret->host, sizeof(ret->host), in + 96);
	lk__get_label(ret->owner, sizeof(ret->owner), in + 160);
	ret->pid2 = (int32_t)lk__get32(in + 224);
	ret->pid2_start = lk__get64(in + 232);
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
