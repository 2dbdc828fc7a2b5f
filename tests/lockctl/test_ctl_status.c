// SPDX-License-Identifier: MIT
/*
 * lockctl status and ls: what monitoring scripts read. The JSON keys are an
 * interface, so every key is checked to be present even when its value is
 * null, and values are compared as exact JSON text ("held":true, not just
 * the word "true" somewhere). Observing must have no side effects: status
 * and ls on a store that does not exist report free locks and an empty list
 * without creating the store.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define BUF 16384

static const char *const keys[] = {"name", "held", "mode", "token", "holder", "since"};

static void member_is(const char *obj, const char *key, const char *want)
{
	char v[BUF];

	if (tc_json_member(obj, key, v, sizeof(v)) < 0)
		fail_msg("no key \"%s\" in %s", key, obj);
	if (strcmp(v, want))
		fail_msg("\"%s\" is %s, want %s, in %s", key, v, want, obj);
}

static void member_get(const char *obj, const char *key, char *buf, size_t cap)
{
	if (tc_json_member(obj, key, buf, cap) < 0)
		fail_msg("no key \"%s\" in %s", key, obj);
}

static void all_keys(const char *obj)
{
	char v[BUF];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (tc_json_member(obj, keys[i], v, sizeof(v)) < 0)
			fail_msg("no key \"%s\" in %s", keys[i], obj);
}

/* "status NAME --json" into obj; asserts exit 0 and a single line. */
static void status_json(struct tc *t, const char *name, char *obj, size_t cap)
{
	char out[BUF];

	assert_int_equal(tc_run(t, "st", TC_ARGV("status", name, "--json")), 0);
	assert_true(tc_read(t, "st.out", out, sizeof(out)) > 0);
	assert_int_equal(tc_lines(out), 1);
	if (tc_json_object(out, name, obj, cap) < 0)
		fail_msg("no object for %s in: %s", name, out);
	/* the object is the whole output */
	assert_int_equal(strlen(obj) + 1, strlen(out));
}

static void test_status_never_used_missing_store(void **state)
{
	struct tc *t = *state;
	char obj[BUF], out[BUF];

	status_json(t, "fresh", obj, sizeof(obj));
	all_keys(obj);
	member_is(obj, "name", "\"fresh\"");
	member_is(obj, "held", "false");
	member_is(obj, "holder", "null");
	member_is(obj, "since", "null");
	member_is(obj, "token", "0");
	assert_int_equal(tc_exists(t, "store"), 0);

	/* human form */
	assert_int_equal(tc_run(t, "h", TC_ARGV("status", "fresh")), 0);
	assert_true(tc_read(t, "h.out", out, sizeof(out)) > 0);
	assert_non_null(strstr(out, "free"));
	assert_null(strstr(out, "held"));

	assert_int_equal(tc_run(t, "ls", TC_ARGV("ls", "--json")), 0);
	assert_true(tc_read(t, "ls.out", out, sizeof(out)) > 0);
	assert_string_equal(out, "[]\n");
	assert_int_equal(tc_run(t, "ls", TC_ARGV("ls")), 0);
	assert_int_equal(tc_read(t, "ls.out", out, sizeof(out)), 0);
	assert_int_equal(tc_read(t, "ls.err", out, sizeof(out)), 0);
	assert_int_equal(tc_exists(t, "store"), 0);
	/* nor its parents */
	t->store_env = "deeper/still/store";
	assert_int_equal(tc_run(t, "st2", TC_ARGV("status", "fresh", "--json")), 0);
	assert_int_equal(tc_run(t, "ls2", TC_ARGV("ls")), 0);
	assert_int_equal(tc_exists(t, "deeper"), 0);
}

static void test_status_never_used_existing_store(void **state)
{
	struct tc *t = *state;
	char obj[BUF];

	assert_int_equal(tc_run(t, "r", TC_ARGV("run", "other", "true")), 0);
	status_json(t, "fresh", obj, sizeof(obj));
	all_keys(obj);
	member_is(obj, "held", "false");
	member_is(obj, "holder", "null");
	member_is(obj, "since", "null");
	assert_int_equal(tc_exists(t, "store/fresh"), 0);
}

static void test_status_while_held(void **state)
{
	struct tc *t = *state;
	char obj[BUF], holder[BUF], v[256], tok[64], want[64], host[256], out[BUF];
	pid_t h;

	h = tc_hold(t, "busy", "--owner=backup-job", "ready");
	assert_true(h > 0);
	status_json(t, "busy", obj, sizeof(obj));
	all_keys(obj);
	member_is(obj, "name", "\"busy\"");
	member_is(obj, "held", "true");
	member_is(obj, "mode", "\"kernel\"");
	member_get(obj, "token", tok, sizeof(tok));
	assert_true(strspn(tok, "0123456789") == strlen(tok) && tok[0] != '0');
	member_get(obj, "since", v, sizeof(v));
	/* "YYYY-MM-DDTHH:MM:SS...Z" */
	assert_true(strlen(v) > 22 && v[0] == '"' && v[5] == '-' && v[11] == 'T' &&
	            v[strlen(v) - 2] == 'Z');

	member_get(obj, "holder", holder, sizeof(holder));
	assert_int_equal(holder[0], '{');
	snprintf(want, sizeof(want), "%d", (int)h);
	member_is(holder, "pid", want);
	member_is(holder, "owner", "\"backup-job\"");
	gethostname(host + 1, sizeof(host) - 3);
	host[0] = '"';
	strcat(host, "\"");
	member_is(holder, "host", host);

	/* a later hold gets a higher token */
	tc_unhold(h);
	h = tc_hold(t, "busy", NULL, "ready2");
	assert_true(h > 0);
	status_json(t, "busy", obj, sizeof(obj));
	member_get(obj, "token", v, sizeof(v));
	assert_true(strtoull(v, NULL, 10) > strtoull(tok, NULL, 10));
	/* owner defaults to COMMAND's name */
	member_get(obj, "holder", holder, sizeof(holder));
	member_is(holder, "owner", "\"sh\"");

	assert_int_equal(tc_run(t, "h", TC_ARGV("status", "busy")), 0);
	assert_true(tc_read(t, "h.out", out, sizeof(out)) > 0);
	assert_non_null(strstr(out, "held"));
	assert_null(strstr(out, "free"));
	assert_non_null(strstr(out, v));
	tc_unhold(h);

	/* released: free again, last token kept, no holder */
	status_json(t, "busy", obj, sizeof(obj));
	all_keys(obj);
	member_is(obj, "held", "false");
	member_is(obj, "holder", "null");
	member_is(obj, "since", "null");
	member_is(obj, "mode", "\"kernel\"");
	assert_int_equal(tc_run(t, "h", TC_ARGV("status", "busy")), 0);
	assert_true(tc_read(t, "h.out", out, sizeof(out)) > 0);
	assert_non_null(strstr(out, "free"));
}

static void test_status_shared(void **state)
{
	struct tc *t = *state;
	char obj[BUF];
	pid_t a = tc_hold(t, "sh", "-s", "ra");
	pid_t b = tc_hold(t, "sh", "-s", "rb");

	assert_true(a > 0 && b > 0);
	status_json(t, "sh", obj, sizeof(obj));
	all_keys(obj);
	member_is(obj, "held", "true");
	member_is(obj, "shared", "true");
	member_is(obj, "mode", "\"kernel\"");
	tc_unhold(a);
	status_json(t, "sh", obj, sizeof(obj));
	member_is(obj, "held", "true");
	tc_unhold(b);
	status_json(t, "sh", obj, sizeof(obj));
	member_is(obj, "held", "false");
}

static void test_ls_lists_every_lock(void **state)
{
	struct tc *t = *state;
	static const char *const names[] = {"alpha", "beta", "gamma.1", "x-y_z"};
	char out[BUF], obj[BUF], *p, *q;
	pid_t h;

	for (size_t i = 0; i < 4; i++)
		assert_int_equal(tc_run(t, "r", TC_ARGV("run", names[i], "true")), 0);
	h = tc_hold(t, "beta", NULL, "ready");
	assert_true(h > 0);
	/* entries that are not locks are not listed */
	tc_touch(t, "store/.hidden");

	assert_int_equal(tc_run(t, "ls", TC_ARGV("ls", "--json")), 0);
	assert_true(tc_read(t, "ls.out", out, sizeof(out)) > 0);
	p = out + strspn(out, " \n");
	q = out + strlen(out);
	while (q > p && (q[-1] == '\n' || q[-1] == ' '))
		q--;
	if (*p != '[' || q[-1] != ']')
		fail_msg("ls --json is not an array: %s", out);
	for (size_t i = 0; i < 4; i++) {
		if (tc_json_object(out, names[i], obj, sizeof(obj)) < 0)
			fail_msg("%s missing from ls --json: %s", names[i], out);
		all_keys(obj);
		member_is(obj, "held", i == 1 ? "true" : "false");
		member_is(obj, "mode", "\"kernel\"");
	}
	assert_null(strstr(out, "hidden"));
	/* in name order */
	assert_true(strstr(out, "\"alpha\"") < strstr(out, "\"beta\"") &&
	            strstr(out, "\"beta\"") < strstr(out, "\"gamma.1\"") &&
	            strstr(out, "\"gamma.1\"") < strstr(out, "\"x-y_z\""));

	assert_int_equal(tc_run(t, "lh", TC_ARGV("ls")), 0);
	assert_true(tc_read(t, "lh.out", out, sizeof(out)) > 0);
	assert_int_equal(tc_lines(out), 4);
	assert_non_null(strstr(out, "alpha: free"));
	assert_non_null(strstr(out, "beta: held"));
	assert_non_null(strstr(out, "x-y_z: free"));
	/* "list" is the same command */
	assert_int_equal(tc_run(t, "lh", TC_ARGV("list")), 0);
	tc_unhold(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_never_used_missing_store, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_status_never_used_existing_store, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_status_while_held, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_status_shared, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_ls_lists_every_lock, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
