# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The selective scan's export forms on the CPU at one SS2D shape: eager's chunked form, the blocked and the looped
form in PyTorch, and the ``selective_scan`` call (``backend="auto"``) exported to ONNX (MONAI's ``convert_to_onnx``,
as ``onnx_export`` calls it) and run by ONNX Runtime, and traced (``torch.jit.trace``). Process CPU seconds of one
call after a warm-up (best of ``--repeats``), max |form - chunked|, and the exported graph's node counts.

    python benchmarks/bench_scan_export.py                       # XLSTMVMUNet's stage 1 at 256²: L 4,096, D 4·192
    python benchmarks/bench_scan_export.py --d-inner 384 --length 1024 --threads 2
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-inner", type=int, default=192, help="channels per direction (4 directions) (192)")
    parser.add_argument("--length", type=int, default=4096, help="steps L (4096 = 64²)")
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    import torch
    from monai.networks.utils import convert_to_onnx

    from xlstm_seg_kernels.selective_scan import selective_scan
    from xlstm_seg_kernels.selective_scan.torch_impl import (selective_scan_blocked, selective_scan_chunked,
                                                            selective_scan_looped)

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    k, dim, n, length = 4, 4 * args.d_inner, args.d_state, args.length
    u, delta = torch.randn(1, dim, length, generator=gen), torch.randn(1, dim, length, generator=gen) * 0.5 - 2
    B, C = torch.randn(1, k, n, length, generator=gen), torch.randn(1, k, n, length, generator=gen)

    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.exp(torch.randn(dim, n, generator=gen) * 0.5))
            self.D, self.bias = torch.nn.Parameter(torch.randn(dim, generator=gen)), torch.nn.Parameter(
                torch.randn(dim, generator=gen) * 0.1)

        def forward(self, u, delta, B, C):
            return selective_scan(u, delta, self.A, B, C, self.D, None, self.bias, True)

    module = Scan().eval()
    inputs = (u, delta, B, C)
    full = (u, delta, module.A, B, C, module.D, None, module.bias, True)

    def cpu_seconds(fn):
        fn()
        best = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        return best

    rows = []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        ref = selective_scan_chunked(*full)
        forms = {"eager chunked (backend torch)": lambda: selective_scan_chunked(*full),
                 "blocked (PyTorch)": lambda: selective_scan_blocked(*full),
                 "looped, python loop (PyTorch)": lambda: selective_scan_looped(*full, form="python")}
        for name, fn in forms.items():
            rows.append((name, cpu_seconds(fn), (fn() - ref).abs().max().item()))
        path = Path(tmp) / "scan.onnx"
        start = time.perf_counter()
        convert_to_onnx(module, list(inputs), filename=str(path), use_trace=False)
        export_s = time.perf_counter() - start
        ops = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        rows.append(("ONNX Runtime (auto while exporting)", cpu_seconds(lambda: session.run(None, feeds)),
                     (torch.from_numpy(session.run(None, feeds)[0]) - ref).abs().max().item()))
        traced = torch.jit.trace(module, inputs, check_trace=False)
        rows.append(("traced TorchScript (auto while tracing)", cpu_seconds(lambda: traced(*inputs)),
                     (traced(*inputs) - ref).abs().max().item()))
    print(f"L {length}, D {dim} (4 x {args.d_inner}), N {n}, batch 1, {args.threads} thread(s); CPU s of one call, "
          f"best of {args.repeats}\n")
    print("| form | CPU s | max abs diff vs chunked |\n|---|---|---|")
    for name, seconds, err in rows:
        print(f"| {name} | {seconds:.3f} | {err:.1e} |")
    print(f"\nONNX export {export_s:.1f} s; main-graph nodes {sum(ops.values())}, "
          f"Scan {ops['Scan']}, Loop {ops['Loop']}")


if __name__ == "__main__":
    main()
