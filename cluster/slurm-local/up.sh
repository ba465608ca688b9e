#!/bin/bash
# Brings up a throw-away single-node Slurm on this machine, from Debian's packages
# (slurmctld, slurmd, slurm-client, munge), everything under DIR:
#   DIR/slurm.conf              the configuration (SLURM_CONF points here)
#   DIR/munge/                  munged's key, socket, pid, log, seed
#   DIR/state, DIR/spool        slurmctld's StateSaveLocation, slurmd's SlurmdSpoolDir
#   DIR/log/                    the daemons' logs (and jobcomp.log: one line per finished job)
#   DIR/pids/*.pid              the pids of the daemons this script started (down.sh uses them)
#   DIR/run/                    the daemons' own pid files
# munged, slurmctld and slurmd run as root in the background (no systemd); the
# script waits until sinfo shows the node idle (a few seconds), then prints on
# stdout the line the callers need:
#   export SLURM_CONF=DIR/slurm.conf
# so that   eval "$(cluster/slurm-local/up.sh /tmp/myslurm)"   sets it up.
# Stop everything with  cluster/slurm-local/down.sh DIR  (by the pids recorded).
# Idempotent: a DIR whose daemons are already up is reused as it is.
# Needs root (the daemons, apt-get for missing packages).
#
# Environment knobs:
#   SLURM_LOCAL_CPUS=16   CPUs the node advertises (SlurmdParameters=config_overrides lets
#                         it claim more than the machine has, so jobs with more tasks
#                         than cores start instead of pending forever)
#   SLURM_LOCAL_PORT=N    slurmctld's port (slurmd gets N+1); default: a free one
#   SLURM_LOCAL_CRED_EXPIRE=S  AuthInfo cred_expire (seconds; default 120, Slurm's): a
#                         requeued job is held for S+1 seconds before it may start again
set -u
DIR=${1:?usage: up.sh DIR   (a directory for the state, logs and sockets of a local Slurm)}
HERE=$(cd "$(dirname "$0")" && pwd)
say() { echo "slurm-local: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (munged, slurmctld and slurmd run as root here)"

# --- packages (as scripts/install-deps.sh: dpkg-query first, apt-get only when missing)
PKGS="slurmctld slurmd slurm-client munge"
missing=""
for p in $PKGS; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    # the packages' postinst scripts would start the system's munged, slurmctld
    # and slurmd (on machines without systemd, through invoke-rc.d): a
    # policy-rc.d that says no, for the time of the install, keeps them from it
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
    st=$?
    [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
    [ $st = 0 ] || die "apt-get install$missing failed"
fi

mkdir -p "$DIR" || die "cannot create $DIR"
DIR=$(cd "$DIR" && pwd)
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_idle() { sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)$'; }

if alive "$DIR/pids/munged.pid" && alive "$DIR/pids/slurmctld.pid" && alive "$DIR/pids/slurmd.pid" && node_idle; then
    say "already up in $DIR"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi
# something half up: stop it and start over
"$HERE/down.sh" "$DIR" >&2

mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/pids" "$DIR/run" || die "cannot create directories under $DIR"
# munged insists on a socket directory that everyone may traverse, and on a
# private key: DIR and DIR/munge 0755, the key 0400
chmod 755 "$DIR" "$DIR/munge"
if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none || die "cannot write the munge key"
fi
chmod 400 "$DIR/munge/munge.key"

free_port() { # free_port N: N if N and N+1 are free TCP ports, else fails
    ! ss -Htan "( sport = :$1 or sport = :$(($1 + 1)) )" 2>/dev/null | grep -q .
}
PORT=${SLURM_LOCAL_PORT:-}
if [ -z "$PORT" ]; then
    for _ in $(seq 1 50); do
        PORT=$((20000 + RANDOM % 20000))
        free_port "$PORT" && break
    done
fi
NODE=$(hostname -s)
CPUS=${SLURM_LOCAL_CPUS:-16}
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-120}

cat >"$CONF" <<EOF
# A single-node Slurm for tests, written by cluster/slurm-local/up.sh
ClusterName=lorals
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=$CRED_EXPIRE
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups here: processes tracked by parentage, tasks not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/backfill
# look at pending jobs every second or two (defaults: 60 s, backfill 30 s): a
# requeued job starts as soon as its begin time has passed
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node may claim more CPUs than the machine has (tests run more tasks than cores)
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd, so no sacct: every finished job (and every requeue) is logged here
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
# finished jobs stay visible to scontrol show job for 5 minutes
MinJobAge=300
KillWait=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

tail_log() { [ -f "$1" ] && { say "--- last lines of $1:"; tail -n 20 "$1" >&2; }; }
# the daemons run in the foreground (-D, -F) in their own session, in the
# background of this script: their pids are $! (written to DIR/pids/)
start() { # start PIDFILE LOG cmd...
    local pidf=$1 log=$2
    shift 2
    setsid "$@" </dev/null >>"$log" 2>&1 &
    echo $! >"$pidf"
}

start "$DIR/pids/munged.pid" "$DIR/munge/munged.out" munged -F --socket="$DIR/munge/munge.socket" \
    --key-file="$DIR/munge/munge.key" --log-file="$DIR/munge/munged.log" \
    --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munged.seed"
for _ in $(seq 1 100); do
    [ -S "$DIR/munge/munge.socket" ] && munge -n -S "$DIR/munge/munge.socket" 2>/dev/null |
        unmunge -S "$DIR/munge/munge.socket" >/dev/null 2>&1 && break
    alive "$DIR/pids/munged.pid" || break
    sleep 0.1
done
if ! munge -n -S "$DIR/munge/munge.socket" 2>/dev/null | unmunge -S "$DIR/munge/munge.socket" >/dev/null 2>&1; then
    tail_log "$DIR/munge/munged.out"
    tail_log "$DIR/munge/munged.log"
    "$HERE/down.sh" "$DIR" >&2
    die "munged did not come up"
fi

# slurmctld -c: start clean, whatever an earlier instance left in DIR/state
start "$DIR/pids/slurmctld.pid" "$DIR/log/slurmctld.out" slurmctld -D -c -f "$CONF"
start "$DIR/pids/slurmd.pid" "$DIR/log/slurmd.out" slurmd -D -f "$CONF"
for _ in $(seq 1 300); do
    node_idle && break
    { alive "$DIR/pids/slurmctld.pid" && alive "$DIR/pids/slurmd.pid"; } || break
    sleep 0.1
done
if ! node_idle; then
    say "the node did not become idle: sinfo says: $(sinfo -h -N -o '%N %t %E' 2>&1 | head -3)"
    alive "$DIR/pids/slurmctld.pid" || say "slurmctld is not running"
    alive "$DIR/pids/slurmd.pid" || say "slurmd is not running"
    tail_log "$DIR/log/slurmctld.out"
    tail_log "$DIR/log/slurmctld.log"
    tail_log "$DIR/log/slurmd.out"
    tail_log "$DIR/log/slurmd.log"
    "$HERE/down.sh" "$DIR" >&2
    die "Slurm did not come up in $DIR"
fi
say "up in $DIR: node $NODE ($CPUS CPUs), slurmctld on port $PORT"
echo "export SLURM_CONF=$CONF"
