/*
 * ckpt_: reading and validating checkpoints (see include/checkpoint.h and
 * docs/checkpoint-format.md).
 *
 * Called by the resume path, the tools (export, merge, logits) and fuzzers.
 * No MPI. A file is checked in full before anything is trusted: the format
 * name and version, every attribute's presence and class, the adapter trees'
 * structure (all three alike), the metrics' lengths, and, for ckpt_read, the
 * layout against the caller's adapter. A truncated or corrupted file is an
 * error, never a silent partial load.
 *
 * Readers never trust a size from the file: every dataset's rank and shape is
 * checked before H5Dread, and lengths that drive an allocation are bounded by
 * the file's size.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_h5.h"
#include "util.h"

/* ------------------------------------------------------------ adapter trees */

/* A whole tensor found in the file. */
typedef struct {
    char key[LORA_KEY]; /* <group>.<dataset>: the adapter's key */
    int split;          /* key[split] is the '.' between group and dataset */
    int ndim;           /* 1 or 2 */
    hsize_t dims[2];
} ckpt_whole;

/* What the header walk learns about the adapter trees. */
typedef struct {
    int version; /* the file's format_version */
    int n_mod;
    char (*mod)[LORA_KEY]; /* LoRA module group names in file order */
    int r;
    float alpha, scaling, dropout;
    char *target_modules; /* /adapter attrs (extension; NULL when absent) */
    int target_regex;
    int n_whole, cap_whole;
    ckpt_whole *whole; /* whole tensors in file order */
    char *save;        /* version 2: /adapter modules_to_save (comma-separated) */
    int full;          /* version 2: /adapter full_finetune */
} ckpt_hdr;

static void hdr_free(ckpt_hdr *h) {
    free(h->mod);
    free(h->target_modules);
    free(h->whole);
    free(h->save);
    memset(h, 0, sizeof *h);
}

/* "(4, 16)" or "(3)" */
static void shape_str(char *out, size_t cap, int ndim, const hsize_t *dims) {
    if (ndim == 1)
        snprintf(out, cap, "(%llu)", (unsigned long long)dims[0]);
    else
        snprintf(out, cap, "(%llu, %llu)", (unsigned long long)dims[0], (unsigned long long)dims[1]);
}

/* Checks dataset <tree>/<mod>/<name> is a rank-2 float; dims to out. */
static int r_shape2(ckpt_io *io, hid_t mg, const char *tree, const char *mod, const char *name, hsize_t *dims) {
    char full[OBJ_CAP];
    snprintf(full, sizeof full, "%s/%s/%s", tree, mod, name);
    hid_t d = ckpt_r_dset(io, mg, name, full, H5T_FLOAT, 2, dims);
    if (d < 0) return -1;
    H5Dclose(d);
    return 0;
}

/* Checks dataset `name` of loc (named `full`) is a float tensor of rank 1 or
 * 2 with every size >= 1; its rank and dims to *ndim and dims. */
static int r_tensor_shape(ckpt_io *io, hid_t loc, const char *name, const char *full, int *ndim, hsize_t *dims) {
    if (io->err) return -1;
    int x = ckpt_r_exists(io, loc, name, full);
    if (x < 0) return -1;
    if (!x) return ckpt_io_err(io, "dataset %s is missing", full);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return ckpt_h5_fail(io, "H5Dopen2", full);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rk = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (c != H5T_FLOAT)
        ckpt_io_err(io, "dataset %s has type class %d, expected float", full, (int)c);
    else if ((rk != 1 && rk != 2) || H5Sget_simple_extent_dims(sp, dims, NULL) != rk)
        ckpt_io_err(io, "dataset %s has rank %d, expected 1 or 2", full, rk);
    else if (dims[0] == 0 || (rk == 2 && dims[1] == 0))
        ckpt_io_err(io, "dataset %s is empty", full);
    *ndim = rk;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return io->err ? -1 : 0;
}

/* Name number i of group g (by index idx) into out[cap]; -1 when it does not
 * fit (what = the group, for messages). */
