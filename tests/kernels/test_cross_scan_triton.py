# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The Triton cross-scan/cross-merge against the PyTorch ones: bit-exact values and gradients.

Without CUDA the kernels run in Triton's CPU interpreter in float32; with CUDA they are compiled, and the ``gpu``
tests add VM-UNet's SS2D shapes in fp32/bf16/fp16 and a channels-last input.
"""

from __future__ import annotations

import importlib.util
import os

import torch

# The interpreter switch must be on before triton itself is imported (see test_selective_scan_triton.py).
CUDA = torch.cuda.is_available()
_previous = os.environ.get("TRITON_INTERPRET")
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from xlstm_seg_kernels.cross_scan import cross_merge, cross_scan  # noqa: E402
from xlstm_seg_kernels.cross_scan import triton_impl  # noqa: E402

if _previous is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _previous

if not CUDA and not (triton_impl.INTERPRETED and isinstance(tl.zeros, InterpretedFunction)):
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set", allow_module_level=True)

DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_impl, "POISON_OUTPUTS", True)  # unwritten output elements become NaN and fail


def check_both_ways(x):
    """Triton scan/merge and their gradients equal the torch ones exactly (pure data movement; same summation order)."""
    height, width = x.shape[2:]
    xs = [x.detach().clone().requires_grad_() for _ in range(2)]
    ys = [cross_scan(t, backend=b) for t, b in zip(xs, ("torch", "triton"))]
    assert ys[1].shape == ys[0].shape and torch.equal(ys[1], ys[0])
    gy = torch.randn(ys[0].shape, device=x.device).to(x.dtype)
    grads = [torch.autograd.grad(y, t, gy)[0] for y, t in zip(ys, xs)]
    assert torch.equal(grads[1], grads[0])

    y = torch.randn(ys[0].shape, device=x.device).to(x.dtype)
    yl = [y.clone().requires_grad_() for _ in range(2)]
    ms = [cross_merge(t, height, width, backend=b) for t, b in zip(yl, ("torch", "triton"))]
    assert torch.equal(ms[1], ms[0])
    gm = torch.randn(ms[0].shape, device=x.device).to(x.dtype)
    grads = [torch.autograd.grad(m, t, gm)[0] for m, t in zip(ms, yl)]
    assert torch.equal(grads[1], grads[0])
    torch.testing.assert_close(cross_merge(ys[1], height, width, backend="triton"), 4 * x.flatten(2),
                               rtol=2e-7, atol=0)


@pytest.mark.parametrize("hw", [(16, 16), (5, 7), (37, 21), (1, 40), (33, 1)])
def test_triton_matches_torch(hw):
    check_both_ways(torch.randn(2, 3, *hw, device=DEVICE))


def test_triton_directions_on_arange():
    x = torch.arange(6.0, device=DEVICE).view(1, 1, 2, 3)
    assert cross_scan(x, backend="triton")[0, :, 0].tolist() == [
        [0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]


def test_triton_channels_last_view():
    x = torch.randn(2, 9, 11, 3, device=DEVICE).permute(0, 3, 1, 2)
    assert torch.equal(cross_scan(x, backend="triton"), cross_scan(x.contiguous(), backend="torch"))


def test_triton_rejects_float64():
    with pytest.raises(ValueError, match="float64"):
        cross_scan(torch.randn(1, 1, 2, 2, dtype=torch.float64, device=DEVICE), backend="triton")


# VM-UNet SS2D feature maps at a 256² input: (H, d_inner) per stage
SS2D_MAPS = [(64, 192), (32, 384), (16, 768), (8, 1536)]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("hw_c", SS2D_MAPS, ids=lambda s: f"{s[0]}x{s[0]}x{s[1]}")
def test_gpu_ss2d_shapes(hw_c, dtype):
    height, channels = hw_c
    check_both_ways(torch.randn(8, channels, height, height, device="cuda").to(dtype))
    # SS2D feeds a channels-last activation through a permuted view
    x = torch.randn(8, height, height, channels, device="cuda").to(dtype).permute(0, 3, 1, 2)
    assert torch.equal(cross_scan(x, backend="triton"), cross_scan(x.contiguous(), backend="torch"))
