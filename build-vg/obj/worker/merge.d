build-vg/obj/worker/merge.o: worker/merge.c include/merge.h \
 include/gpt2.h include/lerr.h include/lora.h include/safetensors.h \
 include/util.h
include/merge.h:
include/gpt2.h:
include/lerr.h:
include/lora.h:
include/safetensors.h:
include/util.h:
