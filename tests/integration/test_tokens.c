// SPDX-License-Identifier: MIT
/*
 * Fencing tokens seen from outside: every acquisition of a name, exclusive
 * or shared, in any process, gets a token greater than all earlier ones.
 *
 * Holders append their token to a log file while they hold the lock, so the
 * log is the order in which holds really happened; a fencing resource would
 * see the same order. With exclusive holders only, the log must be strictly
 * increasing. Shared holders overlap and may log out of order among
 * themselves, but every exclusive hold separates what came before it from
 * what came after: all tokens logged before an exclusive entry are smaller
 * than it, all logged after are larger.
 *
 * Reboots are simulated by changing the boot id a store handle writes into
 * the record; the token must then jump past the reservation the record says
 * was synced, since tokens handed out after that sync may have been lost
 * from the page cache. A lock file deleted and created again has no record
 * at all and must still start above every earlier token (the wall-clock
 * seed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "integ.h"
#include "internal.h"
#include "krecord.h"

#define NPROC     4
#define NITER     400
#define LOCK_NAME "fence"
#define LOG_LINE  32 /* "%020llu %c %08d\n": fixed width, so lines never mix */

struct logrun {
	char dir[256];
	char log_path[300];
	int mixed; /* shared and exclusive holds */
	atomic_int *shared_now;
	atomic_int *shared_max;
};

struct entry {
	uint64_t token;
	char kind; /* 'X' exclusive, 'S' shared */
	int pid;
};

static void log_token(int fd, uint64_t tok, char kind)
{
	char line[LOG_LINE + 1];

	snprintf(line, sizeof(line), "%020llu %c %08d\n", (unsigned long long)tok, kind,
	         (int)getpid());
	/* O_APPEND: each line lands whole after the previous one */
	CHILD_EQ(write(fd, line, LOG_LINE), LOG_LINE);
}

static void shared_enter(struct logrun *run)
{
	int now = atomic_fetch_add(run->shared_now, 1) + 1;
	int max = atomic_load(run->shared_max);

	while (now > max && !atomic_compare_exchange_weak(run->shared_max, &max, now))
		;
}

static void hold_and_log(struct lk_lock *lk, int fd, char kind, struct logrun *run)
{
	CHILD_EQ(lk_lock_acquire(lk, -1), 0);
	if (kind == 'S')
		shared_enter(run);
	log_token(fd, lk_lock_token(lk), kind);
	if (kind == 'S') {
		usleep(50); /* let other shared holders overlap this one */
		atomic_fetch_sub(run->shared_now, 1);
	}
	CHILD_EQ(lk_lock_release(lk), 0);
}

static void log_worker(int rx, int tx, void *arg)
{
	struct logrun *run = arg;
	struct lk_store *st = it_store_open(run->dir);
	struct lk_lock *x = it_lock_open(st, LOCK_NAME, 0, "fence-x");
	struct lk_lock *s = it_lock_open(st, LOCK_NAME, LK_LOCK_SHARED, "fence-s");
	int fd = open(run->log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	unsigned int seed = (unsigned int)getpid();
	uint64_t go;

	CHILD_ASSERT(fd >= 0);
	if (run->mixed) {
		/* Everyone first holds shared at the same time, for sure. */
		CHILD_EQ(lk_lock_acquire(s, -1), 0);
		shared_enter(run);
		log_token(fd, lk_lock_token(s), 'S');
		it_send(tx, 1);
		CHILD_EQ(it_recv(rx, &go, IT_SAFETY_MS), 0);
		atomic_fetch_sub(run->shared_now, 1);
		CHILD_EQ(lk_lock_release(s), 0);
	} else {
		it_send(tx, 1);
		CHILD_EQ(it_recv(rx, &go, IT_SAFETY_MS), 0);
	}
	for (int i = 0; i < NITER; i++) {
		int shared = run->mixed && rand_r(&seed) % 2;

		hold_and_log(shared ? s : x, fd, shared ? 'S' : 'X', run);
	}
	close(fd);
	lk_lock_close(s);
	lk_lock_close(x);
	lk_store_close(st);
}

static struct entry *read_log(const char *path, size_t *ret_n)
{
	FILE *f = fopen(path, "re");
	struct entry *v;
	char line[LOG_LINE + 8];
	size_t n = 0, cap = 1024;

	assert_non_null(f);
	v = malloc(cap * sizeof(*v));
	assert_non_null(v);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long tok;
		char kind;
		int pid;

		assert_int_equal(strlen(line), LOG_LINE);
		assert_int_equal(sscanf(line, "%llu %c %d", &tok, &kind, &pid), 3);
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		v[n].token = tok;
		v[n].kind = kind;
		v[n].pid = pid;
		n++;
	}
	fclose(f);
	*ret_n = n;
	return v;
}

