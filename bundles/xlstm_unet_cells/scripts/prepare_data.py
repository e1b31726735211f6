# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare NeurIPS 2022 Cell Segmentation data for the bundle: check every case, write 3-class targets, a datalist.

    python bundles/xlstm_unet_cells/scripts/prepare_data.py --source /data/neurips_cellseg --output /data/cells_prepared

Reads either layout exactly as distributed:

- **the challenge's release** (Zenodo 10719375): ``Training-labeled/{images,labels}`` (``Train_Labeled`` as in the
  challenge's GitHub repository also works), ``Tuning/{images,labels}``, ``Testing/Public/{images,labels}``.
  Images are png/bmp/jpg/tif/tiff, 1 or 3 channels, 8 or 16 bits; labels are ``<stem>_label.tiff`` instance masks.
  Each training mask becomes the 3-class target U-Mamba trains on (0 background, 1 interior, 2 boundary; the
  challenge baseline's ``pre_process_3class.py``, see ``xlstm_bundle_tools.instances``), written as
  ``<output>/labels_3class/<split>/<stem>.png``. Tuning and public test cases are listed for testing, with their instance
  masks as the F1 reference. Images are read where they are (never copied or changed); the challenge's
  normalisation runs in the bundle's pipelines. Test cases with a mask get a 3-class target too (for
  ``evaluate.json`` with ``--eval_split test``).
- **U-Mamba's ``Dataset703_NeurIPSCell``** (nnU-Net): ``imagesTr/<case>_0000.png`` with ``labelsTr/<case>.png``
  (3-class), ``imagesVal/<case>_0000.png`` with ``labelsVal-instance-mask/<case>_label.tiff`` (the set xLSTM-UNet's
  ``metric_*.sh`` scores), and ``imagesTs/`` when present. The training labels are 3-class maps already; their
  instance masks (for F1 on validation folds) are rebuilt from them with the bundle's own rule and written to
  ``<output>/instances_from_labels/``, marked ``"instances_derived": true`` in the datalist: F1 against them is not
  the challenge's F1 (``imagesVal`` is).

Every case is checked first: an unreadable image, an RGBA or 2-channel image, an instance mask of another size or in
a non-integer type, a 3-class label with other values, a training image without its mask. The run then stops with an
error naming each bad file, and nothing is written; the source is never modified. Writes
``<output>/datalist.json`` (5 seeded folds over the training cases).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xlstm_bundle_tools.cells import (IMAGE_SUFFIXES, check_cell_case, check_cell_instances, read_class_map,
                                      read_instance_mask)
from xlstm_bundle_tools.checks import InvalidInputError, check_cases
from xlstm_bundle_tools.datalist import write_datalist
from xlstm_bundle_tools.instances import instances_from_semantic, semantic_from_instances
from xlstm_bundle_tools.io import atomic_write
from xlstm_bundle_tools.datalist import preparation_main

__all__ = ["prepare", "find_cases"]

logger = logging.getLogger("prepare_data")
LABELS = {"0": "background", "1": "interior", "2": "boundary"}
TRAINING_FOLDERS = ("Training-labeled", "Train_Labeled")
TEST_FOLDERS = ("Tuning", "Testing/Public")


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _stem(path: Path) -> str:
    return path.name.split(".")[0]  # the challenge's own rule: img_name.split('.')[0]


def _challenge_split(folder: Path, labelled: bool, split: str) -> list[dict]:
    entries = []
    for image in _images(folder / "images"):
        entry = {"case_id": _stem(image), "image": str(image), "split": split}
        mask = folder / "labels" / f"{_stem(image)}_label.tiff"
        if mask.is_file():
            entry["instances"] = str(mask)
        elif labelled:
            raise InvalidInputError(f"{mask}: instance mask missing for {image}.")
        entries.append(entry)
    return entries


def _dataset703(source: Path) -> tuple[list[dict], list[dict]]:
    training = []
    for image in _images(source / "imagesTr"):
        case = image.name[: -len("_0000.png")] if image.name.endswith("_0000.png") else _stem(image)
        label = source / "labelsTr" / f"{case}.png"
        if not label.is_file():
            raise InvalidInputError(f"{label}: label missing for {image}.")
        training.append({"case_id": case, "image": str(image), "label": str(label), "split": "train"})
    testing = []
    for folder, refs in (("imagesVal", "labelsVal-instance-mask"), ("imagesTs", None)):
        for image in _images(source / folder):
            case = image.name[: -len("_0000.png")] if image.name.endswith("_0000.png") else _stem(image)
            entry = {"case_id": case, "image": str(image), "split": folder}
            if refs:
                mask = source / refs / f"{case}_label.tiff"
                if mask.is_file():
                    entry["instances"] = str(mask)
                elif (source / refs).is_dir():
                    raise InvalidInputError(f"{mask}: instance mask missing for {image}.")
            testing.append(entry)
    return training, testing


def find_cases(source: Path) -> tuple[str, list[dict], list[dict]]:
    """(layout, training entries, testing entries); training entries of the challenge layout carry ``instances``."""
    for name in TRAINING_FOLDERS:
        if (source / name / "images").is_dir():
            training = _challenge_split(source / name, labelled=True, split="train")
            testing = [e for folder in TEST_FOLDERS
                       for e in _challenge_split(source / folder, labelled=False, split=folder.replace("/", "-"))]
            return "neurips2022", training, testing
    if (source / "imagesTr").is_dir():
        training, testing = _dataset703(source)
        return "dataset703", training, testing
    raise InvalidInputError(
        f"{source}: neither the challenge's layout (Training-labeled/images, Training-labeled/labels, ...) nor "
        "U-Mamba's Dataset703_NeurIPSCell (imagesTr, labelsTr, ...).")


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"), ".png")


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, compression="zlib"), ".tiff")


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0) -> dict:
    source, output = source.resolve(), output.resolve()
    layout, training, testing = find_cases(source)
    if not training:
        raise InvalidInputError(f"{source}: no labelled training images found.")
    logger.info("%s layout: %d training and %d test images", layout, len(training), len(testing))
    # every check before the first write
    if layout == "neurips2022":
        check_cases(training + testing, label_key="instances", check=check_cell_instances,
                    desc="checking images and instance masks")
    else:
        check_cases(training, class_values=[0, 1, 2], check=check_cell_case, desc="checking images and labels")
        if testing:
            check_cases(testing, label_key="instances", check=check_cell_instances, desc="checking test images")
    extra = {}
    # 3-class targets of every case with an instance mask (test cases too, so evaluate.json can score them)
    for entry in (training if layout == "neurips2022" else []) + [e for e in testing if "instances" in e]:
        # one folder per split: the challenge numbers each split from cell_00001 again
        target = output / "labels_3class" / entry["split"] / f"{entry['case_id']}.png"
        _write_png(target, semantic_from_instances(read_instance_mask(entry["instances"])))
        entry["label"] = str(target)
    if layout == "dataset703":
        for entry in training:  # rebuilt references for F1 on validation folds (not the challenge's masks)
            target = output / "instances_from_labels" / f"{entry['case_id']}_label.tiff"
            instances = instances_from_semantic(read_class_map(entry["label"]))
            _write_tiff(target, instances.astype(np.uint16 if instances.max(initial=0) < 65536 else np.uint32))
            entry["instances"] = str(target)
        extra["instances_derived"] = True
    content = write_datalist(output / "datalist.json", training, testing, num_folds=num_folds, seed=seed,
                             name="NeurIPS 2022 Cell Segmentation (3-class: background, interior, boundary)",
                             source=str(source), layout=layout, labels=LABELS, **extra)
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="challenge folder or Dataset703_NeurIPSCell",
                     output_help="folder for datalist.json and 3-class targets", argv=argv)


if __name__ == "__main__":
    main()
