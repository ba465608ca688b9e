build-vg/obj/tests/test_optim.o: tests/test_optim.c include/optim.h \
 tests/testutil.h
include/optim.h:
tests/testutil.h:
