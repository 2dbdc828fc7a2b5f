#!/bin/sh
# SPDX-License-Identifier: MIT
# A throwaway NFS server on 127.0.0.1 for the nfs:// backend's tests and
# benchmarks: nfs-ganesha with its VFS backend, exporting STATE_DIR/export.
#
# Usage: tools/nfs-server.sh start|stop|status|env|pause|resume|restart [STATE_DIR]
#
#   start    start the server (and rpcbind if none runs) and wait until it
#            serves a real mount; fails if a server from STATE_DIR runs already
#   stop     stop what start started, and wait until it has exited
#   status   exit 0 if the server runs, 3 if not
#   env      print LK_NFS_URL=... and LK_NFS_EXPORT_DIR=... as shell lines
#   pause    SIGSTOP the server (it stops answering, connections stay open)
#   resume   SIGCONT it
#   restart  SIGKILL it, then start it again on the same export and ports
#
# Environment: LK_NFS_PORT (NFS, default 20490), LK_NFS_MNT_PORT (MOUNT,
# default 20491), LK_NFS_PROBE (path of the nfs-probe program, used to prove
# the export mounts), LK_NFS_START_TIMEOUT (seconds, default 30),
# LK_NFS_ADDR (the IPv4 address to listen on, default 127.0.0.1; restart
# keeps the one start used).
#
# Why it is built this way:
#  - The kernel here has no NFS client, so tests reach the export with libnfs;
#    ganesha runs in user space and needs no kernel NFS server either. Its VFS
#    backend opens files by handle, which needs root.
#  - Explicit unprivileged ports on 127.0.0.1 only, so that a system NFS server
#    on 2049 is left alone, and libnfs is told the ports in the URL instead of
#    asking the portmapper. NFSv3 still makes ganesha register with rpcbind
#    (without one it exits "Cannot register NFS V3 on TCP"), and registering
#    replaces any other registration of the NFS and MOUNT programs, as its
#    shutdown removes them: another NFS server on this machine that clients
#    find through the portmapper is disturbed while this one runs.
#  - NLM, RQUOTA and UDP are off (nothing here uses them, and they would take
#    more ports), the NFSv4 grace period is off (otherwise every start makes
#    new state wait it out), the D-Bus name has a per-port prefix and the
#    recovery directory is inside STATE_DIR, so two instances do not meet.
#  - Attr_Expiration_Time = 0: ganesha otherwise trusts its own cache of
#    attributes and directory entries for up to a minute, and does not see
#    changes made to the export through the local path (the tests run posix
#    stores on it beside nfs:// clients): it kept listing and serving a
#    generation record deleted locally, so an nfs:// claimant re-issued a
#    token and held the lease beside a local holder. Every request then
#    revalidates with the filesystem, which roughly doubles a LOOKUP.
#  - LK_NFS_ADDR exists for the partition tests: clients in network
#    namespaces (tools/netns-hosts.sh) cannot reach this namespace's
#    loopback, so the server listens on the address of their bridge instead.
#    The export has no client list: every address that reaches it may use
#    it, which only ever is this machine or its own test namespaces.
#  - D-Bus and Kerberos complaints in its log are expected and harmless: no
#    system bus and no keytab exist on test machines.
#  - Only processes whose pids this script wrote are ever signalled, and a pid
#    counts only while /proc shows it running our configuration, so a stale
#    pid file cannot hit an unrelated process. A system rpcbind is used, never
#    stopped; one started here is stopped by stop.
set -eu

prog=nfs-server
PATH=$PATH:/usr/sbin:/sbin

die()
{
	echo "$prog: $*" >&2
	exit 1
}

