#!/bin/sh
# SPDX-License-Identifier: MIT
# A few test "hosts" on this machine, for partition tests: each host is a
# network namespace whose only interface is one end of a veth pair; the other
# ends are ports of a bridge in the root namespace, and the bridge has an
# address of its own, where a test NFS server can listen
# (LK_NFS_ADDR=... tools/nfs-server.sh start). Cutting a host off and
# healing it again is one command, and so is killing a whole host.
#
# Usage: tools/netns-hosts.sh up N | down | env | exec HOST CMD... |
#                             cut HOST [link|drop] | heal HOST | kill HOST
#
#   up N     create hosts 1..N (removing leftovers of the same prefix first)
#            and print their addresses as shell lines (as env does)
#   down     kill every process in the hosts and remove everything up made
#   env      LK_NETNS_BRIDGE_ADDR=..., LK_NETNS_HOST_<i>_NS=...,
#            LK_NETNS_HOST_<i>_ADDR=... as shell lines
#   exec     run CMD inside HOST's network namespace
#   cut      cut HOST off: "link" (the default) takes its interface down, as a
#            pulled cable or a dead NIC would: its sends fail at once with
#            "Network is unreachable"; "drop" makes the bridge drop every
#            frame to and from it, as a failed switch or a firewall would:
#            the host sees its link up and its packets vanish, so TCP only
#            retransmits, and the first error it reports is a timeout
#   heal     undo either cut
#   kill     SIGKILL every process whose network namespace is HOST's: the
#            host crashes as a whole
#
# HOST is a number from 1 to N or a namespace name that up printed.
#
# Environment: LK_NETNS_PREFIX (default lkh; 1 to 9 characters from
# [a-z0-9], starting with a letter) names everything made here, so that
# runs with different prefixes do not meet and a rerun with the same prefix
# replaces what an interrupted one left. LK_NETNS_SUBNET (default 10.213.47)
# is the first three octets of a /24 for the bridge (.1) and the hosts
# (.11, .12, ...). When it is not set and that /24 is already in use in the
# root namespace (another prefix's bridge, a real network), up takes the next
# free one (10.213.48, ...); when it is set, a /24 in use is an error.
#
# Why it is built this way:
#  - Only namespaces, links and addresses made here are ever touched: names
#    all start with the prefix, the state file in /run/lockkit-netns records
#    the /24, and down removes exactly those. Interface names are at most 15
#    bytes, hence the short prefix: the bridge is <prefix>br, the root ends of
#    the veth pairs <prefix>v<i>, and inside each namespace the interface is
#    eth0 (names there are private to the namespace).
#  - This kernel has neither the netem qdisc nor tc actions, so "drop" uses
#    the bridge's own port state: a port in state "disabled" neither delivers
#    what it receives nor forwards anything to it, and nothing on the host's
#    side notices. Heal brings the port back to "forwarding", which the
#    kernel allows only once the port's carrier is up again, so heal brings
#    the link up first and then waits for the port.
#  - A down interface loses its connected route but keeps its IPv4 address,
#    and the route comes back with the link, so heal needs nothing else.
#  - up and down hold a lock while they choose or free a /24, so that
#    concurrent runs with different prefixes never take the same one.
set -eu

prog=netns-hosts
PATH=$PATH:/usr/sbin:/sbin

die()
{
	echo "$prog: $*" >&2
	exit 1
}

usage()
{
	echo "usage: $prog up N | down | env | exec HOST CMD... | cut HOST [link|drop] |" \
		"heal HOST | kill HOST" >&2
	exit 64
}

[ $# -ge 1 ] || usage
cmd=$1
shift

prefix=${LK_NETNS_PREFIX:-lkh}
case $prefix in
[a-z] | [a-z][a-z0-9] | [a-z][a-z0-9][a-z0-9] | [a-z][a-z0-9][a-z0-9][a-z0-9] | \
	[a-z][a-z0-9][a-z0-9][a-z0-9][a-z0-9] | [a-z][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9] | \
	[a-z][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9] | \
	[a-z][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9] | \
	[a-z][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9]) ;;
*) die "LK_NETNS_PREFIX '$prefix' must be 1 to 9 characters from [a-z0-9], starting with a letter" ;;
esac

