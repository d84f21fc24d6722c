# MCOS top-level entry points.  CMake does the building; this file wraps it
# so that the README's commands work on a fresh Debian 12 machine.
#
#   make          release build: binaries in build/bin/
#   make test     install deps, build with ASan+UBSan (build/asan), run
#                 every unit and integration test
#   make demo     install deps, build, run a local brain + 3 agents, report
#   make bench    install deps, build, run the benchmarks and the evaluation
#   make bench-eval  the trace-driven evaluation report alone
#   make test-rxe the RDMA (verbs) tests on soft-RoCE, in a VM if need be
#   make install  install binaries (PREFIX, default /usr/local)

BUILD      ?= build
ASAN_BUILD ?= build/asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all build asan deps test unit integration test-rxe demo bench \
        bench-eval install format \
        clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	    -DMCOS_SANITIZE=ON $(CMAKE_ARGS)

asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Unit tests run in parallel; integration tests start real daemons on
# fixed loopback ports and in network namespaces, so they run one at a
# time (they are in the RESOURCE_LOCK "cluster").
test: deps asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

unit: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

integration: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L integration

# The RDMA tests on soft-RoCE: this kernel's rdma_rxe, else a QEMU guest
# from tools/rxe-vm (integration/test_rxe.sh); SKIP without either.
test-rxe: deps asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L rxe

demo: deps build
	scripts/demo $(BUILD)

bench: deps build
	scripts/bench $(BUILD)
	scripts/bench-eval $(BUILD)

# The trace-driven evaluation: Markdown, CSV and PNG plots in build/bench/.
bench-eval: deps build
	scripts/bench-eval $(BUILD)

install: build
	cmake --install $(BUILD)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
