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

.PHONY: install demo test demo-amos3d demo-brats demo-isic verify clean-demo

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

verify: install
	$(BIN)/python ci/verify_bundle.py bundles/xlstm_unet_amos3d bundles/xlstm_unet_brats bundles/xlstm_vmunet_isic

demo: demo-amos3d demo-brats demo-isic

# ---- xlstm_unet_amos3d: 3D xLSTM-UNet, 13 abdominal organs, synthetic AMOS-layout MRI
AMOS := bundles/xlstm_unet_amos3d
AMOS_DEMO := $(DEMO)/xlstm_unet_amos3d
AMOS_ARGS := --dataset_dir $(AMOS_DEMO)/prepared --ckpt_dir $(AMOS_DEMO)/models --output_dir $(AMOS_DEMO)/eval
demo-amos3d: install
	$(BIN)/python $(AMOS)/scripts/make_demo_data.py --output $(AMOS_DEMO)/raw
	$(BIN)/python $(AMOS)/scripts/prepare_data.py --source $(AMOS_DEMO)/raw --output $(AMOS_DEMO)/prepared
	$(MB) run training --config_file "['$(AMOS)/configs/train.json','$(AMOS)/configs/demo.json']" $(AMOS_ARGS)
	$(MB) run --config_file "['$(AMOS)/configs/train.json','$(AMOS)/configs/evaluate.json','$(AMOS)/configs/demo.json']" $(AMOS_ARGS)
	$(MB) run --config_file "['$(AMOS)/configs/inference.json','$(AMOS)/configs/demo.json']" $(AMOS_ARGS) --output_dir $(AMOS_DEMO)/predictions
	$(BIN)/python ci/demo_summary.py $(AMOS_DEMO)

# ---- xlstm_unet_brats: SegXLSTM, BraTS 2023 regions, synthetic BraTS-layout cases
BRATS := bundles/xlstm_unet_brats
BRATS_DEMO := $(DEMO)/xlstm_unet_brats
BRATS_ARGS := --dataset_dir $(BRATS_DEMO)/prepared --ckpt_dir $(BRATS_DEMO)/models --output_dir $(BRATS_DEMO)/eval
demo-brats: install
	$(BIN)/python $(BRATS)/scripts/make_demo_data.py --output $(BRATS_DEMO)/raw
	$(BIN)/python $(BRATS)/scripts/prepare_data.py --source $(BRATS_DEMO)/raw --output $(BRATS_DEMO)/prepared
	$(MB) run training --config_file "['$(BRATS)/configs/train.json','$(BRATS)/configs/demo.json']" $(BRATS_ARGS)
	$(MB) run --config_file "['$(BRATS)/configs/train.json','$(BRATS)/configs/evaluate.json','$(BRATS)/configs/demo.json']" $(BRATS_ARGS)
	$(MB) run --config_file "['$(BRATS)/configs/inference.json','$(BRATS)/configs/demo.json']" $(BRATS_ARGS) --output_dir $(BRATS_DEMO)/predictions
	$(BIN)/python ci/demo_summary.py $(BRATS_DEMO)

# ---- xlstm_vmunet_isic: XLSTM-VMUNet, skin lesions, synthetic ISIC-layout dermoscopy
ISIC := bundles/xlstm_vmunet_isic
ISIC_DEMO := $(DEMO)/xlstm_vmunet_isic
ISIC_ARGS := --dataset_dir $(ISIC_DEMO)/prepared --ckpt_dir $(ISIC_DEMO)/models --output_dir $(ISIC_DEMO)/eval
demo-isic: install
	$(BIN)/python $(ISIC)/scripts/make_demo_data.py --output $(ISIC_DEMO)/raw
	$(BIN)/python $(ISIC)/scripts/prepare_data.py --source $(ISIC_DEMO)/raw --output $(ISIC_DEMO)/prepared
	$(MB) run training --config_file "['$(ISIC)/configs/train.json','$(ISIC)/configs/demo.json']" $(ISIC_ARGS)
	$(MB) run --config_file "['$(ISIC)/configs/train.json','$(ISIC)/configs/evaluate.json','$(ISIC)/configs/demo.json']" $(ISIC_ARGS)
	$(MB) run --config_file "['$(ISIC)/configs/inference.json','$(ISIC)/configs/demo.json']" $(ISIC_ARGS) --output_dir $(ISIC_DEMO)/predictions --overlays true
	$(BIN)/python ci/demo_summary.py $(ISIC_DEMO)

clean-demo:
	rm -rf $(DEMO)
