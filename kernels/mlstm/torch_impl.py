# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The mLSTM in pure PyTorch: three forms of one function.

All three compute, per batch element and head, with ``q̂ = q / sqrt(DHQK)``, ``log f = logsigmoid(fgate)``::

    m_t = max(log f_t + m_{t-1}, igate_t)                    stabiliser (m_0 = -inf, or the initial state)
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(igate_t - m_t) k_t v_tᵀ
    n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(igate_t - m_t) k_t
    h_t = C_tᵀ q̂_t / (max(|n_tᵀ q̂_t|, exp(-m_t)) + eps)

- :func:`mlstm_recurrent` runs that loop step by step (the reference; O(S) Python steps).
- :func:`mlstm_parallel` materialises the S×S decay matrix (the ViL / xLSTM ``parallel_stabilized_simple`` form).
- :func:`mlstm_chunkwise` is parallel inside chunks of ``chunk_size`` tokens and recurrent across chunks: memory is
  linear in S, so it handles 64³ = 262,144-token stages.

The chunkwise and parallel forms use exactly the recurrent stabiliser ``m_t`` (the row maximum of the log-decay
matrix), so the three agree to rounding, not just up to the normaliser floor.

States follow mlstm_kernels' layout: ``C (B, NH, DHQK, DHV)``, ``n (B, NH, DHQK)``, ``m (B, NH, 1)``; ``k`` is stored
unscaled and ``q`` is scaled, as there. Computation runs in float32 for half-precision inputs (float64 stays float64);
the output has ``v``'s dtype and the states are float32/float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mlstm_parallel", "mlstm_chunkwise", "mlstm_recurrent", "MLSTMState"]

MLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _prepare(q, k, v, igate, fgate, initial_state):
    dtype = _compute_dtype(q, k, v)
    batch, heads, _, dqk = q.shape
    dv = v.shape[-1]
    q, k, v = q.to(dtype) * dqk**-0.5, k.to(dtype), v.to(dtype)
    igate, log_f = igate.to(dtype), F.logsigmoid(fgate.to(dtype))
    if initial_state is None:
        c0 = q.new_zeros(batch, heads, dqk, dv)
        n0 = q.new_zeros(batch, heads, dqk)
        m0 = q.new_full((batch, heads, 1), float("-inf"))
    else:
        c0, n0, m0 = (t.to(dtype) for t in initial_state)
    return q, k, v, igate, log_f, (c0, n0, m0)


def _normalise(num: torch.Tensor, den: torch.Tensor, m: torch.Tensor, eps: float) -> torch.Tensor:
    """h = num / (max(|den|, exp(-m)) + eps); den and m have one dim less than num."""
    norm = torch.maximum(den.abs(), torch.exp(-m))
    return num / (norm + eps).unsqueeze(-1)


def mlstm_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, MLSTMState]:
    """Step-by-step mLSTM: the ground truth the other forms are tested against. Shapes as :func:`mlstm`."""
    out_dtype = v.dtype
    q, k, v, igate, log_f, (c, n, m) = _prepare(q, k, v, igate, fgate, initial_state)
    m = m[..., 0]
    outputs = []
    for t in range(q.shape[2]):
        m_new = torch.maximum(log_f[:, :, t] + m, igate[:, :, t])
        decay = torch.exp(log_f[:, :, t] + m - m_new)
        inp = torch.exp(igate[:, :, t] - m_new)
        k_t, v_t, q_t = k[:, :, t], v[:, :, t], q[:, :, t]
        c = decay[..., None, None] * c + inp[..., None, None] * (k_t[..., :, None] * v_t[..., None, :])
        n = decay[..., None] * n + inp[..., None] * k_t
        m = m_new
        num = torch.einsum("bhd,bhde->bhe", q_t, c)
        den = (n * q_t).sum(-1)
        outputs.append(_normalise(num, den, m, eps))
    h = torch.stack(outputs, dim=2).to(out_dtype)
    if return_last_state:
        return h, (c, n, m[..., None])
    return h


def mlstm_parallel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, MLSTMState]:
    """Quadratic (attention-like) mLSTM; builds B·NH·S² matrices, so only for short sequences."""
    out_dtype = v.dtype
    q, k, v, igate, log_f, (c0, n0, m0) = _prepare(q, k, v, igate, fgate, initial_state)
    seq = q.shape[2]
    cum_f = torch.cumsum(log_f, dim=-1)  # F_t
    log_decay = cum_f[..., :, None] - cum_f[..., None, :] + igate[..., None, :]  # F_t - F_s + i_s
    causal = torch.ones(seq, seq, dtype=torch.bool, device=q.device).tril()
    log_decay = log_decay.masked_fill(~causal, float("-inf"))
    log_init = cum_f + m0  # weight of the initial state at step t (-inf without one)
    m = torch.maximum(log_decay.amax(dim=-1), log_init)
    scores = (q @ k.transpose(-1, -2)) * torch.exp(log_decay - m[..., None])
    init_w = torch.exp(log_init - m)
    num = scores @ v + init_w[..., None] * (q @ c0)
    den = scores.sum(-1) + init_w * (q @ n0[..., None])[..., 0]
    h = _normalise(num, den, m, eps).to(out_dtype)
    if not return_last_state:
        return h
    m_last = m[..., -1:]  # (B, NH, 1)
    w_last = torch.exp(cum_f[..., -1:] - cum_f + igate - m_last)  # weight of each token in the final state
    w_init = torch.exp(cum_f[..., -1:] + m0 - m_last)
    c_last = torch.einsum("bhs,bhsd,bhse->bhde", w_last, k, v) + w_init[..., None] * c0
    n_last = torch.einsum("bhs,bhsd->bhd", w_last, k) + w_init * n0
    return h, (c_last, n_last, m_last)


def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    chunk_size: int = 64,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, MLSTMState]:
    """Chunkwise mLSTM: O(S·chunk_size) memory; any S (the last chunk is padded inside)."""
    out_dtype = v.dtype
    q, k, v, igate, log_f, (c, n, m) = _prepare(q, k, v, igate, fgate, initial_state)
    batch, heads, seq, dqk = q.shape
    dv = v.shape[-1]
    chunk = max(1, min(chunk_size, seq))
    pad = (-seq) % chunk
    if pad:
        # Padded steps keep the state: forget gate 1 (log f = 0), input gate 0 (log i = -inf).
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        log_f = F.pad(log_f, (0, pad), value=0.0)
        igate = F.pad(igate, (0, pad), value=float("-inf"))
    n_chunks = (seq + pad) // chunk
    qc, kc, vc = (t.reshape(batch, heads, n_chunks, chunk, -1) for t in (q, k, v))
    ic = igate.reshape(batch, heads, n_chunks, chunk)
    within = torch.cumsum(log_f.reshape(batch, heads, n_chunks, chunk), dim=-1)  # b_t inside each chunk
    total = within[..., -1]  # g_c: log-forget across the whole chunk

    # Recurrence across chunks on the (C, n, m) state at each chunk start.
    to_end = total[..., None] - within + ic  # log weight of token s in the chunk-end state
    to_end_max = to_end.amax(dim=-1)
    w = torch.exp(to_end - to_end_max[..., None])
    local_c = torch.einsum("bhcs,bhcsd,bhcse->bhcde", w, kc, vc)  # chunk's own contribution, scaled by exp(-max)
    local_n = torch.einsum("bhcs,bhcsd->bhcd", w, kc)
    m = m[..., 0]
    starts_c, starts_n, starts_m = [], [], []
    for idx in range(n_chunks):
        starts_c.append(c)
        starts_n.append(n)
        starts_m.append(m)
        m_new = torch.maximum(total[..., idx] + m, to_end_max[..., idx])
        keep = torch.exp(total[..., idx] + m - m_new)
        add = torch.exp(to_end_max[..., idx] - m_new)
        c = keep[..., None, None] * c + add[..., None, None] * local_c[:, :, idx]
        n = keep[..., None] * n + add[..., None] * local_n[:, :, idx]
        m = m_new
    c_start = torch.stack(starts_c, dim=2)  # (B, NH, NC, DQK, DV)
    n_start = torch.stack(starts_n, dim=2)
    m_start = torch.stack(starts_m, dim=2)  # (B, NH, NC)

    # Outputs: inter-chunk part from the start state, intra-chunk part from the masked decay matrix.
    log_decay = within[..., :, None] - within[..., None, :] + ic[..., None, :]
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    log_decay = log_decay.masked_fill(~causal, float("-inf"))
    log_inter = within + m_start[..., None]  # (B, NH, NC, L)
    m_t = torch.maximum(log_decay.amax(dim=-1), log_inter)
    scores = (qc @ kc.transpose(-1, -2)) * torch.exp(log_decay - m_t[..., None])
    inter_w = torch.exp(log_inter - m_t)
    num = scores @ vc + inter_w[..., None] * (qc @ c_start)
    den = scores.sum(-1) + inter_w * (qc @ n_start[..., None])[..., 0]
    h = _normalise(num, den, m_t, eps).reshape(batch, heads, n_chunks * chunk, dv)[:, :, :seq].to(out_dtype)
    if return_last_state:
        return h, (c, n, m[..., None])
    return h
