# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""SS2D cross-scan/cross-merge in PyTorch: each direction's order, merge undoes scan, gradients, bad inputs."""

from __future__ import annotations

import pytest
import torch

from xlstm_seg_kernels.cross_scan import BACKENDS, cross_merge, cross_scan

F64 = torch.float64


def test_directions_on_arange():
    # x = [[0, 1, 2], [3, 4, 5]] (H = 2, W = 3), written out by hand
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y = cross_scan(x, backend="torch")
    expected = [
        [0, 1, 2, 3, 4, 5],  # row-major
        [0, 3, 1, 4, 2, 5],  # column-major (the transposed map, flattened)
        [5, 4, 3, 2, 1, 0],  # row-major reversed
        [5, 2, 4, 1, 3, 0],  # column-major reversed
    ]
    assert y.shape == (1, 4, 1, 6)
    assert y[0, :, 0].tolist() == expected


@pytest.mark.parametrize("hw", [(4, 5), (1, 7), (6, 1), (1, 1), (8, 8)])
def test_directions_by_index_formula(hw):
    height, width = hw
    length = height * width
    x = torch.randn(2, 3, height, width, dtype=F64)
    y = cross_scan(x, backend="torch")
    for i in range(length):
        assert torch.equal(y[:, 0, :, i], x[:, :, i // width, i % width])
        assert torch.equal(y[:, 1, :, i], x[:, :, i % height, i // height])
        assert torch.equal(y[:, 2, :, i], x[:, :, (length - 1 - i) // width, (length - 1 - i) % width])
        assert torch.equal(y[:, 3, :, i], x[:, :, (length - 1 - i) % height, (length - 1 - i) // height])


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16, torch.float16], ids=str)
def test_merge_undoes_scan(dtype):
    x = torch.randn(2, 5, 7, 9, dtype=F64).to(dtype)
    y = cross_scan(x, backend="torch")
    assert y.dtype == dtype and y.is_contiguous()
    merged = cross_merge(y, 7, 9, backend="torch")
    assert merged.shape == (2, 5, 63) and merged.dtype == dtype
    # x + x + x + x: exact for the power-of-two 4 except for one rounding of 3x; half dtypes sum in float32
    torch.testing.assert_close(merged, 4 * x.flatten(2), rtol=2e-7 if dtype != torch.float64 else 1e-15, atol=0)


@pytest.mark.parametrize("k", range(4))
def test_merge_inverts_each_direction(k):
    # only direction k non-zero: the merge must put every element back where it came from
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    y = torch.zeros(2, 4, 3, 20, dtype=F64)
    y[:, k] = cross_scan(x, backend="torch")[:, k]
    assert torch.equal(cross_merge(y, 5, 4, backend="torch"), x.flatten(2))


def test_merge_is_the_adjoint_of_scan():
    # <scan(x), y> == <x, merge(y)>: the backward of each op is the other
    x = torch.randn(2, 3, 6, 5, dtype=F64)
    y = torch.randn(2, 4, 3, 30, dtype=F64)
    lhs = (cross_scan(x, backend="torch") * y).sum()
    rhs = (x.flatten(2) * cross_merge(y, 6, 5, backend="torch")).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-13, atol=0)


def test_gradients_float64():
    x = torch.randn(2, 2, 3, 4, dtype=F64, requires_grad=True)
    y = torch.randn(2, 4, 2, 12, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, backend="torch"), (x,))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 3, 4, backend="torch"), (y,))
    # and explicitly: d scan = merge of the upstream gradient, d merge = scan of it
    gy = torch.randn(2, 4, 2, 12, dtype=F64)
    (gx,) = torch.autograd.grad(cross_scan(x, backend="torch"), x, gy)
    torch.testing.assert_close(gx, cross_merge(gy, 3, 4, backend="torch").view(2, 2, 3, 4), rtol=0, atol=0)
    gx2 = torch.randn(2, 2, 12, dtype=F64)
    (gy2,) = torch.autograd.grad(cross_merge(y, 3, 4, backend="torch"), y, gx2)
    torch.testing.assert_close(gy2, cross_scan(gx2.view(2, 2, 3, 4), backend="torch"), rtol=0, atol=0)


def test_channels_last_view():
    x = torch.randn(2, 5, 7, 3).permute(0, 3, 1, 2)  # (B, C, H, W) view of channels-last memory
    assert torch.equal(cross_scan(x, backend="torch"), cross_scan(x.contiguous(), backend="torch"))


def test_auto_on_cpu_is_torch():
    x = torch.randn(1, 2, 3, 4)
    assert torch.equal(cross_scan(x), cross_scan(x, backend="torch"))
    y = torch.randn(1, 4, 2, 12)
    assert torch.equal(cross_merge(y, 3, 4), cross_merge(y, 3, 4, backend="torch"))


def test_backends_listed():
    assert set(BACKENDS["cross_scan"]) == set(BACKENDS["cross_merge"]) == {"torch", "triton"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cross_scan(torch.randn(2, 3, 4)), r"x must be a non-empty \(B, C, H, W\)"),
        (lambda: cross_scan(torch.randn(2, 3, 0, 4)), "non-empty"),
        (lambda: cross_scan(torch.zeros(1, 1, 2, 2, dtype=torch.int32)), "x must be float16"),
        (lambda: cross_merge(torch.randn(2, 3, 4, 12), 3, 4), r"y must be a non-empty \(B, 4, C, L\)"),
        (lambda: cross_merge(torch.randn(2, 4, 3, 12), 3, 5), "must equal height"),
        (lambda: cross_merge(torch.randn(2, 4, 3, 12), 0, 12), "must equal height"),
        (lambda: cross_scan(torch.randn(1, 1, 2, 2), backend="cuda"), "unknown backend"),
    ],
    ids=["scan_3d", "scan_empty", "scan_int", "merge_not_4_dirs", "merge_hw_mismatch", "merge_zero_h",
         "unknown_backend"],
)
def test_bad_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_triton_on_cpu_raises_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="triton"):
        cross_scan(torch.randn(1, 1, 2, 2), backend="triton")
