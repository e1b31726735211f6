# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Evaluation protocols: each paper's metrics, reproduced from the paper's own evaluation code.

One module per protocol; ``docs/evaluation.md`` describes each and names its source file.

============== ======================================================= ==============================================
name           what                                                    module
============== ======================================================= ==============================================
amos           per-organ DSC + NSD (xLSTM-UNet AbdomenMR)              :mod:`.amos`
brats-segmamba TC/WT/ET Dice + HD95, medpy, empty -> 0/50 (SegMamba)    :mod:`.brats_segmamba`
brats2023      lesion-wise Dice + HD95 (BraTS 2023 challenge)          :mod:`.brats2023`
isic           pooled DSC/IoU/... at 256² (VM-UNet) + original size    :mod:`.isic`
endovis        per-frame DSC + NSD over present labels (xLSTM-UNet)    :mod:`.endovis`
cells          instance F1 at IoU 0.5 (NeurIPS 2022 cell challenge)    :mod:`.cells`
============== ======================================================= ==============================================

Use :func:`get_protocol` by name; the score command (``python -m xlstm_bundle_tools.score``) and the bundles'
evaluate configs (``xlstm_bundle_tools.ProtocolMetrics``) both do.
"""

from __future__ import annotations

from .amos import AmosProtocol
from .base import Loaded, Protocol, ProtocolError, slug
from .brats2023 import Brats2023Protocol
from .brats_segmamba import BratsSegMambaProtocol
from .cells import CellsProtocol
from .endovis import EndoVisProtocol
from .isic import IsicProtocol

__all__ = ["PROTOCOLS", "get_protocol", "Protocol", "ProtocolError", "Loaded", "slug", "AmosProtocol",
           "BratsSegMambaProtocol", "Brats2023Protocol", "IsicProtocol", "EndoVisProtocol", "CellsProtocol"]

PROTOCOLS: dict[str, type[Protocol]] = {
    p.name: p
    for p in (AmosProtocol, BratsSegMambaProtocol, Brats2023Protocol, IsicProtocol, EndoVisProtocol, CellsProtocol)
}


def get_protocol(name: str | Protocol, **options) -> Protocol:
    """The protocol called ``name`` (see :data:`PROTOCOLS`), built with its keyword ``options``."""
    if isinstance(name, Protocol):
        if options:
            raise ValueError(f"options {sorted(options)} given with an already built protocol {name.name!r}.")
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name](**options)
