# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Writes that never leave a half-written file: temp file in the target folder, fsync, then ``os.replace``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from monai.data import NibabelWriter, PILWriter
from monai.transforms import SaveImaged

from .errors import InvalidInputError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "AtomicSaveImaged",
]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one step.

    ``suffix`` keeps the extension on the temporary name for writers that choose the format by it (``.nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}"
    try:
        write(str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, content) -> None:
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")


def _image_suffix(filename: str) -> str:
    for ext in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if filename.lower().endswith(ext):
            return ext
    return Path(filename).suffix


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's NIfTI writer, writing through a temporary file so a crash never leaves a truncated mask.

    It also writes the array and affine as given when there is nothing to resample to (``SaveImaged(resample=
    False)``). MONAI 1.6's ``ImageWriter.resample_if_needed`` still runs ``SpatialResample`` without a target; for the
    channel-squeezed prediction of a multi-channel input (a 4D NIfTI, ``original_channel_dim = -1``) the MetaTensor
    made there counts two spatial dimensions, so the resampler takes the top-left 3x3 of the affine, which is
    singular when the first two voxel axes are not in-plane: ``ValueError: Affine [[...]] is not invertible``.
    """

    @classmethod
    def resample_if_needed(cls, data_array, affine=None, target_affine=None, output_spatial_shape=None, **kwargs):
        if target_affine is None and output_spatial_shape is None:
            return data_array, (np.eye(4) if affine is None else affine)
        return super().resample_if_needed(data_array, affine, target_affine, output_spatial_shape, **kwargs)

    def write(self, filename, verbose: bool = False, **obj_kwargs):
        atomic_write(filename, lambda tmp: super(AtomicNibabelWriter, self).write(tmp, verbose, **obj_kwargs),
                     suffix=_image_suffix(str(filename)))


class AtomicPILWriter(PILWriter):
    """MONAI's PNG/JPEG writer, writing through a temporary file."""

    def write(self, filename, verbose: bool = False, **kwargs):
        # PIL picks the format from the extension, so the temporary name keeps it
        atomic_write(filename, lambda tmp: super(AtomicPILWriter, self).write(tmp, verbose, **kwargs),
                     suffix=_image_suffix(str(filename)))


class AtomicSaveImaged(SaveImaged):
    """``SaveImaged`` that writes atomically and refuses to overwrite the image it was computed from.

    It subclasses ``SaveImaged``, so MONAI Label's infer task filters it out as it does the original.
    """

    def __init__(self, *args, output_ext: str = ".nii.gz", **kwargs) -> None:
        if "writer" not in kwargs:
            kwargs["writer"] = AtomicPILWriter if output_ext.lower() in (".png", ".jpg", ".jpeg") else AtomicNibabelWriter
        super().__init__(*args, output_ext=output_ext, **kwargs)

    def __call__(self, data):
        for key in self.key_iterator(dict(data)):
            meta = getattr(data[key], "meta", None) or {}
            source = meta.get("filename_or_obj")
            if source:
                target = self.saver.folder_layout.filename(**self.saver.fname_formatter(meta, self.saver))
                if Path(target).resolve() == Path(str(source)).resolve():
                    raise InvalidInputError(f"{source}: refusing to write the prediction over its input image; "
                                            "choose another --output_dir.")
        return super().__call__(data)