static int r_link_name(ckpt_io *io, hid_t g, H5_index_t idx, hsize_t i, char *out, size_t cap, const char *what) {
    ssize_t len = H5Lget_name_by_idx(g, ".", idx, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (len < 0) return ckpt_h5_fail(io, "H5Lget_name_by_idx", what);
    if (len == 0 || (size_t)len >= cap)
        return ckpt_io_err(io, "%s: a member name of %zd bytes (at most %zu)", what, len, cap - 1);
    if (H5Lget_name_by_idx(g, ".", idx, H5_ITER_INC, i, out, cap, H5P_DEFAULT) != len)
        return ckpt_h5_fail(io, "H5Lget_name_by_idx", what);
    return 0;
}

/* LoRA module group `name` (mg: /adapter's): attrs r, alpha, scaling (all
 * modules alike), lora_A (r, in), lora_B (out, r), and the same two shapes in
 * both optimizer trees. */
static void r_lora_group(ckpt_io *io, const hid_t trees[3], hid_t mg, const char *name, ckpt_hdr *h) {
    char full[OBJ_CAP];
    snprintf(full, sizeof full, "/adapter/%s", name);
    if (strlen(name) + strlen(SUFFIX_A) >= LORA_KEY) {
        ckpt_io_err(io, "/adapter: module name of %zu bytes (at most %zu)", strlen(name),
                    LORA_KEY - 1 - strlen(SUFFIX_A));
        return;
    }
    int r = ckpt_r_int(io, mg, full, "r");
    float alpha = ckpt_r_f32(io, mg, full, "alpha"), scaling = ckpt_r_f32(io, mg, full, "scaling");
    if (!io->err && (r <= 0 || !(alpha > 0) || !isfinite(alpha) || !isfinite(scaling)))
        ckpt_io_err(io, "%s: bad r %d, alpha %g or scaling %g", full, r, alpha, scaling);
    if (!io->err && h->n_mod == 0) h->r = r, h->alpha = alpha, h->scaling = scaling;
    if (!io->err && (r != h->r || alpha != h->alpha || scaling != h->scaling))
        ckpt_io_err(io,
                    "%s has r %d, alpha %g, scaling %g but the first module r %d, alpha %g, scaling %g (per-module "
                    "ranks are not supported)",
                    full, r, alpha, scaling, h->r, h->alpha, h->scaling);
    hsize_t dA[2] = {0, 0}, dB[2] = {0, 0};
    r_shape2(io, mg, "/adapter", name, "lora_A", dA);
    r_shape2(io, mg, "/adapter", name, "lora_B", dB);
    if (!io->err && (dA[0] != (hsize_t)r || dB[1] != (hsize_t)r || dA[1] == 0 || dB[0] == 0))
        ckpt_io_err(io, "%s: lora_A (%llu, %llu) and lora_B (%llu, %llu) do not fit r = %d", full,
                    (unsigned long long)dA[0], (unsigned long long)dA[1], (unsigned long long)dB[0],
                    (unsigned long long)dB[1], r);
    for (int k = 1; k < 3 && !io->err; k++) {
        char ofull[OBJ_CAP];
        snprintf(ofull, sizeof ofull, "%s/%s", ckpt_trees[k], name);
        hid_t og = ckpt_r_group(io, trees[k], name, ofull);
        if (og < 0) break;
        hsize_t oA[2] = {0, 0}, oB[2] = {0, 0};
        r_shape2(io, og, ckpt_trees[k], name, "lora_A", oA);
        r_shape2(io, og, ckpt_trees[k], name, "lora_B", oB);
        H5Gclose(og);
        if (!io->err && (oA[0] != dA[0] || oA[1] != dA[1] || oB[0] != dB[0] || oB[1] != dB[1]))
            ckpt_io_err(io,
                        "%s: shapes (%llu, %llu) and (%llu, %llu) differ from /adapter's (%llu, %llu) and (%llu, "
                        "%llu)",
                        ofull, (unsigned long long)oA[0], (unsigned long long)oA[1], (unsigned long long)oB[0],
                        (unsigned long long)oB[1], (unsigned long long)dA[0], (unsigned long long)dA[1],
                        (unsigned long long)dB[0], (unsigned long long)dB[1]);
    }
    if (!io->err) {
        snprintf(h->mod[h->n_mod], LORA_KEY, "%s", name);
        h->n_mod++;
    }
}

/* Whole group `name` (mg: /adapter's, kind = "whole"): one or more float
 * datasets of rank 1 or 2, each the same shape in both optimizer trees, whose
 * groups hold the same datasets and no other; appended to h->whole. */
static void r_whole_group(ckpt_io *io, const hid_t trees[3], hid_t mg, const char *name, ckpt_hdr *h) {
    char full[OBJ_CAP];
    snprintf(full, sizeof full, "/adapter/%s", name);
    hid_t og[3] = {mg, -1, -1};
    for (int k = 1; k < 3 && !io->err; k++) {
        char ofull[OBJ_CAP];
        snprintf(ofull, sizeof ofull, "%s/%s", ckpt_trees[k], name);
        og[k] = ckpt_r_group(io, trees[k], name, ofull);
    }
    hsize_t n = 0;
    for (int k = 0; k < 3 && !io->err; k++) {
        H5G_info_t gi;
        if (H5Gget_info(og[k], &gi) < 0)
            ckpt_h5_fail(io, "H5Gget_info", full);
        else if (k == 0 && (gi.nlinks == 0 || gi.nlinks > 1000000))
            ckpt_io_err(io, "%s (kind whole) holds %llu datasets", full, (unsigned long long)gi.nlinks);
        else if (k == 0)
            n = gi.nlinks;
        else if (gi.nlinks != n)
            ckpt_io_err(io, "%s/%s holds %llu datasets but %s holds %llu", ckpt_trees[k], name,
                        (unsigned long long)gi.nlinks, full, (unsigned long long)n);
    }
    size_t glen = strlen(name);
    for (hsize_t i = 0; i < n && !io->err; i++) {
        if (h->n_whole == h->cap_whole) {
            int nc = h->cap_whole ? 2 * h->cap_whole : 16;
            ckpt_whole *nw = realloc(h->whole, sizeof *nw * (size_t)nc);
            if (!nw) {
                ckpt_io_err(io, "out of memory");
                break;
            }
            h->whole = nw, h->cap_whole = nc;
        }
        ckpt_whole *w = &h->whole[h->n_whole];
        memset(w, 0, sizeof *w);
        char ds[LORA_KEY];
        if (glen + 1 >= LORA_KEY) {
            ckpt_io_err(io, "/adapter: module name of %zu bytes (at most %d)", glen, LORA_KEY - 3);
            break;
        }
        if (r_link_name(io, mg, H5_INDEX_NAME, i, ds, LORA_KEY - glen - 1, full)) break;
        snprintf(w->key, sizeof w->key, "%s.%s", name, ds);
        w->split = (int)glen;
        for (int k = 0; k < 3 && !io->err; k++) {
            char dfull[OBJ_CAP];
            snprintf(dfull, sizeof dfull, "%s/%s/%s", ckpt_trees[k], name, ds);
            int nd = 0;
            hsize_t dims[2] = {0, 0};
            if (r_tensor_shape(io, og[k], ds, dfull, &nd, dims)) break;
            if (k == 0) {
                w->ndim = nd, w->dims[0] = dims[0], w->dims[1] = dims[1];
            } else if (nd != w->ndim || dims[0] != w->dims[0] || (nd == 2 && dims[1] != w->dims[1])) {
                char s1[64], s2[64];
                shape_str(s1, sizeof s1, nd, dims);
                shape_str(s2, sizeof s2, w->ndim, w->dims);
                ckpt_io_err(io, "dataset %s has shape %s but /adapter/%s/%s has %s", dfull, s1, name, ds, s2);
            }
        }
        if (!io->err) h->n_whole++;
    }
    for (int k = 1; k < 3; k++)
        if (og[k] >= 0) H5Gclose(og[k]);
}

/* Lists /adapter's groups and checks each as a LoRA module (no kind
 * attribute) or a whole group (kind = "whole", version 2 only), with the same
 * groups in both optimizer trees, which hold no other. */
static int r_modules(ckpt_io *io, hid_t f, ckpt_hdr *h) {
    hid_t ag = ckpt_r_group(io, f, "adapter", "/adapter");
    if (ag < 0) return -1;
    H5G_info_t gi;
    hid_t gcpl = -1;
    unsigned crt = 0;
    if (H5Gget_info(ag, &gi) < 0) {
        ckpt_h5_fail(io, "H5Gget_info", "/adapter");
        goto out;
    }
    if ((gcpl = H5Gget_create_plist(ag)) < 0 || H5Pget_link_creation_order(gcpl, &crt) < 0) {
        ckpt_h5_fail(io, "H5Gget_create_plist", "/adapter");
        goto out;
    }
    H5_index_t idx = (crt & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    if (gi.nlinks == 0) {
        ckpt_io_err(io, "/adapter holds no module");
        goto out;
    }
    if (gi.nlinks > 1000000) {
        ckpt_io_err(io, "/adapter holds %llu links", (unsigned long long)gi.nlinks);
        goto out;
    }
    h->mod = calloc((size_t)gi.nlinks, sizeof *h->mod);
    if (!h->mod) {
        ckpt_io_err(io, "out of memory");
        goto out;
    }
    /* extension attributes of /adapter (absent in files of other writers) */
    htri_t has_tm = H5Aexists(ag, "target_modules");
    if (has_tm > 0) {
        h->target_modules = ckpt_r_str(io, ag, "/adapter", "target_modules");
        h->target_regex = ckpt_r_int(io, ag, "/adapter", "target_regex");
    }
    if (H5Aexists(ag, "dropout") > 0) h->dropout = ckpt_r_f32(io, ag, "/adapter", "dropout");
    if (h->version >= 2) { /* required from version 2 on */
        h->save = ckpt_r_str(io, ag, "/adapter", "modules_to_save");
        h->full = ckpt_r_int(io, ag, "/adapter", "full_finetune");
        if (!io->err && h->full != 0 && h->full != 1)
            ckpt_io_err(io, "/adapter: full_finetune is %d, not 0 or 1", h->full);
    }
    if (io->err) goto out;
    hid_t trees[3] = {ag, -1, -1};
    hid_t og = ckpt_r_group(io, f, "optimizer", "/optimizer");
    for (int k = 1; k < 3 && og >= 0; k++) trees[k] = ckpt_r_group(io, og, ckpt_trees[k] + 11, ckpt_trees[k]);
    if (og >= 0) H5Gclose(og);
    for (int k = 1; k < 3 && !io->err; k++) {
        H5G_info_t oi;
        if (H5Gget_info(trees[k], &oi) < 0)
            ckpt_h5_fail(io, "H5Gget_info", ckpt_trees[k]);
        else if (oi.nlinks != gi.nlinks)
            ckpt_io_err(io, "%s holds %llu modules, /adapter %llu", ckpt_trees[k], (unsigned long long)oi.nlinks,
                        (unsigned long long)gi.nlinks);
    }
    for (hsize_t i = 0; i < gi.nlinks && !io->err; i++) {
        char name[LORA_KEY];
        if (r_link_name(io, ag, idx, i, name, sizeof name, "/adapter")) break;
        char full[OBJ_CAP];
        snprintf(full, sizeof full, "/adapter/%s", name);
        hid_t mg = ckpt_r_group(io, ag, name, full);
        if (mg < 0) break;
        htri_t has_kind = H5Aexists(mg, "kind");
        char *kind = has_kind > 0 ? ckpt_r_str(io, mg, full, "kind") : NULL;
        if (has_kind < 0)
            ckpt_h5_fail(io, "H5Aexists", full);
        else if (has_kind == 0)
            r_lora_group(io, trees, mg, name, h);
        else if (kind && strcmp(kind, "whole"))
            ckpt_io_err(io, "%s: unknown kind '%.100s' (a LoRA module has no kind, a whole tensor's \"whole\")", full,
                        kind);
        else if (kind && h->version < 2)
            ckpt_io_err(io, "%s has kind \"whole\" in a format version %d file (whole tensors need version 2)", full,
                        h->version);
        else if (kind)
            r_whole_group(io, trees, mg, name, h);
        free(kind);
        H5Gclose(mg);
    }
    if (!io->err && h->full && h->n_mod > 0)
        ckpt_io_err(io, "/adapter: full_finetune = 1 but %s is a LoRA module", h->mod[0]);
    if (!io->err && !h->full && h->n_mod == 0)
        ckpt_io_err(io, "/adapter holds no LoRA module (and full_finetune is not set)");
    for (int k = 1; k < 3; k++)
        if (trees[k] >= 0) H5Gclose(trees[k]);
out:
    if (gcpl >= 0) H5Pclose(gcpl);
    H5Gclose(ag);
    return io->err ? -1 : 0;
}

/* /metrics: four rank-1 datasets of one length n (bounded by the file size),
 * and the evaluations in /metrics/eval (ckpt_eval.c). */
static int r_metrics(ckpt_io *io, hid_t f, ckpt_state *st, int read_values) {
    static const char *names[4] = {"step", "loss", "lr", "tokens_per_s"};
    hid_t g = ckpt_r_group(io, f, "metrics", "/metrics");
    if (g < 0) return -1;
    hid_t d[4] = {-1, -1, -1, -1};
    hsize_t len[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4 && !io->err; i++) {
        char full[64];
        snprintf(full, sizeof full, "/metrics/%s", names[i]);
        d[i] = ckpt_r_dset(io, g, names[i], full, i ? H5T_FLOAT : H5T_INTEGER, 1, &len[i]);
        if (!io->err && len[i] != len[0])
            ckpt_io_err(io, "/metrics: %s has %llu rows but step has %llu", names[i], (unsigned long long)len[i],
                        (unsigned long long)len[0]);
    }
    if (!io->err && len[0] > io->file_size / 8)
        ckpt_io_err(io, "/metrics claims %llu rows, more than the file holds", (unsigned long long)len[0]);
    if (!io->err && read_values && len[0] > 0) {
        size_t n = (size_t)len[0];
        st->m_step = malloc(n * sizeof *st->m_step);
        st->m_loss = malloc(n * sizeof *st->m_loss);
        st->m_lr = malloc(n * sizeof *st->m_lr);
        st->m_tokens_per_s = malloc(n * sizeof *st->m_tokens_per_s);
        if (!st->m_step || !st->m_loss || !st->m_lr || !st->m_tokens_per_s) {
            ckpt_io_err(io, "/metrics: out of memory for %zu rows", n);
        } else {
            st->n_metrics = (int64_t)n;
            void *bufs[4] = {st->m_step, st->m_loss, st->m_lr, st->m_tokens_per_s};
            for (int i = 0; i < 4 && !io->err; i++)
                ckpt_r_read(io, d[i], i ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, bufs[i], names[i]);
        }
    }
    if (!io->err) ckpt_r_eval(io, g, st, read_values);
    for (int i = 0; i < 4; i++)
        if (d[i] >= 0) H5Dclose(d[i]);
    H5Gclose(g);
    return io->err ? -1 : 0;
}

static int lookup(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(names[i], s)) return i;
    return -1;
}

/* Everything but the tensors: root attrs (format and version first), /config,
 * /base_model, /optimizer, /schedule, /rng, /data, the adapter structure (h)
 * and /metrics (values only when read_metrics). */
static int r_header(ckpt_io *io, hid_t f, ckpt_state *st, ckpt_hdr *h, int read_metrics) {
    htri_t x = H5Aexists(f, "format");
    if (x < 0) return ckpt_h5_fail(io, "H5Aexists", "format");
    if (!x) return ckpt_io_err(io, "not a lora-ps checkpoint (no format attribute)");
    char *fmt = ckpt_r_str(io, f, "/", "format");
    if (!fmt) return -1;
    if (strcmp(fmt, CKPT_FORMAT)) {
        ckpt_io_err(io, "not a lora-ps checkpoint (format attribute '%.200s')", fmt);
        free(fmt);
        return -1;
    }
    free(fmt);
    int64_t ver = ckpt_r_i64(io, f, "/", "format_version");
    if (io->err) return -1;
    if (ver < CKPT_VERSION_LORA || ver > CKPT_VERSION)
        return ckpt_io_err(
            io, "checkpoint format version %lld is not supported by this build (it reads versions %d and %d)",
            (long long)ver, CKPT_VERSION_LORA, CKPT_VERSION);
    _Static_assert(CKPT_VERSION == CKPT_VERSION_LORA + 1, "the message above lists two versions");
    h->version = st->format_version = (int)ver;
    st->step = ckpt_r_i64(io, f, "/", "step");
    st->epoch = ckpt_r_i64(io, f, "/", "epoch");
    st->tokens_seen = ckpt_r_i64(io, f, "/", "tokens_seen");
    st->ranks = ckpt_r_int(io, f, "/", "ranks");
    if (io->err) return -1;

    /* /config */
    int cx = ckpt_r_exists(io, f, "config", "/config");
    if (cx == 0) ckpt_io_err(io, "dataset /config is missing");
    if (io->err) return -1;
    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
    if (d < 0) return ckpt_h5_fail(io, "H5Dopen2", "/config");
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    if (t < 0 || sp < 0)
        ckpt_h5_fail(io, "H5Dget_type", "/config");
    else if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1)
        ckpt_io_err(io, "/config is not a single string");
    else
        st->config_text = ckpt_r_string_from(io, d, 1, t, "/config");
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (io->err) return -1;

    hid_t g = ckpt_r_group(io, f, "base_model", "/base_model");
    if (g < 0) return -1;
    st->model_path = ckpt_r_str(io, g, "/base_model", "path");
    st->model_size = ckpt_r_u64(io, g, "/base_model", "size");
    char *hex = ckpt_r_str(io, g, "/base_model", "hash");
    H5Gclose(g);
    if (hex) {
        char *end;
        errno = 0;
        st->model_hash = strtoull(hex, &end, 16);
        if (strlen(hex) != 16 || *end || errno) ckpt_io_err(io, "/base_model: hash '%.40s' is not 16 hex digits", hex);
        free(hex);
    }
    if (io->err) return -1;

    g = ckpt_r_group(io, f, "optimizer", "/optimizer");
    if (g < 0) return -1;
    char *oname = ckpt_r_str(io, g, "/optimizer", "name");
    if (oname && strcmp(oname, "adamw")) ckpt_io_err(io, "/optimizer: unknown optimizer '%.100s'", oname);
    free(oname);
    st->opt_steps = ckpt_r_i64(io, g, "/optimizer", "step");
    st->lr = ckpt_r_f32(io, g, "/optimizer", "lr");
    st->beta1 = ckpt_r_f32(io, g, "/optimizer", "beta1");
    st->beta2 = ckpt_r_f32(io, g, "/optimizer", "beta2");
    st->eps = ckpt_r_f32(io, g, "/optimizer", "eps");
    st->weight_decay = ckpt_r_f32(io, g, "/optimizer", "weight_decay");
    H5Gclose(g);
    if (io->err) return -1;

    g = ckpt_r_group(io, f, "schedule", "/schedule");
    if (g < 0) return -1;
    char *kind = ckpt_r_str(io, g, "/schedule", "kind");
    if (kind && (st->schedule_kind = lookup(ckpt_sched_names, CKPT_N_SCHED, kind)) < 0)
        ckpt_io_err(io, "/schedule: unknown kind '%.100s'", kind);
    free(kind);
    st->warmup_steps = ckpt_r_i64(io, g, "/schedule", "warmup_steps");
    st->total_steps = ckpt_r_i64(io, g, "/schedule", "total_steps");
    st->min_lr_ratio = ckpt_r_f32(io, g, "/schedule", "min_lr_ratio");
    int64_t position = ckpt_r_i64(io, g, "/schedule", "position");
    H5Gclose(g);
    if (io->err) return -1;

    g = ckpt_r_group(io, f, "rng", "/rng");
    if (g < 0) return -1;
    st->init_seed = ckpt_r_u64(io, g, "/rng", "init_seed");
    st->data_seed = ckpt_r_u64(io, g, "/rng", "data_seed");
    st->dropout_seed = ckpt_r_u64(io, g, "/rng", "dropout_seed");
    H5Gclose(g);
    if (io->err) return -1;

    g = ckpt_r_group(io, f, "data", "/data");
    if (g < 0) return -1;
    st->data_cursor = ckpt_r_i64(io, g, "/data", "cursor");
    st->seq_len = ckpt_r_int(io, g, "/data", "seq_len");
    char *samp = ckpt_r_str(io, g, "/data", "sampling");
    if (samp && (st->sampling = lookup(ckpt_sampling_names, CKPT_N_SAMPLING, samp)) < 0)
        ckpt_io_err(io, "/data: unknown sampling '%.100s'", samp);
    free(samp);
    st->train_tokens = ckpt_r_i64(io, g, "/data", "train_tokens");
    H5Gclose(g);
    if (io->err) return -1;
    if (ckpt_check_counters(st, position, io->e)) {
        lerr_prefix(io->e, "%s", io->path);
        io->err = 1;
        return -1;
    }

    if (r_modules(io, f, h)) return -1;
    st->full_finetune = h->full;
    return r_metrics(io, f, st, read_metrics);
}

