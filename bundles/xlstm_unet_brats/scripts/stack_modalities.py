# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Stack a BraTS case's four modalities into one 4D NIfTI in the network's channel order (t2w, t2f, t1n, t1c).

    python bundles/xlstm_unet_brats/scripts/stack_modalities.py --case /data/.../BraTS-GLI-00000-000 --output /studies

MONAI Label sends one image file per case to a bundle, so a four-modality model needs them merged (as MSD Task01's
files are). The bundle's inference reads either form: a list of four files from the datalist, or one 4D file.
The modalities are checked first (present, readable, same grid, no NaN); the output is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from xlstm_bundle_tools.checks import InvalidInputError, check_nifti_case, load_nifti
from xlstm_bundle_tools.synthetic import write_nifti

try:
    from .brats import MODALITIES, case_files
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from brats import MODALITIES, case_files

__all__ = ["stack_case"]


def stack_case(case_dir: Path, output_dir: Path) -> Path:
    """Write ``<output_dir>/<case>.nii.gz`` with shape (H, W, D, 4) and the first modality's affine."""
    case_id = case_dir.name
    files = case_files(case_dir, case_id)
    missing = [m for m in MODALITIES if not files[m].is_file()]
    if missing:
        raise InvalidInputError(f"{case_dir}: case {case_id} is missing modality {missing}.")
    check_nifti_case([str(files[m]) for m in MODALITIES])
    volumes, affine = [], None
    for modality in MODALITIES:
        data, aff = load_nifti(files[modality])
        volumes.append(np.asarray(data, dtype=np.float32))
        affine = aff if affine is None else affine
    target = output_dir / f"{case_id}.nii.gz"
    if target.resolve() in {files[m].resolve() for m in MODALITIES}:
        raise InvalidInputError(f"{target}: refusing to overwrite an input modality.")
    write_nifti(target, np.stack(volumes, axis=-1), affine)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", required=True, type=Path, nargs="+", help="BraTS case folder(s)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the 4D files")
    args = parser.parse_args(argv)
    for case in args.case:  # an InputError ends it with only its message
        print(stack_case(case, args.output))


if __name__ == "__main__":
    main()
