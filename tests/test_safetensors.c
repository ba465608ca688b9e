/*
 * test_safetensors: the st_ reader and writer.
 *
 * Covers the real fixture files (F32 gpt2-tiny base, the F16 demo model), a
 * write/read roundtrip of every writable dtype with metadata, the scalar
 * f16/bf16 conversions (exhaustive over all 65536 halves), and one case per
 * kind of bad input: each must return NULL and a message with the words a user
 * needs to find the problem.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static char tmpdir[256];

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_bytes(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL, "cannot create %s", path);
    if (!fp) return;
    if (len) CHECK(fwrite(buf, 1, len, fp) == len, "short write %s", path);
    fclose(fp);
}

/* A safetensors buffer with the given header and dlen data bytes (0x3c pattern). */
static unsigned char *mk(const char *json, size_t dlen, size_t *outlen) {
    size_t h = strlen(json), len = 8 + h + dlen;
    unsigned char *b = malloc(len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    memset(b + 8 + h, 0x3c, dlen);
    *outlen = len;
    return b;
}

/* st_parse must fail on this header and say all of the given words. */
static void expect_bad(const char *what, const char *json, size_t dlen, const char *w1, const char *w2) {
    size_t len;
    unsigned char *b = mk(json, dlen, &len);
    struct lerr e = {{0}};
    st_file *f = st_parse(b, len, "bad.safetensors", &e);
    CHECK(f == NULL, "%s: parsed but should fail", what);
    st_close(f);
    CHECK(strstr(e.msg, "bad.safetensors") != NULL, "%s: message does not name the file: %s", what, e.msg);
    CHECK(strstr(e.msg, w1) != NULL, "%s: message lacks '%s': %s", what, w1, e.msg);
    if (w2) CHECK(strstr(e.msg, w2) != NULL, "%s: message lacks '%s': %s", what, w2, e.msg);
    free(b);
}

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void test_fixture(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/base/model.safetensors", tu_fixture("gpt2-tiny"));
    struct lerr e = {{0}};
    st_file *f = st_open(path, &e);
    CHECK(f != NULL, "%s", e.msg);
    if (!f) return;
    /* 2 layers x 12 + ln_f (2) + wpe + wte; lm_head is tied and not stored */
    CHECK(st_count(f) == 28, "count %d", st_count(f));
    CHECK(st_file_size(f) == 501320, "size %zu", st_file_size(f));
    CHECK(!strcmp(st_path(f), path), "path %s", st_path(f));
    CHECK(memcmp(st_bytes(f), "\x40\x0a\0\0\0\0\0\0", 8) == 0, "first bytes are the header length 2624");
    CHECK(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"), "metadata format");
    CHECK(st_meta(f, "nope") == NULL, "missing metadata key");
    CHECK(!strcmp(st_at(f, 0)->name, "transformer.h.0.attn.c_attn.bias"), "header order: %s", st_at(f, 0)->name);
    CHECK(!strcmp(st_at(f, 27)->name, "transformer.wte.weight"), "header order: %s", st_at(f, 27)->name);
    CHECK(st_at(f, 28) == NULL && st_at(f, -1) == NULL, "st_at bounds");

    const int64_t qkv[2] = {64, 192};
    const st_tensor *t = st_expect(f, "transformer.h.0.attn.c_attn.weight", 2, qkv, &e);
    CHECK(t != NULL, "%s", e.msg);
    if (t) {
        CHECK(t->dtype == ST_F32 && t->numel == 64 * 192 && t->nbytes == 49152, "c_attn.weight dtype/numel");
        float *x = malloc(sizeof(float) * (size_t)t->numel);
        CHECK(st_to_f32(x, t, &e) == 0, "%s", e.msg);
        CHECK(all_finite(x, t->numel), "c_attn.weight finite");
        int nonzero = 0;
        for (int64_t i = 0; i < t->numel; i++) nonzero += x[i] != 0;
        CHECK(nonzero > t->numel / 2, "c_attn.weight mostly nonzero (%d)", nonzero);
        free(x);
    }
    const int64_t wte[2] = {320, 64};
    t = st_expect(f, "transformer.wte.weight", 2, wte, &e);
    CHECK(t != NULL, "%s", e.msg);
    if (t) {
        float *x = malloc(sizeof(float) * (size_t)t->numel);
        CHECK(st_to_f32(x, t, &e) == 0 && all_finite(x, t->numel), "wte finite");
        free(x);
        int32_t dummy;
        CHECK(st_to_i32(&dummy, t, &e) == -1 && strstr(e.msg, "not an integer type"), "i32 of F32: %s", e.msg);
    }
    CHECK(st_expect(f, "transformer.h.1.ln_1.weight", -1, NULL, &e) != NULL, "ndim -1 skips the shape check");

    const int64_t wrong[2] = {192, 64};
    CHECK(st_expect(f, "transformer.h.0.attn.c_attn.weight", 2, wrong, &e) == NULL, "wrong shape accepted");
    CHECK(strstr(e.msg, path) && strstr(e.msg, "'transformer.h.0.attn.c_attn.weight'") &&
              strstr(e.msg, "expected shape [192, 64], found [64, 192]"),
          "shape message: %s", e.msg);
    CHECK(st_expect(f, "lm_head.weight", 2, wrong, &e) == NULL && strstr(e.msg, "'lm_head.weight' not found") &&
              strstr(e.msg, path),
          "missing message: %s", e.msg);
    CHECK(st_find(f, "transformer.wpe.weight") != NULL && st_find(f, "transformer.wpe") == NULL, "st_find");
    st_close(f);
}

static void test_demo_f16(void) {
    struct lerr e = {{0}};
    st_file *f = st_open("demo/tiny-gpt2-pydocs/model.safetensors", &e);
    CHECK(f != NULL, "%s", e.msg);
    if (!f) return;
    CHECK(st_count(f) == 52, "demo count %d", st_count(f));
    int ok = 1;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        float *x = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if (t->dtype != ST_F16 || st_to_f32(x, t, &e) != 0 || !all_finite(x, t->numel)) ok = 0;
        /* every value goes back to the same half */
        for (int64_t j = 0; j < t->numel && ok; j++) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * j, 2);
            if (st_f32_to_f16(x[j]) != h) ok = 0;
        }
        free(x);
    }
    CHECK(ok, "demo tensors are F16, convert, finite and roundtrip");
    const int64_t wte[2] = {4096, 256};
    CHECK(st_expect(f, "transformer.wte.weight", 2, wte, &e) != NULL, "%s", e.msg);
    st_close(f);
}

