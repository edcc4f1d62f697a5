# The two set-up commands: `make demo` (install + the whole pipeline on the
# embedded synthetic default) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HARMONY := $(VENV)/bin/harmony
# torch is installed first, pinned, with pip: these builds lie in the local
# package cache (see README); override on another platform.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# The demo needs the package alone; the tests add the dev extra (pytest, playwright, quantus, ...).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev demo test bench clean mutate

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[dev]'
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: install
	$(PY) -m harmony_cli.demo

# --durations: the slowest tests end the log (keep each slow test small)
test: install-dev
	$(PY) -m pytest -q --durations=20

bench: install-dev
	$(PY) benchmarks/run_all.py

# Mutation testing of the scientific core (mutation/modules.toml); MODULE=name[,name] runs a few.
# Resumable; writes outputs/mutation/summary.md.
mutate: install-dev
	nice -n 15 $(PY) mutation/run.py $(if $(MODULE),--module $(MODULE))

clean:
	rm -rf outputs multirun

# The real study's GPU check (benchmarks/gpu_check.py): one line and status 2 without CUDA.
.PHONY: gpu-check
gpu-check: install-dev
	$(PY) benchmarks/gpu_check.py
