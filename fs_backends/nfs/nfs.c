// SPDX-License-Identifier: MIT
/*
 * The nfs:// backend: lease mode on an NFS export through libnfs, a
 * userspace NFS client, so no kernel mount, no root and no NFS lock manager
 * are needed. The lease protocol (src/lease.c) is the same as on a local
 * directory; this file only supplies the namespace operations.
 *
 * What shapes it:
 *  - Expiry decisions must come from the server, never from a cache, so
 *    nothing here answers a question about a record's content or a name's
 *    absence without asking the server, and URL arguments that would turn
 *    libnfs's caches on (dircache, pagecache, readahead) are refused.
 *  - Requests are counted, and every one costs a round trip, so the backend
 *    speaks NFSv3 itself through libnfs's raw RPC layer instead of its
 *    path-based calls (which LOOKUP every component of every path, and
 *    COMMIT on close). It keeps file handles: the store directory's, each
 *    lock directory's and the records' it has seen. A read by a kept handle
 *    is trusted only when the reply's attributes show the file still linked
 *    and its ctime unchanged since the name was last seen to lead to it
 *    (a link or unlink changes the ctime); otherwise the name is looked up
 *    again. Writes are FILE_SYNC, so a record is stable when the reply
 *    comes and no COMMIT is needed. A handle the server calls stale (it
 *    restarted with other handles, or a directory was replaced) is dropped,
 *    the path looked up again, and the request tried once more.
 *  - Claims must stay correct when an RPC is retransmitted: a GUARDED
 *    create has no verifier, so the protocol never relies on exclusive
 *    create alone; it links a fully written (FILE_SYNC) temp file and
 *    settles EEXIST by comparing file ids.
 *  - A libnfs context is not thread-safe and checks its timeouts only when
 *    it is serviced. Each store has one context (one TCP connection, its own
 *    client identity); the thread that holds the store's mutex owns it and
 *    services it. Requests are sent asynchronously and every request has a
 *    deadline of its own (NFS_OP_TIMEOUT_MS) that this file enforces while
 *    it services the context; a request past it is abandoned (its reply, if
 *    one ever comes, is dropped). Once one is, and the server has said
 *    nothing since, blocking calls wait much less (given_up()). libnfs
 *    reconnects after the server restarts and may change its descriptor
 *    when it does, so the descriptor is read again before every poll.
 *  - Lease renewals never make the heartbeat engine's timer wait. The
 *    engine queues a renewal (renew_start: a FILE_SYNC WRITE by the record's
 *    handle and a LOOKUP of the next generation in the lock directory's
 *    handle) without touching the context, and only ever *tries* the
 *    store's mutex to service it (service); when a blocking call holds the
 *    mutex, that call sends the queued renewal at once (an eventfd wakes its
 *    poll) and services its replies with its own. Completions go to the
 *    engine under the engine's mutex, which no thread holds while waiting
 *    for the store's. docs/protocol.md (section 19) has the whole design.
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
#include <poll.h>
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
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

#include "internal.h"
#include "lrecord.h"

/*
 * libnfs 4.0 exports the mounted directory's handle but declares neither
 * the function nor the structure in its public headers; both have been
 * stable since libnfs 1.x.
 */
struct nfs_fh {
	int len;
	char *val;
};
const struct nfs_fh *nfs_get_rootfh(struct nfs_context *nfs);

#define NFS_OP_TIMEOUT_MS 2000
/* A blocking call's wait once the server is presumed unreachable */
#define NFS_SILENT_TIMEOUT_MS 300
#define JUKEBOX_TRIES 10
#define NFS_MAX_IO 32768 /* one READ or WRITE: records are far smaller */
#define CACHE_BUCKETS 256
#define CACHE_MAX 4096
#define PATH_BUF (4096 + 2 * LK_NAME_MAX + 64)

struct fh {
	uint32_t len;
	char data[NFS3_FHSIZE];
};

/* A name the store has seen lead to a handle (store-relative path). */
struct cent {
	struct cent *next;
	int isdir;
	struct fh fh;
	uint64_t fileid;
	int have_ctime;
	struct nfstime3 ctime; /* when the name was last seen to lead here */
	char name[];
};

struct arenew;

struct nfs_store {
	struct lk_bstore base;
	pthread_mutex_t mu; /* owns ctx: whoever holds it services it */
	/* renewals queued by the engine, sent by whoever services next */
	pthread_mutex_t qmu;
	struct arenew *queue, **qtail;
	int kick_fd;              /* eventfd: a renewal was queued */
	struct arenew *inflight;  /* under mu */
	atomic_int last_fd;       /* the connection's descriptor, last seen */
	/* under mu: when a reply last came, and the send time of the oldest
	 * request given up on since (0: none) */
	int64_t heard_ns;
	int64_t silent_from_ns;
	struct nfs_context *ctx;
	struct rpc_context *rpc;
	char *server;
	char *export;
	char root[4096]; /* store directory inside the export: "" or "/a/b" */
	struct fh mnt_fh;  /* the mounted directory */
	struct fh root_fh; /* the store directory */
	int root_ok;
	mode_t file_mode;
	int rdonly;
	struct cent *cache[CACHE_BUCKETS];
	int ncache;
	atomic_ulong calls; /* RPC requests sent */
};

struct nfs_bfile {
	struct lk_bfile base;
	struct fh fh;
	struct fh dirfh; /* its lock directory, for the renewals' probes */
	char dir[LK_NAME_MAX + 1];
	char name[LK_NAME_MAX + 1]; /* for error messages */
};

/* A renewal the engine asked for: a FILE_SYNC write and a LOOKUP. */
struct arenew {
	struct arenew *next;
	struct fh file, dir;
	char leaf[LK_NAME_MAX + 1];
	uint8_t buf[LK_LREC_SIZE];
	size_t len;
	int64_t deadline;
	lk_renew_done_fn done;
	void *arg;
	struct req *w, *p;
	int wrep, prep; /* reported */
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
		if (klen != 7 || strncmp(q, "version", 7)) {
			/* numbers: ports, ids, counts, a 0/1 switch; libnfs itself
			 * would read "20491/x" as 20491 and go on */
			size_t vlen = n - (size_t)(val - q), i;
			unsigned long v = 0;

			for (i = 0; i < vlen && val[i] >= '0' && val[i] <= '9' && v <= 0xffffffffUL; i++)
				v = v * 10 + (unsigned long)(val[i] - '0');
			if (!vlen || i != vlen || v > 0xffffffffUL ||
			    ((!strncmp(q, "nfsport", klen) || !strncmp(q, "mountport", klen)) &&
			     (v == 0 || v > 65535)) ||
			    (!strncmp(q, "auto-traverse-mounts", klen) && v > 1)) {
				lk__err_set(err, "nfs URL argument '%.*s' needs a number in range, not '%.*s'",
				            (int)klen, q, (int)vlen, val);
				return -EINVAL;
			}
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* The argument check store_open applies first, for the URL fuzz target. */
int lk__nfs_check_args(const char *query, struct lk_err *err)
{
	return check_args(query, err);
}


/* ------------------------------------------------------------------------
 * Requests: sent asynchronously, serviced by the caller until done or past
 * the deadline
 */

enum op {
	OP_LOOKUP,
	OP_GETATTR,
	OP_READ,
	OP_WRITE,
	OP_CREATE,
	OP_MKDIR,
	OP_REMOVE,
	OP_RMDIR,
	OP_LINK,
	OP_RENAME,
	OP_READDIRPLUS,
};

struct dent {
	struct dent *next;
	uint64_t cookie;
	int have_attr, have_fh;
	struct fattr3 attr;
	struct fh fh;
	char name[];
};

struct req {
	struct nfs_store *ns;
	int64_t sent_ns;
	enum op op;
	int done;
	int abandoned; /* the caller gave up: the callback frees it */
	int status;    /* RPC_STATUS_* */
	int nfsstat;
	int have_fh, have_attr;
	struct fh fh;
	struct fattr3 attr;
	uint32_t count;
	int committed, eof;
	uint8_t *data; /* READ: room for datacap bytes */
	uint32_t datalen, datacap;
	cookieverf3 verf;
	struct dent *ents, **etail;
	int nomem;
};

static int64_t now_ns(void)
{
	return lk__boottime_ns();
}

static void fh_from3(struct fh *d, const struct nfs_fh3 *s)
{
	d->len = s->data.data_len <= NFS3_FHSIZE ? s->data.data_len : 0;
	memcpy(d->data, s->data.data_val, d->len);
}

static struct nfs_fh3 fh_to3(const struct fh *s)
{
	struct nfs_fh3 d;

	d.data.data_len = s->len;
	d.data.data_val = (char *)s->data;
	return d;
}

static void take_attr(struct req *rq, const struct post_op_attr *a)
{
	if (a->attributes_follow) {
		rq->attr = a->post_op_attr_u.attributes;
		rq->have_attr = 1;
	}
}

static void dents_free(struct dent *d)
{
	while (d) {
		struct dent *n = d->next;

		free(d);
		d = n;
	}
}

static void req_free(struct req *rq)
{
	if (!rq)
		return;
	dents_free(rq->ents);
	free(rq->data);
	free(rq);
}

/* Copy what the caller needs out of the reply, which libnfs frees after. */
static void decode(struct req *rq, void *data)
{
	rq->nfsstat = *(nfsstat3 *)data;
	switch (rq->op) {
	case OP_LOOKUP: {
		LOOKUP3res *r = data;

		if (r->status == NFS3_OK) {
			fh_from3(&rq->fh, &r->LOOKUP3res_u.resok.object);
			rq->have_fh = 1;
			take_attr(rq, &r->LOOKUP3res_u.resok.obj_attributes);
		}
		break;
	}
	case OP_GETATTR: {
		GETATTR3res *r = data;

		if (r->status == NFS3_OK) {
			rq->attr = r->GETATTR3res_u.resok.obj_attributes;
			rq->have_attr = 1;
		}
		break;
	}
	case OP_READ: {
		READ3res *r = data;

		if (r->status == NFS3_OK) {
			READ3resok *ok = &r->READ3res_u.resok;

			take_attr(rq, &ok->file_attributes);
			rq->datalen = ok->data.data_len < rq->datacap ? ok->data.data_len
								      : rq->datacap;
			memcpy(rq->data, ok->data.data_val, rq->datalen);
			rq->eof = (int)ok->eof;
		}
		break;
	}
	case OP_WRITE: {
		WRITE3res *r = data;

		if (r->status == NFS3_OK) {
			rq->count = r->WRITE3res_u.resok.count;
			rq->committed = (int)r->WRITE3res_u.resok.committed;
			take_attr(rq, &r->WRITE3res_u.resok.file_wcc.after);
		}
		break;
	}
	case OP_CREATE:
	case OP_MKDIR: {
		/* CREATE3res and MKDIR3res have the same shape */
		CREATE3res *r = data;

		if (r->status == NFS3_OK) {
			if (r->CREATE3res_u.resok.obj.handle_follows) {
				fh_from3(&rq->fh, &r->CREATE3res_u.resok.obj.post_op_fh3_u.handle);
				rq->have_fh = rq->fh.len > 0;
			}
			take_attr(rq, &r->CREATE3res_u.resok.obj_attributes);
		}
		break;
	}
	case OP_LINK: {
		LINK3res *r = data;

		if (r->status == NFS3_OK)
			take_attr(rq, &r->LINK3res_u.resok.file_attributes);
		break;
	}
	case OP_READDIRPLUS: {
		READDIRPLUS3res *r = data;

		if (r->status != NFS3_OK)
			break;
		memcpy(rq->verf, r->READDIRPLUS3res_u.resok.cookieverf, sizeof(rq->verf));
		rq->eof = (int)r->READDIRPLUS3res_u.resok.reply.eof;
		/*
		 * libnfs's decoder places entries at 4-byte alignment, so
		 * each one is copied out before its 8-byte members are read.
		 */
		for (const entryplus3 *p = r->READDIRPLUS3res_u.resok.reply.entries; p;) {
			entryplus3 ent, *e = &ent;

			memcpy(&ent, p, sizeof(ent));
			p = ent.nextentry;
			size_t n = strlen(e->name);
			struct dent *d = calloc(1, sizeof(*d) + n + 1);

			if (!d) {
				rq->nomem = 1;
				break;
			}
			memcpy(d->name, e->name, n + 1);
			d->cookie = e->cookie;
			if (e->name_attributes.attributes_follow) {
				d->attr = e->name_attributes.post_op_attr_u.attributes;
				d->have_attr = 1;
			}
			if (e->name_handle.handle_follows) {
				fh_from3(&d->fh, &e->name_handle.post_op_fh3_u.handle);
				d->have_fh = d->fh.len > 0;
			}
			*rq->etail = d;
			rq->etail = &d->next;
		}
		break;
	}
	default:
		break;
	}
}

/*
 * A request given up on without a reply: past its deadline (a blocking
 * call's NFS_OP_TIMEOUT_MS, or a renewal's period), with nothing heard from
 * the server since it was sent. The server is then presumed unreachable (a
 * cut link, a dead server) and blocking calls wait NFS_SILENT_TIMEOUT_MS
 * instead: a holder whose lease a partition ended records the loss in the
 * audit log and closes promptly, instead of waiting the full timeout on
 * every call after COMMAND was stopped. Only the wait is shorter: the
 * request is abandoned like any late one and may still land. Any reply
 * ends the presumption. With the store's mutex held.
 */
static void given_up(struct nfs_store *ns, const struct req *rq)
{
	if (rq->sent_ns > ns->heard_ns && (!ns->silent_from_ns || rq->sent_ns < ns->silent_from_ns))
		ns->silent_from_ns = rq->sent_ns;
}

static int64_t call_timeout_ns(const struct nfs_store *ns)
{
	if (ns->silent_from_ns)
		return (int64_t)NFS_SILENT_TIMEOUT_MS * 1000000;
	return (int64_t)NFS_OP_TIMEOUT_MS * 1000000;
}

static void req_cb(struct rpc_context *rpc, int status, void *data, void *private_data)
{
	struct req *rq = private_data;

	(void)rpc;
	/* the context is serviced under the store's mutex, and a context
	 * being destroyed cancels (status CANCEL) before its store is freed */
	if (status == RPC_STATUS_SUCCESS && rq->ns) {
		rq->ns->heard_ns = now_ns();
		rq->ns->silent_from_ns = 0;
	}
	if (rq->abandoned) {
		req_free(rq);
		return;
	}
	rq->status = status;
	if (status == RPC_STATUS_SUCCESS && data)
		decode(rq, data);
	rq->done = 1;
}

static void pump(struct nfs_store *ns, int timeout_ms);
static int64_t async_due(struct nfs_store *ns);

/*
 * Service the context until rq is answered or the deadline passes, and
 * with it the engine's renewals that share the connection. Called with the
 * store's mutex held.
 */
static int run(struct nfs_store *ns, struct req *rq, int64_t deadline)
{
	while (!rq->done) {
		int64_t now = now_ns(), left = deadline - now, due = async_due(ns) - now;
		int ms;

		if (left < 0)
			left = 0;
		if (due < left)
			left = due > 0 ? due : 0;
		ms = left > 100000000 ? 100 : (int)((left + 999999) / 1000000);
		/* serviced once more even past the deadline: after this process
		 * was stopped, the reply may be waiting in the socket already */
		pump(ns, ms);
		if (!rq->done && now_ns() >= deadline) {
			given_up(ns, rq);
			rq->abandoned = 1;
			return -ETIMEDOUT;
		}
	}
	return 0;
}

static int nfsstat_errno(int s)
{
	switch (s) {
	case NFS3_OK:
		return 0;
	case NFS3ERR_PERM:
		return -EPERM;
	case NFS3ERR_NOENT:
		return -ENOENT;
	case NFS3ERR_ACCES:
		return -EACCES;
	case NFS3ERR_EXIST:
		return -EEXIST;
	case NFS3ERR_XDEV:
		return -EXDEV;
	case NFS3ERR_NOTDIR:
		return -ENOTDIR;
	case NFS3ERR_ISDIR:
		return -EISDIR;
	case NFS3ERR_INVAL:
		return -EINVAL;
	case NFS3ERR_FBIG:
		return -EFBIG;
	case NFS3ERR_NOSPC:
		return -ENOSPC;
	case NFS3ERR_ROFS:
		return -EROFS;
	case NFS3ERR_MLINK:
		return -EMLINK;
	case NFS3ERR_NAMETOOLONG:
		return -ENAMETOOLONG;
	case NFS3ERR_NOTEMPTY:
		return -ENOTEMPTY;
	case NFS3ERR_DQUOT:
		return -EDQUOT;
	case NFS3ERR_STALE:
	case NFS3ERR_BADHANDLE:
		return -ESTALE; /* retried after a fresh lookup, never returned */
	case NFS3ERR_JUKEBOX:
		return -EAGAIN; /* retried, never returned */
	default:
		return -EIO;
	}
}

struct args {
	size_t rdlen; /* READ: bytes asked for */
	union {
		LOOKUP3args lookup;
		GETATTR3args getattr;
		READ3args read;
		WRITE3args write;
		CREATE3args create;
		MKDIR3args mkdir;
		REMOVE3args remove;
		RMDIR3args rmdir;
		LINK3args link;
		RENAME3args rename;
		READDIRPLUS3args rdp;
	} u;
};

static int send_req(struct nfs_store *ns, struct req *rq, struct args *a)
{
	struct rpc_context *rpc = ns->rpc;
	int r;

	rq->ns = ns;
	rq->sent_ns = now_ns();
	switch (rq->op) {
	case OP_LOOKUP:
		r = rpc_nfs3_lookup_async(rpc, req_cb, &a->u.lookup, rq);
		break;
	case OP_GETATTR:
		r = rpc_nfs3_getattr_async(rpc, req_cb, &a->u.getattr, rq);
		break;
	case OP_READ:
		r = rpc_nfs3_read_async(rpc, req_cb, &a->u.read, rq);
		break;
	case OP_WRITE:
		r = rpc_nfs3_write_async(rpc, req_cb, &a->u.write, rq);
		break;
	case OP_CREATE:
		r = rpc_nfs3_create_async(rpc, req_cb, &a->u.create, rq);
		break;
	case OP_MKDIR:
		r = rpc_nfs3_mkdir_async(rpc, req_cb, &a->u.mkdir, rq);
		break;
	case OP_REMOVE:
		r = rpc_nfs3_remove_async(rpc, req_cb, &a->u.remove, rq);
		break;
	case OP_RMDIR:
		r = rpc_nfs3_rmdir_async(rpc, req_cb, &a->u.rmdir, rq);
		break;
	case OP_LINK:
		r = rpc_nfs3_link_async(rpc, req_cb, &a->u.link, rq);
		break;
	case OP_RENAME:
		r = rpc_nfs3_rename_async(rpc, req_cb, &a->u.rename, rq);
		break;
	case OP_READDIRPLUS:
		r = rpc_nfs3_readdirplus_async(rpc, req_cb, &a->u.rdp, rq);
		break;
	default:
		r = -1;
	}
	if (r != 0)
		return -EIO;
	atomic_fetch_add(&ns->calls, 1);
	return 0;
}

/* NFS3ERR_JUKEBOX: the server asks to be asked again a little later. */
static void jukebox_pause(int attempt)
{
	struct timespec ts = { 0, 5000000L * (attempt + 1) };

	nanosleep(&ts, NULL);
}

/*
 * One request, answered or failed. On success (return >= 0) *ret holds the
 * decoded reply, to be freed with req_free(); the return value is the
 * reply's NFS status as -errno (0 for NFS3_OK).
 */
static int call(struct nfs_store *ns, enum op op, struct args *a, struct req **ret)
{
	for (int attempt = 0;; attempt++) {
		struct req *rq = calloc(1, sizeof(*rq));
		int r;

		if (!rq)
			return -ENOMEM;
		rq->op = op;
		rq->etail = &rq->ents;
		if (op == OP_READ) {
			rq->data = malloc(a->rdlen ? a->rdlen : 1);
			rq->datacap = (uint32_t)a->rdlen;
			if (!rq->data) {
				free(rq);
				return -ENOMEM;
			}
		}
		r = send_req(ns, rq, a);
		if (r < 0) {
			free(rq);
			return r;
		}
		r = run(ns, rq, now_ns() + call_timeout_ns(ns));
		if (r < 0)
			return r; /* rq is abandoned: the callback frees it */
		if (rq->status == RPC_STATUS_TIMEOUT)
			given_up(ns, rq);
		if (rq->status != RPC_STATUS_SUCCESS) {
			r = rq->status == RPC_STATUS_TIMEOUT ? -ETIMEDOUT : -ENOTCONN;
			req_free(rq);
			return r;
		}
		if (rq->nomem) {
			req_free(rq);
			return -ENOMEM;
		}
		r = nfsstat_errno(rq->nfsstat);
		if (r == -EAGAIN && attempt + 1 < JUKEBOX_TRIES) {
			req_free(rq);
			jukebox_pause(attempt);
			continue;
		}
		*ret = rq;
		return r;
	}
}

/* ------------------------------------------------------------------------
 * Errors
 */

static int fail_with(struct nfs_store *ns, int r, struct lk_err *err, const char *what,
		     const char *path)
{
	if (r >= 0 || r == -ENOENT || r == -EEXIST)
		return r;
	if (err && (r == -ETIMEDOUT || r == -ENOTCONN))
		err->transient = 1;
	if (err) {
		const char *why = r == -ETIMEDOUT ? "the server did not answer in time"
				  : r == -ENOTCONN ? "the connection to the server failed"
				  : r == -ESTALE   ? "the server keeps calling the file handle stale"
				  : r == -EAGAIN   ? "the server stayed busy (NFS3ERR_JUKEBOX)"
						   : strerror(-r);

		lk__err_set(err, "%s %s on %s: %s", what, path[0] ? path : "/", ns->server, why);
	}
	/*
	 * -ESTALE would mean "lease superseded" to the core and -EAGAIN "held
	 * by another owner"; a timeout or a dead connection is an I/O error.
	 */
	if (r == -ETIMEDOUT || r == -ENOTCONN || r == -ESTALE || r == -EAGAIN)
		return -EIO;
	return r;
}

/* ------------------------------------------------------------------------
 * Handles the store keeps
 */

static unsigned hash_name(const char *s)
{
	unsigned h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h % CACHE_BUCKETS;
}

static struct cent *cache_get(struct nfs_store *ns, const char *name)
{
	for (struct cent *c = ns->cache[hash_name(name)]; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static void cache_clear(struct nfs_store *ns)
{
	for (int i = 0; i < CACHE_BUCKETS; i++) {
		while (ns->cache[i]) {
			struct cent *c = ns->cache[i];

			ns->cache[i] = c->next;
			free(c);
		}
	}
	ns->ncache = 0;
}

static void cache_drop(struct nfs_store *ns, const char *name)
{
	for (struct cent **p = &ns->cache[hash_name(name)]; *p; p = &(*p)->next) {
		if (!strcmp((*p)->name, name)) {
			struct cent *c = *p;

			*p = c->next;
			free(c);
			ns->ncache--;
			return;
		}
	}
}

/* name and everything below it */
static void cache_drop_tree(struct nfs_store *ns, const char *name)
{
	size_t n = strlen(name);

	for (int i = 0; i < CACHE_BUCKETS; i++) {
		for (struct cent **p = &ns->cache[i]; *p;) {
			struct cent *c = *p;

			if (!strncmp(c->name, name, n) && (c->name[n] == 0 || c->name[n] == '/')) {
				*p = c->next;
				free(c);
				ns->ncache--;
			} else {
				p = &c->next;
			}
		}
	}
}

/* Remember that name leads to fh; attr (may be NULL) as the reply said. */
static void cache_put(struct nfs_store *ns, const char *name, const struct fh *fh,
		      const struct fattr3 *attr, int isdir)
{
	struct cent *c = cache_get(ns, name);

	if (!fh->len)
		return;
	if (!c) {
		size_t n = strlen(name);

		/* Bounded: past the limit start afresh; a handle costs one
		 * LOOKUP to learn again. */
		if (ns->ncache >= CACHE_MAX)
			cache_clear(ns);
		c = calloc(1, sizeof(*c) + n + 1);
		if (!c)
			return;
		memcpy(c->name, name, n + 1);
		c->next = ns->cache[hash_name(name)];
		ns->cache[hash_name(name)] = c;
		ns->ncache++;
	}
	c->isdir = isdir;
	c->fh = *fh;
	c->have_ctime = attr != NULL;
	if (attr) {
		c->fileid = attr->fileid;
		c->ctime = attr->ctime;
	}
}

static int same_time(const struct nfstime3 *a, const struct nfstime3 *b)
{
	return a->seconds == b->seconds && a->nseconds == b->nseconds;
}

/* ------------------------------------------------------------------------
 * Path resolution: one LOOKUP for a name whose handle is not known
 */

static int lookup(struct nfs_store *ns, const struct fh *dir, const char *name, struct req **ret)
{
	struct args a;

	memset(&a, 0, sizeof(a));
	a.u.lookup.what.dir = fh_to3(dir);
	a.u.lookup.what.name = (char *)name;
	return call(ns, OP_LOOKUP, &a, ret);
}

/* The store directory's handle, looked up from the mounted directory. */
static int root_handle(struct nfs_store *ns, struct fh *ret)
{
	char buf[sizeof(ns->root)];
	struct fh cur = ns->mnt_fh;
	char *save = NULL, *comp;

	if (ns->root_ok) {
		*ret = ns->root_fh;
		return 0;
	}
	memcpy(buf, ns->root, sizeof(buf));
	for (comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		struct req *rq = NULL;
		int r = lookup(ns, &cur, comp, &rq);

		if (r == 0 && rq->have_attr && rq->attr.type != NF3DIR)
			r = -ENOTDIR;
		if (r == 0)
			cur = rq->fh;
		req_free(rq);
		if (r < 0)
			return r;
	}
	ns->root_fh = cur;
	ns->root_ok = 1;
	*ret = cur;
	return 0;
}

/* The handle of directory dir (store-relative, "" for the store). */
static int dir_handle(struct nfs_store *ns, const char *dir, struct fh *ret)
{
	struct cent *c;
	char parent[PATH_BUF];
	const char *slash, *leaf;
	struct fh pfh;
	struct req *rq = NULL;
	int r;

	if (!dir[0])
		return root_handle(ns, ret);
	c = cache_get(ns, dir);
	if (c && c->isdir) {
		*ret = c->fh;
		return 0;
	}
	slash = strrchr(dir, '/');
	if (slash) {
		if ((size_t)(slash - dir) >= sizeof(parent))
			return -ENAMETOOLONG;
		memcpy(parent, dir, (size_t)(slash - dir));
		parent[slash - dir] = 0;
		leaf = slash + 1;
	} else {
		parent[0] = 0;
		leaf = dir;
	}
	r = dir_handle(ns, parent, &pfh);
	if (r < 0)
		return r;
	r = lookup(ns, &pfh, leaf, &rq);
	if (r == 0 && rq->have_attr && rq->attr.type != NF3DIR)
		r = -ENOTDIR;
	if (r == 0) {
		cache_put(ns, dir, &rq->fh, rq->have_attr ? &rq->attr : NULL, 1);
		*ret = rq->fh;
	}
	req_free(rq);
	return r;
}

/* Split path into its directory's handle and the last component. */
static int parent_of(struct nfs_store *ns, const char *path, struct fh *ret_dir,
		     const char **ret_leaf)
{
	char dir[PATH_BUF];
	const char *slash = strrchr(path, '/');

	if (!slash) {
		*ret_leaf = path;
		return root_handle(ns, ret_dir);
	}
	if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = 0;
	*ret_leaf = slash + 1;
	return dir_handle(ns, dir, ret_dir);
}

/* A handle the server called stale: forget every handle and look again. */
static void forget_all(struct nfs_store *ns)
{
	cache_clear(ns);
	ns->root_ok = 0;
}

#define CALL_BEGIN(ns) pthread_mutex_lock(&(ns)->mu)
#define CALL_END(ns) pthread_mutex_unlock(&(ns)->mu)

/*
 * Run expr again, from fresh lookups, if it met a stale handle: at most three
 * times. A handle found stale right after a fresh lookup names something
 * removed in between (a lock directory pruned and made again, say): by then
 * it is gone, -ENOENT, which callers handle as "look again".
 */
#define STALE_RETRY(ns, expr)                                                                \
	({                                                                                   \
		int r_ = (expr);                                                             \
		for (int t_ = 0; r_ == -ESTALE && t_ < 3; t_++) {                            \
			forget_all(ns);                                                      \
			r_ = (expr);                                                         \
		}                                                                            \
		r_ == -ESTALE ? -ENOENT : r_;                                                \
	})

/* ------------------------------------------------------------------------
 * Renewals the heartbeat engine drives (renew_start, service)
 *
 * The engine queues a renewal without touching the context; the thread
 * that holds the store's mutex next (the engine's own, through service(),
 * or a caller's blocking call, through run()) sends it, reads the replies
 * and reports them. Whoever it is never waits for the other: the engine
 * only ever tries the mutex, and a blocking call services every request on
 * the connection, the engine's included, while it waits for its own.
 */

static struct req *req_new(enum op op)
{
	struct req *rq = calloc(1, sizeof(*rq));

	if (rq) {
		rq->op = op;
		rq->etail = &rq->ents;
	}
	return rq;
}

static void send_async(struct nfs_store *ns, struct arenew *a)
{
	struct args w, p;

	memset(&w, 0, sizeof(w));
	w.u.write.file = fh_to3(&a->file);
	w.u.write.count = (count3)a->len;
	w.u.write.stable = FILE_SYNC;
	w.u.write.data.data_len = (u_int)a->len;
	w.u.write.data.data_val = (char *)a->buf;
	memset(&p, 0, sizeof(p));
	p.u.lookup.what.dir = fh_to3(&a->dir);
	p.u.lookup.what.name = a->leaf;
	a->w = req_new(OP_WRITE);
	a->p = req_new(OP_LOOKUP);
	/* a request that cannot be queued is reported as failed by reap() */
	if (a->w && send_req(ns, a->w, &w) < 0) {
		free(a->w);
		a->w = NULL;
	}
	if (a->p && send_req(ns, a->p, &p) < 0) {
		free(a->p);
		a->p = NULL;
	}
}

static int write_res(const struct arenew *a, const struct req *rq)
{
	int r;

	if (!rq)
		return -EIO;
	if (rq->status != RPC_STATUS_SUCCESS)
		return -EIO;
	r = nfsstat_errno(rq->nfsstat);
	if (r == 0 && (rq->count != a->len || rq->committed != FILE_SYNC))
		r = -EIO;
	if (r == -ESTALE || r == -EAGAIN)
		r = -EIO;
	return r < 0 ? r : (int)rq->count;
}

static int probe_res(const struct req *rq)
{
	int r;

	if (!rq || rq->status != RPC_STATUS_SUCCESS)
		return -EIO;
	r = nfsstat_errno(rq->nfsstat);
	/* a stale directory handle: the lock directory is gone, not "free" */
	if (r == -ESTALE || r == -EAGAIN)
		r = -EIO;
	return r;
}

/* Report what has been answered, and what is past its deadline. */
static void reap(struct nfs_store *ns)
{
	int64_t now = now_ns();

	for (struct arenew **pp = &ns->inflight; *pp;) {
		struct arenew *a = *pp;
		int late = now >= a->deadline;

		if (late && a->w && !a->w->done)
			given_up(ns, a->w);
		if (late && a->p && !a->p->done)
			given_up(ns, a->p);
		if (!a->wrep && (!a->w || a->w->done || late)) {
			int res = a->w && a->w->done ? write_res(a, a->w) : a->w ? -ETIMEDOUT : -EIO;

			a->wrep = 1;
			a->done(a->arg, LK_RENEW_WRITE, res);
		}
		if (!a->prep && (!a->p || a->p->done || late)) {
			int res = a->p && a->p->done ? probe_res(a->p) : a->p ? -ETIMEDOUT : -EIO;

			a->prep = 1;
			a->done(a->arg, LK_RENEW_PROBE, res);
		}
		if (!a->wrep || !a->prep) {
			pp = &a->next;
			continue;
		}
		*pp = a->next;
		/* an unanswered request is dropped when its reply comes */
		if (a->w && !a->w->done)
			a->w->abandoned = 1;
		else
			req_free(a->w);
		if (a->p && !a->p->done)
			a->p->abandoned = 1;
		else
			req_free(a->p);
		free(a);
	}
}

/* The earliest deadline of a renewal in flight (INT64_MAX: none). */
static int64_t async_due(struct nfs_store *ns)
{
	int64_t due = INT64_MAX;

	for (struct arenew *a = ns->inflight; a; a = a->next)
		if (a->deadline < due)
			due = a->deadline;
	return due;
}

/*
 * Send what the engine queued, wait up to timeout_ms for the connection,
 * service it and report finished renewals. With the store's mutex held.
 */
static void pump(struct nfs_store *ns, int timeout_ms)
{
	struct arenew *q;
	struct pollfd p[2];
	uint64_t v;
	int n;

	pthread_mutex_lock(&ns->qmu);
	q = ns->queue;
	ns->queue = NULL;
	ns->qtail = &ns->queue;
	pthread_mutex_unlock(&ns->qmu);
	while (q) {
		struct arenew *a = q;

		q = a->next;
		send_async(ns, a);
		a->next = ns->inflight;
		ns->inflight = a;
	}
	p[0].fd = rpc_get_fd(ns->rpc);
	p[0].events = (short)rpc_which_events(ns->rpc);
	p[0].revents = 0;
	p[1].fd = ns->kick_fd;
	p[1].events = POLLIN;
	p[1].revents = 0;
	atomic_store(&ns->last_fd, p[0].fd);
	if (p[0].fd < 0) {
		/* between connections: nothing to poll but the queue */
		p[0].fd = -1;
	}
	n = poll(p, 2, timeout_ms);
	if (n > 0 && p[1].revents) {
		while (read(ns->kick_fd, &v, sizeof(v)) > 0)
			;
	}
	/*
	 * A failure here is not final: libnfs retries a failed reconnect on
	 * the next call, and fails the requests themselves (status ERROR) when
	 * it gives up on them; a request nobody answers meets its deadline.
	 */
	if (n >= 0)
		rpc_service(ns->rpc, n > 0 && p[0].fd >= 0 ? p[0].revents : 0);
	reap(ns);
}

static int nfsb_renew_start(struct lk_bfile *bf, const void *buf, size_t len, const char *probe,
			    int64_t deadline_ns, lk_renew_done_fn done, void *arg)
{
	struct nfs_bfile *f = (struct nfs_bfile *)bf;
	struct nfs_store *ns = (struct nfs_store *)bf->bs;
	const char *slash = strrchr(probe, '/');
	size_t dl = strlen(f->dir);
	struct arenew *a;
	uint64_t one = 1;

	/* the probe is the next generation in the record's own directory */
	if (!slash || (size_t)(slash - probe) != dl || strncmp(probe, f->dir, dl) ||
	    strlen(slash + 1) > LK_NAME_MAX || len > LK_LREC_SIZE || !f->dirfh.len)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->file = f->fh;
	a->dir = f->dirfh;
	snprintf(a->leaf, sizeof(a->leaf), "%s", slash + 1);
	memcpy(a->buf, buf, len);
	a->len = len;
	a->deadline = deadline_ns;
	a->done = done;
	a->arg = arg;
	pthread_mutex_lock(&ns->qmu);
	*ns->qtail = a;
	ns->qtail = &a->next;
	pthread_mutex_unlock(&ns->qmu);
	/* a blocking call servicing the store sends it at once */
	if (write(ns->kick_fd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero */
	}
	return 0;
}

static int64_t nfsb_service(struct lk_bstore *bs, int *ret_fd, short *ret_events)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int64_t due;

	*ret_fd = -1;
	*ret_events = 0;
	if (pthread_mutex_trylock(&ns->mu) != 0) {
		/* a blocking call owns the context and services our requests
		 * too; look again soon in case it returns first */
		return now_ns() + 5000000;
	}
	pump(ns, 0);
	due = async_due(ns);
	if (ns->inflight) {
		int64_t soon = now_ns() + 20000000;

		*ret_fd = rpc_get_fd(ns->rpc);
		*ret_events = (short)rpc_which_events(ns->rpc);
		if (soon < due)
			due = soon;
	}
	pthread_mutex_lock(&ns->qmu);
	if (ns->queue)
		due = 0; /* queued meanwhile: send it now */
	pthread_mutex_unlock(&ns->qmu);
	pthread_mutex_unlock(&ns->mu);
	return due;
}

/* ------------------------------------------------------------------------
 * Opening a store
 */

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

static int do_mkdir(struct nfs_store *ns, const struct fh *dir, const char *name, uint32_t mode,
		    struct req **ret)
{
	struct args a;

	memset(&a, 0, sizeof(a));
	a.u.mkdir.where.dir = fh_to3(dir);
	a.u.mkdir.where.name = (char *)name;
	a.u.mkdir.attributes.mode.set_it = 1;
	a.u.mkdir.attributes.mode.set_mode3_u.mode = mode;
	return call(ns, OP_MKDIR, &a, ret);
}

/* Look up the store directory from the mounted one, creating what is
 * missing when allowed. */
static int open_root(struct nfs_store *ns, int create, struct lk_err *err)
{
	char buf[sizeof(ns->root)];
	struct fh cur = ns->mnt_fh;
	char *save = NULL, *comp;

	memcpy(buf, ns->root, sizeof(buf));
	for (comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		struct req *rq = NULL;
		int r = lookup(ns, &cur, comp, &rq);

		if (r == -ENOENT && create) {
			req_free(rq);
			rq = NULL;
			r = do_mkdir(ns, &cur, comp, 0700, &rq);
			if (r == 0 && !rq->have_fh)
				r = -EEXIST; /* no handle in the reply: look it up */
			if (r == -EEXIST) {
				req_free(rq);
				rq = NULL;
				r = lookup(ns, &cur, comp, &rq);
			}
			if (r < 0) {
				req_free(rq);
				r = fail_with(ns, r == -EEXIST ? -EIO : r, err,
					      "cannot create store directory", ns->root);
				return r;
			}
		} else if (r == -ENOENT) {
			req_free(rq);
			lk__err_set(err, "store %s does not exist on %s:%s", ns->root, ns->server,
				    ns->export);
			return -ENOENT;
		} else if (r < 0) {
			req_free(rq);
			return fail_with(ns, r, err, "cannot look up store directory", ns->root);
		}
		if (rq->have_attr && rq->attr.type != NF3DIR) {
			req_free(rq);
			lk__err_set(err, "store %s on %s is not a directory", ns->root, ns->server);
			return -ENOTDIR;
		}
		cur = rq->fh;
		req_free(rq);
	}
	ns->root_fh = cur;
	ns->root_ok = 1;
	return 0;
}

static void nfs_store_close(struct lk_bstore *bs);

static int nfs_store_open(const struct lk_url *url, const struct lk_store_opts *opts,
			  struct lk_bstore **ret, struct lk_err *err)
{
	struct nfs_store *ns;
	struct nfs_url *u = NULL;
	const struct nfs_fh *mfh;
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
	pthread_mutex_init(&ns->qmu, NULL);
	ns->qtail = &ns->queue;
	atomic_store(&ns->last_fd, -1);
	ns->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ns->kick_fd < 0) {
		r = -errno;
		pthread_mutex_destroy(&ns->qmu);
		pthread_mutex_destroy(&ns->mu);
		free(ns);
		return r;
	}
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

	ns->rpc = nfs_get_rpc_context(ns->ctx);
	mfh = nfs_get_rootfh(ns->ctx);
	if (!ns->rpc || !mfh || mfh->len <= 0 || mfh->len > NFS3_FHSIZE) {
		lk__err_set(err, "libnfs gave no handle for the export %s", ns->export);
		r = -EIO;
		goto fail;
	}
	atomic_store(&ns->last_fd, rpc_get_fd(ns->rpc));
	ns->mnt_fh.len = (uint32_t)mfh->len;
	memcpy(ns->mnt_fh.data, mfh->val, ns->mnt_fh.len);
	pthread_mutex_lock(&ns->mu);
	r = open_root(ns, !(opts->flags & (LK_STORE_NOCREATE | LK_STORE_RDONLY)), err);
	pthread_mutex_unlock(&ns->mu);
	if (r < 0)
		goto fail;
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
	/*
	 * The engine is gone by now (lk_store_close() frees it first): drop
	 * its renewals unreported. Their requests, like every other abandoned
	 * one, are answered with RPC_STATUS_CANCEL and freed when the context
	 * goes.
	 */
	while (ns->queue) {
		struct arenew *a = ns->queue;

		ns->queue = a->next;
		free(a);
	}
	while (ns->inflight) {
		struct arenew *a = ns->inflight;

		ns->inflight = a->next;
		if (a->w && !a->w->done)
			a->w->abandoned = 1;
		else
			req_free(a->w);
		if (a->p && !a->p->done)
			a->p->abandoned = 1;
		else
			req_free(a->p);
		free(a);
	}
	if (ns->ctx)
		nfs_destroy_context(ns->ctx);
	cache_clear(ns);
	if (ns->kick_fd >= 0)
		close(ns->kick_fd);
	pthread_mutex_destroy(&ns->qmu);
	pthread_mutex_destroy(&ns->mu);
	free(ns->server);
	free(ns->export);
	free(ns);
}

/* ------------------------------------------------------------------------
 * Listings: READDIRPLUS gives names, handles and attributes in one reply
 */

/* Every entry of directory dir except "." and "..", in *ret (a list). */
static int list_dir(struct nfs_store *ns, const char *dir, int keep, struct dent **ret)
{
	struct dent *all = NULL, **tail = &all;
	cookieverf3 verf;
	uint64_t cookie = 0;
	struct fh dfh;
	int r = dir_handle(ns, dir, &dfh);

	memset(verf, 0, sizeof(verf));
	while (r == 0) {
		struct args a;
		struct req *rq = NULL;
		int eof;

		memset(&a, 0, sizeof(a));
		a.u.rdp.dir = fh_to3(&dfh);
		a.u.rdp.cookie = cookie;
		memcpy(a.u.rdp.cookieverf, verf, sizeof(verf));
		a.u.rdp.dircount = 8192;
		a.u.rdp.maxcount = 32768;
		r = call(ns, OP_READDIRPLUS, &a, &rq);
		if (r < 0) {
			req_free(rq);
			break;
		}
		memcpy(verf, rq->verf, sizeof(verf));
		eof = rq->eof;
		if (!rq->ents)
			eof = 1; /* nothing more will come */
		for (struct dent *d = rq->ents; d; d = d->next)
			cookie = d->cookie;
		*tail = rq->ents;
		while (*tail)
			tail = &(*tail)->next;
		rq->ents = NULL;
		req_free(rq);
		if (eof)
			break;
	}
	if (r < 0) {
		dents_free(all);
		return r;
	}
	/* The names led to these handles when the server answered: keep the
	 * records' (a read by handle checks that they still do). */
	if (keep) {
		char p[PATH_BUF];

		for (struct dent *d = all; d; d = d->next) {
			if (!d->have_fh || !d->have_attr || d->attr.type != NF3REG)
				continue;
			if (snprintf(p, sizeof(p), "%s/%s", dir, d->name) < (int)sizeof(p))
				cache_put(ns, p, &d->fh, &d->attr, 0);
		}
	}
	*ret = all;
	return 0;
}

/*
 * A listing the server refuses with NFS3ERR_NOENT although the directory
 * is there: ganesha fails a READDIRPLUS when an entry goes away while it
 * gathers the entries' attributes (a clean-up racing the listing). Only a
 * LOOKUP of the directory itself says it is gone.
 */
static int list_dir_again(struct nfs_store *ns, const char *dir, int keep, struct dent **ret)
{
	for (int attempt = 0;; attempt++) {
		struct fh fh;
		int r = list_dir(ns, dir, keep, ret);

		if (r != -ENOENT || attempt >= 4)
			return r;
		cache_drop_tree(ns, dir);
		r = dir_handle(ns, dir, &fh);
		if (r < 0)
			return r;
	}
}

static int nfs_list(struct lk_bstore *bs, lk_list_fn fn, void *userdata, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct dent *all = NULL;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, list_dir_again(ns, "", 0, &all));
	r = fail_with(ns, r, err, "cannot list", ns->root);
	CALL_END(ns);
	for (struct dent *d = all; d && r == 0; d = d->next) {
		if (lk_name_valid(d->name) < 0)
			continue;
		if (d->have_attr && d->attr.type != NF3REG && d->attr.type != NF3DIR)
			continue;
		r = fn(d->name, userdata);
	}
	dents_free(all);
	return r;
}

static int nfsb_readdir(struct lk_bstore *bs, const char *path, lk_list_fn fn, void *userdata,
			struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct dent *all = NULL;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, list_dir_again(ns, path, 1, &all));
	if (r == -ENOENT || r == -ENOTDIR)
		cache_drop_tree(ns, path);
	r = fail_with(ns, r, err, "cannot list", path);
	CALL_END(ns);
	for (struct dent *d = all; d && r == 0; d = d->next) {
		if (!strcmp(d->name, ".") || !strcmp(d->name, ".."))
			continue;
		r = fn(d->name, userdata);
	}
	dents_free(all);
	return r;
}

/* ------------------------------------------------------------------------
 * Names
 */

/* LOOKUP of path; *ret holds the handle and attributes on success. */
static int lookup_path(struct nfs_store *ns, const char *path, struct req **ret)
{
	const char *leaf;
	struct fh dir;
	int r = parent_of(ns, path, &dir, &leaf);

	if (r < 0)
		return r;
	r = lookup(ns, &dir, leaf, ret);
	if (r == 0 && !(*ret)->have_attr) {
		/* attributes are optional in the reply; the id is not */
		struct args a;
		struct req *g = NULL;

		memset(&a, 0, sizeof(a));
		a.u.getattr.object = fh_to3(&(*ret)->fh);
		r = call(ns, OP_GETATTR, &a, &g);
		if (r == 0) {
			(*ret)->attr = g->attr;
			(*ret)->have_attr = 1;
		}
		req_free(g);
	}
	if (r == 0)
		cache_put(ns, path, &(*ret)->fh, &(*ret)->attr, (*ret)->attr.type == NF3DIR);
	else if (r == -ENOENT)
		cache_drop_tree(ns, path);
	return r;
}

static int entry_once(struct nfs_store *ns, const char *name)
{
	struct cent *c = cache_get(ns, name);
	struct req *rq = NULL;
	int r;

	/*
	 * A lock directory stays one until it is removed, and then its handle
	 * turns stale and the next request on it looks the name up again.
	 */
	if (c && c->isdir)
		return LK_ENTRY_LEASE;
	r = lookup_path(ns, name, &rq);
	if (r == 0)
		r = rq->attr.type == NF3DIR   ? LK_ENTRY_LEASE
		    : rq->attr.type == NF3REG ? LK_ENTRY_KERNEL
					      : -EINVAL;
	req_free(rq);
	return r;
}

static int nfs_entry(struct lk_bstore *bs, const char *name, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, entry_once(ns, name));
	if (r == -ENOENT)
		r = LK_ENTRY_NONE;
	else if (r == -EINVAL)
		lk__err_set(err, "lock %s is neither a regular file nor a directory", name);
	else
		r = fail_with(ns, r, err, "cannot look up", name);
	CALL_END(ns);
	return r;
}

static int nfs_is_network(struct lk_bstore *bs)
{
	(void)bs;
	return 1;
}

static int mkdir_once(struct nfs_store *ns, const char *path)
{
	const char *leaf;
	struct fh dir;
	struct req *rq = NULL;
	int r = parent_of(ns, path, &dir, &leaf);

	if (r < 0)
		return r;
	r = do_mkdir(ns, &dir, leaf, (ns->file_mode & 0070) ? 0770 : 0700, &rq);
	if (r == 0 && rq->have_fh)
		cache_put(ns, path, &rq->fh, rq->have_attr ? &rq->attr : NULL, 1);
	req_free(rq);
	return r;
}

static int nfsb_mkdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, mkdir_once(ns, path));
	r = fail_with(ns, r, err, "cannot create directory", path);
	CALL_END(ns);
	return r;
}

static int remove_once(struct nfs_store *ns, const char *path, int dir)
{
	const char *leaf;
	struct fh dfh;
	struct args a;
	struct req *rq = NULL;
	int r = parent_of(ns, path, &dfh, &leaf);

	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	if (dir) {
		a.u.rmdir.object.dir = fh_to3(&dfh);
		a.u.rmdir.object.name = (char *)leaf;
	} else {
		a.u.remove.object.dir = fh_to3(&dfh);
		a.u.remove.object.name = (char *)leaf;
	}
	r = call(ns, dir ? OP_RMDIR : OP_REMOVE, &a, &rq);
	req_free(rq);
	if (r == 0 || r == -ENOENT)
		cache_drop_tree(ns, path);
	return r;
}

static int nfsb_rmdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, remove_once(ns, path, 1));
	r = fail_with(ns, r, err, "cannot remove directory", path);
	CALL_END(ns);
	return r;
}

static int nfsb_unlink(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, remove_once(ns, path, 0));
	r = fail_with(ns, r, err, "cannot remove", path);
	CALL_END(ns);
	return r;
}

/* The handle of file path: kept, or looked up. */
static int file_handle(struct nfs_store *ns, const char *path, struct fh *ret)
{
	struct cent *c = cache_get(ns, path);
	struct req *rq = NULL;
	int r;

	if (c && !c->isdir) {
		*ret = c->fh;
		return 0;
	}
	r = lookup_path(ns, path, &rq);
	if (r == 0)
		*ret = rq->fh;
	req_free(rq);
	return r;
}

static int link_once(struct nfs_store *ns, const char *from, const char *to)
{
	const char *leaf;
	struct fh file, dir;
	struct args a;
	struct req *rq = NULL;
	int r = file_handle(ns, from, &file);

	if (r == 0)
		r = parent_of(ns, to, &dir, &leaf);
	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.u.link.file = fh_to3(&file);
	a.u.link.link.dir = fh_to3(&dir);
	a.u.link.link.name = (char *)leaf;
	r = call(ns, OP_LINK, &a, &rq);
	if (r == 0)
		cache_put(ns, to, &file, rq->have_attr ? &rq->attr : NULL, 0);
	req_free(rq);
	return r;
}

static int nfsb_link(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, link_once(ns, from, to));
	if (r == -ENOTEMPTY)
		r = -EEXIST;
	r = fail_with(ns, r, err, "cannot link", from);
	CALL_END(ns);
	return r;
}

static int rename_once(struct nfs_store *ns, const char *from, const char *to)
{
	const char *lf, *lt;
	struct fh df, dt;
	struct args a;
	struct req *rq = NULL;
	struct cent *c;
	int r = parent_of(ns, from, &df, &lf);

	if (r == 0)
		r = parent_of(ns, to, &dt, &lt);
	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.u.rename.from.dir = fh_to3(&df);
	a.u.rename.from.name = (char *)lf;
	a.u.rename.to.dir = fh_to3(&dt);
	a.u.rename.to.name = (char *)lt;
	r = call(ns, OP_RENAME, &a, &rq);
	req_free(rq);
	if (r == 0) {
		/* the object keeps its handle under its new name */
		struct fh fh;
		int isdir = 0, have = 0;

		c = cache_get(ns, from);
		if (c) {
			fh = c->fh;
			isdir = c->isdir;
			have = 1;
		}
		cache_drop_tree(ns, from);
		cache_drop_tree(ns, to);
		if (have && isdir)
			cache_put(ns, to, &fh, NULL, 1);
	}
	return r;
}

