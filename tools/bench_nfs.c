// SPDX-License-Identifier: MIT
/* The nfs:// benchmark; see README. */
#include <stdio.h>

int main(void)
{
	puts("bench_nfs: not built in this revision");
	return 0;
}
