build-vg/obj/worker/parity.o: worker/parity.c include/parity.h \
 /usr/include/cjson/cJSON.h include/gpt2.h include/lerr.h include/lora.h \
 include/safetensors.h include/lora.h include/merge.h include/gpt2.h \
 include/optim.h include/safetensors.h include/util.h
include/parity.h:
/usr/include/cjson/cJSON.h:
include/gpt2.h:
include/lerr.h:
include/lora.h:
include/safetensors.h:
include/lora.h:
include/merge.h:
include/gpt2.h:
include/optim.h:
include/safetensors.h:
include/util.h:
