# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Short stability runs of the BraTS bundle on its demo data: SegMamba's SGD recipe against the paper's AdamW.

    python benchmarks/brats_optimizer_stability.py --dataset_dir demo_work/xlstm_unet_brats/prepared --steps 96

Both runs use the bundle's train.json + demo.json, the same seed and data; only the optimiser differs. Prints the
training loss every 8 steps (NaN/inf are flagged) and the validation Dice (TC, WT, ET) at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "xlstm_unet_brats" / "configs"
OPTIMISERS = {
    "sgd_segmamba_code": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.01,
                          "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5},
    "adamw_paper_text": {"_target_": "torch.optim.AdamW", "params": "$@network.parameters()", "lr": 0.01,
                         "weight_decay": 0.05},
}


def run(name: str, dataset_dir: str, steps: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"brats_{name}_"))
    per_epoch = 8
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "train.json"), str(BUNDLE / "demo.json")], logging_file=False,
        dataset_dir=dataset_dir, ckpt_dir=str(work / "models"), output_dir=str(work / "eval"),
        optimizer=OPTIMISERS[name], epochs=steps // per_epoch, iterations_per_epoch=per_epoch,
        val_interval=steps // per_epoch, num_workers=0,
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    losses = []

    @trainer.on(__import__("ignite.engine", fromlist=["Events"]).Events.ITERATION_COMPLETED)
    def _(engine):
        losses.append(float(engine.state.output["loss"].detach()))

    start = time.time()
    trainer.run()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    metrics = {k: round(float(v), 4) for k, v in evaluator.state.metrics.items()}
    return {"optimiser": name, "losses_every_8": [round(x, 3) for x in losses[::8]],
            "non_finite_losses": sum(not math.isfinite(x) for x in losses), "final_loss": round(losses[-1], 4),
            "val": metrics, "seconds": round(time.time() - start)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--only", choices=sorted(OPTIMISERS))
    args = parser.parse_args()
    for name in [args.only] if args.only else OPTIMISERS:
        print(json.dumps(run(name, args.dataset_dir, args.steps)), flush=True)


if __name__ == "__main__":
    main()
