build-vg/obj/tests/test_kernels.o: tests/test_kernels.c include/data.h \
 include/lerr.h include/kernels.h tests/testutil.h
include/data.h:
include/lerr.h:
include/kernels.h:
tests/testutil.h:
