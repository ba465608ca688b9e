build-vg/obj/coordinator/ps_comm.o: coordinator/ps_comm.c include/ps.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 include/trainer.h include/data.h include/lerr.h include/gpt2.h \
 include/lora.h include/safetensors.h include/run_config.h
include/ps.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
include/trainer.h:
include/data.h:
include/lerr.h:
include/gpt2.h:
include/lora.h:
include/safetensors.h:
include/run_config.h:
