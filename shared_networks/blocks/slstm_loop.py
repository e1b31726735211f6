# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The sLSTM recurrence over a sequence, in a form that stays a loop when the model is exported.

The sLSTM's state passes through tanh, sigmoid and a division at every step, so unlike the mLSTM and the selective scan
it has no parallel (associative) form: L steps are L dependent steps. In eager mode they are a Python loop. Traced
as it is, that loop would unroll into about 15 graph nodes per step (XLSTMVMUNet at 256²: 1,280 steps, ~19,000 nodes),
so while the model is exported the same step runs inside a graph-level loop instead:

- ``torch.export`` (and so the ONNX exporter, ``torch.onnx.export(dynamo=True)``, MONAI's ``onnx_export``): torch's
  ``scan`` higher-order op, which becomes one ONNX ``Scan`` node;
- ``torch.jit.trace`` (MONAI's ``ckpt_export --use_trace True``) and the TorchScript-based ONNX exporter: a
  ``torch.jit.script``-ed loop, which stays one ``prim::Loop`` (ONNX ``Loop``).

All three forms run the same arithmetic in the same order (tests/export/test_kernel_export.py compares them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xlstm_seg_kernels._dispatch import exporting

__all__ = ["slstm_recurrence"]

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _step(pre_x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, n: torch.Tensor, m: torch.Tensor,
          recurrent_kernel: torch.Tensor, exp_forget: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
    """One step for all heads: pre_x (NH, B, 4·DH), states (NH, B, DH), recurrent_kernel (NH, DH, 4·DH)."""
    heads, batch, dh = h.shape[0], h.shape[1], h.shape[2]
    pre = torch.baddbmm(pre_x, h, recurrent_kernel).view(heads, batch, 4, dh)
    i, f, z, o = pre.unbind(2)
    log_f_plus_m = (f if exp_forget else F.logsigmoid(f)) + m
    m_new = torch.maximum(log_f_plus_m, i)
    i_gate = torch.exp(i - m_new)
    f_gate = torch.exp(log_f_plus_m - m_new)
    c = f_gate * c + i_gate * torch.tanh(z)
    n = f_gate * n + i_gate
    h = torch.sigmoid(o) * c / n
    return h, c, n, m_new


def _python_loop(pre_all, h, c, n, m, recurrent_kernel, exp_forget: bool):
    outputs = []
    for pre_x in pre_all.unbind(0):  # unbind: one autograd node for all steps (indexing would cost O(L²))
        h, c, n, m = _step(pre_x, h, c, n, m, recurrent_kernel, exp_forget)
        outputs.append(h)
    return torch.stack(outputs, dim=0), h, c, n, m


_script_loop = None


def _scripted_loop(pre_all, h, c, n, m, recurrent_kernel, exp_forget: bool):
    global _script_loop
    if _script_loop is None:  # compiled on first use: scripting costs about a second
        _script_loop = torch.jit.script(_python_loop)
    return _script_loop(pre_all, h, c, n, m, recurrent_kernel, exp_forget)


def _hop_scan(pre_all, h, c, n, m, recurrent_kernel, exp_forget: bool):
    from torch._higher_order_ops.scan import scan

    def combine(carry, pre_x):
        h, c, n, m = _step(pre_x, *carry, recurrent_kernel, exp_forget)
        return (h, c, n, m), h.clone()  # scan's outputs must not alias its carry

    # the carry keeps its layout from step to step: start from contiguous states (the callers pass transposed views)
    (h, c, n, m), hs = scan(combine, tuple(t.clone(memory_format=torch.contiguous_format) for t in (h, c, n, m)), pre_all)
    return hs, h, c, n, m


def slstm_recurrence(pre_all: torch.Tensor, state: State, recurrent_kernel: torch.Tensor,
                     exp_forget: bool) -> tuple[torch.Tensor, State]:
    """Run the sLSTM over L steps.

    Args:
        pre_all: input pre-activations plus bias, (L, NH, B, 4·DH), gates (i, f, z, o) in blocks of DH.
        state: initial (h, c, n, m), each (NH, B, DH).
        recurrent_kernel: (NH, DH, 4·DH).
        exp_forget: forget gate exp (log f = f̃) instead of sigmoid (log f = logsigmoid(f̃)).

    Returns:
        h of every step (L, NH, B, DH) and the final (h, c, n, m).
    """
    if torch.compiler.is_exporting():
        form = _hop_scan
    elif torch.jit.is_tracing() or exporting():
        form = _scripted_loop
    else:
        form = _python_loop
    hs, h, c, n, m = form(pre_all, *state, recurrent_kernel, exp_forget)
    return hs, (h, c, n, m)
