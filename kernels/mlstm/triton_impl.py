# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Chunkwise mLSTM in Triton: forward and backward kernels behind ``mlstm(..., backend="triton")``.

Same function as :mod:`.torch_impl` (read its docstring for the equations): query scale ``DHQK**-0.5``, input gate
``exp(igate)``, forget gate ``sigmoid(fgate)``, the exact recurrent stabiliser ``m_t`` and the normaliser
``max(|n_tᵀq̂_t|, exp(-m_t)) + eps``. Sequences of L = ``CHUNK`` tokens are processed in parallel inside a chunk and
recurrently across chunks. The design and the backward derivation are in ``README.md`` beside this file; in short:

forward (3 launches)
    1. ``_fwd_local_kernel``, grid (chunks, K-tiles·V-tiles, B·NH): each chunk's own state contribution
       ``Σ_s exp(a_s - max a) k_s [v_s, 1]ᵀ`` (fully parallel).
    2. ``_fwd_scan_kernel``, grid (state blocks, B·NH): the only sequential part, an element-wise scan over chunks
       that turns local contributions into the state (C, n, m) at every chunk start; its loads do not depend on the
       carried state, so each step is a few FMAs.
    3. ``_fwd_out_kernel``, grid (chunks, V-tiles, B·NH): outputs from the chunk-start state plus the masked L×L
       intra-chunk decay matrix. It also stores m_t, the normaliser argument and the arg-max source of m_t per token.

backward (5 launches + O(S) glue in PyTorch)
    4. ``_bwd_prep_kernel``: per token ``delta = Σ dh·h``, ``1/(norm+eps)``, the normaliser and stabiliser adjoints.
    5. ``_bwd_local_kernel`` + 6. ``_bwd_scan_kernel``: the state adjoints dC', in reverse, the same two-phase way;
       the scan also forms Γ_c = <dC'_c, C'_c>, the exact gradient of the log forget gate at each chunk boundary.
    7. ``_bwd_dqdk_kernel`` and 8. ``_bwd_dv_kernel``: dq, dk (plus q·dq and k·dk per token) and dv per chunk.
    Gate gradients then follow in closed form: ``d igate_s = k_s·dk_s``, ``d log f`` = within-chunk reverse cumsum of
    ``q·dq - k·dk`` plus Γ of the next chunk boundary, plus the stabiliser's own (eps-sized) gradient routed to the
    arg-max of m_t. Nothing of size S×S exists and the L×L matrices are recomputed in every kernel that needs them.

Precision: all gate maths, stabilisers, states and accumulators are float32. Products of two raw inputs (q·kᵀ, dh·vᵀ)
use the input dtype on the tensor cores (exact products, fp32 accumulation). Products with a float32 intermediate
(decay-weighted scores, states, adjoints) use bf16 operands for bf16 inputs (as FlashAttention does with P·V) and
float32 operands otherwise, where Triton's ``input_precision`` follows ``torch.get_float32_matmul_precision()``:
"highest" (PyTorch's default) gives float32-accurate tf32x3 dots, "high"/"medium" give tf32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._dispatch import triton_interpret

__all__ = ["mlstm_triton", "kernel_chunk_size"]

# Decided once, like @triton.jit itself: kernels decorated under TRITON_INTERPRET=1 run in the CPU interpreter.
INTERPRETED = triton_interpret()

# Tests set this: every buffer the kernels should fill starts as NaN (floats) or INT32_MIN (ints), so an element a
# kernel forgets to write shows up as NaN or an out-of-range index instead of as plausible leftover memory.
POISON_OUTPUTS = False

# bf16 inputs: products with a float32 intermediate (decay-weighted scores, states, adjoints) take bf16 operands
# (fast; CPU emulation of the rounding gives ~2e-3 relative error on h and ~1e-2 on the gradients at S = 512..4096).
# False computes them with tf32 operands instead (emulated: ~2e-3 on the gradients, near the bf16 output rounding).
BF16_INTERMEDIATE_DOTS = True

# Chunk bounds: tl.dot needs every dimension >= 16; beyond 128 the L×L fp32 tiles spill registers.
MIN_CHUNK, MAX_CHUNK = 16, 128
# Width of the head-dim tiles that are not autotuned (the dq/dk kernel's K tile, whose count sizes a buffer). The
# interpreter uses 32 so that the CPU tests exercise multi-tile head dims (e.g. 40 = 32 + 8).
_MAX_BLOCK = 32 if INTERPRETED else 64
_KEY = ["DHQK", "DHV", "CHUNK"]


def _prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Keep tiles no wider than the head dims need (a 64-wide tile for DH = 24 computes masked zeros) and, to keep
    autotuning short, 16-wide tiles only for head dims of at most 16."""
    limits = {
        "BK": max(16, triton.next_power_of_2(kwargs["DHQK"])),
        "BV": max(16, triton.next_power_of_2(kwargs["DHV"])),
    }

    def fits(config: triton.Config) -> bool:
        return all(name not in config.kwargs or min(32, limit) <= config.kwargs[name] <= limit
                   for name, limit in limits.items())

    kept = [c for c in configs if fits(c)]
    return kept or [min(configs, key=lambda c: (c.kwargs.get("BK", 0), c.kwargs.get("BV", 0)))]


def _tune(tiles: list[dict], warps: tuple[int, ...], stages: tuple[int, ...], interpreted: dict,
          restore: list[str] | None = None):
    """``@triton.autotune`` over tiles × warps × stages, keyed on the head dims and chunk (plus the dtypes).

    Tiles are tuned only where every output is written whatever the tiling. Kernels that update a buffer in place
    name it in ``restore`` so that benchmarking several configs does not apply the update twice. Results are cached
    on disk. Under the interpreter a single config: the interpreter fails with several.
    """
    if INTERPRETED:
        configs = [triton.Config(interpreted, num_warps=4, num_stages=1)]
    else:
        configs = [triton.Config(dict(t), num_warps=w, num_stages=s) for t in tiles for w in warps for s in stages]
    return triton.autotune(configs=configs, key=_KEY, prune_configs_by={"early_config_prune": _prune},
                           restore_value=restore, cache_results=True)


_SQUARE_TILES = [{"BK": b, "BV": b} for b in (16, 32, 64)] + [{"BK": 32, "BV": 64}, {"BK": 64, "BV": 32}]
_OUT_TILES = [{"BK": 16, "BV": 16}, {"BK": 32, "BV": 32}, {"BK": 64, "BV": 64}, {"BK": 32, "BV": 64},
              {"BK": 64, "BV": 128}, {"BK": 32, "BV": 128}]
_INTERP_TILES = {"BK": 32, "BV": 32}
# The scans' loads never depend on the carried state, so deep software pipelining can hide the memory latency
# that otherwise bounds each of the NC sequential steps.
_SCAN_STAGES = (1, 3, 6)


def _device_fn(fn):
    """``@triton.jit`` for device helpers, except under the interpreter, where they stay plain Python functions.

    The interpreter re-patches ``triton.language`` on every call of a jitted helper (milliseconds per call, most of
    the CPU test time); as plain functions they run the same ``tl`` operations inside the kernel's interpreted scope.
    """
    return fn if INTERPRETED else triton.jit(fn)


# ----------------------------------------------------------------------------------------------------------------------
# Shared device helpers
# ----------------------------------------------------------------------------------------------------------------------


@_device_fn
def _logsigmoid(x):
    # log σ(x) = min(x, 0) - log1p(exp(-|x|)); log1p is written out so that it stays exact for tiny arguments
    # (Triton has no portable log1p and log(1 + u) loses u < 6e-8 entirely).
    u = tl.exp(-tl.abs(x))
    w = 1.0 + u
    log1p_u = tl.where(w == 1.0, u, tl.log(w) * (u / tl.where(w == 1.0, 1.0, w - 1.0)))
    return tl.minimum(x, 0.0) - log1p_u


@_device_fn
def _chunk_gates(ig_ptr, fg_ptr, row, t0, S, CHUNK: tl.constexpr):
    """Gates of one chunk: igate (-inf beyond S), cumulative log forget gate b_t inside the chunk, its total g."""
    offs = t0 + tl.arange(0, CHUNK)
    mask = offs < S
    i = tl.load(ig_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
    f = tl.load(fg_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
    # Padded steps keep the state: forget gate 1 (log f = 0), input gate 0 (log i = -inf).
    lf = tl.where(mask, _logsigmoid(f), 0.0)
    i = tl.where(mask, i, float("-inf"))
    b = tl.cumsum(lf, axis=0)
    # g is b's last entry (not a separate sum) so that a_s = g - b_s + i_s is exactly i_s for the last token.
    g = tl.sum(tl.where(tl.arange(0, CHUNK) == CHUNK - 1, b, 0.0), axis=0)
    return i, b, g, mask


@_device_fn
def _log_decay(i, b, CHUNK: tl.constexpr):
    """Masked L×L log-decay matrix b_t - b_s + i_s (s <= t), -inf above the diagonal."""
    logd = b[:, None] - b[None, :] + i[None, :]
    causal = tl.arange(0, CHUNK)[None, :] <= tl.arange(0, CHUNK)[:, None]
    return tl.where(causal, logd, float("-inf"))


@_device_fn
def _finite(x):
    # Stabilisers are finite for every row a kernel stores; this guards exp(-inf - -inf) on rows it does not.
    return tl.where(x == float("-inf"), 0.0, x)


@_device_fn
def _dot(a, b, DT: tl.constexpr, PREC: tl.constexpr):
    """Product with a float32 intermediate operand, computed with ``DT`` operands and fp32 accumulation."""
    return tl.dot(a.to(DT), b.to(DT), input_precision=PREC)


# ----------------------------------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------------------------------


@_tune(_SQUARE_TILES, (2, 4), (1,), _INTERP_TILES)
@triton.jit
def _fwd_local_kernel(
    k_ptr, v_ptr, ig_ptr, fg_ptr,  # (BH, S, DHQK), (BH, S, DHV), (BH, S), (BH, S)
    st_ptr,  # out: (BH, NC + 1, DHQK * (DHV + 1)) fp32; chunk c's local [C | n] goes to slot c
    g_ptr, amax_ptr, arg_ptr,  # out: (BH, NC) total log forget, max local log weight, its token
    S, NC,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):
    pid_c, pid_kv, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    NVB = (DHV + BV - 1) // BV
    pid_k, pid_v = pid_kv // NVB, pid_kv % NVB
    bh = pid_bh.to(tl.int64)
    t0 = pid_c * CHUNK
    i, b, g, mask_t = _chunk_gates(ig_ptr, fg_ptr, bh * S, t0, S, CHUNK)
    a = g - b + i  # log weight of token s in the chunk-end state
    amax = tl.max(a, axis=0)
    w = tl.exp(a - amax)

    offs_t = t0 + tl.arange(0, CHUNK)
    offs_k = pid_k * BK + tl.arange(0, BK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < DHQK, offs_v < DHV
    kk = tl.load(k_ptr + bh * S * DHQK + offs_t[:, None] * DHQK + offs_k[None, :], mask=mask_t[:, None] & mk[None, :],
                 other=0.0)
    vv = tl.load(v_ptr + bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :], mask=mask_t[:, None] & mv[None, :],
                 other=0.0)
    kw = kk.to(tl.float32) * w[:, None]
    c_local = _dot(tl.trans(kw), vv, DOT_DT, PREC)  # (BK, BV)

    base = (bh * (NC + 1) + pid_c) * (DHQK * (DHV + 1))
    tl.store(st_ptr + base + offs_k[:, None] * DHV + offs_v[None, :], c_local, mask=mk[:, None] & mv[None, :])
    tl.store(st_ptr + base + DHQK * DHV + offs_k, tl.sum(kw, axis=0), mask=mk & (pid_v == 0))
    first = pid_kv == 0
    tl.store(g_ptr + bh * NC + pid_c, g, mask=first)
    tl.store(amax_ptr + bh * NC + pid_c, amax, mask=first)
    tl.store(arg_ptr + bh * NC + pid_c, t0 + tl.argmax(a, axis=0), mask=first)


@_tune([{}], (1, 2, 4), _SCAN_STAGES, {}, restore=["st_ptr"])
@triton.jit
def _fwd_scan_kernel(
    st_ptr,  # in: local contributions per chunk; out: state [C | n] at each chunk start (slot NC: final state)
    g_ptr, amax_ptr, arg_ptr,  # (BH, NC) from _fwd_local_kernel
    c0_ptr, n0_ptr, m0_ptr,  # initial state (BH, DHQK, DHV), (BH, DHQK), (BH,) fp32; unused without HAS_INIT
    m_ptr, src_ptr,  # out: (BH, NC + 1) stabiliser at each chunk start and its arg-max token (-1: initial state)
    NC,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr, HAS_INIT: tl.constexpr,
):
    pid_e, pid_bh = tl.program_id(0), tl.program_id(1)
    bh = pid_bh.to(tl.int64)
    SZ = DHQK * (DHV + 1)
    offs = pid_e * BLOCK + tl.arange(0, BLOCK)
    mask = offs < SZ
    if HAS_INIT:
        is_c = offs < DHQK * DHV
        x = tl.load(c0_ptr + bh * DHQK * DHV + tl.where(is_c, offs, 0), mask=mask & is_c, other=0.0)
        x += tl.load(n0_ptr + bh * DHQK + tl.where(is_c, 0, offs - DHQK * DHV), mask=mask & ~is_c, other=0.0)
        m = tl.load(m0_ptr + bh)
    else:
        x = tl.zeros([BLOCK], tl.float32)
        m = tl.full([], float("-inf"), tl.float32)
    src = tl.full([], -1, tl.int32)
    first = pid_e == 0
    for c in range(0, NC):
        slot = st_ptr + (bh * (NC + 1) + c) * SZ + offs
        local = tl.load(slot, mask=mask, other=0.0)
        g = tl.load(g_ptr + bh * NC + c)
        amax = tl.load(amax_ptr + bh * NC + c)
        arg = tl.load(arg_ptr + bh * NC + c)
        tl.store(slot, x, mask=mask)
        tl.store(m_ptr + bh * (NC + 1) + c, m, mask=first)
        tl.store(src_ptr + bh * (NC + 1) + c, src, mask=first)
        m_new = tl.maximum(g + m, amax)
        # exp(-inf) = 0 drops the (zero) state in the first chunk when there is no initial state.
        x = tl.exp(g + m - m_new) * x + tl.exp(amax - m_new) * local
        src = tl.where(amax >= g + m, arg, src)
        m = m_new
    tl.store(st_ptr + (bh * (NC + 1) + NC) * SZ + offs, x, mask=mask)
    tl.store(m_ptr + bh * (NC + 1) + NC, m, mask=first)
    tl.store(src_ptr + bh * (NC + 1) + NC, src, mask=first)


@_tune(_OUT_TILES, (4, 8), (2,), _INTERP_TILES)
@triton.jit
def _fwd_out_kernel(
    q_ptr, k_ptr, v_ptr, ig_ptr, fg_ptr,
    st_ptr, ms_ptr, srcs_ptr,  # chunk-start states, their m and arg-max source
    h_ptr,  # out: (BH, S, DHV)
    mt_ptr, den_ptr, srct_ptr,  # out: (BH, S_pad) per-token m_t, nᵀq̂ (before |·|), arg-max source of m_t
    S, S_pad, NC, scale, eps,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):
    pid_c, pid_v, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bh = pid_bh.to(tl.int64)
    t0 = pid_c * CHUNK
    offs_t = t0 + tl.arange(0, CHUNK)
    mask_t = offs_t < S
    offs_v = pid_v * BV + tl.arange(0, BV)
    mv = offs_v < DHV
    sz = DHQK * (DHV + 1)
    st_base = st_ptr + (bh * (NC + 1) + pid_c) * sz
    qk = tl.zeros([CHUNK, CHUNK], tl.float32)
    qc = tl.zeros([CHUNK, BV], tl.float32)
    qn = tl.zeros([CHUNK], tl.float32)
    for kb in range(0, tl.cdiv(DHQK, BK)):
        offs_k = kb * BK + tl.arange(0, BK)
        mk = offs_k < DHQK
        tile = offs_t[:, None] * DHQK + offs_k[None, :]
        tmask = mask_t[:, None] & mk[None, :]
        qq = tl.load(q_ptr + bh * S * DHQK + tile, mask=tmask, other=0.0)
        kk = tl.load(k_ptr + bh * S * DHQK + tile, mask=tmask, other=0.0)
        cc = tl.load(st_base + offs_k[:, None] * DHV + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        nn = tl.load(st_base + DHQK * DHV + offs_k, mask=mk, other=0.0)
        qk += tl.dot(qq, tl.trans(kk), input_precision=PREC)
        qc += _dot(qq, cc, DOT_DT, PREC)
        qn += tl.sum(qq.to(tl.float32) * nn[None, :], axis=1)

    # Gates after the loop: the L×L decay matrix is not kept live across it (register pressure).
    i, b, g, mask_t = _chunk_gates(ig_ptr, fg_ptr, bh * S, t0, S, CHUNK)
    logd = _log_decay(i, b, CHUNK)
    m_intra = tl.max(logd, axis=1)
    m_c = tl.load(ms_ptr + bh * (NC + 1) + pid_c)
    m_inter = b + m_c  # log weight of the chunk-start state at step t
    m_t = tl.maximum(m_intra, m_inter)  # exactly the recurrent stabiliser
    m_safe = _finite(m_t)
    w_inter = tl.exp(m_inter - m_safe)
    scores = qk * scale * tl.exp(logd - m_safe[:, None])
    vv = tl.load(v_ptr + bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :], mask=mask_t[:, None] & mv[None, :],
                 other=0.0)
    num = _dot(scores, vv, DOT_DT, PREC) + (w_inter * scale)[:, None] * qc
    den = tl.sum(scores, axis=1) + w_inter * scale * qn
    norm = tl.maximum(tl.abs(den), tl.exp(-m_t))
    h = num / (norm + eps)[:, None]
    tl.store(h_ptr + bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :], h.to(h_ptr.dtype.element_ty),
             mask=mask_t[:, None] & mv[None, :])

    # Per-token values for the backward pass; every row of the padded chunk is written, so buffers hold no garbage.
    first = pid_v == 0
    row = bh * S_pad + offs_t
    src_c = tl.load(srcs_ptr + bh * (NC + 1) + pid_c)
    src = tl.where(m_intra >= m_inter, t0 + tl.argmax(logd, axis=1), src_c)
    all_rows = tl.arange(0, CHUNK) < CHUNK
    tl.store(mt_ptr + row, m_t, mask=all_rows & first)
    tl.store(den_ptr + row, den, mask=all_rows & first)
    tl.store(srct_ptr + row, src, mask=all_rows & first)


# ----------------------------------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------------------------------


@_tune([{"BV": 16}, {"BV": 32}, {"BV": 64}], (4, 8), (1,), {"BV": 32})
@triton.jit
def _bwd_prep_kernel(
    h_ptr, dh_ptr, mt_ptr, den_ptr,
    r_ptr, dden_ptr, dm_ptr,  # out: (BH, S_pad) 1/(norm+eps), d(nᵀq̂) and d m_t (0 on padded rows)
    S, S_pad, eps,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BV: tl.constexpr,
):
    pid_c, pid_bh = tl.program_id(0), tl.program_id(1)
    bh = pid_bh.to(tl.int64)
    offs_t = pid_c * CHUNK + tl.arange(0, CHUNK)
    mask_t = offs_t < S
    delta = tl.zeros([CHUNK], tl.float32)
    for vb in range(0, tl.cdiv(DHV, BV)):
        offs_v = vb * BV + tl.arange(0, BV)
        tile = bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :]
        tmask = mask_t[:, None] & (offs_v < DHV)[None, :]
        hh = tl.load(h_ptr + tile, mask=tmask, other=0.0).to(tl.float32)
        dd = tl.load(dh_ptr + tile, mask=tmask, other=0.0).to(tl.float32)
        delta += tl.sum(hh * dd, axis=1)
    m_t = tl.load(mt_ptr + bh * S_pad + offs_t)
    den = tl.load(den_ptr + bh * S_pad + offs_t)
    floor = tl.exp(-m_t)
    r = tl.where(mask_t, 1.0 / (tl.maximum(tl.abs(den), floor) + eps), 0.0)
    # h = num / (max(|den|, exp(-m)) + eps): d norm = -delta r; only the |den| branch reaches den. In unscaled
    # terms h = N / (max(|D|, 1) + eps exp(m)), so m itself moves h by -eps r h per unit.
    dden = tl.where(tl.abs(den) > floor, -delta * r * tl.where(den >= 0, 1.0, -1.0), 0.0)
    tl.store(r_ptr + bh * S_pad + offs_t, r)
    tl.store(dden_ptr + bh * S_pad + offs_t, dden)
    tl.store(dm_ptr + bh * S_pad + offs_t, -eps * delta * r)


@_tune(_SQUARE_TILES, (2, 4), (1,), _INTERP_TILES)
@triton.jit
def _bwd_local_kernel(
    q_ptr, dh_ptr, ig_ptr, fg_ptr, mt_ptr, ms_ptr, r_ptr, dden_ptr,
    dst_ptr,  # out: slot c gets chunk c's own contribution to the adjoint of its start state [dC | dn]
    S, S_pad, NC, scale,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):
    pid_c, pid_kv, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    NVB = (DHV + BV - 1) // BV
    pid_k, pid_v = pid_kv // NVB, pid_kv % NVB
    bh = pid_bh.to(tl.int64)
    t0 = pid_c * CHUNK
    i, b, g, mask_t = _chunk_gates(ig_ptr, fg_ptr, bh * S, t0, S, CHUNK)
    offs_t = t0 + tl.arange(0, CHUNK)
    m_t = _finite(tl.load(mt_ptr + bh * S_pad + offs_t))
    m_c = tl.load(ms_ptr + bh * (NC + 1) + pid_c)
    w = tl.where(mask_t, tl.exp(b + m_c - m_t), 0.0) * scale
    r = tl.load(r_ptr + bh * S_pad + offs_t)
    dden = tl.load(dden_ptr + bh * S_pad + offs_t)

    offs_k = pid_k * BK + tl.arange(0, BK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < DHQK, offs_v < DHV
    qq = tl.load(q_ptr + bh * S * DHQK + offs_t[:, None] * DHQK + offs_k[None, :], mask=mask_t[:, None] & mk[None, :],
                 other=0.0).to(tl.float32)
    dd = tl.load(dh_ptr + bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :], mask=mask_t[:, None] & mv[None, :],
                 other=0.0)
    dc_local = _dot(tl.trans(qq * (w * r)[:, None]), dd, DOT_DT, PREC)  # (BK, BV)
    base = (bh * (NC + 1) + pid_c) * (DHQK * (DHV + 1))
    tl.store(dst_ptr + base + offs_k[:, None] * DHV + offs_v[None, :], dc_local, mask=mk[:, None] & mv[None, :])
    tl.store(dst_ptr + base + DHQK * DHV + offs_k, tl.sum(qq * (w * dden)[:, None], axis=0), mask=mk & (pid_v == 0))


@_tune([{}], (1, 2, 4), _SCAN_STAGES, {}, restore=["dst_ptr"])
@triton.jit
def _bwd_scan_kernel(
    dst_ptr,  # in: local adjoints per chunk; out: adjoint of the state at every chunk start (slot NC: final state)
    st_ptr, g_ptr, ms_ptr,  # forward states, (BH, NC) total log forget, (BH, NC + 1) chunk-start stabilisers
    dcl_ptr, dnl_ptr,  # adjoint of the returned final state (BH, DHQK, DHV), (BH, DHQK); unused without HAS_DLAST
    gam_ptr,  # out: (BH, NC + 1, NPROG) partial sums of <dC'_c, C'_c>
    NC, NPROG,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr, HAS_DLAST: tl.constexpr,
):
    pid_e, pid_bh = tl.program_id(0), tl.program_id(1)
    bh = pid_bh.to(tl.int64)
    SZ = DHQK * (DHV + 1)
    offs = pid_e * BLOCK + tl.arange(0, BLOCK)
    mask = offs < SZ
    if HAS_DLAST:
        is_c = offs < DHQK * DHV
        x = tl.load(dcl_ptr + bh * DHQK * DHV + tl.where(is_c, offs, 0), mask=mask & is_c, other=0.0)
        x += tl.load(dnl_ptr + bh * DHQK + tl.where(is_c, 0, offs - DHQK * DHV), mask=mask & ~is_c, other=0.0)
    else:
        x = tl.zeros([BLOCK], tl.float32)
    last = (bh * (NC + 1) + NC) * SZ + offs
    tl.store(dst_ptr + last, x, mask=mask)
    state = tl.load(st_ptr + last, mask=mask, other=0.0)
    tl.store(gam_ptr + (bh * (NC + 1) + NC) * NPROG + pid_e, tl.sum(x * state, axis=0))
    m_next = tl.load(ms_ptr + bh * (NC + 1) + NC)
    for j in range(0, NC):
        c = NC - 1 - j
        slot = (bh * (NC + 1) + c) * SZ + offs
        local = tl.load(dst_ptr + slot, mask=mask, other=0.0)
        state = tl.load(st_ptr + slot, mask=mask, other=0.0)
        g = tl.load(g_ptr + bh * NC + c)
        m_c = tl.load(ms_ptr + bh * (NC + 1) + c)
        x = tl.exp(g + m_c - m_next) * x + local
        tl.store(dst_ptr + slot, x, mask=mask)
        tl.store(gam_ptr + (bh * (NC + 1) + c) * NPROG + pid_e, tl.sum(x * state, axis=0))
        m_next = m_c


@_tune([{"BV": 16}, {"BV": 32}, {"BV": 64}], (4, 8), (1, 2), {"BV": 32})
@triton.jit
def _bwd_dqdk_kernel(
    q_ptr, k_ptr, v_ptr, dh_ptr, ig_ptr, fg_ptr, st_ptr, dst_ptr, ms_ptr, mt_ptr, r_ptr, dden_ptr,
    dq_ptr, dk_ptr,  # out: (BH, S, DHQK) in the input dtype
    qdq_ptr, kdk_ptr,  # out: (NKB, BH, S_pad) per-K-tile partial sums of q·dq and k·dk (fp32)
    S, S_pad, NC, scale,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):
    pid_c, pid_k, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bh = pid_bh.to(tl.int64)
    t0 = pid_c * CHUNK
    offs_t = t0 + tl.arange(0, CHUNK)
    mask_t = offs_t < S
    offs_k = pid_k * BK + tl.arange(0, BK)
    mk = offs_k < DHQK
    sz = DHQK * (DHV + 1)
    st_base = st_ptr + (bh * (NC + 1) + pid_c) * sz
    dst_base = dst_ptr + (bh * (NC + 1) + pid_c + 1) * sz
    dhv = tl.zeros([CHUNK, CHUNK], tl.float32)
    dq_inter = tl.zeros([CHUNK, BK], tl.float32)
    dk_inter = tl.zeros([CHUNK, BK], tl.float32)
    for vb in range(0, tl.cdiv(DHV, BV)):
        offs_v = vb * BV + tl.arange(0, BV)
        mv = offs_v < DHV
        tile = bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :]
        tmask = mask_t[:, None] & mv[None, :]
        dd = tl.load(dh_ptr + tile, mask=tmask, other=0.0)
        vv = tl.load(v_ptr + tile, mask=tmask, other=0.0)
        smask = mk[:, None] & mv[None, :]
        cc = tl.load(st_base + offs_k[:, None] * DHV + offs_v[None, :], mask=smask, other=0.0)
        dc = tl.load(dst_base + offs_k[:, None] * DHV + offs_v[None, :], mask=smask, other=0.0)
        dhv += tl.dot(dd, tl.trans(vv), input_precision=PREC)
        dq_inter += _dot(dd, tl.trans(cc), DOT_DT, PREC)
        dk_inter += _dot(vv, tl.trans(dc), DOT_DT, PREC)
    n_c = tl.load(st_base + DHQK * DHV + offs_k, mask=mk, other=0.0)
    dn_n = tl.load(dst_base + DHQK * DHV + offs_k, mask=mk, other=0.0)

    # Gates after the loop: the L×L decay matrix is not kept live across it (register pressure).
    i, b, g, mask_t = _chunk_gates(ig_ptr, fg_ptr, bh * S, t0, S, CHUNK)
    m_t = _finite(tl.load(mt_ptr + bh * S_pad + offs_t))
    m_c = tl.load(ms_ptr + bh * (NC + 1) + pid_c)
    m_n = tl.load(ms_ptr + bh * (NC + 1) + pid_c + 1)
    w = tl.where(mask_t, tl.exp(b + m_c - m_t), 0.0)  # weight of the chunk-start state in row t
    wa = tl.exp(g - b + i - m_n)  # weight of token s in the next chunk-start state (0 on padding)
    r = tl.load(r_ptr + bh * S_pad + offs_t)
    dden = tl.load(dden_ptr + bh * S_pad + offs_t)
    decay = tl.exp(_log_decay(i, b, CHUNK) - m_t[:, None])
    dp = (r[:, None] * dhv + dden[:, None]) * decay  # adjoint of the scaled scores q̂_t·k_s

    tile = bh * S * DHQK + offs_t[:, None] * DHQK + offs_k[None, :]
    tmask = mask_t[:, None] & mk[None, :]
    qq = tl.load(q_ptr + tile, mask=tmask, other=0.0)
    kk = tl.load(k_ptr + tile, mask=tmask, other=0.0)
    dq = scale * (_dot(dp, kk, DOT_DT, PREC) + (w * r)[:, None] * dq_inter + (w * dden)[:, None] * n_c[None, :])
    dk = scale * _dot(tl.trans(dp), qq, DOT_DT, PREC) + wa[:, None] * (dk_inter + dn_n[None, :])
    tl.store(dq_ptr + tile, dq.to(dq_ptr.dtype.element_ty), mask=tmask)
    tl.store(dk_ptr + tile, dk.to(dk_ptr.dtype.element_ty), mask=tmask)
    part = (pid_k * tl.num_programs(2) + bh) * S_pad + offs_t
    tl.store(qdq_ptr + part, tl.sum(qq.to(tl.float32) * dq, axis=1))
    tl.store(kdk_ptr + part, tl.sum(kk.to(tl.float32) * dk, axis=1))


@_tune(_SQUARE_TILES, (4, 8), (2,), _INTERP_TILES)
@triton.jit
def _bwd_dv_kernel(
    q_ptr, k_ptr, dh_ptr, ig_ptr, fg_ptr, dst_ptr, ms_ptr, mt_ptr, r_ptr,
    dv_ptr,  # out: (BH, S, DHV) in the input dtype
    S, S_pad, NC, scale,
    DHQK: tl.constexpr, DHV: tl.constexpr, CHUNK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_DT: tl.constexpr, PREC: tl.constexpr,
):
    pid_c, pid_v, pid_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bh = pid_bh.to(tl.int64)
    t0 = pid_c * CHUNK
    offs_t = t0 + tl.arange(0, CHUNK)
    mask_t = offs_t < S
    offs_v = pid_v * BV + tl.arange(0, BV)
    mv = offs_v < DHV
    dst_base = dst_ptr + (bh * (NC + 1) + pid_c + 1) * (DHQK * (DHV + 1))
    qk = tl.zeros([CHUNK, CHUNK], tl.float32)
    dv_inter = tl.zeros([CHUNK, BV], tl.float32)
    for kb in range(0, tl.cdiv(DHQK, BK)):
        offs_k = kb * BK + tl.arange(0, BK)
        mk = offs_k < DHQK
        tile = bh * S * DHQK + offs_t[:, None] * DHQK + offs_k[None, :]
        tmask = mask_t[:, None] & mk[None, :]
        qq = tl.load(q_ptr + tile, mask=tmask, other=0.0)
        kk = tl.load(k_ptr + tile, mask=tmask, other=0.0)
        dc = tl.load(dst_base + offs_k[:, None] * DHV + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        qk += tl.dot(qq, tl.trans(kk), input_precision=PREC)
        dv_inter += _dot(kk, dc, DOT_DT, PREC)
    # Gates after the loop: the L×L decay matrix is not kept live across it (register pressure).
    i, b, g, mask_t = _chunk_gates(ig_ptr, fg_ptr, bh * S, t0, S, CHUNK)
    m_t = _finite(tl.load(mt_ptr + bh * S_pad + offs_t))
    m_n = tl.load(ms_ptr + bh * (NC + 1) + pid_c + 1)
    wa = tl.exp(g - b + i - m_n)
    r = tl.load(r_ptr + bh * S_pad + offs_t)
    scores = qk * scale * tl.exp(_log_decay(i, b, CHUNK) - m_t[:, None]) * r[:, None]  # already / normaliser
    tile = bh * S * DHV + offs_t[:, None] * DHV + offs_v[None, :]
    tmask = mask_t[:, None] & mv[None, :]
    dd = tl.load(dh_ptr + tile, mask=tmask, other=0.0)
    dv = _dot(tl.trans(scores), dd, DOT_DT, PREC) + wa[:, None] * dv_inter
    tl.store(dv_ptr + tile, dv.to(dv_ptr.dtype.element_ty), mask=tmask)


# ----------------------------------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------------------------------


# Every autotuned kernel, for the self-check (``_guard.pinned_autotune``) and the compile report.
AUTOTUNED_KERNELS = (_fwd_local_kernel, _fwd_scan_kernel, _fwd_out_kernel, _bwd_prep_kernel, _bwd_local_kernel,
                     _bwd_scan_kernel, _bwd_dqdk_kernel, _bwd_dv_kernel)


def kernel_chunk_size(chunk_size: int, seq_len: int) -> int:
    """The chunk length the kernels use: a power of two in [16, 128], no longer than needed for ``seq_len``.

    The result does not depend on the chunk length beyond rounding, so the requested ``chunk_size`` is a hint:
    rounded up to a power of two (``tl.arange`` needs one), at least 16 (``tl.dot``'s minimum), at most 128.
    """
    chunk = triton.next_power_of_2(max(1, min(chunk_size, seq_len)))
    return max(MIN_CHUNK, min(MAX_CHUNK, chunk))


def _block(dim: int, cap: int = _MAX_BLOCK) -> int:
    return max(16, min(cap, _MAX_BLOCK, triton.next_power_of_2(dim)))


def _scan_block(size: int) -> int:
    return min(1024, triton.next_power_of_2(size))


def _empty(*shape: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """torch.empty, or a poisoned buffer under ``POISON_OUTPUTS``."""
    if not POISON_OUTPUTS:
        return torch.empty(*shape, device=device, dtype=dtype)
    fill = float("nan") if dtype.is_floating_point else torch.iinfo(dtype).min
    return torch.full(shape, fill, device=device, dtype=dtype)


def _dot_settings(dtype: torch.dtype) -> tuple[tl.dtype, str]:
    """(operand dtype for products with fp32 intermediates, Triton input_precision for fp32 operands)."""
    if dtype == torch.bfloat16 and BF16_INTERMEDIATE_DOTS:
        return tl.bfloat16, "tf32"
    if dtype == torch.bfloat16:
        return tl.float32, "tf32"
    if dtype == torch.float16:
        # fp16's range (65504) is too small for intermediates scaled by 1/(norm+eps): keep them in fp32 (tf32).
        return tl.float32, "tf32"
    # "highest": three tf32 products per dot (tf32x3), float32-accurate on the tensor cores. Triton's "ieee" would
    # fall back to FMA loops that spill kilobytes of registers at these tile sizes (see bench_mlstm --compile-check).
    return tl.float32, ("tf32x3" if torch.get_float32_matmul_precision() == "highest" else "tf32")


class _Geometry:
    """Sizes shared by every launch of one call."""

    def __init__(self, q: torch.Tensor, v: torch.Tensor, chunk_size: int) -> None:
        """q (BH, S, DHQK) and v (BH, S, DHV) as the kernels see them."""
        self.BH, self.S, self.DHQK = q.shape
        self.DHV = v.shape[-1]
        self.CHUNK = kernel_chunk_size(chunk_size, self.S)
        self.NC = triton.cdiv(self.S, self.CHUNK)
        self.S_pad = self.NC * self.CHUNK
        self.SZ = self.DHQK * (self.DHV + 1)
        self.scale = self.DHQK**-0.5
        self.DOT_DT, self.PREC = _dot_settings(q.dtype)
        # The dq/dk kernel's K tile is fixed (its count sizes the q·dq, k·dk partial sums). With float32 operands
        # (tf32x3 splits each into two) a 64-wide tile spills at every warp count (bench_mlstm --compile-check).
        self.BK = _block(self.DHQK, cap=32 if self.DOT_DT == tl.float32 else 64)
        self.NKB = triton.cdiv(self.DHQK, self.BK)
        self.BLOCK = _scan_block(self.SZ)
        self.NPROG = triton.cdiv(self.SZ, self.BLOCK)

    def dims(self) -> dict:
        return dict(DHQK=self.DHQK, DHV=self.DHV, CHUNK=self.CHUNK)

    def tiles_grid(self, kv: str):
        """Launch grid (chunks, head-dim tiles, B·NH) for autotuned tiles: "kv" both, "k" or "v" one of them."""

        def grid(meta: dict) -> tuple[int, int, int]:
            count = {
                "kv": triton.cdiv(self.DHQK, meta.get("BK", 1)) * triton.cdiv(self.DHV, meta.get("BV", 1)),
                "k": triton.cdiv(self.DHQK, meta.get("BK", 1)),
                "v": triton.cdiv(self.DHV, meta.get("BV", 1)),
            }[kv]
            return self.NC, count, self.BH

        return grid


def _forward_states(k, v, igate, fgate, init, geo: _Geometry):
    """States at every chunk start: (st (BH, NC+1, SZ), m (BH, NC+1), src (BH, NC+1) int32, g (BH, NC))."""
    dev = k.device
    st = _empty(geo.BH, geo.NC + 1, geo.SZ, device=dev)
    g, amax = _empty(geo.BH, geo.NC, device=dev), _empty(geo.BH, geo.NC, device=dev)
    arg = _empty(geo.BH, geo.NC, device=dev, dtype=torch.int32)
    m = _empty(geo.BH, geo.NC + 1, device=dev)
    src = _empty(geo.BH, geo.NC + 1, device=dev, dtype=torch.int32)
    _fwd_local_kernel[geo.tiles_grid("kv")](
        k, v, igate, fgate, st, g, amax, arg, geo.S, geo.NC, **geo.dims(), DOT_DT=geo.DOT_DT, PREC=geo.PREC,
    )
    c0, n0, m0 = init if init is not None else (st, st, st)  # placeholders, never read without HAS_INIT
    _fwd_scan_kernel[(geo.NPROG, geo.BH)](
        st, g, amax, arg, c0, n0, m0, m, src, geo.NC,
        **geo.dims(), BLOCK=geo.BLOCK, HAS_INIT=init is not None,
    )
    return st, m, src, g


def _reverse_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.flip(dim).cumsum(dim).flip(dim)


class _MLSTMTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, c0, n0, m0, chunk_size, eps, recompute_states, out_dtype):
        geo = _Geometry(q, v, chunk_size)
        has_init = c0 is not None
        init = (c0, n0, m0) if has_init else None
        st, ms, srcs, g = _forward_states(k, v, igate, fgate, init, geo)
        dev = q.device
        h = _empty(geo.BH, geo.S, geo.DHV, device=dev, dtype=out_dtype)
        m_t, den = _empty(geo.BH, geo.S_pad, device=dev), _empty(geo.BH, geo.S_pad, device=dev)
        src_t = _empty(geo.BH, geo.S_pad, device=dev, dtype=torch.int32)
        _fwd_out_kernel[geo.tiles_grid("v")](
            q, k, v, igate, fgate, st, ms, srcs, h, m_t, den, src_t,
            geo.S, geo.S_pad, geo.NC, geo.scale, eps, **geo.dims(), DOT_DT=geo.DOT_DT, PREC=geo.PREC,
        )
        last = st[:, geo.NC]
        c_last = last[:, : geo.DHQK * geo.DHV].reshape(geo.BH, geo.DHQK, geo.DHV).clone()
        n_last = last[:, geo.DHQK * geo.DHV :].clone()
        m_last = ms[:, geo.NC].clone()
        saved_st = None if recompute_states else st
        ctx.save_for_backward(q, k, v, igate, fgate, h, m_t, den, src_t, saved_st, ms, g, c0, n0, m0)
        ctx.geo, ctx.eps, ctx.has_init = geo, eps, has_init
        return h, c_last, n_last, m_last

    @staticmethod
    def backward(ctx, dh, dc_last, dn_last, dm_last):
        q, k, v, igate, fgate, h, m_t, den, src_t, st, ms, g, c0, n0, m0 = ctx.saved_tensors
        geo: _Geometry = ctx.geo
        eps = ctx.eps
        dev = q.device
        if st is None:
            init = (c0, n0, m0) if ctx.has_init else None
            st, _, _, _ = _forward_states(k, v, igate, fgate, init, geo)
        # dh meets v in the dots, so it takes the compute dtype (h keeps the output dtype).
        dh = torch.zeros(h.shape, device=dev, dtype=q.dtype) if dh is None else dh.to(q.dtype).contiguous()

        r, dden, dm = (_empty(geo.BH, geo.S_pad, device=dev) for _ in range(3))
        _bwd_prep_kernel[(geo.NC, geo.BH)](h, dh, m_t, den, r, dden, dm, geo.S, geo.S_pad, eps, **geo.dims())
        dst = _empty(*st.shape, device=dev)
        _bwd_local_kernel[geo.tiles_grid("kv")](
            q, dh, igate, fgate, m_t, ms, r, dden, dst, geo.S, geo.S_pad, geo.NC, geo.scale,
            **geo.dims(), DOT_DT=geo.DOT_DT, PREC=geo.PREC,
        )
        has_dlast = dc_last is not None or dn_last is not None
        if has_dlast:
            dc_last = torch.zeros(geo.BH, geo.DHQK, geo.DHV, device=dev) if dc_last is None else dc_last
            dn_last = torch.zeros(geo.BH, geo.DHQK, device=dev) if dn_last is None else dn_last
            dc_last, dn_last = dc_last.float().contiguous(), dn_last.float().contiguous()
        else:
            dc_last = dn_last = dst  # placeholders, never read
        gam = _empty(geo.BH, geo.NC + 1, geo.NPROG, device=dev)
        _bwd_scan_kernel[(geo.NPROG, geo.BH)](
            dst, st, g, ms, dc_last, dn_last, gam, geo.NC, geo.NPROG,
            **geo.dims(), BLOCK=geo.BLOCK, HAS_DLAST=has_dlast,
        )
        dq, dk, dv = (_empty(*t.shape, device=dev, dtype=t.dtype) for t in (q, k, v))
        qdq, kdk = (_empty(geo.NKB, geo.BH, geo.S_pad, device=dev) for _ in range(2))
        _bwd_dqdk_kernel[(geo.NC, geo.NKB, geo.BH)](
            q, k, v, dh, igate, fgate, st, dst, ms, m_t, r, dden, dq, dk, qdq, kdk,
            geo.S, geo.S_pad, geo.NC, geo.scale,
            **geo.dims(), BK=geo.BK, DOT_DT=geo.DOT_DT, PREC=geo.PREC,
        )
        _bwd_dv_kernel[geo.tiles_grid("v")](
            q, k, dh, igate, fgate, dst, ms, m_t, r, dv, geo.S, geo.S_pad, geo.NC, geo.scale,
            **geo.dims(), DOT_DT=geo.DOT_DT, PREC=geo.PREC,
        )

        # Gate gradients, O(S) glue (the README derives it). With the stabilisers held fixed, k_s only appears as
        # k_s·exp(i_s - F_s) and q_t as q_t·exp(F_t), so d igate_s = k_s·dk_s and dF_t = q_t·dq_t - k_t·dk_t.
        qdq, kdk = qdq.sum(0), kdk.sum(0)
        gam = gam.sum(-1)  # Γ_c = <dC'_c, C'_c>: d log f of the first step after chunk boundary c, exactly
        d_logf = _reverse_cumsum((qdq - kdk).view(geo.BH, geo.NC, geo.CHUNK), dim=-1) + gam[:, 1:, None]
        d_logf = d_logf.view(geo.BH, geo.S_pad)
        d_igate = kdk.clone()
        # The stabiliser's own gradient: m_t = F_t + max(m0, max_{s<=t}(i_s - F_s)) moves with its arg-max source.
        dm[:, geo.S - 1] += -gam[:, geo.NC] + (dm_last.float() if dm_last is not None else 0.0)
        src = src_t.long()
        from_token = torch.where(src >= 0, dm, 0.0)
        d_f_route = dm.scatter_add(1, src.clamp_min(0), -from_token)
        d_igate.scatter_add_(1, src.clamp_min(0), from_token)
        d_logf += _reverse_cumsum(d_f_route, dim=1)
        d_fgate = d_logf[:, : geo.S] * torch.sigmoid(-fgate.float())
        d_igate = d_igate[:, : geo.S]

        dc0 = dn0 = dm0 = None
        if ctx.has_init:
            first = dst[:, 0]
            dc0 = first[:, : geo.DHQK * geo.DHV].reshape(geo.BH, geo.DHQK, geo.DHV)
            dn0 = first[:, geo.DHQK * geo.DHV :]
            dm0 = gam[:, 0] + torch.where(src < 0, dm, 0.0).sum(1)
        d_igate, d_fgate = d_igate.to(igate.dtype), d_fgate.to(fgate.dtype)
        return dq, dk, dv, d_igate, d_fgate, dc0, dn0, dm0, None, None, None, None


def mlstm_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    chunk_size: int = 64,
    initial_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
    recompute_states: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Chunkwise mLSTM with Triton forward and backward kernels; same function as :func:`.torch_impl.mlstm_chunkwise`.

    Args:
        q: queries of shape (B, NH, S, DHQK); float32, bfloat16 or float16.
        k: keys of shape (B, NH, S, DHQK).
        v: values of shape (B, NH, S, DHV).
        igate: input-gate pre-activations of shape (B, NH, S).
        fgate: forget-gate pre-activations of shape (B, NH, S).
        chunk_size: requested chunk length; see :func:`kernel_chunk_size` for what the kernels use. Default: 64.
        initial_state: optional ``(C, n, m)`` of shapes (B, NH, DHQK, DHV), (B, NH, DHQK), (B, NH, 1); gradients
            flow into all three.
        return_last_state: also return the final ``(C, n, m)`` (float32), differentiable.
        eps: added to the normaliser. Default: 1e-6.
        recompute_states: recompute the chunk-start states in the backward pass instead of keeping them from the
            forward pass (B·NH·(S/L + 1)·DHQK·(DHV + 1) float32 values). Default: False.

    Returns:
        h of shape (B, NH, S, DHV) in ``v``'s dtype, and the final state if requested.
    """
    batch, heads, seq, dqk = q.shape
    dv = v.shape[-1]
    dtypes = {q.dtype, k.dtype, v.dtype}
    if not dtypes <= {torch.float32, torch.bfloat16, torch.float16}:
        raise TypeError(
            f"mlstm triton backend: q, k, v must be float32, bfloat16 or float16; got {sorted(map(str, dtypes))}. "
            "Use backend='chunkwise' for float64."
        )
    compute = q.dtype if len(dtypes) == 1 else torch.float32
    bh = batch * heads
    q3, k3 = (t.to(compute).reshape(bh, seq, dqk).contiguous() for t in (q, k))
    v3 = v.to(compute).reshape(bh, seq, dv).contiguous()
    ig, fg = (t.reshape(bh, seq).contiguous() for t in (igate, fgate))
    if initial_state is not None:
        c0, n0, m0 = initial_state
        c0 = c0.float().reshape(bh, dqk, dv).contiguous()
        n0 = n0.float().reshape(bh, dqk).contiguous()
        m0 = m0.float().reshape(bh).contiguous()
    else:
        c0 = n0 = m0 = None

    h, c_last, n_last, m_last = _MLSTMTriton.apply(
        q3, k3, v3, ig, fg, c0, n0, m0, chunk_size, eps, recompute_states, v.dtype
    )
    h = h.view(batch, heads, seq, dv)
    if return_last_state:
        return h, (c_last.view(batch, heads, dqk, dv), n_last.view(batch, heads, dqk), m_last.view(batch, heads, 1))
    return h
