/*
 * data: token files and the global sample order (see include/data.h).
 *
 * Owns: the read-only mmap of one token file (tok_file) and the permutation
 * of one epoch (data_order). Called by the worker's training loop (data_fill
 * for each micro-batch), by evaluation (data_val_offset) and by the tools that
 * write token files (tok_write).
 *
 * Invariants: a tok_file that tok_open returned has a header it understood and
 * exactly 1024 + count * dtype_bytes bytes, so every id of [0, count) lies
 * inside the mapping. tok_open never exits: every problem with the file comes
 * back as NULL plus a message naming the path (the fuzzers call it).
 * The window of a global sample index g is a pure function of
 * (n_tokens, seq_len, seed, mode, g); the cached permutation only saves time.
 *
 * Assumes a little-endian host (x86-64, aarch64), as llm.c does: the header
 * and the ids are read in place.
 */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOK_HEADER_INTS 256
#define TOK_HEADER_BYTES (TOK_HEADER_INTS * 4)

#define LLMC_MAGIC_U16 20240520 /* llm.c, uint16 ids */
#define LLMC_VERSION_U16 1
#define LLMC_MAGIC_U32 20240801 /* llm.c (llama 3 branch), uint32 ids */
#define LLMC_VERSION_U32 7

struct tok_file {
    char *path;
    const unsigned char *map; /* whole file, read-only */
    size_t map_len;
    const void *ids;          /* map + 1024 */
    int64_t count;
    int dtype_bytes;          /* 2 or 4 */
    uint32_t max_id;
};

static uint32_t tok_at(const tok_file *f, int64_t i) {
    if (f->dtype_bytes == 2) return ((const uint16_t *)f->ids)[i];
    return ((const uint32_t *)f->ids)[i];
}

tok_file *tok_open(const char *path, struct lerr *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        lerr_set(e, "%s: cannot open token file: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        lerr_set(e, "%s: cannot stat token file: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        lerr_set(e, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    int64_t size = (int64_t)st.st_size;
    if (size < TOK_HEADER_BYTES) {
        lerr_set(e, "%s: %lld bytes, shorter than the %d-byte token file header (truncated or not a token file)", path,
                 (long long)size, TOK_HEADER_BYTES);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        lerr_set(e, "%s: cannot mmap %lld bytes: %s", path, (long long)size, strerror(errno));
        return NULL;
    }

    int32_t h[TOK_HEADER_INTS];
    memcpy(h, map, sizeof h);
    int64_t count = 0;
    int dtype = 0;
    const char *kind = NULL;
    if (h[0] == LLMC_MAGIC_U16 || h[0] == LLMC_MAGIC_U32) {
        int want = h[0] == LLMC_MAGIC_U16 ? LLMC_VERSION_U16 : LLMC_VERSION_U32;
        if (h[1] != want) {
            lerr_set(e, "%s: llm.c token file (magic %d) has version %d, this reader knows version %d", path, h[0],
                     h[1], want);
            goto fail;
        }
        if (h[2] < 0) {
            lerr_set(e, "%s: llm.c token file header has a negative token count %d", path, h[2]);
            goto fail;
        }
        count = h[2];
        dtype = h[0] == LLMC_MAGIC_U16 ? 2 : 4;
        kind = "llm.c";
    } else if (h[0] == TOK_MAGIC) {
        if (h[1] != TOK_VERSION) {
            lerr_set(e, "%s: token file version %d, this reader knows version %d (rewrite it with this build's tools)",
                     path, h[1], TOK_VERSION);
            goto fail;
        }
        uint64_t c = (uint64_t)(uint32_t)h[2] | ((uint64_t)(uint32_t)h[3] << 32);
        if (h[4] != 2 && h[4] != 4) {
            lerr_set(e, "%s: token file dtype_bytes is %d, expected 2 or 4", path, h[4]);
            goto fail;
        }
        dtype = h[4];
        if (c > (uint64_t)(INT64_MAX - TOK_HEADER_BYTES) / (uint64_t)dtype) {
            lerr_set(e, "%s: token file header claims %llu tokens, more than any file can hold", path,
                     (unsigned long long)c);
            goto fail;
        }
        count = (int64_t)c;
        kind = "lora-ps";
    } else {
        lerr_set(e,
                 "%s: unknown token file magic %d (0x%08x); expected llm.c (%d or %d) or lora-ps (0x%08x)", path, h[0],
                 (unsigned)h[0], LLMC_MAGIC_U16, LLMC_MAGIC_U32, (unsigned)TOK_MAGIC);
        goto fail;
    }
    int64_t expect = TOK_HEADER_BYTES + count * dtype;
    if (expect != size) {
        lerr_set(e, "%s: %s header says %lld tokens of %d bytes, so %lld bytes, but the file has %lld bytes (%s)", path,
                 kind, (long long)count, dtype, (long long)expect, (long long)size,
                 size < expect ? "truncated" : "trailing bytes");
        goto fail;
    }

    tok_file *f = calloc(1, sizeof *f);
    char *p = strdup(path);
    if (!f || !p) {
        free(f);
        free(p);
        lerr_set(e, "%s: out of memory", path);
        goto fail;
    }
    f->path = p;
    f->map = map;
    f->map_len = (size_t)size;
    f->ids = (const unsigned char *)map + TOK_HEADER_BYTES;
    f->count = count;
    f->dtype_bytes = dtype;
    uint32_t mx = 0;
    for (int64_t i = 0; i < count; i++) {
        uint32_t t = tok_at(f, i);
        if (t > mx) mx = t;
    }
    /* tok_read hands ids out as int32: a larger uint32 would come out negative (found by fuzz_tokfile) */
    if (mx > INT32_MAX) {
        int64_t i = 0;
        while (tok_at(f, i) <= INT32_MAX) i++;
        lerr_set(e, "%s: token %lld is %u, past the largest id a token file may hold (%d)", path, (long long)i,
                 (unsigned)tok_at(f, i), INT32_MAX);
        free(f->path);
        free(f);
        goto fail;
    }
    f->max_id = mx;
    return f;

fail:
    munmap(map, (size_t)size);
    return NULL;
}

void tok_close(tok_file *f) {
    if (!f) return;
    munmap((void *)f->map, f->map_len);
    free(f->path);
    free(f);
}

int64_t tok_count(const tok_file *f) { return f->count; }
const char *tok_path(const tok_file *f) { return f->path; }
uint32_t tok_max_id(const tok_file *f) { return f->max_id; }

void tok_read(const tok_file *f, int64_t start, int n, int32_t *out) {
    if (f->dtype_bytes == 2) {
        const uint16_t *s = (const uint16_t *)f->ids + start;
        for (int i = 0; i < n; i++) out[i] = s[i];
    } else {
        const uint32_t *s = (const uint32_t *)f->ids + start;
        for (int i = 0; i < n; i++) out[i] = (int32_t)s[i];
    }
}

/* Writes all n bytes or fails with errno set. */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Best effort: makes the rename itself durable. A failure here does not undo a
 * complete, renamed file, so it is not reported. */
static void fsync_parent_dir(const char *path) {
    char *dup = strdup(path);
    if (!dup) return;
    int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dup);
}

int tok_write(const char *path, const int32_t *ids, int64_t n, int dtype_bytes, struct lerr *e) {
    if (dtype_bytes != 2 && dtype_bytes != 4)
        return lerr_set(e, "%s: dtype_bytes must be 2 or 4, got %d", path, dtype_bytes);
    if (n < 0) return lerr_set(e, "%s: negative token count %lld", path, (long long)n);
    int64_t lim = dtype_bytes == 2 ? 65535 : INT32_MAX;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] > lim)
            return lerr_set(e, "%s: token %lld has id %d, outside [0, %lld] for %d-byte ids", path, (long long)i,
                            ids[i], (long long)lim, dtype_bytes);

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lerr_set(e, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return lerr_set(e, "%s: cannot create: %s", tmp, strerror(errno));

    int32_t h[TOK_HEADER_INTS] = {0};
    h[0] = TOK_MAGIC;
    h[1] = TOK_VERSION;
    h[2] = (int32_t)(uint32_t)((uint64_t)n & 0xffffffffu);
    h[3] = (int32_t)(uint32_t)((uint64_t)n >> 32);
    h[4] = dtype_bytes;
    int rc = write_all(fd, h, sizeof h);

    /* ids go out through a small buffer converted to the file's width */
    enum { CHUNK = 1 << 14 };
    uint32_t buf[CHUNK];
    for (int64_t i = 0; rc == 0 && i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        if (dtype_bytes == 2) {
            uint16_t *b16 = (uint16_t *)buf;
            for (int64_t j = 0; j < k; j++) b16[j] = (uint16_t)ids[i + j];
        } else {
            for (int64_t j = 0; j < k; j++) buf[j] = (uint32_t)ids[i + j];
        }
        rc = write_all(fd, buf, (size_t)k * (size_t)dtype_bytes);
    }
    if (rc == 0) rc = fsync(fd);
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        return lerr_set(e, "%s: write failed: %s", tmp, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        return lerr_set(e, "%s: cannot rename %s into place: %s", path, tmp, strerror(err));
    }
    fsync_parent_dir(path);
    return 0;
}

/* ---- the sample order ---- */

uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(rng_t *r, uint64_t seed) { r->s = seed; }

/* splitmix64: output mix64(s), then advance s by the golden-ratio increment. */
uint64_t rng_next(rng_t *r) {
    uint64_t z = mix64(r->s);
    r->s += 0x9e3779b97f4a7c15ull;
    return z;
}

float rng_uniform(rng_t *r) { return (float)(rng_next(r) >> 40) * 0x1p-24f; }

