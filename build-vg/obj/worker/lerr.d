build-vg/obj/worker/lerr.o: worker/lerr.c include/lerr.h
include/lerr.h:
