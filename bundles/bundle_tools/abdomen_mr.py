# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Abdominal MRI with 13 organs (AMOS 2022 MRI, nnU-Net's Dataset702_AbdomenMR): label numbering and data preparation.

Shared by the bundles that train on these data (``xlstm_unet_amos3d`` on volumes, ``xlstm_unet_abdomenmr2d`` on
slices of the same volumes); each bundle's ``scripts/prepare_data.py`` is a command line around :func:`prepare`.

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

import json
import logging
import re
from pathlib import Path

import numpy as np

from .checks import InvalidInputError, check_cases, check_nifti_case, load_nifti
from .datalist import write_datalist
from .protocols.amos import ABDOMEN_MR_ORGANS, NSD_TOLERANCE_MM, SLAB_ORGANS
from .synthetic import write_nifti

__all__ = [
    "MR_ORGANS", "AMOS22_LABELS", "canonical_organ", "NSD_TOLERANCE_MM", "LABELLED_SLICES_ONLY",
    "detect_layout", "label_mapping", "prepare",
]

logger = logging.getLogger("prepare_data")

# Label value i+1 <-> MR_ORGANS[i]: the numbering of nnU-Net's Dataset702_AbdomenMR (U-Mamba, xLSTM-UNet), the order
# of the official evaluation's tolerance table (xlstm_bundle_tools.protocols.amos).
MR_ORGANS = ABDOMEN_MR_ORGANS

# AMOS22's dataset.json, verbatim (including its spellings "arota" and "postcava"); 14 and 15 are CT-only organs.
AMOS22_LABELS = {
    0: "background", 1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gall bladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "arota", 9: "postcava", 10: "pancreas", 11: "right adrenal gland",
    12: "left adrenal gland", 13: "duodenum", 14: "bladder", 15: "prostate/uterus",
}

# Evaluated only on slices where the reference has them (their extent depends on the field of view).
LABELLED_SLICES_ONLY = SLAB_ORGANS

_SYNONYMS = {
    "gall bladder": "gallbladder",
    "arota": "aorta",
    "postcava": "inferior vena cava",
    "ivc": "inferior vena cava",
    "oesophagus": "esophagus",
}
MR_INDEX = {name: i + 1 for i, name in enumerate(MR_ORGANS)}
CT_ONLY = {"bladder", "prostate/uterus", "prostate", "uterus"}
CASE_ID = re.compile(r"amos_(\d+)")


def canonical_organ(name: str) -> str:
    """Normalise an organ name from either release: lower case, '_'/'-' as spaces, known spellings mapped."""
    key = " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
    return _SYNONYMS.get(key, key)


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


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0,
            name: str = "AMOS abdominal MRI (13 organs)") -> dict:
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
    labels = {"0": "background", **{str(i + 1): organ for i, organ in enumerate(MR_ORGANS)}}
    content = write_datalist(output / "datalist.json", labelled, testing, num_folds=num_folds, seed=seed,
                             name=name, source=str(source), layout=layout, labels=labels)
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content
