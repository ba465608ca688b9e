#!/bin/bash
# Stops the single-node Slurm that up.sh started in DIR: cancels (SIGKILL) the
# jobs still there, then stops slurmd, slurmctld and munged by the pids up.sh
# recorded (SIGTERM, SIGKILL after 10 s), and any slurmstepd or job process of
# this instance left behind (found by SLURM_CONF=DIR/slurm.conf in its environment).
# Idempotent: nothing running is not an error. DIR itself is left in place.
set -u
DIR=${1:?usage: down.sh DIR}
[ -d "$DIR" ] || exit 0
DIR=$(cd "$DIR" && pwd)
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
say() { echo "slurm-local: $*" >&2; }
alive_pid() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$DIR/pids/$1.pid" ] && cat "$DIR/pids/$1.pid"; }

ctld=$(pid_of slurmctld)
if [ -f "$CONF" ] && alive_pid "$ctld"; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086
        timeout 10 scancel --full -s KILL $jobs 2>/dev/null
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 1 100); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
fi

# processes of this instance that outlived their job: slurmstepd and job tasks
# (both have SLURM_CONF=DIR/slurm.conf in their environment, slurmstepd from
# slurmd, tasks from the job; tasks also SLURM_JOB_ID)
strays() {
    local d pid env_of cmd mine=" " a=$$
    while [ -n "$a" ] && [ "$a" != 0 ]; do # this script and its callers are not strays
        mine="$mine$a "
        a=$(awk '/^PPid:/ { print $2 }' "/proc/$a/status" 2>/dev/null)
    done
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        case "$mine" in *" $pid "*) continue ;; esac
        env_of=$({ tr '\0' '\n' <"$d/environ"; } 2>/dev/null) || continue
        grep -qx "SLURM_CONF=$CONF" <<<"$env_of" || continue
        cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)
        case "$cmd" in
        slurmstepd*) echo "$pid" ;;
        *) grep -q "^SLURM_JOB_ID=" <<<"$env_of" && echo "$pid" ;;
        esac
    done
}

stop() { # stop PID...: SIGTERM, then SIGKILL what is left after 10 s
    local p left
    for p in "$@"; do alive_pid "$p" && kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 100); do
        left=""
        for p in "$@"; do alive_pid "$p" && left="$left $p"; done
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null
    say "killed (SIGKILL) pids:$left"
}

# shellcheck disable=SC2046 # (empty when not running)
stop $(pid_of slurmd) $(pid_of slurmctld)
left=$(strays | grep -vx "$(pid_of munged)" | tr '\n' ' ')
if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null
    say "killed stray processes of $DIR: $left"
fi
# shellcheck disable=SC2046
stop $(pid_of munged)
rm -f "$DIR/pids/"*.pid "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
exit 0
