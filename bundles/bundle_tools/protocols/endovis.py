# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""``endovis``: per-frame DSC and NSD over the instrument labels present, as xLSTM-UNet's endoscopy evaluation does.

Source: tianrun-chen/xLSTM-UNet-PyTorch ``evaluation/endoscopy_DSC_Eval.py`` and ``evaluation/endoscopy_NSD_Eval.py``.
Per frame (PNG label maps read unchanged as uint8):

* the scored labels are the non-zero labels of the reference united with those of the prediction;
* a label only in the prediction scores 0 / 0; one only in the reference scores DSC 0 and NSD 0 (through the
  arithmetic); otherwise DSC = 2|R∩P|/(|R|+|P|) and NSD = DeepMind surface Dice at 2 mm of the masks as (H, W, 1)
  volumes at spacing (1, 1, 1) (so the flat top and bottom faces count as surface, as in the official code);
* the frame's figure is the mean over its scored labels (``mean_dice`` / ``mean_nsd``), the dataset's the mean over
  frames.

**Frames with no label on either side.** The official scripts stop there (``assert len(labels) > 0``), so their
published means cover only frames with some label. We score such a frame as NaN in every column and leave it out of
the means, which keeps the dataset figure the one the official code gives on the frames it can score (counting the
frame as 1 would raise it). The ``labels_scored`` column counts the labels each frame averaged over (0 for these).

Per-label columns ``dice_<instrument>`` are NaN on frames where that label is absent from both sides; their ``mean``
row value is that instrument's mean over the frames that show or predict it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Loaded, Protocol, nanmean, slug
from .io import load_label_png
from .surface import dice, surface_dice, surfel_distances

__all__ = ["EndoVisProtocol", "ENDOVIS17_INSTRUMENTS"]

# Dataset704_Endovis17 (U-Mamba's dataset.json): label i+1 <-> ENDOVIS17_INSTRUMENTS[i].
ENDOVIS17_INSTRUMENTS = ("bipolar forceps", "prograsp forceps", "large needle driver", "vessel sealer",
                         "grasping retractor", "monopolar curved scissors", "ultrasound probe")


class EndoVisProtocol(Protocol):
    """Per-frame DSC / NSD over labels in reference ∪ prediction.

    Args:
        class_names: name of each label value 1..N (columns). Labels beyond N are scored as ``label<k>``.
        tolerance_mm: NSD tolerance (official: 2).
    """

    name = "endovis"
    source = "xLSTM-UNet-PyTorch evaluation/endoscopy_DSC_Eval.py, evaluation/endoscopy_NSD_Eval.py"
    extensions = (".png",)

    def __init__(self, class_names: Sequence[str] = ENDOVIS17_INSTRUMENTS, tolerance_mm: float = 2.0) -> None:
        self.class_names = list(class_names)
        self.keys = [slug(n) for n in self.class_names]
        self.tolerance = float(tolerance_mm)

    def columns(self) -> list[str]:
        return ([f"dice_{k}" for k in self.keys] + [f"nsd_{k}" for k in self.keys]
                + ["mean_dice", "mean_nsd", "labels_scored"])

    def load(self, path: Path, role: str) -> Loaded:
        return load_label_png(path)

    def _key(self, label: int) -> str:
        return self.keys[label - 1] if 1 <= label <= len(self.keys) else f"label{label}"

    def score(self, pred, ref, spacing=None, **extra) -> dict:
        pred, ref = np.asarray(pred), np.asarray(ref)
        if pred.shape != ref.shape or ref.ndim != 2:
            raise ValueError(f"endovis: prediction {pred.shape} and reference {ref.shape} must be 2D maps of one size.")
        row: dict[str, float] = {c: math.nan for c in self.columns()}
        labels = np.union1d(np.unique(ref), np.unique(pred))
        labels = [int(v) for v in labels if v != 0]
        dices, nsds = [], []
        for label in labels:
            r, p = ref == label, pred == label
            if not r.any():
                d, n = 0.0, 0.0
            else:
                d = dice(r, p)
                n = surface_dice(surfel_distances(r[..., None], p[..., None], (1.0, 1.0, 1.0)), self.tolerance)
            row[f"dice_{self._key(label)}"], row[f"nsd_{self._key(label)}"] = d, n
            dices.append(d)
            nsds.append(n)
        row["mean_dice"] = float(np.mean(dices)) if dices else math.nan
        row["mean_nsd"] = float(np.mean(nsds)) if nsds else math.nan
        row["labels_scored"] = float(len(labels))
        return row

    def summarize(self, rows):
        columns = list(self.columns())
        for r in rows:  # labels beyond class_names get their own columns
            columns += [c for c in r if c != "case" and c not in columns]
        return {"mean": {c: nanmean(r.get(c, math.nan) for r in rows) for c in columns}}
