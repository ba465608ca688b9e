#!/bin/sh
# The demo: LoRA fine-tuning of a small pretrained GPT-2 on WordNet glosses
# (configs/demo.ini). Prints the validation loss before and after.
set -e
B=${BUILD:-build}
echo "demo: fine-tuning demo/tiny-gpt2-pydocs on WordNet glosses (configs/demo.ini)"
start=$(date +%s)
"$B/bin/lora" train --config configs/demo.ini "$@"
echo "demo: wall time $(( $(date +%s) - start )) s"
