// SPDX-License-Identifier: MIT
/*
 * Fuzz target: lock names (lk_name_valid() in src/util.c).
 *
 * A lock name becomes a file or directory name inside the store, so a name
 * the validator lets through must never reach outside the store or create
 * something the store's own entries could be confused with. The target
 * checks, for every accepted name: no '/', not "." or "..", no leading '.'
 * (the store's temporary entries start with one), no control, space or
 * non-ASCII byte, at most 255 bytes; and that exactly the names of the
 * documented alphabet (letters, digits, '.', '_', '-') are accepted.
 * "a..b" is a valid name: '.' is allowed inside a name, and without '/' a
 * name is one path component, so only "." and ".." themselves would be
 * traversal, and a leading '.' already rules both out.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "lockkit.h"

static int in_alphabet(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	size_t n = strlen(s);
	int want = n >= 1 && n <= 255 && s[0] != '.';
	int r = lk_name_valid(s);

	for (size_t i = 0; i < n; i++)
		if (!in_alphabet((unsigned char)s[i]))
			want = 0;
	FUZZ_CHECK(r == 0 || r == -EINVAL, "lk_name_valid returned %d", r);
	FUZZ_CHECK((r == 0) == want, "name of %zu bytes: expected %s, got %d", n,
		   want ? "valid" : "invalid", r);
	if (r == 0) {
		FUZZ_CHECK(!strchr(s, '/'), "a valid name with '/'");
		FUZZ_CHECK(strcmp(s, ".") && strcmp(s, ".."), "valid name '%s'", s);
		FUZZ_CHECK(s[0] != '.', "a valid name starting with '.'");
		FUZZ_CHECK(n <= 255, "a valid name of %zu bytes", n);
		/* the whole input, if it held a NUL, is not what was accepted */
		FUZZ_CHECK(n == size || memchr(data, 0, size), "length mismatch");
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f,
				   "a valid name with byte 0x%02x", (unsigned char)s[i]);
	}
	FUZZ_CHECK(lk_name_valid(NULL) == -EINVAL, "NULL name accepted");
	free(s);
	return 0;
}
