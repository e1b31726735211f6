# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Seconds per training step and peak memory of each bundle's network on this CPU, at demo and real sizes.

    python benchmarks/bench_cpu_steps.py                      # every case
    python benchmarks/bench_cpu_steps.py --case amos3d_demo --steps 3

Each case runs in its own process (so peak RSS is that case's alone): forward, loss, backward and an optimiser step
on random inputs of the bundle's patch size and batch, one untimed warm-up step, then the median of the timed steps.
Peak RSS is the process's maximum resident set size (ru_maxrss), model, AdamW state and inputs included. A case killed
for memory prints its exit code (-9) instead of figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    # name: (network factory expression, input shape, loss kind)
    "amos3d_demo": ("XLSTMUNet(3, 1, 14, features=(8, 16, 32, 64, 128, 128), kernel_sizes=[[3,3,1],[3,3,1],3,3,3,3], "
                    "strides=(1, (2,2,1), 2, 2, 2, (2,2,1)), deep_supervision=True)", (2, 1, 64, 64, 16), "ds"),
    "amos3d_real": ("XLSTMUNet(3, 1, 14, features=(32, 64, 128, 256, 320, 320), kernel_sizes=[[3,3,1],[3,3,1],3,3,3,3], "
                    "strides=(1, (2,2,1), 2, 2, 2, (2,2,1)), deep_supervision=True)", (2, 1, 224, 160, 48), "ds"),
    "brats_demo": ("SegXLSTM(4, 3, dims=(16, 32, 64, 128), hidden_size=128)", (2, 4, 48, 48, 48), "sigmoid"),
    "brats_real_b1": ("SegXLSTM(4, 3)", (1, 4, 128, 128, 128), "sigmoid"),
    "brats_real_b2": ("SegXLSTM(4, 3)", (2, 4, 128, 128, 128), "sigmoid"),
    "isic_demo": ("XLSTMVMUNet(dims=(24, 48, 96, 192))", (8, 3, 64, 64), "sigmoid"),
    "isic_vmunet_real": ("VMUNet()", (8, 3, 256, 256), "sigmoid"),
    "isic_xlstm_vmunet_real": ("XLSTMVMUNet()", (8, 3, 256, 256), "sigmoid"),
}


def child(name: str, steps: int, threads: int | None) -> dict:
    import torch
    from monai.losses import DiceCELoss

    import shared_networks as nets

    if threads:
        torch.set_num_threads(threads)
    expression, shape, kind = CASES[name]
    torch.manual_seed(0)
    net = eval(expression, vars(nets))  # noqa: S307 (our own constant table)
    x = torch.randn(*shape)
    out_channels = 14 if kind == "ds" else (3 if "brats" in name else 1)
    if kind == "ds":
        label = torch.randint(0, out_channels, (shape[0], 1, *shape[2:])).float()
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    else:
        label = (torch.rand(shape[0], out_channels, *shape[2:]) > 0.5).float()
        loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)  # the bundles' optimiser: its two moments count in memory
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        out = net(x)
        outputs = out if isinstance(out, list) else [out]
        loss = sum(loss_fn(o, torch.nn.functional.interpolate(label, o.shape[2:]) if o.shape[2:] != label.shape[2:]
                           else label) for o in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in net.parameters())
    return {"case": name, "input": list(shape), "params": params, "threads": torch.get_num_threads(),
            "seconds_per_step": round(statistics.median(times), 3), "steps": [round(t, 3) for t in times],
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.case[0], args.steps, args.threads)))
        return
    for name in args.case or CASES:
        cmd = [sys.executable, __file__, "--child", "--case", name, "--steps", str(args.steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        line = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else None
        print(line or json.dumps({"case": name, "error": f"exit {result.returncode}", "stderr": result.stderr[-500:]}),
              flush=True)


if __name__ == "__main__":
    main()
