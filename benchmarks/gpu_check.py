# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Everything a first GPU session should run, in one process, in at most ~8 minutes: one JSON and one markdown table.

Sections, in priority order (each has a time cap; whatever the budget does not reach is recorded as skipped):

1. ``verdicts``: the self-check behind ``backend="auto"`` (``kernels/_guard.py``) for every Triton configuration our
   networks use: mLSTM at every ViL head dim in float32 and bfloat16, the selective scan at VM-UNet's SS2D shapes,
   cross-scan/merge. A failed check is the most important line of the report.
2. ``pytest``: ``pytest -m gpu tests/kernels`` (a subprocess; per-test outcomes parsed as they print, so a timeout
   still reports what ran).
3. ``train_steps``: one training step (forward, loss, backward, AdamW) of each bundle's network, built from
   ``bundles/*/configs/train.json``'s ``network_def`` through MONAI's ConfigParser, at the bundle's patch and batch,
   in float32 and with AMP (float16 autocast + GradScaler on CUDA, as the bundles' ``amp``), with time and peak
   memory.
4. ``mlstm``: ``bench_mlstm`` at every network shape: Triton vs torch chunkwise vs parallel, forward and
   forward+backward, float32 and bfloat16, peak memory and the fraction of the roofline floor.
5. ``selective_scan``: ``bench_selective_scan`` at VM-UNet's shapes (batch 8), Triton vs torch (and mamba-ssm if
   it imports), float32 and bfloat16.

``--dry`` runs all of it on the CPU, under Triton's interpreter, at tiny shapes (the demo configs for the bundles),
so CI can run it and it cannot rot (``tests/kernels/test_gpu_check_dry.py``).

Usage::

    python benchmarks/gpu_check.py --out gpu_check/            # on a GPU machine; ~8 min
    python benchmarks/gpu_check.py --dry --out /tmp/dry        # CPU, interpreter, tiny
    python benchmarks/gpu_check.py --budget-s 300 --sections verdicts,pytest

Then paste ``gpu_check.md`` into ``docs/benchmarks.md`` (section "GPU").

Compile and autotune time is part of the run: every Triton configuration compiles on first use, and the autotuner
tries its configs at the real shapes. A section that runs past its cap stops at its next check (a single training
step or benchmark case is not interrupted), and what it did not reach is listed as skipped. Triton's on-disk cache
keeps compiled kernels and autotune results, so a second run in the same session gets further.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("verdicts", "pytest", "train_steps", "mlstm", "selective_scan")
# Seconds per section (GPU); the global budget cuts them further.
CAPS = {"verdicts": 90, "pytest": 150, "train_steps": 110, "mlstm": 80, "selective_scan": 50}
DRY_CAPS = {"verdicts": 120, "pytest": 120, "train_steps": 120, "mlstm": 60, "selective_scan": 60}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, Triton interpreter, tiny shapes (CI)")
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget-s", type=float, default=450.0, help="total seconds for all sections")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    return parser.parse_args(argv)


class Budget:
    def __init__(self, total_s: float) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + total_s

    def section(self, cap_s: float) -> float:
        """Deadline of a section that may take ``cap_s`` seconds."""
        return min(self.deadline, time.perf_counter() + cap_s)

    @staticmethod
    def left(deadline: float) -> float:
        return deadline - time.perf_counter()


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


# ----------------------------------------------------------------------------------------------------------------------
# 1. Self-check verdicts
# ----------------------------------------------------------------------------------------------------------------------


def mlstm_configs(dry: bool) -> list[tuple[str, int, int, int]]:
    """(name, sequence length, DHQK, DHV) of every mLSTM call in our networks (bench_mlstm's cases), or a tiny one."""
    if dry:
        return [("dry S40 DH8", 40, 8, 8), ("dry S20 DH24", 20, 24, 24)]
    import bench_mlstm

    return [(c.name, c.seq, c.dqk, c.dv) for c in bench_mlstm.mlstm_cases(6)]


def run_verdicts(dry: bool, device, deadline: float) -> dict:
    import torch

    from xlstm_seg_kernels import _guard
    from xlstm_seg_kernels.cross_scan import interface as cross_interface
    from xlstm_seg_kernels.mlstm import interface as mlstm_interface
    from xlstm_seg_kernels.selective_scan import interface as scan_interface

    dtypes = [torch.float32] if dry else [torch.float32, torch.bfloat16]  # the interpreter's bf16 dots are wrong
    rows, skipped = [], []
    seen = set()
    # configuration first, dtype inside: if the budget runs out, the shapes that matter most (BraTS stage 0 first)
    # have both verdicts
    for name, seq, dqk, dv in mlstm_configs(dry):
        for dtype in dtypes:
            if Budget.left(deadline) <= 0:
                skipped.append(f"mlstm {name} {dtype}")
                continue
            q = torch.empty(1, 1, seq, dqk, device=device, dtype=dtype)
            v = torch.empty(1, 1, seq, dv, device=device, dtype=dtype)
            mlstm_interface._guarded_triton(q, v, 64, None, False)
    import bench_selective_scan as bss

    for stage in (1, 2, 3, 4):
        for dtype in dtypes:
            if Budget.left(deadline) <= 0:
                skipped.append(f"selective_scan stage {stage} {dtype}")
                continue
            height, d_inner = bss._stage_shape(stage, quick=dry)
            x = bss.ss2d_inputs(1, height, d_inner, dtype, str(device), requires_grad=False)
            scan_interface._guarded_triton(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"],
                                           True, None)
    for dtype in dtypes:
        config = [("device", str(device)), ("dtype", str(dtype).removeprefix("torch."))]
        _guard.triton_allowed("cross_scan+cross_merge", config,
                              lambda dtype=dtype: cross_interface._triton_self_check(device, dtype))
    for verdict in _guard.triton_verdicts():
        key = (verdict.op, verdict.config)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"op": verdict.op, "config": dict(verdict.config), "ok": verdict.ok, "reason": verdict.reason,
                     "seconds": round(verdict.seconds, 3)})
    return {"rows": rows, "skipped": skipped, "all_ok": all(r["ok"] for r in rows)}


# ----------------------------------------------------------------------------------------------------------------------
# 2. pytest -m gpu
# ----------------------------------------------------------------------------------------------------------------------

_OUTCOME = re.compile(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)")


def run_pytest(dry: bool, deadline: float) -> dict:
    timeout = max(10.0, Budget.left(deadline))
    target = ["tests/kernels/test_mlstm_triton.py"] if dry else ["tests/kernels"]
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", *target, "-v", "-rN", "-p", "no:cacheprovider",
           "--color=no"]
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the test modules decide (they turn it on themselves without CUDA)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, timed_out = [], False
    try:
        out, _ = proc.communicate(timeout=timeout)
        lines = out.splitlines()
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        lines, timed_out = out.splitlines(), True
    outcomes = {}
    for line in lines:
        match = _OUTCOME.match(line.strip())
        if match:
            outcomes[match.group(1)] = match.group(2)
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    failed = [name for name, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")]
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "timed_out": timed_out,
            "seconds": round(time.perf_counter() - start, 1), "counts": counts, "failed": failed,
            "tail": "\n".join(lines[-40:]) if (failed or timed_out or proc.returncode not in (0, 5)) else ""}


# ----------------------------------------------------------------------------------------------------------------------
# 3. Training steps of the bundles' networks
# ----------------------------------------------------------------------------------------------------------------------

# Dry mode: the demo configs, shrunk further where the keys still exist (the point is the code path, not the time).
DRY_OVERRIDES = {
    "xlstm_unet_amos3d": {"patch_size": [32, 32, 16], "network_def#features": [4, 8, 8, 16, 16, 16]},
    "xlstm_unet_brats": {"patch_size": [32, 32, 32], "network_def#dims": [8, 8, 16, 16], "network_def#hidden_size": 16},
    "xlstm_vmunet_isic": {"image_size": [32, 32], "network_def#dims": [8, 16, 32, 64]},
}
_PATCH_KEYS = ("patch_size", "image_size", "roi_size", "spatial_size")


def _parsed(parser, key: str, default=None):
    try:
        return parser.get_parsed_content(key)
    except Exception:  # a key the config (being restructured) no longer has, or cannot resolve here
        return default


def bundle_networks(dry: bool) -> list[dict]:
    """For every bundle: its network (from network_def), input shape and batch size, or the reason it failed."""
    from monai.bundle import ConfigParser

    found = []
    for train in sorted(REPO.glob("bundles/*/configs/train.json")):
        bundle = train.parents[1].name
        entry = {"bundle": bundle}
        try:
            files = [str(train)]
            demo = train.with_name("demo.json")
            if dry and demo.exists():
                files.append(str(demo))
            parser = ConfigParser()
            parser.read_config(files)
            if dry:
                for key, value in DRY_OVERRIDES.get(bundle, {}).items():
                    if parser.get(key) is not None:
                        parser[key] = value
            parser.parse()
            net = parser.get_parsed_content("network_def", instantiate=True)
            patch = next((p for p in (_parsed(parser, k) for k in _PATCH_KEYS) if p is not None), None)
            if patch is None:
                raise KeyError(f"none of {_PATCH_KEYS} in {train.name}")
            in_channels = _parsed(parser, "network_def#in_channels")
            if in_channels is None:
                in_channels = next(m.in_channels for m in net.modules() if hasattr(m, "in_channels"))
            batch = 1 if dry else int(_parsed(parser, "batch_size", 1))
            entry.update(network=type(net).__name__, net=net, input_shape=[batch, int(in_channels), *map(int, patch)],
                         params=sum(p.numel() for p in net.parameters()))
        except Exception as err:
            entry.update(error=_error(err))
        found.append(entry)
    return found


