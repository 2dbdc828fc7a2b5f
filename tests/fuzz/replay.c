// SPDX-License-Identifier: MIT
/*
 * Replay driver: what a fuzz target is linked with when the build does not
 * use libFuzzer (the ordinary gcc build). It runs the target once on every
 * file of the directories (or files) it is given: the seed corpus and the
 * inputs that once made a target fail, so that both stay tests in every
 * build, without clang.
 *
 * Usage: NAME-replay CORPUS_DIR [REGRESSION_DIR...]. The first argument must
 * hold at least one input, so that a corpus that went missing fails instead
 * of passing empty; later ones may be absent or empty. Names starting with
 * '.' are skipped (a .gitkeep keeps an empty directory in the tree).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

const char *lk_fuzz_input_name;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	do {
		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n);
	if (ferror(f)) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* a copy of exactly the input's size, so that ASan sees overreads */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (!exact)
			abort();
		memcpy(exact, buf, len);
		free(buf);
		lk_fuzz_input_name = path;
		LLVMFuzzerTestOneInput(exact, len);
		lk_fuzz_input_name = NULL;
		free(exact);
	}
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every input under path; returns how many, or -1 on an error. */
static long run_path(const char *path, int must_exist)
{
	struct stat st;
	struct dirent *de;
	char **names = NULL;
	size_t count = 0, cap = 0;
	long done = 0;
	DIR *d;

	if (stat(path, &st) < 0) {
		if (!must_exist && errno == ENOENT)
			return 0;
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path) < 0 ? -1 : 1;
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (count == cap) {
			cap = cap ? 2 * cap : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				abort();
		}
		if (asprintf(&names[count], "%s/%s", path, de->d_name) < 0)
			abort();
		count++;
	}
	closedir(d);
	/* a fixed order, so that a failure reproduces the same way */
	if (count)
		qsort(names, count, sizeof(*names), cmp_names);
	for (size_t i = 0; i < count; i++) {
		if (done >= 0) {
			long r = run_path(names[i], 1);

			done = r < 0 ? -1 : done + r;
		}
		free(names[i]);
	}
	free(names);
	return done;
}

int main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR [REGRESSION_DIR...]\n", argv[0]);
		return 64;
	}
	for (int i = 1; i < argc; i++) {
		long n = run_path(argv[i], i == 1);

		if (n < 0)
			return 1;
		if (i == 1 && n == 0) {
			fprintf(stderr, "replay: %s holds no input\n", argv[i]);
			return 1;
		}
		printf("%s: %ld input%s\n", argv[i], n, n == 1 ? "" : "s");
		total += n;
	}
	printf("all %ld inputs passed\n", total);
	return 0;
}
