build-vg/obj/tests/test_safetensors.o: tests/test_safetensors.c \
 include/safetensors.h include/lerr.h tests/testutil.h
include/safetensors.h:
include/lerr.h:
tests/testutil.h:
