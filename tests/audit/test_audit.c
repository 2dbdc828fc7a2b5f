// SPDX-License-Identifier: MIT
/*
 * The audit log on a local store, through the library and the real lockctl:
 *
 *  - lockctl run in lease mode records acquire and release with the token
 *    COMMAND saw and the owner given; a holder stopped past its TTL records
 *    "lost", dated at its deadline, so that the merged log shows it before
 *    the next holder's acquire with a higher token.
 *  - two processes acquiring one lock at once write two files, and
 *    lockctl log merges them in time order, each writer's lines in order.
 *  - files end at LOCKKIT_AUDIT_MAX_BYTES and are removed past
 *    LOCKKIT_AUDIT_MAX_FILES or LOCKKIT_AUDIT_MAX_AGE, foreign files never.
 *  - torn, corrupt and foreign entries are reported and skipped, a symbolic
 *    link is not followed, and the valid lines are still shown.
 *  - kernel mode records nothing and makes no extra syscall by default, and
 *    records with LK_LOCK_AUDIT or LOCKKIT_AUDIT=1; LK_LOCK_NO_AUDIT turns
 *    lease mode off; both flags are refused.
 *  - an audit log that cannot be written fails no lock operation.
 *  - elections record elect and resign; lk__audit_note() records breaks.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "harness.h"
#include "internal.h"
#include "sys.h"

#define BUF    (1 << 20)
#define MAXREC 1024

static char outbuf[BUF], errbuf[BUF];
static struct lk__audit_rec recs[MAXREC];

/* lockctl log [name] --json [extra]: exit 0 asserted; records in recs. */
static int read_log(struct tc *t, const char *name, const char *extra)
{
	const char *args[6];
	int n = 0, i = 0;
	char *line, *save = NULL;

	args[i++] = "log";
	if (name)
		args[i++] = name;
	args[i++] = "--json";
	if (extra)
		args[i++] = extra;
	args[i] = NULL;
	assert_int_equal(tc_run(t, "log", args), 0);
	assert_true(tc_read(t, "log.out", outbuf, sizeof(outbuf)) >= 0);
	assert_true(tc_read(t, "log.err", errbuf, sizeof(errbuf)) >= 0);
	for (line = strtok_r(outbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *why = NULL;

		assert_true(n < MAXREC);
		if (lk__audit_parse(line, strlen(line), &recs[n], &why) < 0)
			fail_msg("log --json printed a line that is not a record (%s): %s", why,
			         line);
		n++;
	}
	return n;
}

static void audit_dir(const struct tc *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s/.audit", t->store);
}

/* Regular files in <store>/.audit; the largest size in *ret_max. */
static int count_files(const struct tc *t, off_t *ret_max)
{
	char dir[TC_DIR_MAX + 16], p[TC_DIR_MAX + 300];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int n = 0;

	audit_dir(t, dir, sizeof(dir));
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
		}
	}
	closedir(d);
	return n;
}

static struct lk_store *store_open(const struct tc *t)
{
	struct lk_store *st = NULL;

	assert_int_equal(lk_store_open(t->store, NULL, &st), 0);
	return st;
}

static struct lk_lock *lock_open(struct lk_store *st, const char *name, enum lk_mode mode,
                                 uint32_t flags, const char *owner)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_lock *lk = NULL;

	o.mode = mode;
	o.flags = flags;
	o.owner = owner;
	o.ttl_ms = 2000;
	if (lk_lock_open(st, name, &o, &lk) < 0)
		fail_msg("lk_lock_open %s: %s", name, lk_store_errmsg(st));
	return lk;
}

static void cycle(struct lk_lock *lk, int n)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(lk_lock_acquire(lk, 5000), 0);
		assert_int_equal(lk_lock_release(lk), 0);
	}
}

static int count_event(int n, const char *event)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += !strcmp(recs[i].event, event);
	return c;
}

/* ------------------------------------------------------------------------ */

static void test_run_lease_acquire_release(void **state)
{
	struct tc *t = *state;
	char tokfile[TC_DIR_MAX + 16], cmd[TC_DIR_MAX + 64], tok[64];
	char human[BUF];
	int n;

	tc_path(t, "tok", tokfile, sizeof(tokfile));
	snprintf(cmd, sizeof(cmd), "echo $LOCKCTL_TOKEN > %s", tokfile);
	assert_int_equal(tc_run(t, "run",
	                        TC_ARGV("run", "--mode", "lease", "--ttl", "2s", "--owner",
	                                "nightly-job", "job", "--", "sh", "-c", cmd)),
	                 0);
	assert_true(tc_read(t, "tok", tok, sizeof(tok)) > 0);
	n = read_log(t, "job", NULL);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[1].event, "release");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recs[i].token, strtoull(tok, NULL, 10));
		assert_string_equal(recs[i].owner, "nightly-job");
		assert_string_equal(recs[i].lock, "job");
		assert_string_equal(recs[i].mode, "lease");
		assert_true(recs[i].pid > 0);
	}
	assert_true(recs[0].time_ns <= recs[1].time_ns);
	/* human form: one line per event with time, event, lock, token, owner */
	assert_int_equal(tc_run(t, "human", TC_ARGV("log", "job")), 0);
	assert_true(tc_read(t, "human.out", human, sizeof(human)) > 0);
	assert_int_equal(tc_lines(human), 2);
	tok[strcspn(tok, "\n")] = 0;
	{
		char want[128];

		snprintf(want, sizeof(want), " acquire job token=%s owner=nightly-job", tok);
		if (!strstr(human, want))
			fail_msg("no '%s' in:\n%s", want, human);
		snprintf(want, sizeof(want), " release job token=%s owner=nightly-job", tok);
		if (!strstr(human, want))
			fail_msg("no '%s' in:\n%s", want, human);
	}
	assert_true(human[4] == '-' && human[10] == 'T' && human[23] == 'Z');
	/* the log's directory is not a lock */
	assert_int_equal(tc_run(t, "ls", TC_ARGV("ls", "--json")), 0);
	assert_true(tc_read(t, "ls.out", human, sizeof(human)) > 0);
	assert_null(strstr(human, "audit"));
	/* a name never used has an empty log; an invalid name is a usage error */
	assert_int_equal(read_log(t, "other", NULL), 0);
	assert_int_equal(tc_run(t, "bad", TC_ARGV("log", ".audit")), 64);
}

static void test_lost_lease_dated_at_deadline(void **state)
{
	struct tc *t = *state;
	struct lk_store *st;
	struct lk_status s = {.size = sizeof(s)};
	pid_t a;
	int status, n, held = 0;

	a = tc_spawn(t, "a",
	             TC_ARGV("run", "--mode", "lease", "--ttl", "1s", "--owner", "first", "shared",
	                     "--", "sleep", "30"));
	st = store_open(t);
	for (int i = 0; i < 400 && !held; i++) {
		if (lk_lock_status(st, "shared", &s) == 0 && s.held)
			held = 1;
		else
			tc_sleep_ms(25);
	}
	assert_true(held);
	lk_store_close(st);
	assert_int_equal(kill(a, SIGSTOP), 0);
	assert_int_equal(tc_wait_stopped(a, 1, TC_BOUND_MS), 0);
	/* the next holder waits out the TTL of the silent one */
	assert_int_equal(tc_run(t, "b",
	                        TC_ARGV("run", "--mode", "lease", "--ttl", "1s", "-w", "15s",
	                                "--owner", "second", "shared", "--", "true")),
	                 0);
	assert_int_equal(kill(a, SIGCONT), 0);
	assert_int_equal(tc_wait(a, TC_BOUND_MS, &status), 0);
	assert_int_equal(tc_code(status), 75);

	n = read_log(t, "shared", NULL);
	assert_int_equal(n, 4);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[0].owner, "first");
	assert_string_equal(recs[1].event, "lost");
	assert_string_equal(recs[1].owner, "first");
	assert_string_equal(recs[1].reason, "deadline");
	assert_int_equal(recs[1].token, recs[0].token);
	assert_string_equal(recs[2].event, "acquire");
	assert_string_equal(recs[2].owner, "second");
	assert_true(recs[2].token > recs[1].token);
	assert_string_equal(recs[3].event, "release");
	assert_int_equal(recs[3].token, recs[2].token);
	/* written after the takeover, dated before it */
	assert_true(recs[1].time_ns < recs[2].time_ns);
	assert_int_equal(recs[0].pid, recs[1].pid);
}

struct writer_arg {
	const char *store;
	int cycles;
};

