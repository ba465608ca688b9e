/*
 * fuzz_peft_config: peft's adapter_config.json (lora_read_peft_config,
 * worker/lora.c), through a temporary file. An accepted spec must be one
 * lora_create would take apart (r > 0, counts inside their arrays, strings
 * terminated). Seeds: the fixtures' adapter_config.json files.
 */
#include "fuzz_util.h"
#include "lora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 16)) return 0;
    struct lerr e;
    e.msg[0] = 0;
    lora_spec spec;
    int rc = lora_read_peft_config(&spec, fuzz_file("adapter_config.json", data, size), &e);
    fuzz_need_msg(rc != 0, &e, "lora_read_peft_config");
    if (rc != 0) return 0;
    if (spec.r <= 0 || spec.n_targets < 0 || spec.n_targets > LORA_MAX_TARGETS || spec.n_exclude < 0 ||
        spec.n_exclude > LORA_MAX_TARGETS || spec.n_save < 0 || spec.n_save > LORA_MAX_SAVE)
        abort();
    for (int i = 0; i < spec.n_targets; i++)
        if (!memchr(spec.targets[i], 0, LORA_NAME)) abort();
    for (int i = 0; i < spec.n_save; i++)
        if (!memchr(spec.save[i], 0, LORA_NAME)) abort();
    return 0;
}
