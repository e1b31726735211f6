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


@pytest.mark.parametrize("shape", [(7, 5, 1), (7, 5, 3), (7, 1, 1)])
def test_atomic_nifti_writer_keeps_the_inputs_size_1_axes(tmp_path, shape):
    """A one-slice volume's mask stays 3D, where MONAI's squeeze_end_dims removes the slice axis with the channel."""
    from monai.data import NibabelWriter

    affine = np.array([[-1.5, 0, 0, 4.0], [0, 1.2, 0, -3.0], [0, 0, 6.0, 2.0], [0, 0, 0, 1]])
    mask = torch.arange(int(np.prod(shape)), dtype=torch.uint8).reshape(1, *shape) % 3
    pred = MetaTensor(mask, affine=torch.as_tensor(affine),
                      meta={"filename_or_obj": str(tmp_path / "case.nii.gz"), "spatial_shape": shape})
    tools.AtomicSaveImaged(keys="pred", output_dir=str(tmp_path / "out"), output_postfix="seg", output_dtype=np.uint8,
                           separate_folder=False, resample=False)({"pred": pred})
    written = nib.load(str(tmp_path / "out" / "case_seg.nii.gz"))
    assert written.shape == shape and np.allclose(written.affine, affine)
    assert np.array_equal(np.asarray(written.dataobj), mask[0].numpy())
    squeezed = NibabelWriter.convert_to_channel_last(mask.numpy(), channel_dim=0, squeeze_end_dims=True)
    assert squeezed.shape == tuple(s for i, s in enumerate(shape) if s > 1 or any(t > 1 for t in shape[i:]))


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
    """Anisotropic affine (1.2 x 1.2 x 6 mm): NSD equals DeepMind's surface Dice at the spacing read from the affine,
    the slab rule drops the reference's last labelled slice, and the empty rules hold."""
    sd = pytest.importorskip("surface_distance")
    metric = OrganDiceNSD(["a", "b", "c", "d"], {"a": 2, "b": 1, "c": 1, "d": 5}, labelled_slices_only=["d"])
    gt = torch.zeros(1, 16, 16, 8)
    pred = torch.zeros(1, 16, 16, 8)
    gt[0, 3:11, 3:11, 1:6] = 1
    pred[0, 4:11, 3:12, 2:7] = 1  # organ a: shifted by a voxel in x and a 6 mm slice in z
    pred[0, 14, 14, 0] = 2  # organ b: predicted but absent from the reference -> 0
    gt[0, 12:15, 1:4, 2:5] = 4  # organ d on slices 2..4: scored on slices 2..3 only
    pred[0, 12:15, 1:4, 0:8] = 4
    affine = torch.diag(torch.tensor([1.2, 1.2, 6.0, 1.0], dtype=torch.float64))
    row = metric({"pred": pred, "label": MetaTensor(gt, affine=affine)})
    g, p = gt[0].numpy() == 1, pred[0].numpy() == 1
    expected = sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(g, p, (1.2, 1.2, 6.0)), 2)
    assert row["nsd_a"] == pytest.approx(expected, abs=1e-12) and 0.3 < row["nsd_a"] < 0.9
    isotropic = metric({"pred": pred, "label": MetaTensor(gt, affine=torch.eye(4, dtype=torch.float64))})
    assert abs(isotropic["nsd_a"] - row["nsd_a"]) > 0.05  # the spacing comes from the affine
    assert row["dice_a"] == pytest.approx(2 * (7 * 8 * 4) / (8 * 8 * 5 + 7 * 9 * 5))
    assert row["dice_b"] == 0.0 and row["nsd_b"] == 0.0
    assert row["dice_c"] == 1.0 and row["nsd_c"] == 1.0  # absent from both -> 1
    assert row["dice_d"] == 1.0 and row["nsd_d"] == 1.0  # the prediction's extra slices lie outside the slab
    assert row["mean_dice"] == pytest.approx((row["dice_a"] + 0 + 1 + 1) / 4)


def test_protocol_metrics_in_the_saver_write_the_protocol_summary(tmp_path):
    """An evaluate config's CaseMetricsSaver(ProtocolMetrics) writes what the score command writes: for amos, the
    mean row holds the mean of per-organ means (here organ 2 is NaN in one case, so it differs from the row mean)."""
    metric = tools.ProtocolMetrics("amos", class_names=["a", "b"], nsd_tolerance_mm={"a": 2, "b": 2},
                                   slab_organs=["b"])
    saver = CaseMetricsSaver(metric, str(tmp_path), summary_metric="mean_dice")
    cases = {}
    for name, shift in (("x", 0), ("y", 1)):
        gt = torch.zeros(1, 8, 8, 6)
        pred = torch.zeros(1, 8, 8, 6)
        gt[0, 2:6, 2:6, 1:5], pred[0, 2 + shift : 6, 2:6, 1:5] = 1, 1
        if name == "y":
            gt[0, 0, 0, 3] = 2  # organ b on a single slice: empty slab, NaN
        cases[name] = {"pred": pred, "label": MetaTensor(gt, meta={"filename_or_obj": f"/d/{name}.nii.gz"})}
    engine = Engine(lambda e, b: [{**cases[b], "image": cases[b]["label"]}])
    saver.attach(engine)
    engine.run(["x", "y"], max_epochs=1)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "case,dice_a,dice_b,nsd_a,nsd_b,mean_dice,mean_nsd"
    assert [line.split(",")[0] for line in lines[1:]] == ["x", "y", "mean"]
    dice_y = 2 * 12 / (16 + 12)
    mean = dict(zip(lines[0].split(","), lines[3].split(",")))
    assert float(mean["mean_dice"]) == pytest.approx(((1 + dice_y) / 2 + 1) / 2, abs=1e-6)
    assert mean["dice_b"] == "1.000000" and lines[2].split(",")[2] == "nan"
    assert engine.state.metrics["mean_dice"] == pytest.approx(((1 + dice_y) / 2 + 1) / 2)


def test_case_metrics_saver_writes_rows_and_mean(tmp_path):
    saver = CaseMetricsSaver(lambda s: {"dice": float(s["score"])}, str(tmp_path), summary_metric="dice")
    engine = Engine(lambda e, b: [{"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f"/x/{b}.nii.gz"}),
                                   "score": 1.0 if b == "a" else 0.5}])
    saver.attach(engine)
    engine.run(["a", "b"], max_epochs=1)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["case,dice", "a,1.000000", "b,0.500000", "mean,0.750000"]
    assert engine.state.metrics["dice"] == 0.75
    assert math.isclose(saver.summary()["dice"], 0.75)


def test_protocol_metrics_take_the_bundles_tensors():
    """BraTS: the (3, *S) TC/WT/ET stack of ConvertToMultiChannelBasedOnBratsClassesd; ISIC: the network's 256²
    probabilities beside the native-size masks."""
    labels = torch.zeros(1, 12, 12, 12)
    labels[0, 3:9, 3:9, 3:9], labels[0, 4:7, 4:7, 4:7] = 2, 3
    stack = torch.cat([(labels == 3), (labels > 0), (labels == 3)]).float()  # TC (= ET here), WT, ET
    pred = torch.roll(stack, 1, dims=1)
    row = tools.ProtocolMetrics("brats-segmamba", label_key="label")({"pred": pred, "label": MetaTensor(stack)})
    direct = tools.get_protocol("brats-segmamba").score(pred.numpy(), stack.numpy())
    assert row == direct and 0 < row["dice_wt"] < 1
    ref = torch.zeros(1, 300, 200)
    ref[0, 50:250, 40:160] = 1
    pred256 = torch.zeros(1, 256, 256)
    pred256[0, 40:220, 50:210] = 0.9
    metric = tools.ProtocolMetrics("isic", pred256_key="pred256")
    row = metric({"pred": ref.clone(), "label": ref, "pred256": pred256})
    assert row["dice_lesion"] == 1.0 and row["dice256_lesion"] < 1.0  # 256² from the network's map, not the mask


# ---------------------------------------------------------------- mirror TTA
def _position_dependent(x):
    """A 'network' whose output depends on position along the first spatial axis, so flips matter."""
    ramp = torch.linspace(-3.0, 3.0, x.shape[2], dtype=x.dtype).reshape(1, 1, -1, *([1] * (x.ndim - 3)))
    return torch.cat([x * ramp, x - ramp, 2 * x], dim=1)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_mirror_tta_averages_probabilities(activation):
    from monai.inferers import SimpleInferer

    x = torch.randn(1, 1, 4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tta = tools.MirrorTTAInferer(SimpleInferer(), axes=(0, 1), activation=activation)
    act = torch.sigmoid if activation == "sigmoid" else (lambda t: torch.softmax(t, dim=1))
    passes = []
    for dims in ([], [2], [3], [2, 3]):
        y = _position_dependent(torch.flip(x, dims) if dims else x)
        passes.append(act(torch.flip(y, dims) if dims else y))
    expected = torch.stack(passes).mean(0)
    out = tta(x, _position_dependent)
    assert torch.allclose(act(out), expected, atol=1e-12)  # the config's Activationsd gives the mean probability
    logit_mean = act(torch.stack([torch.flip(_position_dependent(torch.flip(x, d) if d else x), d) if d else
                                  _position_dependent(x) for d in ([], [2], [3], [2, 3])]).mean(0))
    assert not torch.allclose(act(out), logit_mean, atol=1e-4)  # and not the activation of the mean logits
    logits = tools.MirrorTTAInferer(SimpleInferer(), axes=(0, 1), average="logits", activation=activation)
    assert torch.allclose(act(logits(x, _position_dependent)), logit_mean, atol=1e-12)


def test_mirror_tta_keeps_saturated_outputs_finite_and_checks_its_options():
    from monai.inferers import SimpleInferer

    x = torch.full((1, 1, 2, 2, 2), 80.0)
    out = tools.MirrorTTAInferer(SimpleInferer())(x, lambda t: torch.cat([t, -t], dim=1))
    assert torch.isfinite(out).all() and torch.sigmoid(out[0, 0]).min() > 0.999
    with pytest.raises(ValueError, match="activation must be 'sigmoid' or 'softmax', not 'relu'"):
        tools.MirrorTTAInferer(SimpleInferer(), activation="relu")
    with pytest.raises(ValueError, match="average must be 'probabilities' or 'logits'"):
        tools.MirrorTTAInferer(SimpleInferer(), average="votes")


# ------------------------------------------------------------------ nnU-Net's spatial augmentation (RandRotateScaled)
def _fixed(transform, rotate_params=None, scale=None):
    """The transform with its draw replaced by fixed parameters."""
    def randomize(data=None):
        transform.rotate_params, transform.scale = rotate_params, scale
    transform.randomize = randomize
    return transform


def test_rotate_scale_draws_rotation_and_scale_independently_as_nnunet():
    transform = tools.RandRotateScaled(["image"], [8, 8, 4], [0.0, 0.0, math.pi])
    transform.set_random_state(7)
    draws = []
    for _ in range(20000):
        transform.randomize()
        draws.append((transform.rotate_params, transform.scale))
    rotated = [r for r, _ in draws if r is not None]
    scaled = [s for _, s in draws if s is not None]
    both = sum(r is not None and s is not None for r, s in draws)
    assert abs(len(rotated) / 20000 - 0.2) < 0.01 and abs(len(scaled) / 20000 - 0.2) < 0.01
    assert abs(both / 20000 - 0.04) < 0.005  # independent: 0.2 x 0.2, where one shared probability gives 0.2
    assert all(r[0] == r[1] == 0.0 and -math.pi <= r[2] <= math.pi for r in rotated)
    assert max(abs(r[2]) for r in rotated) > 3.0  # the whole ±180° range is used, not MONAI's ±30° of before
    assert 0.7 <= min(scaled) < 0.72 and 1.38 < max(scaled) <= 1.4


def test_rotate_scale_without_a_draw_is_an_exact_centre_crop():
    image = torch.rand(1, 15, 13, 6)
    out = _fixed(tools.RandRotateScaled(["image"], [8, 6, 4], [0.0, 0.0, math.pi]))({"image": image})["image"]
    assert torch.equal(torch.as_tensor(out), image[:, 3:11, 3:9, 1:5])
    assert tools.rotation_safe_crop_size([224, 160, 48], [0, 1]) == [324, 324, 48]


def test_crop_margin_lets_the_enlarged_region_overhang_by_half_the_difference():
    assert tools.crop_margin([224, 160, 48], [324, 324, 48]) == [50, 50, 82, 82, 0, 0]
    assert tools.crop_margin([64, 63], [91, 91]) == [13, 14, 14, 14]  # odd differences: the extra voxel after
    with pytest.raises(ValueError, match=r"crop_size \[100, 324\] must hold patch_size \[224, 160\]"):
        tools.crop_margin([224, 160], [100, 324])


def test_rotate_scale_rotates_in_plane_as_rot90_does():
    image = torch.rand(1, 9, 9, 5)
    label = (image > 0.5).float()
    transform = _fixed(tools.RandRotateScaled(["image", "label"], [9, 9, 5], [0.0, 0.0, math.pi],
                                              mode=["bilinear", "nearest"]), rotate_params=[0.0, 0.0, math.pi / 2])
    out = transform({"image": image, "label": label})
    matches = [k for k in (1, -1) if torch.allclose(torch.as_tensor(out["image"]), torch.rot90(image, k, (1, 2)),
                                                        atol=1e-5)]
    assert len(matches) == 1  # exactly one direction: the rotation stays in the (0, 1) plane, slices untouched
    assert torch.equal(torch.as_tensor(out["label"]), torch.rot90(label, matches[0], (1, 2)))


def test_rotate_scale_scales_every_axis_by_one_factor():
    image = torch.rand(1, 15, 15, 15)
    transform = _fixed(tools.RandRotateScaled(["image"], [8, 8, 8], [0.0, 0.0, math.pi]), scale=2.0)
    out = torch.as_tensor(transform({"image": image})["image"])
    # a factor above 1 samples a region twice as large: every second voxel (structures shrink, as batchgenerators)
    assert torch.allclose(out, image[:, ::2, ::2, ::2], atol=1e-5)


def test_command_line_flags_read_false_as_false():
    """fire hands `--tta false` / `--overlays false` / `--amp false` over as the string 'false' (truthy)."""
    from xlstm_bundle_tools import MirrorTTAInferer, flag
    from xlstm_bundle_tools.errors import InputError

    assert [flag(v, "x") for v in (True, False, "true", "false", "False", "1", "0", "yes", "off")] == [
        True, False, True, False, False, True, False, True, False]
    with pytest.raises(InputError, match=r"^--tta 'maybe': expected true or false$"):
        flag("maybe", "tta")
    calls = []
    inferer = MirrorTTAInferer(lambda x, net: calls.append(1) or net(x), axes=(0, 1, 2), enabled="false")
    inferer(torch.zeros(1, 1, 4, 4, 4), lambda x: x)
    assert len(calls) == 1  # one pass, not eight
