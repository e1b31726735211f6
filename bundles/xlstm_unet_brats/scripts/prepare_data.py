# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare BraTS 2023 for the bundle: check every case, list the four modalities in the network's order, make folds.

    python bundles/xlstm_unet_brats/scripts/prepare_data.py \
        --source /data/ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData \
                 /data/ASNR-MICCAI-BraTS2023-GLI-Challenge-ValidationData \
        --output /data/brats23_prepared

Reads BraTS 2023 exactly as distributed: case folders ``BraTS-GLI-XXXXX-XXX`` holding
``BraTS-GLI-XXXXX-XXX-{t1c,t1n,t2f,t2w,seg}.nii.gz``; the other 2023 sub-challenges (MEN, MET, PED, SSA) use the
same naming and are accepted. Case folders are found up to two levels below each ``--source`` (a challenge folder, or
a parent holding several). Cases without a ``-seg`` file (the validation releases) are listed for inference only.

Every case is read fully first. A missing modality, a modality whose shape or affine differs from the others (or from
the segmentation), NaN voxels, or a label value other than 0, 1, 2, 3 stops the run with an error naming the case
and file; nothing is written then. Sources are never modified. The datalist (``<output>/datalist.json``) lists each
case's modalities in the order t2w, t2f, t1n, t1c (the network's input channels) and assigns labelled cases to
seeded folds.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from xlstm_bundle_tools.checks import InvalidInputError, check_cases, check_nifti_case
from xlstm_bundle_tools.datalist import preparation_main, write_datalist

try:
    from .brats import CASE_PATTERN, LABELS, MODALITIES, case_files
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from brats import CASE_PATTERN, LABELS, MODALITIES, case_files

__all__ = ["prepare", "find_cases"]

logger = logging.getLogger("prepare_data")


def find_cases(sources: list[Path]) -> tuple[list[dict], list[dict]]:
    """(labelled, unlabelled) entries of every BraTS case folder under ``sources``; raises for incomplete cases."""
    labelled, unlabelled, seen = [], [], {}
    for source in sources:
        if not source.is_dir():
            raise InvalidInputError(f"{source}: not a folder.")
        folders = [p for p in source.glob("*") if p.is_dir()] + [p for p in source.glob("*/*") if p.is_dir()]
        for case_dir in sorted(p for p in folders if CASE_PATTERN.fullmatch(p.name)):
            case_id = case_dir.name
            if case_id in seen:
                raise InvalidInputError(f"{case_dir}: case {case_id} also found at {seen[case_id]}.")
            seen[case_id] = case_dir
            files = case_files(case_dir, case_id)
            missing = [m for m in MODALITIES if not files[m].is_file()]
            if missing:
                names = ", ".join(files[m].name for m in missing)
                raise InvalidInputError(f"{case_dir}: case {case_id} is missing modality {missing} ({names}).")
            entry = {"case_id": case_id, "image": [str(files[m]) for m in MODALITIES]}
            if files["seg"].is_file():
                labelled.append({**entry, "label": str(files["seg"])})
            else:
                unlabelled.append(entry)
    return labelled, unlabelled


def prepare(sources: list[Path], output: Path, num_folds: int = 5, seed: int = 0) -> dict:
    sources = [s.resolve() for s in sources]
    labelled, unlabelled = find_cases(sources)
    if not labelled and not unlabelled:
        raise InvalidInputError(f"{', '.join(map(str, sources))}: no BraTS case folders (BraTS-XXX-00000-000) found.")
    if not labelled:
        raise InvalidInputError(f"{', '.join(map(str, sources))}: no case has a -seg file; nothing to train on.")
    logger.info("%d labelled and %d unlabelled cases", len(labelled), len(unlabelled))
    check_cases(labelled + unlabelled, class_values=sorted(LABELS), check=check_nifti_case,
                desc="checking every case")  # raises, naming each bad file, before anything is written
    content = write_datalist(
        output.resolve() / "datalist.json", labelled, unlabelled, num_folds=num_folds, seed=seed,
        name="BraTS 2023", sources=[str(s) for s in sources], modalities=list(MODALITIES),
        labels={str(k): v for k, v in LABELS.items()},
    )
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="BraTS 2023 folder(s)",
                     output_help="folder for datalist.json", several_sources=True, argv=argv)


if __name__ == "__main__":
    main()
