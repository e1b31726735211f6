# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic set in the dataset's distributed layout (here: the Medical Segmentation Decathlon's).

    python bundles/__NAME__/scripts/make_demo_data.py --output /tmp/__NAME___demo [--size demo|verify]

TODO: write the layout your dataset is distributed in, so that scripts/prepare_data.py reads the demo exactly as it
reads the real release. This placeholder writes MSD's: ``dataset.json``, ``imagesTr``/``labelsTr`` (labelled) and
``imagesTs`` (unlabelled). Each case is a body with one blob per label in a distinct intensity, a smooth bias field,
noise and a scanner-like (LPS-derived) affine. Organs named "left ..." or "right ..." are put on that side in RAS world
coordinates (+x is the patient's right), which tests/bundles/test_demo_laterality.py checks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from xlstm_bundle_tools.demo_sizes import add_size_options, chosen_sizes
from xlstm_bundle_tools.io import atomic_write_json
from xlstm_bundle_tools.synthetic import affine_for, bias_field, deformed_ellipsoid, mm_grid, write_nifti

try:
    from .labels import LABELS
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from labels import LABELS

logger = logging.getLogger("make_demo_data")
# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py
# (12 labelled cases give fold 0 of 5 at least two validation cases; one unlabelled case for inference).
SIZES = {"demo": {"train": 10, "test": 2}, "verify": {"train": 12, "test": 1}}
SPACING_MM = (2.0, 2.0, 3.0)
FIELD_OF_VIEW_MM = (200.0, 160.0, 150.0)


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One case: (image int16, label uint8, affine)."""
    shape = tuple(int(round(f / s)) for f, s in zip(FIELD_OF_VIEW_MM, SPACING_MM))
    gi, gj, gk = mm_grid(shape, SPACING_MM)
    grid = (-gi, -gj, gk)  # the affine flips x and y (LPS voxel axes): these are RAS coordinates
    body = deformed_ellipsoid(grid, (0, 0, 0), (90, 70, 1e6), rng, 0.03)
    image = np.where(body, 0.2, 0.0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for index, name in enumerate(LABELS):
        words = name.lower().split()
        x = 45.0 if "right" in words else -45.0 if "left" in words else 0.0
        z = (index - (len(LABELS) - 1) / 2) * 100.0 / max(len(LABELS), 1)
        mask = deformed_ellipsoid(grid, (x + rng.uniform(-5, 5), rng.uniform(-5, 5), z), (22, 18, 20), rng, 0.12) & body
        label[mask] = index + 1
        image[mask] = 0.4 + 0.5 * (index + 1) / len(LABELS)
    image = image * bias_field(shape, rng, 0.2) + rng.normal(0, 0.04, shape).astype(np.float32)
    return (np.clip(image, 0, None) * 1000).astype(np.int16), label, affine_for(SPACING_MM, shape, flip_xy=True)


def write_demo(output: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    training, test = [], []
    for number in range(n_train + n_test):
        image, label, affine = make_case(rng)
        case = f"case_{number:03d}"
        if number < n_train:
            write_nifti(output / "imagesTr" / f"{case}.nii.gz", image, affine)
            write_nifti(output / "labelsTr" / f"{case}.nii.gz", label, affine)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        else:
            write_nifti(output / "imagesTs" / f"{case}.nii.gz", image, affine)
            test.append(f"./imagesTs/{case}.nii.gz")
        logger.info("wrote %s", case)
    atomic_write_json(output / "dataset.json", {
        "name": "__NAME__", "description": "Synthetic demo (not real data)", "tensorImageSize": "3D",
        "modality": {"0": "__MODALITY__"}, "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(LABELS)}},
        "numTraining": len(training), "numTest": len(test), "training": training, "test": test,
    })


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path, help="folder to create")
    add_size_options(parser, SIZES, {"train": "labelled cases (imagesTr)", "test": "unlabelled cases (imagesTs)"})
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, SIZES)
    write_demo(args.output, n["train"], n["test"], args.seed)
    logger.info("demo data in %s", args.output)


if __name__ == "__main__":
    main()
