# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_bundle_tools: datalists and folds, input checks with exact errors, atomic writes and checkpoints, metrics."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

import xlstm_bundle_tools as tools
from xlstm_bundle_tools.checks import CheckCased, InvalidInputError, check_cases, check_nifti_case
from xlstm_bundle_tools.datalist import DatalistError, assign_folds, load_fold, write_datalist
from xlstm_bundle_tools.metrics import CaseMetricsSaver, OrganDiceNSD

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def save(path: Path, data, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


@pytest.fixture
def case(tmp_path):
    image = save(tmp_path / "img.nii.gz", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    label = save(tmp_path / "lab.nii.gz", np.zeros((8, 8, 4), np.uint8) + (np.arange(4) % 3).astype(np.uint8))
    return image, label


# ---------------------------------------------------------------- datalists
def test_folds_are_seeded_balanced_and_deterministic():
    cases = [f"c{i:02d}" for i in range(23)]
    folds = assign_folds(cases, 5, seed=7)
    assert folds == assign_folds(list(reversed(cases)), 5, seed=7)  # input order does not matter
    assert sorted(np.bincount(list(folds.values())).tolist()) == [4, 4, 5, 5, 5]
    assert folds != assign_folds(cases, 5, seed=8)


def test_too_few_cases_or_folds_say_what_to_change():
    with pytest.raises(DatalistError, match=r"3 labelled cases cannot fill 5 folds; use fewer folds \(--folds\)"):
        assign_folds(["a", "b", "c"], 5, 0)
    with pytest.raises(DatalistError, match=r"number of folds \(--folds\) must be at least 2; got 1"):
        assign_folds(["a", "b", "c"], 1, 0)


def test_write_and_load_fold_round_trip(tmp_path, case):
    image, label = case
    entries = [{"case_id": f"c{i}", "image": str(image), "label": str(label)} for i in range(6)]
    write_datalist(tmp_path / "datalist.json", entries, [{"case_id": "t", "image": str(image)}], num_folds=3, seed=0)
    stored = json.loads((tmp_path / "datalist.json").read_text())
    assert stored["training"][0]["image"] == "img.nii.gz"  # relative to the datalist's folder
    train, val = load_fold(tmp_path / "datalist.json", 1, "train"), load_fold(tmp_path / "datalist.json", 1, "val")
    assert len(train) + len(val) == 6 and {e["case_id"] for e in train}.isdisjoint({e["case_id"] for e in val})
    assert Path(val[0]["image"]).is_absolute() and Path(val[0]["image"]).is_file()
    assert len(load_fold(tmp_path / "datalist.json", split="test")) == 1


def test_missing_datalist_names_the_file(tmp_path):
    with pytest.raises(DatalistError, match=r"datalist.json: datalist not found"):
        load_fold(tmp_path / "datalist.json")


def test_empty_datalist_is_rejected(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"num_folds": 5, "training": []}))
    with pytest.raises(DatalistError, match=r"datalist.json: the 'training' list is empty or missing"):
        load_fold(tmp_path / "datalist.json")
    with pytest.raises(DatalistError, match="no labelled cases to write"):
        write_datalist(tmp_path / "new.json", [])
    assert not (tmp_path / "new.json").exists()


def test_nonexistent_fold_is_rejected(tmp_path, case):
    image, label = case
    write_datalist(tmp_path / "d.json", [{"case_id": f"c{i}", "image": str(image), "label": str(label)}
                                         for i in range(5)], num_folds=5)
    with pytest.raises(DatalistError, match=r"fold 5 does not exist; the datalist has folds 0..4"):
        load_fold(tmp_path / "d.json", fold=5)


# ---------------------------------------------------------------- input checks
def test_a_good_case_passes(case):
    info = check_nifti_case(*map(str, case), class_values=range(3))
    assert info["shape"] == (8, 8, 4) and info["spacing"] == (1.5, 1.5, 3.0)


def test_missing_file(tmp_path, case):
    with pytest.raises(InvalidInputError, match=r"nope.nii.gz: file not found"):
        check_nifti_case(str(tmp_path / "nope.nii.gz"), str(case[1]), range(3))


def test_corrupt_file(tmp_path, case):
    good = case[0].read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidInputError, match=r"truncated.nii.gz: cannot be read as NIfTI"):
        check_nifti_case(str(truncated))
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(InvalidInputError, match=r"garbage.nii.gz: cannot be read as NIfTI"):
        check_nifti_case(str(garbage))


def test_nan_voxels(tmp_path, case):
    data = np.ones((8, 8, 4), np.float32)
    data[1, 2, 3] = np.nan
    bad = save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InvalidInputError, match=r"nan.nii.gz: contains 1 NaN and 0 infinite voxels out of 256"):
        check_nifti_case(str(bad), str(case[1]), range(3))


def test_label_values_outside_class_set(tmp_path, case):
    bad = save(tmp_path / "lab7.nii.gz", np.full((8, 8, 4), 7, np.uint8))
    with pytest.raises(InvalidInputError, match=r"lab7.nii.gz: label values \[7\] are outside the class set \[0, 1, 2\]"):
        check_nifti_case(str(case[0]), str(bad), range(3))


def test_an_image_copied_over_a_label_gets_a_short_message(tmp_path, case):
    integers = save(tmp_path / "int_image.nii.gz", np.arange(256, dtype=np.int16).reshape(8, 8, 4))
    with pytest.raises(InvalidInputError, match=r"int_image.nii.gz: label values \[3, 4, 5, 6, 7, \.\.\.\] "
                                                r"\(253 distinct values\) are outside the class set \[0, 1, 2\]\.$"):
        check_nifti_case(str(case[0]), str(integers), range(3))
    floats = save(tmp_path / "float_image.nii.gz", np.linspace(0, 2, 256, dtype=np.float32).reshape(8, 8, 4))
    with pytest.raises(InvalidInputError, match=r"float_image.nii.gz: label map has non-integer values \[0\.007843, "
                                                r"0\.01569, 0\.02353, 0\.03137, 0\.03922, \.\.\.\] \(254 distinct "
                                                r"values\); is it an image\?$"):
        check_nifti_case(str(case[0]), str(floats), range(3))


def test_preflight_message_ends_on_a_file_even_past_twenty(tmp_path):
    entries = [{"image": str(tmp_path / f"missing_{i:02d}.nii.gz")} for i in range(23)]
    with pytest.raises(InvalidInputError) as caught:
        check_cases(entries)
    lines = str(caught.value).splitlines()
    assert lines[0] == "23 of 23 cases are unusable (the first 20 are listed); fix or remove them and run again:"
    assert len(lines) == 21 and lines[-1] == f"  {tmp_path}/missing_19.nii.gz: file not found."


def test_shape_mismatch(tmp_path, case):
    bad = save(tmp_path / "small.nii.gz", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidInputError, match=r"small.nii.gz: spatial shape \(8, 8, 3\) differs from .*img.nii.gz"):
        check_nifti_case(str(case[0]), str(bad), range(3))


def test_affine_mismatch(tmp_path, case):
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    bad = save(tmp_path / "moved.nii.gz", np.zeros((8, 8, 4), np.uint8), shifted)
    with pytest.raises(InvalidInputError, match=r"moved.nii.gz: affine differs from .*img.nii.gz \(max difference 5"):
        check_nifti_case(str(case[0]), str(bad), range(3))


def test_wrong_channel_count(tmp_path, case):
    three = [str(case[0])] * 3
    with pytest.raises(InvalidInputError, match=r"img.nii.gz: 3 image channels; the network takes 4\.$"):
        check_nifti_case(three, str(case[1]), range(3), channels=4)
    stacked = save(tmp_path / "stacked.nii.gz", np.zeros((8, 8, 4, 3), np.float32))
    with pytest.raises(InvalidInputError, match=r"1 of 1 cases are unusable.*\n  .*stacked.nii.gz: 3 image channels"):
        check_cases([{"image": str(stacked)}], channels=4)
    assert check_nifti_case(three + [str(stacked)], channels=6)["channels"] == 6
    image = MetaTensor(torch.ones(3, 4, 4, 2), affine=torch.eye(4), meta={"filename_or_obj": "/data/s.nii.gz"})
    with pytest.raises(InvalidInputError, match=r"/data/s.nii.gz: 3 image channels after loading; the network takes 4"):
        CheckCased(label_key=None, channels=4)({"image": image})


def test_preflight_lists_every_bad_case_and_rejects_empty_lists(tmp_path, case):
    entries = [{"image": str(case[0]), "label": str(case[1])}, {"image": str(tmp_path / "a.nii.gz")},
               {"image": str(tmp_path / "b.nii.gz")}]
    with pytest.raises(InvalidInputError, match=r"2 of 3 cases are unusable; fix or remove them and run again:\n.*a.nii.gz: file not found.\n.*b.nii.gz"):
        check_cases(entries, class_values=range(3))
    with pytest.raises(InvalidInputError, match="the list of cases is empty"):
        check_cases([])


def test_check_transform_names_the_loaded_file():
    image = MetaTensor(torch.ones(1, 4, 4, 2), affine=torch.eye(4), meta={"filename_or_obj": "/data/x.nii.gz"})
    label = MetaTensor(torch.full((1, 4, 4, 2), 9.0), affine=torch.eye(4), meta={"filename_or_obj": "/data/y.nii.gz"})
    with pytest.raises(InvalidInputError, match=r"/data/y.nii.gz: label values \[9\]"):
        CheckCased(class_values=range(3))({"image": image, "label": label})
    image[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match=r"/data/x.nii.gz: contains 1 NaN"):
        CheckCased(label_key=None)({"image": image})


# ---------------------------------------------------------------- atomic outputs
def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    tools.atomic_write_json(target, {"a": 1})

    def failing(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        tools.atomic_write(target, failing)
    assert json.loads(target.read_text()) == {"a": 1}  # the old content survives
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # and no temporary file is left


def test_atomic_save_imaged_writes_png_masks_and_refuses_to_overwrite_the_input(tmp_path):
    # NIfTI masks are written the same way and checked by the 3D bundles' tests; PNG goes through PIL's writer
    from PIL import Image

    mask = torch.zeros(1, 6, 5, dtype=torch.uint8)
    mask[0, 1:4, 2:4] = 1
    source = tmp_path / "ISIC_0000001.jpg"
    pred = MetaTensor(mask, meta={"filename_or_obj": str(source), "spatial_shape": (6, 5)})
    save = tools.AtomicSaveImaged(keys="pred", output_dir=str(tmp_path / "out"), output_postfix="seg", output_ext=".png",
                                  output_dtype=np.uint8, scale=255, separate_folder=False, resample=False)
    save({"pred": pred})
    written = tmp_path / "out" / "ISIC_0000001_seg.png"
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary file is left
    # MONAI's PIL writer stores (H, W) transposed, the way MONAI's PNG reader reads it back
    assert np.array_equal(np.asarray(Image.open(written)).T, mask[0].numpy() * 255)

    same = tools.AtomicSaveImaged(keys="pred", output_dir=str(tmp_path), output_postfix="", output_ext=".jpg",
                                  separate_folder=False)
    with pytest.raises(ValueError, match="ISIC_0000001.jpg: refusing to write the prediction over its input image"):
        same({"pred": pred})


def test_atomic_checkpoint_saver_keeps_a_loadable_best_model(tmp_path):
    net = torch.nn.Linear(2, 1)
    scores = iter([0.2, 0.5, 0.4])
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)  # registered before the saver, so it runs first
    def set_metric(e):
        e.state.metrics["dice"] = next(scores)
        with torch.no_grad():
            net.weight.fill_(e.state.metrics["dice"])

    saver = tools.AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                        key_metric_name="dice", key_metric_filename="model.pt")
    saver.attach(engine)
    engine.run([0], max_epochs=3)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.allclose(state["weight"], torch.full((1, 2), 0.5))  # the best epoch, not the last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary files left


# ---------------------------------------------------------------- metrics
def test_organ_dice_nsd_follows_the_amos_conventions():
    metric = OrganDiceNSD(["a", "b", "c"], {"a": 0.5, "b": 1, "c": 1})  # a: tighter than the 1 mm error
    gt = torch.zeros(1, 10, 10, 4)
    pred = torch.zeros(1, 10, 10, 4)
    gt[0, 2:6, 2:6, :] = 1
    pred[0, 2:6, 2:5, :] = 1  # organ a: 12 of 16 voxels per slice
    pred[0, 8, 8, 0] = 2  # organ b: predicted but absent from the reference -> 0
    row = metric({"pred": pred, "label": MetaTensor(gt, affine=torch.eye(4))})
    assert row["dice_a"] == pytest.approx(2 * 12 / (16 + 12))
    assert row["dice_b"] == 0.0 and row["nsd_b"] == 0.0
    assert row["dice_c"] == 1.0 and row["nsd_c"] == 1.0  # absent from both -> 1
    assert 0 < row["nsd_a"] < 1
    assert row["mean_dice"] == pytest.approx((row["dice_a"] + 0 + 1) / 3)


def test_case_metrics_saver_writes_rows_and_mean(tmp_path):
    saver = CaseMetricsSaver(lambda s: {"dice": float(s["score"])}, str(tmp_path), summary_metric="dice")
    engine = Engine(lambda e, b: [{"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f"/x/{b}.nii.gz"}),
                                   "score": 1.0 if b == "a" else 0.5}])
    saver.attach(engine)
    engine.run(["a", "b"], max_epochs=1)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["case_id,dice", "a,1.000000", "b,0.500000", "mean,0.750000"]
    assert engine.state.metrics["dice"] == 0.75
    assert math.isclose(saver.summary()["dice"], 0.75)
