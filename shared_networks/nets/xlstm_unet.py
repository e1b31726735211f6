# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xLSTM-UNet (Chen et al. 2024, https://arxiv.org/abs/2407.01530), 2D and 3D, Bot and Enc variants."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
from monai.utils import ensure_tuple_rep, look_up_option

from ..blocks.checkpointing import check_checkpointing, run_checkpointed
from ..blocks.residual import IdentityResidualBlock, UpsampleConv, residual_stage
from ..blocks.vil import TOKEN_ORDERS, VIL_DIRECTIONS, SpatialViL
from ..options import check_flag

__all__ = ["XLSTMUNet", "default_block_counts"]

VARIANTS = ("bot", "enc")
VIL_ORDERS = ("forward", "alternate")


def default_block_counts(n_stages: int) -> tuple[list[int], list[int]]:
    """Residual blocks per encoder and decoder stage as the official networks override them.

    Encoder: 2 blocks in the first ``ceil(n/2)`` stages, 1 after. Decoder (lowest resolution first): 2 blocks, then 1
    from index ``ceil((n-1)/2 + 0.5)``. n=7 gives [2,2,2,2,1,1,1] and [2,2,2,2,1,1].
    """
    encoder = [2 if s < math.ceil(n_stages / 2) else 1 for s in range(n_stages)]
    first_single = math.ceil((n_stages - 1) / 2 + 0.5)
    decoder = [2 if j < first_single else 1 for j in range(n_stages - 1)]
    return encoder, decoder


def _he_init(module: nn.Module) -> None:
    """nnU-Net's InitWeights_He(1e-2) for convolutions; ViL's linear layers and Conv1d keep their own init."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class XLSTMUNet(nn.Module):
    """xLSTM-UNet: an nnU-Net-style residual U-Net with Vision-LSTM (mLSTM) blocks.

    ``variant="bot"`` puts one ViL block on the bottleneck (UXlstmBot); ``variant="enc"`` adds ViL blocks inside the
    encoder (UXlstmEnc): in 3D after every stage from the fourth on (extra residual blocks before), in 2D after stages
    ``s > 1`` with ``s`` odd xor ``n`` odd (an extra residual block after stage 1). Where a stage's map has no more
    voxels than channels, the Enc ViL reads channels as tokens, which ties the network to ``patch_size``.

    Differences from the official code are options whose defaults fix what hurts users; the official behaviour stays
    reachable for parity (docs/architecture.md lists each):

    - ``full_res_skip_2d``: the official 2D decoder never concatenates the full-resolution encoder features (a quirk
      inherited from U-Mamba). Default True uses them; False reproduces the official 2D network.
    - ``official_unused_norm``: the official ViL wrapper creates a LayerNorm it never applies (2·dim parameters per
      ViL, and DDP errors about unused parameters). Default False leaves it out.
    - ``vil_order``: ``"forward"`` (official: every ViL reads tokens from the first voxel) or ``"alternate"``
      (forward/backward per ViL stage, as ViL itself alternates).
    - ``vil_token_order``: how a map is flattened into tokens. Default ``"last_axis_fastest"`` (row-major in the
      tensor's axis order: on MONAI's (x, y, z) volumes z runs fastest). The official code flattens nnU-Net's
      (z, y, x) arrays row-major, so x runs fastest: ``"first_axis_fastest"`` gives that order on (x, y, z) tensors
      (:mod:`shared_networks.official_weights` sets it when it converts official weights to MONAI's axis order).

    ``use_xlstm=False`` is the control run: every ViL block is left out (Bot: no bottleneck ViL; Enc: no ViL after
    the stages, the extra residual blocks stay), the network is otherwise the same, module for module.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output classes (logits, background included).
        variant: ``"bot"`` or ``"enc"``.
        features: channels per stage; nnU-Net's plan gives ``min(32 * 2**s, 512 in 2D / 320 in 3D)``.
        kernel_sizes: conv kernel per stage (int or per-axis sequence each), or one int for all.
        strides: downsampling stride per stage; the first is normally 1 (stage 0 stays at full resolution).
        encoder_blocks: residual blocks per encoder stage; default :func:`default_block_counts`.
        decoder_blocks: residual blocks per decoder stage, lowest resolution first; default as above.
        patch_size: training patch size; required by ``variant="enc"`` (it decides patch or channel tokens).
        deep_supervision: in training mode return one logit map per decoder stage, full resolution first; in eval
            mode always return the full-resolution map only.
        norm: MONAI norm spec. Default: instance norm with affine, eps 1e-5.
        act: MONAI activation spec. Default: LeakyReLU(0.01).
        full_res_skip_2d: see above. Ignored in 3D, where the official decoder already uses every skip.
        official_unused_norm: see above.
        vil_order: see above.
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm` (``"auto"``, ``"chunkwise"``, ``"triton"``, ...).
        mlstm_chunk_size: chunk length of the chunkwise/Triton mLSTM.
        vil_token_order: see above.
        use_xlstm: False builds the same network without any ViL block (the no-xLSTM control).
        activation_checkpointing: ``"none"``, ``"xlstm"`` (recompute each ViL block in the backward pass) or
            ``"stages"`` (recompute every encoder/decoder stage); see :mod:`shared_networks.blocks.checkpointing`.

    Shape:
        input (B, in_channels, *spatial), each spatial size divisible by the product of the strides along that axis;
        output (B, out_channels, *spatial), or a list of ``len(features) - 1`` such maps at decreasing resolution.

    Example::

        >>> net2d = XLSTMUNet(2, 1, 14, features=(32, 64, 128, 256, 512, 512, 512), strides=(1, 2, 2, 2, 2, 2, 2))
        >>> net2d(torch.randn(1, 1, 320, 320)).shape
        torch.Size([1, 14, 320, 320])
        >>> net3d = XLSTMUNet(3, 1, 14, features=(32, 64, 128, 256, 320, 320),
        ...                   strides=(1, (2, 2, 1), 2, 2, 2, (2, 2, 1)))
        >>> net3d(torch.randn(1, 1, 64, 64, 16)).shape
        torch.Size([1, 14, 64, 64, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        variant: str = "bot",
        features: Sequence[int] = (32, 64, 128, 256, 320, 320),
        kernel_sizes: Sequence[Sequence[int] | int] | int = 3,
        strides: Sequence[Sequence[int] | int] = (1, 2, 2, 2, 2, 2),
        encoder_blocks: Sequence[int] | None = None,
        decoder_blocks: Sequence[int] | None = None,
        patch_size: Sequence[int] | None = None,
        deep_supervision: bool = False,
        norm: tuple | str = ("INSTANCE", {"affine": True, "eps": 1e-5}),
        act: tuple | str = ("LEAKYRELU", {"negative_slope": 0.01, "inplace": True}),
        full_res_skip_2d: bool = True,
        official_unused_norm: bool = False,
        vil_order: str = "forward",
        mlstm_backend: str = "auto",
        mlstm_chunk_size: int = 64,
        vil_token_order: str = "last_axis_fastest",
        use_xlstm: bool = True,
        activation_checkpointing: str = "none",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"XLSTMUNet: spatial_dims must be 2 or 3; got {spatial_dims}.")
        self.variant = look_up_option(variant, VARIANTS)
        vil_order = look_up_option(vil_order, VIL_ORDERS)
        vil_token_order = look_up_option(vil_token_order, TOKEN_ORDERS)
        self.use_xlstm = check_flag(use_xlstm, "use_xlstm", "XLSTMUNet")
        self.activation_checkpointing = check_checkpointing(activation_checkpointing, "XLSTMUNet")
        n_stages = len(features)
        if n_stages < 2:
            raise ValueError(f"XLSTMUNet: need at least 2 stages; got features={list(features)}.")
        if isinstance(kernel_sizes, int):
            kernel_sizes = [kernel_sizes] * n_stages
        if len(kernel_sizes) != n_stages or len(strides) != n_stages:
            raise ValueError(
                f"XLSTMUNet: features, kernel_sizes and strides need one entry per stage; got {n_stages}, "
                f"{len(kernel_sizes)} and {len(strides)}."
            )
        kernels = [ensure_tuple_rep(k, spatial_dims) for k in kernel_sizes]
        self.strides = [ensure_tuple_rep(s, spatial_dims) for s in strides]
        default_enc, default_dec = default_block_counts(n_stages)
        encoder_blocks = list(encoder_blocks) if encoder_blocks is not None else default_enc
        decoder_blocks = list(decoder_blocks) if decoder_blocks is not None else default_dec
        if len(encoder_blocks) != n_stages or len(decoder_blocks) != n_stages - 1:
            raise ValueError(
                f"XLSTMUNet: need {n_stages} encoder_blocks and {n_stages - 1} decoder_blocks; got "
                f"{len(encoder_blocks)} and {len(decoder_blocks)}."
            )
        self.spatial_dims = spatial_dims
        self.deep_supervision = check_flag(deep_supervision, "deep_supervision", "XLSTMUNet")
        self.total_stride = tuple(math.prod(s[d] for s in self.strides) for d in range(spatial_dims))
        self.patch_size = tuple(patch_size) if patch_size is not None else None
        features = list(features)

        self.stem = residual_stage(
            spatial_dims, in_channels, features[0], kernels[0], (1,) * spatial_dims, encoder_blocks[0], norm, act
        )
        self.encoder_stages = nn.ModuleList()
        prev = features[0]
        for s in range(n_stages):
            self.encoder_stages.append(
                residual_stage(spatial_dims, prev, features[s], kernels[s], self.strides[s], encoder_blocks[s], norm, act)
            )
            prev = features[s]

        def make_vil(dim: int, token_mode: str, index: int) -> SpatialViL:
            direction = VIL_DIRECTIONS[index % 2] if vil_order == "alternate" else "forward"
            return SpatialViL(
                dim,
                token_mode=token_mode,
                direction=direction,
                mlstm_backend=mlstm_backend,
                chunk_size=mlstm_chunk_size,
                official_unused_norm=official_unused_norm,
                token_order=vil_token_order,
                checkpoint=self.activation_checkpointing == "xlstm",
            )

        # Per-stage extras after each encoder stage (Enc) or one ViL on the bottleneck (Bot).
        self.encoder_extras = nn.ModuleList()
        self.bottleneck_vil: nn.Module = nn.Identity()
        if self.variant == "bot":
            if self.use_xlstm:
                self.bottleneck_vil = make_vil(features[-1], "patch", 0)
        else:
            if self.patch_size is None and self.use_xlstm:
                raise ValueError("XLSTMUNet: variant='enc' needs patch_size (it decides patch vs channel tokens).")
            if self.patch_size is not None:
                self.patch_size = ensure_tuple_rep(self.patch_size, spatial_dims)
            map_size = list(self.patch_size or (0,) * spatial_dims)
            vil_index = 0
            for s in range(n_stages):
                map_size = [m // st for m, st in zip(map_size, self.strides[s])]
                if spatial_dims == 3:
                    wants_vil, extra_block = s >= 3, s < 3
                else:
                    wants_vil, extra_block = s > 1 and ((s % 2 == 1) != (n_stages % 2 == 1)), s == 1
                if wants_vil and not self.use_xlstm:
                    self.encoder_extras.append(nn.Identity())
                elif wants_vil:
                    n_voxels = math.prod(map_size)
                    channel_tokens = n_voxels <= features[s]
                    dim = n_voxels if channel_tokens else features[s]
                    self.encoder_extras.append(make_vil(dim, "channel" if channel_tokens else "patch", vil_index))
                    vil_index += 1
                elif extra_block:
                    self.encoder_extras.append(IdentityResidualBlock(spatial_dims, features[s], kernels[s], norm, act))
                else:
                    self.encoder_extras.append(nn.Identity())

        # Decoder: stage j (0 = lowest resolution) upsamples to encoder stage n-2-j and fuses its skip.
        self.skip_used = [True] * (n_stages - 1)
        if spatial_dims == 2 and not check_flag(full_res_skip_2d, "full_res_skip_2d", "XLSTMUNet"):
            self.skip_used[-1] = False
        self.upsamples = nn.ModuleList()
        self.decoder_stages = nn.ModuleList()
        self.heads = nn.ModuleList()
        for j in range(n_stages - 1):
            below, skip = features[n_stages - 1 - j], features[n_stages - 2 - j]
            self.upsamples.append(UpsampleConv(spatial_dims, below, skip, self.strides[n_stages - 1 - j]))
            cin = 2 * skip if self.skip_used[j] else skip
            k = kernels[n_stages - 2 - j]
            self.decoder_stages.append(
                residual_stage(spatial_dims, cin, skip, k, (1,) * spatial_dims, decoder_blocks[j], norm, act)
            )
            self.heads.append(nn.Conv3d(skip, out_channels, 1) if spatial_dims == 3 else nn.Conv2d(skip, out_channels, 1))
        self.apply(_he_init)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"XLSTMUNet: expected a (B, C, {'H, W' if self.spatial_dims == 2 else 'H, W, D'}) tensor; "
                f"got shape {tuple(x.shape)}."
            )
        bad = [(size, div) for size, div in zip(x.shape[2:], self.total_stride) if size % div]
        if bad:
            raise ValueError(
                f"XLSTMUNet: spatial size {tuple(x.shape[2:])} must be divisible by the total stride "
                f"{self.total_stride} along each axis."
            )
        bottleneck = tuple(size // div for size, div in zip(x.shape[2:], self.total_stride))
        if math.prod(bottleneck) < 2:  # instance norm's own error would not say which size to use
            raise ValueError(
                f"XLSTMUNet: spatial size {tuple(x.shape[2:])} leaves a bottleneck of {bottleneck} (total stride "
                f"{self.total_stride}): instance norm needs more than 1 voxel there. Use at least twice the total "
                "stride along one axis (a metadata spatial_shape of '64*n' where the stride is 32)."
            )

    def _encoder_step(self, s: int, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder_stages[s](x)
        return self.encoder_extras[s](x) if self.variant == "enc" else x

    def _decoder_step(self, j: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upsamples[j](x)
        if self.skip_used[j]:
            x = torch.cat([x, skip], dim=1)
        return self.decoder_stages[j](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        by_stage = self.activation_checkpointing == "stages"
        x = run_checkpointed(by_stage, self.stem, x)
        skips = []
        for s in range(len(self.encoder_stages)):
            x = run_checkpointed(by_stage, partial(self._encoder_step, s), x)
            skips.append(x)
        x = run_checkpointed(by_stage and self.variant == "bot" and self.use_xlstm, self.bottleneck_vil, skips[-1])
        outputs = []
        for j in range(len(self.decoder_stages)):
            x = run_checkpointed(by_stage, partial(self._decoder_step, j), x, skips[-(j + 2)])
            if self.deep_supervision and self.training:
                outputs.append(self.heads[j](x))
        if self.deep_supervision and self.training:
            return outputs[::-1]
        return self.heads[-1](x)
