# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""mLSTM benchmark at xLSTM-UNet shapes: PyTorch parallel and chunkwise forms, our Triton kernels, mlstm_kernels' TFLA.

For a GPU session; one process, one GPU. For every case and dtype it prints forward and forward+backward times
(CUDA events through ``triton.testing.do_bench``, median), the peak memory of one forward+backward, the speed-up over
the parallel form (the official ViL path) and the fraction of the roofline floor reached (bytes and FLOPs model of
KERNELS.md §4, with the copy bandwidth and matmul rate measured on this device). A second section times a whole
``ViLBlock`` and splits it into projections, causal conv, gates, mLSTM core, normalisation and skip/gating.

Usage::

    python benchmarks/bench_mlstm.py                        # everything, float32 and bfloat16
    python benchmarks/bench_mlstm.py --dtype bf16 --cases brats --no-vil
    python benchmarks/bench_mlstm.py --json $OUT/mlstm.json  # also write all numbers
    python benchmarks/bench_mlstm.py --smoke                # CPU, torch backends, tiny sizes (CI check)
    python benchmarks/bench_mlstm.py --compile-check 24,192   # no GPU: ptxas registers/spills of every config
    python benchmarks/bench_mlstm.py --cpu-compare --memory   # CPU: loop-free vs legacy loop chunkwise form

mlstm_kernels (``chunkwise--triton_xl_chunk``, chunk <= 128) is timed only if it imports; it is never a dependency.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise, mlstm_parallel

__all__ = ["Case", "MLSTM_CASES", "VIL_CASES", "main", "roofline_floor_ms"]

log = logging.getLogger("bench_mlstm")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Case:
    """One mLSTM call: q, k (B, NH, S, DHQK), v (B, NH, S, DHV). ViL: NH = 4 (2 if dim % 4), DH = dim / 2."""

    name: str
    batch: int
    heads: int
    seq: int
    dqk: int
    dv: int


def _vil_case(name: str, batch: int, dim: int, seq: int) -> Case:
    heads = 4 if dim % 4 == 0 else 2  # ViL's qkv_block_size rule
    head_dim = 2 * dim // heads
    return Case(name, batch, heads, seq, head_dim, head_dim)


def mlstm_cases(batch_2d: int) -> list[Case]:
    """The mLSTM shapes of our networks (ARCHITECTURE.md; KERNELS.md §4)."""
    return [
        _vil_case("BraTS s0 64^3 dim48", 2, 48, 64**3),
        _vil_case("BraTS s1 32^3 dim96", 2, 96, 32**3),
        _vil_case("BraTS s2 16^3 dim192", 2, 192, 16**3),
        _vil_case("BraTS s3 8^3 dim384", 2, 384, 8**3),
        _vil_case("AMOS3D bottleneck dim320 S210", 2, 320, 210),
        _vil_case("AMOS3D s4 dim320 S840", 2, 320, 840),
        _vil_case("2D320 Enc 80^2 dim128", batch_2d, 128, 80 * 80),
        _vil_case("2D320 Enc chan-token dim400 S512", batch_2d, 400, 512),
        _vil_case("2D320 Enc chan-token dim25 S512", batch_2d, 25, 512),
    ]


MLSTM_CASES = mlstm_cases(6)
# (name, batch, dim, tokens) for whole-ViLBlock timing
VIL_CASES = [
    ("BraTS s0 64^3 dim48", 2, 48, 64**3),
    ("BraTS s1 32^3 dim96", 2, 96, 32**3),
    ("BraTS s2 16^3 dim192", 2, 192, 16**3),
    ("BraTS s3 8^3 dim384", 2, 384, 8**3),
    ("AMOS3D bottleneck dim320 S210", 2, 320, 210),
    ("2D320 Enc 80^2 dim128", 6, 128, 80 * 80),
    ("2D320 Enc chan-token dim400 S512", 6, 400, 512),
]
SMOKE_CASES = [Case("smoke A", 1, 2, 100, 8, 8), Case("smoke B", 1, 4, 300, 16, 24)]
SMOKE_VIL = [("smoke ViL", 1, 16, 64)]


# ----------------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------------


class Timer:
    """Median time of a callable: CUDA events via triton.testing.do_bench on GPU, perf_counter on CPU (smoke)."""

    def __init__(self, device: torch.device, warmup_ms: float, rep_ms: float, cpu_reps: int = 3) -> None:
        self.device = device
        self.warmup_ms, self.rep_ms = warmup_ms, rep_ms
        self.cpu_reps = cpu_reps

    def __call__(self, fn: Callable[[], object], grad_to_none: Sequence[torch.Tensor] | None = None) -> float:
        if self.device.type == "cuda":
            from triton.testing import do_bench  # lazy: the smoke mode must run without triton

            return do_bench(fn, warmup=self.warmup_ms, rep=self.rep_ms, grad_to_none=grad_to_none,
                            return_mode="median")
        fn()
        times = []
        for _ in range(self.cpu_reps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak extra device memory of one call, in MiB (nan on CPU)."""
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def measure_device(device: torch.device, timer: Timer) -> dict[str, float]:
    """Copy bandwidth (bytes read + written per s) and matmul rates, measured once (METHOD.md: measure the ceilings)."""
    if device.type != "cuda":
        return {}
    n = 256 * 2**20 // 4
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    copy_ms = timer(lambda: dst.copy_(src))
    rates = {"copy_GBps": 2 * n * 4 / copy_ms / 1e6}
    del src, dst
    size = 8192
    for name, dtype in DTYPES.items():
        a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
        rates[f"matmul_{name}_TFLOPs"] = 2 * size**3 / timer(lambda: a @ b) / 1e9
    return rates


# ----------------------------------------------------------------------------------------------------------------------
# Roofline model (KERNELS.md §4)
# ----------------------------------------------------------------------------------------------------------------------


def min_bytes(case: Case, dtype: torch.dtype, backward: bool) -> float:
    """Fewest bytes a fused kernel must move: inputs read once, outputs written once (+ n, m fp32 kept for training)."""
    esize = torch.finfo(dtype).bits // 8
    per_token_fwd = (2 * case.dqk + case.dv) * esize + 2 * esize + case.dv * esize + 2 * 4
    total = per_token_fwd
    if backward:  # read q, k, v, i, f, h, dh, n, m; write dq, dk, dv, di, df
        total += (2 * case.dqk + 3 * case.dv) * esize + 2 * esize + 2 * 4 + (2 * case.dqk + case.dv + 2) * esize
    return case.batch * case.heads * case.seq * total


def min_flops(case: Case, chunk: int, backward: bool) -> float:
    """Matmul FLOPs of the cheaper formulation with ideal causal skipping; backward ≈ 2.5× forward."""
    chunkwise = case.seq * (chunk * (case.dqk + case.dv) + 4 * case.dqk * case.dv)
    parallel = case.seq**2 * (case.dqk + case.dv)
    forward = case.batch * case.heads * min(chunkwise, parallel)
    return forward * (3.5 if backward else 1.0)


def roofline_floor_ms(case: Case, dtype: torch.dtype, chunk: int, backward: bool, rates: dict[str, float]) -> float:
    """max(bytes / bandwidth, FLOPs / matmul rate) in ms; nan without measured rates."""
    if not rates:
        return float("nan")
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    t_mem = min_bytes(case, dtype, backward) / (rates["copy_GBps"] * 1e6)
    t_mm = min_flops(case, chunk, backward) / (rates[f"matmul_{name}_TFLOPs"] * 1e9)
    return max(t_mem, t_mm)


# ----------------------------------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------------------------------


def _tfla_fn() -> Callable | None:
    """mlstm_kernels' TFLA ``chunkwise--triton_xl_chunk`` with the padding its shape rules need, if it imports."""
    try:
        module = importlib.import_module("mlstm_kernels.torch.chunkwise.triton_xl_chunk")
        xl_chunk = module.mlstm_chunkwise__xl_chunk
    except Exception:  # any failure means "baseline not available", never an error of ours
        return None

    def run(q, k, v, igate, fgate, chunk_size):
        seq = q.shape[2]
        # S % 16 == 0; below 128 a power of two (one chunk); otherwise a multiple of chunk (<= 128, PR #10).
        if seq < 128:
            chunk = padded = max(16, 1 << (seq - 1).bit_length())
        else:
            chunk = min(128, max(64, chunk_size))
            padded = math.ceil(seq / chunk) * chunk
        pad = padded - seq
        if pad:  # padded steps leave the state alone: input gate -25, forget gate +25 (their pad_zeros wrapper)
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            igate, fgate = F.pad(igate, (0, pad), value=-25.0), F.pad(fgate, (0, pad), value=25.0)
        return xl_chunk(q, k, v, igate, fgate, chunk_size=chunk)[:, :, :seq]

    return run


def backends(device: torch.device, names: Sequence[str] | None) -> dict[str, Callable]:
    table: dict[str, Callable] = {
        "parallel": lambda q, k, v, i, f, chunk_size: mlstm_parallel(q, k, v, i, f),
        "chunkwise": lambda q, k, v, i, f, chunk_size: mlstm_chunkwise(q, k, v, i, f, chunk_size=chunk_size),
    }
    if device.type == "cuda":
        from xlstm_seg_kernels.mlstm.triton_impl import mlstm_triton  # lazy: only a GPU run compiles Triton

        table["triton"] = lambda q, k, v, i, f, chunk_size: mlstm_triton(q, k, v, i, f, chunk_size=chunk_size)
        tfla = _tfla_fn()
        if tfla is not None:
            table["tfla_xl_chunk"] = tfla
    if names:
        table = {name: fn for name, fn in table.items() if name in names}
    return table


def parallel_bytes_estimate(case: Case) -> float:
    """Peak of the parallel form's forward+backward: about ten fp32 S×S matrices per (batch, head).

    Calibrated on the H100 anchors of KERNELS.md (B=6, S=6400: 34 GiB ≈ 9.3 matrices); a wrong guess only means an
    out-of-memory row, which is caught.
    """
    return 10 * 4 * case.batch * case.heads * case.seq**2


# ----------------------------------------------------------------------------------------------------------------------
# mLSTM core section
# ----------------------------------------------------------------------------------------------------------------------


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, sets: int) -> list[list[torch.Tensor]]:
    """``sets`` independent random input sets (random, never zeros), so repeated runs do not just hit L2."""
    out = []
    for _ in range(sets):
        shape = (case.batch, case.heads, case.seq)
        q = torch.randn(*shape, case.dqk, device=device, dtype=dtype)
        k = torch.randn(*shape, case.dqk, device=device, dtype=dtype)
        v = torch.randn(*shape, case.dv, device=device, dtype=dtype)
        igate = 0.1 * torch.randn(*shape, device=device, dtype=dtype)
        fgate = (torch.randn(*shape, device=device) + 4.5).to(dtype)  # ViL's forget biases are linspace(3, 6)
        out.append([t.requires_grad_() for t in (q, k, v, igate, fgate)])
    return out


def _input_sets(case: Case, dtype: torch.dtype, device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    per_set = case.batch * case.heads * case.seq * (2 * case.dqk + 2 * case.dv + 2) * torch.finfo(dtype).bits // 8
    return int(min(8, max(1, math.ceil(256 * 2**20 / per_set))))  # > 4× a 50 MB L2


def bench_case(case: Case, dtype: torch.dtype, fns: dict[str, Callable], timer: Timer, chunk: int,
               device: torch.device, rates: dict[str, float]) -> list[dict]:
    sets = make_inputs(case, dtype, device, _input_sets(case, dtype, device))
    grads = [torch.randn(case.batch, case.heads, case.seq, case.dv, device=device, dtype=dtype) for _ in sets]
    rows = []
    for name, fn in fns.items():
        row = {"case": case.name, "dtype": str(dtype).removeprefix("torch."), "backend": name,
               **dataclasses.asdict(case), "chunk": chunk}
        if name == "parallel" and device.type == "cuda":
            need = parallel_bytes_estimate(case)
            free, _ = torch.cuda.mem_get_info()
            if need > 0.8 * free:
                rows.append({**row, "status": f"does not fit (needs ~{need / 2**30:.0f} GiB)"})
                continue
        counter = [0]

        def forward(fn=fn):
            counter[0] = (counter[0] + 1) % len(sets)
            return fn(*sets[counter[0]], chunk_size=chunk)

        def forward_backward(fn=fn):
            counter[0] = (counter[0] + 1) % len(sets)
            fn(*sets[counter[0]], chunk_size=chunk).backward(grads[counter[0]])

        leaves = [t for inputs in sets for t in inputs]
        try:
            with torch.no_grad():
                fwd_ms = timer(forward)
            fwdbwd_ms = timer(forward_backward, grad_to_none=leaves)
            peak = peak_memory_mib(forward_backward, device)
        except torch.cuda.OutOfMemoryError:
            rows.append({**row, "status": "out of memory"})
            torch.cuda.empty_cache()
            continue
        except Exception as exc:  # a baseline that fails at one shape (e.g. a compiler crash) must not stop the run
            first_line = (str(exc).splitlines() or [""])[0][:80]
            rows.append({**row, "status": f"failed: {type(exc).__name__}: {first_line}"})
            continue
        finally:
            for leaf in leaves:
                leaf.grad = None
        rows.append({
            **row, "status": "ok", "fwd_ms": fwd_ms, "fwdbwd_ms": fwdbwd_ms, "peak_MiB": peak,
            "fwd_floor_ms": roofline_floor_ms(case, dtype, chunk, False, rates),
            "fwdbwd_floor_ms": roofline_floor_ms(case, dtype, chunk, True, rates),
        })
    by_name = {r["backend"]: r for r in rows if r["status"] == "ok"}
    base = by_name.get("parallel")
    for r in rows:
        if r["status"] == "ok":
            r["fwd_speedup_vs_parallel"] = base["fwd_ms"] / r["fwd_ms"] if base else float("nan")
            r["fwdbwd_speedup_vs_parallel"] = base["fwdbwd_ms"] / r["fwdbwd_ms"] if base else float("nan")
            r["fwd_floor_frac"] = r["fwd_floor_ms"] / r["fwd_ms"]
            r["fwdbwd_floor_frac"] = r["fwdbwd_floor_ms"] / r["fwdbwd_ms"]
    return rows


def print_mlstm_table(rows: list[dict]) -> None:
    header = (f"{'case':34} {'dtype':8} {'backend':14} {'fwd ms':>9} {'f+b ms':>9} {'peak MiB':>9} "
              f"{'x par fwd':>9} {'x par f+b':>9} {'floor% f':>8} {'floor% fb':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        lead = f"{r['case'][:34]:34} {r['dtype']:8} {r['backend']:14}"
        if r["status"] != "ok":
            print(f"{lead} {r['status']}")
            continue
        print(f"{lead} {r['fwd_ms']:9.3f} {r['fwdbwd_ms']:9.3f} {r['peak_MiB']:9.1f} "
              f"{r['fwd_speedup_vs_parallel']:9.2f} {r['fwdbwd_speedup_vs_parallel']:9.2f} "
              f"{100 * r['fwd_floor_frac']:8.2f} {100 * r['fwdbwd_floor_frac']:9.2f}")


# ----------------------------------------------------------------------------------------------------------------------
# Whole ViL layer section
# ----------------------------------------------------------------------------------------------------------------------


def vil_stages(block, x: torch.Tensor) -> list[tuple[str, Callable, list[torch.Tensor]]]:
    """ViLBlock.forward cut into stages: (name, fn, its inputs), the inputs computed once with the real modules."""
    layer, cell = block.layer, block.layer.mlstm_cell
    batch, seq, _ = x.shape
    heads = cell.num_heads
    with torch.no_grad():
        xn = block.norm(x)
        x_in = xn.flip(1) if layer.direction == "backward" else xn
        x_m, z = layer.proj_up(x_in).chunk(2, dim=-1)
        x_c = F.silu(layer.conv1d(x_m))
        q, k, v = layer.q_proj(x_c), layer.k_proj(x_c), layer.v_proj(x_m)
        igate = cell.igate(torch.cat([q, k, v], -1)).transpose(1, 2).contiguous()
        fgate = cell.fgate(torch.cat([q, k, v], -1)).transpose(1, 2).contiguous()
        qh, kh, vh = (t.view(batch, seq, heads, -1).transpose(1, 2) for t in (q, k, v))
        h = mlstm_fn(cell)(qh, kh, vh, igate, fgate)
        hn = cell.outnorm(h)
        y = (hn + layer.learnable_skip * x_c) * F.silu(z)

    def gates(q, k, v):
        gate_input = torch.cat([q, k, v], dim=-1)
        return cell.igate(gate_input).transpose(1, 2), cell.fgate(gate_input).transpose(1, 2)

    def core(q, k, v, igate, fgate):
        q, k, v = (t.view(batch, seq, heads, -1).transpose(1, 2) for t in (q, k, v))
        return mlstm_fn(cell)(q, k, v, igate, fgate)

    return [
        ("layernorm", block.norm, [x]),
        ("proj_up", lambda t: layer.proj_up(t).chunk(2, dim=-1), [x_in]),
        ("causal conv + SiLU", lambda t: F.silu(layer.conv1d(t)), [x_m]),
        ("q/k/v headwise proj", lambda a, b: (layer.q_proj(a), layer.k_proj(a), layer.v_proj(b)), [x_c, x_m]),
        ("gates (cat + 2 linear)", gates, [q, k, v]),
        ("mLSTM core", core, [q, k, v, igate, fgate]),
        ("outnorm (GroupNorm)", cell.outnorm, [h]),
        ("skip + SiLU(z) gating", lambda a, b, c: (a + layer.learnable_skip * b) * F.silu(c), [hn, x_c, z]),
        ("proj_down + residual", lambda a, b: a + layer.proj_down(b), [x, y]),
    ]


def mlstm_fn(cell) -> Callable:
    from xlstm_seg_kernels import mlstm

    return lambda q, k, v, i, f: mlstm(q, k, v, i, f, backend=cell.mlstm_backend, chunk_size=cell.chunk_size)


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def time_fwd_bwd(fn: Callable, inputs: list[torch.Tensor], timer: Timer) -> tuple[float, float]:
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    with torch.no_grad():
        outs = _as_tuple(fn(*leaves))
    grads = [torch.randn_like(o) for o in outs]
    with torch.no_grad():
        fwd = timer(lambda: fn(*leaves))

    def fwd_bwd():
        torch.autograd.backward(_as_tuple(fn(*leaves)), grads)

    # Parameter gradients just accumulate between repetitions; only the inputs' are reset.
    return fwd, timer(fwd_bwd, grad_to_none=leaves)


def bench_vil(cases, backend_names: Sequence[str], timer: Timer, device: torch.device, chunk: int) -> list[dict]:
    from shared_networks.blocks.vil import ViLBlock

    rows = []
    for name, batch, dim, seq in cases:
        for backend in backend_names:
            case = _vil_case(name, batch, dim, seq)
            row = {"case": name, "backend": backend, "batch": batch, "dim": dim, "seq": seq}
            if backend == "parallel" and device.type == "cuda":
                need = parallel_bytes_estimate(case)
                if need > 0.8 * torch.cuda.mem_get_info()[0]:
                    rows.append({**row, "status": f"does not fit (needs ~{need / 2**30:.0f} GiB)"})
                    continue
            torch.manual_seed(0)
            try:
                block = ViLBlock(dim, qkv_block_size=case.heads, mlstm_backend=backend, chunk_size=chunk).to(device)
                x = torch.randn(batch, seq, dim, device=device)
                whole = time_fwd_bwd(block, [x], timer)
                stages = [(stage, *time_fwd_bwd(fn, inputs, timer)) for stage, fn, inputs in vil_stages(block, x)]
            except torch.cuda.OutOfMemoryError:
                rows.append({**row, "status": "out of memory"})
                torch.cuda.empty_cache()
                continue
            rows.append({**row, "status": "ok", "block_fwd_ms": whole[0], "block_fwdbwd_ms": whole[1],
                         "stages": [{"stage": s, "fwd_ms": f, "fwdbwd_ms": b} for s, f, b in stages]})
    return rows


def print_vil_table(rows: list[dict]) -> None:
    for r in rows:
        title = f"ViLBlock {r['case']} (B={r['batch']}, S={r['seq']}, dim={r['dim']}), mLSTM backend {r['backend']}"
        if r["status"] != "ok":
            print(f"{title}: {r['status']}")
            continue
        total_f = sum(s["fwd_ms"] for s in r["stages"])
        total_b = sum(s["fwdbwd_ms"] for s in r["stages"])
        print(f"{title}: block fwd {r['block_fwd_ms']:.3f} ms, fwd+bwd {r['block_fwdbwd_ms']:.3f} ms "
              f"(sum of stages {total_f:.3f} / {total_b:.3f} ms)")
        for s in r["stages"]:
            print(f"    {s['stage']:26} fwd {s['fwd_ms']:8.3f} ms {100 * s['fwd_ms'] / total_f:5.1f}%   "
                  f"fwd+bwd {s['fwdbwd_ms']:8.3f} ms {100 * s['fwdbwd_ms'] / total_b:5.1f}%")


def profile_block(name: str, batch: int, dim: int, seq: int, backend: str, device: torch.device, chunk: int) -> None:
    """torch.profiler table of one forward+backward of a ViLBlock (kernel-level view of the same split)."""
    from torch.profiler import ProfilerActivity, profile

    from shared_networks.blocks.vil import ViLBlock

    case = _vil_case(name, batch, dim, seq)
    block = ViLBlock(dim, qkv_block_size=case.heads, mlstm_backend=backend, chunk_size=chunk).to(device)
    x = torch.randn(batch, seq, dim, device=device, requires_grad=True)
    for _ in range(3):  # warm-up: compile and autotune outside the trace
        block(x).sum().backward()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        block(x).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"\ntorch.profiler, ViLBlock {name}, backend {backend}:")
    print(prof.key_averages().table(sort_by=sort, row_limit=25))


# ----------------------------------------------------------------------------------------------------------------------
# CPU: today's loop-free chunkwise form against the form it replaced (issue 12)
# ----------------------------------------------------------------------------------------------------------------------


def legacy_chunkwise(q, k, v, igate, fgate, *, chunk_size=64):
    """The chunkwise form before issue 12, kept only to measure against: a Python loop over chunks carries the state.

    Same maths as :func:`xlstm_seg_kernels.mlstm.torch_impl.mlstm_chunkwise` (no initial state, h only).
    """
    from xlstm_seg_kernels.mlstm.torch_impl import _normalise, _prepare

    out_dtype = v.dtype
    q, k, v, igate, log_f, (c, n, m) = _prepare(q, k, v, igate, fgate, None)
    batch, heads, seq, dqk = q.shape
    dv = v.shape[-1]
    chunk = max(1, min(chunk_size, seq))
    pad = (-seq) % chunk
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        log_f = F.pad(log_f, (0, pad), value=0.0)
        igate = F.pad(igate, (0, pad), value=float("-inf"))
    n_chunks = (seq + pad) // chunk
    qc, kc, vc = (t.reshape(batch, heads, n_chunks, chunk, -1) for t in (q, k, v))
    ic = igate.reshape(batch, heads, n_chunks, chunk)
    within = torch.cumsum(log_f.reshape(batch, heads, n_chunks, chunk), dim=-1)
    total = within[..., -1]
    to_end = total[..., None] - within + ic
    to_end_max = to_end.amax(dim=-1)
    w = torch.exp(to_end - to_end_max[..., None])
    local_c = torch.einsum("bhcs,bhcsd,bhcse->bhcde", w, kc, vc)
    local_n = torch.einsum("bhcs,bhcsd->bhcd", w, kc)
    m = m[..., 0]
    starts_c, starts_n, starts_m = [], [], []
    for idx in range(n_chunks):
        starts_c.append(c)
        starts_n.append(n)
        starts_m.append(m)
        m_new = torch.maximum(total[..., idx] + m, to_end_max[..., idx])
        keep = torch.exp(total[..., idx] + m - m_new)
        add = torch.exp(to_end_max[..., idx] - m_new)
        c = keep[..., None, None] * c + add[..., None, None] * local_c[:, :, idx]
        n = keep[..., None] * n + add[..., None] * local_n[:, :, idx]
        m = m_new
    c_start, n_start, m_start = (torch.stack(t, dim=2) for t in (starts_c, starts_n, starts_m))
    log_decay = within[..., :, None] - within[..., None, :] + ic[..., None, :]
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    log_decay = log_decay.masked_fill(~causal, float("-inf"))
    log_inter = within + m_start[..., None]
    m_t = torch.maximum(log_decay.amax(dim=-1), log_inter)
    scores = (qc @ kc.transpose(-1, -2)) * torch.exp(log_decay - m_t[..., None])
    inter_w = torch.exp(log_inter - m_t)
    num = scores @ vc + inter_w[..., None] * (qc @ c_start)
    den = scores.sum(-1) + inter_w * (qc @ n_start[..., None])[..., 0]
    return _normalise(num, den, m_t, 1e-6).reshape(batch, heads, n_chunks * chunk, dv)[:, :, :seq].to(out_dtype)


# BraTS stages 0 and 1 with the real ViL heads (4 heads of dim/2), batch 1
CPU_COMPARE_CASES = [Case("BraTS s0 64^3 dim48", 1, 4, 64**3, 24, 24), Case("BraTS s1 32^3 dim96", 1, 4, 32**3, 48, 48)]


def _compare_forms() -> dict[str, Callable]:
    from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise

    return {"legacy loop": legacy_chunkwise, "loop-free": mlstm_chunkwise}


def _compare_inputs(case: Case):
    gen = torch.Generator().manual_seed(0)
    shape = (case.batch, case.heads, case.seq)
    q, k = torch.randn(*shape, case.dqk, generator=gen), torch.randn(*shape, case.dqk, generator=gen)
    v = torch.randn(*shape, case.dv, generator=gen)
    igate, fgate = 0.1 * torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen) + 4.5
    return [t.requires_grad_() for t in (q, k, v, igate, fgate)], torch.randn(*shape, case.dv, generator=gen)


