/* Small file helpers shared by loaders and writers. */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

/* Reads a whole text file (at most max bytes) into a NUL-terminated malloc'd
 * buffer; NULL with "path: cannot open: ..." on error. */
char *read_text_file(const char *path, size_t max, struct lerr *e);
/* mkdir -p; 0 on success or if it exists as a directory. */
int mkdir_p(const char *path, struct lerr *e);
/* mkdir -p, then creates and removes a probe file in it: 0 when files can be
 * written there (checked at start, so an unusable folder fails a run before
 * it trains, not at its first write). */
int dir_check_writable(const char *path, struct lerr *e);
/* Writes len bytes to path atomically: path.tmp.<pid>, fsync, rename. */
int write_file_atomic(const char *path, const void *data, size_t len, struct lerr *e);

/* A fast 64-bit hash of n bytes (8-byte words through the splitmix64
 * finalizer, then the tail and the length): for model identity and message
 * checksums, not for security. */
uint64_t hash64(const void *p, size_t n, uint64_t seed);

/* Resident memory of this process from /proc/self/smaps_rollup, in bytes:
 * rss, pss (shared pages divided among their users) and private (dirty+clean).
 * Zeros when the file is unavailable. */
void mem_usage(uint64_t *rss, uint64_t *pss, uint64_t *private_bytes);

/* Index of the first NaN or infinity among x[0..n), or -1 when all are
 * finite. Reads the bits (exponent all ones), so it works under -ffast-math
 * and vectorizes: a scan at memory speed, for checks at load time. */
int64_t first_nonfinite(const float *x, size_t n);
/* "NaN", "+inf" or "-inf": what a non-finite value is, for messages. */
const char *nonfinite_name(float v);

#endif
