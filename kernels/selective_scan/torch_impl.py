# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The selective scan (Mamba-1 S6) in pure PyTorch: a sequential reference and a faster chunked form.

Both compute, per batch element ``b`` and channel ``d``, with ``dt = softplus(delta + delta_bias)`` (the softplus only
when ``delta_softplus``)::

    h_t[n] = exp(dt_t · A[d, n]) · h_{t-1}[n] + dt_t · B_t[n] · u_t          h_{-1} = 0, n = 0..N-1
    y_t    = Σ_n C_t[n] · h_t[n] + D[d] · u_t
    out_t  = y_t · silu(z_t)                                                   (only when z is given)

``B_t``/``C_t`` are the rows of B/C that serve channel ``d`` at step ``t``: ``B[d, :]`` for (D, N), ``B[b, :, t]`` for
(B, N, L), ``B[b, d // (D/G), :, t]`` for (B, G, N, L).

- :func:`selective_scan_reference` runs that loop one step at a time under autograd: the ground truth, slow.
- :func:`selective_scan_blocked` has no Python loop whose trip count depends on L: a blocked scan whose depth is
  ceil(log_G L), written in out-of-place ops only, with autograd's backward. It is what ``backend="auto"`` uses while
  a model is traced or exported (TorchScript, ONNX): its graph holds O(G·log_G L) nodes instead of O(L).
- :func:`selective_scan_chunked` is an autograd Function with a hand-written backward. Per chunk of ``T`` steps it
  computes every decay ``exp(dt·A)``, every input ``dt·B·u`` and the C-contraction as whole-chunk tensor ops (bmm
  where B/C vary in time); only the recurrence itself ``h = a ⊙ h + b`` stays a loop, one fused in-place op per step.
  The backward recomputes each chunk's states from the chunk-start states saved by the forward (L/T of them, not
  all L) and runs the adjoint recurrence ``g_t = dy_t C_t + a_{t+1} ⊙ g_{t+1}`` backwards the same way.

Why not a fully parallel (log-space cumsum) chunk: with per-channel-and-state decays ``A (D, N)`` the decay matrix
cannot be factored into a matrix product as in Mamba-2. The stable parallel form needs the masked ``exp(S_t - S_s)``
for every pair of steps in a chunk, i.e. ``T×`` the exps of the recurrence, and the cheap form
``exp(S_t) · cumsum(exp(-S_s) …)`` divides by a cumulative product that under- or overflows. On the CPU, exp is the
dominant cost and one fused op per step is cheap, so the chunked recurrence is the faster stable form (README).

Computation runs in float64 when any input is float64 and in float32 otherwise (half inputs included). The output has
``out_dtype`` (default ``u.dtype``); the last state is float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    "selective_scan_reference",
    "selective_scan_chunked",
    "selective_scan_blocked",
    "compute_dtype",
    "CHUNK_TARGET_ELEMENTS",
    "BLOCKED_SCAN_GROUP",
]

# The chunked form sizes its chunk so that one (T, B, D, N) tensor holds about this many elements: big enough that the
# whole-chunk ops amortise their overhead, small enough that the handful of such tensors stays in cache-friendly MBs.
CHUNK_TARGET_ELEMENTS = 1 << 18
# On a GPU the chunk only bounds memory: 2^26 elements (256 MiB in float32) per (T, B, N, D) tensor, so VM-UNet's
# largest scan (batch 8, 4096 steps, 768 channels, N = 16) takes 6 chunks instead of one per 8 steps.
CUDA_CHUNK_TARGET_ELEMENTS = 1 << 26
# Steps per group of the log-depth scan (_scan_log_): each level costs about 3·G ops on 1/G of the data.
SCAN_GROUP = 8

_SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default, and mamba-ssm's: above it softplus(x) = x


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any given tensor is float64, else float32 (half inputs are computed in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _dt(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool, dtype: torch.dtype) -> torch.Tensor:
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    return F.softplus(dt) if softplus else dt


def _per_channel(bc: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """B or C as a tensor indexable by [..., t] into something broadcastable to (batch, D, N)."""
    bc = bc.to(dtype)
    if bc.ndim == 2:  # (D, N): the same for every step
        return bc[None, :, :, None]
    if bc.ndim == 3:  # (B, N, L): shared by every channel
        return bc[:, None]
    return bc.repeat_interleave(dim // bc.shape[1], dim=1)  # (B, G, N, L) -> (B, D, N, L)


def selective_scan_reference(
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
    """Step-by-step selective scan under autograd: the ground truth. Shapes as :func:`selective_scan`.

    One Python iteration per step; gradients come from autograd through the loop (including through the last state).
    """
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    batch, dim, length = u.shape
    u_ = u.to(dtype)
    dt = _dt(delta, delta_bias, delta_softplus, dtype)
    A_ = A.to(dtype)
    Bx, Cx = _per_channel(B, dim, dtype), _per_channel(C, dim, dtype)
    # per-step slices via unbind: its backward is one stack, where indexing [..., t] in the loop would make autograd
    # write a full-size gradient per step (O(L²) work)
    dts, us = dt.unbind(-1), u_.unbind(-1)
    Bs = Bx.unbind(-1) if Bx.shape[-1] == length else [Bx[..., 0]] * length
    Cs = Cx.unbind(-1) if Cx.shape[-1] == length else [Cx[..., 0]] * length
    h = u_.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dts[t][..., None] * A_) * h + (dts[t] * us[t])[..., None] * Bs[t]
        ys.append((h * Cs[t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u_ * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(out_dtype or u.dtype)
    return (out, h) if return_last_state else out


# ---------------------------------------------------------------------------------------------------------------------
# Chunked form. Internal layout: time first, so one step's slice is contiguous, and channels last, so that reductions
# over N run along long contiguous rows (with N = 16 innermost the C-contraction and Σ_n s·A were 3-4x slower on the
# CPU): u, dt (L, B, D); states, decays, inputs (T, B, N, D); time-varying B/C (L, B, N, G); constant B/C and A
# transposed to (N, D).


def _bc_time_major(bc: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    bc = bc.to(dtype)
    if bc.ndim == 2:
        return bc.t().contiguous()  # (N, D)
    if bc.ndim == 3:
        bc = bc[:, None]
    return bc.permute(3, 0, 2, 1).contiguous()  # (L, B, N, G)


def _expand_bc(w: torch.Tensor, bc: torch.Tensor) -> torch.Tensor:
    """w[t, b, d] · bc[t, b, n, group(d)] (or bc[n, d]): (T, B, D) -> (T, B, N, D)."""
    if bc.ndim == 2:
        return w.unsqueeze(2) * bc
    steps, batch, n, groups = bc.shape
    dim = w.shape[-1]
    out = w.view(steps, batch, 1, groups, dim // groups) * bc.view(steps, batch, n, groups, 1)
    return out.view(steps, batch, n, dim)


def _contract_n(x: torch.Tensor, bc: torch.Tensor) -> torch.Tensor:
    """Σ_n x[t, b, n, d] · bc[t, b, n, group(d)] (or bc[n, d]): (T, B, N, D) -> (T, B, D)."""
    if bc.ndim == 2:
        return (x * bc).sum(2)
    steps, batch, n, groups = bc.shape
    dim = x.shape[-1]
    prod = x.view(steps, batch, n, groups, dim // groups) * bc.view(steps, batch, n, groups, 1)
    return prod.sum(2).view(steps, batch, dim)


def _contract_d(w: torch.Tensor, x: torch.Tensor, groups: int) -> torch.Tensor:
    """Σ_{d in group} w[t, b, d] · x[t, b, n, d]: (T, B, D), (T, B, N, D) -> (T, B, N, G)."""
    steps, batch, n, dim = x.shape
    prod = x.view(steps, batch, n, groups, dim // groups) * w.view(steps, batch, 1, groups, dim // groups)
    return prod.sum(-1)


def _chunk_inputs(dt: torch.Tensor, dtu: torch.Tensor, A_t: torch.Tensor, Bc: torch.Tensor):
    """Decays a = exp(dt·A) and inputs b = dt·u·B of one chunk, both (T, B, N, D)."""
    return torch.exp(dt.unsqueeze(2) * A_t), _expand_bc(dtu, Bc)


def _scan_sequential_(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """In place: b[t] <- a[t] ⊙ h_{t-1} + b[t], starting from h_{-1} = h; one fused op per step. Returns b."""
    for a_t, b_t in zip(a.unbind(0), b.unbind(0)):  # unbind: one call for all step views, cheaper than b[t]
        h = b_t.addcmul_(a_t, h)
    return b


def _scan_log_(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The same scan in O(SCAN_GROUP · log_G T) ops instead of T: two-level, recursively.

    Steps are grouped G at a time. Every group is scanned from a zero state, all groups at once (G ops); the group
    totals (decay product, end state) form a scan of T/G steps, solved the same way (recursion depth fixed by T); each
    group is then corrected by its true start state times the running decay product (2G ops). Only products and sums
    of decays in [0, 1]: nothing is divided, underflow to 0 is harmless. A tail of T mod G steps runs sequentially.
    """
    steps, group = b.shape[0], SCAN_GROUP
    if steps <= group:
        return _scan_sequential_(a, b, h)
    n_groups = steps // group
    main = n_groups * group
    ag, bg = a[:main].view(n_groups, group, *a.shape[1:]), b[:main].view(n_groups, group, *b.shape[1:])
    for j in range(1, group):
        bg[:, j].addcmul_(ag[:, j], bg[:, j - 1])
    ends = _scan_log_(ag.prod(dim=1), bg[:, -1].clone(), h)  # state at the end of every group
    carry = torch.cat([h.unsqueeze(0), ends[:-1]])  # and at its start
    for j in range(group):
        bg[:, j].add_(carry.mul_(ag[:, j]))
    if main < steps:
        _scan_sequential_(a[main:], b[main:], b[main - 1])
    return b


def _run_states(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor, method: str) -> torch.Tensor:
    """In place: b becomes the states h_t = a_t ⊙ h_{t-1} + b_t of a chunk (T, B, N, D), from h_{-1} = h."""
    return (_scan_log_ if method == "log" else _scan_sequential_)(a, b, h)


def _run_adjoint(a: torch.Tensor, g: torch.Tensor, w: torch.Tensor, method: str) -> torch.Tensor:
    """In place where possible: g_t <- g_t + a_{t+1} g_{t+1}, the last step adding w (= a_T g_T of the next chunk)."""
    if method != "log":
        g_steps, a_steps = g.unbind(0), a.unbind(0)
        g_steps[-1].add_(w)
        for t in range(g.shape[0] - 2, -1, -1):
            g_steps[t].addcmul_(a_steps[t + 1], g_steps[t + 1])
        return g
    # reversed in time it is the forward scan with decays a_{t+1} (and 1 for the step that receives w)
    decays = torch.cat([a[1:], torch.ones_like(a[:1])]).flip(0)
    return _scan_log_(decays, g.flip(0), w).flip(0)


def default_scan_method(device: torch.device) -> str:
    """"log" on GPUs (few large launches), "sequential" on the CPU (one cheap in-cache op per step is faster)."""
    return "log" if device.type == "cuda" else "sequential"


def _chunk_size(batch: int, dim: int, n: int, length: int, device: torch.device) -> int:
    """Steps per chunk: about CHUNK_TARGET_ELEMENTS (CPU) or CUDA_CHUNK_TARGET_ELEMENTS per (T, B, N, D) tensor."""
    per_step = max(1, batch * dim * n)
    if device.type == "cuda":
        return max(1, min(length, CUDA_CHUNK_TARGET_ELEMENTS // per_step))
    size = 8
    while size < 512 and size * 2 * per_step <= CHUNK_TARGET_ELEMENTS:
        size *= 2
    return min(size, length)


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, out_dtype, chunk, method):
        dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
        batch, dim, length = u.shape
        n = A.shape[1]
        uT = u.to(dtype).permute(2, 0, 1).contiguous()
        dtT = _dt(delta, delta_bias, softplus, dtype).permute(2, 0, 1).contiguous()
        A_t = A.to(dtype).t().contiguous()
        Bt, Ct = _bc_time_major(B, dtype), _bc_time_major(C, dtype)
        chunk = chunk or _chunk_size(batch, dim, n, length, u.device)
        method = method or default_scan_method(u.device)
        dtu = dtT * uT

        h = uT.new_zeros(batch, n, dim)
        starts = []
        yT = torch.empty_like(uT)
        for t0 in range(0, length, chunk):
            sl = slice(t0, min(length, t0 + chunk))
            starts.append(h)
            a, b = _chunk_inputs(dtT[sl], dtu[sl], A_t, Bt if Bt.ndim == 2 else Bt[sl])
            states = _run_states(a, b, h, method)
            yT[sl] = _contract_n(states, Ct if Ct.ndim == 2 else Ct[sl])
            h = states[-1].clone()  # a copy: a view would keep the whole chunk alive
        if D is not None:
            yT.addcmul_(uT, D.to(dtype))
        y = yT.permute(1, 2, 0)
        out = y * F.silu(z.to(dtype)) if z is not None else y
        out = out.to(out_dtype or u.dtype)

        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, torch.stack(starts))
        ctx.softplus, ctx.chunk, ctx.method = softplus, chunk, method
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None: skip its work
        return out, h.transpose(1, 2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        dtype = starts.dtype
        batch, dim, length = u.shape
        n = A.shape[1]
        chunk, method = ctx.chunk, ctx.method
        uT = u.to(dtype).permute(2, 0, 1).contiguous()
        x = delta.to(dtype) + (delta_bias.to(dtype)[:, None] if delta_bias is not None else 0.0)
        dtT = (F.softplus(x) if ctx.softplus else x).permute(2, 0, 1).contiguous()
        A_t = A.to(dtype).t().contiguous()
        D_ = D.to(dtype) if D is not None else None
        Bt, Ct = _bc_time_major(B, dtype), _bc_time_major(C, dtype)
        dtu = dtT * uT
        zT = z.to(dtype).permute(2, 0, 1) if z is not None else None
        doutT = dout.to(dtype).permute(2, 0, 1) if dout is not None else uT.new_zeros(uT.shape)

        du, ddt = torch.empty_like(uT), torch.empty_like(uT)
        dz = torch.empty_like(uT) if z is not None else None
        dA = torch.zeros_like(A_t)
        dD = uT.new_zeros(dim) if D is not None else None
        dB, dC = torch.zeros_like(Bt), torch.zeros_like(Ct)
        # w = a_{t+1} ⊙ g_{t+1} carried from the chunk after; beyond the end it is dL/d(last state)
        w = dlast.to(dtype).transpose(1, 2) if dlast is not None else uT.new_zeros(batch, n, dim)
        for idx in reversed(range(starts.shape[0])):
            sl = slice(idx * chunk, min(length, (idx + 1) * chunk))
            Bc = Bt if Bt.ndim == 2 else Bt[sl]
            Cc = Ct if Ct.ndim == 2 else Ct[sl]
            dt_c, dtu_c, u_c = dtT[sl], dtu[sl], uT[sl]
            a, b = _chunk_inputs(dt_c, dtu_c, A_t, Bc)
            h0 = starts[idx]
            states = _run_states(a, b, h0, method)
            dy = doutT[sl]
            if z is not None:
                y = _contract_n(states, Cc)
                if D_ is not None:
                    y = y.addcmul(u_c, D_)
                z_c = zT[sl]
                sz = torch.sigmoid(z_c)
                dz[sl] = dy * y * sz * (1 + z_c * (1 - sz))
                dy = dy * z_c * sz
            if D_ is not None:
                dD += (dy * u_c).sum((0, 1))
            # adjoint recurrence, in place: g_t = dy_t C_t + a_{t+1} ⊙ g_{t+1}
            g = _run_adjoint(a, _expand_bc(dy, Cc), w, method)
            w = a[0] * g[0]
            # dC from the states; dB, du, ddt from g; dA and ddt from s_t = g_t ⊙ a_t ⊙ h_{t-1}
            if Ct.ndim == 2:
                dC += (states * dy.unsqueeze(2)).sum((0, 1))
            else:
                dC[sl] = _contract_d(dy, states, Ct.shape[3])
            gB = _contract_n(g, Bc)
            if Bt.ndim == 2:
                dB += (g * dtu_c.unsqueeze(2)).sum((0, 1))
            else:
                dB[sl] = _contract_d(dtu_c, g, Bt.shape[3])
            s = g.mul_(a)  # in place: g is no longer needed; s_t = g_t a_t h_{t-1}, h_{-1} of the chunk = h0
            s[1:].mul_(states[:-1])
            s[0].mul_(h0)
            dA += (s * dt_c.unsqueeze(2)).sum((0, 1))
            ddt[sl] = (s * A_t).sum(2) + u_c * gB
            du[sl] = dt_c * gB
            if D_ is not None:
                du[sl] += dy * D_

        if ctx.softplus:
            xT = x.permute(2, 0, 1)
            ddt = ddt * torch.where(xT > _SOFTPLUS_THRESHOLD, 1.0, torch.sigmoid(xT))
        ddelta_bias = ddt.sum((0, 1)).to(delta_bias.dtype) if delta_bias is not None else None
        grads_bc = []
        for grad, orig in ((dB, B), (dC, C)):
            if orig.ndim == 2:
                grad = grad.t()  # (N, D) -> (D, N)
            else:
                grad = grad.permute(1, 3, 2, 0)  # (L, B, N, G) -> (B, G, N, L)
                if orig.ndim == 3:
                    grad = grad[:, 0]
            grads_bc.append(grad.to(orig.dtype))
        return (
            du.permute(1, 2, 0).to(u.dtype),
            ddt.permute(1, 2, 0).to(delta.dtype),
            dA.t().to(A.dtype),
            *grads_bc,
            dD.to(D.dtype) if D is not None else None,
            dz.permute(1, 2, 0).to(z.dtype) if z is not None else None,
            ddelta_bias,
            None,
            None,
            None,
            None,
        )


def selective_scan_chunked(
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
    chunk_size: int | None = None,
    scan: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan with a recomputing backward. Shapes as :func:`selective_scan`.

    Args:
        chunk_size: steps per chunk; ``None`` sizes it to about ``CHUNK_TARGET_ELEMENTS`` (CPU) or
            ``CUDA_CHUNK_TARGET_ELEMENTS`` (GPU) per (T, B, D, N) tensor. Memory kept for the backward is the inputs
            plus ``ceil(L / chunk_size)`` states of (B, D, N).
        scan: how the recurrence inside a chunk runs: ``"sequential"`` (one op per step) or ``"log"``
            (:func:`_scan_log_`, O(log T) groups of ops); ``None``: :func:`default_scan_method` of the device.

    The gradient of the last state is propagated (mamba-ssm ignores it).
    """
    if scan not in (None, "sequential", "log"):
        raise ValueError(f"selective_scan_chunked: scan must be 'sequential', 'log' or None; got {scan!r}.")
    out, last = _ChunkedScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, out_dtype, chunk_size, scan)
    return (out, last) if return_last_state else out


# ---------------------------------------------------------------------------------------------------------------------
# Blocked form, for export. The recurrence h_t = a_t ⊙ h_{t-1} + b_t over (T, ...) tensors is solved level by level:
# groups of G steps are scanned from a zero state, all groups at once (G - 1 steps of a*h + b on 1/G of the data, and
# alongside them the groups' running decay products P_j = a_j P_{j-1}); the group end states form a scan of T/G steps
# with decays the groups' products, solved the same way one level up; each step then adds its group's start state
# times its running decay product. The decays a = exp(dt·A) are computed once, in [0, 1]: only products and sums, no
# division, underflow to 0 is the true value's limit. Work stays O(T) per level: one exp per element in all, and about
# 3 multiply/adds per element and level (an earlier form took the running decays as exp(cumsum(log a)) per level:
# twice the exps, and torch's cumsum over a short inner dim was 31% of the scan's CPU time at VM-UNet's 4,096 steps).
# The graph holds about 3·G nodes per level, ceil(log_G T) levels.

# Steps per group of the blocked scan: 16 gives 3 levels for VM-UNet's 4,096 steps (4,096 -> 256 -> 16 -> 1).
BLOCKED_SCAN_GROUP = 16


def _pad_steps(x: torch.Tensor, steps: int, value: float) -> torch.Tensor:
    """x (T, ...) with ``steps`` more steps of ``value`` at the end."""
    return torch.cat([x, x.new_full((steps, *x.shape[1:]), value)]) if steps else x


def _scan_steps(a: torch.Tensor, b: torch.Tensor, group: int) -> torch.Tensor:
    """States h_t = a_t ⊙ h_{t-1} + b_t of (T, ...) tensors from h_{-1} = 0, out of place and loop-free in T.

    ``a`` holds decays in [0, 1]; the running products of a group's decays stay in [0, 1], so nothing overflows.
    """
    steps = b.shape[0]
    if steps <= group:
        states = [b[0]]
        for a_t, b_t in zip(a[1:].unbind(0), b[1:].unbind(0)):
            states.append(a_t * states[-1] + b_t)
        return torch.stack(states)
    n_groups = -(-steps // group)
    pad = n_groups * group - steps  # padded steps: decay 1, input 0; they come after every real step
    ag = _pad_steps(a, pad, 1.0).reshape(n_groups, group, *a.shape[1:])
    bg = _pad_steps(b, pad, 0.0).reshape(n_groups, group, *b.shape[1:])
    # every group from a zero start: G - 1 steps, each over all groups at once, with the running decay products
    local, decay = [bg[:, 0]], [ag[:, 0]]
    for a_j, b_j in zip(ag[:, 1:].unbind(1), bg[:, 1:].unbind(1)):
        local.append(a_j * local[-1] + b_j)
        decay.append(a_j * decay[-1])
    ends = _scan_steps(decay[-1], local[-1], group)  # true state at the end of every group
    starts = torch.cat([torch.zeros_like(ends[:1]), ends[:-1]])  # and at its start (h_{-1} = 0)
    states = torch.stack(local, dim=1) + torch.stack(decay, dim=1) * starts.unsqueeze(1)
    return states.reshape(n_groups * group, *b.shape[1:])[:steps]


def selective_scan_blocked(
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
    group: int = BLOCKED_SCAN_GROUP,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan without a Python loop over the L steps: the form that traces and exports. Shapes as
    :func:`selective_scan`.

    Python control flow depends on shapes only (L, ``group``), so TorchScript tracing and ONNX export (both exporters)
    record one graph of about ``3·group·ceil(log_group L)`` scan nodes, valid for every input of these shapes. It
    materialises the states of all L steps at once, (L, B, N, D) (VM-UNet at 256²: 4,096 × 768 × 16 = 201 MB in
    float32 per image), where the chunked form keeps one chunk; gradients come from autograd, so it is meant for
    inference and export rather than training.

    Args:
        group: steps per group of the blocked scan (>= 2); the depth is ceil(log_group L).
    """
    if group < 2:
        raise ValueError(f"selective_scan_blocked: group must be >= 2; got {group}.")
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    uT = u.to(dtype).permute(2, 0, 1).contiguous()  # (L, B, D)
    dtT = _dt(delta, delta_bias, delta_softplus, dtype).permute(2, 0, 1).contiguous()
    A_t = A.to(dtype).t()  # (N, D)
    Bt, Ct = _bc_time_major(B, dtype), _bc_time_major(C, dtype)
    decays = torch.exp(dtT.unsqueeze(2) * A_t)  # (L, B, N, D), in [0, 1]
    states = _scan_steps(decays, _expand_bc(dtT * uT, Bt), group)
    yT = _contract_n(states, Ct)
    if D is not None:
        yT = yT + uT * D.to(dtype)
    y = yT.permute(1, 2, 0)
    out = (y * F.silu(z.to(dtype)) if z is not None else y).to(out_dtype or u.dtype)
    if return_last_state:
        return out, states[-1].transpose(1, 2)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Looped form, for export. The blocked form above materialises every (L, B, N, D) tensor at once and makes several
# passes over each (VM-UNet at 256²: 201 MB per tensor, 4,096 steps): memory-bound, 6-8x the chunked form's CPU time,
# and in the exported graphs (ONNX Runtime, traced TorchScript) the bulk of XLSTMVMUNet's time at 256². This form is
# the chunked form's arithmetic instead, with its loop over chunks kept as ONE graph-level loop when exported:
# torch's ``scan`` higher-order op under ``torch.export`` (the ONNX exporter: an ONNX ``Scan`` node whose body is one
# chunk), a scripted loop under ``torch.jit.trace`` (a ``prim::Loop``), the same Python loop in eager. Per chunk of T
# steps (about CHUNK_TARGET_ELEMENTS per (T, B, N, D) tensor, at most LOOPED_MAX_CHUNK steps, from the shapes alone):
# the decays and inputs of the chunk, T steps h = a ⊙ h + b (unrolled inside the loop body: T is static), the
# C-contraction.


# The looped form's steps per chunk: the CPU chunk size, at most this. The steps of a chunk are unrolled in the loop
# body (2 nodes each), so a long chunk (512 steps for few channels) makes a large body, slow to export; at 32 steps a
# chunk of VM-UNet's smallest stage still holds ~1.6 M elements.
LOOPED_MAX_CHUNK = 32


def _chunk_body(h: torch.Tensor, dt: torch.Tensor, dtu: torch.Tensor, Bc: torch.Tensor, Cc: torch.Tensor,
                A_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: h (B, N, D) the state before it; dt, dtu (T, B, D); Bc, Cc (T, B, N, G); A_t (N, D).
    Returns the state after the chunk and y (T, B, D) = Σ_n C ⊙ h over its steps."""
    steps, batch, dim = dt.shape[0], dt.shape[1], dt.shape[2]
    n, groups = Bc.shape[2], Bc.shape[3]
    a = torch.exp(dt.unsqueeze(2) * A_t)  # (T, B, N, D)
    b = (dtu.view(steps, batch, 1, groups, dim // groups) * Bc.unsqueeze(-1)).view(steps, batch, n, dim)
    states = []
    for t in range(steps):
        h = a[t] * h + b[t]
        states.append(h)
    c_groups = Cc.shape[3]  # B and C may be grouped differently
    s = torch.stack(states).view(steps, batch, n, c_groups, dim // c_groups)
    return h, (s * Cc.unsqueeze(-1)).sum(2).view(steps, batch, dim)


def _python_chunks(dt_c: torch.Tensor, dtu_c: torch.Tensor, B_c: torch.Tensor, C_c: torch.Tensor, A_t: torch.Tensor,
                   h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every chunk in turn: dt_c, dtu_c (NC, T, B, D), B_c, C_c (NC, T, B, N, G). Returns y (NC, T, B, D), last h."""
    outs = []
    for c in range(dt_c.shape[0]):
        h, y = _chunk_body(h, dt_c[c], dtu_c[c], B_c[c], C_c[c], A_t)
        outs.append(y)
    return torch.stack(outs), h


_script_chunks = None


def _scripted_chunks(dt_c, dtu_c, B_c, C_c, A_t, h):
    global _script_chunks
    if _script_chunks is None:  # compiled on first use
        _script_chunks = torch.jit.script(_python_chunks)
    return _script_chunks(dt_c, dtu_c, B_c, C_c, A_t, h)


def _hop_chunks(dt_c, dtu_c, B_c, C_c, A_t, h):
    from torch._higher_order_ops.scan import scan

    def combine(carry, xs):
        return _chunk_body(carry, *xs, A_t)

    h, ys = scan(combine, h.clone(memory_format=torch.contiguous_format), (dt_c, dtu_c, B_c, C_c))
    return ys, h


def selective_scan_looped(
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
    chunk_size: int | None = None,
    form: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan whose loop over chunks stays one graph-level loop when traced or exported: the form
    ``backend="auto"`` uses while a model is exported. Shapes as :func:`selective_scan`; B and C as (D, N) (constant
    in time) fall back to :func:`selective_scan_blocked`. Gradients come from autograd (inference and export).

    Args:
        chunk_size: steps per chunk; default from the shapes (``_chunk_size`` for the CPU, at most
            ``LOOPED_MAX_CHUNK``).
        form: ``"hop"`` (torch's scan operator), ``"script"`` (a scripted loop) or ``"python"``; default by context:
            ``"hop"`` under ``torch.export``, ``"script"`` under ``torch.jit.trace``/the TorchScript ONNX exporter,
            else ``"python"``. All three run the same operations in the same order.
    """
    if B.ndim == 2 or C.ndim == 2:
        return selective_scan_blocked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                      out_dtype)
    if form is None:
        if torch.compiler.is_exporting():
            form = "hop"
        elif torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
            form = "script"
        else:
            form = "python"
    forms = {"hop": _hop_chunks, "script": _scripted_chunks, "python": _python_chunks}
    if form not in forms:
        raise ValueError(f"selective_scan_looped: form must be 'hop', 'script' or 'python'; got {form!r}.")
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    batch, dim, length = u.shape
    n = A.shape[1]
    steps = chunk_size or min(LOOPED_MAX_CHUNK, _chunk_size(batch, dim, n, length, torch.device("cpu")))
    if steps < 1:
        raise ValueError(f"selective_scan_looped: chunk_size must be >= 1; got {steps}.")
    n_chunks = -(-length // steps)
    pad = n_chunks * steps - length  # padded steps: dt 0 (decay 1), input 0, C 0: the state passes unchanged

    def chunks(x: torch.Tensor) -> torch.Tensor:  # (L, ...) -> (NC, T, ...)
        return _pad_steps(x, pad, 0.0).reshape(n_chunks, steps, *x.shape[1:])

    uT = u.to(dtype).permute(2, 0, 1).contiguous()  # (L, B, D)
    dtT = _dt(delta, delta_bias, delta_softplus, dtype).permute(2, 0, 1).contiguous()
    Bt, Ct = _bc_time_major(B, dtype), _bc_time_major(C, dtype)  # (L, B, N, G)
    h0 = uT.new_zeros(batch, n, dim)
    ys, h = forms[form](chunks(dtT), chunks(dtT * uT), chunks(Bt), chunks(Ct), A.to(dtype).t().contiguous(), h0)
    yT = ys.reshape(n_chunks * steps, batch, dim)[:length]
    if D is not None:
        yT = yT + uT * D.to(dtype)
    y = yT.permute(1, 2, 0)
    out = (y * F.silu(z.to(dtype)) if z is not None else y).to(out_dtype or u.dtype)
    if return_last_state:
        return out, h.transpose(1, 2)
    return out
