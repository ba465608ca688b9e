/* test_data: token files (both formats, bad inputs) and the global sample order. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "dataset.h"
#include "safetensors.h"
#include "testutil.h"

static char dir[64];

static const char *tmp_path(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Writes raw bytes: a 256-int header then payload_bytes of zeros. */
static void write_raw(const char *path, const int32_t *head, int n_head, long payload_bytes) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    int32_t h[256] = {0};
    memcpy(h, head, (size_t)n_head * sizeof *head);
    fwrite(h, sizeof h, 1, fp);
    for (long i = 0; i < payload_bytes; i++) fputc(0, fp);
    fclose(fp);
}

static void test_roundtrip(int dtype) {
    enum { N = 5003 };
    int32_t *ids = malloc(N * sizeof *ids);
    uint32_t lim = dtype == 2 ? 65535u : (uint32_t)INT32_MAX;
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((uint64_t)i * 2654435761u % lim);
    ids[17] = (int32_t)lim; /* the largest id the width holds */
    const char *p = tmp_path(dtype == 2 ? "t16.bin" : "t32.bin");
    struct lerr e = {{0}};
    CHECK(tok_write(p, ids, N, dtype, &e) == 0, "tok_write dtype %d: %s", dtype, e.msg);
    CHECK(access(p, F_OK) == 0, "written file exists");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "no temp file left behind");
    tok_file *f = tok_open(p, &e);
    CHECK(f != NULL, "tok_open: %s", e.msg);
    if (f) {
        CHECK(tok_count(f) == N, "count %lld", (long long)tok_count(f));
        CHECK(tok_max_id(f) == lim, "max id %u want %u", tok_max_id(f), lim);
        CHECK(strcmp(tok_path(f), p) == 0, "path %s", tok_path(f));
        int32_t *back = malloc(N * sizeof *back);
        tok_read(f, 0, N, back);
        CHECK(memcmp(back, ids, N * sizeof *ids) == 0, "ids read back (dtype %d)", dtype);
        tok_read(f, 100, 10, back);
        CHECK(memcmp(back, ids + 100, 10 * sizeof *ids) == 0, "partial read");
        free(back);
        tok_close(f);
    }
    /* an id too large for the width is refused and nothing is written */
    if (dtype == 2) {
        ids[3] = 70000;
        CHECK(tok_write(tmp_path("bad16.bin"), ids, N, 2, &e) == -1, "id 70000 in 2 bytes accepted");
        CHECK(strstr(e.msg, "70000") != NULL, "message names the id: %s", e.msg);
        CHECK(access(tmp_path("bad16.bin"), F_OK) != 0, "no file written for bad ids");
    }
    free(ids);
}

static void test_empty(void) {
    struct lerr e = {{0}};
    const char *p = tmp_path("empty.bin");
    CHECK(tok_write(p, NULL, 0, 2, &e) == 0, "empty write: %s", e.msg);
    tok_file *f = tok_open(p, &e);
    CHECK(f && tok_count(f) == 0, "empty file opens with 0 tokens: %s", e.msg);
    tok_close(f);
    data_order o;
    CHECK(data_order_init(&o, 0, 4, 1, DATA_SHUFFLE, &e) == -1, "0 tokens: no window");
    data_order_free(&o);
}

static void test_wordnet(void) {
    struct lerr e = {{0}};
    tok_file *f = tok_open("demo/wordnet.val.bin", &e);
    CHECK(f != NULL, "wordnet.val.bin: %s", e.msg);
    if (!f) return;
    CHECK(tok_count(f) == 236417, "wordnet count %lld", (long long)tok_count(f));
    CHECK(tok_max_id(f) < 4096, "wordnet max id %u", tok_max_id(f));
    CHECK(tok_max_id(f) > 0, "wordnet max id %u", tok_max_id(f));
    int32_t t[8];
    tok_read(f, tok_count(f) - 8, 8, t);
    for (int i = 0; i < 8; i++) CHECK(t[i] >= 0 && (uint32_t)t[i] <= tok_max_id(f), "id %d in range", t[i]);
    tok_close(f);
}

static void test_bad_inputs(void) {
    struct lerr e = {{0}};
    const char *p;

    p = tmp_path("missing.bin");
    CHECK(tok_open(p, &e) == NULL, "missing file opened");
    CHECK(strstr(e.msg, p) && strstr(e.msg, "No such file"), "missing: %s", e.msg);

    p = tmp_path("magic.bin");
    write_raw(p, (int32_t[]){12345, 1, 10}, 3, 20);
    CHECK(tok_open(p, &e) == NULL, "bad magic opened");
    CHECK(strstr(e.msg, p) && strstr(e.msg, "12345") && strstr(e.msg, "magic"), "bad magic: %s", e.msg);

    p = tmp_path("version.bin");
    write_raw(p, (int32_t[]){TOK_MAGIC, 99, 10, 0, 2}, 5, 20);
    CHECK(tok_open(p, &e) == NULL, "version 99 opened");
    CHECK(strstr(e.msg, p) && strstr(e.msg, "version 99") && strstr(e.msg, "version 1"), "version: %s", e.msg);

    p = tmp_path("llmcversion.bin");
    write_raw(p, (int32_t[]){20240520, 3, 10}, 3, 20);
    CHECK(tok_open(p, &e) == NULL, "llm.c version 3 opened");
    CHECK(strstr(e.msg, "version 3") && strstr(e.msg, "version 1"), "llm.c version: %s", e.msg);

    p = tmp_path("trunc.bin");
    write_raw(p, (int32_t[]){TOK_MAGIC, TOK_VERSION, 100, 0, 2}, 5, 150);
    CHECK(tok_open(p, &e) == NULL, "truncated file opened");
    CHECK(strstr(e.msg, p) && strstr(e.msg, "1224") && strstr(e.msg, "1174") && strstr(e.msg, "truncated"),
          "truncated: %s", e.msg);

    p = tmp_path("trunc_llmc.bin");
    write_raw(p, (int32_t[]){20240520, 1, 100}, 3, 199);
    CHECK(tok_open(p, &e) == NULL, "truncated llm.c file opened");
    CHECK(strstr(e.msg, "truncated"), "truncated llm.c: %s", e.msg);

    p = tmp_path("dtype.bin");
    write_raw(p, (int32_t[]){TOK_MAGIC, TOK_VERSION, 10, 0, 3}, 5, 30);
    CHECK(tok_open(p, &e) == NULL, "dtype 3 opened");
    CHECK(strstr(e.msg, "dtype"), "dtype: %s", e.msg);

    p = tmp_path("huge.bin");
    write_raw(p, (int32_t[]){TOK_MAGIC, TOK_VERSION, -1, -1, 4}, 5, 0);
    CHECK(tok_open(p, &e) == NULL, "huge count opened");

    p = tmp_path("short.bin");
    FILE *fp = fopen(p, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    CHECK(tok_open(p, &e) == NULL, "3-byte file opened");
    CHECK(strstr(e.msg, p) && strstr(e.msg, "header"), "short: %s", e.msg);

    CHECK(tok_open(dir, &e) == NULL, "directory opened");

    /* llm.c uint32 variant is accepted */
    p = tmp_path("llmc32.bin");
    write_raw(p, (int32_t[]){20240801, 7, 5}, 3, 20);
    tok_file *f = tok_open(p, &e);
    CHECK(f && tok_count(f) == 5 && tok_max_id(f) == 0, "llm.c uint32 file: %s", e.msg);
    tok_close(f);

    /* a uint32 id past INT32_MAX would read back negative (found by fuzz_tokfile): refused, naming the token */
    p = tmp_path("id31.bin");
    write_raw(p, (int32_t[]){20240801, 7, 3}, 3, 0);
    fp = fopen(p, "ab");
    fwrite((uint32_t[]){7, 9, 0x80000000u}, 4, 3, fp);
    fclose(fp);
    CHECK(tok_open(p, &e) == NULL && strstr(e.msg, p) && strstr(e.msg, "token 2 is 2147483648"), "id 2^31: %s", e.msg);
}

static void test_shuffle(void) {
    struct lerr e = {{0}};
    const int64_t n_tokens = 1001;
    const int T = 10;
    data_order o, o2, o3;
    CHECK(data_order_init(&o, n_tokens, T, 7, DATA_SHUFFLE, &e) == 0, "init: %s", e.msg);
    CHECK(o.n_win == 100, "n_win %lld", (long long)o.n_win);
    /* every window exactly once per epoch, for three epochs */
    for (int64_t ep = 0; ep < 3; ep++) {
        int seen[100] = {0};
        int ok = 1;
        for (int64_t k = 0; k < 100; k++) {
            int64_t epoch = -1;
            int64_t off = data_sample_offset(&o, ep * 100 + k, &epoch);
            if (epoch != ep || off % T != 0 || off < 0 || off + T > n_tokens - 1) ok = 0;
            else seen[off / T]++;
        }
        for (int w = 0; w < 100; w++) ok &= seen[w] == 1;
        CHECK(ok, "epoch %lld visits each window once", (long long)ep);
    }
    /* epochs differ from each other */
    int same = 0;
    for (int64_t k = 0; k < 100; k++)
        same += data_sample_offset(&o, k, NULL) == data_sample_offset(&o, 100 + k, NULL);
    CHECK(same < 50, "epoch 0 and 1 share %d positions", same);

    /* another seed gives another order */
    CHECK(data_order_init(&o2, n_tokens, T, 8, DATA_SHUFFLE, &e) == 0, "init 2");
    same = 0;
    for (int64_t k = 0; k < 100; k++) same += data_sample_offset(&o, k, NULL) == data_sample_offset(&o2, k, NULL);
    CHECK(same < 50, "seeds 7 and 8 share %d positions", same);
    data_order_free(&o2);

    /* a pure function of g: a second instance queried out of order agrees */
    CHECK(data_order_init(&o3, n_tokens, T, 7, DATA_SHUFFLE, &e) == 0, "init 3");
    int64_t a5000 = data_sample_offset(&o3, 5000, NULL);
    int64_t a3 = data_sample_offset(&o3, 3, NULL);
    int64_t a4999 = data_sample_offset(&o3, 4999, NULL);
    CHECK(a3 == data_sample_offset(&o, 3, NULL), "g=3 after g=5000");
    CHECK(a5000 == data_sample_offset(&o, 5000, NULL), "g=5000");
    CHECK(a4999 == data_sample_offset(&o, 4999, NULL), "g=4999");
    int agree = 1;
    for (int64_t g = 0; g < 1000; g += 37) agree &= data_sample_offset(&o, g, NULL) == data_sample_offset(&o3, g, NULL);
    CHECK(agree, "two instances agree");
    data_order_free(&o3);
    data_order_free(&o);

    /* data_fill on a real file matches tok_read at the offsets */
    tok_file *f = tok_open("demo/wordnet.val.bin", &e);
    if (f) {
        CHECK(data_order_init(&o, tok_count(f), 64, 3, DATA_SHUFFLE, &e) == 0, "init wordnet");
        int32_t *tok = malloc(4 * 64 * sizeof *tok), want[64];
        data_fill(f, &o, 10, 4, tok);
        int ok = 1;
        for (int k = 0; k < 4; k++) {
            tok_read(f, data_sample_offset(&o, 10 + k, NULL), 64, want);
            ok &= memcmp(tok + k * 64, want, sizeof want) == 0;
        }
        CHECK(ok, "data_fill matches tok_read at the sample offsets");
        free(tok);
        data_order_free(&o);
        tok_close(f);
    }

    /* too short */
    CHECK(data_order_init(&o, 10, 10, 1, DATA_SHUFFLE, &e) == -1, "shuffle needs seq_len+1 tokens");
    CHECK(strstr(e.msg, "10"), "short: %s", e.msg);
    data_order_free(&o);
    CHECK(data_order_init(&o, 11, 10, 1, DATA_SHUFFLE, &e) == 0, "11 tokens give one window");
    CHECK(data_sample_offset(&o, 5, NULL) == 0, "single window at 0");
    data_order_free(&o);
    CHECK(data_order_init(&o, 9, 10, 1, DATA_RANDOM, &e) == -1, "random needs seq_len tokens");
    data_order_free(&o);
}

static void test_random(void) {
    struct lerr e = {{0}};
    data_order o, o2;
    const int64_t n = 1000;
    const int T = 100;
    CHECK(data_order_init(&o, n, T, 11, DATA_RANDOM, &e) == 0, "init random: %s", e.msg);
    CHECK(data_order_init(&o2, n, T, 11, DATA_RANDOM, &e) == 0, "init random 2");
    int ok = 1, det = 1, hit_last = 0, hit_first = 0;
    for (int64_t g = 0; g < 20000; g++) {
        int64_t off = data_sample_offset(&o, g, NULL);
        ok &= off >= 0 && off <= n - T;
        hit_last |= off == n - T;
        hit_first |= off == 0;
    }
    CHECK(ok, "random offsets in [0, n - seq_len]");
    CHECK(hit_first && hit_last, "both ends reachable");
    for (int64_t g = 19999; g >= 0; g -= 3) det &= data_sample_offset(&o, g, NULL) == data_sample_offset(&o2, g, NULL);
    CHECK(det, "random mode deterministic");
    data_order_free(&o2);
    CHECK(data_order_init(&o2, n, T, 12, DATA_RANDOM, &e) == 0, "init random seed 12");
    int same = 0;
    for (int64_t g = 0; g < 100; g++) same += data_sample_offset(&o, g, NULL) == data_sample_offset(&o2, g, NULL);
    CHECK(same < 10, "seeds 11 and 12 share %d offsets", same);
    data_order_free(&o2);
    data_order_free(&o);
    CHECK(data_order_init(&o, 10, 10, 1, DATA_RANDOM, &e) == 0, "n_tokens == seq_len in random mode");
    CHECK(data_sample_offset(&o, 123, NULL) == 0, "only offset 0");
    data_order_free(&o);
}

static void test_val_offset(void) {
    const int64_t n = 236417;
    const int T = 256, W = 40;
    CHECK(data_val_offset(n, T, W, 0) == 0, "first 0");
    CHECK(data_val_offset(n, T, W, W - 1) == n - T, "last %lld", (long long)data_val_offset(n, T, W, W - 1));
    int ok = 1;
    for (int i = 0; i < W; i++) {
        int64_t want = (int64_t)i * (n - T) / (W - 1);
        ok &= data_val_offset(n, T, W, i) == want;
        if (i > 0) {
            int64_t gap = data_val_offset(n, T, W, i) - data_val_offset(n, T, W, i - 1);
            ok &= gap == (n - T) / (W - 1) || gap == (n - T) / (W - 1) + 1;
        }
    }
    CHECK(ok, "evenly spaced, floor(i * (n - T) / (W - 1))");
    CHECK(data_val_offset(n, T, 1, 0) == 0, "one window at 0");
    /* no overflow for huge files */
    int64_t big = (int64_t)1 << 50;
    CHECK(data_val_offset(big, T, 1 << 20, (1 << 20) - 1) == big - T, "huge file, last window");
    CHECK(data_val_offset(big + 7, 1, 3, 1) == (big + 6) / 2, "huge file, middle");
}

static void test_rng(void) {
    CHECK(mix64(0) == 0xe220a8397b1dcdafull, "mix64(0) = splitmix64 first output for seed 0: %llx",
          (unsigned long long)mix64(0));
    rng_t r;
    rng_seed(&r, 0);
    CHECK(rng_next(&r) == 0xe220a8397b1dcdafull, "splitmix64 seed 0, output 1");
    CHECK(rng_next(&r) == 0x6e789e6aa1b965f4ull, "splitmix64 seed 0, output 2");
    rng_seed(&r, 99);
    double sum = 0;
    int ok = 1;
    for (int i = 0; i < 10000; i++) {
        float u = rng_uniform(&r);
        ok &= u >= 0.0f && u < 1.0f;
        sum += u;
    }
    CHECK(ok, "uniform in [0, 1)");
    CHECK(fabs(sum / 10000 - 0.5) < 0.02, "uniform mean %g", sum / 10000);
}

/* The example order: a permutation of n per epoch, different epochs differ. */
static void test_example_order(void) {
    data_order o;
    struct lerr e;
    CHECK(data_order_init_examples(&o, 7, 3, DATA_SHUFFLE, &e) == 0, "init: %s", e.msg);
    int seen[7] = {0}, same = 1;
    int64_t first[7];
    for (int g = 0; g < 7; g++) {
        int64_t i = data_sample_offset(&o, g, NULL);
        CHECK(i >= 0 && i < 7, "index %lld in range", (long long)i);
        if (i >= 0 && i < 7) seen[i]++;
        first[g] = i;
    }
    for (int i = 0; i < 7; i++) CHECK(seen[i] == 1, "example %d once per epoch (%d)", i, seen[i]);
    for (int g = 0; g < 7; g++) same &= data_sample_offset(&o, 7 + g, NULL) == first[g];
    CHECK(!same, "epoch 1 has another order than epoch 0");
    data_order_free(&o);
    CHECK(data_order_init_examples(&o, 5, 3, DATA_RANDOM, &e) == 0, "init random: %s", e.msg);
    int hit_last = 0;
    for (int g = 0; g < 200; g++) {
        int64_t i = data_sample_offset(&o, g, NULL);
        CHECK(i >= 0 && i < 5, "random index %lld in [0, 5)", (long long)i);
        hit_last |= i == 4;
    }
    CHECK(hit_last, "random mode reaches the last example");
    data_order_free(&o);
    CHECK(data_order_init_examples(&o, 0, 3, DATA_SHUFFLE, &e) != 0, "no examples is an error");
}

/* Labeled datasets: a good one reads back; each bad one names the file and tensor. */
static void test_dataset(void) {
    struct lerr e;
    int64_t ids[6] = {1, 2, 3, 4, 5, 0}, mask[6] = {1, 1, 1, 1, 1, 0}, lab[2] = {1, 0}, tlab[6] = {0, -100, 2, 1, 1, -100};
    const char *p = tmp_path("ds.safetensors");
    st_entry ent[] = {{"input_ids", ST_I64, 2, {2, 3}, ids}, {"attention_mask", ST_I64, 2, {2, 3}, mask},
                      {"labels", ST_I64, 1, {2}, lab}};
    const char *cls_meta[] = {"format", DS_FORMAT, "version", DS_VERSION, "task", "SEQ_CLS"};
    const char *tok_meta[] = {"format", DS_FORMAT, "version", DS_VERSION, "task", "TOKEN_CLS"};
    CHECK(st_write(p, ent, 3, NULL, 0, &e) == 0, "write: %s", e.msg);
    ds_file *d = ds_open(p, TASK_SEQ_CLS, 2, 10, 8, &e);
    CHECK(!d && strstr(e.msg, "not a lora-ps dataset"), "no format metadata: %s", d ? "(opened)" : e.msg);
    ds_close(d);
    const char *v2_meta[] = {"format", DS_FORMAT, "version", "2", "task", "SEQ_CLS"};
    CHECK(st_write(p, ent, 3, v2_meta, 3, &e) == 0, "write: %s", e.msg);
    d = ds_open(p, TASK_SEQ_CLS, 2, 10, 8, &e);
    CHECK(!d && strstr(e.msg, "version 2 is not supported"), "another version: %s", d ? "(opened)" : e.msg);
    ds_close(d);
    CHECK(st_write(p, ent, 3, cls_meta, 3, &e) == 0, "write: %s", e.msg);
    d = ds_open(p, TASK_SEQ_CLS, 2, 10, 8, &e);
    CHECK(d != NULL, "open: %s", e.msg);
    if (d) {
        int32_t tok[6], m[6], ty[6] = {7, 7, 7, 7, 7, 7}, l[2];
        ds_get(d, 1, 0, tok, m, NULL, l);
        CHECK(ds_count(d) == 2 && ds_seq_len(d) == 3 && ds_has_mask(d) && !ds_has_types(d), "shape and parts");
        CHECK(tok[0] == 4 && tok[2] == 0 && m[2] == 0 && l[0] == 0 && ty[0] == 7, "example 1 into row 0");
        ds_close(d);
    }
    struct {
        const char *what, *want;
        model_task task;
        int n_labels, vocab, max_T;
    } cases[] = {
        {"a label outside num_labels", "labels[0] = 1 is outside the model's 1 labels", TASK_SEQ_CLS, 1, 10, 8},
        {"a token outside the vocabulary", "input_ids[1][1] = 5 is outside the vocabulary (5)", TASK_SEQ_CLS, 2, 5, 8},
        {"more positions than the model", "T = 3 positions, more than the model's 2", TASK_SEQ_CLS, 2, 10, 2},
        {"a dataset of another task", "a dataset for task SEQ_CLS, but the model's task is TOKEN_CLS", TASK_TOKEN_CLS,
         2, 10, 8},
        {"a causal LM", "causal LM training reads token files", TASK_CAUSAL_LM, 2, 10, 8},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ds_file *x = ds_open(p, cases[k].task, cases[k].n_labels, cases[k].vocab, cases[k].max_T, &e);
        CHECK(!x && strstr(e.msg, cases[k].want) && (cases[k].task == TASK_CAUSAL_LM || strstr(e.msg, p)),
              "%s: %s", cases[k].what, x ? "(opened)" : e.msg);
        ds_close(x);
    }
    /* token classification with -100, and a row without any token */
    st_entry tent[] = {{"input_ids", ST_I64, 2, {2, 3}, ids}, {"labels", ST_I64, 2, {2, 3}, tlab}};
    CHECK(st_write(p, tent, 2, tok_meta, 3, &e) == 0, "write: %s", e.msg);
    d = ds_open(p, TASK_TOKEN_CLS, 3, 10, 8, &e);
    CHECK(d != NULL, "token labels with -100: %s", d ? "" : e.msg);
    ds_close(d);
    int64_t nomask[6] = {1, 1, 1, 0, 0, 0};
    st_entry ment[] = {{"input_ids", ST_I64, 2, {2, 3}, ids}, {"attention_mask", ST_I64, 2, {2, 3}, nomask},
                       {"labels", ST_I64, 1, {2}, lab}};
    CHECK(st_write(p, ment, 3, cls_meta, 3, &e) == 0, "write: %s", e.msg);
    d = ds_open(p, TASK_SEQ_CLS, 2, 10, 8, &e);
    CHECK(!d && strstr(e.msg, "example 1 has no token"), "an empty example: %s", d ? "(opened)" : e.msg);
    ds_close(d);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_data.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip(2);
    test_roundtrip(4);
    test_empty();
    test_wordnet();
    test_bad_inputs();
    test_shuffle();
    test_random();
    test_val_offset();
    test_rng();
    test_example_order();
    test_dataset();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_end("test_data");
}