def aten_op_count(fn: Callable[[], object]) -> tuple[int, int]:
    """(aten calls, of which compute kernels) in one call, from torch.profiler: the launch-count proxy for a GPU.

    "Compute" leaves out views, reshapes and allocations, which launch nothing on a GPU.
    """
    from torch.profiler import ProfilerActivity, profile

    free = ("view", "reshape", "as_strided", "slice", "select", "expand", "unsqueeze", "squeeze", "narrow",
            "transpose", "permute", "t", "detach", "alias", "empty", "empty_like", "empty_strided", "resolve_conj",
            "resolve_neg", "to", "_to_copy", "lift_fresh", "_unsafe_view", "unbind", "split", "chunk", "flatten",
            "contiguous", "expand_as", "view_as", "numpy_T", "matmul", "einsum", "_reshape_alias", "result_type",
            "is_nonzero", "item", "_local_scalar_dense", "size", "stride", "clone", "zeros", "zeros_like", "ones",
            "ones_like", "full", "new_zeros", "new_empty", "new_full", "pad", "constant_pad_nd")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.count for e in events)
    compute = sum(e.count for e in events if e.key.removeprefix("aten::") not in free)
    return total, compute


def _rss_probe(form: str, case_name: str, chunk: int) -> float:
    """Peak RSS (GiB) of one forward+backward in a fresh process (ru_maxrss is a high-water mark)."""
    code = (
        "import resource, sys; sys.path.insert(0, %r); import bench_mlstm as b, torch; torch.set_num_threads(1); "
        "case = next(c for c in b.CPU_COMPARE_CASES if c.name == %r); fn = b._compare_forms()[%r]; "
        "x, g = b._compare_inputs(case); fn(*x, chunk_size=%d).backward(g); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    ) % (str(Path(__file__).resolve().parent), case_name, form, chunk)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[-1]) / 2**20


def cpu_compare(case_filter: Sequence[str], reps: int, chunk: int, memory: bool) -> list[dict]:
    """Legacy loop vs loop-free chunkwise, fwd+bwd on the CPU, one thread, interleaved repetitions (best of ``reps``)."""
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for case in CPU_COMPARE_CASES:
        if case_filter and not any(s.lower() in case.name.lower() for s in case_filter):
            continue
        inputs, grad = _compare_inputs(case)
        forms = _compare_forms()
        times = {name: [] for name in forms}
        for _ in range(reps):
            for name, fn in forms.items():
                start = time.perf_counter()
                fn(*inputs, chunk_size=chunk).backward(grad)
                times[name].append(time.perf_counter() - start)
                for t in inputs:
                    t.grad = None
        row = {"case": case.name, "B": case.batch, "NH": case.heads, "S": case.seq, "DH": case.dqk, "chunk": chunk,
               "load_1min": load, **{f"{name} s": min(t) for name, t in times.items()}}
        row["speed-up"] = row["legacy loop s"] / row["loop-free s"]
        print({k: row[k] for k in ("case", "legacy loop s", "loop-free s", "speed-up", "load_1min")}, flush=True)
        for name, fn in forms.items():
            def once(fn=fn):
                fn(*inputs, chunk_size=chunk).backward(grad)
            # the profiler keeps every event: above ~1,000 chunks the legacy loop's ~150 calls per chunk take GiBs
            if name == "loop-free" or case.seq // chunk <= 1024:
                row[f"{name} aten ops"], row[f"{name} compute ops"] = aten_op_count(once)
            for t in inputs:
                t.grad = None
            if memory:
                row[f"{name} peak RSS GiB"] = _rss_probe(name, case.name, chunk)
        rows.append(row)
        print(row, flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# Compiler resource report (no GPU needed)
# ----------------------------------------------------------------------------------------------------------------------

_INPUT_POINTERS = {"q_ptr", "k_ptr", "v_ptr", "dh_ptr", "h_ptr", "dq_ptr", "dk_ptr", "dv_ptr", "ig_ptr", "fg_ptr"}
_INT_POINTERS = {"arg_ptr", "src_ptr", "srcs_ptr", "srct_ptr"}


def compile_report(dtypes: Sequence[torch.dtype], head_dims: Sequence[int], chunk: int, arch: int = 90,
                   only: Sequence[str] = ()) -> list[dict]:
    """Compile every kernel in every (pruned) autotune config for sm_``arch`` and read ptxas' resource report.

    Registers, spills and shared memory per config, without a GPU (Triton ships ptxas). Run it before a GPU session:
    a config that spills is a config the autotuner will probably reject, and a kernel that spills in all of them
    needs smaller tiles.
    """
    import os
    import tempfile

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    impl = importlib.import_module("xlstm_seg_kernels.mlstm.triton_impl")
    if impl.INTERPRETED:
        raise SystemExit("compile report: unset TRITON_INTERPRET (the kernels were decorated for the interpreter).")
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    kernels = [impl._fwd_local_kernel, impl._fwd_scan_kernel, impl._fwd_out_kernel, impl._bwd_prep_kernel,
               impl._bwd_local_kernel, impl._bwd_scan_kernel, impl._bwd_dqdk_kernel, impl._bwd_dv_kernel]
    kernels = [k for k in kernels if not only or any(name in k.fn.__name__ for name in only)]
    rows = []
    for dtype in dtypes:
        ptr = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}[dtype]
        for dh in head_dims:
            q = torch.empty(1, chunk, dh, dtype=dtype, device="meta")
            geo = impl._Geometry(q, q, chunk)
            fixed = {"DHQK": dh, "DHV": dh, "CHUNK": geo.CHUNK, "DOT_DT": geo.DOT_DT, "PREC": geo.PREC,
                     "HAS_INIT": True, "HAS_DLAST": True, "BLOCK": geo.BLOCK}
            for tuner in kernels:
                fn = tuner.fn
                for config in impl._prune(tuner.configs, {}, DHQK=dh, DHV=dh):
                    consts = {name: value for name, value in {**fixed, "BK": geo.BK, **config.kwargs}.items()
                              if name in fn.arg_names}
                    signature = {
                        name: "constexpr" if name in consts else
                        (ptr if name in _INPUT_POINTERS else "*i32" if name in _INT_POINTERS else "*fp32")
                        if name.endswith("_ptr") else ("fp32" if name in ("scale", "eps") else "i32")
                        for name in fn.arg_names
                    }
                    row = {"dtype": str(dtype).removeprefix("torch."), "DH": dh, "kernel": fn.__name__,
                           "config": {**config.kwargs, "warps": config.num_warps, "stages": config.num_stages}}
                    try:
                        compiled = triton.compile(
                            ASTSource(fn, signature, constexprs=consts), target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": config.num_warps, "num_stages": config.num_stages},
                        )
                        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as fh:
                            fh.write(compiled.asm["ptx"])
                        out = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}a", fh.name, "-o", os.devnull],
                                             capture_output=True, text=True).stderr
                        os.unlink(fh.name)
                        regs = next((int(w) for line in out.splitlines() if "Used" in line
                                     for w, nxt in zip(line.split(), line.split()[1:]) if nxt == "registers,"), -1)
                        spill = next((int(line.split("bytes spill stores")[0].split(",")[-1])
                                      for line in out.splitlines() if "spill stores" in line), -1)
                        row.update(status="ok", registers=regs, spill_bytes=spill, shared=compiled.metadata.shared)
                    except Exception as exc:  # report and go on: one failing config must not hide the others
                        row.update(status=f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:100]}")
                    rows.append(row)
                    print(f"{row['dtype']:9} DH={dh:<4} {fn.__name__:18} {str(row['config']):52} "
                          + (f"regs {row['registers']:3} spill {row['spill_bytes']:4} B smem {row['shared']:6} B"
                             if row["status"] == "ok" else row["status"]), flush=True)
    del tl
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, str]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        env["triton"] = importlib.import_module("triton").__version__
    except ImportError:
        env["triton"] = "not installed"
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["commit"] = "unknown"
    return env


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, torch backends, tiny sizes (no GPU needed)")
    parser.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--cases", default="", help="comma list of substrings selecting cases by name")
    parser.add_argument("--backends", default="", help="comma list: parallel, chunkwise, triton, tfla_xl_chunk")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--batch-2d", type=int, default=6, help="batch of the 2D 320² cases (6–12 in training)")
    parser.add_argument("--no-vil", action="store_true", help="skip the whole-ViLBlock section")
    parser.add_argument("--profile", action="store_true", help="also print a torch.profiler table per ViL case")
    parser.add_argument("--warmup-ms", type=float, default=25.0)
    parser.add_argument("--rep-ms", type=float, default=100.0)
    parser.add_argument("--json", default="", help="write all numbers to this file")
    parser.add_argument("--compile-check", default="", metavar="DH,DH,...",
                        help="no GPU needed: compile every kernel config for sm_90 at these head dims, print ptxas' "
                             "registers/spills/shared memory, and exit")
    parser.add_argument("--kernels", default="", help="with --compile-check: comma list of kernel-name substrings")
    parser.add_argument("--cpu-compare", action="store_true",
                        help="CPU: loop-free chunkwise vs the legacy loop form at BraTS stages 0/1 (B=1, 4 heads), "
                             "fwd+bwd time (one thread), aten op counts and, with --memory, peak RSS per form")
    parser.add_argument("--reps", type=int, default=2, help="with --cpu-compare: interleaved repetitions")
    parser.add_argument("--memory", action="store_true", help="with --cpu-compare: peak RSS, one process per form")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.compile_check:
        dims = [int(d) for d in args.compile_check.split(",") if d]
        rows = compile_report([DTYPES[d] for d in args.dtype.split(",") if d], dims, args.chunk_size,
                              only=[k for k in args.kernels.split(",") if k])
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        return {"compile": rows}
    if args.cpu_compare:
        rows = cpu_compare([c for c in args.cases.split(",") if c], args.reps, args.chunk_size, args.memory)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        return {"cpu_compare": rows}
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # a CI check, not a measurement: stay off the other cores
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("bench_mlstm: no CUDA device; use --smoke for the CPU check.")
    timer = Timer(device, args.warmup_ms, args.rep_ms, cpu_reps=1 if args.smoke else 3)
    selected = [s for s in args.cases.split(",") if s]

    def keep(name: str) -> bool:
        return not selected or any(s.lower() in name.lower() for s in selected)

    cases = SMOKE_CASES if args.smoke else [c for c in mlstm_cases(args.batch_2d) if keep(c.name)]
    vil_cases = SMOKE_VIL if args.smoke else [c for c in VIL_CASES if keep(c[0])]
    dtypes = [DTYPES[d] for d in args.dtype.split(",") if d]
    fns = backends(device, [b for b in args.backends.split(",") if b])

    env = environment(device)
    rates = measure_device(device, timer)
    log.info("environment: %s", env)
    if rates:
        log.info("measured ceilings: %s", {k: round(v, 1) for k, v in rates.items()})

    rows = []
    for dtype in dtypes:
        for case in cases:
            rows.extend(bench_case(case, dtype, fns, timer, args.chunk_size, device, rates))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print("\nmLSTM core (median ms; 'x par' = speed-up over the parallel form; floor% = roofline floor / time)")
    print_mlstm_table(rows)

    vil_rows = []
    if not args.no_vil:
        # ViL runs in float32 (SpatialViL disables autocast), so this section is float32 only. On a GPU the
        # official parallel path and ours; the torch chunkwise form's Python loop (4096 chunks at 64³) only on request.
        everything = args.backends or device.type != "cuda"
        wanted = ("parallel", "chunkwise", "triton") if everything else ("parallel", "triton")
        vil_backends = [b for b in fns if b in wanted]
        vil_rows = bench_vil(vil_cases, vil_backends, timer, device, args.chunk_size)
        print("\nWhole ViLBlock, float32, split into stages (each timed alone, median ms)")
        print_vil_table(vil_rows)
        if args.profile:
            for name, batch, dim, seq in vil_cases:
                profile_block(name, batch, dim, seq, "triton" if "triton" in fns else "chunkwise", device,
                              args.chunk_size)

    result = {"environment": env, "ceilings": rates, "mlstm": rows, "vil": vil_rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
