# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Losses the bundles need that MONAI has under a misleading name or not at all."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss

__all__ = ["DiceBCELoss"]


class DiceBCELoss(torch.nn.Module):
    """Soft Dice plus binary cross-entropy, each channel an independent sigmoid output (overlapping regions).

    MONAI's ``DiceCELoss(sigmoid=True)`` is not this: with more than one channel it applies *softmax* cross-entropy
    (``losses/dice.py``: ``self.ce(...) if input.shape[1] != 1 else self.bce(...)``), which on multi-hot region
    targets such as BraTS's (TC, WT, ET) is 0 for an all-background patch and gives no gradient on ET voxels, whose
    target is (1, 1, 1). Here the cross-entropy is ``torch.nn.BCEWithLogitsLoss`` on every channel and voxel.

    Args:
        lambda_dice: weight of the Dice term.
        lambda_bce: weight of the cross-entropy term.
        dice_kwargs: passed to :class:`monai.losses.DiceLoss` (``sigmoid=True`` is set), e.g. ``smooth_nr``,
            ``smooth_dr``, ``batch``, ``squared_pred``.

    Shapes: ``input`` (B, C, *spatial) logits, ``target`` (B, C, *spatial) in {0, 1}; returns a scalar.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_bce: float = 1.0, **dice_kwargs) -> None:
        super().__init__()
        dice_kwargs.pop("sigmoid", None)
        self.dice = DiceLoss(sigmoid=True, **dice_kwargs)
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.lambda_dice = lambda_dice
        self.lambda_bce = lambda_bce

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape != target.shape:
            raise ValueError(f"DiceBCELoss needs one target channel per output channel; got input {tuple(input.shape)}"
                             f" and target {tuple(target.shape)}.")
        target = target.to(dtype=input.dtype)
        return self.lambda_dice * self.dice(input, target) + self.lambda_bce * self.bce(input, target)
