build-vg/obj/worker/util.o: worker/util.c include/util.h include/lerr.h
include/util.h:
include/lerr.h:
