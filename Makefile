# Everything runs in a repo-local virtual environment that these targets create when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned: on these machines pip serves the 2.13.0 CPU build from local disk, while an
# unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: install demo test test-fast lint default-model clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,nncf]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trm-edge info --preset sudoku-extreme-mlp

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check trm_edge tests

clean:
	rm -rf $(VENV) build *.egg-info
