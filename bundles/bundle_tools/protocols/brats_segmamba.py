# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``brats-segmamba``: TC / WT / ET Dice and HD95 as SegMamba's ``5_compute_metrics.py`` computes them.

Source: ge-xing/SegMamba ``5_compute_metrics.py`` (xLSTM-UNet says its BraTS 2023 Table II follows SegMamba). Per
region (TC = labels {1, 3}, WT = {1, 2, 3}, ET = {3}):

* when both prediction and reference hold the region: medpy ``dc`` and ``hd95``;
* otherwise, empty on either side (both empty included): Dice 0, HD95 50.

medpy's ``hd95`` is the 95th percentile of the two directed border-voxel distance sets pooled together (see
:mod:`.surface`). The official code passes ``voxelspacing=[1, 1, 1]`` whatever the header says (BraTS is resampled to
1 mm isotropic, so this only matters for other data); this protocol does the same. The figures are plain means over
cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Loaded, Protocol, ProtocolError, nanmean
from .io import load_nifti
from .surface import border_distances, pooled_percentile

__all__ = ["BratsSegMambaProtocol", "BRATS_REGIONS", "to_regions"]

# Region -> label values of the BraTS 2023 label map (1 NCR, 2 ED/SNFH, 3 ET).
BRATS_REGIONS = {"tc": (1, 3), "wt": (1, 2, 3), "et": (3,)}


def to_regions(array: np.ndarray, order: Sequence[str], path: Path | str = "input",
               stack_order: Sequence[str] = ("tc", "wt", "et")) -> dict[str, np.ndarray]:
    """Region masks of a BraTS label map (X, Y, Z), or of a region stack (3, X, Y, Z) / (X, Y, Z, 3).

    A stack is how SegMamba's ``4_predict.py`` saves predictions (channels TC, WT, ET) and how our bundles hold the
    reference after ``ConvertToMultiChannelBasedOnBratsClassesd``; ``stack_order`` names its channels.
    """
    array = np.asarray(array)
    if array.ndim == 3:
        labels = np.rint(array).astype(np.int64)
        unknown = sorted(set(np.unique(labels).tolist()) - {0, 1, 2, 3})
        if unknown:
            raise ProtocolError(f"{path}: BraTS label values are 0, 1, 2, 3; found {unknown}.")
        return {r: np.isin(labels, BRATS_REGIONS[r]) for r in order}
    if array.ndim == 4 and 3 in (array.shape[0], array.shape[-1]):
        channels = array if array.shape[0] == 3 else np.moveaxis(array, -1, 0)
        stack = {name: channels[i] > 0.5 for i, name in enumerate(stack_order)}
        return {r: stack[r] for r in order}
    raise ProtocolError(f"{path}: expected a BraTS label map (X, Y, Z) or a 3-region stack, got shape {array.shape}.")


class BratsSegMambaProtocol(Protocol):
    """SegMamba's BraTS rules: medpy Dice/HD95 per region, 0 / 50 when either side is empty, unit spacing.

    Args:
        empty_dice, empty_hd95: the values when prediction or reference lacks the region. Default: 0 and 50.
        use_header_spacing: False (default) scores at 1 mm as the official code does; True uses the file's spacing.
    """

    name = "brats-segmamba"
    source = "SegMamba 5_compute_metrics.py (medpy.metric.binary.dc / hd95)"
    extensions = (".nii.gz", ".nii")
    ref_suffixes = ("-seg", "_seg")
    regions = ("tc", "wt", "et")

    def __init__(self, empty_dice: float = 0.0, empty_hd95: float = 50.0, use_header_spacing: bool = False) -> None:
        self.empty_dice, self.empty_hd95 = float(empty_dice), float(empty_hd95)
        self.use_header_spacing = bool(use_header_spacing)

    def columns(self) -> list[str]:
        return [f"dice_{r}" for r in self.regions] + [f"hd95_{r}" for r in self.regions] + ["mean_dice", "mean_hd95"]

    def load(self, path: Path, role: str) -> Loaded:
        return load_nifti(path, labels=False)

    def score(self, pred, ref, spacing=None, **extra) -> dict:
        pred_regions = to_regions(pred, self.regions, extra.get("pred_path", "prediction"))
        ref_regions = to_regions(ref, self.regions, extra.get("ref_path", "reference"))
        shape = next(iter(ref_regions.values())).shape
        if next(iter(pred_regions.values())).shape != shape:
            raise ValueError(f"brats-segmamba: prediction and reference grids differ "
                             f"({next(iter(pred_regions.values())).shape} vs {shape}).")
        spacing = tuple(spacing) if (self.use_header_spacing and spacing is not None) else (1.0,) * len(shape)
        row: dict[str, float] = {}
        for r in self.regions:
            p, g = pred_regions[r], ref_regions[r]
            if p.any() and g.any():
                row[f"dice_{r}"] = 2.0 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))
                row[f"hd95_{r}"] = pooled_percentile(border_distances(g, p, spacing), 95)
            else:
                row[f"dice_{r}"], row[f"hd95_{r}"] = self.empty_dice, self.empty_hd95
        row["mean_dice"] = nanmean(row[f"dice_{r}"] for r in self.regions)
        row["mean_hd95"] = nanmean(row[f"hd95_{r}"] for r in self.regions)
        return row
