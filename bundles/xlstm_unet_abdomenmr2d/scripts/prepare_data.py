# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare abdominal MRI for the 2D bundle: check every case, map labels to the 13 MRI organs, write a datalist.

    python bundles/xlstm_unet_abdomenmr2d/scripts/prepare_data.py --source /data/Dataset702_AbdomenMR --output /data/abdomenmr

Reads nnU-Net's ``Dataset702_AbdomenMR`` (U-Mamba's release: ``imagesTr/*_0000.nii.gz``, ``labelsTr``, the 50
labelled test scans in ``imagesTs/labelsTs``, ``dataset.json``) or AMOS22 as distributed (``imagesTr/Va/Ts``; MRI
cases only, ids >= 500; labels renumbered by organ name, CT-only organs to background), exactly as the 3D bundle does
(``xlstm_bundle_tools.abdomen_mr``). The datalist lists 3D volumes: training takes axial slices of them on the fly,
inference segments whole volumes slice by slice. Every case is read in full first; a bad file stops the run with an
error naming it, before anything is written. Source files are never modified.
"""

from __future__ import annotations

from xlstm_bundle_tools.abdomen_mr import prepare
from xlstm_bundle_tools.datalist import preparation_main

__all__ = ["prepare"]


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="Dataset702_AbdomenMR or AMOS22 folder",
                     output_help="folder for datalist.json and renumbered labels", argv=argv)


if __name__ == "__main__":
    main()
