// SPDX-License-Identifier: MIT
/*
 * Store locations come from users and configuration files, so the URL parser
 * is the first thing that sees untrusted text. The cases below pin down what
 * is a plain path (taken verbatim), what a file:// URL decodes to, and that
 * everything the parser cannot honour exactly (a remote host, a query, a
 * NUL byte smuggled in as %00, an unknown scheme) is refused with an error
 * code from the documented vocabulary and a message that says why.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static struct lk__url_buf ub;

static void expect_path(const char *in, const char *path)
{
	struct lk_err err = {0};
	int r;

	memset(&ub, 0x5a, sizeof(ub));
	r = lk__url_parse(in, &ub, &err);
	if (r != 0)
		fail_msg("\"%s\": expected success, got %d (%s)", in, r, err.msg);
	assert_non_null(ub.url.scheme);
	assert_string_equal(ub.url.scheme, "file");
	assert_non_null(ub.url.path);
	if (strcmp(ub.url.path, path))
		fail_msg("\"%s\": expected path \"%s\", got \"%s\"", in, path, ub.url.path);
	assert_null(ub.url.host);
	assert_null(ub.url.query);
}

static void expect_error(const char *in, int code)
{
	struct lk_err err = {0};
	int r;

	r = lk__url_parse(in, &ub, &err);
	if (r != code)
		fail_msg("\"%.80s\": expected %d, got %d", in ? in : "(null)", code, r);
	if (!err.msg[0])
		fail_msg("\"%.80s\": refused without an error message", in ? in : "(null)");
	/* the message is a C string that fits its buffer */
	assert_true(memchr(err.msg, 0, sizeof(err.msg)) != NULL);
}

static void test_plain_paths(void **state)
{
	expect_path("/run/lockkit", "/run/lockkit");
	expect_path("/", "/");
	expect_path("locks", "locks");
	expect_path("./locks", "./locks");
	expect_path("../a/b/", "../a/b/");
	/* no decoding and no scheme parsing for plain paths */
	expect_path("/tmp/a%20b", "/tmp/a%20b");
	expect_path("dir:with:colons", "dir:with:colons");
	expect_path("/a/file://b", "/a/file://b");
	expect_path("./http://x", "./http://x");
}

static void test_file_urls(void **state)
{
	expect_path("file:///run/lockkit", "/run/lockkit");
	expect_path("file:///", "/");
	expect_path("file://localhost/dir", "/dir");
	expect_path("file://LOCALHOST/dir", "/dir");
	expect_path("FILE:///dir", "/dir");
	expect_path("File://localhost/a/b/c/", "/a/b/c/");
}

static void test_percent_decoding(void **state)
{
	expect_path("file:///a%20b", "/a b");
	expect_path("file:///%41%42%43", "/ABC");
	expect_path("file:///%7e%7E", "/~~");
	expect_path("file:///100%25", "/100%");
	expect_path("file:///caf%C3%A9", "/caf\xc3\xa9");
	expect_path("file:///a%2Fb", "/a/b");
	expect_path("file:///x%3Fy%23z", "/x?y#z");
}

static void test_bad_escapes(void **state)
{
	expect_error("file:///a%00b", -EINVAL);
	expect_error("file:///%00", -EINVAL);
	expect_error("file:///a%", -EINVAL);
	expect_error("file:///a%4", -EINVAL);
	expect_error("file:///a%zz", -EINVAL);
	expect_error("file:///a%g0", -EINVAL);
	expect_error("file:///a%0g", -EINVAL);
	expect_error("file:///a%%41", -EINVAL);
	expect_error("file:///a%-1", -EINVAL);
}

static void test_hosts_refused(void **state)
{
	expect_error("file://otherhost/x", -EINVAL);
	expect_error("file://localhost.example/x", -EINVAL);
	expect_error("file://local/x", -EINVAL);
	expect_error("file://127.0.0.1/x", -EINVAL);
	expect_error("file://user@localhost/x", -EINVAL);
	/* no path at all */
	expect_error("file://", -EINVAL);
	expect_error("file://localhost", -EINVAL);
}

