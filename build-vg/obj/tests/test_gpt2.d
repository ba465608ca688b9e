build-vg/obj/tests/test_gpt2.o: tests/test_gpt2.c include/data.h \
 include/lerr.h include/gpt2.h include/lora.h include/safetensors.h \
 include/lora.h include/merge.h include/gpt2.h include/safetensors.h \
 tests/testutil.h
include/data.h:
include/lerr.h:
include/gpt2.h:
include/lora.h:
include/safetensors.h:
include/lora.h:
include/merge.h:
include/gpt2.h:
include/safetensors.h:
tests/testutil.h:
