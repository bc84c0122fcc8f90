# bitsearch — the commands a fresh machine needs. `make demo` and `make test` do everything.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

ROOT := $(abspath .)
LOCAL := $(ROOT)/.local
PY ?= python3
ORT_VERSION := 1.31.1
GPU ?= 0
# The GPU wheel ships its own libonnxruntime.so beside the CUDA provider.
ORT_PACKAGE := $(if $(filter 1,$(GPU)),onnxruntime-gpu,onnxruntime)
ORT_DIR := $(LOCAL)/onnxruntime
export ORT_DYLIB_PATH := $(ORT_DIR)/lib/libonnxruntime.so
export CARGO_PROFILE_DEV_DEBUG := 0

TERRAIN_DIR := models/terrain
TERRAIN := $(TERRAIN_DIR)/terrain_consistency_unet_difficulty100.onnx
TERRAIN_SHA256 := 95be54b4a39d58320e187a7ec533351c957f16a00be58773c86074828ee67887
export BITSEARCH_TERRAIN_MODEL := $(ROOT)/$(TERRAIN)

SHAPES := models/shapes-t2i
TRAIN_VENV := $(LOCAL)/train-venv
SHAPES_WORK := $(LOCAL)/shapes-train

BIN := target/release/bitsearch
DEMO_OUT := out/demo

.PHONY: setup system-packages models build demo python-check report-check test check-deps bench device-check lint proto train-shapes shapes-accuracy

## setup: cmake and libclang (apt, for HiGHS) and ONNX Runtime from its PyPI wheel into .local/
## (GPU=1 for onnxruntime-gpu)
setup: system-packages $(ORT_DIR)/.installed-$(ORT_PACKAGE)

system-packages:
	scripts/install-system-packages.sh

$(ORT_DIR)/.installed-$(ORT_PACKAGE):
	scripts/install-onnxruntime.sh "$(PY)" "$(ORT_PACKAGE)" "$(ORT_VERSION)" "$(ORT_DIR)"
	touch $@

## models: the terrain consistency UNet from PyPI (adaptive-terrain-diffusion 0.4.2), sha256-checked
models: $(TERRAIN)

$(TERRAIN):
	scripts/fetch-terrain-model.sh "$(PY)" "$(TERRAIN_DIR)" "$(TERRAIN_SHA256)"

build: setup
	cargo build --release

## demo: setup, fetch, build, then run the main job on the terrain model
demo: build models
	$(BIN) inspect $(TERRAIN) | tail -n 12
	$(BIN) sample $(TERRAIN) --steps 1 --seed 0 --num 4 --condition difficulty=0.5 --out $(DEMO_OUT)/samples
	@echo "demo samples: $(ROOT)/$(DEMO_OUT)/samples"
	$(BIN) sensitivity $(TERRAIN) --condition difficulty=0.5 --w-bits 4,8 --out $(DEMO_OUT)/sensitivity.parquet --resume
	@echo "demo sensitivity table: $(ROOT)/$(DEMO_OUT)/sensitivity.parquet"
	$(BIN) solve --sensitivity $(DEMO_OUT)/sensitivity.parquet --budget avg-bits=6.0 --out $(DEMO_OUT)/plan.yaml
	$(BIN) solve --sensitivity $(DEMO_OUT)/sensitivity.parquet --sweep avg-bits=4..8:17 --out $(DEMO_OUT)/sweep
	$(BIN) quantize $(TERRAIN) --plan $(DEMO_OUT)/plan.yaml --out $(DEMO_OUT)/quantized --overwrite
	$(BIN) eval $(TERRAIN) $(DEMO_OUT)/quantized --simulate $(DEMO_OUT)/plan.yaml --out $(DEMO_OUT)/eval.parquet \
		--samples $(DEMO_OUT)/eval-samples
	$(BIN) report --sensitivity $(DEMO_OUT)/sensitivity.parquet --plan $(DEMO_OUT)/plan.yaml \
		--frontier $(DEMO_OUT)/sweep/frontier.parquet --eval $(DEMO_OUT)/eval.parquet \
		--samples $(DEMO_OUT)/eval-samples/reference --samples $(DEMO_OUT)/eval-samples/candidate_0 \
		--out $(DEMO_OUT)/report
	@echo "demo report: $(ROOT)/$(DEMO_OUT)/report/index.html"

## python-check: load and run the demo's quantized model with ONNX Runtime's Python API (a
## project-local venv with onnxruntime and numpy from PyPI) and compare it with the float model
python-check: $(LOCAL)/py-check/.installed
	$(LOCAL)/py-check/bin/python scripts/python-ort-check.py $(TERRAIN) $(DEMO_OUT)/quantized

$(LOCAL)/py-check/.installed:
	$(PY) -m venv $(LOCAL)/py-check
	$(LOCAL)/py-check/bin/pip install --quiet onnxruntime==$(ORT_VERSION) numpy
	touch $@

## report-check: open the demo report in headless Chromium (apt-get install chromium), check
## that every image loads, and screenshot it
report-check:
	scripts/check-report.sh $(DEMO_OUT)/report $(DEMO_OUT)/report-screenshot.png

## train-shapes: retrain the shapes-t2i text-to-image pipeline with PyTorch (about an hour on 2 CPU
## cores) and export it over models/shapes-t2i; stages already in .local/shapes-train are reused
## (delete that folder to start from nothing). Never part of test or demo.
train-shapes: $(TRAIN_VENV)/.installed
	$(TRAIN_VENV)/bin/python $(SHAPES)/train/train.py --work $(SHAPES_WORK)
	$(TRAIN_VENV)/bin/python $(SHAPES)/train/export.py --work $(SHAPES_WORK) --out $(SHAPES)
	$(PY) $(SHAPES)/train/calibration_prompts.py $(SHAPES)

$(TRAIN_VENV)/.installed: $(SHAPES)/train/requirements.txt
	$(PY) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet -r $<
	touch $@

## shapes-accuracy: alignment accuracy of the committed shapes-t2i pipeline on its held-out
## prompts: DDIM 20 steps (full precision, whole UNet at W8 and W4) and DDIM 4 steps
shapes-accuracy: build
	$(BIN) align $(SHAPES) --steps 20 --guidance 4 --w-bits 8,4
	$(BIN) align $(SHAPES) --steps 4 --guidance 4

## test: the crate-graph check, unit tests on graphs the tests build, integration tests on the
## real terrain model and shapes-t2i
test: setup models check-deps
	cargo test --workspace --no-fail-fast

## check-deps: records, solver and reports link neither ONNX Runtime nor the generation stack
check-deps:
	scripts/check-deps.sh

## bench: timing tables under out/bench/ (speed claims live here, not in tests; the scaling
## table about 20 minutes, most of it the 1000-layer run), the fidelity-and-cost table of
## applied plans (out/bench/fidelity.md, about 25 minutes), the corrections on and off
## (out/bench/corrections.md, about 35 minutes) and the frontier with and without float16,
## group sizes and E4M3 (out/bench/frontier.md, about 50 minutes, 12 of them the measured
## shrinkage searches)
bench: setup models
	cargo bench --bench runtime
	cargo bench --bench sensitivity
	cargo bench --bench solver
	cargo bench --bench scaling
	cargo bench --bench serve
	cargo build --release
	scripts/bench-fidelity.sh $(BIN) $(TERRAIN) $(SHAPES) out/bench
	scripts/bench-corrections.sh $(BIN) $(TERRAIN) $(SHAPES) out/bench
	scripts/bench-frontier.sh $(BIN) $(TERRAIN) $(SHAPES) out/bench

## device-check: the GPU checks in one call (scripts/device-check.sh) with this machine's binary
device-check: build models
	scripts/device-check.sh $(BIN) out/device-check $(TERRAIN)

lint: check-deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## proto: regenerate crates/onnx/src/pb.rs from crates/onnx/proto/onnx.proto (no protoc needed)
proto:
	cd tools/protogen && cargo run --release
