# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Pictures a person would rather look at than read: training curves and segmentation overlays."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from .io import atomic_write, atomic_write_text
from .metrics import case_id_of, engine_samples

__all__ = ["TrainingCurvePlotter", "OverlaySaver", "overlay_figure", "label_colours"]

logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def label_colours(n_classes: int) -> np.ndarray:
    """RGBA colour per label value (0 transparent), from matplotlib's tab20.

    tab20 pairs a dark and a light shade of each hue; the ten dark shades come first so that neighbouring labels
    (NCR, ED, ET) get different hues, not two shades of one.
    """
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    colours = np.array([(0.0, 0.0, 0.0, 0.0)] + [cmap(order[i % 20]) for i in range(max(n_classes, 1) - 1)],
                       dtype=np.float64)
    return colours


class TrainingCurvePlotter:
    """Trainer handler: after every epoch, write ``training_curve.png`` and ``training_log.csv`` to ``output_dir``.

    Records the epoch's mean training loss and, when validation ran that epoch, the validator's key metric.

    Args:
        output_dir: destination folder.
        validator: the evaluator whose ``state.metrics`` holds the validation metric (optional).
        metric_name: name of that metric; default: the validator's key metric.
        loss_key: key of the loss in the trainer output. Default: ``"loss"``.
    """

    def __init__(self, output_dir: str, validator: Engine | None = None, metric_name: str | None = None,
                 loss_key: str = "loss") -> None:
        self.output_dir = Path(output_dir)
        self.validator, self.metric_name, self.loss_key = validator, metric_name, loss_key
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.metrics: list[float] = []
        self._epoch_losses: list[float] = []
        self.metric_label = metric_name or "validation metric"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_loss)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_done)

    def _collect_loss(self, engine: Engine) -> None:
        output = engine.state.output
        output = output[0] if isinstance(output, list) and output else output
        loss = output.get(self.loss_key) if isinstance(output, Mapping) else output
        if loss is not None:
            self._epoch_losses.append(float(loss.detach() if isinstance(loss, torch.Tensor) else loss))

    def _epoch_done(self, engine: Engine) -> None:
        metric = math.nan
        if self.validator is not None and self.validator.state.epoch == engine.state.epoch:
            name = self.metric_name or getattr(self.validator.state, "key_metric_name", None)
            metric = float(self.validator.state.metrics.get(name, math.nan)) if name else math.nan
            self.metric_label = name or self.metric_label
        self.epochs.append(engine.state.epoch)
        self.losses.append(float(np.mean(self._epoch_losses)) if self._epoch_losses else math.nan)
        self.metrics.append(metric)
        self._epoch_losses = []
        self.write()

    def write(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["epoch", "train_loss", "val_metric"])
        writer.writerows(zip(self.epochs, self.losses, self.metrics))
        atomic_write_text(self.output_dir / "training_log.csv", buffer.getvalue())
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(self.epochs, self.losses, "-o", ms=3, color="tab:blue", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss", color="tab:blue")
        valid = [(e, m) for e, m in zip(self.epochs, self.metrics) if not math.isnan(m)]
        if valid:
            twin = ax.twinx()
            twin.plot(*zip(*valid), "-s", ms=4, color="tab:orange", label="validation")
            twin.set_ylabel(self.metric_label, color="tab:orange")
            twin.set_ylim(0, 1)
        ax.set_title("training curve")
        fig.tight_layout()
        atomic_write(self.output_dir / "training_curve.png", lambda tmp: fig.savefig(tmp, format="png"), ".png")
        plt.close(fig)


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def radiological(slice_xy: np.ndarray) -> np.ndarray:
    """An axial slice ``a[x, y(, ...)]`` of a RAS-oriented array as radiology viewers show it: anterior (+y) at the
    top and the patient's right (+x) on the viewer's left."""
    return np.rot90(slice_xy)[:, ::-1]


def overlay_figure(image, label, pred, n_classes: int, title: str = "", class_names: Sequence[str] | None = None):
    """Figure of 3 slices (3D; the ones with most foreground along the last axis) or the image (2D), each shown as
    image | reference | prediction (image | prediction when ``label`` is None). ``image`` is (C, *S) or (*S);
    ``label``/``pred`` are label maps (1, *S) or (*S). 2D RGB images (3, H, W) are shown in colour."""
    plt = _pyplot()
    image, pred = _as_numpy(image), _as_numpy(pred)
    pred = pred[0] if pred.ndim == image.ndim and pred.shape[0] == 1 else pred
    has_label = label is not None
    label = pred * 0 if label is None else _as_numpy(label)
    label = label[0] if label.ndim == image.ndim and label.shape[0] == 1 else label
    rgb = image.ndim == 3 and image.shape[0] == 3 and pred.ndim == 2
    if not rgb and image.ndim == label.ndim + 1:
        image = image[0]
    if label.ndim == 3:
        fg = (label > 0).sum(axis=(0, 1)) + (pred > 0).sum(axis=(0, 1))
        order = np.argsort(fg)[::-1]
        picks = sorted(order[:3]) if fg.max() > 0 else [label.shape[2] // 2]
        views = [(image[..., k], label[..., k], pred[..., k], f"slice {k}") for k in picks]
    else:
        views = [(np.moveaxis(image, 0, -1) if rgb else image, label, pred, "")]
    colours = label_colours(n_classes)
    columns = [(None, "image"), ("label", "reference"), ("pred", "prediction")] if has_label else [
        (None, "image"), ("pred", "prediction")]
    fig, axes = plt.subplots(len(views), len(columns), figsize=(3 * len(columns), 3 * len(views)), dpi=90,
                             squeeze=False)
    for row, (img, lab, prd, name) in zip(axes, views):
        if rgb:
            lo, hi = float(img.min()), float(img.max())
            shown = (img - lo) / max(hi - lo, 1e-8)
        else:
            lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
            shown = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)
        for col, (which, what) in enumerate(columns):
            seg = {"label": lab, "pred": prd}.get(which)
            ax = row[col]
            # volumes (RAS after Orientationd): axial slices in the radiological convention, the patient's right on
            # the viewer's left; 2D RGB arrays come from MONAI's PIL reader as (W, H): transposed back to rows x columns
            ax.imshow(shown.transpose(1, 0, 2) if rgb else radiological(shown), cmap=None if rgb else "gray")
            if seg is not None:
                seg = seg.astype(np.int64).clip(0, n_classes - 1)
                ax.imshow(colours[seg].transpose(1, 0, 2) if rgb else radiological(colours[seg]), alpha=0.55)
            ax.set_title(f"{what} {name}".strip(), fontsize=9)
            ax.axis("off")
    if class_names:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i + 1]) for i in range(min(len(class_names), n_classes - 1))]
        fig.legend(handles, class_names[: len(handles)], loc="lower center", ncol=min(7, len(handles)), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 0.96))
    return fig


class OverlaySaver:
    """Evaluator handler: save an overlay PNG (image | reference | prediction) for the first ``max_cases`` cases.

    Args:
        output_dir: destination folder (``<case>_overlay.png``).
        n_classes: number of label values, background included.
        image_key, label_key, pred_key: keys of the image and of the label maps in each decollated sample; without a
            reference (``label_key`` None or absent), pictures show image | prediction.
        max_cases: how many cases to draw. Default: 4.
        class_names: legend names of classes 1..n-1.
        case_name: optional callable from the image's source path to the picture's case name, for datasets whose
            file names repeat across folders (EndoVis frames: ``xlstm_bundle_tools.endovis.endovis_case_name``).
            Default: the file name without its extension.
    """

    def __init__(self, output_dir: str, n_classes: int, image_key: str = "image", label_key: str | None = "label",
                 pred_key: str = "pred", max_cases: int = 4, class_names: Sequence[str] | None = None,
                 case_name: Callable[[str], str] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.n_classes, self.max_cases = n_classes, max_cases
        self.image_key, self.label_key, self.pred_key = image_key, label_key, pred_key
        self.class_names = list(class_names) if class_names else None
        self.case_name = case_name
        self.saved = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._draw)

    def _reset(self, engine: Engine) -> None:
        self.saved = 0

    def _draw(self, engine: Engine) -> None:
        plt = _pyplot()
        for sample in engine_samples(engine):
            if self.saved >= self.max_cases:
                return
            if self.pred_key not in sample or self.image_key not in sample:
                continue
            image = sample[self.image_key]
            if tuple(image.shape[1:]) != tuple(sample[self.pred_key].shape[-len(image.shape[1:]):]):
                continue  # image and prediction on different grids (e.g. inverted prediction): nothing to overlay
            case = case_id_of(image, f"case_{self.saved}")
            source = getattr(image, "meta", {}).get("filename_or_obj")
            if self.case_name is not None and source:
                case = self.case_name(str(source[0] if isinstance(source, (list, tuple)) else source))
            fig = overlay_figure(image, sample.get(self.label_key) if self.label_key else None, sample[self.pred_key],
                                 self.n_classes, case, self.class_names)
            atomic_write(self.output_dir / f"{case}_overlay.png", lambda tmp: fig.savefig(tmp, format="png"), ".png")
            plt.close(fig)
            self.saved += 1
