# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The Triton mLSTM kernels against the float64 PyTorch references: output, final state and every gradient.

Without CUDA the kernels run in Triton's CPU interpreter, in float32 only (the interpreter computes bf16 dots wrongly)
and at small sizes. With CUDA they are compiled: the same small cases then run on the GPU, and the tests marked
``gpu`` add real xLSTM-UNet shapes in float32 and bfloat16 and a 262,144-token bf16 run that must stay finite.
Every comparison reports the relative error ‖out − ref‖ / ‖ref‖ of each tensor.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import torch

# @triton.jit decides between interpreted and compiled when it decorates: for our kernels when triton_impl is first
# imported, for triton.language's own helpers (tl.sum, tl.cumsum, ...) when triton is first imported. So the switch is
# set before either, and only without CUDA (with a GPU the kernels must compile). It is put back afterwards so other
# test modules see their own environment; the autouse fixture below turns it on again for this module's tests, since
# the backend dispatcher reads it at call time.
CUDA = torch.cuda.is_available()
_previous = os.environ.get("TRITON_INTERPRET")
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from xlstm_seg_kernels import mlstm  # noqa: E402
from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise, mlstm_recurrent  # noqa: E402

# `xlstm_seg_kernels.mlstm` is also the name of the public function, so the submodule is fetched by its full name.
triton_impl = importlib.import_module("xlstm_seg_kernels.mlstm.triton_impl")
mlstm_triton = triton_impl.mlstm_triton

if _previous is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _previous

if not CUDA and not (triton_impl.INTERPRETED and isinstance(tl.sum, InterpretedFunction)):
    # triton or the kernels were imported in compiled mode by an earlier module, on a machine without a GPU
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set", allow_module_level=True)
DEVICE = "cpu" if triton_impl.INTERPRETED else "cuda"
F64 = torch.float64
needs_gpu = pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA (compiled Triton kernels)")

# fp32: float32-accurate tf32x3 dots (PyTorch's default matmul precision "highest"); bf16: bf16 operands, fp32 sums.
TOLERANCES = {
    torch.float32: {"forward": 2e-5, "grad": 5e-4},
    torch.bfloat16: {"forward": 1.5e-2, "grad": 3e-2},
    torch.float16: {"forward": 3e-3, "grad": 1e-2},  # fp16 raw products, fp32/tf32 intermediates
}
FORWARD_NAMES = ("h", "C", "n", "m")


@pytest.fixture(autouse=True)
def _kernel_settings(monkeypatch):
    """Interpreter on (without CUDA), poisoned output buffers, and PyTorch's float32 matmul precision pinned to
    "highest", which the kernels follow (tf32 under "high")."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_impl, "POISON_OUTPUTS", True)  # unwritten elements become NaN and fail
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def make_inputs(batch, heads, seq, dqk, dv, *, seed, with_state=False, fgate_shift=3.0, device="cpu"):
    """float64 leaves on ``device``: q, k, v, igate, fgate and optionally an initial state (C, n, m)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) + shift).to(device).requires_grad_()

    q, k, v = rnd(batch, heads, seq, dqk), rnd(batch, heads, seq, dqk), rnd(batch, heads, seq, dv)
    igate, fgate = rnd(batch, heads, seq), rnd(batch, heads, seq, shift=fgate_shift)
    state = None
    if with_state:
        state = (rnd(batch, heads, dqk, dv), rnd(batch, heads, dqk), rnd(batch, heads, 1))
    return [q, k, v, igate, fgate], state


def cast_leaves(inputs, state, dtype, device=DEVICE):
    """Detached copies in ``dtype`` on ``device`` (the state stays float32, as the kernels keep it)."""
    leaves = [t.detach().to(device=device, dtype=dtype).requires_grad_() for t in inputs]
    if state is not None:
        state = tuple(t.detach().to(device=device, dtype=torch.float32).requires_grad_() for t in state)
    return leaves, state


def outputs_and_grads(fn, inputs, state, *, final_state_loss=True, **kwargs):
    """h, the final state and the gradients of a loss on all of them with respect to every input."""
    h, (c, n, m) = fn(*inputs, initial_state=state, return_last_state=True, **kwargs)
    loss = (h * torch.cos(h)).sum()
    if final_state_loss:
        loss = loss + (c * c.detach().sign()).sum() + n.sum() + m.sum()
    leaves = list(inputs) + (list(state) if state is not None else [])
    grads = torch.autograd.grad(loss, leaves)
    names = ["dq", "dk", "dv", "digate", "dfgate"] + (["dC0", "dn0", "dm0"] if state is not None else [])
    return {"h": h, "C": c, "n": n, "m": m, **dict(zip(names, grads))}


def rel_errors(out, ref):
    return {
        name: ((out[name].double() - ref[name].to(out[name].device)).norm() / ref[name].norm().clamp_min(1e-300)).item()
        for name in ref
    }


def assert_close_to_reference(out, ref, dtype, *, baseline=None):
    """Every tensor finite and within the dtype's tolerance of ``ref``.

    ``baseline``: relative errors of the float32 PyTorch chunkwise form on the same inputs. On ill-conditioned inputs
    (an output whose |nᵀq̂| sits at the exp(-m) floor, gate gradients that cancel) every float32 form is off by more
    than the usual tolerance; the kernels then must be within 10× of PyTorch's own float32 error.
    """
    errors = rel_errors(out, ref)
    report = "  ".join(f"{name}={err:.1e}" for name, err in errors.items())
    print(f"\nrelative errors ({dtype}): {report}")  # shown with pytest -s
    for name, tensor in out.items():
        assert torch.isfinite(tensor).all(), f"{name} has non-finite values; errors: {report}"
    tol = TOLERANCES[dtype]
    for name, err in errors.items():
        limit = tol["forward"] if name in FORWARD_NAMES else tol["grad"]
        if baseline is not None:
            limit = max(limit, 10 * baseline[name])
        assert err < limit, f"{name}: relative error {err:.2e} >= {limit:.1e}; all: {report}"


def torch_float32_errors(inputs, state, ref, **kwargs):
    """Relative errors of the float32 PyTorch chunkwise form: how well float32 can do on these inputs."""
    leaves, state32 = cast_leaves(inputs, state, torch.float32, device="cpu")
    out = outputs_and_grads(lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=16, **kw), leaves, state32, **kwargs)
    return rel_errors(out, ref)


def triton_form(chunk_size, **extra):
    return lambda *a, **kw: mlstm_triton(*a, chunk_size=chunk_size, **extra, **kw)


# ----------------------------------------------------------------------------------------------------------------------
# Small cases: the CPU interpreter (or compiled, on a GPU machine)
# ----------------------------------------------------------------------------------------------------------------------

# (batch, heads, S, DHQK, DHV, chunk, initial state): S not a multiple of the chunk, S = 1, S < chunk, DHQK != DHV,
# head dims that need several masked tiles (the interpreter uses 32-wide tiles, so 40 = 32 + 8).
SMALL_CASES = [
    (1, 1, 1, 8, 8, 16, True),
    (1, 2, 17, 24, 8, 16, False),
    (2, 1, 64, 40, 24, 32, True),
    (1, 2, 100, 8, 40, 16, True),
    (2, 2, 100, 24, 24, 32, False),
]


@pytest.mark.parametrize("case", SMALL_CASES, ids=lambda c: "B{}_NH{}_S{}_qk{}_v{}_L{}_{}".format(
    *c[:6], "state" if c[6] else "nostate"))
def test_matches_float64_recurrence(case):
    batch, heads, seq, dqk, dv, chunk, with_state = case
    inputs, state = make_inputs(batch, heads, seq, dqk, dv, seed=seq + dqk, with_state=with_state)
    ref = outputs_and_grads(mlstm_recurrent, inputs, state)
    leaves, state32 = cast_leaves(inputs, state, torch.float32)
    out = outputs_and_grads(triton_form(chunk), leaves, state32)
    assert out["h"].dtype == torch.float32 and out["h"].shape == (batch, heads, seq, dv)
    assert_close_to_reference(out, ref, torch.float32)


@pytest.mark.parametrize("head_dim", [160, 192, 384], ids=lambda d: f"DH{d}")
def test_large_head_dims_match_float64_recurrence(head_dim):
    # the head sizes mlstm_kernels leaves unverified; 384 = 12 interpreter tiles (a GPU picks wider ones)
    inputs, state = make_inputs(1, 1, 20, head_dim, head_dim, seed=head_dim, with_state=True)
    ref = outputs_and_grads(mlstm_recurrent, inputs, state)
    leaves, state32 = cast_leaves(inputs, state, torch.float32)
    out = outputs_and_grads(triton_form(16), leaves, state32)
    assert_close_to_reference(out, ref, torch.float32)

def test_float16_inputs():
    # float16 q, k, v (the interpreter computes fp16 correctly, unlike bf16); output and gradients come back in fp16.
    inputs, state = make_inputs(1, 2, 50, 24, 16, seed=3, with_state=True)
    rounded = [t.detach().half().double().requires_grad_() for t in inputs]
    ref_state = tuple(t.detach().float().double().requires_grad_() for t in state)
    ref = outputs_and_grads(mlstm_recurrent, rounded, ref_state)
    leaves, state32 = cast_leaves(rounded, state, torch.float16)
    out = outputs_and_grads(triton_form(16), leaves, state32)
    assert out["h"].dtype == out["dq"].dtype == out["dv"].dtype == torch.float16
    assert out["C"].dtype == torch.float32
    assert_close_to_reference(out, ref, torch.float16)


def test_strongly_negative_forget_gates_and_large_input_gates():
    # log f ~ -30 and input gates ×20: each token's own input dominates; exp(-m) spans ±60 in the exponent.
    inputs, _ = make_inputs(1, 2, 70, 8, 8, seed=2, fgate_shift=-30.0)
    with torch.no_grad():
        inputs[3].mul_(20)
    ref = outputs_and_grads(mlstm_recurrent, inputs, None)
    leaves, _ = cast_leaves(inputs, None, torch.float32)
    out = outputs_and_grads(triton_form(16), leaves, None)
    assert_close_to_reference(out, ref, torch.float32, baseline=torch_float32_errors(inputs, None, ref))


def test_stabiliser_gradient_reaches_its_argmax_source():
    # With eps = 0.1 the stabiliser m_t carries a large gradient (h depends on m only through eps). A large initial m
    # makes the initial state the arg-max for several chunks, and an input-gate spike makes one token the arg-max of
    # many later rows, across chunk boundaries: the routing through the chunk scan has to be right.
    inputs, state = make_inputs(1, 2, 50, 8, 8, seed=5, with_state=True, fgate_shift=5.0)
    with torch.no_grad():
        inputs[3][..., 3] += 6.0
        state[2].add_(8.0)
    ref = outputs_and_grads(mlstm_recurrent, inputs, state, eps=0.1)
    leaves, state32 = cast_leaves(inputs, state, torch.float32)
    out = outputs_and_grads(triton_form(16), leaves, state32, eps=0.1)
    assert_close_to_reference(out, ref, torch.float32, baseline=torch_float32_errors(inputs, state, ref, eps=0.1))


def test_loss_on_h_only_and_recomputed_states():
    # No gradient reaches the final state (the backward's HAS_DLAST=False path); states recomputed in the backward.
    inputs, state = make_inputs(1, 2, 40, 16, 8, seed=7, with_state=True)
    ref = outputs_and_grads(mlstm_recurrent, inputs, state, final_state_loss=False)
    leaves, state32 = cast_leaves(inputs, state, torch.float32)
    out = outputs_and_grads(triton_form(16, recompute_states=True), leaves, state32, final_state_loss=False)
    for name in FORWARD_NAMES[1:]:
        out.pop(name), ref.pop(name)
    assert_close_to_reference(out, ref, torch.float32)


def test_public_function_dispatches_to_triton():
    inputs, _ = make_inputs(1, 1, 20, 8, 8, seed=11)
    leaves, _ = cast_leaves(inputs, None, torch.float32)
    direct = mlstm_triton(*leaves, chunk_size=16)
    public = mlstm(*leaves, backend="triton", chunk_size=16)
    assert torch.equal(direct, public)
    with torch.no_grad():
        ref = mlstm_chunkwise(*(t.detach().double() for t in inputs), chunk_size=16)
        out = mlstm(*(t.detach() for t in leaves), backend="triton", chunk_size=16)
    assert out.requires_grad is False
    assert ((out.double().cpu() - ref).norm() / ref.norm()).item() < TOLERANCES[torch.float32]["forward"]


def test_vil_block_gives_the_same_output_and_gradients_with_triton():
    # The kernels behind a whole ViL block (non-contiguous head views, gates from a Linear): same weights, same input.
    from shared_networks.blocks.vil import ViLBlock

    torch.manual_seed(0)
    blocks = {name: ViLBlock(16, mlstm_backend=name, chunk_size=16).to(DEVICE) for name in ("parallel", "triton")}
    blocks["triton"].load_state_dict(blocks["parallel"].state_dict())
    x = torch.randn(1, 40, 16, device=DEVICE)
    results = {}
    for name, block in blocks.items():
        xi = x.clone().requires_grad_()
        out = block(xi)
        (out * torch.cos(out)).sum().backward()
        results[name] = [out, xi.grad] + [p.grad for p in block.parameters()]
    for ref, got in zip(results["parallel"], results["triton"]):
        assert ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item() < 1e-4


def test_kernel_chunk_size_rounds_to_supported_lengths():
    assert triton_impl.kernel_chunk_size(64, 10_000) == 64
    assert triton_impl.kernel_chunk_size(1, 100) == 16  # tl.dot's minimum
    assert triton_impl.kernel_chunk_size(48, 100) == 64  # powers of two only
    assert triton_impl.kernel_chunk_size(512, 10_000) == 128  # register limit
    assert triton_impl.kernel_chunk_size(64, 20) == 32  # no longer than the sequence needs


def test_float64_inputs_are_rejected_with_a_pointer_to_the_torch_backends():
    inputs, _ = make_inputs(1, 1, 4, 8, 8, seed=0, device=DEVICE)
    with pytest.raises(TypeError, match="backend='chunkwise'"):
        mlstm_triton(*(t.detach() for t in inputs))


# ----------------------------------------------------------------------------------------------------------------------
# GPU: real shapes (B=2, NH=4; DH = dim/2 of the ViL stages), float32 and bfloat16
# ----------------------------------------------------------------------------------------------------------------------

GPU_SEQS = (125, 512, 4096, 32768)
GPU_HEAD_DIMS = (24, 48, 96, 160, 192)


def _torch_chunkwise(*args, **kwargs):
    return mlstm_chunkwise(*args, chunk_size=64, **kwargs)


def _gpu_check(inputs, state, dtype, chunk=64):
    """Kernels vs the float64 chunkwise form (which agrees with the recurrence to 1e-9, tests/kernels/test_mlstm.py)
    on the same ``dtype``-rounded inputs; PyTorch's own chunkwise form in ``dtype`` gives the conditioning baseline."""
    rounded = [t.detach().to(dtype).to(F64) for t in inputs]
    ref_leaves, ref_state = cast_leaves(rounded, state, F64)
    if ref_state is not None:
        ref_state = tuple(t.detach().double().requires_grad_() for t in ref_state)
    ref = outputs_and_grads(_torch_chunkwise, ref_leaves, ref_state)
    del ref_leaves
    leaves, state32 = cast_leaves(rounded, state, dtype)
    baseline = rel_errors(outputs_and_grads(_torch_chunkwise, leaves, state32), ref)
    leaves, state32 = cast_leaves(rounded, state, dtype)
    out = outputs_and_grads(triton_form(chunk), leaves, state32)
    assert out["h"].dtype == dtype
    assert_close_to_reference(out, ref, dtype, baseline=baseline)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("head_dim", GPU_HEAD_DIMS, ids=lambda d: f"DH{d}")
@pytest.mark.parametrize("seq", GPU_SEQS, ids=lambda s: f"S{s}")
def test_gpu_real_shapes_match_float64(seq, head_dim, dtype):
    inputs, _ = make_inputs(2, 4, seq, head_dim, head_dim, seed=seq + head_dim)
    with torch.no_grad():  # ViL-like gates: forget-gate biases 3..6, small input gates
        inputs[3].mul_(0.5)
    _gpu_check(inputs, None, dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_gpu_initial_state_and_unequal_head_dims(dtype):
    inputs, state = make_inputs(2, 4, 1000, 96, 192, seed=3, with_state=True)
    _gpu_check(inputs, state, dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("chunk", [16, 32, 128])
def test_gpu_chunk_sizes_agree(chunk):
    inputs, _ = make_inputs(2, 4, 777, 48, 48, seed=chunk)
    _gpu_check(inputs, None, torch.float32, chunk=chunk)


@pytest.mark.gpu
@needs_gpu
def test_gpu_auto_backend_runs_triton_on_cuda(monkeypatch):
    calls = []
    original = triton_impl.mlstm_triton

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(triton_impl, "mlstm_triton", spy)
    inputs, _ = make_inputs(1, 4, 300, 32, 32, seed=0, device="cuda")
    mlstm(*(t.detach().float() for t in inputs))
    assert calls == [1]


@pytest.mark.gpu
@needs_gpu
def test_gpu_bf16_262144_tokens_strongly_negative_forget_gates_stay_finite():
    # BraTS stage 0: 64³ tokens, DH = 24. Forget-gate pre-activations in [-40, -20] underflow every decay to 0.
    batch, heads, seq, dh = 2, 4, 262_144, 24
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.bfloat16)

    q, k, v = rnd(batch, heads, seq, dh), rnd(batch, heads, seq, dh), rnd(batch, heads, seq, dh)
    igate = rnd(batch, heads, seq) * 3
    fgate = (torch.rand(batch, heads, seq, generator=gen, device="cuda") * -20 - 20).to(torch.bfloat16)
    leaves = [t.requires_grad_() for t in (q, k, v, igate, fgate)]
    h, (c, n, m) = mlstm_triton(*leaves, chunk_size=64, return_last_state=True)
    (h.float().square().sum() + c.sum() + n.sum() + m.sum()).backward()
    for name, tensor in {"h": h, "C": c, "n": n, "m": m}.items():
        assert torch.isfinite(tensor).all(), name
    for name, leaf in zip(("q", "k", "v", "igate", "fgate"), leaves):
        assert torch.isfinite(leaf.grad).all(), f"d{name}"
    # With every decay 0, each output is its own token's: h_t = v_t (q̂_t·k_t) / (max(|q̂_t·k_t|, e^-i_t) + eps).
    t = slice(1000, 1100)
    qk = (q[:, :, t].double() * k[:, :, t].double()).sum(-1) * dh**-0.5
    norm = torch.maximum(qk.abs(), torch.exp(-igate[:, :, t].double()))
    expected = v[:, :, t].double() * (qk / (norm + 1e-6))[..., None]
    err = ((h[:, :, t].double() - expected).norm() / expected.norm()).item()
    assert err < 1.5e-2, err
