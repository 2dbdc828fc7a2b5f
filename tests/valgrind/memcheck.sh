#!/bin/sh
# SPDX-License-Identifier: MIT
# lockctl's main commands under valgrind memcheck: run (kernel and lease
# mode, free and busy), status and ls (text and JSON, free and held) and
# usage errors. Any memcheck error, or a definite leak, fails the check;
# so does a command whose exit status is not the one expected, so that a
# command which stops early cannot pass by doing nothing.
#
# The thread engine is used (LOCKKIT_NO_URING=1): valgrind 3.19 does not
# model io_uring's shared rings, and a program waiting on a completion
# queue under it never wakes. The io_uring engine's memory is covered by
# the ASan build instead. Timed waits (-w) are not run here either: valgrind
# 3.19 runs fcntl(F_OFD_SETLKW) with signals blocked, so the timer signal
# that ends such a wait is held until the lock comes free.
#
# Usage: memcheck.sh LOCKCTL SCRATCH_DIR
set -u
lockctl=$1
tmp=$2
command -v valgrind >/dev/null 2>&1 || {
	echo "memcheck: valgrind is not installed (Debian package valgrind; tools/install-deps.sh test installs it)" >&2
	exit 1
}
rm -rf "$tmp"
mkdir -p "$tmp"
store=$tmp/store
export LOCKKIT_NO_URING=1
fail=0
n=0

vg() {
	# vg EXPECTED_STATUS ARGS...: lockctl ARGS under memcheck
	want=$1
	shift
	n=$((n + 1))
	log=$tmp/vg.$n.log
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--show-leak-kinds=definite --trace-children=yes \
		--trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*' --child-silent-after-fork=no \
		--log-file="$log.%p" "$lockctl" -S "$store" "$@" >"$tmp/out.$n" 2>"$tmp/err.$n"
	got=$?
	bad=$(cat "$log".* 2>/dev/null | grep -c '==[0-9]*== ' || true)
	if [ "$got" != "$want" ] || [ "$bad" != 0 ]; then
		echo "FAIL: lockctl $*: exit $got (expected $want), $bad memcheck lines" >&2
		cat "$tmp/err.$n" "$log".* >&2 2>/dev/null
		fail=1
	else
		echo "ok: lockctl $* (exit $got)"
	fi
}

vg 0 run vk -- true
vg 3 run vk -- sh -c 'exit 3'
vg 0 run vl --mode lease --ttl 2s -- sh -c 'sleep 0.3'
vg 0 run vl -c 'true'
vg 0 status vk
vg 0 status vl --json
vg 0 ls
vg 0 ls --json
vg 64 run
vg 64 run vk --ttl nonsense -- true
vg 64 status '../x'
vg 0 log vl
vg 0 log --json
vg 0 doctor --json
vg 0 metrics

# held by another process: busy paths and "held" reports
"$lockctl" -S "$store" run vk -- sleep 300 >/dev/null 2>&1 &
k=$!
"$lockctl" -S "$store" run vl -- sleep 300 >/dev/null 2>&1 &
l=$!
i=0
until "$lockctl" -S "$store" status vk --json 2>/dev/null | grep -q '"held": *true' &&
	"$lockctl" -S "$store" status vl --json 2>/dev/null | grep -q '"held": *true'; do
	i=$((i + 1))
	if [ $i -gt 200 ]; then
		echo "FAIL: the holders never took their locks" >&2
		fail=1
		break
	fi
	sleep 0.05
done
vg 1 run vk -n -- true
vg 7 run vl -n -E 7 -- true
vg 0 status vk
vg 0 status vl --json
vg 0 ls --json
grep -q '"held": *true' "$tmp/out.$n" || {
	echo "FAIL: ls --json under memcheck did not report the held locks" >&2
	fail=1
}
kill -TERM $k $l 2>/dev/null
wait $k $l 2>/dev/null

[ $fail = 0 ] && rm -rf "$tmp"
exit $fail
