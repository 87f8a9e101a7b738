# A thin wrapper around meson: install dependencies, build, run, test.
# `make run` starts a development teleportd; `make test` builds and runs
# every test under ASan/UBSan/LSan.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
ADDR ?= 127.0.0.1:3000
MESON_TEST_ARGS ?=

# Debian packages the build and the tests need. prometheus is there for
# promtool alone (metrics-e2e runs `promtool check metrics`; it skips,
# saying so, where promtool is missing): about 96 MB installed, and where
# systemd runs its package also starts a Prometheus server on :9090.
PKGS := libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev \
	libssl-dev openssl check meson ninja-build pkg-config gcc clang-format \
	python3 python3-grpcio python3-grpc-tools python3-h2 python3-yaml procps \
	grpc-proto clang libclang-rt-14-dev clang-tidy valgrind util-linux \
	groff-base zsh fish prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps grpcjs-deps build asan test run format check-format clean docker-test \
	deb deb-test \
	fuzz fuzz-regress valgrind lint bench

all: build

# Installs only what is missing, so it is quick when all is there.
deps:
	@missing=$$(for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | \
	    grep -q '^install ok installed$$' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi
	@missing=$$(command -v node >/dev/null || echo nodejs; \
	  command -v npm >/dev/null || echo npm); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi
	@$(MAKE) --no-print-directory grpcjs-deps

# The grpc-js interop suite's node modules, exactly as package-lock.json
# pins them (by integrity hash), from the npm registry; again only when
# npm ci has not finished there or the lock file changed since. A failure
# does not stop the other tests: the grpcjs-interop test then fails and
# shows this log's tail.
GRPCJS := tests/interop/grpcjs
grpcjs-deps:
	@stamp=$(GRPCJS)/node_modules/.package-lock.json; \
	if [ ! -f $$stamp ] || [ $(GRPCJS)/package-lock.json -nt $$stamp ]; then \
	  echo "installing: node modules for $(GRPCJS) (npm ci)"; \
	  if ! (cd $(GRPCJS) && npm ci --no-audit --no-fund --ignore-scripts \
	      --fetch-retries=2 --fetch-timeout=60000) \
	      >$(GRPCJS)/npm-ci.log 2>&1; then \
	    echo "deps: npm ci in $(GRPCJS) FAILED; grpcjs-interop will fail." \
	      "From $(GRPCJS)/npm-ci.log:"; \
	    grep -m 8 '^npm error' $(GRPCJS)/npm-ci.log || \
	      tail -n 15 $(GRPCJS)/npm-ci.log; \
	  fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Every test, under the sanitizers, with certificates made once for this run.
test: build asan check-format
	tests/make-certs.sh $(ASAN_BUILD)/test-certs
	JW_PLAIN_BUILD=$(abspath $(BUILD)) \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 1 \
	  $(MESON_TEST_ARGS)

# Development certificates are made once under the build directory and
# reused; the server runs in the foreground until Ctrl-C.
run: build
	@certs=$(BUILD)/dev-certs; \
	if [ ! -f $$certs/alice.key ]; then \
	  certs/jw-certs --dir $$certs init && \
	  certs/jw-certs --dir $$certs server && \
	  certs/jw-certs --dir $$certs client alice || exit 1; \
	fi; \
	c=$$(cd $$certs && pwd); \
	echo; \
	echo "teleportd is starting on $(ADDR). From another terminal:"; \
	echo; \
	echo "  export TELEPORT_CACERT=$$c/ca.cert TELEPORT_CERT=$$c/alice.cert \\"; \
	echo "         TELEPORT_KEY=$$c/alice.key TELEPORT_ADDR=$(ADDR)"; \
	echo "  $$(pwd)/$(BUILD)/client/teleport start -l echo hello"; \
	echo; \
	exec $(BUILD)/server/teleportd --addr $(ADDR) \
	  --cacert $$c/ca.cert --cert $$c/server.cert --key $$c/server.key \
	  --data-dir $$(pwd)/$(BUILD)/data

# In braces: `a || b | c` would pipe only find's list, and git's would go
# to the terminal unchecked.
C_FILES = { git ls-files '*.c' '*.h' 2>/dev/null || \
	find lib server client tests bench examples -name '*.[ch]'; }

format:
	@$(C_FILES) | xargs -r clang-format -i

check-format:
	@$(C_FILES) | xargs -r clang-format --dry-run -Werror

docker-test:
	bash tests/docker/test_docker.sh

# A Debian package of everything (packaging/deb, docs/packaging.md):
# build/deb/jobworker_VERSION_ARCH.deb, from a release build in build-deb.
deb: deps
	packaging/deb/build-deb.sh

# The package installed into a clean bookworm container and run there.
deb-test: deb
	bash tests/docker/test_deb.sh

FUZZ_SECONDS ?= 60

# libFuzzer targets (tests/fuzz), FUZZ_SECONDS each, clang build in build-fuzz.
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh

# Regression inputs and seeds through every target without libFuzzer (also
# part of `make test`).
fuzz-regress: asan
	meson test -C $(ASAN_BUILD) --suite fuzz --print-errorlogs

# The unit and integration suites under valgrind memcheck (build-vg).
valgrind: deps
	tools/valgrind.sh

# The benchmark (docs/performance.md): teleportd against a gRPC C++ peer and
# the machine's limits; writes bench/results/latest.md and latest.json.
bench: deps
	bench/run.sh

# clang-tidy's clang-analyzer checks over lib/ server/ client/ (build-lint).
lint: deps
	tools/lint.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-vg build-lint build-bench \
	  build-deb
