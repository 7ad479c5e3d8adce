# vaegan: the README's two commands are `make quickstart` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch-free runtime test runs in a Python 3.10 venv (JetPack 6's Python) without torch.
PYTHON310 ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null) \
	$$(command -v python3.10); do $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo $$p && break; done)
VENV310 ?= .venv310
RUN ?= runs/digits
ART ?= artifacts/digits
# a 64x64 RGB model for the benchmarks, from a short run on the letters in shared/ (any folder works)
LETTERS ?= ../shared/data/letters64
RUN64 ?= runs/letters64
ART64 ?= artifacts/letters64
EPOCHS ?= 20
FIXTURE := build/fixture-artifacts
# torch is pinned to the CPU build served on these machines; a bare `torch` would pull a CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup quickstart test test-arm64 lint unit runtime-py310 fixture quality bench bench-doc bench-serve bench-model-64 docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The browser tests use Debian's chromium through Playwright (a browser download is not possible
# here); without root or apt they skip and say why.
build/.chromium:
	@mkdir -p build
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } || \
		echo "chromium could not be installed: the browser tests will skip"
	@touch $@

setup: $(VENV)/.installed build/.chromium

## One command: set up, train on the bundled digits, evaluate, export every precision, sample.
quickstart: setup
	$(VENV)/bin/vaegan train --data digits --epochs $(EPOCHS) --out $(RUN) $(if $(wildcard $(RUN)/config.json),--resume $(RUN),)
	$(VENV)/bin/vaegan eval $(RUN) --json $(RUN)/eval.json
	$(VENV)/bin/vaegan eval $(RUN) --temperature 0.7 --json $(RUN)/eval_t0.7.json
	$(VENV)/bin/vaegan export $(RUN) --out $(ART) --precision fp32,fp16,int8 --openvino --triton --force
	$(VENV)/bin/vaegan sample $(ART) -n 64 --seed 0 --out $(ART)/samples.png
	$(VENV)/bin/vaegan sample $(ART) -n 64 --seed 0 --precision int8 --out $(ART)/samples_int8.png
	$(VENV)/bin/vaegan info $(ART)
	@echo
	@echo "Pictures: $(RUN)/samples/ (per epoch), $(ART)/samples.png, $(ART)/samples_int8.png"
	@echo "Numbers:  $(RUN)/eval.json, $(RUN)/eval_t0.7.json, $(RUN)/metrics.jsonl, $(ART)/manifest.json (parity and quality per precision)"

## One command: set up and run every test (ruff and mypy, unit and integration tests, the torch-free runtime on Python 3.10).
test: setup lint unit runtime-py310

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup fixture
	VAEGAN_FIXTURE=$(FIXTURE) $(PY) -m pytest -q -p no:cacheprovider --benchmark-disable

$(FIXTURE)/manifest.json: setup $(wildcard vaegan/*.py vaegan/*/*.py)
	$(PY) tests/make_fixture.py $(FIXTURE)

fixture: $(FIXTURE)/manifest.json

$(VENV310)/.installed: pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (pyenv install 3.10) or set PYTHON310=/path/to/python3.10"; exit 2; }
	$(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q --upgrade pip
	$(VENV310)/bin/python -m pip install -q -e ".[serve,openvino]" "pytest>=8.0" "hypothesis>=6.100" "httpx>=0.27" \
		"cuda-python>=12.6,<12.7" "tritonclient[http,grpc]>=2.40"
	touch $@

runtime-py310: $(VENV310)/.installed fixture
	$(VENV310)/bin/python -c "import importlib.util, sys; sys.exit('torch must not be installed here' if importlib.util.find_spec('torch') else 0)"
	VAEGAN_FIXTURE=$(FIXTURE) $(VENV310)/bin/python -m pytest -q -p no:cacheprovider tests/core tests/runtime

## The torch-free runtime on an emulated aarch64 Debian: parity with this machine's export, the device
## tests, serve and doctor (root: debootstrap, qemu-user-static, binfmt_misc; the root is cached)
test-arm64: setup fixture
	FIXTURE=$(FIXTURE) PY=$(PY) bash scripts/arm64/run.sh

quality: setup
	$(PY) benchmarks/quality.py --epochs $(EPOCHS)

## pytest-benchmark suites (on the quick start's artifacts; not part of `make test`)
bench: setup $(if $(wildcard $(LETTERS)),bench-model-64,)
	$(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-only --benchmark-columns=median,iqr,ops,rounds

## The 64x64 RGB benchmark model: a 3-minute run on $(LETTERS), exported at every precision
$(ART64)/manifest.json: $(VENV)/.installed
	$(VENV)/bin/vaegan train --data $(LETTERS) --time 3m --out $(RUN64) --quiet
	$(VENV)/bin/vaegan export $(RUN64) --out $(ART64) --precision fp32,fp16,int8 --openvino --force

bench-model-64: $(ART64)/manifest.json

## The engine figures in docs/benchmarks.md (after `make quickstart`): both model sizes against the peers
PEERS := --engine vaegan-ort,vaegan-openvino,openvino-default,ort-raw --precision fp32,fp16,int8 --batch 1,64 --seconds 2 --rounds 6
bench-doc: setup bench-model-64
	$(VENV)/bin/vaegan bench $(ART) $(PEERS) --json docs/bench/peers_digits.json --plot docs/bench/throughput.png
	$(VENV)/bin/vaegan bench $(ART64) $(PEERS) --json docs/bench/peers_letters64.json
	$(MAKE) docs

## The serving figures in docs/benchmarks.md: vaegan serve under load, both models
bench-serve: setup bench-model-64
	$(PY) benchmarks/serve_bench.py $(ART) $(ART64)

## Re-render every table in README.md and docs/ from its results file (benchmarks/docs.py)
docs: setup
	$(PY) benchmarks/docs.py

clean:
	rm -rf $(VENV) $(VENV310) build runs artifacts
