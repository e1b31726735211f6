# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Transforms and inferers our bundles need that MONAI does not have."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import math

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import Affined, CenterSpatialCropd, MapTransform, RandomizableTransform

from .checks import flag

__all__ = ["RegionsToLabelsd", "MirrorTTAInferer", "RandRotateScaled", "rotation_safe_crop_size", "crop_margin"]


class RegionsToLabelsd(MapTransform):
    """Turn binary region channels (C, *S) into one label map (1, *S) by painting regions in order.

    BraTS: channels (TC, WT, ET) and ``paint=[[1, 2], [0, 1], [2, 3]]`` paint WT with 2 (oedema), then TC with 1
    (necrosis), then ET with 3, which rebuilds the BraTS label map 0/1/2/3 from nested regions.

    Args:
        keys: keys of the region tensors (thresholded, 0/1).
        paint: ``[channel, value]`` pairs, applied in order; later pairs overwrite earlier ones.
        dtype: output dtype. Default: uint8 (what viewers and MONAI Label's writer expect).
    """

    def __init__(self, keys: KeysCollection, paint: Sequence[Sequence[int]], dtype: torch.dtype = torch.uint8,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.paint = [(int(c), int(v)) for c, v in paint]
        self.dtype = dtype

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            regions = d[key]
            labels = torch.zeros_like(regions[:1], dtype=self.dtype)
            for channel, value in self.paint:
                labels[regions[channel : channel + 1] > 0.5] = value
            d[key] = labels
        return d


class MirrorTTAInferer(Inferer):
    """Test-time augmentation by mirroring: run the input and its flips along ``axes``, average, return logits.

    All 2^len(axes) flip combinations are run (3 spatial axes: 8 passes). ``average`` chooses what is averaged:

    * ``"probabilities"`` (default): the passes' ``activation`` outputs (``"sigmoid"`` for independent region
      channels such as BraTS's TC/WT/ET, ``"softmax"`` over the channel axis for a label map such as AMOS's). The
      result is returned as logits of the mean probability (``logit(p̄)`` for sigmoid, ``log(p̄)`` for softmax,
      clamped to ``eps``), so the bundle's postprocessing (``Activationsd`` with the same activation) turns it back
      into exactly ``p̄`` and nothing downstream changes.
    * ``"logits"``: the raw outputs, what SegMamba's ``Predictor.maybe_mirror_and_predict`` and nnU-Net v2's
      ``_internal_maybe_mirror_and_predict`` (the xLSTM-UNet fork's) do.

    A bundle selects the activation with the ``activation`` argument in its inference config; it must match the
    ``Activationsd`` of its postprocessing (``sigmoid: true`` -> ``"sigmoid"``, ``softmax: true`` -> ``"softmax"``).

    Args:
        inferer: the inferer to wrap (e.g. a SlidingWindowInferer).
        axes: spatial axes to mirror (0-based over the spatial dims). Default: all three.
        enabled: False runs ``inferer`` once, so configs can switch TTA with one override.
        average: ``"probabilities"`` or ``"logits"``.
        activation: ``"sigmoid"`` or ``"softmax"``; the network's output activation (used when averaging
            probabilities).
        eps: probabilities are clamped to [eps, 1 - eps] before the inverse activation, which keeps the logits finite
            (interpolating infinite logits in ``Invertd`` would give NaN).
    """

    def __init__(self, inferer: Inferer, axes: Sequence[int] = (0, 1, 2), enabled: bool = True,
                 average: str = "probabilities", activation: str = "sigmoid", eps: float = 1e-7) -> None:
        super().__init__()
        if average not in ("probabilities", "logits"):
            raise ValueError(f"MirrorTTAInferer: average must be 'probabilities' or 'logits', not {average!r}.")
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"MirrorTTAInferer: activation must be 'sigmoid' or 'softmax', not {activation!r}.")
        self.inferer, self.axes, self.enabled = inferer, tuple(axes), flag(enabled, "tta")
        self.average, self.activation, self.eps = average, activation, float(eps)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=1)

    def _logits(self, probabilities: torch.Tensor) -> torch.Tensor:
        p = probabilities.clamp(self.eps, 1 - self.eps)
        return torch.logit(p) if self.activation == "sigmoid" else torch.log(p)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        if not self.enabled or not self.axes:
            return self.inferer(inputs, network, *args, **kwargs)
        total, count = None, 0
        for mask in range(2 ** len(self.axes)):
            dims = [2 + a for i, a in enumerate(self.axes) if mask >> i & 1]
            x = torch.flip(inputs, dims) if dims else inputs
            y = self.inferer(x, network, *args, **kwargs)
            y = torch.flip(y, dims) if dims else y
            if self.average == "probabilities":
                y = self._probabilities(y.float() if y.dtype in (torch.float16, torch.bfloat16) else y)
            total = y if total is None else total + y
            count += 1
        mean = total / count
        return self._logits(mean) if self.average == "probabilities" else mean


def rotation_safe_crop_size(patch_size: Sequence[int], rotate_axes: Sequence[int], min_scale: float = 0.85) -> list[int]:
    """The region to crop before :class:`RandRotateScaled` so that its output patch needs no padding.

    nnU-Net v2 (``get_patch_size`` in its trainer) crops an enlarged "initial patch" that holds the final patch under
    every rotation, divided by the smallest scale it plans for (0.85, although it samples down to 0.7). For an
    in-plane rotation over the axes ``rotate_axes`` that is the in-plane diagonal; other axes keep their size.

    Example: ``rotation_safe_crop_size([224, 160, 48], [0, 1])`` is ``[324, 324, 48]``.
    """
    size = [int(s) for s in patch_size]
    diagonal = math.sqrt(sum(size[a] ** 2 for a in rotate_axes))
    for axis in rotate_axes:
        size[axis] = int(math.ceil(diagonal / min_scale))
    return size


def crop_margin(patch_size: Sequence[int], crop_size: Sequence[int]) -> list[int]:
    """``BorderPadd``'s ``spatial_border`` that lets a ``crop_size`` region centre wherever a ``patch_size`` patch can.

    A label-sampled crop must lie inside the image, so MONAI moves its centre inwards. For the enlarged,
    rotation-safe region that would confine the final patch to the image's middle (AMOS: a 324² region of a ~320²
    slice is the whole slice, so every 224×160 patch was the same centre window). nnU-Net instead lets the enlarged
    region overhang the image by ``(crop - patch) / 2`` per side (``need_to_pad`` in its data loader); padding by
    that margin first does the same. Returns ``[before_0, after_0, before_1, after_1, ...]``.

    Example: ``crop_margin([224, 160, 48], [324, 324, 48])`` is ``[50, 50, 82, 82, 0, 0]``.
    """
    if len(patch_size) != len(crop_size) or any(int(c) < int(p) for p, c in zip(patch_size, crop_size)):
        raise ValueError(f"crop_size {list(crop_size)} must hold patch_size {list(patch_size)} on every axis")
    border = []
    for patch, crop in zip(patch_size, crop_size):
        extra = int(crop) - int(patch)
        border += [extra // 2, extra - extra // 2]
    return border


class RandRotateScaled(RandomizableTransform, MapTransform):
    """nnU-Net's spatial augmentation: rotation and isotropic scaling drawn independently, applied in one resampling.

    MONAI's ``RandAffined`` has one probability for all its parameters and draws each axis' scale on its own;
    nnU-Net v2's ``SpatialTransform`` rotates with ``p_rotation`` and scales with ``p_scaling`` independently (0.2
    each, so 4 % of patches get both), with one scale factor for every axis (``independent_scale_for_each_axis``
    false), then crops the patch from the centre of a larger region. For strongly anisotropic patches (largest side
    over 3x the through-plane side, AMOS MRI's case) it rotates in-plane only, over ±180° ("dummy 2D").

    Feed it the region ``rotation_safe_crop_size`` gives; it returns the centred ``spatial_size`` patch of the
    rotated and scaled region (a plain centre crop when neither fires, so no interpolation blurs those patches).
    A scale factor above 1 samples a larger region, so structures shrink, as in batchgenerators.

    Args:
        keys: keys to transform together (image and label).
        spatial_size: the output patch, (*S).
        rotate_range: (a0, a1, a2) radians; the angle about each axis is drawn from U(-a, a). 3D: index 2 rotates
            the plane of axes 0 and 1 (MONAI's ``create_rotate`` order). 2D: one angle.
        scale_range: (low, high) of the one scale factor, U(low, high). nnU-Net: (0.7, 1.4).
        prob_rotate, prob_scale: the independent probabilities. nnU-Net: 0.2 and 0.2.
        mode, padding_mode: per key, as ``Affined``.

    Example (AMOS 3D, patches 224×160×48 cropped to 324×324×48 before it)::

        {"_target_": "xlstm_bundle_tools.RandRotateScaled", "keys": ["image", "label"],
         "spatial_size": [224, 160, 48], "rotate_range": [0, 0, 3.1416], "scale_range": [0.7, 1.4],
         "prob_rotate": 0.2, "prob_scale": 0.2, "mode": ["bilinear", "nearest"]}
    """

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int], rotate_range: Sequence[float],
                 scale_range: Sequence[float] = (0.7, 1.4), prob_rotate: float = 0.2, prob_scale: float = 0.2,
                 mode: str | Sequence[str] = "bilinear", padding_mode: str | Sequence[str] = "zeros",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.spatial_size = [int(s) for s in spatial_size]
        self.rotate_range = [float(a) for a in rotate_range]
        if len(self.rotate_range) != (1 if len(self.spatial_size) == 2 else 3):
            raise ValueError(f"rotate_range needs {1 if len(self.spatial_size) == 2 else 3} angle(s) for a "
                             f"{len(self.spatial_size)}D patch, got {list(rotate_range)}")
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.prob_rotate, self.prob_scale = float(prob_rotate), float(prob_scale)
        self.mode, self.padding_mode = mode, padding_mode
        self.rotate_params: list[float] | None = None
        self.scale: float | None = None

    def randomize(self, data=None) -> None:
        rotate = self.R.rand() < self.prob_rotate
        scale = self.R.rand() < self.prob_scale
        self.rotate_params = [float(self.R.uniform(-a, a)) for a in self.rotate_range] if rotate else None
        self.scale = float(self.R.uniform(*self.scale_range)) if scale else None

    def __call__(self, data: Mapping) -> dict:
        self.randomize()
        d = dict(data)
        if self.rotate_params is None and self.scale is None:
            return CenterSpatialCropd(self.keys, self.spatial_size, allow_missing_keys=self.allow_missing_keys)(d)
        affine = Affined(self.keys, rotate_params=self.rotate_params,
                         scale_params=None if self.scale is None else [self.scale] * len(self.spatial_size),
                         spatial_size=self.spatial_size, mode=self.mode, padding_mode=self.padding_mode,
                         allow_missing_keys=self.allow_missing_keys)
        return affine(d)
