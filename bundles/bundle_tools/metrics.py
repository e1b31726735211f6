# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Per-case segmentation metrics for the bundles' evaluate configs, written to one CSV.

:class:`CaseMetricsSaver` is an ignite handler for an evaluator: after every iteration it turns each decollated
sample into one CSV row with a ``compute`` callable; at the end it appends the summary rows (``mean``, and ``pooled``
where the protocol has one) and writes the file atomically, in the same format as ``python -m
xlstm_bundle_tools.score``.

:class:`ProtocolMetrics` is the ``compute`` callable for a named evaluation protocol (:mod:`.protocols`: ``amos``,
``brats-segmamba``, ``brats2023``, ``isic``, ``endovis``, ``cells``), so a config and the score command run the same
code. :class:`OrganDiceNSD` is the ``amos`` protocol with the bundle's organ table; :class:`RegionDiceHD95` and
:class:`BinaryPixelMetrics` are the earlier metrics, kept for configs that still name them.
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
from .protocols import AmosProtocol, Protocol, get_protocol
from .protocols.base import nanmean

__all__ = ["CaseMetricsSaver", "ProtocolMetrics", "OrganDiceNSD", "RegionDiceHD95", "BinaryPixelMetrics",
           "channel_pairs", "engine_samples", "case_id_of", "spacing_of", "empty_aware", "format_metrics_csv"]

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


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _drop_channel(array: np.ndarray) -> np.ndarray:
    """(1, *S) -> S; a multi-channel array (a BraTS region stack) stays channel-first."""
    return array[0] if array.ndim >= 3 and array.shape[0] == 1 else array


class ProtocolMetrics:
    """``compute`` callable for :class:`CaseMetricsSaver` that scores each sample with a named protocol.

    The sample's tensors are channel-first (1, *S), as MONAI keeps them (a BraTS region stack (3, *S) in TC, WT, ET
    order is also accepted); the spacing comes from the label's affine. Summary rows are the protocol's own (for
    ``amos`` the mean of per-organ means, for ``isic`` a ``pooled`` row).

    Args:
        protocol: protocol name (``amos``, ``brats-segmamba``, ``brats2023``, ``isic``, ``endovis``, ``cells``).
        pred_key: key of the prediction on the reference's grid.
        label_key: key of the reference (in native space).
        pred256_key: ``isic`` only: key of the network's 256² probability map, scored as VM-UNet does.
        options: the protocol's keyword options (e.g. ``class_names``, ``challenge``).
    """

    def __init__(self, protocol: str | Protocol, pred_key: str = "pred", label_key: str = "label",
                 pred256_key: str | None = None, **options) -> None:
        self.protocol = get_protocol(protocol, **options)
        self.pred_key, self.label_key, self.pred256_key = pred_key, label_key, pred256_key

    def __call__(self, sample: Mapping) -> dict[str, float]:
        label = sample[self.label_key]
        case = case_id_of(label, "case")
        pred, ref = _drop_channel(_to_numpy(sample[self.pred_key])), _drop_channel(_to_numpy(label))
        if pred.shape != ref.shape:
            raise ValueError(f"{case}: prediction {tuple(pred.shape)} and label {tuple(ref.shape)} differ; the "
                             "prediction must be inverted to the label's native grid first.")
        if ref.dtype.kind == "f" and self.protocol.name in ("amos", "endovis", "cells"):
            ref, pred = np.rint(ref).astype(np.int64), np.rint(pred).astype(np.int64)
        extra = {}
        if self.pred256_key is not None:
            extra["pred256"] = _drop_channel(_to_numpy(sample[self.pred256_key]))
        spacing = spacing_of(label) if isinstance(label, torch.Tensor) else None
        spatial = ref.ndim if ref.ndim <= 3 else ref.ndim - 1
        if spacing is not None and len(spacing) != spatial:
            spacing = spacing[-spatial:]
        return self.protocol.score(pred, ref, spacing, pred_path=case, ref_path=case, **extra)

    def summarize(self, rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
        return self.protocol.summarize(rows)

    def headline(self, summary) -> dict[str, float]:
        return self.protocol.headline(summary)


class OrganDiceNSD(ProtocolMetrics):
    """Dice and normalised surface Dice (NSD) per organ, by the ``amos`` protocol (xLSTM-UNet's AbdomenMR evaluation).

    DeepMind surface-distance semantics (subvoxel surfels, the label's spacing), both-empty 1, reference-empty 0, and
    the official slab rule for ``labelled_slices_only`` organs (slices ``z_lower:z_upper`` of the last axis, the last
    labelled slice excluded as the official code does). Columns ``dice_<organ>``, ``nsd_<organ>`` (organ names with
    non-alphanumerics as ``_``), ``mean_dice`` and ``mean_nsd``; the ``mean`` row holds the mean of per-organ means.

    Args:
        class_names: names of classes 1..C-1 (background excluded), in label-value order.
        nsd_tolerance_mm: NSD tolerance per class name, in millimetres.
        labelled_slices_only: class names evaluated only on the reference's labelled slab (aorta, IVC, oesophagus).
        pred_key: key of the predicted label map (1, *S) in native space.
        label_key: key of the reference label map (1, *S) in native space.
    """

    def __init__(self, class_names: Sequence[str], nsd_tolerance_mm: Mapping[str, float],
                 labelled_slices_only: Sequence[str] = (), pred_key: str = "pred", label_key: str = "label") -> None:
        missing = [n for n in class_names if n not in nsd_tolerance_mm]
        if missing:
            raise ValueError(f"OrganDiceNSD: no NSD tolerance for {missing}.")
        super().__init__(AmosProtocol(class_names, nsd_tolerance_mm, slab_organs=labelled_slices_only),
                         pred_key=pred_key, label_key=label_key)


class RegionDiceHD95:
    """Dice and 95th-percentile Hausdorff distance (mm) per region channel, with our earlier conventions.

    These follow neither paper: use ``ProtocolMetrics(protocol="brats-segmamba")`` (the xLSTM-UNet / SegMamba table)
    or ``protocol="brats2023"`` (the challenge's lesion-wise scores). Kept for configs that still name it.

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


def _format_value(value) -> str:
    if isinstance(value, str):
        return value
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.6f}"


def format_metrics_csv(rows: Sequence[Mapping], summary: Mapping[str, Mapping[str, float]],
                       columns: Sequence[str] = ()) -> str:
    """The metrics CSV: a ``case`` column, the metric columns, one row per case, then the summary rows in order.

    Args:
        rows: per-case ``{"case": id, column: value}``.
        summary: ``{row name: {column: value}}``, e.g. ``{"mean": ..., "pooled": ...}``.
        columns: column order; columns found only in the rows follow.
    """
    order = [c for c in columns if c != "case"]
    for row in [*rows, *summary.values()]:
        order += [c for c in row if c != "case" and c not in order]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", *order])
    for row in rows:
        writer.writerow([row["case"], *(_format_value(row.get(c, math.nan)) for c in order)])
    for name, values in summary.items():
        writer.writerow([name, *(_format_value(values.get(c, math.nan)) for c in order)])
    return buffer.getvalue()


class CaseMetricsSaver:
    """Ignite handler: one CSV row per evaluated case plus summary rows, written atomically at the end.

    The summary rows are ``compute.summarize(rows)`` when ``compute`` has it (every :class:`ProtocolMetrics`),
    otherwise a NaN-skipping ``mean`` row (and a ``pooled`` row when ``compute`` has ``pooled``).

    Args:
        compute: maps one decollated sample (a dict with prediction and label) to ``{column: value}``.
        output_dir: folder of the CSV.
        filename: CSV file name. Default: ``metrics.csv``.
        case_key: key whose MetaTensor file name gives the case id. Default: ``"image"``.
        summary_metric: a summary value put into ``engine.state.metrics``: a column of the ``mean`` row
            (e.g. ``"mean_dice"``), or ``"pooled_<column>"`` for the ``pooled`` row.
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
            self.rows.append({"case": case, **self.compute(sample)})

    def summary_rows(self) -> dict[str, dict[str, float]]:
        """``{"mean": {...}[, "pooled": {...}]}`` over the rows collected so far."""
        summarize = getattr(self.compute, "summarize", None)
        if summarize is not None:
            return summarize(self.rows)
        columns = [c for c in self.rows[0] if c != "case"] if self.rows else []
        out = {"mean": {c: nanmean(r[c] for r in self.rows) for c in columns}}
        pooled = getattr(self.compute, "pooled", None)
        if pooled is not None and self.rows:  # metrics over all pixels of all cases (one confusion matrix)
            out["pooled"] = dict(pooled(self.rows))
        return out

    def summary(self) -> dict[str, float]:
        """The ``mean`` row, plus the ``pooled`` row's values as ``pooled_<column>``."""
        rows = self.summary_rows()
        flat = dict(rows["mean"])
        flat.update({f"pooled_{k}": v for k, v in rows.get("pooled", {}).items()})
        return flat

    def _write(self, engine: Engine) -> None:
        if not self.rows:
            logger.warning("CaseMetricsSaver: no cases were evaluated; %s not written.", self.path)
            return
        rows = self.summary_rows()
        protocol = getattr(self.compute, "protocol", None)
        columns = protocol.columns() if protocol is not None else ()  # the score command's column order
        atomic_write_text(self.path, format_metrics_csv(self.rows, rows, columns))
        summary = self.summary()
        if self.summary_metric:
            if self.summary_metric not in summary:
                raise KeyError(f"CaseMetricsSaver: summary_metric {self.summary_metric!r} is not one of "
                               f"{sorted(summary)}.")
            engine.state.metrics[self.summary_metric] = summary[self.summary_metric]
        headline = getattr(self.compute, "headline", None)
        shown = headline(rows) if headline else {k: v for k, v in summary.items() if k.startswith(("mean", "pooled"))}
        logger.info("%d cases evaluated, %s -> %s", len(self.rows), {k: round(v, 4) for k, v in shown.items()},
                    self.path)


def channel_pairs(pred_key: str = "pred", label_key: str = "label", channel: int = 0) -> Callable:
    """An ignite ``output_transform`` giving (predictions, labels) of one channel, for per-region metric handlers."""

    def transform(output):
        samples = output if isinstance(output, list) else [output]
        return ([s[pred_key][channel : channel + 1] for s in samples],
                [s[label_key][channel : channel + 1] for s in samples])

    return transform
