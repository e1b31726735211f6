# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_unet_cells: both preparation layouts, the challenge's normalisation and 3-class target against the official
code's outputs, the instance <-> semantic round trip on touching cells, F1 against an independent count, readers,
writer and bad inputs named with nothing written."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage

from bundle_scripts import load_bundle_script
from xlstm_bundle_tools.cells import (CellImageReader, CellInstancesd, CellMetrics, TiffInstanceWriter,
                                      cell_output_name, check_cell_case, normalize_cell_image,
                                      percentiles_of_nonzero, read_cell_image, read_instance_mask)
import xlstm_bundle_tools.errors as errors
from xlstm_bundle_tools.cells import load_cell_fold
from xlstm_bundle_tools.checks import InvalidInputError
from xlstm_bundle_tools.instances import (BOUNDARY, INTERIOR, grow_labels, instances_from_semantic,
                                          semantic_from_instances)

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "xlstm_unet_cells"
FIXTURE = REPO / "tests" / "fixtures" / "cells" / "official_3class.npz"

demo = load_bundle_script(BUNDLE.name, "make_demo_data")
prep = load_bundle_script(BUNDLE.name, "prepare_data")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    demo.write_challenge(root, n_train=6, n_tuning=1, n_test=1, seed=3)
    return root


# ------------------------------------------------------------------------------------------------ demo and layouts
def test_demo_is_in_the_challenge_layout(raw):
    images = sorted((raw / "Training-labeled" / "images").iterdir())
    assert [p.name for p in images][:4] == ["cell_00001.tiff", "cell_00002.png", "cell_00003.bmp", "cell_00004.tif"]
    assert tifffile.imread(images[0]).dtype == np.uint16  # 16-bit TIFFs among them
    assert tifffile.imread(images[3]).shape[-1] == 3 and tifffile.imread(images[3]).dtype == np.uint16
    mask = tifffile.imread(raw / "Training-labeled" / "labels" / "cell_00001_label.tiff")
    assert mask.dtype == np.uint16 and mask.shape == tifffile.imread(images[0]).shape
    assert (raw / "Tuning" / "labels").is_dir() and (raw / "Testing" / "Public" / "images").is_dir()
    # touching cells: some pixel of one cell has a 4-neighbour in another cell
    touching = (mask[:, 1:] != mask[:, :-1]) & (mask[:, 1:] > 0) & (mask[:, :-1] > 0)
    assert touching.sum() > 20 and mask.max() >= 10


def test_prepare_the_challenge_layout(raw, tmp_path):
    content = prep.prepare(raw, tmp_path / "out", num_folds=5, seed=1)
    assert content["layout"] == "neurips2022" and len(content["training"]) == 6 and len(content["testing"]) == 2
    entry = content["training"][0]
    assert entry["image"].endswith("Training-labeled/images/cell_00001.tiff") and entry["label"].endswith(".png")
    target = np.asarray(Image.open(tmp_path / "out" / entry["label"]))
    np.testing.assert_array_equal(target, semantic_from_instances(read_instance_mask(entry["instances"])))
    assert set(np.unique(target).tolist()) == {0, 1, 2}
    testing = {e["case_id"]: e for e in content["testing"]}
    assert all("instances" in e and "label" in e for e in testing.values())
    assert {e["split"] for e in content["testing"]} == {"Tuning", "Testing-Public"}


def test_prepare_the_dataset703_layout(tmp_path):
    source = tmp_path / "Dataset703_NeurIPSCell"
    demo.write_dataset703(source, n_train=5, n_val=2, n_test=1, seed=2)
    assert (source / "imagesTr" / "cell_00001_0000.png").is_file() and (source / "labelsTr" / "cell_00001.png").is_file()
    assert Image.open(source / "imagesTr" / "cell_00001_0000.png").mode == "RGB"
    content = prep.prepare(source, tmp_path / "out")
    assert content["layout"] == "dataset703" and content["instances_derived"] is True
    assert len(content["training"]) == 5 and len(content["testing"]) == 3
    val = [e for e in content["testing"] if "instances" in e]
    assert len(val) == 2 and all(e["instances"].endswith("_label.tiff") for e in val)
    # the rebuilt reference is the bundle's inverse rule applied to labelsTr
    entry = content["training"][0]
    rebuilt = read_instance_mask(entry["instances"])
    np.testing.assert_array_equal(rebuilt, instances_from_semantic(np.asarray(Image.open(source / "labelsTr" /
                                                                                          "cell_00001.png"))))


def _rgba_png(image_path: Path) -> Path:
    target = image_path.with_suffix(".png")
    array = read_cell_image(image_path)
    gray = normalize_cell_image(array)[0]
    Image.fromarray(np.stack([gray, gray, gray, np.full_like(gray, 200)], -1), "RGBA").save(target)
    image_path.unlink()
    return target


@pytest.mark.parametrize("damage, message", [
    ("unreadable", r"cell_00003.bmp: cannot be read as an image"),
    ("rgba", r"cell_00003.png: the image is RGBA \(mode RGBA, it has an alpha channel\)"),
    ("rgba_tiff", r"cell_00001.tiff: the TIFF has an alpha channel"),
    ("two_channels", r"cell_00001.tiff: the image has 2 channels; expected 1 \(grayscale\) or 3 \(RGB\)"),
    ("size", r"cell_00003_label.tiff: size 10x12 differs from its image .*cell_00003.bmp"),
    ("float_mask", r"cell_00003_label.tiff: an instance mask must have an integer type; got float32"),
    ("missing_mask", r"cell_00003_label.tiff: instance mask missing for .*cell_00003.bmp"),
    ("bad_tiff", r"cell_00003_label.tiff: cannot be read as a TIFF instance mask"),
])
def test_bad_inputs_are_named_and_nothing_is_written(raw, tmp_path, damage, message):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    images, labels = src / "Training-labeled" / "images", src / "Training-labeled" / "labels"
    mask = labels / "cell_00003_label.tiff"
    if damage == "unreadable":
        (images / "cell_00003.bmp").write_bytes(b"BM garbage")
    elif damage == "rgba":
        _rgba_png(images / "cell_00003.bmp")
    elif damage == "rgba_tiff":
        data = tifffile.imread(images / "cell_00001.tiff")
        tifffile.imwrite(images / "cell_00001.tiff", np.stack([data] * 4, -1), photometric="rgb",
                         extrasamples=["unassalpha"])
    elif damage == "two_channels":
        data = tifffile.imread(images / "cell_00001.tiff")
        tifffile.imwrite(images / "cell_00001.tiff", np.stack([data, data], -1), photometric="minisblack",
                         planarconfig="contig")
    elif damage == "size":
        tifffile.imwrite(mask, np.zeros((12, 10), np.uint16))
    elif damage == "float_mask":
        tifffile.imwrite(mask, tifffile.imread(mask).astype(np.float32))
    elif damage == "missing_mask":
        mask.unlink()
    else:
        mask.write_bytes(b"II*\x00 broken")
    with pytest.raises(InvalidInputError, match=message):
        prep.prepare(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dataset703_label_outside_the_classes_is_named(tmp_path):
    source = tmp_path / "d703"
    demo.write_dataset703(source, n_train=5, n_val=0, seed=0)
    label = source / "labelsTr" / "cell_00002.png"
    array = np.asarray(Image.open(label)).copy()
    array[0, 0] = 7
    Image.fromarray(array).save(label)
    with pytest.raises(InvalidInputError, match=r"cell_00002.png: label values \[7\] are outside the class set"):
        prep.prepare(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ reading images
def test_reader_keeps_numpy_order_and_the_channel_rules(tmp_path):
    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 60000, (30, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", gray16)
    rgb16 = rng.integers(0, 60000, (30, 40, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    five = rng.integers(0, 255, (30, 40, 5), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "five.tif", five, photometric="minisblack", planarconfig="contig")
    Image.fromarray(rgb16[..., 0].astype(np.uint8)).save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_cell_image(tmp_path / "g.tif"), gray16)
    np.testing.assert_array_equal(read_cell_image(tmp_path / "planar.tif"), rgb16)  # channel axis moved last
    np.testing.assert_array_equal(read_cell_image(tmp_path / "five.tif"), five[..., :3])  # > 3 channels: first 3
    # through MONAI: (C, H, W), not PILReader's transposed (W, H)
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    load = LoadImaged("image", reader=CellImageReader("image"), dtype=None, image_only=True)
    for name, expected in (("g.tif", gray16[None]), ("planar.tif", np.moveaxis(rgb16, -1, 0)),
                           ("p.png", rgb16[None, ..., 0].astype(np.uint8))):
        loaded = EnsureChannelFirstd("image")(load({"image": str(tmp_path / name)}))["image"]
        np.testing.assert_array_equal(loaded.numpy(), expected)


# ------------------------------------------------------------------------------------------------ official code
def test_normalisation_equals_the_challenge_code():
    fixture = np.load(FIXTURE)
    cases = [k[: -len("_image")] for k in fixture.files if k.endswith("_image")]
    assert len(cases) == 6
    for case in cases:
        ours = np.moveaxis(normalize_cell_image(fixture[f"{case}_image"]), 0, -1)
        official = fixture[f"{case}_official_normalized"]
        if case == "flat16":  # a flat channel: the official cast wraps 700 to 188, ours clips to 255
            assert (official[5:] == 700 % 256).all() and (ours[5:] == 255).all() and (ours[:5] == 0).all()
            continue
        np.testing.assert_array_equal(ours, official, err_msg=case)


def test_three_class_target_equals_the_challenge_code():
    fixture = np.load(FIXTURE)
    for case in ("fluorescence16", "brightfield", "phase", "fluorescence16rgb"):
        np.testing.assert_array_equal(semantic_from_instances(fixture[f"{case}_mask"]),
                                      fixture[f"{case}_official_3class"], err_msg=case)
        assert fixture[f"{case}_official_3class"].max() == 2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_histogram_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(1)
    for trial in range(20):
        top = 4 if trial % 4 == 0 else np.iinfo(dtype).max
        channel = rng.integers(0, top, (23, 31)).astype(dtype)
        nonzero = channel[channel != 0]
        ours = percentiles_of_nonzero(channel)
        np.testing.assert_allclose(ours, np.percentile(nonzero, [1, 99]), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------ round trip
def touching_blobs(seed: int = 0, size: int = 120) -> np.ndarray:
    """Cells that share borders: a power diagram of jittered grid seeds, clipped to discs of varied radius."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    best = np.full((size, size), np.inf)
    mask = np.zeros((size, size), np.int32)
    k = 0
    for cy in range(12, size - 8, 22):
        for cx in range(12, size - 8, 22):
            k += 1
            radius = rng.uniform(10, 17)
            d = np.hypot(yy - cy - rng.uniform(-4, 4), xx - cx - rng.uniform(-4, 4)) / radius
            win = (d < 1) & (d < best)
            best[win], mask[win] = d[win], k
    return mask


def test_round_trip_on_touching_cells_recovers_every_instance():
    for seed in range(3):
        original = touching_blobs(seed)
        assert ((original[:, 1:] != original[:, :-1]) & (original[:, 1:] > 0) & (original[:, :-1] > 0)).sum() > 100
        semantic = semantic_from_instances(original)
        interiors = {i: (original == i) & (semantic == INTERIOR) for i in range(1, original.max() + 1)}
        assert all(ndimage.label(v, structure=np.ones((3, 3)))[1] == 1 for v in interiors.values())  # precondition
        recovered = instances_from_semantic(semantic, grow_distance=2)
        assert recovered.max() == original.max()
        ious = []
        for i, interior in interiors.items():
            ids = np.unique(recovered[interior])
            assert ids.size == 1 and ids[0] > 0  # one recovered instance per original interior
            mine = recovered == ids[0]
            # exact on the interior class; everything else within 2 px of that interior
            np.testing.assert_array_equal(mine & (semantic == INTERIOR), interior)
            reach = ndimage.distance_transform_edt(~interior)
            assert reach[mine].max() <= 2 + 1e-9
            ious.append((mine & (original == i)).sum() / (mine | (original == i)).sum())
        assert min(ious) > 0.85, min(ious)
        # the challenge's F1 on the round trip is perfect
        row = CellMetrics(semantic_key=None).__call__({"instances": recovered[None], "instances_ref": original[None]})
        assert row["f1_cell"] == 1.0


def test_growth_is_the_nearest_interior_within_the_distance():
    """Against a float64 brute force: each boundary pixel takes a label at the minimum distance (<= d)."""
    rng = np.random.default_rng(4)
    semantic = rng.choice([0, 1, 2], size=(40, 45), p=[0.3, 0.2, 0.5]).astype(np.uint8)
    labels, _ = ndimage.label(semantic == INTERIOR, structure=np.ones((3, 3)))
    for distance in (1.0, 2.0, 2.5, 3.0):
        grown = instances_from_semantic(semantic, grow_distance=distance)
        seeds = np.argwhere(labels > 0)
        for y, x in np.argwhere(semantic == BOUNDARY):
            d = np.hypot(seeds[:, 0] - y, seeds[:, 1] - x)
            nearest = d.min()
            if nearest > distance + 1e-9:
                assert grown[y, x] == 0
            else:
                candidates = set(labels[tuple(seeds[d <= nearest + 1e-9].T)].tolist())
                assert grown[y, x] in candidates
        assert (grown[semantic != BOUNDARY] == labels[semantic != BOUNDARY]).all()


def test_block_wise_growth_equals_the_whole_image():
    rng = np.random.default_rng(5)
    semantic = rng.choice([0, 1, 2], size=(70, 33), p=[0.4, 0.2, 0.4]).astype(np.uint8)
    labels, _ = ndimage.label(semantic == INTERIOR, structure=np.ones((3, 3)))
    whole = grow_labels(labels, semantic == BOUNDARY, 3.0, block_rows=10_000)
    for rows in (1, 2, 7, 16):
        np.testing.assert_array_equal(grow_labels(labels, semantic == BOUNDARY, 3.0, block_rows=rows), whole)
        in_place = labels.copy()
        grow_labels(in_place, semantic == BOUNDARY, 3.0, block_rows=rows, inplace=True)
        np.testing.assert_array_equal(in_place, whole)


# ------------------------------------------------------------------------------------------------ F1 (bundle level)
def _independent_f1(ref: np.ndarray, pred: np.ndarray) -> tuple[float, int, int, int]:
    """Border cells out, then pairs with IoU > 0.5 (a unique match each), written with Python sets."""
    def cells(mask):
        h, w = mask.shape
        out = {}
        for i in np.unique(mask):
            if i == 0:
                continue
            pixels = {(int(y), int(x)) for y, x in np.argwhere(mask == i)}
            if any(y < 2 or x < 2 or y >= h - 2 or x >= w - 2 for y, x in pixels):
                continue
            out[int(i)] = pixels
        return out

    r, p = cells(ref), cells(pred)
    if not p:  # the official eval_tp_fp_fn: no predicted cell gives TP = FP = FN = 0
        return 0.0, 0, 0, 0
    tp = sum(1 for a in r.values() if any(len(a & b) / len(a | b) > 0.5 for b in p.values()))
    if tp == 0:
        return 0.0, 0, len(p), len(r)
    precision, recall = tp / len(p), tp / len(r)
    return 2 * precision * recall / (precision + recall), tp, len(p) - tp, len(r) - tp


def test_f1_against_an_independent_count():
    ref = touching_blobs(7, size=100)
    rng = np.random.default_rng(8)
    variants = {
        "identical": ref.copy(),
        "shifted": np.roll(ref, 2, axis=1),
        "one_missing": np.where(ref == 5, 0, ref),
        "merged": np.where(ref == 6, 7, ref),
        "split": np.where((ref == 8) & (np.arange(100)[None, :] % 2 == 0), 99, ref),
        "extra_cells": np.where((ref == 0) & (rng.random(ref.shape) < 0.002), 50, ref),
        "eroded": np.where(ndimage.grey_erosion(ref, size=(5, 5)) == ref, ref, 0),
        "empty": np.zeros_like(ref),
    }
    metric = CellMetrics(semantic_key=None)
    for name, pred in variants.items():
        relabelled, _ = ndimage.label(pred > 0) if name == "extra_cells" else (pred, None)
        pred = relabelled if name == "extra_cells" else pred
        row = metric({"instances": torch.as_tensor(pred[None]), "instances_ref": torch.as_tensor(ref[None])})
        f1, tp, fp, fn = _independent_f1(ref, pred)
        assert row["f1_cell"] == pytest.approx(f1, abs=1e-12), name
        assert (row["tp_cell"], row["fp_cell"], row["fn_cell"]) == (tp, fp, fn), name


# ------------------------------------------------------------------------------------------------ inference output
def test_cell_instances_and_the_challenge_tiff(tmp_path):
    original = touching_blobs(1)
    semantic = semantic_from_instances(original)
    logits = torch.from_numpy(np.stack([(semantic == c).astype(np.float32) for c in range(3)]))
    out = CellInstancesd("pred", block_rows=7)({"pred": logits})
    np.testing.assert_array_equal(out["pred"][0].numpy(), semantic)
    np.testing.assert_array_equal(out["instances"][0].numpy(), instances_from_semantic(semantic))
    assert out["pred"].dtype == torch.uint8

    name = cell_output_name({"filename_or_obj": "/data/imagesVal/cell_00042_0000.png"}, None)
    assert name["subject"] == "cell_00042.img"
    writer = TiffInstanceWriter()
    writer.set_data_array(out["instances"])
    writer.write(str(tmp_path / "cell_00042_label.tiff"))
    with tifffile.TiffFile(tmp_path / "cell_00042_label.tiff") as tif:
        assert tif.pages[0].dtype == np.uint16 and tif.pages[0].compression == 8  # ADOBE_DEFLATE (zlib)
        np.testing.assert_array_equal(tif.asarray(), out["instances"][0].numpy())
    many = np.arange(300 * 300, dtype=np.int32).reshape(300, 300)
    writer.set_data_array(torch.from_numpy(many)[None])
    writer.write(str(tmp_path / "many_label.tiff"))
    assert tifffile.imread(tmp_path / "many_label.tiff").dtype == np.uint32  # > 65,535 cells do not fit uint16
    assert not list(tmp_path.glob(".*partial*"))


def test_check_cell_case_names_a_label_of_another_size(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 31), np.uint8)).save(tmp_path / "a_3class.png")
    with pytest.raises(InvalidInputError, match=r"a_3class.png: size 31x20 differs from its image .*a.png \(30x20\)"):
        check_cell_case(str(tmp_path / "a.png"), str(tmp_path / "a_3class.png"))


def test_configs_default_to_enc_at_the_real_patch_and_bot_is_one_option_away():
    from monai.bundle import ConfigParser

    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    assert train["network_def"]["variant"] == "enc" and train["patch_size"] == inference["patch_size"] == [512, 512]
    assert train["network_def"]["features"] == [32, 64, 128, 256, 512, 512, 512, 512]
    assert train["learning_rate"] == 5e-3 and train["optimizer"]["momentum"] == 0.99
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    demo_sizes = json.loads((BUNDLE / "configs" / "demo.json").read_text())
    for variant in ("enc", "bot"):
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / "inference.json"), str(BUNDLE / "configs" / "demo.json")])
        parser["network_def"]["variant"] = variant
        net = parser.get_parsed_content("network_def").eval()
        size = demo_sizes["patch_size"]
        with torch.no_grad():
            assert net(torch.zeros(1, 3, *size)).shape == (1, 3, *size)
        if variant == "enc":  # the channel tokens are tied to the patch: another size gets the network's error
            with pytest.raises(Exception, match=r"[Pp]atch|size"):
                net(torch.zeros(1, 3, 2 * size[0], size[1]))


def test_evaluate_selects_the_cells_protocol_by_name():
    from xlstm_bundle_tools.protocols import CellsProtocol

    evaluate = json.loads((BUNDLE / "configs" / "evaluate.json").read_text())
    assert evaluate["evaluation_protocol"] == "cells"
    compute = evaluate["validate#handlers"][2]["compute"]
    assert compute["protocol"] == "@evaluation_protocol"
    metric = CellMetrics(protocol=evaluate["evaluation_protocol"])
    assert isinstance(metric.protocol, CellsProtocol) and metric.interior.pred_kind == "interior"
    with pytest.raises(ValueError, match="unknown evaluation protocol 'cell'"):
        CellMetrics(protocol="cell")


# ------------------------------------------------------------------------------------------------ the real commands
def _run_bundle(configs: list[str], work: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` with the bundle's configs, from an empty foreign folder."""
    elsewhere = work / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               str([str(BUNDLE / "configs" / name) for name in configs]), *args]
    environment = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    return subprocess.run(command, cwd=elsewhere, env=environment, capture_output=True, text=True, timeout=600)


def _assert_stopped_on(result, file: Path, problem: str, work: Path) -> None:
    report = f"\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 1, report
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert str(file) in last and problem in last, f"last line {last!r}" + report
    assert "Traceback" not in result.stderr, report
    for output in (work / "models", work / "out"):
        assert not output.exists() or not any(output.rglob("*")), list(output.rglob("*"))
    assert not any((work / "elsewhere").iterdir())


def test_inference_refuses_an_rgba_image_and_writes_nothing(raw, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(raw / "Training-labeled" / "images" / "cell_00002.png", images / "good.png")
    shutil.copy(raw / "Training-labeled" / "images" / "cell_00003.bmp", images / "bad.bmp")
    bad = _rgba_png(images / "bad.bmp")
    before = sorted(p.name for p in images.iterdir())
    result = _run_bundle(["inference.json", "demo.json"], tmp_path, "--image_glob", str(images / "*.png"),
                         "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out"))
    _assert_stopped_on(result, bad, "the image is RGBA", tmp_path)
    assert sorted(p.name for p in images.iterdir()) == before


def test_evaluation_refuses_a_float_reference_mask_before_scoring(raw, tmp_path):
    dataset = tmp_path / "prepared"
    prep.prepare(raw, dataset, num_folds=5, seed=1)
    entry = load_cell_fold(dataset / "datalist.json", fold=0, split="val", reference="instances")[-1]
    mask = Path(entry["instances"])
    copy = tmp_path / "float_label.tiff"
    tifffile.imwrite(copy, tifffile.imread(mask).astype(np.float32))
    content = json.loads((dataset / "datalist.json").read_text())
    for e in content["training"]:
        if e.get("instances") and Path(e["instances"]).name == mask.name:
            e["instances"] = str(copy)
    (dataset / "datalist.json").write_text(json.dumps(content))
    result = _run_bundle(["train.json", "evaluate.json", "demo.json"], tmp_path, "--dataset_dir", str(dataset),
                         "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out"))
    _assert_stopped_on(result, copy, "an instance mask must have an integer type; got float32", tmp_path)
