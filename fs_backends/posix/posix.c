// SPDX-License-Identifier: MIT
/*
 * The posix backend: a store is a directory on a local (or mounted)
 * filesystem, and a kernel-mode lock is a regular file in it locked with
 * open file description (OFD) locks.
 *
 * Why OFD locks: classic POSIX fcntl() locks belong to the process, so they
 * cannot exclude two threads of one process and are silently dropped when the
 * process closes *any* descriptor of the file (SQLite's os_unix.c tells that
 * story at length). flock() locks belong to the open file description but do
 * not work over NFS on older kernels and have no byte ranges. OFD locks belong
 * to the open file description, have byte ranges, and die with the last
 * descriptor of it, so a crashed holder frees the lock at once.
 *
 * Byte 0 is the lock itself (write lock = exclusive, read lock = shared).
 * Byte 1 serialises shared holders while they bump the token and write their
 * record, and the creator of a new file while it writes the first page; an
 * exclusive holder never needs it because holding byte 0 for writing already
 * excludes everyone who could touch the record.
 *
 * The record lives in the file's first page, mapped MAP_SHARED: the fast path
 * of an acquisition is one fcntl() to lock, a few hundred bytes copied into
 * the mapping (the next token and the holder's identity), and one fcntl() to
 * unlock at release. A pread/pwrite pair would add two syscalls to a path that
 * costs two. Mapping a file has two traps, both avoided: writing to a hole
 * can raise SIGBUS on a full filesystem, so the page is written with pwrite()
 * when the file is created; and touching a page past end of file raises
 * SIGBUS, so files whose size is not exactly one page are refused at open.
 * (A file truncated by someone else while mapped would still fault; the store
 * directory is private to its owner or group for that reason.)
 *
 * Lock files are never unlinked by this backend: unlinking a lock file that
 * someone may hold lets the next opener create a second file of the same name
 * and lock that instead (the unlink race).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "krecord.h"
#include "sys.h"

static int sys_fcntl_lock(int fd, int cmd, struct flock *fl)
{
	return fcntl(fd, cmd, fl);
}

static int sys_openat(int dfd, const char *path, int flags, mode_t mode)
{
	return openat(dfd, path, flags, mode);
}

struct lk__posix_sys lk__posix_sys = {
	.openat = sys_openat,
	.close = close,
	.fstat = fstat,
	.fstatat = fstatat,
	.fcntl_lock = sys_fcntl_lock,
	.pread = pread,
	.pwrite = pwrite,
	.ftruncate = ftruncate,
	.mmap = mmap,
	.munmap = munmap,
	.msync = msync,
	.mkdir = mkdir,
	.mkdirat = mkdirat,
	.linkat = linkat,
	.renameat = renameat,
	.renameat2 = renameat2,
	.unlinkat = unlinkat,
	.fsync = fsync,
	.fchmod = fchmod,
	.readdir = readdir,
};

#define SYS lk__posix_sys

struct posix_store {
	struct lk_bstore base;
	int dfd;
	int rdonly;
	int network;  /* a kernel-mounted network filesystem: bypass its caches */
	int shared;   /* writable by its group, not by others: see trusted() */
	mode_t file_mode;
	uid_t uid;    /* the store directory's owner and group */
	gid_t gid;
	mode_t mode;  /* and its mode, as seen at open */
	char path[];
};

struct posix_klock {
	struct lk_bklock base;
	int fd;
	uint8_t *map;
	char name[LK_NAME_MAX + 1];
};

/* ------------------------------------------------------------------------
 * Whom a store trusts.
 *
 * Whoever owns a lock file or a lock directory can delete it or change its
 * mode (even in a sticky directory), and deleting a lock that is in use
 * gives it two holders (the unlink race, below). So an entry already in the
 * store is used only if its owner could have put it there legitimately:
 *
 *  - this process's effective user, root, or the owner of the store; or
 *  - anyone, in a store shared with a group (writable by its group, not by
 *    others), when the entry belongs to that group: only the store's owner,
 *    root and members of the group can create entries there.
 *
 * and only if others cannot write it (a world-writable lock file can be
 * truncated under its holders, a world-writable lock directory can be given
 * forged generations). Anything else is refused with -EPERM, like a
 * world-writable store without the sticky bit. The checks are made with
 * fstat() on the descriptor that is then used, never on a path looked up
 * again, so the entry cannot be swapped between check and use.
 *
 * In a shared store, entries this process creates in the store's group get
 * the owner's permissions for the group as well, set with fchmod() so that a
 * member's umask cannot lock the other members out.
 */

static int trusted(const struct posix_store *ps, const char *what, const char *name,
		   const struct stat *st, struct lk_err *err)
{
	uid_t me = geteuid();

	if (st->st_mode & S_IWOTH) {
		lk__err_set(err,
			    "%s %s is writable by anyone (mode %04o); refusing it: anyone could "
			    "change it under its holders",
			    what, name, (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	if (st->st_uid == me || st->st_uid == 0 || st->st_uid == ps->uid)
		return 0;
	if (ps->shared && st->st_gid == ps->gid)
		return 0;
	lk__err_set(err,
		    "%s %s is owned by uid %u (group %u): not this user, root, the store's owner "
		    "or its group; refusing it: its owner could delete or replace it under its "
		    "holders",
		    what, name, (unsigned)st->st_uid, (unsigned)st->st_gid);
	return -EPERM;
}

/* The mode a new entry of this process gets in a shared store. */
static mode_t shared_mode(const struct posix_store *ps, int dir)
{
	if (dir)
		return 0770 | (ps->mode & S_ISGID);
	return (ps->file_mode | ((ps->file_mode & 0600) >> 3)) & 0770;
}

/* Give a new entry of ours the group's permissions in a shared store. */
static void share(const struct posix_store *ps, int fd, int dir)
{
	struct stat st;
	mode_t want;

	if (!ps->shared || SYS.fstat(fd, &st) < 0)
		return;
	if (st.st_uid != geteuid() || st.st_gid != ps->gid)
		return;
	want = shared_mode(ps, dir);
	if ((st.st_mode & 07777) != want && SYS.fchmod(fd, want) < 0) {
		/* the other members get EACCES, with a message, when they open it */
	}
}

/*
 * Names reaching the backend were validated by the core; check again here,
 * where they become paths, so that no caller can make one reach outside the
 * store. A lock name, or a lock directory being created (".n.<hex>").
 */
static int dir_name_ok(const char *name)
{
	if (lk_name_valid(name) == 0)
		return 1;
	if (!strcmp(name, ".audit"))
		return 1; /* the audit log's directory (src/audit.c) */
	if (strncmp(name, ".n.", 3) || !name[3])
		return 0;
	for (const char *p = name + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

/* An entry inside a lock directory: one path component, not "." or "..". */
static int leaf_name_ok(const char *name)
{
	return name[0] && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/') &&
	       strlen(name) <= LK_NAME_MAX;
}

static int64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* mkdir -p for the missing components of path. */
static int mkdir_p(const char *path, mode_t mode, struct lk_err *err)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf)) {
		lk__err_set(err, "store path is too long");
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != 0)
			continue;
		if (buf[i - 1] == '/')
			continue;
		buf[i] = 0;
		if (SYS.mkdir(buf, mode) < 0 && errno != EEXIST) {
			int e = errno;

			lk__err_set(err, "cannot create store directory %s: %s", buf, strerror(e));
			return -e;
		}
		buf[i] = path[i];
	}
	return 0;
}

static int posix_is_network(struct lk_bstore *bs);

static int posix_store_open(const struct lk_url *url, const struct lk_store_opts *opts,
			    struct lk_bstore **ret, struct lk_err *err)
{
	int rdonly = !!(opts->flags & LK_STORE_RDONLY);
	int create = !(opts->flags & (LK_STORE_NOCREATE | LK_STORE_RDONLY));
	struct posix_store *ps;
	struct stat st;
	int dfd, r;

	dfd = SYS.openat(AT_FDCWD, url->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0 && errno == ENOENT && create) {
		r = mkdir_p(url->path, opts->dir_mode, err);
		if (r < 0)
			return r;
		dfd = SYS.openat(AT_FDCWD, url->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	}
	if (dfd < 0) {
		r = -errno;
		if (r == -ENOENT)
			lk__err_set(err, "store %s does not exist", url->path);
		else if (r == -ENOTDIR)
			lk__err_set(err, "store %s is not a directory", url->path);
		else
			lk__err_set(err, "cannot open store %s: %s", url->path, strerror(-r));
		return r;
	}
	if (SYS.fstat(dfd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat store %s: %s", url->path, strerror(-r));
		SYS.close(dfd);
		return r;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		lk__err_set(err,
			    "store %s is world-writable without the sticky bit: anyone could "
			    "replace lock files; fix its mode (chmod o-w or +t)",
			    url->path);
		SYS.close(dfd);
		return -EPERM;
	}
	ps = calloc(1, sizeof(*ps) + strlen(url->path) + 1);
	if (!ps) {
		SYS.close(dfd);
		return -ENOMEM;
	}
	ps->base.be = &lk__posix_backend;
	ps->dfd = dfd;
	ps->network = posix_is_network(&ps->base);
	ps->rdonly = rdonly;
	ps->file_mode = opts->file_mode;
	ps->uid = st.st_uid;
	ps->gid = st.st_gid;
	ps->mode = st.st_mode;
	ps->shared = (st.st_mode & S_IWGRP) && !(st.st_mode & S_IWOTH);
	strcpy(ps->path, url->path);
	*ret = &ps->base;
	return 0;
}

static void posix_store_close(struct lk_bstore *bs)
{
	struct posix_store *ps = (struct posix_store *)bs;

	if (!ps)
		return;
	if (ps->dfd >= 0)
		SYS.close(ps->dfd);
	free(ps);
}

static int posix_entry(struct lk_bstore *bs, const char *name, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;

	if (lk_name_valid(name) < 0) {
		lk__err_set(err, "invalid lock name");
		return -EINVAL;
	}
	if (SYS.fstatat(ps->dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;

		if (e == ENOENT)
			return LK_ENTRY_NONE;
		lk__err_set(err, "cannot stat lock %s: %s", name, strerror(e));
		return -e;
	}
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		int r = trusted(ps, S_ISREG(st.st_mode) ? "lock file" : "lock directory", name, &st,
				err);

		if (r < 0)
			return r;
		return S_ISREG(st.st_mode) ? LK_ENTRY_KERNEL : LK_ENTRY_LEASE;
	}
	if (S_ISLNK(st.st_mode))
		lk__err_set(err, "lock %s is a symbolic link; refusing to follow it", name);
	else
		lk__err_set(err, "lock %s is neither a regular file nor a directory", name);
	return -EINVAL;
}

static int posix_list(struct lk_bstore *bs, lk_list_fn fn, void *userdata, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	fd = SYS.openat(ps->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		lk__err_set(err, "cannot list store %s: %s", ps->path, strerror(-r));
		return r;
	}
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		SYS.close(fd);
		return r;
	}
	/* readdir() says "error" and "end" both with NULL: tell them apart */
	while ((errno = 0, de = SYS.readdir(d))) {
		if (lk_name_valid(de->d_name) < 0)
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		r = fn(de->d_name, userdata);
		if (r)
			break;
	}
	if (!de && errno) {
		r = -errno;
		lk__err_set(err, "cannot list store %s: %s", ps->path, strerror(-r));
	}
	closedir(d);
	return r;
}

/* Take or drop an OFD lock on one byte, waiting through the handle's waiter. */
static int ofd_lock(int fd, short type, off_t byte, int64_t timeout_ms, struct lk__waiter *w)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = byte,
		.l_len = 1,
		.l_pid = 0,
	};
	int r;

	if (SYS.fcntl_lock(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES)
		return -errno;
	if (timeout_ms == 0)
		return -EWOULDBLOCK;
	if (!w) {
		/* Only for the short byte-1 section at file creation. */
		while (SYS.fcntl_lock(fd, F_OFD_SETLKW, &fl) < 0)
			if (errno != EINTR)
				return -errno;
		return 0;
	}
	r = lk__wait_begin(w, timeout_ms);
	if (r < 0)
		return r;
	for (;;) {
		r = lk__wait_check(w);
		if (r < 0)
			break;
		if (SYS.fcntl_lock(fd, F_OFD_SETLKW, &fl) == 0) {
			r = 0;
			break;
		}
		if (errno != EINTR) {
			r = -errno;
			break;
		}
	}
	lk__wait_end(w);
	return r;
}

static int ofd_unlock(int fd, off_t byte)
{
	struct flock fl = {
		.l_type = F_UNLCK,
		.l_whence = SEEK_SET,
		.l_start = byte,
		.l_len = 1,
	};

	return SYS.fcntl_lock(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Write the first page of a new (empty) lock file, under byte 1. */
static int kfile_init(struct posix_klock *k, struct lk_err *err)
{
	uint8_t page[LK_KFILE_SIZE];
	struct stat st;
	ssize_t n;
	int r;

	r = ofd_lock(k->fd, F_WRLCK, 1, -1, NULL);
	if (r < 0) {
		lk__err_set(err, "cannot lock %s to initialise it: %s", k->name, strerror(-r));
		return r;
	}
	if (SYS.fstat(k->fd, &st) < 0) {
		r = -errno;
		goto unlock;
	}
	if (st.st_size != 0)
		goto unlock; /* someone else initialised it meanwhile */

	memset(page, 0, sizeof(page));
	lk__kfile_header_encode(page);
	/* No record yet: the first acquisition seeds the token and syncs. */
	n = SYS.pwrite(k->fd, page, sizeof(page), 0);
	if (n == (ssize_t)sizeof(page) && SYS.fsync(k->fd) < 0) {
		/* a page of zeros after a power loss would be refused for good */
		n = -1;
	}
	if (n != (ssize_t)sizeof(page)) {
		r = n < 0 ? -errno : -ENOSPC;
		lk__err_set(err, "cannot write lock file %s: %s", k->name, strerror(-r));
		/* leave an empty file that the next opener initialises again */
		if (SYS.ftruncate(k->fd, 0) < 0) {
			/* nothing more to do: the size check refuses a short file */
		}
	}
unlock:
	ofd_unlock(k->fd, 1);
	return r;
}

static int posix_klock_open(struct lk_bstore *bs, const char *name, struct lk_bklock **ret,
			    struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	uint8_t hdr[LK_KFILE_HDR_SIZE];
	struct posix_klock *k;
	struct stat st;
	ssize_t n;
	int r, gone = 0;

	if (ps->rdonly) {
		lk__err_set(err, "store %s was opened read-only", ps->path);
		return -EROFS;
	}
	if (lk_name_valid(name) < 0) {
		lk__err_set(err, "invalid lock name");
		return -EINVAL;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->base.bs = bs;
	k->fd = -1;
	snprintf(k->name, sizeof(k->name), "%s", name);

again:
	k->fd = SYS.openat(ps->dfd, name,
			   O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
			   ps->file_mode);
	if (k->fd < 0) {
		r = -errno;
		if (r == -ELOOP) {
			lk__err_set(err, "lock %s is a symbolic link; refusing to follow it", name);
			r = -EINVAL;
		} else if (r == -EISDIR) {
			lk__err_set(err, "lock %s is a lease-mode lock (a directory)", name);
			r = -EINVAL;
		} else {
			lk__err_set(err, "cannot open lock %s in %s: %s", name, ps->path,
				    strerror(-r));
		}
		goto fail;
	}
	if (SYS.fstat(k->fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat lock %s: %s", name, strerror(-r));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		lk__err_set(err, "lock %s is not a regular file", name);
		r = -EINVAL;
		goto fail;
	}
	if (st.st_nlink == 0 && ++gone < 100) {
		/* removed by lockctl prune between our open and now: the name
		 * stands for a new file (or nothing) already */
		SYS.close(k->fd);
		k->fd = -1;
		goto again;
	}
	if (st.st_nlink != 1) {
		lk__err_set(err, "lock file %s has %lu hard links; refusing it", name,
			    (unsigned long)st.st_nlink);
		r = -EINVAL;
		goto fail;
	}
	r = trusted(ps, "lock file", name, &st, err);
	if (r < 0)
		goto fail;
	if (st.st_size == 0) {
		/* new, probably ours: open it to the group before others look */
		share(ps, k->fd, 0);
		r = kfile_init(k, err);
		if (r < 0)
			goto fail;
		if (SYS.fstat(k->fd, &st) < 0) {
			r = -errno;
			goto fail;
		}
	}
	n = 0;
	if (st.st_size == LK_KFILE_SIZE) {
		n = SYS.pread(k->fd, hdr, sizeof(hdr), 0);
		if (n < 0) {
			/* an I/O error says nothing about whose file it is */
			r = -errno;
			lk__err_set(err, "cannot read lock file %s: %s", name, strerror(-r));
			goto fail;
		}
	}
	if (st.st_size != LK_KFILE_SIZE || n != (ssize_t)sizeof(hdr) ||
	    lk__kfile_header_check(hdr, sizeof(hdr)) < 0) {
		lk__err_set(err, "%s/%s is not a lockkit lock file; refusing to use it", ps->path,
			    name);
		r = -EINVAL;
		goto fail;
	}
	k->map = SYS.mmap(NULL, LK_KFILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, 0);
	if (k->map == MAP_FAILED) {
		k->map = NULL;
		r = -errno;
		lk__err_set(err, "cannot map lock file %s: %s", name, strerror(-r));
		goto fail;
	}
	*ret = &k->base;
	return 0;
fail:
	if (k->fd >= 0)
		SYS.close(k->fd);
	free(k);
	return r;
}

/*
 * Removing a lock file safely (lockctl prune, posix_klock_prune below). The
 * unlink race (see the top of this file) is closed from both ends: prune
 * removes a file only while it holds the lock itself, and writes a mark into
 * the page (in the zero area after the header, which readers ignore) before
 * it unlinks. Whoever gets the lock on that file afterwards, a waiter that
 * was blocked on it or a handle opened before, holds a file that no longer
 * has a name, while a newcomer creates a new one: two holders, unless every
 * acquisition looks for the mark. The look is a read of the mapped page, no
 * system call, so the fast path stays as it is; finding the mark, the
 * acquirer unlocks, opens the name again (creating the file if need be) and
 * starts over.
 */
#define PRUNED_OFF 64
static const uint8_t pruned_mark[8] = { 'L', 'K', 'P', 'R', 'U', 'N', 'E', 'D' };

/* 1 if the file k has just locked was removed by a prune. */
static int klock_pruned(struct posix_klock *k)
{
	struct posix_store *ps = (struct posix_store *)k->base.bs;
	struct stat a, b;

	if (memcmp(k->map + PRUNED_OFF, pruned_mark, sizeof(pruned_mark)))
		return 0;
	if (SYS.fstat(k->fd, &a) < 0 || a.st_nlink == 0)
		return 1;
	if (SYS.fstatat(ps->dfd, k->name, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		return 1;
	/* still the file of that name: a prune that failed or died before its
	 * unlink left the mark; we hold the lock, so no prune runs now */
	memset(k->map + PRUNED_OFF, 0, sizeof(pruned_mark));
	return 0;
}

/* Open the lock's name again in place of a pruned file. */
static int klock_reopen(struct posix_klock *k, struct lk_err *err)
{
	struct lk_bklock *nb;
	struct posix_klock *n;
	int r = posix_klock_open(k->base.bs, k->name, &nb, err);

	if (r < 0)
		return r;
	n = (struct posix_klock *)nb;
	SYS.munmap(k->map, LK_KFILE_SIZE);
	SYS.close(k->fd);
	k->fd = n->fd;
	k->map = n->map;
	k->base.reopened++;
	free(n);
	return 0;
}

static int posix_klock_acquire(struct lk_bklock *bk, int shared, int64_t timeout_ms,
			       const struct lk_holder_info *who, struct lk__waiter *waiter,
			       uint64_t *ret_token, struct lk_err *err)
{
	struct posix_klock *k = (struct posix_klock *)bk;
	uint8_t buf[LK_KSLOT_SIZE];
	struct lk__krec cur, rec;
	uint64_t tok, res;
	int64_t now;
	int idx, sync, r;

	int64_t t0 = timeout_ms > 0 ? lk__monotonic_ns() : 0, t_left = timeout_ms;
	int reopened = 0;

again:
	r = ofd_lock(k->fd, shared ? F_RDLCK : F_WRLCK, 0, t_left, waiter);
	if (r == -EBUSY)
		lk__err_set(err,
			    "the program has its own handler for signal %d, which lockkit uses to "
			    "end waits; choose another with lk_store_opts.wait_signal",
			    waiter->signo);
	if (r < 0)
		return r;
	if (k->map[PRUNED_OFF] && klock_pruned(k)) {
		ofd_unlock(k->fd, 0);
		if (++reopened > 1000) {
			lk__err_set(err, "lock %s keeps being removed under this acquisition",
				    k->name);
			return -EBUSY;
		}
		r = klock_reopen(k, err);
		if (r < 0)
			return r;
		if (timeout_ms > 0) {
			t_left = timeout_ms - (lk__monotonic_ns() - t0) / 1000000;
			if (t_left < 1)
				t_left = 1;
		}
		goto again;
	}
	if (shared) {
		/*
		 * Other shared holders may be writing the record: take byte 1.
		 * Its holders keep it for a few microseconds, so even a "try
		 * once" waits for it (at most a second: a holder stopped inside
		 * that section must not hang us); a timed acquire waits at most
		 * what is left of its timeout.
		 */
		int64_t t1 = timeout_ms == 0 ? 1000 : timeout_ms;

		if (timeout_ms > 0) {
			t1 = timeout_ms - (lk__monotonic_ns() - t0) / 1000000;
			if (t1 < 1)
				t1 = 1;
		}
		r = ofd_lock(k->fd, F_WRLCK, 1, t1, waiter);
		if (r < 0) {
			ofd_unlock(k->fd, 0);
			return r == -ETIMEDOUT && timeout_ms == 0 ? -EWOULDBLOCK : r;
		}
	}

	now = realtime_ns();
	idx = lk__kfile_pick(k->map, LK_KFILE_SIZE, &cur);
	r = lk__ktoken_next(idx >= 0 ? &cur : NULL, who->boot_id, now, &tok, &res, &sync);
	if (r < 0) {
		lk__err_set(err, "lock %s has used up its token space", k->name);
		goto unlock;
	}
	memset(&rec, 0, sizeof(rec));
	rec.seq = (idx >= 0 ? cur.seq : 0) + 1;
	rec.token = tok;
	rec.reserved = res;
	memcpy(rec.boot_id, who->boot_id, 16);
	rec.since_ns = now;
	rec.pid = who->pid;
	rec.shared = (uint8_t)shared;
	rec.synced = sync ? 0 : 1;
	lk__label_copy(rec.host, sizeof(rec.host), who->host);
	lk__label_copy(rec.owner, sizeof(rec.owner), who->owner ? who->owner : "");
	lk__krec_encode(&rec, buf);
	if (sync) {
		uint8_t saved[2][LK_KSLOT_SIZE];

		/*
		 * The new reservation must be on stable storage before a token
		 * above the old one is handed out; both slots carry it so that
		 * whichever survives a crash knows it. If the sync fails, put the
		 * old slots back: a reservation that is not on disk must not be
		 * trusted by the next acquisition.
		 */
		memcpy(saved[0], k->map + LK_KSLOT0_OFF, LK_KSLOT_SIZE);
		memcpy(saved[1], k->map + LK_KSLOT1_OFF, LK_KSLOT_SIZE);
		memcpy(k->map + LK_KSLOT0_OFF, buf, sizeof(buf));
		memcpy(k->map + LK_KSLOT1_OFF, buf, sizeof(buf));
		if (SYS.msync(k->map, LK_KFILE_SIZE, MS_SYNC) < 0) {
			r = -errno;
			memcpy(k->map + LK_KSLOT0_OFF, saved[0], LK_KSLOT_SIZE);
			memcpy(k->map + LK_KSLOT1_OFF, saved[1], LK_KSLOT_SIZE);
			lk__err_set(err, "cannot sync lock file %s: %s", k->name, strerror(-r));
			goto unlock;
		}
		/* on disk now: say so (this mark itself needs no sync) */
		rec.synced = 1;
		lk__krec_encode(&rec, buf);
		memcpy(k->map + LK_KSLOT0_OFF, buf, sizeof(buf));
		memcpy(k->map + LK_KSLOT1_OFF, buf, sizeof(buf));
	} else {
		memcpy(k->map + (idx == 0 ? LK_KSLOT1_OFF : LK_KSLOT0_OFF), buf, sizeof(buf));
	}
	if (shared)
		ofd_unlock(k->fd, 1);
	*ret_token = tok;
	return 0;
unlock:
	if (shared)
		ofd_unlock(k->fd, 1);
	ofd_unlock(k->fd, 0);
	return r;
}

static int posix_klock_release(struct lk_bklock *bk, struct lk_err *err)
{
	struct posix_klock *k = (struct posix_klock *)bk;
	int r = ofd_unlock(k->fd, 0);

	if (r < 0)
		lk__err_set(err, "cannot unlock %s: %s", k->name, strerror(-r));
	return r;
}

static void posix_klock_close(struct lk_bklock *bk)
{
	struct posix_klock *k = (struct posix_klock *)bk;

	if (!k)
		return;
	if (k->map)
		SYS.munmap(k->map, LK_KFILE_SIZE);
	if (k->fd >= 0)
		SYS.close(k->fd);
	free(k);
}

static int posix_klock_status(struct lk_bstore *bs, const char *name, struct lk_status *ret,
			      struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	uint8_t file[LK_KFILE_READ_SIZE];
	struct flock fl;
	struct lk__krec rec;
	struct stat st;
	ssize_t n;
	int fd, r = 0, idx = -1;

	fd = SYS.openat(ps->dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			return 0; /* never used: free */
		if (r == -ELOOP) {
			lk__err_set(err, "lock %s is a symbolic link; refusing to follow it", name);
			return -EINVAL;
		}
		lk__err_set(err, "cannot open lock %s: %s", name, strerror(-r));
		return r;
	}
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		lk__err_set(err, "lock %s is not a plain lock file (type or hard links)", name);
		r = -EINVAL;
		goto out;
	}
	r = trusted(ps, "lock file", name, &st, err);
	if (r < 0)
		goto out;
	ret->mode = LK_MODE_KERNEL;
	ret->exists = 1;

	for (int attempt = 0; attempt < 50; attempt++) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = 0;
		fl.l_len = 1;
		if (SYS.fcntl_lock(fd, F_OFD_GETLK, &fl) < 0) {
			r = -errno;
			lk__err_set(err, "cannot test lock %s: %s", name, strerror(-r));
			goto out;
		}
		ret->held = fl.l_type != F_UNLCK;
		ret->shared = fl.l_type == F_RDLCK;
		if (st.st_size == 0 && !ret->held)
			goto out; /* being created, never held */
		memset(file, 0, sizeof(file));
		n = SYS.pread(fd, file, sizeof(file), 0);
		if (n < 0) {
			r = -errno;
			lk__err_set(err, "cannot read lock %s: %s", name, strerror(-r));
			goto out;
		}
		if (n < (ssize_t)LK_KFILE_HDR_SIZE || lk__kfile_header_check(file, sizeof(file)) < 0) {
			if (st.st_size == 0) {
				/* the creator is writing the first page */
				usleep(1000);
				SYS.fstat(fd, &st);
				continue;
			}
			lk__err_set(err, "%s/%s is not a lockkit lock file", ps->path, name);
			r = -EINVAL;
			goto out;
		}
		idx = lk__kfile_pick(file, sizeof(file), &rec);
		if (idx >= 0 || !ret->held)
			break;
		/* held and no valid record yet: a holder may be writing it */
		usleep(1000);
	}
	if (idx >= 0) {
		ret->token = rec.token;
		lk__label_copy(ret->holder.owner, sizeof(ret->holder.owner), rec.owner);
		lk__label_copy(ret->holder.host, sizeof(ret->holder.host), rec.host);
		ret->holder.pid = rec.pid;
		ret->holder.since_ns = rec.since_ns;
	} else if (ret->held) {
		lk__err_set(err, "lock %s is held but its record cannot be read", name);
		r = -EBADMSG;
	}
out:
	SYS.close(fd);
	return r;
}

/*
 * lockctl prune, kernel mode: remove a lock file nobody holds. Everything
 * happens under the file's own lock, taken without waiting, so no holder can
 * exist meanwhile; the name must still lead to the file locked (nothing was
 * swapped in); the mark goes into the page before the unlink, so that
 * waiters and idle handles of this file open the name again when they get
 * the lock (klock_pruned() above). Closing the descriptor at the end drops
 * the lock.
 */
static int posix_klock_prune(struct lk_bstore *bs, const char *name, int64_t older_than_ms,
			     uint64_t *ret_token, int64_t *ret_last_ns, char *why, size_t why_len,
			     struct lk_err *err)
{
	static const uint8_t zero[sizeof(pruned_mark)];
	struct posix_store *ps = (struct posix_store *)bs;
	uint8_t file[LK_KFILE_READ_SIZE];
	struct lk__krec rec;
	struct stat st, now;
	int64_t last;
	ssize_t n;
	int fd, r;

	if (ps->rdonly) {
		lk__err_set(err, "store %s was opened read-only", ps->path);
		return -EROFS;
	}
	if (lk_name_valid(name) < 0) {
		lk__err_set(err, "invalid lock name");
		return -EINVAL;
	}
	fd = SYS.openat(ps->dfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT) {
			snprintf(why, why_len, "gone already");
			return 0;
		}
		if (r == -ELOOP) {
			lk__err_set(err, "lock %s is a symbolic link; refusing to follow it", name);
			return -EINVAL;
		}
		lk__err_set(err, "cannot open lock %s: %s", name, strerror(-r));
		return r;
	}
	r = 0;
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat lock %s: %s", name, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		snprintf(why, why_len, "not a plain lock file (type or hard links)");
		goto out;
	}
	r = trusted(ps, "lock file", name, &st, err);
	if (r < 0)
		goto out;
	if (st.st_size != LK_KFILE_SIZE) {
		snprintf(why, why_len, "being created, or not a lockkit lock file");
		goto out;
	}
	r = ofd_lock(fd, F_WRLCK, 0, 0, NULL);
	if (r == 0)
		r = ofd_lock(fd, F_WRLCK, 1, 0, NULL);
	if (r == -EWOULDBLOCK) {
		snprintf(why, why_len, "held");
		r = 0;
		goto out;
	}
	if (r < 0) {
		lk__err_set(err, "cannot lock %s: %s", name, strerror(-r));
		goto out;
	}
	if (SYS.fstatat(ps->dfd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_dev != st.st_dev ||
	    now.st_ino != st.st_ino) {
		snprintf(why, why_len, "replaced meanwhile");
		goto out;
	}
	n = SYS.pread(fd, file, sizeof(file), 0);
	if (n < (ssize_t)sizeof(file) || lk__kfile_header_check(file, sizeof(file)) < 0) {
		snprintf(why, why_len, "not a lockkit lock file");
		goto out;
	}
	last = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (lk__kfile_pick(file, sizeof(file), &rec) >= 0) {
		*ret_token = rec.token;
		if (rec.since_ns > last)
			last = rec.since_ns;
	}
	*ret_last_ns = last;
	if (older_than_ms >= 0 && realtime_ns() - last < older_than_ms * 1000000) {
		snprintf(why, why_len, "used %llds ago",
			 (long long)((realtime_ns() - last) / 1000000000));
		goto out;
	}
	if (SYS.pwrite(fd, pruned_mark, sizeof(pruned_mark), PRUNED_OFF) !=
	    (ssize_t)sizeof(pruned_mark)) {
		r = errno ? -errno : -EIO;
		lk__err_set(err, "cannot mark lock %s: %s", name, strerror(-r));
		goto out;
	}
	if (SYS.unlinkat(ps->dfd, name, 0) < 0) {
		r = -errno;
		lk__err_set(err, "cannot remove lock %s: %s", name, strerror(-r));
		if (SYS.pwrite(fd, zero, sizeof(zero), PRUNED_OFF) < 0) {
			/* the next acquirer finds the name still there and clears it */
		}
		goto out;
	}
	r = 1;
out:
	SYS.close(fd);
	return r;
}

/* ------------------------------------------------------------------------
 * Lease mode: namespace operations.
 *
 * Paths are "<lock>" or "<lock>/<entry>". The lock directory is opened with
 * O_NOFOLLOW | O_DIRECTORY and every operation is made relative to that
 * descriptor, so a symbolic link planted in place of a lock directory is
 * refused instead of followed (O_NOFOLLOW alone protects only the last
 * component of a path).
 */

struct at {
	int dfd;
	int close;
	const char *base;
};

/*
 * Open lock directory dir (relative to the store, never through a symbolic
 * link) and check, on the descriptor, that the store may trust it.
 */
static int lockdir_open(struct posix_store *ps, const char *dir, struct lk_err *err)
{
	struct stat st;
	int fd, r;

	if (!dir_name_ok(dir)) {
		lk__err_set(err, "invalid lock directory name");
		return -EINVAL;
	}
	fd = SYS.openat(ps->dfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP || r == -ENOTDIR) {
			lk__err_set(err, "lock %s is not a directory (or is a symbolic link)", dir);
			return -EINVAL;
		}
		if (r != -ENOENT)
			lk__err_set(err, "cannot open lock directory %s in %s: %s", dir, ps->path,
				    strerror(-r));
		return r;
	}
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat lock directory %s: %s", dir, strerror(-r));
		SYS.close(fd);
		return r;
	}
	r = trusted(ps, "lock directory", dir, &st, err);
	if (r < 0) {
		SYS.close(fd);
		return r;
	}
	return fd;
}

static int at_open(struct posix_store *ps, const char *path, struct at *ret, struct lk_err *err)
{
	const char *slash = strchr(path, '/');
	char dir[LK_NAME_MAX + 1];
	size_t n;

	ret->dfd = ps->dfd;
	ret->close = 0;
	ret->base = path;
	if (!slash) {
		if (!dir_name_ok(path)) {
			lk__err_set(err, "invalid lock directory name");
			return -EINVAL;
		}
		return 0;
	}
	n = (size_t)(slash - path);
	if (n >= sizeof(dir) || !leaf_name_ok(slash + 1)) {
		lk__err_set(err, "invalid path in a lock directory");
		return -EINVAL;
	}
	memcpy(dir, path, n);
	dir[n] = 0;
	ret->dfd = lockdir_open(ps, dir, err);
	if (ret->dfd < 0)
		return ret->dfd;
	ret->close = 1;
	ret->base = slash + 1;
	return 0;
}

static void at_close(struct at *a)
{
	if (a->close)
		SYS.close(a->dfd);
}

static int posix_is_network(struct lk_bstore *bs)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct statfs sf;

	if (fstatfs(ps->dfd, &sf) < 0)
		return 0;
	switch ((unsigned long)sf.f_type) {
	case 0x6969UL:     /* NFS */
	case 0x517bUL:     /* SMB */
	case 0xff534d42UL: /* CIFS */
	case 0xfe534d42UL: /* SMB2 */
	case 0x00c36400UL: /* Ceph */
	case 0x65735546UL: /* FUSE (sshfs and friends) */
	case 0x5346414fUL: /* AFS */
	case 0x01161970UL: /* GFS2 */
	case 0x7461636fUL: /* OCFS2 */
	case 0x01021997UL: /* 9P */
	case 0x0bd00bd0UL: /* Lustre */
		return 1;
	default:
		return 0;
	}
}

static int posix_mkdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct at a;
	int r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	r = SYS.mkdirat(a.dfd, a.base, 0700 | (ps->file_mode & 0070 ? 0070 : 0)) < 0 ? -errno : 0;
	if (r < 0 && r != -EEXIST)
		lk__err_set(err, "cannot create lock directory %s in %s: %s", path, ps->path,
			    strerror(-r));
	if (r == 0 && ps->shared) {
		/* not yet visible under its lock name: widen it before it is */
		int fd = SYS.openat(a.dfd, a.base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
				    0);

		if (fd >= 0) {
			share(ps, fd, 1);
			SYS.close(fd);
		}
	}
	at_close(&a);
	return r;
}

static int posix_rmdir(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct at a;
	int r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	r = SYS.unlinkat(a.dfd, a.base, AT_REMOVEDIR) < 0 ? -errno : 0;
	if (r < 0)
		lk__err_set(err, "cannot remove %s: %s", path, strerror(-r));
	at_close(&a);
	return r;
}

static int posix_write_new(struct lk_bstore *bs, const char *path, const void *buf, size_t len,
			   uint64_t *ret_fileid, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;
	struct at a;
	ssize_t n;
	int fd, r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	fd = SYS.openat(a.dfd, a.base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			ps->file_mode);
	if (fd < 0) {
		r = -errno;
		lk__err_set(err, "cannot create %s: %s", path, strerror(-r));
		goto out;
	}
	/* created by us (O_EXCL) and not yet linked anywhere others look */
	share(ps, fd, 0);
	n = SYS.pwrite(fd, buf, len, 0);
	if (n != (ssize_t)len) {
		r = n < 0 ? -errno : -ENOSPC;
		lk__err_set(err, "cannot write %s: %s", path, strerror(-r));
	} else if (SYS.fsync(fd) < 0) {
		r = -errno;
		lk__err_set(err, "cannot sync %s: %s", path, strerror(-r));
	} else if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat %s: %s", path, strerror(-r));
	} else {
		*ret_fileid = (uint64_t)st.st_ino;
	}
	SYS.close(fd);
	if (r < 0)
		SYS.unlinkat(a.dfd, a.base, 0);
out:
	at_close(&a);
	return r;
}

static int posix_link(struct lk_bstore *bs, const char *from, const char *to, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct at a, b;
	int r = at_open(ps, from, &a, err);

	if (r < 0)
		return r;
	r = at_open(ps, to, &b, err);
	if (r < 0) {
		at_close(&a);
		return r;
	}
	r = SYS.linkat(a.dfd, a.base, b.dfd, b.base, 0) < 0 ? -errno : 0;
	if (r < 0 && r != -EEXIST)
		lk__err_set(err, "cannot link %s to %s: %s", from, to, strerror(-r));
	/* A claimed generation must survive a power loss, or its token could
	 * be handed out again: sync the directory that holds the new name. */
	if (r == 0 && SYS.fsync(b.dfd) < 0) {
		r = -errno;
		lk__err_set(err, "cannot sync the directory of %s: %s", to, strerror(-r));
	}
	at_close(&b);
	at_close(&a);
	return r;
}

static int posix_rename(struct lk_bstore *bs, const char *from, const char *to,
			struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct at a, b;
	int r = at_open(ps, from, &a, err);

	if (r < 0)
		return r;
	r = at_open(ps, to, &b, err);
	if (r < 0) {
		at_close(&a);
		return r;
	}
	/* Never replace: where the filesystem can say so, ask it. */
	r = SYS.renameat2(a.dfd, a.base, b.dfd, b.base, RENAME_NOREPLACE) < 0 ? -errno : 0;
	if (r == -EINVAL || r == -ENOSYS)
		r = SYS.renameat(a.dfd, a.base, b.dfd, b.base) < 0 ? -errno : 0;
	if (r == -ENOTEMPTY)
		r = -EEXIST;
	if (r < 0 && r != -EEXIST)
		lk__err_set(err, "cannot rename %s to %s: %s", from, to, strerror(-r));
	if (r == 0)
		SYS.fsync(b.dfd); /* a new lock directory, durable before use */
	at_close(&b);
	at_close(&a);
	return r;
}

