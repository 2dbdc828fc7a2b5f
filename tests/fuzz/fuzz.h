/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets. Each target is one LLVMFuzzerTestOneInput()
 * that checks properties of what the code under test returns, not only that
 * it returns: a failed property prints what broke and aborts, which libFuzzer
 * records as a crash and the replay driver (replay.c) turns into a failed
 * test.
 */
#ifndef LK_FUZZ_H
#define LK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The file the replay driver is running, or NULL under libFuzzer (weak:
 * replay.c defines it, a libFuzzer program gets this one). */
__attribute__((weak)) const char *lk_fuzz_input_name;

#define FUZZ_CHECK(cond, ...)                                                              \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: property failed: %s\n  ", __FILE__, __LINE__, \
				#cond);                                                     \
			fprintf(stderr, __VA_ARGS__);                                       \
			fprintf(stderr, "\n  input: %s\n",                                  \
				lk_fuzz_input_name ? lk_fuzz_input_name : "(libFuzzer)");   \
			abort();                                                            \
		}                                                                           \
	} while (0)

/* Reads fixed-size values off the front of the input; zeros once it runs out. */
struct fuzz_reader {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t fuzz_take(struct fuzz_reader *r, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++) {
		v <<= 8;
		if (r->n) {
			v |= *r->p++;
			r->n--;
		}
	}
	return v;
}

/* A NUL-terminated copy of the input: the C string a caller would pass. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = 0;
	return s;
}

#endif
