build-vg/obj/worker/gpt2.o: worker/gpt2.c include/gpt2.h include/lerr.h \
 include/lora.h include/safetensors.h /usr/include/cjson/cJSON.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 include/data.h include/kernels.h include/util.h
include/gpt2.h:
include/lerr.h:
include/lora.h:
include/safetensors.h:
/usr/include/cjson/cJSON.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
include/data.h:
include/kernels.h:
include/util.h:
