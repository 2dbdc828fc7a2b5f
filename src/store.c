// SPDX-License-Identifier: MIT
/*
 * Store handles: parse the location, pick the backend that serves its
 * scheme, and keep what every lock of the store shares (the host's identity,
 * the fork guard, the error text).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "engine.h"
#include "internal.h"

static const struct lk_backend *const backends[] = {
	&lk__posix_backend,
#ifdef LK_HAVE_NFS
	&lk__nfs_backend,
#endif
};

static int opts_check(const struct lk_store_opts *o, struct lk_err *err)
{
	const uint32_t known = LK_STORE_NOCREATE | LK_STORE_RDONLY | LK_STORE_EXTERNAL_ENGINE |
			       LK_STORE_NO_AUDIT;

	/* callers built before the observability fields pass their size */
	if ((o->size != LK__STORE_OPTS_V0 && o->size < sizeof(struct lk_store_opts)) ||
	    o->size > 4096) {
		lk__err_set(err, "lk_store_opts.size is %u; initialise with LK_STORE_OPTS_INIT",
			    o->size);
		return -EINVAL;
	}
	if (o->flags & ~known) {
		lk__err_set(err, "unknown store flags 0x%x", o->flags & ~known);
		return -EINVAL;
	}
	if (o->dir_mode & ~07777u || o->file_mode & ~0777u) {
		lk__err_set(err, "invalid store directory or file mode");
		return -EINVAL;
	}
	if (o->file_mode & S_IWOTH) {
		/* such a lock could be truncated under its holders; it would be
		 * refused when opened, so refuse to create it */
		lk__err_set(err, "file_mode %04o lets anyone write lock files; drop the others' "
				 "write bit",
			    o->file_mode);
		return -EINVAL;
	}
	if (o->wait_signal && (o->wait_signal < SIGRTMIN || o->wait_signal > SIGRTMAX)) {
		lk__err_set(err, "wait_signal must be a real-time signal (%d..%d)", SIGRTMIN,
			    SIGRTMAX);
		return -EINVAL;
	}
	return 0;
}

LK_API int lk_store_open_err(const char *url, const struct lk_store_opts *opts,
			     struct lk_store **ret, char *errbuf, size_t errlen)
{
	static const struct lk_store_opts defaults = LK_STORE_OPTS_INIT;
	struct lk__url_buf *u = NULL;
	const struct lk_backend *be = NULL;
	struct lk_store *st = NULL;
	struct lk_err err = {0};
	int r;

	if (!ret) {
		r = -EINVAL;
		goto fail;
	}
	if (!opts)
		opts = &defaults;
	r = opts_check(opts, &err);
	if (r < 0)
		goto fail;

	u = malloc(sizeof(*u));
	st = calloc(1, sizeof(*st));
	if (!u || !st) {
		r = -ENOMEM;
		goto fail;
	}
	r = lk__url_parse(url, u, &err);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->scheme, u->url.scheme))
			be = backends[i];
	if (!be || be->version != LK_BACKEND_VERSION) {
		lk__err_set(&err, "no backend for %s:// in this build", u->url.scheme);
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	st->be = be;
	/* only what the caller's version of the struct has; the rest stays 0 */
	memcpy(&st->opts, opts,
	       opts->size < sizeof(st->opts) ? opts->size : sizeof(st->opts));
	st->opts.size = sizeof(st->opts);
	lk__events_init(st);
	if (!st->opts.wait_signal)
		st->opts.wait_signal = SIGRTMAX - 2;
	st->url = strdup(url);
	st->path = strdup(u->url.path);
	if (!st->url || !st->path) {
		r = -ENOMEM;
		goto fail;
	}
	lk__forkguard_init(&st->fg);
	pthread_mutex_init(&st->engine_mu, NULL);
	lk__hostname(st->host, sizeof(st->host));
	{
		struct stat ns;

		/* containers share the boot id but not pids: the pid namespace
		 * completes the host identity used by the same-host fast path */
		st->pidns = stat("/proc/self/ns/pid", &ns) == 0 ? (uint64_t)ns.st_ino : 0;
	}
	if (lk__read_boot_id(st->boot_id) < 0) {
		/* Without a boot id every acquisition is treated as the first of a
		 * boot: tokens stay safe, each acquisition costs a sync. */
		memset(st->boot_id, 0, sizeof(st->boot_id));
	}
	r = be->store_open(&u->url, &st->opts, &st->bs, &err);
	if (r < 0)
		goto fail;
	r = lk__audit_open(st, &st->audit);
	if (r < 0) {
		be->store_close(st->bs);
		goto fail;
	}
	free(u);
	*ret = st;
	return 0;
fail:
	if (errbuf && errlen)
		lk__msg_set(errbuf, errlen, "%s", err.msg[0] ? err.msg : lk_strerror(r));
	free(u);
	if (st) {
		lk__forkguard_free(&st->fg);
		free(st->url);
		free(st->path);
		free(st);
	}
	return r;
}

