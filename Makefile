# lora-ps build. `make` builds everything; `make demo`, `make test`, `make bench`,
# `make parity FIXTURE=dir`. `make SAN=1 ...` builds and runs with ASan+UBSan into build-san/.
# Dependencies come from Debian packages (scripts/install-deps.sh, called by demo and test).

CC       ?= gcc
SAN      ?= 0
ARCH     ?= -march=native
OPT      ?= -O3
WERROR   ?= -Werror
BLAS_INC ?= /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB ?= /usr/lib/x86_64-linux-gnu/openblas-openmp

ifeq ($(VG),1)
BUILD    := build-vg
ARCH     := -mavx2 -mfma
OPT      := -O1 -g
SANFLAGS :=
else ifeq ($(FUZZ),1)
# libFuzzer harnesses (tests/fuzz/): the library built by clang with the fuzzer's
# coverage and ASan+UBSan; only the harnesses' link adds the fuzzer's main.
BUILD    := build-fuzz
CC       := clang
OPT      := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
CFLAGS   += -Wno-unknown-warning-option -Wno-pass-failed # clang: "loop not vectorized" notes under -O1
else ifeq ($(SAN),1)
BUILD    := build-san
OPT      := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD    := build
SANFLAGS :=
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)

CPPFLAGS += -Iinclude -I$(BUILD)/proto -I/usr/include/hdf5/serial -I/usr/include/cjson -I$(BLAS_INC) -D_GNU_SOURCE
CFLAGS   += -std=c11 $(OPT) $(ARCH) -g -fopenmp -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-format-truncation \
            $(WERROR) -MMD -MP $(SANFLAGS)
LDFLAGS  += -fopenmp $(SANFLAGS) -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -L/usr/lib/x86_64-linux-gnu/hdf5/serial
LDLIBS   += -lopenblas -lhdf5 -lprotobuf-c -lcjson -linih -lpcre2-8 -lutf8proc -lm

# Library: every module of worker/ and coordinator/ (MPI-free ones and MPI glue alike).
LIB_SRC  := $(wildcard worker/*.c coordinator/*.c)
PROTO    := $(wildcard proto/*.proto)
PROTO_C  := $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.c,$(PROTO))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(PROTO_C:.c=.o)
LIB      := $(BUILD)/liblora.a

TOOLS    := $(patsubst tools/%.c,$(BUILD)/bin/%,$(wildcard tools/*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/bin/%,$(wildcard tests/test_*.c))
FUZZERS  := $(patsubst tests/fuzz/%.c,$(BUILD)/bin/%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps test-deps demo test parity parity-random bench bench-net clean valgrind slurm-test fuzz fuzz-bins
.SECONDARY:
all: $(LIB) $(TOOLS) $(TESTS)

deps:
	@scripts/install-deps.sh

# The tests also need python3 with venv for the reference environment (tests/ref/).
test-deps:
	@LORA_EXTRA_PKGS="python3 python3-venv" scripts/install-deps.sh

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/proto
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/proto $<

$(BUILD)/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -Wshadow,$(CFLAGS)) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_C)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(MPI_CFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $< $(LIB) $(MPI_LIBS) $(LDLIBS) -o $@

$(BUILD)/bin/test_%: $(BUILD)/obj/tests/test_%.o $(BUILD)/obj/tests/testutil.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $< $(BUILD)/obj/tests/testutil.o $(LIB) $(MPI_LIBS) $(LDLIBS) -o $@

# make FUZZ=1 fuzz-bins: the libFuzzer harnesses (clang) in build-fuzz/bin.
ifeq ($(FUZZ),1)
fuzz-bins: $(FUZZERS)
else
fuzz-bins:
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-bins
endif

$(BUILD)/bin/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer $< $(LIB) $(MPI_LIBS) $(LDLIBS) -o $@

# Every harness for FUZZ_SECONDS (default 60) each, seeded from the fixtures
# and tests/fuzz/regress; a crash input is kept in build-fuzz/fuzz/<target>/
# and fails the run (scripts/run_fuzz.sh; FUZZ_TARGETS picks some).
fuzz: deps
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-bins
	scripts/run_fuzz.sh build-fuzz

FIXTURES ?= tests/fixtures
FIXTURE  ?= $(FIXTURES)/gpt2-tiny

demo: deps
	@$(MAKE) --no-print-directory all
	scripts/demo.sh

parity: all
	$(BUILD)/bin/lora parity $(FIXTURE)

# The whole suite (scripts/run_tests.sh): unit tests, parity, the checks against
# the live HF reference environment (tests/ref/, installed on first use), bad
# inputs, the parameter server, checkpoints, multi-host, convergence; then all
# but the convergence run again under ASan+UBSan; then the unit tests under
# valgrind. With LORA_NO_REF=1 the reference checks are listed as not run and
# make test fails at the end, after everything else ran; so does a test that
# cannot run here (exit 77, e.g. multihost.sh without root).
test: test-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-bins
	scripts/run_tests.sh build
	@$(MAKE) --no-print-directory SAN=1 all
	scripts/run_tests.sh build-san --quick
	@$(MAKE) --no-print-directory valgrind
	@if cat build/not-run.txt build-san/not-run.txt 2>/dev/null | grep -q .; then \
	    echo "make test: these checks were not run, so the suite did not pass:"; \
	    sort -u build/not-run.txt build-san/not-run.txt 2>/dev/null | sed 's/^/  /'; exit 1; fi

# Random-shape parity against fixtures HF + peft make on the spot
# (tests/ref/make_fixture.py): make parity-random N=200 FAMILY=gpt2 [SEEDS=1,2,3]
N      ?= 20
FAMILY ?= gpt2
parity-random: test-deps all
	@py=$$(tests/ref/setup.sh) && LORA_REF_PY=$$py tests/ref_parity.sh $(BUILD) $(FAMILY) $(N) $(SEEDS)

# The unit tests and the parity check under valgrind (memcheck, leaks), from a
# build without AVX-512 (valgrind 3.19 cannot decode it).
valgrind:
	@$(MAKE) --no-print-directory VG=1 all
	scripts/run_valgrind.sh build-vg

# The GPT-2 124M case (its figures at the top level of bench.json), the
# parameter server, then the LLaMA 1B-class case (under "llama_1b").
bench: all
	$(BUILD)/bin/lora_bench --json $(BUILD)/bench.json $(BENCH_ARGS)
	scripts/bench_ps.sh $(BUILD) $(BUILD)/bench.json
	$(BUILD)/bin/lora_bench --family llama --json $(BUILD)/bench.json --json-key llama_1b $(BENCH_LLAMA_ARGS)
	$(BUILD)/bin/lora_bench --family bert-cls --json $(BUILD)/bench.json --json-key bert-cls $(BENCH_BERT_ARGS)
	scripts/bench_tokenizers.sh $(BUILD)
	@echo "bench JSON: $(BUILD)/bench.json"

# cluster/lora.sbatch on a real single-node Slurm from Debian's packages (root;
# installs slurmctld slurmd slurm-client munge with apt-get if missing). About 80 s.
slurm-test: test-deps
	@$(MAKE) --no-print-directory all
	tests/slurm.sh $(BUILD)

# LoRA against full fine-tuning over a shaped 1 Gbit/s link between network
# namespaces (root; about 2 minutes).
bench-net: all
	scripts/bench_net.sh $(BUILD)

clean:
	rm -rf build build-san build-vg build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
