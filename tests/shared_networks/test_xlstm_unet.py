# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""XLSTMUNet: parameter parity with the official networks, shapes in 2D and 3D, options and errors."""

from __future__ import annotations

import pytest
import torch

from shared_networks import XLSTMUNet
from shared_networks.nets.xlstm_unet import default_block_counts

FEATURES_2D = (32, 64, 128, 256, 512, 512, 512)  # AbdomenMR 2D plan: 320², 7 stages
STRIDES_2D = (1, 2, 2, 2, 2, 2, 2)
FEATURES_3D = (32, 64, 128, 256, 320, 320)
STRIDES_3D = (1, 2, 2, 2, 2, 2)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def official_2d(**kwargs):
    return XLSTMUNet(2, 1, 14, features=FEATURES_2D, strides=STRIDES_2D, full_res_skip_2d=False, **kwargs)


# Official counts (ARCHITECTURE.md §4), reproduced with the official quirks switched on.
@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: official_2d(variant="bot", official_unused_norm=True), 47_455_708),
        (lambda: official_2d(variant="enc", patch_size=(320, 320), official_unused_norm=True), 47_021_771),
        (lambda: XLSTMUNet(3, 1, 14, features=FEATURES_3D, strides=STRIDES_3D, official_unused_norm=True), 42_097_102),
        (
            lambda: XLSTMUNet(2, 3, 3, features=FEATURES_2D + (512,), strides=STRIDES_2D + (2,),
                              full_res_skip_2d=False, official_unused_norm=True),
            64_719_997,
        ),
    ],
    ids=["bot2d_abdomenmr", "enc2d_abdomenmr", "bot3d", "bot2d_8stage_cell"],
)
def test_parameter_count_equals_official(build, expected):
    assert n_params(build()) == expected


def test_parameter_count_without_the_unused_norm_and_with_the_full_res_skip():
    # the unused LayerNorm is 2·512 parameters on the 2D bottleneck; the full-res skip widens the last decoder conv
    assert n_params(official_2d(variant="bot")) == 47_455_708 - 2 * 512
    fixed = XLSTMUNet(2, 1, 14, features=FEATURES_2D, strides=STRIDES_2D)
    extra_in = 32  # the last ResidualBlock now takes 64 channels instead of 32: conv1 (3×3) and the 1×1 shortcut
    assert n_params(fixed) == 47_455_708 - 2 * 512 + extra_in * 32 * 9 + extra_in * 32


def test_default_block_counts():
    assert default_block_counts(7) == ([2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1])
    assert default_block_counts(6) == ([2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1])
    assert default_block_counts(8) == ([2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1])


def test_enc_2d_vil_placement_and_token_modes():
    net = official_2d(variant="enc", patch_size=(320, 320))
    kinds = [type(m).__name__ for m in net.encoder_extras]
    assert kinds == ["Identity", "IdentityResidualBlock", "SpatialViL", "Identity", "SpatialViL", "Identity", "SpatialViL"]
    vils = [m for m in net.encoder_extras if type(m).__name__ == "SpatialViL"]
    assert [(v.token_mode, v.dim) for v in vils] == [("patch", 128), ("channel", 400), ("channel", 25)]


def test_enc_3d_vil_placement():
    net = XLSTMUNet(3, 1, 14, variant="enc", features=FEATURES_3D, patch_size=(224, 160, 48),
                    strides=(1, (2, 2, 1), 2, 2, 2, (2, 2, 1)))
    kinds = [type(m).__name__ for m in net.encoder_extras]
    assert kinds == ["IdentityResidualBlock"] * 3 + ["SpatialViL"] * 3
    # maps: 112×80×48 → ... stage 3 = 28×20×12 = 6720 tokens; stage 5 = 7×5×6 = 210 ≤ 320 → channel tokens
    assert [(m.token_mode, m.dim) for m in net.encoder_extras[3:]] == [("patch", 256), ("patch", 320), ("channel", 210)]


@torch.no_grad()
def test_2d_320_shapes_with_deep_supervision():
    net = XLSTMUNet(2, 1, 14, features=FEATURES_2D, strides=STRIDES_2D, deep_supervision=True)
    x = torch.randn(1, 1, 320, 320)
    outputs = net.train()(x)
    assert [tuple(o.shape) for o in outputs] == [(1, 14, s, s) for s in (320, 160, 80, 40, 20, 10)]
    assert net.eval()(x).shape == (1, 14, 320, 320)


def test_3d_forward_backward_and_alternating_vil():
    torch.manual_seed(0)
    net = XLSTMUNet(3, 2, 5, variant="enc", features=(8, 16, 16, 16), strides=(1, 2, 2, 2), patch_size=(16, 16, 8),
                    vil_order="alternate", deep_supervision=True)
    assert [m.vil.layer.direction for m in net.encoder_extras[3:]] == ["forward"]
    x = torch.randn(2, 2, 16, 16, 8)
    outputs = net.train()(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 16, 16, 8), (2, 5, 8, 8, 4), (2, 5, 4, 4, 2)]
    sum(o.square().mean() for o in outputs).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_alternating_directions_across_enc_stages():
    net = official_2d(variant="enc", patch_size=(320, 320), vil_order="alternate")
    vils = [m for m in net.encoder_extras if type(m).__name__ == "SpatialViL"]
    assert [v.vil.layer.direction for v in vils] == ["forward", "backward", "forward"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spatial_dims=1), "spatial_dims must be 2 or 3"),
        (dict(variant="middle"), "middle"),
        (dict(variant="enc"), "needs patch_size"),
        (dict(strides=(1, 2)), "one entry per stage"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    args = dict(spatial_dims=3, in_channels=1, out_channels=2, features=(8, 16, 16), strides=(1, 2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        XLSTMUNet(**args)


def test_input_not_divisible_by_total_stride_is_rejected():
    net = XLSTMUNet(3, 1, 2, features=(8, 16, 16), strides=(1, 2, (2, 2, 1)))
    with pytest.raises(ValueError, match=r"divisible by the total stride \(4, 4, 2\)"):
        net(torch.randn(1, 1, 16, 16, 3))
