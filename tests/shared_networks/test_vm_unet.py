# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""VM-UNet and XLSTM-VMUNet: exact sizes, logits, ablations, batch invariance, VMamba pretrained loading."""

from __future__ import annotations

import argparse
import logging
import math
import re

import pytest
import torch
import torch.nn as nn

from shared_networks.blocks.vss import PatchEmbed2D, VSSLayer
from shared_networks.blocks.xlstm import MLSTMBlock, SLSTMBlock
from shared_networks.nets.vm_unet import VMUNet, load_vmamba_pretrained
from shared_networks.nets.xlstm_vm_unet import XLSTMVMUNet

SMALL = {"dims": (8, 16, 32, 64), "depths": (2, 2, 2, 2), "depths_decoder": (2, 2, 2, 1)}
TINY = {"dims": (8, 16, 32, 64), "depths": (1, 1, 1, 1), "depths_decoder": (1, 1, 1, 1)}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """These tensors are tiny: extra OpenMP threads only add overhead (up to 10x on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _slstm_params(dim):
    ffn = 64 * math.ceil(4 / 3 * dim / 64)
    return 2 * dim * dim + 3 * dim * ffn + 12 * dim


def _mlstm_params(dim):
    return 6 * dim**2 + 87 * dim + 8


# --------------------------------------------------------------------------------------------------- VM-UNet


def test_vmunet_default_parameter_count_is_the_official_one():
    assert n_params(VMUNet()) == 27_427_561  # ARCHITECTURE.md §3.6, = VM-UNet paper's 27.43 M


def test_vmunet_256_forward_returns_logits_of_the_final_conv():
    torch.manual_seed(0)
    net = VMUNet().eval()
    captured = {}
    net.final_conv.register_forward_hook(lambda mod, inp, out: captured.update(out=out))
    with torch.no_grad():
        out = net(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 1, 256, 256)
    assert torch.equal(out, captured["out"])  # no sigmoid after the last layer
    assert torch.isfinite(out).all()


def test_vmunet_state_dict_uses_the_official_key_names():
    keys = set(VMUNet(**TINY).state_dict())
    for key in (
        "patch_embed.proj.weight", "patch_embed.norm.weight",
        "layers.0.blocks.0.ln_1.weight", "layers.0.blocks.0.self_attention.in_proj.weight",
        "layers.1.blocks.0.self_attention.x_proj_weight", "layers.2.blocks.0.self_attention.dt_projs_weight",
        "layers.3.blocks.0.self_attention.A_logs", "layers.0.downsample.reduction.weight",
        "layers.2.downsample.norm.weight", "layers_up.1.upsample.expand.weight", "layers_up.3.upsample.norm.bias",
        "layers_up.0.blocks.0.self_attention.Ds", "final_up.expand.weight", "final_up.norm.weight",
        "final_conv.weight", "final_conv.bias",
    ):
        assert key in keys, key
    assert not any(k.startswith("layers.3.downsample") or k.startswith("layers_up.0.upsample") for k in keys)


def test_vmunet_init_and_drop_path_schedule():
    torch.manual_seed(0)
    net = VMUNet()
    w = net.layers[0].blocks[0].self_attention.in_proj.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.05) and w.abs().max() <= 2.0
    assert torch.equal(net.layers[1].downsample.norm.weight, torch.ones(4 * 192))
    enc = [b.drop_path.drop_prob for layer in net.layers for b in layer.blocks]
    dec = [b.drop_path.drop_prob for layer in net.layers_up for b in layer.blocks]
    assert enc == pytest.approx(torch.linspace(0, 0.2, 8).tolist())
    assert dec == pytest.approx(torch.linspace(0, 0.2, 7).flip(0).tolist())


def test_vmunet_small_shapes_grey_input_and_gradients():
    torch.manual_seed(0)
    net = VMUNet(out_channels=2, **TINY)
    grey = torch.randn(2, 1, 64, 96)
    out = net(grey)
    assert out.shape == (2, 2, 64, 96)
    net.eval()
    assert torch.equal(net(grey), net(grey.repeat(1, 3, 1, 1)))  # 1-channel images are repeated to RGB
    net.train()
    net(torch.randn(1, 3, 32, 32)).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_vmunet_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"divisible by 32"):
        VMUNet(**TINY)(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="input channels; got 2"):
        VMUNet(**TINY)(torch.randn(1, 2, 64, 64))
    with pytest.raises(ValueError, match=r"\[8, 16, 30, 64\]"):
        VMUNet(dims=(8, 16, 30, 64))
    with pytest.raises(ValueError, match="one entry per layer"):
        VMUNet(depths=(2, 2, 2), depths_decoder=(2, 2, 2, 1))
    with pytest.raises(ValueError, match="'cuda'"):
        VMUNet(scan_backend="cuda")
    with pytest.raises(ValueError, match="drop_path_rate"):
        VMUNet(drop_path_rate=1.5)
    assert VMUNet(dims=8, **{k: v for k, v in TINY.items() if k != "dims"}).dims == [8, 16, 32, 64]


# --------------------------------------------------------------------------------------------------- XLSTM-VMUNet


@pytest.mark.parametrize(
    "blocks,expected", [("none", 27_427_561), ("s", 28_540_397), ("m", 28_583_613), ("sm", 29_696_445)]
)
def test_xlstm_vmunet_parameter_counts_per_ablation(blocks, expected):
    net = XLSTMVMUNet(xlstm_blocks=blocks)
    assert n_params(net) == expected
    # = VM-UNet + per default scale (2: 384 ch, 3: 192 ch) the blocks plus α and β
    per_block = {"s": _slstm_params, "m": _mlstm_params}
    extra = 0 if blocks == "none" else sum(2 + sum(per_block[b](d) for b in blocks) for d in (384, 192))
    assert expected == 27_427_561 + extra


def test_xlstm_vmunet_none_is_vmunet():
    torch.manual_seed(0)
    ref = VMUNet(**TINY).double().eval()
    torch.manual_seed(0)
    net = XLSTMVMUNet(xlstm_blocks="none", **TINY).double().eval()
    assert list(net.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    assert torch.equal(net(x), ref(x))
    assert len(net.fusions) == 0 and net.xlstm_scales == ()


def test_xlstm_vmunet_starts_as_vmunet_and_learns_beta():
    torch.manual_seed(0)
    ref = VMUNet(**TINY).double()
    torch.manual_seed(0)
    net = XLSTMVMUNet(xlstm_scales=(0, 1, 2, 3), **TINY).double()
    assert sorted(net.fusions) == ["0", "1", "2", "3"]
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    ref.eval(), net.eval()
    assert torch.allclose(net(x), ref(x), rtol=0, atol=1e-12)  # α = 1, β = 0 at init
    net.train()
    net(x).square().mean().backward()
    for fusion in net.fusions.values():
        assert fusion.beta.grad.abs() > 0 and fusion.alpha.grad.abs() > 0
    with torch.no_grad():
        net.fusions["3"].beta.fill_(0.5)
    net.eval()
    assert not torch.allclose(net(x), ref(x), atol=1e-6)


@pytest.mark.parametrize("blocks", ["s", "m", "sm"])
def test_xlstm_vmunet_ablation_switch_builds_the_named_blocks(blocks):
    net = XLSTMVMUNet(xlstm_blocks=blocks, xlstm_scales=(1, 3), **TINY)
    kinds = {"s": SLSTMBlock, "m": MLSTMBlock}
    for scale, fusion in net.fusions.items():
        assert [type(b) for b in fusion.xlstm.blocks] == [kinds[b] for b in blocks]
        assert fusion.xlstm.dim == net.decoder_input_channels(int(scale))
    assert net.decoder_input_channels(1) == 64 and net.decoder_input_channels(3) == 16
    assert net(torch.randn(1, 3, 32, 64)).shape == (1, 1, 32, 64)


def test_xlstm_vmunet_is_batch_invariant():
    torch.manual_seed(0)
    net = XLSTMVMUNet(xlstm_scales=(0, 1, 2, 3), **TINY).double().eval()
    with torch.no_grad():
        for fusion in net.fusions.values():
            fusion.beta.fill_(0.7)  # make the xLSTM branch count
            for p in fusion.xlstm.parameters():
                p.add_(0.05 * torch.randn_like(p))
    image = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        alone = net(image)[0]
        with_two = net(torch.cat([torch.randn(2, 3, 64, 64, dtype=torch.float64), image]))[2]
        with_other = net(torch.cat([image, 5 * torch.randn(3, 3, 64, 64, dtype=torch.float64)]))[0]
    assert torch.allclose(with_two, alone, rtol=0, atol=1e-12)
    assert torch.allclose(with_other, alone, rtol=0, atol=1e-12)


def test_xlstm_vmunet_gradient_of_one_image_ignores_the_others():
    torch.manual_seed(0)
    net = XLSTMVMUNet(xlstm_scales=(2, 3), drop_path_rate=0.0, **TINY).double().train()
    with torch.no_grad():
        for fusion in net.fusions.values():
            fusion.beta.fill_(1.0)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad(net(x)[1].sum(), x)[0]
    assert grad[1].abs().max() > 0
    assert grad[0].abs().max() == 0 and grad[2].abs().max() == 0


def test_xlstm_vmunet_bad_arguments_raise():
    with pytest.raises(ValueError, match="'x'"):
        XLSTMVMUNet(xlstm_blocks="x", **TINY)
    with pytest.raises(ValueError, match=r"\[4\]"):
        XLSTMVMUNet(xlstm_scales=(4,), **TINY)
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        XLSTMVMUNet(xlstm_scales=(2, 2), **TINY)
    with pytest.raises(ValueError, match="empty"):
        XLSTMVMUNet(xlstm_scales=(), **TINY)
    with pytest.raises(ValueError, match="'tanh'"):
        XLSTMVMUNet(slstm_forget_gate="tanh", **TINY)
    with pytest.raises(ValueError, match="mlstm_backend"):
        XLSTMVMUNet(mlstm_backend="fast", **TINY)


# --------------------------------------------------------------------------------------------------- pretrained


def _synthetic_vmamba_small(dims=SMALL["dims"], depths=(2, 2, 27, 2), seed=1):
    """A checkpoint in VMamba v0's e238 format (VMamba-S depths) with distinguishable random weights."""
    torch.manual_seed(seed)
    embed = PatchEmbed2D(4, 3, dims[0])
    layers = nn.ModuleList(VSSLayer(dims[i], depths[i], [0.0] * depths[i], downsample=i < 3) for i in range(4))
    state = {f"patch_embed.{k}": v for k, v in embed.state_dict().items()}
    state.update({f"layers.{k}": v for k, v in layers.state_dict().items()})
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in state.items()}
    state.update({"norm.weight": torch.ones(dims[-1]), "norm.bias": torch.zeros(dims[-1]),
                  "head.weight": torch.randn(1000, dims[-1]), "head.bias": torch.zeros(1000)})
    return {"model": state, "epoch": 238}


@pytest.fixture
def vmamba_file(tmp_path):
    checkpoint = _synthetic_vmamba_small()
    path = tmp_path / "vmamba_small_e238_ema.pth"
    torch.save(checkpoint, path)
    return path, checkpoint["model"]


@pytest.mark.parametrize("cls", [VMUNet, XLSTMVMUNet])
def test_pretrained_loading_fills_encoder_and_mirrored_decoder(cls, vmamba_file, caplog):
    path, ckpt = vmamba_file
    torch.manual_seed(0)
    net = cls(**SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="shared_networks.nets.vm_unet"):
        report = net.load_vmamba_pretrained(path)
    state = net.state_dict()

    encoder = [k for k in state if k.startswith(("patch_embed.", "layers."))]
    decoder_blocks = [k for k in state if re.match(r"layers_up\.\d\.blocks\.", k)]
    assert sorted(report.loaded_encoder) == sorted(encoder)
    assert sorted(report.loaded_decoder) == sorted(decoder_blocks)
    for key in encoder:
        assert torch.equal(state[key], ckpt[key]), key
    for key in decoder_blocks:
        j = int(key.split(".")[1])
        assert torch.equal(state[key], ckpt[f"layers.{3 - j}." + key.split(".", 2)[2]]), key

    deep = {k for k in ckpt if re.match(r"layers\.2\.blocks\.([2-9]|1\d|2[0-6])\.", k)}
    assert len(deep) == 25 * 13  # VMamba-S's blocks 2..26 of layer 2 have no VM-UNet counterpart
    assert set(report.unmatched_checkpoint_keys) == deep | {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    left = [k for k in state if k not in encoder and k not in decoder_blocks]
    assert sorted(report.missing_model_keys) == sorted(left)
    assert any(k.startswith("final_conv") for k in left) and any(".upsample." in k for k in left)
    if cls is XLSTMVMUNet:
        assert any(k.startswith("fusions.") for k in left)
    for key in left:
        assert torch.equal(state[key], before[key]), key  # left at initialisation
    assert report.shape_mismatches == []
    for logged in ("layers.2.blocks.2..26 (325)", "head (2)", "norm (2)", "final_conv (2)", "layers_up.3.upsample (3)"):
        assert logged in caplog.text
    assert "head.weight" in report.summary(full=True)
    assert torch.isfinite(net(torch.randn(1, 3, 32, 32))).all()


def test_pretrained_shape_mismatch_raises_or_is_reported(tmp_path):
    checkpoint = _synthetic_vmamba_small()
    key = "layers.0.blocks.0.self_attention.A_logs"
    checkpoint["model"][key] = torch.zeros(4 * 16, 8)  # d_state 8 instead of 16
    path = tmp_path / "odd.pth"
    torch.save(checkpoint, path)
    net = VMUNet(**SMALL)
    with pytest.raises(ValueError, match=re.escape(key)):
        load_vmamba_pretrained(net, path)
    report = load_vmamba_pretrained(net, path, strict_report=False)
    assert {m[0] for m in report.shape_mismatches} == {key, "layers_up.3.blocks.0.self_attention.A_logs"}
    assert key in report.missing_model_keys and key in report.unmatched_checkpoint_keys
    assert "shape mismatches" in report.summary()


def test_pretrained_bad_files_raise_naming_the_file(tmp_path):
    net = VMUNet(**TINY)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_vmamba_pretrained(net, missing)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth"):
        load_vmamba_pretrained(net, text)
    wrong = tmp_path / "wrong_format.pth"
    torch.save({"state": [1, 2, 3]}, wrong)
    with pytest.raises(ValueError, match="wrong_format.pth.*'model'"):
        load_vmamba_pretrained(net, wrong)
    foreign = tmp_path / "resnet.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match="resnet.pth.*patch_embed"):
        load_vmamba_pretrained(net, foreign)
    pickled = tmp_path / "with_config.pth"
    torch.save({"model": {}, "config": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(ValueError, match="with_config.pth.*weights_only"):
        load_vmamba_pretrained(net, pickled)
