// SPDX-License-Identifier: MIT
/*
 * Scratch directories and file helpers for the unit tests.
 *
 * Each test that touches the filesystem gets its own directory so that tests
 * can run in any order and in parallel (ctest -j) without seeing each other's
 * lock files; the directory is removed in the test's teardown, which cmocka
 * runs even when an assertion failed half-way through.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tutil.h"

int tu_mkdtemp(char *buf, size_t len)
{
	const char *base = getenv("LK_TEST_TMP");
	int n;

	if (!base || !*base)
		base = "/tmp";
	/* the scratch root may not exist yet in a fresh build tree */
	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		return -errno;
	n = snprintf(buf, len, "%s/lkunit.XXXXXX", base);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (!mkdtemp(buf))
		return -errno;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

int tu_rm_rf(const char *path)
{
	if (!path || !*path)
		return 0;
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 0;
}

int tu_write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t w;
	int r = 0;

	if (fd < 0)
		return -errno;
	if (n) {
		w = write(fd, data, n);
		if (w < 0)
			r = -errno;
		else if ((size_t)w != n)
			r = -EIO;
	}
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

ssize_t tu_read_file(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n, total = 0;

	if (fd < 0)
		return -errno;
	while ((size_t)total < cap) {
		n = read(fd, (char *)buf + total, cap - (size_t)total);
		if (n < 0) {
			n = -errno;
			close(fd);
			return n;
		}
		if (n == 0)
			break;
		total += n;
	}
	close(fd);
	return total;
}

int tu_count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int tu_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}
