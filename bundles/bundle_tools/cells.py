# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Microscopy cell images as the NeurIPS 2022 Cell Segmentation challenge distributes them: reading, the challenge's
normalisation, input checks, instance masks out of a 3-class prediction, and the ``*_label.tiff`` writer.

Images come as png, bmp, jpg, tif or tiff, with 1 or 3 channels (more are cut to 3), 8 or 16 bits (or float). The
challenge's baseline (JunMa11/NeurIPS-CellSeg ``data/pre_process_3class.py`` and ``baseline/predict.py``) reads
``.tif``/``.tiff`` with tifffile and the rest with ``skimage.io``, then, per channel:

- a channel without a non-zero pixel stays 0;
- otherwise p1, p99 = the 1st and 99th percentiles (numpy's linear interpolation) of its non-zero pixels, and the
  channel becomes ``floor((clip(x, p1, p99) - p1) / (p99 - p1) * 255)`` as uint8
  (``exposure.rescale_intensity(..., out_range='uint8')``);
- when ``p99 - p1 <= 0.001`` (a flat channel) the official code casts the channel to uint8 as it is; we do the same
  but clip to 0..255 first (the official cast wraps 16-bit values modulo 256).

A grayscale image is repeated into 3 channels; an image with more than 3 channels keeps the first 3. An image with
an alpha channel (RGBA / LA PNG, a TIFF whose extra sample is alpha) is refused: the official code would silently
drop the alpha, and what the alpha hides is not known. A 2-channel image is refused too (the official code fails
on it).

Everything here reads arrays in numpy's (row, column) order, unlike MONAI's PILReader (which transposes); image,
label and instance files all go through :class:`CellImageReader`, so they stay on one grid.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import ImageReader
from monai.transforms import MapTransform, NormalizeIntensityd
from monai.transforms.traits import RandomizableTrait

from .errors import InvalidInputError
from .instances import BOUNDARY, INTERIOR, instances_from_semantic
from .io import atomic_write

__all__ = [
    "IMAGE_SUFFIXES",
    "read_cell_image",
    "read_instance_mask",
    "read_class_map",
    "normalize_channel",
    "normalize_cell_image",
    "percentiles_of_nonzero",
    "CellImageReader",
    "NormalizeCellImaged",
    "CellInstancesd",
    "TiffInstanceWriter",
    "cell_output_name",
    "check_cell_case",
    "check_cell_instances",
    "load_cell_fold",
    "CellMetrics",
    "instance_overlay",
    "InstanceOverlaySaver",
    "ZScoreCellImaged",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")
_ALPHA_MODES = {"RGBA": "RGBA", "LA": "grayscale with alpha", "PA": "a palette image with alpha", "RGBa": "RGBA",
                "La": "grayscale with alpha"}


def _is_tiff(path) -> bool:
    return str(path).lower().endswith(_TIFF)


def _read_tiff(path: Path, what: str) -> np.ndarray:
    """A TIFF's first series in (Y, X[, channels]) order; alpha samples are refused."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
            extrasamples = tuple(getattr(tif.pages[0], "extrasamples", ()) or ())
    except Exception as err:  # tifffile raises several types for damaged files
        raise InvalidInputError(f"{path}: cannot be read as a TIFF {what} ({type(err).__name__}: {err}).") from err
    if any(int(e) in (1, 2) for e in extrasamples):  # EXTRASAMPLE.ASSOCALPHA / UNASSALPHA
        raise InvalidInputError(f"{path}: the TIFF has an alpha channel; expected 1 or 3 channels without alpha "
                                "(save it without transparency).")
    # drop length-1 axes, then put a sample/channel axis last
    keep = [i for i, n in enumerate(array.shape) if n != 1]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep) if len(axes) == len(series.shape) else ""
    for channel_axis in "SC":
        if channel_axis in axes and axes.index(channel_axis) != len(axes) - 1 and array.ndim == 3:
            array = np.moveaxis(array, axes.index(channel_axis), -1)
            break
    return array


def _read_other(path: Path, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            mode = picture.mode
            if mode in _ALPHA_MODES or (mode == "P" and "transparency" in picture.info):
                raise InvalidInputError(f"{path}: the {what} is {_ALPHA_MODES.get(mode, 'a palette image with alpha')}"
                                        f" (mode {mode}, it has an alpha channel); expected 1 or 3 channels without "
                                        "alpha (save it as RGB or grayscale).")
            if mode == "P":
                picture = picture.convert("RGB")
            elif mode == "1":
                picture = picture.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                raise InvalidInputError(f"{path}: the {what} is in mode {mode}; expected grayscale or RGB.")
            array = np.array(picture)  # writable (torch warns on read-only arrays)
    except InvalidInputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err}).") from err
    return array


def _read_array(path, what: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found.")
    return _read_tiff(path, what) if _is_tiff(path) else _read_other(path, what)


def read_cell_image(path) -> np.ndarray:
    """A microscopy image as (H, W) or (H, W, 3), in its own dtype; more than 3 channels are cut to 3."""
    array = _read_array(path, "image")
    if array.ndim == 3:
        channels = array.shape[-1]
        if channels == 2:
            raise InvalidInputError(f"{path}: the image has 2 channels; expected 1 (grayscale) or 3 (RGB).")
        if channels > 3:
            if channels > 16:
                raise InvalidInputError(f"{path}: expected one 2D image with 1-3 channels, got an array of shape "
                                        f"{array.shape} (a stack or a volume?).")
            logger.info("%s: %d channels; keeping the first 3, as the challenge's code does.", path, channels)
            array = array[..., :3]
    elif array.ndim != 2:
        raise InvalidInputError(f"{path}: expected one 2D image with 1 or 3 channels, got an array of shape "
                                f"{array.shape}.")
    if array.dtype.kind not in "uifb":
        raise InvalidInputError(f"{path}: pixel type {array.dtype} is not a number.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"{path}: the image holds NaN or infinite values.")
    return array


def read_instance_mask(path) -> np.ndarray:
    """An instance mask (``*_label.tiff``): one 2D channel of non-negative integers, 0 background."""
    array = _read_array(path, "instance mask")
    if array.ndim != 2:
        raise InvalidInputError(f"{path}: an instance mask must be one 2D channel; got shape {array.shape}.")
    if array.dtype.kind not in "iub":
        raise InvalidInputError(f"{path}: an instance mask must have an integer type; got {array.dtype} (cell ids "
                                "are whole numbers: save it as uint16 or int32).")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise InvalidInputError(f"{path}: an instance mask must not hold negative ids (min {array.min()}).")
    return array


def read_class_map(path, class_values: Iterable[int] = (0, 1, 2)) -> np.ndarray:
    """A 3-class target (``Dataset703_NeurIPSCell/labelsTr/*.png``): one 2D channel with values in ``class_values``."""
    array = _read_array(path, "label map")
    if array.ndim == 3 and (array == array[..., :1]).all():
        array = array[..., 0]
    if array.ndim != 2 or array.dtype.kind not in "iub":
        raise InvalidInputError(f"{path}: a label map must be one 2D channel of integers; got {array.dtype} "
                                f"{array.shape}.")
    values = set(np.unique(array).tolist())
    allowed = set(int(v) for v in class_values)
    if not values <= allowed:
        raise InvalidInputError(f"{path}: label values {sorted(values - allowed)[:5]} are outside the class set "
                                f"{sorted(allowed)} (0 background, 1 interior, 2 boundary).")
    return array


def percentiles_of_nonzero(channel: np.ndarray, q: Sequence[float] = (1, 99)) -> np.ndarray | None:
    """``np.percentile(channel[channel != 0], q)`` (linear interpolation), None when no pixel is non-zero.

    For 8- and 16-bit channels it reads the order statistics off a histogram (exact, no copy of the pixels).
    """
    if channel.dtype in (np.uint8, np.uint16, np.bool_):
        counts = np.bincount(channel.ravel(), minlength=2)
        counts[0] = 0
        n = int(counts.sum())
        if n == 0:
            return None
        cumulative = np.cumsum(counts)
        out = []
        for value in q:
            position = (n - 1) * value / 100.0
            lower, frac = int(math.floor(position)), position - math.floor(position)
            a = int(np.searchsorted(cumulative, lower + 1))
            b = int(np.searchsorted(cumulative, min(lower + 2, n)))
            out.append(a + (b - a) * frac)
        return np.asarray(out, dtype=np.float64)
    values = channel[channel != 0]
    return np.percentile(values, q) if values.size else None


def normalize_channel(channel: np.ndarray, lower: float = 1, upper: float = 99, block_rows: int = 1024) -> np.ndarray:
    """One channel -> uint8 as the challenge normalises it (module docstring); float64 arithmetic, block-wise."""
    channel = np.asarray(channel)
    if channel.dtype == np.bool_:
        channel = channel.astype(np.uint8)
    bounds = percentiles_of_nonzero(channel, (lower, upper))
    out = np.zeros(channel.shape, dtype=np.uint8)
    if bounds is None:
        return out
    low, high = float(bounds[0]), float(bounds[1])
    if high - low <= 0.001:  # flat channel: the official code casts as is (wrapping); we clip first
        np.clip(channel, 0, 255, out=out, casting="unsafe")
        return out
    if channel.dtype in (np.uint8, np.uint16):  # exact lookup table over every possible value
        values = np.arange(256 if channel.dtype == np.uint8 else 65536, dtype=np.float64)
        lut = ((np.clip(values, low, high) - low) / (high - low) * 255.0).astype(np.uint8)
        return lut[channel]
    for top in range(0, channel.shape[0], block_rows):
        rows = np.clip(channel[top : top + block_rows].astype(np.float64), low, high)
        out[top : top + block_rows] = ((rows - low) / (high - low) * 255.0).astype(np.uint8)
    return out


def normalize_cell_image(image: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """(H, W) or (H, W, C) image -> (3, H, W) uint8, the challenge's per-channel normalisation (gray repeated)."""
    image = np.asarray(image)
    if image.ndim == 2:
        gray = normalize_channel(image)
        return np.broadcast_to(gray, (3, *gray.shape)).copy()
    image = np.moveaxis(image, channel_axis, 0)
    if image.shape[0] == 1:
        return normalize_cell_image(image[0])
    if image.shape[0] > 3:
        image = image[:3]
    if image.shape[0] != 3:
        raise ValueError(f"normalize_cell_image: expected 1 or 3 channels, got {image.shape[0]}.")
    return np.stack([normalize_channel(c) for c in image])


class CellImageReader(ImageReader):
    """MONAI reader (for ``LoadImaged(reader=...)``) of challenge images, 3-class maps and instance masks.

    Arrays come in numpy order (H, W[, C]); ``kind`` chooses the checks: ``"image"`` (:func:`read_cell_image`),
    ``"label"`` (:func:`read_class_map`, values 0/1/2) or ``"instances"`` (:func:`read_instance_mask`).
    """

    def __init__(self, kind: str = "image", class_values: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        if kind not in ("image", "label", "instances"):
            raise ValueError(f"CellImageReader: kind must be 'image', 'label' or 'instances', not {kind!r}.")
        self.kind, self.class_values = kind, tuple(class_values)

    def verify_suffix(self, filename) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(str(n).lower().endswith(IMAGE_SUFFIXES) for n in names)

    def read(self, data, **kwargs):
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if len(names) != 1:
            raise InvalidInputError(f"{names}: a cell case is one image file.")
        if self.kind == "image":
            return read_cell_image(names[0])
        if self.kind == "label":
            return read_class_map(names[0], self.class_values)
        return read_instance_mask(names[0])

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        meta = {"spatial_shape": np.asarray(img.shape[:2]), "original_channel_dim": -1 if img.ndim == 3 else
                float("nan")}
        return img, meta


class NormalizeCellImaged(MapTransform):
    """The challenge's normalisation on a loaded (C, H, W) image, C in {1, 3}: (3, H, W) uint8 values.

    See the module docstring. Put it before the z-score (nnU-Net's normalisation of Dataset703's PNGs).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            normalized = torch.from_numpy(normalize_cell_image(array, channel_axis=0))
            if hasattr(image, "meta"):
                from monai.data import MetaTensor

                normalized = MetaTensor(normalized, meta=image.meta)
            d[key] = normalized
        return d


class CellInstancesd(MapTransform):
    """Logits (3, H, W) -> class map (1, H, W) uint8 under ``key`` and instances (1, H, W) under ``instance_key``.

    The class map is the argmax (0 background, 1 interior, 2 boundary), taken ``block_rows`` rows at a time so no
    full-size float copy is made; the instances are :func:`xlstm_bundle_tools.instances.instances_from_semantic`
    (8-connected interior components grown into the boundary class by ``grow_distance`` pixels). The instance map
    is int32 (float32 with ``instance_dtype="float32"``, exact up to 2^24 cells); the writer stores uint16.
    """

    def __init__(self, keys: KeysCollection, instance_key: str = "instances", grow_distance: float = 2.0,
                 block_rows: int = 512, argmax: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.instance_key, self.grow_distance = instance_key, float(grow_distance)
        self.block_rows, self.argmax = int(block_rows), bool(argmax)

    def classes(self, logits: torch.Tensor) -> np.ndarray:
        if not self.argmax:
            return logits.detach().cpu().numpy().reshape(logits.shape[-2:]).astype(np.uint8)
        height = logits.shape[-2]
        out = np.empty(tuple(logits.shape[-2:]), dtype=np.uint8)
        for top in range(0, height, self.block_rows):
            block = logits[:, top : top + self.block_rows].detach()
            out[top : top + self.block_rows] = torch.argmax(block, dim=0).to(torch.uint8).cpu().numpy()
        return out

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        from monai.data import MetaTensor

        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            semantic = self.classes(torch.as_tensor(logits))
            instances = instances_from_semantic(semantic, self.grow_distance)
            meta = dict(getattr(logits, "meta", {}) or {})
            affine = getattr(logits, "affine", None)
            d[key] = MetaTensor(torch.from_numpy(semantic)[None], affine=affine, meta=meta)
            d[self.instance_key] = MetaTensor(torch.from_numpy(instances)[None], affine=affine, meta=dict(meta))
        return d


def cell_output_name(metadict: Mapping, saver) -> dict:
    """SaveImage ``output_name_formatter``: the input's name without extension and without nnU-Net's ``_0000``.

    ``cell_00001.tif`` -> ``cell_00001`` (written ``cell_00001_label.tiff`` with ``output_postfix="label"``);
    ``cell_00001_0000.png`` (Dataset703) -> ``cell_00001``.
    """
    source = (metadict or {}).get("filename_or_obj", getattr(saver, "_data_index", 0))
    name = os.path.basename(str(source))
    for ext in IMAGE_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if name.endswith("_0000"):
        name = name[: -len("_0000")]
    # FolderLayout strips one extension: give it one to strip, so a dot inside the stem survives
    return {"subject": f"{name}.img", "idx": (metadict or {}).get("patch_index")}


class TiffInstanceWriter:
    """SaveImage writer of instance masks as the challenge's ``*_label.tiff``: tifffile, zlib, written atomically.

    uint16 when the largest id fits (the challenge's format), else uint32 (whole slides can hold more than 65,535
    cells), with a log line saying so.
    """

    def __init__(self, **kwargs) -> None:
        self.data: np.ndarray | None = None

    def set_data_array(self, data_array, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs):
        array = data_array.detach().cpu().numpy() if isinstance(data_array, torch.Tensor) else np.asarray(data_array)
        array = np.squeeze(array)
        if array.ndim != 2:
            raise ValueError(f"TiffInstanceWriter: expected one 2D instance map, got shape {array.shape}.")
        self.data = array

    def set_metadata(self, meta_dict=None, resample: bool = False, **kwargs):
        return None

    def write(self, filename, verbose: bool = False, **kwargs):
        import tifffile

        array = self.data
        if array.dtype.kind == "f":
            array = np.rint(array)
        top = int(array.max(initial=0))
        dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
        if dtype is np.uint32:
            logger.info("%s: %d cells do not fit uint16; writing uint32.", filename, top)
        array = array.astype(dtype)
        atomic_write(filename, lambda tmp: tifffile.imwrite(tmp, array, compression="zlib"), suffix=".tiff")


def check_cell_case(image: str, label: str | None = None, class_values: Iterable[int] | None = None,
                    channels: int | None = None, instances: str | None = None) -> dict:
    """Preflight of one case: a readable image (1/3 channels, no alpha), and a label / instance mask of its size.

    ``label`` is a 3-class map (values in ``class_values``, default 0/1/2); ``instances`` an instance mask;
    ``channels`` (the network's input channels, passed by the configs' preflight) must be 3: every image becomes 3.
    """
    if channels not in (None, 3):
        raise ValueError(f"check_cell_case: cell images are turned into 3 channels; the network takes {channels}.")
    array = read_cell_image(image)
    shape = tuple(array.shape[:2])
    for path, reader in ((label, lambda p: read_class_map(p, class_values or (0, 1, 2))),
                         (instances, read_instance_mask)):
        if path is None:
            continue
        other = reader(path)
        if tuple(other.shape) != shape:
            raise InvalidInputError(f"{path}: size {other.shape[1]}x{other.shape[0]} differs from its image {image} "
                                    f"({shape[1]}x{shape[0]}).")
    return {"shape": shape}


def check_cell_instances(image: str, instances: str | None = None, class_values: Iterable[int] | None = None,
                         channels: int | None = None) -> dict:
    """:func:`check_cell_case` of an image and its reference instance mask, in the shape ``check_cases`` calls
    (``check_cases(entries, label_key="instances", check=check_cell_instances)``): the evaluation's preflight."""
    return check_cell_case(image, None, None, channels=channels, instances=instances)


def load_cell_fold(path, fold: int = 0, split: str = "train", reference: str | None = None) -> list[dict]:
    """:func:`xlstm_bundle_tools.load_fold`, with the ``instances`` paths made absolute.

    ``reference="instances"`` keeps only entries that have an instance mask (the ones F1 can be scored on).
    """
    from .datalist import load_fold

    folder = Path(path).resolve().parent
    entries = load_fold(path, fold=fold, split=split)
    for entry in entries:
        if entry.get("instances") and not os.path.isabs(entry["instances"]):
            entry["instances"] = str(folder / entry["instances"])
    if reference == "instances":
        entries = [e for e in entries if e.get("instances")]
    return entries


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


class CellMetrics:
    """``compute`` callable for :class:`xlstm_bundle_tools.CaseMetricsSaver`: the challenge's F1 and more, per image.

    Columns: the ``cells`` protocol's (``f1_cell``, ``precision_cell``, ``recall_cell``, ``dice_cell``, counts) on
    the instance masks inference writes; ``f1_interior_cell`` etc., the same protocol on the 8-connected interior
    components without growth (how xLSTM-UNet's ``compute_cell_metric.py`` scores its 3-class PNGs, i.e. the
    paper's Table I protocol); and the semantic Dice of the 3-class map against the training target
    (``dice_interior``, ``dice_boundary``, their mean ``dice_semantic``).

    Args:
        protocol: the evaluation protocol's name (bundle.yaml ``evaluation_protocol``; ``cells``, the only one that
            scores instance masks and takes ``pred_kind="interior"``).
        pred_key: predicted instance map (1, H, W).
        label_key: reference instance mask (1, H, W), the challenge's ``*_label.tiff``.
        semantic_key: predicted 3-class map (1, H, W) (None skips the interior-only F1 and the semantic Dice).
        semantic_label_key: the 3-class target (1, H, W) (None skips the semantic Dice).
        count_border_cells: the protocol's option (default False, as the challenge).
    """

    def __init__(self, protocol: str = "cells", pred_key: str = "instances", label_key: str = "instances_ref",
                 semantic_key: str | None = "pred", semantic_label_key: str | None = "label",
                 count_border_cells: bool = False) -> None:
        from .protocols import get_protocol

        self.protocol = get_protocol(protocol, count_border_cells=count_border_cells)
        self.interior = get_protocol(protocol, count_border_cells=count_border_cells, pred_kind="interior")
        self.pred_key, self.label_key = pred_key, label_key
        self.semantic_key, self.semantic_label_key = semantic_key, semantic_label_key

    @staticmethod
    def _plane(value) -> np.ndarray:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        array = np.squeeze(array)
        if array.dtype.kind == "f":
            array = np.rint(array)
        return array.astype(np.int64)

    def __call__(self, sample: Mapping) -> dict[str, float]:
        pred, ref = self._plane(sample[self.pred_key]), self._plane(sample[self.label_key])
        row = dict(self.protocol.score(pred, ref))
        if self.semantic_key is not None and self.semantic_key in sample:
            semantic = self._plane(sample[self.semantic_key])
            inner = self.interior.score(semantic, ref)
            row.update({f"{k[: -len('_cell')]}_interior_cell": v for k, v in inner.items()
                        if k in ("f1_cell", "precision_cell", "recall_cell")})
            if self.semantic_label_key is not None and self.semantic_label_key in sample:
                target = self._plane(sample[self.semantic_label_key])
                row["dice_interior"] = _dice(semantic == INTERIOR, target == INTERIOR)
                row["dice_boundary"] = _dice(semantic == BOUNDARY, target == BOUNDARY)
                row["dice_semantic"] = (row["dice_interior"] + row["dice_boundary"]) / 2
        return row

    def summarize(self, rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
        from .protocols.base import nanmean

        columns = list(self.protocol.columns()) + [c for r in rows for c in r if c != "case"]
        columns = list(dict.fromkeys(columns))
        return {"mean": {c: nanmean(r.get(c, math.nan) for r in rows) for c in columns}}

    def headline(self, summary) -> dict[str, float]:
        mean = summary["mean"]
        keys = ("f1_cell", "precision_cell", "recall_cell", "f1_interior_cell", "dice_semantic")
        return {f"mean_{k}": mean[k] for k in keys if k in mean}


def _outlines(instances: np.ndarray) -> np.ndarray:
    """Pixels of an instance whose 4-neighbour carries another value (the instances' inner outlines)."""
    edge = np.zeros(instances.shape, dtype=bool)
    edge[1:] |= instances[1:] != instances[:-1]
    edge[:-1] |= instances[:-1] != instances[1:]
    edge[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    edge[:, :-1] |= instances[:, :-1] != instances[:, 1:]
    return edge & (instances > 0)


def instance_overlay(image: np.ndarray, panels: Sequence[tuple[str, np.ndarray]], max_side: int = 1024) -> np.ndarray:
    """(H, W*k, 3) uint8 picture: the image with each instance map's outlines, one panel per map, side by side.

    ``image`` is (C, H, W) (any scale; each channel stretched to its 1-99 % range). Each instance gets a colour of
    its own. Large images are shown subsampled to ``max_side``.
    """
    image = np.asarray(image, dtype=np.float32)
    image = image if image.ndim == 3 else image[None]
    step = max(1, int(math.ceil(max(image.shape[1:]) / max_side)))
    image = image[:, ::step, ::step]
    shown = np.zeros((*image.shape[1:], 3), dtype=np.float32)
    for c in range(3):
        channel = image[min(c, image.shape[0] - 1)]
        lo, hi = np.percentile(channel, [1, 99])
        shown[..., c] = np.clip((channel - lo) / max(hi - lo, 1e-6), 0, 1)
    rng = np.random.default_rng(0)
    out = []
    for _, instances in panels:
        instances = np.squeeze(np.asarray(instances))[::step, ::step].astype(np.int64)
        colours = rng.uniform(0.3, 1.0, (int(instances.max(initial=0)) + 1, 3)).astype(np.float32)
        colours[:, int(rng.integers(0, 3))] *= 0.3  # saturated hues
        panel = shown.copy()
        edge = _outlines(instances)
        panel[edge] = colours[instances[edge]]
        inside = (instances > 0) & ~edge
        panel[inside] = 0.8 * panel[inside] + 0.2 * colours[instances[inside]]
        out.append(panel)
    return (np.concatenate(out, axis=1) * 255).astype(np.uint8)


class InstanceOverlaySaver:
    """Evaluator handler: ``<case>_overlay.png`` with the cell outlines drawn on the image, for the first cases.

    Panels: prediction, then reference when ``label_key`` is given and present. Cases with more than ``max_pixels``
    pixels are drawn subsampled.
    """

    def __init__(self, output_dir: str, image_key: str = "image", pred_key: str = "instances",
                 label_key: str | None = None, max_cases: int = 4, case_key: str | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.image_key, self.pred_key, self.label_key = image_key, pred_key, label_key
        self.max_cases, self.case_key, self.saved = int(max_cases), case_key or image_key, 0

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda e: setattr(self, "saved", 0))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._draw)

    def _draw(self, engine) -> None:
        from PIL import Image

        from .metrics import engine_samples

        for sample in engine_samples(engine):
            if self.saved >= self.max_cases or self.pred_key not in sample or self.image_key not in sample:
                return
            image = sample[self.image_key]
            image = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            panels = [("prediction", CellMetrics._plane(sample[self.pred_key]))]
            if self.label_key and self.label_key in sample:
                panels.append(("reference", CellMetrics._plane(sample[self.label_key])))
            picture = instance_overlay(image, panels)
            source = getattr(sample.get(self.case_key), "meta", {}).get("filename_or_obj", f"case_{self.saved}")
            case = cell_output_name({"filename_or_obj": source}, None)["subject"][: -len(".img")]
            atomic_write(self.output_dir / f"{case}_overlay.png",
                         lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"), ".png")
            self.saved += 1


class ZScoreCellImaged(NormalizeIntensityd, RandomizableTrait):
    """nnU-Net's normalisation of Dataset703's channels: per image and channel, ``(x - mean) / std``
    (``NormalizeIntensityd(channel_wise=True)``; a constant channel only loses its mean).

    Marked with MONAI's ``RandomizableTrait`` for one reason: ``CacheDataset`` caches the pipeline up to the first
    transform with that trait, so training caches the challenge-normalised uint8 image (3 bytes a pixel) instead of
    the float32 z-scored one (12). The transform itself is deterministic.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, channel_wise=True, allow_missing_keys=allow_missing_keys)
