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


# --- the selective scan's export form: the chunked arithmetic, its loop over chunks one graph-level loop -------------

def _scan_inputs(length, b_form="BGNL", c_form="BNL", batch=2, dim=4, n=3, groups=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = {"DN": (dim, n), "BNL": (batch, n, length), "BGNL": (batch, groups, n, length)}
    return {"u": torch.randn(batch, dim, length, generator=gen, dtype=F64),
            "delta": torch.randn(batch, dim, length, generator=gen, dtype=F64) * 0.5,
            "A": -torch.exp(torch.randn(dim, n, generator=gen, dtype=F64) * 0.5),
            "B": torch.randn(*shapes[b_form], generator=gen, dtype=F64),
            "C": torch.randn(*shapes[c_form], generator=gen, dtype=F64),
            "D": torch.randn(dim, generator=gen, dtype=F64),
            "z": torch.randn(batch, dim, length, generator=gen, dtype=F64),
            "delta_bias": torch.randn(dim, generator=gen, dtype=F64) * 0.3}


@pytest.mark.parametrize("form", ["python", "script", "hop"])
@pytest.mark.parametrize("length, chunk_size, forms", [(1, None, ("BNL", "BNL")), (37, 8, ("BGNL", "BNL")),
                                                       (64, 16, ("BNL", "BGNL")), (300, None, ("BGNL", "BGNL"))])
def test_looped_scan_forms_equal_reference_float64(form, length, chunk_size, forms):
    from xlstm_seg_kernels.selective_scan.torch_impl import selective_scan_looped, selective_scan_reference

    x = _scan_inputs(length, *forms, seed=length)
    ref, ref_last = selective_scan_reference(**x, delta_softplus=True, return_last_state=True)
    got, last = selective_scan_looped(**x, delta_softplus=True, return_last_state=True, chunk_size=chunk_size,
                                      form=form)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, ref_last, rtol=1e-12, atol=1e-12)


def test_looped_scan_constant_bc_and_bad_arguments():
    from xlstm_seg_kernels.selective_scan.torch_impl import selective_scan_looped, selective_scan_reference

    x = _scan_inputs(20, "DN", "BNL")  # (D, N) B: the blocked form's arithmetic
    torch.testing.assert_close(selective_scan_looped(**x), selective_scan_reference(**x), rtol=1e-12, atol=1e-12)
    x = _scan_inputs(20)
    with pytest.raises(ValueError, match="form must be 'hop', 'script' or 'python'; got 'loop'"):
        selective_scan_looped(**x, form="loop")
    with pytest.raises(ValueError, match="chunk_size must be >= 1; got -2"):
        selective_scan_looped(**x, chunk_size=-2)


def _scan_module(length):
    from xlstm_seg_kernels.selective_scan import selective_scan

    x = {k: v.float() for k, v in _scan_inputs(length, batch=1, dim=8, n=4).items()}

    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A, self.D, self.bias = (torch.nn.Parameter(x[k]) for k in ("A", "D", "delta_bias"))

        def forward(self, u, delta, B, C):
            return selective_scan(u, delta, self.A, B, C, self.D, None, self.bias, True)

    return Scan().eval(), x


def test_selective_scan_traced_is_one_loop_and_matches_eager():
    # auto picks the looped form while tracing: one prim::Loop (22 chunks of 32 steps), not the steps unrolled
    module, x = _scan_module(700)
    args = tuple(x[k] for k in ("u", "delta", "B", "C"))
    traced = torch.jit.trace(module, args, check_trace=False)
    kinds = [node.kind() for node in traced.inlined_graph.nodes()]
    assert kinds.count("prim::Loop") == 1 and len(kinds) < 600, len(kinds)  # 700 steps unrolled: >= 1,400
    fresh = tuple(a + 0.1 * torch.randn_like(a) for a in args)
    with torch.no_grad():
        torch.testing.assert_close(traced(*fresh), module(*fresh), rtol=1e-5, atol=1e-5)


def test_selective_scan_onnx_is_one_scan_node_and_matches_eager(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from monai.networks.utils import convert_to_onnx

    module, x = _scan_module(700)
    args = [x[k] for k in ("u", "delta", "B", "C")]
    convert_to_onnx(module, args, filename=str(tmp_path / "scan.onnx"), use_trace=False)
    ops = [node.op_type for node in onnx.load(str(tmp_path / "scan.onnx")).graph.node]
    assert ops.count("Scan") + ops.count("Loop") == 1 and len(ops) < 100, ops
    session = ort.InferenceSession(str(tmp_path / "scan.onnx"), providers=["CPUExecutionProvider"])
    fresh = [a + 0.1 * torch.randn_like(a) for a in args]
    (got,) = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), fresh)})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), module(*fresh), rtol=1e-5, atol=1e-5)
