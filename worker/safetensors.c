/*
 * st_: HF safetensors reader (mmap) and atomic writer. See include/safetensors.h.
 *
 * Who calls it: the model loaders (frozen base weights, mapped MAP_SHARED so the
 * ranks of a node share one copy in the page cache), the adapter and fixture
 * loaders, the checkpoint/export tools (st_write), and the fuzzer (st_parse).
 *
 * What it owns: an st_file holds its label, the tensor table (names strdup'd,
 * data pointers into the caller's buffer or our mapping), a name-sorted index for
 * st_find and the __metadata__ strings. The JSON tree is freed once parsed.
 *
 * Invariants after a successful parse: every tensor has a known dtype, at most
 * ST_MAX_DIMS non-negative dims, numel * dtype size == nbytes, its bytes lie
 * inside the data block, no two tensors overlap and no two share a name. Every
 * number in the header was an integer below 2^53 (what a double holds exactly).
 *
 * Bad input never aborts: every failure frees what was built and returns NULL or
 * -1 with a one-line message "label: tensor 'name': what is wrong".
 *
 * Byte order: the format is little-endian and so are the hosts we run on; F32,
 * I32 and I64 data are memcpy'd as is (the #error below keeps a big-endian build
 * from silently reading garbage).
 */
#include "safetensors.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* same limit as the Python library */
#define ST_MAX_INT 9007199254740992.0         /* 2^53: larger JSON numbers are not exact in a double */

struct st_file {
    char *label;
    const unsigned char *bytes; /* whole file / buffer */
    size_t size;
    void *map; /* st_open only: munmap'd by st_close */
    int n;
    st_tensor *t;         /* n, header order */
    st_tensor **by_name;  /* n, sorted by name */
    int n_meta;
    char **meta;          /* 2 * n_meta: key, value */
};

static const char *const dtype_names[ST_NDTYPES] = {"F32", "F16", "BF16", "I64", "I32", "U16", "F64", "U8"};
static const size_t dtype_sizes[ST_NDTYPES] = {4, 2, 2, 8, 4, 2, 8, 1};

const char *st_dtype_name(st_dtype d) {
    return (unsigned)d < ST_NDTYPES ? dtype_names[d] : "?";
}

size_t st_dtype_size(st_dtype d) {
    return (unsigned)d < ST_NDTYPES ? dtype_sizes[d] : 0;
}

/* ---------------------------------------------------------------- scalars */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in a float */
        float v = (float)man * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN (payload kept) */
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

float st_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

/* m >> s rounded to nearest, ties to even; 1 <= s <= 31. */
static uint32_t shift_rne(uint32_t m, unsigned s) {
    uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t st_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu)); /* NaN stays a quiet NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                      /* >= 65520 rounds to inf */
    if (x >= 0x38800000u)                                                         /* normal half: rebias, round */
        return (uint16_t)(sign | shift_rne(x - 0x38000000u, 13));
    uint32_t e = x >> 23;
    if (e < 102) return sign; /* below 2^-25: rounds to zero */
    /* subnormal half: value = mant24 * 2^(e-150), in units of 2^-24 = mant24 >> (126-e); a carry
     * out of the mantissa lands on the smallest normal, which is the right answer */
    return (uint16_t)(sign | shift_rne((x & 0x7fffffu) | 0x800000u, 126 - e));
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet bit keeps it NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---------------------------------------------------------------- parsing */

void st_close(st_file *f) {
    if (!f) return;
    if (f->t)
        for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->by_name);
    if (f->meta)
        for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->label);
    if (f->map) munmap(f->map, f->size);
    free(f);
}

