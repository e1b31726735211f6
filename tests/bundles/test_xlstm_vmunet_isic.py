# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_vmunet_isic: ISIC 2018 and VM-UNet-split preparation, bad inputs named, pooled metrics, PNG outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xlstm_bundle_tools import BinaryPixelMetrics
from xlstm_bundle_tools.checks import InvalidInputError
from bundle_scripts import load_bundle_script

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "xlstm_vmunet_isic"


def load_script(name: str):
    return load_bundle_script(BUNDLE.name, name)


demo = load_script("make_demo_data")
prep = load_script("prepare_data")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("isic")
    demo.write_demo(root, n_train=6, n_val=2, n_test=1, seed=3)
    return root


def test_demo_is_in_the_isic2018_layout(raw):
    images = sorted((raw / "ISIC2018_Task1-2_Training_Input").iterdir())
    assert [p.name for p in images][:2] == ["ISIC_0000000.jpg", "ISIC_0000001.jpg"]
    mask = Image.open(raw / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png")
    image = Image.open(images[0])
    assert image.mode == "RGB" and mask.mode == "L" and mask.size == image.size
    assert set(np.unique(np.asarray(mask)).tolist()) == {0, 255}
    assert not (raw / "ISIC2018_Task1_Test_GroundTruth").exists()
    sizes = {Image.open(p).size for p in images}
    assert len(sizes) > 1  # sizes vary, as in ISIC


def test_prepare_official_layout(raw, tmp_path):
    content = prep.prepare(raw, tmp_path / "out", num_folds=5, seed=42)
    assert content["layout"] == "isic2018" and len(content["training"]) == 6
    assert len(content["testing"]) == 3 and sum("label" in e for e in content["testing"]) == 2


def test_prepare_vmunet_split(raw, tmp_path):
    root = tmp_path / "vmunet"
    for split, source in (("train", "Training"), ("val", "Validation")):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for image in sorted((raw / f"ISIC2018_Task1-2_{source}_Input").glob("*.jpg")):
            Image.open(image).save(root / split / "images" / f"{image.stem}.png")
            shutil.copy(raw / f"ISIC2018_Task1_{source}_GroundTruth" / f"{image.stem}_segmentation.png",
                        root / split / "masks" / f"{image.stem}.png")
    content = prep.prepare(root, tmp_path / "out")
    assert content["layout"] == "vmunet" and len(content["training"]) == 6 and len(content["testing"]) == 2
    # a mask that sorted pairing would put with the wrong image is refused
    (root / "train" / "masks" / "ISIC_0000000.png").rename(root / "train" / "masks" / "ISIC_9999999.png")
    with pytest.raises(InvalidInputError, match=r"ISIC_0000001.png: sorted pairing puts this mask with .*ISIC_0000000"):
        prep.prepare(root, tmp_path / "out2")


@pytest.mark.parametrize("damage, message", [
    ("unreadable", r"ISIC_0000002.jpg: cannot be read as an image"),
    ("grayscale", r"ISIC_0000002.jpg: image is grayscale \(mode L\); expected a 3-channel RGB image"),
    ("rgba", r"ISIC_0000002.png: image is RGBA \(has an alpha channel\) \(mode RGBA\)"),
    ("size", r"ISIC_0000002_segmentation.png: mask size 10x10 differs from its image"),
    ("non_binary", r"ISIC_0000002_segmentation.png: mask is not binary \(mode L, values \[0, 128, 255\]\)"),
])
def test_bad_inputs_are_named_and_nothing_is_written(raw, tmp_path, damage, message):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    image = src / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000002.jpg"
    mask = src / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000002_segmentation.png"
    if damage == "unreadable":
        image.write_bytes(b"\xff\xd8\xff garbage")
    elif damage == "grayscale":
        Image.open(image).convert("L").save(image, format="JPEG")
    elif damage == "rgba":
        Image.open(image).convert("RGBA").save(image.with_suffix(".png"))
        image.unlink()
    elif damage == "size":
        Image.new("L", (10, 10)).save(mask)
    else:
        data = np.asarray(Image.open(mask)).copy()
        data[0, :5] = 128
        Image.fromarray(data).save(mask)
    with pytest.raises(InvalidInputError, match=message):
        prep.prepare(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pooled_and_per_image_metrics():
    metric = BinaryPixelMetrics()
    a = {"pred": torch.tensor([[1.0, 1.0, 0.0, 0.0]]), "label": torch.tensor([[1.0, 0.0, 0.0, 0.0]])}
    b = {"pred": torch.tensor([[0.0, 0.0, 0.0, 0.0]]), "label": torch.tensor([[1.0, 1.0, 1.0, 0.0]])}
    rows = [metric(a), metric(b)]
    assert rows[0]["dsc"] == pytest.approx(2 / 3) and rows[1]["dsc"] == 0.0
    pooled = metric.pooled(rows)  # one confusion matrix: tp 1, fp 1, fn 3, tn 3
    assert pooled["dsc"] == pytest.approx(2 / 6) and pooled["iou"] == pytest.approx(1 / 5)
    assert pooled["accuracy"] == pytest.approx(4 / 8) and pooled["sensitivity"] == pytest.approx(1 / 4)
    assert pooled["specificity"] == pytest.approx(3 / 4)


def test_configs_agree():
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    assert train["network_def"] == inference["network_def"]
    assert train["image_size"] == inference["image_size"] == [256, 256]
    assert train["optimizer"]["lr"] == "@learning_rate" and train["learning_rate"] == 1e-3
    assert train["lr_scheduler"]["T_max"] == 50 and train["epochs"] == 150 and train["batch_size"] == 8


def test_evaluation_pools_the_maps_at_the_network_size_demo_included():
    """The isic protocol pools the network's maps; with demo.json they are 64², not 256² (make demo stopped there)."""
    from monai.bundle import ConfigParser

    configs = Path(__file__).resolve().parents[2] / "bundles" / "xlstm_vmunet_isic" / "configs"
    for extra in ([], ["demo.json"]):
        parser = ConfigParser()
        parser.read_config([str(configs / f) for f in ["train.json", "evaluate.json", *extra]])
        compute = parser.get_parsed_content("validate#handlers#2#compute", instantiate=True)
        assert compute.protocol.size == tuple(parser.get_parsed_content("image_size"))
