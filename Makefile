# Two commands a newcomer needs: `make train` and `make test`. Both set up .venv first (make install).
# torch==$(TORCH_VERSION) goes in first: with an NVIDIA GPU (nvidia-smi lists one) the regular CUDA build from your
# package index; without one the CPU build from PyTorch's CPU wheel index when that index answers, else whatever
# your package index offers. TORCH_SPEC= (empty) keeps the torch already in the venv (bring your own build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Set TORCH_SPEC= (empty) to keep whatever torch is already in the venv, e.g. a CUDA build you installed.
TORCH_SPEC ?= torch==$(TORCH_VERSION)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint clean-logs bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ] && ! $(PY) -c "import torch" 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then \
			echo ">> NVIDIA GPU found: installing $(TORCH_SPEC) (CUDA build)"; \
			$(PY) -m pip install -q "$(TORCH_SPEC)"; \
		elif $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" 2>/dev/null; then \
			echo ">> no NVIDIA GPU: installing $(TORCH_SPEC) (CPU build, $(TORCH_CPU_INDEX))"; \
			$(PY) -m pip install -q --extra-index-url "$(TORCH_CPU_INDEX)" "$(TORCH_SPEC)"; \
		else \
			echo ">> no NVIDIA GPU, $(TORCH_CPU_INDEX) not reachable: installing $(TORCH_SPEC) from the default index"; \
			$(PY) -m pip install -q "$(TORCH_SPEC)"; \
		fi; fi
	$(PY) -m pip install -q -e ".[dev]"
	@$(PY) -c "import torch; print('>> torch', torch.__version__, '| CUDA build:', torch.version.cuda, '| CUDA available:', torch.cuda.is_available())"
	@touch $(STAMP)

train: install
	$(PY) -m src.train experiment=quickstart

test: install
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

test-fast: install  # the suite without the end-to-end runs marked slow (sweeps, DDP)
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

lint: install  # ruff lint rules, ruff format (check only) and the import contracts of pyproject.toml (tests/test_architecture.py runs the latter too)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) experiments/bench_spanet.py

clean-logs:
	rm -rf logs
