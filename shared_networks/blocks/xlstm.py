# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""sLSTM and mLSTM blocks of xLSTM (Beck et al. 2024, https://arxiv.org/abs/2405.04517) on token sequences (B, L, D).

The block structure follows NX-AI's reference implementation of the paper (pre-norm residual blocks; sLSTM with
block-diagonal recurrent heads and a gated MLP; mLSTM with an up-projection, a causal conv and a true matrix memory).
It is *not* the element-wise "mLSTM" of the XLSTM-VMUNet repository (ARCHITECTURE.md §3.4), whose memory is a vector
and whose normaliser mixes batch elements. Here batch elements never interact: every op is per token, per sequence or
per head of one sequence.

sLSTM cell (per head, state h, c, n, m ∈ R^{DH}; gate pre-activations from the input plus the head's own recurrent
matrices R_g ∈ R^{DH×DH} and biases b_g)::

    ĩ_t = W_i x̂_t + R_i h_{t-1} + b_i        f̃_t = W_f x̂_t + R_f h_{t-1} + b_f          (x̂: causal-conv path)
    z̃_t = W_z x_t + R_z h_{t-1} + b_z        õ_t = W_o x_t + R_o h_{t-1} + b_o
    log f_t = logsigmoid(f̃_t)  (forget_gate="sigmoid")   or   f̃_t  (forget_gate="exp")
    m_t = max(log f_t + m_{t-1}, ĩ_t)                     stabiliser, m_0 = -inf so m_1 = ĩ_1
    i'_t = exp(ĩ_t - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z̃_t)                   cell
    n_t = f'_t n_{t-1} + i'_t                             normaliser (n_t >= 1 for t >= 1)
    h_t = sigmoid(õ_t) ⊙ c_t / n_t

The stabiliser only rescales c and n together (i' = exp(ĩ - m), f' = exp(log f + m_{t-1} - m)), so h_t equals the
unstabilised exponential-gating recurrence (c_t = f_t c_{t-1} + exp(ĩ_t) z_t, n_t = f_t n_{t-1} + exp(ĩ_t)) while
every exponent stays <= 0.

mLSTM cell (per head, C ∈ R^{DH×DH}, n ∈ R^{DH}; ĩ, f̃ scalars per head; k̂ = k / sqrt(DH))::

    m_t = max(logsigmoid(f̃_t) + m_{t-1}, ĩ_t)
    C_t = f'_t C_{t-1} + i'_t v_t k̂_tᵀ          n_t = f'_t n_{t-1} + i'_t k̂_t
    h_t = C_t q_t / (max(|n_tᵀ q_t|, exp(-m_t)) + eps)

computed by :func:`xlstm_seg_kernels.mlstm` (parallel, chunkwise, recurrent or Triton form).

- :class:`SLSTMCell`: the sLSTM recurrence, with :meth:`SLSTMCell.step` (one token) and :meth:`SLSTMCell.forward`
  (a whole sequence).
- :class:`SLSTMBlock`: ``x + GN(sLSTM(LN(x)))`` then ``x + GatedMLP(LN(x))``.
- :class:`MLSTMBlock`: ``x + mLSTMLayer(LN(x))`` (NX-AI's mLSTM block; the same layer as ViL v1 with a free head
  count).
- :class:`XLSTMStack`: a sequence of sLSTM/mLSTM blocks given as a string such as ``"sm"``, run in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers import DropPath

from xlstm_seg_kernels.mlstm import BACKENDS as MLSTM_BACKENDS

from .slstm_loop import slstm_recurrence
from .vil import (
    CausalConv1d,
    LinearHeadwiseExpand,
    MultiHeadLayerNorm,
    ResidualLayerNorm,
    ViLLayer,
    _small_init_,
    _wang_init_,
)

__all__ = [
    "FORGET_GATES",
    "SLSTMState",
    "SLSTMCell",
    "SLSTMBlock",
    "GatedFeedForward",
    "MLSTMLayer",
    "MLSTMBlock",
    "XLSTMStack",
]

FORGET_GATES = ("sigmoid", "exp")
MLSTM_BACKEND_CHOICES = ("auto", *MLSTM_BACKENDS)

# (h, c, n, m), each (B, D) with D = num_heads · head_dim
SLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _check_heads(owner: str, dim: int, num_heads: int) -> None:
    if dim < 1 or num_heads < 1 or dim % num_heads:
        raise ValueError(f"{owner}: dim {dim} must be a positive multiple of num_heads {num_heads}.")


class SLSTMCell(nn.Module):
    """The sLSTM recurrence with ``num_heads`` heads and block-diagonal recurrent matrices (equations: module doc).

    The input half of the gate pre-activations (``W x``) is computed by the caller (:class:`SLSTMBlock`), the cell adds
    the recurrent half ``R h_{t-1}`` and the bias. Gate order everywhere is (i, f, z, o).

    Parameters: ``recurrent_kernel`` (NH, DH, 4·DH) — column ``g·DH + e`` of head ``h`` maps that head's previous
    hidden state to unit ``e`` of gate ``g`` — and ``bias`` (4, NH, DH). Initialisation: R = 0 (NX-AI's default), biases
    0 except the forget gate, ``linspace(3, 6, DH)`` in every head (slow forgetting at the start, a spread of memory
    time-scales; ``sigmoid(3..6)`` = 0.95..0.998).

    Args:
        dim: hidden width D.
        num_heads: heads NH; D must be divisible by NH. Default: 4.
        forget_gate: ``"sigmoid"`` (log f = logsigmoid(f̃), NX-AI's default) or ``"exp"`` (log f = f̃). Default:
            ``"sigmoid"``.
    """

    def __init__(self, dim: int, num_heads: int = 4, forget_gate: str = "sigmoid") -> None:
        super().__init__()
        _check_heads("SLSTMCell", dim, num_heads)
        if forget_gate not in FORGET_GATES:
            raise ValueError(f"SLSTMCell: forget_gate must be one of {FORGET_GATES}; got {forget_gate!r}.")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.forget_gate = forget_gate
        self.recurrent_kernel = nn.Parameter(torch.empty(num_heads, self.head_dim, 4 * self.head_dim))
        self.bias = nn.Parameter(torch.empty(4, num_heads, self.head_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.recurrent_kernel)
        nn.init.zeros_(self.bias)
        self.bias[1].copy_(torch.linspace(3.0, 6.0, self.head_dim).expand(self.num_heads, -1))

    def initial_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> SLSTMState:
        """The zero state: h = c = n = 0 and m = -inf (so that m_1 = ĩ_1), each (batch, D)."""
        dtype = dtype or self.bias.dtype
        zeros = torch.zeros(batch, self.dim, device=device, dtype=dtype)
        return zeros, zeros, zeros, torch.full_like(zeros, float("-inf"))

    def _log_forget(self, f: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(f) if self.forget_gate == "sigmoid" else f

    def step(self, wx: torch.Tensor, state: SLSTMState | None = None) -> tuple[torch.Tensor, SLSTMState]:
        """One token.

        Args:
            wx: input pre-activations of the gates (i, f, z, o) for this token, of shape (B, 4, D).
            state: (h, c, n, m) of the previous token, each (B, D); ``None`` = :meth:`initial_state`.

        Returns:
            h_t of shape (B, D) and the new state (h_t, c_t, n_t, m_t).
        """
        batch = wx.shape[0]
        if wx.shape[1:] != (4, self.dim):
            raise ValueError(f"SLSTMCell.step: wx must be (B, 4, {self.dim}); got {tuple(wx.shape)}.")
        h, c, n, m = self.initial_state(batch, wx.device, wx.dtype) if state is None else state
        heads, dh = self.num_heads, self.head_dim
        # R h per head: (B, NH, DH) x (NH, DH, 4·DH) -> (B, NH, 4, DH) -> gate-major (B, 4, D)
        rh = torch.einsum("bhd,hde->bhe", h.view(batch, heads, dh), self.recurrent_kernel)
        rh = rh.view(batch, heads, 4, dh).transpose(1, 2).reshape(batch, 4, self.dim)
        pre = wx + rh + self.bias.reshape(4, self.dim)
        i, f, z, o = pre.unbind(1)
        log_f_plus_m = self._log_forget(f) + m
        m_new = torch.maximum(log_f_plus_m, i)
        i_gate = torch.exp(i - m_new)
        f_gate = torch.exp(log_f_plus_m - m_new)
        c = f_gate * c + i_gate * torch.tanh(z)
        n = f_gate * n + i_gate
        h = torch.sigmoid(o) * c / n
        return h, (h, c, n, m_new)

    def forward(
        self, wx: torch.Tensor, state: SLSTMState | None = None, return_last_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, SLSTMState]:
        """A whole sequence (the same recurrence as :meth:`step`, laid out per head for one batched matmul a step).

        Args:
            wx: input pre-activations of the gates (i, f, z, o), of shape (B, L, 4, D).
            state: initial (h, c, n, m), each (B, D); ``None`` = :meth:`initial_state`.
            return_last_state: also return the final state.

        Returns:
            h of shape (B, L, D), and the final state if requested.
        """
        if wx.ndim != 4 or wx.shape[2:] != (4, self.dim) or wx.shape[1] == 0:
            raise ValueError(f"SLSTMCell: wx must be (B, L >= 1, 4, {self.dim}); got {tuple(wx.shape)}.")
        batch, length = wx.shape[:2]
        heads, dh = self.num_heads, self.head_dim
        if state is None:
            state = self.initial_state(batch, wx.device, wx.dtype)

        def per_head(t: torch.Tensor) -> torch.Tensor:  # (B, D) -> (NH, B, DH)
            return t.view(batch, heads, dh).transpose(0, 1)

        h, c, n, m = (per_head(t) for t in state)
        # (B, L, 4, NH, DH) + bias -> (L, NH, B, 4·DH): step t's slice is one contiguous (NH, B, 4·DH) block
        pre_all = (wx.view(batch, length, 4, heads, dh) + self.bias).permute(1, 3, 0, 2, 4)
        pre_all = pre_all.reshape(length, heads, batch, 4 * dh)
        # the recurrence over L (a loop in eager mode; a graph loop while exported, see slstm_loop.py)
        hs, (h, c, n, m) = slstm_recurrence(pre_all, (h, c, n, m), self.recurrent_kernel,
                                            self.forget_gate == "exp")
        out = hs.permute(2, 0, 1, 3).reshape(batch, length, self.dim)
        if not return_last_state:
            return out

        def per_batch(t: torch.Tensor) -> torch.Tensor:  # (NH, B, DH) -> (B, D)
            return t.transpose(0, 1).reshape(batch, self.dim)

        return out, (per_batch(h), per_batch(c), per_batch(n), per_batch(m))


class GatedFeedForward(nn.Module):
    """xLSTM's gated MLP: ``W_down(GELU(g) ⊙ u)`` with ``[g, u] = W_up x``; (B, L, D) -> (B, L, D), no biases.

    The inner width is ``proj_factor · D`` rounded up to a multiple of ``round_to`` (64 as NX-AI; 4/3·D for
    D = 96, 192, 384, 768). Init: W_up small init, W_down Wang init.
    """

    def __init__(self, dim: int, proj_factor: float = 4 / 3, round_to: int = 64) -> None:
        super().__init__()
        if proj_factor <= 0 or round_to < 1:
            raise ValueError(
                f"GatedFeedForward: need proj_factor > 0 and round_to >= 1; got {proj_factor}, {round_to}."
            )
        self.dim = dim
        self.inner_dim = round_to * math.ceil(proj_factor * dim / round_to)
        self.proj_up = nn.Linear(dim, 2 * self.inner_dim, bias=False)
        self.proj_down = nn.Linear(self.inner_dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _small_init_(self.proj_up.weight, self.dim)
        _wang_init_(self.proj_down.weight, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.proj_up(x).chunk(2, dim=-1)
        return self.proj_down(F.gelu(gate) * up)


class SLSTMBlock(nn.Module):
    """Pre-norm sLSTM block (xLSTM, NX-AI layout): (B, L, D) -> (B, L, D).

    ::

        u = LN(x);  û = SiLU(CausalConv1d(u))          (û = u when conv_kernel_size = 0)
        W x = [W_i û, W_f û, W_z u, W_o u]             headwise (block-diagonal) projections, no bias
        y = x + GN_heads(sLSTMCell(W x))               GroupNorm with one group per head, scale 1 + w, no bias
        out = y + GatedFeedForward(LN(y))              proj factor 4/3

    LayerNorms have scale ``1 + w`` (w = 0 at init) and no bias, as xLSTM's.

    Args:
        dim: token width D.
        num_heads: sLSTM heads (block-diagonal recurrence and headwise projections). Default: 4.
        conv_kernel_size: causal conv kernel for the i/f gate path; 0 disables it. Default: 4.
        forget_gate: ``"sigmoid"`` or ``"exp"``; see :class:`SLSTMCell`.
        ffn_proj_factor: gated-MLP width factor. Default: 4/3.
        drop_path: stochastic-depth rate on both residual branches. Default: 0.

    Shape:
        (B, L, D) -> (B, L, D).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        conv_kernel_size: int = 4,
        forget_gate: str = "sigmoid",
        ffn_proj_factor: float = 4 / 3,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        _check_heads("SLSTMBlock", dim, num_heads)
        if conv_kernel_size < 0:
            raise ValueError(f"SLSTMBlock: conv_kernel_size must be >= 0; got {conv_kernel_size}.")
        self.dim = dim
        self.num_heads = num_heads
        self.norm = ResidualLayerNorm(dim)
        self.conv1d = CausalConv1d(dim, conv_kernel_size) if conv_kernel_size > 0 else None
        self.igate = LinearHeadwiseExpand(dim, num_heads)
        self.fgate = LinearHeadwiseExpand(dim, num_heads)
        self.zgate = LinearHeadwiseExpand(dim, num_heads)
        self.ogate = LinearHeadwiseExpand(dim, num_heads)
        self.cell = SLSTMCell(dim, num_heads, forget_gate)
        self.group_norm = MultiHeadLayerNorm(dim)
        self.ffn_norm = ResidualLayerNorm(dim)
        self.ffn = GatedFeedForward(dim, ffn_proj_factor)
        self.drop_path = DropPath(drop_path)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for gate in (self.igate, self.fgate, self.zgate, self.ogate):
            _small_init_(gate.weight, self.dim)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.ffn_norm.weight)
        nn.init.zeros_(self.group_norm.weight)
        self.cell.reset_parameters()
        self.ffn.reset_parameters()

    def input_preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """The input half of the gate pre-activations, (B, L, D) -> (B, L, 4, D) in gate order (i, f, z, o)."""
        u = self.norm(x)
        u_conv = F.silu(self.conv1d(u)) if self.conv1d is not None else u
        return torch.stack([self.igate(u_conv), self.fgate(u_conv), self.zgate(u), self.ogate(u)], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"SLSTMBlock: expected (B, L, {self.dim}) tokens; got {tuple(x.shape)}.")
        batch, length, _ = x.shape
        h = self.cell(self.input_preactivations(x))
        h = self.group_norm(h.view(batch, length, self.num_heads, -1).transpose(1, 2))
        x = x + self.drop_path(h)
        return x + self.drop_path(self.ffn(self.ffn_norm(x)))


class MLSTMLayer(ViLLayer):
    """Gated mLSTM layer (xLSTM's mLSTM block interior): (B, L, D) -> (B, L, D) with inner width E = proj_factor·D.

    ::

        [x_m, z] = W_up x                                  D -> 2E, no bias
        x_c = SiLU(CausalConv1d(x_m))
        q = Q(x_c), k = K(x_c), v = V(x_m)                 headwise projections, blocks of qkv_block_size
        h̃ = GN_heads(mLSTM(q, k, v; ĩ, f̃ = Linear(cat(q, k, v))))      num_heads heads of E / num_heads
        y = W_down((h̃ + s ⊙ x_c) ⊙ SiLU(z))               learnable skip s (init 1), E -> D, no bias

    It is :class:`~shared_networks.blocks.vil.ViLLayer` read forward with its own head count (ViL ties the heads to
    ``qkv_block_size``); with ``num_heads == qkv_block_size`` the two are the same layer.

    Args:
        dim: token width D.
        num_heads: mLSTM heads. Default: 4.
        proj_factor: E / D. Default: 2.
        qkv_block_size: block size of the q/k/v projections. Default: 4.
        conv_kernel_size: causal conv kernel. Default: 4.
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm`. Default: ``"auto"``.
        chunk_size: chunk length of the chunkwise/Triton mLSTM. Default: 64.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        proj_factor: float = 2.0,
        qkv_block_size: int = 4,
        conv_kernel_size: int = 4,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
    ) -> None:
        inner = int(round(proj_factor * dim))
        if inner < 1 or inner % qkv_block_size or inner % num_heads:
            raise ValueError(
                f"MLSTMLayer: inner width {inner} (= proj_factor {proj_factor} · dim {dim}) must be divisible by "
                f"qkv_block_size {qkv_block_size} and num_heads {num_heads}."
            )
        if conv_kernel_size < 1:
            raise ValueError(f"MLSTMLayer: conv_kernel_size must be >= 1; got {conv_kernel_size}.")
        if mlstm_backend not in MLSTM_BACKEND_CHOICES:
            raise ValueError(
                f"MLSTMLayer: mlstm_backend must be one of {MLSTM_BACKEND_CHOICES}; got {mlstm_backend!r}."
            )
        super().__init__(dim, "forward", expansion=proj_factor, qkv_block_size=qkv_block_size,
                         conv_kernel_size=conv_kernel_size, mlstm_backend=mlstm_backend, chunk_size=chunk_size,
                         num_heads=num_heads)
        self.inner_dim = inner


class MLSTMBlock(nn.Module):
    """Pre-norm mLSTM block (xLSTM): ``x + DropPath(MLSTMLayer(LN(x)))``, (B, L, D) -> (B, L, D).

    The LayerNorm has scale ``1 + w`` and no bias. Arguments as :class:`MLSTMLayer`, plus ``drop_path``. With
    ``num_heads = qkv_block_size = 4`` it has 6D² + 87D + 8 parameters and its state dict loads into (and from) a
    :class:`~shared_networks.blocks.vil.ViLBlock`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        proj_factor: float = 2.0,
        qkv_block_size: int = 4,
        conv_kernel_size: int = 4,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.norm = ResidualLayerNorm(dim)
        self.layer = MLSTMLayer(
            dim,
            num_heads=num_heads,
            proj_factor=proj_factor,
            qkv_block_size=qkv_block_size,
            conv_kernel_size=conv_kernel_size,
            mlstm_backend=mlstm_backend,
            chunk_size=chunk_size,
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MLSTMBlock: expected (B, L, {self.dim}) tokens; got {tuple(x.shape)}.")
        return x + self.drop_path(self.layer(self.norm(x)))


class XLSTMStack(nn.Module):
    """sLSTM/mLSTM blocks in the order a string gives (``"sm"``: sLSTM then mLSTM), on (B, L, D) tokens.

    Runs in its parameters' dtype (float32 unless the module was cast) with autocast disabled, as the exponential
    gating is the numerically delicate part; the output is cast back to the input dtype.

    Args:
        dim: token width D.
        blocks: a non-empty string of ``"s"`` and ``"m"``. Default: ``"sm"``.
        slstm_heads: sLSTM heads. Default: 4.
        mlstm_heads: mLSTM heads. Default: 4.
        forget_gate: sLSTM forget gate, ``"sigmoid"`` or ``"exp"``. Default: ``"sigmoid"``.
        conv_kernel_size: causal conv kernel of both block kinds. Default: 4.
        mlstm_backend: passed to :func:`xlstm_seg_kernels.mlstm`. Default: ``"auto"``.
        chunk_size: chunk length of the chunkwise/Triton mLSTM. Default: 64.
        drop_path: stochastic-depth rate of every residual branch. Default: 0.

    Shape:
        (B, L, D) -> (B, L, D).
    """

    def __init__(
        self,
        dim: int,
        blocks: str = "sm",
        slstm_heads: int = 4,
        mlstm_heads: int = 4,
        forget_gate: str = "sigmoid",
        conv_kernel_size: int = 4,
        mlstm_backend: str = "auto",
        chunk_size: int = 64,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(blocks, str) or not blocks or set(blocks) - {"s", "m"}:
            raise ValueError(f"XLSTMStack: blocks must be a non-empty string of 's' and 'm'; got {blocks!r}.")
        self.dim = dim
        self.block_types = blocks
        self.blocks = nn.ModuleList()
        for kind in blocks:
            if kind == "s":
                block: nn.Module = SLSTMBlock(
                    dim, num_heads=slstm_heads, conv_kernel_size=conv_kernel_size, forget_gate=forget_gate,
                    drop_path=drop_path,
                )
            else:
                block = MLSTMBlock(
                    dim, num_heads=mlstm_heads, conv_kernel_size=conv_kernel_size, mlstm_backend=mlstm_backend,
                    chunk_size=chunk_size, drop_path=drop_path,
                )
            self.blocks.append(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.to(self.blocks[0].norm.weight.dtype)
            for block in self.blocks:
                x = block(x)
        return x.to(dtype)
