# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""DICOM round trip: a series made from a demo NIfTI is segmented as the NIfTI is, and its DICOM-SEG reads back
voxel for voxel onto the source series."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage

pydicom = pytest.importorskip("pydicom")
highdicom = pytest.importorskip("highdicom")

from test_segment_folder import AMOS, amos_case, random_weights, read_status, run, save_nifti  # noqa: E402
from xlstm_bundle_tools import dicom  # noqa: E402
from xlstm_bundle_tools.checks import InvalidInputError  # noqa: E402


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """The same synthetic MR block as a NIfTI file and as a DICOM series (scanner-like, slightly tilted axes)."""
    root = tmp_path_factory.mktemp("dicom")
    image, affine = amos_case(2)
    save_nifti(root / "scans" / "case.nii.gz", image, affine)
    dicom.write_dicom_series(image, affine, root / "scans" / "case_dicom", series_description="demo T1")
    return root, image, affine


def test_monai_loads_a_series_folder_as_the_nifti(series):
    root, image, affine = series
    from_dicom = LoadImage(image_only=True)(str(root / "scans" / "case_dicom"))
    from_nifti = LoadImage(image_only=True)(str(root / "scans" / "case.nii.gz"))
    assert np.array_equal(from_dicom.numpy(), image) and np.array_equal(from_nifti.numpy(), image)
    assert np.allclose(from_dicom.affine.numpy(), affine, atol=1e-4)
    assert dicom.check_volume_case(str(root / "scans" / "case_dicom"))["shape"] == image.shape


def test_preflight_names_a_folder_without_dicom(tmp_path):
    (tmp_path / "empty_series").mkdir()
    (tmp_path / "empty_series" / "readme.txt").write_text("no images")
    with pytest.raises(InvalidInputError, match=r"empty_series: folder holds no DICOM files\."):
        dicom.check_volume_case(str(tmp_path / "empty_series"))


def test_series_inference_and_dicom_seg_match_the_nifti_path(series, tmp_path):
    root, image, affine = series
    output = tmp_path / "masks"
    assert run(AMOS, random_weights(AMOS, tmp_path / "w.pt"), root / "scans", output, "--dicom-seg") == 0
    status = read_status(output)
    assert status["case_dicom"]["output"] == "case_dicom_seg.nii.gz;case_dicom_seg.dcm"
    from_nifti = nib.load(str(output / "case_seg.nii.gz"))
    from_dicom = nib.load(str(output / "case_dicom_seg.nii.gz"))
    reference = np.asarray(from_nifti.dataobj)
    assert len(np.unique(reference)) > 3  # random weights still give a mask worth comparing
    assert np.array_equal(np.asarray(from_dicom.dataobj), reference)
    assert np.allclose(from_dicom.affine, from_nifti.affine, atol=1e-4) and np.allclose(from_nifti.affine, affine)

    seg_path = output / "case_dicom_seg.dcm"
    names = dicom.labels_from_metadata(json.loads((AMOS / "configs" / "metadata.json").read_text()))
    back, segments = dicom.read_dicom_seg(seg_path, root / "scans" / "case_dicom", image.shape, affine)
    assert np.array_equal(back, reference)  # voxel for voxel, on the source series' grid
    assert segments == {n: names[v] for n, v in enumerate(sorted(names), start=1)}

    # what a viewer needs: the source series referenced instance by instance, labelled and coloured segments
    seg = pydicom.dcmread(seg_path)
    source = dicom.read_series(root / "scans" / "case_dicom")
    assert seg.Modality == "SEG" and seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source[0].SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in source}
    liver = seg.SegmentSequence[0]
    assert liver.SegmentLabel == "liver" and liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert len({tuple(s.RecommendedDisplayCIELabValue) for s in seg.SegmentSequence}) == len(names)


def test_dicom_seg_refuses_a_mask_off_the_series_grid(series, tmp_path):
    root, image, affine = series
    shifted = affine.copy()
    shifted[:3, 3] += 5.0  # a mask computed on another grid must not be filed against this series
    with pytest.raises(ValueError, match="lies off the mask grid"):
        dicom.write_dicom_seg(np.zeros(image.shape, np.uint8), shifted, root / "scans" / "case_dicom",
                              tmp_path / "seg.dcm", {1: "liver"})
    assert not (tmp_path / "seg.dcm").exists()
