# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""sLSTM / mLSTM blocks: step vs sequence, independent float64 references, batch independence, gradients, sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shared_networks.blocks.vil import ViLBlock
from shared_networks.blocks.xlstm import (
    GatedFeedForward,
    MLSTMBlock,
    SLSTMBlock,
    SLSTMCell,
    XLSTMStack,
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


def _random_cell(dim=12, heads=3, forget_gate="sigmoid", seed=0):
    torch.manual_seed(seed)
    cell = SLSTMCell(dim, heads, forget_gate).double()
    with torch.no_grad():
        cell.recurrent_kernel.normal_(0.0, 0.4)
        cell.bias.normal_(0.0, 1.0)
    return cell


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_slstm_step_by_step_equals_sequence_float64(forget_gate):
    cell = _random_cell(forget_gate=forget_gate)
    wx = (2.0 * torch.randn(3, 23, 4, 12, dtype=torch.float64)).requires_grad_()
    seq, last = cell(wx, return_last_state=True)
    (seq.sin().sum() + last[1].sum()).backward()
    grads_seq = [wx.grad.clone(), cell.recurrent_kernel.grad.clone(), cell.bias.grad.clone()]
    wx.grad = None
    cell.zero_grad()

    state, steps = None, []
    for t in range(wx.shape[1]):
        h, state = cell.step(wx[:, t], state)
        steps.append(h)
    stepped = torch.stack(steps, dim=1)
    (stepped.sin().sum() + state[1].sum()).backward()
    grads_step = [wx.grad, cell.recurrent_kernel.grad, cell.bias.grad]

    assert torch.allclose(seq, stepped, rtol=0, atol=1e-13)
    for a, b in zip(last, state):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for a, b in zip(grads_seq, grads_step):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_slstm_sequence_continues_from_a_carried_state():
    cell = _random_cell()
    wx = torch.randn(2, 17, 4, 12, dtype=torch.float64)
    full = cell(wx)
    first, state = cell(wx[:, :9], return_last_state=True)
    second = cell(wx[:, 9:], state=state)
    assert torch.allclose(torch.cat([first, second], dim=1), full, rtol=0, atol=1e-13)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_slstm_equals_unstabilised_exponential_gating(forget_gate):
    # the paper's equations without the stabiliser m: c = f c + exp(ĩ) z, n = f n + exp(ĩ), h = o c / n
    cell = _random_cell(dim=8, heads=2, forget_gate=forget_gate, seed=1)
    wx = torch.randn(2, 15, 4, 8, dtype=torch.float64)
    heads, dh = 2, 4
    r = cell.recurrent_kernel  # (NH, DH, 4·DH)
    h = c = n = torch.zeros(2, 8, dtype=torch.float64)
    outs = []
    for t in range(15):
        rec = torch.stack([h[:, g * dh : (g + 1) * dh] @ r[g] for g in range(heads)], dim=1)  # (B, NH, 4·DH)
        rec = rec.view(2, heads, 4, dh).permute(0, 2, 1, 3).reshape(2, 4, 8)
        pre = wx[:, t] + rec + cell.bias.reshape(4, 8)
        i_t, f_t, z_t, o_t = pre.unbind(1)
        f_gate = torch.sigmoid(f_t) if forget_gate == "sigmoid" else torch.exp(f_t)
        c = f_gate * c + torch.exp(i_t) * torch.tanh(z_t)
        n = f_gate * n + torch.exp(i_t)
        h = torch.sigmoid(o_t) * c / n
        outs.append(h)
    assert torch.allclose(cell(wx), torch.stack(outs, dim=1), rtol=1e-10, atol=1e-12)


def test_slstm_stabiliser_survives_large_gate_preactivations():
    cell = _random_cell()
    wx = torch.randn(2, 30, 4, 12, dtype=torch.float32) * 120.0  # exp(>89) overflows float32 without the stabiliser
    out = cell.float()(wx)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.0 + 1e-5  # |h| = |σ(o) c / n| <= max |tanh z| since c / n is a convex mix


def test_slstm_block_batch_elements_and_future_tokens_do_not_leak():
    torch.manual_seed(0)
    block = SLSTMBlock(16).double()
    with torch.no_grad():
        block.cell.recurrent_kernel.normal_(0.0, 0.3)
    x = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    y = block(x)
    grad = torch.autograd.grad(y[0, 5].sum(), x)[0]
    assert grad[1:].abs().max() == 0  # other images
    assert grad[0, 6:].abs().max() == 0  # later tokens: the block is causal
    assert grad[0, :6].abs().max() > 0
    other = x.detach().clone()
    other[1:] = torch.randn(2, 11, 16, dtype=torch.float64)
    assert torch.equal(block(other)[0], y[0].detach())


def _slstm_block_formula(dim, heads=4, conv=4):
    ffn = 64 * math.ceil(4 / 3 * dim / 64)
    # LN + conv + 4 headwise W + 4 recurrent R + bias + GN + LN + gated MLP
    weights = 4 * dim * dim // heads + 4 * dim * dim // heads  # W and R are both block-diagonal
    return dim + (conv + 1) * dim + weights + 4 * dim + dim + dim + 3 * dim * ffn


@pytest.mark.parametrize("dim", [16, 96, 192, 384])
def test_block_parameter_formulas(dim):
    assert n_params(SLSTMBlock(dim)) == _slstm_block_formula(dim)
    assert n_params(SLSTMBlock(dim, conv_kernel_size=0)) == _slstm_block_formula(dim) - 5 * dim
    assert n_params(MLSTMBlock(dim)) == 6 * dim**2 + 87 * dim + 8


@pytest.mark.parametrize("dim,inner", [(96, 128), (192, 256), (384, 512), (768, 1024), (16, 64)])
def test_gated_mlp_width_is_four_thirds_rounded_to_64(dim, inner):
    assert GatedFeedForward(dim).inner_dim == inner


def test_slstm_init():
    block = SLSTMBlock(32, num_heads=4)
    cell = block.cell
    assert not cell.recurrent_kernel.any()
    assert torch.equal(cell.bias[1], torch.linspace(3.0, 6.0, 8).expand(4, 8))
    assert not cell.bias[0].any() and not cell.bias[2:].any()
    assert block.igate.weight.std().item() == pytest.approx(math.sqrt(2 / (5 * 32)), rel=0.25)


def _mlstm_block_recurrent_reference(block: MLSTMBlock, x: torch.Tensor) -> torch.Tensor:
    """The whole mLSTM block in float64 with the cell written as its recurrence (C, n, m), independent of kernels."""
    layer, cell = block.layer, block.layer.mlstm_cell
    u = F.layer_norm(x, (x.shape[-1],), weight=1.0 + block.norm.weight, eps=block.norm.eps)
    x_m, z = layer.proj_up(u).chunk(2, dim=-1)
    x_c = F.silu(layer.conv1d(x_m))
    q, k, v = layer.q_proj(x_c), layer.k_proj(x_c), layer.v_proj(x_m)
    ig = cell.igate(torch.cat([q, k, v], -1))
    fg = cell.fgate(torch.cat([q, k, v], -1))
    batch, length, inner = q.shape
    heads = cell.num_heads
    dh = inner // heads
    out = torch.zeros(batch, length, inner, dtype=x.dtype)
    for b in range(batch):
        for hd in range(heads):
            sl = slice(hd * dh, (hd + 1) * dh)
            mem = torch.zeros(dh, dh, dtype=x.dtype)
            norm = torch.zeros(dh, dtype=x.dtype)
            m = torch.tensor(float("-inf"), dtype=x.dtype)
            for t in range(length):
                log_f = F.logsigmoid(fg[b, t, hd])
                m_new = torch.maximum(log_f + m, ig[b, t, hd])
                fp, ip = torch.exp(log_f + m - m_new), torch.exp(ig[b, t, hd] - m_new)
                k_t = k[b, t, sl] / math.sqrt(dh)
                mem = fp * mem + ip * torch.outer(v[b, t, sl], k_t)  # matrix memory C ∈ R^{DH×DH}
                norm = fp * norm + ip * k_t
                m = m_new
                den = torch.maximum((norm @ q[b, t, sl]).abs(), torch.exp(-m)) + 1e-6
                out[b, t, sl] = mem @ q[b, t, sl] / den
    # per-head GroupNorm (scale 1 + w), skip, output gate, down projection, residual
    h = out.view(batch, length, heads, dh)
    h = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-5)
    h = h.reshape(batch, length, inner) * (1.0 + cell.outnorm.weight)
    return x + layer.proj_down((h + layer.learnable_skip * x_c) * F.silu(z))


@pytest.mark.parametrize("backend", ["parallel", "chunkwise", "recurrent"])
def test_mlstm_block_matches_float64_recurrent_reference(backend):
    torch.manual_seed(0)
    block = MLSTMBlock(8, num_heads=2, mlstm_backend=backend, chunk_size=8).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))  # move gates, norms and skip off their init
    x = torch.randn(2, 21, 8, dtype=torch.float64)
    assert torch.allclose(block(x), _mlstm_block_recurrent_reference(block, x), rtol=1e-9, atol=1e-11)


def test_mlstm_block_is_the_vil_block_for_four_heads():
    torch.manual_seed(0)
    vil = ViLBlock(16).double()
    block = MLSTMBlock(16).double()
    block.load_state_dict(vil.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    assert torch.equal(block(x), vil(x))
    assert block.layer.mlstm_cell.num_heads == 4
    assert MLSTMBlock(16, num_heads=2).layer.mlstm_cell.num_heads == 2


def test_mlstm_block_batch_elements_do_not_interact():
    torch.manual_seed(0)
    block = MLSTMBlock(8).double()
    x = torch.randn(3, 300, 8, dtype=torch.float64)  # > 256 tokens: "auto" takes the chunkwise form
    y = block(x)
    other = x.clone()
    other[1:] = torch.randn(2, 300, 8, dtype=torch.float64)
    assert torch.allclose(block(other)[0], y[0], rtol=0, atol=1e-13)
    assert torch.allclose(block(x[:1])[0], y[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("blocks", ["sm", "s", "m", "msm"])
def test_xlstm_stack_order_gradients_finite(blocks):
    torch.manual_seed(0)
    stack = XLSTMStack(16, blocks)
    assert [type(b).__name__[0].lower() for b in stack.blocks] == list(blocks)
    x = torch.randn(2, 40, 16, requires_grad=True)
    stack(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="'sx'"):
        XLSTMStack(16, "sx")
    with pytest.raises(ValueError, match="blocks"):
        XLSTMStack(16, "")
    with pytest.raises(ValueError, match="num_heads 4"):
        SLSTMCell(10, 4)
    with pytest.raises(ValueError, match="'relu'"):
        SLSTMCell(8, 2, forget_gate="relu")
    with pytest.raises(ValueError, match="mlstm_backend"):
        MLSTMBlock(8, mlstm_backend="cuda")
    with pytest.raises(ValueError, match=r"\(B, 4, 12\)"):
        SLSTMCell(12, 3).step(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="tokens"):
        SLSTMBlock(8)(torch.randn(2, 8))
