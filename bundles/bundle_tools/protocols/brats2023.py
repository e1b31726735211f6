# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``brats2023``: the BraTS 2023 challenge's lesion-wise Dice and HD95, as BraTS-2023-Metrics computes them.

Source: rachitsaluja/BraTS-2023-Metrics ``metrics.py`` (``get_LesionWiseResults`` / ``get_LesionWiseScores``), the
code the 2023 challenge ranked with. Per region (WT = labels {1, 2, 3}, TC = {1, 3}, ET = {3}):

1. Lesions: the reference is dilated ``dilation`` times with the 18-neighbourhood structure
   (``generate_binary_structure(3, 2)``); reference voxels in one 26-connected component of the dilated mask form one
   lesion (so nearby or touching components merge). Predicted lesions are the 26-connected components of the
   prediction.
2. Each reference lesion is matched to every predicted component that intersects the lesion's dilated region. Its
   Dice is computed against the union of those components, its HD95 with DeepMind's robust Hausdorff (surfels, the
   prediction header's spacing); a lesion with no match scores Dice 0 and HD95 374.
3. Predicted components matched to no lesion are false positives, whatever their size.
4. Lesions of volume <= ``volume_threshold`` mm³ are left out of the scores (they are neither counted nor
   penalised); their matched components are not false positives.
5. Lesion-wise Dice = Σ lesion Dice / (lesions + FP); HD95 = (Σ lesion HD95 + 374·FP) / (lesions + FP). With no
   lesion and no FP: Dice 1, HD95 0.

Dilation and volume threshold by sub-challenge, from the same file: GLI 3 / 50 (the default), SSA 3 / 50,
MEN 1 / 50, PED 3 / 50, MET 1 / 2. The ``legacy_*`` columns are the challenge's whole-region Dice (1 when both are
empty) and HD95 (0 when both are empty, 374 when one is).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from .base import Loaded, Protocol, nanmean
from .brats_segmamba import to_regions
from .io import load_nifti
from .surface import robust_hausdorff, surfel_distances

__all__ = ["Brats2023Protocol", "SUB_CHALLENGES", "lesion_wise_scores", "MISSED_HD95"]

SUB_CHALLENGES = {"GLI": (3, 50.0), "SSA": (3, 50.0), "MEN": (1, 50.0), "PED": (3, 50.0), "MET": (1, 2.0)}
MISSED_HD95 = 374.0  # the challenge's HD95 for a missed or a false lesion
_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def lesion_wise_scores(pred: np.ndarray, ref: np.ndarray, spacing, dilation: int, volume_threshold: float) -> dict:
    """Lesion-wise and legacy scores of one region's boolean masks (X, Y, Z); see the module docstring."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    spacing = tuple(float(s) for s in spacing)
    voxel_volume = float(np.prod(spacing))
    both_empty = not pred.any() and not ref.any()
    legacy_dice = 1.0 if both_empty else 2.0 * np.count_nonzero(pred & ref) / (pred.sum() + ref.sum())
    legacy_hd95 = 0.0 if both_empty else robust_hausdorff(surfel_distances(ref, pred, spacing), 95)

    structure = ndimage.generate_binary_structure(3, 2)
    pred_cc, n_pred = ndimage.label(pred, structure=_CONNECTIVITY_26)
    if ref.any():
        dilated_cc, n_lesions = ndimage.label(ndimage.binary_dilation(ref, structure, iterations=dilation),
                                              structure=_CONNECTIVITY_26)
    else:
        dilated_cc, n_lesions = np.zeros(ref.shape, dtype=np.int32), 0
    lesions = np.where(ref, dilated_cc, 0)  # reference voxels labelled by their dilated component: merged lesions

    matched: set[int] = set()
    kept_dice, kept_hd95, tp, fn = [], [], 0, 0
    for k in range(1, n_lesions + 1):
        lesion = lesions == k
        # The lesion's own dilation is exactly its dilated component (the dilation of a union is the union of the
        # dilations, and each voxel's dilation is connected to it).
        region = dilated_cc == k
        hits = np.unique(pred_cc[region])
        hits = hits[hits != 0]
        matched.update(hits.tolist())
        candidate = np.isin(pred_cc, hits) if hits.size else np.zeros_like(lesion)
        lesion_dice = 2.0 * np.count_nonzero(candidate & lesion) / (candidate.sum() + lesion.sum())
        lesion_hd95 = robust_hausdorff(surfel_distances(lesion, candidate, spacing), 95)
        if lesion.sum() * voxel_volume > volume_threshold:
            kept_dice.append(lesion_dice)
            kept_hd95.append(MISSED_HD95 if math.isinf(lesion_hd95) else lesion_hd95)
            tp, fn = (tp + 1, fn) if hits.size else (tp, fn + 1)
    fp = n_pred - len(matched)
    denominator = len(kept_dice) + fp
    return {
        "dice": sum(kept_dice) / denominator if denominator else 1.0,
        "hd95": (sum(kept_hd95) + MISSED_HD95 * fp) / denominator if denominator else 0.0,
        "num_tp": float(tp), "num_fp": float(fp), "num_fn": float(fn),
        "legacy_dice": float(legacy_dice),
        "legacy_hd95": MISSED_HD95 if math.isinf(legacy_hd95) else float(legacy_hd95),
    }


class Brats2023Protocol(Protocol):
    """BraTS 2023 lesion-wise Dice / HD95 per region (WT, TC, ET).

    Args:
        challenge: sub-challenge whose dilation / volume threshold apply: GLI (default), SSA, MEN, PED, MET.
    """

    name = "brats2023"
    source = "BraTS-2023-Metrics metrics.py (get_LesionWiseResults)"
    extensions = (".nii.gz", ".nii")
    ref_suffixes = ("-seg", "_seg")
    regions = ("wt", "tc", "et")
    spacing_from = "pred"  # the official code reads the spacing from the prediction's header
    _fields = ("dice", "hd95", "num_tp", "num_fp", "num_fn", "legacy_dice", "legacy_hd95")

    def __init__(self, challenge: str = "GLI") -> None:
        key = str(challenge).upper().removeprefix("BRATS-")
        if key not in SUB_CHALLENGES:
            raise ValueError(f"brats2023: unknown sub-challenge {challenge!r}; choose one of {sorted(SUB_CHALLENGES)}.")
        self.challenge = key
        self.dilation, self.volume_threshold = SUB_CHALLENGES[key]

    def columns(self) -> list[str]:
        return [f"{f}_{r}" for f in self._fields for r in self.regions] + ["mean_dice", "mean_hd95"]

    def load(self, path: Path, role: str) -> Loaded:
        return load_nifti(path, labels=False)

    def score(self, pred, ref, spacing=None, **extra) -> dict:
        pred_regions = to_regions(pred, self.regions, extra.get("pred_path", "prediction"))
        ref_regions = to_regions(ref, self.regions, extra.get("ref_path", "reference"))
        spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
        row: dict[str, float] = {}
        for r in self.regions:
            if pred_regions[r].shape != ref_regions[r].shape:
                raise ValueError(f"brats2023: prediction {pred_regions[r].shape} and reference "
                                 f"{ref_regions[r].shape} grids differ.")
            scores = lesion_wise_scores(pred_regions[r], ref_regions[r], spacing, self.dilation,
                                        self.volume_threshold)
            row.update({f"{f}_{r}": float(scores[f]) for f in self._fields})
        row["mean_dice"] = nanmean(row[f"dice_{r}"] for r in self.regions)
        row["mean_hd95"] = nanmean(row[f"hd95_{r}"] for r in self.regions)
        return row
