# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare ISIC 2018 Task 1 for the bundle: check every image and mask, pair them, write a 5-fold datalist.

    python bundles/xlstm_vmunet_isic/scripts/prepare_data.py --source /data/isic2018 --output /data/isic2018_prepared

Reads either layout exactly as distributed:

- the official ISIC 2018 release: ``ISIC2018_Task1-2_Training_Input/ISIC_*.jpg`` with
  ``ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png``, and the same for ``Validation`` and ``Test``
  (folders found directly under ``--source``; the challenge's LICENSE/ATTRIBUTION files are ignored). The training
  images make the cross-validation folds; the validation and test images are listed as the test set (with masks
  where their ground-truth folder exists).
- VM-UNet's split (``train/images``, ``train/masks``, ``val/images``, ``val/masks``, PNG): paired by sorted file
  order, as VM-UNet's loader pairs them (the name stems must match, which is checked). ``train`` makes the folds;
  ``val`` is the test set.

Every pair is checked first: an unreadable image, a grayscale or RGBA image, a mask whose size differs from its
image, or a non-binary mask stops the run with an error naming each bad file; nothing is written then and the source
is never modified. Writes ``<output>/datalist.json`` (5 seeded folds, as the paper reports 5-fold cross-validation).
"""

from __future__ import annotations

import logging
from pathlib import Path

from xlstm_bundle_tools.checks import InvalidInputError, check_cases, check_rgb_case
from xlstm_bundle_tools.datalist import preparation_main, write_datalist

__all__ = ["prepare", "find_pairs"]

logger = logging.getLogger("prepare_data")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _official(source: Path, split: str) -> tuple[list[dict], list[dict]]:
    inputs = source / f"ISIC2018_Task1-2_{split}_Input"
    truth = source / f"ISIC2018_Task1_{split}_GroundTruth"
    labelled, unlabelled = [], []
    for image in _images(inputs):
        if not image.name.startswith("ISIC_"):
            continue
        entry = {"case_id": image.stem, "image": str(image)}
        mask = truth / f"{image.stem}_segmentation.png"
        if mask.is_file():
            labelled.append({**entry, "label": str(mask)})
        elif truth.is_dir():
            raise InvalidInputError(f"{mask}: ground-truth mask missing for {image}.")
        else:
            unlabelled.append(entry)
    return labelled, unlabelled


def _vmunet(source: Path, split: str) -> list[dict]:
    images, masks = _images(source / split / "images"), _images(source / split / "masks")
    if len(images) != len(masks):
        raise InvalidInputError(
            f"{source / split}: {len(images)} images but {len(masks)} masks; VM-UNet pairs them by sorted order."
        )
    pairs = []
    for image, mask in zip(images, masks):
        if mask.stem not in (image.stem, f"{image.stem}_segmentation"):
            raise InvalidInputError(f"{mask}: sorted pairing puts this mask with {image}; their names do not match.")
        pairs.append({"case_id": image.stem, "image": str(image), "label": str(mask)})
    return pairs


def find_pairs(source: Path) -> tuple[str, list[dict], list[dict]]:
    """(layout, training entries, test entries)."""
    if (source / "ISIC2018_Task1-2_Training_Input").is_dir():
        training, unlabelled = _official(source, "Training")
        if unlabelled:
            raise InvalidInputError(f"{source / 'ISIC2018_Task1_Training_GroundTruth'}: training masks not found.")
        testing = []
        for split in ("Validation", "Test"):
            labelled, unlabelled = _official(source, split)
            testing += labelled + unlabelled
        return "isic2018", training, testing
    if (source / "train" / "images").is_dir():
        return "vmunet", _vmunet(source, "train"), _vmunet(source, "val") if (source / "val").is_dir() else []
    raise InvalidInputError(
        f"{source}: neither the ISIC 2018 layout (ISIC2018_Task1-2_Training_Input/...) nor VM-UNet's "
        "(train/images, train/masks)."
    )


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0) -> dict:
    source = source.resolve()
    layout, training, testing = find_pairs(source)
    if not training:
        raise InvalidInputError(f"{source}: no training images with masks found.")
    logger.info("%s layout: %d training and %d test images", layout, len(training), len(testing))
    check_cases(training + testing, check=check_rgb_case, desc="checking every image")
    content = write_datalist(output.resolve() / "datalist.json", training, testing, num_folds=num_folds, seed=seed,
                             name="ISIC 2018 Task 1 lesion segmentation", source=str(source), layout=layout,
                             labels={"0": "background", "1": "lesion"})
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="ISIC 2018 folder or VM-UNet split folder",
                     output_help="folder for datalist.json", argv=argv)


if __name__ == "__main__":
    main()
