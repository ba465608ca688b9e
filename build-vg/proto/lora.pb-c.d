build-vg/proto/lora.pb-c.o: build-vg/proto/lora.pb-c.c \
 build-vg/proto/lora.pb-c.h
build-vg/proto/lora.pb-c.h:
