# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""A synthetic abdominal MRI phantom in the AMOS22 layout or nnU-Net's Dataset702_AbdomenMR layout.

Shared by the demo generators of ``xlstm_unet_amos3d`` (volumes) and ``xlstm_unet_abdomenmr2d`` (trained on their
axial slices). Each case is a body with 13 organ-like shapes (deformed ellipsoids and tubes) of distinct
intensities, a coil bias field and noise, anisotropic voxels that differ between cases, and a scanner-like affine
(axes flipped as DICOM-derived scans are, slightly tilted). In the AMOS22 layout two CT cases are included so that
data preparation has something to leave out. The same seed gives the same files.

AMOS22 layout: ``dataset.json``, ``imagesTr/labelsTr`` (training), ``imagesVa/labelsVa`` (validation), ``imagesTs``
(unlabelled); ids below 500 are CT, from 500 up MRI; labels in AMOS numbering (1 spleen ... 13 duodenum, 14 bladder,
15 prostate/uterus). Dataset702 layout: MRI only, ``imagesTr/amos_XXXX_0000.nii.gz`` + ``labelsTr`` and a labelled
test set ``imagesTs/labelsTs``, labels in the MRI numbering (1 liver ... 13 left kidney).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .abdomen_mr import AMOS22_LABELS, MR_ORGANS, canonical_organ
from .demo_sizes import add_size_options, chosen_sizes
from .io import atomic_write_json
from .synthetic import affine_for, bias_field, deformed_ellipsoid, mm_grid, tube, write_nifti

__all__ = ["make_case", "write_demo", "demo_main", "ELLIPSOIDS", "TUBES"]

logger = logging.getLogger("make_demo_data")

AMOS_INDEX = {canonical_organ(name): value for value, name in AMOS22_LABELS.items()}

# Patient coordinates in mm, RAS+ as NIfTI, nibabel and MONAI use them: +x points to the patient's right, +y anterior,
# +z superior. So organs on the patient's right (liver, gallbladder, right
# kidney, IVC) have x > 0, those on the left (spleen, stomach, left kidney, aorta) x < 0. tests/bundles/
# test_demo_laterality.py checks the written files' world coordinates.
# (organ, centre (x, y, z), radii mm, MR intensity, in-plane angle in degrees)
ELLIPSOIDS = [
    ("liver", (70, 10, 45), (85, 70, 70), 0.55, -10),
    ("spleen", (-90, -35, 50), (32, 45, 50), 0.32, 20),
    ("right kidney", (70, -60, -15), (26, 30, 48), 0.75, -15),
    ("left kidney", (-72, -60, -5), (26, 30, 48), 0.75, 15),
    ("stomach", (-45, 35, 40), (45, 32, 40), 0.22, -25),
    ("pancreas", (-15, -5, 5), (60, 12, 12), 0.48, -15),
    ("duodenum", (35, 5, -15), (18, 16, 32), 0.38, 0),
    ("gallbladder", (45, 48, 10), (14, 14, 24), 0.95, 0),
    ("right adrenal gland", (42, -45, 48), (9, 6, 16), 0.62, 0),
    ("left adrenal gland", (-42, -45, 42), (9, 6, 16), 0.62, 0),
]
# (organ, centre path x(z), y(z) in mm, radius mm, z range mm, intensity): the aorta left of the midline, the IVC right
TUBES = [
    ("aorta", (lambda z: -12 - 0.05 * z, lambda z: -38 + 0 * z), 11, (-150, 150), 0.85),
    ("inferior vena cava", (lambda z: 22 + 0 * z, lambda z: -32 + 0.04 * z), 10, (-90, 90), 0.68),
    ("esophagus", (lambda z: -8 - 0.1 * z, lambda z: -25 + 0 * z), 7, (60, 150), 0.28),
]


def make_case(rng: np.random.Generator, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic case: (image int16, label uint8 in AMOS numbering, affine)."""
    spacing = (float(rng.uniform(3.0, 3.8)),) * 2 + (float(rng.uniform(6.0, 8.0)),)
    fov_mm = (380.0, 300.0, float(rng.uniform(220, 260)))
    shape = tuple(int(round(f / s)) for f, s in zip(fov_mm, spacing))
    gi, gj, gk = mm_grid(shape, spacing)
    # the affine flips x and y (voxel axes point to the patient's left, posterior, superior: LPS, as DICOM conversions
    # write them), so the RAS coordinates of voxel (i, j, k) are (-gi, -gj, gk), up to the affine's tilt and offset
    grid = (-gi, -gj, gk)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-10, 10, size=3)
    body = deformed_ellipsoid((grid[0], grid[1], 0 * grid[2]), (0, 0, 0), (170 * scale, 125 * scale, 1e6), rng, 0.03)
    inner = deformed_ellipsoid((grid[0], grid[1], 0 * grid[2]), (0, -5, 0), (150 * scale, 105 * scale, 1e6), rng, 0.03)
    label = np.zeros(shape, np.uint8)
    intensity = np.zeros(shape, np.float32)
    intensity[body] = 0.85 if modality == "MR" else 0.2  # subcutaneous fat (bright on T1 MR)
    intensity[inner] = 0.15 if modality == "MR" else 0.45  # muscle and bowel background
    for name, centre, radii, value, angle in ELLIPSOIDS:
        centre = np.asarray(centre) * scale + shift
        mask = deformed_ellipsoid(grid, centre, np.asarray(radii) * scale * rng.uniform(0.9, 1.1), rng, 0.12,
                                  angle + rng.uniform(-8, 8)) & inner
        label[mask] = AMOS_INDEX[name]
        intensity[mask] = value + rng.uniform(-0.04, 0.04)
    for name, (path_x, path_y), radius, z_range, value in TUBES:
        centre_path = lambda z, px=path_x, py=path_y: (px(z) * scale + shift[0], py(z) * scale + shift[1])  # noqa: E731
        mask = tube(grid, centre_path, radius * scale, z_range) & inner
        label[mask] = AMOS_INDEX[name]
        intensity[mask] = value + rng.uniform(-0.04, 0.04)
    if modality == "CT":  # a bladder low in the pelvis: label 14 exists only in CT
        mask = deformed_ellipsoid(grid, (0, 30, -100 + shift[2]), (40, 35, 30), rng, 0.1) & inner
        label[mask] = AMOS_INDEX["bladder"]
        intensity[mask] = 0.3
    image = intensity * bias_field(shape, rng, 0.25 if modality == "MR" else 0.02)
    image = image + rng.normal(0, 0.04, shape).astype(np.float32)
    image = (np.clip(image, 0, None) * 1000 if modality == "MR" else image * 1400 - 1000).astype(np.int16)
    affine = affine_for(spacing, shape, flip_xy=True, tilt_deg=float(rng.uniform(-3, 3)))
    return image, label, affine


def write_demo(output: Path, n_train: int = 8, n_val: int = 2, n_test: int = 2, n_ct: int = 2, seed: int = 0,
               layout: str = "amos22") -> None:
    """Write the demo set under ``output`` in ``layout`` ``"amos22"`` or ``"nnunet702"``."""
    rng = np.random.default_rng(seed)
    output.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list] = {"training": [], "validation": [], "test": []}
    plan = [("Tr", 1 + i, "CT") for i in range(n_ct)] + [("Tr", 507 + i, "MR") for i in range(n_train)]
    plan += [("Va", 580 + i, "MR") for i in range(n_val)] + [("Ts", 600 + i, "MR") for i in range(n_test)]
    amos_to_mr = {AMOS_INDEX[name]: i + 1 for i, name in enumerate(MR_ORGANS)}
    for split, number, modality in plan:
        image, label, affine = make_case(rng, modality)
        case = f"amos_{number:04d}"
        if layout == "amos22":
            write_nifti(output / f"images{split}" / f"{case}.nii.gz", image, affine)
            if split != "Ts":
                write_nifti(output / f"labels{split}" / f"{case}.nii.gz", label, affine)
            key = {"Tr": "training", "Va": "validation", "Ts": "test"}[split]
            item = {"image": f"./images{split}/{case}.nii.gz"}
            if split != "Ts":
                item["label"] = f"./labels{split}/{case}.nii.gz"
            entries[key].append(item)
        else:  # nnU-Net Dataset702_AbdomenMR: MR only, labels renumbered, test set labelled
            if modality != "MR":
                continue
            folder = "Tr" if split in ("Tr", "Va") else "Ts"
            mr_label = np.zeros_like(label)
            for amos_value, mr_value in amos_to_mr.items():
                mr_label[label == amos_value] = mr_value
            write_nifti(output / f"images{folder}" / f"{case}_0000.nii.gz", image, affine)
            write_nifti(output / f"labels{folder}" / f"{case}.nii.gz", mr_label, affine)
            entries["training" if folder == "Tr" else "test"].append(case)
        logger.info("wrote %s (%s, %s, %s voxels)", case, split, modality, "x".join(map(str, image.shape)))
    if layout == "amos22":
        dataset = {
            "name": "AMOS",
            "description": "Synthetic demo in the layout of the AMOS 2022 challenge (not real data)",
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": {str(k): v for k, v in AMOS22_LABELS.items()},
            "numTraining": len(entries["training"]),
            "numValidation": len(entries["validation"]),
            "numTest": len(entries["test"]),
            **entries,
        }
    else:
        dataset = {
            "channel_names": {"0": "MR"},
            "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(MR_ORGANS)}},
            "numTraining": len(entries["training"]),
            "file_ending": ".nii.gz",
            "name": "Dataset702_AbdomenMR",
            "description": "Synthetic demo in the layout of nnU-Net's Dataset702_AbdomenMR (not real data)",
        }
    atomic_write_json(output / "dataset.json", dataset)


def demo_main(argv: Sequence[str] | None, sizes: Mapping[str, Mapping[str, int]], default_layout: str,
              description: str) -> None:
    """The command line of both AMOS bundles' ``scripts/make_demo_data.py`` (each keeps its own ``SIZES``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True, type=Path, help="folder to create")
    add_size_options(parser, sizes, {
        "train": "labelled MR training cases (imagesTr)",
        "val": "labelled MR validation cases (imagesTr in Dataset702, imagesVa in AMOS22)",
        "test": "MR test cases (imagesTs: labelled in Dataset702, unlabelled in AMOS22)",
        "ct": "CT cases mixed into imagesTr (AMOS22 layout only)",
    })
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("amos22", "nnunet702"), default=default_layout)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, sizes)
    write_demo(args.output, n["train"], n["val"], n["test"], n["ct"], args.seed, args.layout)
    logger.info("demo data in %s", args.output)
