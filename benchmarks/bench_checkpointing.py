# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Peak memory and step time of a training step with and without activation checkpointing, side by side.

    python benchmarks/bench_checkpointing.py --case seg_xlstm_48          # <= 3 GiB: fits a shared machine
    python benchmarks/bench_checkpointing.py --case seg_xlstm_64          # about 4 GiB
    python benchmarks/bench_checkpointing.py --case brats_128 --case amos3d_real   # the real sizes: 10-25 GiB each
    python benchmarks/bench_checkpointing.py --list

For each case, every ``--mode`` (default: none, xlstm, stages) runs in its own process, one after the other: build
the network (seed 0), AdamW, one untimed warm-up step, then ``--steps`` timed steps of forward, loss, backward and
optimiser step on random inputs. Reported per mode:

- ``peak_rss_gib``: the process's maximum resident set size (ru_maxrss): model, AdamW state and inputs included;
- ``step_peak_gib``: that peak minus the resident size just before the first step, i.e. what the steps added
  (activations, gradients, AdamW moments, allocator caching);
- ``seconds_per_step``: the median of the timed steps;

and, against ``none``, the ratios. CPU timings move with the machine's load: compare the ratios of one run, and note
``uptime`` next to them (printed). Results go to stdout and, with ``--json``, to a file.

``--interleave`` measures the time ratios more robustly on a busy machine: one process, one network, its
checkpointing mode switched between steps (none, xlstm, stages, none, ...), so every mode sees the same load; no
memory figures then (the peak of a process is shared by all modes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

AMOS3D = ("XLSTMUNet(3, 1, 14, features=(32, 64, 128, 256, 320, 320), kernel_sizes=[[3,3,1],[3,3,1],3,3,3,3], "
          "strides=(1, (2,2,1), 2, 2, 2, (2,2,1)), deep_supervision=True)")  # the AMOS bundle's network
CASES = {
    # name: (network expression in shared_networks' namespace, input shape, loss kind)
    "seg_xlstm_48": ("SegXLSTM(4, 3)", (1, 4, 48, 48, 48), "sigmoid"),
    "seg_xlstm_64": ("SegXLSTM(4, 3)", (1, 4, 64, 64, 64), "sigmoid"),
    "brats_128": ("SegXLSTM(4, 3)", (1, 4, 128, 128, 128), "sigmoid"),
    "amos3d_small": (AMOS3D, (1, 1, 96, 64, 16), "ds"),
    "amos3d_real": (AMOS3D, (2, 1, 224, 160, 48), "ds"),
    "isic_small": ("XLSTMVMUNet()", (2, 3, 256, 256), "sigmoid"),
    "isic_real": ("XLSTMVMUNet()", (8, 3, 256, 256), "sigmoid"),
}
MODES = ("none", "xlstm", "stages")


def _rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def set_mode(net, mode: str) -> None:
    """Switch a built network's activation checkpointing (what its constructor option sets)."""
    from shared_networks.blocks.checkpointing import check_checkpointing

    check_checkpointing(mode, "bench_checkpointing")
    for module in net.modules():
        if hasattr(module, "activation_checkpointing"):
            module.activation_checkpointing = mode
        if hasattr(module, "checkpoint") and isinstance(module.checkpoint, bool):
            module.checkpoint = mode == "xlstm"  # SpatialViL, SegXLSTM's token ViL
        if hasattr(module, "checkpoint_stages"):  # VMUNet / XLSTMVMUNet
            module.checkpoint_stages = mode == "stages"
        if hasattr(module, "checkpoint_xlstm"):
            module.checkpoint_xlstm = mode in ("xlstm", "stages")


def _batch(name: str):
    import torch

    expression, shape, kind = CASES[name]
    x = torch.randn(*shape)
    if kind == "ds":
        label = torch.randint(0, 14, (shape[0], *shape[2:]))
    else:
        label = (torch.rand(shape[0], 3 if "SegXLSTM" in expression else 1, *shape[2:]) > 0.5).float()
    return x, label, kind


def _train_step(net, optimizer, x, label, kind) -> float:
    import torch.nn.functional as F

    start = time.perf_counter()
    out = net(x)
    if kind == "ds":
        loss = sum(F.cross_entropy(o, F.interpolate(label[:, None].float(), o.shape[2:]).long()[:, 0]) for o in out)
    else:
        loss = F.binary_cross_entropy_with_logits(out, label)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def interleaved(name: str, modes: list[str], steps: int, threads: int | None) -> list[dict]:
    import torch

    import shared_networks as nets

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = eval(CASES[name][0], vars(nets)).train()  # noqa: S307 (our table)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x, label, kind = _batch(name)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    _train_step(net, optimizer, x, label, kind)  # warm-up
    for step in range(steps):
        for mode in modes:
            set_mode(net, mode)
            times[mode].append(_train_step(net, optimizer, x, label, kind))
            print(f"  {name} {mode}: round {step} {times[mode][-1]:.2f} s", file=sys.stderr, flush=True)
    return [{"case": name, "mode": mode, "interleaved": True, "threads": torch.get_num_threads(),
             "seconds_per_step": round(statistics.median(t), 3), "steps": [round(v, 3) for v in t]}
            for mode, t in times.items()]


def child(name: str, mode: str, steps: int, threads: int | None) -> dict:
    import torch

    import shared_networks as nets

    if threads:
        torch.set_num_threads(threads)
    expression, shape, _ = CASES[name]
    torch.manual_seed(0)
    call = expression[:-1] + ("" if expression.endswith("()") else ", ") + f"activation_checkpointing={mode!r})"
    net = eval(call, vars(nets))  # noqa: S307 (our own table)
    net.train()
    x, label, kind = _batch(name)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    before = _rss_gib()
    times = []
    for step in range(steps + 1):
        seconds = _train_step(net, optimizer, x, label, kind)
        if step:
            times.append(seconds)
        print(f"  {name} {mode}: step {step} {seconds:.2f} s", file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"case": name, "mode": mode, "input": list(shape), "threads": torch.get_num_threads(),
            "seconds_per_step": round(statistics.median(times), 3), "steps": [round(t, 3) for t in times],
            "peak_rss_gib": round(peak, 3), "step_peak_gib": round(peak - before, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--mode", choices=MODES, action="append", help="default: all three")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--interleave", action="store_true",
                        help="time ratios only: one process, the modes alternating step by step")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list:
        for name, (expression, shape, _) in CASES.items():
            print(f"{name:14} {shape}  {expression}")
        return
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.threads)))
        return
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    for name in args.case or ["seg_xlstm_48"]:
        if args.interleave:
            rows += interleaved(name, list(args.mode or MODES), args.steps, args.threads)
            continue
        for mode in args.mode or MODES:
            cmd = [sys.executable, __file__, "--child", name, mode, "--steps", str(args.steps)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if result.returncode:
                rows.append({"case": name, "mode": mode, "exit_code": result.returncode})
                print(f"{name} {mode}: exit code {result.returncode} (-9: killed, e.g. out of memory)")
                continue
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = {r["case"]: r for r in rows if r["mode"] == "none" and "exit_code" not in r}
    print(f"{'case':14} {'mode':7} {'s/step':>8} {'peak GiB':>9} {'step GiB':>9} {'time x':>7} {'step mem x':>10}")
    for r in rows:
        if "exit_code" in r:
            print(f"{r['case']:14} {r['mode']:7} exit code {r['exit_code']}")
            continue
        b = base.get(r["case"])
        time_ratio = f"{r['seconds_per_step'] / b['seconds_per_step']:.2f}" if b else "-"
        if r.get("interleaved"):
            print(f"{r['case']:14} {r['mode']:7} {r['seconds_per_step']:8.2f} {'-':>9} {'-':>9} {time_ratio:>7} "
                  f"{'-':>10}  (interleaved)")
            continue
        mem_ratio = f"{r['step_peak_gib'] / b['step_peak_gib']:.2f}" if b else "-"
        print(f"{r['case']:14} {r['mode']:7} {r['seconds_per_step']:8.2f} {r['peak_rss_gib']:9.2f} "
              f"{r['step_peak_gib']:9.2f} {time_ratio:>7} {mem_ratio:>10}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
