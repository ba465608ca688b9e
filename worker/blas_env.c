/* See include/blas_env.h. */
#include "blas_env.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void blas_env_setup(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *off = getenv("LORA_BLAS_AUTO");
    if (off && !strcmp(off, "0")) return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return;
    const char *core = openblas_get_corename();
    if (!core || !(strcmp(core, "Haswell") == 0 || strcmp(core, "Zen") == 0 || strcmp(core, "haswell") == 0 ||
                   strcmp(core, "zen") == 0))
        return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slower kernels */
    unsetenv("OPENBLAS_CORETYPE");
}
