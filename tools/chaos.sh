#!/bin/sh
# SPDX-License-Identifier: MIT
# The chaos checker's long profile: at least 100,000 critical sections in
# each mode under SIGKILL and SIGSTOP/SIGCONT, with a summary table per mode.
# CI runs the short profile through ctest (labels chaos and clock); this is
# the run to do before a release or after touching the lease protocol.
#
# Usage: tools/chaos.sh [BUILD_DIR] [MODE...] [-- CHAOS_OPTIONS...]
#
#   BUILD_DIR  a configured build directory (default: build); the chaos
#              program is built there if missing
#   MODE       kernel, lease, lease-thread, nfs (default: all four; nfs
#              only in a build with libnfs)
#   options after -- go to every run, e.g. -- --sections 20000 --seed 7
#
# The nfs run starts a private test server (tools/nfs-server.sh) on the
# ports the build was configured with (LOCKKIT_NFS_PORT, LOCKKIT_NFS_MNT_PORT
# in CMakeCache.txt) with its own state directory, and stops it afterwards;
# do not run it while ctest runs the NFS tests of the same build directory.
# The exit status is non-zero if any run found a violation or failed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=build
if [ $# -gt 0 ] && [ "$1" != -- ] && [ -d "$1" ]; then
	build=$1
	shift
fi
modes=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	modes="$modes $1"
	shift
done
[ $# -gt 0 ] && shift
[ -n "$modes" ] || modes="kernel lease lease-thread nfs"

[ -f "$build/CMakeCache.txt" ] || {
	echo "chaos.sh: $build is not a configured build directory" >&2
	exit 64
}
build=$(cd "$build" && pwd)
cmake --build "$build" --target chaos >/dev/null
chaos=$build/tests/chaos/chaos
scratch=$build/tests/chaos/long
mkdir -p "$scratch"

cache() {
	sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"
}

nfs_state=$build/chaos-nfs-state
nfs_started=0
stop_nfs() {
	if [ "$nfs_started" = 1 ]; then
		sh "$here/nfs-server.sh" stop "$nfs_state" >/dev/null 2>&1 || true
		nfs_started=0
	fi
}
trap stop_nfs EXIT INT TERM

failed=
for mode in $modes; do
	echo "== chaos, long profile: $mode"
	case $mode in
	kernel)
		"$chaos" --dir "$scratch" --mode kernel --profile long "$@" || failed="$failed $mode"
		;;
	lease)
		LOCKKIT_NO_URING=0 "$chaos" --dir "$scratch" --mode lease --profile long "$@" ||
			failed="$failed $mode"
		;;
	lease-thread)
		LOCKKIT_NO_URING=1 "$chaos" --dir "$scratch" --mode lease --profile long "$@" ||
			failed="$failed $mode"
		;;
	nfs)
		probe=$build/tests/nfs/nfs-probe
		if [ ! -x "$probe" ]; then
			echo "chaos.sh: this build has no nfs:// support (no nfs-probe); skipping nfs" >&2
			continue
		fi
		port=$(cache LOCKKIT_NFS_PORT)
		mport=$(cache LOCKKIT_NFS_MNT_PORT)
		export LK_NFS_PORT="${port:-20490}" LK_NFS_MNT_PORT="${mport:-20491}"
		export LK_NFS_PROBE="$probe"
		sh "$here/nfs-server.sh" stop "$nfs_state" >/dev/null 2>&1 || true
		sh "$here/nfs-server.sh" start "$nfs_state" >/dev/null
		nfs_started=1
		export LK_NFS_URL="nfs://127.0.0.1$nfs_state/export?version=3&nfsport=$LK_NFS_PORT&mountport=$LK_NFS_MNT_PORT"
		"$chaos" --dir "$scratch" --mode lease --store env:LK_NFS_URL --ttl 2000 \
			--profile long "$@" || failed="$failed $mode"
		stop_nfs
		;;
	*)
		echo "chaos.sh: unknown mode $mode (kernel, lease, lease-thread, nfs)" >&2
		exit 64
		;;
	esac
done
rmdir "$scratch" 2>/dev/null || true
if [ -n "$failed" ]; then
	echo "chaos.sh: FAILED:$failed"
	exit 1
fi
echo "chaos.sh: all runs passed"
