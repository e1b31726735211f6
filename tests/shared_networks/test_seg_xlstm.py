# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""SegXLSTM (the BraTS network): parameter count, shapes, forward/backward on CPU, options."""

from __future__ import annotations

import pytest
import torch

from shared_networks import SegXLSTM


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count():
    net = SegXLSTM(4, 3)
    # SegMamba's 67.42 M minus the Mamba layers plus ViL blocks: 66,769,651 with 3 region outputs
    assert n_params(net) == 66_769_651
    encoder = sum(n_params(m) for m in (net.downsample, net.gsc, net.vil, net.out_norm, net.out_mlp))
    assert encoder == 15_071_584
    # eight ViL blocks, two per stage, 6D² + 87D + 8 each
    assert n_params(net.vil) == sum(2 * (6 * d * d + 87 * d + 8) for d in (48, 96, 192, 384))


def test_directions_alternate_per_stage_and_vil_stages_option():
    net = SegXLSTM()
    directions = [[b.block.layer.direction for b in stage] for stage in net.vil]
    assert directions == [["forward"] * 2, ["backward"] * 2, ["forward"] * 2, ["backward"] * 2]
    light = SegXLSTM(vil_stages=(2, 3))
    assert [type(s).__name__ for s in light.vil] == ["Identity", "Identity", "Sequential", "Sequential"]
    assert n_params(SegXLSTM()) - n_params(light) == 2 * sum(6 * d * d + 87 * d + 8 for d in (48, 96))


def test_forward_backward_small_patch():
    torch.manual_seed(0)
    net = SegXLSTM(4, 3, dims=(8, 16, 16, 32), hidden_size=32)
    x = torch.randn(2, 4, 32, 32, 16)
    y = net(x)
    assert y.shape == (2, 3, 32, 32, 16)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


class _Dispatched(Exception):
    pass


def test_stage0_at_a_128_cubed_input_dispatches_the_chunkwise_mlstm(monkeypatch):
    # stage 0 sees the 64³ = 262,144 voxels of a 128³ patch: "auto" must pick the linear-memory chunkwise form there
    from xlstm_seg_kernels.mlstm import BACKENDS

    calls = []

    def spy(name):
        def record(q, k, v, igate, fgate, **kwargs):
            calls.append((name, tuple(q.shape)))
            raise _Dispatched  # the choice is all this test needs; skip the 262,144-token recurrence

        return record

    monkeypatch.delenv("XLSTM_SEG_KERNEL_BACKEND", raising=False)
    for name in list(BACKENDS):
        monkeypatch.setitem(BACKENDS, name, spy(name))
    net = SegXLSTM(dims=(48, 8, 8, 8), hidden_size=8)  # stage 0 as the default network's, the rest small
    assert net.downsample[0].stride == (2, 2, 2) and net.vil[0][0].block.layer.dim == 48  # 128³ -> 64³ tokens of 48
    cell = net.vil[0][0].block.layer.mlstm_cell
    assert cell.mlstm_backend == "auto"
    qkv = torch.zeros(1, 64**3, 96)  # the cell's inputs at 64³ tokens (inner width 2·48)
    with torch.no_grad(), pytest.raises(_Dispatched):
        cell(qkv, qkv, qkv)
    assert calls == [("chunkwise", (1, 4, 64**3, 24))]  # 4 mLSTM heads of 96/4 = 24 channels


@pytest.mark.parametrize("kwargs, message", [
    (dict(dims=(8, 16, 32)), "dims and depths need 4 entries"),
    (dict(vil_stages=(4,)), "vil_stages must be in 0..3"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegXLSTM(**kwargs)


@pytest.mark.parametrize("shape", [(24, 32, 32), (16, 16, 16)], ids=["not_divisible", "bottleneck_one_voxel"])
def test_input_size_must_be_divisible_by_16_and_exceed_16_cubed(shape):
    with pytest.raises(ValueError, match="divisible by 16 and larger than 16x16x16"):
        SegXLSTM(dims=(8, 16, 16, 32), hidden_size=32)(torch.randn(1, 4, *shape))
