# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``amos``: per-organ DSC and NSD as xLSTM-UNet's AbdomenMR evaluation computes them.

Source: tianrun-chen/xLSTM-UNet-PyTorch ``evaluation/abdomen_DSC_Eval.py`` and ``evaluation/abdomen_NSD_Eval.py``
(which call ``evaluation/SurfaceDice.py``, DeepMind's surface-distance code). Per organ and case:

* reference and prediction both without the organ: DSC 1, NSD 1; reference without it, prediction with it: 0, 0;
* otherwise DSC = 2|R∩P|/(|R|+|P|) and NSD = DeepMind surface Dice at the organ's tolerance (subvoxel surfels, the
  spacing from the reference's header, in the file's on-disk axis order);
* aorta, inferior vena cava and esophagus are scored on the reference's slab only: array slices
  ``z_lower:z_upper`` of the last axis, where ``z_lower``/``z_upper`` are the first/last slices holding the organ in
  the reference. As in the official code the slice ``z_upper`` itself is left out, so an organ on a single slice gives
  an empty slab, DSC and NSD NaN, and pandas' mean skips the case for that organ.

The dataset figure is the mean over organs of each organ's mean over cases (NaN skipped): the ``mean`` row's
``mean_dice`` / ``mean_nsd``. The official script rounds every value to 4 decimals before averaging; we do not (the
means differ by < 5e-5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .base import Loaded, Protocol, nanmean, slug
from .io import load_nifti
from .surface import dice, surface_dice, surfel_distances

__all__ = ["AmosProtocol", "ABDOMEN_MR_ORGANS", "NSD_TOLERANCE_MM", "SLAB_ORGANS"]

# Label i+1 <-> ABDOMEN_MR_ORGANS[i]: the order of the official script's ``label_tolerance`` (Dataset702_AbdomenMR).
ABDOMEN_MR_ORGANS = (
    "liver", "right kidney", "spleen", "pancreas", "aorta", "inferior vena cava", "right adrenal gland",
    "left adrenal gland", "gallbladder", "esophagus", "stomach", "duodenum", "left kidney",
)
NSD_TOLERANCE_MM = dict(zip(ABDOMEN_MR_ORGANS, (5, 3, 3, 5, 2, 2, 2, 2, 2, 3, 5, 7, 3)))
# ``if i==5 or i==6 or i==10``: only the labelled slab of the reference is scored.
SLAB_ORGANS = ("aorta", "inferior vena cava", "esophagus")


class AmosProtocol(Protocol):
    """Per-organ DSC and NSD, xLSTM-UNet / U-Mamba AbdomenMR rules.

    Args:
        class_names: organ of each label value 1..N, in order. Default: the 13 AbdomenMR organs.
        nsd_tolerance_mm: tolerance per organ name. Default: the official table.
        slab_organs: organs scored on the reference's slab only. Default: aorta, IVC, esophagus.
        labels: label value of each organ. Default: 1..N.
    """

    name = "amos"
    source = "xLSTM-UNet-PyTorch evaluation/abdomen_DSC_Eval.py, evaluation/abdomen_NSD_Eval.py (SurfaceDice.py)"
    extensions = (".nii.gz", ".nii")

    def __init__(self, class_names: Sequence[str] = ABDOMEN_MR_ORGANS,
                 nsd_tolerance_mm: Mapping[str, float] | None = None,
                 slab_organs: Sequence[str] = SLAB_ORGANS, labels: Sequence[int] | None = None) -> None:
        tolerance = dict(NSD_TOLERANCE_MM if nsd_tolerance_mm is None else nsd_tolerance_mm)
        missing = [n for n in class_names if n not in tolerance]
        if missing:
            raise ValueError(f"amos protocol: no NSD tolerance for {missing}.")
        self.class_names = list(class_names)
        self.labels = list(labels) if labels is not None else list(range(1, len(self.class_names) + 1))
        if len(self.labels) != len(self.class_names):
            raise ValueError(f"amos protocol: {len(self.labels)} labels for {len(self.class_names)} organs.")
        self.tolerance = {n: float(tolerance[n]) for n in self.class_names}
        self.slab_organs = set(slab_organs)
        self.keys = [slug(n) for n in self.class_names]

    def columns(self) -> list[str]:
        return ([f"dice_{k}" for k in self.keys] + [f"nsd_{k}" for k in self.keys]
                + ["mean_dice", "mean_nsd"])

    def load(self, path: Path, role: str) -> Loaded:
        return load_nifti(path)

    def score_organ(self, ref: np.ndarray, pred: np.ndarray, spacing, name: str) -> tuple[float, float]:
        """(DSC, NSD) of one organ's boolean masks."""
        ref_has, pred_has = bool(ref.any()), bool(pred.any())
        if not ref_has:
            return (0.0, 0.0) if pred_has else (1.0, 1.0)
        if name in self.slab_organs:
            z = np.flatnonzero(ref.any(axis=tuple(range(ref.ndim - 1))))
            lower, upper = int(z[0]), int(z[-1])
            ref, pred = ref[..., lower:upper], pred[..., lower:upper]  # upper excluded, as the official code does
        return dice(ref, pred), surface_dice(surfel_distances(ref, pred, spacing), self.tolerance[name])

    def score(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None, **extra) -> dict:
        pred, ref = np.asarray(pred), np.asarray(ref)
        if pred.shape != ref.shape or ref.ndim != 3:
            raise ValueError(f"amos protocol: prediction {pred.shape} and reference {ref.shape} must be the same 3D "
                             "grid (invert the prediction to the reference's native grid first).")
        spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
        row: dict[str, float] = {}
        for name, key, value in zip(self.class_names, self.keys, self.labels):
            row[f"dice_{key}"], row[f"nsd_{key}"] = self.score_organ(ref == value, pred == value, spacing, name)
        row["mean_dice"] = nanmean(row[f"dice_{k}"] for k in self.keys)
        row["mean_nsd"] = nanmean(row[f"nsd_{k}"] for k in self.keys)
        return row

    def summarize(self, rows):
        mean = {c: nanmean(r[c] for r in rows) for c in self.columns()}
        # The paper's figure: the mean of the per-organ means (not the mean of per-case means).
        mean["mean_dice"] = nanmean(mean[f"dice_{k}"] for k in self.keys)
        mean["mean_nsd"] = nanmean(mean[f"nsd_{k}"] for k in self.keys)
        return {"mean": mean}
