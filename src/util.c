// SPDX-License-Identifier: MIT
/*
 * Small pure helpers: lock names, durations, store URLs, error text, and the
 * host facts (boot id, host name, fork detection) that records carry.
 *
 * Parsers here see untrusted input from command lines and configuration, so
 * each one checks lengths before copying and rejects rather than guesses.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"

LK_API const char *lk_version(void)
{
	return LK_VERSION_STRING;
}

void lk__msg_set(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

void lk__err_set(struct lk_err *e, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

size_t lk__label_len(const char *s, size_t cap)
{
	size_t n;

	if (!s || !cap)
		return 0;
	n = strnlen(s, cap - 1);
	if (n == cap - 1 && s[n])
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	return n;
}

void lk__label_copy(char *dst, size_t cap, const char *src)
{
	size_t n = lk__label_len(src, cap);

	if (!cap)
		return;
	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

LK_API int lk_name_valid(const char *name)
{
	size_t n;

	if (!name || !name[0] || name[0] == '.')
		return -EINVAL;
	for (n = 0; name[n]; n++) {
		unsigned char c = (unsigned char)name[n];

		if (n >= LK_NAME_MAX)
			return -EINVAL;
		if (!(isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-')))
			return -EINVAL;
	}
	return 0;
}

LK_API int lk_parse_duration_ms(const char *s, uint64_t *ret_ms)
{
	uint64_t whole = 0, unit_us, carry = 0;
	const char *p = s, *frac = p;
	size_t nfrac = 0;
	int digits = 0, overflow = 0, part = 0;
	unsigned __int128 us;

	if (!s)
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		/* keep reading: text that is not a duration at all is -EINVAL,
		 * however long its number */
		if (whole > (UINT64_MAX - 9) / 10)
			overflow = 1;
		else
			whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		frac = ++p;
		for (; *p >= '0' && *p <= '9'; p++, digits++)
			nfrac++;
	}
	if (!digits)
		return -EINVAL;
	if (!*p || !strcmp(p, "s"))
		unit_us = 1000000;
	else if (!strcmp(p, "ms"))
		unit_us = 1000;
	else if (!strcmp(p, "us"))
		unit_us = 1;
	else if (!strcmp(p, "m"))
		unit_us = 60000000;
	else if (!strcmp(p, "h"))
		unit_us = 3600000000ull;
	else
		return -EINVAL;
	if (overflow)
		return -ERANGE;

	/*
	 * The fraction times the unit, exact however many digits it has:
	 * multiply the digit string by unit_us from its last digit, as on
	 * paper. What carries out of the first digit is the fraction's whole
	 * µs; a non-zero digit left below it is a part of a µs. The result is
	 * rounded up once, at the end, so that "0.0001s" is 1 ms and
	 * "0.999999999999999ms" is 1 ms, not 2.
	 */
	for (size_t i = nfrac; i-- > 0;) {
		uint64_t t = (uint64_t)(frac[i] - '0') * unit_us + carry;

		part |= t % 10 != 0;
		carry = t / 10;
	}
	us = (unsigned __int128)whole * unit_us + carry;
	us = us / 1000 + (us % 1000 != 0 || part);
	if (us > INT64_MAX)
		return -ERANGE;
	*ret_ms = (uint64_t)us;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode src[0..n) into dst (size dstlen); NUL bytes are refused. */
static int pct_decode(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)src[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= n)
				return -EINVAL;
			h = hexval((unsigned char)src[i + 1]);
			l = hexval((unsigned char)src[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h * 16 + l;
			if (c == 0)
				return -EINVAL;
			i += 2;
		}
		if (o + 1 >= dstlen)
			return -ENAMETOOLONG;
		dst[o++] = (char)c;
	}
	dst[o] = 0;
	return 0;
}

int lk__url_parse(const char *s, struct lk__url_buf *ret, struct lk_err *err)
{
	const char *colon, *rest;
	size_t n;

	memset(&ret->url, 0, sizeof(ret->url));
	if (!s || !*s) {
		lk__err_set(err, "empty store location");
		return -EINVAL;
	}
	n = strlen(s);
	if (n >= 4096) {
		lk__err_set(err, "store location is too long");
		return -ENAMETOOLONG;
	}
	colon = strstr(s, "://");
	if (!colon || strchr(s, '/') < colon) {
		/* a plain path */
		memcpy(ret->buf, s, n + 1);
		ret->url.scheme = "file";
		ret->url.path = ret->buf;
		return 0;
	}
	for (const char *p = s; p < colon; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')) {
			lk__err_set(err, "malformed store URL '%s'", s);
			return -EINVAL;
		}
	}
	rest = colon + 3;
	if ((size_t)(colon - s) == 4 && !strncasecmp(s, "file", 4)) {
		const char *slash = strchr(rest, '/');
		int r;

		if (!slash) {
			lk__err_set(err, "file URL '%s' has no path", s);
			return -EINVAL;
		}
		if (slash != rest && !((size_t)(slash - rest) == 9 && !strncasecmp(rest, "localhost", 9))) {
			lk__err_set(err, "file URL '%s' names a host; only local paths are supported", s);
			return -EINVAL;
		}
		if (strpbrk(slash, "?#")) {
			lk__err_set(err, "file URL '%s' has a query or fragment, which means nothing here", s);
			return -EINVAL;
		}
		r = pct_decode(ret->buf, sizeof(ret->buf), slash, strlen(slash));
		if (r < 0) {
			lk__err_set(err, "file URL '%s' has a bad %%-escape", s);
			return r;
		}
		ret->url.scheme = "file";
		ret->url.path = ret->buf;
		return 0;
	}
	if ((size_t)(colon - s) == 3 && !strncasecmp(s, "nfs", 3)) {
		/* nfs://SERVER[:PORT]/EXPORT/DIR[?args]: the backend checks the
		 * arguments; here only the shape is checked. */
		const char *slash = strchr(rest, '/');
		const char *q = strchr(rest, '?');
		size_t hlen;

		if (!slash || (q && q < slash)) {
			lk__err_set(err, "nfs URL '%s' has no export path", s);
			return -EINVAL;
		}
		hlen = (size_t)(slash - rest);
		if (hlen == 0 || hlen > 255 || strpbrk(rest, "#") ||
		    memchr(rest, '@', hlen)) {
			lk__err_set(err, "nfs URL '%s' has no usable server name", s);
			return -EINVAL;
		}
		memcpy(ret->buf, s, n + 1);   /* the whole URL, for libnfs */
		memcpy(ret->buf + n + 1, rest, hlen);
		ret->buf[n + 1 + hlen] = 0;
		ret->url.scheme = "nfs";
		ret->url.path = ret->buf;      /* the full URL */
		ret->url.host = ret->buf + n + 1;
		ret->url.query = q ? ret->buf + (q - s) + 1 : NULL;
		return 0;
	}
	lk__err_set(err, "unknown store URL scheme '%.*s' (use a path, file:// or nfs://)",
		    (int)(colon - s), s);
	return -EINVAL;
}

LK_API const char *lk_strerror(int err)
{
	long e = err < 0 ? -(long)err : (long)err;

	switch (e) {
	case 0:
		return "success";
	case EWOULDBLOCK:
		return "lock is held by another owner";
	case ETIMEDOUT:
		return "timed out (waiting for the lock, or a lease not renewed in time)";
	case ESTALE:
		return "lease superseded by a newer generation (broken or taken over)";
	case EALREADY:
		return "operation already in progress";
	case ECANCELED:
		return "wait was cancelled";
	case ENOLCK:
		return "lock is not held by this handle";
	case EINVAL:
		return "invalid argument";
	case EOPNOTSUPP:
		return "operation not supported by this store or mode";
	case EPROTONOSUPPORT:
		return "store URL scheme not supported";
	case ECHILD:
		return "handle belongs to the parent process (inherited across fork)";
	case EBUSY:
		return "handle or resource busy";
	case EBADMSG:
		return "lock record is corrupted";
	case EIO:
		return "input/output error";
	case ENOMEM:
		return "out of memory";
	case EACCES:
		return "permission denied";
	case EPERM:
		return "operation not permitted";
	case ENOSPC:
		return "no space left on the store";
	case EROFS:
		return "store is read-only";
	case ENOENT:
		return "no such store or lock";
	case ENOTDIR:
		return "store path is not a directory";
	case ENAMETOOLONG:
		return "name too long";
	case ERANGE:
		return "value out of range";
	case EOVERFLOW:
		return "token space exhausted";
	case ELOOP:
		return "refusing to follow a symbolic link";
	case EHOSTUNREACH:
		return "storage server unreachable";
	default:
		return "unknown error";
	}
}

int lk__read_boot_id(uint8_t ret[16])
{
	char buf[64];
	int fd, o = 0;
	ssize_t n;

	memset(ret, 0, 16);
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	for (int i = 0; buf[i] && o < 32; i++) {
		int v = hexval((unsigned char)buf[i]);

		if (v < 0)
			continue;
		ret[o / 2] = (uint8_t)(ret[o / 2] | (o % 2 ? v : v << 4));
		o++;
	}
	return o == 32 ? 0 : -EIO;
}

void lk__hostname(char *buf, size_t len)
{
	struct utsname u;

	if (uname(&u) == 0)
		lk__label_copy(buf, len, u.nodename);
	else
		lk__label_copy(buf, len, "unknown");
}

int lk__forkguard_init(struct lk__forkguard *fg)
{
	void *p;

	fg->pid = getpid();
	fg->page = NULL;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	if (madvise(p, 4096, MADV_WIPEONFORK) < 0) {
		munmap(p, 4096);
		return 0;
	}
	fg->page = p;
	*fg->page = 1;
	return 0;
}

void lk__forkguard_free(struct lk__forkguard *fg)
{
	if (fg->page)
		munmap((void *)fg->page, 4096);
	fg->page = NULL;
}

int lk__forkguard_ok(const struct lk__forkguard *fg)
{
	if (fg->page)
		return *fg->page == 1;
	return getpid() == fg->pid;
}

int64_t lk__boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t lk__monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t lk__realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t lk__random64(void)
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	/* early boot without entropy: uniqueness, not secrecy, is what matters */
	return (uint64_t)lk__monotonic_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32;
}

uint64_t lk__pid_start(int32_t pid)
{
	char state;

	return lk__pid_stat(pid, &state);
}

uint64_t lk__pid_stat(int32_t pid, char *ret_state)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* the command name may contain anything, even ") ": skip to the last ')' */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* fields after the name start at 3 (state); starttime is field 22 */
	if (sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   ret_state, &start) != 2)
		return 0;
	return (uint64_t)start;
}

int lk__names_add(const char *name, void *names)
{
	struct lk__names *l = names;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = strdup(name);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void lk__names_sort(struct lk__names *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_names);
}

void lk__names_free(struct lk__names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
