# Makefile - the front door: `make run`, `make test`, `make bench`.
# Every target first installs missing Debian packages (scripts/deps.sh),
# then configures and builds with CMake. The tests build in build/ (Debug,
# AddressSanitizer + UBSan); the benchmark and `make run` use build-release/;
# the libFuzzer harnesses (`make fuzz`, clang) build-fuzz/.
BUILD      ?= build
RELBUILD   ?= build-release
FUZZBUILD  ?= build-fuzz
FUZZ_SECONDS ?= 3
PREFIX     ?= /usr/local
DESTDIR    ?=
JOBS       ?= $(shell nproc)
PYTHON     ?= /usr/bin/python3
RUN_DIR    ?= $(CURDIR)/var/run
CMAKE_ARGS ?=
SOAK_RUNS  ?= 20
SOAK_DRILLS ?=

.PHONY: all deps build release run test unit e2e bench install clean format format-check tidy \
        drills drills-fast soak ansible-test fuzz fuzz-run

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)

$(RELBUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(RELBUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

# The fuzz tree: clang, ASan + UBSan + libFuzzer coverage, -O1.
$(FUZZBUILD)/CMakeCache.txt: | deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZBUILD) -DCMAKE_BUILD_TYPE=Debug \
	    -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DKUMO_SANITIZE=address,undefined \
	    -DKUMO_FUZZ=ON $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

release: deps $(RELBUILD)/CMakeCache.txt
	cmake --build $(RELBUILD) -j $(JOBS)

# A one-node kumod on policy/default.lua, data under var/ (git-ignored).
# Ctrl-C stops it cleanly. As root it runs with `--user root` on purpose.
run: release
	@mkdir -p $(RUN_DIR)
	cd $(RUN_DIR) && exec $(CURDIR)/$(RELBUILD)/bin/kumod \
	    --policy $(CURDIR)/policy/default.lua \
	    $$( [ "$$(id -u)" = 0 ] && echo --user root )

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

e2e: build
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: build
	cd $(BUILD) && ctest --output-on-failure
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e
	$(MAKE) --no-print-directory fuzz-run
	$(MAKE) --no-print-directory ansible-test drills-fast

# libFuzzer harnesses (docs/fuzzing.md): `make fuzz` builds them,
# `make fuzz-run` replays the regressions and fuzzes each for FUZZ_SECONDS.
fuzz: deps $(FUZZBUILD)/CMakeCache.txt
	cmake --build $(FUZZBUILD) -j $(JOBS) --target kumo_fuzzers

fuzz-run: fuzz
	tests/fuzz/run.sh $(FUZZBUILD)/bin $(FUZZ_SECONDS)

bench: release
	KUMOD_BIN=$(CURDIR)/$(RELBUILD)/bin/kumod tests/bench/run.sh

# Failure drills (docs/drills.md): a real cluster under injection load, one
# summary line per drill; D3/D4 (namespaces) and D6 (tmpfs) need root.
drills: build
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod tests/drills/run.sh

drills-fast: build
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod tests/drills/run.sh D1 D2 D3

# Every drill (or SOAK_DRILLS) SOAK_RUNS times with varied seeds and load;
# one line per drill with the totals; a lost message fails it.
soak: build
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod SOAK_RUNS=$(SOAK_RUNS) \
	    $(PYTHON) tests/drills/soak.py $(SOAK_DRILLS)

# The Ansible roles against three local nodes (ansible-core, ansible-lint).
ansible-test: build
	cd ansible && ansible-lint
	KUMOD_BIN=$(CURDIR)/$(BUILD)/bin/kumod tests/drills/test_ansible_local.sh

install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/kumod $(DESTDIR)/lib/systemd/system
	install -m 0755 $(RELBUILD)/bin/kumod $(DESTDIR)$(PREFIX)/bin/kumod
	@if [ -x $(RELBUILD)/bin/kcli ]; then install -m 0755 $(RELBUILD)/bin/kcli $(DESTDIR)$(PREFIX)/bin/kcli; fi
	install -m 0644 policy/examples/*.lua $(DESTDIR)/etc/kumod/
	sed 's|@BINDIR@|$(PREFIX)/bin|g' dist/kumod.service > $(DESTDIR)/lib/systemd/system/kumod.service

clean:
	rm -rf $(BUILD) $(RELBUILD) $(FUZZBUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

tidy: build
	clang-tidy -p $(BUILD) $$(git ls-files 'node/*.c' 'cluster/*.c' 'policy/*.c')
