# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The export commands of docs/export.md, run as a user runs them, on a 2D and a 3D bundle.

Per bundle, from a foreign working directory and in subprocesses: a tiny demo dataset (``make_demo_data.py --size
verify``), one short epoch of ``python -m monai.bundle run training`` with configs/demo.json, then

* ``python -m monai.bundle onnx_export network_def ... --input_shape "[1, C, *demo patch]"``;
* ``run`` of inference.json and of inference.json + inference_onnx.json on the demo test cases: every mask file the
  PyTorch pipeline writes, the ONNX Runtime pipeline writes too, with the same values. ONNX Runtime and eager differ
  by ~1e-6 relative, so a barely trained checkpoint may flip a voxel where two labels tie that closely (2 of
  318,325 voxels of the AMOS demo case, seen once): those are allowed, at most 1 in 10,000 voxels and each on a
  boundary of the PyTorch mask next to the label ONNX Runtime chose;
* ``ckpt_export --use_trace True``: the saved TorchScript module loads and matches the eager network built from
  inference.json with the trained weights, to 1e-4 relative, on the export shape and a fresh input.

Minutes on 2 cores: slow-marked (``make test-slow``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[2]
# one 2D and one 3D bundle, with the training overrides that make their demo recipe a few seconds long
CASES = {
    "xlstm_unet_cells": {"epochs": 1, "iterations_per_epoch": 2},
    "xlstm_unet_amos3d": {"epochs": 1, "iterations_per_epoch": 2},
}
TOLERANCE = 1e-4

pytestmark = pytest.mark.slow


def environment(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(home), "MPLCONFIGDIR": str(home / "matplotlib")}


def config_list(bundle: Path, *names: str) -> str:
    return "[" + ",".join(f"'{bundle / 'configs' / name}'" for name in names) + "]"


def read_mask(path: Path) -> np.ndarray:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel

        return np.asarray(nibabel.load(str(path)).dataobj)
    if name.endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(str(path))
    from PIL import Image

    return np.asarray(Image.open(path))


class BundleRun:
    """A bundle's demo data, tiny checkpoint and commands, in one temporary folder."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.bundle = REPO / "bundles" / name
        self.cwd = root / "elsewhere"  # never the repository or the bundle
        self.cwd.mkdir(parents=True)
        self.env = environment(root / "home")
        self.models = root / "models"
        demo = json.loads((self.bundle / "configs" / "demo.json").read_text())
        meta = json.loads((self.bundle / "configs" / "metadata.json").read_text())
        channels = meta["network_data_format"]["inputs"]["image"]["num_channels"]
        self.input_shape = [1, channels, *demo.get("patch_size", demo.get("image_size"))]

    def run(self, *args: str) -> str:
        result = subprocess.run([sys.executable, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        return result.stdout + result.stderr

    def monai_bundle(self, command: str, *args: str, **overrides) -> str:
        flags = [f"--{key}={value}" for key, value in overrides.items()]
        return self.run("-m", "monai.bundle", command, *args, *flags)

    def prepare(self) -> None:
        raw, self.dataset = self.root / "raw", self.root / "prepared"
        self.run(str(self.bundle / "scripts" / "make_demo_data.py"), "--output", str(raw), "--size", "verify")
        self.run(str(self.bundle / "scripts" / "prepare_data.py"), "--source", str(raw), "--output", str(self.dataset))
        self.monai_bundle("run", "training", "--config_file", config_list(self.bundle, "train.json", "demo.json"),
                          dataset_dir=self.dataset, ckpt_dir=self.models, output_dir=self.root / "train_eval",
                          num_workers=0, **CASES[self.name])
        assert (self.models / "model.pt").is_file()

    def infer(self, output: Path, *configs: str) -> dict[str, np.ndarray]:
        self.monai_bundle("run", "--config_file", config_list(self.bundle, "inference.json", *configs, "demo.json"),
                          dataset_dir=self.dataset, ckpt_dir=self.models, output_dir=output, num_workers=0)
        masks = {str(p.relative_to(output)): read_mask(p) for p in sorted(output.rglob("*"))
                 if p.is_file() and "overlay" not in p.name}
        assert masks, f"no masks under {output}"
        return masks

    def eager_network(self) -> torch.nn.Module:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([str(self.bundle / "configs" / name) for name in ("inference.json", "demo.json")])
        network = parser.get_parsed_content("network_def").eval()
        network.load_state_dict(torch.load(self.models / "model.pt", map_location="cpu", weights_only=True))
        return network


@pytest.fixture(scope="module", params=sorted(CASES))
def bundle_run(request, tmp_path_factory):
    run = BundleRun(request.param, tmp_path_factory.mktemp(request.param))
    run.prepare()
    return run


def test_onnx_export_cli_and_onnx_inference_config_give_the_pytorch_masks(bundle_run):
    from monai.bundle import ConfigParser

    from xlstm_bundle_tools import OnnxNetwork

    onnx_file = bundle_run.models / "model.onnx"
    bundle_run.monai_bundle(
        "onnx_export", "network_def", "--filepath", str(onnx_file), "--ckpt_file", str(bundle_run.models / "model.pt"),
        "--config_file", config_list(bundle_run.bundle, "inference.json", "demo.json"),
        "--input_shape", json.dumps(bundle_run.input_shape))
    assert onnx_file.is_file()

    # the merged config's network is the ONNX model at ckpt_dir/model.onnx, and no PyTorch weights are loaded
    parser = ConfigParser()
    parser.read_config([str(bundle_run.bundle / "configs" / n) for n in ("inference.json", "inference_onnx.json",
                                                                          "demo.json")])
    parser.update({"ckpt_dir": str(bundle_run.models)})
    network = parser.get_parsed_content("network")
    assert isinstance(network, OnnxNetwork) and Path(network.path) == onnx_file
    assert parser.get_parsed_content("load_pretrain") is False

    torch_masks = bundle_run.infer(bundle_run.root / "pred_torch")
    onnx_masks = bundle_run.infer(bundle_run.root / "pred_onnx", "inference_onnx.json")
    assert sorted(onnx_masks) == sorted(torch_masks)
    for name, mask in torch_masks.items():
        assert onnx_masks[name].shape == mask.shape, name
        differ = np.argwhere(onnx_masks[name] != mask)
        # identical, but for voxels where two labels tie within ONNX Runtime's ~1e-6: at most 1 in 10,000, and each
        # one on a boundary of the PyTorch mask where the ONNX label is a neighbour's (a numerical flip, not a shift)
        assert len(differ) <= mask.size * 1e-4, (name, len(differ), mask.size)
        for index in differ:
            window = tuple(slice(max(i - 1, 0), i + 2) for i in index)
            assert onnx_masks[name][tuple(index)] in mask[window], (name, tuple(index))


def test_traced_torchscript_from_ckpt_export_matches_eager(bundle_run):
    ts_file = bundle_run.models / "model.ts"
    bundle_run.monai_bundle(
        "ckpt_export", "network_def", "--filepath", str(ts_file), "--ckpt_file", str(bundle_run.models / "model.pt"),
        "--meta_file", str(bundle_run.bundle / "configs" / "metadata.json"),
        "--config_file", config_list(bundle_run.bundle, "inference.json", "demo.json"),
        "--use_trace", "True", "--input_shape", json.dumps(bundle_run.input_shape))
    extra = {"metadata.json": "", "inference.json": ""}
    loaded = torch.jit.load(str(ts_file), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == json.loads(
        (bundle_run.bundle / "configs" / "metadata.json").read_text())["version"]
    network = bundle_run.eager_network()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):  # the traced input's shape, a fresh input each time
            x = torch.randn(bundle_run.input_shape, generator=gen)
            ref = network(x).double()
            got = loaded(x).double()
            assert got.shape == ref.shape
            assert float((got - ref).abs().max() / ref.abs().max()) < TOLERANCE
