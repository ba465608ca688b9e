build-vg/obj/worker/data.o: worker/data.c include/data.h include/lerr.h
include/data.h:
include/lerr.h:
