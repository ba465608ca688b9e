/*
 * fuzz_util: what the libFuzzer harnesses of tests/fuzz/ share.
 *
 * The contract every harness checks: each input comes back as success or as
 * an error with a message (an empty message is a finding: abort()); ASan and
 * UBSan catch the rest. Parsers that only read paths get the input through a
 * file in one temporary folder per process (removed at exit).
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lerr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_[256];

static inline void fuzz_dir_remove(void) {
    if (!fuzz_dir_[0]) return;
    DIR *d = opendir(fuzz_dir_);
    if (d) {
        struct dirent *de;
        char p[600];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", fuzz_dir_, de->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(fuzz_dir_);
}

/* The process's temporary folder (made on first use). */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/lora-fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_;
}

/* Writes data[0..n) to fuzz_dir()/name and returns the path (static buffer);
 * the harness's own failure aborts (it is not the parser's). */
static inline const char *fuzz_file(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(path);
        abort();
    }
    return path;
}

static inline void fuzz_unlink(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}

/* A failure must say why. */
static inline void fuzz_need_msg(int failed, const struct lerr *e, const char *what) {
    if (failed && !e->msg[0]) {
        fprintf(stderr, "fuzz: %s failed without a message\n", what);
        abort();
    }
}

/* Harnesses with generated seeds: with FUZZ_WRITE_SEEDS=dir in the
 * environment, LLVMFuzzerInitialize writes them into dir and the process
 * exits (scripts/run_fuzz.sh runs each harness so once). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
static inline void fuzz_seeds_if_asked(void (*write_seeds)(const char *dir)) {
    const char *d = getenv("FUZZ_WRITE_SEEDS");
    if (d && *d) {
        write_seeds(d);
        exit(0);
    }
}

/* A NUL-terminated malloc'd copy of the input (text parsers). */
static inline char *fuzz_text(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = 0;
    return s;
}
#endif
