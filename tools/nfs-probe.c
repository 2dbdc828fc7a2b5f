// SPDX-License-Identifier: MIT
/*
 * nfs-probe: check, against a real server, the NFSv3 behaviour that the
 * nfs:// backend builds on, and print what was found.
 *
 * The backend's correctness rests on a handful of server and libnfs
 * properties that no local test can show: an exclusive create or a LINK onto
 * an existing name fails with EEXIST, RENAME replaces its target in one step,
 * a hard link shows the same file id under both names, a second client sees
 * a name changed by another one at once when the directory cache is off, and
 * nfs_set_timeout() really bounds a synchronous call when the server stops
 * answering. Each of these is checked here with fresh names in a scratch
 * directory, so the program can run against a shared export and be repeated.
 * Lines start with "ok", "FAIL" or "info"; info lines report behaviour that is
 * worth knowing but that the backend must not rely on, and never fail.
 *
 * The program is also the readiness check of tools/nfs-server.sh
 * (--mount-only): a listening port does not prove that the export is served.
 *
 * Every call runs with a timeout, so a dead server makes the probe fail
 * instead of hanging; the pause test stops the server with SIGSTOP and leaves
 * a child behind that sends SIGCONT even if this process dies mid-test.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* libnfs.h uses struct timeval without including <sys/time.h> itself. */
#include <nfsc/libnfs.h>

#define CALL_TIMEOUT_MS 10000
/* libnfs documents that timeouts only work in whole seconds. */
#define PAUSE_TIMEOUT_MS 2000
#define PAUSE_SAFETY_S   20
#define RENAME_ROUNDS    300

struct probe {
	const char *url;
	struct nfs_context *ctx; /* the main client, directory cache off */
	struct nfs_url *u;
	char dir[256]; /* scratch directory inside the export */
	int failures;
};