int ckpt_check_counters(const ckpt_state *st, int64_t position, struct lerr *e) {
    const int64_t max = CKPT_MAX_STEP;
    if (st->step < 0 || st->step > max)
        return lerr_set(e, "root attribute step = %lld is outside [0, %lld] (a damaged or hand-edited checkpoint)",
                        (long long)st->step, (long long)max);
    if (st->opt_steps < 0 || st->opt_steps > st->step)
        return lerr_set(e, "/optimizer step = %lld (AdamW steps applied) is outside [0, step = %lld]",
                        (long long)st->opt_steps, (long long)st->step);
    if (position != st->step)
        return lerr_set(e, "/schedule position = %lld disagrees with step = %lld", (long long)position,
                        (long long)st->step);
    if (st->data_cursor < 0 || (st->step == 0 ? st->data_cursor != 0
                                              : st->data_cursor < st->step || st->data_cursor % st->step))
        return lerr_set(e, "/data cursor = %lld is not step (%lld) times a global batch of one or more samples",
                        (long long)st->data_cursor, (long long)st->step);
    if (st->epoch < 0 || st->tokens_seen < 0 || st->warmup_steps < 0 || st->total_steps < 0 || st->train_tokens < 0)
        return lerr_set(e, "a negative count (epoch %lld, tokens_seen %lld, warmup_steps %lld, total_steps %lld, "
                        "train_tokens %lld)", (long long)st->epoch, (long long)st->tokens_seen,
                        (long long)st->warmup_steps, (long long)st->total_steps, (long long)st->train_tokens);
    return 0;
}

