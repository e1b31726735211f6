# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Training pieces nnU-Net-style recipes need and MONAI's trainer does not expose as options."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

__all__ = ["GradientClipping", "deep_supervision_weights"]


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's deep-supervision weights: 1/2^i, the lowest resolution set to 0, normalised to sum 1.

    For 5 outputs: [1, .5, .25, .125, 0] / 1.875. With a single output: [1.0].
    """
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1; got {n_outputs}.")
    raw = [0.5**i for i in range(n_outputs)]
    if n_outputs > 1:
        raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


class GradientClipping:
    """Clip the global gradient norm between backward and the optimiser step (nnU-Net clips at 12).

    Under AMP the gradients are unscaled first, so the threshold applies to the true gradients.

    Args:
        max_norm: the norm threshold.
    """

    def __init__(self, max_norm: float = 12.0) -> None:
        self.max_norm = max_norm

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        params = [p for group in engine.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)
