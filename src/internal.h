/* SPDX-License-Identifier: MIT */
/*
 * Internal declarations shared by the core and the bundled backends.
 * Nothing here is part of the public API; non-static helpers are prefixed
 * lk__ and are not exported from the shared library.
 */
#ifndef LK_INTERNAL_H
#define LK_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockkit.h"
#include "lockkit/backend.h"
#include "wait.h"

#define LK_HOST_MAX 63
#define LK_NAME_MAX 255

/* Fork detection: a page that the kernel wipes in a forked child. */
struct lk__forkguard {
	volatile uint64_t *page; /* MADV_WIPEONFORK page, or NULL */
	pid_t pid;               /* fallback when the page is not available */
};

int lk__forkguard_init(struct lk__forkguard *fg);
void lk__forkguard_free(struct lk__forkguard *fg);
/* 1 if the caller is the process that initialised fg. */
int lk__forkguard_ok(const struct lk__forkguard *fg);

struct lk_store {
	const struct lk_backend *be;
	struct lk_bstore *bs;
	struct lk_store_opts opts;
	char *url;
	char *path;
	struct lk__forkguard fg;
	char host[LK_HOST_MAX + 1];
	uint8_t boot_id[16];
	char errmsg[256];
};

struct lk_lock {
	struct lk_store *st;
	struct lk_bklock *bk;
	enum lk_mode mode;
	uint32_t flags;
	_Atomic uint64_t token; /* 0 when not held */
	struct lk__waiter waiter;
	char name[LK_NAME_MAX + 1];
	char owner[LK_OWNER_MAX + 1];
	char errmsg[256];
};

/* Error messages */
void lk__err_set(struct lk_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lk__msg_set(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Store URL parsing: fills *ret with pointers into buf (which it owns). */
struct lk__url_buf {
	struct lk_url url;
	char buf[4096 + 64];
};
int lk__url_parse(const char *s, struct lk__url_buf *ret, struct lk_err *err);

/* CRC-32C (Castagnoli) */
uint32_t lk__crc32c(uint32_t crc, const void *buf, size_t len);

/* Host facts read once per store. */
int lk__read_boot_id(uint8_t ret[16]);
void lk__hostname(char *buf, size_t len);

/* Backends bundled in this build. */
extern const struct lk_backend lk__posix_backend;

#endif
