# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""XLSTM-VMUNet (Fang et al. 2024, https://arxiv.org/abs/2411.09363) as the paper describes it.

VM-UNet whose multi-scale VSSM features are also read as token sequences by an xLSTM (sLSTM then mLSTM blocks, Beck
et al. 2024), the result fused with the VSSM feature by learnable weights: ``alpha · F_vssm + beta · xLSTM(F_vssm)``.
The released code instead appends a small xLSTM head to the logits that runs its recurrence across the images of a
mini-batch (ARCHITECTURE.md §3.3); that head is not reproduced (docs/xlstm_vmunet.md explains why).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.utils import look_up_option

from ..blocks.checkpointing import check_checkpointing, run_checkpointed
from ..blocks.xlstm import FORGET_GATES, XLSTMStack
from ..options import check_flag
from .vm_unet import VMUNet

__all__ = ["XLSTMVMUNet", "XLSTMFeatureFusion", "XLSTM_BLOCK_CHOICES", "DEFAULT_XLSTM_SCALES"]

# "none": VM-UNet (ablation version 1 of the paper's Table 2); "s", "m": one block kind; "sm": sLSTM then mLSTM.
XLSTM_BLOCK_CHOICES = ("sm", "s", "m", "none")
# The skips at H/16 (384 ch, 256 tokens at 256²) and H/8 (192 ch, 1,024 tokens): see XLSTMVMUNet.
DEFAULT_XLSTM_SCALES = (2, 3)