/* Opens path read-only after the checks HDF5 reports badly (missing, not a
 * regular file, empty, no HDF5 signature); -1 with the message in io. */
static hid_t r_open(ckpt_io *io) {
    struct stat sb;
    if (stat(io->path, &sb) != 0) return ckpt_io_err(io, "cannot open: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode)) return ckpt_io_err(io, "not a regular file");
    if (sb.st_size == 0) return ckpt_io_err(io, "empty file (0 bytes; a checkpoint cut short?)");
    htri_t is = H5Fis_hdf5(io->path);
    if (is < 0) return ckpt_h5_fail(io, "H5Fis_hdf5", "");
    if (!is) return ckpt_io_err(io, "not an HDF5 file (no HDF5 signature; truncated or not a checkpoint)");
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 1, 1) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return ckpt_h5_fail(io, "H5Pcreate", "(file access list)");
    }
    hid_t f = H5Fopen(io->path, H5F_ACC_RDONLY, fapl);
    if (f < 0) ckpt_h5_fail(io, "H5Fopen", "");
    H5Pclose(fapl);
    if (f < 0) return -1;
    hsize_t fs = 0;
    if (H5Fget_filesize(f, &fs) < 0) {
        ckpt_h5_fail(io, "H5Fget_filesize", "");
        H5Fclose(f);
        return -1;
    }
    io->file_size = fs;
    return f;
}