static void run_log(struct logrun *run)
{
	struct it_child c[NPROC];
	uint64_t v;
	int fd;

	fd = open(run->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < NPROC; i++)
		it_spawn(&c[i], log_worker, run);
	for (int i = 0; i < NPROC; i++)
		assert_int_equal(it_recv(c[i].rx, &v, IT_SAFETY_MS), 0);
	for (int i = 0; i < NPROC; i++)
		it_send(c[i].tx, 1);
	for (int i = 0; i < NPROC; i++)
		assert_int_equal(it_reap(&c[i], 40000), 0);
}

static void setup_logrun(struct logrun *run, const char *tag, int mixed)
{
	atomic_int *shm = it_shared_mem(2 * sizeof(atomic_int));

	memset(run, 0, sizeof(*run));
	it_store_dir(run->dir, sizeof(run->dir), tag);
	snprintf(run->log_path, sizeof(run->log_path), "%s/.log", run->dir);
	run->mixed = mixed;
	run->shared_now = &shm[0];
	run->shared_max = &shm[1];
	atomic_store(run->shared_now, 0);
	atomic_store(run->shared_max, 0);
}

static void child_report_token(int rx, int tx, void *arg)
{
	const char *dir = arg;
	struct lk_store *st = it_store_open(dir);
	struct lk_lock *lk = it_lock_open(st, LOCK_NAME, 0, NULL);

	CHILD_EQ(lk_lock_acquire(lk, 5000), 0);
	it_send(tx, lk_lock_token(lk));
	lk_lock_close(lk);
	lk_store_close(st);
}

/* The token a brand-new process with brand-new handles gets. */
static uint64_t token_in_new_process(const char *dir)
{
	struct it_child c;
	uint64_t tok = 0;

	it_spawn(&c, child_report_token, (void *)dir);
	assert_int_equal(it_recv(c.rx, &tok, IT_SAFETY_MS), 0);
	assert_int_equal(it_reap(&c, IT_SAFETY_MS), 0);
	return tok;
}

static void test_exclusive_log_increasing(void **state)
{
	struct logrun run;
	struct entry *e;
	size_t n;
	uint64_t tok;

	setup_logrun(&run, "tokens-x", 0);
	run_log(&run);
	e = read_log(run.log_path, &n);
	assert_int_equal(n, NPROC * NITER);
	for (size_t i = 0; i < n; i++) {
		assert_true(e[i].token > 0);
		assert_true(e[i].token < LK_TOKEN_LIMIT);
		if (i > 0 && e[i].token <= e[i - 1].token)
			fail_msg("log line %zu: token %llu after %llu", i,
			         (unsigned long long)e[i].token,
			         (unsigned long long)e[i - 1].token);
	}
	tok = token_in_new_process(run.dir);
	assert_true(tok > e[n - 1].token);
	assert_true(tok < LK_TOKEN_LIMIT);
	assert_true(token_in_new_process(run.dir) > tok);
	free(e);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_shared_and_exclusive_interleaved(void **state)
{
	struct logrun run;
	struct entry *e;
	uint64_t *sorted, *prefix_max, suffix_min;
	size_t n, nshared = 0;

	setup_logrun(&run, "tokens-sx", 1);
	run_log(&run);
	e = read_log(run.log_path, &n);
	assert_int_equal(n, NPROC * (NITER + 1));

	/* unique, and below the JSON-safe limit */
	sorted = malloc(n * sizeof(*sorted));
	prefix_max = malloc(n * sizeof(*prefix_max));
	assert_non_null(sorted);
	assert_non_null(prefix_max);
	for (size_t i = 0; i < n; i++) {
		sorted[i] = e[i].token;
		assert_true(e[i].token > 0 && e[i].token < LK_TOKEN_LIMIT);
		nshared += e[i].kind == 'S';
	}
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	for (size_t i = 1; i < n; i++)
		if (sorted[i] == sorted[i - 1])
			fail_msg("token %llu handed out twice", (unsigned long long)sorted[i]);

	/* every exclusive hold separates the earlier tokens from the later ones */
	for (size_t i = 0; i < n; i++)
		prefix_max[i] = i ? (prefix_max[i - 1] > e[i - 1].token ? prefix_max[i - 1]
		                                                        : e[i - 1].token)
		                  : 0;
	suffix_min = UINT64_MAX;
	for (size_t i = n; i-- > 0;) {
		if (e[i].kind == 'X' && (prefix_max[i] >= e[i].token || suffix_min <= e[i].token))
			fail_msg("exclusive token %llu at line %zu is not between the "
			         "holds before (max %llu) and after (min %llu) it",
			         (unsigned long long)e[i].token, i,
			         (unsigned long long)prefix_max[i], (unsigned long long)suffix_min);
		if (e[i].token < suffix_min)
			suffix_min = e[i].token;
	}

	/* each process saw its own tokens increase */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (e[j].pid == e[i].pid) {
				assert_true(e[j].token > e[i].token);
				break;
			}

	/* both kinds were exercised, and shared holds did overlap */
	assert_true(nshared >= NPROC);
	assert_true(nshared < n);
	assert_true(atomic_load(run.shared_max) >= NPROC);
	print_message("%zu holds, %zu shared, up to %d shared holders logging at once\n", n,
	              nshared, atomic_load(run.shared_max));
	free(prefix_max);
	free(sorted);
	free(e);
}

/* The current record of a lock, straight from its file. */
static void read_record(const char *dir, const char *name, struct lk__krec *rec)
{
	uint8_t file[LK_KFILE_SIZE];
	char path[512];
	int fd;

	it_lock_path(path, sizeof(path), dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, file, sizeof(file), 0), sizeof(file));
	close(fd);
	assert_true(lk__kfile_pick(file, sizeof(file), rec) >= 0);
}

static void test_reboot_jumps_past_reservation(void **state)
{
	struct lk_store *st;
	struct lk_lock *lk;
	struct lk__krec rec, rec2;
	uint8_t real_boot[16];
	char dir[256];
	uint64_t last = 0, tok;

	it_store_dir(dir, sizeof(dir), "tokens-boot");
	st = it_store_open(dir);
	lk = it_lock_open(st, LOCK_NAME, 0, NULL);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(lk_lock_acquire(lk, 0), 0);
		tok = lk_lock_token(lk);
		assert_true(tok > last);
		last = tok;
		assert_int_equal(lk_lock_release(lk), 0);
	}
	read_record(dir, LOCK_NAME, &rec);
	assert_int_equal(rec.token, last);
	assert_true(rec.reserved >= rec.token);
	assert_memory_equal(rec.boot_id, st->boot_id, 16);

	/* "Reboot": same store, a different boot id in every record written. */
	memcpy(real_boot, st->boot_id, 16);
	st->boot_id[0] ^= 0xff;
	st->boot_id[15] ^= 0x5a;
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	tok = lk_lock_token(lk);
	assert_true(tok > rec.reserved);
	assert_true(tok < LK_TOKEN_LIMIT);
	assert_int_equal(lk_lock_release(lk), 0);
	read_record(dir, LOCK_NAME, &rec2);
	assert_int_equal(rec2.token, tok);
	assert_true(rec2.reserved >= tok);
	assert_memory_equal(rec2.boot_id, st->boot_id, 16);
	last = tok;

	/* Within the new boot tokens just keep increasing. */
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > last);
	last = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);
	read_record(dir, LOCK_NAME, &rec);

	/* And "booting back" into the real id is one more reboot. */
	memcpy(st->boot_id, real_boot, 16);
	assert_int_equal(lk_lock_acquire(lk, 0), 0);
	assert_true(lk_lock_token(lk) > rec.reserved);
	assert_true(lk_lock_token(lk) > last);
	last = lk_lock_token(lk);
	assert_int_equal(lk_lock_release(lk), 0);

	/* A new process (the real boot id) goes on from there. */
	lk_lock_close(lk);
	lk_store_close(st);
	assert_true(token_in_new_process(dir) > last);
}

static void test_recreated_file_starts_higher(void **state)
{
	struct lk_store *st;
	struct lk_lock *lk;
	char dir[256], path[512];
	uint64_t last = 0;

	it_store_dir(dir, sizeof(dir), "tokens-recreate");
	it_lock_path(path, sizeof(path), dir, LOCK_NAME);
	st = it_store_open(dir);
	for (int life = 0; life < 3; life++) {
		lk = it_lock_open(st, LOCK_NAME, 0, NULL);
		for (int i = 0; i < 100; i++) {
			assert_int_equal(lk_lock_acquire(lk, 0), 0);
			if (lk_lock_token(lk) <= last)
				fail_msg("life %d: token %llu after %llu", life,
				         (unsigned long long)lk_lock_token(lk),
				         (unsigned long long)last);
			last = lk_lock_token(lk);
			assert_int_equal(lk_lock_release(lk), 0);
		}
		lk_lock_close(lk);
		/* Nobody holds or has it open: delete it, the next open makes a new one. */
		assert_int_equal(unlink(path), 0);
	}
	/* and a new process on a new file */
	assert_true(token_in_new_process(dir) > last);
	lk_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_exclusive_log_increasing, it_teardown),
		cmocka_unit_test_teardown(test_shared_and_exclusive_interleaved, it_teardown),
		cmocka_unit_test_teardown(test_reboot_jumps_past_reservation, it_teardown),
		cmocka_unit_test_teardown(test_recreated_file_starts_higher, it_teardown),
	};

	it_init(55);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
