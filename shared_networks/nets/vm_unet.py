# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""VM-UNet (Ruan & Xiang 2024, https://arxiv.org/abs/2402.02491) and loading VMamba-S pretrained encoder weights."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..blocks.checkpointing import check_checkpointing, run_checkpointed
from ..blocks.vss import (
    FinalPatchExpand2D,
    PatchEmbed2D,
    VSSLayer,
    VSSLayerUp,
    check_scan_backend,
    vmunet_init_,
)

__all__ = ["VMUNet", "PretrainedLoadReport", "load_vmamba_pretrained"]

logger = logging.getLogger(__name__)


def _linspace(stop: float, count: int) -> list[float]:
    return [float(v) for v in torch.linspace(0, stop, count)] if count > 0 else []


class VMUNet(nn.Module):
    """VM-UNet: a U-shaped network of visual state-space (VSS) blocks, as the official VSSM is instantiated.

    Layout (ARCHITECTURE.md §3.2; default config = the ISIC setting, 27,427,561 parameters)::

        PatchEmbed2D (Conv 4×4/4 + LN)                                   (B, 3, H, W) -> (B, H/4, W/4, 96)
        encoder layer i = depths[i] VSS blocks (+ PatchMerging2D, i < 3); the input of every layer is a skip
        decoder layer j: j = 0 VSS blocks on the bottleneck; j >= 1: x + skip[-j] (additive), PatchExpand2D, VSS blocks
        FinalPatchExpand2D (×4) -> Conv2d 1×1 -> logits                  (B, out_channels, H, W)

    The skip of layer 0 (the patch-embedding output) is never used, as in the official code. Drop-path rates rise
    linearly over the encoder blocks (0 .. drop_path_rate) and fall over the decoder blocks. Initialisation: Linear
    trunc_normal(0.02) / bias 0, LayerNorm 1 / 0, SS2D's own SSM init (see :class:`~shared_networks.blocks.vss.SS2D`).
    State-dict keys are the official ones (``patch_embed.proj``, ``layers.i.blocks.j.self_attention.in_proj``, ...,
    ``layers_up.j.upsample.expand``, ``final_up.expand``, ``final_conv``), without the official wrapper's
    ``vmunet.`` prefix, so VMamba-S checkpoints load with :func:`load_vmamba_pretrained`.

    **The forward returns logits.** The official VM-UNet applies a sigmoid when ``num_classes == 1``; ours does not,
    so that training can use BCE-with-logits / ``DiceLoss(sigmoid=True)`` (numerically stable) and the bundle applies
    the sigmoid in post-processing (``Activations(sigmoid=True)``, threshold 0.5 reproduces the official metric).
    One-channel inputs are repeated to ``in_channels`` channels, as the official forward repeats grey images to RGB.

    Args:
        in_channels: image channels the patch embedding takes. Default: 3.
        out_channels: output channels (classes; 1 for binary lesion masks). Default: 1.
        depths: VSS blocks per encoder layer. Default: (2, 2, 2, 2).
        depths_decoder: VSS blocks per decoder layer, lowest resolution first. Default: (2, 2, 2, 1).
        dims: channels per encoder layer (each twice the previous), or one int C for (C, 2C, 4C, ...). The decoder
            uses them reversed. Default: (96, 192, 384, 768).
        d_state: SSM state size N. Default: 16.
        drop_path_rate: largest stochastic-depth rate. Default: 0.2.
        patch_size: patch-embedding stride and final upsampling factor. Default: 4.
        norm_eps: LayerNorm epsilon everywhere (VM-UNet passes nn.LayerNorm: 1e-5). Default: 1e-5.
        scan_backend: :func:`xlstm_seg_kernels.selective_scan` backend (``"auto"``: Triton on CUDA, torch on CPU).
        activation_checkpointing: ``"none"`` or ``"stages"`` (recompute every encoder and decoder layer in the
            backward pass); see :mod:`shared_networks.blocks.checkpointing`.

    Shape:
        input (B, in_channels or 1, H, W) with H and W divisible by ``patch_size · 2**(len(dims) - 1)`` (32 by
        default); output (B, out_channels, H, W) logits.

    Example::

        >>> net = VMUNet()                      # VM-UNet for ISIC: 3 -> 1, 27,427,561 parameters
        >>> net(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 1, 256, 256])
        >>> report = net.load_vmamba_pretrained("pre_trained_weights/vmamba_small_e238_ema.pth")
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
        activation_checkpointing: str = "none",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if type(self) is VMUNet:  # subclasses add their own choices and check them
            check_checkpointing(activation_checkpointing, name, ("none", "stages"))
        self.checkpoint_stages = activation_checkpointing == "stages"
        depths, depths_decoder = [int(d) for d in depths], [int(d) for d in depths_decoder]
        n_layers = len(depths)
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(n_layers)]
        dims = [int(d) for d in dims]
        if n_layers < 1 or len(dims) != n_layers or len(depths_decoder) != n_layers:
            raise ValueError(
                f"{name}: depths, depths_decoder and dims need one entry per layer; got depths={depths}, "
                f"depths_decoder={depths_decoder}, dims={dims}."
            )
        if min(depths) < 1 or min(depths_decoder) < 1:
            raise ValueError(
                f"{name}: every layer needs >= 1 block; got depths={depths}, depths_decoder={depths_decoder}."
            )
        if any(dims[i + 1] != 2 * dims[i] for i in range(n_layers - 1)) or dims[0] < 1:
            raise ValueError(f"{name}: dims must double from layer to layer (patch merging gives 2C); got {dims}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{name}: in_channels and out_channels must be >= 1; got {in_channels}, {out_channels}.")
        if patch_size < 1 or dims[0] % patch_size:
            raise ValueError(f"{name}: patch_size must be >= 1 and divide dims[0] = {dims[0]}; got {patch_size}.")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"{name}: drop_path_rate must be in [0, 1); got {drop_path_rate}.")
        check_scan_backend(scan_backend, name)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dims = dims
        self.depths = depths
        self.depths_decoder = depths_decoder
        self.patch_size = patch_size
        self.size_divisor = patch_size * 2 ** (n_layers - 1)

        self.patch_embed = PatchEmbed2D(patch_size, in_channels, dims[0], norm_eps=norm_eps)
        dpr = _linspace(drop_path_rate, sum(depths))
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            rates = dpr[sum(depths[:i]) : sum(depths[: i + 1])]
            self.layers.append(
                VSSLayer(dims[i], depths[i], rates, downsample=i < n_layers - 1, norm_eps=norm_eps, d_state=d_state,
                         scan_backend=scan_backend)
            )
        dims_decoder = dims[::-1]
        dpr_decoder = _linspace(drop_path_rate, sum(depths_decoder))[::-1]
        self.layers_up = nn.ModuleList()
        for j in range(n_layers):
            rates = dpr_decoder[sum(depths_decoder[:j]) : sum(depths_decoder[: j + 1])]
            self.layers_up.append(
                VSSLayerUp(dims_decoder[j], depths_decoder[j], rates, upsample=j > 0, norm_eps=norm_eps,
                           d_state=d_state, scan_backend=scan_backend)
            )
        self.final_up = FinalPatchExpand2D(dims_decoder[-1], dim_scale=patch_size, norm_eps=norm_eps)
        self.final_conv = nn.Conv2d(dims_decoder[-1] // patch_size, out_channels, 1)
        self.apply(vmunet_init_)

    def decoder_input_channels(self, stage: int) -> int:
        """Channels of the encoder feature decoder layer ``stage`` consumes (bottleneck for 0, else the skip)."""
        n = len(self.dims)
        return self.dims[n - 1] if stage == 0 else self.dims[n - stage]

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if x.ndim != 4:
            raise ValueError(f"{name}: expected a (B, C, H, W) image batch; got shape {tuple(x.shape)}.")
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"{name}: expected {self.in_channels} (or 1) input channels; got {x.shape[1]}.")
            x = x.repeat(1, self.in_channels, 1, 1)
        if x.shape[2] % self.size_divisor or x.shape[3] % self.size_divisor:
            raise ValueError(
                f"{name}: H and W must be divisible by {self.size_divisor}; got {tuple(x.shape[2:])} (resize or pad)."
            )
        return x

    def decoder_input(self, stage: int, feature: torch.Tensor) -> torch.Tensor:
        """Hook on the encoder feature entering decoder layer ``stage`` (identity here; XLSTMVMUNet models it)."""
        return feature

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder: (B, C, H, W) -> bottleneck (B, H/32, W/32, dims[-1]) and the inputs of every layer (skips)."""
        x = self.patch_embed(x)
        skips = []
        for layer in self.layers:
            skips.append(x)
            x = run_checkpointed(self.checkpoint_stages, layer, x)
        return x, skips

    def forward_features_up(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decoder with additive skips: -> (B, H/4, W/4, dims[0])."""
        for j, layer_up in enumerate(self.layers_up):
            x = self.decoder_input(0, x) if j == 0 else x + self.decoder_input(j, skips[-j])
            x = run_checkpointed(self.checkpoint_stages, layer_up, x)
        return x

    def forward_final(self, x: torch.Tensor) -> torch.Tensor:
        """Final ×patch_size expansion and 1×1 conv: (B, H/4, W/4, dims[0]) -> (B, out_channels, H, W)."""
        return self.final_conv(self.final_up(x).permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels or 1, H, W) -> logits (B, out_channels, H, W)."""
        x = self._prepare_input(x)
        bottleneck, skips = self.forward_features(x)
        return self.forward_final(self.forward_features_up(bottleneck, skips))

    def load_vmamba_pretrained(self, path: str | os.PathLike, strict_report: bool = True) -> PretrainedLoadReport:
        """Load VMamba-S (v0, e238 format) weights into the encoder and, mirrored, the decoder.

        See :func:`load_vmamba_pretrained`.
        """
        return load_vmamba_pretrained(self, path, strict_report=strict_report)


@dataclass
class PretrainedLoadReport:
    """What :func:`load_vmamba_pretrained` did.

    Attributes:
        path: the checkpoint file.
        loaded_encoder: model keys loaded under their own name (encoder: ``patch_embed.*``, ``layers.*``).
        loaded_decoder: model keys ``layers_up.{n-1-i}.*`` loaded from the checkpoint's ``layers.{i}.*`` (mirror).
        unmatched_checkpoint_keys: checkpoint keys used by neither pass (deeper blocks, classifier head, ...).
        shape_mismatches: (model key, checkpoint shape, model shape) for names that matched with another shape; those
            were not loaded.
        missing_model_keys: model keys left at their initialisation (upsampling, final layers, xLSTM parts, ...).
    """

    path: str
    loaded_encoder: list[str] = field(default_factory=list)
    loaded_decoder: list[str] = field(default_factory=list)
    unmatched_checkpoint_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing_model_keys: list[str] = field(default_factory=list)

    def summary(self, full: bool = False) -> str:
        """A human-readable report.

        Args:
            full: list every key; otherwise keys are grouped by module, with runs of block indices collapsed
                (``layers.2.blocks.2..26 (325)`` = 325 tensors of blocks 2 to 26), which still names every module.
        """

        def show(keys: Sequence[str]) -> str:
            return (", ".join(keys) if full else _group_keys(keys)) or "-"

        mismatches = [f"{k} {tuple(c)} vs {tuple(m)}" for k, c, m in self.shape_mismatches]
        return (
            f"VMamba pretrained weights from {self.path}: loaded {len(self.loaded_encoder)} encoder and "
            f"{len(self.loaded_decoder)} mirrored decoder tensors.\n"
            f"  checkpoint keys not matched ({len(self.unmatched_checkpoint_keys)}): "
            f"{show(self.unmatched_checkpoint_keys)}\n"
            f"  shape mismatches, not loaded ({len(mismatches)}; checkpoint vs model): {', '.join(mismatches) or '-'}\n"
            f"  model keys left at initialisation ({len(self.missing_model_keys)}): {show(self.missing_model_keys)}"
        )


_MODULE_OF_KEY = re.compile(
    r"^(fusions\.\d+|layers(?:_up)?\.\d+\.(?:downsample|upsample)|.*?\bblocks\.\d+|[^.]+)(?:\.|$)"
)
_BLOCK_RUN = re.compile(r"^(.*\bblocks\.)(\d+)$")


def _group_keys(keys: Sequence[str]) -> str:
    """'layers.2.blocks.2..26 (325), head (2)': keys counted per module, consecutive block indices collapsed."""
    counts: dict[str, int] = {}
    for key in keys:
        match = _MODULE_OF_KEY.match(key)
        module = match.group(1) if match else key
        counts[module] = counts.get(module, 0) + 1
    groups: list[list] = []  # [prefix, first index, last index, count] or [module, None, None, count]
    for module, count in counts.items():
        run = _BLOCK_RUN.match(module)
        if run and groups and groups[-1][0] == run.group(1) and groups[-1][2] == int(run.group(2)) - 1:
            groups[-1][2] += 1
            groups[-1][3] += count
        elif run:
            groups.append([run.group(1), int(run.group(2)), int(run.group(2)), count])
        else:
            groups.append([module, None, None, count])
    parts = []
    for name, first, last, count in groups:
        label = name if first is None else f"{name}{first}" if first == last else f"{name}{first}..{last}"
        parts.append(f"{label} ({count})")
    return ", ".join(parts)


def _read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_vmamba_pretrained: no checkpoint file at {path!r}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors, truncated or non-torch files
        raise ValueError(
            f"load_vmamba_pretrained: {path!r} could not be read by torch.load(weights_only=True) "
            f"({type(err).__name__}: {err}). Expected a VMamba checkpoint, a dict with key 'model' holding the state "
            "dict. A checkpoint that pickles other objects must be re-saved with only its 'model' entry."
        ) from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        state = checkpoint["model"]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint  # a bare state dict
    else:
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"load_vmamba_pretrained: {path!r} is not in the VMamba checkpoint format (a dict whose 'model' entry is "
            f"the state dict); found {found}."
        )
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_vmamba_pretrained(
    model: VMUNet, path: str | os.PathLike, strict_report: bool = True
) -> PretrainedLoadReport:
    """Load VMamba-S pretrained weights into a :class:`VMUNet` (or XLSTMVMUNet) as VM-UNet's ``load_from`` does.

    The file is the first VMamba release's checkpoint format (``vmamba_small_e238_ema.pth``: ``{'model': state_dict}``
    of VMamba-S, dims 96, depths [2, 2, 27, 2]; keys such as ``patch_embed.proj.weight``,
    ``layers.{i}.blocks.{j}.ln_1.weight``, ``layers.{i}.blocks.{j}.self_attention.in_proj.weight``,
    ``layers.{i}.downsample.reduction.weight``); a bare state dict is accepted too. Read with
    ``torch.load(weights_only=True)`` on the CPU.

    1. Every checkpoint tensor whose key exists in the model with the same shape is copied (the encoder: patch
       embedding, the first ``depths[i]`` blocks of each layer, the patch mergings).
    2. The checkpoint's ``layers.{i}.*`` are renamed ``layers_up.{n-1-i}.*`` and copied where they exist (the decoder
       layer of the same width gets the blocks of its mirror encoder layer; ``downsample`` has no decoder
       counterpart). The decoder's expansions, the final layers and any xLSTM parts keep their initialisation.

    Unlike the official code, shapes are checked and the report lists what did not match. Its summary (every
    unmatched module named, keys grouped per module; ``report.summary(full=True)`` lists each key) is logged at
    WARNING level with ``strict_report`` and at INFO level otherwise.

    Args:
        model: the network to load into (its parameters are overwritten in place).
        path: the checkpoint file.
        strict_report: if True, a key that matches by name but not by shape raises ``ValueError`` (the checkpoint
            does not fit this configuration) and the report is logged as a warning; if False, such keys are skipped
            and listed in the report, which is logged at INFO level.

    Returns:
        A :class:`PretrainedLoadReport`.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not a (weights-only loadable) VMamba checkpoint, none of its keys fits the encoder, or
            (with ``strict_report``) a shape mismatch.
    """
    path = os.fspath(path)
    checkpoint = _read_checkpoint(path)
    targets = model.state_dict()
    report = PretrainedLoadReport(path=path)
    used: set[str] = set()
    loaded: set[str] = set()
    n_layers = len(model.layers)
    mirror = re.compile(r"^layers\.(\d+)\.")

    def candidates() -> list[tuple[str, str, list[str]]]:
        pairs = [(key, key, report.loaded_encoder) for key in checkpoint]
        for key in checkpoint:
            match = mirror.match(key)
            if match and int(match.group(1)) < n_layers:
                target = f"layers_up.{n_layers - 1 - int(match.group(1))}." + key[match.end() :]
                if target not in checkpoint:  # a checkpoint that has its own decoder weights keeps them
                    pairs.append((key, target, report.loaded_decoder))
        return pairs

    updates: dict[str, torch.Tensor] = {}
    for source, target, bucket in candidates():
        if target not in targets:
            continue
        tensor = checkpoint[source]
        if tuple(tensor.shape) != tuple(targets[target].shape):
            report.shape_mismatches.append((target, tuple(tensor.shape), tuple(targets[target].shape)))
            continue
        updates[target] = tensor
        bucket.append(target)
        used.add(source)
        loaded.add(target)
    if not report.loaded_encoder:
        examples = sorted(checkpoint)[:5]
        raise ValueError(
            f"load_vmamba_pretrained: no key of {path!r} fits the model's encoder (expected VMamba v0 keys such as "
            f"'patch_embed.proj.weight', 'layers.0.blocks.0.self_attention.in_proj.weight'); found e.g. {examples}."
        )
    if report.shape_mismatches and strict_report:
        raise ValueError(
            f"load_vmamba_pretrained: {len(report.shape_mismatches)} tensors of {path!r} have the right name but the "
            f"wrong shape for this model, e.g. {report.shape_mismatches[:3]} (key, checkpoint, model). The checkpoint "
            "does not fit this configuration (VMamba-S needs dims (96, 192, 384, 768), d_state 16); pass "
            "strict_report=False to load the rest."
        )
    with torch.no_grad():
        for target, tensor in updates.items():
            targets[target].copy_(tensor)
    report.unmatched_checkpoint_keys = [k for k in checkpoint if k not in used]
    report.missing_model_keys = [k for k in targets if k not in loaded]
    if strict_report:
        logger.warning(report.summary())
    else:
        logger.info(report.summary())
    return report
