# inferd build. `make` builds build/inferd; `make test` runs every test; `make run` serves the
# example repository. `make help` lists the rest.

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
PY := /usr/bin/python3
SANITIZE ?=
BUILD ?= build
WARNFLAGS :=

ifeq ($(SANITIZE),address)
BUILD := build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),thread)
BUILD := build-tsan
SANFLAGS := -fsanitize=thread
else ifeq ($(SANITIZE),fuzzer)
# libFuzzer builds (clang only): the library is instrumented, targets link -fsanitize=fuzzer.
BUILD := build-fuzz
CC := clang
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
# clang accepts -fopenmp=libgomp but generates no OpenMP code for it, so the `omp parallel`
# pragmas are ignored (fuzz builds run serially, which libFuzzer prefers anyway) and a
# thread count used only by a pragma looks unused.
WARNFLAGS := -Wno-unused-parameter -Wno-unused-variable -Wno-unused-but-set-variable
else ifneq ($(SANITIZE),)
$(error SANITIZE must be address, thread or fuzzer)
endif
ifeq ($(CC),clang)
OPENMP := -fopenmp=libgomp
else
OPENMP := -fopenmp
endif

PKGS := libmicrohttpd jansson libprotobuf-c libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT ?= -O2
CFLAGS_BASE := -std=c11 $(OPT) -g -Wall -Wextra -Werror $(WARNFLAGS) -D_GNU_SOURCE $(OPENMP) \
               -Isrc -I$(BUILD)/gen $(PKG_CFLAGS) $(SANFLAGS)
CFLAGS ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS)
LDLIBS := -ldnnl $(PKG_LIBS) -lgomp -lpthread -lm
LDFLAGS ?=
ALL_LDFLAGS := $(OPENMP) $(SANFLAGS) $(LDFLAGS)

# TorchScript: src/backend/torchscript/plugin.cpp becomes $(BUILD)/libinferd_torch.so, which
# inferd opens with dlopen the first time it loads a model.pt (src/backend/torchscript/plugin.h
# says why). Built when libtorch-dev is installed; `make TORCH=0` builds without it, and then a
# model.pt fails to load with a message saying so. The plugin is C++ and is compiled without
# sanitizers (libtorch is not instrumented); ThreadSanitizer and fuzzing builds leave it out.
TORCH ?= $(if $(wildcard /usr/include/torch/script.h),1,0)
HAVE_TORCH := $(if $(filter thread fuzzer,$(SANITIZE)),0,$(TORCH))
TORCH_PLUGIN := $(if $(filter 1,$(HAVE_TORCH)),$(BUILD)/libinferd_torch.so)
CXX := g++
TORCH_CXXFLAGS := -std=c++17 $(OPT) -g -fPIC -fvisibility=hidden -Wall -Wextra -Werror -fopenmp \
                  -D_GNU_SOURCE -Isrc -isystem /usr/include/torch/csrc/api/include
TORCH_LIBS := -ltorch_cpu -lc10 -lgomp

# Files named *_avx512.c hold kernels for AVX-512 CPUs and *_avx2.c for AVX2 ones; callers
# pick them at run time from the CPU's features, so the binary still runs on older CPUs.
AVX512_FLAGS := -O3 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c
AVX2_FLAGS := -O3 -mavx2 -mfma -mf16c

LIB_SRCS := $(filter-out %/main.c $(wildcard src/*/test_*.c src/*/*/test_*.c), \
              $(wildcard src/*/*.c src/*/*/*.c))
TEST_SRCS := $(wildcard src/*/test_*.c src/*/*/test_*.c)
GEN_SRCS := $(BUILD)/gen/onnx.pb-c.c
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(BUILD)/obj/gen/onnx.pb-c.o
TEST_BINS := $(patsubst src/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_REPLAY_BINS := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
HDRS := $(wildcard src/*/*.h src/*/*/*.h)

.PHONY: all build-only deps test unit unit-asan unit-tsan tsan-bins e2e e2e-asan fuzz fuzz-replay fuzz-replay-asan run \
        bench bench-engine bench-targets bench-peak bench-server bench-text bench-load bench-residency \
        bench-overload soak \
        format format-check clean help fixtures models

JOBS ?= $(shell nproc 2>/dev/null || echo 2)

# Packages first, then a parallel build.
all:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory -j$(JOBS) build-only

build-only: $(BUILD)/inferd $(TORCH_PLUGIN)

deps:
	@scripts/deps.sh build

help:
	@echo "make            build build/inferd (installs missing Debian packages first)"
	@echo "make run        build, make the example models if needed, serve them on 127.0.0.1:8000"
	@echo "make test       unit tests, the same under ASan+UBSan, fuzz corpora replay, end-to-end tests"
	@echo "make bench      every benchmark (bench-engine, bench-server, bench-text, bench-load,"
	@echo "                bench-residency); writes bench/RESULTS.md"
	@echo "make SANITIZE=address|thread   build into build-asan/ or build-tsan/"
	@echo "make fuzz FUZZ_SECONDS=N       run each libFuzzer target (clang) for N seconds"
	@echo "make e2e-asan   a short end-to-end run against the ASan+UBSan server (part of make test)"
	@echo "make bench-targets   issue #2's speed targets, median of interleaved inferd/ORT rounds"
	@echo "make bench-peak      one core's FP32 FMA peak (GFLOP/s), the engine's roofline"
	@echo "make bench-overload  2x capacity for 60 s: refusals, health p99, RSS, recovery"
	@echo "make soak MINUTES=N  mixed valid and invalid traffic at ~70% of capacity"
	@echo "make format / format-check     clang-format the sources / check them"

$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h &: /usr/include/onnx/onnx.proto
	@mkdir -p $(BUILD)/gen
	cp $< $(BUILD)/gen/onnx.proto
	cd $(BUILD)/gen && protoc-c --c_out=. onnx.proto

$(BUILD)/obj/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wextra -Werror,$(ALL_CFLAGS)) -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c $(HDRS) $(BUILD)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/obj/%_avx2.o: %_avx2.c $(HDRS) $(BUILD)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HDRS) $(BUILD)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Where torchscript.c finds the plugin; rewritten only when it changes, so toggling TORCH
# recompiles that one file.
$(BUILD)/gen/torch_config.h: FORCE
	@mkdir -p $(dir $@)
	@if [ "$(HAVE_TORCH)" = 1 ]; then \
	    echo '#define INFERD_TORCH_PLUGIN_PATH "$(abspath $(BUILD))/libinferd_torch.so"'; \
	else echo '/* built without libtorch: no TorchScript support */'; fi > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/obj/src/backend/torchscript/torchscript.o: $(BUILD)/gen/torch_config.h

$(BUILD)/libinferd_torch.so: src/backend/torchscript/plugin.cpp src/backend/torchscript/plugin.h \
                            src/util/tensor.h src/util/dtype.h src/util/error.h
	$(CXX) $(TORCH_CXXFLAGS) -shared -o $@ $< -Wl,--no-undefined $(TORCH_LIBS)

.PHONY: FORCE
FORCE:

$(BUILD)/libinferd.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/inferd: $(BUILD)/obj/src/cli/main.o $(BUILD)/libinferd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# test_repo_resid makes thread creation fail on purpose (a loader that cannot start).
$(BUILD)/tests/repo/test_repo_resid: ALL_LDFLAGS += -Wl,--wrap=pthread_create

$(BUILD)/tests/%: src/%.c $(BUILD)/libinferd.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libinferd.a $(LDLIBS) -lcmocka

# Fuzz targets built with gcc and a replay main: `make test` runs every corpus file and crash
# reproducer through them.
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay_main.c $(BUILD)/libinferd.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< fuzz/replay_main.c $(BUILD)/libinferd.a $(LDLIBS)

unit: all
	@$(MAKE) --no-print-directory -j$(JOBS) $(TEST_BINS)
	@scripts/run_unit.sh $(BUILD)/tests

unit-asan:
	@$(MAKE) --no-print-directory SANITIZE=address -j$(JOBS) build-only
	@$(MAKE) --no-print-directory SANITIZE=address unit

# The scheduler's, the repository's and the text calls' tests under ThreadSanitizer.
TSAN_TESTS := $(filter $(BUILD)/tests/sched/% $(BUILD)/tests/repo/% \
                $(BUILD)/tests/api/test_textcall,$(TEST_BINS))
tsan-bins: $(TSAN_TESTS)

unit-tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread -j$(JOBS) tsan-bins
	@scripts/run_unit.sh build-tsan/tests sched repo api

fuzz-replay: all
	@$(MAKE) --no-print-directory -j$(JOBS) $(FUZZ_REPLAY_BINS)
	@scripts/fuzz_replay.sh $(BUILD)/fuzz

# The same corpora and reproducers under ASan+UBSan: a reproducer of an out-of-bounds read
# need not crash a plain build, so only this replay proves the fix holds.
fuzz-replay-asan:
	@LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
	    $(MAKE) --no-print-directory SANITIZE=address -j$(JOBS) fuzz-replay

e2e: all
	@scripts/deps.sh test
	$(PY) -m pytest -q tests/e2e

# A short end-to-end run against the ASan+UBSan server (well under a minute): the server
# smoke tests, the hostile-input tests marked `asan`, the per-team route tests and the parses
# offloaded to workers. UBSan aborts on the first error, and
# LeakSanitizer runs when the server exits on SIGTERM, so a leak fails the test that stops it
# (exit code 23). scripts/lsan.supp lists the known leaks of libraries we cannot fix.
E2E_ASAN_SMOKE := $(addprefix tests/e2e/test_server.py::,test_health test_server_metadata \
    test_repository_index_reports_failures_with_reasons test_infer_binary_both_ways \
    test_outputs_selection test_errors_name_the_field test_binary_size_mismatch \
    test_concurrent_clients_are_batched test_queue_full_is_refused_at_once \
    test_sigterm_drains_in_flight_requests)
ASAN_ENV := INFERD_BIN=build-asan/inferd \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 \
    LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
e2e-asan:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory SANITIZE=address -j$(JOBS) build-only
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider $(E2E_ASAN_SMOKE)
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider -m asan tests/e2e/test_hostile.py
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_routes.py \
	    tests/e2e/test_offload.py -k 'not health'

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory e2e-asan
	@$(MAKE) --no-print-directory unit-tsan
	@$(MAKE) --no-print-directory fuzz-replay
	@$(MAKE) --no-print-directory fuzz-replay-asan
	@$(MAKE) --no-print-directory e2e

fuzz:
	@scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

run: all
	@scripts/run.sh

bench: bench-engine bench-server bench-text bench-load bench-residency

bench-engine: all
	@scripts/deps.sh bench
	$(PY) bench/bench_engine.py

bench-targets: all
	@scripts/deps.sh bench
	$(PY) bench/bench_targets.py

# One core's FP32 FMA peak (docs/engine.md, "Roofline"); needs AVX-512.
bench-peak:
	@mkdir -p $(BUILD)
	$(CC) -O2 -mavx512f bench/fma_peak.c -o $(BUILD)/fma_peak
	@if grep -qw avx512f /proc/cpuinfo; then $(BUILD)/fma_peak; \
	else echo "bench-peak: this CPU has no AVX-512"; fi

bench-server: all
	@scripts/deps.sh bench
	$(PY) bench/bench_server.py

# Open-loop load at twice the measured capacity for 60 s; writes bench/RELIABILITY.md.
bench-overload: all
	$(PY) bench/bench_overload.py --write

# Mixed valid and invalid traffic at ~70% of capacity for MINUTES (default 10); not in CI.
soak: all
	@scripts/soak.sh $(or $(MINUTES),10)

# BENCH_ARGS: extra flags, e.g. make bench-text BENCH_ARGS="--duration 15 --no-write"
bench-text: all
	@scripts/deps.sh bench
	$(PY) bench/bench_text.py $(BENCH_ARGS)

.PHONY: bench-models100
bench-models100: all
	@scripts/deps.sh bench
	$(PY) bench/bench_models100.py $(BENCH_ARGS)

# Issue #5: reloads from the load cache vs ONNX Runtime and TorchScript; a busy model's latency
# while other models load and evict.
bench-load: all
	@scripts/deps.sh bench
	$(PY) bench/bench_load.py

bench-residency: all
	@scripts/deps.sh bench
	$(PY) bench/bench_residency.py

# Issue #7: the 21-model text scenario with TorchScript files: inferd's libtorch plugin vs
# Tornado+TorchScript at its best setting and vs inferd's ONNX engine on the same models.
# BENCH_ARGS: e.g. make bench-torch BENCH_ARGS="--duration 30 --no-write"
bench-torch: all
	@scripts/deps.sh bench
	$(PY) bench/bench_torch.py $(BENCH_ARGS)

CXX_SRCS := $(wildcard src/*/*/*.cpp)

format:
	clang-format -i $(LIB_SRCS) $(TEST_SRCS) $(HDRS) $(CXX_SRCS) src/cli/main.c $(wildcard fuzz/*.c)

format-check:
	clang-format --dry-run --Werror $(LIB_SRCS) $(TEST_SRCS) $(HDRS) $(CXX_SRCS) src/cli/main.c \
	    $(wildcard fuzz/*.c)

clean:
	rm -rf build build-asan build-tsan
