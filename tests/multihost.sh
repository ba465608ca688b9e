#!/bin/bash
# Multi-host over TCP: 2, 3 and 4 "hosts" made of network namespaces on a bridge
# (cluster/netns/hosts.sh), ranks started in them by mpirun through
# cluster/netns/launch-agent.sh, MPI over TCP only. Each run must give bitwise the
# adapter of the same N on one host (plain mpirun, shared memory), and where
# every server/worker pair is on different hosts the hosts' eth0 must have sent
# at least the bytes lora_worker reports. Also: the ranks run where they should
# (one MPI node per namespace: hostname, local size, the F16 model's shared
# window per host), and namespaces and their processes go away, also after
# mpirun is killed. Needs root: without it, it says so and exits 77 (not run, which run_tests.sh
# counts as not passed). usage: tests/multihost.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/lib.sh"
HOSTS="$(pwd)/cluster/netns/hosts.sh"
if [ "$(id -u)" != 0 ]; then
    echo "multihost.sh: NOT RUN: it needs root for network namespaces (counted as not passed)"
    exit 77
fi
RUN=lmh$$ # this run's namespaces: lmh<pid>k<K>-sw, lmh<pid>k<K>-h1...
NAMES=()
cleanup_all() {
    local n
    for n in "${NAMES[@]}"; do "$HOSTS" down "$n"; done
    cleanup_tmp
}
trap cleanup_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok")
# the F16 demo model (converted weights shared per node through an MPI-3 window), 2 short steps
F16=(--config configs/demo.ini --set train.steps=2 --set data.batch_size=4 --set data.seq_len=64
    --set train.threads=1 --set data.val=)

ref() { # ref N S MODEL CFG...: the one-host run (plain mpirun, shared memory), once per N S MODEL CFG; prints its folder
    local n=$1 s=$2 m=$3
    shift 3
    local out
    out="$TMPD/ref-$m-n$n-s$s-$(printf '%s\n' "$@" | md5sum | cut -c1-8)"
    if [ ! -d "$out" ]; then
        timeout 120 mpirun --oversubscribe --bind-to none -np "$n" "$WORKER" "$@" --set system.servers="$s" \
            --set train.out_dir="$out" >"$out.log" 2>&1 || { echo "one-host run failed: $(tail -3 "$out.log")"; return 1; }
    fi
    echo "$out"
}
sum_tx() { "$HOSTS" counters "$1" | awk '{t += $3} END {print t + 0}'; }
sum_rx() { "$HOSTS" counters "$1" | awk '{r += $4} END {print r + 0}'; }

# mh NAME K SLOTS N S MODEL CROSS CFG...: N ranks on K hosts, SLOTS per host; CROSS=1 when
# every server/worker pair is on two hosts (then eth0 must carry every reported byte)
mh() {
    local name=$1 k=$2 slots=$3 n=$4 s=$5 m=$6 cross=$7
    shift 7
    local tag="K=$k hosts, N=$n ($slots per host), S=$s, $m"
    local out="$TMPD/$name-n$n-s$s-$m" refdir tx0 rx0 tx1 rx1 bytes r
    refdir=$(ref "$n" "$s" "$m" "$@") || { fail "$tag: $refdir"; return; }
    tx0=$(sum_tx "$name") rx0=$(sum_rx "$name")
    local t0=$SECONDS
    if ! timeout 120 "$HOSTS" mpirun "$name" --host "$("$HOSTS" hosts "$name" "$slots")" -np "$n" \
        "$WORKER" "$@" --set system.servers="$s" --set train.out_dir="$out" >"$out.log" 2>&1; then
        fail "$tag: lora_worker failed: $(tail -5 "$out.log")"
        return
    fi
    tx1=$(sum_tx "$name") rx1=$(sum_rx "$name")
    if r=$("$LORA" compare "$refdir" "$out"); then
        pass "$tag ($((SECONDS - t0)) s) vs one host: $r"
    else
        fail "$tag vs one host: $r"
    fi
    bytes=$(sed -n 's/.* \([0-9][0-9]*\) bytes in total.*/\1/p' "$out.log")
    local dtx=$((tx1 - tx0)) drx=$((rx1 - rx0))
    if [ -z "$bytes" ]; then
        fail "$tag: no 'bytes in total' in rank 0's output"
    elif [ "$cross" = 1 ] && [ "$dtx" -lt "$bytes" ]; then
        fail "$tag: the hosts' eth0 sent $dtx bytes, less than the $bytes lora_worker reports"
    elif [ "$cross" = 1 ]; then
        pass "$tag: eth0 tx $dtx, rx $drx bytes over the veths >= $bytes reported by lora_worker ($(awk -v a="$dtx" -v b="$bytes" 'BEGIN {printf "%.2f", a / b}')x: TCP/IP headers, MPI envelopes, runtime)"
    elif [ "$dtx" -le 0 ]; then
        fail "$tag: nothing went over the veths"
    else
        pass "$tag: eth0 tx $dtx bytes ($bytes reported in all, part of it between ranks of one host)"
    fi
    LAST_LOG=$out.log
}

