# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""VM-UNet and XLSTM-VMUNet training steps on the CPU: seconds per step and peak resident memory.

One step = forward + BCE-with-logits + Dice loss (sigmoid) + backward + AdamW (lr 1e-3, weight decay 1e-2), the
ISIC recipe (ARCHITECTURE.md §3.5) at its input size and batch (256², batch 8) by default. Each model runs in its own
subprocess so that its peak RSS (``ru_maxrss``) is its own. Synthetic data; the first ``--warmup`` steps are not
timed. The kernels' ``"auto"`` backends resolve to the PyTorch ones on the CPU. The default is one intra-op thread:
on a busy 2-core machine OpenMP threads that spin-wait on each other made a step ~30x slower (1.3 s vs 40 s at
64², batch 2); pass ``--threads`` to compare on a quiet machine.

Examples::

    python benchmarks/bench_vmunet_cpu.py                          # both models, 256², batch 8, 2 timed steps
    python benchmarks/bench_vmunet_cpu.py --model xlstm_vmunet --xlstm-scales 0 1 2 3 --threads 2
    python benchmarks/bench_vmunet_cpu.py --size 64 --batch 2 --steps 1 --warmup 0  # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

__all__ = ["train_step_benchmark", "main"]

MODELS = ("vmunet", "xlstm_vmunet")


def _build(name: str, xlstm_scales: list[int] | None, xlstm_blocks: str) -> torch.nn.Module:
    from shared_networks.nets.vm_unet import VMUNet
    from shared_networks.nets.xlstm_vm_unet import DEFAULT_XLSTM_SCALES, XLSTMVMUNet

    if name == "vmunet":
        return VMUNet()
    scales = tuple(xlstm_scales) if xlstm_scales else DEFAULT_XLSTM_SCALES
    return XLSTMVMUNet(xlstm_blocks=xlstm_blocks, xlstm_scales=scales)


def train_step_benchmark(
    name: str, size: int, batch: int, steps: int, warmup: int, xlstm_scales: list[int] | None, xlstm_blocks: str
) -> dict:
    """Time ``steps`` training steps of one model after ``warmup`` untimed ones; returns a JSON-able record."""
    from monai.losses import DiceLoss

    torch.manual_seed(0)
    model = _build(name, xlstm_scales, xlstm_blocks).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)
    images = torch.randn(batch, 3, size, size)
    masks = (torch.rand(batch, 1, size, size) > 0.7).float()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, masks) + dice(logits, masks)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        if step >= warmup:
            times.append(elapsed)
        print(f"  {name} step {step}{' (warm-up)' if step < warmup else ''}: {elapsed:.2f} s, loss {loss.item():.4f}",
              file=sys.stderr, flush=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "model": name,
        "xlstm_blocks": xlstm_blocks if name != "vmunet" else None,
        "xlstm_scales": list(getattr(model, "xlstm_scales", ())) or None,
        "params": sum(p.numel() for p in model.parameters()),
        "size": size,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "step_s_median": statistics.median(times) if times else None,
        "step_s_all": [round(t, 3) for t in times],
        "peak_rss_gib": round(peak_kib / 2**20, 3),
    }


def _child_command(args: argparse.Namespace, name: str) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--model", name, "--size", str(args.size),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--xlstm-blocks", args.xlstm_blocks]
    if args.xlstm_scales:
        cmd += ["--xlstm-scales", *map(str, args.xlstm_scales)]
    return cmd


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=(*MODELS, "both"), default="both")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared 2-core machine 2 threads ran 30x slower)")
    parser.add_argument("--xlstm-scales", type=int, nargs="*", default=None, help="default: the network's default")
    parser.add_argument("--xlstm-blocks", default="sm", choices=("sm", "s", "m", "none"))
    parser.add_argument("--json", default=None, help="also write the records to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        torch.set_num_threads(args.threads)
        record = train_step_benchmark(
            args.model, args.size, args.batch, args.steps, args.warmup, args.xlstm_scales, args.xlstm_blocks
        )
        print(json.dumps(record))
        return [record]

    names = MODELS if args.model == "both" else (args.model,)
    records = []
    for name in names:
        out = subprocess.run(_child_command(args, name), check=True, stdout=subprocess.PIPE, text=True).stdout
        records.append(json.loads(out.strip().splitlines()[-1]))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'model':<14}{'scales':<14}{'params':>12}{'s/step':>10}{'peak RSS GiB':>14}   steps")
    for r in records:
        scales = ",".join(map(str, r["xlstm_scales"] or [])) or "-"
        median = f"{r['step_s_median']:.2f}" if r["step_s_median"] is not None else "-"
        rss = r["peak_rss_gib"]
        print(f"{r['model']:<14}{scales:<14}{r['params']:>12,}{median:>10}{rss:>14.2f}   {r['step_s_all']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=2)
    return records


if __name__ == "__main__":
    main()
