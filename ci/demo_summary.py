# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Print what a demo run produced: validation curve, evaluation means, pictures and predicted masks.

    python ci/demo_summary.py demo_work/xlstm_unet_amos3d
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def summarise(folder: Path) -> str:
    lines = [f"== demo results in {folder}"]
    log = folder / "eval" / "training_log.csv"
    if log.is_file():
        rows = list(csv.DictReader(log.open()))
        vals = [(r["epoch"], float(r["val_metric"])) for r in rows if r["val_metric"] not in ("", "nan")]
        if rows:
            lines.append(f"training: {len(rows)} epochs, loss {float(rows[0]['train_loss']):.3f} -> "
                         f"{float(rows[-1]['train_loss']):.3f}")
        if vals:
            lines.append("validation (key metric) by epoch: " + ", ".join(f"{e}: {v:.3f}" for e, v in vals))
    metrics = folder / "eval" / "metrics.csv"
    if metrics.is_file():
        rows = list(csv.DictReader(metrics.open()))
        key = "case" if rows and "case" in rows[0] else "case_id"  # the metrics CSV's first column (was case_id)
        summary = {r[key]: r for r in rows if r[key] in ("mean", "pooled")}
        mean = summary.get("mean")
        if mean and any(k.startswith("mean_") for k in mean):  # multi-class: mean_* columns average the classes
            headline = {k: float(v) for k, v in mean.items() if k.startswith("mean")}
            lines.append("evaluation means: " + ", ".join(f"{k} {v:.3f}" for k, v in headline.items()))
            per_class = {k: float(v) for k, v in mean.items() if k != key and not k.startswith("mean")}
            lines.append("per class: " + ", ".join(f"{k} {v:.2f}" for k, v in per_class.items()))
        else:  # binary: the per-image mean and the pixel-pooled row of the ratio metrics
            for name, row in summary.items():
                ratios = {k: float(v) for k, v in row.items() if k not in (key, "tp", "fp", "fn", "tn")}
                lines.append(f"evaluation, {'per-image mean' if name == 'mean' else 'pooled over pixels'}: "
                             + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
        lines.append(f"metrics CSV: {metrics}")
    pictures = sorted((folder / "eval").glob("*.png"))
    if pictures:
        lines.append("pictures: " + ", ".join(str(p) for p in pictures))
    predictions = folder / "predictions"
    masks = sorted(p for p in predictions.glob("*") if p.is_file()) if predictions.is_dir() else []
    if masks:
        lines.append(f"predicted masks ({len(masks)}): {predictions}")
    overlays = sorted((predictions / "overlays").glob("*.png")) if predictions.is_dir() else []
    if overlays:
        lines.append(f"prediction overlays ({len(overlays)}): {predictions / 'overlays'}")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarise(Path(arg)))
