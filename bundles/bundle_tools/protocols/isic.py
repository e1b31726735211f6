# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``isic``: VM-UNet's pooled binary metrics at 256², beside the same figures at each image's original size.

Source: JCruan519/VM-UNet ``engine.py`` (``test_one_epoch``) and ``utils.py`` (``myResize``), inherited unchanged by
XLSTM-VMUNet. VM-UNet reads the mask as ``convert('L') / 255``, resizes it to 256×256 with torchvision's bilinear
``resize`` (a float tensor, so no antialiasing in the torchvision VM-UNet pins), and thresholds it at 0.5; the
prediction is the network's 256² sigmoid map thresholded at 0.5. All pixels of all images go into one confusion
matrix: DSC = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), accuracy, sensitivity, specificity, each 0 when its denominator is.

Columns ``<metric>256_lesion`` are the VM-UNet protocol (the ``pooled`` row is the paper's figure); ``<metric>_lesion``
are the same metrics at the original size (both masks thresholded at 0.5, no resizing), per image and pooled. A
prediction given at another size than 256² (a mask written at the original size, say) is resized like the reference;
in an evaluate config, pass the network's 256² probabilities as ``pred256`` instead to reproduce VM-UNet exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .base import Loaded, Protocol, nanmean
from .io import load_gray_png

__all__ = ["IsicProtocol", "resize_bilinear", "confusion", "binary_scores"]

_METRICS = ("dice", "iou", "accuracy", "sensitivity", "specificity")
_COUNTS = ("tp", "fp", "fn", "tn")


def resize_bilinear(array: np.ndarray, size: Sequence[int] = (256, 256)) -> np.ndarray:
    """torchvision ``TF.resize`` of a float (H, W) map without antialiasing: bilinear, ``align_corners=False``."""
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float64))[None, None]
    out = torch.nn.functional.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False,
                                          antialias=False)
    return out[0, 0].numpy()


def confusion(pred: np.ndarray, ref: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """TP, FP, FN, TN of ``pred >= threshold`` against ``ref >= 0.5`` (VM-UNet's thresholds)."""
    p, g = np.asarray(pred) >= threshold, np.asarray(ref) >= 0.5
    return {"tp": float(np.count_nonzero(p & g)), "fp": float(np.count_nonzero(p & ~g)),
            "fn": float(np.count_nonzero(~p & g)), "tn": float(np.count_nonzero(~p & ~g))}


def binary_scores(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """VM-UNet's five metrics from a confusion matrix; a metric whose denominator is 0 is 0, as in ``engine.py``."""
    def ratio(a, b):
        return float(a) / float(b) if b else 0.0

    return {"dice": ratio(2 * tp, 2 * tp + fp + fn), "iou": ratio(tp, tp + fp + fn),
            "accuracy": ratio(tp + tn, tp + tn + fp + fn), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp)}


class IsicProtocol(Protocol):
    """VM-UNet pooled metrics at 256², plus original-size per-image and pooled figures.

    Args:
        size: the network's input size (VM-UNet: 256×256).
        threshold: prediction threshold (VM-UNet's ``config.threshold`` 0.5).
    """

    name = "isic"
    source = "VM-UNet engine.py test_one_epoch (utils.py myResize), as used by XLSTM-VMUNet"
    extensions = (".png",)
    ref_suffixes = ("_segmentation",)
    class_name = "lesion"

    def __init__(self, size: Sequence[int] = (256, 256), threshold: float = 0.5) -> None:
        self.size, self.threshold = tuple(int(s) for s in size), float(threshold)

    def columns(self) -> list[str]:
        c = self.class_name
        return ([f"{m}256_{c}" for m in _METRICS] + [f"{m}_{c}" for m in _METRICS]
                + [f"{k}256_{c}" for k in _COUNTS] + [f"{k}_{c}" for k in _COUNTS])

    def load(self, path: Path, role: str) -> Loaded:
        return load_gray_png(path)

    def score(self, pred, ref, spacing=None, pred256=None, **extra) -> dict:
        pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        ref = ref / 255.0 if ref.max(initial=0) > 1 else ref  # a 0/255 mask, as VM-UNet divides it
        pred = pred / 255.0 if pred.max(initial=0) > 1 else pred
        if pred.shape != ref.shape:
            raise ValueError(f"isic: prediction {pred.shape} and reference {ref.shape} differ in size "
                             "(write the prediction at the image's original size).")
        c = self.class_name
        if pred256 is None:
            pred256 = pred if pred.shape == self.size else resize_bilinear(pred, self.size)
        pred256 = np.asarray(pred256, dtype=np.float64)
        if pred256.shape != self.size:
            raise ValueError(f"isic: the {self.size} prediction has shape {pred256.shape}.")
        small = confusion(pred256, resize_bilinear(ref, self.size), self.threshold)
        full = confusion(pred, ref, self.threshold)
        row = {f"{m}256_{c}": v for m, v in binary_scores(**small).items()}
        row.update({f"{m}_{c}": v for m, v in binary_scores(**full).items()})
        row.update({f"{k}256_{c}": small[k] for k in _COUNTS})
        row.update({f"{k}_{c}": full[k] for k in _COUNTS})
        return row

    def summarize(self, rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
        c = self.class_name
        mean = {col: nanmean(r[col] for r in rows) for col in self.columns()}
        pooled: dict[str, float] = {}
        for tag in ("256", ""):
            counts = {k: float(sum(r[f"{k}{tag}_{c}"] for r in rows)) for k in _COUNTS}
            pooled.update({f"{m}{tag}_{c}": v for m, v in binary_scores(**counts).items()})
            pooled.update({f"{k}{tag}_{c}": counts[k] for k in _COUNTS})
        return {"mean": mean, "pooled": pooled}

    def headline(self, summary):
        c = self.class_name
        return {f"pooled_{m}256": summary["pooled"][f"{m}256_{c}"] for m in _METRICS} | {
            f"pooled_{m}": summary["pooled"][f"{m}_{c}"] for m in _METRICS}
