// SPDX-License-Identifier: MIT
/*
 * lockctl doctor: look at a store and the machine and say, in plain words,
 * whether lockkit can work there and how it will. It is what an operator
 * runs first when a lock behaves unexpectedly, so every finding is one line
 * that names the thing checked, a verdict (ok, note, warn, FAIL) and what
 * to do about it.
 *
 * It changes nothing that a lock user could see: writability is tested with
 * a dot-file (lock names never start with a dot), created exclusively and
 * removed at once; a store that does not exist is not created. Only a FAIL
 * makes the exit status non-zero (69: the store is unusable), so scripts
 * can gate on it while warnings stay advisory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "lockctl.h"
#include "lockkit/backend.h"

const char *const usage_doctor =
	"Usage: lockctl [-S STORE] doctor [--json]\n"
	"\n"
	"Check the store and this machine: is the store reachable and writable,\n"
	"what filesystem holds it and which lock mode suits it, whether the\n"
	"io_uring heartbeat engine is available (or why not), the clocks lockkit\n"
	"relies on, permissions, and for nfs:// stores the round-trip time.\n"
	"\n"
	"  --json   one JSON object per line: {\"check\", \"verdict\", \"message\"}\n"
	"\n"
	"Exit status: 0 when the store is usable (warnings included), 69 when it\n"
	"is not, 64 usage error.\n";

enum verdict { V_OK, V_NOTE, V_WARN, V_FAIL };

static const char *const verdict_name[] = { "ok", "note", "warn", "FAIL" };

struct doc {
	int json;
	int failed;
};

static void say(struct doc *d, const char *check, enum verdict v, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void say(struct doc *d, const char *check, enum verdict v, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (v == V_FAIL)
		d->failed = 1;
	if (d->json) {
		fputs("{\"check\": ", stdout);
		json_str(stdout, check);
		printf(", \"verdict\": \"%s\", \"message\": ", v == V_FAIL ? "fail" : verdict_name[v]);
		json_str(stdout, msg);
		fputs("}\n", stdout);
	} else {
		printf("%-4s  %-11s %s\n", verdict_name[v], check, msg);
	}
}

static void check_locks_at(struct doc *d, const char *url);

/* Filesystem types by statfs magic: what lockkit does on each. */
struct fskind {
	unsigned long magic;
	const char *name;
	int network;
};

static const struct fskind fskinds[] = {
	{ 0xef53UL, "ext2/3/4", 0 },      { 0x58465342UL, "xfs", 0 },
	{ 0x9123683eUL, "btrfs", 0 },     { 0x01021994UL, "tmpfs", 0 },
	{ 0x2fc12fc1UL, "zfs", 0 },       { 0x794c7630UL, "overlayfs", 0 },
	{ 0xf2f52010UL, "f2fs", 0 },      { 0x3153464aUL, "jfs", 0 },
	{ 0x4d44UL, "vfat", 0 },          { 0x5346544eUL, "ntfs", 0 },
	{ 0x6969UL, "nfs", 1 },           { 0x517bUL, "smb", 1 },
	{ 0xff534d42UL, "cifs", 1 },      { 0xfe534d42UL, "smb2", 1 },
	{ 0x00c36400UL, "ceph", 1 },      { 0x65735546UL, "fuse", 1 },
	{ 0x5346414fUL, "afs", 1 },       { 0x01161970UL, "gfs2", 1 },
	{ 0x7461636fUL, "ocfs2", 1 },     { 0x01021997UL, "9p", 1 },
	{ 0x0bd00bd0UL, "lustre", 1 },
};

static void check_fs(struct doc *d, const char *path)
{
	const struct fskind *k = NULL;
	struct statfs sf;

	if (statfs(path, &sf) < 0) {
		say(d, "filesystem", V_WARN, "cannot statfs %s: %s", path, strerror(errno));
		return;
	}
	for (size_t i = 0; i < sizeof(fskinds) / sizeof(fskinds[0]); i++)
		if (fskinds[i].magic == (unsigned long)sf.f_type)
			k = &fskinds[i];
	if (!k) {
		say(d, "filesystem", V_NOTE,
		    "unknown filesystem type 0x%lx, treated as local: kernel mode (OFD locks) "
		    "is the default for new locks; use --mode lease if other hosts share it",
		    (unsigned long)sf.f_type);
		return;
	}
	if (k->network) {
		say(d, "filesystem", V_NOTE,
		    "%s (shared over a network): new locks use lease mode, with direct, "
		    "synchronous record I/O; kernel locks over %s are not trusted. For NFS, "
		    "an nfs:// store (a userspace client with no cache) is the tested way",
		    k->name, k->name);
		return;
	}
	if (sf.f_type == 0x01021994UL)
		say(d, "filesystem", V_NOTE,
		    "tmpfs (memory, this host only): kernel mode (OFD locks) suits it; the store "
		    "empties at reboot, and tokens of new lock files start from the wall clock "
		    "(keep it roughly right)");
	else
		say(d, "filesystem", V_OK,
		    "%s (local disk): kernel mode (OFD locks) suits processes on this host; "
		    "lease mode works too",
		    k->name);
	if (sf.f_flags & ST_RDONLY)
		say(d, "filesystem", V_FAIL, "mounted read-only: no lock can be taken here");
}

static void describe_owner(char *buf, size_t len, uid_t uid, gid_t gid)
{
	struct passwd *pw = getpwuid(uid);
	struct group *gr = getgrgid(gid);

	if (pw && gr)
		snprintf(buf, len, "%s:%s", pw->pw_name, gr->gr_name);
	else
		snprintf(buf, len, "%u:%u", (unsigned)uid, (unsigned)gid);
}

/* The existing directory nearest to path (path itself if it exists). */
static void nearest_existing(const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "%s", path);
	for (;;) {
		struct stat st;
		char *slash;

		if (stat(buf, &st) == 0 || !buf[0])
			return;
		slash = strrchr(buf, '/');
		if (!slash) {
			snprintf(buf, len, ".");
			return;
		}
		if (slash == buf)
			slash[1] = 0;
		else
			*slash = 0;
	}
}

static void check_perms(struct doc *d, const char *path, const struct stat *st)
{
	char who[128];
	mode_t m = st->st_mode & 07777;

	describe_owner(who, sizeof(who), st->st_uid, st->st_gid);
	if ((m & 0002) && !(m & 01000)) {
		say(d, "permissions", V_FAIL,
		    "%s is writable by everyone without the sticky bit (mode %04o): anyone could "
		    "replace or remove other users' lock files; chmod o-w (or share it with a "
		    "group: chmod 2770 and chgrp)",
		    path, (unsigned)m);
	} else if (m & 0002) {
		say(d, "permissions", V_WARN,
		    "%s is writable by everyone (mode %04o, sticky): any local user can create "
		    "locks here; a group-shared store (mode 2770) is safer",
		    path, (unsigned)m);
	} else if ((m & 0070) == 0070 && (m & 02000)) {
		say(d, "permissions", V_OK,
		    "%s is shared by group %s (mode %04o, setgid): members can use every lock",
		    path, who, (unsigned)m);
	} else if (st->st_uid != geteuid() && !(m & 0020)) {
		say(d, "permissions", V_WARN,
		    "%s belongs to %s (mode %04o) and you are uid %u: you may only read it",
		    path, who, (unsigned)m, (unsigned)geteuid());
	} else {
		say(d, "permissions", V_OK, "%s: owner %s, mode %04o", path, who, (unsigned)m);
	}
}

/* Create and remove a dot-file: the only honest test of writability. */
static void check_writable_local(struct doc *d, const char *path)
{
	char tmp[PATH_MAX];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/.doctor-%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		say(d, "store", V_FAIL, "%s exists but a file cannot be created in it: %s", path,
		    strerror(errno));
		return;
	}
	close(fd);
	unlink(tmp);
	say(d, "store", V_OK, "%s exists and is writable", path);
}

static void check_local_store(struct doc *d, const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		char near[PATH_MAX], tmp[PATH_MAX + 64];

		if (errno != ENOENT) {
			say(d, "store", V_FAIL, "cannot look at %s: %s", path, strerror(errno));
			return;
		}
		nearest_existing(path, near, sizeof(near));
		/* creating a directory there is the only honest test */
		snprintf(tmp, sizeof(tmp), "%s/.lockkit-doctor-%ld", near, (long)getpid());
		if (mkdir(tmp, 0700) == 0) {
			rmdir(tmp);
			say(d, "store", V_OK,
			    "%s does not exist yet; the first lock creates it (mode 0700) under %s",
			    path, near);
		} else {
			say(d, "store", V_FAIL, "%s does not exist and cannot be created under %s: %s",
			    path, near, strerror(errno));
		}
		check_fs(d, near);
		return;
	}
	if (S_ISLNK(st.st_mode)) {
		say(d, "store", V_WARN,
		    "%s is a symbolic link; make sure nobody else can change where it points",
		    path);
		if (stat(path, &st) < 0) {
			say(d, "store", V_FAIL, "%s points nowhere: %s", path, strerror(errno));
			return;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		say(d, "store", V_FAIL, "%s is not a directory", path);
		return;
	}
	check_writable_local(d, path);
	check_perms(d, path, &st);
	check_fs(d, path);
	check_locks_at(d, path);
}

struct lockscan {
	struct lk_store *st;
	int total, held, bad;
	char first_bad[160];
};

static int scan_one(const char *name, void *userdata)
{
	struct lockscan *ls = userdata;
	struct lk_status s = { .size = sizeof(s) };
	int r = lk_lock_status(ls->st, name, &s);

	ls->total++;
	if (r < 0) {
		if (!ls->bad++)
			snprintf(ls->first_bad, sizeof(ls->first_bad), "%s: %s", name,
			         lk_store_errmsg(ls->st));
	} else if (s.held) {
		ls->held++;
	}
	return 0;
}

/* Every entry readable? A damaged or foreign one is what operators ask about. */
static void check_locks(struct doc *d, struct lk_store *st)
{
	struct lockscan ls = { .st = st };
	int r = lk_store_list(st, scan_one, &ls);

	if (r < 0) {
		say(d, "locks", V_FAIL, "cannot list the store: %s", lk_store_errmsg(st));
		return;
	}
	if (ls.bad)
		say(d, "locks", V_WARN,
		    "%d lock(s), %d held; %d cannot be read (first: %s): 'lockctl status NAME' "
		    "says more",
		    ls.total, ls.held, ls.bad, ls.first_bad);
	else
		say(d, "locks", V_OK, "%d lock(s), %d held, all readable", ls.total, ls.held);
}

static void check_locks_at(struct doc *d, const char *url)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;
	char msg[256];

	o.flags |= LK_STORE_RDONLY;
	if (lk_store_open_err(url, &o, &st, msg, sizeof(msg)) < 0) {
		say(d, "locks", V_FAIL, "cannot open the store: %s", msg);
		return;
	}
	check_locks(d, st);
	lk_store_close(st);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void check_nfs_store(struct doc *d, const char *url)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	struct lk_store *st = NULL;
	struct lk_err err = {0};
	char msg[256], path[64];
	int64_t rtt[7];
	uint64_t fid;
	int r;

	o.flags |= LK_STORE_NOCREATE;
	r = lk_store_open_err(url, &o, &st, msg, sizeof(msg));
	if (r == -ENOENT) {
		/* reachable, but the store directory is missing: try creating it */
		o.flags &= ~LK_STORE_NOCREATE;
		r = lk_store_open_err(url, &o, &st, msg, sizeof(msg));
		if (r == 0)
			say(d, "store", V_NOTE, "the store directory did not exist; it was created");
	}
	if (r < 0) {
		say(d, "store", V_FAIL, "cannot use %s: %s", url, msg);
		return;
	}
	snprintf(path, sizeof(path), ".doctor-%ld-%08llx", (long)getpid(),
	         (unsigned long long)(lk__random64() & 0xffffffffu));
	r = st->be->write_new(st->bs, path, "doctor\n", 7, &fid, &err);
	if (r < 0) {
		say(d, "store", V_FAIL, "the server refused a new file in the store: %s (%s)",
		    err.msg[0] ? err.msg : "no detail", lk_strerror(r));
	} else {
		r = st->be->unlink(st->bs, path, &err);
		if (r < 0)
			say(d, "store", V_WARN, "could not remove the test file %s: %s", path,
			    err.msg[0] ? err.msg : lk_strerror(r));
		else
			say(d, "store", V_OK, "the server answers and the store is writable");
	}
	say(d, "filesystem", V_NOTE,
	    "nfs:// store (NFSv3 through libnfs, no client cache): locks here are lease mode");
	check_locks(d, st);
	/* Round trip: the cheapest question, a lookup of a name that does not exist. */
	for (size_t i = 0; i < sizeof(rtt) / sizeof(rtt[0]); i++) {
		int64_t t0 = now_ns();

		r = st->be->stat(st->bs, ".doctor-rtt", NULL, &err);
		rtt[i] = now_ns() - t0;
		if (r < 0 && r != -ENOENT) {
			say(d, "round-trip", V_WARN, "a lookup failed: %s", lk_strerror(r));
			lk_store_close(st);
			return;
		}
	}
	qsort(rtt, sizeof(rtt) / sizeof(rtt[0]), sizeof(rtt[0]), cmp_i64);
	say(d, "round-trip", rtt[3] > 100000000 ? V_WARN : V_OK,
	    "median %.2f ms, worst %.2f ms over %zu lookups%s", rtt[3] / 1e6, rtt[6] / 1e6,
	    sizeof(rtt) / sizeof(rtt[0]),
	    rtt[3] > 100000000 ? ": slow; keep TTLs well above a few round trips" : "");
	lk_store_close(st);
}

static void check_uring(struct doc *d)
{
	const char *eng = lk_engine_default();
	const char *no = getenv("LOCKKIT_NO_URING");
	char buf[16] = "";
	FILE *f;
	long r;

	if (!strcmp(eng, "io_uring")) {
		say(d, "io_uring", V_OK, "available: lease heartbeats run on an io_uring engine");
		return;
	}
	if (no && *no && strcmp(no, "0")) {
		say(d, "io_uring", V_NOTE,
		    "turned off by LOCKKIT_NO_URING=%s: heartbeats run on the thread engine", no);
		return;
	}
	f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	if (buf[0] && buf[0] != '0') {
		say(d, "io_uring", V_NOTE,
		    "disabled by the kernel (kernel.io_uring_disabled = %c): heartbeats run on the "
		    "thread engine, which is as safe and uses a little more CPU",
		    buf[0]);
		return;
	}
	errno = 0;
	r = syscall(__NR_io_uring_setup, 0, NULL);
	if (r < 0 && errno == ENOSYS) {
		say(d, "io_uring", V_NOTE,
		    "this kernel has no io_uring (or a seccomp filter hides it): heartbeats run "
		    "on the thread engine");
		return;
	}
	if (r < 0 && errno == EPERM) {
		say(d, "io_uring", V_NOTE,
		    "io_uring is not permitted for this process (EPERM): heartbeats run on the "
		    "thread engine");
		return;
	}
	say(d, "io_uring", V_NOTE,
	    "the kernel offers io_uring but this build of lockkit has no io_uring engine, or "
	    "the engine's probe failed: heartbeats run on the thread engine");
}

static void check_clocks(struct doc *d)
{
	struct timespec mono, boot;
	struct timex tx = { 0 };
	char src[64] = "unknown";
	FILE *f;
	int state;

	f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
	if (f) {
		if (fgets(src, sizeof(src), f))
			src[strcspn(src, "\n")] = 0;
		fclose(f);
	}
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	say(d, "clocks", V_OK,
	    "lease expiry is timed with CLOCK_BOOTTIME (clock source %s; %.0f s since boot, "
	    "of which %.0f s suspended); it never depends on the wall clock",
	    src, (double)boot.tv_sec,
	    (double)(boot.tv_sec - mono.tv_sec) + (boot.tv_nsec - mono.tv_nsec) / 1e9);
	state = adjtimex(&tx);
	if (state == TIME_ERROR || (tx.status & STA_UNSYNC))
		say(d, "clocks", V_NOTE,
		    "the wall clock is not synchronized (no NTP): times shown by status are this "
		    "host's own, and new kernel-mode lock files seed tokens from it");
	else
		say(d, "clocks", V_OK, "the wall clock is synchronized (estimated error %ld us)",
		    (long)tx.esterror);
}

int cmd_doctor(struct ctx *c, int argc, char **argv)
{
	struct lk__url_buf u;
	struct lk_err err = {0};
	struct doc d = { 0 };
	int r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			d.json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_doctor, stdout);
			return 0;
		} else
			die_usage("doctor: unexpected argument '%s'", argv[i]);
	}
	r = lk__url_parse(c->store, &u, &err);
	if (r < 0) {
		say(&d, "store", V_FAIL, "%s: %s", c->store, err.msg[0] ? err.msg : lk_strerror(r));
		return EXIT_UNAVAILABLE;
	}
	if (!d.json)
		printf("lockctl %s doctor: store %s%s\n", LK_VERSION_STRING, c->store,
		       c->store_is_default ? " (default)" : "");
	if (!strcmp(u.url.scheme, "nfs"))
		check_nfs_store(&d, c->store);
	else
		check_local_store(&d, u.url.path);
	check_uring(&d);
	check_clocks(&d);
	if (!d.json)
		printf("%s\n", d.failed ? "The store is NOT usable; see FAIL lines above."
		                        : "The store is usable.");
	return d.failed ? EXIT_UNAVAILABLE : 0;
}
