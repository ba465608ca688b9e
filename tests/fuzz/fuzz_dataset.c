/*
 * fuzz_dataset: labeled datasets (ds_open, worker/dataset.c: safetensors
 * with the lora-ps-dataset metadata), through a temporary file, opened for
 * both classification tasks of a model with 3 labels, a vocabulary of 64 and
 * 16 positions. An accepted file is read whole with ds_get: every value is
 * one the model can take. Seeds: FUZZ_WRITE_SEEDS=dir writes a SEQ_CLS and a
 * TOKEN_CLS dataset (with mask and token types).
 */
#include "dataset.h"
#include "fuzz_util.h"
#include "safetensors.h"

#define NL 3
#define VOCAB 64
#define MAXT 16

static void seed(const char *dir, const char *name, const char *task, int token_labels) {
    enum { N = 4, T = 8 };
    int64_t ids[N * T], mask[N * T], types[N * T], labels[N * T];
    for (int i = 0; i < N * T; i++) {
        int pos = i % T, row = i / T;
        mask[i] = pos < T - row;
        ids[i] = mask[i] ? (i * 5) % VOCAB : 0;
        types[i] = pos >= T / 2;
        labels[i] = token_labels ? (mask[i] ? i % NL : -100) : i % NL;
    }
    st_entry en[4] = {
        {"input_ids", ST_I64, 2, {N, T}, ids},
        {"attention_mask", ST_I64, 2, {N, T}, mask},
        {"token_type_ids", ST_I64, 2, {N, T}, types},
        {"labels", ST_I64, token_labels ? 2 : 1, {N, token_labels ? T : 0}, labels},
    };
    const char *meta[] = {"format", DS_FORMAT, "version", DS_VERSION, "task", task};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct lerr e;
    if (st_write(path, en, 4, meta, 3, &e)) {
        fprintf(stderr, "fuzz_dataset: %s\n", e.msg);
        abort();
    }
}

static void write_seeds(const char *dir) {
    seed(dir, "seq.safetensors", "SEQ_CLS", 0);
    seed(dir, "tok.safetensors", "TOKEN_CLS", 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}

static void read_all(const ds_file *d, model_task task) {
    int T = ds_seq_len(d);
    int64_t n = ds_count(d);
    if (T <= 0 || T > MAXT || n <= 0) abort();
    int32_t tok[MAXT], mask[MAXT], types[MAXT], lab[MAXT];
    for (int64_t i = 0; i < n && i < 4096; i++) {
        ds_get(d, i, 0, tok, ds_has_mask(d) ? mask : NULL, ds_has_types(d) ? types : NULL, lab);
        int ntok = 0;
        for (int t = 0; t < T; t++) {
            if (tok[t] < 0 || tok[t] >= VOCAB) abort();
            if (ds_has_mask(d) && mask[t] != 0 && mask[t] != 1) abort();
            ntok += ds_has_mask(d) ? mask[t] : 1;
            if (task == TASK_TOKEN_CLS && lab[t] != -100 && (lab[t] < 0 || lab[t] >= NL)) abort();
        }
        if (ntok == 0) abort();
        if (task == TASK_SEQ_CLS && (lab[0] < 0 || lab[0] >= NL)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    const char *path = fuzz_file("train.safetensors", data, size);
    for (model_task task = TASK_SEQ_CLS; task <= TASK_TOKEN_CLS; task++) {
        struct lerr e;
        e.msg[0] = 0;
        ds_file *d = ds_open(path, task, NL, VOCAB, MAXT, &e);
        fuzz_need_msg(!d, &e, "ds_open");
        if (!d) continue;
        read_all(d, task);
        ds_close(d);
    }
    return 0;
}
