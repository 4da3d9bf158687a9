# imgstore - GNU make build. `make` builds everything under build/;
# `make test` installs missing Debian packages, builds and runs every test;
# `make run` / `make stop` start and stop a local cluster; `make asan` runs
# the tests under ASan+UBSan; `make valgrind` runs the unit tests under valgrind.

CC ?= gcc
BUILD ?= build
GEN := $(BUILD)/gen
OBJ := $(BUILD)/obj
PKGS := libuv libprotobuf-c liburing libisal libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
OPT ?= -O2
SAN ?=
CFLAGS := -std=gnu11 $(OPT) -g -fPIC -Wall -Wextra -Werror -Wno-unused-parameter \
          -D_GNU_SOURCE -I. -I$(GEN) $(PKG_CFLAGS) $(SAN)
LDFLAGS := $(SAN)
LDLIBS := $(PKG_LIBS) -lhttp_parser -lpthread -lm

PROTO_SRC := $(GEN)/proto/imgstore.pb-c.c
PROTO_HDR := $(GEN)/proto/imgstore.pb-c.h

src_to_obj = $(patsubst %.c,$(OBJ)/%.o,$(1))

COMMON_SRC := $(wildcard common/*.c) $(wildcard proto/*.c)
COMMON_OBJ := $(call src_to_obj,$(COMMON_SRC)) $(OBJ)/proto/imgstore.pb-c.o
NS_SRC := $(filter-out nameserver/main.c,$(wildcard nameserver/*.c))
NS_OBJ := $(call src_to_obj,$(NS_SRC))
DS_SRC := $(filter-out dataserver/main.c,$(wildcard dataserver/*.c))
DS_OBJ := $(call src_to_obj,$(DS_SRC))
# The storage engine: what dataserver unit tests link (no networking).
DS_CORE_OBJ := $(call src_to_obj,$(wildcard $(addprefix dataserver/,needle.c index.c uring.c block.c blockio.c store.c)))
LIB_SRC := $(filter-out client/cli_%.c,$(wildcard client/*.c))
LIB_OBJ := $(call src_to_obj,$(LIB_SRC))

BINS := $(if $(wildcard nameserver/main.c),$(BUILD)/bin/nameserver) \
        $(if $(wildcard dataserver/main.c),$(BUILD)/bin/dataserver) \
        $(if $(wildcard client/cli_imgstore.c),$(BUILD)/bin/imgstore) \
        $(if $(wildcard client/cli_ds_admin.c),$(BUILD)/bin/ds-admin)
LIBS := $(if $(wildcard client/imgstore.c),$(BUILD)/lib/libimgstore.a $(BUILD)/lib/libimgstore.so \
        $(BUILD)/lib/pkgconfig/imgstore.pc)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/test_%.c,$(BUILD)/tests/unit_%,$(UNIT_SRC))
INTEG_SRC := $(wildcard tests/integ/test_*.c)
INTEG_BINS := $(patsubst tests/integ/test_%.c,$(BUILD)/tests/integ_%,$(INTEG_SRC))
INTEG_HELPERS := $(call src_to_obj,$(filter-out tests/integ/test_%.c,$(wildcard tests/integ/*.c)))

.SECONDARY:
.PHONY: all deps test unit integ run stop asan valgrind clean
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

$(BUILD)/lib/libimgstore.a: $(LIB_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/lib/libimgstore.so: $(LIB_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libimgstore.so.1 -o $@ $^ $(LDLIBS)
	ln -sf libimgstore.so $(BUILD)/lib/libimgstore.so.1

$(BUILD)/lib/pkgconfig/imgstore.pc: client/imgstore.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' -e 's|@INCLUDEDIR@|$(abspath client)|' $< > $@

$(BUILD)/bin/imgstore: $(OBJ)/client/cli_imgstore.o $(OBJ)/client/cli_util.o $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/ds-admin: $(OBJ)/client/cli_ds_admin.o $(OBJ)/client/cli_util.o $(BUILD)/lib/libimgstore.a
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

$(BUILD)/tests/integ_%: $(OBJ)/tests/integ/test_%.o $(INTEG_HELPERS) $(BUILD)/lib/libimgstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

unit: deps
	$(MAKE) $(UNIT_BINS)
	./tests/run.sh $(UNIT_BINS)

integ: deps
	$(MAKE) all $(INTEG_BINS)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./tests/run.sh $(INTEG_BINS)

test: deps
	$(MAKE) all $(UNIT_BINS) $(INTEG_BINS)
	IMGSTORE_BIN=$(abspath $(BUILD)/bin) ./tests/run.sh $(UNIT_BINS) $(INTEG_BINS)

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" test

valgrind: deps
	$(MAKE) $(UNIT_BINS)
	for t in $(UNIT_BINS); do valgrind --error-exitcode=1 --leak-check=full -q $$t --jobs 1 --no-early-exit || exit 1; done

run: deps all
	./deploy/local-cluster.sh start
	./deploy/local-cluster.sh demo

stop:
	./deploy/local-cluster.sh stop

clean:
	rm -rf build build-asan

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
