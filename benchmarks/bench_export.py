# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Export every bundle's network to ONNX and traced TorchScript, then time one inference case on the CPU with
PyTorch eager, ONNX Runtime and the TorchScript module side by side, in one process, on the same input.

    python benchmarks/bench_export.py                                  # every bundle, demo sizes, 1 thread
    python benchmarks/bench_export.py --bundle xlstm_unet_cells --threads 2 --out build/export.json
    python benchmarks/bench_export.py --ckpt-root demo_work            # <root>/<bundle>/models/model.pt
    python benchmarks/bench_export.py --real --bundle xlstm_unet_cells # inference.json alone: the real patch and widths

Bundles are found by ``bundles/*/configs/metadata.json``. Per bundle (each in its own process):

* sizes: ``configs/inference.json`` with ``configs/demo.json`` merged on it (the demo patch and widths), or
  inference.json alone with ``--real``; the export input is ``[1, C, *patch_size]`` (``image_size`` where the bundle
  has no patch), C from the metadata's ``num_channels``;
* weights: the demo-trained ``<ckpt-root>/<bundle>/models/model.pt`` when it exists, else the network's seeded
  initialisation saved as a state dict (the timings do not depend on the values; the errors barely do);
* export: ``monai.bundle.scripts.onnx_export`` and ``ckpt_export(use_trace=True)``, the functions behind
  ``python -m monai.bundle onnx_export`` / ``ckpt_export --use_trace True``, called in-process on the bundle's own
  configs; export seconds include parsing the config and loading the checkpoint (what the command costs);
* graph size: ONNX nodes in the main graph and with every Loop/Scan/If body counted; TorchScript nodes of the
  loaded module's inlined graph (loop bodies included);
* one case: the first test case of a demo dataset made with the bundle's own ``scripts/make_demo_data.py --size
  verify`` and ``prepare_data.py``, through inference.json's ``preprocessing``; then inference.json's ``inferer``
  (sliding window, slices, TTA, as configured) with each network in turn. One untimed warm-up each, then ``--repeats``
  rounds alternating the three; the table gives the median process CPU seconds (``time.process_time``: every thread of
  this process, so other load on the machine does not inflate it), ``--out`` also the wall seconds. torch and ONNX
  Runtime get the same intra-op thread count (``--threads``); ONNX Runtime's inter-op execution stays sequential;
* accuracy: max |exported - eager| / max |eager| over the case's logits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET_ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def bundles() -> list[str]:
    return sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def demo_dataset(bundle: Path, work: Path) -> Path:
    """A --size verify demo dataset made and prepared with the bundle's own scripts (reused when present)."""
    raw, prepared = work / "demo_raw", work / "demo_prepared"
    if not (prepared / "datalist.json").is_file():
        for script, args in (("make_demo_data.py", ["--output", str(raw), "--size", "verify"]),
                             ("prepare_data.py", ["--source", str(raw), "--output", str(prepared)])):
            subprocess.run([sys.executable, str(bundle / "scripts" / script), *args], check=True, capture_output=True,
                           text=True, env=QUIET_ENV)
    return prepared


def onnx_node_counts(model) -> tuple[int, int]:
    """(nodes of the main graph, nodes with every subgraph body counted)."""
    def total(graph) -> int:
        count = 0
        for node in graph.node:
            count += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    count += total(attr.g)
                for sub in attr.graphs:
                    count += total(sub)
        return count
    return len(model.graph.node), total(model.graph)


def torchscript_node_count(module) -> int:
    def total(block) -> int:
        return sum(1 + sum(total(b) for b in node.blocks()) for node in block.nodes())
    return total(module.inlined_graph)


def relative_error(got, ref) -> float:
    import torch

    got, ref = (torch.as_tensor(t).as_subclass(torch.Tensor).to(torch.float64) for t in (got, ref))
    return float((got - ref).abs().max() / ref.abs().max())


def child(name: str, real: bool, threads: int, repeats: int, work: Path, ckpt_root: Path | None) -> dict:
    import onnx
    import torch
    from monai.bundle import ConfigParser
    from monai.bundle.scripts import ckpt_export, onnx_export

    from xlstm_bundle_tools import OnnxNetwork

    torch.set_num_threads(threads)
    bundle = REPO / "bundles" / name
    configs = [str(bundle / "configs" / "inference.json")] + ([] if real else [str(bundle / "configs" / "demo.json")])
    work.mkdir(parents=True, exist_ok=True)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["inputs"]["image"]["num_channels"]

    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({"bundle_root": str(bundle), "device": "cpu", "dataset_dir": str(demo_dataset(bundle, work)),
                   "image_glob": "", "num_workers": 0})
    patch = list(parser["patch_size"] if "patch_size" in parser else parser["image_size"])
    input_shape = [1, channels, *patch]

    trained = ckpt_root / name / "models" / "model.pt" if ckpt_root else None
    if trained is not None and trained.is_file():
        ckpt, weights = trained, f"demo-trained ({trained})"
    else:
        torch.manual_seed(0)
        ckpt, weights = work / "model_init.pt", "seeded initialisation"
        torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))

    onnx_path, ts_path = work / "model.onnx", work / "model.ts"
    start = time.perf_counter()
    onnx_export(net_id="network_def", filepath=str(onnx_path), ckpt_file=str(ckpt), config_file=configs,
                input_shape=input_shape)
    onnx_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ckpt_export(net_id="network_def", filepath=str(ts_path), ckpt_file=str(ckpt), config_file=configs,
                meta_file=str(bundle / "configs" / "metadata.json"), use_trace=True, input_shape=input_shape)
    ts_seconds = time.perf_counter() - start

    onnx_nodes, onnx_nodes_all = onnx_node_counts(onnx.load(str(onnx_path)))
    traced = torch.jit.load(str(ts_path), map_location="cpu").eval()
    ts_nodes = torchscript_node_count(traced)

    class Plain(torch.nn.Module):  # the traced module takes plain tensors; the inferer may hand it MetaTensors
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            return self.module(x.as_subclass(torch.Tensor))

    runners = {"eager": network, "onnxruntime": OnnxNetwork(onnx_path, providers=["CPUExecutionProvider"],
                                                            intra_op_num_threads=threads),
               "torchscript": Plain(traced)}
    sample = parser.get_parsed_content("dataset")[0]
    image = sample["image"][None].float()
    inferer = parser.get_parsed_content("inferer")
    wall = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    logits = {}
    with torch.no_grad():
        for key, net in runners.items():  # warm-up; its output is the one compared
            logits[key] = inferer(image, net)
        for _ in range(repeats):
            for key, net in runners.items():
                t0, c0 = time.perf_counter(), time.process_time()
                inferer(image, net)
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
    return {
        "bundle": name, "size": "real" if real else "demo", "weights": weights, "threads": threads,
        "repeats": repeats, "export_input_shape": input_shape, "case_shape": list(image.shape),
        "network": type(network).__name__,
        "onnx_export_s": onnx_seconds, "torchscript_trace_export_s": ts_seconds,
        "onnx_nodes": onnx_nodes, "onnx_nodes_with_subgraphs": onnx_nodes_all, "torchscript_nodes": ts_nodes,
        "onnx_mb": onnx_path.stat().st_size / 2**20,
        "seconds_per_case": {k: statistics.median(v) for k, v in wall.items()},
        "cpu_seconds_per_case": {k: statistics.median(v) for k, v in cpu.items()},
        "max_rel_err": {k: relative_error(logits[k], logits["eager"]) for k in ("onnxruntime", "torchscript")},
    }


def table(results: list[dict]) -> str:
    head = ("| bundle | size | export input | case | ONNX export s | TS trace export s | ONNX nodes (incl. bodies) | "
            "TS nodes | eager CPU s/case | ORT CPU s/case | TS CPU s/case | ORT/eager | ORT max rel err | "
            "TS max rel err |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['bundle']} | {r['size']} | failed: {r['error']} |")
            continue
        s = r["cpu_seconds_per_case"]
        lines.append(
            f"| {r['bundle']} | {r['size']} | {'x'.join(map(str, r['export_input_shape']))} | "
            f"{'x'.join(map(str, r['case_shape']))} | {r['onnx_export_s']:.1f} | "
            f"{r['torchscript_trace_export_s']:.1f} | "
            f"{r['onnx_nodes']:,} ({r['onnx_nodes_with_subgraphs']:,}) | {r['torchscript_nodes']:,} | "
            f"{s['eager']:.3f} | {s['onnxruntime']:.3f} | {s['torchscript']:.3f} | "
            f"{s['onnxruntime'] / s['eager']:.2f} | "
            f"{r['max_rel_err']['onnxruntime']:.1e} | {r['max_rel_err']['torchscript']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", action="append", choices=bundles(), help="repeatable; default: every bundle")
    parser.add_argument("--real", action="store_true", help="inference.json alone (real patch and widths)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ONNX Runtime (1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per network after a warm-up (3)")
    parser.add_argument("--work", type=Path, help="where demo data and exported models go (default: a temp folder)")
    parser.add_argument("--ckpt-root", type=Path, help="use <root>/<bundle>/models/model.pt where it exists")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(args.child, args.real, args.threads, args.repeats, args.work, args.ckpt_root)
        print("RESULT " + json.dumps(result))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        work = args.work or Path(tmp)
        for name in args.bundle or bundles():
            cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads), "--repeats",
                   str(args.repeats), "--work", str(work / name)] + (["--real"] if args.real else []) + (
                ["--ckpt-root", str(args.ckpt_root.resolve())] if args.ckpt_root else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=QUIET_ENV)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode == 0 and lines:
                results.append(json.loads(lines[-1][len("RESULT "):]))
            else:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                results.append({"bundle": name, "size": "real" if args.real else "demo",
                                "error": f"exit {proc.returncode}: {last[:200]}"})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(f"threads: {args.threads} (torch.set_num_threads and ONNX Runtime intra_op_num_threads); "
          f"median of {args.repeats} rounds after a warm-up; process CPU seconds per case (wall seconds in --out)\n")
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
