# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The 13 abdominal MRI organs: our label numbering, AMOS22's, and the names both releases use for them."""

from __future__ import annotations

# One source for both AMOS bundles: xlstm_bundle_tools.abdomen_mr (the evaluation's organ table is its source).
from xlstm_bundle_tools.abdomen_mr import AMOS22_LABELS, LABELLED_SLICES_ONLY, MR_ORGANS, NSD_TOLERANCE_MM, canonical_organ

__all__ = ["MR_ORGANS", "AMOS22_LABELS", "canonical_organ", "NSD_TOLERANCE_MM", "LABELLED_SLICES_ONLY"]