static int nfsb_rename(struct lk_bstore *bs, const char *from, const char *to,
		       struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, rename_once(ns, from, to));
	if (r == -ENOTEMPTY)
		r = -EEXIST;
	r = fail_with(ns, r, err, "cannot rename", from);
	CALL_END(ns);
	return r;
}

/* ------------------------------------------------------------------------
 * Records
 */

/* One FILE_SYNC write of buf at offset 0: stable on the server when the
 * reply says so, no COMMIT needed. */
static int write_sync(struct nfs_store *ns, const struct fh *fh, const void *buf, size_t len,
		      struct req **ret)
{
	struct args a;
	struct req *rq = NULL;
	int r;

	memset(&a, 0, sizeof(a));
	a.u.write.file = fh_to3(fh);
	a.u.write.offset = 0;
	a.u.write.count = (count3)len;
	a.u.write.stable = FILE_SYNC;
	a.u.write.data.data_len = (u_int)len;
	a.u.write.data.data_val = (char *)buf;
	r = call(ns, OP_WRITE, &a, &rq);
	if (r == 0 && (rq->count != len || rq->committed != FILE_SYNC))
		r = -EIO; /* short, or not stable: never trusted */
	if (ret && r == 0)
		*ret = rq;
	else
		req_free(rq);
	return r;
}

static int write_new_once(struct nfs_store *ns, const char *path, const void *buf, size_t len,
			  uint64_t *ret_fileid)
{
	const char *leaf;
	struct fh dir, fh;
	struct args a;
	struct req *rq = NULL, *w = NULL;
	int r = parent_of(ns, path, &dir, &leaf);

	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.u.create.where.dir = fh_to3(&dir);
	a.u.create.where.name = (char *)leaf;
	a.u.create.how.mode = GUARDED;
	a.u.create.how.createhow3_u.obj_attributes.mode.set_it = 1;
	a.u.create.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = ns->file_mode;
	r = call(ns, OP_CREATE, &a, &rq);
	if (r < 0) {
		req_free(rq);
		return r;
	}
	if (!rq->have_fh) {
		/* the handle is optional in the reply */
		req_free(rq);
		rq = NULL;
		r = lookup_path(ns, path, &rq);
		if (r < 0) {
			req_free(rq);
			return r;
		}
	}
	fh = rq->fh;
	if (len == 0 && rq->have_attr) {
		/* nothing to write: the create's reply has the id */
		*ret_fileid = rq->attr.fileid;
		cache_put(ns, path, &fh, &rq->attr, 0);
		req_free(rq);
		return 0;
	}
	req_free(rq);
	r = write_sync(ns, &fh, buf, len, &w);
	if (r == 0 && !w->have_attr) {
		req_free(w);
		w = NULL;
		memset(&a, 0, sizeof(a));
		a.u.getattr.object = fh_to3(&fh);
		r = call(ns, OP_GETATTR, &a, &w);
	}
	if (r == 0) {
		*ret_fileid = w->attr.fileid;
		cache_put(ns, path, &fh, &w->attr, 0);
	}
	req_free(w);
	if (r < 0) {
		/* no half-written file left behind */
		memset(&a, 0, sizeof(a));
		a.u.remove.object.dir = fh_to3(&dir);
		a.u.remove.object.name = (char *)leaf;
		w = NULL;
		if (call(ns, OP_REMOVE, &a, &w) >= 0)
			cache_drop(ns, path);
		req_free(w);
	}
	return r;
}

static int nfsb_write_new(struct lk_bstore *bs, const char *path, const void *buf, size_t len,
			  uint64_t *ret_fileid, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	if (len > NFS_MAX_IO)
		return -EFBIG;
	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, write_new_once(ns, path, buf, len, ret_fileid));
	r = fail_with(ns, r, err, "cannot create", path);
	CALL_END(ns);
	return r;
}

static int read_by(struct nfs_store *ns, const struct fh *fh, size_t len, struct req **ret)
{
	struct args a;

	memset(&a, 0, sizeof(a));
	a.rdlen = len;
	a.u.read.file = fh_to3(fh);
	a.u.read.offset = 0;
	a.u.read.count = (count3)len;
	return call(ns, OP_READ, &a, ret);
}

/*
 * Read through a kept handle when the reply proves the name still leads to
 * it: the file is linked and its ctime has not moved since the name was
 * seen to lead there (a link or an unlink would have moved it). Otherwise
 * the name is looked up: the same file id means the name led there all
 * along (an inode is linked under one generation name only, once), another
 * one is read afresh. Either way the bytes come from the server now.
 */
static int read_once(struct nfs_store *ns, const char *path, void *buf, size_t len,
		     uint64_t *ret_fileid)
{
	struct cent *c = cache_get(ns, path);
	struct req *rq = NULL, *lk = NULL;
	int r;

	if (len > NFS_MAX_IO)
		len = NFS_MAX_IO;
	if (c && !c->isdir) {
		struct fh fh = c->fh;
		uint64_t id = c->fileid;
		int ok;

		r = read_by(ns, &fh, len, &rq);
		c = cache_get(ns, path); /* the call may have evicted it */
		ok = r == 0 && rq->have_attr && rq->attr.nlink > 0 && c && c->have_ctime &&
		     same_time(&rq->attr.ctime, &c->ctime);
		if (!ok && r != -ESTALE && r != -ENOENT && r < 0 && r != -EISDIR &&
		    r != -EINVAL) {
			req_free(rq);
			return r;
		}
		if (!ok) {
			int rr = lookup_path(ns, path, &lk);

			if (rr < 0) {
				req_free(rq);
				req_free(lk);
				return rr;
			}
			if (r == 0 && lk->attr.fileid == id && lk->fh.len == fh.len &&
			    !memcmp(lk->fh.data, fh.data, fh.len)) {
				ok = 1;
			} else {
				req_free(rq);
				rq = NULL;
				r = lk->attr.type == NF3REG ? read_by(ns, &lk->fh, len, &rq)
							    : -EBADMSG;
				ok = r == 0;
			}
			req_free(lk);
		}
		if (!ok) {
			req_free(rq);
			return r < 0 ? r : -EIO;
		}
	} else {
		r = lookup_path(ns, path, &lk);
		if (r == 0 && lk->attr.type != NF3REG)
			r = -EBADMSG;
		if (r == 0)
			r = read_by(ns, &lk->fh, len, &rq);
		req_free(lk);
		if (r < 0) {
			req_free(rq);
			return r;
		}
	}
	if (rq->have_attr && rq->attr.type != NF3REG) {
		req_free(rq);
		return -EBADMSG;
	}
	memcpy(buf, rq->data, rq->datalen < len ? rq->datalen : len);
	r = (int)(rq->datalen < len ? rq->datalen : len);
	if (ret_fileid) {
		struct cent *cc = cache_get(ns, path);

		*ret_fileid = rq->have_attr ? rq->attr.fileid : cc ? cc->fileid : 0;
	}
	req_free(rq);
	return r;
}

static int nfsb_read(struct lk_bstore *bs, const char *path, void *buf, size_t len,
		     uint64_t *ret_fileid, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, read_once(ns, path, buf, len, ret_fileid));
	if (r == -EISDIR || r == -EINVAL) {
		r = -EBADMSG;
	}
	if (r == -EBADMSG)
		lk__err_set(err, "%s is not a regular file", path);
	else
		r = fail_with(ns, r, err, "cannot read", path);
	CALL_END(ns);
	return r;
}

