/*
 * ckpt_ (private): what the checkpoint writer (ckpt_write.c) and reader
 * (ckpt_read.c) share, implemented in ckpt_h5.c: HDF5 error handling (a
 * sticky error flag and one lerr line per failure), the typed attribute and
 * dataset helpers on both sides, the object names of the format, and the
 * name tables. Not a public header: only coordinator/ckpt_*.c include it.
 *
 * The writers, ckpt_r_group, the attribute readers and ckpt_r_dset are no-ops
 * (returning -1, 0 or NULL) once io->err is set, so a sequence of calls is
 * checked once at its end and only the first error is reported;
 * ckpt_r_exists, ckpt_r_string_from and ckpt_r_read always run. Errors read "PATH: <call> failed: <innermost HDF5 description>"
 * (ckpt_h5_fail) or "PATH: <message>" (ckpt_io_err).
 */
#ifndef CKPT_H5_H
#define CKPT_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

#define PEFT_PREFIX "base_model.model."
#define SUFFIX_A ".lora_A.weight"
#define SUFFIX_B ".lora_B.weight"
#define PATH_CAP 4096
#define OBJ_CAP 512 /* an HDF5 object path inside the file */

/* The three trees that share the adapter layout: values, AdamW m, AdamW v. */
extern const char *const ckpt_trees[3];
/* /schedule kind by sched_kind, /data sampling by run_config's data_mode (0, 1). */
#define CKPT_N_SCHED 3
#define CKPT_N_SAMPLING 2
extern const char *const ckpt_sched_names[CKPT_N_SCHED];
extern const char *const ckpt_sampling_names[CKPT_N_SAMPLING];

/* Silences HDF5's automatic error-stack printing for one public call. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} ckpt_quiet;
void ckpt_h5_quiet(ckpt_quiet *q);
void ckpt_h5_restore(const ckpt_quiet *q);

/* I/O context: the file's path for messages and a sticky error flag, so a
 * writer can run a sequence of steps and check once at the end (each step is
 * a no-op once an error is set, and only the first error is reported). */
typedef struct {
    const char *path;
    struct lerr *e;
    int err;
    hsize_t file_size; /* reader: bound for sizes read from the file */
} ckpt_io;

/* Records that HDF5 call `call` (on object `what`, may be "") failed, with the
 * innermost description of HDF5's error stack. Must run right after the
 * failing call: the next HDF5 call clears the stack. Returns -1. */
int ckpt_h5_fail(ckpt_io *io, const char *call, const char *what);
/* Records a validation error "PATH: message". Returns -1. */
int ckpt_io_err(ckpt_io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where tensor t lives in each tree: group[LORA_KEY] gets its module's group
 * name and dset[LORA_KEY] its dataset's. LoRA A/B: peft's module path (the key
 * without ".lora_A.weight" / ".lora_B.weight"), dataset lora_A / lora_B. A
 * whole tensor: the key up to its last '.', dataset the last component
 * (base_model.model.classifier.bias: group base_model.model.classifier,
 * dataset bias). -1 when a whole tensor's key has no such split or holds a
 * '/' (HDF5's path separator). */
int ckpt_tensor_place(const lora_tensor *t, char *group, char *dset);

/* ---- writing: scalar attributes (file type ftype, memory type mtype), groups, datasets */
void ckpt_w_attr(ckpt_io *io, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *val);
/* A fixed-length, NUL-terminated UTF-8 string type of strlen(s)+1 bytes; -1 on error. */
hid_t ckpt_str_type(ckpt_io *io, const char *s);
void ckpt_w_str(ckpt_io *io, hid_t loc, const char *name, const char *s);
void ckpt_w_i64(ckpt_io *io, hid_t loc, const char *name, int64_t v);
void ckpt_w_u64(ckpt_io *io, hid_t loc, const char *name, uint64_t v);
void ckpt_w_i32(ckpt_io *io, hid_t loc, const char *name, int v);
void ckpt_w_f32(ckpt_io *io, hid_t loc, const char *name, float v);
/* Creates group `name` under loc (links tracked in creation order, so
 * listings come back in the adapter's order); -1 on error. */
hid_t ckpt_w_group(ckpt_io *io, hid_t loc, const char *name);
void ckpt_w_close_group(ckpt_io *io, hid_t g, const char *name);
/* A numeric dataset of `rank` dims: one chunk (rows split only past 1 GiB)
 * with a Fletcher32 checksum; an empty one is contiguous (a chunk cannot be
 * empty). `full` names it in messages. */
void ckpt_w_dset(ckpt_io *io, hid_t loc, const char *name, const char *full, hid_t ftype, hid_t mtype, int rank,
                 const hsize_t *dims, const void *data);

/* ---- reading: nothing sized from the file is trusted */
/* Does link `name` exist in loc (a single component)? 1, 0, or -1 (error set). */
int ckpt_r_exists(ckpt_io *io, hid_t loc, const char *name, const char *full);
/* Opens group `name` of loc; a missing one is an error naming `full`. */
hid_t ckpt_r_group(ckpt_io *io, hid_t loc, const char *name, const char *full);
/* Opens attribute `name` of obj (named `full` in messages) and checks it
 * holds exactly one element of class `cls`; -1 on error. */
hid_t ckpt_r_attr_open(ckpt_io *io, hid_t obj, const char *full, const char *name, H5T_class_t cls);
/* A numeric attribute converted to `mtype` into out. */
int ckpt_r_num(ckpt_io *io, hid_t obj, const char *full, const char *name, hid_t mtype, void *out);
int64_t ckpt_r_i64(ckpt_io *io, hid_t obj, const char *full, const char *name);
uint64_t ckpt_r_u64(ckpt_io *io, hid_t obj, const char *full, const char *name);
int ckpt_r_int(ckpt_io *io, hid_t obj, const char *full, const char *name);
float ckpt_r_f32(ckpt_io *io, hid_t obj, const char *full, const char *name);
/* Reads one string (fixed or variable length) from attribute or dataset `o`
 * (is_dset selects the calls) with file type t into a malloc'd string. */
char *ckpt_r_string_from(ckpt_io *io, hid_t o, int is_dset, hid_t t, const char *full);
/* A string attribute, malloc'd; NULL on error. */
char *ckpt_r_str(ckpt_io *io, hid_t obj, const char *full, const char *name);
/* Opens dataset `name` of loc (full path `full`), checks its class and rank
 * and returns its dims; -1 on error. */
hid_t ckpt_r_dset(ckpt_io *io, hid_t loc, const char *name, const char *full, H5T_class_t cls, int rank, hsize_t *dims);
int ckpt_r_read(ckpt_io *io, hid_t d, hid_t mtype, void *buf, const char *full);

/* ckpt_eval.c: /metrics/eval in the open /metrics group g: step, epoch and
 * one dataset per ckpt_eval_names entry, n_evals rows each (the writer always
 * writes it; the reader takes an absent group as 0 rows, and checks the rows:
 * equal lengths, steps in [1, st->step], epochs >= 1). */
void ckpt_w_eval(ckpt_io *io, hid_t g, const ckpt_state *st);
int ckpt_r_eval(ckpt_io *io, hid_t g, ckpt_state *st, int read_values);

#endif