static void test_roundtrip(void) {
    char path[512];
    tmp_path(path, sizeof path, "rt.safetensors");
    float a[6] = {1.0f, -2.5f, 3.14159265f, 1e-8f, 65504.0f, -0.0f};
    float big[3000];
    for (int i = 0; i < 3000; i++) big[i] = (float)i * 0.37f - 500.0f;
    float h[5000];
    for (int i = 0; i < 5000; i++) h[i] = (float)(i - 2500) * 0.0137f; /* crosses the 4096-element chunk */
    int64_t ids[5] = {0, -1, 50256, INT64_C(1) << 40, INT64_MIN};
    float scalar = 42.0f;
    st_entry ents[] = {
        {"z.f32", ST_F32, 2, {2, 3}, a},
        {"b.bf16", ST_BF16, 1, {3000}, big},
        {"a.f16", ST_F16, 2, {50, 100}, h},
        {"m.i64", ST_I64, 1, {5}, ids},
        {"scalar", ST_F32, 0, {0}, &scalar},
        {"empty", ST_F16, 2, {0, 7}, NULL},
    };
    const char *meta[] = {"format", "pt", "note", "quote \" and \\ and \xc3\xa9"};
    struct lerr e = {{0}};
    CHECK(st_write(path, ents, 6, meta, 2, &e) == 0, "%s", e.msg);

    /* nothing but the file is left in the directory */
    DIR *d = opendir(tmpdir);
    int nfiles = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') nfiles++;
    if (d) closedir(d);
    CHECK(nfiles == 1, "temp file left behind (%d files)", nfiles);

    st_file *f = st_open(path, &e);
    CHECK(f != NULL, "%s", e.msg);
    if (!f) return;
    const unsigned char *b = st_bytes(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    CHECK((8 + hl) % 8 == 0, "header padded to 8 (%llu)", (unsigned long long)hl);
    CHECK(memcmp(b + 8, "{\"__metadata__\":{", 17) == 0, "__metadata__ first: %.40s", (const char *)b + 8);
    CHECK(st_count(f) == 6, "count %d", st_count(f));
    const char *order[] = {"a.f16", "b.bf16", "empty", "m.i64", "scalar", "z.f32"};
    for (int i = 0; i < 6 && i < st_count(f); i++)
        CHECK(!strcmp(st_at(f, i)->name, order[i]), "sorted header: %d is %s", i, st_at(f, i)->name);
    /* data contiguous in header order, ending at the end of the file */
    size_t off = 8 + hl;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        CHECK((const unsigned char *)t->data == b + off, "tensor %s not contiguous", t->name);
        off += t->nbytes;
    }
    CHECK(off == st_file_size(f), "data ends at the end of the file");
    CHECK(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"), "meta format");
    CHECK(st_meta(f, "note") && !strcmp(st_meta(f, "note"), meta[3]), "meta with escapes: %s", st_meta(f, "note"));

    float out[5000];
    const st_tensor *t = st_find(f, "z.f32");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[1] == 3, "z.f32 header");
    if (t) {
        CHECK(st_to_f32(out, t, &e) == 0 && memcmp(out, a, sizeof a) == 0, "F32 exact");
    }
    t = st_find(f, "a.f16");
    if (t) {
        CHECK(t->dtype == ST_F16 && t->numel == 5000, "a.f16 header");
        CHECK(st_to_f32(out, t, &e) == 0, "%s", e.msg);
        int ok = 1;
        for (int i = 0; i < 5000; i++) ok &= out[i] == st_f16_to_f32(st_f32_to_f16(h[i]));
        CHECK(ok, "F16 values");
        CHECK(tu_max_abs(out, h, 5000) < 0.02, "F16 close: %g", tu_max_abs(out, h, 5000));
    }
    t = st_find(f, "b.bf16");
    if (t) {
        CHECK(t->dtype == ST_BF16 && t->numel == 3000, "b.bf16 header");
        CHECK(st_to_f32(out, t, &e) == 0, "%s", e.msg);
        int ok = 1;
        for (int i = 0; i < 3000; i++) ok &= out[i] == st_bf16_to_f32(st_f32_to_bf16(big[i]));
        CHECK(ok, "BF16 values");
        CHECK(tu_rel_err(out, big, 3000) < 4e-3, "BF16 close");
    }
    t = st_find(f, "m.i64");
    if (t) {
        CHECK(t->dtype == ST_I64 && t->nbytes == 40 && memcmp(t->data, ids, 40) == 0, "I64 exact bytes");
        int32_t iv[5];
        CHECK(st_to_i32(iv, t, &e) == -1 && strstr(e.msg, "'m.i64'") && strstr(e.msg, "element 3") &&
                  strstr(e.msg, "does not fit in int32"),
              "i64 overflow message: %s", e.msg);
        float fv[5];
        CHECK(st_to_f32(fv, t, &e) == -1 && strstr(e.msg, "not a floating-point type"), "f32 of I64: %s", e.msg);
    }
    t = st_find(f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && st_to_f32(out, t, &e) == 0 && out[0] == 42.0f, "0-d tensor");
    t = st_find(f, "empty");
    CHECK(t && t->ndim == 2 && t->numel == 0 && t->nbytes == 0 && st_to_f32(out, t, &e) == 0, "empty tensor");
    st_close(f);

    /* small I64 values convert to int32; rewriting over an existing file works */
    int64_t small[3] = {7, -7, 2147483647};
    st_entry one = {"ids", ST_I64, 1, {3}, small};
    CHECK(st_write(path, &one, 1, NULL, 0, &e) == 0, "%s", e.msg);
    f = st_open(path, &e);
    CHECK(f && st_count(f) == 1 && st_meta(f, "format") == NULL, "rewrite: %s", e.msg);
    if (f) {
        int32_t iv[3];
        CHECK(st_to_i32(iv, st_at(f, 0), &e) == 0 && iv[0] == 7 && iv[1] == -7 && iv[2] == 2147483647, "i32");
        CHECK(memcmp((const char *)st_bytes(f) + 8, "{\"ids\":", 7) == 0, "no metadata key when none given");
    }
    st_close(f);
    unlink(path);

    /* write errors */
    st_entry dup[2] = {{"x", ST_F32, 1, {1}, a}, {"x", ST_F32, 1, {1}, a}};
    CHECK(st_write(path, dup, 2, NULL, 0, &e) == -1 && strstr(e.msg, "duplicate tensor name 'x'"), "dup: %s", e.msg);
    st_entry bad = {"u8", ST_U8, 1, {1}, a};
    CHECK(st_write(path, &bad, 1, NULL, 0, &e) == -1 && strstr(e.msg, "cannot write dtype U8"), "u8: %s", e.msg);
    st_entry neg = {"n", ST_F32, 1, {-1}, a};
    CHECK(st_write(path, &neg, 1, NULL, 0, &e) == -1 && strstr(e.msg, "bad dim"), "neg: %s", e.msg);
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK(st_write(nodir, ents, 1, NULL, 0, &e) == -1 && strstr(e.msg, nodir) &&
              strstr(e.msg, "No such file or directory"),
          "no dir: %s", e.msg);
    CHECK(access(path, F_OK) != 0, "failed writes leave no file");

    /* A write that fails midway (a file-size limit stands in for a full disk): -1, the strerror,
     * and the temp file removed. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        CHECK(st_write(path, ents, 6, meta, 2, &e) == -1, "write past the size limit succeeded");
        CHECK(strstr(e.msg, path) && strstr(e.msg, "write failed: File too large"), "fsize: %s", e.msg);
        setrlimit(RLIMIT_FSIZE, &old);
        d = opendir(tmpdir);
        nfiles = 0;
        for (struct dirent *de; d && (de = readdir(d));)
            if (de->d_name[0] != '.') nfiles++;
        if (d) closedir(d);
        CHECK(nfiles == 0, "failed write left %d files", nfiles);
    }
    signal(SIGXFSZ, oldsig);
}

static void test_conversions(void) {
    /* f16 -> f32 -> f16 is the identity for every non-NaN half; NaN stays NaN */
    int bad = 0, badnan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        int isnan_h = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (isnan_h) badnan += !isnan(f) || !((st_f32_to_f16(f) & 0x7fff) > 0x7c00);
        else bad += st_f32_to_f16(f) != h;
    }
    CHECK(bad == 0 && badnan == 0, "f16 roundtrip: %d bad, %d bad NaN", bad, badnan);
    bad = badnan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        int isnan_h = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (isnan_h) badnan += !isnan(f) || !isnan(st_bf16_to_f32(st_f32_to_bf16(f)));
        else bad += st_f32_to_bf16(f) != h;
    }
    CHECK(bad == 0 && badnan == 0, "bf16 roundtrip: %d bad, %d bad NaN", bad, badnan);

    /* exact values */
    CHECK(st_f16_to_f32(0x3c00) == 1.0f && st_f16_to_f32(0xc000) == -2.0f, "f16 1, -2");
    CHECK(st_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(st_f16_to_f32(0x0001) == 0x1p-24f && st_f16_to_f32(0x03ff) == 0x3ffp-24f, "f16 subnormals");
    CHECK(st_f16_to_f32(0x0400) == 0x1p-14f, "f16 min normal");
    CHECK(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0xfc00) < 0, "f16 inf");
    CHECK(signbit(st_f16_to_f32(0x8000)) && st_f16_to_f32(0x8000) == 0, "f16 -0");

    /* rounding: nearest, ties to even */
    CHECK(st_f32_to_f16(65519.0f) == 0x7bff && st_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow threshold");
    CHECK(st_f32_to_f16(1e10f) == 0x7c00 && st_f32_to_f16(-1e10f) == 0xfc00, "f16 overflow to inf");
    CHECK(st_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(st_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(st_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "above tie");
    CHECK(st_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 ties to 0");
    CHECK(st_f32_to_f16(0x1.8p-25f) == 0x0001, "1.5 * 2^-25 rounds up");
    CHECK(st_f32_to_f16(0x1.8p-24f) == 0x0002, "1.5 * 2^-24 ties to even (2)");
    CHECK(st_f32_to_f16(0x3ff.8p-24f) == 0x0400, "largest subnormal tie carries to min normal");
    CHECK(st_f32_to_f16(1e-30f) == 0 && st_f32_to_f16(-1e-30f) == 0x8000, "underflow keeps sign");
    CHECK(st_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(st_f32_to_f16(INFINITY) == 0x7c00 && st_f32_to_f16(-INFINITY) == 0xfc00, "inf");
    CHECK((st_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (st_f32_to_f16(NAN) & 0x3ff), "NaN");
    float snan;
    uint32_t snan_bits = 0x7f800001u; /* payload only in the low bits: must not become inf */
    memcpy(&snan, &snan_bits, 4);
    CHECK(isnan(st_f16_to_f32(st_f32_to_f16(snan))), "low-payload NaN stays NaN in f16");
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(snan))), "low-payload NaN stays NaN in bf16");

    CHECK(st_f32_to_bf16(1.0f) == 0x3f80 && st_bf16_to_f32(0x3f80) == 1.0f, "bf16 1");
    CHECK(st_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(st_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(st_f32_to_bf16(INFINITY) == 0x7f80 && st_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
    CHECK(st_f32_to_bf16(3.4e38f) == 0x7f80, "bf16 overflow rounds to inf");

#ifdef __FLT16_MAX__
    /* Against the compiler's own float -> _Float16 (correctly rounded) on a sweep of all floats. */
    bad = 0;
    for (uint64_t u = 0; u < (UINT64_C(1) << 32); u += 997) {
        uint32_t x = (uint32_t)u;
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        bad += st_f32_to_f16(f) != want;
    }
    CHECK(bad == 0, "f32 -> f16 disagrees with _Float16 on %d values", bad);
#endif

    /* st_dtype_* */
    CHECK(!strcmp(st_dtype_name(ST_BF16), "BF16") && st_dtype_size(ST_BF16) == 2, "dtype BF16");
    CHECK(!strcmp(st_dtype_name(ST_U8), "U8") && st_dtype_size(ST_F64) == 8, "dtype U8/F64");
    CHECK(st_dtype_size(ST_NDTYPES) == 0, "dtype out of range");
}

static void test_other_dtypes(void) {
    /* F64, I32, U16, U8 read from a hand-made buffer; data deliberately unaligned (header length 0x55) */
    char json[256];
    snprintf(json, sizeof json,
             "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
             "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[16,24]},"
             "\"u\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[24,26]},"
             "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[26,27]}}");
    size_t len;
    unsigned char *buf = mk(json, 27, &len);
    unsigned char *data = buf + len - 27;
    double dv[2] = {0.5, -1e300};
    int32_t iv[2] = {-5, 123456};
    uint16_t uv = 65535;
    memcpy(data, dv, 16);
    memcpy(data + 16, iv, 8);
    memcpy(data + 24, &uv, 2);
    data[26] = 200;
    struct lerr e = {{0}};
    st_file *f = st_parse(buf, len, "mem", &e);
    CHECK(f != NULL, "%s", e.msg);
    if (f) {
        float fo[2];
        int32_t io[2];
        /* -1e300 is past float32's range: it would become -inf, so the load is refused naming the tensor */
        e.msg[0] = 0;
        CHECK(st_to_f32(fo, st_find(f, "d"), &e) != 0 && strstr(e.msg, "tensor 'd'") &&
                  strstr(e.msg, "-inf") && strstr(e.msg, "element 1") && strstr(e.msg, "float32"),
              "F64 out of range: %s", e.msg);
        double ok[2] = {0.5, -1e30};
        memcpy(data, ok, 16);
        CHECK(st_to_f32(fo, st_find(f, "d"), &e) == 0 && fo[0] == 0.5f && fo[1] == (float)-1e30, "F64: %s", e.msg);
        CHECK(st_to_i32(io, st_find(f, "i"), &e) == 0 && io[0] == -5 && io[1] == 123456, "I32");
        CHECK(st_to_i32(io, st_find(f, "u"), &e) == 0 && io[0] == 65535, "U16");
        CHECK(st_to_i32(io, st_find(f, "b"), &e) == 0 && io[0] == 200, "U8");
        CHECK(st_find(f, "d")->dtype == ST_F64 && st_find(f, "b")->dtype == ST_U8, "dtypes");
    }
    st_close(f);
    free(buf);

    /* an empty header is a valid file with no tensors; padding after the JSON is fine */
    buf = mk("{}      ", 0, &len);
    f = st_parse(buf, len, "mem", &e);
    CHECK(f && st_count(f) == 0 && st_find(f, "x") == NULL, "empty header: %s", e.msg);
    st_close(f);
    free(buf);
}

static void test_bad_files(void) {
    struct lerr e = {{0}};
    char path[512];

    /* missing file */
    CHECK(st_open("/nonexistent/model.safetensors", &e) == NULL, "missing file opened");
    CHECK(!strcmp(e.msg, "/nonexistent/model.safetensors: cannot open: No such file or directory"), "missing: %s",
          e.msg);

    /* empty file */
    tmp_path(path, sizeof path, "empty.safetensors");
    write_bytes(path, "", 0);
    CHECK(st_open(path, &e) == NULL, "empty file opened");
    CHECK(strstr(e.msg, path) && strstr(e.msg, "empty file"), "empty: %s", e.msg);
    unlink(path);

    /* shorter than 8 bytes */
    tmp_path(path, sizeof path, "short.safetensors");
    write_bytes(path, "\x10\0\0", 3);
    CHECK(st_open(path, &e) == NULL, "3-byte file opened");
    CHECK(strstr(e.msg, path) && strstr(e.msg, "3 bytes") && strstr(e.msg, "too short"), "short: %s", e.msg);
    unlink(path);

    /* a directory */
    CHECK(st_open(tmpdir, &e) == NULL && strstr(e.msg, "not a regular file"), "dir: %s", e.msg);

    /* truncated copy of the fixture: the header is intact, the data block is cut */
    char src[4096];
    snprintf(src, sizeof src, "%s/base/model.safetensors", tu_fixture("gpt2-tiny"));
    FILE *fp = fopen(src, "rb");
    CHECK(fp != NULL, "open %s", src);
    if (fp) {
        static unsigned char whole[501320];
        size_t n = fread(whole, 1, sizeof whole, fp);
        fclose(fp);
        CHECK(n == sizeof whole, "read fixture");
        tmp_path(path, sizeof path, "cut.safetensors");
        write_bytes(path, whole, 300000);
        CHECK(st_open(path, &e) == NULL, "truncated data opened");
        CHECK(strstr(e.msg, path) && strstr(e.msg, "run past the end of the data block") && strstr(e.msg, "truncated"),
              "cut data: %s", e.msg);
        /* cut inside the header */
        write_bytes(path, whole, 1000);
        CHECK(st_open(path, &e) == NULL, "truncated header opened");
        CHECK(strstr(e.msg, path) && strstr(e.msg, "header length 2624 runs past the end of the file (1000 bytes)"),
              "cut header: %s", e.msg);
        unlink(path);
    }

    /* absurd header length */
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    CHECK(st_parse(huge, sizeof huge, "bad.safetensors", &e) == NULL && strstr(e.msg, "100 MB"), "huge: %s", e.msg);

    const char *ok_entry = "\"ok\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char j[1024];

    expect_bad("not JSON", "{\"a\": {\"dtype\": \"F32\", ", 0, "not valid JSON", NULL);
    expect_bad("garbage", "\x01\x02\x03garbage", 0, "not valid JSON", NULL);
    expect_bad("trailing", "{} xyz", 0, "trailing bytes", NULL);
    expect_bad("root array", "[1, 2]", 0, "not a JSON object", "an array");
    expect_bad("entry not object", "{\"w\": [1, 2]}", 0, "tensor 'w'", "not an object");
    expect_bad("missing dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'w'",
               "missing field 'dtype'");
    expect_bad("missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing field 'shape'",
               NULL);
    expect_bad("missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field 'data_offsets'",
               NULL);
    expect_bad("dtype twice", "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "field 'dtype' appears twice", NULL);
    expect_bad("unknown dtype", "{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'w'",
               "unknown dtype 'Q4'");
    expect_bad("dtype number", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is a number",
               NULL);
    expect_bad("negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "shape[1] = -3 is not a non-negative integer");
    expect_bad("fractional dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]",
               "not a non-negative integer");
    expect_bad("string dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
               "shape[0] is a string", NULL);
    expect_bad("shape not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
               "shape is a number", NULL);
    expect_bad("too many dims",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "9 dims", NULL);
    expect_bad("numel overflow",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8,
               "too large", "[4294967296, 4294967296, 4]");
    expect_bad("dim 2^53", "{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,8]}}", 8,
               "shape[0]", NULL);
    expect_bad("offsets not pair", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16,
               "data_offsets is an array of the wrong length", NULL);
    expect_bad("offsets negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
               "data_offsets must hold two non-negative integers", NULL);
    expect_bad("begin > end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
               "[8, 0] have begin > end", NULL);
    expect_bad("offsets out of range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[200],\"data_offsets\":[0,800]}}", 400,
               "tensor 'w'", "data_offsets [0, 800] run past the end of the data block (400 bytes");
    expect_bad("size mismatch",
               "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[64,192],\"data_offsets\":[0,100]}}", 100,
               "bad.safetensors: tensor 'h.0.attn.c_attn.weight': data_offsets [0, 100] hold 100 bytes but shape "
               "[64, 192] of F32 needs 49152",
               NULL);
    snprintf(j, sizeof j, "{%s,\"w\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[4,12]}}", ok_entry);
    expect_bad("overlap", j, 12, "tensors 'ok' (data_offsets [0, 8]) and 'w' (data_offsets [4, 12]) overlap", NULL);
    snprintf(j, sizeof j, "{%s,\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", ok_entry);
    expect_bad("same range", j, 8, "overlap", NULL);
    snprintf(j, sizeof j, "{%s,%s}", ok_entry, ok_entry);
    expect_bad("duplicate key", j, 8, "duplicate tensor name 'ok'", NULL);
    snprintf(j, sizeof j, "{\"__metadata__\":{\"a\":1},%s}", ok_entry);
    expect_bad("metadata number", j, 8, "__metadata__ value of 'a' is a number", NULL);
    snprintf(j, sizeof j, "{\"__metadata__\":[],%s}", ok_entry);
    expect_bad("metadata array", j, 8, "'__metadata__' is an array", NULL);
    snprintf(j, sizeof j, "{\"__metadata__\":{},%s,\"__metadata__\":{}}", ok_entry);
    expect_bad("metadata twice", j, 8, "duplicate key '__metadata__'", NULL);

    /* a NULL lerr is allowed */
    size_t len;
    unsigned char *b = mk("nope", 0, &len);
    CHECK(st_parse(b, len, NULL, NULL) == NULL, "NULL lerr");
    free(b);
    /* zero-size tensors may share an offset with anything */
    snprintf(j, sizeof j, "{%s,\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", ok_entry);
    b = mk(j, 8, &len);
    st_file *f = st_parse(b, len, "mem", &e);
    CHECK(f != NULL && st_count(f) == 2, "zero-size tensor inside another: %s", e.msg);
    st_close(f);
    free(b);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_fixture();
    test_demo_f16();
    test_roundtrip();
    test_conversions();
    test_other_dtypes();
    test_bad_files();
    if (rmdir(tmpdir) != 0) CHECK(0, "cannot remove %s: %s (files left behind?)", tmpdir, strerror(errno));
    return tu_end("test_safetensors");
}