static int stat_once(struct nfs_store *ns, const char *path, uint64_t *ret_fileid)
{
	struct req *rq = NULL;
	int r = lookup_path(ns, path, &rq);

	if (r == 0 && ret_fileid)
		*ret_fileid = rq->attr.fileid;
	req_free(rq);
	return r;
}

static int nfsb_stat(struct lk_bstore *bs, const char *path, uint64_t *ret_fileid,
		     struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, stat_once(ns, path, ret_fileid));
	r = fail_with(ns, r, err, "cannot stat", path);
	CALL_END(ns);
	return r;
}

static int nfsb_open_record(struct lk_bstore *bs, const char *dir, const char *name,
			    struct lk_bfile **ret, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct nfs_bfile *f;
	char p[PATH_BUF];
	int r;

	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->base.bs = bs;
	f->base.fd = -1;
	f->base.dirfd = -1;
	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	snprintf(f->name, sizeof(f->name), "%s", name);
	CALL_BEGIN(ns);
	/* usually the handles of the record just linked and of its
	 * directory: no request */
	r = STALE_RETRY(ns, file_handle(ns, p, &f->fh));
	if (r == 0)
		r = STALE_RETRY(ns, dir_handle(ns, dir, &f->dirfh));
	r = fail_with(ns, r, err, "cannot open record", p);
	CALL_END(ns);
	if (r < 0) {
		free(f);
		return r;
	}
	*ret = &f->base;
	return 0;
}

/*
 * FILE_SYNC: an UNSTABLE renewal could be lost by a server crash and roll
 * the record back to a state an observer has already timed. A stale handle
 * is not looked up again: the record itself is gone.
 */
static int nfsb_write_record(struct lk_bfile *bf, const void *buf, size_t len, struct lk_err *err)
{
	struct nfs_bfile *f = (struct nfs_bfile *)bf;
	struct nfs_store *ns = (struct nfs_store *)bf->bs;
	char p[2 * LK_NAME_MAX + 2];
	int r;

	if (len > NFS_MAX_IO)
		return -EFBIG;
	snprintf(p, sizeof(p), "%s/%s", f->dir, f->name);
	CALL_BEGIN(ns);
	r = write_sync(ns, &f->fh, buf, len, NULL);
	r = fail_with(ns, r, err, "cannot write record", p);
	CALL_END(ns);
	return r < 0 ? r : 0;
}

static void nfsb_close_record(struct lk_bfile *bf)
{
	free(bf);
}

/* ------------------------------------------------------------------------
 * Audit files (src/audit.c): each process writes its own file at offsets it
 * tracks. NFSv3 has no append (libnfs emulates O_APPEND with a GETATTR and
 * a WRITE, which two clients can interleave), so none is attempted. Writes
 * are UNSTABLE and never committed: a server crash can lose the last lines,
 * which an audit log can afford and a lease record cannot.
 */

/* The handle of audit file path: kept, created (offset 0), or looked up. */
static int audit_handle(struct nfs_store *ns, const char *path, int create, struct fh *ret)
{
	struct cent *c = cache_get(ns, path);
	const char *leaf;
	struct fh dir;
	struct args a;
	struct req *rq = NULL;
	int r;

	if (c && !c->isdir) {
		*ret = c->fh;
		return 0;
	}
	if (!create) {
		r = lookup_path(ns, path, &rq);
		if (r == 0 && rq->attr.type != NF3REG)
			r = -EBADMSG;
		if (r == 0)
			*ret = rq->fh;
		req_free(rq);
		return r;
	}
	r = parent_of(ns, path, &dir, &leaf);
	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.u.create.where.dir = fh_to3(&dir);
	a.u.create.where.name = (char *)leaf;
	/* UNCHECKED without a size: an existing file is opened, not truncated */
	a.u.create.how.mode = UNCHECKED;
	a.u.create.how.createhow3_u.obj_attributes.mode.set_it = 1;
	a.u.create.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = ns->file_mode;
	r = call(ns, OP_CREATE, &a, &rq);
	if (r == 0 && rq->have_attr && rq->attr.type != NF3REG)
		r = -EBADMSG;
	if (r == 0 && rq->have_fh) {
		cache_put(ns, path, &rq->fh, rq->have_attr ? &rq->attr : NULL, 0);
		*ret = rq->fh;
		req_free(rq);
		return 0;
	}
	req_free(rq);
	if (r < 0)
		return r;
	return audit_handle(ns, path, 0, ret); /* no handle in the reply */
}

static int write_at_once(struct nfs_store *ns, const char *path, uint64_t offset,
			 const void *buf, size_t len)
{
	for (int attempt = 0;; attempt++) {
		struct args a;
		struct req *rq = NULL;
		struct fh fh;
		int r = audit_handle(ns, path, offset == 0, &fh);

		if (r < 0)
			return r;
		memset(&a, 0, sizeof(a));
		a.u.write.file = fh_to3(&fh);
		a.u.write.offset = offset;
		a.u.write.count = (count3)len;
		a.u.write.stable = UNSTABLE;
		a.u.write.data.data_len = (u_int)len;
		a.u.write.data.data_val = (char *)buf;
		r = call(ns, OP_WRITE, &a, &rq);
		if (r == 0)
			r = (int)(rq->count <= len ? rq->count : len);
		req_free(rq);
		if (r != -ESTALE || attempt)
			return r;
		/* removed by a clean-up: look the name up once more */
		cache_drop(ns, path);
	}
}

static int nfsb_write_at(struct lk_bstore *bs, const char *path, uint64_t offset,
			 const void *buf, size_t len, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	if (len > NFS_MAX_IO)
		return -EFBIG;
	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, write_at_once(ns, path, offset, buf, len));
	if (r == -EBADMSG)
		lk__err_set(err, "%s is not a regular file", path);
	else
		r = fail_with(ns, r, err, "cannot write", path);
	CALL_END(ns);
	return r;
}

static int read_at_once(struct nfs_store *ns, const char *path, uint64_t offset, void *buf,
			size_t len)
{
	for (int attempt = 0;; attempt++) {
		struct args a;
		struct req *rq = NULL;
		struct fh fh;
		int r = audit_handle(ns, path, 0, &fh);

		if (r < 0)
			return r;
		memset(&a, 0, sizeof(a));
		a.rdlen = len;
		a.u.read.file = fh_to3(&fh);
		a.u.read.offset = offset;
		a.u.read.count = (count3)len;
		r = call(ns, OP_READ, &a, &rq);
		if (r == 0 && rq->have_attr && rq->attr.type != NF3REG)
			r = -EBADMSG;
		if (r == 0) {
			r = (int)rq->datalen;
			memcpy(buf, rq->data, rq->datalen);
		}
		req_free(rq);
		if (r != -ESTALE || attempt)
			return r;
		cache_drop(ns, path);
	}
}

static int nfsb_read_at(struct lk_bstore *bs, const char *path, uint64_t offset, void *buf,
			size_t len, struct lk_err *err)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	int r;

	if (len > NFS_MAX_IO)
		len = NFS_MAX_IO;
	CALL_BEGIN(ns);
	r = STALE_RETRY(ns, read_at_once(ns, path, offset, buf, len));
	if (r == -EISDIR || r == -EINVAL)
		r = -EBADMSG;
	if (r == -EBADMSG)
		lk__err_set(err, "%s is not a regular file", path);
	else
		r = fail_with(ns, r, err, "cannot read", path);
	CALL_END(ns);
	return r;
}

/* RPC requests the backend has sent on the store's connection. */
uint64_t lk__nfs_calls(struct lk_bstore *bs)
{
	return atomic_load(&((struct nfs_store *)bs)->calls);
}

/*
 * TCP data segments sent on the store's connection so far, the kernel's
 * count, for cross-checking lk__nfs_calls(): every request is small enough
 * to leave in one segment, requests sent back to back may share one, and a
 * retransmission is one more.
 */
int64_t lk__nfs_rpcs(struct lk_bstore *bs)
{
	struct nfs_store *ns = (struct nfs_store *)bs;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd, r;

	/* no lock: callers may hold the engine's mutex, which completions
	 * reported under the store's mutex take */
	fd = atomic_load(&ns->last_fd);
	r = fd >= 0 ? getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) : -1;
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
	.renew_start = nfsb_renew_start,
	.service = nfsb_service,
	.write_at = nfsb_write_at,
	.read_at = nfsb_read_at,
};
