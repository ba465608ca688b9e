build-vg/obj/worker/trainer.o: worker/trainer.c include/trainer.h \
 include/data.h include/lerr.h include/gpt2.h include/lora.h \
 include/safetensors.h include/run_config.h include/merge.h \
 include/optim.h
include/trainer.h:
include/data.h:
include/lerr.h:
include/gpt2.h:
include/lora.h:
include/safetensors.h:
include/run_config.h:
include/merge.h:
include/optim.h:
