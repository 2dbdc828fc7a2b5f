#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages lockkit needs to build and test, if missing.
# Works as root, or as an ordinary user with sudo. Usage: tools/install-deps.sh [build|test]
set -eu

want=${1:-test}
pkgs="gcc make cmake pkg-config libc6-dev liburing-dev libnfs-dev"
if [ "$want" = test ]; then
	pkgs="$pkgs libcmocka-dev util-linux procps python3"
	pkgs="$pkgs nfs-ganesha nfs-ganesha-vfs rpcbind"
	# verification: libFuzzer (clang and its runtime), the Promela model
	# checker, clock faking, memcheck, network namespaces for partitions,
	# promtool for the metrics exposition
	pkgs="$pkgs clang-14 libclang-rt-14-dev spin faketime libfaketime valgrind iproute2"
	pkgs="$pkgs prometheus"
fi

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	as_root=""
elif command -v sudo >/dev/null 2>&1; then
	as_root="sudo"
else
	echo "install-deps: missing packages:$missing; run this as root or install sudo" >&2
	exit 1
fi
echo "install-deps: installing$missing"
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
