/*
 * ckpt_: writing checkpoints, and the checkpoint directory (see
 * include/checkpoint.h and docs/checkpoint-format.md).
 *
 * Owns the on-disk layout as written, the atomic write, retention, the clean-up
 * of dead writers' temporaries, and finding the newest valid checkpoint. Called
 * by the coordinator (rank 0) to write and by the resume path to look for a
 * checkpoint. No MPI.
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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_h5.h"
#include "util.h"

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

/* /config: the INI text as one scalar string, compact (inside the checksummed
 * object header) when it fits. */
static void w_config(ckpt_io *io, hid_t f, const char *text) {
    if (io->err) return;
    hid_t t = ckpt_str_type(io, text);
    if (t < 0) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0 || (strlen(text) < 60000 && H5Pset_layout(dcpl, H5D_COMPACT) < 0)) {
        ckpt_h5_fail(io, "H5Screate/H5Pset_layout for", "/config");
    } else {
        hid_t d = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0)
            ckpt_h5_fail(io, "H5Dcreate2", "/config");
        else if (H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0)
            ckpt_h5_fail(io, "H5Dwrite", "/config");
        if (d >= 0 && H5Dclose(d) < 0) ckpt_h5_fail(io, "H5Dclose", "/config");
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    H5Tclose(t);
}

/* The format version a's checkpoint is written in: 1 (byte-compatible with
 * version-1 readers) unless the adapter has whole tensors. */
static int file_version(const lora_adapter *a) { return a->n_whole > 0 ? CKPT_VERSION : CKPT_VERSION_LORA; }

/* The adapter's table is one the format can hold: every tensor has a place
 * (ckpt_tensor_place), a whole tensor's group is not also a LoRA module's
 * (both would be one HDF5 group), shapes are positive (1-D: rows = 1) and the
 * modules_to_save names can be listed comma-separated. Checked before any
 * file is created. */
static int check_layout(const lora_adapter *a, struct lerr *e) {
    int n_lora = 0, n_whole = 0;
    for (int i = 0; i < a->n_tensor; i++) {
        const lora_tensor *t = &a->tensor[i];
        char grp[LORA_KEY], ds[LORA_KEY];
        if (t->kind == LORA_KIND_WHOLE)
            n_whole++;
        else
            n_lora++;
        if (t->rows < 1 || t->cols < 1 || (t->kind == LORA_KIND_WHOLE) != (t->mt >= 0) ||
            (t->ndim != 2 && !(t->kind == LORA_KIND_WHOLE && t->ndim == 1 && t->rows == 1)))
            return lerr_set(e, "ckpt_write: tensor %s: kind %d, %d-D (%d, %d) cannot be checkpointed", t->key,
                            (int)t->kind, t->ndim, t->rows, t->cols);
        if (ckpt_tensor_place(t, grp, ds))
            return lerr_set(e, "ckpt_write: whole tensor %s: its key has no module part (MODULE.NAME)", t->key);
        if (t->kind != LORA_KIND_WHOLE) continue;
        for (int j = 0; j < a->n_mod; j++) {
            char mg[LORA_KEY], md[LORA_KEY];
            ckpt_tensor_place(&a->tensor[a->mod[j].tA], mg, md);
            if (!strcmp(mg, grp))
                return lerr_set(e,
                                "ckpt_write: module %s is both LoRA-adapted and trained whole (%s): a checkpoint "
                                "cannot hold both",
                                grp, t->key);
        }
    }
    if (n_lora != 2 * a->n_mod || n_whole != a->n_whole)
        return lerr_set(e, "ckpt_write: the adapter's table has %d LoRA and %d whole tensors, expected %d and %d",
                        n_lora, n_whole, 2 * a->n_mod, a->n_whole);
    for (int k = 0; k < a->spec.n_save; k++)
        if (strchr(a->spec.save[k], ','))
            return lerr_set(e, "ckpt_write: modules_to_save name '%s' holds a comma", a->spec.save[k]);
    return 0;
}

/* One tree (/adapter or an optimizer moment) from the flat buffer `buf`,
 * walking the adapter's tensor table: a LoRA module's group (at its lora_A)
 * with lora_A and lora_B, a whole tensor's dataset in its module's group
 * (created at the module's first tensor). In /adapter, LoRA groups get r,
 * alpha, scaling and whole groups kind = "whole". */
