# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The forms the networks take while exported compute what eager mode computes: the sLSTM recurrence as a scripted
loop (torch.jit.trace, the TorchScript ONNX exporter) and as torch's scan operator (torch.export, MONAI's onnx_export)
against the Python loop in float64, and the export switches (``exporting()``, the plain-tensor pass-through)."""

from __future__ import annotations

import pytest
import torch

from shared_networks.blocks import slstm_loop
from xlstm_seg_kernels._dispatch import exporting, plain_tensors

F64 = torch.float64


def _inputs(length=37, heads=2, batch=3, dh=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pre_all = torch.randn(length, heads, batch, 4 * dh, generator=gen, dtype=F64)
    h, c, n = (torch.randn(heads, batch, dh, generator=gen, dtype=F64) * 0.1 for _ in range(3))
    n = n.abs() + 1.0
    m = torch.randn(heads, batch, dh, generator=gen, dtype=F64)
    kernel = torch.randn(heads, dh, 4 * dh, generator=gen, dtype=F64) * 0.3
    return pre_all, (h, c, n, m), kernel


@pytest.mark.parametrize("exp_forget", [True, False])
@pytest.mark.parametrize("form", ["_scripted_loop", "_hop_scan"])
def test_slstm_export_forms_equal_python_loop_float64(form, exp_forget):
    pre_all, state, kernel = _inputs(seed=int(exp_forget))
    ref = slstm_loop._python_loop(pre_all, *state, kernel, exp_forget)
    got = getattr(slstm_loop, form)(pre_all, *state, kernel, exp_forget)
    for name, a, b in zip(["hs", "h", "c", "n", "m"], got, ref):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14, msg=name)


def test_slstm_traced_is_one_loop_and_generalises():
    # traced at 40 steps, the graph holds one prim::Loop (no 40-fold unrolling) and runs at 90 steps too
    class Recurrence(torch.nn.Module):
        def __init__(self, kernel):
            super().__init__()
            self.kernel = torch.nn.Parameter(kernel)

        def forward(self, pre_all, h, c, n, m):
            hs, _ = slstm_loop.slstm_recurrence(pre_all, (h, c, n, m), self.kernel, False)
            return hs

    pre_all, state, kernel = _inputs(length=40)
    module = Recurrence(kernel).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, (pre_all, *state), check_trace=False)
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        assert kinds.count("prim::Loop") == 1 and len(kinds) < 60, kinds
        longer, state2, _ = _inputs(length=90, seed=5)
        torch.testing.assert_close(traced(longer, *state2), module(longer, *state2), rtol=1e-14, atol=1e-14)


def test_exporting_is_false_in_eager_and_true_while_tracing():
    seen = []

    def probe(x):
        seen.append(exporting())
        return x + 1

    probe(torch.zeros(1))
    torch.jit.trace(probe, torch.zeros(1), check_trace=False)
    assert seen == [False, True]


def test_plain_tensors_unwraps_subclasses_in_eager_only():
    from monai.data import MetaTensor

    meta = MetaTensor(torch.zeros(2))
    assert type(plain_tensors(meta)[0]) is torch.Tensor
    seen = []

    def probe(x):
        seen.append(plain_tensors(x)[0] is x)
        return x * 2

    torch.jit.trace(probe, torch.zeros(2), check_trace=False)
    assert seen == [True]