static void writer(const char *store, int cycles)
{
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	struct lk_store *st;
	struct lk_lock *lk;

	if (lk_store_open(store, NULL, &st) < 0)
		_exit(2);
	o.mode = LK_MODE_KERNEL;
	o.flags = LK_LOCK_AUDIT;
	if (lk_lock_open(st, "busy", &o, &lk) < 0)
		_exit(3);
	for (int i = 0; i < cycles; i++) {
		if (lk_lock_acquire(lk, 10000) < 0)
			_exit(4);
		usleep(200);
		if (lk_lock_release(lk) < 0)
			_exit(5);
	}
	lk_lock_close(lk);
	lk_store_close(st);
	_exit(0);
}

static void test_two_writers_merged(void **state)
{
	struct tc *t = *state;
	pid_t p[2];
	int n, status;
	uint64_t lastseq[2] = {0, 0};
	int seen[2] = {0, 0};
	int64_t pids[2];

	/* the store must exist before two processes race to create it */
	lk_store_close(store_open(t));
	for (int i = 0; i < 2; i++) {
		p[i] = fork();
		assert_true(p[i] >= 0);
		if (p[i] == 0)
			writer(t->store, 25);
		pids[i] = p[i];
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(tc_wait(p[i], TC_BOUND_MS, &status), 0);
		assert_int_equal(tc_code(status), 0);
	}
	assert_int_equal(count_files(t, NULL), 2);
	n = read_log(t, "busy", NULL);
	assert_int_equal(n, 100);
	assert_int_equal(count_event(n, "acquire"), 50);
	assert_int_equal(count_event(n, "release"), 50);
	for (int i = 0; i < n; i++) {
		int w = recs[i].pid == pids[0] ? 0 : recs[i].pid == pids[1] ? 1 : -1;

		assert_true(w >= 0);
		assert_string_equal(recs[i].mode, "kernel");
		if (i)
			assert_true(recs[i - 1].time_ns <= recs[i].time_ns);
		/* each writer's own lines keep their order */
		if (seen[w])
			assert_true(recs[i].seq > lastseq[w]);
		seen[w] = 1;
		lastseq[w] = recs[i].seq;
		/* a release follows its own acquire */
		if (!strcmp(recs[i].event, "release")) {
			int found = 0;

			for (int k = i - 1; k >= 0 && !found; k--)
				found = recs[k].pid == recs[i].pid &&
				        recs[k].token == recs[i].token &&
				        !strcmp(recs[k].event, "acquire");
			assert_true(found);
		}
	}
	/* every acquire had its own token */
	for (int i = 0; i < n; i++)
		for (int k = i + 1; k < n; k++)
			if (!strcmp(recs[i].event, "acquire") && !strcmp(recs[k].event, "acquire"))
				assert_true(recs[i].token != recs[k].token);
}

static void test_rotation_and_count_bound(void **state)
{
	struct tc *t = *state;
	struct lk_store *st;
	struct lk_lock *lk;
	off_t max;
	int n, files;

	setenv("LOCKKIT_AUDIT_MAX_BYTES", "4096", 1);
	st = store_open(t);
	lk = lock_open(st, "rot", LK_MODE_KERNEL, LK_LOCK_AUDIT, "rotator");
	cycle(lk, 40);
	lk_lock_close(lk);
	lk_store_close(st);
	files = count_files(t, &max);
	/* 80 lines of about 300 bytes: several files, none above the bound */
	assert_true(files >= 4);
	assert_true(max <= 4096);
	assert_true(max > 2048);
	n = read_log(t, "rot", NULL);
	assert_int_equal(n, 80);
	for (int i = 0; i < n; i++)
		assert_int_equal(recs[i].seq, (uint64_t)i);

	/* beyond LOCKKIT_AUDIT_MAX_FILES the oldest files go */
	setenv("LOCKKIT_AUDIT_MAX_FILES", "3", 1);
	tc_touch(t, "store/.audit/notes.txt");
	st = store_open(t);
	lk = lock_open(st, "rot", LK_MODE_KERNEL, LK_LOCK_AUDIT, "rotator");
	cycle(lk, 40);
	lk_lock_close(lk);
	lk_store_close(st);
	unsetenv("LOCKKIT_AUDIT_MAX_FILES");
	unsetenv("LOCKKIT_AUDIT_MAX_BYTES");
	/* three audit files and the foreign one, which is never removed */
	assert_int_equal(count_files(t, NULL), 4);
	assert_int_equal(tc_exists(t, "store/.audit/notes.txt"), 1);
	n = read_log(t, "rot", "--quiet");
	assert_true(n > 0 && n < 80);
	/* the newest lines survive */
	assert_string_equal(recs[n - 1].event, "release");
}

static void test_age_bound(void **state)
{
	struct tc *t = *state;
	struct lk_store *st;
	struct lk_lock *lk;
	char recent[128];
	time_t now = time(NULL);
	struct tm tm;

	lk_store_close(store_open(t));
	{
		char dir[TC_DIR_MAX + 16];

		audit_dir(t, dir, sizeof(dir));
		assert_int_equal(mkdir(dir, 0700), 0);
	}
	gmtime_r(&now, &tm);
	snprintf(recent, sizeof(recent),
	         "store/.audit/%04d%02d%02dT%02d%02d%02dZ.other.7.00000000000000aa.0.jsonl",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	tc_touch(t, "store/.audit/20200101T000000Z.old.7.00000000000000bb.0.jsonl");
	tc_touch(t, recent);
	setenv("LOCKKIT_AUDIT_MAX_AGE", "1h", 1);
	st = store_open(t);
	lk = lock_open(st, "aged", LK_MODE_LEASE, 0, NULL);
	cycle(lk, 1);
	lk_lock_close(lk);
	lk_store_close(st);
	unsetenv("LOCKKIT_AUDIT_MAX_AGE");
	assert_int_equal(
		tc_exists(t, "store/.audit/20200101T000000Z.old.7.00000000000000bb.0.jsonl"), 0);
	assert_int_equal(tc_exists(t, recent), 1);
	assert_int_equal(count_files(t, NULL), 2);
}

static void append(const struct tc *t, const char *file, const void *data, size_t len)
{
	char p[TC_DIR_MAX + 300];
	int fd;

	snprintf(p, sizeof(p), "%s/.audit/%s", t->store, file);
	fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static int only_file(const struct tc *t, char *buf, size_t len)
{
	char dir[TC_DIR_MAX + 16];
	struct dirent *de;
	DIR *d;
	int n = 0;

	audit_dir(t, dir, sizeof(dir));
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(buf, len, "%s", de->d_name);
			n++;
		}
	closedir(d);
	return n;
}

static void test_torn_corrupt_foreign(void **state)
{
	struct tc *t = *state;
	char file[256], link[TC_DIR_MAX + 300], human[BUF];
	static const char nul_line[] = "{\"v\":1,\"time\":\"2026-01-01T00:00:00.000Z\",\"event\":"
				       "\"acquire\",\"lock\":\"x\0y\"}\n";
	const char *bad =
		"this is not json\n{\"v\":1,\"event\":\"acquire\",\"lock\":\"job\"}\n"
		"{\"v\":1,\"time\":\"2026-13-01T00:00:00Z\",\"event\":\"x\",\"lock\":\"job\"}\n";
	const char *torn = "{\"v\":1,\"time\":\"2026-01-01T00:00:00.000Z\",\"event\":\"acq";
	int n;

	assert_int_equal(
		tc_run(t, "run",
	               TC_ARGV("run", "--mode", "lease", "--ttl", "2s", "job", "--", "true")),
		0);
	assert_int_equal(only_file(t, file, sizeof(file)), 1);
	append(t, file, bad, strlen(bad));
	append(t, file, torn, strlen(torn));
	append(t, "README", "hello\n", 6);
	append(t, "20260101T000000Z.x.1.0000000000000001.0.jsonl", nul_line, sizeof(nul_line) - 1);
	snprintf(link, sizeof(link), "%s/.audit/20260101T000000Z.ln.1.0000000000000002.0.jsonl",
	         t->store);
	assert_int_equal(symlink("/etc/hostname", link), 0);

	n = read_log(t, NULL, NULL);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[1].event, "release");
	/* every problem reported, naming the file and line */
	{
		char want[400];

		for (int line = 3; line <= 6; line++) {
			snprintf(want, sizeof(want), "%s: line %d: skipped", file, line);
			if (!strstr(errbuf, want))
				fail_msg("no '%s' in:\n%s", want, errbuf);
		}
	}
	assert_non_null(strstr(errbuf, "incomplete last line"));
	assert_non_null(strstr(errbuf, "README: skipped"));
	assert_non_null(strstr(errbuf, "NUL"));
	assert_non_null(strstr(errbuf, "symbolic link"));
	/* human output too, and nothing on stderr with --quiet */
	assert_int_equal(tc_run(t, "human", TC_ARGV("log", "--quiet")), 0);
	assert_true(tc_read(t, "human.out", human, sizeof(human)) > 0);
	assert_int_equal(tc_lines(human), 2);
	assert_true(tc_read(t, "human.err", human, sizeof(human)) == 0);
	/* writing goes on undisturbed (the writer keeps its own files) */
	assert_int_equal(tc_run(t, "run2", TC_ARGV("run", "job", "--", "true")), 0);
	n = read_log(t, "job", "--quiet");
	assert_int_equal(n, 4);
}

/* Syscalls of the posix backend that only writing an audit line makes. */
static unsigned long n_open, n_pwrite, n_mkdir;
static int (*real_openat)(int, const char *, int, mode_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_mkdirat)(int, const char *, mode_t);

static int count_openat(int dfd, const char *path, int flags, mode_t mode)
{
	n_open++;
	return real_openat(dfd, path, flags, mode);
}

static ssize_t count_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	n_pwrite++;
	return real_pwrite(fd, buf, n, off);
}

static int count_mkdirat(int dfd, const char *path, mode_t mode)
{
	n_mkdir++;
	return real_mkdirat(dfd, path, mode);
}

static unsigned long calls_during(struct lk_lock *lk, int cycles)
{
	n_open = n_pwrite = n_mkdir = 0;
	real_openat = lk__posix_sys.openat;
	real_pwrite = lk__posix_sys.pwrite;
	real_mkdirat = lk__posix_sys.mkdirat;
	lk__posix_sys.openat = count_openat;
	lk__posix_sys.pwrite = count_pwrite;
	lk__posix_sys.mkdirat = count_mkdirat;
	cycle(lk, cycles);
	lk__posix_sys.openat = real_openat;
	lk__posix_sys.pwrite = real_pwrite;
	lk__posix_sys.mkdirat = real_mkdirat;
	return n_open + n_pwrite + n_mkdir;
}

static void test_kernel_mode_default_off(void **state)
{
	struct tc *t = *state;
	struct lk_store *st = store_open(t);
	struct lk_lock *k, *ka, *ln, *lk = NULL;
	struct lk_lock_opts o = LK_LOCK_OPTS_INIT;
	int n;

	k = lock_open(st, "kdefault", LK_MODE_KERNEL, 0, NULL);
	cycle(k, 2); /* the first acquisition of a boot may sync a reservation */
	assert_int_equal(calls_during(k, 10), 0);
	assert_int_equal(tc_exists(t, "store/.audit"), 0);

	ka = lock_open(st, "kaudit", LK_MODE_KERNEL, LK_LOCK_AUDIT, NULL);
	cycle(ka, 2);
	assert_true(calls_during(ka, 10) >= 20);

	setenv("LOCKKIT_AUDIT", "1", 1);
	lk_lock_close(k);
	k = lock_open(st, "kdefault", LK_MODE_KERNEL, 0, NULL);
	unsetenv("LOCKKIT_AUDIT");
	cycle(k, 1);
	ln = lock_open(st, "lnone", LK_MODE_LEASE, LK_LOCK_NO_AUDIT, NULL);
	cycle(ln, 1);

	o.flags = LK_LOCK_AUDIT | LK_LOCK_NO_AUDIT;
	assert_int_equal(lk_lock_open(st, "both", &o, &lk), -EINVAL);
	assert_null(lk);
	lk_lock_close(k);
	lk_lock_close(ka);
	lk_lock_close(ln);
	lk_store_close(st);

	assert_int_equal(read_log(t, "kaudit", NULL), 24);
	assert_string_equal(recs[0].mode, "kernel");
	n = read_log(t, "kdefault", NULL);
	assert_int_equal(n, 2); /* only the cycle made with LOCKKIT_AUDIT=1 */
	assert_int_equal(read_log(t, "lnone", NULL), 0);

	/* a store opened with LK_STORE_NO_AUDIT writes nothing at all */
	{
		struct lk_store_opts so = LK_STORE_OPTS_INIT;
		struct lk_store *s2;

		so.flags = LK_STORE_NO_AUDIT;
		assert_int_equal(lk_store_open(t->store, &so, &s2), 0);
		k = lock_open(s2, "quiet", LK_MODE_LEASE, LK_LOCK_AUDIT, NULL);
		cycle(k, 1);
		lk_lock_close(k);
		assert_int_equal(lk__audit_note(s2, "break", "quiet", LK_MODE_LEASE, 1, NULL, NULL),
		                 -EOPNOTSUPP);
		lk_store_close(s2);
		assert_int_equal(read_log(t, "quiet", NULL), 0);
	}
}

static void test_failed_audit_fails_nothing(void **state)
{
	struct tc *t = *state;
	struct lk_store *st = store_open(t);
	struct lk_lock *l, *k;
	uint64_t written, failed;

	/* a file where the directory should be: every audit write fails */
	tc_touch(t, "store/.audit");
	l = lock_open(st, "lease", LK_MODE_LEASE, 0, NULL);
	assert_int_equal(lk_lock_acquire(l, 5000), 0);
	assert_true(lk_lock_token(l) > 0);
	assert_non_null(strstr(lk_lock_errmsg(l), "audit log"));
	assert_non_null(strstr(lk_lock_errmsg(l), "lock operation succeeded"));
	assert_int_equal(lk_lock_check(l), 0);
	assert_int_equal(lk_lock_release(l), 0);
	k = lock_open(st, "kern", LK_MODE_KERNEL, LK_LOCK_AUDIT, NULL);
	assert_int_equal(lk_lock_acquire(k, 0), 0);
	assert_int_equal(lk_lock_release(k), 0);
	lk__audit_counts(st, &written, &failed, NULL, 0);
	assert_int_equal(written, 0);
	assert_int_equal(failed, 4);
	lk_lock_close(l);
	lk_lock_close(k);
	lk_store_close(st);
	/* lockctl run works too, and log says what it can */
	assert_int_equal(tc_run(t, "run", TC_ARGV("run", "--mode", "lease", "x", "--", "true")), 0);
	assert_int_equal(tc_run(t, "log", TC_ARGV("log")), 74);
	assert_true(tc_read(t, "log.err", errbuf, sizeof(errbuf)) > 0);
	assert_non_null(strstr(errbuf, ".audit"));
}

static void test_election_and_note(void **state)
{
	struct tc *t = *state;
	struct lk_store *st = store_open(t);
	struct lk_election_opts eo = LK_ELECTION_OPTS_INIT;
	struct lk_election *e;
	uint64_t tok;
	int n;

	eo.mode = LK_MODE_LEASE;
	eo.id = "node-a";
	eo.ttl_ms = 2000;
	assert_int_equal(lk_election_open(st, "leader", &eo, &e), 0);
	assert_int_equal(lk_election_campaign(e, "addr", 4, 5000), 0);
	tok = lk_election_token(e);
	assert_int_equal(lk_election_resign(e), 0);
	lk_election_close(e);
	/* kernel-mode elections record with the flag */
	eo.mode = LK_MODE_KERNEL;
	eo.flags = LK_LOCK_AUDIT;
	assert_int_equal(lk_election_open(st, "kleader", &eo, &e), 0);
	assert_int_equal(lk_election_campaign(e, NULL, 0, 5000), 0);
	lk_election_close(e);
	assert_int_equal(lk__audit_note(st, "break", "leader", LK_MODE_LEASE, tok + 1, "admin",
	                                "broken by an operator"),
	                 0);
	lk_store_close(st);

	n = read_log(t, "leader", NULL);
	assert_int_equal(n, 5);
	assert_string_equal(recs[0].event, "acquire");
	assert_string_equal(recs[1].event, "elect");
	assert_string_equal(recs[2].event, "resign");
	assert_string_equal(recs[3].event, "release");
	for (int i = 0; i < 4; i++) {
		assert_int_equal(recs[i].token, tok);
		assert_string_equal(recs[i].owner, "node-a");
	}
	assert_string_equal(recs[4].event, "break");
	assert_string_equal(recs[4].owner, "admin");
	assert_string_equal(recs[4].detail, "broken by an operator");
	assert_int_equal(recs[4].token, tok + 1);
	n = read_log(t, "kleader", NULL);
	assert_int_equal(count_event(n, "elect"), 1);
	assert_int_equal(count_event(n, "resign"), 1);
}

/* What writers write parses, every cut of it does not, and no input
 * crashes the reader (the sanitizer builds check the "no crash" part). */
static void test_parse(void **state)
{
	struct tc *t = *state;
	char line[8192], file[256], p[TC_DIR_MAX + 300];
	struct lk__audit_rec r;
	const char *why;
	ssize_t len;
	char *nl;

	assert_int_equal(
		tc_run(t, "run",
	               TC_ARGV("run", "--mode", "lease", "--owner",
	                       "label\twith \"quotes\" \xc3\xa9 \xff", "job", "--", "true")),
		0);
	assert_int_equal(only_file(t, file, sizeof(file)), 1);
	snprintf(p, sizeof(p), "%s/.audit/%s", t->store, file);
	len = tc_read(t, p, line, sizeof(line));
	assert_true(len > 0);
	nl = strchr(line, '\n');
	assert_non_null(nl);
	*nl = 0;
	/* {"v":1,"time":"YYYY-MM-DDTHH:MM:SS.mmmZ", ... */
	assert_memory_equal(line, "{\"v\":1,\"time\":\"", 15);
	assert_true(line[19] == '-' && line[22] == '-' && line[25] == 'T' && line[28] == ':' &&
	            line[31] == ':' && line[34] == '.' && line[38] == 'Z' && line[39] == '"');
	/* control characters escaped, invalid UTF-8 replaced, valid kept */
	assert_non_null(strstr(line, "\"owner\":\"label\\u0009with \\\"quotes\\\" \xc3\xa9 ?\""));
	assert_int_equal(lk__audit_parse(line, strlen(line), &r, &why), 0);
	assert_string_equal(r.owner, "label\twith \"quotes\" \xc3\xa9 ?");
	assert_string_equal(r.event, "acquire");
	for (size_t n = 0; n < strlen(line); n++)
		assert_int_equal(lk__audit_parse(line, n, &r, &why), -EBADMSG);
	srandom(1);
	for (int i = 0; i < 20000; i++) {
		char junk[256];
		size_t n = (size_t)(random() % (long)sizeof(junk));

		memcpy(junk, line, n < strlen(line) ? n : strlen(line));
		for (size_t k = 0; k < n; k++)
			if (random() % 8 == 0)
				junk[k] = (char)(random() % 256);
		(void)lk__audit_parse(junk, n, &r, &why);
	}
}

static void test_since(void **state)
{
	struct tc *t = *state;
	char old[] = "{\"v\":1,\"time\":\"2020-01-01T00:00:00.000Z\",\"event\":\"acquire\","
		     "\"lock\":\"job\",\"token\":1,\"owner\":\"o\",\"host\":\"h\",\"pid\":1,"
		     "\"seq\":0}\n";
	char dir[TC_DIR_MAX + 16], name[128];
	time_t now = time(NULL);
	struct tm tm;

	lk_store_close(store_open(t));
	audit_dir(t, dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0700), 0);
	/* named as a file started now, so that no clean-up removes it; its
	 * line is old */
	gmtime_r(&now, &tm);
	snprintf(name, sizeof(name), "%04d%02d%02dT%02d%02d%02dZ.h.1.0000000000000003.0.jsonl",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	append(t, name, old, strlen(old));
	assert_int_equal(tc_run(t, "run", TC_ARGV("run", "--mode", "lease", "job", "--", "true")),
	                 0);
	assert_int_equal(read_log(t, "job", NULL), 3);
	assert_int_equal(recs[0].token, 1); /* oldest first */
	assert_int_equal(read_log(t, "job", "--since=1h"), 2);
	assert_string_equal(recs[0].event, "acquire");
	assert_true(recs[0].token > 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_lease_acquire_release, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_lost_lease_dated_at_deadline, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_two_writers_merged, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_rotation_and_count_bound, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_age_bound, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_torn_corrupt_foreign, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_kernel_mode_default_off, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_failed_audit_fails_nothing, tc_setup,
	                                        tc_teardown),
		cmocka_unit_test_setup_teardown(test_election_and_note, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_since, tc_setup, tc_teardown),
		cmocka_unit_test_setup_teardown(test_parse, tc_setup, tc_teardown),
	};

	tc_init();
	unsetenv("LOCKKIT_AUDIT");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
