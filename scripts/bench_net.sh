#!/bin/bash
# LoRA against full fine-tuning over a shaped network: two "hosts" (network
# namespaces, cluster/netns/hosts.sh) whose links are held to a datacenter-like
# rate by tc tbf (1gbit by default; no added delay: netem is not available on
# these machines' kernel), the server rank on host 1 and the worker rank on host 2,
# MPI over TCP only. The model is the parameter-server benchmark's (a random GPT-2
# 124M in build/bench-gpt2-124m, LoRA r=8 on c_attn, 8 x 128 tokens per step,
# 1 thread per rank). Each mode reports ms/step, the share of a step outside the
# worker's forward/backward, the bytes lora_worker sent per step and the bytes the
# hosts' eth0 sent (the veth counters), and the figures go to build/bench-net.json.
# Needs root.
#   usage: scripts/bench_net.sh [BUILD_DIR [JSON]]
#   BENCH_NET_RATE=1gbit (or none: no shaping)  BENCH_NET_STEPS=3  BENCH_NET_MODES="lora full"
set -u
B=${1:-build}
JSON=${2:-$B/bench-net.json}
RATE=${BENCH_NET_RATE:-1gbit}
STEPS=${BENCH_NET_STEPS:-3}
MODES=${BENCH_NET_MODES:-lora full}
HOSTS="$(pwd)/cluster/netns/hosts.sh"
[ "$(id -u)" = 0 ] || { echo "bench_net.sh: needs root (network namespaces, tc)"; exit 1; }
[ -x "$B/bin/lora_worker" ] || { echo "bench_net.sh: no $B/bin/lora_worker (make all)"; exit 1; }

. "$(dirname "$0")/bench_lib.sh"
bench_setup || exit 1
BENCH_ARGS+=(--set train.steps="$STEPS" --set train.threads=1)

NAME=lbn$$
trap '"$HOSTS" down "$NAME"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ "$RATE" = none ]; then
    "$HOSTS" up "$NAME" 2 || exit 1
else
    "$HOSTS" up "$NAME" 2 --rate "$RATE" || exit 1
fi
H1=$NAME-h1 H2=$NAME-h2

# --- the link: 100 MB from host 1 to host 2 over one TCP connection (bash's /dev/tcp
# into a perl reader), to see that tbf holds the rate
link_mbit=null
sink_out=$(mktemp /tmp/bench-net-sink-XXXXXX)
ip netns exec "$H2" perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "10.77.0.2", LocalPort => 5001, Listen => 1, ReuseAddr => 1) or die "listen: $!";
    open(my $r, ">", $ARGV[0]); print $r "ready\n"; close $r;
    my $c = $s->accept; my ($n, $buf) = (0, "");
    while (my $k = sysread($c, $buf, 1 << 20)) { $n += $k }
    open($r, ">>", $ARGV[0]); print $r "$n\n"; close $r;' "$sink_out" &
sink=$!
for _ in $(seq 1 50); do grep -q ready "$sink_out" && break; sleep 0.1; done
t0=$(date +%s.%N)
ip netns exec "$H1" bash -c 'head -c 100000000 /dev/zero >/dev/tcp/10.77.0.2/5001'
wait "$sink"
t1=$(date +%s.%N)
got=$(sed -n 2p "$sink_out")
rm -f "$sink_out"
if [ "$got" = 100000000 ]; then
    link_mbit=$(echo "scale=1; 800 / ($t1 - $t0)" | bc -l)
    printf '\nlink check: 100 MB over TCP from host 1 to host 2 in %.3f s: %s Mbit/s of payload (tbf rate: %s)\n' \
        "$(echo "$t1 - $t0" | bc -l)" "$link_mbit" "$RATE"
else
    echo "link check: the transfer failed (received ${got:-nothing})"
fi

printf '\nLoRA vs full fine-tuning over %s links (GPT-2 124M random, 8 x 128 tokens per step, %s steps, 1 server on host 1, 1 worker on host 2, 1 thread each):\n' "$RATE" "$STEPS"
printf '  %-6s %10s %11s %16s %16s %16s %11s\n' mode ms/step "comm share" "bytes/step" "eth0 tx/step" "eth0 rx/step" "Mbit/s (*)"

tx_of() { ip netns exec "$1" cat /sys/class/net/eth0/statistics/tx_bytes; }
rx_of() { ip netns exec "$1" cat /sys/class/net/eth0/statistics/rx_bytes; }

# run_mode MODE: one run, lora or full; sets MODE_ms, MODE_bytes, MODE_share, MODE_veth (per step).
# Returns 2 when the build has no full fine-tuning mode.
run_mode() {
    local mode=$1 extra=()
    # --- the full fine-tuning run: every base tensor trainable through the same parameter
    # server ([lora] full_finetune, lora_worker's comparison mode)
    [ "$mode" = full ] && extra=(--set lora.full_finetune=true)
    local metrics=$B/bench-net-$mode.jsonl log=$B/bench-net-$mode.log
    rm -f "$metrics"
    local tx0 rx0 tx1 rx1
    tx0=$(($(tx_of "$H1") + $(tx_of "$H2"))) rx0=$(($(rx_of "$H1") + $(rx_of "$H2")))
    if ! timeout 900 "$HOSTS" mpirun "$NAME" --host 10.77.0.1:1,10.77.0.2:1 -np 2 "$(pwd)/$B/bin/lora_worker" \
        "${BENCH_ARGS[@]}" --set train.metrics="$metrics" "${extra[@]}" >"$log" 2>&1; then
        echo "  $mode: lora_worker failed ($log):"
        tail -5 "$log" | sed 's/^/    /'
        return 1
    fi
    tx1=$(($(tx_of "$H1") + $(tx_of "$H2"))) rx1=$(($(rx_of "$H1") + $(rx_of "$H2")))
    local s
    s=$(grep '"summary"' "$metrics" | tail -1)
    get() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" <<<"$s"; }
    local ms bytes share steps vtx vrx mbit
    ms=$(get ms_per_step) bytes=$(get bytes_per_step) share=$(get comm_share)
    steps=$(grep -c '"step"' "$metrics")
    [ "$steps" -gt 0 ] || steps=$STEPS
    vtx=$(((tx1 - tx0) / steps)) vrx=$(((rx1 - rx0) / steps))
    # what the link carried per second of the time a step spends outside the worker's
    # compute (communication, aggregation, optimizer): a lower bound on the rate seen
    mbit=$(echo "$bytes * 8 / ($share * $ms / 1000) / 1000000" | bc -l 2>/dev/null)
    printf '  %-6s %10.1f %10.1f%% %16.0f %16d %16d %11.0f\n' "$mode" "$ms" "$(echo "$share * 100" | bc -l)" "$bytes" \
        "$vtx" "$vrx" "${mbit:-0}"
    if [ "$RATE" != none ]; then
        # the token buckets: overlimits counts the packets tbf held back (the link was the bottleneck)
        local h q=""
        for h in "$H1" "$H2"; do
            q="$q${q:+; }${h##*-}: $(ip netns exec "$h" tc -s qdisc show dev eth0 | sed -n 's/^ *Sent \([0-9]*\) bytes \([0-9]*\) pkt (dropped \([0-9]*\), overlimits \([0-9]*\).*/sent \1 bytes, dropped \3, overlimits \4/p')"
        done
        echo "         tbf since the hosts came up: $q"
    fi
    eval "${mode}_ms=\$ms ${mode}_bytes=\$bytes ${mode}_share=\$share ${mode}_veth=\$vtx ${mode}_mbit=\$mbit"
}

lora_ms=null lora_bytes=null lora_share=null lora_veth=null lora_mbit=null
full_ms=null full_bytes=null full_share=null full_veth=null full_mbit=null
status=0
for m in $MODES; do
    run_mode "$m"
    rc=$?
    [ $rc = 1 ] && status=1
done
ratio=null veth_ratio=null time_ratio=null
if [ "$lora_bytes" != null ] && [ "$full_bytes" != null ]; then
    ratio=$(echo "scale=2; $full_bytes / $lora_bytes" | bc -l)
    veth_ratio=$(echo "scale=2; $full_veth / $lora_veth" | bc -l)
    time_ratio=$(echo "scale=2; $full_ms / $lora_ms" | bc -l)
    printf '  full fine-tuning moves %sx the bytes of LoRA (eth0 counters: %sx) and takes %sx the time per step\n' \
        "$ratio" "$veth_ratio" "$time_ratio"
fi
echo "  comm share: the part of a step outside the worker's forward/backward (communication, aggregation, optimizer);"
echo "  bytes/step: what lora_worker sent (all ranks); eth0: both hosts' counters over the run / steps (with the initial"
echo "  broadcast of the values); (*) bytes/step over the time outside compute: the rate a step saw (tbf lets a 256 KB"
echo "  burst through at once, so a small transfer can beat the rate)"
num() { [ "$1" = null ] || [ -z "$1" ] && echo null || printf '%.4f' "$1"; }
cat >"$JSON" <<J
{
  "link_rate": "$RATE",
  "link_measured_mbit_s": $(num "$link_mbit"),
  "steps": $STEPS,
  "lora_ms_per_step": $(num "$lora_ms"),
  "lora_bytes_per_step": $(num "$lora_bytes"),
  "lora_comm_share": $(num "$lora_share"),
  "lora_veth_tx_bytes_per_step": $(num "$lora_veth"),
  "lora_rate_mbit_s": $(num "$lora_mbit"),
  "full_ms_per_step": $(num "$full_ms"),
  "full_bytes_per_step": $(num "$full_bytes"),
  "full_comm_share": $(num "$full_share"),
  "full_veth_tx_bytes_per_step": $(num "$full_veth"),
  "full_rate_mbit_s": $(num "$full_mbit"),
  "measured_ratio": $(num "$ratio"),
  "veth_ratio": $(num "$veth_ratio"),
  "step_time_ratio": $(num "$time_ratio")
}
J
echo "  (written to $JSON)"
exit $status
