/*
 * fuzz_safetensors: the safetensors parser (st_parse, worker/safetensors.c),
 * in memory. Built by `make FUZZ=1 fuzz-bins`, run by `make fuzz`
 * (scripts/run_fuzz.sh; seeds: the fixtures' .safetensors files).
 *
 * Every input must come back as a file or as NULL with a message; then every
 * tensor is converted (st_to_f32 or st_to_i32) so a parse that accepted bad
 * offsets shows up as an out-of-bounds read under ASan; a conversion may
 * refuse (a NaN or infinity, an I64 that does not fit) but must say why.
 */
#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lerr e;
    e.msg[0] = 0;
    st_file *f = st_parse(data, size, "fuzz", &e);
    if (!f) {
        fuzz_need_msg(1, &e, "st_parse");
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
                e.msg[0] = 0;
                fuzz_need_msg(st_to_f32(out, t, &e) != 0, &e, "st_to_f32");
                free(out);
            }
        } else {
            int32_t *out = malloc(cnt * sizeof *out);
            if (out) {
                e.msg[0] = 0;
                fuzz_need_msg(st_to_i32(out, t, &e) != 0, &e, "st_to_i32");
                free(out);
            }
        }
    }
    (void)st_meta(f, "format");
    st_close(f);
    return 0;
}
