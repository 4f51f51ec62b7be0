# Everything runs in a repo-local virtual environment that these targets create when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned: on these machines pip serves the 2.13.0 CPU build from local disk, while an
# unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# A Python 3.8 (pyenv's) for the device-only install that `device-py38` checks, where this machine has one.
PY38 := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.8*/bin/python3.8))
VENV38 := .venv38

.PHONY: install lock demo test test-fast lint device-py38 default-model maze-model clean

# constraints.txt holds the exact versions the suite passed with; pyproject.toml keeps open ranges for people
# who install trm-edge into their own environments.
CONSTRAINTS := constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c $(CONSTRAINTS) --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[host,dev,nncf,openvino,serve]'
	touch $(STAMP)

install: $(STAMP)

# Refresh constraints.txt with the newest releases pyproject.toml admits (a scratch venv), then run make test.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q $(TORCH)
	$(LOCK_VENV)/bin/pip install -q -e '.[host,dev,nncf,openvino,serve]'
	{ sed -n '/^#/p' $(CONSTRAINTS); $(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -v '^torch=='; } \
		> $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && rm -rf $(LOCK_VENV)

DEMO_PUZZLE := 24.6.9..51..34.6.8...175.43.6....82...159.4.79..8.6......9..7..59826731...64.19..
demo: $(STAMP)
	$(BIN)/trm-edge info default
	$(BIN)/trm-edge solve $(DEMO_PUZZLE)
	$(BIN)/trm-edge data build --like default -o .demo/puzzles --train 0 --test 200 --seed 1 --force
	$(BIN)/trm-edge eval trm_edge/models/default/bundle --data .demo/puzzles
	$(BIN)/trm-edge verify trm_edge/models/default/bundle

test: $(STAMP) device-py38
	TRM_EDGE_PY38=$$(test -x $(VENV38)/bin/python && echo $(CURDIR)/$(VENV38)/bin/python) $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check trm_edge tests

# The device side (what solve/eval/bench/compare/verify/build-engine import; listed in tests/device_side.py) must
# run on Python 3.8, as JetPack 5 ships it: vermin checks its syntax and standard library. What vermin misses
# (X | Y at runtime, typer signatures, ...) tests/test_device_py38.py checks, with the device commands under a
# real Python 3.8 when one is at hand.
device-py38: $(STAMP) $(VENV38)/.installed
	files="$$($(BIN)/python tests/device_side.py)" && \
		$(BIN)/vermin --target=3.8- --violations --no-tips --no-make-paths-absolute $$files

# Where this machine has a Python 3.8 (pyenv's), a device-only install of this checkout on it, with the numpy and
# onnxruntime JetPack 5 users get: `pip install .` must resolve without torch, and tests/test_device_py38.py runs
# the device commands there. Without a 3.8 only the static checks run (said on stdout).
$(VENV38)/.installed: pyproject.toml
	@if [ -z "$(PY38)" ]; then echo "no Python 3.8 here: the device side is checked statically only"; exit 0; fi; \
	rm -rf $(VENV38) && $(PY38) -m venv $(VENV38) && \
	$(VENV38)/bin/pip install -q numpy==1.24.4 onnxruntime==1.16.3 '.[serve]' && touch $@

# The shipped models (trm_edge/models/NAME, cards in their README.md), reproduced with trm-edge itself on 2 CPU
# cores. default: Sudoku with 34-40 givens, token-mixing MLP (sudoku-mini) at 0.57 steps/s here (the shipped
# model's 2,400 steps: 71 min; half that rate on a loaded machine); maze: 9x9 mazes with a unique shortest path,
# self-attention + RoPE (maze-mini) at 0.54 steps/s (its 6,000 steps: 3.1 h). Re-running after an interruption resumes the training run from its last
# checkpoint. The model card (README.md) is kept: its figures are the shipped model's, re-measure them.
data/default/recipe.json: | $(STAMP)
	$(BIN)/trm-edge data build sudoku -o data/default --train 20000 --test 1000 --seed 7 \
		--min-givens 34 --max-givens 40 --workers 2 --force
data/maze/recipe.json: | $(STAMP)
	$(BIN)/trm-edge data build maze -o data/maze --size 9 --train 60000 --test 1000 --seed 7 --workers 2 --force

default-model: MODEL := default
default-model: PRESET := sudoku-mini
default-model: STEPS := 2800
default-model: data/default/recipe.json
maze-model: MODEL := maze
maze-model: PRESET := maze-mini
maze-model: STEPS := 8000
maze-model: data/maze/recipe.json
default-model maze-model:
	$(BIN)/trm-edge train --preset $(PRESET) --data data/$(MODEL) -o runs/$(MODEL) --train-steps $(STEPS) \
		--set eval_interval=500 --set eval_max_examples=300 --set lr_min_ratio=0.1 --set log_interval=20 \
		$$(test -d runs/$(MODEL)/state && echo --resume)
	mkdir -p trm_edge/models/$(MODEL)
	find trm_edge/models/$(MODEL) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	cp -r runs/$(MODEL)/model/. trm_edge/models/$(MODEL)/
	$(BIN)/trm-edge export trm_edge/models/$(MODEL) --target cpu -o trm_edge/models/$(MODEL)/bundle

clean:
	rm -rf $(VENV) build *.egg-info
