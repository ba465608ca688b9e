/*
 * lerr: the error buffer every library-style function of the project fills.
 *
 * Parsers, loaders and checkers never exit on bad input: they return -1 (or
 * NULL) and leave a one-line message naming the file, field or rank in a
 * struct lerr the caller owns. Callers print it and decide (exit, MPI_Abort,
 * fall back). Fuzzers call the same functions.
 */
#ifndef LERR_H
#define LERR_H

#include <stddef.h>

struct lerr {
    char msg[768];
};

/* Formats the message into e (when e is not NULL) and returns -1, so that
 * error paths read `return lerr_set(e, "...", ...);`. */
int lerr_set(struct lerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message: "prefix: old message". Returns -1. */
int lerr_prefix(struct lerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation helpers that never return NULL: on failure they print file:line
 * and the size asked for, then exit(1). For tool and trainer set-up only;
 * library parsers use plain malloc and report through lerr. */
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t sz, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, sz) xcalloc_at((n), (sz), __FILE__, __LINE__)

/* 64-byte aligned allocation (for SIMD-friendly activation buffers);
 * free with free(). Zeroed. Exits on failure like xmalloc. */
void *xalloc_aligned_at(size_t n, const char *file, int line);
#define xalloc_aligned(n) xalloc_aligned_at((n), __FILE__, __LINE__)

/* Wall clock in seconds (CLOCK_MONOTONIC). */
double now_s(void);

#endif