class XLSTMFeatureFusion(nn.Module):
    """``alpha · x + beta · XLSTMStack(tokens(x))`` on a channels-last map (B, H, W, C) -> (B, H, W, C).

    The tokens are the H·W positions in row-major order (index h·W + w), each a C-vector. ``alpha`` and ``beta`` are
    learnable scalars.

    Args:
        dim: channels C.
        blocks: block string of :class:`~shared_networks.blocks.xlstm.XLSTMStack` (``"sm"``, ``"s"``, ``"m"``).
        alpha_init: initial alpha. Default: 1.
        beta_init: initial beta. Default: 0.
        stack_kwargs: passed to :class:`~shared_networks.blocks.xlstm.XLSTMStack`.
    """

    def __init__(self, dim: int, blocks: str, alpha_init: float = 1.0, beta_init: float = 0.0, **stack_kwargs) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))
        self.xlstm = XLSTMStack(dim, blocks, **stack_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        seq = self.xlstm(x.reshape(batch, height * width, channels)).view(batch, height, width, channels)
        return self.alpha * x + self.beta * seq


class XLSTMVMUNet(VMUNet):
    """XLSTM-VMUNet: VM-UNet plus xLSTM sequence modelling of its multi-scale features, fused by learnable α/β.

    At every selected scale, the encoder feature F (B, H_s, W_s, C_s) that VM-UNet hands to its decoder is replaced
    by ``α_s · F + β_s · xLSTM_s(F)``, where ``xLSTM_s`` reads the H_s·W_s positions in row-major order as a sequence
    through an sLSTM block then an mLSTM block (:class:`~shared_networks.blocks.xlstm.XLSTMStack`). Scales are
    numbered by the decoder layer that consumes the feature (default dims, 256² input):

    =====  ==============================  ===========  ========  =============================
    scale  feature                         map          channels  params added by ``"sm"``
    =====  ==============================  ===========  ========  =============================
    0      bottleneck (encoder output)     8×8 = 64     768       7,153,930
    1      skip, input of encoder layer 3  8×8 = 64     768       7,153,930
    2      skip, input of encoder layer 2  16×16 = 256  384       1,807,498
    3      skip, input of encoder layer 1  32×32 = 1024 192       461,386
    =====  ==============================  ===========  ========  =============================

    **Default scales (2, 3)**: the paper models the VSSM's features at several scales; the two finest skips the decoder
    consumes carry the boundary detail of skin lesions and are the longest sequences (256 and 1,024 tokens), where
    sequence modelling adds most over the 8×8 maps. They add 2.27 M parameters (8 %) and about 10 % to a CPU training
    step at batch 8 (the xLSTM parts alone: ~3.6 s forward + backward on one thread, the sLSTM being a sequential loop
    of 1,280 steps; docs/xlstm_vmunet.md §6), while each 8×8 scale would add 7.15 M parameters (26 %) for 64 tokens. ``xlstm_scales=(0, 1, 2, 3)`` models every decoder input.

    **α/β init (1, 0)**: the network starts as VM-UNet exactly (same output for the same backbone weights), so VMamba
    pretrained weights and VM-UNet's recipe start from a known point, and the xLSTM branch is blended in as β is
    learned (β receives a gradient ⟨∂L/∂F', xLSTM(F)⟩ from the first step; the xLSTM weights from the moment β ≠ 0).

    ``use_xlstm=False`` (or ``xlstm_blocks="none"``) builds no xLSTM part and no α/β: the same parameters, state dict
    and output as :class:`VMUNet` (ablation version 1, the no-xLSTM control). Predictions are batch-invariant: every op acts on one image (the official
    head's recurrence over the batch is not used). The xLSTM parts run in float32 even under autocast.

    Args:
        in_channels, out_channels, depths, depths_decoder, dims, d_state, drop_path_rate, patch_size, norm_eps,
            scan_backend: as :class:`VMUNet`.
        xlstm_blocks: ``"sm"`` (sLSTM then mLSTM, the paper's model), ``"s"``, ``"m"`` or ``"none"``. Default ``"sm"``.
        xlstm_scales: scales (0 .. len(dims) - 1, see the table) that get the xLSTM. Default: (2, 3).
        slstm_heads: sLSTM heads (block-diagonal recurrence). Default: 4.
        mlstm_heads: mLSTM heads. Default: 4.
        slstm_forget_gate: ``"sigmoid"`` or ``"exp"``. Default: ``"sigmoid"``.
        alpha_init: initial α of every scale. Default: 1.
        beta_init: initial β of every scale. Default: 0.
        mlstm_backend: :func:`xlstm_seg_kernels.mlstm` backend. Default: ``"auto"``.
        mlstm_chunk_size: chunk length of the chunkwise/Triton mLSTM. Default: 64.
        xlstm_drop_path: stochastic-depth rate inside the xLSTM blocks. Default: 0.
        use_xlstm: False gives the no-xLSTM control, exactly :class:`VMUNet` (the same as ``xlstm_blocks="none"``).
        activation_checkpointing: ``"none"``, ``"xlstm"`` (recompute each scale's xLSTM fusion in the backward pass)
            or ``"stages"`` (also every VSS layer); see :mod:`shared_networks.blocks.checkpointing`.

    Shape:
        input (B, in_channels or 1, H, W), H and W divisible by 32 (default); output (B, out_channels, H, W) logits.

    Example::

        >>> net = XLSTMVMUNet()                                   # sLSTM + mLSTM at scales 2 and 3
        >>> net(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 1, 256, 256])
        >>> ablation = XLSTMVMUNet(xlstm_blocks="s")              # Table 2: sLSTM only
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        depths: Sequence[int] = (2, 2, 2, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        dims: Sequence[int] | int = (96, 192, 384, 768),
        d_state: int = 16,
        drop_path_rate: float = 0.2,
        patch_size: int = 4,
        norm_eps: float = 1e-5,
        scan_backend: str = "auto",
        xlstm_blocks: str = "sm",
        xlstm_scales: Sequence[int] = DEFAULT_XLSTM_SCALES,
        slstm_heads: int = 4,
        mlstm_heads: int = 4,
        slstm_forget_gate: str = "sigmoid",
        alpha_init: float = 1.0,
        beta_init: float = 0.0,
        mlstm_backend: str = "auto",
        mlstm_chunk_size: int = 64,
        xlstm_drop_path: float = 0.0,
        use_xlstm: bool = True,
        activation_checkpointing: str = "none",
    ) -> None:
        check_checkpointing(activation_checkpointing, "XLSTMVMUNet")
        # the backbone first, so that a seeded XLSTMVMUNet has the same backbone weights as a seeded VMUNet
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            depths=depths,
            depths_decoder=depths_decoder,
            dims=dims,
            d_state=d_state,
            drop_path_rate=drop_path_rate,
            patch_size=patch_size,
            norm_eps=norm_eps,
            scan_backend=scan_backend,
            activation_checkpointing=activation_checkpointing,
        )
        self.checkpoint_xlstm = activation_checkpointing in ("xlstm", "stages")
        self.xlstm_blocks = look_up_option(xlstm_blocks, XLSTM_BLOCK_CHOICES) \
            if check_flag(use_xlstm, "use_xlstm", "XLSTMVMUNet") else "none"
        n_scales = len(self.dims)
        scales = [int(s) for s in xlstm_scales]
        if len(set(scales)) != len(scales) or any(not 0 <= s < n_scales for s in scales):
            raise ValueError(
                f"XLSTMVMUNet: xlstm_scales must be distinct integers in 0..{n_scales - 1} (decoder layers); "
                f"got {list(xlstm_scales)}."
            )
        if self.xlstm_blocks != "none" and not scales:
            raise ValueError("XLSTMVMUNet: xlstm_scales is empty; use xlstm_blocks='none' for plain VM-UNet.")
        look_up_option(slstm_forget_gate, FORGET_GATES)
        self.xlstm_scales = tuple(sorted(scales)) if self.xlstm_blocks != "none" else ()
        self.fusions = nn.ModuleDict()
        for scale in self.xlstm_scales:
            self.fusions[str(scale)] = XLSTMFeatureFusion(
                self.decoder_input_channels(scale),
                self.xlstm_blocks,
                alpha_init=alpha_init,
                beta_init=beta_init,
                slstm_heads=slstm_heads,
                mlstm_heads=mlstm_heads,
                forget_gate=slstm_forget_gate,
                mlstm_backend=mlstm_backend,
                chunk_size=mlstm_chunk_size,
                drop_path=xlstm_drop_path,
            )

    def decoder_input(self, stage: int, feature: torch.Tensor) -> torch.Tensor:
        """``α · F + β · xLSTM(F)`` at the selected scales, F otherwise."""
        key = str(stage)
        return run_checkpointed(self.checkpoint_xlstm, self.fusions[key], feature) if key in self.fusions else feature
