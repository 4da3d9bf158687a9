# imgstore - GNU make build. `make` builds everything under build/;
# `make test` installs missing Debian packages, builds and runs every test;
# `make run` / `make stop` start and stop a local cluster (`make run-ha`: with
# a local etcd and two nameservers); `make asan` runs
# the tests under ASan+UBSan; `make valgrind` runs the unit tests under valgrind.

CC ?= gcc
BUILD ?= build
GEN := $(BUILD)/gen
OBJ := $(BUILD)/obj
PKGS := libuv libprotobuf-c liburing libisal libzstd
# OpenSSL's libssl: HTTPS on the dataserver's origin (net/http_tls.c).
PKGS += libssl libcrypto
# libcurl and jansson: the nameserver's etcd client (nameserver/ns_etcd.c);
# jansson also writes every JSON document (status.json, HTTP upload answers,
# ds-admin and imgstore bench --json) and parses them in the tests.
PKGS += libcurl jansson
# The packages' flags are read when a compile or link first needs them, not
# when this file is parsed: `make run` and `make test` install the packages
# (scripts/install-deps.sh) before anything is built, in the same run. Each
# is computed once per make; without the packages the build stops with
# pkg-config's own message instead of a link error.
pkg_flags = $(if $(shell pkg-config --exists $(PKGS) 2>/dev/null && echo ok),$(shell pkg-config $(1) $(PKGS)),$(error \
  packages missing (run `make deps`, or scripts/install-deps.sh): $(shell pkg-config --print-errors --exists $(PKGS) 2>&1)))
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkg_flags,--cflags))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $(call pkg_flags,--libs))$(PKG_LIBS)
OPT ?= -O2
SAN ?=
CFLAGS = -std=gnu11 $(OPT) -g -fPIC -Wall -Wextra -Werror -Wno-unused-parameter \
          -D_GNU_SOURCE -I. -I$(GEN) $(PKG_CFLAGS) $(SAN)
LDFLAGS := $(SAN)
LDLIBS = $(PKG_LIBS) -lhttp_parser -lpthread -lm

PROTO_SRC := $(GEN)/proto/imgstore.pb-c.c
PROTO_HDR := $(GEN)/proto/imgstore.pb-c.h

src_to_obj = $(patsubst %.c,$(OBJ)/%.o,$(1))

# The layers every process links (docs/architecture.md): base <- proto <- net.
COMMON_SRC := $(wildcard base/*.c) $(wildcard proto/*.c) $(wildcard net/*.c)
COMMON_OBJ := $(call src_to_obj,$(COMMON_SRC)) $(OBJ)/proto/imgstore.pb-c.o
NS_SRC := $(filter-out nameserver/main.c,$(wildcard nameserver/*.c))
NS_OBJ := $(call src_to_obj,$(NS_SRC))
DS_SRC := $(filter-out dataserver/main.c,$(wildcard dataserver/*.c))
DS_OBJ := $(call src_to_obj,$(DS_SRC))
# The storage engine: what dataserver unit tests link (no networking).
DS_CORE_OBJ := $(call src_to_obj,$(wildcard $(addprefix dataserver/,needle.c index.c index_pack.c uring.c block.c block_meta.c blockio.c store.c compact.c codec.c ec.c ec_shard.c ec_compact.c)))
LIB_SRC := $(wildcard client/*.c)
LIB_OBJ := $(call src_to_obj,$(LIB_SRC))
# The HTTP server core (net/http_server.c, net/http_tls.c) serves the two
# servers only: the client library does not carry it.
LIB_COMMON_OBJ := $(filter-out $(OBJ)/net/http_server.o $(OBJ)/net/http_tls.o,$(COMMON_OBJ))
# ds-admin: main and the command table (tools/ds_admin.c), one module per
# command group (tools/admin_*.c), their helpers (tools/admin.c).
ADMIN_OBJ := $(call src_to_obj,tools/ds_admin.c tools/admin.c $(wildcard tools/admin_*.c))

# The version: one place, the macros of client/imgstore.h.
version_part = $(shell sed -n 's/^\#define IMGSTORE_VERSION_$(1) \([0-9]*\)$$/\1/p' client/imgstore.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(call version_part,PATCH)
SO_NAME := libimgstore.so.$(VERSION_MAJOR)
SO_REAL := libimgstore.so.$(VERSION_MAJOR).$(VERSION_MINOR)

BINS := $(if $(wildcard nameserver/main.c),$(BUILD)/bin/nameserver) \
        $(if $(wildcard dataserver/main.c),$(BUILD)/bin/dataserver) \
        $(if $(wildcard tools/cli_imgstore.c),$(BUILD)/bin/imgstore) \
        $(if $(wildcard tools/ds_admin.c),$(BUILD)/bin/ds-admin)
LIBS := $(if $(wildcard client/imgstore.c),$(BUILD)/lib/libimgstore.a $(BUILD)/lib/$(SO_REAL) \
        $(BUILD)/lib/$(SO_NAME) $(BUILD)/lib/libimgstore.so $(BUILD)/lib/pkgconfig/imgstore.pc)


UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/test_%.c,$(BUILD)/tests/unit_%,$(UNIT_SRC))
INTEG_SRC := $(wildcard tests/integ/test_*.c)
INTEG_BINS := $(patsubst tests/integ/test_%.c,$(BUILD)/tests/integ_%,$(INTEG_SRC))
# Shell tests of the install, the ABI and the programs' conventions
# (tests/pkg/, run after `all`).
PKG_TESTS := $(wildcard tests/pkg/test_*.sh)
# The helpers that call Criterion (json_check.c, fixture.c) are linked into the
# integration tests only; INTEG_HELPERS (cluster.c ...) also into the chaos driver.
INTEG_CR_HELPERS := $(call src_to_obj,tests/integ/json_check.c tests/integ/fixture.c)
# ec_fixture.c (Criterion too) only into the two erasure-coding tests.
EC_FIXTURE := $(call src_to_obj,tests/integ/ec_fixture.c)
INTEG_HELPERS := $(filter-out $(INTEG_CR_HELPERS) $(EC_FIXTURE) $(OBJ)/tests/integ/test_%.o,\
                   $(call src_to_obj,$(wildcard tests/integ/*.c)))

# The benchmark suite's helpers (bench/*.c); built and run only by `make bench`.
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

# Fuzz harnesses (tests/fuzz/fuzz_*.c, docs/reliability.md): built with clang
# and libFuzzer + ASan + UBSan into build/fuzz/ by a sub-make. `make fuzz`
# runs each for FUZZ_SECONDS; `make test` runs each for FUZZ_TEST_SECONDS
# (0 leaves them out, as `make asan` does).
FUZZ_BUILD := build/fuzz
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/,$(FUZZ_NAMES))
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 10
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer -Wno-error
FUZZ_IN_TEST := $(if $(filter-out 0,$(FUZZ_TEST_SECONDS)),$(FUZZ_BINS))

# Chaos suite (tests/chaos/, docs/reliability.md): a real cluster under load
# with faults. `make chaos` runs it for CHAOS_SECONDS; `make test` runs it for
# CHAOS_TEST_SECONDS (0 leaves it out).
CHAOS_BIN := $(BUILD)/tests/chaos
CHAOS_SECONDS ?= 600
CHAOS_TEST_SECONDS ?= 60
CHAOS_IN_TEST := $(if $(filter-out 0,$(CHAOS_TEST_SECONDS)),$(CHAOS_BIN))

.SECONDARY:
.DEFAULT_GOAL := all
# Includes that point up a layer (scripts/check-layers.sh); also run first by `make test`.
check-layers:
	./scripts/check-layers.sh

.PHONY: all deps check-layers test unit integ run run-ha stop chaos-ha chaos-ec asan valgrind clean bench bench-http bench-zstd bench-index-pack bench-rebalance bench-ec \
        fuzz fuzz-build fuzz-corpus chaos chaos-powercut
all: $(BINS) $(LIBS)

deps:
	@./scripts/install-deps.sh

$(PROTO_SRC) $(PROTO_HDR): proto/imgstore.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) proto/imgstore.proto

$(OBJ)/proto/imgstore.pb-c.o: $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-error -MMD -MP -c $< -o $@

$(OBJ)/%.o: %.c | $(PROTO_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The servers' --version: the version of client/imgstore.h, which they do not
# include (docs/architecture.md), passed in by the Makefile.
$(OBJ)/nameserver/main.o $(OBJ)/dataserver/main.o: CFLAGS += -DIMG_VERSION='"$(VERSION)"'
$(OBJ)/nameserver/main.o $(OBJ)/dataserver/main.o: client/imgstore.h

# The servers' main() talk to systemd (sd_notify, libsystemd): only they
# link it, not the client library.
SD_PKGS := libsystemd
SD_LIBS = $(eval SD_LIBS := $(if $(shell pkg-config --exists $(SD_PKGS) 2>/dev/null && echo ok),\
  $(shell pkg-config --libs $(SD_PKGS)),$(error packages missing (run `make deps`): $(SD_PKGS))))$(SD_LIBS)

$(BUILD)/bin/nameserver: $(OBJ)/nameserver/main.o $(NS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SD_LIBS)

$(BUILD)/bin/dataserver: $(OBJ)/dataserver/main.o $(DS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SD_LIBS)

$(BUILD)/lib/libimgstore.a: $(LIB_OBJ) $(LIB_COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The shared library: the real file libimgstore.so.MAJOR.MINOR, its SONAME
# libimgstore.so.MAJOR (what programs load) and the link libimgstore.so ->
# .so.MAJOR (what -limgstore finds). The version script exports only the
# public API of client/imgstore.h.
$(BUILD)/lib/$(SO_REAL): $(LIB_OBJ) $(LIB_COMMON_OBJ) client/libimgstore.map
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script=client/libimgstore.map \
	  -Wl,--no-undefined -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/lib/$(SO_NAME): $(BUILD)/lib/$(SO_REAL)
	ln -sfn $(SO_REAL) $@

$(BUILD)/lib/libimgstore.so: $(BUILD)/lib/$(SO_NAME)
	ln -sfn $(SO_NAME) $@

# The .pc of the build folder (headers in client/); `make install` writes
# its own from the same template.
$(BUILD)/lib/pkgconfig/imgstore.pc: client/imgstore.pc.in client/imgstore.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' -e 's|@LIBDIR@|$${prefix}/lib|' \
	    -e 's|@INCLUDEDIR@|$(abspath client)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(BUILD)/bin/imgstore: $(OBJ)/tools/cli_imgstore.o $(OBJ)/tools/cli_bench.o $(OBJ)/tools/cli_util.o \
                       $(OBJ)/tools/emit.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/ds-admin: $(ADMIN_OBJ) $(OBJ)/tools/cli_util.o $(OBJ)/tools/emit.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Nameserver unit tests (test_ns_*.c) link the nameserver's modules; the
# others link the dataserver's storage engine.
$(BUILD)/tests/unit_ns_%: $(OBJ)/tests/unit/test_ns_%.o $(NS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# The tools' emitter (tables and JSON) alone.
$(BUILD)/tests/unit_emit: $(OBJ)/tests/unit/test_emit.o $(OBJ)/tools/emit.o $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(BUILD)/tests/unit_%: $(OBJ)/tests/unit/test_%.o $(DS_CORE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# The HTTP origin's pure helpers (dataserver/http_util.c) are tested alone.
$(BUILD)/tests/unit_http_util: $(OBJ)/dataserver/http_util.o

$(BUILD)/tests/integ_%: $(OBJ)/tests/integ/test_%.o $(INTEG_HELPERS) $(INTEG_CR_HELPERS) \
                      $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(BUILD)/tests/integ_ec $(BUILD)/tests/integ_ec_move: $(EC_FIXTURE)

$(BUILD)/bench/baseline_files: $(OBJ)/bench/baseline_files.o $(OBJ)/tools/cli_bench.o \
                               $(OBJ)/tools/cli_util.o $(OBJ)/tools/emit.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/mkblocks: $(OBJ)/bench/mkblocks.o $(COMMON_OBJ) \
                         $(call src_to_obj,$(addprefix dataserver/,needle.c index.c index_pack.c codec.c uring.c block.c block_meta.c))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/ec_tool: $(OBJ)/bench/ec_tool.o $(OBJ)/dataserver/ec.o $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(OBJ)/bench/%.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: deps
	$(MAKE) $(UNIT_BINS)
	./tests/run.sh $(UNIT_BINS)

integ: deps
	$(MAKE) all man $(INTEG_BINS) $(BUILD)/bench/steady_read
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./tests/run.sh $(INTEG_BINS) $(PKG_TESTS)

test: deps
	./scripts/check-layers.sh
	$(MAKE) all man $(UNIT_BINS) $(INTEG_BINS) $(CHAOS_IN_TEST) $(BUILD)/bench/steady_read
	$(if $(FUZZ_IN_TEST),$(MAKE) fuzz-build)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) \
	  CHAOS_SECONDS=$(CHAOS_TEST_SECONDS) \
	  ./tests/run.sh $(UNIT_BINS) $(INTEG_BINS) $(PKG_TESTS) $(FUZZ_IN_TEST) $(CHAOS_IN_TEST)
	$(MAKE) test-python

# The Python package (python/, docs/client.md "Python") and the HTTP API
# description (docs/openapi.yaml): the package's type hints checked by
# mypy --strict, then pytest against real clusters of this
# build, with Debian's python3 (not another python3 first in PATH, which
# lacks Debian's pytest). Skipped in sanitizer builds (`make asan`): an
# ASan-built libimgstore.so cannot be loaded into an uninstrumented python.
PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
.PHONY: test-python
test-python: deps
	$(if $(SAN),@echo "test-python: skipped in a sanitizer build",$(MAKE) all)
	$(if $(SAN),,$(PYTHON) -m mypy --strict --no-incremental --cache-dir=/dev/null python/imgstore)
	$(if $(SAN),,IMGSTORE_BIN=$(abspath $(BUILD)/bin) IMGSTORE_LIB=$(abspath $(BUILD)/lib/libimgstore.so) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider python/tests)

# Python put/get ops/s against the C `imgstore bench` in the same run, on a
# cluster of its own (python/bench/compare.py, docs/performance.md); ~1 min.
.PHONY: bench-python
bench-python: deps
	$(MAKE) all
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) IMGSTORE_LIB=$(abspath $(BUILD)/lib/libimgstore.so) \
	  $(PYTHON) python/bench/compare.py

# ---- fuzzing ----------------------------------------------------------------
# These rules are used by the sub-make with BUILD=$(FUZZ_BUILD) and CC=clang.
$(BUILD)/fuzz_%: $(OBJ)/tests/fuzz/fuzz_%.o $(OBJ)/tests/fuzz/util.o $(DS_CORE_OBJ) $(NS_OBJ) \
                 $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# The request-handler harnesses run a whole dataserver in-process
# (tests/fuzz/ds_fixture.c), so they link every dataserver module.
$(BUILD)/fuzz_ds_rpc $(BUILD)/fuzz_ds_http: $(BUILD)/fuzz_ds_%: $(OBJ)/tests/fuzz/fuzz_ds_%.o \
                 $(OBJ)/tests/fuzz/ds_fixture.o $(OBJ)/tests/fuzz/util.o $(DS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# Every protobuf message of the protocol, for fuzz_frame.
$(GEN)/tests/fuzz/fuzz_descriptors.h: $(PROTO_HDR)
	@mkdir -p $(dir $@)
	{ echo '/* generated by the Makefile from $(PROTO_HDR) */'; \
	  echo 'static const ProtobufCMessageDescriptor *const fuzz_descriptors[] = {'; \
	  sed -n 's/^extern const ProtobufCMessageDescriptor \([a-z0-9_]*__descriptor\);/    \&\1,/p' $<; \
	  echo '};'; } > $@
$(OBJ)/tests/fuzz/fuzz_frame.o: $(GEN)/tests/fuzz/fuzz_descriptors.h

$(BUILD)/tests/fuzz_mkcorpus: $(OBJ)/tests/fuzz/mkcorpus.o $(DS_CORE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-build: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 SAN="$(FUZZ_SAN)" $(FUZZ_BINS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/run.sh $(FUZZ_BINS)

# Regenerates the seed corpus (tests/fuzz/corpus/, committed).
fuzz-corpus: deps
	$(MAKE) $(BUILD)/tests/fuzz_mkcorpus
	$(BUILD)/tests/fuzz_mkcorpus tests/fuzz/corpus

# ---- chaos --------------------------------------------------------------------
# (json_check.c is for the Criterion integration tests; the driver is no
# Criterion program.)
$(BUILD)/tests/chaos: $(OBJ)/tests/chaos/chaos.o $(OBJ)/tests/chaos/faults.o $(OBJ)/tests/chaos/env.o \
                      $(OBJ)/tests/chaos/avail.o $(OBJ)/tests/chaos/ha.o $(OBJ)/tests/chaos/ha_net.o \
                      $(OBJ)/tests/chaos/ec.o \
                      $(filter-out %/json_check.o,$(INTEG_HELPERS)) \
                      $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

chaos: deps
	$(MAKE) all $(CHAOS_BIN)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) CHAOS_SECONDS=$(CHAOS_SECONDS) ./tests/run.sh $(CHAOS_BIN)

# The chaos suite's HA mode (tests/chaos/ha.c): one etcd, two nameservers,
# kills and freezes of the leader and of etcd, etcd cut off from the leader,
# and (as root, ha_net.c) the leader partitioned; one line "skipped" without
# etcd.
chaos-ha: deps
	$(MAKE) all $(CHAOS_BIN)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) CHAOS_HA=1 CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  ./tests/run.sh $(CHAOS_BIN)

# The chaos suite's erasure-coding mode (tests/chaos/ec.c): seven
# dataservers, 4+2 stripes encoded under the load, kill -9 of two holders of
# one stripe and bytes flipped in shard files.
chaos-ec: deps
	$(MAKE) all $(CHAOS_BIN)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) CHAOS_EC=1 CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  ./tests/run.sh $(CHAOS_BIN)

# The chaos suite with power cuts: the servers come from a separate build
# (build/faultfs/) whose dataserver/uring.c is compiled with -DIMG_FAULT_FS.
chaos-powercut: deps
	$(MAKE) all $(CHAOS_BIN)
	$(MAKE) BUILD=build/faultfs SAN=-DIMG_FAULT_FS all
	IMGSTORE_BIN=$(abspath build/faultfs/bin) CHAOS_POWER_CUT=1 CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  ./tests/run.sh $(CHAOS_BIN)

# Sanitizer reports of every process (tests and the servers they start) go
# to files in SAN_LOGS, so a report from a server whose log is removed with
# its test folder is not lost: any report fails the run and is printed.
SAN_LOGS := $(abspath build-asan/sanitizer-logs)
# The chaos suite runs under ASan too, servers and driver (0 leaves it out).
ASAN_CHAOS_SECONDS ?= 60
asan: deps
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@ASAN_OPTIONS=log_path=$(SAN_LOGS)/asan:detect_leaks=1 \
	 UBSAN_OPTIONS=log_path=$(SAN_LOGS)/ubsan:print_stacktrace=1 \
	 $(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	   FUZZ_TEST_SECONDS=0 CHAOS_TEST_SECONDS=$(ASAN_CHAOS_SECONDS) test; rc=$$?; \
	 if [ -n "$$(ls -A $(SAN_LOGS))" ]; then \
	   echo "!! sanitizer reports (in $(SAN_LOGS)):"; cat $(SAN_LOGS)/*; exit 1; fi; exit $$rc

# Criterion runs each test in a re-executed child, so valgrind must follow
# children; it writes one file per process and only errors, so any
# non-empty file is a failure.
VG_LOGS := $(abspath $(BUILD)/valgrind-logs)
valgrind: deps
	$(MAKE) $(UNIT_BINS)
	@rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS)
	@rc=0; for t in $(UNIT_BINS); do echo "== valgrind $$t"; \
	  valgrind --trace-children=yes -q --leak-check=full --errors-for-leak-kinds=definite \
	    --log-file=$(VG_LOGS)/$$(basename $$t).%p $$t --jobs 1 >/dev/null 2>&1 || { echo "!! $$t failed"; rc=1; }; \
	done; for f in $(VG_LOGS)/*; do [ -s "$$f" ] && { echo "!! $$f:"; cat "$$f"; rc=1; }; done; \
	[ $$rc = 0 ] && echo "valgrind: no errors in $(words $(UNIT_BINS)) unit test programs"; exit $$rc

# The performance suite (docs/performance.md): its own cluster in a temporary
# folder, about 10 minutes, never part of `make test`.
bench: deps
	@./scripts/install-deps.sh --bench
	$(MAKE) all $(BENCH_BINS)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) BENCH_BIN=$(abspath $(BUILD)/bench) ./bench/run.sh

# HTTP GET of the dataserver's origin against nginx serving the same images
# (bench/http.sh, docs/performance.md row 3); nginx and wrk come from Debian.
bench-http: deps
	@./scripts/install-deps.sh --bench
	$(MAKE) all
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./bench/http.sh

# Compressed storage on a real corpus (openclipart-svg, BMP/TIFF made from
# it): disk bytes, uploads/s and HTTP GET with and without zstd, against the
# same corpus stored as sent in the same run (bench/zstd.sh,
# docs/performance.md "Compressed storage").
bench-zstd: deps
	@./scripts/install-deps.sh --bench
	$(MAKE) all
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./bench/zstd.sh

# Erasure coding 4+2 vs replication 2 on 6 dataservers: raw/logical bytes,
# normal and degraded reads, encoding throughput, rebuild time (bench/ec.sh,
# docs/performance.md "Erasure coding").
bench-ec: deps
	$(MAKE) all $(BUILD)/bench/ec_tool
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) BENCH_BIN=$(abspath $(BUILD)/bench) ./bench/ec.sh

# Restart to first read with packed indexes vs plain ones, 10 M files
# (bench/index_pack.sh, docs/performance.md; BENCH_PACK_FILES to change).
bench-index-pack: deps
	$(MAKE) all $(BUILD)/bench/mkblocks $(BUILD)/bench/dsprobe
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) BENCH_BIN=$(abspath $(BUILD)/bench) ./bench/index_pack.sh

# Read p99 under a steady read load with and without a rebalance running, and
# the copy rate against its cap (bench/rebalance.sh, docs/performance.md);
# REBAL_BYTES (default 2 GB) sets the data size. Never part of `make test`.
bench-rebalance: deps
	$(MAKE) all $(BUILD)/bench/steady_read
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) BENCH_BIN=$(abspath $(BUILD)/bench) ./bench/rebalance.sh

run: deps
	$(MAKE) all
	./deploy/local-cluster.sh start
	./deploy/local-cluster.sh demo
	@echo "status page: http://127.0.0.1:7480/ (the nameserver's --http port)"

# The same with high availability: a local etcd, two nameservers (README).
run-ha: deps
	$(MAKE) all
	./deploy/local-cluster.sh start --ha
	./deploy/local-cluster.sh demo
	./deploy/local-cluster.sh status

stop:
	./deploy/local-cluster.sh stop

clean:
	rm -rf build build-asan

# ---- install ------------------------------------------------------------------
# `make install PREFIX=/usr/local DESTDIR=...` (docs/operations.md, "Install"):
# the four programs, the header, the shared library with its links, the
# static library, an imgstore.pc written for PREFIX, the systemd units (their
# paths rewritten for BINDIR), the example environment files, the docs, the
# man pages (built by `make man`) and the bash completion of imgstore and
# ds-admin (deploy/completion/). `make uninstall` (same variables)
# removes exactly these.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
DOCDIR ?= $(DATADIR)/doc/imgstore
MANDIR ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install
UNITS := $(notdir $(wildcard deploy/systemd/*.service))
EXAMPLES := $(notdir $(wildcard deploy/*.env.example))
DOCS := README.md $(wildcard docs/*.md)
# In the installed .pc, libdir and includedir follow ${prefix} when they lie
# under it, so `pkg-config --define-prefix` can move the whole tree.
pc_rel = $(if $(filter $(PREFIX)/%,$(1)),$${prefix}$(patsubst $(PREFIX)%,%,$(1)),$(1))


# Man pages: help2man (Debian's help2man package) turns each program's
# --help and --version into its page, so the usage text in main() is the
# one source; the NAME line comes from MAN_DESC_<program>.
MAN_DESC_nameserver := block map and planner of an imgstore cluster
MAN_DESC_dataserver := storage server of an imgstore cluster
MAN_DESC_imgstore := store, fetch and delete files in an imgstore cluster
MAN_DESC_ds-admin := inspect and administer an imgstore cluster
MANS := $(patsubst $(BUILD)/bin/%,$(BUILD)/man/%.1,$(BINS))
COMPLETIONS := $(if $(wildcard tools/cli_imgstore.c),imgstore) $(if $(wildcard tools/ds_admin.c),ds-admin)

$(BUILD)/man/%.1: $(BUILD)/bin/%
	@mkdir -p $(dir $@)
	help2man --no-info --no-discard-stderr --name='$(MAN_DESC_$*)' --output=$@ $<

.PHONY: install uninstall man
man: $(MANS)

install: all man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR)/docs \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 644 client/imgstore.h $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(BUILD)/lib/$(SO_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sfn $(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	ln -sfn $(SO_NAME) $(DESTDIR)$(LIBDIR)/libimgstore.so
	$(INSTALL) -m 644 $(BUILD)/lib/libimgstore.a $(DESTDIR)$(LIBDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_rel,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    client/imgstore.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/imgstore.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/imgstore.pc
	for u in $(UNITS); do \
	  sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/imgstore/|$(DOCDIR)/|g' \
	    deploy/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	$(INSTALL) -m 644 $(addprefix deploy/,$(EXAMPLES)) $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 644 $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/docs/
	$(INSTALL) -m 644 $(MANS) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 $(addprefix deploy/completion/,$(COMPLETIONS)) $(DESTDIR)$(BASHCOMPDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(BINS)))
	rm -f $(DESTDIR)$(INCLUDEDIR)/imgstore.h
	rm -f $(addprefix $(DESTDIR)$(LIBDIR)/,$(SO_REAL) $(SO_NAME) libimgstore.so libimgstore.a)
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/imgstore.pc
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(DOCDIR)
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MANS)))
	rm -f $(addprefix $(DESTDIR)$(BASHCOMPDIR)/,$(COMPLETIONS))

# ---- Debian package --------------------------------------------------------------
# `make deb` (docs/operations.md, "Debian package"): dpkg-buildpackage with
# debhelper (debian/) on a copy of the tree in build/deb/imgstore-VERSION, so
# the work tree stays clean; the packages imgstore, libimgstore1 and
# libimgstore-dev land in build/deb/. BUILD, SAN and OPT are unset for it:
# under `make asan` they arrive in the environment and would build the
# package's objects with sanitizers that its link (Debian's flags) lacks.
DEB_DIR := build/deb
DEB_SRC := $(DEB_DIR)/imgstore-$(VERSION)
.PHONY: deb
deb: deps
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude=./build-* --exclude=./var --exclude=./.git \
	  --exclude=./python . | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u SAN -u OPT dpkg-buildpackage -us -uc -b
	@ls -1 $(DEB_DIR)/*.deb

# Operations (README "Operations"): `make test-ui` installs Chromium (a large
# download, so not part of `make test`, where the browser check of
# integ_ops is skipped without it) and runs the status-page and metrics
# tests; `make check-deploy` verifies the systemd units.
.PHONY: test-ui check-deploy
test-ui: deps
	./scripts/install-deps.sh --ui
	$(MAKE) all $(BUILD)/tests/integ_ops
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./tests/run.sh $(BUILD)/tests/integ_ops
	./deploy/check-units.sh

check-deploy: all
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./deploy/check-units.sh

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
