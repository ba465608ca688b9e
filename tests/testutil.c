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
