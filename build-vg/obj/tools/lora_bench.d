build-vg/obj/tools/lora_bench.o: tools/lora_bench.c \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 include/blas_env.h include/gpt2.h include/lerr.h include/lora.h \
 include/safetensors.h include/lora.h include/optim.h
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
include/blas_env.h:
include/gpt2.h:
include/lerr.h:
include/lora.h:
include/safetensors.h:
include/lora.h:
include/optim.h:
