# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare EndoVis 2017 instrument data for the bundle: check every frame and mask, write type label maps, a datalist.

    python bundles/xlstm_unet_endovis17/scripts/prepare_data.py --source /data/endovis17 --output /data/endovis17_prepared

Reads either layout exactly as distributed:

- **EndoVis 2017 Robotic Instrument Segmentation** (the challenge's release): ``instrument_dataset_k/`` folders
  directly under ``--source`` or one level down (``instrument_1_4_training/instrument_dataset_1/``), each with
  ``left_frames/frameNNN.png`` and, for the training videos, ``ground_truth/<Instrument>_labels/frameNNN.png``
  (one parts mask per instrument: 10 shaft, 20 wrist, 30 claspers, 40 probe; 3-channel masks are read as channel
  0). The masks of a frame become one instrument-type label map by the challenge's mapping (folder name by
  substring: Bipolar_Forceps 1 (Maryland_Bipolar_Forceps too), Prograsp_Forceps 2, Large_Needle_Driver 3,
  Vessel_Sealer 4, Grasping_Retractor 5, Monopolar_Curved_Scissors 6, Other 7; where masks overlap, the later
  folder in sorted order wins; ``xlstm_bundle_tools.endovis``), written as ``<output>/labels/<case>.png``. Sequences
  without ``ground_truth/`` are listed for testing. ``right_frames/`` and the mapping JSON files are not read.
  Folds are dealt over sequences (``--folds 5`` of the 8 training videos), so no video is in training and
  validation at once.
- **U-Mamba's ``Dataset704_Endovis17``** (nnU-Net): ``imagesTr/<case>_0000.png`` with ``labelsTr/<case>.png``
  (labels 0-7), ``imagesTs/`` with ``labelsTs/`` for testing; read where they are (never copied, never cropped).
  Folds are dealt over frames: the release's case names do not say which video a frame is from.

**Cropping.** The distributed frames are 1920 x 1080 with the endoscope's black margins; the challenge's images are
their 1280 x 1024 region, rows 28:1052 and columns 320:1600 (the EndoVis 2017 data page; TernausNet's
``prepare_data.py``, ``h_start, w_start = 28, 320``, which crops frames and masks alike). By default (``--crop
challenge``) every 1920 x 1080 frame of the EndoVis layout is cropped so, with its label map, and written as
``<output>/images/<case>.png``; ``--crop none`` keeps full frames. Frames of other sizes are used as they are.

Every case is checked before anything is written: an unreadable frame or mask, a frame that is not 8-bit RGB (RGBA,
grayscale), a mask whose size differs from its frame, an instrument folder whose name matches no instrument, a
frame without its mask in one of the folders, a Dataset704 label outside 0-7. The run then stops with an error
naming each bad file, and nothing is written; the source is never modified. Writes ``<output>/datalist.json``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from xlstm_bundle_tools.checks import InvalidInputError, check_cases
from xlstm_bundle_tools.datalist import assign_folds, preparation_main, write_datalist
from xlstm_bundle_tools.endovis import (FULL_HD, LABELS, challenge_crop, check_endovis_case, combine_instrument_masks,
                                        instrument_type, read_frame, read_instrument_mask, write_png)

__all__ = ["prepare", "find_cases", "check_frame_masks"]

logger = logging.getLogger("prepare_data")
SEQUENCE = re.compile(r"instrument_dataset_\d+")
CROPS = ("challenge", "none")


def _pngs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"
                  and not p.name.startswith("."))


def _sequences(source: Path) -> list[Path]:
    """``instrument_dataset_k`` folders directly under ``source`` or one level below, in numeric order."""
    found = [p for p in source.iterdir() if p.is_dir() and SEQUENCE.fullmatch(p.name)]
    for sub in sorted(p for p in source.iterdir() if p.is_dir() and not SEQUENCE.fullmatch(p.name)):
        found += [p for p in sub.iterdir() if p.is_dir() and SEQUENCE.fullmatch(p.name)]
    return sorted(found, key=lambda p: (int(p.name.rsplit("_", 1)[1]), str(p)))


def _instrument_folders(sequence: Path) -> list[Path]:
    folders = sorted(p for p in (sequence / "ground_truth").iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        instrument_type(folder)  # an unknown instrument folder stops here, named
    if not folders:
        raise InvalidInputError(f"{sequence / 'ground_truth'}: no instrument mask folders.")
    return folders


def _endovis17(source: Path) -> tuple[list[dict], list[dict]]:
    training, testing = [], []
    for sequence in _sequences(source):
        frames = _pngs(sequence / "left_frames")
        if not frames:
            raise InvalidInputError(f"{sequence / 'left_frames'}: no PNG frames.")
        labelled = (sequence / "ground_truth").is_dir()
        folders = _instrument_folders(sequence) if labelled else []
        for frame in frames:
            entry = {"case_id": f"{sequence.name}_{frame.stem}", "image": str(frame), "sequence": sequence.name,
                     "parent": sequence.parent.name}
            if labelled:
                masks = [folder / frame.name for folder in folders]
                missing = [m for m in masks if not m.is_file()]
                if missing:
                    raise InvalidInputError(f"{missing[0]}: instrument mask missing for frame {frame}.")
                entry["masks"] = [str(m) for m in masks]
                training.append(entry)
            else:
                testing.append(entry)
    # a sequence name found twice (the test videos 1-8 share the training videos' names): keep ids unique
    counts = Counter(e["case_id"] for e in training + testing)
    for entry in training + testing:
        if counts[entry["case_id"]] > 1:
            entry["case_id"] = f"{entry['parent']}_{entry['case_id']}"
    counts = Counter(e["case_id"] for e in training + testing)
    duplicated = [c for c, n in counts.items() if n > 1]
    if duplicated:
        raise InvalidInputError(f"{source}: frame {duplicated[0]} is found twice under one folder name; keep one copy.")
    for entry in training + testing:
        entry.pop("parent")
    return training, testing


def _case(image: Path) -> str:
    return image.name[: -len("_0000.png")] if image.name.endswith("_0000.png") else image.stem


def _dataset704(source: Path) -> tuple[list[dict], list[dict]]:
    out = {}
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        entries = []
        for image in _pngs(source / images):
            entry = {"case_id": _case(image), "image": str(image)}
            label = source / labels / f"{_case(image)}.png"
            if label.is_file():
                entry["label"] = str(label)
            elif images == "imagesTr" or (source / labels).is_dir():
                raise InvalidInputError(f"{label}: label missing for {image}.")
            entries.append(entry)
        out[images] = entries
    return out["imagesTr"], out["imagesTs"]


def find_cases(source: Path) -> tuple[str, list[dict], list[dict]]:
    """(layout, training entries, testing entries); EndoVis training entries carry their ``masks`` (one a folder)."""
    if not source.is_dir():
        raise InvalidInputError(f"{source}: folder not found.")
    if (source / "imagesTr").is_dir():
        training, testing = _dataset704(source)
        return "dataset704", training, testing
    if _sequences(source):
        training, testing = _endovis17(source)
        return "endovis17", training, testing
    raise InvalidInputError(
        f"{source}: neither the EndoVis 2017 layout (instrument_dataset_k/left_frames, .../ground_truth) nor U-Mamba's "
        "Dataset704_Endovis17 (imagesTr, labelsTr, ...).")


def check_frame_masks(image: str, masks: list[str] | None = None, class_values=None, channels=None) -> dict:
    """Preflight of one EndoVis frame and its instrument masks (``check_cases(..., label_key="masks")``)."""
    frame = read_frame(image)
    for mask in masks or []:
        shape = read_instrument_mask(mask).shape
        if shape != frame.shape[:2]:
            raise InvalidInputError(f"{mask}: mask size {shape[1]}x{shape[0]} differs from its frame {image} "
                                    f"({frame.shape[1]}x{frame.shape[0]}).")
    return {"shape": frame.shape[:2]}


def _write_endovis17(entries: list[dict], output: Path, crop: str) -> None:
    for entry in entries:
        frame = None
        if crop == "challenge":
            frame = read_frame(entry["image"])
            if tuple(frame.shape[:2]) != FULL_HD:
                frame = None
        if "masks" in entry:
            masks = entry.pop("masks")
            labels = combine_instrument_masks([(Path(m).parent.name, read_instrument_mask(m)) for m in masks])
            target = output / "labels" / f"{entry['case_id']}.png"
            write_png(target, challenge_crop(labels) if frame is not None else labels)
            entry["label"] = str(target)
        if frame is not None:
            target = output / "images" / f"{entry['case_id']}.png"
            write_png(target, challenge_crop(frame))
            entry["image"] = str(target)


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0, crop: str = "challenge") -> dict:
    if crop not in CROPS:
        raise InvalidInputError(f"--crop {crop!r}: expected one of {list(CROPS)}.")
    source, output = source.resolve(), output.resolve()
    layout, training, testing = find_cases(source)
    if not training:
        raise InvalidInputError(f"{source}: no labelled training frames found.")
    logger.info("%s layout: %d training and %d test frames", layout, len(training), len(testing))
    # every check before the first write; the folds too (too few sequences for --folds stops here)
    groups = {e["sequence"] for e in training} if layout == "endovis17" else {e["case_id"] for e in training}
    assign_folds(sorted(groups), num_folds, seed)
    if layout == "endovis17":
        check_cases(training + testing, label_key="masks", check=check_frame_masks,
                    desc="checking frames and instrument masks")
        extra = {"crop": "rows 28:1052, columns 320:1600 of each 1920x1080 frame" if crop == "challenge" else "none",
                 "group_key": "sequence"}
        _write_endovis17(training + testing, output, crop)
    else:
        check_cases(training + testing, class_values=list(range(8)), check=check_endovis_case,
                    desc="checking frames and labels")
        extra = {"crop": "none"}
    content = write_datalist(output / "datalist.json", training, testing, num_folds=num_folds, seed=seed,
                             name="EndoVis 2017 Robotic Instrument Segmentation, instrument types",
                             source=str(source), layout=layout, labels=LABELS, **extra)
    logger.info("wrote %s (%d folds, seed %d)", output / "datalist.json", num_folds, seed)
    return content


def main(argv: list[str] | None = None) -> None:
    crop = {"choices": CROPS, "default": "challenge",
            "help": "challenge: crop 1920x1080 frames to the challenge's 1280x1024 region (default)"}
    preparation_main(prepare, __doc__, source_help="EndoVis 2017 folder or Dataset704_Endovis17",
                     output_help="folder for datalist.json and label maps", options={"--crop": crop}, argv=argv)


if __name__ == "__main__":
    main()
