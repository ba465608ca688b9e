build-vg/obj/tests/test_config.o: tests/test_config.c \
 include/run_config.h include/lerr.h tests/testutil.h
include/run_config.h:
include/lerr.h:
tests/testutil.h:
