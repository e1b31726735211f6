# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a handful of synthetic brain-tumour cases in exactly the BraTS 2023 layout.

    python bundles/xlstm_unet_brats/scripts/make_demo_data.py --output /tmp/brats_demo

Layout, as the challenge distributes it::

    <output>/ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData/BraTS-GLI-00000-000/
        BraTS-GLI-00000-000-t1c.nii.gz  -t1n  -t2f  -t2w  -seg.nii.gz
    <output>/ASNR-MICCAI-BraTS2023-GLI-Challenge-ValidationData/BraTS-GLI-00100-000/   (no -seg file)

Each case is a skull-stripped brain (grey and white matter, ventricles and sulcal CSF) with a tumour: an enhancing
rim (label 3) around a necrotic core (label 1), inside peritumoral oedema (label 2). The four co-registered
modalities have the usual relative contrasts: enhancement only on T1c, oedema and fluid bright on T2, CSF suppressed
on FLAIR (t2f), white matter brighter than grey on T1. Each modality gets its own bias field and noise. The affine is
scanner-like (axes flipped as BraTS files are). The same seed gives the same files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from xlstm_bundle_tools.demo_sizes import add_size_options, chosen_sizes
from xlstm_bundle_tools.synthetic import affine_for, bias_field, deformed_ellipsoid, mm_grid, write_nifti

try:
    from .brats import MODALITIES, case_files
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from brats import MODALITIES, case_files

logger = logging.getLogger("make_demo_data")

# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py
# (10 labelled cases give fold 0 two validation cases; the unlabelled ValidationData cases are for inference).
SIZES = {"demo": {"train": 8, "val": 2}, "verify": {"train": 10, "val": 2}}

TRAIN_FOLDER = "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
VAL_FOLDER = "ASNR-MICCAI-BraTS2023-GLI-Challenge-ValidationData"

# tissue: background, CSF, grey matter, white matter, oedema, necrosis, enhancing tumour
TISSUES = ("background", "csf", "gm", "wm", "edema", "necrosis", "enhancing")
CONTRAST = {
    "t1n": (0.0, 0.25, 0.55, 0.75, 0.50, 0.30, 0.55),
    "t1c": (0.0, 0.25, 0.55, 0.75, 0.50, 0.30, 1.00),
    "t2w": (0.0, 1.00, 0.60, 0.40, 0.85, 0.90, 0.60),
    "t2f": (0.0, 0.10, 0.55, 0.45, 0.90, 0.50, 0.60),
}


def make_case(rng: np.random.Generator, spacing: float, shape: tuple[int, int, int]):
    """One case: ({modality: int16 volume}, seg uint8, affine)."""
    grid = mm_grid(shape, (spacing,) * 3)
    brain = deformed_ellipsoid(grid, (0, 0, 0), (68 * rng.uniform(0.93, 1.05), 82 * rng.uniform(0.93, 1.05), 60), rng,
                               0.05)
    white = deformed_ellipsoid(grid, (0, 0, 2), (52, 66, 46), rng, 0.08) & brain
    ventricles = (deformed_ellipsoid(grid, (-9, 5, 8), (6, 22, 10), rng, 0.1)
                  | deformed_ellipsoid(grid, (9, 5, 8), (6, 22, 10), rng, 0.1))
    sulci = brain & ~deformed_ellipsoid(grid, (0, 0, 0), (64, 78, 56), rng, 0.05)
    tissue = np.zeros(shape, np.uint8)
    tissue[brain] = 2
    tissue[white] = 3
    tissue[(ventricles | sulci) & brain] = 1
    # tumour somewhere in a hemisphere, away from the midline
    centre = np.array([rng.choice([-1, 1]) * rng.uniform(18, 32), rng.uniform(-30, 30), rng.uniform(-15, 20)])
    r_core = rng.uniform(13, 20)
    edema = deformed_ellipsoid(grid, centre, r_core * rng.uniform(1.6, 2.1, size=3), rng, 0.25) & brain
    core = deformed_ellipsoid(grid, centre, np.full(3, r_core) * rng.uniform(0.85, 1.15, size=3), rng, 0.2) & brain
    necrosis = deformed_ellipsoid(grid, centre, np.full(3, r_core * rng.uniform(0.55, 0.7)), rng, 0.2) & core
    seg = np.zeros(shape, np.uint8)
    seg[edema] = 2
    seg[core] = 3
    seg[necrosis] = 1
    tissue[edema] = 4
    tissue[core] = 6
    tissue[necrosis] = 5
    images = {}
    for modality in MODALITIES:
        lut = np.asarray(CONTRAST[modality], np.float32)
        image = lut[tissue] * rng.uniform(0.9, 1.1)
        image = image * bias_field(shape, rng, 0.15) + rng.normal(0, 0.03, shape).astype(np.float32)
        image[~brain] = 0.0  # skull-stripped, as BraTS distributes
        images[modality] = (np.clip(image, 0, None) * 1000).astype(np.int16)
    return images, seg, affine_for((spacing,) * 3, shape, flip_xy=True, tilt_deg=0.0)


def write_demo(output: Path, n_train: int = 8, n_val: int = 2, seed: int = 0, spacing: float = 2.0,
               shape: tuple[int, int, int] = (80, 96, 72), prefix: str = "GLI") -> None:
    rng = np.random.default_rng(seed)
    plan = [(TRAIN_FOLDER, i, True) for i in range(n_train)] + [(VAL_FOLDER, 100 + i, False) for i in range(n_val)]
    for folder, number, labelled in plan:
        case_id = f"BraTS-{prefix}-{number:05d}-000"
        case_dir = output / folder.replace("GLI", prefix) / case_id
        images, seg, affine = make_case(rng, spacing, shape)
        files = case_files(case_dir, case_id)
        for modality, data in images.items():
            write_nifti(files[modality], data, affine)
        if labelled:
            write_nifti(files["seg"], seg, affine)
        logger.info("wrote %s (%s)", case_id, "labelled" if labelled else "no seg: validation")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    add_size_options(parser, SIZES, {"train": "labelled cases (TrainingData)", "val": "unlabelled cases (ValidationData)"})
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm (BraTS itself is 1 mm)")
    parser.add_argument("--prefix", default="GLI", choices=("GLI", "MEN", "MET", "PED", "SSA"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, SIZES)
    write_demo(args.output, n["train"], n["val"], args.seed, args.spacing, prefix=args.prefix)
    logger.info("demo data in %s", args.output)


if __name__ == "__main__":
    main()
