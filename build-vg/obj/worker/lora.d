build-vg/obj/worker/lora.o: worker/lora.c include/lora.h include/lerr.h \
 /usr/include/cjson/cJSON.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 include/data.h include/safetensors.h include/util.h
include/lora.h:
include/lerr.h:
/usr/include/cjson/cJSON.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
include/data.h:
include/safetensors.h:
include/util.h:
