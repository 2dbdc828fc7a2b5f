// SPDX-License-Identifier: MIT
/*
 * Fuzz target: store locations (lk__url_parse() in src/util.c, which
 * lk_store_open() calls first, and for nfs:// the argument check the nfs://
 * backend applies before it connects anywhere).
 *
 * A store location comes from a command line or a configuration file and
 * decides which directory, or which server, every lock lives in, so the
 * parser must give exactly one reading of each string and refuse the rest.
 * The target holds it to a separate statement of the rules:
 *
 *  - a plain path is taken verbatim;
 *  - a file:// URL names no host but localhost, has no query or fragment,
 *    and decodes to an absolute path without NUL bytes, escape by escape;
 *  - an nfs:// URL is passed on whole, with a non-empty server name of at
 *    most 255 bytes without '@', an absolute export path, no fragment, and
 *    its query exactly as written; the backend's check then accepts only
 *    the documented arguments, with version 3 only;
 *  - every refusal is -EINVAL or -ENAMETOOLONG with a message;
 *  - nothing depends on what the result buffer held before.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "internal.h"

static struct lk__url_buf ub1, ub2;

static int hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The path a file:// URL's text after "://" stands for, or NULL if none. */
static char *file_path(const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t hlen, o = 0;
	char *out;

	if (!slash)
		return NULL;
	hlen = (size_t)(slash - rest);
	if (hlen && !(hlen == 9 && !strncasecmp(rest, "localhost", 9)))
		return NULL;
	if (strpbrk(slash, "?#"))
		return NULL;
	out = malloc(strlen(slash) + 1);
	if (!out)
		abort();
	for (const char *p = slash; *p; p++) {
		int c = (unsigned char)*p;

		if (c == '%') {
			if (hex((unsigned char)p[1]) < 0 || hex((unsigned char)p[2]) < 0)
				goto bad;
			c = hex((unsigned char)p[1]) * 16 + hex((unsigned char)p[2]);
			if (!c)
				goto bad;
			p += 2;
		}
		out[o++] = (char)c;
	}
	out[o] = 0;
	return out;
bad:
	free(out);
	return NULL;
}

/*
 * The backend's rule for nfs:// arguments, stated on its own: NAME[=VALUE]
 * separated by '&' (a last '&' ends the list), every NAME one of the
 * documented ones, and version, if given, exactly 3.
 */
static int nfs_args_ok(const char *q)
{
	static const char *const allowed[] = { "version", "nfsport", "mountport", "uid", "gid",
					       "tcp-syncnt", "auto-traverse-mounts" };

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', n);
		size_t klen = eq ? (size_t)(eq - q) : n;
		int known = 0;

		for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
			if (strlen(allowed[i]) == klen && !strncmp(allowed[i], q, klen))
				known = 1;
		if (!known)
			return 0;
		if (klen == 7 && !strncmp(q, "version", 7)) {
			if (!(eq && n == 9 && eq[1] == '3'))
				return 0;
		} else {
			/* the others take a whole number: ports 1-65535, the
			 * traverse switch 0 or 1, ids and counts 32 bits */
			const char *v = eq ? eq + 1 : q + n;
			size_t vlen = (size_t)(q + n - v);
			unsigned long long x = 0;

			if (!vlen)
				return 0;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return 0;
				x = x * 10 + (unsigned long long)(v[i] - '0');
				if (x > 0xffffffffULL)
					x = 0x100000000ULL; /* too big, however many digits follow */
			}
			if (x > 0xffffffffULL)
				return 0;
			if ((klen == 7 && !strncmp(q, "nfsport", 7)) ||
			    (klen == 9 && !strncmp(q, "mountport", 9)))
				if (x == 0 || x > 65535)
					return 0;
			if (klen == 20 && !strncmp(q, "auto-traverse-mounts", 20) && x > 1)
				return 0;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 1;
}

static void check_refusal(int r, const struct lk_err *err, const char *what)
{
	FUZZ_CHECK(r == -EINVAL || r == -ENAMETOOLONG, "%s: refused with %d", what, r);
	FUZZ_CHECK(memchr(err->msg, 0, sizeof(err->msg)) && err->msg[0],
		   "%s: refused without a message", what);
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct lk_err err = {0}, err2 = {0};
	const char *sep, *rest;
	size_t n = strlen(s);
	int r, r2;

	memset(&ub1, 0xa5, sizeof(ub1));
	memset(&ub2, 0x5a, sizeof(ub2));
	r = lk__url_parse(s, &ub1, &err);
	r2 = lk__url_parse(s, &ub2, &err2);
	FUZZ_CHECK(r == r2, "the same text parsed to %d and %d", r, r2);
	if (r) {
		check_refusal(r, &err, "location");
		FUZZ_CHECK(!strcmp(err.msg, err2.msg), "two messages for one refusal");
	} else {
		FUZZ_CHECK(same_str(ub1.url.scheme, ub2.url.scheme) &&
				   same_str(ub1.url.path, ub2.url.path) &&
				   same_str(ub1.url.host, ub2.url.host) &&
				   same_str(ub1.url.query, ub2.url.query),
			   "the result depends on what the buffer held before");
		FUZZ_CHECK(ub1.url.scheme && ub1.url.path, "no scheme or path");
	}

	if (!n) {
		FUZZ_CHECK(r == -EINVAL, "empty location: %d", r);
		goto out;
	}
	if (n >= 4096) {
		FUZZ_CHECK(r == -ENAMETOOLONG, "%zu bytes: %d", n, r);
		goto out;
	}
	sep = strstr(s, "://");
	if (!sep || memchr(s, '/', (size_t)(sep - s))) {
		/* a plain path, verbatim */
		FUZZ_CHECK(r == 0, "plain path refused: %d (%s)", r, err.msg);
		FUZZ_CHECK(!strcmp(ub1.url.scheme, "file") && !strcmp(ub1.url.path, s),
			   "plain path not taken verbatim");
		FUZZ_CHECK(!ub1.url.host && !ub1.url.query, "plain path with host or query");
		goto out;
	}
	rest = sep + 3;
	for (const char *p = s; p < sep; p++) {
		if (!(isalnum((unsigned char)*p) || strchr("+-.", *p))) {
			FUZZ_CHECK(r == -EINVAL, "bad scheme character accepted: %d", r);
			goto out;
		}
	}
	if (sep - s == 4 && !strncasecmp(s, "file", 4)) {
		char *want = file_path(rest);

		if (!want) {
			FUZZ_CHECK(r == -EINVAL, "a file URL that names nothing gave %d", r);
			goto out;
		}
		FUZZ_CHECK(r == 0, "file URL refused: %d (%s)", r, err.msg);
		FUZZ_CHECK(!strcmp(ub1.url.scheme, "file"), "file URL, scheme %s", ub1.url.scheme);
		FUZZ_CHECK(ub1.url.path[0] == '/', "file URL gave a relative path");
		FUZZ_CHECK(!strcmp(ub1.url.path, want), "file URL decoded differently");
		FUZZ_CHECK(!ub1.url.host && !ub1.url.query, "file URL with host or query");
		free(want);
	} else if (sep - s == 3 && !strncasecmp(s, "nfs", 3)) {
		const char *slash = strchr(rest, '/');
		const char *q = strchr(rest, '?');
		size_t hlen = slash ? (size_t)(slash - rest) : 0;
		int shape_ok = slash && !(q && q < slash) && hlen && hlen <= 255 &&
			       !strchr(rest, '#') && !memchr(rest, '@', hlen);

		if (!shape_ok) {
			FUZZ_CHECK(r == -EINVAL, "a malformed nfs URL gave %d", r);
			goto out;
		}
		FUZZ_CHECK(r == 0, "nfs URL refused: %d (%s)", r, err.msg);
		FUZZ_CHECK(!strcmp(ub1.url.scheme, "nfs"), "nfs URL, scheme %s", ub1.url.scheme);
		FUZZ_CHECK(!strcmp(ub1.url.path, s), "nfs URL not passed on whole");
		FUZZ_CHECK(ub1.url.host && strlen(ub1.url.host) == hlen &&
				   !strncmp(ub1.url.host, rest, hlen),
			   "nfs server name is not the text before the path");
		FUZZ_CHECK(!strpbrk(ub1.url.host, "/?#@"), "nfs server name %s", ub1.url.host);
		/* the export path starts with '/' by construction: the server
		 * name ends at the first '/', before any '?' */
		if (q)
			FUZZ_CHECK(ub1.url.query && !strcmp(ub1.url.query, q + 1),
				   "nfs query is not the text after '?'");
		else
			FUZZ_CHECK(!ub1.url.query, "nfs query without '?'");
#ifdef LK_HAVE_NFS
		{
			struct lk_err aerr = {0};
			int ra = lk__nfs_check_args(ub1.url.query, &aerr);

			if (nfs_args_ok(ub1.url.query)) {
				FUZZ_CHECK(ra == 0, "accepted nfs arguments refused: %d (%s)", ra,
					   aerr.msg);
			} else {
				FUZZ_CHECK(ra == -EINVAL || ra == -EOPNOTSUPP,
					   "unknown or bad nfs argument accepted: %d", ra);
				FUZZ_CHECK(memchr(aerr.msg, 0, sizeof(aerr.msg)) && aerr.msg[0],
					   "nfs argument refused without a message");
			}
		}
#else
		(void)nfs_args_ok;
#endif
	} else {
		FUZZ_CHECK(r == -EINVAL, "unknown scheme accepted: %d", r);
	}
out:
	free(s);
	return 0;
}
