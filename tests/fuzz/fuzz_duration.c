// SPDX-License-Identifier: MIT
/*
 * Fuzz target: durations (lk_parse_duration_ms() in src/util.c).
 *
 * Durations come from command lines (lockctl --ttl, --timeout) and become
 * lease times and waits, so the parser must accept exactly its grammar,
 * never round a non-zero duration down to 0 ms (a "wait a little" must not
 * become "do not wait"), and read back what it would print. The target
 * checks, for the input as text:
 *
 *  - accepted iff it is DIGITS[.DIGITS][s|ms|us|m|h] with at least one
 *    digit (-ERANGE only for well-formed text), result written only on
 *    success and at most INT64_MAX;
 *  - 0 exactly when every digit is 0; otherwise the value rounded up to a
 *    whole millisecond, checked against bounds computed from the integer
 *    part when it is short enough to compute;
 *  - the result, printed in several forms ("Nms", "S.mmm", "S.mmms",
 *    "N000us", "(N-1).999ms", and one nanosecond or less above it), parses
 *    back to the same value or to one millisecond more.
 *
 * Independently of the text, the first 8 bytes are also taken as a value
 * and printed and parsed the same ways.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "lockkit.h"

#define SENTINEL 0xdeadbeefcafef00dull

static uint64_t parse_ok(const char *text)
{
	uint64_t v = SENTINEL;
	int r = lk_parse_duration_ms(text, &v);

	FUZZ_CHECK(r == 0, "'%s' refused: %d", text, r);
	return v;
}

/* v ms printed in several forms must read back as v (or v + 1 where the
 * text is a little more than v). */
static void round_trip(uint64_t v)
{
	char buf[96];

	snprintf(buf, sizeof(buf), "%" PRIu64 "ms", v);
	FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
	FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64 "s", v / 1000, v % 1000);
	FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	if (v <= UINT64_MAX / 1000 / 10) {
		snprintf(buf, sizeof(buf), "%" PRIu64 "000us", v);
		FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	}
	if (v % 60000 == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64 "m", v / 60000);
		FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	}
	if (v > 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64 ".999ms", v - 1);
		FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
		snprintf(buf, sizeof(buf), "%" PRIu64 ".999999999999999ms", v - 1);
		FUZZ_CHECK(parse_ok(buf) == v, "'%s'", buf);
	}
	if (v < INT64_MAX) {
		/* one nanosecond above, and far less than that (past the 12
		 * fraction digits kept): still rounds up */
		snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64 "000001", v / 1000, v % 1000);
		FUZZ_CHECK(parse_ok(buf) == v + 1, "'%s'", buf);
		snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64 "00000000000000001s", v / 1000,
			 v % 1000);
		FUZZ_CHECK(parse_ok(buf) == v + 1, "'%s'", buf);
	}
}

/* The grammar, on its own: 1 and the unit in µs, or 0 if s is not in it. */
static uint64_t grammar(const char *s, int *ret_nonzero, const char **ret_int, size_t *ret_intlen,
			int *ret_frac_nonzero)
{
	const char *p = s;
	size_t digits = 0;

	*ret_nonzero = 0;
	*ret_frac_nonzero = 0;
	*ret_int = p;
	while (*p >= '0' && *p <= '9') {
		*ret_nonzero |= *p != '0';
		p++;
		digits++;
	}
	*ret_intlen = (size_t)(p - s);
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			*ret_nonzero |= *p != '0';
			*ret_frac_nonzero |= *p != '0';
			p++;
			digits++;
		}
	}
	if (!digits)
		return 0;
	if (!*p || !strcmp(p, "s"))
		return 1000000;
	if (!strcmp(p, "ms"))
		return 1000;
	if (!strcmp(p, "us"))
		return 1;
	if (!strcmp(p, "m"))
		return 60000000;
	if (!strcmp(p, "h"))
		return 3600000000ull;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	uint64_t v = SENTINEL, unit, whole = 0, lo, hi;
	const char *ip;
	size_t ilen;
	int nonzero, frac_nonzero, r;

	unit = grammar(s, &nonzero, &ip, &ilen, &frac_nonzero);
	r = lk_parse_duration_ms(s, &v);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE, "returned %d", r);
	if (r) {
		FUZZ_CHECK(v == SENTINEL, "result written on failure");
		if (unit)
			FUZZ_CHECK(r == -ERANGE, "well-formed text refused with %d", r);
		else
			FUZZ_CHECK(r == -EINVAL, "text outside the grammar refused with %d", r);
	} else {
		FUZZ_CHECK(unit, "text outside the grammar accepted as %" PRIu64, v);
		FUZZ_CHECK(v <= INT64_MAX, "%" PRIu64 " above INT64_MAX", v);
		FUZZ_CHECK((v == 0) == !nonzero, "%" PRIu64 " ms from text %s zero", v,
			   nonzero ? "not" : "all");
		/* bounds from the integer part: value in [W, W+1) units */
		for (size_t i = 0; i < ilen; i++)
			whole = whole * 10 + (uint64_t)(ip[i] - '0');
		if (ilen <= 9) {
			lo = (whole * unit + 999) / 1000;
			hi = ((whole + (frac_nonzero ? 1 : 0)) * unit + 999) / 1000;
			FUZZ_CHECK(v >= lo && v <= hi,
				   "%" PRIu64 " ms outside [%" PRIu64 ", %" PRIu64 "]", v, lo, hi);
		}
		round_trip(v);
	}
	if (size >= 8) {
		struct fuzz_reader rd = { data, size };

		round_trip(fuzz_take(&rd, 8) >> 2); /* below 2^62: fits every form */
	}
	FUZZ_CHECK(lk_parse_duration_ms(NULL, &v) == -EINVAL, "NULL accepted");
	free(s);
	return 0;
}
