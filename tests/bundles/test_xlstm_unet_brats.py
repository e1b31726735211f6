# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_unet_brats: BraTS 2023 preparation and its errors, region conversion, label-map rebuilding, metrics, TTA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.transforms import ConvertToMultiChannelBasedOnBratsClassesd

from xlstm_bundle_tools import MirrorTTAInferer, RegionDiceHD95, RegionsToLabelsd
from xlstm_bundle_tools.checks import InvalidInputError
from bundle_scripts import load_bundle_script

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "xlstm_unet_brats"


def load_script(name: str):
    return load_bundle_script(BUNDLE.name, name)


demo = load_script("make_demo_data")
prep = load_script("prepare_data")
brats = load_script("brats")
PAINT = json.loads((BUNDLE / "configs" / "inference.json").read_text())["postprocessing"]["transforms"][3]["paint"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats")
    demo.write_demo(root, n_train=5, n_val=1, seed=1, spacing=4.0, shape=(40, 48, 36))
    return root


def test_demo_is_in_the_brats2023_layout(raw):
    case = raw / demo.TRAIN_FOLDER / "BraTS-GLI-00000-000"
    assert sorted(p.name for p in case.iterdir()) == [f"BraTS-GLI-00000-000-{s}.nii.gz"
                                                      for s in ("seg", "t1c", "t1n", "t2f", "t2w")]
    seg = np.asarray(nib.load(str(case / "BraTS-GLI-00000-000-seg.nii.gz")).dataobj)
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    t1c = np.asarray(nib.load(str(case / "BraTS-GLI-00000-000-t1c.nii.gz")).dataobj).astype(float)
    t1n = np.asarray(nib.load(str(case / "BraTS-GLI-00000-000-t1n.nii.gz")).dataobj).astype(float)
    assert t1c[seg == 3].mean() > 1.5 * t1n[seg == 3].mean()  # the rim enhances only with contrast
    assert not any((raw / demo.VAL_FOLDER).glob("*/*-seg.nii.gz"))


def test_prepare_lists_modalities_in_network_order(raw, tmp_path):
    content = prep.prepare([raw], tmp_path / "out", num_folds=5)
    assert len(content["training"]) == 5 and len(content["testing"]) == 1
    assert content["modalities"] == ["t2w", "t2f", "t1n", "t1c"]
    first = content["training"][0]
    assert [Path(p).name.rsplit("-", 1)[1] for p in first["image"]] == ["t2w.nii.gz", "t2f.nii.gz", "t1n.nii.gz",
                                                                          "t1c.nii.gz"]
    assert "label" not in content["testing"][0]


def test_other_sub_challenges_are_accepted(tmp_path):
    demo.write_demo(tmp_path / "men", n_train=5, n_val=0, seed=2, spacing=4.0, shape=(40, 48, 36), prefix="MEN")
    content = prep.prepare([tmp_path / "men"], tmp_path / "out")
    assert all(e["case_id"].startswith("BraTS-MEN-") for e in content["training"])


def _copy(raw, tmp_path):
    target = tmp_path / "src"
    shutil.copytree(raw, target)
    return target, target / demo.TRAIN_FOLDER / "BraTS-GLI-00002-000"


@pytest.mark.parametrize("damage, message", [
    ("missing_modality", r"BraTS-GLI-00002-000: case BraTS-GLI-00002-000 is missing modality \['t2f'\]"),
    ("geometry", r"BraTS-GLI-00002-000-t1c.nii.gz: affine differs from .*BraTS-GLI-00002-000-t2w.nii.gz"),
    ("label_value", r"BraTS-GLI-00002-000-seg.nii.gz: label values \[4\] are outside the class set \[0, 1, 2, 3\]"),
])
def test_bad_cases_are_named_and_nothing_is_written(raw, tmp_path, damage, message):
    src, case = _copy(raw, tmp_path)
    name = "BraTS-GLI-00002-000"
    if damage == "missing_modality":
        (case / f"{name}-t2f.nii.gz").unlink()
    elif damage == "geometry":
        img = nib.load(str(case / f"{name}-t1c.nii.gz"))
        shifted = img.affine.copy()
        shifted[0, 3] += 3.0
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), str(case / f"{name}-t1c.nii.gz"))
    else:  # BraTS 2021 numbering (4 = ET) in a 2023 folder
        seg = nib.load(str(case / f"{name}-seg.nii.gz"))
        data = np.asarray(seg.dataobj).copy()
        data[data == 3] = 4
        nib.save(nib.Nifti1Image(data, seg.affine), str(case / f"{name}-seg.nii.gz"))
    with pytest.raises(InvalidInputError, match=message):
        prep.prepare([src], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_regions_and_label_map_round_trip():
    labels = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3]).reshape(1, 2, 2, 2).float()
    regions = ConvertToMultiChannelBasedOnBratsClassesd("label", et_label=3)({"label": labels})["label"]
    # truth table: TC = {1, 3}, WT = {1, 2, 3}, ET = {3}
    flat = labels.flatten().long().tolist()
    assert regions[0].flatten().tolist() == [v in (1, 3) for v in flat]
    assert regions[1].flatten().tolist() == [v in (1, 2, 3) for v in flat]
    assert regions[2].flatten().tolist() == [v == 3 for v in flat]
    rebuilt = RegionsToLabelsd("pred", paint=PAINT)({"pred": regions.float()})["pred"]
    assert rebuilt.dtype == torch.uint8 and torch.equal(rebuilt.long(), labels.long())


def test_region_metrics_follow_brats_conventions():
    gt = torch.zeros(3, 8, 8, 8)
    gt[1, 2:6, 2:6, 2:6] = 1  # WT only; TC and ET empty
    pred = gt.clone()
    pred[2, 0, 0, 0] = 1  # a spurious ET voxel
    row = RegionDiceHD95(["TC", "WT", "ET"])({"pred": pred, "label": MetaTensor(gt, affine=torch.eye(4))})
    assert row["dice_TC"] == 1.0 and row["hd95_TC"] == 0.0  # empty in both
    assert row["dice_WT"] == 1.0 and row["hd95_WT"] == 0.0
    assert row["dice_ET"] == 0.0 and row["hd95_ET"] == 373.13  # BraTS's value for a false positive on an empty region


def test_mirror_tta_averages_the_flipped_predictions():
    net = torch.nn.Conv3d(1, 1, 1)
    x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)

    def asymmetric(t):
        return t * torch.linspace(0, 1, 2).reshape(1, 1, 2, 1, 1)  # depends on position along axis 0

    tta = MirrorTTAInferer(SimpleInferer(), axes=(0,), average="logits")
    expected = (asymmetric(x) + torch.flip(asymmetric(torch.flip(x, [2])), [2])) / 2
    assert torch.allclose(tta(x, asymmetric), expected)
    assert torch.equal(MirrorTTAInferer(SimpleInferer(), enabled=False)(x, net), net(x))


def test_a_stacked_4d_file_preprocesses_like_the_four_files(raw, tmp_path):
    """MONAI Label sends one 4D file per case; inference must read it exactly like the datalist's four files."""
    from monai.bundle import ConfigParser

    stack = load_script("stack_modalities")
    case = raw / demo.TRAIN_FOLDER / "BraTS-GLI-00001-000"
    stacked = stack.stack_case(case, tmp_path)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "target_spacing": [4.0, 4.0, 4.0]})
    pre = parser.get_parsed_content("preprocessing")
    four = [str(case / f"BraTS-GLI-00001-000-{m}.nii.gz") for m in brats.MODALITIES]
    a, b = pre({"image": four})["image"], pre({"image": str(stacked)})["image"]
    assert a.shape[0] == 4 and a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5)


def _bundle_loss():
    """The loss exactly as configs/train.json builds it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    return parser.get_parsed_content("loss")


def test_loss_is_dice_plus_binary_cross_entropy_per_region_channel():
    """The config's loss equals MONAI's sigmoid Dice plus torch's BCE-with-logits over every channel and voxel.

    MONAI's DiceCELoss(sigmoid=True) fails all three checks: on 3 channels its CE term is softmax cross-entropy.
    """
    from monai.losses import DiceLoss

    loss = _bundle_loss()
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8, generator=gen, dtype=torch.float64)
    target = (torch.rand(2, 3, 8, 8, 8, generator=gen) > 0.6).double()
    dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    expected = dice(logits, target) + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(loss(logits, target), expected, rtol=1e-12, atol=0)

    # all-background patch, positive logits: the cross-entropy term alone is positive (softmax CE gives exactly 0)
    background = torch.zeros_like(target)
    positive = torch.full_like(logits, 2.0)
    ce_term = loss(positive, background) - dice(positive, background)
    assert ce_term > 1.0

    # an ET voxel (target TC=WT=ET=1): raising all three logits together must lower the loss through the CE term
    # (softmax CE is invariant to that shift, so its gradient along it is exactly 0)
    et = torch.ones(1, 3, 1, 1, 1, dtype=torch.float64)
    x = torch.zeros(1, 3, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    (loss(x, et) - dice(x, et)).backward()
    assert x.grad.sum() < -0.4  # BCE: 3 x (sigmoid(0) - 1) / 3 = -0.5
