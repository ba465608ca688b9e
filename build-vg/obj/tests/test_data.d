build-vg/obj/tests/test_data.o: tests/test_data.c include/data.h \
 include/lerr.h tests/testutil.h
include/data.h:
include/lerr.h:
tests/testutil.h:
