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


# Chunks per group in the state scan across chunks (:func:`_chunk_start_states`): each level of the hierarchy turns
# G chunks into one group, so NC chunks need ceil(log_G NC) levels of a few batched ops each. 16 keeps the G×G weight
# matrices and the extra matmul work (NC·G·DHQK·DHV per level) small next to the chunk-local work.
STATE_SCAN_GROUP = 16


def _finite_or_zero(m: torch.Tensor) -> torch.Tensor:
    """The stabiliser where it is finite, 0 where it is -inf (no contribution yet), so that exp(-inf - m) stays 0."""
    return m.masked_fill(m == float("-inf"), 0.0)


def _prefix_argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the maximum of x[..., :t+1] for every t (ties: the later index), by log2(L) doubling steps.

    Written with pad/compare/where (no cummax, which ONNX lacks); the loop runs ceil(log2 L) times, fixed by the shape.
    """
    with torch.no_grad():
        length = x.shape[-1]
        best = x
        index = torch.arange(length, device=x.device).expand(x.shape)
        shift = 1
        while shift < length:
            prev_best = F.pad(best[..., :-shift], (shift, 0), value=float("-inf"))
            prev_index = F.pad(index[..., :-shift], (shift, 0))
            take = prev_best > best
            best = torch.where(take, prev_best, best)
            index = torch.where(take, prev_index, index)
            shift *= 2
    return index


def _states_direct(g, amax, local, x0, m0, rows: int):
    """States at the first ``rows`` chunk starts (``rows`` = NC, or NC + 1 to include the final state), directly.

    Unrolled, the recurrence across chunks is m_c = max(G_c + m0, max_{j<c} (G_c - G_{j+1} + amax_j)) and
    X_c = Σ_{j<c} exp(G_c - G_{j+1} + amax_j - m_c) local_j + exp(G_c + m0 - m_c) x0, with G_c = Σ_{j<c} g_j: one
    (rows × NC) weight matrix and one matmul. Shapes: g, amax (..., NC); local (..., NC, E); x0 (..., E); m0 (...).
    """
    n = g.shape[-1]
    after = torch.cumsum(g, dim=-1)  # G_{j+1}: log forget from the start up to the end of chunk j
    before = F.pad(after, (1, 0))[..., :rows]  # G_c: up to the start of chunk c
    log_w = before[..., :, None] - after[..., None, :] + amax[..., None, :]
    earlier = torch.ones(rows, n, dtype=torch.bool, device=g.device).tril(-1)  # chunk j < row c
    log_w = log_w.masked_fill(~earlier, float("-inf"))
    log_init = before + m0[..., None]
    m = torch.maximum(log_w.amax(dim=-1), log_init)
    shift = _finite_or_zero(m)
    x = torch.exp(log_w - shift[..., None]) @ local + torch.exp(log_init - shift)[..., None] * x0[..., None, :]
    return x, m


def _chunk_start_states(g, amax, local, x0, m0):
    """The recurrence across chunks without a loop over chunks: states at every chunk start and the final state.

    Per chunk c: g_c, its total log forget gate; local_c, its own contribution to its end state, scaled by
    exp(-amax_c). The recurrence m_{c+1} = max(g_c + m_c, amax_c), X_{c+1} = exp(g_c + m_c - m_{c+1}) X_c +
    exp(amax_c - m_{c+1}) local_c has the same form as the token recurrence, so it is solved the same way: groups of
    ``STATE_SCAN_GROUP`` chunks get their own contribution (a weighted sum), the group starts come from the same
    function one level up (recursion depth ceil(log_G NC), fixed by the shape), and each group is filled in from its
    start with :func:`_states_direct`. The stabiliser is exactly the recurrent one at every level.

    Shapes: g, amax (..., NC); local (..., NC, E); x0 (..., E); m0 (...). Returns X (..., NC + 1, E), m (..., NC + 1).
    """
    n = g.shape[-1]
    group = STATE_SCAN_GROUP
    if n <= group:
        return _states_direct(g, amax, local, x0, m0, n + 1)
    groups = -(-n // group)
    pad = groups * group - n
    if pad:  # empty chunks: no forgetting, no contribution
        g = F.pad(g, (0, pad))
        amax = F.pad(amax, (0, pad), value=float("-inf"))
        local = F.pad(local, (0, 0, 0, pad))
    lead = g.shape[:-1]
    g = g.reshape(*lead, groups, group)
    amax = amax.reshape(*lead, groups, group)
    local = local.reshape(*lead, groups, group, local.shape[-1])
    inner = torch.cumsum(g, dim=-1)
    g_total = inner[..., -1]
    to_end = g_total[..., None] - inner + amax  # log weight of chunk j's contribution in its group's end state
    to_end_max = to_end.amax(dim=-1)
    weights = torch.exp(to_end - _finite_or_zero(to_end_max)[..., None])
    group_local = (weights[..., None, :] @ local)[..., 0, :]
    x_groups, m_groups = _chunk_start_states(g_total, to_end_max, group_local, x0, m0)
    x, m = _states_direct(g, amax, local, x_groups[..., :-1, :], m_groups[..., :-1], group)
    x = torch.cat([x.flatten(-3, -2)[..., :n, :], x_groups[..., -1:, :]], dim=-2)
    m = torch.cat([m.flatten(-2)[..., :n], m_groups[..., -1:]], dim=-1)
    return x, m


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
    """Chunkwise mLSTM: O(S·chunk_size) memory, any S (the last chunk is padded inside), no loop over chunks.

    Three batched stages: each chunk's own contribution to its end state; the states at every chunk start from
    :func:`_chunk_start_states` (O(log S) ops); the outputs from those states plus the masked L×L decay matrix inside
    each chunk. The state is carried as C' = [C | n] (DHQK × (DHV + 1)) with v extended by a column of ones, so the
    numerator and the normaliser come out of the same matmuls. Python control flow depends only on shapes, so the
    function traces (TorchScript, ONNX) to a fixed graph.
    """
    out_dtype = v.dtype
    q, k, v, igate, log_f, (c0, n0, m0) = _prepare(q, k, v, igate, fgate, initial_state)
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
    v1 = F.pad(v, (0, 1), value=1.0)  # [v, 1]: the last column carries the normaliser state n
    qc, kc = (t.reshape(batch, heads, n_chunks, chunk, dqk) for t in (q, k))
    vc = v1.reshape(batch, heads, n_chunks, chunk, dv + 1)
    ic = igate.reshape(batch, heads, n_chunks, chunk)
    within = torch.cumsum(log_f.reshape(batch, heads, n_chunks, chunk), dim=-1)  # b_t inside each chunk
    total = within[..., -1]  # g_c: log-forget across the whole chunk

    # Each chunk's own contribution to its end state, scaled by exp(-max log weight).
    to_end = total[..., None] - within + ic
    to_end_max = to_end.amax(dim=-1)
    w = torch.exp(to_end - to_end_max[..., None])
    local = (kc * w[..., None]).transpose(-1, -2) @ vc  # (B, NH, NC, DHQK, DHV + 1)
    x0 = torch.cat([c0, n0[..., None]], dim=-1).flatten(-2)
    starts, m_starts = _chunk_start_states(total, to_end_max, local.flatten(-2), x0, m0[..., 0])
    state_start = starts[:, :, :n_chunks].reshape(batch, heads, n_chunks, dqk, dv + 1)

    # Outputs: inter-chunk part from the start state, intra-chunk part from the masked L×L decay matrix. The
    # stabiliser m_t = b_t + max(m_c, max_{s<=t} (i_s - b_s)) is the row maximum of the log-decay matrix; it comes
    # from a prefix arg-max over O(L) values, so no L×L max and no L×L max-backward.
    rise = ic - within  # i_s - b_s
    m_intra = within + rise.gather(-1, _prefix_argmax(rise))
    m_t = torch.maximum(m_intra, within + m_starts[:, :, :n_chunks, None])
    # The L×L work uses the stabiliser as a constant (it cancels between numerator and normaliser); h depends on m_t
    # only through eps, h = N / (max(|D|, 1) + eps·exp(m_t)) unstabilised, and the factor exp(m_t - m_fixed) (= 1)
    # puts exactly that dependence back.
    m_fixed = m_t.detach()
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    log_decay = ((within - m_fixed)[..., :, None] + rise[..., None, :]).masked_fill(~causal, float("-inf"))
    scores = (qc @ kc.transpose(-1, -2)) * torch.exp(log_decay)
    inter_w = torch.exp(within + m_starts[:, :, :n_chunks, None] - m_fixed)
    num_den = scores @ vc + inter_w[..., None] * (qc @ state_start)
    norm = torch.maximum(num_den[..., dv].abs(), torch.exp(-m_fixed)) + eps * torch.exp(m_t - m_fixed)
    h = num_den[..., :dv] / norm[..., None]
    h = h.reshape(batch, heads, n_chunks * chunk, dv)[:, :, :seq].to(out_dtype)
    if return_last_state:
        last = starts[:, :, n_chunks].reshape(batch, heads, dqk, dv + 1)
        return h, (last[..., :dv], last[..., dv], m_starts[:, :, n_chunks:])
    return h
