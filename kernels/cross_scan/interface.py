# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The two public functions of this package, :func:`cross_scan` and :func:`cross_merge`, and their backend switch."""

from __future__ import annotations

import torch

from .._dispatch import exporting, plain_tensors, resolve_backend, triton_available
from .._guard import compare, pinned_autotune, triton_allowed
from .torch_impl import cross_merge_torch, cross_scan_torch

__all__ = ["cross_scan", "cross_merge", "BACKENDS", "TRITON_CHECK_TOLERANCES"]

# Relative-error limits of the Triton self-check: the scan is a copy, the merge a float32 sum of four values rounded
# once to the dtype, so only the summation order differs from the torch form.
TRITON_CHECK_TOLERANCES = {torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _scan_triton(x):
    from .triton_impl import cross_scan_triton  # lazy: importing triton costs seconds and may be absent

    return cross_scan_triton(x)


def _merge_triton(y, height, width):
    from .triton_impl import cross_merge_triton

    return cross_merge_triton(y, height, width)


# op -> backend -> implementation
BACKENDS = {
    "cross_scan": {"torch": cross_scan_torch, "triton": _scan_triton},
    "cross_merge": {"torch": cross_merge_torch, "triton": _merge_triton},
}

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _triton_candidate(t: torch.Tensor) -> bool:
    """Whether ``auto`` considers Triton at all: CUDA tensors with triton installed, not float64."""
    return t.is_cuda and triton_available(t) and t.dtype != torch.float64


def _triton_self_check(device, dtype) -> None:
    """Triton vs torch cross-scan and cross-merge (each the other's backward) on a small channels-last map."""
    from . import triton_impl  # lazy, as _scan_triton

    gen = torch.Generator().manual_seed(99)
    x_raw = torch.randn(2, 5, 7, 3, generator=gen).to(dtype)  # (B, H, W, C): read through a permuted view, as SS2D
    y_raw = torch.randn(2, 4, 3, 35, generator=gen).to(dtype)

    def run(scan, merge, dev):
        x = x_raw.to(dev).permute(0, 3, 1, 2).requires_grad_()
        y = y_raw.to(dev).requires_grad_()
        s, m = scan(x), merge(y, 5, 7)
        dx, dy = torch.autograd.grad([s, m], [x, y], [torch.cos(s.detach()), torch.sin(m.detach())])
        return {"scan": s, "merge": m, "d_scan": dx, "d_merge": dy}

    ref = run(cross_scan_torch, cross_merge_torch, "cpu")
    with pinned_autotune(triton_impl.AUTOTUNED_KERNELS):
        out = run(triton_impl.cross_scan_triton, triton_impl.cross_merge_triton, device)
    compare({k: t.detach().cpu() for k, t in out.items()}, ref, dict.fromkeys(ref, TRITON_CHECK_TOLERANCES[dtype]))


def _resolve(op: str, backend: str, t: torch.Tensor) -> str:
    def auto() -> str:
        config = [("device", str(t.device)), ("dtype", str(t.dtype).removeprefix("torch."))]
        if not exporting() and _triton_candidate(t) and triton_allowed(
                "cross_scan+cross_merge", config, lambda: _triton_self_check(t.device, t.dtype)):
            return "triton"
        return "torch"

    name = resolve_backend(op, backend, tuple(BACKENDS[op]), t, auto)
    if name == "triton" and t.dtype == torch.float64:
        raise ValueError(f"{op}: backend='triton' takes float16, bfloat16 or float32, not float64.")
    return name


def cross_scan(x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """SS2D cross-scan: flatten a feature map in the four VMamba/VM-UNet scan orders.

    Output direction ``k`` at sequence index ``i`` (L = H·W):

    * k = 0, row-major: ``x[..., i // W, i % W]``
    * k = 1, column-major (the transposed map): ``x[..., i % H, i // H]``
    * k = 2, k = 0 reversed; k = 3, k = 1 reversed.

    Viewed as (B, 4·C, L) this is the ``u`` of :func:`~xlstm_seg_kernels.selective_scan` with the directions stacked
    as channel groups. The backward is :func:`cross_merge`.

    Args:
        x: feature map of shape (B, C, H, W), any strides (a channels-last view is read in place by Triton).
        backend: ``"auto"`` (``"triton"`` for CUDA tensors when triton is installed, except float64, once the
            configuration passed its self-check, see ``_guard.py``; else ``"torch"``),
            ``"torch"`` or ``"triton"``. An explicit backend that cannot run raises.

    Returns:
        The four sequences, of shape (B, 4, C, H·W), contiguous, in ``x``'s dtype.
    """
    (x,) = plain_tensors(x)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or 0 in x.shape:
        shape = tuple(getattr(x, "shape", ()))
        raise ValueError(f"cross_scan: x must be a non-empty (B, C, H, W) tensor; got {shape}.")
    if x.dtype not in _FLOATS:
        raise ValueError(f"cross_scan: x must be float16, bfloat16, float32 or float64; got {x.dtype}.")
    return BACKENDS["cross_scan"][_resolve("cross_scan", backend, x)](x)


def cross_merge(y: torch.Tensor, height: int, width: int, *, backend: str = "auto") -> torch.Tensor:
    """SS2D cross-merge: map the four direction sequences back to row-major order and sum them.

    The adjoint of :func:`cross_scan`, so ``cross_merge(cross_scan(x), H, W) == 4 · x.flatten(2)``.

    Args:
        y: the four sequences, of shape (B, 4, C, L) with L = height·width, in :func:`cross_scan`'s order (e.g. the
            selective-scan output (B, 4·C, L) viewed as (B, 4, C, L)).
        height: H of the feature map the sequences came from.
        width: W of the feature map.
        backend: as :func:`cross_scan`.

    Returns:
        The sum in row-major order, of shape (B, C, H·W), in ``y``'s dtype (half inputs are summed in float32).
    """
    (y,) = plain_tensors(y)
    if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[1] != 4 or 0 in y.shape:
        shape = tuple(getattr(y, "shape", ()))
        raise ValueError(f"cross_merge: y must be a non-empty (B, 4, C, L) tensor; got {shape}.")
    if int(height) < 1 or int(width) < 1 or y.shape[3] != int(height) * int(width):
        raise ValueError(
            f"cross_merge: y's last dim L = {y.shape[3]} must equal height·width = {height}·{width} with both >= 1."
        )
    if y.dtype not in _FLOATS:
        raise ValueError(f"cross_merge: y must be float16, bfloat16, float32 or float64; got {y.dtype}.")
    return BACKENDS["cross_merge"][_resolve("cross_merge", backend, y)](y, int(height), int(width))