/* Reads a JSON number that must be an integer in [0, 2^53). */
static int json_uint(const cJSON *it, int64_t *out) {
    if (!cJSON_IsNumber(it)) return -1;
    double d = it->valuedouble;
    if (!(d >= 0) || d >= ST_MAX_INT || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

/* Short description of a JSON value for messages ("a string", "-3"...). */
static const char *json_kind(const cJSON *it) {
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsNull(it)) return "null";
    return "not a JSON value";
}

static int format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    int w = snprintf(buf, cap, "[");
    if (w < 0) return -1;
    k = (size_t)w;
    for (int i = 0; i < ndim && k < cap; i++) {
        w = snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (w < 0) return -1;
        k += (size_t)w;
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_data(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int parse_meta(st_file *f, const cJSON *m, struct lerr *e) {
    if (f->meta) return lerr_set(e, "%s: duplicate key '__metadata__' in the header", f->label);
    if (!cJSON_IsObject(m)) return lerr_set(e, "%s: '__metadata__' is %s, not an object", f->label, json_kind(m));
    int k = cJSON_GetArraySize(m);
    f->meta = calloc((size_t)2 * (size_t)k + 1, sizeof *f->meta);
    if (!f->meta) return lerr_set(e, "%s: out of memory for __metadata__ (%d entries)", f->label, k);
    const cJSON *it;
    cJSON_ArrayForEach(it, m) {
        if (!cJSON_IsString(it))
            return lerr_set(e, "%s: __metadata__ value of '%s' is %s, not a string", f->label, it->string,
                            json_kind(it));
        char *key = strdup(it->string), *val = strdup(it->valuestring);
        f->meta[2 * f->n_meta] = key;
        f->meta[2 * f->n_meta + 1] = val;
        f->n_meta++;
        if (!key || !val) return lerr_set(e, "%s: out of memory for __metadata__", f->label);
    }
    return 0;
}

/* Fills t from one header entry. `data`/`dlen`: the data block. */
static int parse_entry(st_file *f, st_tensor *t, const cJSON *ent, const unsigned char *data, size_t dlen,
                       struct lerr *e) {
    const char *L = f->label, *N = t->name;
    if (!cJSON_IsObject(ent)) return lerr_set(e, "%s: tensor '%s': entry is %s, not an object", L, N, json_kind(ent));
    const cJSON *jd = NULL, *js = NULL, *jo = NULL, *it;
    cJSON_ArrayForEach(it, ent) {
        const cJSON **slot = !strcmp(it->string, "dtype")          ? &jd
                             : !strcmp(it->string, "shape")        ? &js
                             : !strcmp(it->string, "data_offsets") ? &jo
                                                                   : NULL;
        if (!slot) continue; /* unknown fields are ignored, as the Python library does */
        if (*slot) return lerr_set(e, "%s: tensor '%s': field '%s' appears twice", L, N, it->string);
        *slot = it;
    }
    if (!jd) return lerr_set(e, "%s: tensor '%s': missing field 'dtype'", L, N);
    if (!js) return lerr_set(e, "%s: tensor '%s': missing field 'shape'", L, N);
    if (!jo) return lerr_set(e, "%s: tensor '%s': missing field 'data_offsets'", L, N);

    if (!cJSON_IsString(jd)) return lerr_set(e, "%s: tensor '%s': dtype is %s, not a string", L, N, json_kind(jd));
    int d;
    for (d = 0; d < ST_NDTYPES; d++)
        if (!strcmp(jd->valuestring, dtype_names[d])) break;
    if (d == ST_NDTYPES)
        return lerr_set(e, "%s: tensor '%s': unknown dtype '%s' (known: F32 F16 BF16 I64 I32 U16 F64 U8)", L, N,
                        jd->valuestring);
    t->dtype = (st_dtype)d;

    if (!cJSON_IsArray(js)) return lerr_set(e, "%s: tensor '%s': shape is %s, not an array", L, N, json_kind(js));
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return lerr_set(e, "%s: tensor '%s': shape has %d dims, more than the %d supported", L, N, nd, ST_MAX_DIMS);
    t->ndim = 0;
    int64_t numel = 1;
    int numel_overflow = 0;
    cJSON_ArrayForEach(it, js) {
        int64_t v;
        if (json_uint(it, &v)) {
            if (cJSON_IsNumber(it))
                return lerr_set(e, "%s: tensor '%s': shape[%d] = %g is not a non-negative integer below 2^53", L, N, t->ndim,
                                it->valuedouble);
            return lerr_set(e, "%s: tensor '%s': shape[%d] is %s, not a non-negative integer", L, N, t->ndim,
                            json_kind(it));
        }
        t->shape[t->ndim++] = v;
        if (v != 0 && numel > INT64_MAX / v) numel_overflow = 1;
        else numel *= v;
    }
    char sbuf[256];
    format_shape(sbuf, sizeof sbuf, t->ndim, t->shape);
    size_t esz = dtype_sizes[t->dtype];
    if (numel_overflow && numel != 0) numel = -1;
    if (numel < 0 || numel > (int64_t)(ST_MAX_INT / (double)esz))
        return lerr_set(e, "%s: tensor '%s': shape %s of %s is too large (element count overflows)", L, N, sbuf,
                        dtype_names[t->dtype]);
    t->numel = numel;

    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return lerr_set(e, "%s: tensor '%s': data_offsets is %s, not an array of two integers", L, N,
                        cJSON_IsArray(jo) ? "an array of the wrong length" : json_kind(jo));
    int64_t begin, end;
    if (json_uint(jo->child, &begin) || json_uint(jo->child->next, &end))
        return lerr_set(e, "%s: tensor '%s': data_offsets must hold two non-negative integers below 2^53", L, N);
    if (begin > end)
        return lerr_set(e, "%s: tensor '%s': data_offsets [%lld, %lld] have begin > end", L, N, (long long)begin,
                        (long long)end);
    if ((uint64_t)end > dlen)
        return lerr_set(e, "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the data block (%zu bytes;"
                           " truncated file?)",
                        L, N, (long long)begin, (long long)end, dlen);
    int64_t need = numel * (int64_t)esz;
    if (end - begin != need)
        return lerr_set(e, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but shape %s of %s needs %lld",
                        L, N, (long long)begin, (long long)end, (long long)(end - begin), sbuf,
                        dtype_names[t->dtype], (long long)need);
    t->data = data + begin;
    t->nbytes = (size_t)need;
    return 0;
}

static st_file *parse(const void *buf, size_t len, const char *label, void *map, struct lerr *e) {
    if (!label) label = "<buffer>";
    st_file *f = calloc(1, sizeof *f);
    char *lab = strdup(label);
    if (!f || !lab) {
        free(f);
        free(lab);
        if (map) munmap(map, len);
        lerr_set(e, "%s: out of memory", label);
        return NULL;
    }
    f->label = lab;
    f->bytes = buf;
    f->size = len;
    f->map = map;
    cJSON *root = NULL;
    const unsigned char *b = buf;

    if (len == 0) {
        lerr_set(e, "%s: empty file (0 bytes), not a safetensors file", label);
        goto fail;
    }
    if (len < 8) {
        lerr_set(e, "%s: file is %zu bytes, too short for the 8-byte header length (truncated file?)", label, len);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER) {
        lerr_set(e, "%s: header length %llu is over the 100 MB limit: not a safetensors file, or corrupt", label,
                 (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > len - 8) {
        lerr_set(e, "%s: header length %llu runs past the end of the file (%zu bytes): truncated file?", label,
                 (unsigned long long)hlen, len);
        goto fail;
    }
    const char *h = (const char *)b + 8, *stop = NULL;
    root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &stop, 0);
    if (!root) {
        long at = stop && stop >= h && stop <= h + hlen ? (long)(stop - h) : -1;
        lerr_set(e, "%s: header is not valid JSON (error near byte %ld of %llu)", label, at,
                 (unsigned long long)hlen);
        goto fail;
    }
    /* Only padding may follow the JSON value. */
    for (const char *p = stop; p && p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            lerr_set(e, "%s: header has trailing bytes after the JSON object (byte %ld of %llu)", label,
                     (long)(p - h), (unsigned long long)hlen);
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        lerr_set(e, "%s: header is %s, not a JSON object", label, json_kind(root));
        goto fail;
    }
    int cap = cJSON_GetArraySize(root);
    f->t = calloc((size_t)cap + 1, sizeof *f->t);
    f->by_name = calloc((size_t)cap + 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        lerr_set(e, "%s: out of memory for %d tensors", label, cap);
        goto fail;
    }
    const unsigned char *data = b + 8 + hlen;
    size_t dlen = len - 8 - (size_t)hlen;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) {
            if (parse_meta(f, it, e)) goto fail;
            continue;
        }
        st_tensor *t = &f->t[f->n];
        t->name = strdup(it->string);
        if (!t->name) {
            lerr_set(e, "%s: out of memory", label);
            goto fail;
        }
        f->n++;
        if (parse_entry(f, t, it, data, dlen, e)) goto fail;
    }
    cJSON_Delete(root);
    root = NULL;

    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    if (f->n > 1) {
        qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_name);
        for (int i = 1; i < f->n; i++)
            if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name)) {
                lerr_set(e, "%s: duplicate tensor name '%s' in the header", label, f->by_name[i]->name);
                goto fail;
            }
        /* Overlap check on a copy sorted by data pointer; zero-size tensors overlap nothing. */
        st_tensor **byoff = malloc((size_t)f->n * sizeof *byoff);
        if (!byoff) {
            lerr_set(e, "%s: out of memory", label);
            goto fail;
        }
        memcpy(byoff, f->by_name, (size_t)f->n * sizeof *byoff);
        qsort(byoff, (size_t)f->n, sizeof *byoff, cmp_data);
        const st_tensor *prev = NULL;
        for (int i = 0; i < f->n; i++) {
            const st_tensor *t = byoff[i];
            if (t->nbytes == 0) continue;
            if (prev && (const unsigned char *)t->data < (const unsigned char *)prev->data + prev->nbytes) {
                long long pb = (const unsigned char *)prev->data - data, tb = (const unsigned char *)t->data - data;
                lerr_set(e, "%s: tensors '%s' (data_offsets [%lld, %lld]) and '%s' (data_offsets [%lld, %lld]) overlap",
                         label, prev->name, pb, pb + (long long)prev->nbytes, t->name, tb,
                         tb + (long long)t->nbytes);
                free(byoff);
                goto fail;
            }
            prev = t;
        }
        free(byoff);
    }
    return f;

fail:
    cJSON_Delete(root);
    st_close(f);
    return NULL;
}

st_file *st_parse(const void *buf, size_t len, const char *label, struct lerr *e) {
    if (!buf && len) {
        lerr_set(e, "%s: NULL buffer", label ? label : "<buffer>");
        return NULL;
    }
    return parse(buf, len, label, NULL, e);
}

st_file *st_open(const char *path, struct lerr *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block: it is refused below */
    if (fd < 0) {
        lerr_set(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        lerr_set(e, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        lerr_set(e, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    if (size == 0) { /* mmap refuses length 0; let the parser say "empty file" */
        close(fd);
        return parse("", 0, path, NULL, e);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        lerr_set(e, "%s: cannot mmap %zu bytes: %s", path, size, strerror(err));
        return NULL;
    }
    return parse(map, size, path, map, e); /* owns map from here, on failure too */
}

/* ---------------------------------------------------------------- access */

int st_count(const st_file *f) {
    return f ? f->n : 0;
}

const st_tensor *st_at(const st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_path(const st_file *f) {
    return f ? f->label : NULL;
}

size_t st_file_size(const st_file *f) {
    return f ? f->size : 0;
}

const void *st_bytes(const st_file *f) {
    return f ? f->bytes : NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

const st_tensor *st_expect(const st_file *f, const char *name, int ndim, const int64_t *shape, struct lerr *e) {
    const char *label = f ? f->label : "<no file>";
    const st_tensor *t = st_find(f, name);
    if (!t) {
        lerr_set(e, "%s: tensor '%s' not found (%d tensors in the file)", label, name ? name : "(null)", st_count(f));
        return NULL;
    }
    if (ndim < 0) return t;
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
    if (!same) {
        char want[256], got[256];
        format_shape(want, sizeof want, ndim > ST_MAX_DIMS ? ST_MAX_DIMS : ndim, shape);
        format_shape(got, sizeof got, t->ndim, t->shape);
        lerr_set(e, "%s: tensor '%s': expected shape %s, found %s", label, name, want, got);
        return NULL;
    }
    return t;
}

/* ---------------------------------------------------------------- conversion */

static int to_f32(float *out, const st_tensor *t, struct lerr *e) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(out, p, (size_t)n * 4);
        return 0;
    case ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f32(h);
        }
        return 0;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return lerr_set(e, "tensor '%s': dtype %s is not a floating-point type (expected F32, F16, BF16 or F64)",
                        t->name, st_dtype_name(t->dtype));
    }
}

int st_to_f32(float *out, const st_tensor *t, struct lerr *e) {
    if (to_f32(out, t, e)) return -1;
    return st_check_finite(out, t, e);
}

int st_check_finite(const float *v, const st_tensor *t, struct lerr *e) {
    int64_t i = first_nonfinite(v, (size_t)t->numel);
    if (i < 0) return 0;
    return lerr_set(e, "tensor '%s' holds a non-finite value (%s) at element %lld%s", t->name, nonfinite_name(v[i]),
                    (long long)i, t->dtype == ST_F64 ? " (after conversion to float32)" : "");
}

int st_to_i32(int32_t *out, const st_tensor *t, struct lerr *e) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return lerr_set(e, "tensor '%s': element %lld = %lld does not fit in int32", t->name, (long long)i,
                                (long long)v);
            out[i] = (int32_t)v;
        }
        return 0;
    case ST_I32:
        if (n) memcpy(out, p, (size_t)n * 4);
        return 0;
    case ST_U16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = v;
        }
        return 0;
    case ST_U8:
        for (int64_t i = 0; i < n; i++) out[i] = p[i];
        return 0;
    default:
        return lerr_set(e, "tensor '%s': dtype %s is not an integer type (expected I64, I32, U16 or U8)", t->name,
                        st_dtype_name(t->dtype));
    }
}

