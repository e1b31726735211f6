# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The one public selective-scan function, its input checks and its backend switch."""

from __future__ import annotations

import functools

import torch

from .._dispatch import exporting, plain_tensors, resolve_backend, triton_available
from .._guard import compare, pinned_autotune, triton_allowed
from .torch_impl import (selective_scan_blocked, selective_scan_chunked, selective_scan_looped,
                         selective_scan_reference)

__all__ = ["selective_scan", "BACKENDS", "mamba_ssm_available", "TRITON_CHECK_TOLERANCES"]

# Relative-error limits of the Triton self-check (outputs and gradients), as the GPU tests
# (tests/kernels/test_selective_scan_triton.py) use them, keyed by the dtype of u.
TRITON_CHECK_TOLERANCES = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}


@functools.lru_cache(maxsize=None)
def _mamba_ssm_fn():
    """mamba-ssm's CUDA ``selective_scan_fn``, or the reason it cannot be imported (a string)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:  # ImportError, or a broken install failing inside mamba_ssm's own imports
        return f"{type(err).__name__}: {err}"
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """Whether ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` imports in this environment."""
    return not isinstance(_mamba_ssm_fn(), str)


def _reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)


def _torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)


def _blocked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    return selective_scan_blocked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)


def _looped(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    return selective_scan_looped(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)


def _triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    from .triton_impl import selective_scan_triton  # lazy: importing triton costs seconds and may be absent

    return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)


def _mamba_ssm(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
    fn = _mamba_ssm_fn()
    if isinstance(fn, str):
        raise RuntimeError(
            "selective_scan: backend='mamba_ssm' needs mamba_ssm.ops.selective_scan_interface.selective_scan_fn, which "
            f"does not import here ({fn}). Install mamba-ssm with its CUDA build, or use backend='auto'."
        )
    if not u.is_cuda:
        raise RuntimeError(f"selective_scan: backend='mamba_ssm' needs CUDA tensors; got a {u.device.type} tensor.")
    result = fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if out_dtype is None:
        return result
    if return_last_state:
        return result[0].to(out_dtype), result[1]
    return result.to(out_dtype)


def _triton_self_check(device, dtypes: dict, n: int, forms: dict, flags: dict, blocks: dict, out_dtype) -> None:
    """Triton vs the float64 chunked form on a short scan with this configuration's tiles, forward and backward."""
    from . import triton_impl  # lazy, as _triton

    block_d = max(blocks["BLOCK_D_FWD"], blocks["BLOCK_D_BWD"])
    groups = {name: (2 if form == 4 else 1) for name, form in forms.items()}
    group_size = block_d  # one program per group and batch element
    dim = group_size * max(groups.values())
    batch, length = 1, 2 * blocks["BLOCK_L"] + 3  # three chunks, the last one partial
    gen = torch.Generator().manual_seed(4321)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift

    def bc_shape(name):
        return {2: (dim, n), 3: (batch, n, length), 4: (batch, groups[name], n, length)}[forms[name]]

    raw = {
        "u": rnd(batch, dim, length), "delta": rnd(batch, dim, length, scale=0.5, shift=-1.0),
        "A": -torch.exp(rnd(dim, n, scale=0.5)), "B": rnd(*bc_shape("B")), "C": rnd(*bc_shape("C")),
        "D": rnd(dim) if flags["D"] else None, "z": rnd(batch, dim, length) if flags["z"] else None,
        "delta_bias": rnd(dim, scale=0.3) if flags["delta_bias"] else None,
    }
    raw = {k: (t.to(dtypes[k]).double() if t is not None else None) for k, t in raw.items()}
    names = [k for k, t in raw.items() if t is not None]
    gen_out = torch.Generator().manual_seed(1)
    weights = None

    def run(fn, dev, cast):
        nonlocal weights
        x = {k: (t.to(device=dev, dtype=cast(k)).requires_grad_() if t is not None else None) for k, t in raw.items()}
        out, last = fn(**x, delta_softplus=flags["softplus"], return_last_state=True)
        if weights is None:
            weights = [torch.randn(out.shape, generator=gen_out, dtype=torch.float64),
                       torch.randn(last.shape, generator=gen_out, dtype=torch.float64)]
        loss = (out * weights[0].to(dev, out.dtype)).sum() + (last * weights[1].to(dev, last.dtype)).sum()
        grads = torch.autograd.grad(loss, [x[k] for k in names])
        return {"out": out, "last_state": last, **{f"d{k}": g for k, g in zip(names, grads)}}

    ref = run(selective_scan_chunked, "cpu", lambda k: torch.float64)
    with pinned_autotune(triton_impl.AUTOTUNED_KERNELS), _block_overrides(triton_impl, blocks):
        out = run(lambda **kw: triton_impl.selective_scan_triton(**kw, out_dtype=out_dtype), device,
                  lambda k: dtypes[k])
    limit = TRITON_CHECK_TOLERANCES[dtypes["u"]]
    compare({k: t.detach().cpu() for k, t in out.items()}, ref, dict.fromkeys(ref, limit))


class _block_overrides:
    """Temporarily force ``triton_impl.BLOCK_OVERRIDES`` (the tiles the real call would use)."""

    def __init__(self, module, blocks: dict) -> None:
        self.module, self.blocks = module, blocks

    def __enter__(self):
        self.saved = dict(self.module.BLOCK_OVERRIDES)
        self.module.BLOCK_OVERRIDES.clear()
        self.module.BLOCK_OVERRIDES.update(self.blocks)

    def __exit__(self, *exc):
        self.module.BLOCK_OVERRIDES.clear()
        self.module.BLOCK_OVERRIDES.update(self.saved)


def _guarded_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, out_dtype) -> bool:
    """Whether ``auto`` may run Triton here: the self-check's verdict for this configuration (cached)."""
    import math

    from .triton_impl import BLOCK_OVERRIDES, block_sizes

    batch, dim, length = u.shape
    n = A.shape[1]
    sizes = [dim // t.shape[1] if t.ndim == 4 else dim for t in (B, C)]
    blocks = {**block_sizes(dim, n, length, math.gcd(*sizes)), **BLOCK_OVERRIDES}
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    dtypes = {k: (t.dtype if t is not None else torch.float32) for k, t in named.items()}
    forms = {"B": B.ndim, "C": C.ndim}
    flags = {"D": D is not None, "z": z is not None, "delta_bias": delta_bias is not None,
             "softplus": bool(delta_softplus)}
    config = [("device", str(u.device)), *((f"{k}_dtype", str(t).removeprefix("torch.")) for k, t in dtypes.items()),
              ("N", n), ("B_ndim", forms["B"]), ("C_ndim", forms["C"]), *flags.items(), *sorted(blocks.items()),
              ("out_dtype", str(out_dtype).removeprefix("torch.") if out_dtype is not None else "u")]
    return triton_allowed("selective_scan", config, lambda: _triton_self_check(
        u.device, dtypes, n, forms, flags, blocks, out_dtype))


BACKENDS = {
    "reference": _reference,
    "torch": _torch,
    "blocked": _blocked,
    "looped": _looped,
    "triton": _triton,
    "mamba_ssm": _mamba_ssm,
}

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _triton_candidate(u: torch.Tensor) -> bool:
    """Whether ``auto`` considers Triton at all: CUDA tensors with triton installed."""
    return u.is_cuda and triton_available(u)


def _check_bc(name: str, t: torch.Tensor, batch: int, dim: int, n: int, length: int) -> None:
    if t.is_complex():
        raise ValueError(f"selective_scan: complex {name} is not supported (only real A, B, C).")
    expected = f"(D, N) = ({dim}, {n}), (B, N, L) = ({batch}, {n}, {length}) or (B, G, N, L) with D % G == 0"
    if t.ndim == 2:
        ok = tuple(t.shape) == (dim, n)
    elif t.ndim == 3:
        ok = tuple(t.shape) == (batch, n, length)
    elif t.ndim == 4:
        groups = t.shape[1]
        ok = t.shape[0] == batch and groups >= 1 and dim % groups == 0 and tuple(t.shape[2:]) == (n, length)
    else:
        ok = False
    if not ok:
        raise ValueError(f"selective_scan: {name} must be {expected}; got {tuple(t.shape)}.")


def _check_inputs(u, delta, A, B, C, D, z, delta_bias, out_dtype) -> None:
    if not isinstance(u, torch.Tensor) or u.ndim != 3:
        raise ValueError(f"selective_scan: u must be (B, D, L); got shape {tuple(getattr(u, 'shape', ()))}.")
    batch, dim, length = u.shape
    if length == 0 or batch == 0 or dim == 0:
        raise ValueError(f"selective_scan: u (B, D, L) must be non-empty; got {tuple(u.shape)}.")
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must be (B, D, L) = {tuple(u.shape)}; got {tuple(delta.shape)}.")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported; A must be real of shape (D, N).")
    if A.ndim != 2 or A.shape[0] != dim or A.shape[1] < 1:
        raise ValueError(f"selective_scan: A must be (D, N) with D = {dim}; got {tuple(A.shape)}.")
    n = A.shape[1]
    _check_bc("B", B, batch, dim, n, length)
    _check_bc("C", C, batch, dim, n, length)
    if D is not None and tuple(D.shape) != (dim,):
        raise ValueError(f"selective_scan: D must be (D,) = ({dim},); got {tuple(D.shape)}.")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must be (B, D, L) = {tuple(u.shape)}; got {tuple(z.shape)}.")
    if delta_bias is not None and tuple(delta_bias.shape) != (dim,):
        raise ValueError(f"selective_scan: delta_bias must be (D,) = ({dim},); got {tuple(delta_bias.shape)}.")
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        if t.dtype not in _FLOATS:
            raise ValueError(f"selective_scan: {name} must be float16, bfloat16, float32 or float64; got {t.dtype}.")
        if t.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {t.device} but u is on {u.device}.")
    if out_dtype is not None and out_dtype not in _FLOATS:
        raise ValueError(f"selective_scan: out_dtype must be a floating dtype or None; got {out_dtype}.")


def selective_scan(
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
    *,
    backend: str = "auto",
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan (S6) with the semantics of mamba-ssm's ``selective_scan_fn``.

    With ``dt = softplus(delta + delta_bias)`` (softplus only if ``delta_softplus``; threshold 20 as in PyTorch),
    per batch element and channel ``d``::

        h_t = exp(dt_t · A[d]) ⊙ h_{t-1} + dt_t · u_t · B_t        h: (N,), h_{-1} = 0
        y_t = <h_t, C_t> + D[d] · u_t ;   out_t = y_t · silu(z_t)   (D, z optional)

    Only real A is supported (mamba-ssm also accepts complex A; passing one raises ``ValueError``). SS2D stacks its
    K = 4 directions as channels (D = 4·d_inner) with grouped B/C of shape (B, 4, N, L).

    Args:
        u: inputs of shape (B, D, L).
        delta: step sizes before bias/softplus, of shape (B, D, L).
        A: state matrix of shape (D, N), real (VMamba: ``-exp(A_log)``).
        B: input matrix: (D, N) (the same for every step), (B, N, L) (shared by all channels) or (B, G, N, L) with
            D % G == 0 (group g serves channels g·D/G .. (g+1)·D/G - 1).
        C: output matrix, shapes as B (B and C may use different forms).
        D: skip weights of shape (D,). Default: none.
        z: gate of shape (B, D, L); the output is multiplied by silu(z). Default: none.
        delta_bias: added to delta before the softplus, of shape (D,). Default: none.
        delta_softplus: apply softplus to ``delta + delta_bias``. Default: False.
        return_last_state: also return the final state h_{L-1}.
        backend: ``"auto"`` (``"triton"`` for CUDA tensors when triton is installed, no input is float64 and the
            configuration passed its once-per-process self-check, see ``_guard.py``; else ``"torch"``), or one of ``"reference"`` (step-by-step loop under autograd: the ground truth, slow),
            ``"torch"`` (chunked pure PyTorch with a recomputing backward; CPU and any GPU), ``"blocked"`` (pure
            PyTorch without a Python loop over L, depth ceil(log16 L), all L steps materialised at once),
            ``"looped"`` (the chunked arithmetic with its loop over chunks kept as one graph-level loop when traced or
            exported: what ``"auto"`` picks while the model is traced or exported, see ``_dispatch.exporting``;
            6-8x faster than ``"blocked"`` on the CPU at VM-UNet's 4,096 steps), ``"triton"`` (CUDA, or the
            CPU interpreter under ``TRITON_INTERPRET=1``; float16/bfloat16/float32), ``"mamba_ssm"`` (mamba-ssm's
            CUDA kernel, only when it imports). An explicit backend that cannot run raises; it never falls back.
        out_dtype: dtype of the output. Default ``None`` = ``u.dtype``, as mamba-ssm. Half-precision inputs are always
            computed in float32 (states and accumulations); for them, ``out_dtype=torch.float32`` returns the float32
            result without the final rounding, which avoids float16 overflow to inf (VMamba's "i16o32" fix for fp16
            NaNs). With ``"mamba_ssm"`` the cast is applied to its output.

    Returns:
        out of shape (B, D, L); with ``return_last_state`` also the last state of shape (B, D, N) in float32 (float64
        when any input is float64). Gradients flow to every tensor input, and, except with ``"mamba_ssm"``, also from
        the last state.

    Raises:
        ValueError: a malformed input (the message names it and the expected shape), or an unknown backend.
        RuntimeError: an explicit backend that cannot run here.
    """
    u, delta, A, B, C, D, z, delta_bias = plain_tensors(u, delta, A, B, C, D, z, delta_bias)
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, out_dtype)
    any_f64 = any(t is not None and t.dtype == torch.float64 for t in (u, delta, A, B, C, D, z, delta_bias))

    def auto() -> str:
        if exporting():
            return "looped"
        if _triton_candidate(u) and not any_f64 and _guarded_triton(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, out_dtype):
            return "triton"
        return "torch"

    name = resolve_backend("selective_scan", backend, tuple(BACKENDS), u, auto)
    if name == "triton" and any_f64:
        raise ValueError("selective_scan: backend='triton' takes float16, bfloat16 or float32 inputs, not float64.")
    return BACKENDS[name](u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype)
