/* lerr: error buffer helpers and checked allocation (see include/lerr.h). */
#define _POSIX_C_SOURCE 200809L
#include "lerr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int lerr_set(struct lerr *e, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int lerr_prefix(struct lerr *e, const char *fmt, ...) {
    if (!e) return -1;
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t h = strlen(head), o = strnlen(old, sizeof old - 1);
    if (h > sizeof e->msg - 3) h = sizeof e->msg - 3;
    memcpy(e->msg, head, h);
    memcpy(e->msg + h, ": ", 2);
    if (o > sizeof e->msg - h - 3) o = sizeof e->msg - h - 3;
    memcpy(e->msg + h + 2, old, o);
    e->msg[h + 2 + o] = 0;
    return -1;
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "%s:%d: out of memory allocating %zu bytes (lower batch_size or seq_len)\n", file, line, n);
        exit(1);
    }
    return p;
}

void *xcalloc_at(size_t n, size_t sz, const char *file, int line) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) {
        fprintf(stderr, "%s:%d: out of memory allocating %zu x %zu bytes (lower batch_size or seq_len)\n", file, line, n,
                sz);
        exit(1);
    }
    return p;
}

void *xalloc_aligned_at(size_t n, const char *file, int line) {
    size_t sz = (n + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0) {
        fprintf(stderr, "%s:%d: out of memory allocating %zu bytes (lower batch_size or seq_len)\n", file, line, n);
        exit(1);
    }
    memset(p, 0, sz ? sz : 64);
    return p;
}

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
