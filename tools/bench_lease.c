// SPDX-License-Identifier: MIT
/* The lease benchmark; see README. */
#include <stdio.h>

int main(void)
{
	puts("bench_lease: not built in this revision");
	return 0;
}