LK_API int lk_store_open(const char *url, const struct lk_store_opts *opts, struct lk_store **ret)
{
	return lk_store_open_err(url, opts, ret, NULL, 0);
}

LK_API void lk_store_close(struct lk_store *st)
{
	if (!st)
		return;
	if (st->engine && lk__forkguard_ok(&st->fg) && lk__engine_free(st->engine) < 0) {
		/* storage I/O is stuck in a worker that still uses the backend:
		 * leave both allocated rather than free what it may touch */
		lk__log(st, LK_LOG_WARNING, "store %s: closed with storage I/O still stuck; "
					     "its memory is left allocated", st->path);
		st->bs = NULL;
	}
	if (st->bs)
		st->be->store_close(st->bs);
	lk__audit_free(st->audit);
	lk__forkguard_free(&st->fg);
	free(st->url);
	free(st->path);
	free(st);
}

LK_API const char *lk_store_errmsg(const struct lk_store *st)
{
	return st ? st->errmsg : "";
}

LK_API const char *lk_store_path(const struct lk_store *st)
{
	return st ? st->path : NULL;
}

LK_API const char *lk_store_engine(const struct lk_store *st)
{
	if (!st || !st->engine)
		return "none";
	return st->engine->ops->name;
}

static void store_fail(struct lk_store *st, const struct lk_err *e, int r)
{
	lk__msg_set(st->errmsg, sizeof(st->errmsg), "%s", e->msg[0] ? e->msg : lk_strerror(r));
}

LK_API int lk_lock_status(struct lk_store *st, const char *name, struct lk_status *ret)
{
	struct lk_err err = {0};
	struct lk_status s;
	int r;

	if (!st || !ret || ret->size < sizeof(struct lk_status))
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg))
		return -ECHILD;
	if (lk_name_valid(name) < 0) {
		lk__msg_set(st->errmsg, sizeof(st->errmsg),
			    "invalid lock name '%.64s': use 1-255 of [A-Za-z0-9._-], not starting with '.'",
			    name ? name : "(null)");
		return -EINVAL;
	}
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	r = st->be->entry(st->bs, name, &err);
	if (r < 0)
		goto fail;
	if (r == LK_ENTRY_NONE) {
		*ret = s;
		return 0;
	}
	if (r == LK_ENTRY_LEASE) {
		if (!(st->be->caps & LK_CAP_LEASE)) {
			r = -EOPNOTSUPP;
			goto fail;
		}
		r = lk__lease_status(st, name, &s, &err);
		if (r < 0)
			goto fail;
		*ret = s;
		return 0;
	}
	if (!st->be->klock_status) {
		r = -EOPNOTSUPP;
		goto fail;
	}
	r = st->be->klock_status(st->bs, name, &s, &err);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	store_fail(st, &err, r);
	return r;
}

LK_API int lk_store_list(struct lk_store *st, lk_list_fn fn, void *userdata)
{
	struct lk_err err = {0};
	struct lk__names l = {0};
	int r;

	if (!st || !fn)
		return -EINVAL;
	if (!lk__forkguard_ok(&st->fg))
		return -ECHILD;
	r = st->be->list(st->bs, lk__names_add, &l, &err);
	if (r < 0) {
		store_fail(st, &err, r);
		goto out;
	}
	lk__names_sort(&l);
	for (size_t i = 0; i < l.n; i++) {
		r = fn(l.v[i], userdata);
		if (r)
			break;
	}
out:
	lk__names_free(&l);
	return r;
}
