build-vg/obj/tests/test_wire.o: tests/test_wire.c include/data.h \
 include/lerr.h tests/testutil.h include/wire.h \
 build-vg/proto/lora.pb-c.h
include/data.h:
include/lerr.h:
tests/testutil.h:
include/wire.h:
build-vg/proto/lora.pb-c.h:
