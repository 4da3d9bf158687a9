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
# libcurl and jansson: the nameserver's etcd client (nameserver/ns_etcd.c).
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
DS_CORE_OBJ := $(call src_to_obj,$(wildcard $(addprefix dataserver/,needle.c index.c uring.c block.c blockio.c store.c compact.c)))
LIB_SRC := $(wildcard client/*.c)
LIB_OBJ := $(call src_to_obj,$(LIB_SRC))
# The HTTP server core (net/http_server.c, net/http_tls.c) serves the two
# servers only: the client library does not carry it.
LIB_COMMON_OBJ := $(filter-out $(OBJ)/net/http_server.o $(OBJ)/net/http_tls.o,$(COMMON_OBJ))
# ds-admin: main and the command table (tools/ds_admin.c), one module per
# command group (tools/admin_*.c), their helpers (tools/admin.c).
ADMIN_OBJ := $(call src_to_obj,tools/ds_admin.c tools/admin.c $(wildcard tools/admin_*.c))

BINS := $(if $(wildcard nameserver/main.c),$(BUILD)/bin/nameserver) \
        $(if $(wildcard dataserver/main.c),$(BUILD)/bin/dataserver) \
        $(if $(wildcard tools/cli_imgstore.c),$(BUILD)/bin/imgstore) \
        $(if $(wildcard tools/ds_admin.c),$(BUILD)/bin/ds-admin)
LIBS := $(if $(wildcard client/imgstore.c),$(BUILD)/lib/libimgstore.a $(BUILD)/lib/libimgstore.so \
        $(BUILD)/lib/pkgconfig/imgstore.pc)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/test_%.c,$(BUILD)/tests/unit_%,$(UNIT_SRC))
INTEG_SRC := $(wildcard tests/integ/test_*.c)
INTEG_BINS := $(patsubst tests/integ/test_%.c,$(BUILD)/tests/integ_%,$(INTEG_SRC))
# The helpers that call Criterion (json_check.c, fixture.c) are linked into the
# integration tests only; INTEG_HELPERS (cluster.c ...) also into the chaos driver.
INTEG_CR_HELPERS := $(call src_to_obj,tests/integ/json_check.c tests/integ/fixture.c)
INTEG_HELPERS := $(filter-out $(INTEG_CR_HELPERS) $(OBJ)/tests/integ/test_%.o,\
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

.PHONY: all deps check-layers test unit integ run run-ha stop chaos-ha asan valgrind clean bench bench-http bench-rebalance \
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

$(BUILD)/bin/nameserver: $(OBJ)/nameserver/main.o $(NS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/dataserver: $(OBJ)/dataserver/main.o $(DS_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/lib/libimgstore.a: $(LIB_OBJ) $(LIB_COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/lib/libimgstore.so: $(LIB_OBJ) $(LIB_COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libimgstore.so.1 -o $@ $^ $(LDLIBS)
	ln -sf libimgstore.so $(BUILD)/lib/libimgstore.so.1

$(BUILD)/lib/pkgconfig/imgstore.pc: client/imgstore.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' -e 's|@INCLUDEDIR@|$(abspath client)|' $< > $@

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

$(BUILD)/tests/unit_%: $(OBJ)/tests/unit/test_%.o $(DS_CORE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(BUILD)/tests/integ_%: $(OBJ)/tests/integ/test_%.o $(INTEG_HELPERS) $(INTEG_CR_HELPERS) \
                      $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(BUILD)/bench/baseline_files: $(OBJ)/bench/baseline_files.o $(OBJ)/tools/cli_bench.o \
                               $(OBJ)/tools/cli_util.o $(OBJ)/tools/emit.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/mkblocks: $(OBJ)/bench/mkblocks.o $(COMMON_OBJ) \
                         $(call src_to_obj,$(addprefix dataserver/,needle.c index.c uring.c block.c))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(OBJ)/bench/%.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: deps
	$(MAKE) $(UNIT_BINS)
	./tests/run.sh $(UNIT_BINS)

integ: deps
	$(MAKE) all $(INTEG_BINS)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./tests/run.sh $(INTEG_BINS)

test: deps
	./scripts/check-layers.sh
	$(MAKE) all $(UNIT_BINS) $(INTEG_BINS) $(CHAOS_IN_TEST)
	$(if $(FUZZ_IN_TEST),$(MAKE) fuzz-build)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) \
	  CHAOS_SECONDS=$(CHAOS_TEST_SECONDS) \
	  ./tests/run.sh $(UNIT_BINS) $(INTEG_BINS) $(FUZZ_IN_TEST) $(CHAOS_IN_TEST)

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
                      $(OBJ)/tests/chaos/avail.o $(OBJ)/tests/chaos/ha.o \
                      $(filter-out %/json_check.o,$(INTEG_HELPERS)) \
                      $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

chaos: deps
	$(MAKE) all $(CHAOS_BIN)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) CHAOS_SECONDS=$(CHAOS_SECONDS) ./tests/run.sh $(CHAOS_BIN)

# The chaos suite's HA mode (tests/chaos/ha.c): one etcd, two nameservers,
# kills and freezes of the leader and of etcd; one line "skipped" without etcd.
chaos-ha: deps
	$(MAKE) all $(CHAOS_BIN)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) CHAOS_HA=1 CHAOS_SECONDS=$(CHAOS_SECONDS) \
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
