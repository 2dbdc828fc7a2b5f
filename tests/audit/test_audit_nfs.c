// SPDX-License-Identifier: MIT
/*
 * The audit log on nfs:// stores, against the test server. Writers never
 * append (NFSv3 cannot do it atomically): each writes its own file at its
 * own offsets, and lockctl log reads every file through the nfs:// backend.
 *
 *  - lockctl run on an nfs:// store records acquire and release with
 *    COMMAND's token, and lockctl log over nfs:// shows them.
 *  - two clients (two store handles: two connections, two writers) taking
 *    turns write two files that lockctl log merges in time order, tokens
 *    increasing.
 *  - a holder stopped past its TTL records "lost" when it next releases,
 *    dated at its deadline, before the next holder's acquire.
 *  - files end at LOCKKIT_AUDIT_MAX_BYTES over NFS too.
 *  - a torn and a corrupt line written into a file through the server's
 *    local view are reported and skipped by a reader over nfs://.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "nharness.h"

#define BUF    (1 << 20)
#define MAXREC 512

static char local[PATH_MAX + 16], url[PATH_MAX + 512], tmp[PATH_MAX];
static char out[PATH_MAX + 16], err[PATH_MAX + 16];
static char outbuf[BUF], errbuf[BUF];
static struct lk__audit_rec recs[MAXREC];

static void scratch(const char *tag)
{
	char l[PATH_MAX], rel[PATH_MAX], rs[PATH_MAX + 16];

	nh_scratch(tag, l, sizeof(l), rel, sizeof(rel));
	snprintf(local, sizeof(local), "%s/store", l);
	snprintf(rs, sizeof(rs), "%s/store", rel);
	nh_url(url, sizeof(url), rs, NULL);
	nh_tmp_dir(tmp, sizeof(tmp), tag);
	snprintf(out, sizeof(out), "%s/out", tmp);
	snprintf(err, sizeof(err), "%s/err", tmp);
}

/* lockctl -S URL log [name] --json: exit 0 asserted; records in recs. */
static int read_log(const char *name)
{
	const char *args[8];
	char *line, *save = NULL;
	int i = 0, n = 0;

	args[i++] = "-S";
	args[i++] = url;
	args[i++] = "log";
	if (name)
		args[i++] = name;
	args[i++] = "--json";
	args[i] = NULL;
	assert_int_equal(nh_lockctl_run(out, err, args), 0);
	assert_true(nh_read_file(out, outbuf, sizeof(outbuf)) >= 0);
	assert_true(nh_read_file(err, errbuf, sizeof(errbuf)) >= 0);
	for (line = strtok_r(outbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *why = NULL;

		assert_true(n < MAXREC);
		if (lk__audit_parse(line, strlen(line), &recs[n], &why) < 0)
			fail_msg("not a record (%s): %s", why, line);
		n++;
	}
	return n;
}

/* Audit files in the store, seen on the server's side; the largest size. */
static int count_files(off_t *ret_max, char *ret_name, size_t nlen)
{
	char dir[PATH_MAX + 48], p[PATH_MAX + 400];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/.audit", local);
	if (ret_max)
		*ret_max = 0;
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			n++;
			if (ret_max && st.st_size > *ret_max)
				*ret_max = st.st_size;
			if (ret_name)
				snprintf(ret_name, nlen, "%s", de->d_name);
		}
	}
	closedir(d);
	return n;
}

static void test_run_and_log(void **state)
{
	char cmd[PATH_MAX + 64], tokfile[PATH_MAX + 16], tok[64];
	int n;

	(void)state;
	scratch("auditrun");
	snprintf(tokfile, sizeof(tokfile), "%s/tok", tmp);
	snprintf(cmd, sizeof(cmd), "echo $LOCKCTL_TOKEN > %s", tokfile);
	assert_int_equal(nh_lockctl_run(out, err,
	                                (const char *const[]){"-S", url, "run", "--ttl", "2s",
	                                                      "--owner", "remote-job", "job", "--",
	                                                      "sh", "-c", cmd, NULL}),
	                 0);
	assert_true(nh_read_file(tokfile, tok, sizeof(tok)) > 0);
	n = read_log("job");
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[1].event, "release");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recs[i].token, strtoull(tok, NULL, 10));
		assert_string_equal(recs[i].owner, "remote-job");
		assert_string_equal(recs[i].mode, "lease");
	}
	assert_int_equal(count_files(NULL, NULL, 0), 1);
}

static void test_two_clients_merged(void **state)
{
	struct lk_store *st[2];
	struct lk_lock *lk[2];
	uint64_t last = 0;
	int n;

	(void)state;
	scratch("auditmerge");
	for (int i = 0; i < 2; i++) {
		st[i] = nh_store_open(url);
		lk[i] = nh_lease_open(st[i], "turns", 2000, NULL);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 2; i++) {
			assert_int_equal(lk_lock_acquire(lk[i], 10000), 0);
			nh_sleep_ms(5);
			assert_int_equal(lk_lock_release(lk[i]), 0);
			nh_sleep_ms(5);
		}
	}
	for (int i = 0; i < 2; i++) {
		lk_lock_close(lk[i]);
		lk_store_close(st[i]);
	}
	assert_int_equal(count_files(NULL, NULL, 0), 2);
	n = read_log("turns");
	assert_int_equal(n, 12);
	for (int i = 0; i < n; i++) {
		assert_string_equal(recs[i].event, i % 2 ? "release" : "acquire");
		if (i)
			assert_true(recs[i - 1].time_ns <= recs[i].time_ns);
		if (i % 2 == 0) {
			assert_true(recs[i].token > last);
			last = recs[i].token;
		} else {
			assert_int_equal(recs[i].token, recs[i - 1].token);
		}
	}
}

