# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""SS2D's cross-scan and cross-merge in pure PyTorch (autograd gives the backward: each is the other's adjoint).

For a (H, W) map with L = H·W the four directions are, for output index ``i``::

    k = 0  row-major          i = h·W + w
    k = 1  column-major       i = w·H + h          (the transposed map, flattened)
    k = 2  row-major, reversed      i = L-1 - (h·W + w)
    k = 3  column-major, reversed   i = L-1 - (w·H + h)

Cross-merge maps each direction back to row-major and sums: ``cross_merge(cross_scan(x)) == 4·x``. Each op's backward
is the other op (autograd Functions), exactly as in the Triton backend, so the two backends agree bit for bit on
gradients too.
"""

from __future__ import annotations

import torch

from .._dispatch import exporting

__all__ = ["cross_scan_torch", "cross_merge_torch"]


def _scan(x: torch.Tensor) -> torch.Tensor:
    row = x.flatten(2)
    col = x.transpose(2, 3).flatten(2)
    return torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)


def _merge(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch, channels, length = y.shape[0], y.shape[2], y.shape[3]
    acc = y.float() if y.dtype in (torch.float16, torch.bfloat16) else y

    def from_col(seq: torch.Tensor) -> torch.Tensor:  # column-major sequence -> row-major order
        return seq.reshape(batch, channels, width, height).transpose(2, 3).reshape(batch, channels, length)

    # summed in the Triton kernel's order (k = 0, 1, 2, 3), so the two backends agree bit for bit
    out = acc[:, 0] + from_col(acc[:, 1])
    out = out + acc[:, 2].flip(-1)
    out = out + from_col(acc[:, 3].flip(-1))
    return out.to(y.dtype)


def adjoint_autograd_pair(scan, merge) -> tuple[type, type]:
    """Autograd Functions for a scan/merge pair in which each op's backward is the other op.

    ``scan(x)`` maps (B, C, H, W) to (B, 4, C, H·W) and ``merge(y, H, W)`` maps back; the torch and Triton backends
    share this wiring and differ only in the two functions.
    """

    class CrossScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.hw = x.shape[2:]
            return scan(x)

        @staticmethod
        def backward(ctx, dy):
            height, width = ctx.hw
            return merge(dy, height, width).view(dy.shape[0], dy.shape[2], height, width)

    class CrossMerge(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y, height, width):
            ctx.hw = (height, width)
            return merge(y, height, width)

        @staticmethod
        def backward(ctx, dx):
            height, width = ctx.hw
            return scan(dx.reshape(dx.shape[0], dx.shape[1], height, width)), None, None

    return CrossScan, CrossMerge


_CrossScan, _CrossMerge = adjoint_autograd_pair(_scan, _merge)


def cross_scan_torch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, H·W) in the four SS2D orders; the backward is :func:`cross_merge_torch`.

    While the model is exported the plain function runs instead of the autograd Function (same forward): torch.export
    cannot lift the Function's saved sizes, and an exported graph has no backward.
    """
    return _scan(x) if exporting() else _CrossScan.apply(x)


def cross_merge_torch(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4, C, H·W) -> (B, C, H·W): the four directions mapped back to row-major order and summed.

    Half-precision inputs are summed in float32 and rounded once, as the Triton kernel does. The backward is
    :func:`cross_scan_torch`. Exported as the plain function, as :func:`cross_scan_torch`.
    """
    return _merge(y, height, width) if exporting() else _CrossMerge.apply(y, height, width)
