# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The three PyTorch mLSTM forms agree with the step-by-step recurrence in float64, forward and every gradient."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from xlstm_seg_kernels import mlstm
from xlstm_seg_kernels.mlstm import PARALLEL_MAX_SEQ_LEN
from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent

F64 = torch.float64


def make_inputs(batch, heads, seq, dqk, dv, *, dtype=F64, fgate_shift=3.0, seed=0, with_state=False):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) + shift).to(dtype).requires_grad_()

    q, k = rnd(batch, heads, seq, dqk), rnd(batch, heads, seq, dqk)
    v = rnd(batch, heads, seq, dv)
    igate, fgate = rnd(batch, heads, seq), rnd(batch, heads, seq, shift=fgate_shift)
    state = None
    if with_state:
        state = (rnd(batch, heads, dqk, dv), rnd(batch, heads, dqk), rnd(batch, heads, 1))
    return q, k, v, igate, fgate, state


def outputs_and_grads(fn, q, k, v, igate, fgate, state, **kwargs):
    """h, the final state and the gradients of a loss that touches all of them, w.r.t. every input."""
    h, (c, n, m) = fn(q, k, v, igate, fgate, initial_state=state, return_last_state=True, **kwargs)
    loss = (h * torch.cos(h)).sum() + (c * c.detach().sign()).sum() + n.sum() + m.sum()
    leaves = [q, k, v, igate, fgate] + (list(state) if state is not None else [])
    grads = torch.autograd.grad(loss, leaves)
    names = ["h", "C", "n", "m", "dq", "dk", "dv", "digate", "dfgate"] + (["dC0", "dn0", "dm0"] if state else [])
    return dict(zip(names, [h, c, n, m, *grads]))


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


FORMS = {
    "parallel": lambda *a, **kw: mlstm_parallel(*a, **kw),
    "chunkwise_L16": lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=16, **kw),
    "chunkwise_L1": lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=1, **kw),
    "chunkwise_L_gt_S": lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=128, **kw),
}


@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "initial_state"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_forms_agree_with_recurrence_float64(form, with_state):
    # odd sizes on purpose: S=63 is not a multiple of the chunk, DHQK != DHV
    inputs = make_inputs(2, 3, 63, 8, 5, with_state=with_state, seed=1)
    ref = outputs_and_grads(mlstm_recurrent, *inputs)
    out = outputs_and_grads(FORMS[form], *inputs)
    errors = {name: rel_err(out[name], ref[name]) for name in ref}
    assert max(errors.values()) < 1e-12, errors


@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "initial_state"])
def test_chunkwise_state_scan_over_three_levels_matches_recurrence(with_state):
    # 600 tokens in chunks of 2: 300 chunks, i.e. three levels of the state scan across chunks (groups of 16, 16²
    # < 300), with padding at every level (300 = 18·16 + 12 and 19 groups = 16 + 3); the eps = 0.1 normaliser and
    # an input-gate spike make the stabiliser's own gradient large, so its routing is checked too.
    from xlstm_seg_kernels.mlstm.torch_impl import STATE_SCAN_GROUP

    assert STATE_SCAN_GROUP**2 < 300 < STATE_SCAN_GROUP**3
    inputs = make_inputs(1, 2, 600, 3, 4, with_state=with_state, seed=7, fgate_shift=2.0)
    with torch.no_grad():
        inputs[3][..., 101] += 6.0
    ref = outputs_and_grads(mlstm_recurrent, *inputs, eps=0.1)
    out = outputs_and_grads(lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=2, **kw), *inputs, eps=0.1)
    errors = {name: rel_err(out[name], ref[name]) for name in ref}
    assert max(errors.values()) < 1e-12, errors


def _op_count(fn) -> int:
    """Number of aten ops one call runs (forward and backward), from the torch profiler: the GPU launch proxy."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))


def test_chunkwise_op_count_grows_with_log_of_the_chunk_count():
    # Chunks of one token: 256, 4096 and 65,536 chunks need 2, 3 and 4 levels of the state scan. Each level adds
    # the same few hundred aten calls (views and allocations included); a loop over chunks would add 60,000.
    counts = {}
    for seq in (256, 4096, 65536):
        q, k, v, i, f, _ = make_inputs(1, 1, seq, 2, 2, dtype=torch.float32, seed=0)

        def run(q=q, k=k, v=v, i=i, f=f):
            mlstm_chunkwise(q, k, v, i, f, chunk_size=1).sum().backward()

        counts[seq] = _op_count(run)
    per_level = (counts[4096] - counts[256], counts[65536] - counts[4096])
    assert all(0 < step < 600 for step in per_level), counts
    assert counts[65536] < 2 * counts[256] + 600, counts


def test_chunkwise_traces_to_a_graph_that_holds_for_other_inputs():
    # No data-dependent Python control flow: a TorchScript trace made with one set of values (the export path of
    # issue 13) gives exactly the eager result on another set of the same shapes, including a new initial state.
    import warnings

    def fn(q, k, v, i, f, c0, n0, m0):
        h, (c, n, m) = mlstm_chunkwise(q, k, v, i, f, chunk_size=4, initial_state=(c0, n0, m0),
                                       return_last_state=True)
        return h, c, n, m

    first, second = (make_inputs(1, 2, 77, 3, 5, dtype=torch.float32, seed=s, with_state=True) for s in (0, 1))
    flat = [[t.detach() for t in (*inputs[:5], *inputs[5])] for inputs in (first, second)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes
        traced = torch.jit.trace(fn, tuple(flat[0]))
    for got, expected in zip(traced(*flat[1]), fn(*flat[1])):
        assert torch.equal(got, expected)


def test_strongly_negative_forget_gates_stay_finite_and_agree():
    # forget gates near 0 (log f ~ -30) and large input gates stress the stabiliser
    q, k, v, igate, fgate, _ = make_inputs(1, 2, 70, 4, 4, fgate_shift=-30.0, seed=2)
    with torch.no_grad():
        igate.mul_(20)
    ref = outputs_and_grads(mlstm_recurrent, q, k, v, igate, fgate, None)
    for form in FORMS.values():
        out = outputs_and_grads(form, q, k, v, igate, fgate, None)
        for name, tensor in out.items():
            assert torch.isfinite(tensor).all(), name
            assert rel_err(tensor, ref[name]) < 1e-9, name


def test_float32_chunkwise_matches_float64_reference():
    inputs64 = make_inputs(2, 4, 200, 16, 16, seed=3)
    ref = mlstm_recurrent(*inputs64[:5])
    inputs32 = [t.detach().float() for t in inputs64[:5]]
    out = mlstm_chunkwise(*inputs32, chunk_size=64)
    assert out.dtype == torch.float32
    assert rel_err(out.double(), ref) < 1e-5


def test_half_precision_inputs_compute_in_float32_and_return_input_dtype():
    q, k, v, igate, fgate, _ = make_inputs(1, 2, 40, 8, 8, dtype=torch.bfloat16, seed=4)
    out = mlstm(q, k, v, igate, fgate, backend="chunkwise", chunk_size=16)
    ref = mlstm_recurrent(*(t.detach().double() for t in (q, k, v, igate, fgate)))
    assert out.dtype == torch.bfloat16
    assert rel_err(out.double(), ref) < 1e-2


def test_auto_backend_picks_by_sequence_length(monkeypatch):
    calls = []
    from xlstm_seg_kernels.mlstm import interface

    for name in ("parallel", "chunkwise"):
        original = interface.BACKENDS[name]

        def spy(*a, _name=name, _orig=original, **kw):
            calls.append(_name)
            return _orig(*a, **kw)

        monkeypatch.setitem(interface.BACKENDS, name, spy)
    for seq in (PARALLEL_MAX_SEQ_LEN, PARALLEL_MAX_SEQ_LEN + 1):
        q, k, v, i, f, _ = make_inputs(1, 1, seq, 2, 2, dtype=torch.float32)
        mlstm(q, k, v, i, f)
    assert calls == ["parallel", "chunkwise"]


def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k, v, i, f, _ = make_inputs(1, 1, 8, 2, 2, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="backend='triton' needs CUDA"):
        mlstm(q, k, v, i, f, backend="triton")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(backend="flash"), "unknown backend 'flash'"),
        (dict(v_shape=(1, 1, 7, 2)), r"v must be \(B, NH, S, DHV\)"),
        (dict(gate_shape=(1, 1, 8, 1)), r"igate must be \(B, NH, S\)"),
        (dict(chunk_size=0), "chunk_size must be >= 1"),
    ],
)
def test_bad_arguments_get_clear_errors(bad, message):
    q, k, v, i, f, _ = make_inputs(1, 1, 8, 2, 2, dtype=torch.float32)
    if "v_shape" in bad:
        v = torch.zeros(bad["v_shape"])
    if "gate_shape" in bad:
        i = torch.zeros(bad["gate_shape"])
    with pytest.raises(ValueError, match=message):
        mlstm(q, k, v, i, f, backend=bad.get("backend", "auto"), chunk_size=bad.get("chunk_size", 64))


def test_backend_env_var_overrides_auto_only(monkeypatch):
    monkeypatch.setenv("XLSTM_SEG_KERNEL_BACKEND", "recurrent")
    q, k, v, i, f, _ = make_inputs(1, 1, 5, 2, 2)
    ref = mlstm_recurrent(q, k, v, i, f)
    assert torch.equal(mlstm(q, k, v, i, f), ref)
    monkeypatch.setenv("XLSTM_SEG_KERNEL_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="XLSTM_SEG_KERNEL_BACKEND='nonsense'"):
        mlstm(q, k, v, i, f)


def test_64_cubed_tokens_run_in_bounded_memory():
    """262,144 tokens (a 64³ stage): one S×S float32 matrix alone would be 256 GiB; chunkwise needs well under 3 GiB."""
    code = textwrap.dedent(
        """
        import resource, torch
        from xlstm_seg_kernels import mlstm
        torch.manual_seed(0)
        S = 64 ** 3
        x = [torch.randn(1, 2, S, 8, requires_grad=True) for _ in range(3)]
        i, f = torch.randn(1, 2, S, requires_grad=True), torch.randn(1, 2, S, requires_grad=True)
        h = mlstm(*x, i, f)
        h.square().mean().backward()
        ok = bool(torch.isfinite(h).all() and torch.isfinite(x[0].grad).all() and torch.isfinite(f.grad).all())
        print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    finite, max_rss_kib = result.stdout.split()
    assert finite == "True"
    assert int(max_rss_kib) < 3 * 1024**2, f"peak RSS {int(max_rss_kib) / 1024**2:.2f} GiB"


def test_tensor_subclasses_are_accepted_and_keep_gradients():
    """MONAI hands networks MetaTensors; the op strips the subclass at its boundary, keeping autograd."""
    from monai.data import MetaTensor

    q, k, v, i, f, _ = make_inputs(2, 1, 9, 2, 2, dtype=torch.float32)
    meta = [MetaTensor(t.detach(), meta={"filename_or_obj": ["a", "b"]}).requires_grad_() for t in (q, k, v, i, f)]
    out = mlstm(*meta, backend="chunkwise", chunk_size=4)
    assert type(out) is torch.Tensor
    assert torch.allclose(out, mlstm(q, k, v, i, f, backend="recurrent"), atol=1e-6)
    out.sum().backward()
    assert all(m.grad is not None for m in meta)