int data_order_init(data_order *o, int64_t n_tokens, int seq_len, uint64_t seed, data_mode mode, struct lerr *e) {
    memset(o, 0, sizeof *o);
    o->perm_epoch = -1;
    if (seq_len < 1) return lerr_set(e, "data order: seq_len must be >= 1, got %d", seq_len);
    if (mode != DATA_SHUFFLE && mode != DATA_RANDOM) return lerr_set(e, "data order: unknown mode %d", (int)mode);
    if (mode == DATA_SHUFFLE && n_tokens < (int64_t)seq_len + 1)
        return lerr_set(e,
                        "data order: %lld tokens are too few for one shuffled window of seq_len %d (need %lld); "
                        "use a longer file or a smaller seq_len",
                        (long long)n_tokens, seq_len, (long long)seq_len + 1);
    if (mode == DATA_RANDOM && n_tokens < seq_len)
        return lerr_set(e, "data order: %lld tokens are too few for one window of seq_len %d; "
                           "use a longer file or a smaller seq_len",
                        (long long)n_tokens, seq_len);
    int64_t n_win = (n_tokens - 1) / seq_len;
    if (n_win < 1) n_win = 1; /* random mode with n_tokens == seq_len */
    if (mode == DATA_SHUFFLE && n_win > (int64_t)UINT32_MAX)
        return lerr_set(e, "data order: %lld windows per epoch exceed the 2^32 a permutation can index; raise seq_len",
                        (long long)n_win);
    o->n_tokens = n_tokens;
    o->seq_len = seq_len;
    o->seed = seed;
    o->mode = mode;
    o->n_win = n_win;
    if (mode == DATA_SHUFFLE) {
        /* allocated here so that data_sample_offset has no failure path */
        o->perm = malloc((size_t)n_win * sizeof *o->perm);
        if (!o->perm)
            return lerr_set(e, "data order: out of memory for the permutation of %lld windows (%lld bytes)",
                            (long long)n_win, (long long)n_win * 4);
    }
    return 0;
}

void data_order_free(data_order *o) {
    free(o->perm);
    o->perm = NULL;
    o->perm_epoch = -1;
}

/* Epoch e's permutation: identity shuffled by Fisher-Yates (i from n-1 down to
 * 1, j = next % (i + 1)) with the splitmix64 stream seeded mix64(seed ^
 * mix64(e + 1)). The modulo bias is below n / 2^64: irrelevant, and the choice
 * only has to be deterministic. */
static void data_perm_build(data_order *o, int64_t epoch) {
    uint32_t *p = o->perm;
    for (int64_t i = 0; i < o->n_win; i++) p[i] = (uint32_t)i;
    rng_t r;
    rng_seed(&r, mix64(o->seed ^ mix64((uint64_t)epoch + 1)));
    for (int64_t i = o->n_win - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&r) % (uint64_t)(i + 1));
        uint32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    o->perm_epoch = epoch;
}

/* Not thread-safe: shuffle mode rebuilds the cached permutation in place when g
 * moves to another epoch (O(n_win), once per epoch for a run that walks g in
 * order). g must be >= 0. */
int data_order_init_examples(data_order *o, int64_t n, uint64_t seed, data_mode mode, struct lerr *e) {
    if (n < 1) {
        memset(o, 0, sizeof *o);
        o->perm_epoch = -1;
        return lerr_set(e, "data order: a dataset needs at least one example");
    }
    /* windows of length 1 over n + 1 "tokens": n windows at offsets 0..n-1 */
    if (data_order_init(o, n + 1, 1, seed, mode, e)) return -1;
    o->n_tokens = n; /* random mode draws from [0, n - 1 + 1) */
    return 0;
}

int64_t data_sample_offset(data_order *o, int64_t g, int64_t *epoch) {
    int64_t ep = g / o->n_win;
    if (epoch) *epoch = ep;
    if (o->mode == DATA_RANDOM) {
        uint64_t span = (uint64_t)(o->n_tokens - o->seq_len + 1);
        return (int64_t)(mix64(o->seed ^ mix64((uint64_t)g)) % span);
    }
    if (o->perm_epoch != ep) data_perm_build(o, ep);
    return (int64_t)o->perm[g % o->n_win] * o->seq_len;
}

void data_fill(const tok_file *f, data_order *o, int64_t g0, int n, int32_t *tokens) {
    for (int k = 0; k < n; k++) {
        int64_t off = data_sample_offset(o, g0 + k, NULL);
        tok_read(f, off, o->seq_len, tokens + (size_t)k * (size_t)o->seq_len);
    }
}

/* floor(i * D / (W - 1)) with D = n_tokens - seq_len, W = n_windows, computed
 * as i*q + floor(i*r / (W-1)) (D = q*(W-1) + r) so that no product overflows. */
int64_t data_val_offset(int64_t n_tokens, int seq_len, int n_windows, int i) {
    int64_t d = n_tokens - seq_len;
    if (n_windows <= 1 || d <= 0 || i <= 0) return 0;
    int64_t w1 = n_windows - 1;
    int64_t q = d / w1, r = d % w1;
    return (int64_t)i * q + ((int64_t)i * r) / w1;
}
