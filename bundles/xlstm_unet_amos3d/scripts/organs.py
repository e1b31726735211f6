# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The 13 abdominal MRI organs: our label numbering, AMOS22's, and the names both releases use for them."""

from __future__ import annotations

__all__ = ["MR_ORGANS", "AMOS22_LABELS", "canonical_organ", "NSD_TOLERANCE_MM", "LABELLED_SLICES_ONLY"]

# Label value i+1 <-> MR_ORGANS[i]: the numbering of nnU-Net's Dataset702_AbdomenMR (U-Mamba, xLSTM-UNet).
MR_ORGANS = (
    "liver",
    "right kidney",
    "spleen",
    "pancreas",
    "aorta",
    "inferior vena cava",
    "right adrenal gland",
    "left adrenal gland",
    "gallbladder",
    "esophagus",
    "stomach",
    "duodenum",
    "left kidney",
)

# AMOS22's dataset.json, verbatim (including its spellings "arota" and "postcava"); 14 and 15 are CT-only organs.
AMOS22_LABELS = {
    0: "background", 1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gall bladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "arota", 9: "postcava", 10: "pancreas", 11: "right adrenal gland",
    12: "left adrenal gland", 13: "duodenum", 14: "bladder", 15: "prostate/uterus",
}

_SYNONYMS = {
    "gall bladder": "gallbladder",
    "arota": "aorta",
    "postcava": "inferior vena cava",
    "ivc": "inferior vena cava",
    "oesophagus": "esophagus",
}


def canonical_organ(name: str) -> str:
    """Normalise an organ name from either release: lower case, '_'/'-' as spaces, known spellings mapped."""
    key = " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
    return _SYNONYMS.get(key, key)


# NSD tolerances (mm) of the official AMOS / U-Mamba evaluation.
NSD_TOLERANCE_MM = {
    "liver": 5, "right kidney": 3, "spleen": 3, "pancreas": 5, "aorta": 2, "inferior vena cava": 2,
    "right adrenal gland": 2, "left adrenal gland": 2, "gallbladder": 2, "esophagus": 3, "stomach": 5,
    "duodenum": 7, "left kidney": 3,
}

# Evaluated only on slices where the reference has them (their extent depends on the field of view).
LABELLED_SLICES_ONLY = ("aorta", "inferior vena cava", "esophagus")
