/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the unit tests that need a real store directory: a
 * private scratch directory per test, removed again afterwards, and small
 * file utilities that report failure instead of hiding it.
 */
#ifndef LK_TEST_TUTIL_H
#define LK_TEST_TUTIL_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Create a fresh directory under $LK_TEST_TMP (or /tmp) and write its path
 * into buf. Returns 0 or -errno.
 */
int tu_mkdtemp(char *buf, size_t len);
/* Remove path and everything under it; symlinks are removed, not followed. */
int tu_rm_rf(const char *path);
/* Write exactly n bytes to path (created or truncated, mode 0600). */
int tu_write_file(const char *path, const void *data, size_t n);
/* Read up to cap bytes of path into buf; returns the byte count or -errno. */
ssize_t tu_read_file(const char *path, void *buf, size_t cap);
/* Number of entries in a directory other than "." and "..", or -errno. */
int tu_count_entries(const char *dir);
/* 1 if path exists (without following a final symlink), else 0. */
int tu_exists(const char *path);

#endif