static void report(struct probe *p, const char *kind, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (!strcmp(kind, "FAIL"))
		p->failures++;
	printf("%-4s %s: ", kind, name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void check(struct probe *p, int ok, const char *name, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	report(p, ok ? "ok" : "FAIL", name, "%s", buf);
}

/* "-EEXIST" rather than "-17": the report is read by people. */
static const char *errname(int rc)
{
	static const struct {
		int e;
		const char *name;
	} names[] = {
		{EEXIST, "-EEXIST"},   {ENOENT, "-ENOENT"},       {EACCES, "-EACCES"},
		{EPERM, "-EPERM"},     {EINTR, "-EINTR"},         {ETIMEDOUT, "-ETIMEDOUT"},
		{EIO, "-EIO"},         {ESTALE, "-ESTALE"},       {EINVAL, "-EINVAL"},
		{ENOTSUP, "-ENOTSUP"}, {EAGAIN, "-EAGAIN"},       {ENOTCONN, "-ENOTCONN"},
		{EFAULT, "-EFAULT"},   {ENOMEM, "-ENOMEM"},       {ECONNREFUSED, "-ECONNREFUSED"},
		{EBADF, "-EBADF"},     {ENOTDIR, "-ENOTDIR"},     {EISDIR, "-EISDIR"},
		{ENOSPC, "-ENOSPC"},   {ENOTEMPTY, "-ENOTEMPTY"}, {ENXIO, "-ENXIO"},
	};
	/* A few buffers, so that one printf can show several codes. */
	static char bufs[4][16];
	static unsigned int next;
	char *buf = bufs[next++ % 4];

	for (size_t i = 0; rc < 0 && i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == -rc)
			return names[i].name;
	snprintf(buf, sizeof(bufs[0]), "%d", rc);
	return buf;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *path_in(struct probe *p, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", p->dir, name);
	return buf;
}

/* A context for URL; the caller mounts it. dircache < 0 keeps the default. */
static struct nfs_context *new_context(const char *url, int dircache, struct nfs_url **ret_url)
{
	struct nfs_context *ctx = nfs_init_context();
	struct nfs_url *u;

	if (!ctx)
		return NULL;
	u = nfs_parse_url_dir(ctx, url);
	if (!u) {
		fprintf(stderr, "nfs-probe: cannot parse '%s': %s\n", url, nfs_get_error(ctx));
		nfs_destroy_context(ctx);
		return NULL;
	}
	if (dircache >= 0)
		nfs_set_dircache(ctx, dircache);
	nfs_set_timeout(ctx, CALL_TIMEOUT_MS);
	*ret_url = u;
	return ctx;
}

static struct nfs_context *mounted_context(const char *url, int dircache)
{
	struct nfs_url *u;
	struct nfs_context *ctx = new_context(url, dircache, &u);
	int rc;

	if (!ctx)
		return NULL;
	rc = nfs_mount(ctx, u->server, u->path);
	if (rc < 0) {
		fprintf(stderr, "nfs-probe: mount %s:%s: %s (%s)\n", u->server, u->path,
		        errname(rc), nfs_get_error(ctx));
		nfs_destroy_url(u);
		nfs_destroy_context(ctx);
		return NULL;
	}
	nfs_destroy_url(u);
	return ctx;
}

/* Create or truncate PATH, write TEXT and commit it; returns 0 or -errno. */
static int put_file(struct nfs_context *ctx, const char *path, const char *text)
{
	struct nfsfh *fh;
	int rc = nfs_create(ctx, path, O_TRUNC, 0644, &fh);

	if (rc < 0)
		return rc;
	rc = nfs_pwrite(ctx, fh, 0, strlen(text), text);
	if (rc >= 0)
		rc = nfs_fsync(ctx, fh);
	nfs_close(ctx, fh);
	return rc < 0 ? rc : 0;
}

static int get_file(struct nfs_context *ctx, const char *path, char *buf, size_t len)
{
	struct nfsfh *fh;
	int rc = nfs_open(ctx, path, O_RDONLY, &fh);

	if (rc < 0)
		return rc;
	rc = nfs_pread(ctx, fh, 0, len - 1, buf);
	nfs_close(ctx, fh);
	if (rc < 0)
		return rc;
	buf[rc] = 0;
	return 0;
}

/* A TCP port on 127.0.0.1 with nothing listening: bound, then released. */
static int closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* The value of KEY in URL's query into BUF, or -ENOENT. */
static int query_value(const char *url, const char *key, char *buf, size_t len)
{
	const char *q = strchr(url, '?');
	size_t klen = strlen(key);

	while (q) {
		q++;
		if (!strncmp(q, key, klen) && q[klen] == '=') {
			size_t n = strcspn(q + klen + 1, "&");

			if (n >= len)
				return -ENAMETOOLONG;
			memcpy(buf, q + klen + 1, n);
			buf[n] = 0;
			return 0;
		}
		q = strchr(q, '&');
	}
	return -ENOENT;
}

/*
 * If libnfs ignored nfsport= or mountport= it would ask the portmapper,
 * which also knows the server, and the mount would still work: point each
 * one at a closed port in turn and require the mount (or first call) to fail.
 */
static void check_url_ports(struct probe *p)
{
	char nfsport[16], mountport[16];
	int port = closed_port();

	if (query_value(p->url, "nfsport", nfsport, sizeof(nfsport)) ||
	    query_value(p->url, "mountport", mountport, sizeof(mountport))) {
		report(p, "info", "url-ports", "URL has no nfsport= and mountport=: not checked");
		return;
	}
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "url-nfsport" : "url-mountport";
		char url[1024], bad[16];
		struct nfs_stat_64 st;
		struct nfs_context *ctx;
		struct nfs_url *u;
		int rc;

		snprintf(bad, sizeof(bad), "%d", port);
		snprintf(url, sizeof(url), "nfs://%s%s?version=3&nfsport=%s&mountport=%s",
		         p->u->server, p->u->path, i ? bad : nfsport, i ? mountport : bad);
		ctx = new_context(url, 0, &u);
		if (!ctx) {
			check(p, 0, name, "cannot parse %s", url);
			continue;
		}
		rc = nfs_mount(ctx, u->server, u->path);
		if (rc == 0)
			rc = nfs_stat64(ctx, "/", &st);
		check(p, rc < 0, name, "%s=<closed port> makes the client fail: %s (%s)",
		      i ? "nfsport" : "mountport", errname(rc),
		      rc < 0 ? nfs_get_error(ctx) : "it worked: the argument was ignored");
		nfs_destroy_url(u);
		nfs_destroy_context(ctx);
	}
}

static void check_excl_create(struct probe *p)
{
	char path[512];
	struct nfs_stat_64 st;
	struct nfsfh *fh;
	int rc;

	path_in(p, "excl", path, sizeof(path));
	rc = nfs_create(p->ctx, path, O_EXCL, 0640, &fh);
	check(p, rc == 0, "excl-create-new", "nfs_create(O_EXCL) of a new name: %s", errname(rc));
	if (rc < 0)
		return;
	rc = nfs_fstat64(p->ctx, fh, &st);
	nfs_close(p->ctx, fh);
	check(p, rc == 0 && (st.nfs_mode & 07777) == 0640, "excl-create-mode",
	      "fstat64 after exclusive create: %s, mode %04" PRIo64 " (asked 0640)", errname(rc),
	      rc == 0 ? st.nfs_mode & 07777 : 0);

	rc = nfs_create(p->ctx, path, O_EXCL, 0640, &fh);
	if (rc == 0)
		nfs_close(p->ctx, fh);
	check(p, rc == -EEXIST, "excl-create-existing",
	      "nfs_create(O_EXCL) of an existing name: %s (%s)", errname(rc),
	      rc < 0 ? nfs_get_error(p->ctx) : "created");

	/* nfs_open2() does not document O_EXCL: record what it does. */
	rc = nfs_open2(p->ctx, path, O_CREAT | O_EXCL | O_RDWR, 0640, &fh);
	if (rc == 0)
		nfs_close(p->ctx, fh);
	report(p, "info", "open2-excl-existing",
	       "nfs_open2(O_CREAT|O_EXCL) of an existing name: %s%s", errname(rc),
	       rc == 0 ? " (O_EXCL ignored: do not use nfs_open2 for claims)" : "");
}

static void check_link(struct probe *p)
{
	char src[512], dst[512], other[512];
	struct nfs_stat_64 ss, ds, fs;
	struct nfsfh *fh;
	int rc, rs, rd, rf;

	path_in(p, "link-src", src, sizeof(src));
	path_in(p, "link-dst", dst, sizeof(dst));
	path_in(p, "link-other", other, sizeof(other));
	if (put_file(p->ctx, src, "source") < 0 || put_file(p->ctx, other, "other") < 0) {
		check(p, 0, "link", "cannot create the files: %s", nfs_get_error(p->ctx));
		return;
	}
	rc = nfs_link(p->ctx, src, dst);
	check(p, rc == 0, "link-new", "nfs_link to a new name: %s", errname(rc));
	rc = nfs_link(p->ctx, src, dst);
	check(p, rc == -EEXIST, "link-existing-same", "nfs_link again to the same name: %s (%s)",
	      errname(rc), rc < 0 ? nfs_get_error(p->ctx) : "replaced");
	rc = nfs_link(p->ctx, other, dst);
	check(p, rc == -EEXIST, "link-existing-other",
	      "nfs_link of another file onto an existing name: %s (%s)", errname(rc),
	      rc < 0 ? nfs_get_error(p->ctx) : "replaced");

	rs = nfs_stat64(p->ctx, src, &ss);
	rd = nfs_stat64(p->ctx, dst, &ds);
	rf = nfs_open(p->ctx, dst, O_RDONLY, &fh);
	if (rf == 0) {
		rf = nfs_fstat64(p->ctx, fh, &fs);
		nfs_close(p->ctx, fh);
	}
	check(p, !rs && !rd && !rf && ss.nfs_ino == ds.nfs_ino && ds.nfs_ino == fs.nfs_ino,
	      "link-fileid",
	      "file id of source %" PRIu64 ", of target %" PRIu64 " (stat64), of target %" PRIu64
	      " (fstat64)",
	      rs ? 0 : ss.nfs_ino, rd ? 0 : ds.nfs_ino, rf ? 0 : fs.nfs_ino);
	check(p, !rs && ss.nfs_nlink == 2, "link-nlink", "link count of the source: %" PRIu64,
	      rs ? 0 : ss.nfs_nlink);
}

/* The observer of check_rename: stats TARGET until STOPFD becomes readable. */
static void rename_observer(const char *url, const char *target, int stopfd, int outfd)
{
	struct nfs_context *ctx = mounted_context(url, 0);
	unsigned long stats = 0, missing = 0, stale = 0, other = 0;
	int len, first_other = 0;
	char line[128];

	if (!ctx || write(outfd, "R", 1) != 1)
		_exit(1);
	for (;;) {
		struct pollfd pfd = {.fd = stopfd, .events = POLLIN};
		struct nfs_stat_64 st;
		int rc;

		if (poll(&pfd, 1, 0) != 0)
			break;
		rc = nfs_stat64(ctx, target, &st);
		stats++;
		if (rc == -ENOENT)
			missing++;
		else if (rc == -ESTALE)
			stale++;
		else if (rc < 0 && !other++)
			first_other = rc;
	}
	len = snprintf(line, sizeof(line), "%lu %lu %lu %lu %d\n", stats, missing, stale, other,
	               first_other);
	if (write(outfd, line, len) != len)
		_exit(1);
	nfs_destroy_context(ctx);
	_exit(0);
}

static void check_rename(struct probe *p)
{
	char target[512], tmp[512], buf[64];
	struct nfs_stat_64 st, tst;
	struct nfsfh *oldfh;
	unsigned long stats = 0, missing = 0, stale = 0, other = 0;
	int stop[2], out[2], rc, r2, status, rounds = 0, first_other = 0;
	pid_t child;

	path_in(p, "rename-target", target, sizeof(target));
	path_in(p, "rename-tmp", tmp, sizeof(tmp));
	if (put_file(p->ctx, target, "old") < 0 || put_file(p->ctx, tmp, "new") < 0 ||
	    nfs_stat64(p->ctx, tmp, &tst) < 0 || nfs_open(p->ctx, target, O_RDONLY, &oldfh) < 0) {
		check(p, 0, "rename", "cannot create the files: %s", nfs_get_error(p->ctx));
		return;
	}
	rc = nfs_rename(p->ctx, tmp, target);
	check(p, rc == 0, "rename-replace", "nfs_rename onto an existing name: %s", errname(rc));
	rc = get_file(p->ctx, target, buf, sizeof(buf));
	r2 = nfs_stat64(p->ctx, target, &st);
	check(p, !rc && !r2 && !strcmp(buf, "new") && st.nfs_ino == tst.nfs_ino, "rename-result",
	      "target now holds \"%s\", file id %" PRIu64 " (source had %" PRIu64 ")",
	      rc ? errname(rc) : buf, r2 ? 0 : st.nfs_ino, tst.nfs_ino);
	rc = nfs_stat64(p->ctx, tmp, &st);
	check(p, rc == -ENOENT, "rename-source-gone", "stat of the old source name: %s",
	      errname(rc));
	/*
	 * libnfs 4.0 turns any NFS error of READ or WRITE into -EFAULT and
	 * overwrites the error text with the raw reply, so print the codes only.
	 */
	rc = nfs_fstat64(p->ctx, oldfh, &st);
	r2 = nfs_pread(p->ctx, oldfh, 0, sizeof(buf) - 1, buf);
	if (r2 >= 0)
		buf[r2] = 0;
	report(p, "info", "rename-old-handle",
	       "through a handle opened on the replaced file: fstat64 %s, pread %s%s%s%s",
	       errname(rc), errname(r2), r2 >= 0 ? " bytes \"" : "", r2 >= 0 ? buf : "",
	       r2 >= 0 ? "\"" : "");
	rc = nfs_pwrite(p->ctx, oldfh, 0, 1, "x");
	report(p, "info", "rename-old-handle-write", "pwrite through that handle: %s", errname(rc));
	nfs_close(p->ctx, oldfh);

	/*
	 * Atomicity: another client stats the target all the time while it is
	 * replaced over and over; a rename done as unlink + link would show up
	 * as ENOENT. fork() before the observer touches libnfs: it makes its
	 * own context and never uses the parent's.
	 */
	if (pipe2(stop, O_CLOEXEC) < 0) {
		check(p, 0, "rename-atomic", "pipe: %s", strerror(errno));
		return;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		check(p, 0, "rename-atomic", "pipe: %s", strerror(errno));
		close(stop[0]);
		close(stop[1]);
		return;
	}
	fflush(stdout);
	child = fork();
	if (child < 0) {
		check(p, 0, "rename-atomic", "fork: %s", strerror(errno));
		close(stop[0]);
		close(stop[1]);
		close(out[0]);
		close(out[1]);
		return;
	}
	if (child == 0) {
		close(stop[1]);
		close(out[0]);
		rename_observer(p->url, target, stop[0], out[1]);
	}
	close(stop[0]);
	close(out[1]);
	/* The observer says "R" once it has mounted; EOF means it failed. */
	rc = read(out[0], buf, 1) == 1 ? 0 : -EIO;
	for (; rounds < RENAME_ROUNDS && rc == 0; rounds++) {
		rc = put_file(p->ctx, tmp, "next");
		if (rc == 0)
			rc = nfs_rename(p->ctx, tmp, target);
	}
	close(stop[1]);
	r2 = read(out[0], buf, sizeof(buf) - 1);
	close(out[0]);
	waitpid(child, &status, 0);
	if (r2 > 0) {
		buf[r2] = 0;
		sscanf(buf, "%lu %lu %lu %lu %d", &stats, &missing, &stale, &other, &first_other);
	}
	check(p, rc == 0 && r2 > 0 && stats > 0 && missing == 0 && other == 0, "rename-atomic",
	      "%d replacements (%s), %lu stats by another client: %lu ENOENT, %lu other errors%s%s",
	      rounds, errname(rc), stats, missing, other, other ? ", first " : "",
	      other ? errname(first_other) : "");
	/*
	 * A path stat is LOOKUP then GETATTR: a replacement in between leaves
	 * the client holding the handle of the file that was just removed.
	 */
	report(p, "info", "rename-race-estale",
	       "stats of the name that failed with -ESTALE while it was being replaced: %lu",
	       stale);
}

/* Whether a listing of DIR through CTX has NAME: 1, 0 or -errno. */
static int listed(struct nfs_context *ctx, const char *dir, const char *name)
{
	struct nfsdirent *e;
	struct nfsdir *d;
	int rc = nfs_opendir(ctx, dir, &d), found = 0;

	if (rc < 0)
		return rc;
	while ((e = nfs_readdir(ctx, d)))
		found |= !strcmp(e->name, name);
	nfs_closedir(ctx, d);
	return found;
}

/*
 * In libnfs 4.0 the directory cache only serves nfs_opendir(): a cached
 * listing is reused while the directory's mtime is unchanged, so a change
 * within the server's timestamp granularity can be missed. Lookups never use
 * it. The main context has the cache off and must see a new name at once;
 * what a context with the default cache sees is info.
 */
static void check_dircache(struct probe *p)
{
	struct nfs_context *cached = mounted_context(p->url, -1);
	char late[512];
	int rc, before, mine, theirs;

	report(p, "info", "dircache-api",
	       "nfs_set_dircache(ctx, 0) is declared and links (libnfs 4.0)");
	if (!cached) {
		check(p, 0, "dircache", "second client cannot mount");
		return;
	}
	path_in(p, "dc-late", late, sizeof(late));
	before = listed(cached, p->dir, "dc-late");
	if (before == 0)
		before = listed(p->ctx, p->dir, "dc-late");
	rc = put_file(p->ctx, late, "late");
	if (before != 0 || rc < 0) {
		check(p, 0, "dircache", "setup: listed %s, create %s", errname(before),
		      errname(rc));
		goto out;
	}
	mine = listed(p->ctx, p->dir, "dc-late");
	theirs = listed(cached, p->dir, "dc-late");
	check(p, mine == 1, "dircache-off-listing",
	      "a name created after a listing is in the next listing: %s",
	      mine == 1   ? "yes"
	      : mine == 0 ? "no"
	                  : errname(mine));
	report(p, "info", "dircache-on-listing",
	       "same with the default dircache (listed before, by another client): %s",
	       theirs == 1   ? "yes"
	       : theirs == 0 ? "no, STALE listing"
	                     : errname(theirs));
out:
	nfs_destroy_context(cached);
}

/* Both clients read what the other wrote, with no client-side caching. */
static void check_coherence(struct probe *p)
{
	struct nfs_context *other = mounted_context(p->url, 0);
	char path[512], buf[64];
	struct nfsfh *wfh = NULL, *rfh = NULL;
	int rc, ok = 1;

	if (!other) {
		check(p, 0, "coherence", "second client cannot mount");
		return;
	}
	path_in(p, "coherence", path, sizeof(path));
	rc = nfs_create(p->ctx, path, O_TRUNC, 0644, &wfh);
	if (rc == 0)
		rc = nfs_open(other, path, O_RDONLY, &rfh);
	for (int i = 0; rc == 0 && i < 3; i++) {
		char want[32];

		snprintf(want, sizeof(want), "value-%d", i);
		rc = nfs_pwrite(p->ctx, wfh, 0, strlen(want), want);
		if (rc >= 0)
			rc = nfs_pread(other, rfh, 0, strlen(want), buf);
		if (rc >= 0) {
			buf[rc] = 0;
			ok &= !strcmp(buf, want);
			rc = 0;
		}
	}
	check(p, rc == 0 && ok, "coherence",
	      "3 overwrites read back at once through another client's open handle: %s",
	      rc   ? errname(rc)
	      : ok ? "all current"
	           : "saw an old value");
	if (wfh)
		nfs_close(p->ctx, wfh);
	if (rfh)
		nfs_close(other, rfh);
	nfs_destroy_context(other);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void rtt(struct probe *p, int count)
{
	uint64_t *t = calloc(count, sizeof(*t));
	char path[512];
	struct nfs_stat_64 st;
	struct nfsfh *fh;
	int rc = 0;

	if (!t)
		return;
	path_in(p, "link-src", path, sizeof(path));
	for (int i = 0; i < count && !rc; i++) {
		uint64_t t0 = now_ns();

		rc = nfs_stat64(p->ctx, path, &st);
		t[i] = now_ns() - t0;
	}
	if (!rc) {
		qsort(t, count, sizeof(*t), cmp_u64);
		report(p, "info", "rtt-stat64-path",
		       "nfs_stat64(\"%s\") x%d: median %" PRIu64 " us, p99 %" PRIu64
		       " us, max %" PRIu64 " us",
		       path, count, t[count / 2] / 1000, t[count * 99 / 100] / 1000,
		       t[count - 1] / 1000);
	}
	rc = rc ? rc : nfs_open(p->ctx, path, O_RDONLY, &fh);
	if (!rc) {
		for (int i = 0; i < count && !rc; i++) {
			uint64_t t0 = now_ns();

			rc = nfs_fstat64(p->ctx, fh, &st);
			t[i] = now_ns() - t0;
		}
		nfs_close(p->ctx, fh);
	}
	if (!rc) {
		qsort(t, count, sizeof(*t), cmp_u64);
		report(p, "info", "rtt-fstat64",
		       "nfs_fstat64(handle) x%d (one GETATTR): median %" PRIu64 " us, p99 %" PRIu64
		       " us, max %" PRIu64 " us",
		       count, t[count / 2] / 1000, t[count * 99 / 100] / 1000, t[count - 1] / 1000);
	}
	check(p, rc == 0, "rtt-calls", "all timed calls succeeded: %s", errname(rc));
	free(t);
}

/* PID or a file holding it; refuses anything that is not ganesha. */
static pid_t server_pid(const char *arg)
{
	char path[64], comm[64] = "";
	FILE *f;
	long pid = 0;
	char *end;

	pid = strtol(arg, &end, 10);
	if (*end || pid <= 1) {
		f = fopen(arg, "re");
		if (!f || fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		if (f)
			fclose(f);
	}
	if (pid <= 1)
		return -1;
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "re");
	if (!f || !fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	if (f)
		fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	if (strncmp(comm, "ganesha", 7)) {
		fprintf(stderr, "nfs-probe: pid %ld is '%s', not a ganesha server\n", pid, comm);
		return -1;
	}
	return pid;
}

/*
 * kill() returns before a multi-threaded process has stopped: a thread busy
 * on another CPU may still answer a request. Wait until every thread shows
 * as stopped; 1 when they all do, 0 after about two seconds.
 */
static int all_threads_stopped(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	for (int tries = 0; tries < 2000; tries++) {
		DIR *d = opendir(path);
		struct dirent *e;
		int running = 0, seen = 0;

		if (!d)
			return 0;
		while ((e = readdir(d))) {
			char stat[sizeof(path) + 256 + 8], buf[512], *rp;
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(stat, sizeof(stat), "%s/%s/stat", path, e->d_name);
			f = fopen(stat, "re");
			if (!f)
				continue;
			/* "tid (comm) S ...": the state follows the last ')'. */
			if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) &&
			    rp[1] == ' ') {
				seen++;
				running += rp[2] != 'T' && rp[2] != 't';
			}
			fclose(f);
		}
		closedir(d);
		if (seen && !running)
			return 1;
		usleep(1000);
	}
	return 0;
}

static void check_pause(struct probe *p, pid_t server)
{
	char path[512];
	struct nfs_stat_64 st;
	uint64_t t0, ms;
	pid_t safety;
	int rc;

	path_in(p, "link-src", path, sizeof(path));
	/* Resumes the server even if this process is killed while it is stopped. */
	fflush(stdout);
	safety = fork();
	if (safety < 0) {
		check(p, 0, "timeout-paused", "fork: %s", strerror(errno));
		return;
	}
	if (safety == 0) {
		sleep(PAUSE_SAFETY_S);
		kill(server, SIGCONT);
		_exit(0);
	}
	nfs_set_timeout(p->ctx, PAUSE_TIMEOUT_MS);
	errno = 0;
	if (kill(server, SIGSTOP) < 0 || !all_threads_stopped(server)) {
		check(p, 0, "timeout-paused", "SIGSTOP %d: %s", (int)server,
		      errno ? strerror(errno) : "some threads still run");
		kill(server, SIGCONT);
	} else {
		t0 = now_ns();
		rc = nfs_stat64(p->ctx, path, &st);
		ms = (now_ns() - t0) / 1000000;
		kill(server, SIGCONT);
		/* Generous bounds: the point is "bounded", not how precisely. */
		check(p, rc < 0 && ms >= PAUSE_TIMEOUT_MS / 2 && ms < 15000, "timeout-paused",
		      "nfs_set_timeout(%d) with the server stopped: %s (%s) after %" PRIu64 " ms",
		      PAUSE_TIMEOUT_MS, errname(rc), rc < 0 ? nfs_get_error(p->ctx) : "answered",
		      ms);
	}
	kill(safety, SIGKILL);
	waitpid(safety, NULL, 0);

	nfs_set_timeout(p->ctx, CALL_TIMEOUT_MS);
	t0 = now_ns();
	rc = nfs_stat64(p->ctx, path, &st);
	ms = (now_ns() - t0) / 1000000;
	check(p, rc == 0, "timeout-recovers",
	      "same context after SIGCONT: stat %s (%s) after %" PRIu64 " ms", errname(rc),
	      rc < 0 ? nfs_get_error(p->ctx) : "answered", ms);
}

static void cleanup(struct probe *p)
{
	static const char *const names[] = {"excl",          "link-src",   "link-dst", "link-other",
	                                    "rename-target", "rename-tmp", "dc-late",  "coherence"};
	char path[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		nfs_unlink(p->ctx, path_in(p, names[i], path, sizeof(path)));
	if (nfs_rmdir(p->ctx, p->dir) < 0)
		fprintf(stderr, "nfs-probe: cannot remove %s: %s\n", p->dir, nfs_get_error(p->ctx));
}

static int usage(void)
{
	fprintf(stderr,
	        "usage: nfs-probe [--mount-only] [--pause-test PID|PIDFILE] [--rtt-count N] URL\n"
	        "  URL: nfs://HOST/EXPORT?version=3&nfsport=P&mountport=Q\n"
	        "  --pause-test stops the ganesha server PID with SIGSTOP for about %d s\n",
	        PAUSE_TIMEOUT_MS / 1000);
	return 64;
}

int main(int argc, char **argv)
{
	struct probe p = {0};
	const char *pause_arg = NULL;
	int mount_only = 0, count = 1000, rc;
	pid_t server = -1;
	uint64_t t0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mount-only"))
			mount_only = 1;
		else if (!strcmp(argv[i], "--pause-test") && i + 1 < argc)
			pause_arg = argv[++i];
		else if (!strcmp(argv[i], "--rtt-count") && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (argv[i][0] == '-' || p.url)
			return usage();
		else
			p.url = argv[i];
	}
	if (!p.url || count < 1)
		return usage();
	if (pause_arg) {
		server = server_pid(pause_arg);
		if (server < 0)
			return usage();
	}
	/*
	 * A broken pipe must not kill the probe while the server is stopped;
	 * libnfs writes to its socket with plain write().
	 */
	signal(SIGPIPE, SIG_IGN);

	p.ctx = new_context(p.url, 0, &p.u);
	if (!p.ctx)
		return 1;
	t0 = now_ns();
	rc = nfs_mount(p.ctx, p.u->server, p.u->path);
	if (rc < 0) {
		printf("FAIL mount: %s:%s %s (%s)\n", p.u->server, p.u->path, errname(rc),
		       nfs_get_error(p.ctx));
		return 1;
	}
	if (mount_only) {
		struct nfs_stat_64 st;

		rc = nfs_stat64(p.ctx, "/", &st);
		printf("%s mount: %s:%s, stat of the root: %s\n", rc ? "FAIL" : "ok", p.u->server,
		       p.u->path, rc ? nfs_get_error(p.ctx) : "ok");
		nfs_destroy_url(p.u);
		nfs_destroy_context(p.ctx);
		return rc ? 1 : 0;
	}
	report(&p, "ok", "mount", "server %s, export %s, mounted in %" PRIu64 " ms", p.u->server,
	       p.u->path, (now_ns() - t0) / 1000000);

	snprintf(p.dir, sizeof(p.dir), "/nfs-probe.%d.%ld", (int)getpid(), (long)time(NULL));
	rc = nfs_mkdir(p.ctx, p.dir);
	if (rc < 0) {
		check(&p, 0, "scratch-dir", "mkdir %s: %s (%s)", p.dir, errname(rc),
		      nfs_get_error(p.ctx));
		goto out;
	}
	check_url_ports(&p);
	check_excl_create(&p);
	check_link(&p);
	check_rename(&p);
	check_dircache(&p);
	check_coherence(&p);
	rtt(&p, count);
	if (server > 0)
		check_pause(&p, server);
	cleanup(&p);
out:
	printf("%s: %d failed\n", p.failures ? "FAILED" : "PASSED", p.failures);
	nfs_destroy_url(p.u);
	nfs_destroy_context(p.ctx);
	return p.failures ? 1 : 0;
}
