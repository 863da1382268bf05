# Two commands: `make demo` opens the shop demo, `make test` runs the tests.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-fast install train evaluate export bench

# hnswlib compiles on install. Never -march=native (a wheel cached on an AVX-512 machine
# crashes an AVX2 one); x86-64-v3 (AVX2 + FMA) where this CPU has it: faster queries and builds
# than the generic SSE build (compare both with `python -m bench.hnsw_build`).
HNSWLIB_CFLAGS := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo -march=x86-64-v3)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	HNSWLIB_NO_NATIVE=1 CFLAGS="$(HNSWLIB_CFLAGS)" CXXFLAGS="$(HNSWLIB_CFLAGS)" $(PY) -m pip install -q --no-cache-dir \
		--no-binary hnswlib --force-reinstall --no-deps "$$(grep -o 'hnswlib==[0-9.]*' pyproject.toml)"
	HNSWLIB_NO_NATIVE=1 $(PY) -m pip install -q -e ".[train,ui,dev]"
	$(PY) -m fai_infer.harness.telemetry_hook  # ORT telemetry off whatever the import order
	rm -f $(VENV)/.installed-* && touch $@

# The scale extra (Ray, Milvus) only for tests and bench.scale; `make demo` never needs it.
SCALE_STAMP := $(VENV)/.installed-scale-$(shell cksum pyproject.toml | cut -d' ' -f1)

$(SCALE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[scale]"
	rm -f $(VENV)/.installed-scale-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ui.app

test: $(STAMP) $(SCALE_STAMP)
	$(PY) -m pytest -q

# The lane to run while working: every test but the slow kinds (markers in pyproject.toml).
FAST_LEAVES_OUT := slow or service or netns or browser or data or soak
test-fast: $(STAMP)
	@echo "make test-fast leaves out tests marked: $(FAST_LEAVES_OUT) (make test runs them)"
	$(PY) -m pytest -q -m "not ($(FAST_LEAVES_OUT))"

train: $(STAMP)
	$(PY) -m train --config configs/lite0-v3.json --out runs/default

evaluate: $(STAMP)
	$(PY) -m train.evaluate --model models/fai-default.onnx --shopper --unseen --shop ../shared/data/hm-dev

bench: $(STAMP)
	$(PY) -m bench
