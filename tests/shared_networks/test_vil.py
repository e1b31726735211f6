# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""ViL blocks: parameter formula, initialisation, direction flip, token modes, backend independence."""

from __future__ import annotations

import pytest
import torch

from shared_networks.blocks.vil import SpatialViL, ViLBlock


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [8, 64, 320, 512])
def test_vil_block_parameter_formula(dim):
    # ARCHITECTURE.md §2.6: 6D² + 87D + 8 for block size 4; the official wrapper's unused LayerNorm adds 2D
    assert n_params(ViLBlock(dim)) == 6 * dim**2 + 87 * dim + 8
    assert n_params(SpatialViL(dim, official_unused_norm=True)) == 6 * dim**2 + 89 * dim + 8


@pytest.mark.parametrize("dim", [25, 210])
def test_channel_token_dims_fall_back_to_block_size_two(dim):
    layer = SpatialViL(dim, token_mode="channel")
    assert layer.vil.layer.mlstm_cell.num_heads == 2
    assert n_params(layer) == 6 * dim**2 + 51 * dim + 4


def test_initialisation_matches_vil():
    block = ViLBlock(64)
    cell = block.layer.mlstm_cell
    assert torch.equal(cell.fgate.bias, torch.linspace(3.0, 6.0, 4))
    assert not cell.fgate.weight.any() and not cell.igate.weight.any()
    assert torch.equal(block.layer.learnable_skip, torch.ones(128))
    assert not block.norm.weight.any() and not cell.outnorm.weight.any()
    # std of small init sqrt(2/(5D)) and wang init 2/sqrt(D), D = 64
    assert block.layer.proj_up.weight.std().item() == pytest.approx((2 / 320) ** 0.5, rel=0.05)
    assert block.layer.proj_down.weight.std().item() == pytest.approx(2 / 8, rel=0.05)


def test_qkv_projections_use_the_small_init_of_the_embedding_dim():
    # ViL re-initialises q/k/v with std sqrt(2/(5 D)), D the embedding dim, overriding the block-diagonal layer's
    # own sqrt(2/(5 b)) (b = 4: 0.316); D = 256 gives 0.0395
    torch.manual_seed(0)
    layer = ViLBlock(256).layer
    for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
        assert proj.weight.shape == (128, 4, 4)  # E / b blocks of b x b, E = 2 D
        assert proj.weight.std().item() == pytest.approx((2 / (5 * 256)) ** 0.5, rel=0.05)
        assert abs(proj.weight.mean().item()) < 0.005
    assert not torch.equal(layer.q_proj.weight, layer.k_proj.weight)  # drawn independently


def test_backward_direction_is_forward_on_flipped_tokens():
    torch.manual_seed(0)
    fwd, bwd = ViLBlock(16, direction="forward"), ViLBlock(16, direction="backward")
    bwd.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 37, 16, dtype=torch.float64)
    fwd.double(), bwd.double()
    assert torch.allclose(bwd(x), fwd(x.flip(1)).flip(1), rtol=0, atol=1e-12)
    assert not torch.allclose(bwd(x), fwd(x))


def test_output_does_not_depend_on_mlstm_backend():
    torch.manual_seed(0)
    block = ViLBlock(16).double()
    x = torch.randn(2, 300, 16, dtype=torch.float64)
    outputs = {}
    for backend in ("parallel", "chunkwise", "recurrent"):
        for module in block.modules():
            if hasattr(module, "mlstm_backend"):
                module.mlstm_backend = backend
        outputs[backend] = block(x)
    assert torch.allclose(outputs["chunkwise"], outputs["recurrent"], atol=1e-12)
    assert torch.allclose(outputs["parallel"], outputs["recurrent"], atol=1e-12)


def test_patch_tokens_are_row_major_voxels():
    # a patch-token ViL is causal along the row-major voxel order: changing the last voxel changes nothing before it
    torch.manual_seed(0)
    layer = SpatialViL(8, token_mode="patch").double()
    x = torch.randn(1, 8, 3, 4, 5, dtype=torch.float64)
    y = x.clone()
    y[..., -1, -1, -1] += 1.0
    a, b = layer(x).flatten(2), layer(y).flatten(2)
    assert torch.allclose(a[..., :-1], b[..., :-1], atol=1e-12)
    assert not torch.allclose(a[..., -1], b[..., -1])


def test_channel_token_layer_rejects_other_map_sizes():
    layer = SpatialViL(25, token_mode="channel")
    assert layer(torch.randn(1, 512, 5, 5)).shape == (1, 512, 5, 5)
    with pytest.raises(ValueError, match=r"built for feature maps of 25 voxels, got \(6, 6\) = 36"):
        layer(torch.randn(1, 512, 6, 6))
