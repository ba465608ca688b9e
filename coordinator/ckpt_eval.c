/*
 * /metrics/eval of a checkpoint: the evaluations of the run so far (one row
 * per end of epoch evaluated), so that a resumed run keeps its history and
 * knows its best adapter. h5dump shows one rank-1 dataset per column:
 *   /metrics/eval/step, /metrics/eval/epoch (int64),
 *   /metrics/eval/<metric> (float64; NaN where the task has no such metric).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_h5.h"

const char *const ckpt_eval_names[CKPT_EVAL_N] = {"loss",      "perplexity", "accuracy", "macro_f1",
                                                  "precision", "recall",     "f1",       "token_accuracy"};

void ckpt_w_eval(ckpt_io *io, hid_t g, const ckpt_state *st) {
    hid_t eg = ckpt_w_group(io, g, "eval");
    hsize_t n = (hsize_t)st->n_evals;
    ckpt_w_dset(io, eg, "step", "/metrics/eval/step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, st->ev_step);
    ckpt_w_dset(io, eg, "epoch", "/metrics/eval/epoch", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, st->ev_epoch);
    double *col = n ? malloc((size_t)n * sizeof *col) : NULL;
    if (n && !col) ckpt_io_err(io, "/metrics/eval: out of memory for %llu rows", (unsigned long long)n);
    for (int k = 0; k < CKPT_EVAL_N && !io->err; k++) {
        char full[64];
        snprintf(full, sizeof full, "/metrics/eval/%s", ckpt_eval_names[k]);
        for (hsize_t i = 0; i < n; i++) col[i] = st->ev_values[i * CKPT_EVAL_N + (hsize_t)k];
        ckpt_w_dset(io, eg, ckpt_eval_names[k], full, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, col);
    }
    free(col);
    ckpt_w_close_group(io, eg, "/metrics/eval");
}

int ckpt_r_eval(ckpt_io *io, hid_t g, ckpt_state *st, int read_values) {
    int x = ckpt_r_exists(io, g, "eval", "/metrics/eval");
    if (x <= 0) return x; /* a file from before evaluations were stored: no rows */
    hid_t eg = ckpt_r_group(io, g, "eval", "/metrics/eval");
    if (eg < 0) return -1;
    enum { NC = CKPT_EVAL_N + 2 };
    hid_t d[NC];
    hsize_t len[NC];
    char full[NC][64];
    for (int i = 0; i < NC; i++) {
        d[i] = -1, len[i] = 0;
        snprintf(full[i], sizeof full[i], "/metrics/eval/%s",
                 i == 0 ? "step" : i == 1 ? "epoch" : ckpt_eval_names[i - 2]);
    }
    for (int i = 0; i < NC && !io->err; i++) {
        d[i] = ckpt_r_dset(io, eg, strrchr(full[i], '/') + 1, full[i], i < 2 ? H5T_INTEGER : H5T_FLOAT, 1, &len[i]);
        if (!io->err && len[i] != len[0])
            ckpt_io_err(io, "%s has %llu rows but /metrics/eval/step has %llu", full[i], (unsigned long long)len[i],
                        (unsigned long long)len[0]);
    }
    if (!io->err && len[0] > io->file_size / 8)
        ckpt_io_err(io, "/metrics/eval claims %llu rows, more than the file holds", (unsigned long long)len[0]);
    if (!io->err && read_values && len[0] > 0) {
        size_t n = (size_t)len[0];
        st->ev_step = malloc(n * sizeof *st->ev_step);
        st->ev_epoch = malloc(n * sizeof *st->ev_epoch);
        st->ev_values = malloc(n * CKPT_EVAL_N * sizeof *st->ev_values);
        double *col = malloc(n * sizeof *col);
        if (!st->ev_step || !st->ev_epoch || !st->ev_values || !col) {
            ckpt_io_err(io, "/metrics/eval: out of memory for %zu rows", n);
        } else {
            st->n_evals = (int64_t)n;
            ckpt_r_read(io, d[0], H5T_NATIVE_INT64, st->ev_step, full[0]);
            ckpt_r_read(io, d[1], H5T_NATIVE_INT64, st->ev_epoch, full[1]);
            for (int k = 0; k < CKPT_EVAL_N && !io->err; k++)
                if (!ckpt_r_read(io, d[k + 2], H5T_NATIVE_DOUBLE, col, full[k + 2]))
                    for (size_t i = 0; i < n; i++) st->ev_values[i * CKPT_EVAL_N + (size_t)k] = col[i];
            for (size_t i = 0; i < n && !io->err; i++) {
                if (st->ev_step[i] < 1 || st->ev_step[i] > st->step)
                    ckpt_io_err(io, "/metrics/eval/step[%zu] = %lld is outside [1, %lld] (the checkpoint's step)", i,
                                (long long)st->ev_step[i], (long long)st->step);
                else if (st->ev_epoch[i] < 1)
                    ckpt_io_err(io, "/metrics/eval/epoch[%zu] = %lld is not a positive epoch", i,
                                (long long)st->ev_epoch[i]);
            }
        }
        free(col);
    }
    for (int i = 0; i < NC; i++)
        if (d[i] >= 0) H5Dclose(d[i]);
    H5Gclose(eg);
    return io->err ? -1 : 0;
}
