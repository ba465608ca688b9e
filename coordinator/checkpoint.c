/*
 * ckpt_: HDF5 checkpoints (see include/checkpoint.h and docs/checkpoint-format.md).
 *
 * Owns the on-disk format of a run's checkpoints. Called by the coordinator
 * (rank 0) to write, and by the resume path, tools and fuzzers to read. No MPI.
 *
 * Invariants:
 * - A file named step_%08lld.h5 is only ever produced by rename() of a
 *   complete, flushed and fsynced temporary file, so a crash leaves either
 *   the old set of checkpoints or the new one, plus maybe a stale temporary
 *   (".step_XXXXXXXX.h5.tmp.<pid>"), which the next writer removes when its
 *   pid is no longer alive. Readers only ever look at step_%08lld.h5 names.
 * - Files use the HDF5 1.10 object format (libver bounds v110): the superblock,
 *   every object header (attributes and compact data included) and every
 *   B-tree/heap block carry a checksum, and every tensor and metrics dataset
 *   is one chunk with the Fletcher32 filter, so a corrupted byte anywhere is
 *   an error on read instead of a silent wrong value.
 * - HDF5's automatic error printing is switched off for the duration of every
 *   public call (and restored afterwards); an HDF5 failure becomes one lerr
 *   line "PATH: <call> failed: <innermost HDF5 description>".
 * - Readers never trust a size from the file: every attribute must hold one
 *   element of the expected class, every dataset's rank and shape is checked
 *   before H5Dread, and lengths that drive an allocation are bounded by the
 *   file's size.
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "optim.h"
#include "util.h"

#define PEFT_PREFIX "base_model.model."
#define SUFFIX_A ".lora_A.weight"
#define SUFFIX_B ".lora_B.weight"
#define PATH_CAP 4096
#define OBJ_CAP 512 /* an HDF5 object path inside the file */

/* The three trees that share the adapter layout: values, AdamW m, AdamW v. */
static const char *const k_trees[3] = {"/adapter", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"};
static const char *const k_sched_names[] = {
    [SCHED_CONSTANT] = "constant", [SCHED_COSINE] = "cosine", [SCHED_LINEAR] = "linear"};
static const char *const k_sampling_names[] = {"shuffle", "random"}; /* run_config's data_mode: 0, 1 */
#define N_SCHED ((int)(sizeof k_sched_names / sizeof *k_sched_names))
#define N_SAMPLING ((int)(sizeof k_sampling_names / sizeof *k_sampling_names))

/* ------------------------------------------------------------ HDF5 errors */

/* Silences HDF5's automatic error-stack printing for one public call. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} h5quiet;

static void h5_quiet(h5quiet *q) {
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_restore(const h5quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

/* I/O context: the file's path for messages and a sticky error flag, so a
 * writer can run a sequence of steps and check once at the end (each step is
 * a no-op once an error is set, and only the first error is reported). */
typedef struct {
    const char *path;
    struct lerr *e;
    int err;
    hsize_t file_size; /* reader: bound for sizes read from the file */
} h5io;

static herr_t innermost_cb(unsigned n, const H5E_error2_t *err, void *data) {
    if (n == 0 && err && err->desc) snprintf(data, 512, "%s", err->desc);
    return 0;
}

/* HDF5's I/O descriptions run over several lines ("file write failed: time =
 * ...\n, filename = ..., errno = 28, error message = 'No space left on
 * device', buf = ..."): keep "file write failed: No space left on device". */
static void tidy_desc(char *d) {
    const char *em = strstr(d, "error message = '");
    char *colon = strchr(d, ':');
    if (em && colon && colon < em) {
        em += strlen("error message = '");
        const char *q = strchr(em, '\'');
        size_t n = q ? (size_t)(q - em) : strlen(em);
        memmove(colon + 2, em, n);
        colon[1] = ' ';
        colon[2 + n] = 0;
    }
    for (char *p = d; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

/* Records that HDF5 call `call` (on object `what`, may be "") failed, with the
 * innermost description of HDF5's error stack. Must run right after the
 * failing call: the next HDF5 call clears the stack. Returns -1. */
static int h5_fail(h5io *io, const char *call, const char *what) {
    if (io->err) return -1;
    char desc[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, desc);
    tidy_desc(desc);
    io->err = 1;
    return lerr_set(io->e, "%s: %s%s%s failed%s%s", io->path, call, what[0] ? " " : "", what, desc[0] ? ": " : "",
                    desc);
}

/* Records a validation error "PATH: message". Returns -1. */
static int io_err(h5io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int io_err(h5io *io, const char *fmt, ...) {
    if (io->err) return -1;
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    io->err = 1;
    return lerr_set(io->e, "%s: %s", io->path, msg);
}

/* peft key -> module name: the key without ".lora_A.weight" / ".lora_B.weight". */
static void module_name(char *out, size_t cap, const char *key) {
    size_t n = strlen(key), s = strlen(SUFFIX_A);
    if (n > s && (!strcmp(key + n - s, SUFFIX_A) || !strcmp(key + n - s, SUFFIX_B))) n -= s;
    snprintf(out, cap, "%.*s", (int)n, key);
}

static hid_t file_access_plist(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    /* v110 object format: checksummed metadata, single-chunk dataset index */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        /* H5Fclose also closes whatever an error path left open */
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        /* file systems without flock (some NFS, Lustre mounts) are fine: a
         * checkpoint is only read after its rename, never while written */
        H5Pset_file_locking(fapl, 1, 1) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

/* ------------------------------------------------------------- directory */

/* Step number of a file named exactly step_%08lld.h5, else -1. */
static long long parse_step_name(const char *name) {
    if (strncmp(name, "step_", 5)) return -1;
    const char *p = name + 5;
    size_t nd = 0;
    while (p[nd] >= '0' && p[nd] <= '9') nd++;
    if (nd < 8 || nd > 18 || strcmp(p + nd, ".h5")) return -1;
    long long s = strtoll(p, NULL, 10);
    char canon[64];
    snprintf(canon, sizeof canon, "step_%08lld.h5", s);
    return strcmp(canon, name) ? -1 : s;
}

/* pid of a temporary named .step_XXXXXXXX.h5.tmp.<pid>, else -1. */
static long parse_tmp_name(const char *name) {
    if (strncmp(name, ".step_", 6)) return -1;
    const char *t = strstr(name, ".h5.tmp.");
    if (!t) return -1;
    const char *p = t + 8;
    if (!*p) return -1;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (*end || errno || pid <= 0) return -1;
    return pid;
}

static int cmp_desc(const void *x, const void *y) {
    long long a = *(const long long *)x, b = *(const long long *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* The step numbers of dir's checkpoints, newest first (malloc'd, may be NULL
 * when *n == 0). Returns 0, or -1 with errno set (opendir/readdir/ENOMEM). */
static int list_steps(const char *dir, long long **out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    long long *s = NULL;
    int cnt = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        long long st = parse_step_name(de->d_name);
        if (st < 0) continue;
        if (cnt == cap) {
            int nc = cap ? 2 * cap : 16;
            long long *ns = realloc(s, sizeof *ns * (size_t)nc);
            if (!ns) {
                free(s);
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            s = ns;
            cap = nc;
        }
        s[cnt++] = st;
        errno = 0;
    }
    int rd_err = errno;
    closedir(d);
    if (rd_err) {
        free(s);
        errno = rd_err;
        return -1;
    }
    if (cnt > 1) qsort(s, (size_t)cnt, sizeof *s, cmp_desc);
    *out = s;
    *n = cnt;
    return 0;
}

/* Removes temporaries of writers that are gone: ".step_*.h5.tmp.<pid>" whose
 * pid no longer exists (a writer killed mid-write). A live pid's file is left
 * alone (another writer may be at work; a recycled pid only delays the
 * clean-up). Best effort: errors are ignored. */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        long pid = parse_tmp_name(de->d_name);
        if (pid < 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_CAP];
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p) unlink(p);
    }
    closedir(d);
}

/* Keeps the `keep` newest checkpoints of dir by step number; the file just
 * written (step `just`) is never removed, even when an older timeline's
 * checkpoints have larger step numbers. Best effort. */
static void retain(const char *dir, int keep, long long just) {
    if (keep <= 0) return;
    long long *s;
    int n;
    if (list_steps(dir, &s, &n)) return;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] == just || kept < keep) {
            kept++;
            continue;
        }
        char p[PATH_CAP];
        if (snprintf(p, sizeof p, "%s/step_%08lld.h5", dir, s[i]) < (int)sizeof p) unlink(p);
    }
    free(s);
}

/* ------------------------------------------------------------------ writer */

static void w_attr(h5io *io, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *val) {
    if (io->err) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) {
        h5_fail(io, "H5Screate for attribute", name);
        return;
    }
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        h5_fail(io, "H5Acreate2", name);
    else if (H5Awrite(a, mtype, val) < 0)
        h5_fail(io, "H5Awrite", name);
    if (a >= 0 && H5Aclose(a) < 0) h5_fail(io, "H5Aclose", name);
    H5Sclose(sp);
}

/* A fixed-length, NUL-terminated UTF-8 string type of strlen(s)+1 bytes. */
static hid_t str_type(h5io *io, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(s) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        h5_fail(io, "H5Tcopy/H5Tset_size", "(string type)");
        if (t >= 0) H5Tclose(t);
        return -1;
    }
    return t;
}

static void w_attr_str(h5io *io, hid_t loc, const char *name, const char *s) {
    if (io->err) return;
    hid_t t = str_type(io, s);
    if (t < 0) return;
    w_attr(io, loc, name, t, t, s);
    H5Tclose(t);
}

static void w_i64(h5io *io, hid_t loc, const char *name, int64_t v) {
    w_attr(io, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static void w_u64(h5io *io, hid_t loc, const char *name, uint64_t v) {
    w_attr(io, loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
static void w_i32(h5io *io, hid_t loc, const char *name, int v) {
    w_attr(io, loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}
static void w_f32(h5io *io, hid_t loc, const char *name, float v) {
    w_attr(io, loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v);
}

/* Creates group `name` under loc (links tracked in creation order, so
 * listings come back in the adapter's graph order); -1 on error. */
static hid_t w_group(h5io *io, hid_t loc, const char *name) {
    if (io->err) return -1;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    if (gcpl < 0 || H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) {
        h5_fail(io, "H5Pcreate for group", name);
        if (gcpl >= 0) H5Pclose(gcpl);
        return -1;
    }
    hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0) h5_fail(io, "H5Gcreate2", name);
    H5Pclose(gcpl);
    return g;
}

static void w_close_group(h5io *io, hid_t g, const char *name) {
    if (g >= 0 && H5Gclose(g) < 0) h5_fail(io, "H5Gclose", name);
}

/* A numeric dataset of `rank` dims: one chunk (rows split only past 1 GiB)
 * with a Fletcher32 checksum; an empty one is contiguous (a chunk cannot be
 * empty). `full` names it in messages. */
static void w_dset(h5io *io, hid_t loc, const char *name, const char *full, hid_t ftype, hid_t mtype, int rank,
                   const hsize_t *dims, const void *data) {
    if (io->err) return;
    hsize_t n = 1, chunk[2];
    for (int i = 0; i < rank; i++) n *= dims[i], chunk[i] = dims[i];
    size_t esz = H5Tget_size(ftype);
    if (n > 0) {
        hsize_t row = esz;
        for (int i = 1; i < rank; i++) row *= dims[i];
        hsize_t max_rows = ((hsize_t)1 << 30) / (row ? row : 1);
        if (chunk[0] > max_rows) chunk[0] = max_rows ? max_rows : 1;
    }
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0 || (n > 0 && (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0))) {
        h5_fail(io, "H5Screate_simple/H5Pset_chunk for", full);
    } else {
        hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0)
            h5_fail(io, "H5Dcreate2", full);
        else if (n > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            h5_fail(io, "H5Dwrite", full);
        if (d >= 0 && H5Dclose(d) < 0) h5_fail(io, "H5Dclose", full);
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
}

/* /config: the INI text as one scalar string, compact (inside the checksummed
 * object header) when it fits. */
static void w_config(h5io *io, hid_t f, const char *text) {
    if (io->err) return;
    hid_t t = str_type(io, text);
    if (t < 0) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0 || (strlen(text) < 60000 && H5Pset_layout(dcpl, H5D_COMPACT) < 0)) {
        h5_fail(io, "H5Screate/H5Pset_layout for", "/config");
    } else {
        hid_t d = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0)
            h5_fail(io, "H5Dcreate2", "/config");
        else if (H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0)
            h5_fail(io, "H5Dwrite", "/config");
        if (d >= 0 && H5Dclose(d) < 0) h5_fail(io, "H5Dclose", "/config");
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    H5Tclose(t);
}

/* One tree (/adapter or an optimizer moment): <module>/lora_A, lora_B from
 * the flat buffer `buf`; /adapter's module groups also get r, alpha, scaling. */
static void w_tree(h5io *io, hid_t f, const char *tree, const lora_adapter *a, const float *buf, int with_attrs) {
    if (io->err) return;
    hid_t g = w_group(io, f, tree + 1);
    for (int i = 0; i < a->n_mod && !io->err; i++) {
        const lora_module *m = &a->mod[i];
        char mod[LORA_KEY], full[OBJ_CAP];
        module_name(mod, sizeof mod, a->tensor[m->tA].key);
        snprintf(full, sizeof full, "%s/%s", tree, mod);
        hid_t mg = w_group(io, g, mod);
        if (with_attrs) {
            w_i32(io, mg, "r", m->r);
            w_f32(io, mg, "alpha", a->spec.alpha);
            w_f32(io, mg, "scaling", m->scale);
        }
        const int tix[2] = {m->tA, m->tB};
        for (int k = 0; k < 2; k++) {
            const lora_tensor *t = &a->tensor[tix[k]];
            hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
            char dfull[OBJ_CAP];
            snprintf(dfull, sizeof dfull, "%s/%s", full, k ? "lora_B" : "lora_A");
            w_dset(io, mg, k ? "lora_B" : "lora_A", dfull, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, buf + t->off);
        }
        w_close_group(io, mg, full);
    }
    w_close_group(io, g, tree);
}

/* The whole file content, in the layout of checkpoint.h. */
static void w_content(h5io *io, hid_t f, const ckpt_state *st, const lora_adapter *a, const float *m, const float *v) {
    char created[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);

    w_attr_str(io, f, "format", CKPT_FORMAT);
    w_i32(io, f, "format_version", CKPT_VERSION);
    w_i64(io, f, "step", st->step);
    w_i64(io, f, "epoch", st->epoch);
    w_i64(io, f, "tokens_seen", st->tokens_seen);
    w_i32(io, f, "ranks", st->ranks);
    w_attr_str(io, f, "created", created);
    w_attr_str(io, f, "project_version", LORA_PROJECT_VERSION);

    w_config(io, f, st->config_text ? st->config_text : "");

    hid_t g = w_group(io, f, "base_model");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)st->model_hash);
    w_attr_str(io, g, "path", st->model_path ? st->model_path : "");
    w_u64(io, g, "size", st->model_size);
    w_attr_str(io, g, "hash", hex);
    w_close_group(io, g, "/base_model");

    w_tree(io, f, k_trees[0], a, a->w, 1);
    /* extension: the spec as configured, so ckpt_read_meta can describe
     * adapters with more modules than a lora_spec lists */
    if (!io->err) {
        char tm[LORA_MAX_TARGETS * LORA_NAME] = "";
        size_t len = 0;
        for (int t = 0; t < a->spec.n_targets && len < sizeof tm; t++)
            len += (size_t)snprintf(tm + len, sizeof tm - len, "%s%s", t ? "," : "", a->spec.targets[t]);
        hid_t ag = H5Gopen2(f, "adapter", H5P_DEFAULT);
        if (ag < 0) h5_fail(io, "H5Gopen2", "/adapter");
        w_attr_str(io, ag, "target_modules", tm);
        w_i32(io, ag, "target_regex", a->spec.target_regex);
        w_f32(io, ag, "dropout", a->spec.dropout);
        w_close_group(io, ag, "/adapter");
    }

    const char *kill_at = getenv("LORA_TEST_CKPT_KILL");
    if (kill_at && !strcmp(kill_at, "half") && !io->err) {
        /* test hook: a writer killed between the adapter and the optimizer;
         * what was written so far reaches the temporary file */
        H5Fflush(f, H5F_SCOPE_GLOBAL);
        _exit(86);
    }

    g = w_group(io, f, "optimizer");
    w_attr_str(io, g, "name", "adamw");
    w_i64(io, g, "step", st->opt_steps);
    w_f32(io, g, "lr", st->lr);
    w_f32(io, g, "beta1", st->beta1);
    w_f32(io, g, "beta2", st->beta2);
    w_f32(io, g, "eps", st->eps);
    w_f32(io, g, "weight_decay", st->weight_decay);
    w_close_group(io, g, "/optimizer");
    w_tree(io, f, k_trees[1], a, m, 0);
    w_tree(io, f, k_trees[2], a, v, 0);

    g = w_group(io, f, "schedule");
    w_attr_str(io, g, "kind", k_sched_names[st->schedule_kind]);
    w_f32(io, g, "lr", st->lr);
    w_i64(io, g, "warmup_steps", st->warmup_steps);
    w_i64(io, g, "total_steps", st->total_steps);
    w_f32(io, g, "min_lr_ratio", st->min_lr_ratio);
    w_i64(io, g, "position", st->step);
    w_close_group(io, g, "/schedule");

    g = w_group(io, f, "rng");
    w_u64(io, g, "init_seed", st->init_seed);
    w_u64(io, g, "data_seed", st->data_seed);
    w_u64(io, g, "dropout_seed", st->dropout_seed);
    w_close_group(io, g, "/rng");

    g = w_group(io, f, "data");
    w_i64(io, g, "cursor", st->data_cursor);
    w_i64(io, g, "epoch", st->epoch);
    w_i32(io, g, "seq_len", st->seq_len);
    w_attr_str(io, g, "sampling", k_sampling_names[st->sampling]);
    w_i64(io, g, "train_tokens", st->train_tokens);
    w_close_group(io, g, "/data");

    g = w_group(io, f, "metrics");
    hsize_t n = (hsize_t)st->n_metrics;
    w_dset(io, g, "step", "/metrics/step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, st->m_step);
    w_dset(io, g, "loss", "/metrics/loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, st->m_loss);
    w_dset(io, g, "lr", "/metrics/lr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, st->m_lr);
    w_dset(io, g, "tokens_per_s", "/metrics/tokens_per_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
           st->m_tokens_per_s);
    w_close_group(io, g, "/metrics");
}

static int fsync_path(const char *path, int dir, struct lerr *e) {
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0) return lerr_set(e, "%s: cannot open for fsync: %s", path, strerror(errno));
    /* some file systems cannot fsync a directory (EINVAL): nothing to wait for */
    if (fsync(fd) != 0 && !(dir && (errno == EINVAL || errno == ENOTSUP))) {
        int er = errno;
        close(fd);
        return lerr_set(e, "%s: fsync failed: %s", path, strerror(er));
    }
    close(fd);
    return 0;
}

int ckpt_write(const char *dir, const ckpt_state *st, const lora_adapter *a, const float *m, const float *v, int keep,
               char *path_out, size_t path_cap, struct lerr *e) {
    if (!dir || !st || !a || !a->w || !m || !v) return lerr_set(e, "ckpt_write: adapter, m and v are required");
    if (st->step < 0) return lerr_set(e, "ckpt_write: step %lld < 0", (long long)st->step);
    if (st->schedule_kind < 0 || st->schedule_kind >= N_SCHED)
        return lerr_set(e, "ckpt_write: unknown schedule kind %d", st->schedule_kind);
    if (st->sampling < 0 || st->sampling >= N_SAMPLING)
        return lerr_set(e, "ckpt_write: unknown sampling mode %d", st->sampling);
    if (st->n_metrics < 0 || (st->n_metrics > 0 && (!st->m_step || !st->m_loss || !st->m_lr || !st->m_tokens_per_s)))
        return lerr_set(e, "ckpt_write: %lld metrics rows but no arrays", (long long)st->n_metrics);
    char final[PATH_CAP], tmp[PATH_CAP];
    if (snprintf(final, sizeof final, "%s/step_%08lld.h5", dir, (long long)st->step) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.step_%08lld.h5.tmp.%ld", dir, (long long)st->step, (long)getpid()) >=
            (int)sizeof tmp)
        return lerr_set(e, "%s: checkpoint directory path too long", dir);
    if (mkdir_p(dir, e)) return lerr_prefix(e, "checkpoint directory");
    remove_stale_tmp(dir);

    h5quiet q;
    h5_quiet(&q);
    h5io io = {.path = final, .e = e}; /* messages name the checkpoint, not its temporary */
    hid_t fapl = file_access_plist();
    hid_t f = -1;
    if (fapl < 0)
        h5_fail(&io, "H5Pcreate", "(file access list)");
    else if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        h5_fail(&io, "H5Fcreate", tmp);
    if (fapl >= 0) H5Pclose(fapl);
    w_content(&io, f, st, a, m, v);
    if (!io.err && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) h5_fail(&io, "H5Fflush", "");
    if (f >= 0 && H5Fclose(f) < 0) h5_fail(&io, "H5Fclose", "");
    h5_restore(&q);

    if (!io.err && fsync_path(tmp, 0, e)) io.err = 1;
    if (!io.err && rename(tmp, final) != 0) {
        io.err = 1;
        lerr_set(e, "%s: rename to %s failed: %s", tmp, final, strerror(errno));
    }
    if (io.err) {
        unlink(tmp);
        return -1;
    }
    if (fsync_path(dir, 1, e)) return -1; /* the checkpoint exists but may not survive a power cut */
    retain(dir, keep, (long long)st->step);
    if (path_out && path_cap) snprintf(path_out, path_cap, "%s", final);
    return 0;
}

/* ------------------------------------------------------------------ reader */

/* Does link `name` exist in loc (a single component)? 1, 0, or -1 (error set). */
static int r_exists(h5io *io, hid_t loc, const char *name, const char *full) {
    htri_t x = H5Lexists(loc, name, H5P_DEFAULT);
    if (x < 0) return h5_fail(io, "H5Lexists", full);
    return x > 0;
}

static hid_t r_group(h5io *io, hid_t loc, const char *name, const char *full) {
    if (io->err) return -1;
    int x = r_exists(io, loc, name, full);
    if (x < 0) return -1;
    if (!x) return io_err(io, "group %s is missing (incomplete or not a lora-ps checkpoint)", full);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) h5_fail(io, "H5Gopen2", full);
    return g;
}

/* Opens attribute `name` of obj (named `full` in messages) and checks it
 * holds exactly one element of class `cls`; -1 on error. */
static hid_t r_attr_open(h5io *io, hid_t obj, const char *full, const char *name, H5T_class_t cls) {
    if (io->err) return -1;
    htri_t x = H5Aexists(obj, name);
    if (x < 0) return h5_fail(io, "H5Aexists", name);
    if (!x) return io_err(io, "attribute %s of %s is missing", name, full);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return h5_fail(io, "H5Aopen", name);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    int ok_cls = cls == H5T_STRING ? c == H5T_STRING : (c == H5T_INTEGER || c == H5T_FLOAT);
    if (np != 1 || !ok_cls) {
        H5Aclose(a);
        return io_err(io, "attribute %s of %s is not a single %s", name, full, cls == H5T_STRING ? "string" : "number");
    }
    return a;
}

/* A numeric attribute converted to `mtype` into out. */
static int r_num(h5io *io, hid_t obj, const char *full, const char *name, hid_t mtype, void *out) {
    hid_t a = r_attr_open(io, obj, full, name, H5T_INTEGER);
    if (a < 0) return -1;
    if (H5Aread(a, mtype, out) < 0) h5_fail(io, "H5Aread", name);
    H5Aclose(a);
    return io->err ? -1 : 0;
}

static int64_t r_i64(h5io *io, hid_t obj, const char *full, const char *name) {
    int64_t v = 0;
    r_num(io, obj, full, name, H5T_NATIVE_INT64, &v);
    return v;
}
static uint64_t r_u64(h5io *io, hid_t obj, const char *full, const char *name) {
    uint64_t v = 0;
    r_num(io, obj, full, name, H5T_NATIVE_UINT64, &v);
    return v;
}
static int r_int(h5io *io, hid_t obj, const char *full, const char *name) {
    int v = 0;
    r_num(io, obj, full, name, H5T_NATIVE_INT, &v);
    return v;
}
static float r_f32(h5io *io, hid_t obj, const char *full, const char *name) {
    float v = 0;
    r_num(io, obj, full, name, H5T_NATIVE_FLOAT, &v);
    return v;
}

/* Reads one string (fixed or variable length) from attribute or dataset `o`
 * (is_dset selects the calls) with file type t into a malloc'd string. */
static char *r_string_from(h5io *io, hid_t o, int is_dset, hid_t t, const char *full) {
    htri_t vl = H5Tis_variable_str(t);
    if (vl < 0) {
        h5_fail(io, "H5Tis_variable_str", full);
        return NULL;
    }
    char *out = NULL;
    if (vl) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *p = NULL;
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0)
            h5_fail(io, "H5Tset_size", full);
        else if ((is_dset ? H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) : H5Aread(o, mt, &p)) < 0)
            h5_fail(io, is_dset ? "H5Dread" : "H5Aread", full);
        else if (!(out = strdup(p ? p : "")))
            io_err(io, "%s: out of memory", full);
        if (p) H5free_memory(p);
        if (mt >= 0) H5Tclose(mt);
        return out;
    }
    size_t n = H5Tget_size(t);
    if (n == 0 || (hsize_t)n > io->file_size) {
        io_err(io, "%s: string of %zu bytes in a file of %llu bytes", full, n, (unsigned long long)io->file_size);
        return NULL;
    }
    out = malloc(n + 1);
    if (!out) {
        io_err(io, "%s: out of memory", full);
        return NULL;
    }
    if ((is_dset ? H5Dread(o, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : H5Aread(o, t, out)) < 0) {
        h5_fail(io, is_dset ? "H5Dread" : "H5Aread", full);
        free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

static char *r_str(h5io *io, hid_t obj, const char *full, const char *name) {
    hid_t a = r_attr_open(io, obj, full, name, H5T_STRING);
    if (a < 0) return NULL;
    char *s = NULL;
    hid_t t = H5Aget_type(a);
    if (t < 0)
        h5_fail(io, "H5Aget_type", name);
    else
        s = r_string_from(io, a, 0, t, name);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return s;
}

/* Opens dataset `name` of loc (full path `full`), checks its class and rank
 * and returns its dims; -1 on error. */
static hid_t r_dset(h5io *io, hid_t loc, const char *name, const char *full, H5T_class_t cls, int rank, hsize_t *dims) {
    if (io->err) return -1;
    int x = r_exists(io, loc, name, full);
    if (x < 0) return -1;
    if (!x) return io_err(io, "dataset %s is missing", full);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return h5_fail(io, "H5Dopen2", full);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rk = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t >= 0) H5Tclose(t);
    if (c != cls) {
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
        return io_err(io, "dataset %s has type class %d, expected %s", full, (int)c,
                      cls == H5T_FLOAT     ? "float"
                      : cls == H5T_INTEGER ? "integer"
                                           : "string");
    }
    if (rk != rank || (rank > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) != rank)) {
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
        return io_err(io, "dataset %s has rank %d, expected %d", full, rk, rank);
    }
    H5Sclose(sp);
    return d;
}

static int r_read(h5io *io, hid_t d, hid_t mtype, void *buf, const char *full) {
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) return h5_fail(io, "H5Dread", full);
    return 0;
}

/* What the header walk learns about the adapter trees. */
typedef struct {
    int n_mod;
    char (*mod)[LORA_KEY]; /* module group names in file order */
    int r;
    float alpha, scaling, dropout;
    char *target_modules; /* /adapter attrs (extension; NULL when absent) */
    int target_regex;
} ckpt_hdr;

static void hdr_free(ckpt_hdr *h) {
    free(h->mod);
    free(h->target_modules);
    memset(h, 0, sizeof *h);
}

/* Checks dataset <tree>/<mod>/<name> is a rank-2 float; dims to out. */
static int r_shape2(h5io *io, hid_t mg, const char *tree, const char *mod, const char *name, hsize_t *dims) {
    char full[OBJ_CAP];
    snprintf(full, sizeof full, "%s/%s/%s", tree, mod, name);
    hid_t d = r_dset(io, mg, name, full, H5T_FLOAT, 2, dims);
    if (d < 0) return -1;
    H5Dclose(d);
    return 0;
}

/* Lists /adapter's module groups and checks each: attrs r, alpha, scaling
 * (all modules alike), lora_A (r, in), lora_B (out, r), and the same two
 * shapes in both optimizer trees, which hold no other module. */
