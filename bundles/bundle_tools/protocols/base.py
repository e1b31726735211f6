# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""What every evaluation protocol provides, and the helpers they share.

A protocol scores one case at a time (``score``), and turns the per-case rows into the summary rows the paper reports
(``summarize``: always a ``mean`` row, sometimes a ``pooled`` one). ``load`` reads one file the way the paper's
evaluator reads it, so ``python -m xlstm_bundle_tools.score`` and the bundles' evaluate configs (through
:class:`xlstm_bundle_tools.ProtocolMetrics`) run the same arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Protocol", "Loaded", "slug", "nanmean", "ProtocolError"]


class ProtocolError(ValueError):
    """A case the protocol cannot score, with the file and the reason."""


@dataclass
class Loaded:
    """One file as the protocol reads it: an array in the evaluator's axis order and its voxel spacing (mm)."""

    array: np.ndarray
    spacing: tuple[float, ...]


def slug(name: str) -> str:
    """Column-friendly class name: ``"inferior vena cava"`` -> ``"inferior_vena_cava"``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def nanmean(values) -> float:
    """Mean over the finite-or-inf values, NaN entries skipped (pandas' ``DataFrame.mean``); NaN when none is left."""
    kept = [float(v) for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(kept)) if kept else math.nan


class Protocol:
    """Base class: subclasses set the class attributes and implement :meth:`score` and :meth:`load`.

    Attributes:
        name: the ``--protocol`` name.
        source: the paper's evaluation file this protocol reproduces.
        extensions: file name endings of references and predictions.
        ref_suffixes: endings stripped from a reference file's stem to get its case id (``-seg`` for BraTS).
    """

    name: str = ""
    source: str = ""
    extensions: tuple[str, ...] = ()
    ref_suffixes: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        """CSV columns after ``case``, in order."""
        raise NotImplementedError

    def load(self, path: Path, role: str) -> Loaded:
        """Read a reference (``role="ref"``) or prediction (``role="pred"``) file."""
        raise NotImplementedError

    def score(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None, **extra) -> dict:
        """Metrics of one case: ``{column: value}``."""
        raise NotImplementedError

    def summarize(self, rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
        """Summary rows, ``{"mean": {column: value}}`` at least. Default: NaN-skipping mean of every column."""
        return {"mean": {c: nanmean(r[c] for r in rows) for c in self.columns()}}

    def headline(self, summary: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """The figures the paper's table reports, for logs and ``engine.state.metrics``."""
        return {k: v for k, v in summary["mean"].items() if k.startswith("mean_")}
