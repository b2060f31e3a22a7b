# Two commands a newcomer needs: `make train` and `make test`. Both set up .venv first (make install).
# CPU machines get torch==$(TORCH_VERSION) (CPU wheel); GPU users: see README ("Installing on a GPU machine").
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Set TORCH_SPEC= (empty) to keep whatever torch is already in the venv, e.g. a CUDA build you installed.
TORCH_SPEC ?= torch==$(TORCH_VERSION)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast clean-logs bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ] && ! $(PY) -c "import torch" 2>/dev/null; then \
		echo ">> installing $(TORCH_SPEC)"; $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	@$(PY) -c "import torch; print('>> torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"
	@touch $(STAMP)

train: install
	$(PY) -m src.train experiment=quickstart

test: install
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

test-fast: install  # the suite without the end-to-end runs marked slow (sweeps, DDP)
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

bench: install
	$(PY) experiments/bench_spanet.py

clean-logs:
	rm -rf logs