static int r_modules(h5io *io, hid_t f, ckpt_hdr *h) {
    hid_t ag = r_group(io, f, "adapter", "/adapter");
    if (ag < 0) return -1;
    H5G_info_t gi;
    hid_t gcpl = -1;
    unsigned crt = 0;
    if (H5Gget_info(ag, &gi) < 0) {
        h5_fail(io, "H5Gget_info", "/adapter");
        goto out;
    }
    if ((gcpl = H5Gget_create_plist(ag)) < 0 || H5Pget_link_creation_order(gcpl, &crt) < 0) {
        h5_fail(io, "H5Gget_create_plist", "/adapter");
        goto out;
    }
    H5_index_t idx = (crt & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    if (gi.nlinks == 0) {
        io_err(io, "/adapter holds no module");
        goto out;
    }
    if (gi.nlinks > 1000000) {
        io_err(io, "/adapter holds %llu links", (unsigned long long)gi.nlinks);
        goto out;
    }
    h->mod = calloc((size_t)gi.nlinks, sizeof *h->mod);
    if (!h->mod) {
        io_err(io, "out of memory");
        goto out;
    }
    /* extension attributes of /adapter (absent in files of other writers) */
    htri_t has_tm = H5Aexists(ag, "target_modules");
    if (has_tm > 0) {
        h->target_modules = r_str(io, ag, "/adapter", "target_modules");
        h->target_regex = r_int(io, ag, "/adapter", "target_regex");
    }
    if (H5Aexists(ag, "dropout") > 0) h->dropout = r_f32(io, ag, "/adapter", "dropout");
    if (io->err) goto out;
    hid_t trees[3] = {ag, -1, -1};
    hid_t og = r_group(io, f, "optimizer", "/optimizer");
    for (int k = 1; k < 3 && og >= 0; k++) trees[k] = r_group(io, og, k_trees[k] + 11, k_trees[k]);
    if (og >= 0) H5Gclose(og);
    for (int k = 1; k < 3 && !io->err; k++) {
        H5G_info_t oi;
        if (H5Gget_info(trees[k], &oi) < 0)
            h5_fail(io, "H5Gget_info", k_trees[k]);
        else if (oi.nlinks != gi.nlinks)
            io_err(io, "%s holds %llu modules, /adapter %llu", k_trees[k], (unsigned long long)oi.nlinks,
                   (unsigned long long)gi.nlinks);
    }
    for (hsize_t i = 0; i < gi.nlinks && !io->err; i++) {
        char *name = h->mod[h->n_mod];
        ssize_t len = H5Lget_name_by_idx(ag, ".", idx, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0) {
            h5_fail(io, "H5Lget_name_by_idx", "/adapter");
            break;
        }
        if ((size_t)len + strlen(SUFFIX_A) >= LORA_KEY || len == 0) {
            io_err(io, "/adapter: module name of %zd bytes (at most %zu)", len, LORA_KEY - 1 - strlen(SUFFIX_A));
            break;
        }
        if (H5Lget_name_by_idx(ag, ".", idx, H5_ITER_INC, i, name, LORA_KEY, H5P_DEFAULT) != len) {
            h5_fail(io, "H5Lget_name_by_idx", "/adapter");
            break;
        }
        char full[OBJ_CAP];
        snprintf(full, sizeof full, "/adapter/%s", name);
        hid_t mg = r_group(io, ag, name, full);
        if (mg < 0) break;
        int r = r_int(io, mg, full, "r");
        float alpha = r_f32(io, mg, full, "alpha"), scaling = r_f32(io, mg, full, "scaling");
        if (!io->err && (r <= 0 || !(alpha > 0) || !isfinite(alpha) || !isfinite(scaling)))
            io_err(io, "%s: bad r %d, alpha %g or scaling %g", full, r, alpha, scaling);
        if (!io->err && h->n_mod == 0) h->r = r, h->alpha = alpha, h->scaling = scaling;
        if (!io->err && (r != h->r || alpha != h->alpha || scaling != h->scaling))
            io_err(io,
                   "%s has r %d, alpha %g, scaling %g but the first module r %d, alpha %g, scaling %g (per-module "
                   "ranks are not supported)",
                   full, r, alpha, scaling, h->r, h->alpha, h->scaling);
        hsize_t dA[2] = {0, 0}, dB[2] = {0, 0};
        r_shape2(io, mg, "/adapter", name, "lora_A", dA);
        r_shape2(io, mg, "/adapter", name, "lora_B", dB);
        H5Gclose(mg);
        if (!io->err && (dA[0] != (hsize_t)r || dB[1] != (hsize_t)r || dA[1] == 0 || dB[0] == 0))
            io_err(io, "%s: lora_A (%llu, %llu) and lora_B (%llu, %llu) do not fit r = %d", full,
                   (unsigned long long)dA[0], (unsigned long long)dA[1], (unsigned long long)dB[0],
                   (unsigned long long)dB[1], r);
        for (int k = 1; k < 3 && !io->err; k++) {
            char ofull[OBJ_CAP];
            snprintf(ofull, sizeof ofull, "%s/%s", k_trees[k], name);
            hid_t og2 = r_group(io, trees[k], name, ofull);
            if (og2 < 0) break;
            hsize_t oA[2] = {0, 0}, oB[2] = {0, 0};
            r_shape2(io, og2, k_trees[k], name, "lora_A", oA);
            r_shape2(io, og2, k_trees[k], name, "lora_B", oB);
            H5Gclose(og2);
            if (!io->err && (oA[0] != dA[0] || oA[1] != dA[1] || oB[0] != dB[0] || oB[1] != dB[1]))
                io_err(io,
                       "%s: shapes (%llu, %llu) and (%llu, %llu) differ from /adapter's (%llu, %llu) and (%llu, %llu)",
                       ofull, (unsigned long long)oA[0], (unsigned long long)oA[1], (unsigned long long)oB[0],
                       (unsigned long long)oB[1], (unsigned long long)dA[0], (unsigned long long)dA[1],
                       (unsigned long long)dB[0], (unsigned long long)dB[1]);
        }
        if (!io->err) h->n_mod++;
    }
    for (int k = 1; k < 3; k++)
        if (trees[k] >= 0) H5Gclose(trees[k]);
out:
    if (gcpl >= 0) H5Pclose(gcpl);
    H5Gclose(ag);
    return io->err ? -1 : 0;
}

/* /metrics: four rank-1 datasets of one length n (bounded by the file size). */
static int r_metrics(h5io *io, hid_t f, ckpt_state *st, int read_values) {
    static const char *names[4] = {"step", "loss", "lr", "tokens_per_s"};
    hid_t g = r_group(io, f, "metrics", "/metrics");
    if (g < 0) return -1;
    hid_t d[4] = {-1, -1, -1, -1};
    hsize_t len[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4 && !io->err; i++) {
        char full[64];
        snprintf(full, sizeof full, "/metrics/%s", names[i]);
        d[i] = r_dset(io, g, names[i], full, i ? H5T_FLOAT : H5T_INTEGER, 1, &len[i]);
        if (!io->err && len[i] != len[0])
            io_err(io, "/metrics: %s has %llu rows but step has %llu", names[i], (unsigned long long)len[i],
                   (unsigned long long)len[0]);
    }
    if (!io->err && len[0] > io->file_size / 8)
        io_err(io, "/metrics claims %llu rows, more than the file holds", (unsigned long long)len[0]);
    if (!io->err && read_values && len[0] > 0) {
        size_t n = (size_t)len[0];
        st->m_step = malloc(n * sizeof *st->m_step);
        st->m_loss = malloc(n * sizeof *st->m_loss);
        st->m_lr = malloc(n * sizeof *st->m_lr);
        st->m_tokens_per_s = malloc(n * sizeof *st->m_tokens_per_s);
        if (!st->m_step || !st->m_loss || !st->m_lr || !st->m_tokens_per_s) {
            io_err(io, "/metrics: out of memory for %zu rows", n);
        } else {
            st->n_metrics = (int64_t)n;
            void *bufs[4] = {st->m_step, st->m_loss, st->m_lr, st->m_tokens_per_s};
            for (int i = 0; i < 4 && !io->err; i++)
                r_read(io, d[i], i ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, bufs[i], names[i]);
        }
    }
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
static int r_header(h5io *io, hid_t f, ckpt_state *st, ckpt_hdr *h, int read_metrics) {
    htri_t x = H5Aexists(f, "format");
    if (x < 0) return h5_fail(io, "H5Aexists", "format");
    if (!x) return io_err(io, "not a lora-ps checkpoint (no format attribute)");
    char *fmt = r_str(io, f, "/", "format");
    if (!fmt) return -1;
    if (strcmp(fmt, CKPT_FORMAT)) {
        io_err(io, "not a lora-ps checkpoint (format attribute '%.200s')", fmt);
        free(fmt);
        return -1;
    }
    free(fmt);
    int64_t ver = r_i64(io, f, "/", "format_version");
    if (io->err) return -1;
    if (ver != CKPT_VERSION)
        return io_err(io, "checkpoint format version %lld is not supported by this build (it reads version %d)",
                      (long long)ver, CKPT_VERSION);
    st->step = r_i64(io, f, "/", "step");
    st->epoch = r_i64(io, f, "/", "epoch");
    st->tokens_seen = r_i64(io, f, "/", "tokens_seen");
    st->ranks = r_int(io, f, "/", "ranks");
    if (io->err) return -1;

    /* /config */
    int cx = r_exists(io, f, "config", "/config");
    if (cx == 0) io_err(io, "dataset /config is missing");
    if (io->err) return -1;
    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
    if (d < 0) return h5_fail(io, "H5Dopen2", "/config");
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    if (t < 0 || sp < 0)
        h5_fail(io, "H5Dget_type", "/config");
    else if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1)
        io_err(io, "/config is not a single string");
    else
        st->config_text = r_string_from(io, d, 1, t, "/config");
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (io->err) return -1;

    hid_t g = r_group(io, f, "base_model", "/base_model");
    if (g < 0) return -1;
    st->model_path = r_str(io, g, "/base_model", "path");
    st->model_size = r_u64(io, g, "/base_model", "size");
    char *hex = r_str(io, g, "/base_model", "hash");
    H5Gclose(g);
    if (hex) {
        char *end;
        errno = 0;
        st->model_hash = strtoull(hex, &end, 16);
        if (strlen(hex) != 16 || *end || errno) io_err(io, "/base_model: hash '%.40s' is not 16 hex digits", hex);
        free(hex);
    }
    if (io->err) return -1;

    g = r_group(io, f, "optimizer", "/optimizer");
    if (g < 0) return -1;
    char *oname = r_str(io, g, "/optimizer", "name");
    if (oname && strcmp(oname, "adamw")) io_err(io, "/optimizer: unknown optimizer '%.100s'", oname);
    free(oname);
    st->opt_steps = r_i64(io, g, "/optimizer", "step");
    st->lr = r_f32(io, g, "/optimizer", "lr");
    st->beta1 = r_f32(io, g, "/optimizer", "beta1");
    st->beta2 = r_f32(io, g, "/optimizer", "beta2");
    st->eps = r_f32(io, g, "/optimizer", "eps");
    st->weight_decay = r_f32(io, g, "/optimizer", "weight_decay");
    H5Gclose(g);
    if (io->err) return -1;

    g = r_group(io, f, "schedule", "/schedule");
    if (g < 0) return -1;
    char *kind = r_str(io, g, "/schedule", "kind");
    if (kind && (st->schedule_kind = lookup(k_sched_names, N_SCHED, kind)) < 0)
        io_err(io, "/schedule: unknown kind '%.100s'", kind);
    free(kind);
    st->warmup_steps = r_i64(io, g, "/schedule", "warmup_steps");
    st->total_steps = r_i64(io, g, "/schedule", "total_steps");
    st->min_lr_ratio = r_f32(io, g, "/schedule", "min_lr_ratio");
    H5Gclose(g);
    if (io->err) return -1;

    g = r_group(io, f, "rng", "/rng");
    if (g < 0) return -1;
    st->init_seed = r_u64(io, g, "/rng", "init_seed");
    st->data_seed = r_u64(io, g, "/rng", "data_seed");
    st->dropout_seed = r_u64(io, g, "/rng", "dropout_seed");
    H5Gclose(g);
    if (io->err) return -1;

    g = r_group(io, f, "data", "/data");
    if (g < 0) return -1;
    st->data_cursor = r_i64(io, g, "/data", "cursor");
    st->seq_len = r_int(io, g, "/data", "seq_len");
    char *samp = r_str(io, g, "/data", "sampling");
    if (samp && (st->sampling = lookup(k_sampling_names, N_SAMPLING, samp)) < 0)
        io_err(io, "/data: unknown sampling '%.100s'", samp);
    free(samp);
    st->train_tokens = r_i64(io, g, "/data", "train_tokens");
    H5Gclose(g);
    if (io->err) return -1;

    if (r_modules(io, f, h)) return -1;
    return r_metrics(io, f, st, read_metrics);
}

/* Opens path read-only after the checks HDF5 reports badly (missing, not a
 * regular file, empty, no HDF5 signature); -1 with the message in io. */
static hid_t r_open(h5io *io) {
    struct stat sb;
    if (stat(io->path, &sb) != 0) return io_err(io, "cannot open: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode)) return io_err(io, "not a regular file");
    if (sb.st_size == 0) return io_err(io, "empty file (0 bytes; a checkpoint cut short?)");
    htri_t is = H5Fis_hdf5(io->path);
    if (is < 0) return h5_fail(io, "H5Fis_hdf5", "");
    if (!is) return io_err(io, "not an HDF5 file (no HDF5 signature; truncated or not a checkpoint)");
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 1, 1) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return h5_fail(io, "H5Pcreate", "(file access list)");
    }
    hid_t f = H5Fopen(io->path, H5F_ACC_RDONLY, fapl);
    if (f < 0) h5_fail(io, "H5Fopen", "");
    H5Pclose(fapl);
    if (f < 0) return -1;
    hsize_t fs = 0;
    if (H5Fget_filesize(f, &fs) < 0) {
        h5_fail(io, "H5Fget_filesize", "");
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
    memset(st, 0, sizeof *st);
}

/* Reads tree k's datasets into buf (flat layout of a). */
static int r_tree_values(h5io *io, hid_t f, int k, const lora_adapter *a, float *buf) {
    for (int i = 0; i < a->n_mod && !io->err; i++) {
        const lora_module *m = &a->mod[i];
        char mod[LORA_KEY];
        module_name(mod, sizeof mod, a->tensor[m->tA].key);
        const int tix[2] = {m->tA, m->tB};
        for (int j = 0; j < 2 && !io->err; j++) {
            const lora_tensor *t = &a->tensor[tix[j]];
            char full[OBJ_CAP];
            snprintf(full, sizeof full, "%s/%s/%s", k_trees[k], mod, j ? "lora_B" : "lora_A");
            hid_t d = H5Dopen2(f, full, H5P_DEFAULT);
            if (d < 0) {
                h5_fail(io, "H5Dopen2", full);
                break;
            }
            hid_t sp = H5Dget_space(d);
            hsize_t dims[2] = {0, 0};
            if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != 2)
                io_err(io, "dataset %s is not 2-D", full);
            else if (dims[0] != (hsize_t)t->rows || dims[1] != (hsize_t)t->cols)
                io_err(io,
                       "dataset %s has shape (%llu, %llu) but the adapter expects (%d, %d) (checkpoint of a "
                       "different r or model?)",
                       full, (unsigned long long)dims[0], (unsigned long long)dims[1], t->rows, t->cols);
            else if (buf)
                r_read(io, d, H5T_NATIVE_FLOAT, buf + t->off, full);
            if (sp >= 0) H5Sclose(sp);
            H5Dclose(d);
        }
    }
    return io->err ? -1 : 0;
}

int ckpt_read(const char *path, ckpt_state *st, lora_adapter *a, float *m, float *v, struct lerr *e) {
    memset(st, 0, sizeof *st);
    h5quiet q;
    h5_quiet(&q);
    h5io io = {.path = path, .e = e};
    ckpt_hdr h;
    memset(&h, 0, sizeof h);
    hid_t f = r_open(&io);
    if (f >= 0) r_header(&io, f, st, &h, 1);
    /* every module of the file must be one of the adapter's, and the reverse */
    for (int i = 0; i < h.n_mod && !io.err; i++) {
        char key[LORA_KEY + 16];
        snprintf(key, sizeof key, "%s" SUFFIX_A, h.mod[i]);
        if (!lora_find(a, key))
            io_err(&io, "module %s of the checkpoint is not in this adapter (different target modules?)", h.mod[i]);
    }
    for (int i = 0; i < a->n_mod && !io.err; i++) {
        char mod[LORA_KEY];
        module_name(mod, sizeof mod, a->tensor[a->mod[i].tA].key);
        int j = 0;
        while (j < h.n_mod && strcmp(h.mod[j], mod)) j++;
        if (j == h.n_mod)
            io_err(&io, "module %s of the adapter is missing from the checkpoint (different target modules?)", mod);
    }
    float *bufs[3] = {a->w, m, v};
    for (int k = 0; k < 3 && !io.err; k++) r_tree_values(&io, f, k, a, bufs[k]);
    if (f >= 0) H5Fclose(f);
    h5_restore(&q);
    hdr_free(&h);
    if (io.err) {
        ckpt_state_free(st);
        return -1;
    }
    return 0;
}

int ckpt_read_meta(const char *path, ckpt_state *st, lora_spec *spec_out, struct lerr *e) {
    memset(st, 0, sizeof *st);
    h5quiet q;
    h5_quiet(&q);
    h5io io = {.path = path, .e = e};
    ckpt_hdr h;
    memset(&h, 0, sizeof h);
    hid_t f = r_open(&io);
    if (f >= 0) {
        r_header(&io, f, st, &h, 0);
        H5Fclose(f);
    }
    h5_restore(&q);
    lora_spec local; /* derived even when not asked for: a file whose spec makes no sense is invalid */
    lora_spec *s = spec_out ? spec_out : &local;
    if (!io.err) {
        memset(s, 0, sizeof *s);
        s->r = h.r;
        s->alpha = h.alpha;
        s->dropout = h.dropout;
        float plain = h.alpha / (float)h.r, rs = h.alpha / sqrtf((float)h.r);
        if (fabsf(h.scaling - plain) <= 1e-6f * plain)
            s->rslora = 0;
        else if (fabsf(h.scaling - rs) <= 1e-6f * rs)
            s->rslora = 1;
        else
            io_err(&io, "scaling %g is neither alpha/r = %g nor alpha/sqrt(r) = %g", h.scaling, plain, rs);
        if (!io.err && h.n_mod <= LORA_MAX_TARGETS) {
            /* peft's view: every adapted module by its full path */
            for (int i = 0; i < h.n_mod; i++) {
                const char *n = h.mod[i];
                if (!strncmp(n, PEFT_PREFIX, strlen(PEFT_PREFIX))) n += strlen(PEFT_PREFIX);
                if (strlen(n) >= LORA_NAME) {
                    io_err(&io, "module path '%s' too long", n);
                    break;
                }
                snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", n);
            }
        } else if (!io.err && h.target_modules) {
            /* more modules than a spec lists: the targets as configured,
             * which select the same modules of the same model */
            s->target_regex = h.target_regex != 0;
            if (s->target_regex) { /* one regex, commas and all */
                if (strlen(h.target_modules) >= LORA_NAME)
                    io_err(&io, "/adapter: target_modules regex longer than %d bytes", LORA_NAME - 1);
                else
                    snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", h.target_modules);
            }
            for (char *p = h.target_modules, *tok; !s->target_regex && !io.err && (tok = strsep(&p, ","));) {
                if (!*tok) continue;
                if (s->n_targets >= LORA_MAX_TARGETS || strlen(tok) >= LORA_NAME)
                    io_err(&io, "/adapter: target_modules too long");
                else
                    snprintf(s->targets[s->n_targets++], LORA_NAME, "%s", tok);
            }
            if (!io.err && s->n_targets == 0) io_err(&io, "/adapter: target_modules is empty");
        } else if (!io.err) {
            io_err(&io, "%d adapted modules, more than a spec lists (%d), and no target_modules attribute", h.n_mod,
                   LORA_MAX_TARGETS);
        }
    }
    hdr_free(&h);
    if (io.err) {
        ckpt_state_free(st);
        return -1;
    }
    return 0;
}

