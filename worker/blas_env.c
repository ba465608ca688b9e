/* See include/blas_env.h. */
#include "blas_env.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Whether OpenBLAS's choice is a kernel set for this CPU's widest vectors. */
static int core_is(const char *core, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (!strcasecmp(core, names[i])) return 1;
    return 0;
}

void blas_env_setup(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *off = getenv("LORA_BLAS_AUTO");
    if (off && !strcmp(off, "0")) return;
    __builtin_cpu_init();
    const char *core = openblas_get_corename();
    if (!core) return;
    /* OpenBLAS 0.3.21 does not know CPUs newer than itself (AMD Zen 4/5, Intel
     * Sapphire/Emerald Rapids...): it falls back to Haswell, Zen, or even
     * Prescott's SSE3 kernels (seen on a Xeon with AVX-512 and AMX: 5x slower).
     * Pick the kernels for the vectors the CPU has. */
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
        if (!core_is(core, avx512_cores)) want = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (!core_is(core, avx2_cores)) want = "Haswell";
    }
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slower kernels */
    unsetenv("OPENBLAS_CORETYPE");
}
