// SPDX-License-Identifier: MIT
/*
 * A program outside the project that uses lockkit the way a user would: only
 * the installed header and library, found through CMake or pkg-config.
 */
#include <lockkit.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	struct lk_store *st;
	struct lk_lock *lk;
	char err[256];
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: %s STORE\n", argv[0]);
		return 2;
	}
	r = lk_store_open_err(argv[1], NULL, &st, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "open store: %s\n", err);
		return 1;
	}
	r = lk_lock_open(st, "consumer", NULL, &lk);
	if (r < 0) {
		fprintf(stderr, "open lock: %s\n", lk_store_errmsg(st));
		return 1;
	}
	r = lk_lock_acquire(lk, 0);
	if (r < 0 || lk_lock_token(lk) == 0) {
		fprintf(stderr, "acquire: %s\n", lk_strerror(r));
		return 1;
	}
	printf("lockkit %s: held 'consumer' with token %llu\n", lk_version(),
	       (unsigned long long)lk_lock_token(lk));
	lk_lock_close(lk);
	lk_store_close(st);
	return 0;
}
