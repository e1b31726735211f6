# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""nnU-Net-style residual blocks of the xLSTM-UNet / U-Mamba encoder and decoder, for 2D and 3D.

- :class:`ResidualBlock`: conv-norm-act-conv-norm plus a strided 1×1 conv shortcut, then act (U-Mamba's
  ``BasicResBlock``); it changes width and resolution.
- :class:`IdentityResidualBlock`: the same with an identity shortcut (dynamic-network-architectures' ``BasicBlockD``
  at stride 1).
- :class:`UpsampleConv`: nearest-neighbour upsampling then a 1×1 conv (U-Mamba's ``UpsampleLayer``).

All convs carry a bias, as the official plans set ``conv_bias=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

__all__ = ["ResidualBlock", "IdentityResidualBlock", "UpsampleConv", "residual_stage"]


def _padding(kernel_size: Sequence[int]) -> tuple[int, ...]:
    return tuple(k // 2 for k in kernel_size)


class ResidualBlock(nn.Module):
    """``act(norm(conv(act(norm(conv_s(x))))) + conv1x1_s(x))``: (B, C_in, *S) -> (B, C_out, *S / stride)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        norm: tuple | str,
        act: tuple | str,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(in_channels, out_channels, kernel_size, stride=stride, padding=_padding(kernel_size))
        self.norm1 = get_norm_layer(norm, spatial_dims, out_channels)
        self.act1 = get_act_layer(act)
        self.conv2 = conv(out_channels, out_channels, kernel_size, padding=_padding(kernel_size))
        self.norm2 = get_norm_layer(norm, spatial_dims, out_channels)
        self.shortcut = conv(in_channels, out_channels, 1, stride=stride)
        self.act2 = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class IdentityResidualBlock(nn.Module):
    """``act(norm(conv(act(norm(conv(x))))) + x)``: (B, C, *S) -> (B, C, *S)."""

    def __init__(self, spatial_dims: int, channels: int, kernel_size: Sequence[int], norm: tuple | str, act: tuple | str):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(channels, channels, kernel_size, padding=_padding(kernel_size))
        self.norm1 = get_norm_layer(norm, spatial_dims, channels)
        self.act1 = get_act_layer(act)
        self.conv2 = conv(channels, channels, kernel_size, padding=_padding(kernel_size))
        self.norm2 = get_norm_layer(norm, spatial_dims, channels)
        self.act2 = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(y)) + x)


def residual_stage(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    num_blocks: int,
    norm: tuple | str,
    act: tuple | str,
) -> nn.Sequential:
    """One :class:`ResidualBlock` (width/resolution change) followed by ``num_blocks - 1`` identity blocks."""
    blocks: list[nn.Module] = [ResidualBlock(spatial_dims, in_channels, out_channels, kernel_size, stride, norm, act)]
    blocks += [IdentityResidualBlock(spatial_dims, out_channels, kernel_size, norm, act) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class UpsampleConv(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` then a 1×1 conv: (B, C_in, *S) -> (B, C_out, *S * scale)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Sequence[int]) -> None:
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
