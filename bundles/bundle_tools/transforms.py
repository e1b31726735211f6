# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Transforms and inferers our bundles need that MONAI does not have."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import MapTransform

__all__ = ["RegionsToLabelsd", "MirrorTTAInferer"]


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
        self.inferer, self.axes, self.enabled = inferer, tuple(axes), enabled
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