def _train_step(net, x, optimizer, amp: bool, scaler, device) -> None:
    import torch

    optimizer.zero_grad(set_to_none=True)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
        out = net(x)
        outs = out if isinstance(out, (list, tuple)) else [out]
        # A generic loss: the bundles' Dice/CE cost little next to the network, and need their label formats.
        loss = sum(o.float().square().mean() for o in outs)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def run_train_steps(dry: bool, device, deadline: float) -> dict:
    import torch

    rows = []
    for entry in bundle_networks(dry):
        base = {k: v for k, v in entry.items() if k != "net"}
        if "error" in entry:
            rows.append({**base, "status": f"failed to build: {entry['error']}"})
            continue
        net = entry["net"].to(device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        for amp in (False, True):
            row = {**base, "precision": "amp" if amp else "fp32"}
            if Budget.left(deadline) <= 0:
                rows.append({**row, "status": "skipped (time budget)"})
                continue
            scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
            x = torch.randn(*entry["input_shape"], device=device)
            try:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                if not dry:
                    _train_step(net, x, optimizer, amp, scaler, device)  # warm-up: compile, autotune, self-checks
                steps = 1 if dry else 3
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    _train_step(net, x, optimizer, amp, scaler, device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["s_per_step"] = (time.perf_counter() - start) / steps
                row["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                row["status"] = "ok"
            except torch.OutOfMemoryError:
                row["status"] = "out of memory"
                torch.cuda.empty_cache()
            except Exception as err:
                row["status"] = f"failed: {_error(err)}"
            rows.append(row)
        del net, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows}


# ----------------------------------------------------------------------------------------------------------------------
# 4. mLSTM and 5. selective-scan benchmarks
# ----------------------------------------------------------------------------------------------------------------------


def run_mlstm(dry: bool, device, deadline: float) -> dict:
    import bench_mlstm
    import torch

    from xlstm_seg_kernels.mlstm.torch_impl import mlstm_chunkwise, mlstm_parallel
    from xlstm_seg_kernels.mlstm.triton_impl import mlstm_triton

    fns = {
        "triton": lambda q, k, v, i, f, chunk_size: mlstm_triton(q, k, v, i, f, chunk_size=chunk_size),
        "chunkwise": lambda q, k, v, i, f, chunk_size: mlstm_chunkwise(q, k, v, i, f, chunk_size=chunk_size),
        "parallel": lambda q, k, v, i, f, chunk_size: mlstm_parallel(q, k, v, i, f),
    }
    if dry:
        cases = [bench_mlstm.Case("dry", 1, 2, 40, 8, 8)]
        dtypes, chunk = [torch.float32], 16
        timer = bench_mlstm.Timer(device, 0, 0, cpu_reps=1)
    else:
        cases, dtypes, chunk = bench_mlstm.mlstm_cases(6), [torch.float32, torch.bfloat16], 64
        timer = bench_mlstm.Timer(device, 10.0, 40.0)
    rates = bench_mlstm.measure_device(device, timer)
    rows, skipped = [], []
    for case in cases:  # BraTS stages 0 and 1 first: that is where the time goes
        for dtype in dtypes:
            if Budget.left(deadline) <= 0:
                skipped.append(f"{case.name} {dtype}")
                continue
            try:
                rows.extend(bench_mlstm.bench_case(case, dtype, fns, timer, chunk, device, rates))
            except Exception as err:
                rows.append({"case": case.name, "dtype": str(dtype), "status": f"failed: {_error(err)}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"rows": rows, "skipped": skipped, "ceilings": rates}


def run_selective_scan(dry: bool, device, deadline: float) -> dict:
    import bench_selective_scan as bss
    import torch

    from xlstm_seg_kernels.selective_scan import mamba_ssm_available

    backends = ["triton", "torch"] + (["mamba_ssm"] if device.type == "cuda" and mamba_ssm_available() else [])
    dtypes = [torch.float32] if dry else [torch.float32, torch.bfloat16]
    stages = [1] if dry else [1, 2, 3, 4]
    batch = 1 if dry else 8
    bandwidth = bss.copy_bandwidth("cuda") if device.type == "cuda" else bss.NOMINAL_BANDWIDTH
    rows, skipped = [], []
    for dtype in dtypes:
        for stage in stages:
            height, d_inner = bss._stage_shape(stage, quick=dry)
            dim, length = bss.K * d_inner, height * height
            size = torch.finfo(dtype).bits // 8
            fwd_b, fb_b = bss.floor_bytes(batch, dim, length, size, size)
            row = {"dtype": str(dtype).removeprefix("torch."), "batch": batch, "stage": stage, "L": length,
                   "channels": dim, "floor_fwd_ms": fwd_b / bandwidth * 1e3, "floor_fwd_bwd_ms": fb_b / bandwidth * 1e3}
            for backend in backends:
                if Budget.left(deadline) <= 0:
                    skipped.append(f"{backend} stage {stage} {dtype}")
                    continue
                try:
                    row[backend] = bss.bench_scan_case(backend, batch, stage, dtype, str(device), quick=dry,
                                                       cpu_reps=1 if dry else None)
                except Exception as err:
                    row[backend] = {"error": _error(err)}
            rows.append(row)
    return {"rows": rows, "skipped": skipped, "backends": backends, "bandwidth_Bps": bandwidth}


# ----------------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------------


def _fmt(value, spec=".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"### GPU check ({'dry run on CPU' if result['dry'] else env.get('gpu', '?')}), {env['date']}", "",
             f"torch {env['torch']}, triton {env['triton']}, commit {env['commit']}; "
             f"`python benchmarks/gpu_check.py{' --dry' if result['dry'] else ''}` took {result['seconds']:.0f} s.", ""]
    sec = result["sections"]
    if "verdicts" in sec:
        v = sec["verdicts"]
        lines += ["#### Self-check verdicts (`backend=\"auto\"`)", "", "| op | configuration | verdict | s |",
                  "|---|---|---|---|"]
        for r in v.get("rows", []):
            config = ", ".join(f"{k}={val}" for k, val in r["config"].items() if k != "device")
            lines.append(f"| {r['op']} | {config} | {'ok' if r['ok'] else 'FAILED: ' + r['reason']} | "
                         f"{r['seconds']:.2f} |")
        lines += _skipped(v) + [""]
    if "pytest" in sec:
        p = sec["pytest"]
        counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(p.get("counts", {}).items())) or "none ran"
        lines += ["#### `pytest -m gpu tests/kernels`", "", f"{counts}; {p.get('seconds', '?')} s"
                  + ("; **timed out**" if p.get("timed_out") else ""), ""]
        lines += [f"- FAILED `{name}`" for name in p.get("failed", [])] + [""]
    if "train_steps" in sec:
        lines += ["#### One training step per bundle network", "",
                  "| bundle | network | input (B, C, spatial) | params | precision | s / step | peak GiB | status |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sec["train_steps"].get("rows", []):
            shape = r.get("input_shape")
            lines.append(f"| {r['bundle']} | {r.get('network', '–')} | {shape[0]}, {shape[1]}, "
                         f"{'×'.join(map(str, shape[2:]))} | {r.get('params', 0):,} | {r.get('precision', '–')} | "
                         f"{_fmt(r.get('s_per_step'))} | {_fmt(r.get('peak_GiB'))} | {r['status']} |"
                         if shape else f"| {r['bundle']} | – | – | – | – | – | – | {r['status']} |")
        lines.append("")
    if "mlstm" in sec:
        lines += ["#### mLSTM core (ms, median; peak MiB of one fwd+bwd; floor % = roofline floor / time)", "",
                  "| case | dtype | backend | fwd | fwd+bwd | peak MiB | floor % fwd | floor % fwd+bwd |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sec["mlstm"].get("rows", []):
            if r.get("status") != "ok":
                lines.append(f"| {r['case']} | {r['dtype']} | {r.get('backend', '–')} | {r['status']} | | | | |")
                continue
            lines.append(f"| {r['case']} | {r['dtype']} | {r['backend']} | {_fmt(r['fwd_ms'])} | "
                         f"{_fmt(r['fwdbwd_ms'])} | {_fmt(r['peak_MiB'], '.0f')} | "
                         f"{_fmt(100 * r['fwd_floor_frac'], '.2f')} | {_fmt(100 * r['fwdbwd_floor_frac'], '.2f')} |")
        lines += _skipped(sec["mlstm"]) + [""]
    if "selective_scan" in sec:
        s = sec["selective_scan"]
        lines += ["#### Selective scan at VM-UNet's SS2D shapes (ms, fwd / fwd+bwd; peak MiB)", "",
                  "| dtype | B | stage | L | channels | " + " | ".join(s.get("backends", [])) + " | floor fwd / fwd+bwd |",
                  "|---|---|---|---|---|" + "---|" * len(s.get("backends", [])) + "---|"]
        for r in s.get("rows", []):
            cells = []
            for b in s.get("backends", []):
                res = r.get(b)
                if not res:
                    cells.append("–")
                elif "error" in res:
                    cells.append(res["error"][:60])
                else:
                    cells.append(f"{_fmt(res['fwd_ms'])} / {_fmt(res['fwd_bwd_ms'])} ({_fmt(res.get('peak_mib'), '.0f')})")
            lines.append(f"| {r['dtype']} | {r['batch']} | {r['stage']} | {r['L']} | {r['channels']} | "
                         + " | ".join(cells) + f" | {_fmt(r['floor_fwd_ms'])} / {_fmt(r['floor_fwd_bwd_ms'])} |")
        lines += _skipped(s) + [""]
    for name, info in sec.items():
        if isinstance(info, dict) and "section_error" in info:
            lines += [f"**Section {name} failed:** {info['section_error']}", ""]
    return "\n".join(lines) + "\n"


def _skipped(section: dict) -> list[str]:
    skipped = section.get("skipped") or []
    return [f"", f"Not reached in the time budget: {', '.join(skipped)}."] if skipped else []


def environment(device) -> dict:
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "not installed"
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["commit"] = "unknown"
    return env


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.dry:
        # Before anything imports triton: its kernels (and ours) decide between interpreter and compiler then.
        os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    if args.dry:
        device = torch.device("cpu")
        torch.set_num_threads(min(2, torch.get_num_threads()))
        caps = DRY_CAPS
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        caps = CAPS
    else:
        raise SystemExit("gpu_check: no CUDA device; use --dry for the CPU run.")
    wanted = [s for s in args.sections.split(",") if s]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"gpu_check: unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}.")
    budget = Budget(args.budget_s)
    runners: dict[str, Callable] = {
        "verdicts": lambda d: run_verdicts(args.dry, device, d),
        "pytest": lambda d: run_pytest(args.dry, d),
        "train_steps": lambda d: run_train_steps(args.dry, device, d),
        "mlstm": lambda d: run_mlstm(args.dry, device, d),
        "selective_scan": lambda d: run_selective_scan(args.dry, device, d),
    }
    result = {"dry": args.dry, "environment": environment(device), "sections": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in SECTIONS:
        if name not in wanted:
            continue
        start = time.perf_counter()
        print(f"[gpu_check] {name} ...", flush=True)
        if Budget.left(budget.deadline) <= 0:
            result["sections"][name] = {"skipped": ["whole section (time budget)"]}
            continue
        try:
            result["sections"][name] = runners[name](budget.section(caps[name]))
        except Exception as err:  # report and go on: one broken section must not lose the others
            result["sections"][name] = {"section_error": _error(err), "traceback": traceback.format_exc()}
        result["sections"][name]["section_seconds"] = round(time.perf_counter() - start, 1)
        print(f"[gpu_check] {name} done in {result['sections'][name]['section_seconds']} s", flush=True)
        # written after every section, so a session that runs out of time still has the JSON so far
        result["seconds"] = time.perf_counter() - budget.start
        (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    result["seconds"] = time.perf_counter() - budget.start
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
