# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_unet_endovis17: both preparation layouts (the challenge's type mapping, overlaps, folder spellings, the
crop), bad inputs named with nothing written, the PNG label maps inference writes (size, orientation, names), the
endovis metric on a crafted case against an independent computation, and the configs' defaults."""

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
import torch
from PIL import Image

from bundle_scripts import load_bundle_script
import xlstm_bundle_tools.errors as errors
from xlstm_bundle_tools.checks import InvalidInputError
from xlstm_bundle_tools.endovis import endovis_case_name, endovis_output_name, instrument_type

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "xlstm_unet_endovis17"

demo = load_bundle_script(BUNDLE.name, "make_demo_data")
prep = load_bundle_script(BUNDLE.name, "prepare_data")

# TernausNet prepare_data.py's if/elif chain, written out again: the type of a folder, None for an unknown one
TERNAUS = [("Bipolar_Forceps", 1), ("Prograsp_Forceps", 2), ("Large_Needle_Driver", 3), ("Vessel_Sealer", 4),
           ("Grasping_Retractor", 5), ("Monopolar_Curved_Scissors", 6), ("Other", 7)]


def ternaus_type(name: str):
    return next((value for key, value in TERNAUS if key in name), None)


def ternaus_labels(sequence: Path, frame: str) -> np.ndarray:
    """The type map of one frame the way TernausNet builds it (folders in sorted order here), channel 0 of masks."""
    out = None
    for folder in sorted(p for p in (sequence / "ground_truth").iterdir() if p.is_dir()):
        mask = np.asarray(Image.open(folder / frame))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        out = np.zeros(mask.shape, np.uint8) if out is None else out
        out[mask > 0] = ternaus_type(folder.name)
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("endovis")
    demo.write_endovis17(root, n_sequences=8, n_frames=1, n_test=1, n_test_frames=1, seed=3)
    return root


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


# ------------------------------------------------------------------------------------------------ layouts
def test_demo_is_in_the_endovis17_layout(raw):
    seq1 = raw / "instrument_dataset_1"
    assert sorted(p.name for p in (seq1 / "ground_truth").iterdir()) == sorted(demo.SEQUENCE_FOLDERS[1])
    assert (seq1 / "left_frames" / "frame000.png").is_file() and (seq1 / "right_frames" / "frame000.png").is_file()
    assert Image.open(seq1 / "left_frames" / "frame000.png").mode == "RGB"
    parts = np.asarray(Image.open(seq1 / "ground_truth" / "Maryland_Bipolar_Forceps_labels" / "frame000.png"))
    assert set(np.unique(parts).tolist()) <= {0, 10, 20, 30} and {10, 30} <= set(np.unique(parts).tolist())
    three = np.asarray(Image.open(raw / "instrument_dataset_2" / "ground_truth" / "Other_labels" / "frame000.png"))
    assert three.ndim == 3 and three.shape[2] == 3  # sequence 2 stores 3-channel masks
    assert {p.name for p in (raw / "instrument_dataset_6" / "ground_truth").iterdir()} >= {"Prograsp_Forceps"}
    assert not (raw / "instrument_dataset_9" / "ground_truth").exists()  # a test video


def test_type_mapping_follows_the_challenge_order():
    names = ["Maryland_Bipolar_Forceps_labels", "Left_Prograsp_Forceps_labels", "Large_Needle_Driver_Left_labels",
             "Right_Vessel_Sealer", "Left_Grasping_Retractor_labels", "Monopolar_Curved_Scissors_labels",
             "Other_labels", "Prograsp_Forceps", "Left_Bipolar_Forceps"]
    assert [instrument_type(n) for n in names] == [ternaus_type(n) for n in names] == [1, 2, 3, 4, 5, 6, 7, 2, 1]


def test_prepare_the_endovis17_layout(raw, tmp_path):
    content = prep.prepare(raw, tmp_path / "out", num_folds=4, seed=1)
    assert content["layout"] == "endovis17" and content["fold_groups"] == "sequence"
    assert len(content["training"]) == 8 and [e["case_id"] for e in content["testing"]] == ["instrument_dataset_9_frame000"]
    by_case = {e["case_id"]: e for e in content["training"]}
    for k in range(1, 9):
        entry = by_case[f"instrument_dataset_{k}_frame000"]
        labels = np.asarray(Image.open(tmp_path / "out" / entry["label"]))
        np.testing.assert_array_equal(labels, ternaus_labels(raw / f"instrument_dataset_{k}", "frame000.png"))
        assert entry["image"].endswith(f"instrument_dataset_{k}/left_frames/frame000.png")  # small frames: not copied
    present = {k: set(np.unique(np.asarray(Image.open(tmp_path / "out" / by_case[f"instrument_dataset_{k}_frame000"]
                                                      ["label"]))).tolist()) for k in range(1, 9)}
    assert 1 in present[1] and 7 in present[1]  # Maryland_Bipolar_Forceps -> bipolar, Other -> 7
    assert 7 in present[2]  # Other from 3-channel masks (channel 0)
    assert 2 in present[6]  # "Prograsp_Forceps", no _labels suffix
    assert present[7] >= {1, 4}  # "Left_Bipolar_Forceps", "Right_Vessel_Sealer"
    folds = {}
    for e in content["training"]:
        folds.setdefault(e["sequence"], set()).add(e["fold"])
    assert all(len(f) == 1 for f in folds.values())  # a video never straddles two folds


def test_overlap_goes_to_the_later_folder(tmp_path):
    """Two instruments over one pixel block: the later folder in name order wins, as in TernausNet."""
    seq = tmp_path / "src" / "instrument_dataset_1"
    _png(seq / "left_frames" / "frame000.png", np.full((20, 30, 3), 90, np.uint8))
    a = np.zeros((20, 30), np.uint8)
    a[2:12, 2:20] = 10
    b = np.zeros((20, 30), np.uint8)
    b[8:18, 10:28] = 30
    _png(seq / "ground_truth" / "Right_Prograsp_Forceps_labels" / "frame000.png", a)
    _png(seq / "ground_truth" / "Maryland_Bipolar_Forceps_labels" / "frame000.png", b)
    for k in (2, 3):  # more sequences for the folds
        shutil.copytree(seq, tmp_path / "src" / f"instrument_dataset_{k}")
    content = prep.prepare(tmp_path / "src", tmp_path / "out", num_folds=2)
    labels = np.asarray(Image.open(tmp_path / "out" / content["training"][0]["label"]))
    expected = np.zeros((20, 30), np.uint8)
    expected[b > 0] = 1      # Maryland_Bipolar_Forceps_labels sorts first
    expected[a > 0] = 2      # Right_Prograsp_Forceps_labels sorts later: it wins on the overlap
    np.testing.assert_array_equal(labels, expected)
    assert labels[10, 15] == 2 and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, ternaus_labels(seq, "frame000.png"))


def _full_hd_source(root: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    mask = np.zeros((1080, 1920), np.uint8)
    mask[0:600, 300:700] = 10  # reaches into the margins the crop removes
    for k in (1, 2):
        seq = root / f"instrument_dataset_{k}"
        _png(seq / "left_frames" / "frame000.png", frame)
        _png(seq / "ground_truth" / "Vessel_Sealer_labels" / "frame000.png", mask)
    return frame, mask


def test_full_hd_frames_are_cropped_to_the_challenge_region(tmp_path):
    frame, mask = _full_hd_source(tmp_path / "src")
    content = prep.prepare(tmp_path / "src", tmp_path / "out", num_folds=2)
    entry = content["training"][0]
    image = np.asarray(Image.open(tmp_path / "out" / entry["image"]))
    labels = np.asarray(Image.open(tmp_path / "out" / entry["label"]))
    np.testing.assert_array_equal(image, frame[28:1052, 320:1600])
    np.testing.assert_array_equal(labels, (mask[28:1052, 320:1600] > 0) * 4)
    assert image.shape == (1024, 1280, 3) and entry["image"] == "images/instrument_dataset_1_frame000.png"
    kept = prep.prepare(tmp_path / "src", tmp_path / "full", num_folds=2, crop="none")
    assert np.asarray(Image.open(tmp_path / "full" / kept["training"][0]["label"])).shape == (1080, 1920)
    assert kept["training"][0]["image"].endswith("left_frames/frame000.png") and kept["crop"] == "none"


def test_prepare_the_dataset704_layout(tmp_path):
    source = tmp_path / "Dataset704_Endovis17"
    names = demo.write_dataset704(source, n_sequences=5, n_frames=1, n_test=1, n_test_frames=2, seed=2)
    assert (source / "imagesTr" / f"{names[0]}_0000.png").is_file() and (source / "labelsTr" / f"{names[0]}.png").is_file()
    assert json.loads((source / "dataset.json").read_text())["labels"]["ultrasound probe"] == 7
    content = prep.prepare(source, tmp_path / "out")
    assert content["layout"] == "dataset704" and len(content["training"]) == 5 and len(content["testing"]) == 2
    assert all("label" in e and e["label"].endswith(f"labelsTs/{e['case_id']}.png") for e in content["testing"])
    assert content["training"][0]["image"] == str(source / "imagesTr" / f"{content['training'][0]['case_id']}_0000.png")
    assert not (tmp_path / "out" / "labels").exists()  # read where they are


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("damage, message", [
    ("unreadable", r"instrument_dataset_3/left_frames/frame000.png: cannot be read as an image \(UnidentifiedImage"),
    ("rgba", r"instrument_dataset_3/left_frames/frame000.png: the frame is RGBA, with an alpha channel \(mode RGBA\); "
             r"expected a 3-channel RGB image\.$"),
    ("size", r"Large_Needle_Driver_labels/frame000.png: mask size 100x80 differs from its frame "
             r".*instrument_dataset_3/left_frames/frame000.png \(160x128\)\.$"),
    ("unknown_folder", r"instrument_dataset_3/ground_truth/Suction_Tube_labels: unknown instrument folder; its name "
                       r"contains none of Bipolar_Forceps, Prograsp_Forceps, Large_Needle_Driver, Vessel_Sealer, "
                       r"Grasping_Retractor, Monopolar_Curved_Scissors, Other"),
    ("missing_mask", r"Right_Large_Needle_Driver_labels/frame000.png: instrument mask missing for frame "
                     r".*instrument_dataset_3/left_frames/frame000.png\.$"),
])
def test_bad_inputs_are_named_and_nothing_is_written(raw, tmp_path, damage, message):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    seq = src / "instrument_dataset_3"
    frame = seq / "left_frames" / "frame000.png"
    if damage == "unreadable":
        frame.write_bytes(b"\x89PNG garbage")
    elif damage == "rgba":
        rgb = np.asarray(Image.open(frame))
        _png(frame, np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1), "RGBA")
    elif damage == "size":
        _png(seq / "ground_truth" / "Left_Large_Needle_Driver_labels" / "frame000.png", np.zeros((80, 100), np.uint8))
    elif damage == "unknown_folder":
        shutil.copytree(seq / "ground_truth" / "Left_Large_Needle_Driver_labels", seq / "ground_truth" /
                        "Suction_Tube_labels")
    else:
        (seq / "ground_truth" / "Right_Large_Needle_Driver_labels" / "frame000.png").unlink()
    with pytest.raises(InvalidInputError) as caught:
        prep.prepare(src, tmp_path / "out")
    last = str(caught.value).splitlines()[-1].strip()
    assert __import__("re").search(message, last), last
    assert not (tmp_path / "out").exists()


def test_a_dataset704_label_outside_the_types_is_named(tmp_path):
    source = tmp_path / "d704"
    names = demo.write_dataset704(source, n_sequences=5, n_frames=1, n_test=0, seed=0)
    label = source / "labelsTr" / f"{names[1]}.png"
    array = np.asarray(Image.open(label)).copy()
    array[0, 0] = 9
    _png(label, array)
    with pytest.raises(InvalidInputError, match=rf"{names[1]}.png: label values \[9\] are outside the class set "
                                                r"\[0, 1, 2, 3, 4, 5, 6, 7\]"):
        prep.prepare(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_pipelines_preflight_names_a_mask_of_another_size(tmp_path):
    """check_endovis_case, which training, evaluation and inference run on every case before anything else."""
    from xlstm_bundle_tools.endovis import check_endovis_case

    _png(tmp_path / "f_0000.png", np.zeros((20, 30, 3), np.uint8))
    _png(tmp_path / "f.png", np.zeros((20, 31), np.uint8))
    with pytest.raises(InvalidInputError, match=r"f.png: mask size 31x20 differs from its frame .*f_0000.png \(30x20\)\.$"):
        check_endovis_case(str(tmp_path / "f_0000.png"), str(tmp_path / "f.png"))
    _png(tmp_path / "g.png", np.zeros((20, 30, 4), np.uint8), "RGBA")
    with pytest.raises(InvalidInputError, match=r"g.png: the frame is RGBA, with an alpha channel"):
        check_endovis_case(str(tmp_path / "g.png"))


# ------------------------------------------------------------------------------------------------ PNG output
def test_output_names_are_unique_across_sequences():
    def name(path):
        return endovis_output_name({"filename_or_obj": path}, None)["subject"]

    assert name("/d/instrument_dataset_3/left_frames/frame012.png") == "instrument_dataset_3_frame012.img"
    assert name("/d/Dataset704/imagesTs/endovis17_09000_0000.png") == "endovis17_09000.img"
    assert name("/d/images/instrument_dataset_1_frame000.png") == "instrument_dataset_1_frame000.img"
    # the overlay pictures use the same names (OverlaySaver case_name)
    assert endovis_case_name("/d/instrument_dataset_10/left_frames/frame000.png") == "instrument_dataset_10_frame000"
    evaluate = json.loads((BUNDLE / "configs" / "evaluate.json").read_text())
    assert evaluate["validate#handlers"][3]["case_name"] == "$xlstm_bundle_tools.endovis.endovis_case_name"


def test_inference_writes_a_uint8_label_map_at_the_frame_size_and_orientation(tmp_path):
    """inference.json's own pre- and postprocessing around logits made from the frame's red channel: the PNG has the
    frame's size, and the labels sit where the frame's pixels are (no transposition)."""
    from monai.bundle import ConfigParser

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 120, (110, 150, 3), dtype=np.uint8)  # H 110, W 150: not square
    frame[10:40, 20:130, 0] = 250
    frame[60:100, 5:30, 0] = 200
    path = tmp_path / "instrument_dataset_9" / "left_frames" / "frame004.png"
    _png(path, frame)
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "inference.json"), str(BUNDLE / "configs" / "demo.json")])
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "out"), "device": "cpu"})
    sample = parser.get_parsed_content("preprocessing")({"image": str(path)})
    red = sample["original_image"][0]  # MONAI's (x, y)
    expected_xy = torch.where(red > 225, 3, torch.where(red > 150, 6, 0))
    sample["pred"] = torch.nn.functional.one_hot(expected_xy.long(), 8).permute(2, 0, 1).float()[None][0]
    sample["pred"] = sample["image"].__class__(sample["pred"], meta=sample["image"].meta)
    parser.get_parsed_content("postprocessing")(sample)
    written = tmp_path / "out" / "instrument_dataset_9_frame004.png"
    mask = Image.open(written)
    assert mask.mode == "L" and mask.size == (150, 110)
    array = np.asarray(mask)
    expected = np.where(frame[..., 0] > 225, 3, np.where(frame[..., 0] > 150, 6, 0))
    np.testing.assert_array_equal(array, expected)
    assert array.dtype == np.uint8 and set(np.unique(array).tolist()) == {0, 3, 6}
    assert not list((tmp_path / "out").glob(".*partial*"))


# ------------------------------------------------------------------------------------------------ metric
def test_endovis_metric_on_a_crafted_frame_against_an_independent_count():
    """Through the evaluate config's ProtocolMetrics, on (1, x, y) tensors as the pipeline holds them."""
    from xlstm_bundle_tools import ProtocolMetrics

    evaluate = json.loads((BUNDLE / "configs" / "evaluate.json").read_text())
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    assert evaluate["evaluation_protocol"] == "endovis"
    metric = ProtocolMetrics(evaluate["evaluation_protocol"], class_names=train["class_names"], pred_key="pred",
                             label_key="native_label")
    ref = np.zeros((60, 50), np.int64)
    pred = np.zeros_like(ref)
    ref[5:25, 5:20] = 1
    pred[6:26, 5:20] = 1          # bipolar: shifted by 1 px, inside the 2 px tolerance everywhere
    ref[35:50, 30:45] = 3         # needle driver: predicted far away
    pred[10:20, 35:48] = 3
    pred[40:55, 2:12] = 5         # grasping retractor: only predicted
    ref[52:58, 40:48] = 6         # scissors: only in the reference
    row = metric({"pred": torch.as_tensor(pred)[None], "native_label": torch.as_tensor(ref)[None]})

    def dice(label):
        r, p = ref == label, pred == label
        return 2 * (r & p).sum() / (r.sum() + p.sum())

    assert row["dice_bipolar_forceps"] == pytest.approx(dice(1)) and dice(1) == pytest.approx(2 * 19 * 15 / 600)
    assert row["nsd_bipolar_forceps"] == 1.0
    assert row["dice_large_needle_driver"] == 0.0 and row["nsd_large_needle_driver"] == 0.0
    assert row["dice_grasping_retractor"] == 0.0 and row["nsd_grasping_retractor"] == 0.0
    assert row["dice_monopolar_curved_scissors"] == 0.0 and row["nsd_monopolar_curved_scissors"] == 0.0
    assert math.isnan(row["dice_prograsp_forceps"])  # absent from both: not scored
    assert row["labels_scored"] == 4
    assert row["mean_dice"] == pytest.approx(dice(1) / 4) and row["mean_nsd"] == pytest.approx(1 / 4)
    empty = metric({"pred": torch.zeros(1, 8, 8), "native_label": torch.zeros(1, 8, 8)})
    assert math.isnan(empty["mean_dice"]) and empty["labels_scored"] == 0
    summary = metric.summarize([{"case": "a", **row}, {"case": "b", **empty}])
    assert summary["mean"]["mean_dice"] == pytest.approx(dice(1) / 4)  # the empty frame is left out of the mean


# ------------------------------------------------------------------------------------------------ configs
def test_configs_default_to_enc_at_the_real_patch_and_bot_is_one_option_away():
    from monai.bundle import ConfigParser

    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    assert train["network_def"]["variant"] == "enc" and train["patch_size"] == inference["patch_size"] == [448, 384]
    assert train["network_def"]["features"] == [32, 64, 128, 256, 512, 512, 512]
    assert train["learning_rate"] == 5e-3 and train["batch_size"] == 1 and train["optimizer"]["momentum"] == 0.99
    assert inference["inferer"] == "@sliding_window" and inference["sliding_window"]["roi_size"] == "@patch_size"
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [448, 384]
    assert len(meta["network_data_format"]["outputs"]["pred"]["channel_def"]) == 8
    demo_sizes = json.loads((BUNDLE / "configs" / "demo.json").read_text())
    for variant in ("enc", "bot"):
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / "inference.json"), str(BUNDLE / "configs" / "demo.json")])
        parser["network_def"]["variant"] = variant
        net = parser.get_parsed_content("network_def").eval()
        size = demo_sizes["patch_size"]
        with torch.no_grad():
            assert net(torch.zeros(1, 3, *size)).shape == (1, 8, *size)
        if variant == "enc":  # the channel tokens are tied to the patch: another size gets the network's error
            with pytest.raises(Exception, match=r"[Pp]atch|size"):
                net(torch.zeros(1, 3, 2 * size[0], size[1]))


# ------------------------------------------------------------------------------------------------ the real command
@pytest.mark.slow  # a bundle workflow in a subprocess (about 15-40 s on 2 cores)
def test_inference_refuses_an_rgba_frame_and_writes_nothing(raw, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(raw / "instrument_dataset_1" / "left_frames" / "frame000.png", frames / "good.png")
    rgb = np.asarray(Image.open(raw / "instrument_dataset_2" / "left_frames" / "frame000.png"))
    bad = frames / "bad.png"
    _png(bad, np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1), "RGBA")
    before = sorted(p.name for p in frames.iterdir())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               str([str(BUNDLE / "configs" / n) for n in ("inference.json", "demo.json")]),
               "--image_glob", str(frames / "*.png"), "--ckpt_dir", str(tmp_path / "models"),
               "--output_dir", str(tmp_path / "out")]
    environment = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    result = subprocess.run(command, cwd=elsewhere, env=environment, capture_output=True, text=True, timeout=600)
    report = f"\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 1, report
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert str(bad) in last and "the frame is RGBA, with an alpha channel" in last, last + report
    assert "Traceback" not in result.stderr, report
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()
    assert not any(elsewhere.iterdir()) and sorted(p.name for p in frames.iterdir()) == before
