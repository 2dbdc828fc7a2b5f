#!/bin/bash
# SPDX-License-Identifier: MIT
# Live demo on the default local store: three workers contend for one lock,
# the holder is SIGKILLed, a waiter takes over at once with a higher fencing
# token; then the next holder is stopped gracefully and the last one takes over.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh build
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build-demo -j"$(nproc)" --target lockctl >/dev/null
L=$PWD/build-demo/lockctl
name=demo

ts() { date +%T.%3N; }
say() { printf '\n[%s] \033[1m%s\033[0m\n' "$(ts)" "$*"; }
holder_pid() { "$L" status "$name" --json | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'; }

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
}
trap cleanup EXIT

if [ -n "${LOCKCTL_STORE:-}" ]; then store=$LOCKCTL_STORE
elif [ "$(id -u)" = 0 ]; then store=/run/lockkit
else store=/tmp/lockkit-$(id -u); fi
say "lockctl $("$L" --version | cut -d' ' -f2), store $store"
say "Starting three workers that each run: lockctl run $name -- <work>"
# shellcheck disable=SC2016 # $LOCKCTL_TOKEN is for the worker's shell
for w in A B C; do
	"$L" run "$name" --owner "worker-$w" -- sh -c '
		echo "[$(date +%T.%3N)] worker '"$w"' holds the lock, token $LOCKCTL_TOKEN"
		trap "echo \"[\$(date +%T.%3N)] worker '"$w"' got SIGTERM, finishing\"; exit 0" TERM
		sleep 60 & wait' &
	pids+=($!)
	disown
	sleep 0.2
done
sleep 0.5
say "Status while the first worker holds it:"
"$L" status "$name"

victim=$(holder_pid)
say "SIGKILL the holder's lockctl (pid $victim): its work dies with it, a waiter takes over"
kill -KILL "$victim"
sleep 0.5
"$L" status "$name"

victim=$(holder_pid)
say "SIGTERM the new holder's lockctl (pid $victim): forwarded to its work, which exits cleanly"
kill -TERM "$victim"
sleep 0.5
"$L" status "$name"

say "Every lock in the store:"
"$L" ls
say "Tokens only go up: every holder got a higher one. Stopping the last worker."
