/*
 * tok_ and data_: pre-tokenized training data and the global sample order.
 *
 * Token files (read through a read-only mmap, validated on open):
 *  - llm.c shards: 256 little-endian int32 header {20240520, 1, count, 0...}, then count uint16 ids;
 *    also llm.c's uint32 variant {20240801, 7, count, ...}.
 *  - this project's format (what tok_write writes): 256 int32 header
 *    {TOK_MAGIC, TOK_VERSION, count_lo, count_hi, dtype_bytes (2 or 4), 0...}, then ids.
 *    A file with this magic and another version is rejected naming both versions.
 *
 * The sample order. Training draws windows of seq_len tokens. A *global sample
 * index* g = 0, 1, 2, ... names the g-th window the run consumes; step s of a run
 * with global batch G uses g in [s*G, (s+1)*G). The window of g depends only on
 * (file, seq_len, seed, mode, g), so any number of workers can split the same
 * order (worker w takes a contiguous share of a step's indices) and a resumed run
 * continues from a global sample cursor.
 *  - DATA_SHUFFLE (default): the file is cut into n_win = (count - 1) / seq_len
 *    disjoint windows; epoch e = g / n_win visits them in a permutation drawn
 *    by Fisher-Yates from (seed, e), so each window is used exactly once per epoch.
 *  - DATA_RANDOM: window start = hash(seed, g) mod (count - seq_len + 1).
 */
#ifndef DATA_H
#define DATA_H

#include <stdint.h>

#include "lerr.h"

#define TOK_MAGIC 0x4B544F4C /* "LOTK" little-endian */
#define TOK_VERSION 1

typedef struct tok_file tok_file;

tok_file *tok_open(const char *path, struct lerr *e);
void tok_close(tok_file *f);
int64_t tok_count(const tok_file *f);
const char *tok_path(const tok_file *f);
/* Largest token id in the file (scanned once on open). */
uint32_t tok_max_id(const tok_file *f);
/* out[i] = token[start + i] for i < n; caller ensures the range is inside. */
void tok_read(const tok_file *f, int64_t start, int n, int32_t *out);

/* Writes ids[0..n) in this project's format, dtype_bytes 2 or 4 (every id must fit). */
int tok_write(const char *path, const int32_t *ids, int64_t n, int dtype_bytes, struct lerr *e);

typedef enum { DATA_SHUFFLE = 0, DATA_RANDOM = 1 } data_mode;

typedef struct {
    int64_t n_tokens;
    int seq_len;
    uint64_t seed;
    data_mode mode;
    int64_t n_win;      /* windows per epoch (shuffle mode) */
    uint32_t *perm;     /* permutation of the cached epoch (shuffle mode) */
    int64_t perm_epoch; /* which epoch perm holds, -1 if none */
} data_order;

/* -1 when the file is too short for one window of seq_len tokens (shuffle
 * mode needs seq_len + 1 tokens, random mode seq_len). Shuffle mode allocates
 * the n_win-entry permutation here, so data_sample_offset cannot fail.
 * data_order_free is safe after a failed init. */
int data_order_init(data_order *o, int64_t n_tokens, int seq_len, uint64_t seed, data_mode mode, struct lerr *e);
void data_order_free(data_order *o);
/* The same over n examples of a dataset (sample offsets are example indices
 * in [0, n): a permutation per epoch, or uniform draws in random mode). */
int data_order_init_examples(data_order *o, int64_t n, uint64_t seed, data_mode mode, struct lerr *e);
/* Token offset of the window of global sample g >= 0; *epoch (if not NULL)
 * gets its epoch, g / n_win (random mode uses the same n_win, at least 1).
 * Not thread-safe: shuffle mode rebuilds the cached permutation on an epoch change. */
int64_t data_sample_offset(data_order *o, int64_t g, int64_t *epoch);
/* Fills tokens[n][seq_len] with the windows of g0 .. g0+n-1. */
void data_fill(const tok_file *f, data_order *o, int64_t g0, int n, int32_t *tokens);

/* Start of validation window i of n_windows evenly spaced windows of seq_len:
 * floor(i * (n_tokens - seq_len) / (n_windows - 1)) (0 when n_windows == 1). */
int64_t data_val_offset(int64_t n_tokens, int seq_len, int n_windows, int i);

/* A 64-bit mix (splitmix64 finalizer): the project's hash for seeds and streams. */
uint64_t mix64(uint64_t x);

/* A small seeded generator (splitmix64 stream) for init and dropout. */
typedef struct {
    uint64_t s;
} rng_t;
void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform float in [0, 1) with 24 random bits. */
float rng_uniform(rng_t *r);

#endif
