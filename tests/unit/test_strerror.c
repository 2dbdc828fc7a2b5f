// SPDX-License-Identifier: MIT
/*
 * lk_strerror() is called on whatever a failing call returned, often in an
 * error path that is itself rarely exercised, so it must never return NULL
 * or crash, whatever the value, and must not care about the sign convention
 * the caller happens to use.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lockkit.h"

static void check_one(int err)
{
	const char *s = lk_strerror(err);

	if (!s)
		fail_msg("lk_strerror(%d) returned NULL", err);
	if (!s[0])
		fail_msg("lk_strerror(%d) returned an empty string", err);
}

static void test_never_null(void **state)
{
	for (int e = -5000; e <= 5000; e++)
		check_one(e);
	check_one(INT_MAX);
	check_one(INT_MAX - 1);
	check_one(INT_MIN + 1);
	check_one(INT_MIN);
	check_one(1 << 30);
	check_one(-(1 << 30));
}

static void test_sign_does_not_matter(void **state)
{
	for (int e = 1; e <= 200; e++)
		assert_string_equal(lk_strerror(e), lk_strerror(-e));
}

static void test_vocabulary_is_described(void **state)
{
	static const int known[] = {
		EWOULDBLOCK, ETIMEDOUT, ECANCELED, ENOLCK,  EINVAL, EOPNOTSUPP,
		EPROTONOSUPPORT, ECHILD, EBUSY, EIO, ENOMEM,  EACCES, EPERM,
		ENOSPC,     EROFS,     EBADMSG,   EOVERFLOW, ERANGE, ENOENT,
	};
	const char *unknown = lk_strerror(-99999);

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		const char *s = lk_strerror(-known[i]);

		/* every code the header documents has its own text */
		if (!strcmp(s, unknown))
			fail_msg("documented error %d has no description", known[i]);
		for (size_t j = 0; j < i; j++)
			if (known[j] != known[i] && !strcmp(s, lk_strerror(-known[j])))
				fail_msg("errors %d and %d share the text \"%s\"", known[i],
					 known[j], s);
	}
	/* different unknown values are still described */
	assert_non_null(lk_strerror(123456));
	assert_non_null(lk_strerror(-123456));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never_null),
		cmocka_unit_test(test_sign_does_not_matter),
		cmocka_unit_test(test_vocabulary_is_described),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
