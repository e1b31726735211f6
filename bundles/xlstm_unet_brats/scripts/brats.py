# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""BraTS 2023 conventions shared by the bundle's scripts: file names, modality order, labels and regions."""

from __future__ import annotations

import re

__all__ = ["MODALITIES", "LABELS", "REGIONS", "CASE_PATTERN", "case_files"]

# Channel order of the network input: SegMamba's preprocessing order (T2, FLAIR, native T1, contrast T1).
MODALITIES = ("t2w", "t2f", "t1n", "t1c")

# BraTS 2023 label values (all sub-challenges: GLI, MEN, MET, PED, SSA).
LABELS = {0: "background", 1: "necrotic tumour core (NCR)", 2: "peritumoral edema (ED)", 3: "enhancing tumour (ET)"}

# Overlapping regions the network predicts (one sigmoid channel each), as label-value sets.
REGIONS = {"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)}

# BraTS-GLI-00000-000, BraTS-MEN-..., BraTS-MET-..., BraTS-PED-..., BraTS-SSA-...
CASE_PATTERN = re.compile(r"BraTS-(GLI|MEN|MET|PED|SSA)-\d{5}-\d{3}")


def case_files(case_dir, case_id: str) -> dict[str, object]:
    """Paths of a case's four modalities and its segmentation, named as BraTS 2023 distributes them."""
    return {suffix: case_dir / f"{case_id}-{suffix}.nii.gz" for suffix in (*MODALITIES, "seg")}