usage()
{
	echo "usage: $prog start|stop|status|env|pause|resume|restart [STATE_DIR]" >&2
	exit 64
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	usage
fi
cmd=$1
state=${2:-${LK_NFS_STATE_DIR:-/tmp/lockkit-nfs}}
case $state in
/*) ;;
*) state=$(pwd)/$state ;;
esac
state=${state%/}
# The export path goes into an nfs:// URL and a ganesha config unescaped.
case $state in
*[!A-Za-z0-9/._+-]*) die "STATE_DIR '$state' has characters an nfs:// URL cannot carry" ;;
esac

# An ordinary user with password-less sudo (as the README's test command
# allows): run the server side as root, and hand the export to that user.
case $cmd in
start | stop | restart | pause | resume)
	if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		exec sudo -n --preserve-env=LK_NFS_PORT,LK_NFS_MNT_PORT,LK_NFS_PROBE,LK_NFS_START_TIMEOUT,LK_NFS_ADDR \
			"$0" "$cmd" "$state"
	fi
	;;
esac

conf=$state/ganesha.conf
log=$state/ganesha.log
pidfile=$state/ganesha.pid
rpcpidfile=$state/rpcbind.pid
envfile=$state/env
export_dir=$state/export
timeout=${LK_NFS_START_TIMEOUT:-30}

now_ms()
{
	echo $(($(date +%s%N) / 1000000))
}

# State letter of a process (R, S, T, Z...), empty if there is none.
proc_state()
{
	sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null || true
}

# Running, not a zombie: an unreaped child of a non-reaping init still has a pid.
alive()
{
	_st=$(proc_state "$1")
	[ -n "$_st" ] && [ "$_st" != Z ]
}

# The pid in FILE if it is alive and its command line contains PATTERN.
pid_from()
{
	[ -r "$1" ] || return 0
	_p=$(cat "$1" 2>/dev/null || true)
	case $_p in
	'' | *[!0-9]*) return 0 ;;
	esac
	alive "$_p" || return 0
	tr '\0' ' ' <"/proc/$_p/cmdline" 2>/dev/null | grep -qF -- "$2" || return 0
	echo "$_p"
}

ganesha_pid()
{
	pid_from "$pidfile" "-f $conf "
}

rpcbind_pid()
{
	pid_from "$rpcpidfile" rpcbind
}

# Whether something listens on TCP PORT in this network namespace. Reads
# /proc so that it needs neither ss nor netstat on a minimal machine.
listening()
{
	hex=$(printf '%04X' "$1")
	awk -v port="$hex" '
		FNR > 1 && $4 == "0A" { n = split($2, a, ":"); if (a[n] == port) found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Wait until PID has exited, at most SECONDS.
wait_gone()
{
	end=$(($(now_ms) + $2 * 1000))
	while alive "$1"; do
		[ "$(now_ms)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

saved()
{
	if [ -r "$envfile" ]; then
		sed -n "s/^$1='\(.*\)'\$/\1/p" "$envfile"
	fi
}

need_root()
{
	[ "$(id -u)" -eq 0 ] && return 0
	die "must run as root: nfs-ganesha's VFS backend opens files by handle" \
		"(CAP_DAC_READ_SEARCH). The NFS tests need root; run ctest as root" \
		"or exclude them with -LE nfs."
}

# The address goes into the ganesha config and the URL unquoted.
check_addr()
{
	echo "$addr" | grep -Eq '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' ||
		die "LK_NFS_ADDR '$addr' is not an IPv4 address"
}

lock_state()
{
	mkdir -p "$state"
	exec 9>>"$state/lock"
	flock -w 60 9 || die "$state is locked by another $prog for over 60 s"
}

port_owner()
{
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp "sport = :$1" 2>/dev/null | head -3
	fi
}

write_conf()
{
	cat >"$conf" <<EOF
# Written by tools/nfs-server.sh; rewritten on every start.
NFS_CORE_PARAM {
	Bind_addr = $addr;
	NFS_Port = $nfs_port;
	MNT_Port = $mnt_port;
	Protocols = 3, 4;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
	Dbus_Name_Prefix = lockkit$nfs_port;
}
NFS_KRB5 {
	Active_krb5 = false;
}
NFSV4 {
	Graceless = true;
	RecoveryRoot = "$state/recovery";
}
EXPORT {
	Export_Id = 1;
	Path = "$export_dir";
	Pseudo = /lockkit;
	Protocols = 3, 4;
	Transports = TCP;
	Access_Type = RW;
	Attr_Expiration_Time = 0;
	Squash = No_Root_Squash;
	SecType = sys;
	FSAL {
		Name = VFS;
	}
}
EOF
}

write_env()
{
	url="nfs://$addr$export_dir?version=3&nfsport=$nfs_port&mountport=$mnt_port"
	cat >"$envfile.tmp" <<EOF
LK_NFS_URL='$url'
LK_NFS_EXPORT_DIR='$export_dir'
LK_NFS_SERVER_PID_FILE='$pidfile'
LK_NFS_PORT='$nfs_port'
LK_NFS_MNT_PORT='$mnt_port'
LK_NFS_ADDR='$addr'
EOF
	mv "$envfile.tmp" "$envfile"
}

# Known noise: no system D-Bus, no Kerberos keytab, no RADOS library.
noise='DBUS|krb5|keytab|principal nfs|RADOS|gssd|Callback creds'

diagnose()
{
	echo "$prog: $*" >&2
	if [ -s "$log" ]; then
		echo "== $log (last 40 lines without D-Bus/Kerberos noise)" >&2
		grep -Ev "$noise" "$log" | tail -n 40 >&2 || true
	fi
	if grep -q "No IP address found for $addr" "$log" 2>/dev/null; then
		echo "$prog: ganesha resolves Bind_addr with AI_ADDRCONFIG: it needs a" \
			"non-loopback IPv4 address to exist (not so in a network-less container)" >&2
	fi
	if [ -s "$state/ganesha.out" ]; then
		echo "== $state/ganesha.out" >&2
		tail -n 20 "$state/ganesha.out" >&2
	fi
}

start_rpcbind()
{
	if listening 111; then
		return 0
	fi
	command -v rpcbind >/dev/null 2>&1 || die "rpcbind is not installed (apt-get install rpcbind)"
	echo "$prog: no portmapper on port 111, starting rpcbind"
	# -w: warm start, keeps registrations across its own restarts; -f: stay
	# in the foreground so that the pid below is rpcbind's own.
	setsid rpcbind -f -w </dev/null >>"$state/rpcbind.out" 2>&1 9>&- &
	echo $! >"$rpcpidfile"
	end=$(($(now_ms) + 10000))
	until listening 111; do
		if ! alive "$(cat "$rpcpidfile")" || [ "$(now_ms)" -ge "$end" ]; then
			cat "$state/rpcbind.out" >&2 2>/dev/null || true
			die "rpcbind did not start"
		fi
		sleep 0.05
	done
}

# Start ganesha on the current configuration and wait until it serves.
launch()
{
	command -v ganesha.nfsd >/dev/null 2>&1 ||
		die "ganesha.nfsd is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)"
	for p in "$nfs_port" "$mnt_port"; do
		if listening "$p"; then
			port_owner "$p" >&2
			die "TCP port $p is in use; choose others with LK_NFS_PORT/LK_NFS_MNT_PORT"
		fi
	done
	# Called in a condition, where sh ignores set -e: check by hand.
	mkdir -p "$export_dir" "$state/recovery" || die "cannot create $export_dir"
	# started through sudo: the tests run as the calling user
	if [ -n "${SUDO_UID:-}" ]; then
		chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$export_dir" "$state" ||
			die "cannot hand $export_dir to uid $SUDO_UID"
	fi
	write_conf || die "cannot write $conf"
	write_env || die "cannot write $envfile"
	rm -f "$pidfile"
	: >"$state/ganesha.out"
	t0=$(now_ms)
	# Its own session: a terminal's Ctrl-C aimed at ctest must not stop it
	# between tests. fd 9 (the state lock) must not stay open in it.
	setsid ganesha.nfsd -F -f "$conf" -L "$log" -p "$pidfile" -N NIV_EVENT \
		</dev/null >>"$state/ganesha.out" 2>&1 9>&- &
	pid=$!
	echo "$pid" >"$pidfile"

	end=$((t0 + timeout * 1000))
	ready=""
	while [ "$(now_ms)" -lt "$end" ]; do
		if ! alive "$pid"; then
			wait "$pid" 2>/dev/null && rc=0 || rc=$?
			diagnose "ganesha.nfsd exited during start-up (status $rc)"
			rm -f "$pidfile"
			return 1
		fi
		if listening "$nfs_port" && listening "$mnt_port"; then
			if [ -n "${LK_NFS_PROBE:-}" ]; then
				# A real libnfs mount: the export is served, not just the port.
				if "$LK_NFS_PROBE" --mount-only "$url" >"$state/probe.out" 2>&1; then
					ready=mount
					break
				fi
			elif grep -q 'NFS SERVER INITIALIZED' "$log" 2>/dev/null; then
				ready=listen
				break
			fi
		fi
		sleep 0.1
	done
	if [ -z "$ready" ]; then
		diagnose "ganesha.nfsd did not serve $url within $timeout s"
		[ -s "$state/probe.out" ] && cat "$state/probe.out" >&2
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || true
		rm -f "$pidfile"
		return 1
	fi
	echo "$prog: ready in $(($(now_ms) - t0)) ms (pid $pid, $([ "$ready" = mount ] &&
		echo "export mounted" || echo "ports listen; set LK_NFS_PROBE for a mount check"))"
	echo "$prog: LK_NFS_URL='$url'"
}

stop_pid()
{
	kill -TERM "$1" 2>/dev/null || true
	# A paused server cannot act on SIGTERM until it runs again.
	kill -CONT "$1" 2>/dev/null || true
	if ! wait_gone "$1" "$2"; then
		echo "$prog: pid $1 ignored SIGTERM for $2 s, killing it" >&2
		kill -KILL "$1" 2>/dev/null || true
		wait_gone "$1" 5 || die "pid $1 did not exit"
	fi
}

do_start()
{
	need_root
	lock_state
	pid=$(ganesha_pid)
	if [ -n "$pid" ]; then
		echo "$prog: a server from $state is already running (pid $pid);" \
			"run '$0 stop $state' first" >&2
		exit 2
	fi
	nfs_port=${LK_NFS_PORT:-20490}
	mnt_port=${LK_NFS_MNT_PORT:-20491}
	addr=${LK_NFS_ADDR:-127.0.0.1}
	check_addr
	# A fresh, empty export and log on every start (restart keeps both).
	rm -rf "$export_dir" "$state/recovery" "$log"
	start_rpcbind
	if ! launch; then
		do_stop_rpcbind
		exit 1
	fi
}

do_stop_rpcbind()
{
	pid=$(rpcbind_pid)
	if [ -n "$pid" ]; then
		stop_pid "$pid" 10
		echo "$prog: stopped rpcbind (pid $pid)"
	fi
	rm -f "$rpcpidfile"
}

do_stop()
{
	[ -d "$state" ] || {
		echo "$prog: not running (no $state)"
		return 0
	}
	need_root
	lock_state
	pid=$(ganesha_pid)
	if [ -n "$pid" ]; then
		t0=$(now_ms)
		stop_pid "$pid" 20
		echo "$prog: stopped ganesha.nfsd (pid $pid) in $(($(now_ms) - t0)) ms"
	else
		echo "$prog: ganesha.nfsd from $state is not running"
	fi
	rm -f "$pidfile"
	do_stop_rpcbind
}

do_restart()
{
	need_root
	lock_state
	nfs_port=$(saved LK_NFS_PORT)
	mnt_port=$(saved LK_NFS_MNT_PORT)
	if [ -z "$nfs_port" ] || [ -z "$mnt_port" ]; then
		die "no server was started from $state"
	fi
	# a state directory from before LK_NFS_ADDR existed: loopback
	addr=$(saved LK_NFS_ADDR)
	addr=${addr:-127.0.0.1}
	pid=$(ganesha_pid)
	if [ -n "$pid" ]; then
		kill -KILL "$pid"
		wait_gone "$pid" 10 || die "pid $pid did not exit after SIGKILL"
		# The pid reads as a zombie once its main thread is gone, while
		# other threads may still be exiting with the listening sockets
		# open: the ports are free only a moment later.
		end=$(($(now_ms) + 10000))
		while listening "$nfs_port" || listening "$mnt_port"; do
			[ "$(now_ms)" -lt "$end" ] ||
				die "ports $nfs_port/$mnt_port still in use 10 s after killing pid $pid"
			sleep 0.02
		done
		echo "$prog: killed ganesha.nfsd (pid $pid)"
	fi
	start_rpcbind
	launch || exit 1
}

signal_server()
{
	pid=$(ganesha_pid)
	[ -n "$pid" ] || die "no server from $state is running"
	kill "-$1" "$pid"
	# Return only once the server is in the state asked for.
	end=$(($(now_ms) + 5000))
	while :; do
		# Every thread: kill returns before a busy thread has stopped.
		states=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$pid"/task/*/stat 2>/dev/null |
			sort -u | tr -d '\n')
		if [ "$1" = STOP ]; then
			case $states in
			T | t | Tt) break ;;
			esac
		else
			case $states in
			*[Tt]*) ;;
			*) break ;;
			esac
		fi
		[ "$(now_ms)" -lt "$end" ] || die "pid $pid did not react to SIG$1"
		sleep 0.01
	done
	echo "$prog: ganesha.nfsd (pid $pid) $([ "$1" = STOP ] && echo paused || echo resumed)"
}

case $cmd in
start)
	do_start
	;;
stop)
	do_stop
	;;
restart)
	do_restart
	;;
status)
	pid=$(ganesha_pid)
	if [ -z "$pid" ]; then
		echo "$prog: not running ($state)"
		exit 3
	fi
	s=$(proc_state "$pid")
	echo "$prog: running (pid $pid$([ "$s" = T ] && echo ", paused")," \
		"NFS port $(saved LK_NFS_PORT), MOUNT port $(saved LK_NFS_MNT_PORT))"
	echo "$prog: LK_NFS_URL='$(saved LK_NFS_URL)'"
	;;
env)
	[ -r "$envfile" ] || die "no server was started from $state"
	cat "$envfile"
	;;
pause)
	signal_server STOP
	;;
resume)
	signal_server CONT
	;;
*)
	usage
	;;
esac
