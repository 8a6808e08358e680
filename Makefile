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

.PHONY: setup photos test test-fast bench bundle gpu-bundles metrics plots sweep clean

setup: $(STAMP) photos

$(STAMP): requirements.lock pyproject.toml
	@echo ">> creating $(VENV) with the pinned requirements (first run: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# the lock must satisfy what pyproject.toml declares (--no-deps above checks nothing)
	$(BIN)/python -m pip check
	touch $(STAMP)

# the pipeline's photos stage, so that the photos `make gpu-bundles` and `make sweep` use exist too
photos: $(STAMP)
	@$(DVC) repro photos

test: setup
	$(BIN)/python -m pytest -q

# 2:20 on 2 cores shared with other jobs: no DVC end-to-end runs, no MetaSchedule, no CUDA or full-size builds.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(DVC) repro
	@echo
	@$(BIN)/yolov3-tvm report --metrics metrics/latency.json

# The pipeline's two artifacts, a runtime-only TVM and an ONNX Runtime reference in one directory
# and one .tar.gz: copy it to a host with Python and numpy and run `bash run.sh` there.
BUNDLE ?= bundle/yolov3-tvm
bundle: setup
	$(DVC) repro compile_baseline compile_fastscatter
	$(BIN)/yolov3-tvm bundle --artifact_dir artifacts/baseline --artifact_dir artifacts/fastscatter --out $(BUNDLE)

# The GPU check, prepared on any machine with nvcc: for yolov3-tiny 416 (real weights) and yolov3 640
# (synthetic, regenerated on the host) one bundle each, holding baseline and fastscatter in fp32
# (kernels launched one by one, so the per-op profile shows scatter_nd go) and in fp16 (tensor
# cores, CUDA graphs). On the GPU host: tar xzf bundle/gpu-*.tar.gz && bash gpu-*/run.sh
GPU_ARCH ?= sm_90
GPU_MODELS ?= yolov3-tiny:416 yolov3:640
gpu-bundles: setup
	@for spec in $(GPU_MODELS); do src=$${spec%%:*}; size=$${spec##*:}; dir=build/gpu/$$src-$$size; \
	  $(BIN)/yolov3-tvm model --source $$src --size $$size --out $$dir/model.onnx || exit 1; \
	  for prec in fp32 fp16; do graph=$$( [ $$prec = fp32 ] && echo --no_cuda_graph ); \
	    for variant in baseline fastscatter; do fast=$$( [ $$variant = fastscatter ] && echo --fast_scatter_nd ); \
	      $(BIN)/yolov3-tvm compile --onnx $$dir/model.onnx --out_dir $$dir/$$variant-$$prec --target cuda \
	        --cuda_arch $(GPU_ARCH) --precision $$prec --weights separate $$graph $$fast || exit 1; \
	  done; done; \
	  $(BIN)/yolov3-tvm bundle --artifact_dir $$dir/baseline-fp32 --artifact_dir $$dir/fastscatter-fp32 \
	    --artifact_dir $$dir/baseline-fp16 --artifact_dir $$dir/fastscatter-fp16 --out bundle/gpu-$$src-$$size \
	    --image pictures/photos/motorcycle_left.png || exit 1; \
	done

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
# model sources too, e.g. SWEEP_SOURCES="yolov3-tiny yolov3-tiny-torch" (the torch export, SiLU)
SWEEP_SOURCES ?= yolov3-tiny
sweep: setup
	@for source in $(SWEEP_SOURCES); do for size in $(SWEEP_SIZES); do for threads in $(SWEEP_THREADS); do \
	  $(DVC) exp run --queue -C pictures/photos -S model.source=$$source -S model.size=$$size \
	    -S target.cpu_threads=$$threads -S bench.max_seconds=15 || exit 1; \
	done; done; done
	$(DVC) queue start -j $(SWEEP_JOBS)
	@while $(DVC) queue status | grep -qE 'Queued|Running'; do sleep 15; echo ".. $$($(DVC) queue status | grep -cE 'Queued|Running') experiments left"; done
	$(DVC) queue status
	$(DVC) exp show --md --only-changed --drop 'Created|State' --keep 'source|size|threads|_ms$$|speedup'

clean:
	rm -rf artifacts bundle build models pictures/vis metrics/plots/html .pytest_cache .hypothesis