static void holder(int rx, int tx, void *arg)
{
	struct lk_store *st = nh_store_open(arg);
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk;

	o.owner = "stopped";
	lk = nh_lease_open(st, "lost", 1000, &o);
	CHILD_EQ(lk_lock_acquire(lk, 10000), 0);
	nh_send(tx, lk_lock_token(lk));
	nh_expect(rx, NH_SAFETY_MS);
	CHILD_EQ(lk_lock_release(lk), -ENOLCK);
	lk_lock_close(lk);
	lk_store_close(st);
	nh_send(tx, 1);
}

static void test_lost_lease(void **state)
{
	struct nh_child c;
	struct lk_store *st;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk;
	uint64_t tok;
	int n;

	(void)state;
	scratch("auditlost");
	nh_spawn(&c, holder, url);
	tok = nh_expect(c.rx, NH_SAFETY_MS);
	assert_int_equal(kill(c.pid, SIGSTOP), 0);
	st = nh_store_open(url);
	nh_make_foreign(st);
	o.owner = "next";
	lk = nh_lease_open(st, "lost", 1000, &o);
	assert_int_equal(lk_lock_acquire(lk, 15000), 0);
	assert_true(lk_lock_token(lk) > tok);
	assert_int_equal(lk_lock_release(lk), 0);
	lk_lock_close(lk);
	lk_store_close(st);
	assert_int_equal(kill(c.pid, SIGCONT), 0);
	nh_send(c.tx, 1);
	assert_int_equal(nh_expect(c.rx, NH_SAFETY_MS), 1);
	assert_int_equal(nh_reap(&c, NH_SAFETY_MS), 0);

	n = read_log("lost");
	assert_int_equal(n, 4);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[0].owner, "stopped");
	assert_int_equal(recs[0].token, tok);
	assert_string_equal(recs[1].event, "lost");
	assert_string_equal(recs[1].owner, "stopped");
	assert_int_equal(recs[1].token, tok);
	assert_string_equal(recs[2].event, "acquire");
	assert_string_equal(recs[2].owner, "next");
	assert_string_equal(recs[3].event, "release");
	assert_true(recs[1].time_ns < recs[2].time_ns);
}

static void test_rotation(void **state)
{
	struct lk_store *st;
	struct lk_lock *lk;
	off_t max;
	int n;

	(void)state;
	scratch("auditrot");
	setenv("LOCKKIT_AUDIT_MAX_BYTES", "4096", 1);
	st = nh_store_open(url);
	unsetenv("LOCKKIT_AUDIT_MAX_BYTES");
	lk = nh_lease_open(st, "rot", 2000, NULL);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(lk_lock_acquire(lk, 10000), 0);
		assert_int_equal(lk_lock_release(lk), 0);
	}
	lk_lock_close(lk);
	lk_store_close(st);
	assert_true(count_files(&max, NULL, 0) >= 3);
	assert_true(max <= 4096 && max > 2048);
	n = read_log("rot");
	assert_int_equal(n, 40);
	for (int i = 0; i < n; i++)
		assert_int_equal(recs[i].seq, (uint64_t)i);
}

static void test_torn_over_nfs(void **state)
{
	char name[300], p[PATH_MAX + 400];
	const char *junk = "garbage\n{\"v\":1,\"time\":\"2026-01-01T00:00:00.000Z\",\"ev";
	int fd, n;

	(void)state;
	scratch("audittorn");
	assert_int_equal(nh_lockctl_run(out, err,
	                                (const char *const[]){"-S", url, "run", "--ttl", "2s", "t",
	                                                      "--", "true", NULL}),
	                 0);
	assert_int_equal(count_files(NULL, name, sizeof(name)), 1);
	snprintf(p, sizeof(p), "%s/.audit/%s", local, name);
	fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, strlen(junk)), (ssize_t)strlen(junk));
	close(fd);
	n = read_log(NULL);
	assert_int_equal(n, 2);
	if (!strstr(errbuf, "line 3: skipped") || !strstr(errbuf, "line 4: skipped") ||
	    !strstr(errbuf, "incomplete last line"))
		fail_msg("torn and corrupt lines not reported:\n%s", errbuf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_run_and_log, nh_teardown),
		cmocka_unit_test_teardown(test_two_clients_merged, nh_teardown),
		cmocka_unit_test_teardown(test_lost_lease, nh_teardown),
		cmocka_unit_test_teardown(test_rotation, nh_teardown),
		cmocka_unit_test_teardown(test_torn_over_nfs, nh_teardown),
	};

	nh_init(110);
	unsetenv("LOCKKIT_AUDIT");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
