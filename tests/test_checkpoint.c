/* test_checkpoint: HDF5 checkpoints. Round trip (values, AdamW moments,
 * state, metrics bitwise), the layout as h5dump shows it, retention,
 * ckpt_find_latest skipping truncated and garbage files, version and layout
 * mismatches, a writer killed mid-write, a full disk (RLIMIT_FSIZE), missing
 * groups, and byte-level corruption (every flip an error or a bitwise-equal
 * load, never a crash or a silent wrong value). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "optim.h"
#include "testutil.h"

#define MOD0 "/adapter/base_model.model.transformer.h.0.attn.c_attn"

#include "ckpt_testlib.h"

/* ------------------------------------------------------------------ tests */

static void test_roundtrip_and_h5dump(const char *root, char *path, size_t cap) {
    lora_adapter a, b;
    if (make_adapter(&a, 16, 4, 0, 1)) return;
    size_t n = a.n_params;
    float *m = malloc(n * 4), *v = malloc(n * 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
    fill(a.w, n, 1, 0), fill(m, n, 2, 0), fill(v, n, 3, 1);
    ckpt_state st, got;
    make_state(&st, 3);
    struct lerr e;
    e.msg[0] = 0;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/rt/sub", root); /* created by the writer */
    int rc = ckpt_write(dir, &st, &a, m, v, 3, path, cap, &e);
    CHECK(rc == 0, "ckpt_write: %s", e.msg);
    char want[600];
    snprintf(want, sizeof want, "%s/step_00000003.h5", dir);
    CHECK(!strcmp(path, want), "path_out %s, want %s", path, want);
    char ls[4096];
    CHECK(list_dir(dir, "", ls, sizeof ls) == 1, "only the checkpoint in the dir, found:\n%s", ls);

    make_adapter(&b, 16, 4, 0, 1);
    rc = ckpt_read(path, &got, &b, m2, v2, &e);
    CHECK(rc == 0, "ckpt_read: %s", e.msg);
    CHECK(!memcmp(a.w, b.w, n * 4), "adapter values differ after the round trip");
    CHECK(!memcmp(m, m2, n * 4), "exp_avg differs after the round trip");
    CHECK(!memcmp(v, v2, n * 4), "exp_avg_sq differs after the round trip");
    CHECK(state_equal(&st, &got, 1), "state or metrics differ after the round trip");
    CHECK(got.n_metrics == 3, "n_metrics %lld", (long long)got.n_metrics);
    CHECK(got.format_version == 1 && !got.full_finetune, "LoRA only: version %d", got.format_version);
    ckpt_state_free(&got);

    /* a NaN or a negative second moment in a file is refused, naming the dataset (a writer bug or an
     * edit: HDF5's checksums hold for what was written) */
    for (int k = 0; k < 3; k++) {
        float *buf = k == 0 ? a.w : k == 1 ? m : v, keep = buf[5];
        buf[5] = k == 2 ? -1.0f : NAN;
        char bad[600];
        snprintf(bad, sizeof bad, "%s/nan%d", root, k);
        char bpath[700];
        rc = ckpt_write(bad, &st, &a, m, v, 3, bpath, sizeof bpath, &e);
        buf[5] = keep;
        CHECK(rc == 0, "ckpt_write (bad values %d): %s", k, e.msg);
        rc = ckpt_read(bpath, &got, &b, m2, v2, &e);
        CHECK(rc == -1 && strstr(e.msg, k == 2 ? "negative second moment" : "non-finite value (NaN)") &&
                  strstr(e.msg, k == 0 ? "/adapter/" : k == 1 ? "/exp_avg/" : "/exp_avg_sq/"),
              "a checkpoint holding %s: rc %d, %s", k == 2 ? "v < 0" : "NaN", rc, e.msg);
        if (rc == 0) ckpt_state_free(&got);
    }

    /* counters that disagree, edited into a good file in place (the metadata is checksummed, so only an
     * edit or a writer bug makes one): refused by name, never a crash or a wrong resume */
    struct {
        const char *obj, *attr;
        int64_t value;
        const char *want;
    } bad_counts[] = {{"/", "step", -1, "root attribute step = -1 is outside"},
                      {"/", "step", (int64_t)1 << 41, "root attribute step = 2199023255552 is outside"},
                      {"/optimizer", "step", 4, "/optimizer step = 4 (AdamW steps applied) is outside [0, step = 3]"},
                      {"/optimizer", "step", -1, "/optimizer step = -1"},
                      {"/schedule", "position", 2, "/schedule position = 2 disagrees with step = 3"},
                      {"/data", "cursor", 25, "/data cursor = 25 is not step (3) times"},
                      {"/data", "cursor", 2, "/data cursor = 2 is not step (3) times"},
                      {"/", "tokens_seen", -5, "a negative count (epoch 2, tokens_seen -5"}};
    for (size_t k = 0; k < sizeof bad_counts / sizeof bad_counts[0]; k++) {
        char bpath[700];
        snprintf(bpath, sizeof bpath, "%s/counts%zu.h5", root, k);
        CHECK(tu_copy_file(path, bpath) == 0, "copy %s", path);
        hid_t f = H5Fopen(bpath, H5F_ACC_RDWR, H5P_DEFAULT);
        /* H5Oopen + H5Aopen: H5Aopen_by_name(f, "/optimizer", ...) opened the root's attribute here (HDF5 1.10.8) */
        hid_t o = f < 0 ? -1 : H5Oopen(f, bad_counts[k].obj, H5P_DEFAULT);
        hid_t at = o < 0 ? -1 : H5Aopen(o, bad_counts[k].attr, H5P_DEFAULT);
        int ok = at >= 0 && H5Awrite(at, H5T_NATIVE_INT64, &bad_counts[k].value) >= 0;
        if (at >= 0) H5Aclose(at);
        if (o >= 0) H5Oclose(o);
        if (f >= 0) H5Fclose(f);
        CHECK(ok, "editing %s %s in %s", bad_counts[k].obj, bad_counts[k].attr, bpath);
        rc = ckpt_read(bpath, &got, &b, m2, v2, &e);
        CHECK(rc == -1 && strstr(e.msg, bad_counts[k].want) && strstr(e.msg, bpath),
              "%s %s = %lld: rc %d, '%s', want '%s'", bad_counts[k].obj, bad_counts[k].attr,
              (long long)bad_counts[k].value, rc, e.msg, bad_counts[k].want);
        if (rc == 0) ckpt_state_free(&got);
        lora_spec sp0;
        rc = ckpt_read_meta(bpath, &got, &sp0, &e);
        CHECK(rc == -1 && strstr(e.msg, bad_counts[k].want), "ckpt_read_meta, %s %s: rc %d, %s", bad_counts[k].obj,
              bad_counts[k].attr, rc, e.msg);
        if (rc == 0) ckpt_state_free(&got);
    }
    ckpt_state cs;
    make_state(&cs, 3);
    CHECK(ckpt_check_counters(&cs, 3, &e) == 0, "consistent counters: %s", e.msg);
    CHECK(ckpt_check_counters(&cs, 2, &e) == -1 && strstr(e.msg, "/schedule position = 2 disagrees with step = 3"),
          "a schedule position that disagrees: %s", e.msg);

    /* m and v may be left out: validated, not read */
    rc = ckpt_read(path, &got, &b, NULL, NULL, &e);
    CHECK(rc == 0, "ckpt_read without m, v: %s", e.msg);
    ckpt_state_free(&got);

    lora_spec sp;
    rc = ckpt_read_meta(path, &got, &sp, &e);
    CHECK(rc == 0, "ckpt_read_meta: %s", e.msg);
    CHECK(state_equal(&st, &got, 0) && got.n_metrics == 0, "meta state differs");
    CHECK(sp.r == 4 && sp.alpha == 8 && !sp.rslora && sp.n_targets == 4 && !sp.target_regex && sp.dropout == 0.05f,
          "spec r %d alpha %g rslora %d n_targets %d dropout %g", sp.r, sp.alpha, sp.rslora, sp.n_targets, sp.dropout);
    CHECK(!strcmp(sp.targets[0], "transformer.h.0.attn.c_attn") &&
              !strcmp(sp.targets[1], "transformer.h.0.mlp.c_proj") &&
              !strcmp(sp.targets[3], "transformer.h.1.mlp.c_proj"),
          "targets %s, %s, %s", sp.targets[0], sp.targets[1], sp.targets[3]);
    ckpt_state_free(&got);
    /* the spec read back rebuilds the layout (full module paths as targets) */
    lora_adapter rebuilt;
    lora_site sites[8];
    int ns = make_sites(sites, 16);
    rc = lora_create(&rebuilt, &sp, sites, ns, 1, &e);
    CHECK(rc == 0 && rebuilt.n_params == a.n_params && rebuilt.n_mod == a.n_mod, "layout from the spec read back: %s",
          e.msg);
    if (rc == 0) lora_free(&rebuilt);

    /* h5dump reads it like a table of contents */
    if (system("command -v h5dump >/dev/null 2>&1") != 0) {
        CHECK(0, "h5dump not found: install hdf5-tools (apt-get install hdf5-tools) to run this check");
    } else {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "h5dump -H '%s' 2>&1", path);
        FILE *p = popen(cmd, "r");
        size_t len = 0;
        char *out = p ? read_all(p, &len) : NULL;
        int st_rc = p ? pclose(p) : -1;
        CHECK(out && st_rc == 0, "h5dump -H failed (%d)", st_rc);
        if (out) {
            CHECK(strstr(out, "GROUP \"adapter\""), "h5dump -H output lacks /adapter:\n%s", out);
            CHECK(strstr(out, "GROUP \"base_model.model.transformer.h.1.mlp.c_proj\""),
                  "h5dump -H output lacks the module groups");
            CHECK(strstr(out, "GROUP \"exp_avg_sq\""), "h5dump -H output lacks exp_avg_sq");
            CHECK(strstr(out, "DATASET \"lora_A\"") && strstr(out, "H5T_IEEE_F32LE"), "h5dump -H: no float lora_A");
            CHECK(strstr(out, "ATTRIBUTE \"format_version\""), "h5dump -H: no format_version");
            const char *ev = strstr(out, "GROUP \"eval\"");
            CHECK(ev && strstr(ev, "DATASET \"accuracy\"") && strstr(ev, "DATASET \"token_accuracy\"") &&
                      strstr(ev, "DATASET \"epoch\""),
                  "h5dump -H: no /metrics/eval with its columns");
            /* no whole tensor: version 1 as it always was, none of version 2's objects */
            const char *k1 = strstr(out, "ATTRIBUTE \"kind\""); /* /schedule's, and no module's */
            CHECK(!strstr(out, "modules_to_save") && !strstr(out, "full_finetune") && k1 &&
                      !strstr(k1 + 16, "\"kind\""),
                  "h5dump -H: version-2 objects in a LoRA-only file");
        }
        free(out);
        /* -H shows no values; -A adds the attributes' values */
        snprintf(cmd, sizeof cmd, "h5dump -A '%s' 2>&1", path);
        p = popen(cmd, "r");
        out = p ? read_all(p, &len) : NULL;
        st_rc = p ? pclose(p) : -1;
        CHECK(out && st_rc == 0, "h5dump -A failed (%d)", st_rc);
        if (out) {
            CHECK(strstr(out, "\"lora-ps-checkpoint\""), "h5dump -A output lacks the format name:\n%s", out);
            CHECK(strstr(out, "\"0123456789abcdef\""), "h5dump -A output lacks the model hash");
            CHECK(strstr(out, "\"cosine\""), "h5dump -A output lacks the schedule kind");
            const char *fv = strstr(out, "ATTRIBUTE \"format_version\"");
            const char *d0 = fv ? strstr(fv, "(0): ") : NULL;
            CHECK(d0 && atoi(d0 + 5) == 1, "h5dump -A: format_version is not 1");
        }
        free(out);
        snprintf(cmd, sizeof cmd, "h5dump -d '" MOD0 "/lora_A' '%s' 2>&1", path);
        p = popen(cmd, "r");
        out = p ? read_all(p, &len) : NULL;
        st_rc = p ? pclose(p) : -1;
        CHECK(out && st_rc == 0, "h5dump -d failed (%d)", st_rc);
        const char *d = out ? strstr(out, "DATA {") : NULL;
        const char *c = d ? strstr(d, "(0,0):") : NULL;
        CHECK(out && strstr(out, "( 4, 16 )"), "h5dump -d: shape (4, 16) not shown:\n%s", out ? out : "");
        CHECK(c != NULL, "h5dump -d: no data rows:\n%s", out ? out : "");
        if (c) {
            c += 6;
            int parsed = 0;
            for (int i = 0; i < 5; i++) {
                char *end;
                double x = strtod(c, &end);
                if (end == c) break;
                double want_x = a.w[i];
                CHECK(fabs(x - want_x) <= 1e-5 * fmax(1, fabs(want_x)), "h5dump value %d: %g, wrote %g", i, x, want_x);
                parsed++;
                c = end;
                while (*c == ',' || *c == ' ') c++;
            }
            CHECK(parsed == 5, "parsed %d values from h5dump -d", parsed);
        }
        free(out);
    }

    /* rsLoRA shows in the scaling */
    lora_adapter rs;
    if (!make_adapter(&rs, 16, 4, 1, 0)) {
        char d2[512];
        snprintf(d2, sizeof d2, "%s/rslora", root);
        float *z = calloc(rs.n_params, 4);
        rc = ckpt_write(d2, &st, &rs, z, z, 0, want, sizeof want, &e);
        CHECK(rc == 0, "ckpt_write rslora: %s", e.msg);
        rc = ckpt_read_meta(want, &got, &sp, &e);
        CHECK(rc == 0 && sp.rslora == 1 && sp.r == 4 && sp.n_targets == 2, "rslora meta: rc %d rslora %d: %s", rc,
              sp.rslora, e.msg);
        ckpt_state_free(&got);
        free(z);
        lora_free(&rs);
    }
    lora_free(&a), lora_free(&b);
    free(m), free(v), free(m2), free(v2);
}

/* More modules than a lora_spec lists (GPT-2 small with every linear layer
 * has 48): ckpt_read_meta gives the targets as configured. */
static void test_many_modules(const char *root) {
    lora_site sites[48];
    int n = 0;
    for (int l = 0; l < 12; l++) {
        static const char *names[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
        for (int k = 0; k < 4; k++, n++) {
            snprintf(sites[n].name, LORA_NAME, "transformer.h.%d.%s", l, names[k]);
            sites[n].in = 8, sites[n].out = 8;
        }
    }
    static const char *targets[2] = {"all-linear",
                                     "transformer\\.h\\.[0-9]{1,2}\\.(attn\\.c_attn|mlp\\.c_fc|mlp\\.c_proj)"};
    for (int k = 0; k < 2; k++) {
        lora_spec spec;
        memset(&spec, 0, sizeof spec);
        spec.r = 2, spec.alpha = 16, spec.rslora = 1, spec.n_targets = 1, spec.target_regex = k;
        snprintf(spec.targets[0], LORA_NAME, "%s", targets[k]);
        lora_adapter a;
        struct lerr e;
        if (lora_create(&a, &spec, sites, n, 1, &e)) {
            CHECK(0, "lora_create %s: %s", targets[k], e.msg);
            continue;
        }
        CHECK(a.n_mod == (k ? 36 : 48), "%d modules", a.n_mod);
        char dir[600], path[700];
        snprintf(dir, sizeof dir, "%s/many%d", root, k);
        float *z = calloc(a.n_params, 4);
        ckpt_state st, got;
        make_state(&st, 1);
        int rc = ckpt_write(dir, &st, &a, z, z, 0, path, sizeof path, &e);
        CHECK(rc == 0, "write: %s", e.msg);
        lora_spec sp;
        rc = ckpt_read_meta(path, &got, &sp, &e);
        CHECK(rc == 0 && sp.n_targets == 1 && sp.target_regex == k && !strcmp(sp.targets[0], targets[k]) && sp.r == 2 &&
                  sp.alpha == 16 && sp.rslora == 1,
              "meta of %d modules: rc %d n_targets %d regex %d '%s': %s", a.n_mod, rc, sp.n_targets, sp.target_regex,
              sp.targets[0], e.msg);
        if (rc == 0) ckpt_state_free(&got);
        /* the spec read back rebuilds the same layout */
        lora_adapter b;
        if (rc == 0 && lora_create(&b, &sp, sites, n, 1, &e) == 0) {
            rc = ckpt_read(path, &got, &b, z, z, &e);
            CHECK(rc == 0 && b.n_params == a.n_params, "read with the spec read back: %s", e.msg);
            if (rc == 0) ckpt_state_free(&got);
            lora_free(&b);
        }
        free(z);
        lora_free(&a);
    }
}

static void test_mismatches(const char *root, const char *good) {
    struct lerr e;
    ckpt_state got;
    lora_adapter b;
    /* another r: the first dataset's shapes named */
    if (!make_adapter(&b, 16, 8, 0, 1)) {
        e.msg[0] = 0;
        int rc = ckpt_read(good, &got, &b, NULL, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, MOD0 "/lora_A") && strstr(e.msg, "(4, 16)") && strstr(e.msg, "(8, 16)"),
              "r mismatch: rc %d: %s", rc, e.msg);
        CHECK(got.config_text == NULL && got.m_step == NULL, "state not cleared after an error");
        printf("  layout mismatch: %s\n", e.msg);
        lora_free(&b);
    }
    /* other target modules */
    if (!make_adapter(&b, 16, 4, 0, 0)) {
        int rc = ckpt_read(good, &got, &b, NULL, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, "base_model.model.transformer.h.0.mlp.c_proj") &&
                  strstr(e.msg, "not in this adapter"),
              "module mismatch: rc %d: %s", rc, e.msg);
        lora_free(&b);
    }
    /* format_version 7 */
    char p[600];
    snprintf(p, sizeof p, "%s/v7.h5", root);
    CHECK(tu_copy_file(good, p) == 0, "copy");
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t at = f >= 0 ? H5Aopen(f, "format_version", H5P_DEFAULT) : -1;
    int seven = 7;
    CHECK(at >= 0 && H5Awrite(at, H5T_NATIVE_INT, &seven) >= 0, "cannot set format_version");
    if (at >= 0) H5Aclose(at);
    if (f >= 0) H5Fclose(f);
    if (!make_adapter(&b, 16, 4, 0, 1)) {
        int rc = ckpt_read(p, &got, &b, NULL, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, p) && strstr(e.msg, "version 7") && strstr(e.msg, "reads versions 1 and 2"),
              "version 7: rc %d: %s", rc, e.msg);
        printf("  version mismatch: %s\n", e.msg);
        rc = ckpt_read_meta(p, &got, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, "version 7") && strstr(e.msg, "reads versions 1 and 2"), "meta, version 7: %s",
              e.msg);
        lora_free(&b);
    }
    /* another format name */
    snprintf(p, sizeof p, "%s/other.h5", root);
    tu_copy_file(good, p);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f >= 0) {
        H5Adelete(f, "format");
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 13);
        hid_t sp = H5Screate(H5S_SCALAR);
        at = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(at, t, "other-format");
        H5Aclose(at), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
    }
    int rc = ckpt_read_meta(p, &got, NULL, &e);
    CHECK(rc == -1 && strstr(e.msg, "not a lora-ps checkpoint (format attribute 'other-format')"), "format: %s", e.msg);

    /* missing pieces: each deletion is an error naming what is missing */
    static const char *del[][2] = {
        {"/optimizer/exp_avg_sq", "exp_avg_sq"},
        {MOD0 "/lora_B", MOD0 "/lora_B"},
        {"/optimizer/exp_avg/base_model.model.transformer.h.1.mlp.c_proj/lora_A",
         "exp_avg/base_model.model.transformer.h.1.mlp.c_proj"},
        {"/metrics/loss", "/metrics/loss"},
        {"/rng", "/rng"},
        {"/config", "/config"},
    };
    for (size_t i = 0; i < sizeof del / sizeof *del; i++) {
        snprintf(p, sizeof p, "%s/del%zu.h5", root, i);
        tu_copy_file(good, p);
        f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        CHECK(f >= 0 && H5Ldelete(f, del[i][0], H5P_DEFAULT) >= 0, "cannot delete %s", del[i][0]);
        if (f >= 0) H5Fclose(f);
        rc = ckpt_read_meta(p, &got, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, del[i][1]) && strstr(e.msg, p), "meta without %s: rc %d: %s", del[i][0], rc,
              e.msg);
        if (!make_adapter(&b, 16, 4, 0, 1)) {
            rc = ckpt_read(p, &got, &b, NULL, NULL, &e);
            CHECK(rc == -1 && strstr(e.msg, del[i][1]), "read without %s: rc %d: %s", del[i][0], rc, e.msg);
            lora_free(&b);
        }
    }
    /* metrics of unequal lengths */
    snprintf(p, sizeof p, "%s/metrics.h5", root);
    tu_copy_file(good, p);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f >= 0) {
        H5Ldelete(f, "/metrics/lr", H5P_DEFAULT);
        hsize_t two = 2;
        double x[2] = {1, 2};
        hid_t sp = H5Screate_simple(1, &two, NULL);
        hid_t d = H5Dcreate2(f, "/metrics/lr", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
        H5Dclose(d), H5Sclose(sp), H5Fclose(f);
    }
    rc = ckpt_read_meta(p, &got, NULL, &e);
    CHECK(rc == -1 && strstr(e.msg, "lr has 2 rows but step has 3"), "metrics lengths: %s", e.msg);

    /* evaluations: a file from before they were stored (no /metrics/eval) reads as none; a row past the
     * checkpoint's step is refused naming it */
    snprintf(p, sizeof p, "%s/noeval.h5", root);
    tu_copy_file(good, p);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Ldelete(f, "/metrics/eval", H5P_DEFAULT) >= 0, "cannot delete /metrics/eval");
    if (f >= 0) H5Fclose(f);
    if (!make_adapter(&b, 16, 4, 0, 1)) {
        rc = ckpt_read(p, &got, &b, NULL, NULL, &e);
        CHECK(rc == 0 && got.n_evals == 0 && got.ev_step == NULL && got.n_metrics == 3, "no /metrics/eval: rc %d: %s",
              rc, e.msg);
        if (rc == 0) ckpt_state_free(&got);
        lora_free(&b);
    }
    snprintf(p, sizeof p, "%s/evalstep.h5", root);
    tu_copy_file(good, p);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f >= 0) {
        int64_t late[2] = {1, 99};
        hid_t d = H5Dopen2(f, "/metrics/eval/step", H5P_DEFAULT);
        CHECK(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, late) >= 0, "edit eval step");
        if (d >= 0) H5Dclose(d);
        H5Fclose(f);
    }
    if (!make_adapter(&b, 16, 4, 0, 1)) {
        rc = ckpt_read(p, &got, &b, NULL, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, "/metrics/eval/step[1] = 99 is outside [1, 3]"), "eval step 99: %s", e.msg);
        if (rc == 0) ckpt_state_free(&got);
        lora_free(&b);
    }

    /* missing, garbage, zero-length, a directory */
    const char *kinds[] = {"missing", "garbage", "empty", "dir"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/bad_%s.h5", root, kinds[k]);
        if (k == 1) {
            FILE *g = fopen(p, "wb");
            for (int i = 0; i < 5000; i++) fputc((i * 7919) & 0xff, g);
            fclose(g);
        } else if (k == 2) {
            fclose(fopen(p, "wb"));
        } else if (k == 3) {
            mkdir(p, 0777);
        }
        if (make_adapter(&b, 16, 4, 0, 1)) continue;
        e.msg[0] = 0;
        rc = ckpt_read(p, &got, &b, NULL, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, p), "%s file: rc %d: %s", kinds[k], rc, e.msg);
        printf("  %s: %s\n", kinds[k], e.msg);
        rc = ckpt_read_meta(p, &got, NULL, &e);
        CHECK(rc == -1 && strstr(e.msg, p), "%s file (meta): rc %d: %s", kinds[k], rc, e.msg);
        lora_free(&b);
    }
}

/* Every prefix and many single-byte corruptions of a valid file: each read
 * is an error with a message, or loads values bitwise equal to the
 * original (a flipped byte that no reader looks at). */
static void corruption_trials(const char *root, const char *good, int res[4]) {
    lora_adapter ref, b;
    if (make_adapter(&ref, 16, 4, 0, 1)) return;
    make_adapter(&b, 16, 4, 0, 1);
    size_t n = ref.n_params;
    float *m = malloc(n * 4), *v = malloc(n * 4), *m2 = malloc(n * 4), *v2 = malloc(n * 4);
    struct lerr e;
    ckpt_state st, got;
    CHECK(ckpt_read(good, &st, &ref, m, v, &e) == 0, "reference read: %s", e.msg);
    FILE *g = fopen(good, "rb");
    size_t len = 0;
    char *orig = g ? read_all(g, &len) : NULL;
    if (g) fclose(g);
    char p[600];
    snprintf(p, sizeof p, "%s/corrupt.h5", root);
    int errors = 0, equal = 0, wrong = 0, silent = 0;
    uint64_t s = 12345;
    int trials = 400;
    for (int t = 0; orig && t < trials; t++) {
        size_t cut = len;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(s >> 33) % len;
        unsigned char flip = (unsigned char)(1u << ((s >> 20) & 7));
        if (t < 100) cut = (size_t)t * len / 100; /* truncations */
        orig[at] ^= (char)(t < 100 ? 0 : flip);
        FILE *w = fopen(p, "wb");
        fwrite(orig, 1, cut, w);
        fclose(w);
        orig[at] ^= (char)(t < 100 ? 0 : flip);
        e.msg[0] = 0;
        int rc = ckpt_read(p, &got, &b, m2, v2, &e);
        if (rc == 0) {
            if (!memcmp(b.w, ref.w, n * 4) && !memcmp(m2, m, n * 4) && !memcmp(v2, v, n * 4) &&
                state_equal(&st, &got, 1))
                equal++;
            else {
                wrong++;
                fprintf(stderr, "  corruption at byte %zu (cut %zu) loaded different values\n", at, cut);
            }
            ckpt_state_free(&got);
        } else {
            errors++;
            if (!e.msg[0] || !strstr(e.msg, p)) silent++;
        }
        rc = ckpt_read_meta(p, &got, NULL, &e);
        if (rc == 0) ckpt_state_free(&got);
    }
    res[0] = errors, res[1] = equal, res[2] = wrong, res[3] = silent;
    ckpt_state_free(&st);
    free(orig), free(m), free(v), free(m2), free(v2);
    lora_free(&ref), lora_free(&b);
}