/* ---------------------------------------------------------------- writing */

static int cmp_entry_name(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static cJSON *json_int(int64_t v) {
    /* Raw, so large offsets print as plain integers ("%1.15g" would give 1e+15, which
     * the Rust reader rejects for a usize). */
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return cJSON_CreateRaw(s);
}

/* Builds the header JSON; NULL with a message on bad entries. nbytes[i] is filled in sorted order. */
static char *build_header(const char *path, const st_entry *const *sorted, int n, const char *const *meta_kv,
                          int n_meta, int64_t *nbytes, struct lerr *e) {
    cJSON *root = cJSON_CreateObject();
    char *out = NULL;
    if (!root) goto oom;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto oom;
        for (int i = 0; i < n_meta; i++) {
            const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
            if (!k || !v) {
                lerr_set(e, "%s: metadata entry %d has a NULL key or value", path, i);
                goto fail;
            }
            if (!cJSON_AddStringToObject(m, k, v)) goto oom;
        }
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_entry *en = sorted[i];
        cJSON *o = cJSON_AddObjectToObject(root, en->name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", dtype_names[en->dtype])) goto oom;
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        if (!sh) goto oom;
        for (int d = 0; d < en->ndim; d++) {
            cJSON *v = json_int(en->shape[d]);
            if (!v || !cJSON_AddItemToArray(sh, v)) {
                cJSON_Delete(v);
                goto oom;
            }
        }
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        if (!of) goto oom;
        cJSON *b = json_int(off), *en_ = json_int(off + nbytes[i]);
        if (!b || !en_ || !cJSON_AddItemToArray(of, b)) {
            cJSON_Delete(b);
            cJSON_Delete(en_);
            goto oom;
        }
        if (!cJSON_AddItemToArray(of, en_)) {
            cJSON_Delete(en_);
            goto oom;
        }
        off += nbytes[i];
    }
    out = cJSON_PrintUnformatted(root);
    if (!out) goto oom;
    cJSON_Delete(root);
    return out;
oom:
    lerr_set(e, "%s: out of memory building the header", path);
fail:
    cJSON_Delete(root);
    return NULL;
}

/* Writes one entry's data, converting float -> F16/BF16 through a small buffer. */
static int write_data(FILE *fp, const st_entry *en, int64_t numel) {
    if (numel == 0) return 0;
    if (en->dtype == ST_F32 || en->dtype == ST_I64) {
        size_t sz = en->dtype == ST_F32 ? 4 : 8;
        return fwrite(en->data, sz, (size_t)numel, fp) == (size_t)numel ? 0 : -1;
    }
    const float *src = en->data;
    uint16_t buf[4096];
    for (int64_t i = 0; i < numel;) {
        size_t k = 0;
        for (; k < 4096 && i < numel; k++, i++)
            buf[k] = en->dtype == ST_F16 ? st_f32_to_f16(src[i]) : st_f32_to_bf16(src[i]);
        if (fwrite(buf, 2, k, fp) != k) return -1;
    }
    return 0;
}

int st_write(const char *path, const st_entry *entries, int n, const char *const *meta_kv, int n_meta,
             struct lerr *e) {
    if (!path) return lerr_set(e, "st_write: NULL path");
    if (n < 0 || (n > 0 && !entries)) return lerr_set(e, "%s: bad entry list (n = %d)", path, n);
    if (n_meta < 0 || (n_meta > 0 && !meta_kv)) return lerr_set(e, "%s: bad metadata list (n_meta = %d)", path, n_meta);

    const st_entry **sorted = malloc(((size_t)n + 1) * sizeof *sorted);
    int64_t *nbytes = malloc(((size_t)n + 1) * sizeof *nbytes);
    char *hdr = NULL, *tmp = NULL;
    FILE *fp = NULL;
    int rc = -1;
    if (!sorted || !nbytes) {
        lerr_set(e, "%s: out of memory", path);
        goto done;
    }

    for (int i = 0; i < n; i++) {
        const st_entry *en = &entries[i];
        const char *nm = en->name ? en->name : "(null)";
        if (!en->name || !strcmp(en->name, "__metadata__")) {
            lerr_set(e, "%s: entry %d: bad tensor name '%s'", path, i, nm);
            goto done;
        }
        if (en->dtype != ST_F32 && en->dtype != ST_F16 && en->dtype != ST_BF16 && en->dtype != ST_I64) {
            lerr_set(e, "%s: tensor '%s': cannot write dtype %s (F32, F16, BF16 or I64 only)", path, nm,
                     st_dtype_name(en->dtype));
            goto done;
        }
        if (en->ndim < 0 || en->ndim > ST_MAX_DIMS) {
            lerr_set(e, "%s: tensor '%s': ndim %d out of range [0, %d]", path, nm, en->ndim, ST_MAX_DIMS);
            goto done;
        }
        int64_t numel = 1;
        for (int d = 0; d < en->ndim; d++) {
            int64_t v = en->shape[d];
            if (v < 0 || (v && numel > (int64_t)(ST_MAX_INT / 8) / v)) {
                lerr_set(e, "%s: tensor '%s': bad dim %lld", path, nm, (long long)v);
                goto done;
            }
            numel *= v;
        }
        if (numel > 0 && !en->data) {
            lerr_set(e, "%s: tensor '%s': NULL data for %lld elements", path, nm, (long long)numel);
            goto done;
        }
        sorted[i] = en;
    }
    if (n > 1) qsort(sorted, (size_t)n, sizeof *sorted, cmp_entry_name);
    for (int i = 0; i < n; i++) {
        if (i && !strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            lerr_set(e, "%s: duplicate tensor name '%s'", path, sorted[i]->name);
            goto done;
        }
        int64_t numel = 1;
        for (int d = 0; d < sorted[i]->ndim; d++) numel *= sorted[i]->shape[d];
        nbytes[i] = numel * (int64_t)dtype_sizes[sorted[i]->dtype];
    }

    hdr = build_header(path, sorted, n, meta_kv, n_meta, nbytes, e);
    if (!hdr) goto done;
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;

    size_t tlen = strlen(path) + 32;
    tmp = malloc(tlen);
    if (!tmp) {
        lerr_set(e, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fp = fopen(tmp, "wb");
    if (!fp) {
        lerr_set(e, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    errno = 0; /* the write checks below read errno only after a failed call */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int werr = 0;
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen) werr = errno ? errno : EIO;
    for (size_t i = hlen; !werr && i < padded; i++)
        if (fputc(' ', fp) == EOF) werr = errno ? errno : EIO;
    for (int i = 0; !werr && i < n; i++) {
        int64_t numel = nbytes[i] / (int64_t)dtype_sizes[sorted[i]->dtype];
        if (write_data(fp, sorted[i], numel)) werr = errno ? errno : EIO;
    }
    if (!werr && fflush(fp) != 0) werr = errno ? errno : EIO;
    if (!werr && fsync(fileno(fp)) != 0) werr = errno ? errno : EIO;
    int cerr = fclose(fp);
    if (!werr && cerr != 0) werr = errno ? errno : EIO;
    fp = NULL;
    if (werr) {
        lerr_set(e, "%s: write failed: %s", path, strerror(werr));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        lerr_set(e, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    if (fp) fclose(fp);
    free(tmp);
    if (hdr) cJSON_free(hdr);
    free(sorted);
    free(nbytes);
    return rc;
}

int st_read_ints(const st_file *f, const char *key, int ndim, int64_t d0, int64_t d1, int32_t **out, struct lerr *e) {
    *out = NULL;
    const st_tensor *t = st_find(f, key);
    if (!t) return 0;
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        if (ndim == 2)
            return lerr_set(e, "%s: tensor '%s' must have shape (%lld, %lld)", st_path(f), key, (long long)d0,
                            (long long)d1);
        return lerr_set(e, "%s: tensor '%s' must have shape (%lld)", st_path(f), key, (long long)d0);
    }
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(d0 * (ndim == 2 ? d1 : 1)) + 1);
    if (!v) return lerr_set(e, "%s: out of memory for '%s'", st_path(f), key);
    if (st_to_i32(v, t, e)) {
        free(v);
        return -1;
    }
    *out = v;
    return 1;
}
