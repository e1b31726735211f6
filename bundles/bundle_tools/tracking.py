# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Experiment tracking: TensorBoard event files always, MLflow with ``--tracking mlflow``, the same scalars in both.

``python -m monai.bundle run training ... --tracking mlflow`` makes MONAI add its ``MLFlowHandler`` to the trainer and
to the validator (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``): a local SQLite store ``<output_dir>/mlruns.db``
with the artifacts under ``<output_dir>/mlruns``, offline. They log the iteration loss (``train_loss``), the learning
rate (``lr_group_0``), the validation metrics per epoch and the executed config (whose path MONAI leaves unjoined
when ``--output_dir`` is a plain folder; the tracker joins it). What they leave out, the trainer
handler :class:`TrainingTracker` adds to the same run: the recipe's parameters, the epoch's mean training loss
(``train_loss_epoch``, the value of ``training_log.csv``) and, when training completes, the final weights
(``model.pt``) and the training curve as artifacts. It writes the same scalars, under the same names and steps, to
TensorBoard event files in ``tensorboard_dir`` (when the ``tensorboard`` package is installed).

A resumed run (``--resume true``) continues the MLflow run it interrupted (``MLFlowHandler`` picks the latest run not
marked finished, and an interrupted run is not) and appends to the same TensorBoard folder.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from .resume import attached_handlers

__all__ = ["TrainingTracker"]

logger = logging.getLogger(__name__)


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean()) if value.numel() else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _unwrap_one_tuple(transform):
    """MONAI's default trainer ``MLFlowHandler`` reads the loss with ``from_engine(['loss'], first=True)``, written
    for a decollated output (a list of dicts). Our trainers do not decollate (``decollate: false``): the output is one
    dict, for which ``from_engine`` returns the 1-tuple ``(loss,)`` and MLflow's ``float()`` fails. Unwrap it."""

    def wrapped(output):
        value = transform(output)
        return value[0] if isinstance(value, tuple) and len(value) == 1 else value

    wrapped._unwraps_one_tuple = True
    return wrapped


_UNEVALUATED_JOIN = re.compile(r"^(?P<folder>[^$].*) \+ '/(?P<name>[^'/]+)'$")


def _executed_config_path(path: Any) -> Any:
    """MONAI's ``--tracking`` patch names the executed config ``<output_dir> + '/config_<time>.json'``, an expression
    only when ``output_dir`` is one: with ``--output_dir /some/folder`` the artifact path is that literal text, the
    file (written to ``/some/folder/config_<time>.json``) is never found and MLflow gets no config. Join it."""
    match = _UNEVALUATED_JOIN.match(path) if isinstance(path, str) else None
    return str(Path(match["folder"]) / match["name"]) if match else path


class TrainingTracker:
    """Trainer handler: per-epoch scalars to TensorBoard and MLflow, parameters and final artifacts to MLflow.

    Args:
        validator: the evaluator that validates during training; its metrics (``engine.state.metrics``) are written
            to TensorBoard for the epochs it ran (MONAI's validator ``MLFlowHandler`` logs them to MLflow).
        tensorboard_dir: folder of the event files; None writes none.
        params: the recipe's parameters for MLflow (values are logged as text); a resumed run adds only new keys.
        artifacts: ``{artifact folder: [files]}`` logged to the MLflow run when training completes (missing files
            are skipped with a warning), e.g. ``{"model": [".../model.pt"]}``.
        loss_key: key of the loss in the trainer output.
    """

    def __init__(self, validator: Engine | None = None, tensorboard_dir: str | None = None,
                 params: Mapping[str, Any] | None = None, artifacts: Mapping[str, Sequence[str]] | None = None,
                 loss_key: str = "loss") -> None:
        self.validator = validator
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else None
        self.params = dict(params or {})
        self.artifacts = {folder: [str(p) for p in paths] for folder, paths in (artifacts or {}).items()}
        self.loss_key = loss_key
        self.writer = None
        self.mlflow = None
        self._epoch_losses: list[float] = []
        self._params_logged = False

    # -- ignite
    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.TERMINATE, self._flush)

    def state_dict(self) -> dict:
        """The losses of the running epoch (a resumed epoch's mean then covers all of its iterations)."""
        return {"epoch_losses": list(self._epoch_losses)}

    def load_state_dict(self, state: Mapping) -> None:
        self._epoch_losses = [float(v) for v in state["epoch_losses"]]

    def _started(self, engine: Engine) -> None:
        self.mlflow = next((h for h in attached_handlers(engine) if type(h).__name__ == "MLFlowHandler"), None)
        if self.mlflow is not None and not getattr(self.mlflow.output_transform, "_unwraps_one_tuple", False):
            self.mlflow.output_transform = _unwrap_one_tuple(self.mlflow.output_transform)
        if self.mlflow is not None:
            self.mlflow.artifacts = tuple(_executed_config_path(a) for a in self.mlflow.artifacts)

    def _tensorboard(self):
        """The event-file writer, made at the first scalar: a run that stops before training (a bad checkpoint to
        resume from) leaves no file behind."""
        if self.writer is None and self.tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning(f"tensorboard is not installed: no event files in {self.tensorboard_dir} "
                               "(pip install 'xlstm-seg[tracking]')")
                self.tensorboard_dir = None
            else:
                self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        return self.writer

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        output = output[0] if isinstance(output, list) and output else output
        loss = _scalar(output.get(self.loss_key) if isinstance(output, Mapping) else output)
        if loss is None:
            return
        self._epoch_losses.append(loss)
        if self._tensorboard() is not None:
            step = engine.state.iteration
            self.writer.add_scalar("train_loss", loss, step)
            for i, group in enumerate(getattr(engine, "optimizer", None).param_groups if hasattr(engine, "optimizer")
                                      else []):
                self.writer.add_scalar(f"lr_group_{i}", float(group["lr"]), step)
        self._log_params()

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        scalars = {}
        if self._epoch_losses:
            scalars["train_loss_epoch"] = sum(self._epoch_losses) / len(self._epoch_losses)
        self._epoch_losses = []
        if self.mlflow is not None and self.mlflow.cur_run is not None and scalars:
            self.mlflow._log_metrics(scalars, step=epoch)
        if self.validator is not None and self.validator.state.epoch == epoch:
            for name, value in self.validator.state.metrics.items():
                value = _scalar(value)
                if value is not None and not math.isnan(value):
                    scalars[name] = value
        if scalars and self._tensorboard() is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, epoch)
            self.writer.flush()

    def _completed(self, engine: Engine) -> None:
        self._log_params()
        if self.mlflow is not None and self.mlflow.cur_run is not None:
            run_id = self.mlflow.cur_run.info.run_id
            for folder, paths in self.artifacts.items():
                for path in paths:
                    if Path(path).is_file():
                        self.mlflow.client.log_artifact(run_id, path, artifact_path=folder or None)
                    else:
                        logger.warning(f"no {path} to log to MLflow (artifact folder {folder!r})")
        self._flush()

    def _flush(self, *_: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _log_params(self) -> None:
        if self._params_logged or self.mlflow is None or self.mlflow.cur_run is None or not self.params:
            return
        import mlflow  # present: MLFlowHandler is

        client, run_id = self.mlflow.client, self.mlflow.cur_run.info.run_id
        logged = client.get_run(run_id).data.params
        new = {k: str(v) for k, v in self.params.items() if k not in logged}
        changed = {k: (logged[k], str(v)) for k, v in self.params.items() if k in logged and logged[k] != str(v)}
        if changed:
            logger.warning(f"MLflow parameters cannot change within a run; kept the first values of {changed}")
        if new:
            client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in new.items()])
        self._params_logged = True