static void w_tree(ckpt_io *io, hid_t f, const char *tree, const lora_adapter *a, const float *buf, int with_attrs) {
    if (io->err) return;
    hid_t g = ckpt_w_group(io, f, tree + 1);
    for (int i = 0; i < a->n_tensor && !io->err; i++) {
        const lora_tensor *t = &a->tensor[i];
        if (t->kind == LORA_KIND_B) continue; /* written with its module's lora_A */
        char grp[LORA_KEY], ds[LORA_KEY], full[OBJ_CAP], dfull[OBJ_CAP];
        ckpt_tensor_place(t, grp, ds);
        snprintf(full, sizeof full, "%s/%s", tree, grp);
        if (t->kind == LORA_KIND_WHOLE) {
            int x = ckpt_r_exists(io, g, grp, full);
            hid_t mg = x < 0 ? -1 : x ? H5Gopen2(g, grp, H5P_DEFAULT) : ckpt_w_group(io, g, grp);
            if (x > 0 && mg < 0) ckpt_h5_fail(io, "H5Gopen2", full);
            if (!x && with_attrs) ckpt_w_str(io, mg, "kind", "whole");
            hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
            snprintf(dfull, sizeof dfull, "%s/%s", full, ds);
            ckpt_w_dset(io, mg, ds, dfull, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim, t->ndim == 2 ? dims : dims + 1,
                        buf + t->off);
            ckpt_w_close_group(io, mg, full);
            continue;
        }
        const lora_module *m = NULL;
        for (int j = 0; j < a->n_mod && !m; j++)
            if (a->mod[j].tA == i) m = &a->mod[j];
        if (!m) {
            ckpt_io_err(io, "tensor %s: lora_A of no module", t->key);
            break;
        }
        hid_t mg = ckpt_w_group(io, g, grp);
        if (with_attrs) {
            ckpt_w_i32(io, mg, "r", m->r);
            ckpt_w_f32(io, mg, "alpha", a->spec.alpha);
            ckpt_w_f32(io, mg, "scaling", m->scale);
        }
        const int tix[2] = {m->tA, m->tB};
        for (int k = 0; k < 2; k++) {
            const lora_tensor *tk = &a->tensor[tix[k]];
            hsize_t dims[2] = {(hsize_t)tk->rows, (hsize_t)tk->cols};
            snprintf(dfull, sizeof dfull, "%s/%s", full, k ? "lora_B" : "lora_A");
            ckpt_w_dset(io, mg, k ? "lora_B" : "lora_A", dfull, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims,
                        buf + tk->off);
        }
        ckpt_w_close_group(io, mg, full);
    }
    ckpt_w_close_group(io, g, tree);
}

/* The whole file content, in the layout of checkpoint.h. */
static void w_content(ckpt_io *io, hid_t f, const ckpt_state *st, const lora_adapter *a, const float *m,
                      const float *v) {
    char created[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);

    ckpt_w_str(io, f, "format", CKPT_FORMAT);
    ckpt_w_i32(io, f, "format_version", file_version(a));
    ckpt_w_i64(io, f, "step", st->step);
    ckpt_w_i64(io, f, "epoch", st->epoch);
    ckpt_w_i64(io, f, "tokens_seen", st->tokens_seen);
    ckpt_w_i32(io, f, "ranks", st->ranks);
    ckpt_w_str(io, f, "created", created);
    ckpt_w_str(io, f, "project_version", LORA_PROJECT_VERSION);

    w_config(io, f, st->config_text ? st->config_text : "");

    hid_t g = ckpt_w_group(io, f, "base_model");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)st->model_hash);
    ckpt_w_str(io, g, "path", st->model_path ? st->model_path : "");
    ckpt_w_u64(io, g, "size", st->model_size);
    ckpt_w_str(io, g, "hash", hex);
    ckpt_w_close_group(io, g, "/base_model");

    w_tree(io, f, ckpt_trees[0], a, a->w, 1);
    /* extension: the spec as configured, so ckpt_read_meta can describe
     * adapters with more modules than a lora_spec lists */
    if (!io->err) {
        char tm[LORA_MAX_TARGETS * LORA_NAME] = "";
        size_t len = 0;
        for (int t = 0; t < a->spec.n_targets && len < sizeof tm; t++)
            len += (size_t)snprintf(tm + len, sizeof tm - len, "%s%s", t ? "," : "", a->spec.targets[t]);
        hid_t ag = H5Gopen2(f, "adapter", H5P_DEFAULT);
        if (ag < 0) ckpt_h5_fail(io, "H5Gopen2", "/adapter");
        ckpt_w_str(io, ag, "target_modules", tm);
        ckpt_w_i32(io, ag, "target_regex", a->spec.target_regex);
        ckpt_w_f32(io, ag, "dropout", a->spec.dropout);
        if (file_version(a) >= 2) { /* absent from version-1 files, which have no whole tensor */
            char ms[LORA_MAX_SAVE * LORA_NAME] = "";
            len = 0;
            for (int t = 0; t < a->spec.n_save && len < sizeof ms; t++)
                len += (size_t)snprintf(ms + len, sizeof ms - len, "%s%s", t ? "," : "", a->spec.save[t]);
            ckpt_w_str(io, ag, "modules_to_save", ms);
            ckpt_w_i32(io, ag, "full_finetune", a->full != 0);
        }
        ckpt_w_close_group(io, ag, "/adapter");
    }

    const char *kill_at = getenv("LORA_TEST_CKPT_KILL");
    if (kill_at && !strcmp(kill_at, "half") && !io->err) {
        /* test hook: a writer killed between the adapter and the optimizer;
         * what was written so far reaches the temporary file */
        H5Fflush(f, H5F_SCOPE_GLOBAL);
        _exit(86);
    }

    g = ckpt_w_group(io, f, "optimizer");
    ckpt_w_str(io, g, "name", "adamw");
    ckpt_w_i64(io, g, "step", st->opt_steps);
    ckpt_w_f32(io, g, "lr", st->lr);
    ckpt_w_f32(io, g, "beta1", st->beta1);
    ckpt_w_f32(io, g, "beta2", st->beta2);
    ckpt_w_f32(io, g, "eps", st->eps);
    ckpt_w_f32(io, g, "weight_decay", st->weight_decay);
    ckpt_w_close_group(io, g, "/optimizer");
    w_tree(io, f, ckpt_trees[1], a, m, 0);
    w_tree(io, f, ckpt_trees[2], a, v, 0);

    g = ckpt_w_group(io, f, "schedule");
    ckpt_w_str(io, g, "kind", ckpt_sched_names[st->schedule_kind]);
    ckpt_w_f32(io, g, "lr", st->lr);
    ckpt_w_i64(io, g, "warmup_steps", st->warmup_steps);
    ckpt_w_i64(io, g, "total_steps", st->total_steps);
    ckpt_w_f32(io, g, "min_lr_ratio", st->min_lr_ratio);
    ckpt_w_i64(io, g, "position", st->step);
    ckpt_w_close_group(io, g, "/schedule");

    g = ckpt_w_group(io, f, "rng");
    ckpt_w_u64(io, g, "init_seed", st->init_seed);
    ckpt_w_u64(io, g, "data_seed", st->data_seed);
    ckpt_w_u64(io, g, "dropout_seed", st->dropout_seed);
    ckpt_w_close_group(io, g, "/rng");

    g = ckpt_w_group(io, f, "data");
    ckpt_w_i64(io, g, "cursor", st->data_cursor);
    ckpt_w_i64(io, g, "epoch", st->epoch);
    ckpt_w_i32(io, g, "seq_len", st->seq_len);
    ckpt_w_str(io, g, "sampling", ckpt_sampling_names[st->sampling]);
    ckpt_w_i64(io, g, "train_tokens", st->train_tokens);
    ckpt_w_close_group(io, g, "/data");

    g = ckpt_w_group(io, f, "metrics");
    hsize_t n = (hsize_t)st->n_metrics;
    ckpt_w_dset(io, g, "step", "/metrics/step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, st->m_step);
    ckpt_w_dset(io, g, "loss", "/metrics/loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, st->m_loss);
    ckpt_w_dset(io, g, "lr", "/metrics/lr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, st->m_lr);
    ckpt_w_dset(io, g, "tokens_per_s", "/metrics/tokens_per_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
                st->m_tokens_per_s);
    ckpt_w_eval(io, g, st);
    ckpt_w_close_group(io, g, "/metrics");
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
    if (st->schedule_kind < 0 || st->schedule_kind >= CKPT_N_SCHED)
        return lerr_set(e, "ckpt_write: unknown schedule kind %d", st->schedule_kind);
    if (st->sampling < 0 || st->sampling >= CKPT_N_SAMPLING)
        return lerr_set(e, "ckpt_write: unknown sampling mode %d", st->sampling);
    if (st->n_metrics < 0 || (st->n_metrics > 0 && (!st->m_step || !st->m_loss || !st->m_lr || !st->m_tokens_per_s)))
        return lerr_set(e, "ckpt_write: %lld metrics rows but no arrays", (long long)st->n_metrics);
    if (st->n_evals < 0 || (st->n_evals > 0 && (!st->ev_step || !st->ev_epoch || !st->ev_values)))
        return lerr_set(e, "ckpt_write: %lld evaluation rows but no arrays", (long long)st->n_evals);
    if (check_layout(a, e)) return -1;
    char final[PATH_CAP], tmp[PATH_CAP];
    if (snprintf(final, sizeof final, "%s/step_%08lld.h5", dir, (long long)st->step) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.step_%08lld.h5.tmp.%ld", dir, (long long)st->step, (long)getpid()) >=
            (int)sizeof tmp)
        return lerr_set(e, "%s: checkpoint directory path too long", dir);
    if (mkdir_p(dir, e)) return lerr_prefix(e, "checkpoint directory");
    remove_stale_tmp(dir);

    ckpt_quiet q;
    ckpt_h5_quiet(&q);
    ckpt_io io = {.path = final, .e = e}; /* messages name the checkpoint, not its temporary */
    hid_t fapl = file_access_plist();
    hid_t f = -1;
    if (fapl < 0)
        ckpt_h5_fail(&io, "H5Pcreate", "(file access list)");
    else if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        ckpt_h5_fail(&io, "H5Fcreate", tmp);
    if (fapl >= 0) H5Pclose(fapl);
    w_content(&io, f, st, a, m, v);
    if (!io.err && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) ckpt_h5_fail(&io, "H5Fflush", "");
    if (f >= 0 && H5Fclose(f) < 0) ckpt_h5_fail(&io, "H5Fclose", "");
    ckpt_h5_restore(&q);

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
