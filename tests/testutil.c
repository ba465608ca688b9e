#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

int tu_failures, tu_checks;

double tu_rel_err(const float *a, const float *b, long n) {
    double d = 0, r = 0;
    for (long i = 0; i < n; i++) {
        double x = (double)a[i] - (double)b[i];
        d += x * x;
        r += (double)b[i] * b[i];
    }
    if (r == 0) return sqrt(d);
    return sqrt(d / r);
}

double tu_max_abs(const float *a, const float *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (x > m || isnan(x)) m = x;
    }
    return m;
}

int tu_end(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

const char *tu_fixture(const char *name) {
    static char buf[4096];
    const char *root = getenv("LORA_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "tests/fixtures", name);
    return buf;
}

int tu_copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ok = a && b;
    char buf[8192];
    size_t k;
    while (ok && (k = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, k, b) == k;
    if (a) fclose(a);
    if (b && fclose(b)) ok = 0;
    return ok ? 0 : -1;
}

void tu_scratch_done(const char *root) {
    if (tu_failures) {
        fprintf(stderr, "files kept in %s\n", root);
        return;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}
