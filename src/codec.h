/* SPDX-License-Identifier: MIT */
/*
 * Fixed-layout little-endian fields for on-disk records: the same bytes on
 * every host, whatever its byte order, and labels that are cut to fit at a
 * UTF-8 boundary and shown to humans only in printable form.
 */
#ifndef LK_CODEC_H
#define LK_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

static inline void lk__put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void lk__put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void lk__put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t lk__get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t lk__get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t lk__get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A label into a fixed field of cap bytes, NUL-padded. */
static inline void lk__put_label(uint8_t *dst, size_t cap, const char *s)
{
	size_t n = lk__label_len(s, cap);

	memset(dst, 0, cap);
	if (n)
		memcpy(dst, s, n);
}

/* A label out of a fixed field, with control bytes shown as '?'. */
static inline void lk__get_label(char *dst, size_t cap, const uint8_t *src)
{
	size_t n = strnlen((const char *)src, cap - 1);

	memcpy(dst, src, n);
	dst[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = '?';
}

#endif
