/*
 * fuzz_ckpt: the HDF5 checkpoint reader (coordinator/ckpt_read.c), through a
 * temporary file: ckpt_read_meta (what resume checks), then ckpt_read into a
 * fixed adapter (2 layers of c_attn and c_proj, r 2; the layout the seed was
 * written with). Accepted: the counters agree, every value read is finite,
 * the metrics arrays hold n_metrics rows. Slow (HDF5 opens the file each
 * time: tens of runs a second). Seeds: FUZZ_WRITE_SEEDS=dir writes one
 * checkpoint of that adapter (scripts/run_fuzz.sh does).
 */
#include <math.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "optim.h"

static lora_adapter g_a;
static float *g_m, *g_v;

static void make_adapter(void) {
    lora_site s[8];
    int n = 0;
    memset(s, 0, sizeof s);
    for (int l = 0; l < 2; l++) {
        snprintf(s[n].name, LORA_NAME, "transformer.h.%d.attn.c_attn", l);
        s[n].in = 8, s[n].out = 24, s[n].w = s[n].b = -1, n++;
        snprintf(s[n].name, LORA_NAME, "transformer.h.%d.mlp.c_proj", l);
        s[n].in = 32, s[n].out = 8, s[n].w = s[n].b = -1, n++;
    }
    lora_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.r = 2, spec.alpha = 4, spec.dropout = 0.05f;
    snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_attn");
    snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_proj");
    struct lerr e;
    if (lora_create(&g_a, &spec, s, n, 1, &e) != 0) {
        fprintf(stderr, "fuzz_ckpt: lora_create: %s\n", e.msg);
        abort();
    }
    g_m = calloc(g_a.n_params, sizeof *g_m);
    g_v = calloc(g_a.n_params, sizeof *g_v);
    if (!g_m || !g_v) abort();
}

static void write_seed(const char *dir) {
    for (size_t i = 0; i < g_a.n_params; i++)
        g_a.w[i] = (float)((int)(i % 17) - 8) * 0.01f, g_m[i] = 1e-3f * (float)(i % 5), g_v[i] = 1e-6f;
    int64_t ms[3] = {0, 1, 2};
    double ml[3] = {3, 2.5, 2.25}, mr[3] = {1e-3, 1e-3, 1e-3}, mt[3] = {100, 110, 120};
    ckpt_state st;
    memset(&st, 0, sizeof st);
    st.step = 3, st.epoch = 0, st.tokens_seen = 3 * 8 * 16, st.ranks = 2, st.data_cursor = 24, st.opt_steps = 3;
    st.lr = 1e-3f, st.beta1 = 0.9f, st.beta2 = 0.999f, st.eps = 1e-8f, st.weight_decay = 0.01f, st.min_lr_ratio = 0;
    st.schedule_kind = SCHED_COSINE, st.warmup_steps = 1, st.total_steps = 10;
    st.init_seed = 1, st.data_seed = 2, st.dropout_seed = 3, st.seq_len = 16, st.sampling = 0, st.train_tokens = 4096;
    st.config_text = "[lora]\nr = 2\nalpha = 4\ntargets = c_attn, c_proj\n";
    st.model_path = "models/tiny/model.safetensors";
    st.model_size = 1234, st.model_hash = 0x1234;
    st.n_metrics = 3, st.m_step = ms, st.m_loss = ml, st.m_lr = mr, st.m_tokens_per_s = mt;
    struct lerr e;
    char path[512];
    if (ckpt_write(dir, &st, &g_a, g_m, g_v, 0, path, sizeof path, &e) != 0) {
        fprintf(stderr, "fuzz_ckpt: ckpt_write: %s\n", e.msg);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    make_adapter();
    fuzz_seeds_if_asked(write_seed);
    return 0;
}

static void check_state(const ckpt_state *st) {
    if (st->step < 0 || st->opt_steps < 0 || st->opt_steps > st->step || st->n_metrics < 0) abort();
    if (!st->config_text || !st->model_path) abort();
    (void)strlen(st->config_text);
    (void)strlen(st->model_path);
    double s = 0;
    for (int64_t i = 0; i < st->n_metrics; i++)
        s += (double)st->m_step[i] + st->m_loss[i] + st->m_lr[i] + st->m_tokens_per_s[i];
    (void)s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    const char *path = fuzz_file("step_00000003.h5", data, size);
    struct lerr e;
    e.msg[0] = 0;
    ckpt_state st;
    lora_spec spec;
    int rc = ckpt_read_meta(path, &st, &spec, &e);
    fuzz_need_msg(rc != 0, &e, "ckpt_read_meta");
    if (rc == 0) {
        check_state(&st);
        if (spec.n_targets < 0 || spec.n_targets > LORA_MAX_TARGETS || spec.n_save < 0 || spec.n_save > LORA_MAX_SAVE)
            abort();
        ckpt_state_free(&st);
    }
    e.msg[0] = 0;
    rc = ckpt_read(path, &st, &g_a, g_m, g_v, &e);
    fuzz_need_msg(rc != 0, &e, "ckpt_read");
    if (rc == 0) {
        check_state(&st);
        for (size_t i = 0; i < g_a.n_params; i++)
            if (!isfinite(g_a.w[i]) || !isfinite(g_m[i]) || !isfinite(g_v[i])) abort();
        ckpt_state_free(&st);
    }
    return 0;
}
