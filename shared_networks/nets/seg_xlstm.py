# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""SegXLSTM: SegMamba's 3D layout with every Mamba layer replaced by a Vision-LSTM block.

This is our reconstruction of the BraTS network of xLSTM-UNet (Chen et al. 2024, Table II): the paper says its
BraTS experiments follow SegMamba (Xing et al. 2024, https://arxiv.org/abs/2401.13560), but the official repository
ships no BraTS network. Encoder dims 48/96/192/384, depths 2/2/2/2, GSC blocks, UNETR-style decoder, as SegMamba's
code; each ``MambaLayer`` (``x + Mamba(LN(x))``) becomes a :class:`~shared_networks.blocks.vil.ViLBlock`
(``x + ViL(LN(x))``) on the flattened voxels, reading them forward in stages 0 and 2 and backward in stages 1 and 3,
as the unfinished ``VIL3DPatchEncoder`` of the official code intends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock

from ..blocks.checkpointing import check_checkpointing, run_checkpointed
from ..blocks.vil import TOKEN_ORDERS, VIL_DIRECTIONS, ViLBlock, reverse_spatial_axes
from ..options import check_flag

__all__ = ["SegXLSTM", "GSC"]


class GSC(nn.Module):
    """SegMamba's gated spatial convolution block as its code implements it (a sum, not the paper's product):
    ``x + relu(IN(conv1x1(relu(IN(conv3(relu(IN(conv3(x)))))) + relu(IN(conv1x1(x))))))``: (B, C, *S) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()

        def unit(kernel: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(channels, channels, kernel, 1, kernel // 2), nn.InstanceNorm3d(channels),
                                 nn.ReLU())

        self.branch3 = nn.Sequential(unit(3), unit(3))
        self.branch1 = unit(1)
        self.fuse = unit(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.branch3(x) + self.branch1(x))


class _TokenViL(nn.Module):
    """A ViLBlock over the voxels of a (B, C, *S) map, in float32 (as the official ViL wrapper).

    ``token_order`` as :class:`~shared_networks.blocks.vil.SpatialViL`; ``checkpoint`` recomputes the block in the
    backward pass.
    """

    def __init__(self, channels: int, direction: str, mlstm_backend: str, chunk_size: int,
                 token_order: str = "last_axis_fastest", checkpoint: bool = False) -> None:
        super().__init__()
        self.block = ViLBlock(channels, direction=direction, mlstm_backend=mlstm_backend, chunk_size=chunk_size)
        self.first_axis_fastest = token_order == "first_axis_fastest"
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_checkpointed(self.checkpoint, self._mix, x)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if self.first_axis_fastest:
            x = reverse_spatial_axes(x)
        shape = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            tokens = x.to(self.block.norm.weight.dtype).flatten(2).transpose(1, 2)
            y = self.block(tokens).transpose(1, 2).reshape(shape)
        if self.first_axis_fastest:
            y = reverse_spatial_axes(y)
        return y.to(dtype)


class SegXLSTM(nn.Module):
    """SegMamba layout with ViL (mLSTM) token mixers: 3D, any number of input channels and output classes.

    Encoder: stem conv (k7, s2) then, per stage, [downsampling (IN + conv k2 s2) for stages 1-3], a GSC block,
    ``depths[s]`` ViL blocks (stages not in ``vil_stages`` keep their GSC only), and an output branch
    IN -> MLP (1×1 conv, GELU, 1×1 conv) that feeds the decoder. Decoder: MONAI's UNETR blocks (instance norm, residual
    units), a full-resolution branch on the raw input, transposed-conv upsampling and skip concatenation.

    Args:
        in_channels: input modalities. Default: 4 (BraTS).
        out_channels: output channels. Default: 3 (the TC, WT, ET regions, sigmoid).
        dims: encoder widths. Default: (48, 96, 192, 384).
        depths: ViL blocks per stage. Default: (2, 2, 2, 2).
        hidden_size: width of the bottleneck UNETR block. Default: 768.
        vil_stages: stages that carry ViL blocks. Default: all four (faithful); ``(2, 3)`` keeps ViL where sequences
            are at most 16³ tokens for GPUs without the Triton kernels.
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm`; ``"auto"`` runs stage 0's 64³ = 262,144 tokens
            (at a 128³ input) chunkwise, in linear memory.
        mlstm_chunk_size: chunk length of the chunkwise/Triton mLSTM.
        norm_name: MONAI norm of the decoder. Default: ``"instance"``.
        vil_token_order: ``"last_axis_fastest"`` (default: row-major in the tensor's axis order; on MONAI's (x, y, z)
            volumes z runs fastest) or ``"first_axis_fastest"`` (x fastest, the order of the official code on
            nnU-Net's (z, y, x) arrays); see :data:`~shared_networks.blocks.vil.TOKEN_ORDERS`.
        use_xlstm: False builds the no-xLSTM control: no ViL block at any stage (the same as ``vil_stages=()``),
            everything else unchanged.
        activation_checkpointing: ``"none"``, ``"xlstm"`` (recompute each ViL block in the backward pass) or
            ``"stages"`` (recompute each encoder stage and each UNETR block); see
            :mod:`shared_networks.blocks.checkpointing`.

    Shape:
        input (B, in_channels, H, W, D) with each size divisible by 16, larger than 16³ in total; output (B, out_channels, H, W, D) logits.

    Example::

        >>> net = SegXLSTM(4, 3)
        >>> net(torch.randn(1, 4, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        dims: Sequence[int] = (48, 96, 192, 384),
        depths: Sequence[int] = (2, 2, 2, 2),
        hidden_size: int = 768,
        vil_stages: Sequence[int] = (0, 1, 2, 3),
        mlstm_backend: str = "auto",
        mlstm_chunk_size: int = 64,
        norm_name: str | tuple = "instance",
        vil_token_order: str = "last_axis_fastest",
        use_xlstm: bool = True,
        activation_checkpointing: str = "none",
    ) -> None:
        super().__init__()
        if vil_token_order not in TOKEN_ORDERS:
            raise ValueError(f"SegXLSTM: vil_token_order must be one of {TOKEN_ORDERS}; got {vil_token_order!r}.")
        self.activation_checkpointing = check_checkpointing(activation_checkpointing, "SegXLSTM")
        self.use_xlstm = check_flag(use_xlstm, "use_xlstm", "SegXLSTM")
        dims, depths = list(dims), list(depths)
        if len(dims) != 4 or len(depths) != 4:
            raise ValueError(f"SegXLSTM: dims and depths need 4 entries; got {dims} and {depths}.")
        bad = [s for s in vil_stages if s not in range(4)]
        if bad:
            raise ValueError(f"SegXLSTM: vil_stages must be in 0..3; got {list(vil_stages)}.")
        self.vil_stages = tuple(vil_stages) if self.use_xlstm else ()
        checkpoint_vil = self.activation_checkpointing == "xlstm"
        self.downsample = nn.ModuleList([nn.Conv3d(in_channels, dims[0], 7, 2, 3)])
        for s in range(1, 4):
            self.downsample.append(nn.Sequential(nn.InstanceNorm3d(dims[s - 1]), nn.Conv3d(dims[s - 1], dims[s], 2, 2)))
        self.gsc = nn.ModuleList([GSC(d) for d in dims])
        self.vil = nn.ModuleList(
            [
                nn.Sequential(*[
                    _TokenViL(dims[s], VIL_DIRECTIONS[s % 2], mlstm_backend, mlstm_chunk_size, vil_token_order,
                              checkpoint_vil) for _ in range(depths[s])
                ]) if s in self.vil_stages else nn.Identity()
                for s in range(4)
            ]
        )
        self.out_norm = nn.ModuleList([nn.InstanceNorm3d(d) for d in dims])
        self.out_mlp = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(d, 2 * d, 1), nn.GELU(), nn.Conv3d(2 * d, d, 1)) for d in dims]
        )
        block = dict(spatial_dims=3, kernel_size=3, norm_name=norm_name, res_block=True)
        self.encoder1 = UnetrBasicBlock(in_channels=in_channels, out_channels=dims[0], stride=1, **block)
        self.encoder2 = UnetrBasicBlock(in_channels=dims[0], out_channels=dims[1], stride=1, **block)
        self.encoder3 = UnetrBasicBlock(in_channels=dims[1], out_channels=dims[2], stride=1, **block)
        self.encoder4 = UnetrBasicBlock(in_channels=dims[2], out_channels=dims[3], stride=1, **block)
        self.encoder5 = UnetrBasicBlock(in_channels=dims[3], out_channels=hidden_size, stride=1, **block)
        up = dict(upsample_kernel_size=2, **block)
        self.decoder5 = UnetrUpBlock(in_channels=hidden_size, out_channels=dims[3], **up)
        self.decoder4 = UnetrUpBlock(in_channels=dims[3], out_channels=dims[2], **up)
        self.decoder3 = UnetrUpBlock(in_channels=dims[2], out_channels=dims[1], **up)
        self.decoder2 = UnetrUpBlock(in_channels=dims[1], out_channels=dims[0], **up)
        self.decoder1 = UnetrBasicBlock(in_channels=dims[0], out_channels=dims[0], stride=1, **block)
        self.out = UnetOutBlock(spatial_dims=3, in_channels=dims[0], out_channels=out_channels)

    def _encoder_stage(self, s: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.vil[s](self.gsc[s](self.downsample[s](x)))
        return x, self.out_mlp[s](self.out_norm[s](x))

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four encoder outputs at 1/2, 1/4, 1/8 and 1/16 of the input size."""
        by_stage = self.activation_checkpointing == "stages"
        outs = []
        for s in range(4):
            x, out = run_checkpointed(by_stage, partial(self._encoder_stage, s), x)
            outs.append(out)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the bottleneck is 1/16 of the input and its instance norm needs more than one voxel
        if x.ndim != 5 or any(size % 16 for size in x.shape[2:]) or math.prod(x.shape[2:]) <= 16**3:
            raise ValueError(f"SegXLSTM: expected (B, C, H, W, D) with sizes divisible by 16 and larger than "
                             f"16x16x16 in total; got {tuple(x.shape)}.")
        outs = self.encode(x)

        def run(block: nn.Module, *args: torch.Tensor) -> torch.Tensor:
            return run_checkpointed(self.activation_checkpointing == "stages", block, *args)

        enc1 = run(self.encoder1, x)
        enc2, enc3, enc4 = run(self.encoder2, outs[0]), run(self.encoder3, outs[1]), run(self.encoder4, outs[2])
        hidden = run(self.encoder5, outs[3])
        dec = run(self.decoder5, hidden, enc4)
        dec = run(self.decoder4, dec, enc3)
        dec = run(self.decoder3, dec, enc2)
        dec = run(self.decoder2, dec, enc1)
        return self.out(run(self.decoder1, dec))


