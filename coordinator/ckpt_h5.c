/*
 * ckpt_ (private part, see coordinator/ckpt_h5.h): HDF5 error handling and the
 * typed attribute and dataset helpers that the checkpoint writer
 * (ckpt_write.c) and reader (ckpt_read.c) share, and the format's name tables.
 *
 * Invariants:
 * - HDF5's automatic error printing is switched off for the duration of every
 *   public call (ckpt_h5_quiet / ckpt_h5_restore); an HDF5 failure becomes one
 *   lerr line "PATH: <call> failed: <innermost HDF5 description>".
 * - The readers never trust a size from the file: every attribute must hold
 *   one element of the expected class, every dataset's class and rank is
 *   checked before its dims are used, and a string's length is bounded by the
 *   file's size.
 */
#include "ckpt_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

const char *const ckpt_trees[3] = {"/adapter", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"};
const char *const ckpt_sched_names[CKPT_N_SCHED] = {
    [SCHED_CONSTANT] = "constant", [SCHED_COSINE] = "cosine", [SCHED_LINEAR] = "linear"};
const char *const ckpt_sampling_names[CKPT_N_SAMPLING] = {"shuffle", "random"};
_Static_assert(SCHED_LINEAR + 1 == CKPT_N_SCHED, "a schedule kind without a checkpoint name");

/* ------------------------------------------------------------------ errors */

void ckpt_h5_quiet(ckpt_quiet *q) {
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ckpt_h5_restore(const ckpt_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

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
int ckpt_h5_fail(ckpt_io *io, const char *call, const char *what) {
    if (io->err) return -1;
    char desc[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, desc);
    tidy_desc(desc);
    io->err = 1;
    return lerr_set(io->e, "%s: %s%s%s failed%s%s", io->path, call, what[0] ? " " : "", what, desc[0] ? ": " : "",
                    desc);
}

/* Records a validation error "PATH: message". Returns -1. */
int ckpt_io_err(ckpt_io *io, const char *fmt, ...) {
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

int ckpt_tensor_place(const lora_tensor *t, char *group, char *dset) {
    if (t->kind != LORA_KIND_WHOLE) {
        module_name(group, LORA_KEY, t->key);
        snprintf(dset, LORA_KEY, "%s", t->kind == LORA_KIND_A ? "lora_A" : "lora_B");
        return 0;
    }
    const char *dot = strrchr(t->key, '.');
    if (!dot || dot == t->key || !dot[1] || strchr(t->key, '/')) return -1;
    snprintf(group, LORA_KEY, "%.*s", (int)(dot - t->key), t->key);
    snprintf(dset, LORA_KEY, "%s", dot + 1);
    return 0;
}

/* ----------------------------------------------------------------- writing */

void ckpt_w_attr(ckpt_io *io, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *val) {
    if (io->err) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) {
        ckpt_h5_fail(io, "H5Screate for attribute", name);
        return;
    }
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        ckpt_h5_fail(io, "H5Acreate2", name);
    else if (H5Awrite(a, mtype, val) < 0)
        ckpt_h5_fail(io, "H5Awrite", name);
    if (a >= 0 && H5Aclose(a) < 0) ckpt_h5_fail(io, "H5Aclose", name);
    H5Sclose(sp);
}

/* A fixed-length, NUL-terminated UTF-8 string type of strlen(s)+1 bytes. */
hid_t ckpt_str_type(ckpt_io *io, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(s) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        ckpt_h5_fail(io, "H5Tcopy/H5Tset_size", "(string type)");
        if (t >= 0) H5Tclose(t);
        return -1;
    }
    return t;
}

void ckpt_w_str(ckpt_io *io, hid_t loc, const char *name, const char *s) {
    if (io->err) return;
    hid_t t = ckpt_str_type(io, s);
    if (t < 0) return;
    ckpt_w_attr(io, loc, name, t, t, s);
    H5Tclose(t);
}

void ckpt_w_i64(ckpt_io *io, hid_t loc, const char *name, int64_t v) {
    ckpt_w_attr(io, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
void ckpt_w_u64(ckpt_io *io, hid_t loc, const char *name, uint64_t v) {
    ckpt_w_attr(io, loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
void ckpt_w_i32(ckpt_io *io, hid_t loc, const char *name, int v) {
    ckpt_w_attr(io, loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}
void ckpt_w_f32(ckpt_io *io, hid_t loc, const char *name, float v) {
    ckpt_w_attr(io, loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v);
}

/* Creates group `name` under loc (links tracked in creation order, so
 * listings come back in the adapter's graph order); -1 on error. */
hid_t ckpt_w_group(ckpt_io *io, hid_t loc, const char *name) {
    if (io->err) return -1;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    if (gcpl < 0 || H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) {
        ckpt_h5_fail(io, "H5Pcreate for group", name);
        if (gcpl >= 0) H5Pclose(gcpl);
        return -1;
    }
    hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0) ckpt_h5_fail(io, "H5Gcreate2", name);
    H5Pclose(gcpl);
    return g;
}

void ckpt_w_close_group(ckpt_io *io, hid_t g, const char *name) {
    if (g >= 0 && H5Gclose(g) < 0) ckpt_h5_fail(io, "H5Gclose", name);
}

/* A numeric dataset of `rank` dims: one chunk (rows split only past 1 GiB)
 * with a Fletcher32 checksum; an empty one is contiguous (a chunk cannot be
 * empty). `full` names it in messages. */
void ckpt_w_dset(ckpt_io *io, hid_t loc, const char *name, const char *full, hid_t ftype, hid_t mtype, int rank,
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
        ckpt_h5_fail(io, "H5Screate_simple/H5Pset_chunk for", full);
    } else {
        hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0)
            ckpt_h5_fail(io, "H5Dcreate2", full);
        else if (n > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            ckpt_h5_fail(io, "H5Dwrite", full);
        if (d >= 0 && H5Dclose(d) < 0) ckpt_h5_fail(io, "H5Dclose", full);
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
}

/* ----------------------------------------------------------------- reading */

int ckpt_r_exists(ckpt_io *io, hid_t loc, const char *name, const char *full) {
    htri_t x = H5Lexists(loc, name, H5P_DEFAULT);
    if (x < 0) return ckpt_h5_fail(io, "H5Lexists", full);
    return x > 0;
}

hid_t ckpt_r_group(ckpt_io *io, hid_t loc, const char *name, const char *full) {
    if (io->err) return -1;
    int x = ckpt_r_exists(io, loc, name, full);
    if (x < 0) return -1;
    if (!x) return ckpt_io_err(io, "group %s is missing (incomplete or not a lora-ps checkpoint)", full);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) ckpt_h5_fail(io, "H5Gopen2", full);
    return g;
}

/* Opens attribute `name` of obj (named `full` in messages) and checks it
 * holds exactly one element of class `cls`; -1 on error. */
hid_t ckpt_r_attr_open(ckpt_io *io, hid_t obj, const char *full, const char *name, H5T_class_t cls) {
    if (io->err) return -1;
    htri_t x = H5Aexists(obj, name);
    if (x < 0) return ckpt_h5_fail(io, "H5Aexists", name);
    if (!x) return ckpt_io_err(io, "attribute %s of %s is missing", name, full);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return ckpt_h5_fail(io, "H5Aopen", name);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    int ok_cls = cls == H5T_STRING ? c == H5T_STRING : (c == H5T_INTEGER || c == H5T_FLOAT);
    if (np != 1 || !ok_cls) {
        H5Aclose(a);
        return ckpt_io_err(io, "attribute %s of %s is not a single %s", name, full,
                           cls == H5T_STRING ? "string" : "number");
    }
    return a;
}

/* A numeric attribute converted to `mtype` into out. */
int ckpt_r_num(ckpt_io *io, hid_t obj, const char *full, const char *name, hid_t mtype, void *out) {
    hid_t a = ckpt_r_attr_open(io, obj, full, name, H5T_INTEGER);
    if (a < 0) return -1;
    if (H5Aread(a, mtype, out) < 0) ckpt_h5_fail(io, "H5Aread", name);
    H5Aclose(a);
    return io->err ? -1 : 0;
}

int64_t ckpt_r_i64(ckpt_io *io, hid_t obj, const char *full, const char *name) {
    int64_t v = 0;
    ckpt_r_num(io, obj, full, name, H5T_NATIVE_INT64, &v);
    return v;
}
uint64_t ckpt_r_u64(ckpt_io *io, hid_t obj, const char *full, const char *name) {
    uint64_t v = 0;
    ckpt_r_num(io, obj, full, name, H5T_NATIVE_UINT64, &v);
    return v;
}
int ckpt_r_int(ckpt_io *io, hid_t obj, const char *full, const char *name) {
    int v = 0;
    ckpt_r_num(io, obj, full, name, H5T_NATIVE_INT, &v);
    return v;
}
float ckpt_r_f32(ckpt_io *io, hid_t obj, const char *full, const char *name) {
    float v = 0;
    ckpt_r_num(io, obj, full, name, H5T_NATIVE_FLOAT, &v);
    return v;
}

/* Reads one string (fixed or variable length) from attribute or dataset `o`
 * (is_dset selects the calls) with file type t into a malloc'd string. */
char *ckpt_r_string_from(ckpt_io *io, hid_t o, int is_dset, hid_t t, const char *full) {
    htri_t vl = H5Tis_variable_str(t);
    if (vl < 0) {
        ckpt_h5_fail(io, "H5Tis_variable_str", full);
        return NULL;
    }
    char *out = NULL;
    if (vl) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *p = NULL;
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0)
            ckpt_h5_fail(io, "H5Tset_size", full);
        else if ((is_dset ? H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) : H5Aread(o, mt, &p)) < 0)
            ckpt_h5_fail(io, is_dset ? "H5Dread" : "H5Aread", full);
        else if (!(out = strdup(p ? p : "")))
            ckpt_io_err(io, "%s: out of memory", full);
        if (p) H5free_memory(p);
        if (mt >= 0) H5Tclose(mt);
        return out;
    }
    size_t n = H5Tget_size(t);
    if (n == 0 || (hsize_t)n > io->file_size) {
        ckpt_io_err(io, "%s: string of %zu bytes in a file of %llu bytes", full, n, (unsigned long long)io->file_size);
        return NULL;
    }
    out = malloc(n + 1);
    if (!out) {
        ckpt_io_err(io, "%s: out of memory", full);
        return NULL;
    }
    if ((is_dset ? H5Dread(o, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : H5Aread(o, t, out)) < 0) {
        ckpt_h5_fail(io, is_dset ? "H5Dread" : "H5Aread", full);
        free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

char *ckpt_r_str(ckpt_io *io, hid_t obj, const char *full, const char *name) {
    hid_t a = ckpt_r_attr_open(io, obj, full, name, H5T_STRING);
    if (a < 0) return NULL;
    char *s = NULL;
    hid_t t = H5Aget_type(a);
    if (t < 0)
        ckpt_h5_fail(io, "H5Aget_type", name);
    else
        s = ckpt_r_string_from(io, a, 0, t, name);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return s;
}

/* Opens dataset `name` of loc (full path `full`), checks its class and rank
 * and returns its dims; -1 on error. */
hid_t ckpt_r_dset(ckpt_io *io, hid_t loc, const char *name, const char *full, H5T_class_t cls, int rank,
                  hsize_t *dims) {
    if (io->err) return -1;
    int x = ckpt_r_exists(io, loc, name, full);
    if (x < 0) return -1;
    if (!x) return ckpt_io_err(io, "dataset %s is missing", full);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return ckpt_h5_fail(io, "H5Dopen2", full);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rk = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t >= 0) H5Tclose(t);
    if (c != cls) {
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
        return ckpt_io_err(io, "dataset %s has type class %d, expected %s", full, (int)c,
                           cls == H5T_FLOAT     ? "float"
                           : cls == H5T_INTEGER ? "integer"
                                                : "string");
    }
    if (rk != rank || (rank > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) != rank)) {
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
        return ckpt_io_err(io, "dataset %s has rank %d, expected %d", full, rk, rank);
    }
    H5Sclose(sp);
    return d;
}

int ckpt_r_read(ckpt_io *io, hid_t d, hid_t mtype, void *buf, const char *full) {
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) return ckpt_h5_fail(io, "H5Dread", full);
    return 0;
}
