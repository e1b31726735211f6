# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Input checks that name the file and the problem, before anything is written.

Data preparation and inference run :func:`check_cases` over every case first (a "preflight"), so a bad file stops the
run before it writes a datalist or a single mask. Training and evaluation pipelines also carry :class:`CheckCased`,
which checks each case after loading (cheap: the data is in memory already).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from tqdm import tqdm

from .errors import InvalidInputError

__all__ = [
    "InvalidInputError",
    "flag",
    "load_nifti",
    "check_image_array",
    "check_label_array",
    "check_same_geometry",
    "check_nifti_case",
    "check_rgb_case",
    "open_image",
    "check_cases",
    "CheckCased",
]

logger = logging.getLogger(__name__)

AFFINE_RTOL, AFFINE_ATOL = 1e-4, 1e-3  # header round-off between an image and its label is far below this


def flag(value: object, name: str) -> bool:
    """A true/false option as the command line gives it: ``python -m monai.bundle`` (fire) passes ``--tta true`` and
    ``--tta false`` as the strings 'true' / 'false' (only Python's ``True``/``False`` become bools), and the string
    'false' is truthy. Accepts bools and true/false, 1/0, yes/no, on/off in any case; anything else is an InputError."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise InvalidInputError(f"--{name} {value!r}: expected true or false")


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file fully: (data, affine). Raises InvalidInputError for a missing, truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found.")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as err:  # nibabel raises many types for corrupt gzip/header/data
        raise InvalidInputError(f"{path}: cannot be read as NIfTI ({type(err).__name__}: {err}).") from err
    return data, image.affine


def check_image_array(data, source: str) -> None:
    """No NaN or infinite voxels."""
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            raise InvalidInputError(
                f"{source}: contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite voxels out of {array.size}."
            )


def check_label_array(data, source: str, class_values: Iterable[int]) -> None:
    """Integer labels, all in ``class_values``."""
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    check_image_array(array, source)
    values = np.unique(array)
    if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
        fractional = values[values != np.round(values)].tolist()
        raise InvalidInputError(f"{source}: label map has non-integer values {_listed(fractional)}; is it an image?")
    allowed = set(int(v) for v in class_values)
    unexpected = sorted(int(v) for v in values if int(v) not in allowed)
    if unexpected:
        raise InvalidInputError(
            f"{source}: label values {_listed(unexpected)} are outside the class set {sorted(allowed)}."
        )


def _listed(values: Sequence, limit: int = 5) -> str:
    """``[a, b, c]``, or the first ``limit`` and how many in all: a label file holding an image has thousands."""
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:limit])
    return f"[{shown}]" if len(values) <= limit else f"[{shown}, ...] ({len(values)} distinct values)"


def check_same_geometry(
    shape_a: Sequence[int], affine_a: np.ndarray, source_a: str, shape_b: Sequence[int], affine_b: np.ndarray, source_b: str
) -> None:
    """Same spatial shape and (up to header round-off) the same affine."""
    if tuple(shape_a) != tuple(shape_b):
        raise InvalidInputError(
            f"{source_b}: spatial shape {tuple(shape_b)} differs from {source_a} {tuple(shape_a)}."
        )
    a, b = np.asarray(affine_a, dtype=np.float64), np.asarray(affine_b, dtype=np.float64)
    if not np.allclose(a, b, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
        raise InvalidInputError(
            f"{source_b}: affine differs from {source_a} (max difference {np.abs(a - b).max():.4g}); the two are not "
            "in the same space."
        )


def check_nifti_case(
    image: str | Sequence[str], label: str | None = None, class_values: Iterable[int] | None = None,
    channels: int | None = None,
) -> dict:
    """Fully read one case (one or several co-registered image files, optional label) and check it.

    ``channels``: the number of image channels the network takes (3D files count 1, a 4D file its 4th axis); None
    skips that check. Returns ``{"shape": spatial shape, "affine": ..., "spacing": ..., "channels": ...}`` of the
    first image.
    """
    images = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    ref_shape = ref_affine = None
    count = 0
    for path in images:
        data, affine = load_nifti(path)
        check_image_array(data, str(path))
        if data.ndim not in (3, 4):
            raise InvalidInputError(f"{path}: expected a 3D volume, got {data.ndim}D data of shape {data.shape}.")
        count += data.shape[3] if data.ndim == 4 else 1
        shape = data.shape[:3]
        if ref_shape is None:
            ref_shape, ref_affine, ref_path = shape, affine, str(path)
        else:
            check_same_geometry(ref_shape, ref_affine, ref_path, shape, affine, str(path))
    if channels is not None and count != channels:
        raise InvalidInputError(f"{', '.join(map(str, images))}: {count} image channel{'s' * (count != 1)}; the "
                                f"network takes {channels}.")
    if label is not None:
        data, affine = load_nifti(label)
        if class_values is not None:
            check_label_array(data, str(label), class_values)
        check_same_geometry(ref_shape, ref_affine, ref_path, data.shape[:3], affine, str(label))
    spacing = np.sqrt((np.asarray(ref_affine)[:3, :3] ** 2).sum(axis=0))
    return {"shape": tuple(int(s) for s in ref_shape), "affine": ref_affine, "spacing": tuple(float(s) for s in spacing),
            "channels": count}


def open_image(path, what: str = "file"):
    """A PIL image, fully read, or an InvalidInputError naming the file: "<path>: <what> not found." or
    "<path>: cannot be read as an image (...)"."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: {what} not found.")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err}).") from err
    return image


def check_rgb_case(image: str, label: str | None = None, class_values: Iterable[int] | None = None,
                   channels: int | None = None) -> dict:
    """A 2D RGB image (JPEG/PNG) and an optional binary mask of the same size.

    The image must be 3-channel RGB: grayscale (``L``), alpha (``RGBA``/``LA``) and palette images are rejected so that
    a wrong file never silently becomes three identical channels or loses its transparency. The mask must hold only
    two values, 0 and 255 (or 0 and 1). ``class_values`` is accepted for signature compatibility and ignored;
    ``channels``, if given, must be 3.
    """
    if channels not in (None, 3):
        raise ValueError(f"an RGB image has 3 channels; got channels={channels}.")
    picture = open_image(image)
    if picture.mode != "RGB":
        what = {"L": "grayscale", "1": "black-and-white", "P": "a palette image", "RGBA": "RGBA (has an alpha channel)",
                "LA": "grayscale with alpha", "CMYK": "CMYK", "I;16": "16-bit grayscale"}.get(picture.mode, picture.mode)
        raise InvalidInputError(f"{image}: image is {what} (mode {picture.mode}); expected a 3-channel RGB image.")
    if label is not None:
        mask = open_image(label)
        if mask.size != picture.size:
            raise InvalidInputError(
                f"{label}: mask size {mask.size[0]}x{mask.size[1]} differs from its image {image} "
                f"({picture.size[0]}x{picture.size[1]})."
            )
        values = np.unique(np.asarray(mask.convert("L") if mask.mode == "1" else mask))
        if mask.mode not in ("L", "1", "P") or not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
            raise InvalidInputError(
                f"{label}: mask is not binary (mode {mask.mode}, values {_listed(values.tolist())}); "
                "expected one channel with values 0 and 255."
            )
    return {"shape": (picture.size[1], picture.size[0])}


def check_cases(
    entries: Sequence[Mapping],
    class_values: Iterable[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    check: Callable[..., dict] = check_nifti_case,
    desc: str = "checking input files",
    channels: int | None = None,
) -> None:
    """Preflight: check every entry and raise one InvalidInputError listing the bad files, one a line (up to 20).

    The last line of the message always names a file and its problem: it is what the terminal shows last.
    ``channels`` (the network's input channels) is passed on to ``check`` when given.
    """
    if not entries:
        raise InvalidInputError("the list of cases is empty: nothing to process.")
    class_values = list(class_values) if class_values is not None else None
    problems = []
    for entry in tqdm(entries, desc=desc, unit="case", disable=len(entries) < 5):
        try:
            check(entry[image_key], entry.get(label_key), class_values, **({} if channels is None else
                                                                         {"channels": channels}))
        except InvalidInputError as err:
            problems.append(str(err))
    if problems:
        listed = " (the first 20 are listed)" if len(problems) > 20 else ""
        raise InvalidInputError(f"{len(problems)} of {len(entries)} cases are unusable{listed}; fix or remove them "
                                "and run again:\n  " + "\n  ".join(problems[:20]))


class CheckCased(MapTransform):
    """Check a loaded case: finite image voxels, labels in the class set, image and label on the same grid.

    Place it right after ``LoadImaged``/``EnsureChannelFirstd`` (channel-first MetaTensors). Errors name the file.

    Args:
        image_key: the image key.
        label_key: the label key (skipped when absent from the data).
        class_values: allowed label values.
        channels: the number of image channels the network takes; None skips that check.
    """

    def __init__(self, image_key: str = "image", label_key: str | None = "label",
                 class_values: Iterable[int] | None = None, allow_missing_keys: bool = True,
                 channels: int | None = None) -> None:
        keys: KeysCollection = [image_key] + ([label_key] if label_key else [])
        super().__init__(keys, allow_missing_keys=allow_missing_keys)
        self.image_key, self.label_key = image_key, label_key
        self.class_values = list(class_values) if class_values is not None else None
        self.channels = channels

    @staticmethod
    def _source(tensor) -> str:
        source = getattr(tensor, "meta", {}).get("filename_or_obj", "<in-memory image>")
        return ", ".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        image = d[self.image_key]
        check_image_array(image, self._source(image))
        if self.channels is not None and image.shape[0] != self.channels:
            raise InvalidInputError(f"{self._source(image)}: {image.shape[0]} image channels after loading; the "
                                    f"network takes {self.channels}.")
        if self.label_key and self.label_key in d:
            label = d[self.label_key]
            if self.class_values is not None:
                check_label_array(label, self._source(label), self.class_values)
            affine_i = getattr(image, "affine", None)
            affine_l = getattr(label, "affine", None)
            if affine_i is not None and affine_l is not None:
                check_same_geometry(image.shape[1:], affine_i.numpy(), self._source(image),
                                    label.shape[1:], affine_l.numpy(), self._source(label))
            elif image.shape[1:] != label.shape[1:]:
                raise InvalidInputError(
                    f"{self._source(label)}: spatial shape {tuple(label.shape[1:])} differs from the image's "
                    f"{tuple(image.shape[1:])}."
                )
        return d
