# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Selective scan and SS2D cross-scan/merge: speed and memory at VM-UNet's shapes, side by side.

Modes (combine freely; with none given, ``--gpu`` if CUDA is available, else ``--smoke``):

``--gpu``
    VM-UNet SS2D shapes at a 256² input (batch 8 and 32, stages 1-4: L = 64², 32², 16², 8², K·d_inner = 768, 1536,
    3072, 6144 channels, d_state 16, grouped B/C (B, 4, 16, L), delta_bias + softplus, D skip), in fp32 and bf16.
    Times forward and forward+backward (CUDA-event medians from ``triton.testing.do_bench``, inputs rotated so
    that repeated calls do not run from L2) and peak extra memory, for: ``triton`` (ours), ``mamba_ssm`` (its CUDA
    kernel, called directly, when it imports), ``torch`` (our chunked PyTorch form) and ``reference`` (the
    step-by-step loop; batch 8 only unless ``--reference-all``). Prints ratios and the fraction of the
    memory-bandwidth floor (bytes that must move / measured device-to-device copy bandwidth), and the cross-scan +
    cross-merge times of the same stages so fusing them into the scan can be judged.
``--sweep``
    Also times the Triton kernels with other tile sizes (``triton_impl.BLOCK_OVERRIDES``).
``--cpu``
    PyTorch chunked form vs the sequential reference on the CPU: batch 2, D = 192, N = 16, L = 1024 and 4096,
    forward and forward+backward (``--threads``; the default 1 avoids OpenMP stalls on a shared machine).
``--smoke``
    The GPU code path on the CPU at tiny sizes with the PyTorch backends (checks the script, not the speed).
``--compile-only``
    Compiles the Triton kernels for sm_90 without a GPU and prints registers, spills and shared memory per config.

Examples::

    python benchmarks/bench_selective_scan.py --gpu --json results.json
    python benchmarks/bench_selective_scan.py --cpu --threads 1
    python benchmarks/bench_selective_scan.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from xlstm_seg_kernels.cross_scan import cross_merge, cross_scan
from xlstm_seg_kernels.selective_scan import mamba_ssm_available, selective_scan

__all__ = ["SS2D_STAGES", "ss2d_inputs", "floor_bytes", "main"]

# VM-UNet encoder at a 256² input: (H = W, d_inner = 2·C); the scan sees K·d_inner channels of length H·W
SS2D_STAGES = {1: (64, 192), 2: (32, 384), 3: (16, 768), 4: (8, 1536)}
N_STATE, K = 16, 4


def _stage_shape(stage: int, quick: bool) -> tuple[int, int]:
    """(H, d_inner) of a stage; --smoke shrinks both 16×/48× so the CPU runs it in seconds."""
    height, d_inner = SS2D_STAGES[stage]
    return (max(2, height // 16), max(2, d_inner // 48)) if quick else (height, d_inner)
NOMINAL_BANDWIDTH = 3.0e12  # H100 SXM HBM3, bytes/s (KERNELS.md §4); the measured copy bandwidth is used when known


def ss2d_inputs(batch: int, height: int, d_inner: int, dtype: torch.dtype, device: str, seed: int = 0,
                requires_grad: bool = True) -> dict[str, torch.Tensor]:
    """SS2D-like scan inputs with VM-UNet's initialisation ranges; A, D, delta_bias stay float32 parameters."""
    gen = torch.Generator(device=device).manual_seed(seed)
    dim, length = K * d_inner, height * height

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32)

    dt = torch.exp(torch.rand(dim, generator=gen, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    x = {
        "u": rnd(batch, dim, length).to(dtype),
        "delta": (0.5 * rnd(batch, dim, length)).to(dtype),
        "A": -torch.arange(1, N_STATE + 1, device=device, dtype=torch.float32).repeat(dim, 1),
        "B": rnd(batch, K, N_STATE, length).to(dtype),
        "C": rnd(batch, K, N_STATE, length).to(dtype),
        "D": torch.ones(dim, device=device),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }
    for v in x.values():
        v.requires_grad_(requires_grad)
    return x


def floor_bytes(batch: int, dim: int, length: int, in_bytes: int, out_bytes: int) -> tuple[int, int]:
    """Fewest bytes a fused scan must move: forward (read u, delta, B, C; write out) and forward+backward (the
    backward reads u, delta, B, C and dout, writes du, ddelta, dB, dC). Parameters are negligible."""
    seq = batch * dim * length
    bc = batch * K * N_STATE * length
    fwd = (2 * seq + 2 * bc) * in_bytes + seq * out_bytes
    bwd = (2 * seq + 2 * bc) * in_bytes + seq * out_bytes + (2 * seq + 2 * bc) * in_bytes
    return fwd, fwd + bwd


def _scan_fn(backend: str) -> Callable[..., torch.Tensor]:
    if backend == "mamba_ssm":  # called directly: its own speed, without our input checks
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return lambda x: selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                           x["delta_bias"], True)
    return lambda x: selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True,
                                    backend=backend)


def _time(fn: Callable[[], object], device: str, reps_cpu: int = 3, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    """Median milliseconds. CUDA: CUDA events via triton.testing.do_bench; CPU: wall clock."""
    if device == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    fn()
    times = []
    for _ in range(reps_cpu):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _rotating(sets: list[dict[str, torch.Tensor]]):
    state = {"i": 0}

    def next_set():
        state["i"] = (state["i"] + 1) % len(sets)
        return sets[state["i"]]

    return next_set


def bench_scan_case(backend: str, batch: int, stage: int, dtype: torch.dtype, device: str,
                    quick: bool = False, cpu_reps: int | None = None) -> dict[str, float]:
    """Forward ms, forward+backward ms and peak extra MiB of one backend at one SS2D stage.

    ``cpu_reps``: timed repetitions on the CPU (default 3, the reference 1).
    """
    height, d_inner = _stage_shape(stage, quick)
    one = ss2d_inputs(batch, height, d_inner, dtype, device)
    set_bytes = sum(v.numel() * v.element_size() for v in one.values())
    n_sets = 1 if device != "cuda" else max(1, min(8, math.ceil(256e6 / set_bytes)))  # beat the 50 MB L2
    sets = [one] + [ss2d_inputs(batch, height, d_inner, dtype, device, seed=s) for s in range(1, n_sets)]
    scan = _scan_fn(backend)
    grad = torch.randn(batch, K * d_inner, height * height, device=device).to(dtype)
    next_set = _rotating(sets)
    slow = backend == "reference"
    reps = dict(reps_cpu=cpu_reps or (1 if slow else 3), warmup_ms=1 if slow else 25, rep_ms=1 if slow else 100)

    def fwd():
        with torch.no_grad():
            scan(next_set())

    def fwd_bwd():
        x = next_set()
        out = scan(x)
        names = [k for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")]
        torch.autograd.grad(out, [x[k] for k in names], grad)

    result = {"fwd_ms": _time(fwd, device, **reps), "fwd_bwd_ms": _time(fwd_bwd, device, **reps)}
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd()
        torch.cuda.synchronize()
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return result


def bench_cross_case(backend: str, batch: int, stage: int, dtype: torch.dtype, device: str,
                     quick: bool = False) -> dict[str, float]:
    """Cross-scan + cross-merge forward, and their forward+backward, at one stage (channels-last input as SS2D)."""
    height, channels = _stage_shape(stage, quick)
    x = torch.randn(batch, height, height, channels, device=device).to(dtype).permute(0, 3, 1, 2).requires_grad_()
    y = torch.randn(batch, K, channels, height * height, device=device).to(dtype).requires_grad_()

    def fwd():
        with torch.no_grad():
            cross_scan(x, backend=backend)
            cross_merge(y, height, height, backend=backend)

    def fwd_bwd():
        s = cross_scan(x, backend=backend)
        m = cross_merge(y, height, height, backend=backend)
        torch.autograd.grad([s, m], [x, y], [torch.ones_like(s), torch.ones_like(m)])

    return {"fwd_ms": _time(fwd, device), "fwd_bwd_ms": _time(fwd_bwd, device)}


def copy_bandwidth(device: str) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (read + write), 1 GiB buffers."""
    src = torch.empty(2**28, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    ms = _time(lambda: dst.copy_(src), device)
    return 2 * src.numel() * 4 / (ms * 1e-3)


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def run_gpu(args) -> list[dict]:
    device = "cuda" if not args.smoke else "cpu"
    quick = args.smoke
    dtypes = [torch.float32] if quick else [getattr(torch, d) for d in args.dtypes]
    batches = [2] if quick else args.batches
    stages = [1, 4] if quick else args.stages
    backends = ["torch", "reference"] if quick else ["triton", "mamba_ssm", "torch", "reference"]
    if "mamba_ssm" in backends and not mamba_ssm_available():
        print("mamba_ssm: selective_scan_fn does not import here; its column is empty")
        backends.remove("mamba_ssm")
    bandwidth = copy_bandwidth(device) if device == "cuda" else NOMINAL_BANDWIDTH
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; copy bandwidth "
          f"{bandwidth / 1e12:.2f} TB/s{' (nominal)' if device != 'cuda' else ' (measured)'}")
    rows = []
    for dtype in dtypes:
        for batch in batches:
            for stage in stages:
                height, d_inner = _stage_shape(stage, quick)
                dim, length = K * d_inner, height * height
                fwd_b, fb_b = floor_bytes(batch, dim, length, torch.finfo(dtype).bits // 8,
                                          torch.finfo(dtype).bits // 8)
                row = {"dtype": str(dtype).removeprefix("torch."), "batch": batch, "stage": stage, "L": length,
                       "channels": dim, "floor_fwd_ms": fwd_b / bandwidth * 1e3,
                       "floor_fwd_bwd_ms": fb_b / bandwidth * 1e3}
                for backend in backends:
                    if backend == "reference" and batch > min(batches) and not args.reference_all and not quick:
                        continue
                    try:
                        res = bench_scan_case(backend, batch, stage, dtype, device, quick)
                    except torch.OutOfMemoryError:
                        res = {"error": "out of memory"}
                        torch.cuda.empty_cache()
                    row[backend] = res
                row["cross_torch"] = bench_cross_case("torch", batch, stage, dtype, device, quick)
                if device == "cuda":
                    row["cross_triton"] = bench_cross_case("triton", batch, stage, dtype, device, quick)
                rows.append(row)
                _print_row(row, backends)
    if args.sweep and device == "cuda":
        rows.extend(run_sweep(args, bandwidth))
    _print_table(rows, backends)
    return rows


def _print_row(row, backends):
    parts = [f"{row['dtype']} b{row['batch']} s{row['stage']}"]
    for b in backends:
        r = row.get(b)
        if r and "fwd_ms" in r:
            parts.append(f"{b} {r['fwd_ms']:.3f}/{r['fwd_bwd_ms']:.3f} ms")
    print("  ".join(parts), flush=True)


def _print_table(rows, backends):
    print("\nselective scan, median ms (forward / forward+backward), peak extra MiB of forward+backward")
    head = ["dtype", "B", "stg", "L", "chan"] + [f"{b} fwd/fb (MiB)" for b in backends]
    head += ["tri/mamba fb", "tri/torch fb", "floor fwd", "tri fwd ×floor", "tri fb ×floor", "cross tri/torch fb"]
    print(" | ".join(head))
    for row in rows:
        if "sweep" in row:
            continue
        cells = [row["dtype"], str(row["batch"]), str(row["stage"]), str(row["L"]), str(row["channels"])]
        for b in backends:
            r = row.get(b)
            if not r:
                cells.append("-")
            elif "error" in r:
                cells.append(r["error"])
            else:
                cells.append(f"{r['fwd_ms']:.3f}/{r['fwd_bwd_ms']:.3f} ({_fmt(r.get('peak_mib'), '.0f')})")
        tri, mam, tor = row.get("triton"), row.get("mamba_ssm"), row.get("torch")

        def ratio(a, b, key):
            return _fmt(a[key] / b[key], ".2f") if a and b and key in a and key in b else "-"

        cells += [ratio(tri, mam, "fwd_bwd_ms"), ratio(tri, tor, "fwd_bwd_ms"), _fmt(row["floor_fwd_ms"])]
        cells += [_fmt(tri["fwd_ms"] / row["floor_fwd_ms"], ".1f") if tri and "fwd_ms" in tri else "-",
                  _fmt(tri["fwd_bwd_ms"] / row["floor_fwd_bwd_ms"], ".1f") if tri and "fwd_ms" in tri else "-"]
        ct, cto = row.get("cross_triton"), row.get("cross_torch")
        cells.append(f"{ct['fwd_bwd_ms']:.3f}/{cto['fwd_bwd_ms']:.3f}" if ct and cto else
                     (f"-/{cto['fwd_bwd_ms']:.3f}" if cto else "-"))
        print(" | ".join(cells))
    print("×floor = measured / memory-bandwidth floor (1.0 would be the floor; the targets: forward+backward at or "
          "under mamba_ssm's, forward within 3× the floor at stage 1)")


SWEEP = [
    {"BLOCK_L": 32, "BLOCK_D_FWD": 4, "BLOCK_D_BWD": 2},
    {"BLOCK_L": 64, "BLOCK_D_FWD": 2, "BLOCK_D_BWD": 1},
    {"BLOCK_L": 64, "BLOCK_D_FWD": 8, "BLOCK_D_BWD": 4},
    {"BLOCK_L": 128, "BLOCK_D_FWD": 2, "BLOCK_D_BWD": 1},
    {"BLOCK_L": 128, "BLOCK_D_FWD": 1, "BLOCK_D_BWD": 1},
    {"BLOCK_L": 256, "BLOCK_D_FWD": 1, "BLOCK_D_BWD": 1},
]


def run_sweep(args, bandwidth) -> list[dict]:
    from xlstm_seg_kernels.selective_scan import triton_impl

    rows = []
    print("\nsweep: triton tile sizes (forward / forward+backward ms)")
    for dtype in [getattr(torch, d) for d in args.dtypes]:
        for stage in args.stages:
            for override in SWEEP:
                triton_impl.BLOCK_OVERRIDES.clear()
                triton_impl.BLOCK_OVERRIDES.update(override)
                try:
                    res = bench_scan_case("triton", args.batches[0], stage, dtype, "cuda")
                except Exception as err:  # a tile that does not compile or fit is a result too
                    res = {"error": f"{type(err).__name__}: {err}"[:120]}
                finally:
                    triton_impl.BLOCK_OVERRIDES.clear()
                row = {"sweep": override, "dtype": str(dtype), "stage": stage, "batch": args.batches[0], **res}
                print(row, flush=True)
                rows.append(row)
    return rows


def _aten_op_count(fn) -> int:
    """aten calls of one call (torch.profiler): the launch-count proxy for a GPU."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def run_cpu(args) -> list[dict]:
    """Torch forms vs the step-by-step reference on the CPU (fp32, grouped B/C as in SS2D), side by side.

    Variants of the chunked torch form: ``torch`` (what ``backend="torch"`` runs on the CPU: cache-sized chunks of
    ``CHUNK_TARGET_ELEMENTS``, one op per step), ``torch 2^20 chunks`` (the chunk rule before issue 12: 4× longer
    chunks) and ``torch log, 1 chunk`` (what it runs on a GPU: one chunk up to ``CUDA_CHUNK_TARGET_ELEMENTS``, the
    log-depth scan). Repetitions are interleaved (best of ``--cpu-reps``; the reference runs once), with aten op
    counts of one forward+backward.
    """
    from xlstm_seg_kernels.selective_scan import torch_impl

    torch.set_num_threads(args.threads)
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nCPU, {args.threads} thread(s): batch 2, D = 192 (4 groups), N = 16, fp32; best of {args.cpu_reps} "
          f"interleaved (reference: 1 run); load {load:.1f}")
    for length in args.cpu_lengths:
        gen = torch.Generator().manual_seed(length)
        x = {
            "u": torch.randn(2, 192, length, generator=gen),
            "delta": 0.5 * torch.randn(2, 192, length, generator=gen) - 2.0,
            "A": -torch.exp(0.5 * torch.randn(192, 16, generator=gen)),
            "B": torch.randn(2, 4, 16, length, generator=gen),
            "C": torch.randn(2, 4, 16, length, generator=gen),
            "D": torch.randn(192, generator=gen),
            "delta_bias": 0.1 * torch.randn(192, generator=gen),
        }
        for v in x.values():
            v.requires_grad_()
        old_chunk = torch_impl._chunk_size(2, 192, 16, length, torch.device("cpu"))
        while old_chunk < 512 and old_chunk * 2 * 2 * 192 * 16 <= (1 << 20):
            old_chunk *= 2

        def chunked(**kw):
            return lambda v: torch_impl.selective_scan_chunked(v["u"], v["delta"], v["A"], v["B"], v["C"], v["D"],
                                                               None, v["delta_bias"], True, **kw)

        variants = {
            "torch": chunked(),
            "torch 2^20 chunks": chunked(chunk_size=min(old_chunk, length), scan="sequential"),
            "torch log, 1 chunk": chunked(chunk_size=length, scan="log"),
            "reference": _scan_fn("reference"),
        }
        times: dict[str, dict[str, list[float]]] = {name: {"fwd": [], "fwd_bwd": []} for name in variants}
        for rep in range(args.cpu_reps):
            for name, scan in variants.items():
                if name == "reference" and rep:
                    continue

                def fwd_bwd(scan=scan):
                    out = scan(x)
                    torch.autograd.grad(out, list(x.values()), torch.ones_like(out))

                with torch.no_grad():
                    start = time.perf_counter()
                    scan(x)
                    times[name]["fwd"].append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()
                fwd_bwd()
                times[name]["fwd_bwd"].append((time.perf_counter() - start) * 1e3)
        row = {"L": length, "load_1min": load}
        for name, scan in variants.items():
            def fwd_bwd(scan=scan):
                out = scan(x)
                torch.autograd.grad(out, list(x.values()), torch.ones_like(out))

            row[name] = {"fwd_ms": min(times[name]["fwd"]), "fwd_bwd_ms": min(times[name]["fwd_bwd"]),
                         "aten_ops": _aten_op_count(fwd_bwd)}
            ref = row.get("reference")
            print(f"  L={length} {name}: fwd {row[name]['fwd_ms']:.0f} ms, fwd+bwd {row[name]['fwd_bwd_ms']:.0f} ms, "
                  f"{row[name]['aten_ops']} aten ops", flush=True)
        ref = row["reference"]
        for name in variants:
            if name != "reference":
                row[name]["speedup_fwd_bwd"] = ref["fwd_bwd_ms"] / row[name]["fwd_bwd_ms"]
                print(f"  L={length}: {name} is {ref['fwd_ms'] / row[name]['fwd_ms']:.1f}× (fwd) and "
                      f"{row[name]['speedup_fwd_bwd']:.1f}× (fwd+bwd) faster than the reference")
        rows.append(row)
    return rows


def run_compile_only(args) -> list[dict]:
    """Compile the Triton kernels for sm_90 on any machine; report registers / spills / shared memory."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from xlstm_seg_kernels.cross_scan import triton_impl as cs
    from xlstm_seg_kernels.selective_scan import triton_impl as ss

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")

    def compile_(jit, sig, consts, warps, elements):
        # the divisibility-by-16 facts Triton specialises on at launch (aligned pointers, L = H·W, channel counts)
        div = {(jit.arg_names.index(a),): [["tt.divisibility", 16]]
               for a in sig if sig[a].startswith("*") or a in ("L", "DIM", "C", "H", "W")}
        src = ASTSource(fn=jit, signature={**sig, **{k: "constexpr" for k in consts}}, constexprs=consts, attrs=div)
        kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
            f.write(kernel.asm["cubin"])
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
        os.unlink(f.name)
        fields = {}
        for key in ("REG", "STACK", "SHARED", "LOCAL"):
            part = usage.split(key + ":")[1].split()[0] if key + ":" in usage else "?"
            fields[key.lower()] = part
        # static proxy for the work per tile element: PTX instructions of the whole kernel × threads / elements
        ptx = [ln for ln in kernel.asm["ptx"].splitlines()
               if ln.strip().endswith(";") and not ln.strip().startswith(".")]
        fields["ptx_per_element"] = round(len(ptx) * warps * 32 / elements, 1)
        return fields

    rows = []
    for dt in args.compile_dtypes:
        p = "*" + dt
        common = {"u_ptr": p, "dt_ptr": p, "A_ptr": "*fp32", "B_ptr": p, "C_ptr": p, "D_ptr": "*fp32", "z_ptr": p,
                  "bias_ptr": "*fp32"}
        ints = {"DIM": "i32", "L": "i32", "N": "i32", "GROUPS_B": "i32", "GROUPS_C": "i32"}
        fwd_sig = {**common, "out_ptr": p, "last_ptr": "*fp32", "hs_ptr": "*fp32", **ints}
        bwd_sig = {**common, "hs_ptr": "*fp32", "dout_ptr": p, "dlast_ptr": "*fp32", "du_ptr": p, "ddt_ptr": p,
                   "dz_ptr": p, "dA_ptr": "*fp32", "dB_ptr": "*fp32", "dC_ptr": "*fp32", "dD_ptr": "*fp32",
                   "dbias_ptr": "*fp32", **ints}
        flags = dict(B_VAR=True, C_VAR=True, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)
        sizes = ss.block_sizes(768, 16, 4096, 192, interpret=False)
        tiles = [(sizes["BLOCK_D_FWD"], sizes["BLOCK_D_BWD"], sizes["BLOCK_L"])] + args.compile_tiles
        for bd_f, bd_b, bl in tiles:
            for warps in (2, 4, 8):
                c = dict(flags, SAVE_STATES=True, BLOCK_D=bd_f, BLOCK_N=16, BLOCK_L=bl)
                rows.append({"kernel": "ss_fwd", "dtype": dt, "warps": warps, **c,
                             **compile_(ss._ss_fwd_kernel.fn, fwd_sig, c, warps, bd_f * 16 * bl)})
                c = dict(flags, HAS_DOUT=True, HAS_DLAST=False, BLOCK_D=bd_b, BLOCK_N=16, BLOCK_L=bl)
                rows.append({"kernel": "ss_bwd", "dtype": dt, "warps": warps, **c,
                             **compile_(ss._ss_bwd_kernel.fn, bwd_sig, c, warps, bd_b * 16 * bl)})
        for cfg, warps in ([({"BLOCK_H": 32, "BLOCK_W": 32}, 4)] if cs.INTERPRETED else
                           [(c.kwargs, c.num_warps) for c in cs._CONFIGS]):
            hw = cfg["BLOCK_H"] * cfg["BLOCK_W"]
            rows.append({"kernel": "cross_scan", "dtype": dt, "warps": warps, **cfg, **compile_(
                cs._cross_scan_kernel.fn, {"x_ptr": p, "y_ptr": p, "C": "i32", "H": "i32", "W": "i32",
                                           "stride_b": "i32", "stride_c": "i32", "stride_h": "i32", "stride_w": "i32"},
                cfg, warps, hw)})
            rows.append({"kernel": "cross_merge", "dtype": dt, "warps": warps, **cfg, **compile_(
                cs._cross_merge_kernel.fn, {"y_ptr": p, "x_ptr": p, "C": "i32", "H": "i32", "W": "i32"}, cfg, warps,
                hw)})
    print("\nsm_90 compile (no GPU needed): registers per thread, stack / local bytes (spills), shared bytes, "
          "PTX instructions × threads / tile elements (a static proxy for work per element)")
    for r in rows:
        tiles = {k: r[k] for k in ("BLOCK_D", "BLOCK_L", "BLOCK_H", "BLOCK_W") if k in r}
        print(f"  {r['kernel']:<11} {r['dtype']} warps={r['warps']} {tiles}: reg {r['reg']}, stack {r['stack']}, "
              f"local {r['local']}, shared {r['shared']}, ptx/elem {r['ptx_per_element']}")
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="VM-UNet shapes on CUDA")
    parser.add_argument("--sweep", action="store_true", help="with --gpu: also time other Triton tile sizes")
    parser.add_argument("--cpu", action="store_true", help="torch form vs sequential reference on the CPU")
    parser.add_argument("--smoke", action="store_true", help="the GPU path at tiny sizes on the CPU")
    parser.add_argument("--compile-only", action="store_true", help="compile the Triton kernels for sm_90, no GPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--reference-all", action="store_true", help="time the slow reference at every batch")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for --cpu")
    parser.add_argument("--cpu-lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--cpu-reps", type=int, default=3)
    parser.add_argument("--compile-tiles", type=lambda v: tuple(int(x) for x in v.split(",")), nargs="*", default=[],
                        help="with --compile-only: extra BLOCK_D_FWD,BLOCK_D_BWD,BLOCK_L tiles to compile")
    parser.add_argument("--compile-dtypes", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args(argv)
    if not (args.gpu or args.cpu or args.smoke or args.compile_only):
        if torch.cuda.is_available():
            args.gpu = True
        else:
            args.smoke = True
    results = {}
    if args.compile_only:
        results["compile"] = run_compile_only(args)
    if args.gpu or args.smoke:
        if args.gpu and not torch.cuda.is_available():
            sys.exit("--gpu needs CUDA; use --smoke or --cpu on this machine")
        results["gpu" if args.gpu else "smoke"] = run_gpu(args)
    if args.cpu:
        results["cpu"] = run_cpu(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
