# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Triton forward and backward kernels for the selective scan.

Imported lazily by ``interface`` (importing triton costs seconds and may be absent). Design:

* One program per (batch element, block of ``BLOCK_D`` channels of one B/C group). It walks the sequence in chunks of
  ``BLOCK_L`` steps, keeping the state ``h`` of shape (BLOCK_D, N) in registers (float32) across chunks.
* Inside a chunk the recurrence ``h_t = a_t h_{t-1} + b_t`` is a ``tl.associative_scan`` over the (BLOCK_D, N,
  BLOCK_L) tile with the affine combine ``(a1, b1) ∘ (a2, b2) = (a1 a2, b1 a2 + b2)``: no division, so decays that
  underflow to 0 are harmless. ``a = exp2(dt · A · log2 e)``.
* The forward writes the state entering each chunk (B, D, L/BLOCK_L, N) float32 when a backward will follow; the
  backward recomputes every chunk's states from it instead of storing (B, D, N, L) states.
* The backward walks the chunks in reverse. The adjoint ``g_t = dL/dh_t = dy_t C_t + a_{t+1} g_{t+1}`` is a reverse
  associative scan with the same combine; ``a_{t+1}`` comes from re-reading delta one step ahead (Triton has no
  register shift). ``g_t a_t h_{t-1}`` (needed for dA and d delta) is ``g_t (h_t - b_t)``.
* dB/dC of time-varying B/C are summed over the program's channels in registers and then added with relaxed float32
  atomics (4-wide on sm_90) into a (B, G, N, L) buffer; per-channel partials (dA, dD, d delta_bias, and dB/dC of
  (D, N) B/C) are written per batch element and summed over the batch by PyTorch. All accumulation is float32; inputs
  may be fp16/bf16/fp32.
* Under ``TRITON_INTERPRET=1`` (CPU tests) each autotuned kernel has a single config.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .._dispatch import triton_interpret

__all__ = ["selective_scan_triton", "block_sizes", "BLOCK_OVERRIDES", "POISON_OUTPUTS", "INTERPRETED"]

# Whether the kernels below were decorated for Triton's CPU interpreter (decided once, at import).
INTERPRETED = triton_interpret()

# Tests set this to fill outputs with NaN before the kernels run, so an element a kernel forgot to write shows up.
POISON_OUTPUTS = False

# Overrides of block_sizes() (keys BLOCK_L, BLOCK_D_FWD, BLOCK_D_BWD), for benchmark sweeps; empty = heuristic.
BLOCK_OVERRIDES: dict[str, int] = {}


def _empty(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device) if POISON_OUTPUTS else torch.empty(
        shape, dtype=dtype, device=device
    )


# Warps: the forward compiles without spills from 2 warps up, the backward needs 4 (sm_90, tiles of block_sizes();
# `bench_selective_scan.py --compile-only`); fewer warps per tile mean fewer cross-warp scan and reduction steps.
if INTERPRETED:
    _FWD_CONFIGS = _BWD_CONFIGS = [triton.Config({}, num_warps=4, num_stages=1)]
else:
    _FWD_CONFIGS = [triton.Config({}, num_warps=w, num_stages=s) for w in (2, 4) for s in (1, 2)]
    _BWD_CONFIGS = [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (1, 2)]


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _softplus(x):
    # max(x, 0) + log1p(exp(-|x|)), with log1p by Goldberg's trick so tiny arguments keep their digits; x > 20 -> x
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + lp)


@triton.jit
def _load_dt(dt_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """delta at offs (+ bias, softplus); 0 where masked, so masked steps have decay 1 and input 0."""
    x = tl.load(dt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x = x + bias[:, None]
    dt = x
    if SOFTPLUS:
        dt = _softplus(x)
    return tl.where(mask, dt, 0.0), x


@triton.autotune(configs=_FWD_CONFIGS, key=["DIM", "L", "N", "BLOCK_D", "BLOCK_L"])
@triton.jit
def _ss_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, hs_ptr,
    DIM, L, N, GROUPS_B, GROUPS_C,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    d0 = pid_d * BLOCK_D
    d = d0 + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    j = tl.arange(0, BLOCK_L)
    dn_mask = n_mask[None, :] & (d[:, None] < DIM)
    A2 = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32) * 1.4426950408889634
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d).to(tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d).to(tl.float32)
    row = (pid_b * DIM + d).to(tl.int64) * L  # start of each channel's sequence in u, delta, z, out
    if B_VAR:
        b_base = (pid_b * GROUPS_B + d0 // (DIM // GROUPS_B)).to(tl.int64) * N * L
    else:
        Bc = tl.load(B_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    if C_VAR:
        c_base = (pid_b * GROUPS_C + d0 // (DIM // GROUPS_C)).to(tl.int64) * N * L
    else:
        Cc = tl.load(C_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    chan = (pid_b * DIM + d).to(tl.int64)
    state_off = chan[:, None] * N + n[None, :]
    n_chunks = tl.cdiv(L, BLOCK_L)
    hs_off = chan[:, None] * n_chunks * N + n[None, :]  # (B, D, n_chunks, N): + c * N for chunk c

    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for c in range(0, n_chunks):
        t = c * BLOCK_L + j
        t_mask = t < L
        m2 = (d[:, None] < DIM) & t_mask[None, :]
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, _ = _load_dt(dt_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])
        if B_VAR:  # loaded as a (1, N, L) tile: the 3D load gives the scan several consecutive steps per thread
            Bt = tl.load(B_ptr + b_base + n[None, :, None] * L + t[None, None, :],
                         mask=n_mask[None, :, None] & t_mask[None, None, :], other=0.0).to(tl.float32)
            b = (dt * u)[:, None, :] * Bt
        else:
            b = (dt * u)[:, None, :] * Bc[:, :, None]
        if SAVE_STATES:
            tl.store(hs_ptr + hs_off + c * N, h, mask=dn_mask)
        acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
        hseq = acum * h[:, :, None] + bcum
        if C_VAR:
            Ct = tl.load(C_ptr + c_base + n[None, :, None] * L + t[None, None, :],
                         mask=n_mask[None, :, None] & t_mask[None, None, :], other=0.0).to(tl.float32)
            y = tl.sum(hseq * Ct, axis=1)
        else:
            y = tl.sum(hseq * Cc[:, :, None], axis=1)
        if HAS_D:
            y += skip[:, None] * u
        if HAS_Z:
            zz = tl.load(z_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=m2)
        # masked steps have decay 1 and input 0, so the last column is the state after the last real step
        h = tl.sum(tl.where(j[None, None, :] == BLOCK_L - 1, hseq, 0.0), axis=2)
    tl.store(last_ptr + state_off, h, mask=dn_mask)


@triton.autotune(configs=_BWD_CONFIGS, key=["DIM", "L", "N", "BLOCK_D", "BLOCK_L"], reset_to_zero=["dB_ptr", "dC_ptr"])
@triton.jit
def _ss_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, hs_ptr, dout_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    DIM, L, N, GROUPS_B, GROUPS_C,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_DOUT: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    d0 = pid_d * BLOCK_D
    d = d0 + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    j = tl.arange(0, BLOCK_L)
    dn_mask = n_mask[None, :] & (d[:, None] < DIM)
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d).to(tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d).to(tl.float32)
    row = (pid_b * DIM + d).to(tl.int64) * L
    if B_VAR:
        b_base = (pid_b * GROUPS_B + d0 // (DIM // GROUPS_B)).to(tl.int64) * N * L
    else:
        Bc = tl.load(B_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
        dB_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if C_VAR:
        c_base = (pid_b * GROUPS_C + d0 // (DIM // GROUPS_C)).to(tl.int64) * N * L
    else:
        Cc = tl.load(C_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
        dC_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    chan = (pid_b * DIM + d).to(tl.int64)
    state_off = chan[:, None] * N + n[None, :]
    n_chunks = tl.cdiv(L, BLOCK_L)
    hs_off = chan[:, None] * n_chunks * N + n[None, :]  # (B, D, n_chunks, N): + c * N for chunk c

    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    # g of the first step of the chunk after the current one; past the end it is dL/d(last state)
    g_next = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if HAS_DLAST:
        g_next = tl.load(dlast_ptr + state_off, mask=dn_mask, other=0.0).to(tl.float32)
    for ci in range(0, n_chunks):
        c = n_chunks - 1 - ci
        t = c * BLOCK_L + j
        t_mask = t < L
        m2 = (d[:, None] < DIM) & t_mask[None, :]
        offs = row[:, None] + t[None, :]
        bc_mask = n_mask[:, None] & t_mask[None, :]
        # B/C chunks are loaded as (1, N, L) tiles: the 3D load fixes a layout with several consecutive steps per
        # thread, which makes the scans below mostly in-thread (a 2D load broadcast to 3D got one step per thread)
        bc_off = n[None, :, None] * L + t[None, None, :]
        bc_mask3 = n_mask[None, :, None] & t_mask[None, None, :]
        # recompute the chunk's states from the saved chunk-start state
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, x = _load_dt(dt_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])
        dtu = dt * u
        if B_VAR:
            Bt = tl.load(B_ptr + b_base + bc_off, mask=bc_mask3, other=0.0).to(tl.float32)
            b = dtu[:, None, :] * Bt
        else:
            b = dtu[:, None, :] * Bc[:, :, None]
        h0 = tl.load(hs_ptr + hs_off + c * N, mask=dn_mask, other=0.0)
        acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
        hseq = acum * h0[:, :, None] + bcum
        if C_VAR:
            Cx = tl.load(C_ptr + c_base + bc_off, mask=bc_mask3, other=0.0).to(tl.float32)
        else:
            Cx = Cc[:, :, None]
        # output gradient -> dy (gradient of y before the z gate), dz
        dy = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if HAS_DOUT:
            dy = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hseq * Cx, axis=1)
            if HAS_D:
                y += skip[:, None] * u
            zz = tl.load(z_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            tl.store(dz_ptr + offs, (dy * y * sz * (1.0 + zz * (1.0 - sz))).to(dz_ptr.dtype.element_ty), mask=m2)
            dy = dy * zz * sz
        du = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if HAS_D:
            dD_acc += tl.sum(dy * u, axis=1)
            du = dy * skip[:, None]
        # dC = Σ dy h
        if C_VAR:
            dCt = tl.sum(hseq * dy[:, None, :], axis=0)
            tl.atomic_add(dC_ptr + c_base + n[:, None] * L + t[None, :], dCt, mask=bc_mask, sem="relaxed")
        else:
            dC_acc += tl.sum(hseq * dy[:, None, :], axis=2)
        # adjoint: g_t = dy_t C_t + a_{t+1} g_{t+1}, a reverse scan; a_{t+1} from delta one step ahead
        t1_mask = (t + 1) < L
        dt1, _ = _load_dt(dt_ptr, offs + 1, (d[:, None] < DIM) & t1_mask[None, :], bias, HAS_BIAS, SOFTPLUS)
        alpha = tl.exp2(dt1[:, None, :] * A2[:, :, None])
        alpha = tl.where(t1_mask[None, None, :], alpha, 1.0)
        pa, gz = tl.associative_scan((alpha, dy[:, None, :] * Cx), 2, _affine_combine, reverse=True)
        g = gz + pa * g_next[:, :, None]
        g_next = tl.sum(tl.where(j[None, None, :] == 0, g, 0.0), axis=2)
        # b_t = dt u B: dB, du, ddt
        if B_VAR:
            gB = tl.sum(g * Bt, axis=1)
            dBt = tl.sum(g * dtu[:, None, :], axis=0)
            tl.atomic_add(dB_ptr + b_base + n[:, None] * L + t[None, :], dBt, mask=bc_mask, sem="relaxed")
        else:
            gB = tl.sum(g * Bc[:, :, None], axis=1)
            dB_acc += tl.sum(g * dtu[:, None, :], axis=2)
        du += dt * gB
        # a_t = exp(dt A): s = g_t a_t h_{t-1} = g_t (h_t - b_t) feeds dA and ddt
        s = g * (hseq - b)
        dA_acc += tl.sum(s * dt[:, None, :], axis=2)
        ddt = u * gB + tl.sum(s * A[:, :, None], axis=1)
        if SOFTPLUS:
            ddt = tl.where(x > 20.0, ddt, ddt * tl.sigmoid(x))
        ddt = tl.where(m2, ddt, 0.0)
        if HAS_BIAS:
            dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddt_ptr + offs, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
    tl.store(dA_ptr + state_off, dA_acc, mask=dn_mask)
    if not B_VAR:
        tl.store(dB_ptr + state_off, dB_acc, mask=dn_mask)
    if not C_VAR:
        tl.store(dC_ptr + state_off, dC_acc, mask=dn_mask)
    vec_off = pid_b * DIM + d
    if HAS_D:
        tl.store(dD_ptr + vec_off, dD_acc)
    if HAS_BIAS:
        tl.store(dbias_ptr + vec_off, dbias_acc)


# Every autotuned kernel, for the self-check behind backend="auto" (``_guard.pinned_autotune``).
AUTOTUNED_KERNELS = (_ss_fwd_kernel, _ss_bwd_kernel)


def _pow2_divisor(value: int, cap: int) -> int:
    """Largest power of two <= cap that divides value."""
    block = 1
    while block * 2 <= cap and value % (block * 2) == 0:
        block *= 2
    return block


def block_sizes(dim: int, n: int, length: int, group_size: int, interpret: bool | None = None) -> dict[str, int]:
    """Tile sizes: BLOCK_N (state, padded to a power of two), BLOCK_L (chunk), BLOCK_D for forward and backward.

    ``group_size`` is the number of channels that share one B/C group (``dim`` when neither varies by group); a
    program's channels must lie in one group, so BLOCK_D divides it. The targets keep the (BLOCK_D, BLOCK_N, BLOCK_L)
    float32 tiles at about 2k (backward) to 4k (forward) elements. They are first guesses, unmeasured on a GPU:
    ``benchmarks/bench_selective_scan.py --sweep`` times alternatives.
    """
    interpret = triton_interpret() if interpret is None else interpret
    block_n = max(2, triton.next_power_of_2(n))
    if interpret:  # small chunks: the tests reach several chunks at short lengths, and the interpreter is slow
        block_l = 16
        return {"BLOCK_N": block_n, "BLOCK_L": block_l, "BLOCK_D_FWD": _pow2_divisor(group_size, 2),
                "BLOCK_D_BWD": _pow2_divisor(group_size, 2)}
    block_l = min(64, max(16, triton.next_power_of_2(length)))
    per_channel = block_n * block_l
    return {
        "BLOCK_N": block_n,
        "BLOCK_L": block_l,
        "BLOCK_D_FWD": _pow2_divisor(group_size, max(1, 4096 // per_channel)),
        "BLOCK_D_BWD": _pow2_divisor(group_size, max(1, 2048 // per_channel)),
    }


def _as_groups(bc: torch.Tensor) -> tuple[torch.Tensor, bool, int]:
    """Contiguous B/C, whether it varies in time, and its number of groups ((B, N, L) counts as one group)."""
    if bc.ndim == 2:
        return bc.contiguous(), False, 1
    if bc.ndim == 3:
        bc = bc.unsqueeze(1)
    return bc.contiguous(), True, bc.shape[1]


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, out_dtype):
        batch, dim, length = u.shape
        n = A.shape[1]
        u_c, delta_c = u.contiguous(), delta.contiguous()
        z_c = z.contiguous() if z is not None else None
        A_c = A.contiguous()
        D_c = D.contiguous() if D is not None else None
        bias_c = delta_bias.contiguous() if delta_bias is not None else None
        B_c, b_var, groups_b = _as_groups(B)
        C_c, c_var, groups_c = _as_groups(C)
        group_size = math.gcd(dim // groups_b if b_var else dim, dim // groups_c if c_var else dim)
        blocks = {**block_sizes(dim, n, length, group_size), **BLOCK_OVERRIDES}
        for key in ("BLOCK_D_FWD", "BLOCK_D_BWD"):  # a program's channels must share one B/C group
            if group_size % blocks[key] != 0:
                raise ValueError(f"selective_scan: {key}={blocks[key]} must divide a group's {group_size} channels.")
        n_chunks = triton.cdiv(length, blocks["BLOCK_L"])
        save = any(ctx.needs_input_grad[:8])

        out = _empty((batch, dim, length), out_dtype or u.dtype, u.device)
        last = _empty((batch, dim, n), torch.float32, u.device)
        hs = _empty((batch, dim, n_chunks, n), torch.float32, u.device) if save else last
        grid = (dim // blocks["BLOCK_D_FWD"], batch)
        _ss_fwd_kernel[grid](
            u_c, delta_c, A_c, B_c, C_c,
            D_c if D_c is not None else u_c, z_c if z_c is not None else u_c,
            bias_c if bias_c is not None else u_c,
            out, last, hs,
            dim, length, n, groups_b, groups_c,
            B_VAR=b_var, C_VAR=c_var, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus), SAVE_STATES=save,
            BLOCK_D=blocks["BLOCK_D_FWD"], BLOCK_N=blocks["BLOCK_N"], BLOCK_L=blocks["BLOCK_L"],
        )
        ctx.save_for_backward(u_c, delta_c, A_c, B_c, C_c, D_c, z_c, bias_c, hs if save else None)
        ctx.meta = (softplus, b_var, c_var, groups_b, groups_c, B.ndim, C.ndim, blocks)
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, hs = ctx.saved_tensors
        softplus, b_var, c_var, groups_b, groups_c, b_ndim, c_ndim, blocks = ctx.meta
        batch, dim, length = u.shape
        n = A.shape[1]
        f32, dev = torch.float32, u.device
        du, ddelta = _empty(u.shape, u.dtype, dev), _empty(delta.shape, delta.dtype, dev)
        dz = _empty(z.shape, z.dtype, dev) if z is not None else None
        dA = _empty((batch, dim, n), f32, dev)
        # time-varying B/C: float32 buffers the programs add into atomically; else per-batch partials
        dB = torch.zeros(B.shape, dtype=f32, device=dev) if b_var else _empty((batch, dim, n), f32, dev)
        dC = torch.zeros(C.shape, dtype=f32, device=dev) if c_var else _empty((batch, dim, n), f32, dev)
        dD = _empty((batch, dim), f32, dev) if D is not None else dA
        dbias = _empty((batch, dim), f32, dev) if delta_bias is not None else dA
        grid = (dim // blocks["BLOCK_D_BWD"], batch)
        _ss_bwd_kernel[grid](
            u, delta, A, B, C,
            D if D is not None else u, z if z is not None else u, delta_bias if delta_bias is not None else u,
            hs,
            dout.contiguous() if dout is not None else u, dlast.contiguous() if dlast is not None else u,
            du, ddelta, dz if dz is not None else du, dA, dB, dC, dD, dbias,
            dim, length, n, groups_b, groups_c,
            B_VAR=b_var, C_VAR=c_var, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus), HAS_DOUT=dout is not None, HAS_DLAST=dlast is not None,
            BLOCK_D=blocks["BLOCK_D_BWD"], BLOCK_N=blocks["BLOCK_N"], BLOCK_L=blocks["BLOCK_L"],
        )

        def _bc_grad(grad, var, ndim, like):
            if not var:
                return grad.sum(0).to(like.dtype)
            return (grad[:, 0] if ndim == 3 else grad).to(like.dtype)

        return (
            du,
            ddelta,
            dA.sum(0).to(A.dtype),
            _bc_grad(dB, b_var, b_ndim, B),
            _bc_grad(dC, c_var, c_ndim, C),
            dD.sum(0).to(D.dtype) if D is not None else None,
            dz,
            dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            None,
            None,
        )


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with Triton kernels (float16/bfloat16/float32 inputs, float32 state and accumulation).

    Shapes as :func:`~xlstm_seg_kernels.selective_scan.selective_scan`; inputs are checked there. The gradient of the
    last state is propagated.
    """
    out, last = _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, out_dtype)
    return (out, last) if return_last_state else out
