build-vg/obj/coordinator/wire.o: coordinator/wire.c include/wire.h \
 include/lerr.h build-vg/proto/lora.pb-c.h include/safetensors.h \
 include/util.h
include/wire.h:
include/lerr.h:
build-vg/proto/lora.pb-c.h:
include/safetensors.h:
include/util.h:
