#!/bin/bash
# Several "hosts" on one machine: network namespaces joined by a Linux bridge,
# for running lora_worker over Open MPI's TCP transport on a real network stack.
#
#   hosts.sh up NAME K [--rate RATE] [--subnet A.B.C]   make K hosts (1..16)
#   hosts.sh down NAME                                  remove them (safe to repeat)
#   hosts.sh hosts NAME [SLOTS]                         the --host list: 10.77.0.1:SLOTS,...
#   hosts.sh exec NAME COMMAND...                       run COMMAND in the head namespace
#   hosts.sh mpirun NAME MPIRUN-ARGS...                 mpirun in the head namespace, with the
#                                                       launch agent and the TCP-only options
#   hosts.sh counters NAME                              "IP NETNS TX_BYTES RX_BYTES" per host
#   hosts.sh list                                       namespaces made by this script
#
# Layout for NAME and K (NAME: letters, digits, '-', '_'; make it unique per run,
# e.g. with $$, so that parallel and leftover runs do not clash):
#
#   NAME-sw       the "switch": bridge br0 with ports p1..pK, and 10.77.0.254/24 on
#                 br0 itself: mpirun runs here (the head node, holding no ranks)
#   NAME-h1..hK   the hosts: eth0 (veth, peer pI in NAME-sw) at 10.77.0.I/24, lo up
#
# Nothing is created in the root namespace (the veth pairs are made directly
# inside the namespaces), so traffic between hosts stays on these veths and the
# bridge. With --rate (e.g. 1gbit) each host's eth0 gets an egress token bucket:
#   tc qdisc add dev eth0 root tbf rate RATE burst 256kb latency 50ms
# (tbf and htb work on this kernel; netem and fq are not available, so there is
# no added delay). The state (host IP -> namespace) is kept in
# /run/lora-netns/NAME/hosts, which launch-agent.sh reads.
set -eEu
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_ROOT=${LORA_NETNS_STATE_ROOT:-/run/lora-netns}

die() { echo "hosts.sh: $*" >&2; exit 1; }
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
check_name() {
    [[ $1 =~ ^[A-Za-z0-9_-]{1,40}$ ]] || die "bad NAME '$1' (letters, digits, '-', '_'; at most 40)"
}
need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces, veths, tc)"; }

cmd_up() {
    local name=$1 k=$2
    shift 2
    local rate="" subnet=10.77.0
    while [ $# -gt 0 ]; do
        case $1 in
        --rate) rate=$2; shift 2 ;;
        --subnet) subnet=$2; shift 2 ;;
        *) die "up: unknown option $1" ;;
        esac
    done
    check_name "$name"
    [[ $k =~ ^[0-9]+$ ]] && [ "$k" -ge 1 ] && [ "$k" -le 16 ] || die "up: K must be 1..16"
    [[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "up: --subnet takes the first three octets (A.B.C)"
    need_root
    local st=$STATE_ROOT/$name sw=$name-sw
    if [ -e "$st" ] || ip netns list | awk '{print $1}' | grep -qx -- "$sw"; then
        die "up: $name is in use (hosts.sh down $name)"
    fi
    mkdir -p "$st"
    # from here on a failure removes what was made
    trap 'echo "hosts.sh: up failed, removing $name" >&2; cmd_down "$name"' ERR
    echo "$subnet" >"$st/subnet"
    echo "$rate" >"$st/rate"
    : >"$st/hosts"
    ip netns add "$sw"
    echo "$sw" >"$st/head"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" addr add "$subnet.254/24" dev br0
    ip -n "$sw" link set br0 up
    local i ns
    for i in $(seq 1 "$k"); do
        ns=$name-h$i
        ip netns add "$ns"
        echo "$subnet.$i $ns" >>"$st/hosts"
        ip -n "$ns" link set lo up
        ip -n "$ns" link add eth0 type veth peer name "p$i" netns "$sw"
        ip -n "$sw" link set "p$i" master br0
        ip -n "$sw" link set "p$i" up
        ip -n "$ns" addr add "$subnet.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        if [ -n "$rate" ]; then
            ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 50ms
        fi
    done
    # wait until each link is up and its bridge port forwards (no STP: at once)
    local tries st_eth st_port
    for i in $(seq 1 "$k"); do
        for tries in $(seq 1 50); do
            st_eth=$(ip netns exec "$name-h$i" cat /sys/class/net/eth0/operstate)
            st_port=$(ip netns exec "$sw" cat "/sys/class/net/p$i/brport/state")
            [ "$st_eth" = up ] && [ "$st_port" = 3 ] && break
            if [ "$tries" = 50 ]; then
                echo "hosts.sh: up: host $i: eth0 $st_eth, bridge port state $st_port; removing $name" >&2
                cmd_down "$name"
                exit 1
            fi
            sleep 0.1
        done
    done
    trap - ERR
    echo "hosts.sh: $k hosts up: $(cmd_hosts "$name" | tr , ' ')${rate:+ (eth0 egress shaped to $rate)}; head $sw ($subnet.254)" >&2
}

alive() { # a process that exists and is not a zombie
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

cmd_down() {
    local name=$1 ns pid pids
    check_name "$name"
    need_root
    # the namespaces of this NAME: those recorded, and any matching the pattern
    # (a half-made run may not have recorded every one)
    local all
    all=$( { cat "$STATE_ROOT/$name/hosts" 2>/dev/null | awk '{print $2}'
             ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$name-(sw|h[0-9]+)$"; } | sort -u)
    # processes left in the namespaces (mpirun, orteds, ranks of a failed or killed run):
    # a namespace with processes in it lives on after `ip netns del`, so end them first,
    # and wait until they are gone (a zombie holds no namespace)
    local left=""
    for ns in $all; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        for pid in $pids; do kill -9 "$pid" 2>/dev/null && left="$left $pid"; done
    done
    local tries
    for tries in $(seq 1 100); do
        pids=$left left=""
        for pid in $pids; do alive "$pid" && left="$left $pid"; done
        [ -z "$left" ] && break
        sleep 0.05
    done
    [ -z "$left" ] || echo "hosts.sh: down $name: processes$left did not end" >&2
    for ns in $all; do
        # deleting a namespace destroys its veth ends, and so their peers and the bridge
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "${STATE_ROOT:?}/$name"
}

cmd_hosts() { # the --host list
    local name=$1 slots=${2:-}
    check_name "$name"
    [ -f "$STATE_ROOT/$name/hosts" ] || die "no hosts named $name (hosts.sh up $name K)"
    awk -v s="$slots" '{printf "%s%s%s", (NR > 1 ? "," : ""), $1, (s != "" ? ":" s : "")} END {print ""}' \
        "$STATE_ROOT/$name/hosts"
}

head_ns() {
    [ -f "$STATE_ROOT/$1/head" ] || die "no hosts named $1 (hosts.sh up $1 K)"
    cat "$STATE_ROOT/$1/head"
}

cmd_exec() {
    local name=$1
    shift
    check_name "$name"
    local head
    head=$(head_ns "$name")
    # in its own UTS namespace too, named after the namespace, as the hosts' are (launch-agent.sh)
    LORA_NETNS_STATE=$STATE_ROOT/$name exec ip netns exec "$head" \
        unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$head" "$@"
}

# mpirun with what runs it across the namespaces:
# - the launch agent in place of ssh, no tree spawn (mpirun starts every orted itself);
# - the TCP transport only (no shared memory, so every byte between ranks is on a
#   socket: over the veths between hosts, over lo within one);
# - TCP for both MPI and the runtime (oob) restricted to the hosts' subnet;
# - as root, oversubscribed, idle ranks yielding (2 cores for all the hosts).
cmd_mpirun() {
    local name=$1
    shift
    check_name "$name"
    local subnet
    subnet=$(cat "$STATE_ROOT/$name/subnet" 2>/dev/null) || die "no hosts named $name (hosts.sh up $name K)"
    # The agent gives orteds a login-like environment, as ssh would; mpirun forwards OMPI_*
    # to the ranks, and -x the variables that change what a rank computes or checks: the
    # BLAS kernels (OPENBLAS_CORETYPE: without it ranks pick other kernels and BSP is no
    # longer bitwise equal to a one-host run), threads, this project's LORA_*, sanitizers.
    local v fwd=()
    for v in $(compgen -e); do
        case $v in
        OPENBLAS_* | OMP_* | GOMP_* | LORA_* | ASAN_OPTIONS | UBSAN_OPTIONS | LSAN_OPTIONS) fwd+=(-x "$v") ;;
        esac
    done
    cmd_exec "$name" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun "${fwd[@]}" --mca plm rsh --mca plm_rsh_agent "$HERE/launch-agent.sh" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
        --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "$@"
}

cmd_counters() {
    local name=$1 ip ns
    check_name "$name"
    [ -f "$STATE_ROOT/$name/hosts" ] || die "no hosts named $name"
    while read -r ip ns; do
        echo "$ip $ns $(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/tx_bytes) $(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/rx_bytes)"
    done <"$STATE_ROOT/$name/hosts"
}

cmd_list() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E -- '-(sw|h[0-9]+)$' || true
    ls "$STATE_ROOT" 2>/dev/null | sed 's/^/state: /' || true
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
up) [ $# -ge 2 ] || usage; cmd_up "$@" ;;
down) [ $# -eq 1 ] || usage; cmd_down "$1" ;;
hosts) [ $# -ge 1 ] || usage; cmd_hosts "$@" ;;
exec) [ $# -ge 2 ] || usage; cmd_exec "$@" ;;
mpirun) [ $# -ge 2 ] || usage; cmd_mpirun "$@" ;;
counters) [ $# -eq 1 ] || usage; cmd_counters "$1" ;;
list) cmd_list ;;
*) usage ;;
esac
