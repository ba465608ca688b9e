build-vg/obj/coordinator/optim.o: coordinator/optim.c include/optim.h
include/optim.h:
