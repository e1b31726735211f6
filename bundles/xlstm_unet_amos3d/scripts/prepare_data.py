# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare AMOS abdominal MRI for the bundle: check every case, map labels to the 13 MRI organs, write a datalist.

    python bundles/xlstm_unet_amos3d/scripts/prepare_data.py --source /data/amos22 --output /data/amos_mr_prepared

Reads either release exactly as distributed:

- AMOS22 (Zenodo 7262581): ``dataset.json`` (label index -> name), ``imagesTr/labelsTr``, ``imagesVa/labelsVa``,
  ``imagesTs``; files ``amos_XXXX.nii.gz``. MRI cases are ids >= 500; CT cases are left out. Labels are renumbered by
  organ *name* to the MRI numbering (liver 1 ... left kidney 13); bladder and prostate/uterus (CT-only organs) become
  background. Renumbered labels are written to ``<output>/labels/`` (uint8, the source header's geometry).
- nnU-Net ``Dataset702_AbdomenMR`` (U-Mamba / xLSTM-UNet): ``dataset.json`` (name -> value), ``imagesTr/*_0000.nii.gz``,
  ``labelsTr``, and the 50 labelled test cases in ``imagesTs/labelsTs``. Labels already use the MRI numbering and are
  referenced in place (renumbered copies only if the dataset.json order differs).

Every case is read fully first: a missing or corrupt file, NaN voxels, labels outside the class set, or an image and
label whose shapes or affines differ stop the run with an error naming each bad file, before anything is written.
Source files are never modified. The datalist (``<output>/datalist.json``) assigns the labelled cases to seeded folds.
"""

from __future__ import annotations

# the preparation itself is shared with the 2D bundle (xlstm_unet_abdomenmr2d)
from xlstm_bundle_tools.abdomen_mr import detect_layout, label_mapping, prepare
from xlstm_bundle_tools.datalist import preparation_main

__all__ = ["prepare", "detect_layout", "label_mapping"]


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="AMOS22 or Dataset702_AbdomenMR folder",
                     output_help="folder for datalist.json and renumbered labels", argv=argv)


if __name__ == "__main__":
    main()
