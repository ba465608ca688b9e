/*
 * st_: HF safetensors files, read through a read-only mmap and written atomically.
 *
 * Layout of a file: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {string: string}}, then the data block. Offsets are relative
 * to the data block.
 *
 * st_open maps the file MAP_SHARED read-only, so every rank of a node that
 * opens the same file shares its page-cache pages: the frozen base is held
 * once per node. st_parse validates a buffer already in memory (the fuzz
 * entry point). Validation: header length within the file, JSON well formed,
 * every entry has a known dtype, a shape of non-negative dims (at most
 * ST_MAX_DIMS), offsets inside the data block, end - begin == numel * dtype
 * size, and no two tensors overlap. Any failure returns NULL with a message
 * naming the file and tensor.
 */
#ifndef SAFETENSORS_H
#define SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_I64, ST_I32, ST_U16, ST_F64, ST_U8, ST_NDTYPES } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* inside the mapping (or the parsed buffer); may be unaligned */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Maps and validates path. NULL on error (message in e names path). */
st_file *st_open(const char *path, struct lerr *e);
/* Validates buf[0..len) (not copied: buf must outlive the result). `label` names it in messages. */
st_file *st_parse(const void *buf, size_t len, const char *label, struct lerr *e);
void st_close(st_file *f);

int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i); /* in header order */
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_path(const st_file *f);
size_t st_file_size(const st_file *f);
/* The mapped bytes (whole file), e.g. for hashing. */
const void *st_bytes(const st_file *f);
/* A value of __metadata__, or NULL. */
const char *st_meta(const st_file *f, const char *key);

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

/* Converts a floating tensor (F32, F16, BF16, F64) to float32 into out
 * (t->numel floats). -1 with a message for integer dtypes, and for a NaN or
 * infinity among the values (a float64 too large for float32 included):
 * nothing loaded from a file is ever non-finite. */
int st_to_f32(float *out, const st_tensor *t, struct lerr *e);
/* -1 with a message naming t when v (t->numel floats: t's values, e.g. read
 * in place from the mapping) holds a NaN or infinity. */
int st_check_finite(const float *v, const st_tensor *t, struct lerr *e);
/* Converts an integer tensor (I64, I32, U16, U8) to int32 into out; -1 if a
 * value does not fit. */
int st_to_i32(int32_t *out, const st_tensor *t, struct lerr *e);
/* The integer tensor `key` of f checked to have shape (d0) (ndim 1) or (d0, d1),
 * converted into *out (malloc'd). Returns 1 when read, 0 when f has no such
 * tensor (*out = NULL), -1 with a message naming the file and key on a wrong
 * shape or dtype. */
int st_read_ints(const st_file *f, const char *key, int ndim, int64_t d0, int64_t d1, int32_t **out, struct lerr *e);

/* Looks a tensor up and checks its shape: -1 with a message naming file,
 * tensor, expected and found shapes. ndim == -1 skips the check. */
const st_tensor *st_expect(const st_file *f, const char *name, int ndim, const int64_t *shape, struct lerr *e);

/* Writing. Each entry's data is written in the given dtype (F32 data given as
 * float, F16/BF16 converted from float with round-to-nearest-even). The file
 * is written to path.tmp.<pid>, fsynced and renamed over path, so a reader
 * never sees half a file. Header keys are written sorted (as safetensors
 * does) and the header padded to 8 bytes. */
typedef struct {
    const char *name;
    st_dtype dtype; /* F32, F16 or BF16 (from float data), or I64 (from int64 data) */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_entry;

int st_write(const char *path, const st_entry *entries, int n, const char *const *meta_kv, int n_meta,
             struct lerr *e);

/* Scalar conversions (exposed for tests and the wire format). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
uint16_t st_f32_to_bf16(float f);

#endif