void ckpt_state_free(ckpt_state *st) {
    if (!st) return;
    free((char *)st->config_text);
    free((char *)st->model_path);
    free(st->m_step);
    free(st->m_loss);
    free(st->m_lr);
    free(st->m_tokens_per_s);
    free(st->ev_step);
    free(st->ev_epoch);
    free(st->ev_values);
    memset(st, 0, sizeof *st);
}

/* Reads tree k's datasets into buf (flat layout of a), walking a's tensor
 * table; each dataset's shape must be the tensor's. */
static int r_tree_values(ckpt_io *io, hid_t f, int k, const lora_adapter *a, float *buf) {
    for (int i = 0; i < a->n_tensor && !io->err; i++) {
        const lora_tensor *t = &a->tensor[i];
        char grp[LORA_KEY], ds[LORA_KEY], full[OBJ_CAP];
        if (ckpt_tensor_place(t, grp, ds)) {
            ckpt_io_err(io, "tensor %s of the adapter has no place in a checkpoint (no MODULE.NAME key)", t->key);
            break;
        }
        snprintf(full, sizeof full, "%s/%s/%s", ckpt_trees[k], grp, ds);
        hid_t d = H5Dopen2(f, full, H5P_DEFAULT);
        if (d < 0) {
            ckpt_h5_fail(io, "H5Dopen2", full);
            break;
        }
        hid_t sp = H5Dget_space(d);
        hsize_t dims[2] = {0, 0}, want[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (nd < 1 || nd > 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != nd) {
            ckpt_io_err(io, "dataset %s is not 1-D or 2-D", full);
        } else if (nd != t->ndim || dims[0] != want[2 - nd] || (nd == 2 && dims[1] != want[1])) {
            char got_s[64], want_s[64];
            shape_str(got_s, sizeof got_s, nd, dims);
            shape_str(want_s, sizeof want_s, t->ndim, want + (t->ndim == 1));
            ckpt_io_err(io, "dataset %s has shape %s but the adapter expects %s (checkpoint of a different %s?)", full,
                        got_s, want_s, t->kind == LORA_KIND_WHOLE ? "model" : "r or model");
        } else if (buf) {
            ckpt_r_read(io, d, H5T_NATIVE_FLOAT, buf + t->off, full);
            size_t n = t->ndim == 2 ? (size_t)t->rows * (size_t)t->cols : (size_t)t->cols;
            int64_t bad = io->err ? -1 : first_nonfinite(buf + t->off, n);
            if (bad >= 0)
                ckpt_io_err(io, "dataset %s holds a non-finite value (%s) at element %lld", full,
                            nonfinite_name(buf[t->off + (size_t)bad]), (long long)bad);
            for (size_t j = 0; k == 2 && !io->err && j < n; j++) /* AdamW's second moment */
                if (buf[t->off + j] < 0)
                    ckpt_io_err(io, "dataset %s holds a negative second moment (%g) at element %zu", full,
                                (double)buf[t->off + j], j);
        }
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
    }
    return io->err ? -1 : 0;
}

/* The file's trained tensors are the adapter's: the same kind of run (LoRA
 * or full fine-tuning), every LoRA module and whole tensor of the file is one
 * of the adapter's, and the reverse; each error names the module or tensor. */
static void match_layout(ckpt_io *io, const ckpt_hdr *h, const lora_adapter *a) {
    if (!io->err && h->full != (a->full != 0))
        ckpt_io_err(io, "the checkpoint holds a %s run but the adapter is a %s one",
                    h->full ? "full fine-tuning" : "LoRA", a->full ? "full fine-tuning" : "LoRA");
    for (int i = 0; i < h->n_mod && !io->err; i++) {
        char key[LORA_KEY + 16];
        snprintf(key, sizeof key, "%s" SUFFIX_A, h->mod[i]);
        const lora_tensor *t = lora_find(a, key);
        if (!t || t->kind != LORA_KIND_A)
            ckpt_io_err(io, "module %s of the checkpoint is not in this adapter (different target modules?)",
                        h->mod[i]);
    }
    for (int i = 0; i < a->n_mod && !io->err; i++) {
        char mod[LORA_KEY], ds[LORA_KEY];
        ckpt_tensor_place(&a->tensor[a->mod[i].tA], mod, ds);
        int j = 0;
        while (j < h->n_mod && strcmp(h->mod[j], mod)) j++;
        if (j == h->n_mod)
            ckpt_io_err(io, "module %s of the adapter is missing from the checkpoint (different target modules?)", mod);
    }
    for (int i = 0; i < h->n_whole && !io->err; i++) {
        const ckpt_whole *w = &h->whole[i];
        const lora_tensor *t = lora_find(a, w->key);
        if (!t || t->kind != LORA_KIND_WHOLE)
            ckpt_io_err(io,
                        "whole tensor %s (dataset /adapter/%.*s/%s) of the checkpoint is not in this adapter "
                        "(different modules_to_save?)",
                        w->key, w->split, w->key, w->key + w->split + 1);
    }
    for (int i = 0; i < a->n_tensor && !io->err; i++) {
        const lora_tensor *t = &a->tensor[i];
        if (t->kind != LORA_KIND_WHOLE) continue;
        int j = 0;
        while (j < h->n_whole && strcmp(h->whole[j].key, t->key)) j++;
        char grp[LORA_KEY] = "?", ds[LORA_KEY] = "?";
        ckpt_tensor_place(t, grp, ds);
        if (j == h->n_whole)
            ckpt_io_err(io,
                        "whole tensor %s of the adapter is missing from the checkpoint (no dataset /adapter/%s/%s; "
                        "different modules_to_save?)",
                        t->key, grp, ds);
    }
}

int ckpt_read(const char *path, ckpt_state *st, lora_adapter *a, float *m, float *v, struct lerr *e) {
    memset(st, 0, sizeof *st);
    ckpt_quiet q;
    ckpt_h5_quiet(&q);
    ckpt_io io = {.path = path, .e = e};
    ckpt_hdr h;
    memset(&h, 0, sizeof h);
    hid_t f = r_open(&io);
    if (f >= 0) r_header(&io, f, st, &h, 1);
    match_layout(&io, &h, a);
    float *bufs[3] = {a->w, m, v};
    for (int k = 0; k < 3 && !io.err; k++) r_tree_values(&io, f, k, a, bufs[k]);
    if (f >= 0) H5Fclose(f);
    ckpt_h5_restore(&q);
    hdr_free(&h);
    if (io.err) {
        ckpt_state_free(st);
        return -1;
    }
    return 0;
}

/* The LoRA part of the spec as peft describes it: r, alpha, dropout, rsLoRA
 * (from the scaling) and the targets (the module paths, or the configured
 * targets when more modules than a spec lists). */
static void spec_lora(ckpt_io *io, ckpt_hdr *h, lora_spec *s) {
    s->r = h->r;
    s->alpha = h->alpha;
    s->dropout = h->dropout;
    float plain = h->alpha / (float)h->r, rs = h->alpha / sqrtf((float)h->r);
    if (fabsf(h->scaling - plain) <= 1e-6f * plain)
        s->rslora = 0;
    else if (fabsf(h->scaling - rs) <= 1e-6f * rs)
        s->rslora = 1;
    else
        ckpt_io_err(io, "scaling %g is neither alpha/r = %g nor alpha/sqrt(r) = %g", h->scaling, plain, rs);
    if (!io->err && h->n_mod <= LORA_MAX_TARGETS) {
        /* peft's view: every adapted module by its full path */
        for (int i = 0; i < h->n_mod; i++) {
            const char *n = h->mod[i];
            if (!strncmp(n, PEFT_PREFIX, strlen(PEFT_PREFIX))) n += strlen(PEFT_PREFIX);
            if (strlen(n) >= LORA_NAME) {
                ckpt_io_err(io, "module path '%s' too long", n);
                break;
            }
            snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", n);
        }
    } else if (!io->err && h->target_modules) {
        /* more modules than a spec lists: the targets as configured,
         * which select the same modules of the same model */
        s->target_regex = h->target_regex != 0;
        if (s->target_regex) { /* one regex, commas and all */
            if (strlen(h->target_modules) >= LORA_NAME)
                ckpt_io_err(io, "/adapter: target_modules regex longer than %d bytes", LORA_NAME - 1);
            else
                snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", h->target_modules);
        }
        for (char *p = h->target_modules, *tok; !s->target_regex && !io->err && (tok = strsep(&p, ","));) {
            if (!*tok) continue;
            if (s->n_targets >= LORA_MAX_TARGETS || strlen(tok) >= LORA_NAME)
                ckpt_io_err(io, "/adapter: target_modules too long");
            else
                snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", tok);
        }
        if (!io->err && s->n_targets == 0) ckpt_io_err(io, "/adapter: target_modules is empty");
    } else if (!io->err) {
        ckpt_io_err(io, "%d adapted modules, more than a spec lists (%d), and no target_modules attribute", h->n_mod,
                    LORA_MAX_TARGETS);
    }
}

/* peft's modules_to_save match: module path `mod` is the name or ends with ".name". */
static int save_matches(const char *mod, size_t mlen, const char *name) {
    size_t n = strlen(name);
    if (mlen == n) return !strncmp(mod, name, n);
    return mlen > n && mod[mlen - n - 1] == '.' && !strncmp(mod + mlen - n, name, n);
}

/* The modules_to_save names (version 2: /adapter modules_to_save) into
 * s->save. Outside full fine-tuning each name must select some whole tensor
 * of the file and each whole tensor's module (its peft key without
 * "base_model.model." and the last component) must be selected by a name, as
 * model_adapter_create selects them. */
static void spec_save(ckpt_io *io, ckpt_hdr *h, lora_spec *s) {
    if (!h->save) return; /* version 1: no whole tensor */
    for (char *p = h->save, *tok; !io->err && (tok = strsep(&p, ","));) {
        if (!*tok) continue;
        if (s->n_save >= LORA_MAX_SAVE || strlen(tok) >= LORA_NAME)
            ckpt_io_err(io, "/adapter: modules_to_save holds more than %d names or a name of %d bytes or more",
                        LORA_MAX_SAVE, LORA_NAME);
        else
            snprintf(s->save[s->n_save++], LORA_NAME, "%s", tok);
    }
    if (io->err) return;
    if (h->full) {
        if (s->n_save) ckpt_io_err(io, "/adapter: full_finetune = 1 but modules_to_save = %s", s->save[0]);
        return;
    }
    size_t np = strlen(PEFT_PREFIX);
    int hit[LORA_MAX_SAVE] = {0};
    for (int i = 0; i < h->n_whole && !io->err; i++) {
        const ckpt_whole *w = &h->whole[i];
        if ((size_t)w->split <= np || strncmp(w->key, PEFT_PREFIX, np)) {
            ckpt_io_err(io, "/adapter/%.*s: a whole module outside full fine-tuning must start with %s", w->split,
                        w->key, PEFT_PREFIX);
            break;
        }
        int any = 0;
        for (int k = 0; k < s->n_save; k++)
            if (save_matches(w->key + np, (size_t)w->split - np, s->save[k])) any = 1, hit[k] = 1;
        if (!any)
            ckpt_io_err(io, "/adapter/%.*s: whole tensor %s is not under any of modules_to_save", w->split, w->key,
                        w->key);
    }
    for (int k = 0; k < s->n_save && !io->err; k++)
        if (!hit[k]) ckpt_io_err(io, "/adapter: modules_to_save '%s' selects no whole tensor of the file", s->save[k]);
}

int ckpt_read_meta(const char *path, ckpt_state *st, lora_spec *spec_out, struct lerr *e) {
    memset(st, 0, sizeof *st);
    ckpt_quiet q;
    ckpt_h5_quiet(&q);
    ckpt_io io = {.path = path, .e = e};
    ckpt_hdr h;
    memset(&h, 0, sizeof h);
    hid_t f = r_open(&io);
    if (f >= 0) {
        r_header(&io, f, st, &h, 0);
        H5Fclose(f);
    }
    ckpt_h5_restore(&q);
    lora_spec local; /* derived even when not asked for: a file whose spec makes no sense is invalid */
    lora_spec *s = spec_out ? spec_out : &local;
    if (!io.err) {
        memset(s, 0, sizeof *s);
        if (!h.full) spec_lora(&io, &h, s); /* full fine-tuning: no LoRA part */
        spec_save(&io, &h, s);
    }
    hdr_free(&h);
    if (io.err) {
        ckpt_state_free(st);
        return -1;
    }
    return 0;
}
