# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""DICOM in and out for the 3D bundles: a series folder as input, DICOM-SEG as output.

Input needs nothing new: MONAI's ``LoadImage`` picks ``ITKReader`` for a folder (nibabel, PIL and the others refuse
it by suffix) and ITK's GDCM reader loads the series in the folder, slices ordered along the normal, in LPS, which
MONAI turns into a RAS affine. So ``{"image": "/data/case1/series"}`` runs through the bundles' preprocessing as a
NIfTI does. Only the NIfTI-specific preflight refuses a folder; :func:`check_volume_case` is the preflight for any
file ITK reads, DICOM folders included.

Output: :func:`write_dicom_seg` writes a DICOM Segmentation (highdicom) of a label map computed on a series'
grid: one segment per label value, labelled with the bundle's names (``channel_def`` in the metadata), coloured
as the bundle's overlay pictures are (:func:`xlstm_bundle_tools.pictures.label_colours`), with SNOMED CT property
codes where the name has one, referencing every source instance. 3D Slicer (QuantitativeReporting / DICOM
module) and OHIF read this standard object. :func:`read_dicom_seg` reads it back onto the source grid.

``pydicom`` and ``highdicom`` are optional (``pip install xlstm-seg[dicom]``); importing this module does not need
them, the functions that do say so.

:func:`write_dicom_series` turns a volume and its affine into a single-frame MR/CT series, for tests and demos.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .checks import InvalidInputError, check_image_array
from .io import atomic_write

__all__ = [
    "is_dicom_file",
    "is_dicom_series_dir",
    "check_volume_case",
    "write_dicom_series",
    "read_series",
    "labels_from_metadata",
    "write_dicom_seg",
    "read_dicom_seg",
]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
GEOMETRY_ATOL_MM = 1e-3


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed for DICOM-SEG; install the optional extra: pip install 'xlstm-seg[dicom]'"
        ) from err


def is_dicom_file(path: str | os.PathLike) -> bool:
    """A DICOM Part 10 file: ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_series_dir(path: str | os.PathLike) -> bool:
    """A folder holding at least one DICOM file directly (sub-folders are not searched)."""
    path = Path(path)
    return path.is_dir() and any(is_dicom_file(p) for p in path.iterdir() if p.is_file())


def check_volume_case(image: str | Sequence[str], label: str | None = None, class_values=None) -> dict:
    """Preflight for images ITK reads (NRRD, MHA/MHD, NIfTI, DICOM series folders): readable, 3D, finite.

    Same signature and return value as :func:`xlstm_bundle_tools.checks.check_nifti_case`, so a config can pass it
    as ``check=`` to :func:`check_cases`. Labels are not handled here (inference only).
    """
    from monai.transforms import LoadImage

    images = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    info = None
    for path in images:
        if not Path(path).exists():
            raise InvalidInputError(f"{path}: file or folder not found.")
        if Path(path).is_dir() and not is_dicom_series_dir(path):
            raise InvalidInputError(f"{path}: folder holds no DICOM files.")
        try:
            data = LoadImage(image_only=True, reader="ITKReader" if Path(path).is_dir() else None)(str(path))
        except Exception as err:
            raise InvalidInputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err}).") from err
        check_image_array(data, str(path))
        if data.ndim not in (3, 4):
            raise InvalidInputError(f"{path}: expected a 3D volume, got {data.ndim}D data of shape {tuple(data.shape)}.")
        if info is None:
            affine = np.asarray(data.affine, dtype=np.float64)
            info = {"shape": tuple(int(s) for s in data.shape[:3]), "affine": affine,
                    "spacing": tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))}
    return info


# ------------------------------------------------------------------------------------------------ series
def write_dicom_series(
    volume: np.ndarray,
    affine: np.ndarray,
    folder: str | os.PathLike,
    *,
    modality: str = "MR",
    patient_id: str = "XLSTM-SEG-DEMO",
    series_description: str = "synthetic series",
    study_uid: str | None = None,
) -> list[Path]:
    """Write ``volume`` (x, y, z: NIfTI voxel order) with its RAS ``affine`` as one DICOM file per slice.

    The geometry is exact: pixel (row r, column c) of slice k is voxel (c, r, k), ImagePositionPatient and
    ImageOrientationPatient come from the affine in LPS. Integer data are stored as signed 16 bit with rescale 1/0;
    the affine's first two columns must be orthogonal (any DICOM slice is).
    """
    pydicom = _need("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, CTImageStorage, generate_uid

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.integer) or volume.min() < -32768 or volume.max() > 32767:
        raise ValueError("write_dicom_series stores int16 pixels; scale the volume to integers first")
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(float(row_dir @ col_dir)) > 1e-6:
        raise ValueError("the affine's first two axes are not orthogonal; DICOM slices cannot represent it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    today = datetime.date.today().strftime("%Y%m%d")
    paths = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = modality
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Demo^Synthetic", patient_id, "", "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.SeriesDescription, ds.Manufacturer = series_description, "xlstm-seg synthetic"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ImagePositionPatient = [float(v) for v in lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = float(spacing[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype("<i2")).tobytes()
        path = folder / f"slice_{k:04d}.dcm"
        atomic_write(path, lambda tmp, d=ds: _save_dataset(d, tmp), suffix=".dcm")
        paths.append(path)
    return paths


def _save_dataset(ds, path: str) -> None:
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom 3
    except TypeError:
        ds.save_as(path, write_like_original=False)  # pydicom 2 (the MONAI Label environment pins pydicom<3)


def read_series(folder: str | os.PathLike):
    """The DICOM instances of the one series in ``folder`` (pydicom datasets, pixel data included)."""
    pydicom = _need("pydicom")
    datasets = [pydicom.dcmread(p) for p in sorted(Path(folder).iterdir()) if p.is_file() and is_dicom_file(p)]
    if not datasets:
        raise InvalidInputError(f"{folder}: folder holds no DICOM files.")
    series = {ds.SeriesInstanceUID for ds in datasets}
    if len(series) != 1:
        raise InvalidInputError(f"{folder}: holds {len(series)} DICOM series; expected one.")
    return datasets


def _slice_index(ds, lps_affine: np.ndarray) -> tuple[int, float]:
    """Index k of the grid slice an instance lies on, and its distance from that slice in mm."""
    position = np.asarray([float(v) for v in ds.ImagePositionPatient])
    voxel = np.linalg.solve(lps_affine[:3, :3], position - lps_affine[:3, 3])
    k = int(round(float(voxel[2])))
    residual = np.linalg.norm(lps_affine[:3, :3] @ (voxel - np.array([0.0, 0.0, k])))
    return k, float(residual)


def _frames_for_grid(datasets, shape: Sequence[int], affine: np.ndarray) -> list[int]:
    """For each source instance, the slice k of the (x, y, z) grid with RAS ``affine`` it is; checks the geometry."""
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    ks = []
    for ds in datasets:
        row_dir = np.asarray([float(v) for v in ds.ImageOrientationPatient[:3]])
        col_dir = np.asarray([float(v) for v in ds.ImageOrientationPatient[3:]])
        if not (np.allclose(row_dir, lps[:3, 0] / spacing[0], atol=1e-4)
                and np.allclose(col_dir, lps[:3, 1] / spacing[1], atol=1e-4)
                and (int(ds.Rows), int(ds.Columns)) == (int(shape[1]), int(shape[0]))):
            raise ValueError(
                f"instance {ds.SOPInstanceUID}: its rows/columns do not lie along the mask grid's first two axes; "
                "write DICOM-SEG only for masks computed on this series' own grid (no reorientation)."
            )
        k, residual = _slice_index(ds, lps)
        if residual > GEOMETRY_ATOL_MM + 1e-3 * spacing[2] or not 0 <= k < shape[2]:
            raise ValueError(f"instance {ds.SOPInstanceUID} lies off the mask grid (slice {k}, {residual:.3g} mm off).")
        ks.append(k)
    if sorted(ks) != list(range(shape[2])):
        raise ValueError(f"the series' {len(ks)} instances do not cover the mask's {shape[2]} slices one to one.")
    return ks


# ------------------------------------------------------------------------------------------------ segments
def labels_from_metadata(metadata: Mapping | str | os.PathLike) -> dict[int, str]:
    """``{label value: name}`` from ``network_data_format.outputs.<first>.channel_def``, background left out."""
    import json

    if not isinstance(metadata, Mapping):
        metadata = json.loads(Path(metadata).read_text())
    pred = next(iter(metadata["network_data_format"]["outputs"].values()))
    return {int(k): str(v) for k, v in pred.get("channel_def", {}).items() if str(v).lower() != "background"}


_ABNORMAL = (("necro", "Necrosis"), ("edema", "Edema"), ("oedema", "Edema"), ("tumour", "Neoplasm"),
             ("tumor", "Neoplasm"), ("lesion", "Lesion"))


def _property_codes(name: str):
    """(category, type) SNOMED CT codes for a label name, from pydicom's code dictionary."""
    from pydicom.sr.codedict import codes

    lowered = name.lower()
    for keyword, concept in _ABNORMAL:
        if keyword in lowered:
            return codes.SCT.MorphologicallyAbnormalStructure, getattr(codes.SCT, concept)
    words = [w for w in lowered.replace("-", " ").split() if w not in ("left", "right")]
    camel = "".join(w.capitalize() for w in words)
    try:
        return codes.SCT.AnatomicalStructure, getattr(codes.SCT, camel)
    except AttributeError:
        return codes.SCT.Tissue, codes.SCT.Tissue


def write_dicom_seg(
    mask: np.ndarray,
    mask_affine: np.ndarray,
    source: str | os.PathLike | Sequence,
    output: str | os.PathLike,
    labels: Mapping[int, str],
    *,
    algorithm_name: str = "xlstm-seg",
    algorithm_version: str = "0.1.0",
    series_description: str = "xlstm-seg segmentation",
) -> Path:
    """Write the label map ``mask`` (x, y, z) as a DICOM-SEG referencing the series it was computed on.

    Args:
        mask: integer label map on the source series' own grid (what the bundles' inference writes for a series).
        mask_affine: its RAS affine; checked against every source instance's position and orientation.
        source: the series folder, or its pydicom datasets.
        output: the ``.dcm`` file to write (atomically).
        labels: ``{label value: name}``; every value in ``mask`` other than 0 must be listed.
    """
    hd = _need("highdicom")
    from pydicom.uid import generate_uid

    from .pictures import label_colours

    datasets = read_series(source) if isinstance(source, (str, os.PathLike)) else list(source)
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[0] == 1:
        mask = mask[0]
    present = set(np.unique(mask).tolist()) - {0}
    unknown = sorted(present - set(labels))
    if unknown:
        raise ValueError(f"mask holds label values {unknown} that have no name in {dict(labels)}")
    ks = _frames_for_grid(datasets, mask.shape, mask_affine)
    values = sorted(int(v) for v in labels)
    colours = label_colours(max(values) + 1)
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=algorithm_version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, value in enumerate(values, start=1):
        category, kind = _property_codes(labels[value])
        rgb = tuple(int(round(255 * c)) for c in colours[value][:3])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=labels[value][:64], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, display_color=hd.color.CIELabColor.from_rgb(*rgb)))
    # segment numbers 1..N stand for the label values in order; frames follow the source instances' order
    numbered = np.zeros(mask.shape, dtype=np.uint16)
    for number, value in enumerate(values, start=1):
        numbered[mask == value] = number
    frames = np.stack([numbered[:, :, k].T for k in ks])
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=900,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="xlstm-seg",
        manufacturer_model_name=algorithm_name, software_versions=algorithm_version, device_serial_number="0",
        series_description=series_description, omit_empty_frames=False)
    output = Path(output)
    atomic_write(output, lambda tmp: seg.save_as(tmp), suffix=".dcm")
    return output


def read_dicom_seg(seg_path: str | os.PathLike, source: str | os.PathLike | Sequence, shape: Sequence[int],
                   affine: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Read a DICOM-SEG back as a label map on the grid (``shape``, RAS ``affine``) of its source series.

    Segment labels are mapped back to label values through their order (segment n = n-th smallest value), as
    :func:`write_dicom_seg` numbers them; returns (label map uint8/uint16, {segment number: segment label}).
    """
    hd = _need("highdicom")
    datasets = read_series(source) if isinstance(source, (str, os.PathLike)) else list(source)
    seg = hd.seg.segread(str(seg_path))
    ks = _frames_for_grid(datasets, shape, affine)
    uids = [ds.SOPInstanceUID for ds in datasets]
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers,
                                               combine_segments=True, relabel=False)
    out = np.zeros(tuple(shape), dtype=pixels.dtype)
    for frame, k in zip(pixels, ks):
        out[:, :, k] = frame.T
    names = {n: seg.get_segment_description(n).segment_label for n in numbers}
    return out, names

