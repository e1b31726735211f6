# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""EndoVis 2017 Robotic Instrument Segmentation as distributed, and U-Mamba's ``Dataset704_Endovis17``: reading
frames and masks, the challenge's instrument-type labels, input checks, and the names predictions are written under.

**Instrument types.** Each training sequence ``instrument_dataset_k`` has one mask folder per instrument in
``ground_truth/`` (``Left_Prograsp_Forceps_labels``, ``Maryland_Bipolar_Forceps_labels``, ``Prograsp_Forceps`` without
the suffix, ...). Its masks hold the instrument's parts (10 shaft, 20 wrist, 30 claspers, 40 in one variant); every
non-zero pixel belongs to the instrument. A folder's type is found by substring, in the order of TernausNet's
``prepare_data.py`` (ternaus/robot-surgery-segmentation), which U-Mamba's labels 1-7 follow:

==========================  =====  ===========================
substring of the folder     label  Dataset704 name
==========================  =====  ===========================
Bipolar_Forceps             1      bipolar forceps (Maryland_Bipolar_Forceps too)
Prograsp_Forceps            2      prograsp forceps
Large_Needle_Driver         3      large needle driver
Vessel_Sealer               4      vessel sealer
Grasping_Retractor          5      grasping retractor
Monopolar_Curved_Scissors   6      monopolar curved scissors
Other                       7      ultrasound probe
==========================  =====  ===========================

A folder matching none of them is an error (naming it), not silently skipped. Where masks overlap, the later
folder wins, as in TernausNet (``mask_instruments[mask > 0] = value`` in folder order). TernausNet's order is
``Path.glob('*')``, i.e. the file system's; ours is the sorted folder names, so the result does not depend on the
disk. A 3-channel mask is read as its channel 0 (some releases store masks as 3 equal channels).

**Arrays** here are numpy's (row, column). The bundle's pipelines read PNGs with MONAI's PILReader, which gives
(column, row); both are the same pixels, and PNGs written either way have the frame's size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .checks import open_image
from .errors import InvalidInputError
from .io import atomic_write

__all__ = [
    "INSTRUMENT_TYPES",
    "LABELS",
    "FULL_HD",
    "CHALLENGE_CROP",
    "instrument_type",
    "read_frame",
    "read_instrument_mask",
    "read_label_map",
    "combine_instrument_masks",
    "challenge_crop",
    "write_png",
    "check_endovis_case",
    "endovis_case_name",
    "endovis_output_name",
]

# (substring, label) in the order TernausNet tests them: "Maryland_Bipolar_Forceps" matches the first
INSTRUMENT_TYPES: tuple[tuple[str, int], ...] = (
    ("Bipolar_Forceps", 1), ("Prograsp_Forceps", 2), ("Large_Needle_Driver", 3), ("Vessel_Sealer", 4),
    ("Grasping_Retractor", 5), ("Monopolar_Curved_Scissors", 6), ("Other", 7))
LABELS = {"0": "background", "1": "bipolar forceps", "2": "prograsp forceps", "3": "large needle driver",
          "4": "vessel sealer", "5": "grasping retractor", "6": "monopolar curved scissors", "7": "ultrasound probe"}
CLASS_VALUES = tuple(range(8))
# The distributed frames are 1920 x 1080; the challenge's 1280 x 1024 image is rows 28:1052, columns 320:1600
# (the EndoVis 2017 data page; TernausNet prepare_data.py h_start 28, w_start 320, 1024 x 1280).
FULL_HD = (1080, 1920)
CHALLENGE_CROP = (slice(28, 1052), slice(320, 1600))
_MODES = {"L": "grayscale", "1": "black-and-white", "P": "a palette image", "RGBA": "RGBA, with an alpha channel",
          "LA": "grayscale with alpha", "PA": "a palette image with alpha", "CMYK": "CMYK", "I;16": "16-bit grayscale",
          "I": "32-bit integer", "F": "32-bit float"}


def instrument_type(folder: str | os.PathLike) -> int:
    """The type label (1-7) of a ``ground_truth/`` folder, by the first substring of :data:`INSTRUMENT_TYPES` in its
    name; an InvalidInputError naming the folder when none matches."""
    name = Path(folder).name
    for substring, value in INSTRUMENT_TYPES:
        if substring in name:
            return value
    raise InvalidInputError(
        f"{folder}: unknown instrument folder; its name contains none of "
        f"{', '.join(s for s, _ in INSTRUMENT_TYPES)} (EndoVis 2017 names such as Left_Prograsp_Forceps_labels).")


def read_frame(path) -> np.ndarray:
    """An RGB frame as (H, W, 3) uint8. Anything but 8-bit RGB (RGBA, grayscale, palette) is refused, naming it."""
    picture = open_image(path, "frame")
    if picture.mode != "RGB":
        what = _MODES.get(picture.mode, f"mode {picture.mode}")
        raise InvalidInputError(f"{path}: the frame is {what} (mode {picture.mode}); expected a 3-channel RGB image.")
    return np.array(picture)


def read_instrument_mask(path) -> np.ndarray:
    """One instrument's parts mask as (H, W): a one-channel PNG, or channel 0 of a 3-channel one."""
    picture = open_image(path, "instrument mask")
    array = np.array(picture)
    if array.ndim == 3:
        if array.shape[2] != 3:
            raise InvalidInputError(f"{path}: an instrument mask must have 1 or 3 channels; it has {array.shape[2]} "
                                    f"(mode {picture.mode}).")
        array = array[..., 0]
    if array.ndim != 2 or array.dtype.kind not in "uib":
        raise InvalidInputError(f"{path}: an instrument mask must be one 2D channel of integers; got {array.dtype} "
                                f"{array.shape}.")
    return array


def read_label_map(path, class_values: Iterable[int] = CLASS_VALUES) -> np.ndarray:
    """A type label map (``labelsTr/<case>.png``, or one this bundle wrote) as (H, W), values in ``class_values``."""
    picture = open_image(path, "label map")
    array = np.array(picture)
    if array.ndim == 3 and array.shape[2] == 3 and (array == array[..., :1]).all():
        array = array[..., 0]
    if array.ndim != 2 or array.dtype.kind not in "uib":
        raise InvalidInputError(f"{path}: a label map must be one 2D channel of integers; got {array.dtype} "
                                f"{array.shape} (mode {picture.mode}).")
    allowed = {int(v) for v in class_values}
    unexpected = sorted(set(np.unique(array).tolist()) - allowed)
    if unexpected:
        shown = unexpected[:5] + (["..."] if len(unexpected) > 5 else [])
        raise InvalidInputError(f"{path}: label values {shown} are outside the class set {sorted(allowed)} "
                                "(0 background, 1-7 instrument types).")
    return array


def combine_instrument_masks(masks: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """The type label map (uint8) of one frame from its (folder name, mask) pairs, applied in the given order: a pixel
    takes the type of the last folder whose mask is non-zero there (TernausNet's rule)."""
    if not masks:
        raise ValueError("combine_instrument_masks: no masks")
    shape = masks[0][1].shape
    out = np.zeros(shape, np.uint8)
    for folder, mask in masks:
        if mask.shape != shape:
            raise ValueError(f"combine_instrument_masks: {folder} has shape {mask.shape}, not {shape}")
        out[mask > 0] = instrument_type(folder)
    return out


def challenge_crop(array: np.ndarray) -> np.ndarray:
    """The challenge's 1280 x 1024 region of a 1920 x 1080 frame or mask (rows 28:1052, columns 320:1600)."""
    if tuple(array.shape[:2]) != FULL_HD:
        raise ValueError(f"challenge_crop: expected a {FULL_HD[1]}x{FULL_HD[0]} frame; got {array.shape[1]}x"
                         f"{array.shape[0]}")
    return array[CHALLENGE_CROP]


def write_png(path, array: np.ndarray) -> None:
    """An (H, W) uint8 label map or (H, W, 3) RGB frame as PNG, atomically."""
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG"), ".png")


def _size(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def check_endovis_case(image: str, label: str | None = None, class_values: Iterable[int] | None = None,
                       channels: int | None = None) -> dict:
    """Preflight of one case: an RGB frame, and a type label map of the frame's size with values in
    ``class_values`` (default 0-7). ``channels`` (the network's input channels) must be 3."""
    if channels not in (None, 3):
        raise ValueError(f"check_endovis_case: EndoVis frames are RGB; the network takes {channels} channels.")
    frame = read_frame(image)
    if label is not None:
        labels = read_label_map(label, CLASS_VALUES if class_values is None else class_values)
        if labels.shape != frame.shape[:2]:
            raise InvalidInputError(f"{label}: mask size {_size(labels.shape)} differs from its frame {image} "
                                    f"({_size(frame.shape)}).")
    return {"shape": tuple(frame.shape[:2])}


_FRAME_FOLDERS = ("left_frames", "right_frames", "images")
_SEQUENCE = re.compile(r"instrument_dataset_\d+")


def endovis_case_name(source: str | os.PathLike) -> str:
    """A frame's case name, unique across sequences and equal to its reference's name.

    ``.../instrument_dataset_3/left_frames/frame012.png`` -> ``instrument_dataset_3_frame012`` (frames of different
    sequences share their names); ``<case>_0000.png`` (nnU-Net, Dataset704) -> ``<case>``, the name of its
    ``labelsTs/<case>.png``; anything else keeps its stem.
    """
    path = Path(str(source))
    name = path.name
    for ext in (".png", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if name.endswith("_0000"):
        name = name[: -len("_0000")]
    elif path.parent.name in _FRAME_FOLDERS and _SEQUENCE.fullmatch(path.parent.parent.name or ""):
        name = f"{path.parent.parent.name}_{name}"
    return name


def endovis_output_name(metadict: Mapping, saver) -> dict:
    """SaveImage ``output_name_formatter``: :func:`endovis_case_name` of the input (``<name>.png`` with an empty
    ``output_postfix``)."""
    source = (metadict or {}).get("filename_or_obj", getattr(saver, "_data_index", 0))
    name = endovis_case_name(source)
    # FolderLayout strips one extension: give it one to strip, so a dot inside the stem survives
    return {"subject": f"{name}.img", "idx": (metadict or {}).get("patch_index")}
