/*
 * OpenBLAS kernel selection. Debian 12's OpenBLAS 0.3.21 predates AMD Zen 4/5
 * and Intel Sapphire/Emerald Rapids: on Zen 4 it falls back to its Haswell
 * (AVX2) kernels although the CPU has AVX-512, which halves sgemm speed
 * (measured: 240 vs 450 GFLOP/s on 2 cores), and on a Xeon with AVX-512 and
 * AMX to Prescott's SSE3 kernels (about 5x slower). OpenBLAS reads
 * OPENBLAS_CORETYPE only when the library loads, so blas_env_setup
 * re-executes the program once with OPENBLAS_CORETYPE=SkylakeX when the CPU
 * has AVX-512 (F, BW, DQ, VL) and OpenBLAS picked a core without it (Haswell
 * when the CPU has AVX2 and FMA and OpenBLAS picked an older core).
 * A user's own OPENBLAS_CORETYPE is never overridden; LORA_BLAS_AUTO=0 turns
 * this off. Call it first thing in main, before MPI_Init.
 */
#ifndef BLAS_ENV_H
#define BLAS_ENV_H

void blas_env_setup(char **argv);

#endif
