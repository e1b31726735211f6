# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""VSS blocks of VM-UNet: SS2D wiring against an explicit per-direction loop, init, parameter counts, resolution ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shared_networks.blocks.vss import (
    SS2D,
    FinalPatchExpand2D,
    PatchEmbed2D,
    PatchExpand2D,
    PatchMerging2D,
    VSSBlock,
    VSSLayer,
    VSSLayerUp,
)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """These tensors are tiny: extra OpenMP threads only add overhead (up to 10x on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _explicit_ss2d_scan(ss2d: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D's core written out: per direction an index map, the projections, a step loop, and the map back."""
    batch, dim, height, width = x.shape
    length = height * width
    row_major = [(h, w) for h in range(height) for w in range(width)]
    col_major = [(h, w) for w in range(width) for h in range(height)]
    orders = [row_major, col_major, row_major[::-1], col_major[::-1]]
    n, r = ss2d.d_state, ss2d.dt_rank
    out = torch.zeros(batch, dim, height, width, dtype=x.dtype)
    for k, order in enumerate(orders):
        u = torch.stack([x[:, :, h, w] for h, w in order], dim=-1)  # (B, D, L)
        proj = torch.einsum("cd,bdl->bcl", ss2d.x_proj_weight[k], u)
        dt_low, b_mat, c_mat = proj[:, :r], proj[:, r : r + n], proj[:, r + n :]
        dt = torch.einsum("dr,brl->bdl", ss2d.dt_projs_weight[k], dt_low)
        delta = F.softplus(dt + ss2d.dt_projs_bias[k][:, None])
        a_mat = -torch.exp(ss2d.A_logs[k * dim : (k + 1) * dim])  # (D, N)
        d_skip = ss2d.Ds[k * dim : (k + 1) * dim]
        state = torch.zeros(batch, dim, n, dtype=x.dtype)
        for t in range(length):
            decay = torch.exp(delta[:, :, t, None] * a_mat)  # (B, D, N)
            state = decay * state + (delta[:, :, t] * u[:, :, t])[..., None] * b_mat[:, None, :, t]
            y_t = (state * c_mat[:, None, :, t]).sum(-1) + d_skip * u[:, :, t]
            h, w = order[t]
            out[:, :, h, w] += y_t
    return out.flatten(2)


def _randomise_ssm(ss2d: SS2D) -> None:
    with torch.no_grad():
        ss2d.A_logs.add_(0.3 * torch.randn_like(ss2d.A_logs))
        ss2d.Ds.normal_()
        ss2d.dt_projs_bias.add_(torch.randn_like(ss2d.dt_projs_bias))


@pytest.mark.parametrize("height,width", [(3, 5), (4, 4)])
def test_ss2d_scan_equals_explicit_four_direction_loop(height, width):
    torch.manual_seed(0)
    ss2d = SS2D(4, d_state=4).double()
    _randomise_ssm(ss2d)
    x = torch.randn(2, ss2d.d_inner, height, width, dtype=torch.float64)
    expected = _explicit_ss2d_scan(ss2d, x)
    got = ss2d.scan(x)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_ss2d_with_identity_scan_is_four_times_the_merged_input():
    # B = C = 0 (zero x_proj rows) and D = 1 make every direction's scan the identity, so the merge gives 4·x_conv
    torch.manual_seed(0)
    ss2d = SS2D(6, d_state=4).double()
    with torch.no_grad():
        ss2d.x_proj_weight[:, ss2d.dt_rank :].zero_()
        ss2d.Ds.fill_(1.0)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    x_in, z = ss2d.in_proj(x).chunk(2, dim=-1)
    x_conv = F.silu(ss2d.conv2d(x_in.permute(0, 3, 1, 2)))
    merged = 4 * x_conv.permute(0, 2, 3, 1)
    expected = ss2d.out_proj(ss2d.out_norm(merged) * F.silu(z))
    assert torch.allclose(ss2d(x), expected, rtol=0, atol=1e-12)
    # ... and a non-identity scan gives something else
    with torch.no_grad():
        ss2d.Ds.fill_(2.0)
    assert not torch.allclose(ss2d.scan(x_conv), merged.permute(0, 3, 1, 2).flatten(2))


def test_ss2d_shapes_and_gradients():
    torch.manual_seed(0)
    ss2d = SS2D(8)
    x = torch.randn(2, 6, 10, 8, requires_grad=True)
    y = ss2d(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    for name, p in [("x", x), *ss2d.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert ss2d.x_proj_weight.shape == (4, ss2d.dt_rank + 2 * 16, 16)
    assert ss2d.dt_projs_weight.shape == (4, 16, 1) and ss2d.dt_projs_bias.shape == (4, 16)
    assert ss2d.A_logs.shape == (64, 16) and ss2d.Ds.shape == (64,)
    with pytest.raises(ValueError, match="channels-last"):
        ss2d(torch.randn(2, 8, 6, 10))


def test_ss2d_init_values():
    torch.manual_seed(0)
    ss2d = SS2D(96)
    n = ss2d.d_state
    assert ss2d.dt_rank == 6 and ss2d.d_inner == 192
    assert torch.equal(ss2d.A_logs, torch.log(torch.arange(1, n + 1.0)).expand(4 * 192, n))
    assert torch.equal(ss2d.Ds, torch.ones(4 * 192))
    dt = F.softplus(ss2d.dt_projs_bias)  # the inverse softplus recovers dt ~ exp(U[log 1e-3, log 1e-1])
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)
    log_dt = dt.log()
    assert log_dt.mean().item() == pytest.approx(0.5 * (math.log(1e-3) + math.log(1e-1)), abs=0.15)
    bound = 6**-0.5
    assert ss2d.dt_projs_weight.abs().max() <= bound and ss2d.dt_projs_weight.abs().max() > 0.9 * bound
    xb = 192**-0.5  # nn.Linear's default bound 1/sqrt(fan_in)
    assert ss2d.x_proj_weight.abs().max() <= xb and ss2d.x_proj_weight.abs().max() > 0.9 * xb


def test_dt_floor_applies():
    ss2d = SS2D(16, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-4)
    assert torch.allclose(F.softplus(ss2d.dt_projs_bias), torch.full((4, 32), 1e-4), rtol=1e-4)


@pytest.mark.parametrize("dim,expected", [(96, 105_408), (192, 339_840), (384, 1_195_776), (768, 4_455_936)])
def test_vss_block_parameter_counts(dim, expected):
    # ARCHITECTURE.md §3.6
    assert n_params(VSSBlock(dim)) == expected


def test_vss_block_is_residual_and_keeps_state_dict_names():
    torch.manual_seed(0)
    block = VSSBlock(8, drop_path=0.5).eval()
    keys = set(block.state_dict())
    for name in ("ln_1.weight", "self_attention.in_proj.weight", "self_attention.conv2d.weight",
                 "self_attention.conv2d.bias", "self_attention.x_proj_weight", "self_attention.dt_projs_weight",
                 "self_attention.dt_projs_bias", "self_attention.A_logs", "self_attention.Ds",
                 "self_attention.out_norm.weight", "self_attention.out_proj.weight"):
        assert name in keys
    x = torch.randn(1, 4, 4, 8)
    with torch.no_grad():
        block.self_attention.out_proj.weight.zero_()
    assert torch.equal(block(x), x)


def test_scan_backends_agree():
    torch.manual_seed(0)
    ref_block = SS2D(4, scan_backend="reference").double()
    torch_block = SS2D(4, scan_backend="torch").double()
    torch_block.load_state_dict(ref_block.state_dict())
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64)
    assert torch.allclose(ref_block(x), torch_block(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="scan_backend"):
        SS2D(4, scan_backend="cuda")
    with pytest.raises(ValueError, match="d_conv"):
        SS2D(4, d_conv=2)


def test_patch_merging_takes_parity_subgrids_in_vmamba_order():
    merge = PatchMerging2D(1)
    captured = {}
    merge.norm.register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0]))
    grid = torch.tensor([[10.0 * h + w for w in range(4)] for h in range(4)]).view(1, 4, 4, 1)
    out = merge(grid)
    assert out.shape == (1, 2, 2, 2)
    # output (0, 0) sees rows/cols {0,1}: order (0,0), (1,0), (0,1), (1,1)
    assert captured["x"][0, 0, 0].tolist() == [0.0, 10.0, 1.0, 11.0]
    assert captured["x"][0, 1, 1].tolist() == [22.0, 32.0, 23.0, 33.0]
    with pytest.raises(ValueError, match="even"):
        merge(torch.randn(1, 3, 4, 1))


@pytest.mark.parametrize("module,scale", [(PatchExpand2D(3), 2), (FinalPatchExpand2D(8, dim_scale=4), 4)])
def test_patch_expand_spreads_channels_p1_p2_c(module, scale):
    captured = {}
    module.expand.register_forward_hook(lambda mod, inp, out: captured.update(e=out))
    module.norm.register_forward_hook(lambda mod, inp, out: captured.update(p=inp[0]))
    x = torch.randn(2, 3, 5, module.expand.in_features)
    out = module(x)
    e, p = captured["e"], captured["p"]
    c = e.shape[-1] // scale**2
    assert out.shape == (2, 3 * scale, 5 * scale, c)
    for h, w, p1, p2 in [(0, 0, 0, 1), (2, 4, scale - 1, 0), (1, 3, 1, scale - 1)]:
        start = (p1 * scale + p2) * c
        assert torch.equal(p[:, scale * h + p1, scale * w + p2], e[:, h, w, start : start + c])


def test_patch_embed_and_layers_shapes():
    embed = PatchEmbed2D(4, 3, 8)
    x = embed(torch.randn(2, 3, 32, 16))
    assert x.shape == (2, 8, 4, 8)
    down = VSSLayer(8, 2, [0.0, 0.1], downsample=True)
    y = down(x)
    assert y.shape == (2, 4, 2, 16) and len(down.blocks) == 2
    up = VSSLayerUp(8, 1, [0.0], upsample=True)
    assert up(y).shape == (2, 8, 4, 8)
    with pytest.raises(ValueError, match="drop_path"):
        VSSLayer(8, 2, [0.0], downsample=False)