/* The trials run in a child: a crash inside HDF5 on a damaged file becomes a
 * failed check, and HDF5 1.10.8's own leak on a damaged object header (the
 * H5O_t that H5O_protect loads is not freed when its checksum fails: 424
 * bytes a time, and "HDF5: infinite loop closing library" at exit) stays out
 * of this test's leak report: the child sends its counts through a pipe and
 * ends by exec'ing /bin/true, so no exit-time leak check (valgrind, LSan)
 * runs in it. Our own leaks on these paths are checked by test_no_growth. */
static void test_corruption(const char *root, const char *good) {
    int fds[2];
    if (pipe(fds)) {
        CHECK(0, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        int res[4] = {0, 0, 0, 0};
        corruption_trials(root, good, res);
        if (write(fds[1], res, sizeof res) != (ssize_t)sizeof res) _exit(1);
        close(fds[1]);
        fflush(stdout), fflush(stderr);
        execl("/bin/true", "true", (char *)NULL);
        _exit(0);
    }
    close(fds[1]);
    int res[4] = {-1, -1, -1, -1}, wst = 0;
    ssize_t got = read(fds[0], res, sizeof res);
    close(fds[0]);
    waitpid(pid, &wst, 0);
    CHECK(got == (ssize_t)sizeof res, "corruption trials died (status %d, signal %d) before reporting", wst,
          WIFSIGNALED(wst) ? WTERMSIG(wst) : 0);
    if (got != (ssize_t)sizeof res) return;
    printf("  corruption: %d errors, %d loads bitwise equal, %d wrong loads\n", res[0], res[1], res[2]);
    CHECK(res[2] == 0, "%d corrupted files loaded different values", res[2]);
    CHECK(res[3] == 0, "%d errors without a message naming the path", res[3]);
    CHECK(res[0] > 0, "no corruption was detected");
}

static void test_dir(const char *root) {
    char dir[512], path[600], ls[4096], warn[2048];
    snprintf(dir, sizeof dir, "%s/run", root);
    struct lerr e;
    e.msg[0] = 0;
    /* no directory yet: a fresh start */
    int rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 0 && warn[0] == 0, "find_latest on a missing dir: rc %d: %s", rc, e.msg);

    lora_adapter a;
    if (make_adapter(&a, 16, 4, 0, 1)) return;
    size_t n = a.n_params;
    float *m = malloc(n * 4), *v = malloc(n * 4);
    fill(m, n, 5, 0), fill(v, n, 6, 1);
    ckpt_state st;
    for (int s = 1; s <= 5; s++) {
        fill(a.w, n, 100 + (uint64_t)s, 0);
        make_state(&st, s);
        rc = ckpt_write(dir, &st, &a, m, v, 2, NULL, 0, &e);
        CHECK(rc == 0, "write step %d: %s", s, e.msg);
    }
    /* a file that is not a checkpoint name stays */
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    fclose(fopen(path, "w"));
    list_dir(dir, "step_", ls, sizeof ls);
    CHECK(!strcmp(ls, "step_00000004.h5\nstep_00000005.h5\n"), "retention keep=2 left:\n%s", ls);

    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 1 && strstr(path, "/step_00000005.h5") && !warn[0], "find_latest: rc %d %s warn '%s'", rc, path, warn);

    /* a writer killed between the adapter and the optimizer */
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("LORA_TEST_CKPT_KILL", "half", 1);
        make_state(&st, 6);
        ckpt_write(dir, &st, &a, m, v, 2, NULL, 0, &e);
        _exit(0); /* not reached */
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 86, "killed writer: status %d", wst);
    char tmpname[128];
    snprintf(tmpname, sizeof tmpname, ".step_00000006.h5.tmp.%ld", (long)pid);
    list_dir(dir, "", ls, sizeof ls);
    CHECK(strstr(ls, tmpname) && !strstr(ls, "step_00000006.h5\n"), "after the kill:\n%s", ls);
    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 1 && strstr(path, "/step_00000005.h5") && !warn[0], "after the kill: rc %d %s warn '%s'", rc, path,
          warn);

    /* a full disk (file size limit) during the write of a bigger adapter */
    fflush(stdout), fflush(stderr);
    pid = fork();
    if (pid == 0) {
        lora_adapter big;
        if (make_adapter(&big, 256, 8, 0, 1)) _exit(2);
        float *bm = calloc(big.n_params, 4), *bv = calloc(big.n_params, 4);
        fill(big.w, big.n_params, 9, 0);
        struct rlimit rl = {20 * 1024, 20 * 1024};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(3);
        make_state(&st, 10);
        e.msg[0] = 0;
        int r2 = ckpt_write(dir, &st, &big, bm, bv, 2, NULL, 0, &e);
        printf("  full disk: rc %d: %s\n", r2, e.msg);
        fflush(stdout);
        int ok = r2 == -1 && strstr(e.msg, dir) && strstr(e.msg, "File too large");
        free(bm), free(bv), free(m), free(v);
        lora_free(&big), lora_free(&a);
        _exit(ok ? 0 : 1);
    }
    waitpid(pid, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "full-disk writer: status %d (want -1 with a message)", wst);
    list_dir(dir, "", ls, sizeof ls);
    CHECK(!strstr(ls, "tmp") && !strstr(ls, "step_00000010"),
          "after the failed write (the killed writer's temporary is gone too):\n%s", ls);
    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 1 && strstr(path, "/step_00000005.h5"), "after the full disk: rc %d %s", rc, path);
    {
        lora_adapter b;
        ckpt_state got;
        make_adapter(&b, 16, 4, 0, 1);
        float *m2 = malloc(n * 4), *v2 = malloc(n * 4);
        rc = ckpt_read(path, &got, &b, m2, v2, &e);
        CHECK(rc == 0 && !memcmp(b.w, a.w, n * 4) && !memcmp(m2, m, n * 4), "step 5 after the full disk: %s", e.msg);
        if (rc == 0) ckpt_state_free(&got);
        free(m2), free(v2);
        lora_free(&b);
    }

    /* truncated newest: skipped with a warning naming it */
    char p5[600];
    snprintf(p5, sizeof p5, "%s/step_00000005.h5", dir);
    CHECK(truncate(p5, file_size(p5) / 2) == 0, "truncate: %s", strerror(errno));
    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 1 && strstr(path, "/step_00000004.h5"), "after truncation: rc %d %s", rc, path);
    CHECK(strstr(warn, "warning: skipping ") && strstr(warn, p5), "warning: '%s'", warn);
    printf("  %s", warn);

    /* garbage with a checkpoint name */
    char p9[600];
    snprintf(p9, sizeof p9, "%s/step_00000009.h5", dir);
    FILE *g = fopen(p9, "w");
    fputs("this is not HDF5\n", g);
    fclose(g);
    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 1 && strstr(path, "/step_00000004.h5"), "with garbage: rc %d %s", rc, path);
    CHECK(strstr(warn, p9) && strstr(warn, p5) && strstr(warn, p9) < strstr(warn, p5), "warnings: '%s'", warn);

    /* nothing valid: 0 with the warnings */
    snprintf(path, sizeof path, "%s/step_00000004.h5", dir);
    unlink(path);
    rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
    CHECK(rc == 0 && strstr(warn, p9), "none valid: rc %d warn '%s'", rc, warn);
    /* the dir is a file: an error */
    rc = ckpt_find_latest(p9, path, sizeof path, NULL, 0, &e);
    CHECK(rc == -1 && strstr(e.msg, p9), "find_latest on a file: rc %d: %s", rc, e.msg);

    /* the file just written survives retention even with higher steps present */
    make_state(&st, 2);
    rc = ckpt_write(dir, &st, &a, m, v, 1, path, sizeof path, &e);
    CHECK(rc == 0 && file_size(path) > 0 && file_size(p9) > 0, "write of an older step: %s", e.msg);
    free(m), free(v);
    lora_free(&a);
}

