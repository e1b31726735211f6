# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Peak memory of the bundle's inference (configs/inference.json) on one whole-slide-sized image.

    python bundles/xlstm_unet_cells/scripts/large_image_memory.py --size 2500 --size 5000
    python bundles/xlstm_unet_cells/scripts/large_image_memory.py --size 10000        # needs ~5 GB: a quiet machine

For each size it writes an N x N RGB uint8 TIFF (a demo case tiled), then runs the bundle's own inference pipeline
(``python -m monai.bundle run`` with inference.json, in a fresh process) on it with ``--image_glob`` and prints the
peak resident memory (``ru_maxrss``) of that process and of its largest DataLoader worker with the wall time, as
JSON lines (``--num-workers 0`` keeps everything in the one process). The network keeps the real patch
(512 x 512, so the real number of sliding windows and the real accumulation buffers) but, by default, narrow stages
(``--features``) and random weights (``load_pretrain=false``), so the run takes minutes on a CPU: what grows with the
image is the pipeline's buffers, not the network. ``--real-network`` keeps train.json's widths (the figure to add
for them is the per-window activation memory, ``--window`` prints it).

What the pipeline holds for an N-pixel RGB image (bytes per pixel): the raw image 3 (uint8) or 6 (uint16); the
challenge normalisation 3 (uint8); the z-scored float32 input 12, and its collated batch copy 12 while the DataLoader
stacks it; MONAI's sliding-window output, 3 float32 logits, 12, plus its count map 4 (``device: cpu``: on the host,
whatever the network runs on); the 3-class map 1, instance labels 4 (grown in place), and the uint16 copy the writer
makes 2.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parents[1]
NARROW = [4, 8, 8, 8, 8, 8, 8, 8]


def make_image(path: Path, size: int) -> None:
    import tifffile

    sys.path.insert(0, str(BUNDLE / "scripts"))
    import make_demo_data as demo

    rng = np.random.default_rng(0)
    mask = demo.make_cells(rng, 256, 256)
    tile = demo.render(rng, mask, "brightfield")
    reps = (size + 255) // 256
    image = np.tile(tile, (reps, reps, 1))[:size, :size]
    tifffile.imwrite(str(path), image, photometric="rgb")


def child(image: str, output: str, features: list[int] | None, num_workers: int | None = None) -> dict:
    """In this process: the bundle's inference on one image; returns peak RSS and time.

    ``peak_rss_gib`` is this process's; ``worker_peak_rss_gib`` the largest of its DataLoader workers (they read and
    normalise the image, so with workers the image's first copies live there). Their sum bounds the peak from above.
    """
    from monai.bundle import run

    overrides = {"image_glob": image, "output_dir": output, "load_pretrain": False, "device": "cpu"}
    if features:
        overrides["network_def#features"] = features
    if num_workers is not None:
        overrides["dataloader#num_workers"] = num_workers
    start = time.perf_counter()
    run(config_file=str(BUNDLE / "configs" / "inference.json"), **overrides)
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    workers_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak_gib, 3),
            "worker_peak_rss_gib": round(workers_gib, 3), "num_workers": num_workers}


def window(features: list[int] | None) -> dict:
    """Peak RSS of building the network and running one sliding-window batch (2 x 3 x 512 x 512) in eval mode."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    if features:
        parser["network_def"]["features"] = features
    net = parser.get_parsed_content("network_def").eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with torch.no_grad():
        net(torch.zeros(2, 3, 512, 512))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"params": sum(p.numel() for p in net.parameters()), "rss_before_gib": round(before, 3),
            "rss_after_window_gib": round(after, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, action="append", help="image side in pixels (repeatable)")
    parser.add_argument("--features", type=json.loads, default=NARROW, help="network_def#features (JSON list)")
    parser.add_argument("--real-network", action="store_true", help="train.json's widths")
    parser.add_argument("--window", action="store_true", help="print one window's memory and stop")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="inference.json dataloader#num_workers (0: everything in one process)")
    parser.add_argument("--child", nargs=2, metavar=("IMAGE", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    features = None if args.real_network else args.features
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], features, args.num_workers)), flush=True)
        return
    if args.window:
        print(json.dumps(window(features)), flush=True)
        return
    for size in args.size or [2500]:
        with tempfile.TemporaryDirectory() as work:
            image = Path(work) / f"slide_{size}.tiff"
            make_image(image, size)
            cmd = [sys.executable, __file__, "--child", str(image), str(Path(work) / "out")]
            cmd += ["--real-network"] if args.real_network else ["--features", json.dumps(args.features)]
            cmd += [] if args.num_workers is None else ["--num-workers", str(args.num_workers)]
            result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
                raise SystemExit(result.returncode)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            written = glob.glob(str(Path(work) / "out" / "*_label.tiff"))
            print(json.dumps({"size": size, "pixels": size * size, **figures, "masks_written": len(written),
                              "load": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
