# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Seconds per training step and peak memory of each bundle's network on this CPU, at demo and real sizes.

    python benchmarks/bench_cpu_steps.py                      # every case of the table below
    python benchmarks/bench_cpu_steps.py --case amos3d_demo --steps 3
    python benchmarks/bench_cpu_steps.py --bundle bundles/xlstm_unet_amos3d          # its configs/demo.json sizes
    python benchmarks/bench_cpu_steps.py --bundle bundles/xlstm_unet_amos3d --real   # train.json alone
    python benchmarks/bench_cpu_steps.py --bundle bundles/xlstm_unet_abdomenmr2d --real --set network_def#variant=enc

``--bundle`` reads the bundle's own configs: network_def, loss and optimizer from train.json (with demo.json on top
unless ``--real``, then any ``--set ID=VALUE`` overrides, VALUE read as JSON where it parses), the input from ``batch_size`` x metadata ``num_channels`` x ``patch_size`` (or ``image_size``),
and labels shaped for the loss (class indices when it one-hot encodes them, else one binary map per output
channel). For the demo it also prints the training steps (``epochs`` x ``iterations_per_epoch``, or ``--train-cases``
/ ``batch_size`` per epoch) times the step cost: the estimate to hold against the demo target of at most 3 minutes
of training on 2 cores (docs/adding_a_bundle.md). Validation and data loading are not included.

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


def bundle_parts(bundle: str, real: bool, batch_size: int | None, overrides: dict | None = None):
    """(network, loss, optimizer, input, label, parser) built from the bundle's train.json [+ demo.json]."""
    from pathlib import Path

    import torch
    from monai.bundle import ConfigParser

    root = Path(bundle).resolve()
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "train.json")] + ([] if real else [str(root / "configs" / "demo.json")]))
    parser.update({"bundle_root": str(root), "device": "cpu", "amp": False, **(overrides or {})})
    if batch_size:
        parser["batch_size"] = batch_size
    meta = json.loads((root / "configs" / "metadata.json").read_text())["network_data_format"]
    spatial = parser.get_parsed_content("patch_size" if "patch_size" in parser else "image_size")
    batch = int(parser.get_parsed_content("batch_size"))
    channels, classes = int(meta["inputs"]["image"]["num_channels"]), int(meta["outputs"]["pred"]["num_channels"])
    network = parser.get_parsed_content("network").train()
    loss, optimizer = parser.get_parsed_content("loss"), parser.get_parsed_content("optimizer")
    loss_config = parser["loss"].get("loss", parser["loss"])  # DeepSupervisionLoss wraps the per-output loss
    x = torch.randn(batch, channels, *spatial)
    if loss_config.get("to_onehot_y"):
        label = torch.randint(0, classes, (batch, 1, *spatial)).float()
    else:
        label = (torch.rand(batch, classes, *spatial) > 0.5).float()
    return network, loss, optimizer, x, label, parser


def bundle_child(bundle: str, steps: int, threads: int | None, real: bool, batch_size: int | None,
                 train_cases: int | None, overrides: dict | None = None) -> dict:
    import math

    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    network, loss_fn, optimizer, x, label, parser = bundle_parts(bundle, real, batch_size, overrides)
    times, cpu_times = [], []
    for step in range(steps + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = loss_fn(network(x), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    seconds = statistics.median(times)
    name = f"{bundle.rstrip('/').rsplit('/', 1)[-1]}:{'real' if real else 'demo'}"
    name += "".join(f" {k}={v}" for k, v in (overrides or {}).items())
    result = {"case": name, "input": list(x.shape),
              "params": sum(p.numel() for p in network.parameters()), "threads": torch.get_num_threads(),
              "seconds_per_step": round(seconds, 3), "steps": [round(t, 3) for t in times],
              # CPU seconds (all threads): less distorted than wall time on a shared machine
              "cpu_seconds_per_step": round(statistics.median(cpu_times), 3),
              "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}
    epochs, per_epoch = parser.get_parsed_content("epochs"), parser.get_parsed_content("iterations_per_epoch")
    if per_epoch is None and train_cases:
        per_epoch = math.ceil(train_cases / x.shape[0])
    if per_epoch is not None:
        result["training_steps"] = int(epochs) * int(per_epoch)
        result["estimated_training_min"] = round(result["training_steps"] * seconds / 60, 1)
    return result


def _override(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--set {item}: expected ID=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a plain string such as enc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--bundle", help="a bundle folder: benchmark its own train.json (+ demo.json)")
    parser.add_argument("--real", action="store_true", help="with --bundle: train.json's sizes, without demo.json")
    parser.add_argument("--batch-size", type=int, default=None, help="with --bundle: instead of the config's")
    parser.add_argument("--train-cases", type=int, default=None,
                        help="with --bundle: training cases per epoch, where iterations_per_epoch is null")
    parser.add_argument("--set", action="append", default=[], metavar="ID=VALUE",
                        help="with --bundle: a config override, e.g. network_def#variant=enc (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = dict(_override(item) for item in args.set)
    if args.child:
        if args.bundle:
            print(json.dumps(bundle_child(args.bundle, args.steps, args.threads, args.real, args.batch_size,
                                          args.train_cases, overrides)))
        else:
            print(json.dumps(child(args.case[0], args.steps, args.threads)))
        return
    if args.bundle:
        cmd = [sys.executable, __file__, "--child", "--bundle", args.bundle, "--steps", str(args.steps)]
        for flag, value in (("--threads", args.threads), ("--batch-size", args.batch_size),
                            ("--train-cases", args.train_cases)):
            if value:
                cmd += [flag, str(value)]
        for item in args.set:
            cmd += ["--set", item]
        result = subprocess.run(cmd + (["--real"] if args.real else []), capture_output=True, text=True)
        line = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else None
        print(line or json.dumps({"case": args.bundle, "error": f"exit {result.returncode}",
                                  "stderr": result.stderr[-1500:]}), flush=True)
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
