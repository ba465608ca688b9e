#!/bin/bash
# Open MPI's launch agent for the namespace "hosts" of hosts.sh, in place of ssh:
#   mpirun --mca plm_rsh_agent cluster/netns/launch-agent.sh --host 10.77.0.1:2,10.77.0.2:2 ...
# mpirun (its rsh launcher) calls it as it would call ssh:
#   launch-agent.sh [ssh options] HOST WORD...
# where the WORDs are one shell command line cut into pieces, some of them
# quoted for a remote shell (e.g. -mca orte_hnp_uri "1234.0;tcp://10.77.0.254:40123").
# Like ssh, the agent joins them with spaces and has sh run the line, inside the
# network namespace that holds HOST's address, so the orted it starts and the
# ranks it forks open their sockets there and talk to other hosts over the veths.
#
# HOST -> namespace: from $LORA_NETNS_STATE/hosts (hosts.sh mpirun sets it), else
# from the state of every run in /run/lora-netns (the address must be in one run
# only); HOST may also be a namespace's name.
#
# The command gets an environment like an ssh login's (PATH, LD_LIBRARY_PATH,
# HOME, USER, TMPDIR and the locale), not mpirun's: mpirun forwards what ranks
# need (OMPI_* variables, and -x NAME) through the orted, as on a real cluster.
set -u
STATE_ROOT=${LORA_NETNS_STATE_ROOT:-/run/lora-netns}
die() { echo "launch-agent.sh: $*" >&2; exit 255; } # 255: ssh's status for "could not connect"

# skip ssh options (Open MPI passes -x when the agent is ssh, and plm_rsh_args if set)
while [ $# -gt 0 ]; do
    case $1 in
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;
    -[bcDEeFIiJLlmOopQRSWw]?*) shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || die "usage: launch-agent.sh [options] HOST COMMAND..."
host=${1#*@} # user@host: the user is ignored (everything runs as the caller)
shift

ns=""
if [ -n "${LORA_NETNS_STATE:-}" ]; then
    ns=$(awk -v h="$host" '$1 == h {print $2}' "$LORA_NETNS_STATE/hosts" 2>/dev/null)
else
    found=$(cat "$STATE_ROOT"/*/hosts 2>/dev/null | awk -v h="$host" '$1 == h {print $2}')
    [ "$(printf '%s\n' "$found" | grep -c .)" -gt 1 ] &&
        die "$host is in several runs' hosts ($(echo $found)): set LORA_NETNS_STATE=$STATE_ROOT/NAME"
    ns=$found
fi
if [ -z "$ns" ] && ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$host"; then
    ns=$host
fi
[ -n "$ns" ] || die "no namespace for host '$host'${LORA_NETNS_STATE:+ in $LORA_NETNS_STATE/hosts}"

exec env -i PATH="$PATH" HOME="${HOME:-/root}" USER="${USER:-$(id -un)}" LOGNAME="${LOGNAME:-$(id -un)}" \
    ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} ${TMPDIR:+TMPDIR="$TMPDIR"} \
    ${LANG:+LANG="$LANG"} SHELL=/bin/sh \
    ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$1" && exec /bin/sh -c "$2"' sh "$ns" "$*"
