/* test_checkpoint_whole: checkpoints of adapters with whole tensors (peft's
 * modules_to_save, full fine-tuning) beside LoRA modules, on synthetic sites
 * (no model): a round trip of all three trees bitwise with 1-D and 2-D whole
 * tensors, the layout as HDF5 and h5dump show it (version 2, kind = "whole",
 * modules_to_save), ckpt_read_meta's save[] names, shape and presence
 * mismatches named, damaged or inconsistent files rejected, a flipped byte in
 * any whole-tensor dataset a read error, full fine-tuning held, and the heap
 * flat over many reads. The LoRA-only format (version 1) is test_checkpoint's.
 * (A file of its own: test_checkpoint.c is near the project's 800-line limit.) */
#include <hdf5.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "optim.h"
#include "testutil.h"

#define IN 16
#define N_MODEL_TENSOR 24 /* the synthetic model's tensor count; whole tensor i is model tensor 10 + i */
#define CLS "/adapter/base_model.model.classifier"
#define POOL "/adapter/base_model.model.bert.pooler.dense"

typedef struct {
    const char *name; /* HF name */
    int ndim;
    int64_t shape[2];
} whole_t;

/* pooler.dense (2-D weight, 1-D bias) and classifier (3 labels) */
static const whole_t k_whole[4] = {
    {"bert.pooler.dense.weight", 2, {IN, IN}},
    {"bert.pooler.dense.bias", 1, {IN}},
    {"classifier.weight", 2, {3, IN}},
    {"classifier.bias", 1, {3}},
};

/* 2 layers x (attn.c_attn, mlp.c_fc, mlp.c_proj). */
static int make_sites(lora_site *s) {
    int n = 0;
    for (int l = 0; l < 2; l++) {
        static const char *names[3] = {"attn.c_attn", "mlp.c_fc", "mlp.c_proj"};
        static const int outs[3] = {3 * IN, 4 * IN, IN}, ins[3] = {IN, IN, 4 * IN};
        for (int k = 0; k < 3; k++, n++) {
            memset(&s[n], 0, sizeof s[n]);
            snprintf(s[n].name, LORA_NAME, "transformer.h.%d.%s", l, names[k]);
            s[n].in = ins[k], s[n].out = outs[k], s[n].w = s[n].b = -1;
        }
    }
    return n;
}

/* LoRA (r = 4) on c_attn and c_proj, then the whole tensors ws[0..n), with
 * modules_to_save = save (comma-separated), as model_adapter_create lays
 * them out. */
static int make_adapter(lora_adapter *a, const char *save, const whole_t *ws, int n) {
    lora_site sites[8];
    int ns = make_sites(sites);
    lora_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.r = 4, spec.alpha = 8, spec.dropout = 0.1f;
    snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_attn");
    snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_proj");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", save);
    for (char *p = buf, *tok; (tok = strsep(&p, ","));)
        if (*tok) snprintf(spec.save[spec.n_save++], LORA_NAME, "%s", tok);
    struct lerr e;
    e.msg[0] = 0;
    int rc = lora_create(a, &spec, sites, ns, 1, &e);
    for (int i = 0; i < n && rc == 0; i++)
        rc = lora_add_whole(a, 10 + i, N_MODEL_TENSOR, ws[i].name, ws[i].ndim, ws[i].shape, &e);
    CHECK(rc == 0, "adapter: %s", e.msg);
    return rc;
}

static void fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = 4 * ((float)((s >> 40) & 0xffffff) / 16777216.0f) - 2;
    }
}

static int64_t g_step[3] = {0, 1, 2};
static double g_loss[3] = {3, 2.5, 2.25};

static void make_state(ckpt_state *st, int64_t step) {
    memset(st, 0, sizeof *st);
    st->step = step, st->epoch = 1, st->tokens_seen = 4096, st->ranks = 3, st->data_cursor = step * 32;
    st->opt_steps = step, st->lr = 1e-3f, st->beta1 = 0.9f, st->beta2 = 0.999f, st->eps = 1e-8f;
    st->weight_decay = 0.01f, st->schedule_kind = SCHED_LINEAR, st->total_steps = 10;
    st->init_seed = 7, st->data_seed = 8, st->dropout_seed = 9, st->seq_len = 32, st->train_tokens = 5000;
    st->config_text = "[lora]\nr = 4\n", st->model_path = "models/bert", st->model_hash = 0xabcdef;
    st->n_metrics = 3, st->m_step = g_step, st->m_loss = g_loss, st->m_lr = g_loss, st->m_tokens_per_s = g_loss;
}

/* stdout of a shell command (malloc'd), NULL when it fails */
static char *run_capture(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n - 1, p)) > 0)
        if ((n += k) + 1024 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    if (buf) buf[n] = 0;
    if (pclose(p) != 0) free(buf), buf = NULL;
    return buf;
}

/* A string attribute of object obj in file f (malloc'd), NULL if absent. */
static char *str_attr(hid_t f, const char *obj, const char *name) {
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT), t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *s = calloc(n + 1, 1);
    H5Aread(a, t, s);
    H5Tclose(t), H5Aclose(a);
    return s;
}

static int int_attr(hid_t f, const char *obj, const char *name) {
    int v = -1;
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return -1;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT, &v);
    H5Aclose(a);
    return v;
}

/* rank of dataset path (dims to dims), -1 if absent */
static int dset_shape(hid_t f, const char *path, hsize_t *dims) {
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp = H5Dget_space(d);
    int rk = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp), H5Dclose(d);
    return rk;
}

/* ------------------------------------------------------------------ tests */

static void test_roundtrip(const char *root, char *good, size_t cap) {
    lora_adapter a, b;
    if (make_adapter(&a, "pooler.dense,classifier", k_whole, 4) ||
        make_adapter(&b, "pooler.dense,classifier", k_whole, 4))
        return;
    CHECK(a.n_whole == 4 && a.n_tensor == 12, "%d whole of %d tensors", a.n_whole, a.n_tensor);
    size_t n = a.n_params;
    float *m = malloc(n * 4), *v = malloc(n * 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
    fill(a.w, n, 1), fill(m, n, 2), fill(v, n, 3);
    for (size_t i = 0; i < n; i++) v[i] = v[i] * v[i];
    ckpt_state st, got;
    make_state(&st, 3);
    struct lerr e = {{0}};
    char dir[600];
    snprintf(dir, sizeof dir, "%s/whole", root);
    int rc = ckpt_write(dir, &st, &a, m, v, 0, good, cap, &e);
    CHECK(rc == 0, "ckpt_write: %s", e.msg);
    rc = ckpt_read(good, &got, &b, m2, v2, &e);
    CHECK(rc == 0, "ckpt_read: %s", e.msg);
    CHECK(!memcmp(a.w, b.w, n * 4), "values differ after the round trip");
    CHECK(!memcmp(m, m2, n * 4), "exp_avg differs after the round trip");
    CHECK(!memcmp(v, v2, n * 4), "exp_avg_sq differs after the round trip");
    const lora_tensor *bias = lora_find(&b, "base_model.model.classifier.bias");
    CHECK(bias && bias->ndim == 1 && !memcmp(b.w + bias->off, a.w + bias->off, 3 * 4), "the 1-D bias");
    CHECK(rc == 0 && got.format_version == 2 && got.full_finetune == 0 && got.step == 3 && got.n_metrics == 3 &&
              got.m_loss[2] == 2.25 && !strcmp(got.config_text, st.config_text),
          "state: version %d full %d step %lld", got.format_version, got.full_finetune, (long long)got.step);
    if (rc == 0) ckpt_state_free(&got);
    rc = ckpt_read(good, &got, &b, NULL, NULL, &e);
    CHECK(rc == 0, "ckpt_read without m, v: %s", e.msg);
    if (rc == 0) ckpt_state_free(&got);

    lora_spec sp;
    rc = ckpt_read_meta(good, &got, &sp, &e);
    CHECK(rc == 0 && sp.n_save == 2 && !strcmp(sp.save[0], "pooler.dense") && !strcmp(sp.save[1], "classifier") &&
              sp.r == 4 && sp.alpha == 8 && sp.n_targets == 4 && !strcmp(sp.targets[0], "transformer.h.0.attn.c_attn"),
          "meta: rc %d n_save %d '%s' '%s' r %d n_targets %d: %s", rc, sp.n_save, sp.save[0], sp.save[1], sp.r,
          sp.n_targets, e.msg);
    if (rc == 0) ckpt_state_free(&got);

    /* the layout as HDF5 shows it */
    hid_t f = H5Fopen(good, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "H5Fopen");
    if (f >= 0) {
        CHECK(int_attr(f, "/", "format_version") == 2, "format_version %d", int_attr(f, "/", "format_version"));
        char *ms = str_attr(f, "/adapter", "modules_to_save"), *k1 = str_attr(f, CLS, "kind");
        char *k2 = str_attr(f, POOL, "kind"),
             *k3 = str_attr(f, "/adapter/base_model.model.transformer.h.0.attn.c_attn", "kind");
        CHECK(ms && !strcmp(ms, "pooler.dense,classifier"), "modules_to_save '%s'", ms ? ms : "(none)");
        CHECK(k1 && k2 && !strcmp(k1, "whole") && !strcmp(k2, "whole") && !k3, "kind attributes");
        CHECK(int_attr(f, "/adapter", "full_finetune") == 0, "full_finetune");
        free(ms), free(k1), free(k2), free(k3);
        static const char *trees[3] = {"/adapter", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"};
        for (int k = 0; k < 3; k++) {
            char p[300];
            hsize_t d[2] = {0, 0};
            snprintf(p, sizeof p, "%s/base_model.model.classifier/bias", trees[k]);
            CHECK(dset_shape(f, p, d) == 1 && d[0] == 3, "%s: rank 1 (3)", p);
            snprintf(p, sizeof p, "%s/base_model.model.classifier/weight", trees[k]);
            CHECK(dset_shape(f, p, d) == 2 && d[0] == 3 && d[1] == IN, "%s: (3, 16)", p);
            snprintf(p, sizeof p, "%s/base_model.model.bert.pooler.dense/bias", trees[k]);
            CHECK(dset_shape(f, p, d) == 1 && d[0] == IN, "%s: rank 1 (16)", p);
        }
        /* groups in the adapter table's order: the 4 LoRA modules, then pooler, classifier */
        char nm[200] = "";
        H5Lget_name_by_idx(f, "/adapter", H5_INDEX_CRT_ORDER, H5_ITER_INC, 4, nm, sizeof nm, H5P_DEFAULT);
        CHECK(!strcmp(nm, "base_model.model.bert.pooler.dense"), "5th group %s", nm);
        H5Lget_name_by_idx(f, "/adapter", H5_INDEX_CRT_ORDER, H5_ITER_INC, 5, nm, sizeof nm, H5P_DEFAULT);
        CHECK(!strcmp(nm, "base_model.model.classifier"), "6th group %s", nm);
        H5Fclose(f);
    }
    /* h5dump reads it, the 1-D bias with its values */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "h5dump -H '%s' 2>&1", good);
    char *out = run_capture(cmd);
    CHECK(out && strstr(out, "GROUP \"base_model.model.classifier\"") && strstr(out, "DATASET \"bias\"") &&
              strstr(out, "ATTRIBUTE \"modules_to_save\""),
          "h5dump -H:\n%s", out ? out : "(failed)");
    free(out);
    snprintf(cmd, sizeof cmd, "h5dump -d '" CLS "/bias' '%s' 2>&1", good);
    out = run_capture(cmd);
    const char *c = out ? strstr(out, "(0):") : NULL;
    CHECK(out && strstr(out, "( 3 )") && c, "h5dump -d bias:\n%s", out ? out : "(failed)");
    for (int i = 0; c && i < 3; i++) {
        char *end;
        double x = strtod(c + (i ? 0 : 4), &end);
        CHECK(end != c && fabs(x - a.w[bias->off + i]) <= 1e-6 * fmax(1, fabs(x)), "bias[%d] %g, wrote %g", i, x,
              a.w[bias->off + i]);
        c = end;
        while (*c == ',' || *c == ' ') c++;
    }
    free(out);
    lora_free(&a), lora_free(&b);
    free(m), free(v), free(m2), free(v2);
}

/* A copy of good at root/name, edited by `edit` (may be NULL). */
static void edited(char *p, size_t cap, const char *root, const char *name, const char *good, void (*edit)(hid_t f)) {
    snprintf(p, cap, "%s/%s.h5", root, name);
    CHECK(tu_copy_file(good, p) == 0, "copy to %s", p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0, "H5Fopen %s", p);
    if (f >= 0 && edit) edit(f);
    if (f >= 0) H5Fclose(f);
}

static void set_str_attr(hid_t f, const char *obj, const char *name, const char *val) {
    H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(val) + 1);
    hid_t a = H5Acreate_by_name(f, obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, val);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}
static void ed_del_opt_bias(hid_t f) {
    H5Ldelete(f, "/optimizer/exp_avg/base_model.model.classifier/bias", H5P_DEFAULT);
}
static void ed_v_bias_shape(hid_t f) {
    const char *p = "/optimizer/exp_avg_sq/base_model.model.classifier/bias";
    H5Ldelete(f, p, H5P_DEFAULT);
    hsize_t four = 4;
    float x[4] = {1, 2, 3, 4};
    hid_t sp = H5Screate_simple(1, &four, NULL);
    hid_t d = H5Dcreate2(f, p, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d), H5Sclose(sp);
}
static void ed_kind(hid_t f) { set_str_attr(f, CLS, "kind", "partial"); }
static void ed_version1(hid_t f) {
    int one = 1;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &one);
    H5Aclose(a);
}
static void ed_no_save_attr(hid_t f) { H5Adelete_by_name(f, "/adapter", "modules_to_save", H5P_DEFAULT); }
static void ed_save_cls_only(hid_t f) { set_str_attr(f, "/adapter", "modules_to_save", "classifier"); }
static void ed_no_pooler(hid_t f) {
    H5Ldelete(f, POOL, H5P_DEFAULT);
    H5Ldelete(f, "/optimizer/exp_avg/base_model.model.bert.pooler.dense", H5P_DEFAULT);
    H5Ldelete(f, "/optimizer/exp_avg_sq/base_model.model.bert.pooler.dense", H5P_DEFAULT);
}

/* ckpt_read of path into an adapter (save, ws, n) fails naming all of want[] (NULL-terminated). */
static void expect_read_error(const char *what, const char *path, const char *save, const whole_t *ws, int n,
                              const char *const *want) {
    lora_adapter b;
    if (make_adapter(&b, save, ws, n)) return;
    ckpt_state got;
    struct lerr e = {{0}};
    int rc = ckpt_read(path, &got, &b, NULL, NULL, &e);
    int ok = rc == -1 && strstr(e.msg, path);
    for (int i = 0; want[i]; i++) ok = ok && strstr(e.msg, want[i]);
    CHECK(ok, "%s: rc %d: %s", what, rc, e.msg);
    if (rc == 0) ckpt_state_free(&got);
    printf("  %s: %s\n", what, e.msg);
    lora_free(&b);
}

static void expect_meta_error(const char *what, const char *path, const char *const *want) {
    ckpt_state got;
    lora_spec sp;
    struct lerr e = {{0}};
    int rc = ckpt_read_meta(path, &got, &sp, &e);
    int ok = rc == -1 && strstr(e.msg, path);
    for (int i = 0; want[i]; i++) ok = ok && strstr(e.msg, want[i]);
    CHECK(ok, "%s (meta): rc %d: %s", what, rc, e.msg);
    if (rc == 0) ckpt_state_free(&got);
    printf("  %s: %s\n", what, e.msg);
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_mismatches(const char *root, const char *good, const char *v1) {
    const char *S = "pooler.dense,classifier";
    whole_t ws[5];
    memcpy(ws, k_whole, sizeof k_whole);
    /* shapes: 2-D, 1-D, and a 1-D tensor against a 2-D one */
    ws[2].shape[0] = 2;
    expect_read_error("whole 2-D shape", good, S, ws, 4, W(CLS "/weight", "(3, 16)", "(2, 16)"));
    ws[2].shape[0] = 3, ws[3].shape[0] = 4;
    expect_read_error("whole 1-D shape", good, S, ws, 4, W(CLS "/bias", "has shape (3)", "expects (4)"));
    ws[3].ndim = 2, ws[3].shape[0] = 1, ws[3].shape[1] = 3;
    expect_read_error("whole 1-D vs 2-D", good, S, ws, 4, W(CLS "/bias", "has shape (3)", "expects (1, 3)"));
    memcpy(ws, k_whole, sizeof k_whole);
    /* presence, both ways */
    expect_read_error("file's whole tensor not in the adapter", good, "pooler.dense", ws, 2,
                      W("whole tensor base_model.model.classifier.", "not in this adapter", CLS "/"));
    ws[4] = (whole_t){"score.weight", 2, {2, IN}};
    expect_read_error("adapter's whole tensor not in the file", good, "pooler.dense,classifier,score", ws, 5,
                      W("whole tensor base_model.model.score.weight", "missing from the checkpoint",
                        "/adapter/base_model.model.score/weight"));
    expect_read_error("v1 file, adapter with whole tensors", v1, S, ws, 4,
                      W("base_model.model.bert.pooler.dense.weight", "missing from the checkpoint"));
    expect_read_error("whole file, LoRA-only adapter", good, "", ws, 0,
                      W("base_model.model.bert.pooler.dense.", "not in this adapter"));

    /* damaged or inconsistent files */
    char p[700];
    edited(p, sizeof p, root, "w_del_opt_bias", good, ed_del_opt_bias);
    expect_meta_error("an optimizer tree without a bias", p, W("/optimizer/exp_avg/base_model.model.classifier"));
    expect_read_error("an optimizer tree without a bias", p, S, k_whole, 4,
                      W("/optimizer/exp_avg/base_model.model.classifier"));
    edited(p, sizeof p, root, "w_v_shape", good, ed_v_bias_shape);
    expect_meta_error("exp_avg_sq bias of another shape", p,
                      W("/optimizer/exp_avg_sq/base_model.model.classifier/bias", "(4)", "(3)"));
    edited(p, sizeof p, root, "w_kind", good, ed_kind);
    expect_meta_error("an unknown kind", p, W(CLS, "unknown kind 'partial'"));
    edited(p, sizeof p, root, "w_v1", good, ed_version1);
    expect_meta_error("whole tensors in a version-1 file", p, W(POOL, "version 1"));
    edited(p, sizeof p, root, "w_nosave", good, ed_no_save_attr);
    expect_meta_error("no modules_to_save attribute", p, W("modules_to_save", "/adapter", "missing"));
    edited(p, sizeof p, root, "w_savecls", good, ed_save_cls_only);
    expect_meta_error("a whole tensor outside modules_to_save", p,
                      W("base_model.model.bert.pooler.dense", "not under any of modules_to_save"));
    edited(p, sizeof p, root, "w_nopool", good, ed_no_pooler);
    expect_meta_error("a modules_to_save name without tensors", p, W("'pooler.dense' selects no whole tensor"));
    expect_read_error("a whole module missing", p, S, k_whole, 4,
                      W("base_model.model.bert.pooler.dense.weight", "missing from the checkpoint"));

    /* a module both LoRA-adapted and whole: refused before any file exists */
    lora_adapter a;
    whole_t both = {"transformer.h.0.attn.c_attn.weight", 2, {IN, 3 * IN}};
    if (!make_adapter(&a, "c_attn", &both, 1)) {
        float *z = calloc(a.n_params, 4);
        ckpt_state st;
        make_state(&st, 5);
        struct lerr e = {{0}};
        char dir[600], want[700];
        snprintf(dir, sizeof dir, "%s/both", root);
        int rc = ckpt_write(dir, &st, &a, z, z, 0, NULL, 0, &e);
        snprintf(want, sizeof want, "%s/step_00000005.h5", dir);
        CHECK(rc == -1 && strstr(e.msg, "base_model.model.transformer.h.0.attn.c_attn") &&
                  strstr(e.msg, "both LoRA-adapted and trained whole") && access(want, F_OK) != 0,
              "LoRA and whole on one module: rc %d: %s", rc, e.msg);
        printf("  LoRA and whole on one module: %s\n", e.msg);
        free(z);
        lora_free(&a);
    }
}

/* Full fine-tuning: every tensor whole, keyed by its HF name (no LoRA
 * module), as model_full_adapter lays it out. */
static void test_full(const char *root, const char *lora_file) {
    lora_adapter a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    struct lerr e = {{0}};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        lora_adapter *x = k ? &b : &a;
        x->full = 1;
        for (int i = 0; i < 4 && rc == 0; i++)
            rc = lora_add_whole(x, i, 4, k_whole[i].name, k_whole[i].ndim, k_whole[i].shape, &e);
        for (int i = 0; i < x->n_tensor; i++) snprintf(x->tensor[i].key, LORA_KEY, "%s", k_whole[i].name);
    }
    CHECK(rc == 0, "full adapter: %s", e.msg);
    if (rc) return;
    size_t n = a.n_params;
    float *m = malloc(n * 4), *v = malloc(n * 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
    fill(a.w, n, 11), fill(m, n, 12), fill(v, n, 13);
    for (size_t i = 0; i < n; i++) v[i] = v[i] * v[i]; /* a second moment */
    ckpt_state st, got;
    make_state(&st, 4);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/full", root);
    rc = ckpt_write(dir, &st, &a, m, v, 0, path, sizeof path, &e);
    CHECK(rc == 0, "write full: %s", e.msg);
    rc = ckpt_read(path, &got, &b, m2, v2, &e);
    CHECK(rc == 0 && !memcmp(a.w, b.w, n * 4) && !memcmp(m, m2, n * 4) && !memcmp(v, v2, n * 4),
          "full fine-tuning round trip: %s", e.msg);
    if (rc == 0) ckpt_state_free(&got);
    lora_spec sp;
    rc = ckpt_read_meta(path, &got, &sp, &e);
    CHECK(rc == 0 && got.full_finetune == 1 && got.format_version == 2 && sp.r == 0 && sp.n_targets == 0 &&
              sp.n_save == 0,
          "full meta: rc %d full %d r %d: %s", rc, got.full_finetune, sp.r, e.msg);
    if (rc == 0) ckpt_state_free(&got);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hsize_t d[2] = {0, 0};
    CHECK(f >= 0 && dset_shape(f, "/adapter/bert.pooler.dense/bias", d) == 1 && d[0] == IN &&
              int_attr(f, "/adapter", "full_finetune") == 1,
          "full fine-tuning layout");
    if (f >= 0) H5Fclose(f);
    expect_read_error("full fine-tuning file, LoRA adapter", path, "pooler.dense,classifier", k_whole, 4,
                      W("full fine-tuning run but the adapter is a LoRA one"));
    rc = ckpt_read(lora_file, &got, &b, NULL, NULL, &e);
    CHECK(rc == -1 && strstr(e.msg, "LoRA run but the adapter is a full fine-tuning one"),
          "LoRA file, full adapter: %s", e.msg);
    free(m), free(v), free(m2), free(v2);
    lora_free(&a), lora_free(&b);
}

/* A flipped byte in the middle of every whole-tensor dataset's chunk, in
 * each tree: ckpt_read fails (Fletcher32) naming the file. */
static void test_corruption(const char *root, const char *good) {
    static const char *trees[3] = {"/adapter", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"};
    static const char *dsets[4] = {"base_model.model.bert.pooler.dense/weight",
                                   "base_model.model.bert.pooler.dense/bias", "base_model.model.classifier/weight",
                                   "base_model.model.classifier/bias"};
    lora_adapter b;
    if (make_adapter(&b, "pooler.dense,classifier", k_whole, 4)) return;
    float *m = calloc(b.n_params, 4), *v = calloc(b.n_params, 4);
    int detected = 0, tried = 0;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) {
            char ds[300], p[700];
            snprintf(ds, sizeof ds, "%s/%s", trees[k], dsets[j]);
            haddr_t addr = HADDR_UNDEF;
            hsize_t size = 0;
            hid_t f = H5Fopen(good, H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t d = f >= 0 ? H5Dopen2(f, ds, H5P_DEFAULT) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
            unsigned mask = 0;
            hsize_t off[2];
            if (sp < 0 || H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) < 0) addr = HADDR_UNDEF;
            if (sp >= 0) H5Sclose(sp);
            if (d >= 0) H5Dclose(d);
            if (f >= 0) H5Fclose(f);
            CHECK(addr != HADDR_UNDEF && size > 4, "%s: no chunk found", ds);
            if (addr == HADDR_UNDEF) continue;
            snprintf(p, sizeof p, "%s/flip.h5", root);
            tu_copy_file(good, p);
            FILE *w = fopen(p, "r+b");
            long at = (long)addr + (long)(size - 4) / 2; /* a data byte (the last 4 are the checksum) */
            int c = w && fseek(w, at, SEEK_SET) == 0 ? fgetc(w) : EOF;
            if (c != EOF && fseek(w, at, SEEK_SET) == 0) fputc(c ^ 0x10, w);
            if (w) fclose(w);
            ckpt_state got;
            struct lerr e = {{0}};
            int rc = ckpt_read(p, &got, &b, m, v, &e);
            tried++;
            if (rc == -1 && strstr(e.msg, p) && strstr(e.msg, ds))
                detected++;
            else
                fprintf(stderr, "  flip in %s at byte %ld: rc %d: %s\n", ds, at, rc, e.msg);
            if (rc == 0) ckpt_state_free(&got);
        }
    printf("  corruption: %d of %d flipped whole-tensor bytes are read errors naming the dataset\n", detected, tried);
    CHECK(tried == 12 && detected == tried, "%d of %d detected", detected, tried);
    free(m), free(v);
    lora_free(&b);
}

/* The new paths (whole groups, mismatches) release what they take. */
static void test_no_growth(const char *root, const char *good) {
    lora_adapter a, c;
    if (make_adapter(&a, "pooler.dense,classifier", k_whole, 4) || make_adapter(&c, "pooler.dense", k_whole, 2)) return;
    float *m = calloc(a.n_params, 4), *v = calloc(a.n_params, 4);
    char bad[700];
    snprintf(bad, sizeof bad, "%s/w_savecls.h5", root);
    size_t before = 0;
    for (int it = 0; it < 120; it++) {
        if (it == 20) before = mallinfo2().uordblks;
        ckpt_state st;
        lora_spec sp;
        struct lerr e;
        if (ckpt_read(good, &st, &a, m, v, &e) == 0) ckpt_state_free(&st);
        if (ckpt_read_meta(good, &st, &sp, &e) == 0) ckpt_state_free(&st);
        ckpt_read(good, &st, &c, NULL, NULL, &e);
        ckpt_read_meta(bad, &st, &sp, &e);
    }
    size_t after = mallinfo2().uordblks;
    if (before) {
        printf("  heap in use over 100 rounds of reads: %zu -> %zu bytes\n", before, after);
        CHECK(after < before + 16384, "heap grew from %zu to %zu bytes", before, after);
    }
    CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "HDF5 objects left open");
    free(m), free(v);
    lora_free(&a), lora_free(&c);
}

int main(void) {
    char root[] = "/tmp/test_checkpoint_whole.XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char good[700] = "", v1[700] = "";
    test_roundtrip(root, good, sizeof good);
    /* a LoRA-only file of the same LoRA layout (version 1) */
    lora_adapter l;
    if (!make_adapter(&l, "", k_whole, 0)) {
        float *z = calloc(l.n_params, 4);
        ckpt_state st, got;
        make_state(&st, 2);
        char dir[600];
        snprintf(dir, sizeof dir, "%s/lora", root);
        struct lerr e = {{0}};
        CHECK(ckpt_write(dir, &st, &l, z, z, 0, v1, sizeof v1, &e) == 0, "v1 write: %s", e.msg);
        CHECK(ckpt_read(v1, &got, &l, z, z, &e) == 0 && got.format_version == 1, "v1 read: %s", e.msg);
        ckpt_state_free(&got);
        free(z);
        lora_free(&l);
    }
    if (good[0] && v1[0]) {
        test_mismatches(root, good, v1);
        test_full(root, v1);
        test_corruption(root, good);
        test_no_growth(root, good);
    }
    tu_scratch_done(root);
    return tu_end("test_checkpoint_whole");
}
