# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Official checkpoints into our networks: xLSTM-UNet's nnU-Net checkpoints, VM-UNet's and XLSTM-VMUNet's.

Three commands; each writes ``OUT`` (a plain state dict that the printed network loads with ``strict=True`` and
``torch.load(weights_only=True)``) and ``OUT`` with the suffix ``.network_def.json`` (the ``network_def`` a bundle
config needs for it). Both files are written atomically, and neither overwrites an existing file.

    python -m shared_networks.official_weights xlstm-unet checkpoint_final.pth model.pt --axes monai
    python -m shared_networks.official_weights vm-unet best.pth model.pt [--network XLSTMVMUNet --drop-official-head]
    python -m shared_networks.official_weights vmamba vmamba_small_e238_ema.pth model.pt [--network XLSTMVMUNet]

**xlstm-unet**: the official trainers (``nnUNetTrainerUxLSTMBot``/``Enc``, 2D and 3D) save nnU-Net v2 checkpoints:
``network_weights`` (the state dict, with aliases: ``decoder.encoder.*`` repeats ``encoder.*``, and every
``BasicBlockD`` conv block lists its conv and norm twice, as ``conv``/``norm`` and ``all_modules.0``/``.1``),
``init_args`` (plans, configuration, dataset.json) and training state. The conversion is renames only: aliases are
checked equal and dropped, then every tensor is mapped to our key (:func:`xlstm_unet_state_dict_from_official`).
The architecture (stages, widths, kernels, block counts, Bot/Enc, the 2D decoder quirk) is read from the weights;
strides and the patch size come from the plans in ``init_args`` (or ``--strides``/``--patch-size``). The parity
options it sets: ``full_res_skip_2d=False`` (2D), ``vil_order="forward"``; the official wrapper's unused LayerNorm
is dropped (it is never applied; ``--keep-unused-norm`` keeps it and sets ``official_unused_norm=True``).

``--axes`` says which array layout the network will be fed, which must match the training data:

- ``nnunet``: as nnU-Net feeds it, SimpleITK's (z, y, x) array order (2D: (y, x) slices). Weights unchanged.
- ``monai``: MONAI's ``LoadImage`` order, (x, y, z) (2D: (x, y)), the spatial axes reversed. Conv kernels, strides,
  kernel sizes and the patch size are reversed and ``vil_token_order="first_axis_fastest"`` keeps the official token
  order, so the network computes the official function of the same image. Spatial transforms that flip axes
  (``Orientationd`` on an image not stored in that orientation) change what the network sees and break the parity.

**vm-unet**: VM-UNet's ``train.py`` saves ``best.pth`` (the state dict of its ``VMUNet`` wrapper: keys
``vmunet.*``) and ``latest.pth`` (``model_state_dict`` plus optimiser state); XLSTM-VMUNet's ``train.py`` saves the
same with its logit head as ``xLSTM.*``. The backbone maps to :class:`~shared_networks.nets.VMUNet` by dropping the
``vmunet.`` prefix; the configuration (dims, depths, d_state, channels) is read from the shapes. The official
XLSTM-VMUNet head has no counterpart here (docs/xlstm_vmunet.md): ``--drop-official-head`` loads the backbone alone
(into ``VMUNet``, or into ``XLSTMVMUNet`` whose α/β fusions start at α=1, β=0, i.e. the backbone's function).
Our networks return logits; the official forward returns ``sigmoid`` of them for one class.

**vmamba**: VMamba-S ImageNet weights (``{'model': ...}``) into the encoder and, mirrored, the decoder, as VM-UNet's
``load_from`` does (:func:`~shared_networks.nets.vm_unet.load_vmamba_pretrained`); the rest keeps its init.

nnU-Net checkpoints pickle numpy scalars and arrays in their logs; they are read with ``weights_only=True`` and an
allow-list of exactly those numpy types (:data:`NUMPY_SAFE_GLOBALS`). Any other global is refused with its name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .nets import VMUNet, XLSTMUNet, XLSTMVMUNet
from .nets.vm_unet import load_vmamba_pretrained

__all__ = [
    "Conversion",
    "NUMPY_SAFE_GLOBALS",
    "read_checkpoint",
    "xlstm_unet_state_dict_from_official",
    "convert_xlstm_unet_checkpoint",
    "convert_vmunet_checkpoint",
    "convert_vmamba_pretrained",
    "save_conversion",
    "main",
]

logger = logging.getLogger(__name__)

AXES = ("nnunet", "monai")
NETWORKS = {"XLSTMUNet": XLSTMUNet, "VMUNet": VMUNet, "XLSTMVMUNet": XLSTMVMUNet}


def _numpy_safe_globals() -> list:
    """numpy's scalar and array reconstructors and dtypes, under numpy 1.x and 2.x module names."""
    core = np._core if hasattr(np, "_core") else np.core
    scalar, reconstruct = core.multiarray.scalar, core.multiarray._reconstruct
    allowed: list = [np.ndarray, np.dtype, scalar, reconstruct]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(scalar, f"{module}.scalar"), (reconstruct, f"{module}._reconstruct")]
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}, key=lambda t: t.__name__)
    return allowed


NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


def read_checkpoint(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, allowing the numpy types of :data:`NUMPY_SAFE_GLOBALS`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file pickles another global (named in the message) or is not a torch checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no checkpoint file at {path!r}.")
    allowed_names = {_global_name(entry) for entry in NUMPY_SAFE_GLOBALS}
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # not a zip-format torch file (truncated, legacy format, not torch at all)
        raise ValueError(
            f"{what}: {path!r} is not a readable torch checkpoint ({type(err).__name__}: {err})."
        ) from err
    refused = sorted(set(unsafe) - allowed_names)
    if refused:
        raise ValueError(
            f"{what}: {path!r} pickles objects that torch.load(weights_only=True) must not run: {refused}. Only "
            "tensors, plain Python containers and numpy scalars/arrays are accepted. Re-save the weights alone "
            "(torch.save(checkpoint['network_weights'], ...)) in an environment that trusts the file."
        )
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{what}: {path!r} could not be read with weights_only=True ({type(err).__name__}: {err}).")


@dataclass
class Conversion:
    """A converted checkpoint: the network class, its constructor arguments and a state dict it loads strictly.

    Attributes:
        network: class name in :mod:`shared_networks.nets`.
        kwargs: JSON-friendly constructor arguments.
        state_dict: our key names, every tensor float32 or as stored.
        source: the checkpoint file.
        notes: what the conversion decided (printed by the command).
    """

    network: str
    kwargs: dict
    state_dict: dict[str, torch.Tensor]
    source: str
    notes: list[str] = field(default_factory=list)

    def network_def(self) -> dict:
        """The bundle ``network_def``: ``{"_target_": "shared_networks.nets.<network>", **kwargs}``."""
        return {"_target_": f"shared_networks.nets.{self.network}", **self.kwargs}

    def build(self) -> nn.Module:
        """The network with the converted weights loaded (``strict=True``)."""
        net = NETWORKS[self.network](**self.kwargs)
        net.load_state_dict(self.state_dict, strict=True)
        return net


# ---------------------------------------------------------------------------------------------------- xLSTM-UNet

# Official module paths -> ours (UxLSTM{Bot,Enc}_{2d,3d}.py; shared_networks/nets/xlstm_unet.py).
_XLSTM_UNET_PREFIXES = (
    ("encoder.stem.", "stem."),
    ("encoder.stages.", "encoder_stages."),
    ("encoder.xlstm_layers.", "encoder_extras."),
    ("xlstm.", "bottleneck_vil."),
    ("decoder.upsample_layers.", "upsamples."),
    ("decoder.stages.", "decoder_stages."),
    ("decoder.seg_layers.", "heads."),
)
# Inside residual blocks: BasicBlockD (ConvDropoutNormReLU conv1/conv2, each .conv and .norm) and U-Mamba's
# BasicResBlock (conv1, norm1, conv2, norm2 and the 1x1 shortcut conv3).
_BLOCK_RENAMES = (
    (".conv1.conv.", ".conv1."),
    (".conv1.norm.", ".norm1."),
    (".conv2.conv.", ".conv2."),
    (".conv2.norm.", ".norm2."),
    (".conv3.", ".shortcut."),
)
_ALL_MODULES = re.compile(r"\.(conv[12])\.all_modules\.(\d+)\.")


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _drop_aliases(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Remove ``decoder.encoder.*`` and ``*.all_modules.*`` after checking each equals the tensor it aliases."""

    def canonical(key: str) -> str:
        if key.startswith("decoder.encoder."):
            key = key[len("decoder.") :]
        match = _ALL_MODULES.search(key)
        if match is not None:
            if match.group(2) not in ("0", "1"):
                raise ValueError(f"xlstm-unet: {source!r}: unexpected key {key!r} (not a conv/norm alias).")
            part = "conv" if match.group(2) == "0" else "norm"
            key = key[: match.start()] + f".{match.group(1)}.{part}." + key[match.end() :]
        return key

    kept = {k: v for k, v in state.items() if canonical(k) == k}
    for key, value in state.items():
        twin = canonical(key)
        if twin == key:
            continue
        if twin not in kept:
            raise ValueError(f"xlstm-unet: {source!r}: {key!r} aliases {twin!r}, which the checkpoint lacks.")
        if kept[twin].shape != value.shape or not torch.equal(kept[twin], value):
            raise ValueError(f"xlstm-unet: {source!r}: {key!r} should repeat {twin!r} but differs from it.")
    return kept


def xlstm_unet_state_dict_from_official(
    state: dict[str, torch.Tensor], source: str = "<state dict>", keep_unused_norm: bool = False
) -> dict[str, torch.Tensor]:
    """Rename an official UXlstmBot/UXlstmEnc state dict (2D or 3D) to :class:`XLSTMUNet`'s keys.

    Aliases are checked and dropped; the official ViL wrapper's unused ``norm`` is dropped unless
    ``keep_unused_norm``. Every other key must map, or ``ValueError`` names it.
    """
    state = _drop_aliases(_strip_wrappers(state), source)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in _XLSTM_UNET_PREFIXES:
            if key.startswith(old):
                rest = key[len(old) :]
                break
        else:
            raise ValueError(f"xlstm-unet: {source!r}: key {key!r} belongs to no official UXlstmBot/Enc module.")
        in_vil_slot = old in ("encoder.xlstm_layers.", "xlstm.")
        is_vil_wrapper = in_vil_slot and re.match(r"^(\d+\.)?(vil|norm)\.", rest) is not None
        if is_vil_wrapper and re.match(r"^(\d+\.)?norm\.", rest):
            if not keep_unused_norm:
                continue  # the official wrapper's LayerNorm: created, never applied
        elif not is_vil_wrapper:
            rest = "." + rest
            for a, b in _BLOCK_RENAMES:
                rest = rest.replace(a, b)
            rest = rest[1:]
        out[new + rest] = value
    return out


def _indices(state: dict, prefix: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _configuration(init_args: Any, source: str) -> dict:
    """The nnU-Net configuration dict the checkpoint was trained with (``inherits_from`` resolved)."""
    if not isinstance(init_args, dict) or not isinstance(init_args.get("plans"), dict):
        return {}
    plans, name = init_args["plans"], init_args.get("configuration")
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise ValueError(
            f"xlstm-unet: {source!r}: init_args names configuration {name!r}, which its plans lack "
            f"(have {sorted(configurations)})."
        )
    chain, config = [], configurations[name]
    while True:
        chain.append(config)
        parent = config.get("inherits_from")
        if parent is None or parent not in configurations or len(chain) > len(configurations):
            break
        config = configurations[parent]
    merged: dict = {}
    for config in reversed(chain):
        merged.update(config)
    transpose = plans.get("transpose_forward")
    if transpose is not None:
        merged["transpose_forward"] = list(transpose)
    return merged


def convert_xlstm_unet_checkpoint(
    path: str | os.PathLike,
    axes: str,
    strides: Sequence[Sequence[int] | int] | None = None,
    patch_size: Sequence[int] | None = None,
    keep_unused_norm: bool = False,
) -> Conversion:
    """An official xLSTM-UNet nnU-Net checkpoint (``checkpoint_final.pth``) as an :class:`XLSTMUNet` conversion.

    Args:
        path: the checkpoint (a dict with ``network_weights``; a bare official state dict also works, then
            ``strides`` and, for Enc, ``patch_size`` are required).
        axes: ``"nnunet"`` or ``"monai"`` (module docstring).
        strides: per-stage strides in nnU-Net's axis order; default: the plans' ``pool_op_kernel_sizes``.
        patch_size: the training patch size in nnU-Net's axis order; default: the plans' ``patch_size``.
        keep_unused_norm: keep the official wrapper's unused LayerNorm (``official_unused_norm=True``).

    Raises:
        ValueError: not an xLSTM-UNet checkpoint, missing/unexpected tensors, or options that contradict the file.
    """
    source = os.fspath(path)
    if axes not in AXES:
        raise ValueError(f"xlstm-unet: axes must be one of {AXES}; got {axes!r}.")
    checkpoint = read_checkpoint(source, "xlstm-unet")
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("network_weights"), dict):
        official, init_args = checkpoint["network_weights"], checkpoint.get("init_args")
        trainer = checkpoint.get("trainer_name")
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        official, init_args, trainer = checkpoint, None, None
    else:
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"xlstm-unet: {source!r} is not an nnU-Net checkpoint: expected a dict with 'network_weights' (the "
            f"state dict); found {found}."
        )
    official = _strip_wrappers(official)
    if "encoder.stem.0.conv1.weight" not in official or "decoder.seg_layers.0.weight" not in official:
        raise ValueError(
            f"xlstm-unet: {source!r} holds no UXlstmBot/UXlstmEnc weights: 'encoder.stem.0.conv1.weight' and "
            f"'decoder.seg_layers.0.weight' missing (keys start with {sorted({k.split('.')[0] for k in official})})."
        )
    ours = xlstm_unet_state_dict_from_official(official, source, keep_unused_norm=keep_unused_norm)
    notes: list[str] = []

    stem = official["encoder.stem.0.conv1.weight"]
    spatial_dims = stem.ndim - 2
    stage_ids = _indices(official, "encoder.stages.")
    features = [int(official[f"encoder.stages.{s}.0.conv1.weight"].shape[0]) for s in stage_ids]
    kernels = [list(official[f"encoder.stages.{s}.0.conv1.weight"].shape[2:]) for s in stage_ids]
    n_stages = len(stage_ids)
    encoder_blocks = [len(_indices(official, f"encoder.stages.{s}.")) for s in stage_ids]
    decoder_blocks = [len(_indices(official, f"decoder.stages.{j}.")) for j in range(n_stages - 1)]
    stem_blocks = len(_indices(official, "encoder.stem."))
    if stem_blocks != encoder_blocks[0]:
        raise ValueError(f"xlstm-unet: {source!r}: stem has {stem_blocks} blocks but stage 0 {encoder_blocks[0]}; "
                         "XLSTMUNet uses one count for both.")
    variant = "enc" if any(k.startswith("encoder.xlstm_layers.") for k in official) else "bot"
    if variant == "bot" and "xlstm.vil.norm.weight" not in official:
        raise ValueError(f"xlstm-unet: {source!r}: neither encoder.xlstm_layers.* (Enc) nor xlstm.vil.* (Bot) found.")
    if trainer and ("Enc" in trainer) != (variant == "enc"):
        notes.append(f"trainer_name {trainer!r} but the weights are UXlstm{variant.capitalize()}")
    last_in = int(official[f"decoder.stages.{n_stages - 2}.0.conv1.weight"].shape[1])

    config = _configuration(init_args, source)
    if strides is None:
        strides = config.get("pool_op_kernel_sizes")
        if strides is None:
            raise ValueError(
                f"xlstm-unet: {source!r} has no plans (init_args) with pool_op_kernel_sizes; pass strides."
            )
    strides = [list(s) if isinstance(s, (list, tuple)) else [int(s)] * spatial_dims for s in strides]
    if len(strides) != n_stages:
        raise ValueError(f"xlstm-unet: {source!r} has {n_stages} stages but strides lists {len(strides)}.")
    if config.get("conv_kernel_sizes") is not None and [list(k) for k in config["conv_kernel_sizes"]] != kernels:
        raise ValueError(f"xlstm-unet: {source!r}: the plans' conv_kernel_sizes {config['conv_kernel_sizes']} "
                         f"differ from the weights' kernels {kernels}.")
    if patch_size is None:
        patch_size = config.get("patch_size")
    if variant == "enc" and patch_size is None:
        raise ValueError(f"xlstm-unet: {source!r} is UXlstmEnc (channel tokens depend on the patch size) and has no "
                         "plans with patch_size; pass patch_size.")
    transpose = config.get("transpose_forward")
    if axes == "monai" and transpose is not None and transpose != sorted(transpose):
        raise ValueError(
            f"xlstm-unet: {source!r}: the plans transpose the arrays (transpose_forward={transpose}), so the "
            "network's axes are not the reverse of MONAI's; convert with axes='nnunet' and feed the transposed arrays."
        )

    kwargs: dict[str, Any] = dict(
        spatial_dims=spatial_dims,
        in_channels=int(stem.shape[1]),
        out_channels=int(official["decoder.seg_layers.0.weight"].shape[0]),
        variant=variant,
        features=features,
        kernel_sizes=kernels,
        strides=strides,
        encoder_blocks=encoder_blocks,
        decoder_blocks=decoder_blocks,
    )
    if patch_size is not None and variant == "enc":
        kwargs["patch_size"] = list(patch_size)
    if spatial_dims == 2:
        kwargs["full_res_skip_2d"] = last_in != features[0]
        if not kwargs["full_res_skip_2d"]:
            notes.append("2D: the official decoder skips the full-resolution features (full_res_skip_2d=False)")
    if keep_unused_norm:
        kwargs["official_unused_norm"] = True
    else:
        notes.append("the official ViL wrapper's unused LayerNorm was dropped (it never affects the output)")
    if axes == "monai":
        kwargs["kernel_sizes"] = [k[::-1] for k in kernels]
        kwargs["strides"] = [s[::-1] for s in strides]
        if "patch_size" in kwargs:
            kwargs["patch_size"] = kwargs["patch_size"][::-1]
        kwargs["vil_token_order"] = "first_axis_fastest"
        reverse = (0, 1, *range(spatial_dims + 1, 1, -1))
        for key, value in ours.items():
            if value.ndim == spatial_dims + 2 and ".vil." not in key and not key.startswith("bottleneck_vil."):
                ours[key] = value.permute(*reverse).contiguous()
        notes.append("axes 'monai': kernels, strides and patch size reversed; vil_token_order='first_axis_fastest'")
    else:
        notes.append("axes 'nnunet': feed the arrays in nnU-Net's (SimpleITK) axis order")

    try:
        net = XLSTMUNet(**kwargs)
    except ValueError as err:
        raise ValueError(f"xlstm-unet: {source!r}: the architecture read from it does not build: {err}") from err
    _check_keys(net.state_dict(), ours, source, "xlstm-unet")
    return Conversion("XLSTMUNet", kwargs, ours, source, notes)


def _check_keys(expected: dict, got: dict, source: str, what: str, ignore_missing: Sequence[str] = ()) -> None:
    missing = [k for k in expected if k not in got and not any(k.startswith(p) for p in ignore_missing)]
    unexpected = [k for k in got if k not in expected]
    shapes = [(k, tuple(got[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in got and got[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what}: {source!r} does not fit the network read from it: missing {missing[:8]} ({len(missing)}), "
            f"unexpected {unexpected[:8]} ({len(unexpected)}), shape mismatches (key, file, network) {shapes[:5]} "
            f"({len(shapes)})."
        )


# ---------------------------------------------------------------------------------------------------- VM-UNet


def _vmunet_kwargs(state: dict[str, torch.Tensor], source: str) -> dict:
    """VMUNet constructor arguments read from a (prefix-free) VM-UNet state dict's shapes."""
    embed = state["patch_embed.proj.weight"]
    layers = _indices(state, "layers.")
    dims = [int(state[f"layers.{i}.blocks.0.ln_1.weight"].shape[0]) for i in layers]
    depths = [len(_indices(state, f"layers.{i}.blocks.")) for i in layers]
    depths_decoder = [len(_indices(state, f"layers_up.{j}.blocks.")) for j in _indices(state, "layers_up.")]
    a_logs = state["layers.0.blocks.0.self_attention.A_logs"]
    conv = state["layers.0.blocks.0.self_attention.conv2d.weight"]
    if tuple(conv.shape[2:]) != (3, 3) or int(a_logs.shape[0]) != 4 * 2 * dims[0]:
        raise ValueError(f"vm-unet: {source!r}: SS2D with d_conv {tuple(conv.shape[2:])} / expand "
                         f"{int(a_logs.shape[0]) / (4 * dims[0])} (VMUNet builds d_conv 3, expand 2).")
    return dict(
        in_channels=int(embed.shape[1]),
        out_channels=int(state["final_conv.weight"].shape[0]),
        depths=depths,
        depths_decoder=depths_decoder,
        dims=dims,
        d_state=int(a_logs.shape[1]),
        patch_size=int(embed.shape[2]),
    )


def convert_vmunet_checkpoint(
    path: str | os.PathLike, network: str = "VMUNet", drop_official_head: bool = False,
    network_kwargs: dict | None = None,
) -> Conversion:
    """A VM-UNet (or XLSTM-VMUNet) training checkpoint as a :class:`VMUNet` / :class:`XLSTMVMUNet` conversion.

    Args:
        path: ``best.pth`` (a state dict with ``vmunet.*`` keys) or ``latest.pth`` (``model_state_dict`` inside).
        network: ``"VMUNet"`` or ``"XLSTMVMUNet"`` (backbone loaded, the α/β xLSTM fusions at their init α=1, β=0,
            so the function is the backbone's until fine-tuned).
        drop_official_head: required for XLSTM-VMUNet checkpoints, whose ``xLSTM.*`` logit head is not reproduced.
        network_kwargs: further constructor arguments that the weights do not determine (for XLSTMVMUNet, e.g.
            ``xlstm_scales`` or ``xlstm_blocks``; for both, ``drop_path_rate`` or ``scan_backend``).
    """
    source = os.fspath(path)
    if network not in ("VMUNet", "XLSTMVMUNet"):
        raise ValueError(f"vm-unet: network must be 'VMUNet' or 'XLSTMVMUNet'; got {network!r}.")
    checkpoint = read_checkpoint(source, "vm-unet")
    state = checkpoint
    if isinstance(checkpoint, dict):
        for entry in ("model_state_dict", "state_dict", "model"):
            if isinstance(checkpoint.get(entry), dict):
                state = checkpoint[entry]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"vm-unet: {source!r} holds no state dict (expected best.pth's tensors or latest.pth's "
                         f"'model_state_dict'); found {found}.")
    state = _strip_wrappers(state)
    head = sorted(k for k in state if k.startswith("xLSTM."))
    if head and not drop_official_head:
        raise ValueError(
            f"vm-unet: {source!r} is an XLSTM-VMUNet checkpoint: its logit head ({len(head)} tensors 'xLSTM.*', "
            "recurrent over the mini-batch) has no counterpart in our networks (docs/xlstm_vmunet.md). Pass "
            "drop_official_head / --drop-official-head to load its VM-UNet backbone alone."
        )
    backbone = {k[len("vmunet.") :]: v for k, v in state.items() if k.startswith("vmunet.")}
    other = sorted(k for k in state if not k.startswith(("vmunet.", "xLSTM.")))
    if other:
        vmamba = "layers_up.0.blocks.0.ln_1.weight" not in state  # an encoder-only (ImageNet) state dict
        hint = " (a VMamba ImageNet checkpoint: use the 'vmamba' command)" if vmamba else ""
        raise ValueError(f"vm-unet: {source!r}: keys outside the official 'vmunet.' wrapper, e.g. {other[:5]}{hint}.")
    if "patch_embed.proj.weight" not in backbone or "final_conv.weight" not in backbone:
        raise ValueError(f"vm-unet: {source!r}: 'vmunet.patch_embed.proj.weight' / 'vmunet.final_conv.weight' missing.")
    kwargs = _vmunet_kwargs(backbone, source)
    clash = sorted(set(kwargs) & set(network_kwargs or {}))
    if clash:
        raise ValueError(f"vm-unet: {source!r}: {clash} are read from the weights; do not pass them.")
    kwargs.update(network_kwargs or {})
    notes = ["our forward returns logits; the official VM-UNet forward applies sigmoid for one class"]
    if head:
        notes.append(f"dropped the official XLSTM-VMUNet logit head ({len(head)} tensors 'xLSTM.*')")
    torch.manual_seed(0)  # the parts the file does not cover (XLSTMVMUNet's fusions) get a reproducible init
    net = NETWORKS[network](**kwargs)
    expected = net.state_dict()
    _check_keys(expected, backbone, source, "vm-unet", ignore_missing=("fusions.",) if network == "XLSTMVMUNet" else ())
    if network == "XLSTMVMUNet":
        notes.append("XLSTMVMUNet: xLSTM fusions (fusions.*) at their init (alpha=1, beta=0): the backbone's function")
        backbone = {**{k: v for k, v in expected.items() if k.startswith("fusions.")}, **backbone}
    return Conversion(network, kwargs, backbone, source, notes)


def convert_vmamba_pretrained(
    path: str | os.PathLike, network: str = "VMUNet", network_kwargs: dict | None = None
) -> Conversion:
    """VMamba-S ImageNet weights into a new :class:`VMUNet`/:class:`XLSTMVMUNet` (encoder and mirrored decoder).

    ``network_kwargs`` default to the network's defaults (the ISIC configuration). Parts the checkpoint does not
    cover keep the network's seeded initialisation (``torch.manual_seed(0)``), so the output is reproducible.
    """
    if network not in ("VMUNet", "XLSTMVMUNet"):
        raise ValueError(f"vmamba: network must be 'VMUNet' or 'XLSTMVMUNet'; got {network!r}.")
    kwargs = dict(network_kwargs or {})
    torch.manual_seed(0)
    net = NETWORKS[network](**kwargs)
    report = load_vmamba_pretrained(net, path)
    notes = [report.summary()]
    return Conversion(network, kwargs, net.state_dict(), os.fspath(path), notes)


# ---------------------------------------------------------------------------------------------------- output


def _write_new(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then hard-link it into place: atomic, never overwrites."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} appeared while writing; nothing was overwritten.") from None
        except OSError:  # a file system without hard links: rename, after one more check
            if path.exists():
                raise FileExistsError(f"{path} appeared while writing; nothing was overwritten.") from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_conversion(conversion: Conversion, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out`` (the state dict) and ``<out>.network_def.json``; refuses if either exists.

    The state dict is checked first: it must load into the network strictly and must reload with
    ``weights_only=True``.
    """
    out = Path(out)
    network_def_path = out.with_name(out.name + ".network_def.json")
    for target in (out, network_def_path):
        if target.exists():
            raise FileExistsError(f"{target} exists; refusing to overwrite it (choose another output).")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the output folder {out.parent} does not exist.")
    conversion.build()  # strict load, before anything is written
    _write_new(out, lambda tmp: torch.save(conversion.state_dict, tmp))
    torch.load(out, map_location="cpu", weights_only=True)
    text = json.dumps(conversion.network_def(), indent=2) + "\n"
    _write_new(network_def_path, lambda tmp: Path(tmp).write_text(text))
    return out, network_def_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared_networks.official_weights",
        description="Convert official xLSTM-UNet / VM-UNet / XLSTM-VMUNet / VMamba checkpoints to our networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("xlstm-unet", help="nnU-Net checkpoint_final.pth of UXlstmBot/UXlstmEnc (2D/3D) -> XLSTMUNet")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--axes", choices=AXES, required=True,
                   help="nnunet: arrays as nnU-Net feeds them (z, y, x); monai: as MONAI's LoadImage does (x, y, z)")
    p.add_argument("--strides", type=json.loads, help="JSON list of per-stage strides in nnU-Net order, if no plans")
    p.add_argument("--patch-size", type=json.loads, help="JSON list, the training patch size in nnU-Net order")
    p.add_argument("--keep-unused-norm", action="store_true", help="keep the unused LayerNorm (official_unused_norm)")
    p = sub.add_parser("vm-unet", help="VM-UNet / XLSTM-VMUNet best.pth or latest.pth -> VMUNet / XLSTMVMUNet")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--network", choices=("VMUNet", "XLSTMVMUNet"), default="VMUNet")
    p.add_argument("--drop-official-head", action="store_true", help="XLSTM-VMUNet: load the backbone, drop xLSTM.*")
    p.add_argument("--network-args", type=json.loads, default=None,
                   help="JSON constructor arguments the weights do not fix, e.g. '{\"xlstm_scales\": [2, 3]}'")
    p = sub.add_parser("vmamba", help="VMamba-S ImageNet weights -> encoder and mirrored decoder of a new network")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--network", choices=("VMUNet", "XLSTMVMUNet"), default="VMUNet")
    p.add_argument("--network-args", type=json.loads, default=None, help="JSON constructor arguments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "xlstm-unet":
            conversion = convert_xlstm_unet_checkpoint(args.checkpoint, args.axes, args.strides, args.patch_size,
                                                       args.keep_unused_norm)
        elif args.command == "vm-unet":
            conversion = convert_vmunet_checkpoint(args.checkpoint, args.network, args.drop_official_head,
                                                   args.network_args)
        else:
            conversion = convert_vmamba_pretrained(args.checkpoint, args.network, args.network_args)
        model_path, def_path = save_conversion(conversion, args.out)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{conversion.source} -> {model_path} ({len(conversion.state_dict)} tensors, "
          f"{sum(v.numel() for v in conversion.state_dict.values()):,} values)")
    for note in conversion.notes:
        print(f"  - {note}")
    print(f"network_def ({def_path}):")
    print(json.dumps(conversion.network_def(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
