#!/bin/bash
# Convergence on the real task: configs/demo.ini (tiny-gpt2-pydocs, LoRA r=8
# alpha=16 on c_attn + c_proj, lr 2e-3, 16 x 256 tokens, 300 steps) must bring
# the WordNet validation loss (40 windows of 256) from ~6.5 below 4.3.
set -u
B=${1:-build}
out=$(mktemp -d /tmp/lora-conv-XXXXXX)
trap 'rm -rf "$out"' EXIT
"$B/bin/lora" train --config configs/demo.ini --set train.out_dir="$out/adapter" --set train.log_every=50 \
    | tee "$out/log" || exit 1
after=$(sed -n 's/^val loss after: \([0-9.]*\).*/\1/p' "$out/log")
before=$(sed -n 's/^val loss before: \([0-9.]*\).*/\1/p' "$out/log")
[ -n "$after" ] && [ -n "$before" ] || { echo "convergence: no val loss in the output"; exit 1; }
awk -v a="$after" -v b="$before" 'BEGIN {
    ok = (a < 4.3) && (b > 6.0);
    printf "convergence: val loss %.4f -> %.4f (must start above 6.0 and end below 4.3): %s\n", b, a, ok ? "ok" : "FAIL";
    exit ok ? 0 : 1 }' || exit 1
# the adapter it wrote loads back and scores the same
ev=$("$B/bin/lora" eval --config configs/demo.ini --adapter "$out/adapter" | sed -n 's/^val loss \([0-9.]*\).*/\1/p')
awk -v a="$after" -v e="$ev" 'BEGIN { ok = (a == e); printf "convergence: saved adapter evaluates to %s (trainer said %s): %s\n", e, a, ok ? "ok" : "FAIL"; exit ok ? 0 : 1 }'
