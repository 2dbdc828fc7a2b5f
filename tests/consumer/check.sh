#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the build into a scratch prefix, then build and run a consumer
# program against it twice: with CMake's package files and with pkg-config.
# Usage: check.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/lockkit.h"
test -f "$tmp/prefix/include/lockkit/backend.h"
test -x "$tmp/prefix/bin/lockctl"
ls "$tmp"/prefix/lib*/liblockkit.so.0 >/dev/null
ls "$tmp"/prefix/lib*/liblockkit.a >/dev/null

# Only lk_ symbols may be exported from the shared library.
bad=$(nm -D --defined-only "$tmp"/prefix/lib*/liblockkit.so | awk '{print $3}' | grep -v '^lk_' | grep -v '^LOCKKIT_' || true)
if [ -n "$bad" ]; then
	echo "unexpected exported symbols: $bad" >&2
	exit 1
fi
if nm -D --defined-only "$tmp"/prefix/lib*/liblockkit.so | awk '{print $3}' | grep -q '^lk__'; then
	echo "internal lk__ symbols are exported" >&2
	exit 1
fi

cmake -S "$src/tests/consumer" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
libdir=$(dirname "$(ls "$tmp"/prefix/lib*/liblockkit.so.0)")
LD_LIBRARY_PATH=$libdir "$tmp/cmake/consumer_shared" "$tmp/store1"
"$tmp/cmake/consumer_static" "$tmp/store1"

PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
cc -o "$tmp/consumer_pc" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs lockkit)
LD_LIBRARY_PATH=$libdir "$tmp/consumer_pc" "$tmp/store2"
echo "consumer: CMake and pkg-config builds against the installed package work"