int ckpt_find_latest(const char *dir, char *path_out, size_t cap, char *warn, size_t warn_cap, struct lerr *e) {
    return ckpt_find_latest_below(dir, INT64_MAX, path_out, cap, warn, warn_cap, e);
}

int ckpt_find_latest_below(const char *dir, int64_t below, char *path_out, size_t cap, char *warn, size_t warn_cap,
                           struct lerr *e) {
    if (warn && warn_cap) warn[0] = 0;
    long long *s;
    int n;
    if (list_steps(dir, &s, &n)) {
        if (errno == ENOENT) return 0;
        return lerr_set(e, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    int found = 0;
    for (int i = 0; i < n && !found; i++) {
        if (s[i] >= below) continue;
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/step_%08lld.h5", dir, s[i]);
        ckpt_state st;
        struct lerr why;
        why.msg[0] = 0;
        if (ckpt_read_meta(p, &st, NULL, &why) == 0) {
            ckpt_state_free(&st);
            if (path_out && cap) snprintf(path_out, cap, "%s", p);
            found = 1;
        } else if (warn && warn_cap) {
            size_t len = strlen(warn);
            /* why.msg already names the path */
            snprintf(warn + len, warn_cap - len, "warning: skipping %s: %s\n", p,
                     strncmp(why.msg, p, strlen(p)) ? why.msg : why.msg + strlen(p) + 2);
        }
    }
    free(s);
    return found;
}
