/* Tiny test harness: CHECK records a failure and goes on; test_main_end
 * returns the exit status (non-zero when any check failed). */
#ifndef TESTUTIL_H
#define TESTUTIL_H
#include <math.h>
#include <stdio.h>

extern int tu_failures, tu_checks;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        tu_checks++;                                                                                                   \
        if (!(cond)) {                                                                                                 \
            tu_failures++;                                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                            \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
        }                                                                                                              \
    } while (0)

/* Relative error |a-b|_2 / |b|_2 over n floats (b all zero: |a|_2). */
double tu_rel_err(const float *a, const float *b, long n);
/* Max absolute difference over n floats. */
double tu_max_abs(const float *a, const float *b, long n);
/* Prints a summary line and returns the exit status for main. */
int tu_end(const char *name);
/* Copies a file; 0 or -1. */
int tu_copy_file(const char *from, const char *to);
/* At the end of a test: removes its scratch folder `root` when every check
 * passed, else says it is kept (to look at what failed). */
void tu_scratch_done(const char *root);
/* Path of a fixture folder: $LORA_FIXTURES/<name> or ../shared/fixtures/<name>. */
const char *tu_fixture(const char *name);
#endif
