# The two commands the README starts with: `make bench` (the whole DVC pipeline on the embedded
# default model) and `make test`. Both create .venv from the pinned requirements first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DVC := $(BIN)/dvc
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup photos test test-fast bench metrics plots sweep clean

setup: $(STAMP) photos

$(STAMP): requirements.lock pyproject.toml
	@echo ">> creating $(VENV) with the pinned requirements (first run: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

photos: $(STAMP)
	@$(BIN)/yolov3-tvm photos --out pictures/photos

test: setup
	$(BIN)/python -m pytest -q

# Under two minutes: no DVC end-to-end runs, no MetaSchedule, no full-size builds.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(DVC) repro
	@echo
	@$(BIN)/yolov3-tvm report --metrics metrics/latency.json

metrics: setup
	$(DVC) metrics show
	$(DVC) metrics diff HEAD

plots: setup
	$(DVC) plots show --out metrics/plots/html
	@echo "PNG charts (offline): metrics/plots/latency.png metrics/plots/profile.png"

# A small grid (model size x CPU threads) queued as DVC experiments and run by DVC's own queue
# workers; SWEEP_JOBS=N runs N workers at once (each in its own temporary workspace).
SWEEP_JOBS ?= 1
SWEEP_SIZES ?= 224 320
SWEEP_THREADS ?= 1 2
sweep: setup
	@for size in $(SWEEP_SIZES); do for threads in $(SWEEP_THREADS); do \
	  $(DVC) exp run --queue -C pictures/photos -S model.size=$$size -S target.cpu_threads=$$threads \
	    -S bench.max_seconds=15 || exit 1; \
	done; done
	$(DVC) queue start -j $(SWEEP_JOBS)
	@while $(DVC) queue status | grep -qE 'Queued|Running'; do sleep 15; echo ".. $$($(DVC) queue status | grep -cE 'Queued|Running') experiments left"; done
	$(DVC) queue status
	$(DVC) exp show --md --only-changed --drop 'Created|State' --keep 'size|threads|_ms$$|speedup'

clean:
	rm -rf artifacts models pictures/vis metrics/plots/html .pytest_cache .hypothesis
