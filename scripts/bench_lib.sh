# Sourced by the benchmarks: makes the random GPT-2 124M and its token file in
# the build directory $B once, and sets BENCH_ARGS to run configs/bench-gpt2-124m.ini
# against them.
bench_setup() {
    local model=$B/bench-gpt2-124m
    [ -f "$model/model.safetensors" ] || "$B/bin/lora" init-model --preset gpt2-124m --out "$model" || return 1
    [ -f "$B/bench-tokens.bin" ] || "$B/bin/lora" tokens --vocab 50257 --count 200000 --out "$B/bench-tokens.bin" ||
        return 1
    BENCH_ARGS=(--config configs/bench-gpt2-124m.ini --set model.path="$model" --set data.train="$B/bench-tokens.bin")
}