/* Error and success paths release what they open: the heap in use stays
 * flat over many reads of good and bad files and writes (HDF5 would free
 * leaked ids only at exit, hiding them from leak checkers), and no HDF5 file
 * object stays open. Skipped where mallinfo2 reports nothing (ASan). */
static void test_no_growth(const char *root, const char *good) {
    lora_adapter a, b8;
    if (make_adapter(&a, 16, 4, 0, 1) || make_adapter(&b8, 16, 8, 0, 1)) return;
    float *m = calloc(a.n_params, 4), *v = calloc(a.n_params, 4);
    char dir[600], bad[4][700];
    snprintf(dir, sizeof dir, "%s/growth", root);
    snprintf(bad[0], sizeof bad[0], "%s/bad_garbage.h5", root);
    snprintf(bad[1], sizeof bad[1], "%s/v7.h5", root);
    snprintf(bad[2], sizeof bad[2], "%s/del0.h5", root);
    snprintf(bad[3], sizeof bad[3], "%s/del3.h5", root);
    size_t before = 0;
    for (int it = 0; it < 120; it++) {
        if (it == 20) before = mallinfo2().uordblks;
        struct lerr e;
        ckpt_state st;
        lora_spec sp;
        if (ckpt_read(good, &st, &a, m, v, &e) == 0) ckpt_state_free(&st);
        if (ckpt_read_meta(good, &st, &sp, &e) == 0) ckpt_state_free(&st);
        ckpt_read(good, &st, &b8, NULL, NULL, &e);
        for (int k = 0; k < 4; k++) {
            ckpt_read(bad[k], &st, &a, m, v, &e);
            ckpt_read_meta(bad[k], &st, &sp, &e);
        }
        ckpt_state_free(&st);
        if (it % 4 == 0) {
            ckpt_state ws;
            make_state(&ws, it);
            CHECK(ckpt_write(dir, &ws, &a, m, v, 1, NULL, 0, &e) == 0, "write: %s", e.msg);
        }
    }
    size_t after = mallinfo2().uordblks;
    if (before) {
        printf("  heap in use over 100 rounds of reads and writes: %zu -> %zu bytes\n", before, after);
        CHECK(after < before + 16384, "heap grew from %zu to %zu bytes", before, after);
    }
    CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "%ld HDF5 objects left open",
          (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
    free(m), free(v);
    lora_free(&a), lora_free(&b8);
}

int main(void) {
    char root[] = "/tmp/test_checkpoint.XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char good[700];
    test_roundtrip_and_h5dump(root, good, sizeof good);
    test_mismatches(root, good);
    test_many_modules(root);
    test_corruption(root, good);
    test_no_growth(root, good);
    test_dir(root);
    tu_scratch_done(root);
    return tu_end("test_checkpoint");
}
