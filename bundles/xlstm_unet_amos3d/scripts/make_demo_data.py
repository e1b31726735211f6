# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic abdominal MRI set in exactly the AMOS22 layout (or nnU-Net's Dataset702 layout).

    python bundles/xlstm_unet_amos3d/scripts/make_demo_data.py --output /tmp/amos_demo

AMOS22 layout: ``dataset.json``, ``imagesTr/labelsTr`` (training), ``imagesVa/labelsVa`` (validation), ``imagesTs``
(unlabelled); ids below 500 are CT, from 500 up MRI; labels in AMOS numbering (1 spleen ... 13 duodenum, 14 bladder,
15 prostate/uterus). Each case is a body with 13 organ-like shapes (deformed ellipsoids and tubes) of distinct
intensities, a coil bias field and noise, anisotropic voxels that differ between cases, and a scanner-like affine
(axes flipped as DICOM-derived scans are, slightly tilted). Two CT cases are included so that data preparation has
something to leave out. The same seed gives the same files.
"""

from __future__ import annotations

from xlstm_bundle_tools.abdomen_phantom import demo_main, make_case, write_demo  # noqa: F401 (shared with the 2D bundle)

# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py
# (12 labelled MR cases give fold 0 two validation cases; one unlabelled case for inference).
SIZES = {
    "demo": {"train": 8, "val": 2, "test": 2, "ct": 2},
    "verify": {"train": 10, "val": 2, "test": 1, "ct": 1},
}


def main(argv: list[str] | None = None) -> None:
    demo_main(argv, SIZES, default_layout="amos22", description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
