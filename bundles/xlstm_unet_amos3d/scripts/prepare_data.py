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

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np

from xlstm_bundle_tools.checks import InvalidInputError, check_cases, check_nifti_case, load_nifti
from xlstm_bundle_tools.datalist import write_datalist
from xlstm_bundle_tools.synthetic import write_nifti

try:
    from .organs import MR_ORGANS, canonical_organ
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from organs import MR_ORGANS, canonical_organ

__all__ = ["prepare", "detect_layout", "label_mapping"]

logger = logging.getLogger("prepare_data")
MR_INDEX = {name: i + 1 for i, name in enumerate(MR_ORGANS)}
CT_ONLY = {"bladder", "prostate/uterus", "prostate", "uterus"}
CASE_ID = re.compile(r"amos_(\d+)")


def detect_layout(source: Path) -> tuple[str, dict]:
    """``("amos22" | "nnunet", dataset.json content)``; raises InvalidInputError if neither fits."""
    path = source / "dataset.json"
    if not path.is_file():
        raise InvalidInputError(f"{path}: not found; --source must be the AMOS22 or Dataset702_AbdomenMR folder.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}: not valid JSON ({err}).") from err
    labels = content.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InvalidInputError(f"{path}: has no 'labels' mapping.")
    if "channel_names" in content or "file_ending" in content:
        return "nnunet", content
    if all(str(k).isdigit() for k in labels):
        return "amos22", content
    raise InvalidInputError(f"{path}: neither the AMOS22 nor the nnU-Net v2 dataset.json format.")


def label_mapping(labels: dict, layout: str, source: str) -> dict[int, int]:
    """Source label value -> MRI label value, matched by organ name; CT-only organs map to 0."""
    pairs = [(int(k), v) for k, v in labels.items()] if layout == "amos22" else [(int(v), k) for k, v in labels.items()]
    mapping = {}
    for value, name in pairs:
        organ = canonical_organ(name)
        if organ == "background":
            mapping[value] = 0
        elif organ in MR_INDEX:
            mapping[value] = MR_INDEX[organ]
        elif organ in CT_ONLY:
            mapping[value] = 0
        else:
            raise InvalidInputError(f"{source}: unknown organ {name!r} (label {value}) in dataset.json.")
    missing = sorted(set(MR_INDEX.values()) - set(mapping.values()))
    if missing:
        raise InvalidInputError(f"{source}: dataset.json lacks organs {[MR_ORGANS[m - 1] for m in missing]}.")
    return mapping


def _amos22_cases(source: Path) -> tuple[list[dict], list[dict]]:
    labelled, unlabelled = [], []
    for split in ("Tr", "Va", "Ts"):
        for image in sorted((source / f"images{split}").glob("amos_*.nii.gz")):
            match = CASE_ID.fullmatch(image.name[: -len(".nii.gz")])
            if not match or int(match.group(1)) < 500:
                continue  # CT case, or not an AMOS file
            label = source / f"labels{split}" / image.name
            entry = {"case_id": image.name[: -len(".nii.gz")], "image": str(image), "source_split": split}
            if label.is_file():
                labelled.append({**entry, "label": str(label)})
            elif split == "Ts":
                unlabelled.append(entry)
            else:
                raise InvalidInputError(f"{label}: label file missing for {image}.")
    return labelled, unlabelled


def _nnunet_cases(source: Path, file_ending: str) -> tuple[list[dict], list[dict]]:
    labelled, testing = [], []
    for split in ("Tr", "Ts"):
        for image in sorted((source / f"images{split}").glob(f"*_0000{file_ending}")):
            case = image.name[: -len(f"_0000{file_ending}")]
            label = source / f"labels{split}" / f"{case}{file_ending}"
            entry = {"case_id": case, "image": str(image), "source_split": split}
            if label.is_file():
                (labelled if split == "Tr" else testing).append({**entry, "label": str(label)})
            elif split == "Tr":
                raise InvalidInputError(f"{label}: label file missing for {image}.")
            else:
                testing.append(entry)
    return labelled, testing


def _write_renumbered(entry: dict, mapping: dict[int, int], output: Path) -> dict:
    data, affine = load_nifti(entry["label"])
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    target = output / "labels" / Path(entry["label"]).name
    write_nifti(target, lut[np.asarray(data).astype(np.int64)], affine)
    return {**entry, "label": str(target)}


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0) -> dict:
    """Check, renumber and list the MRI cases of ``source`` under ``output``. Returns the datalist content."""
    source, output = source.resolve(), output.resolve()
    layout, dataset = detect_layout(source)
    mapping = label_mapping(dataset["labels"], layout, str(source / "dataset.json"))
    if layout == "amos22":
        labelled, testing = _amos22_cases(source)
    else:
        labelled, testing = _nnunet_cases(source, dataset.get("file_ending", ".nii.gz"))
    if not labelled:
        raise InvalidInputError(f"{source}: no labelled MRI cases found (AMOS MRI ids are >= 500).")
    logger.info("%s layout: %d labelled and %d test MRI cases", layout, len(labelled), len(testing))
    source_values = sorted(mapping)
    check_cases(labelled + testing, class_values=source_values, check=check_nifti_case,
                desc="checking every case")  # raises before anything is written
    identity = all(src == dst for src, dst in mapping.items())
    if not identity:
        labelled = [_write_renumbered(e, mapping, output) for e in labelled]
        testing = [_write_renumbered(e, mapping, output) if "label" in e else e for e in testing]
    labels = {"0": "background", **{str(i + 1): name for i, name in enumerate(MR_ORGANS)}}
    content = write_datalist(output / "datalist.json", labelled, testing, num_folds=num_folds, seed=seed,
                             name="AMOS abdominal MRI (13 organs)", source=str(source), layout=layout, labels=labels)
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="AMOS22 or Dataset702_AbdomenMR folder")
    parser.add_argument("--output", required=True, type=Path, help="folder for datalist.json and renumbered labels")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare(args.source, args.output, args.folds, args.seed)  # an InputError ends it with only its message


if __name__ == "__main__":
    main()
