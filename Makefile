# xlstm-seg: two commands do all the set-up.
#   make demo   installs into .venv, then runs every bundle on its synthetic demo data (train, evaluate, infer)
#   make test   installs into .venv, then runs the test suite (what CI runs)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= demo_work
MB := $(BIN)/python -m monai.bundle
PYTEST_ARGS ?=

# torch is pinned on its own first: ==2.13.0 is the CPU wheel these machines serve locally; any other torch
# requirement would download several GB of CUDA packages. The project install then finds it satisfied.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]" torch==2.13.0
	touch $(STAMP)

# Every bundle is found by its configs/metadata.json: a new bundle needs no line here.
BUNDLES := $(sort $(patsubst bundles/%/configs/metadata.json,%,$(wildcard bundles/*/configs/metadata.json)))
RENDERED := $(sort $(patsubst bundles/%/bundle.yaml,%,$(wildcard bundles/*/bundle.yaml)))
# short names for the demo targets: demo-amos3d runs xlstm_unet_amos3d (the last word of the bundle's name)
short_name = $(lastword $(subst _, ,$(1)))

.PHONY: install demo test test-slow verify configs clean-demo

install: $(STAMP)

# CI's command: everything but the tests marked slow (whole bundle workflows: the full verifier per bundle, torchrun,
# kill-and-resume under DDP, the scaffold's verification), which `make test-slow` runs; run both before a release.
test: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

test-slow: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS) tests

verify: install
	$(BIN)/python ci/verify_bundle.py $(addprefix bundles/,$(BUNDLES))

# (re)write each bundle's configs/*.json from its bundle.yaml and bundles/bundle_tools/templates/
configs: install
	$(BIN)/python -m xlstm_bundle_tools.render $(addprefix bundles/,$(RENDERED))

demo: $(addprefix demo-,$(BUNDLES))

# One bundle's demo: synthetic data in the dataset's real layout, preparation, training, evaluation, inference, and a
# summary. Sizes come from the bundle's configs/demo.json (target: training in at most 3 minutes on 2 CPU cores).
# (not .PHONY: make skips pattern rules for phony targets)
demo-%: install
	@test -f bundles/$*/configs/metadata.json || { echo "no bundle bundles/$* (bundles: $(BUNDLES))"; exit 2; }
	$(BIN)/python bundles/$*/scripts/make_demo_data.py --output $(DEMO)/$*/raw
	$(BIN)/python bundles/$*/scripts/prepare_data.py --source $(DEMO)/$*/raw --output $(DEMO)/$*/prepared
	$(MB) run training --config_file "['bundles/$*/configs/train.json','bundles/$*/configs/demo.json']" \
		--dataset_dir $(DEMO)/$*/prepared --ckpt_dir $(DEMO)/$*/models --output_dir $(DEMO)/$*/eval
	$(MB) run --config_file "['bundles/$*/configs/train.json','bundles/$*/configs/evaluate.json','bundles/$*/configs/demo.json']" \
		--dataset_dir $(DEMO)/$*/prepared --ckpt_dir $(DEMO)/$*/models --output_dir $(DEMO)/$*/eval
	$(MB) run --config_file "['bundles/$*/configs/inference.json','bundles/$*/configs/demo.json']" \
		--dataset_dir $(DEMO)/$*/prepared --ckpt_dir $(DEMO)/$*/models --output_dir $(DEMO)/$*/predictions
	$(BIN)/python ci/demo_summary.py $(DEMO)/$*

$(foreach b,$(BUNDLES),$(eval .PHONY: demo-$(call short_name,$(b))))
$(foreach b,$(BUNDLES),$(eval demo-$(call short_name,$(b)): demo-$(b) ; @:))

clean-demo:
	rm -rf $(DEMO)

# The real MONAI Label 0.8.5 against every bundle (docs/monai_label.md): a side environment (numpy<2, pydicom<3,
# torch==2.13.0) under build/, then BundleInferTask and BundleTrainTask per bundle on a datastore of demo images.
# Too heavy for CI (~25 min on 2 cores); part of the checklist before a release.
MONAILABEL_SIDE ?= build/monailabel
MONAI_FOR_LABEL ?= 1.6.1
.PHONY: monailabel-check
monailabel-check: install
	ci/monailabel/setup_env.sh $(MONAILABEL_SIDE) $(MONAI_FOR_LABEL)
	$(MONAILABEL_SIDE)/venv-monai$(MONAI_FOR_LABEL)/bin/python ci/monailabel/check_bundles.py \
	    --work $(MONAILABEL_SIDE)/run-$(MONAI_FOR_LABEL) --reference-python $(BIN)/python
