# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The Triton selective scan against the float64 PyTorch reference, forward and every gradient.

Without CUDA the kernels run in Triton's CPU interpreter at small shapes in float32 (the interpreter's bf16 arithmetic
is wrong). With CUDA the same small-shape tests run compiled on the GPU, and the ``gpu``-marked tests add VM-UNet's
SS2D shapes in fp32/bf16/fp16 and a comparison with mamba-ssm where it imports.
"""

from __future__ import annotations

import importlib.util
import os

import torch

# @triton.jit decides interpreted vs compiled when it decorates, and triton.language's own helpers (tl.zeros, tl.sum,
# ...) are decorated when triton is first imported: the interpreter switch must be on before triton is imported at
# all. It is put back afterwards so other test modules see the environment they set; the `_interpreter` fixture turns
# it on again for this module's tests (the dispatcher reads it at call time).
CUDA = torch.cuda.is_available()
_previous = os.environ.get("TRITON_INTERPRET")
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from xlstm_seg_kernels.selective_scan import mamba_ssm_available, selective_scan  # noqa: E402
from xlstm_seg_kernels.selective_scan import triton_impl  # noqa: E402
from xlstm_seg_kernels.selective_scan.torch_impl import selective_scan_reference  # noqa: E402

if _previous is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _previous

from test_selective_scan import assert_all_close, make_inputs, outputs_and_grads, rel_err  # noqa: E402

if not CUDA and not (triton_impl.INTERPRETED and isinstance(tl.zeros, InterpretedFunction)):
    # triton (or the kernels) imported in compiled mode by an earlier module, on a machine without a GPU
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set", allow_module_level=True)
DEVICE = "cuda" if CUDA else "cpu"
F64 = torch.float64


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_impl, "POISON_OUTPUTS", True)  # unwritten output elements become NaN and fail


def to(inputs, dtype, device=DEVICE):
    """Detached copies as fresh leaves (float64 draws rounded to dtype)."""
    return {k: (v.detach().to(device=device, dtype=dtype).requires_grad_() if v is not None else None)
            for k, v in inputs.items()}


def check_against_reference(inputs64, *, softplus, tol, **kw):
    ref = outputs_and_grads(selective_scan_reference, to(inputs64, F64, "cpu"), softplus=softplus, **kw)
    got = outputs_and_grads(lambda **k: selective_scan(**k, backend="triton"), to(inputs64, torch.float32),
                            softplus=softplus, **kw)
    assert_all_close({k: v.cpu() for k, v in got.items()}, ref, tol)
    return got


# Small shapes: 2 channels per group and N = 4 keep the interpreter's per-element scan fast (~1-2 s per case);
# L = 37 gives 3 chunks of 16 with a ragged last one.
CASES = {
    "grouped_all": dict(forms=("BGNL",), dim=4, n=4, length=37, opts=dict(), softplus=True),
    "grouped_none": dict(forms=("BGNL",), dim=4, n=4, length=37,
                         opts=dict(with_D=False, with_z=False, with_bias=False), softplus=False),
    "shared_BNL_D_bias": dict(forms=("BNL",), dim=4, n=4, length=33, opts=dict(with_z=False), softplus=False),
    "const_DN_z_N3": dict(forms=("DN",), dim=4, n=3, length=37, opts=dict(with_bias=False), softplus=True),
    "mixed_odd_group": dict(forms=("DN", "BGNL"), dim=6, n=4, length=20, opts=dict(), softplus=True),
    "one_chunk_exact": dict(forms=("BGNL",), dim=4, n=4, length=16, opts=dict(), softplus=True),
    "length_one": dict(forms=("BNL",), dim=2, n=2, length=1, opts=dict(), softplus=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_triton_matches_reference(case):
    spec = CASES[case]
    inputs = make_inputs(2, spec["dim"], spec["n"], spec["length"], *spec["forms"], **spec["opts"],
                         seed=sorted(CASES).index(case))
    check_against_reference(inputs, softplus=spec["softplus"], tol=2e-5)


@pytest.mark.parametrize("use", ["out_only", "last_only"])
def test_triton_partial_losses(use):
    inputs = make_inputs(1, 4, 4, 37, "BGNL", seed=21)
    check_against_reference(inputs, softplus=True, tol=2e-5, use_out=use == "out_only", use_last=use == "last_only")


def test_triton_large_and_negative_steps():
    # strong decay (dt·A down to about -60: exp underflows to 0) and, without softplus, negative dt (growth)
    big = make_inputs(1, 4, 4, 37, "BGNL", seed=22, delta_shift=4.0)
    check_against_reference(big, softplus=True, tol=2e-5)
    neg = make_inputs(1, 4, 4, 37, "BGNL", seed=23, with_bias=False)
    with torch.no_grad():
        neg["delta"].mul_(0.2)  # |dt| ~ 0.1 with both signs: no softplus
    check_against_reference(neg, softplus=False, tol=2e-5)


def test_triton_out_dtype_and_no_grad_path():
    inputs = to(make_inputs(2, 4, 4, 20, "BGNL", seed=24), torch.float32)
    with torch.no_grad():
        out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="triton")
        ref = selective_scan_reference(**{k: (v.double().cpu() if v is not None else None) for k, v in inputs.items()},
                                       delta_softplus=True)
    assert out.dtype == torch.float32 and last.dtype == torch.float32 and tuple(last.shape) == (2, 4, 4)
    assert rel_err(out.cpu(), ref) < 2e-5


def test_block_sizes_respect_groups():
    # a program's channels must sit in one group: BLOCK_D divides the group size
    for group_size in (1, 2, 3, 6, 48, 192, 1536):
        sizes = triton_impl.block_sizes(4 * group_size, 16, 4096, group_size, interpret=False)
        assert group_size % sizes["BLOCK_D_FWD"] == 0 and group_size % sizes["BLOCK_D_BWD"] == 0
        assert sizes["BLOCK_N"] == 16


# ------------------------------------------------------------------------------------------------------------------
# GPU: VM-UNet's SS2D shapes (256² input): four directions stacked as channels (K·d_inner), d_state 16, grouped B/C
# (B, 4, 16, L), delta_bias + softplus, D skip, no z; stages 1 to 4 have L = 64², 32², 16², 8².

SS2D_STAGES = {"stage1": (64, 192), "stage2": (32, 384), "stage3": (16, 768), "stage4": (8, 1536)}  # (H, d_inner)
# per-tensor relative error against float64 on the same (rounded) inputs: fp32 compute everywhere; half inputs
# additionally round the output and the gradients once
GPU_TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def ss2d_inputs(batch, height, d_inner, *, seed, dtype=torch.float32, with_z=False, device="cuda"):
    """SS2D-like inputs: VM-UNet's initialisation ranges (A = -[1..16], dt in [1e-3, 0.1]); K = 4 groups."""
    gen = torch.Generator(device=device).manual_seed(seed)
    dim, n, length = 4 * d_inner, 16, height * height

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=F64)

    log_lo, log_hi = torch.log(torch.tensor(1e-3, dtype=F64)), torch.log(torch.tensor(0.1, dtype=F64))
    dt_init = torch.exp(torch.rand(dim, generator=gen, device=device, dtype=F64) * (log_hi - log_lo) + log_lo)
    inputs = {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length) * 0.5,
        "A": -torch.arange(1, n + 1, device=device, dtype=F64).repeat(dim, 1),
        "B": rnd(batch, 4, n, length),
        "C": rnd(batch, 4, n, length),
        "D": torch.ones(dim, device=device, dtype=F64),
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": dt_init + torch.log(-torch.expm1(-dt_init)),  # inverse softplus
    }
    # round to the test dtype (A, D, delta_bias stay fp32 parameters, as in VM-UNet)
    params = {"A", "D", "delta_bias"}
    return {k: (v.to(torch.float32 if k in params else dtype).requires_grad_() if v is not None else None)
            for k, v in inputs.items()}


def gpu_grads(backend, inputs, *, seed=1, use_last=True, **kw):
    """out, last state and the gradients of a random linear loss (computed in float64) w.r.t. every input."""
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend, **kw)
    device = out.device
    gen = torch.Generator(device=device).manual_seed(seed)
    loss = (out.double() * torch.randn(out.shape, generator=gen, device=device, dtype=F64)).sum()
    if use_last:
        loss = loss + (last.double() * torch.randn(last.shape, generator=gen, device=device, dtype=F64)).sum()
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad(loss, [inputs[k] for k in names])
    return {"out": out, "last_state": last, **{"d" + k: g for k, g in zip(names, grads)}}


def as_leaves(inputs, dtype=None):
    return {k: (v.detach().to(dtype or v.dtype).requires_grad_() if v is not None else None)
            for k, v in inputs.items()}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("stage", sorted(SS2D_STAGES))
def test_gpu_ss2d_shapes_against_float64(stage, dtype):
    height, d_inner = SS2D_STAGES[stage]
    inputs = ss2d_inputs(2, height, d_inner, seed=100 + sorted(SS2D_STAGES).index(stage), dtype=dtype,
                         with_z=stage == "stage3")
    got = gpu_grads("triton", inputs)
    # float64 ground truth on the same rounded inputs; the chunked torch form equals the sequential reference in
    # float64 (test_selective_scan.py) and is fast enough at L = 4096
    ref = gpu_grads("torch", as_leaves(inputs, F64))
    for k, v in got.items():
        assert torch.isfinite(v).all(), k
    assert_all_close(got, ref, GPU_TOL[dtype])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_sequential_reference_stage4():
    # once against the step-by-step reference itself, at the shortest real shape
    inputs = ss2d_inputs(2, 8, 1536, seed=7, with_z=True)
    got = gpu_grads("triton", inputs)
    ref = gpu_grads("reference", as_leaves(inputs, F64))
    assert_all_close(got, ref, GPU_TOL[torch.float32])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gpu_half_large_inputs_no_nan(dtype):
    inputs = ss2d_inputs(2, 32, 384, seed=9, dtype=dtype, with_z=True)
    with torch.no_grad():
        inputs["u"].mul_(30.0)
        inputs["delta"].add_(6.0)  # softplus ~ 6: strong decay, large dt·u·B
    got = gpu_grads("triton", inputs, use_last=False, out_dtype=torch.float32)
    for k, v in got.items():
        assert torch.isfinite(v).all(), k
    ref = gpu_grads("torch", as_leaves(inputs, F64), use_last=False, out_dtype=F64)
    assert rel_err(got["out"], ref["out"]) < 1e-4  # float32 output: no final rounding to half


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.skipif(not mamba_ssm_available(), reason="mamba_ssm's selective_scan_fn does not import")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("stage", ["stage1", "stage4"])
def test_gpu_matches_mamba_ssm(stage, dtype):
    height, d_inner = SS2D_STAGES[stage]
    inputs = ss2d_inputs(2, height, d_inner, seed=31, dtype=dtype, with_z=True)
    # mamba-ssm ignores the last state's gradient, so the loss uses the output only
    ours = gpu_grads("triton", inputs, use_last=False)
    theirs = gpu_grads("mamba_ssm", as_leaves(inputs), use_last=False)
    ref = gpu_grads("torch", as_leaves(inputs, F64), use_last=False)
    tol = GPU_TOL[dtype]
    assert_all_close(ours, ref, tol)
    assert_all_close(theirs, ref, 10 * tol)  # a sanity check of the comparison itself, looser
