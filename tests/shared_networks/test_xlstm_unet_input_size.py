# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""XLSTMUNet names the input size it needs when the bottleneck would hold one voxel (verify_net_in_out at n = 1)."""

from __future__ import annotations

import pytest
import torch

from shared_networks import XLSTMUNet


@pytest.mark.parametrize("spatial_dims, shape, bottleneck", [(3, (16, 16, 8), r"\(1, 1, 1\)"), (2, (16, 16), r"\(1, 1\)")])
def test_a_one_voxel_bottleneck_gets_the_networks_own_error(spatial_dims, shape, bottleneck):
    strides = (1, 2, 2, 2, (2, 2, 1) if spatial_dims == 3 else 2)
    net = XLSTMUNet(spatial_dims, 1, 2, features=(4, 8, 8, 8, 8), strides=strides).train()
    assert net.total_stride == ((16, 16, 8) if spatial_dims == 3 else (16, 16))
    # the input is divisible by the total stride, so only the bottleneck size is wrong
    with pytest.raises(ValueError, match=rf"leaves a bottleneck of {bottleneck} .*twice the total stride"):
        net(torch.randn(1, 1, *shape))
    # twice the total stride along one axis is enough: a 2-voxel bottleneck, and instance norm runs
    bigger = (32,) + shape[1:]
    assert net(torch.randn(1, 1, *bigger)).shape == (1, 2, *bigger)
