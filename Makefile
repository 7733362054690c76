# The one place commands live: README, CI (.ci/run) and hooks call these targets.
# `make help` lists them. Every target installs what it needs first (idempotent).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Tests and the demo run on a cache inside the repo unless the caller says otherwise.
export ECOS_FAST_CACHE ?= $(CURDIR)/.cache/ecos-fast

RUST_SRC := $(shell find rust -name '*.rs') Cargo.toml Cargo.lock

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-12s %s\n", $$1, $$2}'

# --- set-up -----------------------------------------------------------------
.PHONY: system-deps
system-deps: ## apt packages (fonts for the digit domains, venv support); needs root
	@bash scripts/install-system-deps.sh

$(VENV)/.created:
	@command -v python3 >/dev/null || { echo "python3 is missing: run 'make system-deps' as root"; exit 1; }
	python3 -m venv $(VENV) || { echo "python3 -m venv failed: install python3-venv (make system-deps)"; exit 1; }
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.deps: $(VENV)/.created pyproject.toml $(wildcard requirements/*.txt deps/*.txt)
	$(PIP) install -q -r requirements/pinned.txt
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	touch $@

$(VENV)/.built: $(VENV)/.deps $(RUST_SRC)
	@command -v cargo >/dev/null || { echo "cargo (Rust >= 1.85) is missing: install it with rustup"; exit 1; }
	$(VENV)/bin/maturin develop --release -q
	touch $@

.PHONY: setup
setup: system-deps $(VENV)/.built ## everything: apt packages, venv, pip packages, the release Rust build

# --- the two jobs -------------------------------------------------------------
.PHONY: demo
demo: setup ## the main job: ECOS end to end on the offline Digit-Five proxy
	$(VENV)/bin/ecos-fast demo

.PHONY: test
test: setup ## the default test suite (what CI runs)
	$(VENV)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider tests
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --doctest-modules python/ecos_fast
	$(VENV)/bin/python -m mypy.stubtest ecos_fast._core
	$(MAKE) --no-print-directory bench-smoke
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory lint

.PHONY: test-rust
test-rust: ## the Rust unit tests (kernels/*: exec modes, overdue groups, SIMD parsing), in a debug build so their debug_assert! checks run
	cargo test -q

# A second venv with the LOWEST versions pyproject.toml allows (requirements/lowest.txt),
# running the core tests (no torch, ONNX, Ray or data sets) on the same compiled core:
# python/ecos_fast/_core*.so from `maturin develop`, found through PYTHONPATH. Left out
# to stay under 5 min: the K-Center and neighbourhood kernel tests (Rust behind the same
# validation that test_assign / test_kmeans exercise).
LOWEST     := $(VENV)/lowest
CORE_TESTS := $(addprefix tests/test_,assign kmeans quotas rule baselines validation \
	privacy protocol exchange signing ledger cli feature_files imports version threads \
	errors dependencies)
CORE_TESTS := $(addsuffix .py,$(CORE_TESTS))

$(LOWEST)/.deps: $(VENV)/.created requirements/lowest.txt
	python3 -m venv --clear $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q -r requirements/lowest.txt
	touch $@

.PHONY: test-lowest
test-lowest: setup $(LOWEST)/.deps ## the core tests on the lowest allowed dependency versions (CI)
	ECOS_FAST_LOWEST=1 PYTHONPATH=$(CURDIR)/python $(LOWEST)/bin/python -m pytest -q -m "not slow" \
		-p no:cacheprovider $(wildcard $(CORE_TESTS))

.PHONY: test-all
test-all: setup ## every test, including the slow ones
	$(VENV)/bin/python -m pytest -q tests

# --- release artefacts --------------------------------------------------------
# An abi3 wheel (one file for CPython >= 3.10) that pip takes on glibc >= 2.17 (manylinux2014:
# RHEL 7+, Ubuntu 14.04+, Debian 8+, Amazon Linux 2), plus the sdist. `zig cc` (PyPI's ziglang)
# links against glibc 2.17's symbols from this newer system, offline, without a manylinux
# container. Its own tools venv and cargo target dir: .venv and `maturin develop` are untouched.
WHEEL_VENV := $(VENV)/wheel-tools
WHEEL_PY   := $(CURDIR)/$(WHEEL_VENV)/bin/python

$(WHEEL_VENV)/.deps: $(VENV)/.created requirements/build.txt
	python3 -m venv --clear $(WHEEL_VENV)
	$(WHEEL_PY) -m pip install -q --upgrade pip
	$(WHEEL_PY) -m pip install -q -r requirements/build.txt
	touch $@

.PHONY: wheel
wheel: $(WHEEL_VENV)/.deps ## abi3 manylinux2014 x86-64 wheel + sdist in dist/, checked by auditwheel and twine
	rm -rf dist
	$(WHEEL_PY) -m maturin sdist --out dist
	@# The wheel from the working tree, not `build --sdist`: that one compiles the unpacked sdist,
	@# whose files all carry one fixed old mtime, so cargo would reuse target/wheel after a Rust change.
	PATH="$(CURDIR)/$(WHEEL_VENV)/bin:$$PATH" CARGO_TARGET_DIR="$(CURDIR)/target/wheel" nice -n 10 \
		$(WHEEL_PY) -m maturin build --release --out dist --zig \
		--compatibility manylinux2014 --target x86_64-unknown-linux-gnu
	$(WHEEL_PY) -m auditwheel show dist/*.whl | tee target/wheel/auditwheel.txt
	@tr -s ' \n' ' ' < target/wheel/auditwheel.txt | grep -q 'consistent with the following platform tag: "manylinux_2_17_x86_64"' \
		|| { echo "auditwheel: the wheel is not manylinux_2_17_x86_64"; exit 1; }
	$(WHEEL_PY) -m twine check --strict dist/*

# The slow wheel test: installs dist/'s wheel (built by `make wheel` when missing or older
# than the sources) into a clean venv with no Rust on PATH and runs the README there.
.PHONY: test-wheel
test-wheel: setup ## the wheel in a clean venv: README example, Subset + DataLoader (CI)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -m slow tests/test_wheel.py

# --- quality ------------------------------------------------------------------
.PHONY: lint
lint: setup ## ruff, mypy --strict, cargo fmt --check, clippy -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

# --- benchmarks ---------------------------------------------------------------
.PHONY: bench
bench: setup ## the full benchmark suite; writes benches/RESULTS.md
	$(PY) benches/run.py --full

.PHONY: bench-smoke
bench-smoke: setup ## benchmarks at toy sizes, so they cannot rot (CI)
	$(PY) benches/run.py --smoke

.PHONY: clean
clean: ## remove the venv and build outputs
	rm -rf $(VENV) target .pytest_cache .mypy_cache .ruff_cache
