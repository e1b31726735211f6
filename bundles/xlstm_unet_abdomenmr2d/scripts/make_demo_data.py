# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic abdominal MRI set in exactly nnU-Net's Dataset702_AbdomenMR layout (or AMOS22's).

    python bundles/xlstm_unet_abdomenmr2d/scripts/make_demo_data.py --output /tmp/abdomenmr_demo

The cases are 3D volumes, as in the real release: the bundle trains on their axial slices and segments new volumes
slice by slice. They come from the AMOS phantom the 3D bundle uses (``xlstm_bundle_tools.abdomen_phantom``): 13
organ-like shapes of distinct intensities, a coil bias field, noise, anisotropic voxels that differ between cases
(about 3.4 mm in-plane, 6-8 mm slices) and a scanner-like, slightly tilted affine.

Dataset702 layout (the default): ``dataset.json`` (nnU-Net v2: ``channel_names``, ``labels`` name -> value,
``file_ending``), ``imagesTr/amos_XXXX_0000.nii.gz`` + ``labelsTr/amos_XXXX.nii.gz``, and the labelled test set
``imagesTs`` + ``labelsTs``; labels 1 liver ... 13 left kidney. ``--layout amos22`` writes AMOS22's own layout
(``imagesTr/Va/Ts``, AMOS numbering, CT cases mixed in). The same seed gives the same files.
"""

from __future__ import annotations

from xlstm_bundle_tools.abdomen_phantom import demo_main  # the 3D bundle's phantom and command line

# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py. In the
# Dataset702 layout "train" and "val" both land in imagesTr (10 labelled cases give fold 0 two validation cases) and
# "test" in imagesTs/labelsTs; "ct" only exists in the AMOS22 layout.
SIZES = {
    "demo": {"train": 8, "val": 2, "test": 2, "ct": 2},
    "verify": {"train": 8, "val": 2, "test": 1, "ct": 1},
}


def main(argv: list[str] | None = None) -> None:
    demo_main(argv, SIZES, default_layout="nnunet702", description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
