# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The one public mLSTM function and its backend switch."""

from __future__ import annotations

import torch

from .._dispatch import exporting, plain_tensors, resolve_backend, triton_available
from .._guard import compare, pinned_autotune, triton_allowed
from .torch_impl import MLSTMState, mlstm_chunkwise, mlstm_parallel, mlstm_recurrent

__all__ = ["mlstm", "BACKENDS", "PARALLEL_MAX_SEQ_LEN", "TRITON_CHECK_TOLERANCES"]

# Up to this length the quadratic form is faster on CPU than the chunkwise one and its S×S matrices stay small
# (benchmarks/bench_mlstm_cpu.py); beyond it, "auto" goes chunkwise.
PARALLEL_MAX_SEQ_LEN = 256


def _triton(q, k, v, igate, fgate, *, chunk_size, initial_state, return_last_state, eps):
    from .triton_impl import mlstm_triton  # lazy: importing triton costs seconds and may be absent

    return mlstm_triton(
        q, k, v, igate, fgate,
        chunk_size=chunk_size, initial_state=initial_state, return_last_state=return_last_state, eps=eps,
    )


def _parallel(q, k, v, igate, fgate, *, chunk_size, initial_state, return_last_state, eps):
    return mlstm_parallel(q, k, v, igate, fgate, initial_state=initial_state, return_last_state=return_last_state, eps=eps)


def _recurrent(q, k, v, igate, fgate, *, chunk_size, initial_state, return_last_state, eps):
    return mlstm_recurrent(
        q, k, v, igate, fgate, initial_state=initial_state, return_last_state=return_last_state, eps=eps
    )


BACKENDS = {
    "parallel": _parallel,
    "chunkwise": mlstm_chunkwise,
    "recurrent": _recurrent,
    "triton": _triton,
}


# Relative-error limits (forward: h and final state; gradients) of the Triton self-check, as in
# tests/kernels/test_mlstm_triton.py; "tf32" is float32 under torch.set_float32_matmul_precision("high"/"medium").
TRITON_CHECK_TOLERANCES = {
    torch.float32: (2e-5, 5e-4),
    "tf32": (2e-3, 1e-2),
    torch.bfloat16: (1.5e-2, 3e-2),
    torch.float16: (3e-3, 1e-2),
}
_HALF_AND_SINGLE = (torch.float32, torch.bfloat16, torch.float16)


def _triton_candidate(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether ``auto`` considers Triton at all: CUDA tensors, triton installed, one half/single dtype."""
    return q.is_cuda and triton_available(q) and q.dtype == k.dtype == v.dtype and q.dtype in _HALF_AND_SINGLE


def _check_outputs(fn, inputs, state, final_state: bool) -> dict[str, torch.Tensor]:
    h, (c, n, m) = fn(*inputs, initial_state=state, return_last_state=True)
    loss = (h * torch.cos(h)).sum()
    if final_state:
        loss = loss + (c * torch.cos(c)).sum() + n.sum() + m.sum()
    leaves = list(inputs) + (list(state) if state is not None else [])
    grads = torch.autograd.grad(loss, leaves)
    names = ["dq", "dk", "dv", "digate", "dfgate", "dC0", "dn0", "dm0"]
    out = {"h": h, **dict(zip(names, grads))}
    if final_state:
        out.update(C=c, n=n, m=m)
    return out


def _triton_self_check(device, dtype, dqk: int, dv: int, chunk: int, has_init: bool, final_state: bool) -> None:
    """Triton vs the float64 chunkwise form, forward and backward, on 2·chunk + 5 tokens of this configuration."""
    from . import triton_impl  # lazy, as _triton

    seq = 2 * chunk + 5  # three chunks, the last one partial
    gen = torch.Generator().manual_seed(1234)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift

    # Well-conditioned ViL-like draws: forget-gate biases ~3, small input gates.
    raw = [rnd(1, 2, seq, dqk), rnd(1, 2, seq, dqk), rnd(1, 2, seq, dv), rnd(1, 2, seq, scale=0.5),
           rnd(1, 2, seq, shift=3.0)]
    raw = [t.to(dtype).double() for t in raw]  # the kernels' input rounding, applied to the reference too
    raw_state = [rnd(1, 2, dqk, dv), rnd(1, 2, dqk), rnd(1, 2, 1)] if has_init else None

    def leaves(dt, dev, state_dt):
        xs = [t.to(device=dev, dtype=dt).requires_grad_() for t in raw]
        st = [t.to(device=dev, dtype=state_dt).requires_grad_() for t in raw_state] if has_init else None
        return xs, st

    ref = _check_outputs(lambda *a, **kw: mlstm_chunkwise(*a, chunk_size=chunk, **kw),
                         *leaves(torch.float64, "cpu", torch.float64), final_state)

    def first_fitting(configs):
        return triton_impl._prune(configs, {}, DHQK=dqk, DHV=dv)[0]

    with pinned_autotune(triton_impl.AUTOTUNED_KERNELS, first_fitting):
        out = _check_outputs(lambda *a, **kw: triton_impl.mlstm_triton(*a, chunk_size=chunk, **kw),
                             *leaves(dtype, device, torch.float32), final_state)
    fp32_tf32 = dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    fwd, grad = TRITON_CHECK_TOLERANCES["tf32" if fp32_tf32 else dtype]
    compare({name: t.detach().cpu() for name, t in out.items()}, ref,
            {name: fwd if name in ("h", "C", "n", "m") else grad for name in ref})


def _guarded_triton(q, v, chunk_size: int, initial_state, return_last_state: bool) -> bool:
    """Whether ``auto`` may run Triton here: the self-check's verdict for this configuration (cached)."""
    from .triton_impl import kernel_chunk_size

    chunk = kernel_chunk_size(chunk_size, q.shape[2])
    dqk, dv = q.shape[-1], v.shape[-1]
    config = [("device", str(q.device)), ("dtype", str(q.dtype).removeprefix("torch.")), ("DHQK", dqk), ("DHV", dv),
              ("chunk", chunk), ("initial_state", initial_state is not None), ("final_state", return_last_state)]
    if q.dtype == torch.float32:
        config.append(("fp32_matmul_precision", torch.get_float32_matmul_precision()))
    return triton_allowed("mlstm", config, lambda: _triton_self_check(
        q.device, q.dtype, dqk, dv, chunk, initial_state is not None, return_last_state))


def _check_inputs(q, k, v, igate, fgate, chunk_size, initial_state):
    if q.ndim != 4 or k.shape != q.shape:
        raise ValueError(f"mlstm: q and k must both be (B, NH, S, DHQK); got {tuple(q.shape)} and {tuple(k.shape)}.")
    batch, heads, seq, dqk = q.shape
    if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"mlstm: v must be (B, NH, S, DHV) = ({batch}, {heads}, {seq}, DHV); got {tuple(v.shape)}.")
    for name, gate in (("igate", igate), ("fgate", fgate)):
        if gate.shape != q.shape[:3]:
            raise ValueError(f"mlstm: {name} must be (B, NH, S) = {tuple(q.shape[:3])}; got {tuple(gate.shape)}.")
    if seq == 0:
        raise ValueError("mlstm: the sequence is empty (S = 0).")
    if chunk_size < 1:
        raise ValueError(f"mlstm: chunk_size must be >= 1; got {chunk_size}.")
    if initial_state is not None:
        c0, n0, m0 = initial_state
        expected = ((batch, heads, dqk, v.shape[-1]), (batch, heads, dqk), (batch, heads, 1))
        got = (tuple(c0.shape), tuple(n0.shape), tuple(m0.shape))
        if got != expected:
            raise ValueError(f"mlstm: initial_state (C, n, m) must have shapes {expected}; got {got}.")


def mlstm(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    backend: str = "auto",
    chunk_size: int = 64,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, MLSTMState]:
    """Matrix-memory LSTM (mLSTM) with exponential input gate and sigmoid forget gate.

    Semantics of Vision-LSTM's ``parallel_stabilized_simple`` and mlstm_kernels' mLSTMexp: input gate ``exp(igate)``,
    forget gate ``sigmoid(fgate)`` (used as ``logsigmoid``), max-stabiliser ``m``, normaliser
    ``max(|nᵀq̂|, exp(-m))``, query scale ``DHQK**-0.5``. The equations are in ``torch_impl``'s docstring.

    Args:
        q: queries of shape (B, NH, S, DHQK).
        k: keys of shape (B, NH, S, DHQK).
        v: values of shape (B, NH, S, DHV).
        igate: input-gate pre-activations of shape (B, NH, S).
        fgate: forget-gate pre-activations of shape (B, NH, S).
        backend: ``"auto"`` (Triton for CUDA tensors when triton is installed and the configuration passed its
            once-per-process self-check, see ``_guard.py``; else ``"parallel"`` up to ``PARALLEL_MAX_SEQ_LEN`` tokens
            and ``"chunkwise"`` beyond; never Triton while the model is traced or exported, see
            ``_dispatch.exporting``), or one of ``"parallel"``, ``"chunkwise"``, ``"recurrent"``, ``"triton"``. An
            explicit backend that cannot run raises; it never falls back.
        chunk_size: tokens per chunk for the chunkwise and Triton forms. Default: 64.
        initial_state: optional ``(C, n, m)`` of shapes (B, NH, DHQK, DHV), (B, NH, DHQK), (B, NH, 1).
        return_last_state: also return the final ``(C, n, m)``.
        eps: added to the normaliser. Default: 1e-6.

    Returns:
        h of shape (B, NH, S, DHV) in ``v``'s dtype, and the final state if requested.
    """
    q, k, v, igate, fgate = plain_tensors(q, k, v, igate, fgate)
    if initial_state is not None:
        initial_state = plain_tensors(*initial_state)
    _check_inputs(q, k, v, igate, fgate, chunk_size, initial_state)
    seq = q.shape[2]

    def auto() -> str:
        if not exporting() and _triton_candidate(q, k, v) and _guarded_triton(
                q, v, chunk_size, initial_state, return_last_state):
            return "triton"
        return "parallel" if seq <= PARALLEL_MAX_SEQ_LEN else "chunkwise"

    name = resolve_backend("mlstm", backend, tuple(BACKENDS), q, auto)
    return BACKENDS[name](
        q, k, v, igate, fgate,
        chunk_size=chunk_size, initial_state=initial_state, return_last_state=return_last_state, eps=eps,
    )
