#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the libFuzzer targets (clang, ASan+UBSan) and run each for a while
# with its seed corpus and the regression inputs. Any crash or failed
# property fails the run, and the input that caused it is copied to
# tests/fuzz/regressions/<target>/, where every build then replays it as a
# test (ctest -L fuzz) until the bug is fixed and after.
#
# Usage: tools/fuzz.sh [SECONDS]      seconds per target, default 30
# Environment:
#   LOCKKIT_FUZZ_BUILD    build directory (default build-fuzz)
#   LOCKKIT_FUZZ_TARGETS  targets to run (default: all of them)
#   CC                    the clang to use (default clang-14, else clang)
# Inputs that add coverage are kept in BUILD/fuzz-work/<target>/, outside the
# tree, and make the next run start further; the committed corpus stays small.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-30}
build=${LOCKKIT_FUZZ_BUILD:-build-fuzz}
targets=${LOCKKIT_FUZZ_TARGETS:-"lrecord krecord url name duration"}

case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]" >&2
	exit 64
	;;
esac
if [ -z "${CC:-}" ]; then
	if command -v clang-14 >/dev/null 2>&1; then
		CC=clang-14
	elif command -v clang >/dev/null 2>&1; then
		CC=clang
	else
		echo "fuzz.sh: clang not found: apt-get install clang-14 libclang-rt-14-dev" >&2
		exit 1
	fi
fi
# libFuzzer's runtime is a separate Debian package from the compiler
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
	"$CC" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
	echo "fuzz.sh: $CC cannot link with -fsanitize=fuzzer: apt-get install libclang-rt-14-dev" >&2
	exit 1
fi

echo "== configure $build ($CC, LOCKKIT_FUZZ=ON)"
CC=$CC cmake -S . -B "$build" -DLOCKKIT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
tlist=
for t in $targets; do
	tlist="$tlist fuzz_$t"
done
# shellcheck disable=SC2086
cmake --build "$build" -j2 --target $tlist

failed=
for t in $targets; do
	work=$build/fuzz-work/$t
	art=$build/fuzz-artifacts/$t
	regress=tests/fuzz/regressions/$t
	mkdir -p "$work" "$art"
	set -- "$work" "tests/fuzz/corpus/$t"
	[ -d "$regress" ] && set -- "$@" "$regress"
	echo "== fuzz_$t for ${secs}s"
	if "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 \
		-artifact_prefix="$art/" -print_final_stats=1 "$@" >"$art/log" 2>&1; then
		grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ *DONE)' \
			"$art/log" || true
	else
		echo "fuzz_$t FAILED; log: $art/log" >&2
		tail -n 40 "$art/log" >&2
		failed="$failed $t"
		mkdir -p "$regress"
		for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
			[ -f "$f" ] || continue
			cp "$f" "$regress/"
			echo "   input saved as $regress/$(basename "$f")" >&2
		done
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz.sh: failing targets:$failed (inputs in tests/fuzz/regressions/)" >&2
	exit 1
fi
echo "fuzz.sh: all targets ran ${secs}s without a failure"
