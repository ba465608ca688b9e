build-vg/obj/tools/lora_worker.o: tools/lora_worker.c \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 include/blas_env.h include/ps.h include/trainer.h include/data.h \
 include/lerr.h include/gpt2.h include/lora.h include/safetensors.h \
 include/run_config.h
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
include/blas_env.h:
include/ps.h:
include/trainer.h:
include/data.h:
include/lerr.h:
include/gpt2.h:
include/lora.h:
include/safetensors.h:
include/run_config.h:
