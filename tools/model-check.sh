#!/bin/sh
# SPDX-License-Identifier: MIT
# Check the Promela model of the lease protocol with spin: the model itself
# must come out clean from an exhaustive search, and every deliberately
# broken variant (-DBROKEN_*) and reachability check (-DREACH_*) that the
# model defines must make spin report an assertion violation. A check that
# can only pass proves little, so a variant that spin does not catch fails
# the run as surely as an error in the real model does.
#
# Usage: tools/model-check.sh [-k] [-v VARIANT]... [MODEL.pml]
#   MODEL     default: tests/model/lease.pml next to this script
#   -v NAME   run only the real model and this variant (repeatable); the
#             default is every BROKEN_* and REACH_* macro the model tests
#   -k        keep the working directory (pan sources, trails)
# Environment: SPIN (default spin), CC (default cc), MODEL_MEMLIM (MB of
# memory pan may use, default 2048), MODEL_REQUIRED (variants the model must
# define; default BROKEN_NO_CHECK BROKEN_RHO BROKEN_LATE_RENEWAL).
# Prints one line per run; exits 0 only if every run came out as it must.
# shellcheck disable=SC2086 # $def and $opt are empty or flags: split on purpose
set -eu

here=$(cd "$(dirname "$0")" && pwd)
spin=${SPIN:-spin}
cc=${CC:-cc}
memlim=${MODEL_MEMLIM:-2048}
keep=0
only=

while getopts kv: opt; do
	case $opt in
	k) keep=1 ;;
	v) only="$only $OPTARG" ;;
	*) echo "usage: $0 [-k] [-v VARIANT]... [MODEL.pml]" >&2; exit 64 ;;
	esac
done
shift $((OPTIND - 1))
model=${1:-$here/../tests/model/lease.pml}
[ -r "$model" ] || { echo "model-check: cannot read $model" >&2; exit 66; }
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
command -v "$spin" >/dev/null || { echo "model-check: $spin not found" >&2; exit 69; }
command -v "$cc" >/dev/null || { echo "model-check: $cc not found" >&2; exit 69; }

if [ -n "$only" ]; then
	variants=$(echo "$only" | tr ' ' '\n' | grep -E '^(BROKEN|REACH)_' || true)
else
	variants=$(sed -n 's/^#ifn\{0,1\}def[[:space:]]\{1,\}\(\(BROKEN\|REACH\)_[A-Z0-9_]*\).*/\1/p' \
		"$model" | sort -u)
fi
[ -n "$variants" ] || { echo "model-check: no BROKEN_/REACH_ variant to check" >&2; exit 65; }
# A variant dropped from the model by mistake would quietly stop being
# checked: these must be there.
if [ -z "$only" ]; then
	for v in ${MODEL_REQUIRED-BROKEN_NO_CHECK BROKEN_RHO BROKEN_LATE_RENEWAL}; do
		echo "$variants" | grep -qx "$v" ||
			{ echo "model-check: the model lacks the variant $v" >&2; exit 65; }
	done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/model-check.XXXXXX")
cleanup()
{
	if [ "$keep" = 1 ]; then
		echo "model-check: working directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# The assertion a counterexample violates, as file:line and source text:
# replaying the trail names the line.
where()
{
	at=$(cd "$1" && "$spin" -t $2 model.pml 2>&1 |
		sed -n 's/.*model\.pml:\([0-9]\{1,\}\), Error: assertion violated.*/\1/p' | head -n 1)
	if [ -n "$at" ]; then
		printf 'line %s: %s' "$at" "$(sed -n "${at}p" "$1/model.pml" | sed 's/^[[:space:]]*//')"
	else
		grep -m1 -o 'assertion violated.*' "$1/pan.out" || true
	fi
}

# run NAME MUST: MUST is "clean" (exhaustive, no error) or "caught" (an
# assertion violation).
run()
{
	name=$1 must=$2
	dir=$work/$name
	mkdir -p "$dir"
	cp "$model" "$dir/model.pml"
	def=
	[ "$name" = real ] || def=-D$name
	t0=$(date +%s.%N)
	if ! (cd "$dir" && "$spin" -a $def model.pml >spin.out 2>&1); then
		echo "model $name: spin -a failed:"
		sed 's/^/  /' "$dir/spin.out"
		failed=1
		return
	fi
	# SAFETY: assertions only (no cycles); COLLAPSE: compressed states;
	# MEMLIM: stay within a share of a busy machine's memory. A variant
	# that must be caught is searched breadth-first: it finds the shortest
	# counterexample, and most of them sooner than depth-first does.
	# Those searches are short, so their pan is compiled with less
	# optimisation, which halves the compile time.
	opt="-O2 -DSAFETY"
	[ "$must" = clean ] || opt="-O1 -DSAFETY -DBFS"
	if ! (cd "$dir" && "$cc" $opt -w -DCOLLAPSE -DMEMLIM="$memlim" \
		-o pan pan.c >cc.out 2>&1); then
		echo "model $name: compiling pan failed:"
		sed 's/^/  /' "$dir/cc.out"
		failed=1
		return
	fi
	# -E: the clock process never ends, so end states say nothing; only
	# assertions count. -m: far deeper than the model goes (a few hundred).
	# -c1: stop at the first error (the default, spelled out).
	(cd "$dir" && ./pan -E -m100000 -c1 >pan.out 2>&1) || true
	t1=$(date +%s.%N)
	out=$dir/pan.out
	errors=$(sed -n 's/.*errors: \([0-9]\{1,\}\).*/\1/p' "$out" | tail -n 1)
	states=$(sed -n 's/^ *\([0-9.e+]\{1,\}\) states, stored.*/\1/p' "$out" | tail -n 1)
	depth=$(sed -n 's/.*depth reached \([0-9]\{1,\}\).*/\1/p' "$out" | tail -n 1)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	line=$(printf '%-24s states %-9s depth %-5s errors %-3s %5s s' "$name" \
		"${states:-?}" "${depth:-?}" "${errors:-?}" "$secs")
	why=
	if [ -z "$errors" ]; then
		why="pan gave no result"
	elif grep -q 'max search depth too small' "$out"; then
		why="search depth too small: the search was not exhaustive"
	elif grep -q 'out of memory\|reached -DMEMLIM bound' "$out"; then
		why="pan ran out of memory (MODEL_MEMLIM=$memlim MB)"
	elif grep -q 'invalid array index' "$out"; then
		why="the model indexed an array out of bounds"
	elif [ "$must" = clean ]; then
		if [ "$errors" != 0 ]; then
			why="spin found a violation in the real model"
		elif ! grep -q 'Full statespace search' "$out" ||
			grep -q 'Search not completed' "$out"; then
			why="the search was not exhaustive"
		fi
	elif [ "$errors" = 0 ] || ! grep -q 'assertion violated' "$out"; then
		why="not caught: spin found no violation"
	fi
	if [ -n "$why" ]; then
		echo "FAIL $line  $why"
		grep -m1 'assertion violated\|pan:1:\|error' "$out" | sed 's/^/     /' || true
		if [ "$must" = clean ] && [ -f "$dir/model.pml.trail" ]; then
			echo "     last steps of the counterexample" \
				"(spin -t -p $def model.pml; clock ticks left out):"
			(cd "$dir" && "$spin" -t -p $def model.pml 2>&1 |
				grep -E '^ *[0-9]+:[[:space:]]+proc ' | grep -v 'proc  0 (clock' |
				tail -n 30 | sed 's/^/       /')
		fi
		failed=1
	elif [ "$must" = clean ]; then
		echo "ok   $line  exhaustive, no violation"
	else
		echo "ok   $line  caught: $(where "$dir" "$def")"
	fi
}

echo "model-check: $model ($("$spin" -V 2>&1 | head -n 1))"
run real clean
for v in $variants; do
	run "$v" caught
done
if [ "$failed" != 0 ]; then
	echo "model-check: FAILED"
	exit 1
fi
echo "model-check: all runs came out as they must"
