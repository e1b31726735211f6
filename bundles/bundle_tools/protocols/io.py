# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Reading reference and prediction files as the papers' evaluators read them, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Loaded, ProtocolError

__all__ = ["load_nifti", "load_label_png", "load_gray_png", "load_tiff", "integer_labels"]


def integer_labels(array: np.ndarray, path: Path | str) -> np.ndarray:
    """``array`` as int64, or an error naming ``path`` when it holds non-integer or negative values."""
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ProtocolError(f"{path}: a label map must hold whole numbers; found non-integer values.")
    if array.size and array.min() < 0:
        raise ProtocolError(f"{path}: a label map must not hold negative values (min {array.min()}).")
    return array.astype(np.int64)


def load_nifti(path: Path, labels: bool = True) -> Loaded:
    """NIfTI in its on-disk axis order (nibabel, no reorientation), spacing from the header's zooms.

    This is how xLSTM-UNet's ``abdomen_*_Eval.py`` (``nb.load(...).get_fdata()``, ``header.get_zooms()``) and
    BraTS-2023-Metrics read their files.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises several types for a damaged file
        raise ProtocolError(f"{path}: not a readable NIfTI file ({error}).") from error
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return Loaded(integer_labels(data, path) if labels else data, zooms)


def _open_image(path: Path):
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
    except Exception as error:
        raise ProtocolError(f"{path}: not a readable image ({error}).") from error
    return image


def load_label_png(path: Path) -> Loaded:
    """A label-map PNG as stored (``cv2.IMREAD_UNCHANGED`` in the EndoVis evaluator): one channel of labels.

    A 3-channel file whose channels are equal (some releases store masks so) is read as its first channel; one whose
    channels differ is an error.
    """
    image = _open_image(path)
    array = np.asarray(image)
    if array.ndim == 3:
        if array.shape[2] == 4:
            raise ProtocolError(f"{path}: an RGBA image is not a label map.")
        if not (array == array[..., :1]).all():
            raise ProtocolError(f"{path}: a label map must have one channel; its {array.shape[2]} channels differ.")
        array = array[..., 0]
    return Loaded(integer_labels(array, path), (1.0, 1.0))


def load_gray_png(path: Path) -> Loaded:
    """A binary mask as VM-UNet reads it: ``Image.open(...).convert('L')`` divided by 255, float64 in [0, 1]."""
    image = _open_image(path)
    return Loaded(np.asarray(image.convert("L"), dtype=np.float64) / 255.0, (1.0, 1.0))


def load_tiff(path: Path) -> Loaded:
    """An instance mask (``*_label.tiff``): tifffile when installed (what the challenge uses), else Pillow."""
    try:
        import tifffile
    except ImportError:
        tifffile = None
    if tifffile is not None and str(path).lower().endswith((".tif", ".tiff")):
        try:
            array = tifffile.imread(str(path))
        except Exception as error:
            raise ProtocolError(f"{path}: not a readable TIFF file ({error}).") from error
    else:
        array = np.asarray(_open_image(path))
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ProtocolError(f"{path}: an instance mask must be one 2D channel, got shape {array.shape}.")
    if array.dtype.kind not in "iub":
        raise ProtocolError(f"{path}: an instance mask must have an integer type, got {array.dtype}.")
    return Loaded(integer_labels(array, path), (1.0, 1.0))
