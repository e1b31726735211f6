# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""SS2D cross-scan and cross-merge: two public functions in one package because each is the other's backward.

:func:`cross_scan` turns a (B, C, H, W) map into the four VMamba scan orders (B, 4, C, H·W); :func:`cross_merge` maps
(B, 4, C, H·W) back to row-major order and sums. Backends: ``"torch"`` and ``"triton"``.
"""

from .interface import BACKENDS, cross_merge, cross_scan

__all__ = ["cross_scan", "cross_merge", "BACKENDS"]
