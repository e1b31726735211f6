# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The two MONAI 1.6 workarounds the real MONAI Label run needed, checked against plain MONAI on the same data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, Spacingd

from xlstm_bundle_tools import AtomicSaveImaged, MetaSafeSpacingd


def nifti(path, shape, affine, channels: int = 0):
    rng = np.random.default_rng(0)
    data = rng.random(shape + ((channels,) if channels else ()), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, -1.2, 0, 30.0], [0, 0, 4.0, -20.0], [0, 0, 0, 1]])
# voxel axes stored as (k, i, j): the top-left 2x2 block of this affine is singular
PERMUTED = np.array([[0, -1.5, 0, 40.0], [0, 0, -1.2, 30.0], [-4.0, 0, 0, 60.0], [0, 0, 0, 1]])


def test_meta_safe_spacing_keeps_string_keys_and_resamples_as_spacingd(tmp_path):
    path = nifti(tmp_path / "image.nii.gz", (20, 16, 6), AFFINE)
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])
    plain = Spacingd("image", pixdim=(3.0, 3.0, 4.0))(load({"image": path}))
    # MONAI Label's request carries image_path; user datalists carry image_id and the like
    case = load({"image": path, "image_path": path, "image_id": "case-7"})
    spacing = MetaSafeSpacingd("image", pixdim=(3.0, 3.0, 4.0))
    out = spacing(case)
    assert out["image_path"] == path and out["image_id"] == "case-7"
    assert torch.equal(out["image"], plain["image"]) and torch.allclose(out["image"].affine, plain["image"].affine)
    restored = spacing.inverse(out)  # Invertd undoes it as it undoes Spacingd
    assert restored["image"].shape == (1, 20, 16, 6)


def test_meta_safe_spacing_is_what_plain_spacingd_fails_on(tmp_path):
    path = nifti(tmp_path / "image.nii.gz", (20, 16, 6), AFFINE)
    case = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])(
        {"image": path, "image_path": path})
    try:
        Spacingd("image", pixdim=(3.0, 3.0, 4.0))(dict(case))
    except AttributeError as err:  # MONAI 1.6: str has no update()
        assert "'str' object has no attribute 'update'" in str(err)
    else:
        pytest.skip("this MONAI's Spacingd no longer updates string keys; MetaSafeSpacingd is then a plain Spacingd")


@pytest.mark.parametrize("affine", [AFFINE, PERMUTED], ids=["axial", "permuted"])
def test_atomic_writer_saves_a_4d_input_prediction_on_its_grid(tmp_path, affine):
    """The prediction for a 4-channel 4D NIfTI, inverted to the input grid and saved with resample=False."""
    path = nifti(tmp_path / "case.nii.gz", (18, 14, 10), affine, channels=4)
    pre = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                   Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=(2.0, 2.0, 2.0))])
    data = pre({"image": path})
    data["pred"] = (data["image"][:1] > 0.5).to(torch.uint8)
    data = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True)(data)
    save = AtomicSaveImaged(keys="pred", output_dir=str(tmp_path / "out"), output_postfix="seg", separate_folder=False,
                            resample=False, output_dtype=np.uint8)
    if affine is PERMUTED:  # MONAI's own writer resamples "to no target" in 2D and fails on this affine
        from monai.data import NibabelWriter

        plain = AtomicSaveImaged(keys="pred", output_dir=str(tmp_path / "plain"), output_postfix="seg",
                                 separate_folder=False, resample=False, output_dtype=np.uint8, writer=NibabelWriter)
        with pytest.raises(RuntimeError, match="cannot find a suitable writer"):
            plain(dict(data))
    save(data)
    written = nib.load(str(tmp_path / "out" / "case_seg.nii.gz"))
    assert written.shape == (18, 14, 10) and np.allclose(written.affine, affine)
    assert np.array_equal(np.asarray(written.dataobj), data["pred"][0].numpy())
