build-vg/obj/worker/run_config.o: worker/run_config.c \
 include/run_config.h include/lerr.h
include/run_config.h:
include/lerr.h:
