// SPDX-License-Identifier: MIT
/*
 * lockctl on an nfs:// store (-S nfs://...).
 *
 *  - run: COMMAND's exit status passes through, COMMAND sees LOCKCTL_TOKEN
 *    and LOCKCTL_STORE, a name new to an nfs:// store is a lease even
 *    without --ttl; while one run holds the lease a second run -n is busy
 *    (exit 1), and status --json and ls (text and --json) describe the
 *    hold: lease mode, token, TTL, the heartbeat engine.
 *  - refusals, each with a message naming the problem and nothing run:
 *    version=4 (NFSv4 is not trusted yet: 69, store unavailable), URL
 *    arguments that would turn client caching on (dircache=1, pagecache) or
 *    that are unknown (64, usage), and --mode kernel, which an nfs:// store
 *    cannot provide (69), also for a name that is a lease already (74, as
 *    lockctl(1) documents for asking for the other mode).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nharness.h"

static char tmp[PATH_MAX], url[PATH_MAX + 512], rel_store[PATH_MAX + 16];
static char out[PATH_MAX + 16], err[PATH_MAX + 16];

static void scratch(void)
{
	char local[PATH_MAX], rel[PATH_MAX];

	nh_scratch("ctl", local, sizeof(local), rel, sizeof(rel));
	snprintf(rel_store, sizeof(rel_store), "%s/store", rel);
	nh_url(url, sizeof(url), rel_store, NULL);
	nh_tmp_dir(tmp, sizeof(tmp), "ctl");
	snprintf(out, sizeof(out), "%s/out", tmp);
	snprintf(err, sizeof(err), "%s/err", tmp);
}

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmp, name);
}

/* Run lockctl with args; its exit code, stdout and stderr. */
static int ctl(char *ret_out, size_t olen, char *ret_err, size_t elen, const char *const args[])
{
	int rc = nh_lockctl_run(out, err, args);

	if (ret_out && nh_read_file(out, ret_out, olen) < 0)
		ret_out[0] = 0;
	if (ret_err && nh_read_file(err, ret_err, elen) < 0)
		ret_err[0] = 0;
	return rc;
}

static void json_expect(const char *json, const char *key, const char *want)
{
	char got[256];

	if (nh_json_get(json, key, got, sizeof(got)) < 0)
		fail_msg("no \"%s\" in %s", key, json);
	if (strcmp(got, want))
		fail_msg("\"%s\" is %s, expected %s, in %s", key, got, want, json);
}

static void test_run_status_ls(void **state)
{
	char file[PATH_MAX + 16], go[PATH_MAX + 16], script[4 * PATH_MAX + 256];
	char o[8192], e[4096], buf[PATH_MAX + 600], want[64];
	unsigned long long tok = 0, tok2 = 0;
	pid_t holder;
	int64_t end;

	(void)state;
	scratch();

	/* exit status and environment pass through */
	path_in(file, sizeof(file), "env");
	snprintf(script, sizeof(script),
	         "printf '%%s %%s\\n' \"$LOCKCTL_TOKEN\" \"$LOCKCTL_STORE\" > '%s'; exit 7", file);
	{
		const char *args[] = {"-S", url,       "run", "--ttl", "1s", "ctl",
		                      "--", "/bin/sh", "-c",  script,  NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), args), 7);
	}
	assert_true(nh_read_file(file, buf, sizeof(buf)) > 0);
	{
		char st[PATH_MAX + 512];

		if (sscanf(buf, "%llu %s", &tok, st) != 2)
			fail_msg("COMMAND wrote '%s'", buf);
		assert_true(tok > 0);
		assert_string_equal(st, url);
	}

	/* a new name on an nfs:// store is a lease even without --ttl */
	{
		const char *args[] = {"-S", url, "run", "fresh", "--", "/bin/true", NULL};
		const char *sargs[] = {"-S", url, "status", "fresh", "--json", NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), args), 0);
		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), sargs), 0);
		json_expect(o, "mode", "\"lease\"");
		json_expect(o, "ttl_ms", "10000");
		json_expect(o, "held", "false");
	}

	/* a hold, seen from outside */
	path_in(file, sizeof(file), "token");
	path_in(go, sizeof(go), "go");
	snprintf(script, sizeof(script),
	         "echo \"$LOCKCTL_TOKEN\" > '%s.tmp' && mv '%s.tmp' '%s'; "
	         "while [ ! -e '%s' ]; do sleep 0.02; done",
	         file, file, file, go);
	{
		const char *args[] = {"-S", url,       "run", "--ttl", "2s", "ctl",
		                      "--", "/bin/sh", "-c",  script,  NULL};
		char hout[PATH_MAX + 16], herr[PATH_MAX + 16];

		path_in(hout, sizeof(hout), "holder.out");
		path_in(herr, sizeof(herr), "holder.err");
		holder = nh_lockctl(hout, herr, NULL, args);
	}
	end = nh_boot_ns() + (int64_t)NH_SAFETY_MS * 1000000;
	while (nh_read_file(file, buf, sizeof(buf)) <= 0 && nh_boot_ns() < end)
		nh_sleep_ms(5);
	if (sscanf(buf, "%llu", &tok2) != 1)
		fail_msg("the holding COMMAND did not start");
	assert_true(tok2 > tok);
	snprintf(want, sizeof(want), "%llu", tok2);
	{
		const char *args[] = {"-S", url, "status", "ctl", "--json", NULL};
		char engine[64];

		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 0);
		json_expect(o, "name", "\"ctl\"");
		json_expect(o, "held", "true");
		json_expect(o, "mode", "\"lease\"");
		json_expect(o, "state", "\"held\"");
		json_expect(o, "token", want);
		json_expect(o, "ttl_ms", "2000");
		snprintf(engine, sizeof(engine), "\"%s\"", lk_engine_default());
		json_expect(o, "engine", engine);
	}
	{
		const char *args[] = {"-S", url, "status", "ctl", NULL};

		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 0);
		if (!strstr(o, "held (lease mode)") || !strstr(o, want))
			fail_msg("status says: %s", o);
	}
	{
		const char *args[] = {"-S", url, "run", "-n", "ctl", "--", "/bin/true", NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), args), 1);
	}
	{
		const char *args[] = {"-S", url, "ls", NULL};
		const char *jargs[] = {"-S", url, "ls", "--json", NULL};

		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 0);
		if (!strstr(o, "ctl: held (lease mode)") || !strstr(o, "fresh: free"))
			fail_msg("ls says: %s", o);
		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), jargs), 0);
		if (o[0] != '[' || !strstr(o, "\"name\":\"ctl\",\"held\":true") ||
		    !strstr(o, "\"name\":\"fresh\",\"held\":false") ||
		    !strstr(o, "\"mode\":\"lease\""))
			fail_msg("ls --json says: %s", o);
	}

	/* let the holder finish: released, and said so */
	{
		FILE *f = fopen(go, "w");

		assert_non_null(f);
		fclose(f);
	}
	assert_int_equal(nh_wait_pid(holder, NH_SAFETY_MS), 0);
	{
		const char *args[] = {"-S", url, "status", "ctl", "--json", NULL};

		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 0);
		json_expect(o, "held", "false");
		json_expect(o, "state", "\"released\"");
		json_expect(o, "token", want);
	}
}

/* lockctl refuses: exit code, and a message with want in it; nothing ran. */
static void refused(const char *store, const char *mode, int code, const char *want)
{
	char mark[PATH_MAX + 16], e[4096];
	struct stat st;
	int rc;

	path_in(mark, sizeof(mark), "ran");
	{
		const char *args[] = {"-S", store, "run", "--mode",
		                      mode, "ctl", "--",  "/usr/bin/touch",
		                      mark, NULL};

		rc = ctl(NULL, 0, e, sizeof(e), args);
	}
	if (rc != code || !strstr(e, want))
		fail_msg("lockctl -S %s run --mode %s: exit %d (expected %d), said: %s", store,
		         mode, rc, code, e);
	assert_int_equal(stat(mark, &st), -1);
	print_message("%-6s %s -> %d: %s", mode, strchr(store, 0x3f), rc, e);
}

/* The verdict doctor --json gave a check (its first line), or "" if none. */
static const char *doctor_verdict(const char *json, const char *check)
{
	static char v[16];
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "{\"check\": \"%s\", \"verdict\": \"", check);
	p = strstr(json, key);
	v[0] = 0;
	if (p) {
		p += strlen(key);
		snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\""), p);
	}
	return v;
}

static void test_doctor(void **state)
{
	char o[8192], e[4096], q[1024], u[PATH_MAX + 1024];

	(void)state;
	scratch();
	{
		/* a store in use: reachable, writable, its lock listed, a round trip */
		const char *run[] = {"-S", url, "run", "--ttl", "1s", "doc", "--", "true", NULL};
		const char *args[] = {"-S", url, "doctor", "--json", NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), run), 0);
		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 0);
		assert_string_equal(doctor_verdict(o, "store"), "ok");
		assert_string_equal(doctor_verdict(o, "locks"), "ok");
		assert_non_null(strstr(o, "1 lock(s), 0 held"));
		assert_string_equal(doctor_verdict(o, "filesystem"), "note");
		assert_non_null(strstr(o, "lease mode"));
		/* loopback: well under the 100 ms that would make it a warning */
		assert_string_equal(doctor_verdict(o, "round-trip"), "ok");
		assert_non_null(strstr(o, "median "));
		/* and the writability probe left nothing behind */
		{
			const char *ls[] = {"-S", url, "ls", NULL};

			assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), ls), 0);
			assert_null(strstr(o, ".doctor"));
		}
	}
	{
		/* nothing answers on the NFS port: unusable, exit 69 */
		const char *args[] = {"-S", u, "doctor", "--json", NULL};

		nh_query_with(q, sizeof(q), "nfsport", "9");
		nh_url(u, sizeof(u), rel_store, q);
		assert_int_equal(ctl(o, sizeof(o), e, sizeof(e), args), 69);
		assert_string_equal(doctor_verdict(o, "store"), "fail");
		assert_null(strstr(o, "\"check\": \"round-trip\""));
	}
}

static void test_refusals(void **state)
{
	char q[1024], u[PATH_MAX + 1024], e[4096];

	(void)state;
	scratch();

	nh_query_with(q, sizeof(q), "version", "4");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 69, "version=3");
	{
		const char *args[] = {"-S", u, "status", "ctl", NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), args), 69);
		assert_non_null(strstr(e, "NFSv4"));
	}

	nh_query_with(q, sizeof(q), "dircache", "1");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "'dircache'");

	nh_query_with(q, sizeof(q), "pagecache", "1");
	{
		/* the bare word too, without a value */
		char *p = strstr(q, "pagecache=1");

		p[strlen("pagecache")] = 0;
	}
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "'pagecache'");

	nh_query_with(q, sizeof(q), "flavour", "strawberry");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "unknown nfs URL argument 'flavour'");

	/* numbers that libnfs would read only in part, or out of range */
	nh_query_with(q, sizeof(q), "uid", "0x");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "'uid' needs a number");
	nh_query_with(q, sizeof(q), "tcp-syncnt", "");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "'tcp-syncnt' needs a number");
	nh_query_with(q, sizeof(q), "auto-traverse-mounts", "2");
	nh_url(u, sizeof(u), rel_store, q);
	refused(u, "lease", 64, "'auto-traverse-mounts' needs a number");

	/* kernel mode: for a new name, and for one that is a lease already */
	refused(url, "kernel", 69, "kernel mode is not available on nfs:// stores");
	{
		const char *args[] = {"-S", url, "run", "ctl", "--", "/bin/true", NULL};

		assert_int_equal(ctl(NULL, 0, e, sizeof(e), args), 0);
	}
	refused(url, "kernel", 74, "is a lease-mode lock"); /* lockctl(1): the other mode, 74 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_run_status_ls, nh_teardown),
		cmocka_unit_test_teardown(test_refusals, nh_teardown),
		cmocka_unit_test_teardown(test_doctor, nh_teardown),
	};

	nh_init(100);
	return cmocka_run_group_tests_name("nfs_ctl", tests, NULL, NULL);
}