placement() { # placement NAME K SLOTS: where the ranks run, as MPI and the OS see it
    local name=$1 k=$2 slots=$3 got want i
    got=$(timeout 60 "$HOSTS" mpirun "$name" --host "$("$HOSTS" hosts "$name" "$slots")" -np $((k * slots)) \
        sh -c 'echo "at $(hostname) $(ip -o -4 addr show eth0 | awk "{print \$4}") local_size=$OMPI_COMM_WORLD_LOCAL_SIZE"' 2>&1 |
        sed -n 's/^at //p' | sort | uniq -c | awk '{$1 = $1; print}')
    want=$(for i in $(seq 1 "$k"); do echo "$slots $name-h$i 10.77.0.$i/24 local_size=$slots"; done)
    if [ "$got" = "$want" ]; then
        pass "K=$k hosts: $slots rank(s) in each namespace, each its own MPI node (local size $slots)"
    else
        fail "K=$k hosts: placement: got [$(echo $got)], want [$(echo $want)]"
    fi
}

for k in 2 3 4; do
    name=${RUN}k$k
    NAMES+=("$name")
    if ! "$HOSTS" up "$name" "$k" 2>"$TMPD/up-$k.log"; then
        fail "K=$k: hosts.sh up failed: $(cat "$TMPD/up-$k.log")"
        continue
    fi
    placement "$name" "$k" 2
    case $k in
    2)
        mh "$name" 2 1 2 1 tiny 1 "${CFG[@]}"
        mh "$name" 2 2 4 2 tiny 1 "${CFG[@]}"
        # F16: rank 0 and worker 1 on host 1 share one converted copy, workers 2 and 3 theirs
        LAST_LOG=""
        mh "$name" 2 2 4 1 f16 0 "${F16[@]}"
        if [ -n "$LAST_LOG" ]; then
            ranks=$(grep '^ranks:' "$LAST_LOG")
            mem=$(grep '^memory after loading' "$LAST_LOG")
            extra=$(sed -n 's/.*adds at most \([0-9.]*\) MiB private.*/\1/p' <<<"$mem")
            # on one host the 3 other ranks share rank 0's converted weights (16.3 MiB); here rank 1
            # must share them too: it may not add more than a one-host rank plus half a copy
            one=$(sed -n 's/.*adds at most \([0-9.]*\) MiB private.*/\1/p' "$TMPD"/ref-f16-n4-s1-*.log)
            if [ -n "$extra" ] && [ -n "$one" ] && awk -v x="$extra" -v o="$one" 'BEGIN {exit !(x < o + 8)}'; then
                pass "K=2, F16 model: the other rank on rank 0's host adds $extra MiB (on one host: $one MiB): the converted weights are shared per host"
            else
                fail "K=2, F16 model: an extra rank on rank 0's host adds ${extra:-?} MiB, on one host ${one:-?} MiB: $mem"
            fi
            echo "     $ranks"
            echo "     $mem"
        fi
        ;;
    3)
        mh "$name" 3 1 3 1 tiny 1 "${CFG[@]}"
        mh "$name" 3 2 6 2 tiny 1 "${CFG[@]}" --set data.grad_accum=2
        ;;
    4)
        mh "$name" 4 1 4 2 tiny 1 "${CFG[@]}"
        mh "$name" 4 2 8 2 tiny 1 "${CFG[@]}" --set data.grad_accum=3
        # a job killed while it runs: tearing the hosts down ends its orteds and ranks
        timeout 120 "$HOSTS" mpirun "$name" --host "$("$HOSTS" hosts "$name" 1)" -np 4 "$WORKER" "${CFG[@]}" \
            --set train.steps=100000 --set train.log_every=1000 --set train.out_dir="$TMPD/killed" >"$TMPD/killed.log" 2>&1 &
        job=$!
        for _ in $(seq 1 100); do grep -qs '^BSP' "$TMPD/killed.log" && break; sleep 0.1; done
        pids=""
        for i in sw h1 h2 h3 h4; do pids="$pids $(ip netns pids "$name-$i")"; done
        kill -9 "$job" 2>/dev/null # timeout, not mpirun: mpirun, its orteds and ranks live on, orphaned
        wait "$job" 2>/dev/null
        "$HOSTS" down "$name"
        left=""
        for p in $pids; do
            st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) && [ "$st" != Z ] && left="$left $p"
        done
        if [ -n "$(echo $pids)" ] && [ -z "$left" ] && ! ip netns list | grep -q "^$name-"; then
            pass "K=4: killed job: hosts.sh down ended its $(echo $pids | wc -w) processes in the hosts and removed the namespaces"
        else
            fail "K=4: killed job: processes before down [$(echo $pids)], left [$left], namespaces: $(ip netns list | grep "^$name-" | tr '\n' ' ')"
        fi
        ;;
    esac
    "$HOSTS" down "$name"
    "$HOSTS" down "$name" # twice: nothing to do, no error
    if [ $? = 0 ] && ! ip netns list | grep -q "^$name-" && [ ! -e "/run/lora-netns/$name" ]; then
        pass "K=$k: hosts.sh down (twice) removed every namespace, veth and bridge"
    else
        fail "K=$k: hosts.sh down left: $(ip netns list | grep "^$name-" | tr '\n' ' ')"
    fi
done
finish
