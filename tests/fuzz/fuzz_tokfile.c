/*
 * fuzz_tokfile: the token file reader (tok_open, worker/data.c; llm.c's two
 * formats and this project's), through a temporary file. An accepted file
 * is read whole: every id at most tok_max_id, which is the largest.
 * Seeds: FUZZ_WRITE_SEEDS=dir writes files of each format.
 */
#include "data.h"
#include "fuzz_util.h"

static void seed_llmc(const char *dir, const char *name, int32_t magic, int32_t version, int bytes, int n) {
    int32_t h[256] = {0};
    h[0] = magic, h[1] = version, h[2] = n;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(h, 4, 256, f);
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)(i * 7 % 50257);
        fwrite(&v, (size_t)bytes, 1, f);
    }
    fclose(f);
}

static void write_seeds(const char *dir) {
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = i * 13 % 300;
    char path[512];
    struct lerr e;
    snprintf(path, sizeof path, "%s/lotk2.tok", dir);
    if (tok_write(path, ids, 40, 2, &e)) abort();
    ids[3] = 100000;
    snprintf(path, sizeof path, "%s/lotk4.tok", dir);
    if (tok_write(path, ids, 40, 4, &e)) abort();
    seed_llmc(dir, "llmc16.bin", 20240520, 1, 2, 32);
    seed_llmc(dir, "llmc32.bin", 20240801, 7, 4, 32);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    struct lerr e;
    e.msg[0] = 0;
    tok_file *f = tok_open(fuzz_file("train.tok", data, size), &e);
    fuzz_need_msg(!f, &e, "tok_open");
    if (!f) return 0;
    int64_t n = tok_count(f);
    if (n < 0 || (uint64_t)n > size) abort();
    uint32_t max = tok_max_id(f), seen = 0;
    int32_t buf[256];
    for (int64_t i = 0; i < n; i += 256) {
        int k = n - i < 256 ? (int)(n - i) : 256;
        tok_read(f, i, k, buf);
        for (int j = 0; j < k; j++) {
            if (buf[j] < 0 || (uint32_t)buf[j] > max) abort();
            if ((uint32_t)buf[j] > seen) seen = (uint32_t)buf[j];
        }
    }
    if (n > 0 && seen != max) abort();
    tok_close(f);
    return 0;
}
