// SPDX-License-Identifier: MIT
/*
 * Lock names become file names inside the store directory, so the validator
 * is what keeps a caller from reaching outside the store ("..", "/"), from
 * creating hidden or unlistable entries (leading '.'), and from names that a
 * shell or a terminal would mangle (spaces, control and non-ASCII bytes).
 * The tests walk both edges of every rule in lk_name_valid()'s contract.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lockkit.h"

static void test_valid_names(void **state)
{
	static const char *const ok[] = {
		"a", "Z", "0", "9", "lock", "my-lock", "my_lock", "my.lock",
		"a.b.c", "a..b", "a-", "a_", "a.", "-", "_", "-leading-dash",
		"_leading_underscore", "123", "ABCxyz019._-", "x.lock.",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (lk_name_valid(ok[i]) != 0)
			fail_msg("'%s' should be a valid lock name", ok[i]);
	}
}

static void test_every_allowed_character(void **state)
{
	char name[3] = { 'a', 0, 0 };

	for (int c = 1; c < 256; c++) {
		int allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';

		name[1] = (char)c;
		if (allowed)
			assert_int_equal(lk_name_valid(name), 0);
		else if (lk_name_valid(name) != -EINVAL)
			fail_msg("byte 0x%02x inside a name should be refused", c);
	}
}

static void test_length_limit(void **state)
{
	char name[300];

	memset(name, 'x', sizeof(name));
	name[255] = 0;
	assert_int_equal(lk_name_valid(name), 0);
	name[255] = 'x';
	name[256] = 0;
	assert_int_equal(lk_name_valid(name), -EINVAL);
	name[256] = 'x';
	name[299] = 0;
	assert_int_equal(lk_name_valid(name), -EINVAL);
	/* a 255-character name made of the punctuation that is allowed */
	memset(name, '-', 255);
	name[255] = 0;
	assert_int_equal(lk_name_valid(name), 0);
}

static void test_invalid_names(void **state)
{
	static const char *const bad[] = {
		"",           ".",         "..",        ".hidden",   "...",
		"/",          "a/b",       "/abs",      "trailing/", "../up",
		"a b",        " lead",     "trail ",    "tab\there", "nl\n",
		"cr\r",       "\x01",      "del\x7f",   "esc\x1b[0m", "caf\xc3\xa9",
		"\xff",       "\x80",      "semi;colon", "star*",    "q?",
		"back\\slash", "colon:x",  "percent%41", "at@",      "plus+",
		"tilde~",     "quote'",    "dq\"",      "pipe|",     "amp&",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (lk_name_valid(bad[i]) != -EINVAL)
			fail_msg("lock name #%zu (\"%s\") should be refused", i, bad[i]);
	}
	assert_int_equal(lk_name_valid(NULL), -EINVAL);
}

static void test_leading_dot_only(void **state)
{
	/* a dot is fine anywhere but first */
	assert_int_equal(lk_name_valid("a.hidden"), 0);
	assert_int_equal(lk_name_valid(".a"), -EINVAL);
	assert_int_equal(lk_name_valid("..a"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_names),
		cmocka_unit_test(test_every_allowed_character),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_leading_dot_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
