build-vg/obj/worker/safetensors.o: worker/safetensors.c \
 include/safetensors.h include/lerr.h /usr/include/cjson/cJSON.h
include/safetensors.h:
include/lerr.h:
/usr/include/cjson/cJSON.h:
