/*
 * lora_worker: the distributed trainer.
 *   mpirun -np N lora_worker --config FILE [--set section.key=value ...]
 * Rank 0 coordinates and serves; see include/ps.h. A thin main: MPI set-up
 * and the run, which lives in the library.
 */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>

#include "blas_env.h"
#include "ps.h"

int main(int argc, char **argv) {
    blas_env_setup(argv);
    signal(SIGXFSZ, SIG_IGN); /* past a file size limit writes fail with EFBIG and are reported, not a silent kill */
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "lora_worker: MPI_Init failed\n");
        return 1;
    }
    int rc = ps_run(argc - 1, argv + 1);
    MPI_Finalize();
    return rc;
}
