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

.PHONY: setup photos test bench metrics plots sweep clean

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

# A small grid run by DVC's own queue workers; raise SWEEP_JOBS where there are more cores.
SWEEP_JOBS ?= 1
sweep: setup
	$(DVC) exp run --queue -C pictures/photos -S model.size=320 -S target.cpu_threads=1
	$(DVC) exp run --queue -C pictures/photos -S model.size=320 -S target.cpu_threads=2
	$(DVC) exp run --queue -C pictures/photos -S model.size=416 -S target.cpu_threads=1
	$(DVC) exp run --queue -C pictures/photos -S model.size=416 -S target.cpu_threads=2
	$(DVC) queue start -j $(SWEEP_JOBS)
	$(DVC) queue logs --follow $$($(DVC) queue status | awk 'NR==2{print $$1}') || true
	$(DVC) exp show --only-changed --md

clean:
	rm -rf artifacts models pictures/vis metrics/plots/html .pytest_cache .hypothesis