statedir=/run/lockkit-netns
statefile=$statedir/$prefix.env
bridge=${prefix}br

need_root()
{
	[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
	command -v ip >/dev/null 2>&1 || die "ip is not installed (apt-get install iproute2)"
}

now_ms()
{
	echo $(($(date +%s%N) / 1000000))
}

lock_state()
{
	mkdir -p "$statedir"
	exec 9>>"$statedir/lock"
	flock -w 60 9 || die "$statedir/lock is held by another $prog for over 60 s"
}

saved()
{
	if [ -r "$statefile" ]; then
		sed -n "s/^$1='\(.*\)'\$/\1/p" "$statefile"
	fi
}

# Our namespaces, one name a line.
our_ns()
{
	ip netns list 2>/dev/null | awk -v p="$prefix-h" '
		index($1, p) == 1 && substr($1, length(p) + 1) ~ /^[0-9]+$/ { print $1 }'
}

# Our links in the root namespace: the bridge and the root ends of the pairs.
our_links()
{
	ip -o link show 2>/dev/null | awk -F': ' -v p="$prefix" '
		{ n = $2; sub(/@.*/, "", n)
		  if (n == p "br" || (index(n, p "v") == 1 && substr(n, length(p) + 2) ~ /^[0-9]+$/))
			print n }'
}

# Whether any IPv4 address or route of the root namespace (other than the
# default route) overlaps NET.0/24.
net_in_use()
{
	{
		ip -4 -o addr show 2>/dev/null | awk '{ print $4 }'
		ip -4 route show table all 2>/dev/null | awk '
			$1 ~ /^(local|broadcast|unicast|unreachable|blackhole|prohibit|throw|anycast|multicast)$/ {
				print $2; next }
			{ print $1 }'
	} | awk -v net="$1.0" '
		function num(s, o) { split(s, o, "."); return ((o[1] * 256 + o[2]) * 256 + o[3]) * 256 + o[4] }
		$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(\/[0-9]+)?$/ {
			n = split($1, a, "/"); len = n > 1 ? a[2] + 0 : 32
			if (len == 0) next
			size = 2 ^ (32 - len); base = int(num(a[1]) / size) * size; lo = num(net)
			if (base < lo + 256 && lo < base + size) found = 1
		}
		END { exit !found }'
}

valid_net()
{
	echo "$1" | grep -Eq '^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){2}$'
}

pick_net()
{
	if [ -n "${LK_NETNS_SUBNET:-}" ]; then
		valid_net "$LK_NETNS_SUBNET" || die "LK_NETNS_SUBNET '$LK_NETNS_SUBNET' is not three octets (like 10.213.47)"
		! net_in_use "$LK_NETNS_SUBNET" || die "$LK_NETNS_SUBNET.0/24 is in use in the root namespace"
		echo "$LK_NETNS_SUBNET"
		return 0
	fi
	o=47
	while [ $o -lt 80 ]; do
		if ! net_in_use "10.213.$o"; then
			echo "10.213.$o"
			return 0
		fi
		o=$((o + 1))
	done
	die "no free /24 in 10.213.47.0 to 10.213.79.0; set LK_NETNS_SUBNET"
}

# Kill every process in namespace NS, and wait until none is left.
kill_ns()
{
	end=$(($(now_ms) + 10000))
	n=0
	while :; do
		pids=$(ip netns pids "$1" 2>/dev/null || true)
		[ -n "$pids" ] || break
		for p in $pids; do
			kill -KILL "$p" 2>/dev/null && n=$((n + 1))
		done
		[ "$(now_ms)" -lt "$end" ] || die "processes left in $1 after 10 s: $pids"
		sleep 0.01
	done
	echo "$n"
}

do_down()
{
	for ns in $(our_ns); do
		kill_ns "$ns" >/dev/null
		ip netns del "$ns" || die "cannot delete namespace $ns"
	done
	# Deleting a namespace deletes the pair with it; what is left is ours.
	for l in $(our_links); do
		ip link del "$l" 2>/dev/null || true
	done
	[ -z "$(our_links)" ] || die "cannot delete links: $(our_links | tr '\n' ' ')"
	rm -f "$statefile"
}

do_up()
{
	[ $# -eq 1 ] || usage
	case $1 in
	'' | *[!0-9]*) usage ;;
	esac
	[ "$1" -ge 1 ] && [ "$1" -le 200 ] || die "between 1 and 200 hosts"
	do_down
	net=$(pick_net)
	trap 'do_down' EXIT
	ip link add "$bridge" type bridge
	ip addr add "$net.1/24" dev "$bridge"
	ip link set "$bridge" up
	{
		echo "LK_NETNS_PREFIX='$prefix'"
		echo "LK_NETNS_SUBNET='$net'"
		echo "LK_NETNS_BRIDGE='$bridge'"
		echo "LK_NETNS_BRIDGE_ADDR='$net.1'"
		echo "LK_NETNS_HOSTS='$1'"
	} >"$statefile.tmp"
	i=1
	while [ $i -le "$1" ]; do
		ns=$prefix-h$i
		ip netns add "$ns"
		ip link add "${prefix}v$i" type veth peer name eth0 netns "$ns"
		ip link set "${prefix}v$i" master "$bridge" up
		ip -n "$ns" addr add "$net.$((10 + i))/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" link set lo up
		echo "LK_NETNS_HOST_${i}_NS='$ns'" >>"$statefile.tmp"
		echo "LK_NETNS_HOST_${i}_ADDR='$net.$((10 + i))'" >>"$statefile.tmp"
		i=$((i + 1))
	done
	mv "$statefile.tmp" "$statefile"
	trap - EXIT
	wait_ports
	cat "$statefile"
}

# Wait until every port of the bridge forwards (a new port may be brought up
# a moment after its carrier).
wait_ports()
{
	end=$(($(now_ms) + 5000))
	while bridge link show 2>/dev/null | grep " master $bridge " | grep -qv 'state forwarding'; do
		[ "$(now_ms)" -lt "$end" ] || die "bridge ports of $bridge do not forward"
		sleep 0.02
	done
}

# HOST (a number or a namespace name) -> ns and i.
resolve()
{
	[ -r "$statefile" ] || die "no hosts with prefix $prefix (run up first)"
	case $1 in
	'' | *[!0-9]*)
		i=$(sed -n "s/^LK_NETNS_HOST_\([0-9]*\)_NS='$1'\$/\1/p" "$statefile")
		;;
	*) i=$1 ;;
	esac
	ns=$(saved "LK_NETNS_HOST_${i:-x}_NS")
	[ -n "$ns" ] || die "no host '$1' with prefix $prefix"
	veth=${prefix}v$i
}

do_cut()
{
	[ $# -ge 1 ] && [ $# -le 2 ] || usage
	resolve "$1"
	case ${2:-link} in
	link) ip -n "$ns" link set eth0 down ;;
	drop) bridge link set dev "$veth" state 0 ;;
	*) usage ;;
	esac
}

do_heal()
{
	[ $# -eq 1 ] || usage
	resolve "$1"
	ip -n "$ns" link set eth0 up
	end=$(($(now_ms) + 5000))
	until bridge link show dev "$veth" 2>/dev/null | grep -q 'state forwarding'; do
		# Refused (ENETDOWN) until the carrier is back; then it sticks.
		bridge link set dev "$veth" state 3 2>/dev/null || true
		[ "$(now_ms)" -lt "$end" ] || die "port $veth does not forward again"
		sleep 0.01
	done
}

case $cmd in
up)
	need_root
	lock_state
	do_up "$@"
	;;
down)
	[ $# -eq 0 ] || usage
	need_root
	lock_state
	do_down
	;;
env)
	[ -r "$statefile" ] || die "no hosts with prefix $prefix (run up first)"
	cat "$statefile"
	;;
exec)
	[ $# -ge 2 ] || usage
	resolve "$1"
	shift
	exec ip netns exec "$ns" "$@"
	;;
cut)
	need_root
	do_cut "$@"
	;;
heal)
	need_root
	do_heal "$@"
	;;
kill)
	[ $# -eq 1 ] || usage
	need_root
	resolve "$1"
	echo "$prog: killed $(kill_ns "$ns") processes in $ns"
	;;
*)
	usage
	;;
esac
