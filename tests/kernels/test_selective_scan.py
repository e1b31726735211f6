# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The chunked PyTorch selective scan agrees with the step-by-step reference in float64, forward and every gradient;
bad inputs raise clear errors; half precision does not produce NaN."""

from __future__ import annotations

import pytest
import torch

from xlstm_seg_kernels.selective_scan import BACKENDS, mamba_ssm_available, selective_scan
from xlstm_seg_kernels.selective_scan.torch_impl import (
    selective_scan_blocked,
    selective_scan_chunked,
    selective_scan_reference,
)

F64 = torch.float64
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def make_inputs(batch, dim, n, length, b_form, c_form=None, *, groups=2, with_D=True, with_z=True, with_bias=True,
                dtype=F64, seed=0, delta_shift=0.0, scale_u=1.0):
    """Fresh random inputs (float64 draws, then cast). Forms: "DN" (D, N), "BNL" (B, N, L), "BGNL" (B, G, N, L)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift).to(dtype)

    def bc(form):
        return {"DN": (dim, n), "BNL": (batch, n, length), "BGNL": (batch, groups, n, length)}[form]

    inputs = {
        "u": rnd(batch, dim, length, scale=scale_u),
        "delta": rnd(batch, dim, length, scale=0.5, shift=delta_shift),
        "A": -torch.exp(rnd(dim, n, scale=0.5)).to(dtype),
        "B": rnd(*bc(b_form)),
        "C": rnd(*bc(c_form or b_form)),
        "D": rnd(dim) if with_D else None,
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": rnd(dim, scale=0.3) if with_bias else None,
    }
    for t in inputs.values():
        if t is not None:
            t.requires_grad_()
    return inputs


def outputs_and_grads(fn, inputs, *, softplus, seed=1, use_out=True, use_last=True, **kwargs):
    """out, last state and the gradients of a random linear loss over both, w.r.t. every tensor input."""
    out, last = fn(**inputs, delta_softplus=softplus, return_last_state=True, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    loss = 0.0
    if use_out:
        loss = loss + (out * torch.randn(out.shape, generator=gen, dtype=F64).to(out.dtype)).sum()
    if use_last:
        loss = loss + (last * torch.randn(last.shape, generator=gen, dtype=F64).to(last.dtype)).sum()
    names = [k for k in NAMES if inputs[k] is not None]
    grads = torch.autograd.grad(loss, [inputs[k] for k in names], allow_unused=True)
    # an input the loss does not reach (C, D, z when only the last state counts) has gradient zero
    grads = [torch.zeros_like(inputs[k]) if g is None else g for k, g in zip(names, grads)]
    return {"out": out, "last_state": last, **{"d" + k: g for k, g in zip(names, grads)}}


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def assert_all_close(got, ref, tol):
    assert got.keys() == ref.keys()
    errors = {k: rel_err(got[k], ref[k]) for k in ref}
    bad = {k: f"{e:.2e}" for k, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors above {tol:.0e}: {bad}"


BC_FORMS = [("DN", None), ("BNL", None), ("BGNL", None), ("DN", "BGNL"), ("BGNL", "BNL")]
OPTIONS = {
    "all": dict(with_D=True, with_z=True, with_bias=True, softplus=True),
    "none": dict(with_D=False, with_z=False, with_bias=False, softplus=False),
    "D_bias": dict(with_D=True, with_z=False, with_bias=True, softplus=False),
    "z_softplus": dict(with_D=False, with_z=True, with_bias=False, softplus=True),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("forms", BC_FORMS, ids=lambda f: f"B{f[0]}-C{f[1] or f[0]}")
def test_torch_matches_reference_float64(forms, option):
    opts = dict(OPTIONS[option])
    softplus = opts.pop("softplus")
    # odd sizes on purpose: L = 63 is not a multiple of the chunk; 3 channels per group
    inputs = make_inputs(2, 6, 5, 63, *forms, **opts, seed=hash((forms, option)) % 1000)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=softplus)
    got = outputs_and_grads(lambda **kw: selective_scan_chunked(**kw, chunk_size=16), inputs, softplus=softplus)
    assert_all_close(got, ref, 1e-12)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 200, None])
def test_torch_chunk_sizes(chunk_size):
    inputs = make_inputs(2, 4, 3, 64, "BGNL", seed=chunk_size or 0)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=True)
    got = outputs_and_grads(lambda **kw: selective_scan_chunked(**kw, chunk_size=chunk_size), inputs, softplus=True)
    assert_all_close(got, ref, 1e-12)


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("chunk_size", [7, 64, 300, None])
def test_torch_log_depth_scan_matches_reference_float64(chunk_size, option):
    # The log-depth scan (the default on GPUs): 300 steps in one chunk are 37 groups of 8 plus a tail of 4, the 37
    # group totals again 4 groups of 8 plus 5, then 4 -> sequential; chunks of 7 stay below one group.
    from xlstm_seg_kernels.selective_scan.torch_impl import SCAN_GROUP

    assert SCAN_GROUP == 8
    opts = dict(OPTIONS[option])
    softplus = opts.pop("softplus")
    inputs = make_inputs(2, 4, 3, 300, "BGNL", "BNL", **opts, seed=chunk_size or 1)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=softplus)
    got = outputs_and_grads(lambda **kw: selective_scan_chunked(**kw, chunk_size=chunk_size, scan="log"), inputs,
                            softplus=softplus)
    assert_all_close(got, ref, 1e-12)


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("length,group", [(1, 16), (16, 16), (17, 16), (300, 16), (300, 2), (4096, 16)])
def test_blocked_matches_reference_float64(length, group, option):
    # The export form (no Python loop over L): 300 steps = 19 groups of 16 (4 padded steps), 19 -> 2 -> 1 levels;
    # 4,096 = VM-UNet's 64² tokens, three levels; forward, last state and every gradient (autograd through it).
    opts = dict(OPTIONS[option])
    softplus = opts.pop("softplus")
    batch, dim = (1, 2) if length == 4096 else (2, 4)
    inputs = make_inputs(batch, dim, 3, length, "BGNL", "BNL", **opts, seed=length + group)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=softplus)
    got = outputs_and_grads(lambda **kw: selective_scan_blocked(**kw, group=group), inputs, softplus=softplus)
    assert_all_close(got, ref, 1e-12)


@pytest.mark.parametrize("forms", BC_FORMS, ids=lambda f: f"B{f[0]}-C{f[1] or f[0]}")
def test_blocked_bc_forms_float64(forms):
    inputs = make_inputs(2, 6, 5, 63, *forms, seed=7)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=True)
    got = outputs_and_grads(selective_scan_blocked, inputs, softplus=True)
    assert_all_close(got, ref, 1e-12)


def test_blocked_rejects_group_one():
    inputs = {k: v.detach() if v is not None else None for k, v in make_inputs(1, 2, 2, 8, "DN").items()}
    with pytest.raises(ValueError, match="group must be >= 2; got 1"):
        selective_scan_blocked(**inputs, group=1)


def test_traced_auto_graph_stays_small_and_equals_eager():
    # Traced at 4,096 steps the graph holds a few hundred nodes (a Python loop over the steps would unroll to >= 4,096)
    # and grows little from 512 to 4,096 steps; the traced module equals eager on fresh inputs.
    def traced_nodes(length):
        x = {k: v.detach() if v is not None else None
             for k, v in make_inputs(1, 2, 2, length, "BNL", dtype=torch.float32, seed=length).items()}
        names = [k for k in NAMES if x[k] is not None]

        def fn(*tensors):
            return selective_scan(**dict(zip(names, tensors)), delta_softplus=True)

        traced = torch.jit.trace(fn, tuple(x[k] for k in names), check_trace=False)
        fresh = {k: v.detach() if v is not None else None
                 for k, v in make_inputs(1, 2, 2, length, "BNL", dtype=torch.float32, seed=99).items()}
        eager = selective_scan(**fresh, delta_softplus=True)
        assert torch.allclose(traced(*(fresh[k] for k in names)), eager, rtol=1e-5, atol=1e-6)
        return len(list(traced.graph.nodes()))

    small, large = traced_nodes(512), traced_nodes(4096)
    assert large < 1500, large
    assert large - small < 400, (small, large)


def _op_count(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))


def test_log_depth_scan_op_count_grows_with_log_of_the_length():
    # One chunk of L steps: 512 -> 4096 steps (8×) adds one level, a fixed few hundred aten calls; the sequential scan
    # adds a handful of ops per step (thousands).
    counts = {}
    for method in ("log", "sequential"):
        for length in (512, 4096):
            inputs = make_inputs(1, 2, 2, length, "BNL", with_z=False, seed=0, dtype=torch.float32)

            def run(inputs=inputs, length=length, method=method):
                out = selective_scan_chunked(**inputs, chunk_size=length, scan=method)
                out.sum().backward()

            counts[method, length] = _op_count(run)
    assert counts["log", 4096] - counts["log", 512] < 400, counts
    assert counts["sequential", 4096] - counts["sequential", 512] > 10 * (4096 - 512), counts


@pytest.mark.parametrize("use", ["out_only", "last_only"])
def test_torch_partial_losses(use):
    # the backward gets None for the unused output; the result must still match
    inputs = make_inputs(1, 4, 4, 37, "BGNL", seed=5)
    kw = dict(softplus=True, use_out=use == "out_only", use_last=use == "last_only")
    ref = outputs_and_grads(selective_scan_reference, inputs, **kw)
    got = outputs_and_grads(lambda **k: selective_scan(**k, backend="torch"), inputs, **kw)
    assert_all_close(got, ref, 1e-12)


def test_length_one_and_single_channel():
    inputs = make_inputs(1, 1, 1, 1, "BGNL", groups=1, seed=3)
    ref = outputs_and_grads(selective_scan_reference, inputs, softplus=True)
    got = outputs_and_grads(lambda **k: selective_scan(**k, backend="torch"), inputs, softplus=True)
    assert_all_close(got, ref, 1e-12)


def test_reference_matches_explicit_recurrence():
    # the reference itself, against the equations written out for one (b, d): guards against a shared mistake
    inputs = make_inputs(2, 4, 3, 9, "BGNL", seed=11)
    x = {k: (v.detach() if v is not None else None) for k, v in inputs.items()}
    out, last = selective_scan_reference(**x, delta_softplus=True, return_last_state=True)
    b, d = 1, 3
    g = d // (4 // 2)
    dt = torch.nn.functional.softplus(x["delta"][b, d] + x["delta_bias"][d])
    h = torch.zeros(3, dtype=F64)
    for t in range(9):
        h = torch.exp(dt[t] * x["A"][d]) * h + dt[t] * x["B"][b, g, :, t] * x["u"][b, d, t]
        y = (h * x["C"][b, g, :, t]).sum() + x["D"][d] * x["u"][b, d, t]
        y = y * x["z"][b, d, t] * torch.sigmoid(x["z"][b, d, t])
        assert torch.allclose(out[b, d, t], y, rtol=1e-13, atol=0)
    assert torch.allclose(last[b, d], h, rtol=1e-13, atol=0)


def test_auto_picks_torch_on_cpu_and_matches():
    inputs = make_inputs(2, 4, 3, 20, "BGNL", seed=2)
    x = {k: (v.detach() if v is not None else None) for k, v in inputs.items()}
    a = selective_scan(**x, delta_softplus=True)
    b = selective_scan(**x, delta_softplus=True, backend="torch")
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtypes(dtype):
    inputs = make_inputs(2, 4, 3, 20, "BGNL", dtype=dtype, seed=4)
    x = {k: (v.detach() if v is not None else None) for k, v in inputs.items()}
    for backend in ("reference", "torch"):
        out, last = selective_scan(**x, delta_softplus=True, return_last_state=True, backend=backend)
        assert out.dtype == dtype and last.dtype == torch.float32
        out32 = selective_scan(**x, delta_softplus=True, backend=backend, out_dtype=torch.float32)
        assert out32.dtype == torch.float32
        assert torch.equal(out32.to(dtype), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_inputs_no_nan(dtype):
    # large delta (softplus ~ 6) and u (~ 30): fp16 arithmetic would overflow in dt·u·B·C sums; we accumulate in fp32
    inputs = make_inputs(2, 8, 16, 40, "BGNL", dtype=dtype, seed=7, delta_shift=6.0, scale_u=30.0)
    x64 = {k: (v.detach().double() if v is not None else None) for k, v in inputs.items()}
    ref = selective_scan_reference(**x64, delta_softplus=True)
    out = selective_scan(**inputs, delta_softplus=True, backend="torch")
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-2
    (out.float() * torch.randn(out.shape)).sum().backward()
    for name, t in inputs.items():
        if t is not None:
            assert torch.isfinite(t.grad).all(), name


def test_fp16_out_dtype_float32_avoids_overflow():
    # the true output exceeds fp16's range (65504): fp16 output overflows to inf, float32 output stays exact
    inputs = make_inputs(1, 4, 16, 24, "BGNL", dtype=torch.float16, with_z=False, seed=8, delta_shift=8.0,
                         scale_u=2000.0)
    x = {k: (v.detach() if v is not None else None) for k, v in inputs.items()}
    x64 = {k: (v.double() if v is not None else None) for k, v in x.items()}
    ref = selective_scan_reference(**x64, delta_softplus=True)
    assert ref.abs().max() > 65504
    out32 = selective_scan(**x, delta_softplus=True, backend="torch", out_dtype=torch.float32)
    assert torch.isfinite(out32).all() and rel_err(out32, ref) < 1e-5
    assert not torch.isnan(selective_scan(**x, delta_softplus=True, backend="torch")).any()


def _base_args():
    x = make_inputs(2, 4, 3, 10, "BGNL", seed=9)
    return {k: (v.detach() if v is not None else None) for k, v in x.items()}


BAD_INPUTS = {
    "u_2d": (lambda a: a.update(u=a["u"][0]), "u must be (B, D, L)"),
    "delta_shape": (lambda a: a.update(delta=a["delta"][:, :, :-1]), "delta must be (B, D, L)"),
    "A_complex": (lambda a: a.update(A=a["A"].to(torch.complex128)), "complex A is not supported"),
    "A_shape": (lambda a: a.update(A=a["A"][:-1]), "A must be (D, N)"),
    "B_shape_DN": (lambda a: a.update(B=torch.randn(5, 3, dtype=F64)), "B must be (D, N)"),
    "B_groups_not_dividing": (lambda a: a.update(B=torch.randn(2, 3, 3, 10, dtype=F64)), "B must be"),
    "B_5d": (lambda a: a.update(B=a["B"][None]), "B must be"),
    "C_length": (lambda a: a.update(C=a["C"][..., :-1]), "C must be"),
    "C_complex": (lambda a: a.update(C=a["C"].to(torch.complex128)), "complex C is not supported"),
    "D_shape": (lambda a: a.update(D=torch.randn(5, dtype=F64)), "D must be (D,)"),
    "z_shape": (lambda a: a.update(z=a["z"][:1]), "z must be (B, D, L)"),
    "delta_bias_shape": (lambda a: a.update(delta_bias=torch.randn(4, 1, dtype=F64)), "delta_bias must be (D,)"),
    "u_int": (lambda a: a.update(u=a["u"].long()), "u must be float16"),
    "empty": (lambda a: a.update(u=a["u"][:, :, :0], delta=a["delta"][:, :, :0]), "non-empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise(case):
    args = _base_args()
    modify, message = BAD_INPUTS[case]
    modify(args)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        selective_scan(**args, backend="torch")


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(**_base_args(), backend="cuda")


def test_backends_listed():
    assert set(BACKENDS) == {"reference", "torch", "blocked", "looped", "triton", "mamba_ssm"}


@pytest.mark.skipif(mamba_ssm_available(), reason="mamba_ssm imports here")
def test_mamba_ssm_backend_unavailable_raises():
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(**_base_args(), backend="mamba_ssm")


def test_triton_backend_on_cpu_raises_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="triton"):
        selective_scan(**_base_args(), backend="triton")


def test_triton_backend_rejects_float64(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="float64"):
        selective_scan(**_base_args(), backend="triton")


def test_chunk_sizes_per_device():
    # CPU: cache-sized chunks (2^18 elements per (T, B, N, D) tensor); GPU: memory-sized (2^26), one launch group
    # per chunk, so VM-UNet's largest scan (batch 8, L 4096, 768 channels, N 16) takes 6 chunks.
    from xlstm_seg_kernels.selective_scan.torch_impl import _chunk_size, default_scan_method

    assert _chunk_size(2, 192, 16, 4096, torch.device("cpu")) == 32
    assert _chunk_size(8, 768, 16, 4096, torch.device("cuda")) == 682
    assert _chunk_size(1, 4, 2, 100, torch.device("cuda")) == 100
    assert default_scan_method(torch.device("cuda")) == "log" and default_scan_method(torch.device("cpu")) == "sequential"
