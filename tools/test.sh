#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what is missing, build with warnings as errors, and run the whole
# test suite: the library and tests under ASan+UBSan, then under TSan, then
# the normal build with everything else (model check, fuzz corpus replay,
# memcheck, chaos CI profile).
# Works on a fresh Debian 12 machine as root, or as a user with sudo.
# Usage: tools/test.sh            (everything)
#        LOCKKIT_TEST_QUICK=1 tools/test.sh   (skip the sanitizer passes)
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

tools/install-deps.sh test

echo "== build (warnings are errors)"
cmake -S . -B build-ci -DLOCKKIT_WERROR=ON -DLOCKKIT_REQUIRE_SPIN=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-ci -j"$jobs"

# The chaos, clock and partition runs last tens of seconds each and use the
# library only through its public calls, and the model check tests no C code;
# they run once, on the normal build.
long='^(chaos|clock|partition|model)$'

if [ "${LOCKKIT_TEST_QUICK:-0}" != 1 ]; then
	echo "== ASan+UBSan build and tests"
	cmake -S . -B build-asan -DLOCKKIT_WERROR=ON -DLOCKKIT_SANITIZE=address \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j"$jobs"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir build-asan --output-on-failure -E '^consumer$' -LE "$long"

	# Programs that fork child processes after starting threads are
	# followed with die_after_fork=0: the children only make system calls
	# and library calls the sanitizer does not need to see.
	echo "== TSan build and tests"
	cmake -S . -B build-tsan -DLOCKKIT_WERROR=ON -DLOCKKIT_SANITIZE=thread \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-tsan -j"$jobs"
	TSAN_OPTIONS=die_after_fork=0:halt_on_error=1:second_deadlock_stack=1 \
		ctest --test-dir build-tsan --output-on-failure -E '^consumer$' -LE "$long"
fi

echo "== fuzzing, a short run per target (clang, ASan+UBSan)"
tools/fuzz.sh "${LOCKKIT_FUZZ_SECONDS:-15}"

echo "== benchmark smoke run (numbers are not checked here)"
build-ci/bench_lock --quick

echo "== tests"
ctest --test-dir build-ci --output-on-failure
