// SPDX-License-Identifier: MIT
/*
 * The nfs:// backend: lease mode on an NFS export through libnfs, a
 * userspace NFS client, so no kernel mount, no root and no NFS lock manager
 * are needed. The lease protocol (src/lease.c) is the same as on a local
 * directory; this file only supplies the namespace operations.
 *
 * What shapes it:
 *  - Expiry decisions must come from the server, never from a cache, so the
 *    libnfs directory cache is turned off and URL arguments that would turn
 *    caching on (dircache, pagecache, readahead) are refused.
 *  - Claims must stay correct when an RPC is retransmitted: libnfs sends
 *    O_EXCL as a GUARDED create, which has no verifier, so the protocol never
 *    relies on exclusive create alone; it links a fully written and COMMITted
 *    temp file and settles EEXIST by comparing file ids.
 *  - A libnfs context is not thread-safe. Each store has one context (one
 *    TCP connection, its own client identity) behind a mutex; every call uses
 *    the synchronous API with a per-call timeout (nfs_set_timeout), so a
 *    stalled server costs a caller at most that timeout. Lease renewals run
 *    on the heartbeat engine's worker thread, never on its timer thread, so
 *    a stalled server cannot delay a step-down (src/engine.c).
 *  - NFSv3 only: with libnfs 4.0, NFSv4 returned NFS4ERR_INVAL for locks and
 *    NFS4ERR_BAD_SEQID after a failed exclusive create on the test server;
 *    version=4 is refused with -EOPNOTSUPP until that is shown reliable.
 *  - The URL names SERVER/EXPORT/DIR but not where the export ends: the
 *    longest leading part of the path that the server agrees to mount is the
 *    export, and the rest is the store directory inside it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include <nfsc/libnfs.h>

#include "internal.h"

#define NFS_OP_TIMEOUT_MS 2000

struct nfs_store {
	struct lk_bstore base;
	pthread_mutex_t mu;
	struct nfs_context *ctx;
	char *server;
	char *export;
	char root[4096];   /* store directory inside the export: "" or "/a/b" */
	mode_t file_mode;
	int rdonly;
	atomic_ulong calls; /* libnfs calls made (each one or more RPCs) */
};

struct nfs_bfile {
	struct lk_bfile base;
	struct nfsfh *fh;
};

static const char *const allowed_args[] = { "version", "nfsport", "mountport", "uid", "gid",
					     "tcp-syncnt", "auto-traverse-mounts", NULL };
static const char *const cache_args[] = { "dircache", "pagecache", "readahead",
					   "pagecache_ttl", NULL };

static int in_list(const char *const *list, const char *key, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && !strncmp(*list, key, n))
			return 1;
	return 0;
}

static int check_args(const char *q, struct lk_err *err)
{
	while (q && *q) {
		const char *amp = strchr(q, '&');
		const char *eq = strchr(q, '=');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		size_t klen = eq && eq < q + n ? (size_t)(eq - q) : n;
		const char *val = eq && eq < q + n ? eq + 1 : "";

		if (in_list(cache_args, q, klen)) {
			lk__err_set(err,
				    "nfs URL argument '%.*s' would let the client cache what the server "
				    "says; lockkit decides expiry from the server only",
				    (int)klen, q);
			return -EINVAL;
		}
		if (!in_list(allowed_args, q, klen)) {
			lk__err_set(err, "unknown nfs URL argument '%.*s'", (int)klen, q);
			return -EINVAL;
		}
		if (klen == 7 && !strncmp(q, "version", 7)) {
			if (!strncmp(val, "4", 1) && (size_t)(val - q) + 1 == n) {
				lk__err_set(err, "NFSv4 through libnfs is not reliable enough for "
						 "leases yet; use version=3");
				return -EOPNOTSUPP;
			}
			if (!(!strncmp(val, "3", 1) && (size_t)(val - q) + 1 == n)) {
				lk__err_set(err, "nfs URL: version must be 3");
				return -EINVAL;
			}
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

static int full_path(struct nfs_store *ns, const char *path, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", ns->root, path);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Calls into libnfs: one thread at a time, counted for the benchmark. */
#define CALL_BEGIN(ns) pthread_mutex_lock(&(ns)->mu)
#define CALL_END(ns) pthread_mutex_unlock(&(ns)->mu)
#define COUNT(ns) atomic_fetch_add(&(ns)->calls, 1)

static struct nfs_context *new_context(const char *url, struct nfs_url **ret_url)
{
	struct nfs_context *ctx = nfs_init_context();

	if (!ctx)
		return NULL;
	*ret_url = nfs_parse_url_dir(ctx, url);
	if (!*ret_url) {
		nfs_destroy_context(ctx);
		return NULL;
	}
	nfs_set_dircache(ctx, 0);
	nfs_set_timeout(ctx, NFS_OP_TIMEOUT_MS);
	return ctx;
}

static int mkdir_p(struct nfs_store *ns, struct lk_err *err)
{
	char buf[4096];
	size_t n = strlen(ns->root);

	memcpy(buf, ns->root, n + 1);
	for (size_t i = 1; i <= n; i++) {
		struct nfs_stat_64 st;

		if (buf[i] != '/' && buf[i] != 0)
			continue;
		buf[i] = 0;
		if (nfs_stat64(ns->ctx, buf, &st) < 0) {
			int r = nfs_mkdir2(ns->ctx, buf, 0700);

			if (r < 0 && r != -EEXIST) {
				lk__err_set(err, "cannot create store directory %s on %s: %s", buf,
					    ns->server, nfs_get_error(ns->ctx));
				return r;
			}
		}
		buf[i] = ns->root[i];
	}
	return 0;
}

static void nfs_store_close(struct lk_bstore *bs);

static int nfs_store_open(const struct lk_url *url, const struct lk_store_opts *opts,
			  struct lk_bstore **ret, struct lk_err *err)
{
	struct nfs_store *ns;
	struct nfs_url *u = NULL;
	struct nfs_stat_64 st;
	char *path = NULL;
	int r;

	r = check_args(url->query, err);
	if (r < 0)
		return r;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->base.be = &lk__nfs_backend;
	pthread_mutex_init(&ns->mu, NULL);
	ns->file_mode = opts->file_mode;
	ns->rdonly = !!(opts->flags & LK_STORE_RDONLY);

	ns->ctx = new_context(url->path, &u);
	if (!ns->ctx) {
		lk__err_set(err, "cannot parse nfs URL '%s'", url->path);
		r = -EINVAL;
		goto fail;
	}
	ns->server = strdup(u->server);
	path = strdup(u->path ? u->path : "/");
	if (!ns->server || !path) {
		r = -ENOMEM;
		goto fail;
	}
	/* The longest leading part of the path that mounts is the export. */
	for (;;) {
		char *slash;

		r = nfs_mount(ns->ctx, ns->server, path[0] ? path : "/");
		if (r == 0)
			break;
		nfs_destroy_url(u);
		u = NULL;
		nfs_destroy_context(ns->ctx);
		ns->ctx = NULL;
		slash = strrchr(path, '/');
		if (!slash || slash == path) {
			lk__err_set(err, "cannot mount any part of %s from %s", url->path,
				    ns->server);
			/* libnfs often says only -1: call it unreachable */
			r = r == -EACCES ? r : -EHOSTUNREACH;
			goto fail;
		}
		*slash = 0;
		ns->ctx = new_context(url->path, &u);
		if (!ns->ctx) {
			r = -ENOMEM;
			goto fail;
		}
	}
	ns->export = strdup(path);
	{
		const char *full = u->path ? u->path : "";
		size_t el = strlen(path);

		snprintf(ns->root, sizeof(ns->root), "%s", full + el);
		/* strip a trailing slash */
		el = strlen(ns->root);
		if (el && ns->root[el - 1] == '/')
			ns->root[el - 1] = 0;
	}
	nfs_destroy_url(u);
	u = NULL;
	free(path);
	path = NULL;

	if (ns->root[0] && nfs_stat64(ns->ctx, ns->root, &st) < 0) {
		if (opts->flags & (LK_STORE_NOCREATE | LK_STORE_RDONLY)) {
			lk__err_set(err, "store %s does not exist on %s:%s", ns->root, ns->server,
				    ns->export);
			r = -ENOENT;
			goto fail;
		}
		r = mkdir_p(ns, err);
		if (r < 0)
			goto fail;
	} else if (ns->root[0] && !S_ISDIR(st.nfs_mode)) {
		lk__err_set(err, "store %s on %s is not a directory", ns->root, ns->server);
		r = -ENOTDIR;
		goto fail;
	}
	*ret = &ns->base;
	return 0;
fail:
	if (u)
		nfs_destroy_url(u);
	free(path);
	nfs_store_close(&ns->base);
	return r;
}

static void nfs_store_close(struct lk_bstore *bs)
{
	struct nfs_store *ns = (struct nfs_store *)bs;

	if (!ns)
		return;
	if (ns->ctx)
		nfs_destroy_context(ns->ctx);
	pthread_mutex_destroy(&ns->mu);
	free(ns->server);
	free(ns->export);
	free(ns);
}

/*
 * libnfs 4.0 reports a timed-out call as -EINTR and any NFS error on a READ
 * or WRITE as -EFAULT (with an unreadable error text); in lockkit's
 * vocabulary both are I/O errors. -ESTALE (a name replaced under a path
 * lookup by another client) must not reach the core, where it means "lease
 * superseded": callers retry it, and what remains is an I/O error too.
 */
static int map_err(int r)
{
	/* -EAGAIN is NFS3ERR_JUKEBOX ("busy, try later"), retried by callers;
	 * left as it is it would read as "held by another owner" */
	if (r == -EINTR || r == -EFAULT || r == -ESTALE || r == -EAGAIN)
		return -EIO;
	return r;
}

/* NFS3ERR_JUKEBOX: the server asks to be asked again a little later. */
static void jukebox_pause(int attempt)
{
	struct timespec ts = { 0, 5000000L * (attempt + 1) };

	nanosleep(&ts, NULL);
}

static int fail_with(struct nfs_store *ns, int r, struct lk_err *err, const char *what,
		     const char *path)
{
	if (r < 0 && err && r != -ENOENT && r != -EEXIST) {
		const char *why = r == -EINTR ? "the server did not answer in time"
				  : r == -EFAULT ? "the server refused the request"
						 : nfs_get_error(ns->ctx);

		lk__err_set(err, "%s %s on %s: %s", what, path, ns->server,
			    why ? why : strerror(-r));
	}
	return map_err(r);
}

#define RETRY_STALE(expr)                                                                    \
	({                                                                                   \
		int r_ = (expr);                                                             \
		for (int t_ = 0; (r_ == -ESTALE || r_ == -EAGAIN) && t_ < 10; t_++) {        \
			if (r_ == -EAGAIN)                                                   \
				jukebox_pause(t_);                                           \
			r_ = (expr);                                                         \
		}                                                                            \
		r_;                                                                          \
	})

static int nfs_list(struct lk_bstore *bs, lk_list_fn fn, void *userdata, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfsdir *d;
	struct nfsdirent *de;
	int r;

	CALL_BEGIN(ns);
	COUNT(ns);
	r = nfs_opendir(ns->ctx, ns->root[0] ? ns->root : "/", &d);
	if (r < 0) {
		fail_with(ns, r, err, "cannot list", ns->root);
		CALL_END(ns);
		return r;
	}
	CALL_END(ns);
	/* nfs_readdir() does not talk to the server: the listing is in d */
	while ((de = nfs_readdir(ns->ctx, d))) {
		if (lk_name_valid(de->name) < 0)
			continue;
		if (!S_ISREG(de->mode) && !S_ISDIR(de->mode))
			continue;
		r = fn(de->name, userdata);
		if (r)
			break;
	}
	nfs_closedir(ns->ctx, d);
	return r;
}

static int nfs_entry(struct lk_bstore *bs, const char *name, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_stat_64 st;
	char p[4096 + 300];
	int r = full_path(ns, name, p, sizeof(p));

	if (r < 0)
		return r;
	CALL_BEGIN(ns);
	COUNT(ns);
	r = RETRY_STALE(nfs_lstat64(ns->ctx, p, &st));
	if (r < 0 && r != -ENOENT)
		r = fail_with(ns, r, err, "cannot stat", p);
	CALL_END(ns);
	if (r == -ENOENT)
		return LK_ENTRY_NONE;
	if (r < 0)
		return r;
	if (S_ISDIR(st.nfs_mode))
		return LK_ENTRY_LEASE;
	if (S_ISREG(st.nfs_mode))
		return LK_ENTRY_KERNEL;
	lk__err_set(err, "lock %s is neither a regular file nor a directory", name);
	return -EINVAL;
}

static int nfs_is_network(struct lk_bstore *bs)
{
	(void)bs;
	return 1;
}

/* One path argument, one libnfs call. */
#define SIMPLE_OP(fname, call, what)                                                         \
	static int fname(struct lk_bstore *bs, const char *path, struct lk_err *err)         \
	{                                                                                    \
		struct nfs_store *ns = (struct nfs_store *)bs;                               \
		char p[4096 + 300];                                                          \
		int r = full_path(ns, path, p, sizeof(p));                                   \
                                                                                             \
		if (r < 0)                                                                   \
			return r;                                                            \
		CALL_BEGIN(ns);                                                              \
		COUNT(ns);                                                                   \
		r = RETRY_STALE(call);                                                       \
		r = fail_with(ns, r, err, what, p);                                          \
		CALL_END(ns);                                                                \
		return r;                                                                    \
	}

SIMPLE_OP(nfsb_mkdir, nfs_mkdir2(ns->ctx, p, (ns->file_mode & 0070) ? 0770 : 0700),
	  "cannot create directory")
SIMPLE_OP(nfsb_rmdir, nfs_rmdir(ns->ctx, p), "cannot remove directory")
SIMPLE_OP(nfsb_unlink, nfs_unlink(ns->ctx, p), "cannot remove")

static int nfsb_two(struct lk_bstore *bs, const char *from, const char *to, int link,
		    struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	char a[4096 + 300], b[4096 + 300];
	int r;

	if (full_path(ns, from, a, sizeof(a)) < 0 || full_path(ns, to, b, sizeof(b)) < 0)
		return -ENAMETOOLONG;
	CALL_BEGIN(ns);
	COUNT(ns);
	r = link ? RETRY_STALE(nfs_link(ns->ctx, a, b)) : RETRY_STALE(nfs_rename(ns->ctx, a, b));
	if (r == -ENOTEMPTY)
		r = -EEXIST;
	r = fail_with(ns, r, err, link ? "cannot link" : "cannot rename", a);
	CALL_END(ns);
	return r;
}

static int nfsb_link(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err)
{
	return nfsb_two(bs, from, to, 1, err);
}

static int nfsb_rename(struct lk_bstore *bs, const char *from, const char *to,
		       struct lk_err *err)
{
	return nfsb_two(bs, from, to, 0, err);
}

static int nfsb_write_new(struct lk_bstore *bs, const char *path, const void *buf, size_t len,
			  uint64_t *ret_fileid, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_stat_64 st;
	struct nfsfh *fh = NULL;
	char p[4096 + 300];
	int r = full_path(ns, path, p, sizeof(p));

	if (r < 0)
		return r;
	CALL_BEGIN(ns);
	COUNT(ns);
	r = RETRY_STALE(nfs_create(ns->ctx, p, O_WRONLY | O_CREAT | O_EXCL, (int)ns->file_mode, &fh));
	if (r < 0) {
		r = fail_with(ns, r, err, "cannot create", p);
		goto out;
	}
	COUNT(ns);
	r = nfs_pwrite(ns->ctx, fh, 0, len, buf);
	if (r >= 0 && (size_t)r != len)
		r = -EIO;
	if (r >= 0) {
		/* stable on the server before anyone may rely on it */
		COUNT(ns);
		r = nfs_fsync(ns->ctx, fh);
	}
	if (r >= 0) {
		COUNT(ns);
		r = nfs_fstat64(ns->ctx, fh, &st);
		if (r == 0)
			*ret_fileid = st.nfs_ino;
	}
	nfs_close(ns->ctx, fh);
	if (r < 0) {
		r = fail_with(ns, r, err, "cannot write", p);
		nfs_unlink(ns->ctx, p);
	}
out:
	CALL_END(ns);
	return r < 0 ? r : 0;
}

static int nfsb_read(struct lk_bstore *bs, const char *path, void *buf, size_t len,
		     uint64_t *ret_fileid, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_stat_64 st;
	struct nfsfh *fh = NULL;
	char p[4096 + 300];
	int r = full_path(ns, path, p, sizeof(p));

	if (r < 0)
		return r;
	CALL_BEGIN(ns);
	/* Open, then ask the open file: the id and the bytes then belong to the
	 * same file even if another client replaces the name meanwhile. */
	for (int attempt = 0; attempt < 3; attempt++) {
		COUNT(ns);
		r = nfs_open(ns->ctx, p, O_RDONLY, &fh);
		if (r < 0)
			break;
		COUNT(ns);
		r = nfs_fstat64(ns->ctx, fh, &st);
		if (r == 0 && !S_ISREG(st.nfs_mode)) {
			lk__err_set(err, "%s is not a regular file", path);
			r = -EBADMSG;
		} else if (r == 0) {
			COUNT(ns);
			r = nfs_pread(ns->ctx, fh, 0, len, buf);
			if (r >= 0 && ret_fileid)
				*ret_fileid = st.nfs_ino;
		}
		nfs_close(ns->ctx, fh);
		if (r == -EAGAIN)
			jukebox_pause(attempt);
		else if (r != -ESTALE && r != -EFAULT)
			break;
	}
	if (r == -EISDIR)
		r = -EBADMSG;
	if (r < 0 && r != -EBADMSG)
		r = fail_with(ns, r, err, "cannot read", p);
	CALL_END(ns);
	return r;
}

static int nfsb_stat(struct lk_bstore *bs, const char *path, uint64_t *ret_fileid,
		     struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_stat_64 st;
	char p[4096 + 300];
	int r = full_path(ns, path, p, sizeof(p));

	if (r < 0)
		return r;
	CALL_BEGIN(ns);
	COUNT(ns);
	r = RETRY_STALE(nfs_lstat64(ns->ctx, p, &st));
	if (r == 0 && ret_fileid)
		*ret_fileid = st.nfs_ino;
	r = fail_with(ns, r, err, "cannot stat", p);
	CALL_END(ns);
	return r;
}

static int nfsb_readdir(struct lk_bstore *bs, const char *path, lk_list_fn fn, void *userdata,
			struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfsdir *d;
	struct nfsdirent *de;
	char p[4096 + 300];
	int r = full_path(ns, path, p, sizeof(p));

	if (r < 0)
		return r;
	CALL_BEGIN(ns);
	COUNT(ns);
	r = RETRY_STALE(nfs_opendir(ns->ctx, p, &d));
	if (r < 0)
		r = fail_with(ns, r, err, "cannot list", p);
	CALL_END(ns);
	if (r < 0)
		return r;
	while ((de = nfs_readdir(ns->ctx, d))) {
		if (!strcmp(de->name, ".") || !strcmp(de->name, ".."))
			continue;
		r = fn(de->name, userdata);
		if (r)
			break;
	}
	nfs_closedir(ns->ctx, d);
	return r;
}

static int nfsb_open_record(struct lk_bstore *bs, const char *dir, const char *name,
			    struct lk_bfile **ret, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_bfile *f;
	char p[4096 + 600];
	int r;

	if (snprintf(p, sizeof(p), "%s/%s/%s", ns->root, dir, name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->base.bs = bs;
	f->base.fd = -1;
	f->base.dirfd = -1;
	CALL_BEGIN(ns);
	COUNT(ns);
	/* O_SYNC: FILE_SYNC writes. An UNSTABLE renewal could be lost by a
	 * server crash and roll the record back to a state an observer has
	 * already timed. */
	r = RETRY_STALE(nfs_open(ns->ctx, p, O_RDWR | O_SYNC, &f->fh));
	if (r < 0)
		r = fail_with(ns, r, err, "cannot open record", p);
	CALL_END(ns);
	if (r < 0) {
		free(f);
		return r;
	}
	*ret = &f->base;
	return 0;
}

static int nfsb_write_record(struct lk_bfile *bf, const void *buf, size_t len, struct lk_err *err)
{
	struct nfs_bfile *f = (struct nfs_bfile *)bf;
	struct nfs_store *ns = (struct nfs_store *)bf->bs;
	int r;

	CALL_BEGIN(ns);
	COUNT(ns);
	r = nfs_pwrite(ns->ctx, f->fh, 0, len, buf);
	if (r >= 0 && (size_t)r != len)
		r = -EIO;
	if (r < 0)
		r = fail_with(ns, r, err, "cannot write record on", ns->server);
	CALL_END(ns);
	return r < 0 ? r : 0;
}

static void nfsb_close_record(struct lk_bfile *bf)
{
	struct nfs_bfile *f = (struct nfs_bfile *)bf;
	struct nfs_store *ns;

	if (!f)
		return;
	ns = (struct nfs_store *)bf->bs;
	CALL_BEGIN(ns);
	nfs_close(ns->ctx, f->fh);
	CALL_END(ns);
	free(f);
}

uint64_t lk__nfs_calls(struct lk_bstore *bs)
{
	return atomic_load(&((struct nfs_store *)bs)->calls);
}

/*
 * RPC requests sent on the store's connection so far. libnfs keeps no count,
 * but each request of ours is small enough to leave in one TCP data segment,
 * so the kernel's count of data segments sent is the count of requests
 * (plus any retransmissions, which are requests sent again all the same).
 */
int64_t lk__nfs_rpcs(struct lk_bstore *bs)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd, r;

	CALL_BEGIN(ns);
	fd = nfs_get_fd(ns->ctx);
	r = fd >= 0 ? getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) : -1;
	CALL_END(ns);
	if (r < 0 || len < offsetof(struct tcp_info, tcpi_data_segs_out) + sizeof(ti.tcpi_data_segs_out))
		return -EOPNOTSUPP;
	return (int64_t)ti.tcpi_data_segs_out;
}

const struct lk_backend lk__nfs_backend = {
	.version = LK_BACKEND_VERSION,
	.name = "nfs",
	.scheme = "nfs",
	.caps = LK_CAP_LEASE,
	.store_open = nfs_store_open,
	.store_close = nfs_store_close,
	.list = nfs_list,
	.entry = nfs_entry,
	.is_network = nfs_is_network,
	.mkdir = nfsb_mkdir,
	.rmdir = nfsb_rmdir,
	.write_new = nfsb_write_new,
	.link = nfsb_link,
	.rename = nfsb_rename,
	.unlink = nfsb_unlink,
	.read = nfsb_read,
	.stat = nfsb_stat,
	.readdir = nfsb_readdir,
	.open_record = nfsb_open_record,
	.write_record = nfsb_write_record,
	.close_record = nfsb_close_record,
	.watch = NULL,
};