static void test_query_and_fragment_refused(void **state)
{
	expect_error("file:///dir?x=1", -EINVAL);
	expect_error("file:///dir#frag", -EINVAL);
	expect_error("file:///dir?", -EINVAL);
	expect_error("file://localhost/dir#", -EINVAL);
}

static void test_schemes(void **state)
{
	expect_error("nfs://server", -EINVAL);
	expect_error("nfs:///export", -EINVAL);
	expect_error("nfs://user@server/export", -EINVAL);
	expect_error("nfs://server?x=1/export", -EINVAL);
	expect_error("http://example.com/x", -EINVAL);
	expect_error("s3://bucket/x", -EINVAL);
	expect_error("nfs4://server/x", -EINVAL);
	expect_error("fil://x", -EINVAL);
	expect_error("files:///x", -EINVAL);
	expect_error("://x", -EINVAL);
	expect_error("bad scheme://x", -EINVAL);
	expect_error("b%41d://x", -EINVAL);
}

static void test_empty(void **state)
{
	expect_error("", -EINVAL);
	expect_error(NULL, -EINVAL);
}

static void test_too_long(void **state)
{
	size_t n = 8192;
	char *s = malloc(n + 16);

	assert_non_null(s);
	/* a plain path */
	s[0] = '/';
	memset(s + 1, 'a', n - 1);
	s[n] = 0;
	expect_error(s, -ENAMETOOLONG);
	/* a file URL of the same length */
	memcpy(s, "file:///", 8);
	expect_error(s, -ENAMETOOLONG);
	/* just over 4 KiB is already too long */
	s[0] = '/';
	s[4097] = 0;
	expect_error(s, -ENAMETOOLONG);
	free(s);
}

static void test_long_but_fitting(void **state)
{
	char *s = malloc(4096);
	char *want = malloc(4096);

	assert_non_null(s);
	assert_non_null(want);
	/* PATH_MAX - 1 characters of path fit */
	s[0] = '/';
	memset(s + 1, 'b', 4094);
	s[4095] = 0;
	expect_path(s, s);
	/* a URL whose decoded form is much shorter than the text */
	strcpy(s, "file:///");
	for (int i = 0; i < 1000; i++)
		strcat(s, "%41");
	want[0] = '/';
	memset(want + 1, 'A', 1000);
	want[1001] = 0;
	expect_path(s, want);
	free(s);
	free(want);
}

static void test_nfs_url(void **state)
{
	struct lk_err e = {0};

	assert_int_equal(lk__url_parse("nfs://127.0.0.1:2049/export/dir?version=3&nfsport=20490",
				       &ub, &e), 0);
	assert_string_equal(ub.url.scheme, "nfs");
	assert_string_equal(ub.url.host, "127.0.0.1:2049");
	assert_string_equal(ub.url.path, "nfs://127.0.0.1:2049/export/dir?version=3&nfsport=20490");
	assert_string_equal(ub.url.query, "version=3&nfsport=20490");
	assert_int_equal(lk__url_parse("NFS://srv/x", &ub, &e), 0);
	assert_string_equal(ub.url.host, "srv");
	assert_null(ub.url.query);
}

static void test_null_err_is_allowed(void **state)
{
	/* callers that do not want the text may pass no lk_err */
	assert_int_equal(lk__url_parse("http://x", &ub, NULL), -EINVAL);
	assert_int_equal(lk__url_parse("nfs://x", &ub, NULL), -EINVAL);
	assert_int_equal(lk__url_parse("/ok", &ub, NULL), 0);
	assert_string_equal(ub.url.path, "/ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_paths),
		cmocka_unit_test(test_file_urls),
		cmocka_unit_test(test_percent_decoding),
		cmocka_unit_test(test_bad_escapes),
		cmocka_unit_test(test_hosts_refused),
		cmocka_unit_test(test_query_and_fragment_refused),
		cmocka_unit_test(test_schemes),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_nfs_url),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_long_but_fitting),
		cmocka_unit_test(test_null_err_is_allowed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
