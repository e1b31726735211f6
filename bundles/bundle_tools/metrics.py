# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Per-case segmentation metrics computed with MONAI's metric functions, written to one CSV.

:class:`CaseMetricsSaver` is an ignite handler for an evaluator: after every iteration it turns each decollated
sample into one CSV row with a ``compute`` callable; at the end it appends a ``mean`` row (NaN-aware) and writes the
file atomically. The callables below implement the metrics our bundles report.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from .io import atomic_write_text

__all__ = ["CaseMetricsSaver", "OrganDiceNSD", "RegionDiceHD95", "BinaryPixelMetrics", "channel_pairs", "engine_samples", "case_id_of", "spacing_of", "empty_aware"]

logger = logging.getLogger(__name__)


def case_id_of(tensor, fallback: str) -> str:
    """Case id from the loaded file name: ``.../amos_0507_0000.nii.gz`` -> ``amos_0507_0000``."""
    source = getattr(tensor, "meta", {}).get("filename_or_obj", None)
    if isinstance(source, (list, tuple)):
        source = source[0] if source else None
    if not source:
        return fallback
    name = os.path.basename(str(source))
    for ext in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def spacing_of(tensor) -> tuple[float, ...]:
    """Voxel spacing (mm) of a channel-first MetaTensor from its affine."""
    spatial = tensor.ndim - 1
    affine = getattr(tensor, "affine", None)
    if affine is None:
        return (1.0,) * spatial
    a = np.asarray(affine, dtype=np.float64)[:spatial, :spatial]
    return tuple(float(s) for s in np.sqrt((a**2).sum(axis=0)))


def empty_aware(value: float, pred_empty: bool, gt_empty: bool) -> float:
    """Official AMOS convention: both empty -> 1; exactly one empty -> 0."""
    if gt_empty and pred_empty:
        return 1.0
    if gt_empty or pred_empty:
        return 0.0
    return float(value)


def engine_samples(engine: Engine) -> list[dict]:
    """The evaluator's decollated outputs, each merged with its batch item.

    MONAI's evaluators keep only image, label and pred in ``state.output``; keys a pipeline adds (a native-space copy
    of the label, say) stay in ``state.batch``. Output values win where both have a key.
    """
    outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    batch = engine.state.batch
    items = decollate_batch(batch) if isinstance(batch, dict) else (batch if isinstance(batch, list) else [])
    return [{**(items[i] if i < len(items) else {}), **out} for i, out in enumerate(outputs)]


class OrganDiceNSD:
    """Dice and normalised surface Dice (NSD) per class of a label map, as the AMOS evaluation defines them.

    Args:
        class_names: names of classes 1..C-1 (background excluded), in label-value order.
        nsd_tolerance_mm: NSD tolerance per class name, in millimetres.
        labelled_slices_only: class names evaluated only on slices (last array axis) where the ground truth has them
            (aorta, IVC and oesophagus in the official AMOS evaluation, whose extent varies with the field of view).
        pred_key: key of the predicted label map (1, *S) in native space.
        label_key: key of the reference label map (1, *S) in native space.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        nsd_tolerance_mm: Mapping[str, float],
        labelled_slices_only: Sequence[str] = (),
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        missing = [n for n in class_names if n not in nsd_tolerance_mm]
        if missing:
            raise ValueError(f"OrganDiceNSD: no NSD tolerance for {missing}.")
        self.class_names = list(class_names)
        self.tolerance = [float(nsd_tolerance_mm[n]) for n in self.class_names]
        self.labelled_slices_only = set(labelled_slices_only)
        self.pred_key, self.label_key = pred_key, label_key

    def __call__(self, sample: Mapping) -> dict[str, float]:
        pred = torch.as_tensor(sample[self.pred_key]).long()
        gt_tensor = sample[self.label_key]
        gt = torch.as_tensor(gt_tensor).long()
        if pred.shape != gt.shape:
            raise ValueError(
                f"{case_id_of(gt_tensor, 'case')}: prediction {tuple(pred.shape)} and label {tuple(gt.shape)} differ; "
                "the prediction must be inverted to the label's native grid first."
            )
        spacing = spacing_of(gt_tensor)
        row: dict[str, float] = {}
        for index, name in enumerate(self.class_names, start=1):
            p, g = pred == index, gt == index
            if name in self.labelled_slices_only and g.any():
                keep = g.flatten(0, -2).any(dim=0)  # slices (last axis) where the ground truth has this class
                p, g = p[..., keep], g[..., keep]
            p, g = p[None].float(), g[None].float()  # (1, 1, *S): batch of one, one channel
            pe, ge = not bool(p.any()), not bool(g.any())
            dice = compute_dice(p, g, include_background=True, ignore_empty=False).item() if not (pe or ge) else 0.0
            nsd = math.nan
            if not (pe or ge):
                two = torch.cat([1 - p, p], dim=1), torch.cat([1 - g, g], dim=1)
                nsd = compute_surface_dice(
                    two[0], two[1], class_thresholds=[self.tolerance[index - 1]], include_background=False,
                    spacing=spacing,
                ).item()
            row[f"dice_{name}"] = empty_aware(dice, pe, ge)
            row[f"nsd_{name}"] = empty_aware(nsd, pe, ge)
        row["mean_dice"] = float(np.mean([row[f"dice_{n}"] for n in self.class_names]))
        row["mean_nsd"] = float(np.mean([row[f"nsd_{n}"] for n in self.class_names]))
        return row


class RegionDiceHD95:
    """Dice and 95th-percentile Hausdorff distance (mm) per region channel, with the BraTS conventions.

    Both empty: Dice 1, HD95 0. Exactly one empty: Dice 0, HD95 ``empty_hd95`` (BraTS uses 373.13 mm, the diagonal of
    its 240×240×155 volume).

    Args:
        region_names: names of the channels, e.g. ``["TC", "WT", "ET"]``.
        pred_key: key of the binary region prediction (C, *S).
        label_key: key of the binary region reference (C, *S) on the same grid.
        empty_hd95: HD95 when exactly one of prediction and reference is empty.
    """

    def __init__(self, region_names: Sequence[str], pred_key: str = "pred", label_key: str = "label",
                 empty_hd95: float = 373.13) -> None:
        self.region_names = list(region_names)
        self.pred_key, self.label_key, self.empty_hd95 = pred_key, label_key, float(empty_hd95)

    def __call__(self, sample: Mapping) -> dict[str, float]:
        pred = torch.as_tensor(sample[self.pred_key]).float()
        gt_tensor = sample[self.label_key]
        gt = torch.as_tensor(gt_tensor).float()
        if pred.shape != gt.shape or pred.shape[0] != len(self.region_names):
            raise ValueError(
                f"{case_id_of(gt_tensor, 'case')}: prediction {tuple(pred.shape)} and reference {tuple(gt.shape)} "
                f"must both be ({len(self.region_names)}, *S) on the same grid."
            )
        spacing = spacing_of(gt_tensor)
        row: dict[str, float] = {}
        for channel, name in enumerate(self.region_names):
            p, g = pred[channel][None, None] > 0.5, gt[channel][None, None] > 0.5
            pe, ge = not bool(p.any()), not bool(g.any())
            if pe or ge:
                row[f"dice_{name}"] = 1.0 if (pe and ge) else 0.0
                row[f"hd95_{name}"] = 0.0 if (pe and ge) else self.empty_hd95
                continue
            row[f"dice_{name}"] = compute_dice(p.float(), g.float(), include_background=True).item()
            row[f"hd95_{name}"] = compute_hausdorff_distance(
                p.float(), g.float(), include_background=True, percentile=95, spacing=spacing
            ).item()
        row["mean_dice"] = float(np.mean([row[f"dice_{n}"] for n in self.region_names]))
        row["mean_hd95"] = float(np.mean([row[f"hd95_{n}"] for n in self.region_names]))
        return row


class BinaryPixelMetrics:
    """VM-UNet's binary metrics at threshold 0.5: DSC, IoU, accuracy, sensitivity and specificity.

    Per image (one CSV row each) and pooled over every pixel of every image (one global confusion matrix, as VM-UNet's
    evaluation computes them), via :meth:`pooled`. Rows carry the confusion counts so pooling is exact.

    Args:
        pred_key: key of the prediction (probabilities or a 0/1 mask), (1, *S).
        label_key: key of the reference mask (0/1 or 0/255), (1, *S), on the same grid.
    """

    def __init__(self, pred_key: str = "pred", label_key: str = "label") -> None:
        self.pred_key, self.label_key = pred_key, label_key

    @staticmethod
    def _scores(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
        def ratio(a, b):
            return a / b if b else (1.0 if a == 0 else math.nan)

        return {
            "dsc": ratio(2 * tp, 2 * tp + fp + fn),
            "iou": ratio(tp, tp + fp + fn),
            "accuracy": ratio(tp + tn, tp + tn + fp + fn),
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
        }

    def __call__(self, sample: Mapping) -> dict[str, float]:
        pred = torch.as_tensor(sample[self.pred_key]) >= 0.5
        gt_tensor = sample[self.label_key]
        gt = torch.as_tensor(gt_tensor) >= 0.5
        if pred.shape != gt.shape:
            raise ValueError(f"{case_id_of(gt_tensor, 'case')}: prediction {tuple(pred.shape)} and reference "
                             f"{tuple(gt.shape)} differ.")
        tp = float((pred & gt).sum())
        fp = float((pred & ~gt).sum())
        fn = float((~pred & gt).sum())
        tn = float((~pred & ~gt).sum())
        return {**self._scores(tp, fp, fn, tn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}

    def pooled(self, rows: Sequence[Mapping]) -> dict[str, float]:
        counts = {k: float(sum(r[k] for r in rows)) for k in ("tp", "fp", "fn", "tn")}
        return {**self._scores(**counts), **counts}


class CaseMetricsSaver:
    """Ignite handler: one CSV row per evaluated case plus a ``mean`` row, written atomically at the end.

    Args:
        compute: maps one decollated sample (a dict with prediction and label) to ``{column: value}``.
        output_dir: folder of the CSV.
        filename: CSV file name. Default: ``metrics.csv``.
        case_key: key whose MetaTensor file name gives the case id. Default: ``"image"``.
        summary_metric: a column whose mean is also put into ``engine.state.metrics`` (e.g. ``"mean_dice"``).
    """

    def __init__(
        self,
        compute: Callable[[Mapping], Mapping[str, float]],
        output_dir: str,
        filename: str = "metrics.csv",
        case_key: str = "image",
        summary_metric: str | None = None,
    ) -> None:
        self.compute = compute
        self.path = Path(output_dir) / filename
        self.case_key = case_key
        self.summary_metric = summary_metric
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        for sample in engine_samples(engine):
            case = case_id_of(sample.get(self.case_key), fallback=f"case_{len(self.rows):04d}")
            self.rows.append({"case_id": case, **self.compute(sample)})

    def summary(self) -> dict[str, float]:
        columns = [c for c in self.rows[0] if c != "case_id"] if self.rows else []
        return {c: float(np.nanmean([r[c] for r in self.rows])) if self.rows else math.nan for c in columns}

    def _write(self, engine: Engine) -> None:
        if not self.rows:
            logger.warning("CaseMetricsSaver: no cases were evaluated; %s not written.", self.path)
            return
        summary = self.summary()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["case_id", *summary])
        writer.writeheader()
        fmt = lambda v: v if isinstance(v, str) else f"{v:.6f}"  # noqa: E731
        for row in self.rows:
            writer.writerow({k: fmt(v) for k, v in row.items()})
        writer.writerow({"case_id": "mean", **{k: fmt(v) for k, v in summary.items()}})
        pooled = getattr(self.compute, "pooled", None)
        if pooled is not None:  # metrics over all pixels of all cases (one confusion matrix)
            writer.writerow({"case_id": "pooled", **{k: fmt(v) for k, v in pooled(self.rows).items()}})
            summary.update({f"pooled_{k}": v for k, v in pooled(self.rows).items()})
        atomic_write_text(self.path, buffer.getvalue())
        if self.summary_metric:
            engine.state.metrics[self.summary_metric] = summary[self.summary_metric]
        headline = {k: round(v, 4) for k, v in summary.items() if k.startswith("mean")}
        logger.info("%d cases evaluated, %s -> %s", len(self.rows), headline, self.path)


def channel_pairs(pred_key: str = "pred", label_key: str = "label", channel: int = 0) -> Callable:
    """An ignite ``output_transform`` giving (predictions, labels) of one channel, for per-region metric handlers."""

    def transform(output):
        samples = output if isinstance(output, list) else [output]
        return ([s[pred_key][channel : channel + 1] for s in samples],
                [s[label_key][channel : channel + 1] for s in samples])

    return transform
