build-vg/obj/tools/lora.o: tools/lora.c include/blas_env.h \
 include/checkpoint.h include/lerr.h include/lora.h include/data.h \
 include/gpt2.h include/safetensors.h include/lora.h include/merge.h \
 include/gpt2.h include/parity.h include/safetensors.h include/util.h \
 include/trainer.h include/data.h include/run_config.h
include/blas_env.h:
include/checkpoint.h:
include/lerr.h:
include/lora.h:
include/data.h:
include/gpt2.h:
include/safetensors.h:
include/lora.h:
include/merge.h:
include/gpt2.h:
include/parity.h:
include/safetensors.h:
include/util.h:
include/trainer.h:
include/data.h:
include/run_config.h:
