# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_unet_amos3d: data preparation for both releases, its bad-input errors, and config consistency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from xlstm_bundle_tools.checks import InvalidInputError
from bundle_scripts import load_bundle_script

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "xlstm_unet_amos3d"


def load_script(name: str):
    return load_bundle_script(BUNDLE.name, name)


demo = load_script("make_demo_data")
prep = load_script("prepare_data")
organs = load_script("organs")


@pytest.fixture(scope="module")
def amos22(tmp_path_factory):
    root = tmp_path_factory.mktemp("amos22")
    demo.write_demo(root, n_train=4, n_val=1, n_test=1, n_ct=1, seed=3)
    return root


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "src"
    shutil.copytree(source, target)
    return target


def test_demo_is_in_the_amos22_layout(amos22):
    dataset = json.loads((amos22 / "dataset.json").read_text())
    assert dataset["labels"]["8"] == "arota" and dataset["labels"]["9"] == "postcava"  # AMOS22's own spellings
    assert sorted(p.name for p in (amos22 / "imagesTr").iterdir())[0] == "amos_0001.nii.gz"  # one CT case
    assert (amos22 / "labelsVa" / "amos_0580.nii.gz").is_file() and not (amos22 / "labelsTs").exists()
    image = nib.load(str(amos22 / "imagesTr" / "amos_0507.nii.gz"))
    zooms = image.header.get_zooms()
    assert zooms[2] > 1.5 * zooms[0]  # anisotropic
    assert image.affine[0, 0] < 0 and image.affine[1, 1] < 0  # scanner-like axes, as DICOM-derived files have
    label = np.asarray(nib.load(str(amos22 / "labelsTr" / "amos_0507.nii.gz")).dataobj)
    assert set(np.unique(label)) == set(range(14))  # all 13 organs present, AMOS numbering


def test_prepare_amos22_keeps_mri_and_renumbers_by_name(amos22, tmp_path):
    content = prep.prepare(amos22, tmp_path / "out", num_folds=5, seed=0)
    ids = [e["case_id"] for e in content["training"]]
    assert ids == ["amos_0507", "amos_0508", "amos_0509", "amos_0510", "amos_0580"]  # CT case 0001 left out
    assert [e["case_id"] for e in content["testing"]] == ["amos_0600"]
    assert sorted(e["fold"] for e in content["training"]) == [0, 1, 2, 3, 4]
    src = np.asarray(nib.load(str(amos22 / "labelsTr" / "amos_0507.nii.gz")).dataobj)
    out_img = nib.load(str(tmp_path / "out" / "labels" / "amos_0507.nii.gz"))
    out = np.asarray(out_img.dataobj)
    assert out.dtype == np.uint8
    # AMOS 6 (liver) -> 1, AMOS 1 (spleen) -> 3, AMOS 8 "arota" -> 5, AMOS 3 (left kidney) -> 13
    for amos_value, mr_value in ((6, 1), (1, 3), (8, 5), (3, 13), (13, 12)):
        assert np.array_equal(out == mr_value, src == amos_value)
    assert np.allclose(out_img.affine, nib.load(str(amos22 / "labelsTr" / "amos_0507.nii.gz")).affine)


def test_prepare_nnunet_dataset702(tmp_path):
    demo.write_demo(tmp_path / "702", n_train=4, n_val=1, n_test=2, seed=4, layout="nnunet702")
    content = prep.prepare(tmp_path / "702", tmp_path / "out")
    assert content["layout"] == "nnunet" and len(content["training"]) == 5
    assert all("label" in e for e in content["testing"])  # Dataset702's test set is labelled
    # labels already in the MRI numbering are referenced in place, not copied
    assert Path(content["training"][0]["label"]).is_absolute()
    assert not (tmp_path / "out" / "labels").exists()


def test_label_mapping_matches_by_name_in_either_format():
    amos = prep.label_mapping({str(k): v for k, v in organs.AMOS22_LABELS.items()}, "amos22", "x")
    assert amos[14] == 0 and amos[15] == 0  # CT-only organs become background
    nn = prep.label_mapping({"background": 0, **{n: i + 1 for i, n in enumerate(organs.MR_ORGANS)}}, "nnunet", "x")
    assert all(src == dst for src, dst in nn.items())
    with pytest.raises(InvalidInputError, match=r"x: unknown organ 'kidney cortex'"):
        prep.label_mapping({"0": "background", "1": "kidney cortex"}, "amos22", "x")


@pytest.mark.parametrize("damage, message", [
    ("missing_label", r"labelsTr/amos_0508.nii.gz: label file missing"),
    ("corrupt", r"imagesTr/amos_0508.nii.gz: cannot be read as NIfTI"),
    ("nan", r"imagesTr/amos_0508.nii.gz: contains \d+ NaN"),
    ("label_value", r"labelsTr/amos_0508.nii.gz: label values \[17\] are outside the class set"),
    ("shape", r"labelsTr/amos_0508.nii.gz: spatial shape .* differs from .*amos_0508.nii.gz"),
    ("affine", r"labelsTr/amos_0508.nii.gz: affine differs"),
])
def test_bad_input_stops_preparation_before_anything_is_written(amos22, tmp_path, damage, message):
    src = copy_of(amos22, tmp_path)
    image, label = src / "imagesTr" / "amos_0508.nii.gz", src / "labelsTr" / "amos_0508.nii.gz"
    img = nib.load(str(image))
    lab = nib.load(str(label))
    if damage == "missing_label":
        label.unlink()
    elif damage == "corrupt":
        image.write_bytes(image.read_bytes()[:500])
    elif damage == "nan":
        data = np.asarray(img.dataobj).astype(np.float32)
        data[3, 3, 3] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(image))
    elif damage == "label_value":
        data = np.asarray(lab.dataobj).copy()
        data[0, 0, 0] = 17
        nib.save(nib.Nifti1Image(data, lab.affine), str(label))
    elif damage == "shape":
        nib.save(nib.Nifti1Image(np.asarray(lab.dataobj)[:, :, :-1], lab.affine), str(label))
    elif damage == "affine":
        moved = lab.affine.copy()
        moved[2, 3] += 12.0
        nib.save(nib.Nifti1Image(np.asarray(lab.dataobj), moved), str(label))
    before = {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()}
    with pytest.raises(InvalidInputError, match=message):
        prep.prepare(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no datalist, no relabelled files
    assert before == {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()}  # sources untouched


def test_no_mri_cases_is_a_clear_error(tmp_path):
    demo.write_demo(tmp_path / "ct", n_train=0, n_val=0, n_test=0, n_ct=2, seed=5)
    with pytest.raises(InvalidInputError, match=r"no labelled MRI cases found"):
        prep.prepare(tmp_path / "ct", tmp_path / "out")


def test_configs_agree_with_the_organ_list():
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    evaluate = json.loads((BUNDLE / "configs" / "evaluate.json").read_text())
    assert train["class_names"] == list(organs.MR_ORGANS)
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values())[1:] == list(organs.MR_ORGANS)
    compute = evaluate["validate#handlers"][2]["compute"]
    assert compute["protocol"] == "@evaluation_protocol" and evaluate["evaluation_protocol"] == "amos"
    from xlstm_bundle_tools.protocols import amos

    assert amos.NSD_TOLERANCE_MM == organs.NSD_TOLERANCE_MM
    assert amos.SLAB_ORGANS == tuple(organs.LABELLED_SLICES_ONLY)
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    for key in ("target_spacing", "patch_size", "num_classes"):
        assert inference[key] == train[key], key
    strip = lambda net: {k: v for k, v in net.items() if k != "deep_supervision"}  # noqa: E731
    assert strip(inference["network_def"]) == strip(train["network_def"])


def test_bundle_network_parameter_count():
    # the figure the bundle README states
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser["bundle_root"] = str(BUNDLE)
    network = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in network.parameters()) == 41_432_334


def _crop_pipeline(**overrides):
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    pipeline = Compose(parser.get_parsed_content("crop_transforms"))
    pipeline.set_random_state(seed=0)
    return pipeline, parser["patch_size"]


def test_training_patches_are_sampled_over_the_whole_volume_not_only_its_centre():
    # A volume a little larger than the patch in-plane (AMOS MRI at 1.19 mm is about 300 x 260), labels spread
    # everywhere so that the label-sampled centres are uniform: the patches must then start anywhere a 224x160x48
    # patch fits, as a plain patch crop would. Without the border pad, the 324x324 rotation-safe region is the
    # whole slice and every patch was the same centre window (origin 38, 50).
    pipeline, patch = _crop_pipeline(rotation_prob=0.0, scaling_prob=0.0)  # a plain centre crop after sampling
    shape = (300, 260, 60)
    index = torch.arange(1, 1 + int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape)  # 0 only in padding
    labels = torch.randint(0, 14, (1, *shape), generator=torch.Generator().manual_seed(0))
    origins = []
    for _ in range(16):
        sample = pipeline({"image": index, "label": labels})
        sample = sample[0] if isinstance(sample, list) else sample
        image = sample["image"]
        assert tuple(image.shape) == (1, *patch)
        assert bool((image > 0).all()), "a patch of a volume larger than the patch reached into padding"
        origins.append(np.unravel_index(int(image[0, 0, 0, 0]) - 1, shape))
    free = [s - p for s, p in zip(shape, patch)]  # 76, 100, 12: the origins a patch can take
    for axis in range(3):
        seen = [o[axis] for o in origins]
        assert min(seen) <= free[axis] // 4 and max(seen) >= 3 * free[axis] // 4, (axis, sorted(seen))


def test_a_volume_smaller_than_the_patch_is_padded_around_a_centred_patch():
    pipeline, patch = _crop_pipeline(rotation_prob=0.0, scaling_prob=0.0)
    shape = (200, 150, 40)
    image = torch.ones(1, *shape)
    sample = pipeline({"image": image, "label": torch.ones(1, *shape, dtype=torch.long)})
    sample = sample[0] if isinstance(sample, list) else sample
    assert tuple(sample["image"].shape) == (1, *patch)
    assert int(sample["image"].sum()) == int(np.prod(shape))  # all of the volume is inside the patch
