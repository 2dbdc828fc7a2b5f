// SPDX-License-Identifier: MIT
/*
 * The audit log: who acquired, released, lost, broke and led which lock,
 * when, with which token, kept in the store itself so that every host that
 * shares the store sees the same history (lockctl log merges it).
 *
 * What shapes it:
 *  - One file per writer. A writer is a store handle (one per process in
 *    practice); its files are named after their start time, the host, the
 *    pid and a random id, so no two writers ever share one. Appending is
 *    not atomic over NFS (libnfs emulates O_APPEND with a GETATTR and a
 *    WRITE, and two clients interleave), so nobody appends: each writer
 *    writes whole lines, one request per line, at the offset it keeps
 *    itself. A line that failed half-way is overwritten by the next one
 *    (the offset only moves past lines that were written whole), so a file
 *    is always whole lines followed at most by one torn tail, which readers
 *    skip.
 *  - The log must never break a lock. Lines are written after the lock
 *    operation, by the thread that made it; a failed write leaves a message
 *    on the handle and counts a failure, and the operation's result stands.
 *    Nothing is ever written from the heartbeat engine (its timer must not
 *    wait on storage, and an nfs:// store's connection is owned by one
 *    thread at a time): a lease lost in the engine is recorded by the next
 *    lk_lock_release() or lk_lock_close() on its handle, dated at the
 *    holder's deadline when that is why it was lost.
 *  - Bounded. A file ends at LOCKKIT_AUDIT_MAX_BYTES (1 MiB) or after a
 *    seventh of LOCKKIT_AUDIT_MAX_AGE (7 days: a file a day), and the
 *    writer starts the next one. When a writer starts a file it removes
 *    files whose newest line must be older than the maximum age (known from
 *    the start time in the name and the rotation period) and, beyond
 *    LOCKKIT_AUDIT_MAX_FILES (1000) files, the oldest ones. A writer whose
 *    file was removed under it starts a new one.
 *  - Cheap when off: whether a handle records is decided when it is opened,
 *    so a kernel-mode acquire without the audit flag makes no extra call.
 *    Writes are not synced (UNSTABLE over NFS): an audit line can be lost
 *    with the host or the server, a lock record never.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "engine.h"
#include "internal.h"

#define NAME_TIME_LEN 16  /* "YYYYMMDDTHHMMSSZ" */
#define PRUNE_MAX     256 /* files removed at most per start */
#define READ_CHUNK    32768
#define FILE_READ_MAX (64u * 1024 * 1024)

struct lk__audit {
	struct lk_store *st;
	pthread_mutex_t mu;
	uint64_t max_bytes;
	uint64_t max_files;
	int64_t max_age_ns;
	int64_t rotate_ns;
	uint64_t id;     /* this writer's random id */
	unsigned nfile;  /* files started so far */
	char file[160];  /* current file's name, "" before the first line */
	int64_t file_ns; /* its start (CLOCK_REALTIME) */
	uint64_t off;    /* bytes of whole lines in it */
	uint64_t seq;
	int dir_ok;
	uint64_t written, failed;
	char errmsg[256];
	char boot[33];
};

static uint64_t env_u64(const char *name, uint64_t def, uint64_t min)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min)
		return def;
	return v;
}

int lk__audit_open(struct lk_store *st, struct lk__audit **ret)
{
	struct lk__audit *a;
	uint64_t age_ms = LK_AUDIT_DEF_MAX_AGE_MS;
	const char *s;

	*ret = NULL;
	if (st->opts.flags & (LK_STORE_RDONLY | LK_STORE_NO_AUDIT))
		return 0;
	if (!st->be->write_at || !st->be->read_at || !st->be->mkdir || !st->be->readdir)
		return 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->st = st;
	pthread_mutex_init(&a->mu, NULL);
	/* one line must always fit */
	a->max_bytes =
		env_u64("LOCKKIT_AUDIT_MAX_BYTES", LK_AUDIT_DEF_MAX_BYTES, LK_AUDIT_LINE_MAX);
	a->max_files = env_u64("LOCKKIT_AUDIT_MAX_FILES", LK_AUDIT_DEF_MAX_FILES, 2);
	s = getenv("LOCKKIT_AUDIT_MAX_AGE");
	if (s && *s && (lk_parse_duration_ms(s, &age_ms) < 0 || age_ms < 1000))
		age_ms = LK_AUDIT_DEF_MAX_AGE_MS;
	a->max_age_ns = (int64_t)age_ms * 1000000;
	a->rotate_ns = a->max_age_ns / 7;
	if (a->rotate_ns > 24ll * 3600 * 1000000000)
		a->rotate_ns = 24ll * 3600 * 1000000000;
	if (a->rotate_ns < 1000000000)
		a->rotate_ns = 1000000000;
	a->id = lk__random64();
	for (int i = 0; i < 16; i++)
		snprintf(a->boot + 2 * i, 3, "%02x", st->boot_id[i]);
	*ret = a;
	return 0;
}

void lk__audit_free(struct lk__audit *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a);
}

int lk__audit_wanted(const struct lk_store *st, enum lk_mode mode, uint32_t flags)
{
	const char *s;

	if (!st->audit || (flags & LK_LOCK_NO_AUDIT))
		return 0;
	if (flags & LK_LOCK_AUDIT)
		return 1;
	s = getenv("LOCKKIT_AUDIT");
	if (s && !strcmp(s, "0"))
		return 0;
	if (s && !strcmp(s, "1"))
		return 1;
	return mode == LK_MODE_LEASE;
}

/* ------------------------------------------------------------------------
 * Lines
 */

void lk__audit_time(char *buf, size_t len, int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	long ms = (long)(ns % 1000000000 / 1000000);
	struct tm tm;

	if (ns < 0) {
		t = 0;
		ms = 0;
	}
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n >= b->cap)
		n = b->len + 1 < b->cap ? b->cap - b->len - 1 : 0;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the well-formed UTF-8 character at s (0: not one). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		n = 2, c = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, c = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string; bytes that are not UTF-8 become '?', so every line is
 * valid JSON whatever a label holds. At most max bytes of s are taken. */
static void put_str(struct buf *b, const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)(s ? s : "");
	size_t n = strnlen((const char *)u, max);

	put(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len(u + i, n - i);

		if (l == 0) {
			put(b, "?", 1);
			i++;
		} else if (l > 1) {
			put(b, (const char *)u + i, l);
			i += l;
		} else if (u[i] == '"' || u[i] == '\\') {
			char e[2] = {'\\', (char)u[i]};

			put(b, e, 2);
			i++;
		} else if (u[i] < 0x20 || u[i] == 0x7f) {
			putf(b, "\\u%04x", u[i]);
			i++;
		} else {
			put(b, (const char *)u + i, 1);
			i++;
		}
	}
	put(b, "\"", 1);
}

static const char *mode_name(enum lk_mode m)
{
	return m == LK_MODE_KERNEL ? "kernel" : m == LK_MODE_LEASE ? "lease" : "unknown";
}

struct ev {
	const char *event, *lock, *owner, *reason, *detail;
	enum lk_mode mode;
	uint64_t token;
	int32_t holder_pid; /* the process the hold stands for, if not the writer */
	int64_t time_ns;    /* 0: now */
};

static size_t format_line(struct lk__audit *a, const struct ev *e, char *out, size_t cap)
{
	struct lk_store *st = a->st;
	struct buf b = {out, 0, cap};
	char t[40];
	int64_t now = lk__realtime_ns();

	out[0] = 0;
	lk__audit_time(t, sizeof(t), e->time_ns ? e->time_ns : now);
	put(&b, "{\"v\":1,\"time\":", 14);
	put_str(&b, t, sizeof(t));
	put(&b, ",\"event\":", 9);
	put_str(&b, e->event, 31);
	put(&b, ",\"lock\":", 8);
	put_str(&b, e->lock, LK_NAME_MAX);
	put(&b, ",\"mode\":", 8);
	put_str(&b, mode_name(e->mode), 16);
	putf(&b, ",\"token\":%" PRIu64 ",\"owner\":", e->token);
	put_str(&b, e->owner, LK_OWNER_MAX);
	put(&b, ",\"host\":", 8);
	put_str(&b, st->host, LK_HOST_MAX);
	putf(&b, ",\"pid\":%d", (int)st->fg.pid);
	if (e->holder_pid > 0 && e->holder_pid != st->fg.pid)
		putf(&b, ",\"holder_pid\":%d", (int)e->holder_pid);
	put(&b, ",\"boot_id\":", 11);
	put_str(&b, a->boot, 32);
	putf(&b, ",\"uptime_ms\":%" PRId64 ",\"seq\":%" PRIu64, lk__boottime_ns() / 1000000,
	     a->seq);
	if (e->time_ns) {
		lk__audit_time(t, sizeof(t), now);
		put(&b, ",\"written\":", 11);
		put_str(&b, t, sizeof(t));
	}
	if (e->reason) {
		put(&b, ",\"reason\":", 10);
		put_str(&b, e->reason, 31);
	}
	if (e->detail && e->detail[0]) {
		put(&b, ",\"detail\":", 10);
		put_str(&b, e->detail, 300);
	}
	/* every field is bounded (escaped, the longest is well under
	 * LK_AUDIT_LINE_MAX), so nothing above was cut and the end fits */
	put(&b, "}\n", 2);
	return b.len;
}

/* ------------------------------------------------------------------------
 * Files
 */

/* "20260102T030405Z" -> CLOCK_REALTIME ns; -1 if it is not one. */
static int64_t name_time(const char *name)
{
	struct tm tm;
	int v[6], w[6] = {4, 2, 2, 2, 2, 2};
	const char *p = name;

	if (strlen(name) < NAME_TIME_LEN + 1 || name[8] != 'T' || name[15] != 'Z' ||
	    name[16] != '.')
		return -1;
	for (int i = 0; i < 6; i++) {
		v[i] = 0;
		if (i == 3)
			p++; /* 'T' */
		for (int j = 0; j < w[i]; j++, p++) {
			if (*p < '0' || *p > '9')
				return -1;
			v[i] = v[i] * 10 + (*p - '0');
		}
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	/* nanoseconds in an int64_t reach the year 2262 */
	if (v[0] < 1970 || v[0] > 2261 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 ||
	    v[3] > 23 || v[4] > 59 || v[5] > 60)
		return -1;
	return (int64_t)timegm(&tm) * 1000000000;
}

/* A name that writers make: "<time>.<host>.<pid>.<id>.<n>.jsonl". */
static int is_audit_name(const char *name)
{
	size_t n = strlen(name);

	if (name_time(name) < 0 || n < 6 || strcmp(name + n - 6, ".jsonl"))
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			return 0;
	return 1;
}

struct old {
	char name[160];
	int64_t t;
};

struct olds {
	struct old *v;
	size_t n, cap;
	const char *keep;
};

static int collect_files(const char *name, void *userdata)
{
	struct olds *o = userdata;
	int64_t t;

	if (!is_audit_name(name) || strlen(name) >= sizeof(o->v[0].name) || !strcmp(name, o->keep))
		return 0;
	t = name_time(name);
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 64;
		struct old *v = realloc(o->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	snprintf(o->v[o->n].name, sizeof(o->v[o->n].name), "%s", name);
	o->v[o->n].t = t;
	o->n++;
	return 0;
}

static int cmp_old(const void *x, const void *y)
{
	const struct old *a = x, *b = y;

	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Remove files past the age bound and the oldest beyond the count bound.
 * Best effort: the log stays usable whatever fails here. */
static void prune(struct lk__audit *a, int64_t now)
{
	const struct lk_backend *be = a->st->be;
	struct olds o = {NULL, 0, 0, a->file};
	char path[sizeof(LK_AUDIT_DIR) + 160];
	size_t removed = 0;

	if (be->readdir(a->st->bs, LK_AUDIT_DIR, collect_files, &o, NULL) < 0 || !o.n)
		goto out;
	if (o.n > 1)
		qsort(o.v, o.n, sizeof(*o.v), cmp_old);
	for (size_t i = 0; i < o.n && removed < PRUNE_MAX; i++) {
		/* a file's newest line is at most one rotation period younger
		 * than its name says; o.n - i files are left, ours makes one more */
		int old = o.v[i].t + a->rotate_ns < now - a->max_age_ns;
		int many = o.n - i + 1 > a->max_files;

		if (!old && !many)
			break;
		snprintf(path, sizeof(path), "%s/%s", LK_AUDIT_DIR, o.v[i].name);
		if (be->unlink(a->st->bs, path, NULL) == 0)
			removed++;
	}
out:
	free(o.v);
}

static void file_name(struct lk__audit *a, int64_t now)
{
	char host[33];
	time_t t = (time_t)(now / 1000000000);
	struct tm tm;
	size_t i;

	for (i = 0; i < sizeof(host) - 1 && a->st->host[i]; i++) {
		char c = a->st->host[i];

		host[i] =
			((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
				? c
				: '-';
	}
	host[i] = 0;
	if (!i)
		snprintf(host, sizeof(host), "host");
	gmtime_r(&t, &tm);
	snprintf(a->file, sizeof(a->file),
	         "%04d%02d%02dT%02d%02d%02dZ.%s.%d.%016" PRIx64 ".%u.jsonl", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, host,
	         (int)a->st->fg.pid, a->id, a->nfile);
	a->nfile++;
	a->file_ns = (int64_t)t * 1000000000;
	a->off = 0;
}

/* Start a new file: the directory if needed, clean-up, a fresh name. */
static int start_file(struct lk__audit *a, int64_t now, struct lk_err *err)
{
	const struct lk_backend *be = a->st->be;

	if (!a->dir_ok) {
		int r = be->mkdir(a->st->bs, LK_AUDIT_DIR, err);

		if (r < 0 && r != -EEXIST)
			return r;
		err->msg[0] = 0;
		a->dir_ok = 1;
	}
	file_name(a, now);
	prune(a, now);
	return 0;
}

static int write_line(struct lk__audit *a, const struct ev *e)
{
	const struct lk_backend *be = a->st->be;
	char line[LK_AUDIT_LINE_MAX + 8], path[sizeof(LK_AUDIT_DIR) + 160];
	struct lk_err err = {0};
	size_t len;
	int64_t now = lk__realtime_ns();
	int r = -EIO;

	pthread_mutex_lock(&a->mu);
	len = format_line(a, e, line, sizeof(line));
	if (a->file[0] &&
	    ((a->off > 0 && a->off + len > a->max_bytes) || now - a->file_ns >= a->rotate_ns))
		a->file[0] = 0;
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!a->file[0]) {
			r = start_file(a, now, &err);
			if (r < 0)
				break;
		}
		snprintf(path, sizeof(path), "%s/%s", LK_AUDIT_DIR, a->file);
		r = be->write_at(a->st->bs, path, a->off, line, len, &err);
		if (r == (int)len) {
			a->off += len;
			a->seq++;
			a->written++;
			pthread_mutex_unlock(&a->mu);
			return 0;
		}
		if (r == -ENOENT) {
			/* our file was removed (offset > 0), or the directory was
			 * (offset 0): start again from the directory */
			if (a->off == 0)
				a->dir_ok = 0;
			a->file[0] = 0;
			continue;
		}
		if (r >= 0) {
			/* the next line goes over the partial one */
			r = -EIO;
			lk__err_set(&err, "short write to %s", path);
		}
		break;
	}
	a->failed++;
	lk__msg_set(a->errmsg, sizeof(a->errmsg), "audit log: %s",
	            err.msg[0] ? err.msg : lk_strerror(r));
	pthread_mutex_unlock(&a->mu);
	return r;
}

static int lock_write(struct lk_lock *lk, struct ev *e)
{
	struct lk__audit *a = lk->st->audit;
	int r;

	if (!a)
		return -EOPNOTSUPP;
	e->lock = lk->name;
	e->mode = lk->mode;
	e->owner = lk->owner;
	if (lk->mode == LK_MODE_LEASE && lk->lease)
		e->holder_pid = lk->lease->pid;
	r = write_line(a, e);
	if (r < 0) {
		pthread_mutex_lock(&a->mu);
		lk__msg_set(lk->errmsg, sizeof(lk->errmsg), "%s (the lock operation succeeded)",
		            a->errmsg);
		pthread_mutex_unlock(&a->mu);
	}
	return r;
}

int lk__audit_acquired(struct lk_lock *lk)
{
	struct ev e = {0};
	char detail[64] = "";

	if (!lk->audit)
		return 0;
	e.event = "acquire";
	e.token = atomic_load(&lk->token);
	if (lk->mode == LK_MODE_LEASE && lk->lease)
		snprintf(detail, sizeof(detail), "ttl=%" PRId64 "ms", lk->lease->ttl_ns / 1000000);
	else if (lk->flags & LK_LOCK_SHARED)
		snprintf(detail, sizeof(detail), "shared");
	e.detail = detail;
	return lock_write(lk, &e);
}

void lk__audit_hold(const struct lk_lock *lk, struct lk__audit_hold *ret)
{
	struct lk__lease *l = lk->lease;

	memset(ret, 0, sizeof(*ret));
	ret->token = atomic_load(&((struct lk_lock *)lk)->token);
	if (lk->mode == LK_MODE_LEASE && l) {
		ret->lost = atomic_load(&l->lost);
		ret->deadline_ns = atomic_load(&l->deadline_ns);
	}
}

int lk__audit_released(struct lk_lock *lk, const struct lk__audit_hold *h, int r)
{
	struct ev e = {0};
	char detail[160];

	if (!lk->audit || !h->token)
		return 0;
	e.token = h->token;
	if (r == 0) {
		e.event = "release";
	} else if (r == -ENOLCK) {
		int64_t now = lk__boottime_ns();

		e.event = "lost";
		if (h->lost == -ESTALE) {
			e.reason = "superseded";
			e.detail = "a newer generation exists: the lease was broken or taken over";
		} else {
			e.reason = "deadline";
			e.detail = "renewals did not get through before the holder's deadline";
			/* date it when it happened, not when it is written */
			if (h->deadline_ns > 0 && h->deadline_ns <= now)
				e.time_ns = lk__realtime_ns() - (now - h->deadline_ns);
		}
	} else {
		e.event = "release";
		e.reason = "failed";
		snprintf(detail, sizeof(detail),
		         "the release could not be written (%s): others wait out the TTL",
		         lk_strerror(r));
		e.detail = detail;
	}
	return lock_write(lk, &e);
}

int lk__audit_lock_event(struct lk_lock *lk, const char *event, uint64_t token, const char *detail)
{
	struct ev e = {0};

	if (!lk || !lk->audit)
		return 0;
	e.event = event;
	e.token = token;
	e.detail = detail;
	return lock_write(lk, &e);
}

int lk__audit_note(struct lk_store *st, const char *event, const char *lock, enum lk_mode mode,
                   uint64_t token, const char *owner, const char *detail)
{
	struct ev e = {0};
	int r;

	if (!st || !event || !lock)
		return -EINVAL;
	if (!st->audit) {
		lk__msg_set(st->errmsg, sizeof(st->errmsg),
		            "audit log: this store handle does not write one");
		return -EOPNOTSUPP;
	}
	e.event = event;
	e.lock = lock;
	e.mode = mode;
	e.token = token;
	e.owner = owner ? owner : program_invocation_short_name;
	e.detail = detail;
	r = write_line(st->audit, &e);
	if (r < 0) {
		pthread_mutex_lock(&st->audit->mu);
		lk__msg_set(st->errmsg, sizeof(st->errmsg), "%s", st->audit->errmsg);
		pthread_mutex_unlock(&st->audit->mu);
	}
	return r;
}

void lk__audit_counts(struct lk_store *st, uint64_t *ret_written, uint64_t *ret_failed, char *msg,
                      size_t len)
{
	struct lk__audit *a = st ? st->audit : NULL;

	*ret_written = *ret_failed = 0;
	if (msg && len)
		msg[0] = 0;
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	*ret_written = a->written;
	*ret_failed = a->failed;
	if (msg && len)
		snprintf(msg, len, "%s", a->errmsg);
	pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------------------
 * Reading: a flat JSON object per line, parsed strictly enough that
 * anything else is reported rather than shown
 */

struct jp {
	const char *p, *end;
};

static void skip_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
		j->p++;
}

static int hex4(const char *p, uint32_t *ret)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*ret = v;
	return 0;
}

/* A string into out (cut to cap - 1 bytes, always NUL-terminated). */
static int parse_str(struct jp *j, char *out, size_t cap)
{
	size_t n = 0;

	if (j->p >= j->end || *j->p != '"')
		return -1;
	j->p++;
	while (j->p < j->end && *j->p != '"') {
		char tmp[4];
		size_t tl = 1;
		unsigned char c = (unsigned char)*j->p;

		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (j->end - j->p < 2)
				return -1;
			switch (j->p[1]) {
			case '"':
				tmp[0] = '"';
				break;
			case '\\':
				tmp[0] = '\\';
				break;
			case '/':
				tmp[0] = '/';
				break;
			case 'b':
				tmp[0] = '\b';
				break;
			case 'f':
				tmp[0] = '\f';
				break;
			case 'n':
				tmp[0] = '\n';
				break;
			case 'r':
				tmp[0] = '\r';
				break;
			case 't':
				tmp[0] = '\t';
				break;
			case 'u': {
				uint32_t u;

				if (j->end - j->p < 6 || hex4(j->p + 2, &u) < 0)
					return -1;
				j->p += 4;
				if (u >= 0xd800 && u <= 0xdfff) {
					tmp[0] = '?';
				} else if (u < 0x80) {
					tmp[0] = (char)u;
				} else if (u < 0x800) {
					tmp[0] = (char)(0xc0 | u >> 6);
					tmp[1] = (char)(0x80 | (u & 0x3f));
					tl = 2;
				} else {
					tmp[0] = (char)(0xe0 | u >> 12);
					tmp[1] = (char)(0x80 | ((u >> 6) & 0x3f));
					tmp[2] = (char)(0x80 | (u & 0x3f));
					tl = 3;
				}
				break;
			}
			default:
				return -1;
			}
			j->p += 2;
		} else {
			tmp[0] = (char)c;
			j->p++;
		}
		for (size_t i = 0; i < tl; i++)
			if (n + 1 < cap)
				out[n++] = tmp[i];
	}
	if (j->p >= j->end)
		return -1;
	j->p++;
	if (cap)
		out[n < cap ? n : cap - 1] = 0;
	return 0;
}

/* A number (integer part kept; a fraction or exponent is accepted and
 * dropped), or true/false/null (as 1, 0, 0). *ret_int: it was an integer. */
static int parse_scalar(struct jp *j, int64_t *ret, int *ret_int)
{
	const char *s = j->p;
	int neg = 0, digits = 0;
	uint64_t v = 0;

	*ret_int = 0;
	if (j->end - s >= 4 && !memcmp(s, "true", 4)) {
		j->p += 4;
		*ret = 1;
		return 0;
	}
	if (j->end - s >= 5 && !memcmp(s, "false", 5)) {
		j->p += 5;
		*ret = 0;
		return 0;
	}
	if (j->end - s >= 4 && !memcmp(s, "null", 4)) {
		j->p += 4;
		*ret = 0;
		return 0;
	}
	if (j->p < j->end && *j->p == '-') {
		neg = 1;
		j->p++;
	}
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*j->p - '0');
		j->p++;
		digits++;
	}
	if (!digits)
		return -1;
	*ret_int = 1;
	if (j->p < j->end && *j->p == '.') {
		*ret_int = 0;
		j->p++;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		*ret_int = 0;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (v > INT64_MAX && !(neg && v == (uint64_t)INT64_MAX + 1)) {
		/* tokens are below 2^53; anything this large is not ours */
		*ret = neg ? INT64_MIN : INT64_MAX;
		*ret_int = 0;
		return 0;
	}
	if (neg && v == (uint64_t)INT64_MAX + 1)
		*ret = INT64_MIN;
	else
		*ret = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* "2026-01-02T03:04:05.678Z" (fraction optional, up to 9 digits). */
static int parse_time(const char *s, int64_t *ret)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0;
	int64_t frac = 0;
	int fd = 0;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	s += n;
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			if (fd < 9) {
				frac = frac * 10 + (*s - '0');
				fd++;
			}
			s++;
		}
		if (!fd)
			return -1;
		while (fd < 9) {
			frac *= 10;
			fd++;
		}
	}
	if (strcmp(s, "Z") || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || y < 1970 || y > 2261)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*ret = (int64_t)timegm(&tm) * 1000000000 + frac;
	return 0;
}

int lk__audit_parse(const char *line, size_t len, struct lk__audit_rec *ret, const char **ret_why)
{
	struct jp j = {line, line + len};
	struct lk__audit_rec r;
	int have_time = 0, have_event = 0, have_lock = 0;
	const char *why = "not a JSON object";

	memset(&r, 0, sizeof(r));
	if (memchr(line, 0, len)) {
		why = "NUL bytes in the line";
		goto bad;
	}
	skip_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		goto bad;
	j.p++;
	skip_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
		goto done;
	}
	for (;;) {
		char key[32], sval[512];
		int64_t ival = 0;
		int isint = 0, isstr = 0;

		skip_ws(&j);
		if (parse_str(&j, key, sizeof(key)) < 0)
			goto bad;
		skip_ws(&j);
		if (j.p >= j.end || *j.p != ':')
			goto bad;
		j.p++;
		skip_ws(&j);
		if (j.p < j.end && *j.p == '"') {
			if (parse_str(&j, sval, sizeof(sval)) < 0)
				goto bad;
			isstr = 1;
		} else if (j.p < j.end && (*j.p == '{' || *j.p == '[')) {
			why = "nested values";
			goto bad;
		} else if (parse_scalar(&j, &ival, &isint) < 0) {
			goto bad;
		}
		if (!strcmp(key, "time")) {
			if (!isstr || parse_time(sval, &r.time_ns) < 0) {
				why = "a time that is not RFC 3339 UTC";
				goto bad;
			}
			have_time = 1;
		} else if (!strcmp(key, "event") && isstr) {
			lk__label_copy(r.event, sizeof(r.event), sval);
			have_event = r.event[0] != 0;
		} else if (!strcmp(key, "lock") && isstr) {
			lk__label_copy(r.lock, sizeof(r.lock), sval);
			have_lock = 1;
		} else if (!strcmp(key, "mode") && isstr) {
			lk__label_copy(r.mode, sizeof(r.mode), sval);
		} else if (!strcmp(key, "owner") && isstr) {
			lk__label_copy(r.owner, sizeof(r.owner), sval);
		} else if (!strcmp(key, "host") && isstr) {
			lk__label_copy(r.host, sizeof(r.host), sval);
		} else if (!strcmp(key, "reason") && isstr) {
			lk__label_copy(r.reason, sizeof(r.reason), sval);
		} else if (!strcmp(key, "detail") && isstr) {
			lk__label_copy(r.detail, sizeof(r.detail), sval);
		} else if (!strcmp(key, "token") && isint && ival >= 0) {
			r.token = (uint64_t)ival;
		} else if (!strcmp(key, "pid") && isint) {
			r.pid = ival;
		} else if (!strcmp(key, "seq") && isint && ival >= 0) {
			r.seq = (uint64_t)ival;
		}
		skip_ws(&j);
		if (j.p < j.end && *j.p == ',') {
			j.p++;
			continue;
		}
		if (j.p < j.end && *j.p == '}') {
			j.p++;
			break;
		}
		goto bad;
	}
