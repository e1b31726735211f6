# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Visual state-space (VSS) blocks of VM-UNet (Ruan & Xiang 2024, https://arxiv.org/abs/2402.02491).

VM-UNet builds on the first VMamba release (Liu et al. 2024, https://arxiv.org/abs/2401.10166). Every tensor here is
channels-last, (B, H, W, C), as in those networks. Attribute names follow theirs (``in_proj``, ``conv2d``,
``x_proj_weight``, ``dt_projs_weight``, ``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``; ``ln_1``,
``self_attention``; ``reduction``; ``expand``; ``norm``), so VMamba-S and VM-UNet state dicts load unchanged.

- :class:`SS2D`: the 2D selective scan: four scan orders of a feature map, one Mamba-1 selective scan each (run as one
  grouped scan), merged back to row-major order.
- :class:`VSSBlock`: ``x + DropPath(SS2D(LayerNorm(x)))`` (no MLP).
- :class:`PatchEmbed2D`, :class:`PatchMerging2D`, :class:`PatchExpand2D`, :class:`FinalPatchExpand2D`: the resolution
  changes of VM-UNet's encoder and decoder.
- :class:`VSSLayer`, :class:`VSSLayerUp`: VSS blocks followed by a merge (encoder) or preceded by an expand (decoder).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers import DropPath

from xlstm_seg_kernels import cross_merge, cross_scan, selective_scan
from xlstm_seg_kernels.selective_scan import BACKENDS as SCAN_BACKENDS

__all__ = [
    "SCAN_BACKEND_CHOICES",
    "SS2D",
    "VSSBlock",
    "PatchEmbed2D",
    "PatchMerging2D",
    "PatchExpand2D",
    "FinalPatchExpand2D",
    "VSSLayer",
    "VSSLayerUp",
    "vmunet_init_",
    "check_scan_backend",
]

SCAN_BACKEND_CHOICES = ("auto", *SCAN_BACKENDS)
NUM_DIRECTIONS = 4


def _cross_backend(scan_backend: str) -> str:
    """The cross-scan/merge backend that goes with a selective-scan backend (they have different choices)."""
    if scan_backend == "triton":
        return "triton"
    if scan_backend in ("torch", "reference"):
        return "torch"
    return "auto"


def check_scan_backend(scan_backend: str, owner: str) -> str:
    """Return ``scan_backend`` if it names a selective-scan backend (or ``"auto"``); else raise ``ValueError``."""
    if scan_backend not in SCAN_BACKEND_CHOICES:
        raise ValueError(f"{owner}: scan_backend must be one of {SCAN_BACKEND_CHOICES}; got {scan_backend!r}.")
    return scan_backend


def vmunet_init_(module: nn.Module) -> None:
    """VMamba/VM-UNet's ``_init_weights``: Linear weight trunc_normal(std 0.02, cut at ±2), bias 0; LayerNorm 1 / 0.

    Applied with ``model.apply``. SS2D's stacked ``x_proj_weight``/``dt_projs_*`` are plain parameters, not Linear
    modules, so they keep the initialisation :class:`SS2D` gives them; convolutions keep PyTorch's default.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SS2D(nn.Module):
    """2D selective scan (VMamba's SS2D as VM-UNet instantiates it): (B, H, W, C) -> (B, H, W, C).

    With ``D_in = expand·C``, ``N = d_state``, ``R = dt_rank`` and L = H·W::

        x, z = split(W_in x)                                   (B, H, W, D_in) each, no bias
        x = SiLU(DWConv_{d_conv×d_conv}(x))                    depthwise, padding (d_conv-1)/2, bias
        u_0..u_3 = cross_scan(x)                               row-major, column-major, and both reversed
        [Δ̃_k, B_k, C_k] = x_proj_weight[k] · u_k               (R + 2N) rows per direction
        Δ_k = softplus(dt_projs_weight[k] · Δ̃_k + dt_projs_bias[k])
        y_k = selective_scan(u_k, Δ_k, A_k = -exp(A_logs_k), B_k, C_k, D = Ds_k)      in float32
        y = cross_merge(y_0..y_3)                              each mapped back to row-major order and summed
        out = W_out (LayerNorm(y) ⊙ SiLU(z))                   no bias

    The four directions run as one scan over 4·D_in channels with grouped B/C of shape (B, 4, N, L). The scan and
    the merge run in float32 even under autocast (float64 inputs stay float64), as VM-UNet casts to float.

    Initialisation (as VMamba v0): ``A_logs = log(1..N)`` for every channel and direction, ``Ds = 1``,
    ``dt_projs_weight ~ U(±R^-0.5)``, ``dt_projs_bias = softplus⁻¹(dt)`` with ``dt = exp(U[log dt_min, log dt_max])``
    clamped at ``dt_init_floor``, ``x_proj_weight`` with nn.Linear's default (kaiming-uniform, a = √5). ``in_proj``,
    ``out_proj`` and ``out_norm`` get nn.Linear/LayerNorm defaults here; the network re-initialises them with
    :func:`vmunet_init_`.

    Args:
        d_model: channels C.
        d_state: SSM state size N. Default: 16.
        d_conv: depthwise conv kernel size (odd). Default: 3.
        expand: D_in / C. Default: 2.
        dt_rank: rank R of the Δ projection; ``None`` = ceil(C / 16).
        dt_min, dt_max, dt_init_floor: range and floor of the initial step sizes. Defaults: 1e-3, 1e-1, 1e-4.
        scan_backend: backend of :func:`xlstm_seg_kernels.selective_scan` (``"auto"``, ``"torch"``, ``"triton"``,
            ``"reference"``, ``"mamba_ssm"``); the cross-scan/merge use the matching torch/Triton backend.

    Shape:
        (B, H, W, d_model) -> (B, H, W, d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("expand", expand)):
            if int(value) < 1:
                raise ValueError(f"SS2D: {name} must be >= 1; got {value}.")
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"SS2D: d_conv must be a positive odd kernel size; got {d_conv}.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"SS2D: need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}.")
        self.scan_backend = check_scan_backend(scan_backend, "SS2D")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = d_inner = expand * d_model
        self.dt_rank = dt_rank = math.ceil(d_model / 16) if dt_rank is None else int(dt_rank)
        if dt_rank < 1:
            raise ValueError(f"SS2D: dt_rank must be >= 1; got {dt_rank}.")
        k = NUM_DIRECTIONS

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # VMamba flags these to be exempt from weight decay; the VM-UNet recipe's plain AdamW ignores the flag.
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """(Re-)initialise the SSM parameters as described in the class docstring."""
        dt_min, dt_max, floor = self._dt_range
        for w in self.x_proj_weight:  # each direction as its own nn.Linear(D_in, R + 2N)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_projs_weight, -bound, bound)
        dt = torch.exp(
            torch.rand(self.dt_projs_bias.shape) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        a_log = torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
        self.A_logs.copy_(a_log.expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """The four-direction selective scan and merge: (B, D_in, H, W) -> (B, D_in, H·W) in row-major order.

        Returns float32 (float64 for float64 input) regardless of autocast.
        """
        batch, dim, height, width = x.shape
        length = height * width
        k = NUM_DIRECTIONS
        cross = _cross_backend(self.scan_backend)
        xs = cross_scan(x, backend=cross)  # (B, 4, D_in, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight.to(xs.dtype))
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight.to(dts.dtype))
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = selective_scan(
                xs.to(dtype).reshape(batch, k * dim, length),
                dts.to(dtype).reshape(batch, k * dim, length),
                -torch.exp(self.A_logs.to(dtype)),
                bs.to(dtype).contiguous(),
                cs.to(dtype).contiguous(),
                self.Ds.to(dtype),
                None,
                self.dt_projs_bias.to(dtype).reshape(-1),
                True,
                backend=self.scan_backend,
            )
            return cross_merge(y.view(batch, k, dim, length), height, width, backend=cross)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if x.ndim != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"SS2D: expected (B, H, W, {self.d_model}) channels-last input; got {tuple(x.shape)}.")
        batch, height, width, _ = x.shape
        x_in, z = self.in_proj(x).chunk(2, dim=-1)
        x_in = F.silu(self.conv2d(x_in.permute(0, 3, 1, 2).contiguous()))
        y = self.scan(x_in).transpose(1, 2).reshape(batch, height, width, self.d_inner)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """VM-UNet's VSS block: ``x + DropPath(SS2D(LayerNorm(x)))`` on (B, H, W, C) -> (B, H, W, C).

    Args:
        hidden_dim: channels C.
        drop_path: stochastic-depth rate of the residual branch. Default: 0.
        norm_eps: LayerNorm epsilon (VM-UNet passes nn.LayerNorm, i.e. 1e-5). Default: 1e-5.
        d_state, d_conv, expand, dt_rank, scan_backend: passed to :class:`SS2D`.
    """

    def __init__(
        self,
        hidden_dim: int,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 2,
        dt_rank: int | None = None,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"VSSBlock: drop_path must be in [0, 1); got {drop_path}.")
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.self_attention = SS2D(
            hidden_dim, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, scan_backend=scan_backend
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


class PatchEmbed2D(nn.Module):
    """Non-overlapping patch embedding: Conv2d(k = s = patch_size) then LayerNorm; (B, C, H, W) -> (B, H/p, W/p, E).

    Args:
        patch_size: patch edge p. Default: 4.
        in_chans: input channels. Default: 3.
        embed_dim: output channels E. Default: 96.
        norm_eps: LayerNorm epsilon. Default: 1e-5.
    """

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging2D(nn.Module):
    """2× downsampling: the four parity sub-grids concatenated, LayerNorm(4C), Linear(4C -> 2C, no bias).

    Sub-grid order (row parity, column parity): (0, 0), (1, 0), (0, 1), (1, 1), as VMamba (pretrained weights depend
    on it). (B, H, W, C) -> (B, H/2, W/2, 2C); H and W must be even.
    """

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(f"PatchMerging2D: H and W must be even; got a {tuple(x.shape[1:3])} map.")
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


def _pixel_unshuffle_last(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, H, W, s·s·c) with the channel split as (p1, p2, c) -> (B, s·H, s·W, c), p1 along H and p2 along W."""
    batch, height, width, channels = x.shape
    c = channels // (scale * scale)
    x = x.view(batch, height, width, scale, scale, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height * scale, width * scale, c)


class PatchExpand2D(nn.Module):
    """VM-UNet's 2× upsampling for decoder width ``dim``: Linear(2·dim -> 4·dim, no bias), each token's channels
    spread over a 2×2 block, LayerNorm(dim). (B, H, W, 2·dim) -> (B, 2H, 2W, dim)."""

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.expand = nn.Linear(2 * dim, 4 * dim, bias=False)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_unshuffle_last(self.expand(x), 2))


class FinalPatchExpand2D(nn.Module):
    """VM-UNet's final 4× upsampling: Linear(dim -> 4·dim, no bias), each token's channels spread over a 4×4 block,
    LayerNorm(dim / 4). (B, H, W, dim) -> (B, 4H, 4W, dim / 4)."""

    def __init__(self, dim: int, dim_scale: int = 4, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % dim_scale:
            raise ValueError(f"FinalPatchExpand2D: dim {dim} must be divisible by dim_scale {dim_scale}.")
        self.dim_scale = dim_scale
        self.expand = nn.Linear(dim, dim_scale * dim, bias=False)
        self.norm = nn.LayerNorm(dim // dim_scale, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_unshuffle_last(self.expand(x), self.dim_scale))


class VSSLayer(nn.Module):
    """Encoder stage: ``depth`` VSS blocks, then optionally a :class:`PatchMerging2D` (attribute ``downsample``).

    Args:
        dim: channels.
        depth: number of VSS blocks.
        drop_path: one stochastic-depth rate per block.
        downsample: add a PatchMerging2D at the end.
        norm_eps, d_state, scan_backend: passed to the blocks.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        downsample: bool,
        norm_eps: float = 1e-5,
        d_state: int = 16,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if len(drop_path) != depth:
            raise ValueError(f"VSSLayer: need one drop_path rate per block ({depth}); got {len(drop_path)}.")
        self.blocks = nn.ModuleList(
            VSSBlock(dim, drop_path=float(dp), norm_eps=norm_eps, d_state=d_state, scan_backend=scan_backend)
            for dp in drop_path
        )
        self.downsample = PatchMerging2D(dim, norm_eps=norm_eps) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class VSSLayerUp(nn.Module):
    """Decoder stage: optionally a :class:`PatchExpand2D` (attribute ``upsample``), then ``depth`` VSS blocks.

    Args as :class:`VSSLayer`, with ``upsample`` instead of ``downsample``; with upsampling, the input has 2·dim
    channels at half the resolution.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        upsample: bool,
        norm_eps: float = 1e-5,
        d_state: int = 16,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if len(drop_path) != depth:
            raise ValueError(f"VSSLayerUp: need one drop_path rate per block ({depth}); got {len(drop_path)}.")
        self.upsample = PatchExpand2D(dim, norm_eps=norm_eps) if upsample else None
        self.blocks = nn.ModuleList(
            VSSBlock(dim, drop_path=float(dp), norm_eps=norm_eps, d_state=d_state, scan_backend=scan_backend)
            for dp in drop_path
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x
