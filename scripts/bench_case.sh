#!/bin/bash
# One more engine case for `make bench`: runs lora_bench --family FAMILY into its own JSON file and adds that
# object to the bench JSON under the key FAMILY ("bert-cls": {"tokens_per_s": ..., "sgemm_ceiling_ratio": ...,
# ...}), next to the GPT-2 case's top-level keys and the parameter server's.
# usage: scripts/bench_case.sh BUILD_DIR FAMILY BENCH_JSON [lora_bench arguments...]
set -eu
B=${1:?usage: bench_case.sh BUILD_DIR FAMILY BENCH_JSON [args...]}
FAMILY=${2:?family}
JSON=${3:?bench JSON}
shift 3
CASE="$B/bench-$FAMILY.json"
"$B/bin/lora_bench" --family "$FAMILY" --json "$CASE" "$@"
if [ -f "$JSON" ]; then
    # the bench JSON is one object ending with a line "}": drop it, end the last member with a comma, append
    sed -i '$ d' "$JSON"
    sed -i '$ s/$/,/' "$JSON"
    { printf '  "%s": ' "$FAMILY"; sed '1!s/^/  /' "$CASE"; echo "}"; } >>"$JSON"
    echo "  ($FAMILY added to $JSON)"
fi