done:
	skip_ws(&j);
	if (j.p != j.end) {
		why = "text after the object";
		goto bad;
	}
	if (!have_time || !have_event || !have_lock) {
		why = "no time, event or lock";
		goto bad;
	}
	*ret = r;
	return 0;
bad:
	if (ret_why)
		*ret_why = why;
	return -EBADMSG;
}

/* The whole file, in *ret (malloc'd), its length in *ret_len. */
static int read_whole(struct lk_store *st, const char *path, char **ret, size_t *ret_len,
                      int *ret_cut, struct lk_err *err)
{
	size_t len = 0, cap = READ_CHUNK;
	char *buf = malloc(cap);

	*ret_cut = 0;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		int n;

		if (len == FILE_READ_MAX) {
			*ret_cut = 1;
			break;
		}
		if (cap - len < READ_CHUNK) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		n = st->be->read_at(st->bs, path, len, buf + len, READ_CHUNK, err);
		if (n < 0) {
			free(buf);
			return n;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

int lk__audit_scan(struct lk_store *st, lk__audit_fn fn, void *userdata, struct lk_err *err)
{
	const struct lk_backend *be = st->be;
	struct lk__names l = {0};
	int r;

	if (!be->read_at || !be->readdir) {
		lk__err_set(err, "the %s backend cannot read an audit log", be->name);
		return -EOPNOTSUPP;
	}
	r = be->readdir(st->bs, LK_AUDIT_DIR, lk__names_add, &l, err);
	if (r == -ENOENT) {
		err->msg[0] = 0;
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	lk__names_sort(&l);
	for (size_t i = 0; i < l.n && r == 0; i++) {
		struct lk__audit_item it = {.file = l.v[i]};
		char path[sizeof(LK_AUDIT_DIR) + LK_NAME_MAX + 2];
		struct lk_err ferr = {0};
		char *data = NULL;
		size_t len = 0, start = 0;
		uint64_t lineno = 0;
		int cut = 0;

		if (!is_audit_name(l.v[i])) {
			it.kind = LK_AUDIT_FOREIGN;
			it.why = "not an audit file (its name is not one lockkit writes)";
			r = fn(&it, userdata);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", LK_AUDIT_DIR, l.v[i]);
		r = read_whole(st, path, &data, &len, &cut, &ferr);
		if (r == -ENOENT) {
			r = 0; /* removed by a clean-up since the listing */
			continue;
		}
		if (r < 0) {
			it.kind = LK_AUDIT_UNREADABLE;
			it.why = ferr.msg[0] ? ferr.msg : lk_strerror(r);
			r = fn(&it, userdata);
			continue;
		}
		while (start < len && r == 0) {
			char *nl = memchr(data + start, '\n', len - start);
			size_t n = nl ? (size_t)(nl - (data + start)) : len - start;
			struct lk__audit_rec rec;
			const char *why = NULL;

			it.lineno = ++lineno;
			it.text = data + start;
			it.len = n;
			it.rec = NULL;
			it.why = NULL;
			if (!nl) {
				it.kind = LK_AUDIT_TORN;
				it.why = cut ? "the file is larger than lockctl reads; the rest is "
				               "skipped"
				             : "an incomplete last line (being written, or its "
				               "writer stopped half-way)";
			} else if (n == 0) {
				start += 1;
				continue;
			} else if (lk__audit_parse(it.text, n, &rec, &why) == 0) {
				it.kind = LK_AUDIT_LINE;
				it.rec = &rec;
			} else {
				it.kind = LK_AUDIT_BAD;
				it.why = why;
			}
			r = fn(&it, userdata);
			start += n + 1;
		}
		free(data);
	}
out:
	lk__names_free(&l);
	return r;
}
