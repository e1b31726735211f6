# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Vision-LSTM (ViL) blocks: the mLSTM token mixer of xLSTM-UNet.

Follows ViL v1 (Alkin et al. 2024, https://arxiv.org/abs/2406.04303), the version xLSTM-UNet uses: a pre-norm residual
block around a gated mLSTM layer with expansion 2, a causal depthwise conv, block-diagonal q/k/v projections and
``qkv_block_size`` mLSTM heads. Parameter names match ViL's, so its checkpoints load.

- :class:`ViLBlock` mixes a token sequence (B, S, D).
- :class:`SpatialViL` applies one ViLBlock to a feature map (B, C, *spatial), with image patches ("patch tokens") or
  channels ("channel tokens") as the sequence, as xLSTM-UNet does.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from xlstm_seg_kernels import mlstm

from .checkpointing import run_checkpointed

__all__ = [
    "CausalConv1d",
    "LinearHeadwiseExpand",
    "MultiHeadLayerNorm",
    "ResidualLayerNorm",
    "MatrixLSTMCell",
    "ViLLayer",
    "ViLBlock",
    "SpatialViL",
    "VIL_DIRECTIONS",
    "TOKEN_ORDERS",
    "reverse_spatial_axes",
]

# "forward" reads tokens row-major from the first voxel (ViL's rowwise_from_top_left); "backward" reads them
# reversed (rowwise_from_bot_right).
VIL_DIRECTIONS = ("forward", "backward")

# How a feature map (B, C, *spatial) is flattened into tokens. "last_axis_fastest": row-major in the tensor's own axis
# order (C order; for a MONAI-loaded (x, y, z) volume, z runs fastest). "first_axis_fastest": the spatial axes read in
# reverse (Fortran order), which is the official xLSTM-UNet order when the tensor is (x, y, z): nnU-Net's arrays are
# (z, y, x) and the official code flattens them row-major, so x runs fastest.
TOKEN_ORDERS = ("last_axis_fastest", "first_axis_fastest")


def reverse_spatial_axes(x: torch.Tensor) -> torch.Tensor:
    """(B, C, d1, ..., dn) -> (B, C, dn, ..., d1); its own inverse."""
    return x.permute(0, 1, *range(x.ndim - 1, 1, -1))


def _small_init_(weight: torch.Tensor, dim: int) -> None:
    """Nguyen & Salazar's 'small init', std sqrt(2 / (5 dim)), as ViL uses for its input projections."""
    nn.init.normal_(weight, mean=0.0, std=math.sqrt(2 / (5 * dim)))


def _wang_init_(weight: torch.Tensor, dim: int, num_blocks: int = 1) -> None:
    """'Wang init', std 2 / (num_blocks sqrt(dim)), as ViL uses for its output projection."""
    nn.init.normal_(weight, mean=0.0, std=2 / num_blocks / math.sqrt(dim))


class ResidualLayerNorm(nn.Module):
    """LayerNorm whose scale is parametrised as ``1 + weight`` (weight starts at 0) and with no bias, as in ViL."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), weight=1.0 + self.weight, bias=None, eps=self.eps)


class MultiHeadLayerNorm(nn.Module):
    """Per-head normalisation of the mLSTM output: (B, NH, S, DH) -> (B, S, NH * DH); scale ``1 + weight``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, heads, seq, head_dim = x.shape
        x = x.transpose(1, 2).reshape(batch * seq, heads * head_dim)
        x = F.group_norm(x, num_groups=heads, weight=1.0 + self.weight, bias=None, eps=self.eps)
        return x.view(batch, seq, heads * head_dim)


class CausalConv1d(nn.Module):
    """Depthwise conv over the sequence that sees only the current and earlier tokens: (B, S, C) -> (B, S, C)."""

    def __init__(self, dim: int, kernel_size: int = 4) -> None:
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=self.pad, groups=dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.pad:
            y = y[..., : -self.pad]
        return y.transpose(1, 2)


class LinearHeadwiseExpand(nn.Module):
    """Block-diagonal linear map: the features split into ``num_heads`` groups, each with its own square matrix."""

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"LinearHeadwiseExpand: dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        block = dim // num_heads
        self.weight = nn.Parameter(torch.empty(num_heads, block, block))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        _small_init_(self.weight, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.view(*shape[:-1], self.num_heads, -1)
        x = torch.einsum("...hd,hod->...ho", x, self.weight).reshape(shape)
        return x if self.bias is None else x + self.bias


class MatrixLSTMCell(nn.Module):
    """Gates + mLSTM + per-head norm: q, k, v (B, S, E) -> h (B, S, E).

    The gate pre-activations come from ``cat(q, k, v)``; the forget-gate biases start at linspace(3, 6) so the cell
    remembers at initialisation.
    """

    def __init__(self, dim: int, num_heads: int, mlstm_backend: str = "auto", chunk_size: int = 64) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.mlstm_backend = mlstm_backend
        self.chunk_size = chunk_size
        self.igate = nn.Linear(3 * dim, num_heads)
        self.fgate = nn.Linear(3 * dim, num_heads)
        self.outnorm = MultiHeadLayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, mean=0.0, std=0.1)
        nn.init.zeros_(self.outnorm.weight)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = q.shape
        gate_input = torch.cat([q, k, v], dim=-1)
        igate = self.igate(gate_input).transpose(1, 2)  # (B, NH, S)
        fgate = self.fgate(gate_input).transpose(1, 2)
        q, k, v = (t.view(batch, seq, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        h = mlstm(q, k, v, igate, fgate, backend=self.mlstm_backend, chunk_size=self.chunk_size)
        return self.outnorm(h)


class ViLLayer(nn.Module):
    """Gated mLSTM layer of ViL v1: (B, S, D) -> (B, S, D), with inner width ``expansion * D``.

    ``x_m, z = proj_up(x)``; ``x_c = SiLU(causal_conv(x_m))``; ``h = mLSTM(q(x_c), k(x_c), v(x_m))``;
    ``y = proj_down((h + skip * x_c) * SiLU(z))``. For ``direction="backward"`` the sequence is read reversed.
    ``num_heads`` (mLSTM heads) defaults to ``qkv_block_size``, as in ViL.
    """

    def __init__(
        self,
        dim: int,
        direction: str = "forward",
        expansion: float = 2,
        qkv_block_size: int = 4,
        conv_kernel_size: int = 4,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
        num_heads: int | None = None,
    ) -> None:
        super().__init__()
        if direction not in VIL_DIRECTIONS:
            raise ValueError(f"ViLLayer: direction must be one of {VIL_DIRECTIONS}; got {direction!r}.")
        inner = int(round(expansion * dim))
        if inner % qkv_block_size:
            raise ValueError(f"ViLLayer: inner width {inner} is not divisible by qkv_block_size {qkv_block_size}.")
        self.dim = dim
        self.direction = direction
        self.proj_up = nn.Linear(dim, 2 * inner, bias=False)
        num_proj_heads = inner // qkv_block_size
        self.q_proj = LinearHeadwiseExpand(inner, num_proj_heads)
        self.k_proj = LinearHeadwiseExpand(inner, num_proj_heads)
        self.v_proj = LinearHeadwiseExpand(inner, num_proj_heads)
        self.conv1d = CausalConv1d(inner, conv_kernel_size)
        # ViL ties the number of mLSTM heads to the q/k/v block size (4 heads of size dim/2 by default); the xLSTM
        # paper's mLSTM layer (blocks/xlstm.py) sets them apart.
        num_heads = qkv_block_size if num_heads is None else num_heads
        self.mlstm_cell = MatrixLSTMCell(inner, num_heads=num_heads, mlstm_backend=mlstm_backend, chunk_size=chunk_size)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _small_init_(self.proj_up.weight, self.dim)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            _small_init_(proj.weight, self.dim)  # ViL uses the embedding dim here, not the block size
        _wang_init_(self.proj_down.weight, self.dim)
        nn.init.ones_(self.learnable_skip)
        self.mlstm_cell.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.direction == "backward":
            x = x.flip(1)
        x_mlstm, z = self.proj_up(x).chunk(2, dim=-1)
        x_conv = F.silu(self.conv1d(x_mlstm))
        h = self.mlstm_cell(self.q_proj(x_conv), self.k_proj(x_conv), self.v_proj(x_mlstm))
        y = self.proj_down((h + self.learnable_skip * x_conv) * F.silu(z))
        if self.direction == "backward":
            y = y.flip(1)
        return y


class ViLBlock(nn.Module):
    """Pre-norm residual ViL block: ``x + ViLLayer(LayerNorm(x))`` on tokens (B, S, D) -> (B, S, D).

    Args:
        dim: token width D.
        direction: ``"forward"`` or ``"backward"`` (reversed) token order.
        qkv_block_size: block size of the q/k/v projections and number of mLSTM heads. Default: 4.
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm`. Default: ``"auto"``.
        chunk_size: chunk length of the chunkwise/Triton mLSTM. Default: 64.
        drop_path: stochastic-depth rate on the residual branch. Default: 0.
    """

    def __init__(
        self,
        dim: int,
        direction: str = "forward",
        qkv_block_size: int = 4,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = ResidualLayerNorm(dim)
        self.layer = ViLLayer(
            dim, direction=direction, qkv_block_size=qkv_block_size, mlstm_backend=mlstm_backend, chunk_size=chunk_size
        )
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.layer(self.norm(x))
        if self.training and self.drop_path > 0:
            keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.drop_path)
            branch = branch * keep / (1 - self.drop_path)
        return x + branch


class SpatialViL(nn.Module):
    """One :class:`ViLBlock` on a feature map: (B, C, *spatial) -> (B, C, *spatial).

    In ``"patch"`` token mode every voxel is a token of width C, read row-major (the last spatial axis fastest; see
    ``token_order``). In ``"channel"`` mode every channel is a token whose features are its flattened map (flattened
    in the same ``token_order``); xLSTM-UNet's Enc variant uses it where the map has fewer voxels than channels, so
    ``dim`` is then ``prod(spatial)`` and fixed by the patch size.

    The block runs in its parameters' precision (float32) even under autocast, as the official code does: the
    exponential gating is the numerically delicate part of the network.

    Args:
        dim: token width (C in patch mode, prod(spatial) in channel mode).
        token_mode: ``"patch"`` or ``"channel"``.
        direction: token order, ``"forward"`` or ``"backward"``.
        qkv_block_size: q/k/v block size and number of mLSTM heads. ``None`` applies the official rule: 4, or 2
            when ``dim % 4 != 0`` (channel-token dims such as 25 or 210).
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm`.
        chunk_size: chunk length of the chunkwise/Triton mLSTM.
        official_unused_norm: add the official wrapper's LayerNorm, which it creates but never applies (2·dim
            parameters). Only for parameter/state-dict parity; it also makes DDP complain about unused parameters.
        token_order: ``"last_axis_fastest"`` (default: row-major in the tensor's axis order) or
            ``"first_axis_fastest"`` (equals the default applied to the input with its spatial axes reversed; the
            official order for (x, y, z) tensors, see :data:`TOKEN_ORDERS`).
        checkpoint: recompute the block in the backward pass instead of storing its activations.
    """

    def __init__(
        self,
        dim: int,
        token_mode: str = "patch",
        direction: str = "forward",
        qkv_block_size: int | None = None,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
        official_unused_norm: bool = False,
        token_order: str = "last_axis_fastest",
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if token_mode not in ("patch", "channel"):
            raise ValueError(f"SpatialViL: token_mode must be 'patch' or 'channel'; got {token_mode!r}.")
        if token_order not in TOKEN_ORDERS:
            raise ValueError(f"SpatialViL: token_order must be one of {TOKEN_ORDERS}; got {token_order!r}.")
        self.token_order = token_order
        self.checkpoint = checkpoint
        if qkv_block_size is None:
            qkv_block_size = 4 if dim % 4 == 0 else 2
        self.dim = dim
        self.token_mode = token_mode
        if official_unused_norm:
            self.norm = nn.LayerNorm(dim)
        self.vil = ViLBlock(
            dim, direction=direction, qkv_block_size=qkv_block_size, mlstm_backend=mlstm_backend, chunk_size=chunk_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if self.token_mode == "patch" and shape[1] != self.dim:
            raise ValueError(f"SpatialViL: expected {self.dim} channels, got {shape[1]} (input {tuple(shape)}).")
        if self.token_mode == "channel" and math.prod(shape[2:]) != self.dim:
            raise ValueError(
                f"SpatialViL: this channel-token layer was built for feature maps of {self.dim} voxels, got "
                f"{tuple(shape[2:])} = {math.prod(shape[2:])}. Channel-token layers fix the input size: feed patches "
                "of the network's patch_size (sliding-window inference does this)."
            )
        return run_checkpointed(self.checkpoint, self._mix, x)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        first_axis_fastest = self.token_order == "first_axis_fastest"
        if first_axis_fastest:
            x = reverse_spatial_axes(x)
        shape = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.to(self.vil.norm.weight.dtype)  # the parameters' dtype: float32 unless the model was cast
            if self.token_mode == "patch":
                y = self.vil(x.flatten(2).transpose(1, 2)).transpose(1, 2)
            else:
                y = self.vil(x.flatten(2))
        y = y.reshape(shape)
        if first_axis_fastest:
            y = reverse_spatial_axes(y)
        return y.to(dtype)
