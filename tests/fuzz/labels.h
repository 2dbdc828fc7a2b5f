/* SPDX-License-Identifier: MIT */
/*
 * What the record codecs promise about labels (host, owner), written out
 * independently of src/util.c and src/codec.h so that the fuzz targets can
 * hold the codecs to it.
 */
#ifndef LK_FUZZ_LABELS_H
#define LK_FUZZ_LABELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"

static inline int fuzz_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * A fixed label field of cap bytes as an encoder would write back what a
 * decoder read from it: the bytes up to the first NUL (at most cap - 1),
 * control bytes as '?', NUL padding.
 */
static inline void fuzz_canon_label(uint8_t *p, size_t cap)
{
	size_t n = strnlen((const char *)p, cap - 1);

	for (size_t i = 0; i < n; i++)
		if (fuzz_is_ctl(p[i]))
			p[i] = '?';
	memset(p + n, 0, cap - n);
}

/* A decoded label: a C string of at most cap - 1 bytes, none a control byte. */
static inline void fuzz_check_label(const char *s, size_t cap, const char *what)
{
	size_t n = strnlen(s, cap);

	FUZZ_CHECK(n < cap, "%s is not terminated within its %zu bytes", what, cap);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(!fuzz_is_ctl((unsigned char)s[i]), "%s has control byte 0x%02x at %zu",
			   what, (unsigned char)s[i], i);
}

/*
 * A label that was cut to fit (and, if decoded, had its control bytes
 * replaced by '?'), against what the caller wrote (src, a C string): a
 * prefix of it of at most cap - 1 bytes, cut only where no UTF-8 character
 * is split, and no shorter than that rule requires.
 */
static inline void fuzz_check_label_cut(const char *src, const char *got, size_t cap,
					int decoded, const char *what)
{
	size_t in = strlen(src), n = strlen(got);

	FUZZ_CHECK(n <= in && n < cap, "%s: %zu bytes from %zu", what, n, in);
	for (size_t i = 0; i < n; i++) {
		unsigned char want = (unsigned char)src[i];

		if (decoded && fuzz_is_ctl(want))
			want = '?';
		FUZZ_CHECK((unsigned char)got[i] == want, "%s differs at byte %zu", what, i);
	}
	if (n == in)
		return;
	FUZZ_CHECK(in >= cap - 1, "%s: cut to %zu bytes although %zu fit", what, n, in);
	/* the first byte left out starts a character ... */
	FUZZ_CHECK(n == 0 || ((unsigned char)src[n] & 0xc0) != 0x80,
		   "%s: cut at %zu splits a UTF-8 character", what, n);
	/* ... and the cut is the last such place that fits */
	for (size_t i = n + 1; i < cap - 1; i++)
		FUZZ_CHECK(((unsigned char)src[i] & 0xc0) == 0x80,
			   "%s: cut at %zu although %zu was a character boundary", what, n, i);
}

/* A label of up to max bytes off the reader, ending at a NUL or the input. */
static inline void fuzz_take_label(struct fuzz_reader *r, char *dst, size_t max)
{
	size_t n = 0;

	while (n < max && r->n && *r->p) {
		dst[n++] = (char)*r->p++;
		r->n--;
	}
	if (r->n && !*r->p) {
		r->p++;
		r->n--;
	}
	dst[n] = 0;
}

#endif
