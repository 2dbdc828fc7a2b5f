// SPDX-License-Identifier: MIT
/*
 * Durations arrive from command lines (lockctl --timeout 1.5s) and end up as
 * lock timeouts, so two properties matter more than convenience: a non-zero
 * duration never rounds down to 0 ms (which would turn "wait a little" into
 * "try once"), and anything the parser does not fully understand is refused
 * rather than read as a prefix. Overflow must be reported, never wrapped.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lockkit.h"

struct good_case {
	const char *in;
	uint64_t ms;
};

static void check_good(const struct good_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t ms = 0xdeadbeef;
		int r = lk_parse_duration_ms(c[i].in, &ms);

		if (r != 0)
			fail_msg("\"%s\": expected success, got %d", c[i].in, r);
		if (ms != c[i].ms)
			fail_msg("\"%s\": expected %llu ms, got %llu", c[i].in,
				 (unsigned long long)c[i].ms, (unsigned long long)ms);
	}
}

static void test_units(void **state)
{
	static const struct good_case c[] = {
		{ "250ms", 250 },     { "10s", 10000 },       { "2m", 120000 },
		{ "1h", 3600000 },    { "1500us", 2 },        { "1000us", 1 },
		{ "1001us", 2 },      { "1us", 1 },           { "0ms", 0 },
		{ "0s", 0 },          { "0us", 0 },           { "0m", 0 },
		{ "0h", 0 },          { "1ms", 1 },           { "60000ms", 60000 },
		{ "24h", 86400000 },  { "007s", 7000 },
	};

	check_good(c, sizeof(c) / sizeof(c[0]));
}

static void test_bare_seconds_and_fractions(void **state)
{
	static const struct good_case c[] = {
		{ "0", 0 },          { "1", 1000 },       { "0.5", 500 },
		{ "1.5s", 1500 },    { "0.0001", 1 },     { "0.001", 1 },
		{ "0.0011", 2 },     { "2.5ms", 3 },      { "0.5m", 30000 },
		{ "0.25h", 900000 }, { "1.999", 1999 },   { "0.000", 0 },
		{ "0.0005ms", 1 },   { "1.5us", 1 },      { "3.000001", 3001 },
	};

	check_good(c, sizeof(c) / sizeof(c[0]));
}

/*
 * "Rounded up to a whole millisecond" holds however many digits the caller
 * writes: a duration that is not exactly 0 is at least 1 ms, and one that is
 * a hair above a whole millisecond rounds to the next.
 */
static void test_long_fractions_round_up(void **state)
{
	static const struct good_case c[] = {
		{ "0.000000001", 1 },
		{ "0.0000000000001", 1 },
		{ "0.00000000000000000001", 1 },
		{ "1.0000000000000000001", 1001 },
		{ "0.00000000000000000000ms", 0 },
	};

	check_good(c, sizeof(c) / sizeof(c[0]));
}

static void test_invalid(void **state)
{
	static const char *const bad[] = {
		"",     "s",     "ms",   "1x",    "-1",    "1.2.3",  " 1",   "1 s",
		"1s ",  "+1",    "1e3",  "0x10",  "1sec",  "1ms5",   "1S",   "1MS",
		".",    "..5",   "1..5", "1.5.",  "s1",    "1\n",    "\t1",  "1ss",
		"1h1m", "-0",    "--1",  "1-",    "½",     "1.-5",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ms = 12345;
		int r = lk_parse_duration_ms(bad[i], &ms);

		if (r != -EINVAL)
			fail_msg("\"%s\": expected -EINVAL, got %d", bad[i], r);
		/* out-parameters are written only on success */
		assert_int_equal(ms, 12345);
	}
	assert_int_equal(lk_parse_duration_ms(NULL, &(uint64_t){ 0 }), -EINVAL);
}

static void test_overflow(void **state)
{
	static const char *const big[] = {
		"99999999999999999999999",
		"18446744073709551616ms",
		"18446744073709551616us",
		"99999999999999999999999999999999999999999999ms",
		"18446744073709552h",
		"307445734561825861m",
		"18446744073709552s",
	};

	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		uint64_t ms = 777;
		int r = lk_parse_duration_ms(big[i], &ms);

		if (r != -ERANGE)
			fail_msg("\"%s\": expected -ERANGE, got %d", big[i], r);
		assert_int_equal(ms, 777);
	}
}

static void test_large_but_representable(void **state)
{
	static const struct good_case c[] = {
		/* a year, a thousand years: nothing near the limit */
		{ "8760h", 31536000000ull },
		{ "8760000h", 31536000000000ull },
		{ "1000000000000ms", 1000000000000ull },
	};

	check_good(c, sizeof(c) / sizeof(c[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_bare_seconds_and_fractions),
		cmocka_unit_test(test_long_fractions_round_up),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_large_but_representable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
