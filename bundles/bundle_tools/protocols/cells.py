# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``cells``: instance F1 at IoU 0.5, with precision and recall, as the NeurIPS 2022 Cell Segmentation challenge scores.

Source: JunMa11/NeurIPS-CellSeg ``baseline/compute_metric.py`` (xLSTM-UNet's ``evaluation/compute_cell_metric.py`` is
the same code with PNG semantic predictions, see ``pred_kind``). Per image:

1. Cells touching the 2-pixel border band are removed from reference and prediction, and both are renumbered
   (``--count_bd_cells`` off, the default).
2. IoU of every reference / predicted cell pair; Hungarian matching (``linear_sum_assignment``) on the cost
   ``-(IoU >= 0.5) - IoU / (2·n_min)``, ``n_min`` the smaller instance count; TP = matched pairs with IoU >= 0.5.
3. Precision = TP / predicted cells, recall = TP / reference cells, F1 their harmonic mean; all three 0 when TP = 0
   (also when both images are empty). No prediction at all gives TP = FP = FN = 0.
4. Images of >= 25,000,000 pixels are cut into zero-padded 2000×2000 tiles; steps 1–2 run per tile (so cells cut by
   a tile edge are dropped as border cells) and the counts are summed.

The dataset figure is the mean F1 over images. ``dice_cell`` is the foreground Dice before border removal (1 when
both are empty). The official script rounds per-image values to 4 decimals; we do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .base import Loaded, Protocol, ProtocolError
from .io import load_label_png, load_tiff

__all__ = ["CellsProtocol", "match_instances", "remove_border_cells", "TILE_PIXELS", "TILE_SIZE"]

TILE_PIXELS = 25_000_000
TILE_SIZE = 2000


def _renumber(mask: np.ndarray, drop: np.ndarray | None = None) -> np.ndarray:
    """Labels 1..n in increasing order of the old labels, 0 kept (``skimage.segmentation.relabel_sequential``);
    labels in ``drop`` become 0 first."""
    mask = np.asarray(mask, dtype=np.int64)
    top = int(mask.max(initial=0))
    if top > max(4 * mask.size, 1 << 20):  # sparse huge label values: sort instead of a lookup table
        values, inverse = np.unique(mask, return_inverse=True)
        keep = values != 0
        if drop is not None:
            keep &= ~np.isin(values, drop)
        lut = np.zeros(values.size, dtype=np.int64)
        lut[keep] = np.arange(1, int(keep.sum()) + 1)
        return lut[inverse.reshape(mask.shape)]
    present = np.zeros(top + 1, dtype=bool)
    present[mask.ravel()] = True
    present[0] = False
    if drop is not None:
        present[drop] = False
    lut = np.zeros(top + 1, dtype=np.int64)
    lut[present] = np.arange(1, int(present.sum()) + 1)
    return lut[mask]


def remove_border_cells(mask: np.ndarray, band: int = 2) -> np.ndarray:
    """Instances with any pixel in the ``band``-pixel frame removed, the rest renumbered 1..n."""
    mask = np.asarray(mask, dtype=np.int64)
    frame = np.ones(mask.shape, dtype=bool)
    frame[band:-band, band:-band] = False
    touching = np.unique(mask[frame])
    return _renumber(mask, drop=touching[touching != 0])


def match_instances(ref: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) of two renumbered instance maps: the challenge's Hungarian matching at IoU ``threshold``."""
    n_ref, n_pred = int(ref.max(initial=0)), int(pred.max(initial=0))
    if n_pred == 0:
        return 0, 0, 0  # the official ``eval_tp_fp_fn`` returns zeros without a prediction
    overlap = np.bincount(ref.ravel() * (n_pred + 1) + pred.ravel(),
                          minlength=(n_ref + 1) * (n_pred + 1)).reshape(n_ref + 1, n_pred + 1)
    size_ref, size_pred = overlap.sum(axis=1, keepdims=True), overlap.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = overlap / (size_ref + size_pred - overlap)
    iou = np.nan_to_num(iou)[1:, 1:]
    tp = 0
    if iou.size:
        n_min = min(iou.shape)
        cost = -(iou >= threshold).astype(np.float64) - iou / (2 * n_min)
        rows, cols = linear_sum_assignment(cost)
        tp = int(np.count_nonzero(iou[rows, cols] >= threshold))
    return tp, n_pred - tp, n_ref - tp


class CellsProtocol(Protocol):
    """NeurIPS 2022 cell segmentation F1 at IoU 0.5.

    Args:
        threshold: IoU threshold (challenge: 0.5).
        count_border_cells: True keeps border cells (the official ``--count_bd_cells``). Default False.
        pred_kind: ``"instances"`` (default): predictions are instance masks (the challenge's ``*_label.tiff``).
            ``"interior"``: predictions are 3-class maps (0 background, 1 interior, 2 boundary) whose instances are
            the 8-connected components of the interior class, as xLSTM-UNet's ``compute_cell_metric.py`` builds them.
    """

    name = "cells"
    source = "NeurIPS-CellSeg baseline/compute_metric.py (xLSTM-UNet evaluation/compute_cell_metric.py)"
    extensions = (".tiff", ".tif", ".png")
    ref_suffixes = ("_label",)

    def __init__(self, threshold: float = 0.5, count_border_cells: bool = False, pred_kind: str = "instances") -> None:
        if pred_kind not in ("instances", "interior"):
            raise ValueError(f"cells: pred_kind must be 'instances' or 'interior', not {pred_kind!r}.")
        self.threshold, self.count_border_cells, self.pred_kind = float(threshold), bool(count_border_cells), pred_kind

    def columns(self) -> list[str]:
        return ["f1_cell", "precision_cell", "recall_cell", "dice_cell", "tp_cell", "fp_cell", "fn_cell",
                "n_ref_cell", "n_pred_cell"]

    def load(self, path: Path, role: str) -> Loaded:
        if role == "pred" and self.pred_kind == "interior":
            return load_label_png(path) if str(path).lower().endswith(".png") else load_tiff(path)
        return load_tiff(path)

    def _counts(self, ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int, int]:
        if not self.count_border_cells:
            ref, pred = remove_border_cells(ref), remove_border_cells(pred)
        else:
            ref, pred = _renumber(ref), _renumber(pred)
        tp, fp, fn = match_instances(ref, pred, self.threshold)
        return tp, fp, fn, int(ref.max(initial=0)), int(pred.max(initial=0))

    def score(self, pred, ref, spacing=None, **extra) -> dict:
        pred, ref = np.asarray(pred), np.asarray(ref)
        if pred.shape != ref.shape or ref.ndim != 2:
            raise ValueError(f"cells: prediction {pred.shape} and reference {ref.shape} must be 2D masks of one size.")
        if self.pred_kind == "interior":
            pred, _ = ndimage.label(pred == 1, structure=np.ones((3, 3), dtype=bool))
        if pred.dtype.kind not in "iub" or ref.dtype.kind not in "iub":
            raise ProtocolError(f"cells: instance masks must have integer types (got {ref.dtype} and {pred.dtype}).")
        r_fg, p_fg = ref > 0, pred > 0
        total = int(r_fg.sum()) + int(p_fg.sum())
        dice = 1.0 if total == 0 else (0.0 if not r_fg.any() else 2.0 * np.count_nonzero(r_fg & p_fg) / total)
        if ref.size < TILE_PIXELS:
            tp, fp, fn, n_ref, n_pred = self._counts(ref, pred)
        else:
            tp = fp = fn = n_ref = n_pred = 0
            h, w = ref.shape
            for y in range(0, h, TILE_SIZE):
                for x in range(0, w, TILE_SIZE):
                    tiles = [np.zeros((TILE_SIZE, TILE_SIZE), dtype=np.int64) for _ in range(2)]
                    for tile, source in zip(tiles, (ref, pred)):
                        part = source[y : y + TILE_SIZE, x : x + TILE_SIZE]
                        tile[: part.shape[0], : part.shape[1]] = part  # zero padding past the image
                    counts = self._counts(*tiles)
                    tp, fp, fn, n_ref, n_pred = (a + b for a, b in zip((tp, fp, fn, n_ref, n_pred), counts))
        if tp == 0:
            precision = recall = f1 = 0.0
        else:
            precision, recall = tp / n_pred, tp / n_ref
            f1 = 2 * precision * recall / (precision + recall)
        return {"f1_cell": f1, "precision_cell": precision, "recall_cell": recall, "dice_cell": dice,
                "tp_cell": float(tp), "fp_cell": float(fp), "fn_cell": float(fn),
                "n_ref_cell": float(n_ref), "n_pred_cell": float(n_pred)}

    def headline(self, summary):
        mean = summary["mean"]
        return {"mean_f1": mean["f1_cell"], "mean_precision": mean["precision_cell"], "mean_recall": mean["recall_cell"]}
