# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Half-precision inputs to the PyTorch mLSTM and selective-scan forms: states and sums stay float32.

The bounds sit far below bf16's precision (unit roundoff 2⁻⁹ ≈ 2e-3), so a form that accumulated in bf16 fails them;
each test also runs such a form (the compute dtype patched to bf16) and checks that it does fail. Strongly negative
forget gates over 262,144 tokens (BraTS stage 0) and large input-gate pre-activations must stay finite and correct.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from xlstm_seg_kernels import mlstm, selective_scan
from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise, mlstm_parallel
from xlstm_seg_kernels.selective_scan.torch_impl import selective_scan_chunked

mlstm_torch_impl = importlib.import_module("xlstm_seg_kernels.mlstm.torch_impl")
scan_torch_impl = importlib.import_module("xlstm_seg_kernels.selective_scan.torch_impl")
F64, BF16 = torch.float64, torch.bfloat16


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def bf16_mlstm_inputs(seq, dqk, dv, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 2, seq, dqk, generator=gen), torch.randn(1, 2, seq, dqk, generator=gen)
    v = torch.randn(1, 2, seq, dv, generator=gen)
    igate, fgate = 0.5 * torch.randn(1, 2, seq, generator=gen), torch.randn(1, 2, seq, generator=gen) + 4.0
    return [t.to(BF16) for t in (q, k, v, igate, fgate)]


MLSTM_FORMS = {
    "chunkwise": (lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=64, **kw), 3000),
    "parallel": (mlstm_parallel, 200),
}


def mlstm_errors(form, inputs, ref):
    h, (c, n, m) = form(*inputs, return_last_state=True)
    h_ref, (c_ref, n_ref, _) = ref
    # what rounding the exact result to bf16 costs: the most a float32 computation may lose
    return {"dtypes": (h.dtype, c.dtype, n.dtype, m.dtype), "h": rel(h, h_ref), "h_rounding": rel(h_ref.to(BF16), h_ref), "C": rel(c, c_ref), "n": rel(n, n_ref)}


@pytest.mark.parametrize("name", sorted(MLSTM_FORMS))
def test_mlstm_bf16_inputs_accumulate_in_float32(name, monkeypatch):
    form, seq = MLSTM_FORMS[name]
    inputs = bf16_mlstm_inputs(seq, 16, 16, seed=0)
    ref = form(*(t.double() for t in inputs), return_last_state=True)
    errors = mlstm_errors(form, inputs, ref)
    assert errors.pop("dtypes") == (BF16, torch.float32, torch.float32, torch.float32)
    assert errors["C"] < 1e-5 and errors["n"] < 1e-5, errors
    assert errors["h"] < 1.05 * errors["h_rounding"] + 1e-5, errors
    # The same bounds reject a form that computes in bf16.
    monkeypatch.setattr(mlstm_torch_impl, "_compute_dtype", lambda *tensors: BF16)
    bad = mlstm_errors(form, inputs, ref)
    assert bad["C"] > 1e-3 and bad["h"] > 1.05 * bad["h_rounding"] + 1e-5, bad


def test_selective_scan_bf16_inputs_accumulate_in_float32(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    batch, dim, n, length = 2, 32, 16, 1500
    x = {
        "u": torch.randn(batch, dim, length, generator=gen), "delta": 0.5 * torch.randn(batch, dim, length,
                                                                                     generator=gen) - 2.0,
        "A": -torch.exp(0.5 * torch.randn(dim, n, generator=gen)), "B": torch.randn(batch, 4, n, length, generator=gen),
        "C": torch.randn(batch, 4, n, length, generator=gen), "D": torch.randn(dim, generator=gen),
        "delta_bias": 0.1 * torch.randn(dim, generator=gen),
    }
    x = {k: t.to(BF16) if k in ("u", "delta", "B", "C") else t for k, t in x.items()}  # SS2D: parameters fp32

    ref_out, ref_last = selective_scan_chunked(**{k: t.double() for k, t in x.items()}, delta_softplus=True,
                                               return_last_state=True)

    def errors():
        out, last = selective_scan_chunked(**x, delta_softplus=True, return_last_state=True, out_dtype=torch.float32)
        return out.dtype, last.dtype, rel(out, ref_out), rel(last, ref_last)

    out_dtype, last_dtype, *good = errors()
    assert out_dtype == last_dtype == torch.float32
    assert max(good) < 1e-5, good
    monkeypatch.setattr(scan_torch_impl, "compute_dtype", lambda *tensors: BF16)
    assert min(errors()[2:]) > 1e-3  # a bf16 state fails the bound


def test_mlstm_262144_tokens_strongly_negative_forget_gates_large_input_gates_bf16():
    # BraTS stage 0 length. Forget-gate pre-activations in [-40, -20] make every decay ~e^-30; input-gate
    # pre-activations up to ±150 would overflow exp in float32 (e^88) without the stabiliser. Every output, state
    # and gradient must be finite, and h must match a float64 run on a window (the decays forget all history
    # beyond a few tokens, so 64 tokens of lead-in reproduce the full run).
    seq, dh = 64**3, 4
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, seq, dh, generator=gen).to(BF16) for _ in range(3))
    igate = (50 * torch.randn(1, 1, seq, generator=gen)).to(BF16)
    fgate = (-20 - 20 * torch.rand(1, 1, seq, generator=gen)).to(BF16)
    leaves = [t.requires_grad_() for t in (q, k, v, igate, fgate)]
    h, (c, n, m) = mlstm(*leaves, return_last_state=True)  # auto: the chunkwise form at this length
    (h.float().square().sum() + c.sum() + n.sum() + m.sum()).backward()
    for name, tensor in {"h": h, "C": c, "n": n, "m": m}.items():
        assert torch.isfinite(tensor).all(), name
    for name, leaf in zip(("q", "k", "v", "igate", "fgate"), leaves):
        assert torch.isfinite(leaf.grad).all(), f"d{name}"
    assert igate.abs().max() > 150
    start, stop = 200_000, 200_500
    window = [t.detach()[:, :, start - 64: stop].double() for t in leaves]
    ref = mlstm_chunkwise(*window, chunk_size=64)[:, :, 64:]
    assert rel(h[:, :, start:stop], ref) < 1e-2  # bf16 output rounding is ~2e-3


def test_selective_scan_large_steps_and_inputs_bf16_stay_finite():
    # dt = softplus(delta + bias) up to ~60 and |u| up to ~5e3: exp(dt·A) underflows to 0, dt·u·B is large.
    gen = torch.Generator().manual_seed(2)
    batch, dim, n, length = 1, 8, 16, 300
    u = (1000 * torch.randn(batch, dim, length, generator=gen)).to(BF16).requires_grad_()
    delta = (20 + 20 * torch.randn(batch, dim, length, generator=gen)).to(BF16).requires_grad_()
    A = (-torch.exp(torch.randn(dim, n, generator=gen))).requires_grad_()
    B = torch.randn(batch, 2, n, length, generator=gen).to(BF16).requires_grad_()
    C = torch.randn(batch, 2, n, length, generator=gen).to(BF16).requires_grad_()
    out = selective_scan(u, delta, A, B, C, None, None, None, True, out_dtype=torch.float32)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(t.grad).all() for t in (u, delta, A, B, C))
    ref = selective_scan(*(t.detach().double() for t in (u, delta, A, B, C)), None, None, None, True,
                         backend="reference")
    assert rel(out, ref) < 1e-5
