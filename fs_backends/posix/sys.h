/* SPDX-License-Identifier: MIT */
/*
 * The posix backend reaches the kernel only through this table, so that tests
 * can replace a call (to fail with EIO or ENOSPC, say) without a mock framework
 * in production code. Production code never writes to it.
 */
#ifndef LK_POSIX_SYS_H
#define LK_POSIX_SYS_H

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

struct lk__posix_sys {
	int (*openat)(int dfd, const char *path, int flags, mode_t mode);
	int (*close)(int fd);
	int (*fstat)(int fd, struct stat *st);
	int (*fstatat)(int dfd, const char *path, struct stat *st, int flags);
	int (*fcntl_lock)(int fd, int cmd, struct flock *fl);
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*ftruncate)(int fd, off_t len);
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*munmap)(void *addr, size_t len);
	int (*msync)(void *addr, size_t len, int flags);
	int (*mkdir)(const char *path, mode_t mode);
	int (*mkdirat)(int dfd, const char *path, mode_t mode);
	int (*linkat)(int ofd, const char *from, int nfd, const char *to, int flags);
	int (*renameat)(int ofd, const char *from, int nfd, const char *to);
	int (*renameat2)(int ofd, const char *from, int nfd, const char *to, unsigned int flags);
	int (*unlinkat)(int dfd, const char *path, int flags);
	int (*fsync)(int fd);
	int (*fchmod)(int fd, mode_t mode);
	struct dirent *(*readdir)(DIR *d);
};

extern struct lk__posix_sys lk__posix_sys;

#endif