static int posix_unlink(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct at a;
	int r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	r = SYS.unlinkat(a.dfd, a.base, 0) < 0 ? -errno : 0;
	if (r < 0 && r != -ENOENT)
		lk__err_set(err, "cannot remove %s: %s", path, strerror(-r));
	at_close(&a);
	return r;
}

static int posix_read(struct lk_bstore *bs, const char *path, void *buf, size_t len,
		      uint64_t *ret_fileid, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;
	struct at a;
	ssize_t n;
	int fd, r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	/*
	 * On a kernel-mounted network filesystem the client may answer a read
	 * from its page cache; expiry decisions must see what the server has,
	 * so records are read with O_DIRECT there (NFS allows unaligned direct
	 * I/O). Local filesystems have one cache, which is the truth.
	 */
	fd = SYS.openat(a.dfd, a.base,
			O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY |
				(ps->network ? O_DIRECT : 0),
			0);
	if (fd < 0 && ps->network && errno == EINVAL)
		fd = SYS.openat(a.dfd, a.base,
				O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP)
			lk__err_set(err, "%s is a symbolic link; refusing to follow it", path);
		else if (r != -ENOENT)
			lk__err_set(err, "cannot open %s: %s", path, strerror(-r));
		goto out;
	}
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat %s: %s", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode)) {
		lk__err_set(err, "%s is not a regular file", path);
		r = -EBADMSG;
	} else {
		n = SYS.pread(fd, buf, len, 0);
		r = n < 0 ? -errno : (int)n;
		if (r < 0)
			lk__err_set(err, "cannot read %s: %s", path, strerror(-r));
		if (ret_fileid)
			*ret_fileid = (uint64_t)st.st_ino;
	}
	SYS.close(fd);
out:
	at_close(&a);
	return r;
}

static int posix_stat(struct lk_bstore *bs, const char *path, uint64_t *ret_fileid,
		      struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;
	struct at a;
	int r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	r = SYS.fstatat(a.dfd, a.base, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (r < 0 && r != -ENOENT)
		lk__err_set(err, "cannot stat %s: %s", path, strerror(-r));
	if (r == 0 && ret_fileid)
		*ret_fileid = (uint64_t)st.st_ino;
	at_close(&a);
	return r;
}

static int posix_readdir(struct lk_bstore *bs, const char *path, lk_list_fn fn, void *userdata,
			 struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	if (!path[0]) {
		/* the store itself: lockkit's own entries in the making too */
		fd = SYS.openat(ps->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			lk__err_set(err, "cannot list store %s: %s", ps->path, strerror(-r));
			return r;
		}
	} else {
		fd = lockdir_open(ps, path, err);
		if (fd < 0)
			return fd;
	}
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		lk__err_set(err, "cannot list lock directory %s: %s", path, strerror(-r));
		SYS.close(fd);
		return r;
	}
	/* a listing cut short by an error could hide the newest generation,
	 * and an older one would then be judged: never end it silently */
	while ((errno = 0, de = SYS.readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		r = fn(de->d_name, userdata);
		if (r)
			break;
	}
	if (!de && errno) {
		r = -errno;
		lk__err_set(err, "cannot list lock directory %s: %s", path, strerror(-r));
	}
	closedir(d);
	return r;
}

static int posix_open_record(struct lk_bstore *bs, const char *dir, const char *name,
			     struct lk_bfile **ret, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct lk_bfile *f;
	struct stat st;
	int r, ldfd;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->bs = bs;
	f->fd = -1;
	/* Probes are made relative to the store (one descriptor for every
	 * lease: a process may hold thousands). */
	f->dirfd = ps->dfd;
	if (!leaf_name_ok(name)) {
		free(f);
		lk__err_set(err, "invalid record name");
		return -EINVAL;
	}
	ldfd = lockdir_open(ps, dir, err);
	if (ldfd < 0) {
		free(f);
		return ldfd;
	}
	/* renewals must reach the server of a network filesystem, not its cache */
	f->fd = SYS.openat(ldfd, name,
			   O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (ps->network ? O_DSYNC : 0),
			   0);
	SYS.close(ldfd);
	if (f->fd < 0) {
		r = -errno;
		goto fail;
	}
	if (SYS.fstat(f->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EBADMSG;
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	lk__err_set(err, "cannot open record %s/%s: %s", dir, name, strerror(-r));
	if (f->fd >= 0)
		SYS.close(f->fd);
	free(f);
	return r;
}

static int posix_write_record(struct lk_bfile *f, const void *buf, size_t len, struct lk_err *err)
{
	ssize_t n = SYS.pwrite(f->fd, buf, len, 0);

	if (n == (ssize_t)len)
		return 0;
	n = n < 0 ? -errno : -EIO;
	lk__err_set(err, "cannot write lease record: %s", strerror((int)-n));
	return (int)n;
}

static void posix_close_record(struct lk_bfile *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		SYS.close(f->fd);
	free(f);
}

/*
 * Audit files (src/audit.c): one pwrite at the writer's own offset, never
 * O_APPEND, since the same files may be written over NFS where appending
 * is not atomic. Only offset 0 may create the file: a file removed by the
 * audit log's clean-up must not come back with a hole at its start.
 */
static int posix_write_at(struct lk_bstore *bs, const char *path, uint64_t offset,
			  const void *buf, size_t len, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;
	struct at a;
	ssize_t n;
	int fd, r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	fd = SYS.openat(a.dfd, a.base,
			O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY |
				(offset == 0 ? O_CREAT : 0),
			ps->file_mode);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOENT)
			lk__err_set(err, "cannot open %s: %s", path, strerror(-r));
		goto out;
	}
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat %s: %s", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode)) {
		lk__err_set(err, "%s is not a regular file", path);
		r = -EBADMSG;
	} else {
		if (offset == 0)
			share(ps, fd, 0);
		n = SYS.pwrite(fd, buf, len, (off_t)offset);
		r = n < 0 ? -errno : (int)n;
		if (r < 0)
			lk__err_set(err, "cannot write %s: %s", path, strerror(-r));
	}
	SYS.close(fd);
out:
	at_close(&a);
	return r;
}

static int posix_read_at(struct lk_bstore *bs, const char *path, uint64_t offset, void *buf,
			 size_t len, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	struct stat st;
	struct at a;
	ssize_t n;
	int fd, r = at_open(ps, path, &a, err);

	if (r < 0)
		return r;
	if (len > INT_MAX)
		len = INT_MAX;
	fd = SYS.openat(a.dfd, a.base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
			0);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP) {
			lk__err_set(err, "%s is a symbolic link; refusing to follow it", path);
			r = -EBADMSG;
		} else if (r != -ENOENT) {
			lk__err_set(err, "cannot open %s: %s", path, strerror(-r));
		}
		goto out;
	}
	if (SYS.fstat(fd, &st) < 0) {
		r = -errno;
		lk__err_set(err, "cannot stat %s: %s", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode)) {
		lk__err_set(err, "%s is not a regular file", path);
		r = -EBADMSG;
	} else {
		n = SYS.pread(fd, buf, len, (off_t)offset);
		r = n < 0 ? -errno : (int)n;
		if (r < 0)
			lk__err_set(err, "cannot read %s: %s", path, strerror(-r));
	}
	SYS.close(fd);
out:
	at_close(&a);
	return r;
}

static int posix_watch(struct lk_bstore *bs, const char *path, struct lk_err *err)
{
	struct posix_store *ps = (struct posix_store *)bs;
	char p[64 + LK_NAME_MAX];
	int fd;

	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", ps->dfd, path);
	if (inotify_add_watch(fd, p,
			      IN_CREATE | IN_MODIFY | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE |
				      IN_ATTRIB | IN_DONT_FOLLOW | IN_ONLYDIR) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

const struct lk_backend lk__posix_backend = {
	.version = LK_BACKEND_VERSION,
	.name = "posix",
	.scheme = "file",
	.caps = LK_CAP_KERNEL_LOCKS | LK_CAP_LEASE | LK_CAP_LOCAL,
	.store_open = posix_store_open,
	.store_close = posix_store_close,
	.list = posix_list,
	.entry = posix_entry,
	.klock_open = posix_klock_open,
	.klock_acquire = posix_klock_acquire,
	.klock_release = posix_klock_release,
	.klock_close = posix_klock_close,
	.klock_status = posix_klock_status,
	.is_network = posix_is_network,
	.mkdir = posix_mkdir,
	.rmdir = posix_rmdir,
	.write_new = posix_write_new,
	.link = posix_link,
	.rename = posix_rename,
	.unlink = posix_unlink,
	.read = posix_read,
	.stat = posix_stat,
	.readdir = posix_readdir,
	.open_record = posix_open_record,
	.write_record = posix_write_record,
	.close_record = posix_close_record,
	.watch = posix_watch,
	.write_at = posix_write_at,
	.read_at = posix_read_at,
	.klock_prune = posix_klock_prune,
};
