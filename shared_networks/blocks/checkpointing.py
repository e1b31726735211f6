# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Activation checkpointing shared by the networks: one JSON-friendly option, two granularities.

``activation_checkpointing`` takes:

- ``"none"``: keep every activation for the backward pass (default).
- ``"xlstm"``: recompute each ViL / xLSTM block in the backward pass instead of storing its internals. These blocks
  hold the most activations per input voxel (expansion 2, q/k/v, gates, the mLSTM states) and are cheap to
  recompute compared with the convolutions around them.
- ``"stages"``: recompute every encoder and decoder stage (ViL/xLSTM blocks included); only stage boundaries are
  stored. Least memory, about one extra forward pass of time.

Recomputation repeats the same operations in the same order (and restores the RNG state, so drop-path draws are the
same), so gradients equal those without checkpointing. It applies only where autograd records (training); under
``torch.no_grad()`` the modules run plainly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.utils import look_up_option
from torch.utils.checkpoint import checkpoint

__all__ = ["CHECKPOINTING_CHOICES", "check_checkpointing", "run_checkpointed"]

CHECKPOINTING_CHOICES = ("none", "xlstm", "stages")


def check_checkpointing(value: str, owner: str, choices: tuple[str, ...] = CHECKPOINTING_CHOICES) -> str:
    """Return ``value`` if it is one of ``choices``; else raise ``ValueError`` naming ``owner`` and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: activation_checkpointing must be one of {choices}; got {value!r}.")
    return look_up_option(value, choices)


def run_checkpointed(enabled: bool, function: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """``function(*args)``, through :func:`torch.utils.checkpoint.checkpoint` when ``enabled`` and autograd records."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)
