/*
 * fuzz_safetensors: libFuzzer entry point for the safetensors parser.
 *
 * Not built by the Makefile (it builds tests/test_*.c only). Build and run
 * from the repository root with:
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -fno-sanitize-recover=undefined -Iinclude -I/usr/include/cjson \
 *       tests/fuzz_safetensors.c worker/safetensors.c worker/lerr.c -lcjson -lm \
 *       -o /tmp/fuzz_safetensors
 *   mkdir -p /tmp/st_corpus && cp tests/fixtures/gpt2-tiny/lora-init/adapter_model.safetensors \
 *       tests/fixtures/llama-tiny/grads.safetensors tests/fixtures/bert-tiny-cls/forward.safetensors /tmp/st_corpus/
 *   /tmp/fuzz_safetensors -max_total_time=60 -max_len=65536 -rss_limit_mb=2048 /tmp/st_corpus
 *
 * Every input must come back as a file or as NULL with a message; then every
 * tensor is converted (st_to_f32 or st_to_i32) so a parse that accepted bad
 * offsets shows up as an out-of-bounds read under ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lerr e;
    e.msg[0] = 0;
    st_file *f = st_parse(data, size, "fuzz", &e);
    if (!f) {
        if (!e.msg[0]) abort(); /* a failure must say why */
        return 0;
    }
    int n = st_count(f);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(f, i);
        if (!t || st_find(f, t->name) == NULL) abort();
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) abort();
        if (t->nbytes != (size_t)t->numel * st_dtype_size(t->dtype)) abort();
        size_t cnt = (size_t)t->numel ? (size_t)t->numel : 1;
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64) {
            float *out = malloc(cnt * sizeof *out);
            if (out) {
                if (st_to_f32(out, t, &e) != 0) abort();
                free(out);
            }
        } else {
            int32_t *out = malloc(cnt * sizeof *out);
            if (out) {
                st_to_i32(out, t, &e); /* may refuse an I64 value that does not fit: fine */
                free(out);
            }
        }
    }
    (void)st_meta(f, "format");
    st_close(f);
    return 0;
}
