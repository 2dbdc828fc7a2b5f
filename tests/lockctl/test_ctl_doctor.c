// SPDX-License-Identifier: MIT
/*
 * lockctl doctor on local stores: a usable store (missing or present), one
 * it cannot use (a file where the directory should be, a path that cannot
 * be created, a read-only mount), one that is unsafe (writable by everyone
 * without the sticky bit), and one holding a damaged entry. The verdicts
 * are read from --json output, so the checks are about what doctor found,
 * not how it words it; the exit status is what scripts gate on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char out[65536];

/* The verdict doctor gave check (the first line for it), or "" if none. */
static const char *verdict(const char *check)
{
	static char v[16];
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "{\"check\": \"%s\", \"verdict\": \"", check);
	p = strstr(out, key);
	v[0] = 0;
	if (p) {
		p += strlen(key);
		snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\""), p);
	}
	return v;
}

static int doctor(struct tc *t, const char *store)
{
	int code = tc_run(t, "doc", TC_ARGV("-S", store, "doctor", "--json"));

	assert_true(tc_read(t, "doc.out", out, sizeof(out)) > 0);
	return code;
}

static void test_usable(void **state)
{
	struct tc *t = *state;
	char path[TC_DIR_MAX + 32];

	/* missing: usable, and doctor does not create it */
	assert_int_equal(doctor(t, t->store), 0);
	assert_string_equal(verdict("store"), "ok");
	assert_int_equal(tc_exists(t, "store"), 0);
	assert_string_equal(verdict("io_uring"), getenv("LOCKKIT_NO_URING") ? "note" : "ok");
	assert_string_equal(verdict("clocks"), "ok");

	/* present, with a lock in it */
	assert_int_equal(tc_run(t, "run", TC_ARGV("-S", t->store, "run", "a", "--", "true")), 0);
	assert_int_equal(doctor(t, t->store), 0);
	assert_string_equal(verdict("store"), "ok");
	assert_string_equal(verdict("permissions"), "ok");
	assert_string_equal(verdict("locks"), "ok");
	assert_non_null(strstr(out, "1 lock(s), 0 held"));
	/* nothing left behind by the writability probe */
	assert_int_equal(tc_run(t, "ls", TC_ARGV("-S", t->store, "ls")), 0);
	assert_true(tc_read(t, "ls.out", path, sizeof(path)) > 0);
	assert_int_equal(tc_lines(path), 1);
	assert_true(!strncmp(path, "a: free", 7));

	/* plain text names the verdicts too */
	assert_int_equal(tc_run(t, "txt", TC_ARGV("-S", t->store, "doctor")), 0);
	assert_true(tc_read(t, "txt.out", out, sizeof(out)) > 0);
	assert_non_null(strstr(out, "The store is usable."));
}

static void test_unusable(void **state)
{
	struct tc *t = *state;
	char path[TC_DIR_MAX + 64];
	int fd;

	/* a file where the store should be */
	tc_path(t, "file", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(doctor(t, path), 69);
	assert_string_equal(verdict("store"), "fail");

	/* cannot be created: its parent is that file */
	tc_path(t, "file/sub", path, sizeof(path));
	assert_int_equal(doctor(t, path), 69);
	assert_string_equal(verdict("store"), "fail");

	/* world-writable without the sticky bit */
	tc_path(t, "open", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chmod(path, 0777), 0);
	assert_int_equal(doctor(t, path), 69);
	assert_string_equal(verdict("store"), "ok");
	assert_string_equal(verdict("permissions"), "fail");
	/* with the sticky bit: a warning, still usable */
	assert_int_equal(chmod(path, 01777), 0);
	assert_int_equal(doctor(t, path), 0);
	assert_string_equal(verdict("permissions"), "warn");
	/* group-shared */
	assert_int_equal(chmod(path, 02770), 0);
	assert_int_equal(doctor(t, path), 0);
	assert_string_equal(verdict("permissions"), "ok");
	assert_non_null(strstr(out, "shared by group"));

	/* bad usage */
	assert_int_equal(tc_run(t, "u", TC_ARGV("-S", t->store, "doctor", "--bogus")), 64);
}

static void test_damaged_entry(void **state)
{
	struct tc *t = *state;
	char path[TC_DIR_MAX + 64];
	int fd;

	assert_int_equal(tc_run(t, "run", TC_ARGV("-S", t->store, "run", "good", "--", "true")),
	                 0);
	tc_path(t, "store/junk", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a lock\n", 11), 11);
	close(fd);
	assert_int_equal(doctor(t, t->store), 0);
	assert_string_equal(verdict("locks"), "warn");
	assert_non_null(strstr(out, "junk"));
}

/* A read-only mount of the store, in a mount namespace of a child's own. */
static void test_readonly(void **state)
{
	struct tc *t = *state;
	pid_t pid;
	int status;

	assert_int_equal(tc_run(t, "run", TC_ARGV("-S", t->store, "run", "a", "--", "true")), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount(t->store, t->store, NULL, MS_BIND, NULL) < 0 ||
		    mount(NULL, t->store, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
			_exit(100);
		_exit(doctor(t, t->store) == 69 && !strcmp(verdict("store"), "fail") ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_usable, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_unusable, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_entry, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_readonly, tc_setup, tc_teardown),
	};

	tc_init();
	return cmocka_run_group_tests_name("lockctl doctor", tests, NULL, NULL);
}
