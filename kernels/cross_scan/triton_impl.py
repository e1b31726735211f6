# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Triton kernels for SS2D's cross-scan and cross-merge.

Imported lazily by ``interface``. One program per (batch·channel plane, BLOCK_H × BLOCK_W tile): the scan reads the
tile once (any strides, so a channels-last view needs no copy) and writes it to the four direction sequences; the
merge reads the four and writes their float32 sum once. The transposed directions are written/read along H, which
Triton stages through shared memory to keep the global accesses coalesced. Each op's backward is the other op.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._dispatch import triton_interpret
from .torch_impl import adjoint_autograd_pair

__all__ = ["cross_scan_triton", "cross_merge_triton", "POISON_OUTPUTS", "INTERPRETED"]

# Whether the kernels below were decorated for Triton's CPU interpreter (decided once, at import).
INTERPRETED = triton_interpret()

# Tests set this to fill outputs with NaN before the kernels run, so an element a kernel forgot to write shows up.
POISON_OUTPUTS = False


def _empty(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device) if POISON_OUTPUTS else torch.empty(
        shape, dtype=dtype, device=device
    )

if INTERPRETED:
    _CONFIGS = [triton.Config({"BLOCK_H": 16, "BLOCK_W": 16}, num_warps=4)]
else:
    _CONFIGS = [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=w)
                for bh, bw, w in ((32, 32, 4), (16, 64, 4), (64, 64, 8), (8, 64, 2))]


@triton.autotune(configs=_CONFIGS, key=["H", "W"])
@triton.jit
def _cross_scan_kernel(
    x_ptr, y_ptr, C, H, W, stride_b, stride_c, stride_h, stride_w,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid_t = tl.program_id(0)
    plane = tl.program_id(1)  # b * C + c
    tiles_w = tl.cdiv(W, BLOCK_W)
    h = (pid_t // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    w = (pid_t % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = (h[:, None] < H) & (w[None, :] < W)
    b = plane // C
    c = plane % C
    src = x_ptr + b.to(tl.int64) * stride_b + c.to(tl.int64) * stride_c
    x = tl.load(src + h[:, None] * stride_h + w[None, :] * stride_w, mask=mask)
    L = H * W
    row = h[:, None] * W + w[None, :]
    col = w[None, :] * H + h[:, None]
    base = y_ptr + (b.to(tl.int64) * 4 * C + c) * L  # y[b, k, c] starts at base + k * C * L
    step = C.to(tl.int64) * L
    tl.store(base + row, x, mask=mask)
    tl.store(base + step + col, x, mask=mask)
    tl.store(base + 2 * step + (L - 1 - row), x, mask=mask)
    tl.store(base + 3 * step + (L - 1 - col), x, mask=mask)


@triton.autotune(configs=_CONFIGS, key=["H", "W"])
@triton.jit
def _cross_merge_kernel(
    y_ptr, x_ptr, C, H, W,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid_t = tl.program_id(0)
    plane = tl.program_id(1)
    tiles_w = tl.cdiv(W, BLOCK_W)
    h = (pid_t // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    w = (pid_t % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = (h[:, None] < H) & (w[None, :] < W)
    b = plane // C
    c = plane % C
    L = H * W
    row = h[:, None] * W + w[None, :]
    col = w[None, :] * H + h[:, None]
    base = y_ptr + (b.to(tl.int64) * 4 * C + c) * L
    step = C.to(tl.int64) * L
    acc = tl.load(base + row, mask=mask).to(tl.float32)
    acc += tl.load(base + step + col, mask=mask).to(tl.float32)
    acc += tl.load(base + 2 * step + (L - 1 - row), mask=mask).to(tl.float32)
    acc += tl.load(base + 3 * step + (L - 1 - col), mask=mask).to(tl.float32)
    tl.store(x_ptr + plane.to(tl.int64) * L + row, acc.to(x_ptr.dtype.element_ty), mask=mask)


# Every autotuned kernel, for the self-check behind backend="auto" (``_guard.pinned_autotune``).
AUTOTUNED_KERNELS = (_cross_scan_kernel, _cross_merge_kernel)


def _grid(meta, batch, channels, height, width):
    return (triton.cdiv(height, meta["BLOCK_H"]) * triton.cdiv(width, meta["BLOCK_W"]), batch * channels)


def _scan(x: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    y = _empty((batch, 4, channels, height * width), x.dtype, x.device)
    _cross_scan_kernel[lambda meta: _grid(meta, batch, channels, height, width)](
        x, y, channels, height, width, *x.stride()
    )
    return y


def _merge(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch, _, channels, length = y.shape
    y = y.contiguous()
    x = _empty((batch, channels, length), y.dtype, y.device)
    _cross_merge_kernel[lambda meta: _grid(meta, batch, channels, height, width)](y, x, channels, height, width)
    return x


_CrossScan, _CrossMerge = adjoint_autograd_pair(_scan, _merge)


def cross_scan_triton(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, H·W) with a Triton kernel; backward is the merge kernel."""
    return _CrossScan.apply(x)


def cross_merge_triton(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4, C, H·W) -> (B, C, H·W) with a Triton kernel; backward is the scan kernel."""
    return _CrossMerge.apply(y, height, width)
