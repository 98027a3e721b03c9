# Top-level entry points. `make demo` and `make test` work on a fresh Debian 12 machine:
# they install missing Debian packages (apt-get), configure and build with CMake, then run.
BUILD      ?= build
BUILD_TSAN ?= build-tsan
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

# Build tools, libraries, test and benchmark frameworks (all Debian 12 packages).
# hiredis + redis-server: the invalidation bus; sqlite3/libpq: the example module's databases.
PACKAGES = cmake make gcc g++ pkg-config \
           libxxhash-dev liburcu-dev libjemalloc-dev libyaml-dev libmicrohttpd-dev libcmocka-dev \
           libcurl4-openssl-dev libbenchmark-dev libhiredis-dev redis-server libsqlite3-dev libpq-dev
# Only for `make test`: a PostgreSQL server for the example module's tests, clang's libFuzzer
# for the fuzz targets, valgrind for the memcheck label, doxygen for the API reference check,
# prometheus for promtool, which checks the /metrics text (test_metrics).
TEST_PACKAGES = postgresql clang libclang-rt-14-dev valgrind doxygen prometheus
# Only for `make bench`: the libcuckoo comparison, gnuplot for the charts, and Caffeine (Debian's
# jar, and a JDK to compile bench/caffeine/ against it and run it).
BENCH_PACKAGES = libcuckoo-dev gnuplot-nox libcaffeine-java default-jdk-headless

.PHONY: all deps test-deps bench-deps build demo test test-unit test-tsan test-asan bench clean

all: build

deps: PKGS = $(PACKAGES)
test-deps: PKGS = $(PACKAGES) $(TEST_PACKAGES)
bench-deps: PKGS = $(PACKAGES) $(BENCH_PACKAGES)
deps test-deps bench-deps:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The example module under mchost, with and without memoization, under a Zipf load (about a
# minute): throughput, hit ratio, latency, then a write, an invalidation with mcctl, metrics.
demo: build
	bash examples/dept/demo.sh $(BUILD)

test: test-deps test-unit test-tsan test-asan test-valgrind test-fuzz
	@echo "All test suites passed (normal build, ThreadSanitizer, AddressSanitizer+UBSan, valgrind memcheck, fuzzing)."

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The concurrency tests again under ThreadSanitizer.
test-tsan: deps
	cmake -S . -B $(BUILD_TSAN) -DMODCACHE_SANITIZER=thread -DMODCACHE_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(BUILD_TSAN) -j $(JOBS)
	cd $(BUILD_TSAN) && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -L concurrency

# The whole suite under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DMODCACHE_SANITIZER=address,undefined -DMODCACHE_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=use_unaligned=1 ctest --output-on-failure -j $(JOBS)

# The full comparison (a few minutes): every workload at full length; tables, JSON and charts
# in $(BUILD)/bench-results/. cmake runs again first so that a libcuckoo installed by
# bench-deps since the build was configured is found.
bench: bench-deps $(BUILD)/CMakeCache.txt
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	sh bench/run_bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_TSAN) $(BUILD_ASAN) $(BUILD_FUZZ) $(BUILD_VALGRIND)

# libFuzzer targets (clang, ASan+UBSan, in $(BUILD_FUZZ)): `make test-fuzz` runs each for 20 s
# on its committed corpus (the CTest label "fuzz"); `make fuzz` runs each for FUZZ_SECONDS,
# keeping what it finds in $(BUILD_FUZZ)/fuzz-runs/ for the next run.
BUILD_FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS  = fuzz_config fuzz_json_key fuzz_key_codec fuzz_admin_http fuzz_snapshot

.PHONY: fuzz-build fuzz test-fuzz
fuzz-build: test-deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DMODCACHE_SANITIZER=address,undefined -DMODCACHE_FUZZ=ON -DMODCACHE_BUILD_TESTS=OFF \
	  -DMODCACHE_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_targets

test-fuzz: fuzz-build
	cd $(BUILD_FUZZ) && ctest --output-on-failure -L fuzz

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  sh tests/fuzz/run.sh $(BUILD_FUZZ)/tests/fuzz/$$t $(BUILD_FUZZ)/fuzz-runs/$$t $(FUZZ_SECONDS) || exit 1; \
	done

# The unit tests outside the "concurrency" label again under valgrind's memcheck (the CTest
# label "memcheck"), in $(BUILD_VALGRIND): cache entries come from malloc there
# (MODCACHE_JEMALLOC=OFF), so that memcheck sees every one of them.
BUILD_VALGRIND ?= build-valgrind

.PHONY: test-valgrind
test-valgrind: test-deps
	cmake -S . -B $(BUILD_VALGRIND) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMODCACHE_JEMALLOC=OFF \
	  -DMODCACHE_MEMCHECK=ON -DMODCACHE_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(BUILD_VALGRIND) -j $(JOBS)
	cd $(BUILD_VALGRIND) && ctest --output-on-failure -j $(JOBS) -L memcheck
