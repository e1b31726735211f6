# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The one public mLSTM function and its backend switch."""

from __future__ import annotations

import torch

from .._dispatch import plain_tensors, resolve_backend, triton_available
from .torch_impl import MLSTMState, mlstm_chunkwise, mlstm_parallel, mlstm_recurrent

__all__ = ["mlstm", "BACKENDS", "PARALLEL_MAX_SEQ_LEN"]

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
        backend: ``"auto"`` (Triton on CUDA when installed; else ``"parallel"`` up to
            ``PARALLEL_MAX_SEQ_LEN`` tokens and ``"chunkwise"`` beyond), or one of ``"parallel"``, ``"chunkwise"``,
            ``"recurrent"``, ``"triton"``. An explicit backend that cannot run raises; it never falls back.
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
    if q.is_cuda and triton_available(q) and q.dtype in (torch.float32, torch.bfloat16, torch.float16):
        auto = "triton"
    else:
        auto = "parallel" if seq <= PARALLEL_MAX_SEQ_LEN else "chunkwise"
    name = resolve_backend("mlstm", backend, tuple(BACKENDS), q, auto)
    return BACKENDS[name](
        q, k, v, igate, fgate,
        chunk_size=chunk_size, initial_state=initial_state, return_last_state=return_last_state, eps=eps,
    )
