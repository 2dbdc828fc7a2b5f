// SPDX-License-Identifier: MIT
/*
 * lockctl helpers: error lines, exit statuses, opening the store (with the
 * ownership check the default store needs), JSON and time formatting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lockctl.h"

const char *lockctl_lock_name;

void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("lockctl: ", stderr);
	if (lockctl_lock_name)
		fprintf(stderr, "%s: ", lockctl_lock_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

void errline(const char *fmt, ...)
{
	va_list ap;

	fputs("lockctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int exit_for_store_error(int err)
{
	switch (-err) {
	case EINVAL:
	case ENAMETOOLONG:
		return EXIT_USAGE;
	case ENOMEM:
		return EXIT_INTERNAL;
	case EIO:
	case ENOSPC:
		return EXIT_IOERR;
	default:
		return EXIT_UNAVAILABLE;
	}
}

int exit_for_lock_error(int err)
{
	switch (-err) {
	case ENOMEM:
	case EBUSY:
		return EXIT_INTERNAL;
	case EOPNOTSUPP:
	case EPROTONOSUPPORT:
	case EACCES:
	case EPERM:
	case EROFS:
	case ENOENT:
		return EXIT_UNAVAILABLE;
	default:
		return EXIT_IOERR;
	}
}

/*
 * The default store is a fixed path in a shared directory (/tmp): someone
 * else could create it first, or plant a symlink there. Use it only if it is
 * a real directory of ours that nobody else can write.
 */
static int check_default_store(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode)) {
		errline("%s%sdefault store %s is not a directory; refusing it (set LOCKCTL_STORE or -S)",
			lockctl_lock_name ? lockctl_lock_name : "", lockctl_lock_name ? ": " : "", path);
		return -EPERM;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		errline("%s%sdefault store %s is owned by uid %u or writable by others; refusing it "
			"(set LOCKCTL_STORE or -S)",
			lockctl_lock_name ? lockctl_lock_name : "", lockctl_lock_name ? ": " : "", path,
			(unsigned)st.st_uid);
		return -EPERM;
	}
	return 0;
}

int open_store(struct ctx *c, int readonly, struct lk_store **ret)
{
	struct lk_store_opts o = LK_STORE_OPTS_INIT;
	char msg[256];
	int r;

	*ret = NULL;
	if (c->store_is_default) {
		r = check_default_store(c->store);
		if (r < 0)
			return EXIT_UNAVAILABLE;
	}
	if (readonly)
		o.flags |= LK_STORE_RDONLY;
	log_setup(c, &o);
	r = lk_store_open_err(c->store, &o, ret, msg, sizeof(msg));
	if (r == -ENOENT && readonly)
		return 0; /* nothing was ever locked there */
	if (r < 0) {
		if (lockctl_lock_name)
			errline("%s: %s", lockctl_lock_name, msg);
		else
			errline("%s", msg);
		return exit_for_store_error(r);
	}
	if (c->store_is_default && !readonly) {
		r = check_default_store(c->store);
		if (r < 0) {
			lk_store_close(*ret);
			*ret = NULL;
			return EXIT_UNAVAILABLE;
		}
	}
	return 0;
}

/* JSON string with escapes; invalid UTF-8 bytes become U+FFFD. */
void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		unsigned char ch = *p;
		int n = 0;

		if (ch == '"' || ch == '\\') {
			fputc('\\', f);
			fputc(ch, f);
			p++;
			continue;
		}
		if (ch < 0x20 || ch == 0x7f) {
			fprintf(f, "\\u%04x", ch);
			p++;
			continue;
		}
		if (ch < 0x80) {
			fputc(ch, f);
			p++;
			continue;
		}
		if ((ch & 0xe0) == 0xc0 && ch >= 0xc2)
			n = 1;
		else if ((ch & 0xf0) == 0xe0)
			n = 2;
		else if ((ch & 0xf8) == 0xf0 && ch <= 0xf4)
			n = 3;
		for (int i = 1; n && i <= n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		if (!n) {
			fputs("\\ufffd", f);
			p++;
			continue;
		}
		fwrite(p, 1, (size_t)n + 1, f);
		p += n + 1;
	}
	fputc('"', f);
}

void fmt_rfc3339(char *buf, size_t len, int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", base, (long)((ns % 1000000000) / 1000));
}

int parse_duration_arg(const char *opt, const char *arg, uint64_t *ret_ms)
{
	int r = lk_parse_duration_ms(arg, ret_ms);

	if (r < 0)
		die_usage("%s: invalid duration '%s' (examples: 250ms, 10s, 2m, 1.5)", opt, arg);
	return 0;
}

int want_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return 0;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return 1;
	}
	return 0;
}
