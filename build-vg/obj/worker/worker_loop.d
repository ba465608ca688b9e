build-vg/obj/worker/worker_loop.o: worker/worker_loop.c include/ps.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 include/trainer.h include/data.h include/lerr.h include/gpt2.h \
 include/lora.h include/safetensors.h include/run_config.h include/wire.h \
 build-vg/proto/lora.pb-c.h
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
include/wire.h:
build-vg/proto/lora.pb-c.h:
