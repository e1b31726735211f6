# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Image writers that keep a mask on the grid it was computed on."""

from __future__ import annotations

import numpy as np

from .io import AtomicNibabelWriter

__all__ = ["SameGridNibabelWriter"]


class SameGridNibabelWriter(AtomicNibabelWriter):
    """``AtomicNibabelWriter`` that writes the array and affine as given when ``SaveImaged(resample=False)``.

    MONAI 1.6's ``ImageWriter.resample_if_needed`` still runs ``SpatialResample`` without a target ("no resampling").
    For the channel-squeezed prediction of a multi-channel input (a 4D NIfTI: its meta says ``original_channel_dim
    = -1``) the MetaTensor made there counts only two spatial dimensions, so the resampler uses the top-left 3x3
    of the affine. When the first two voxel axes are not in-plane (sagittal or coronal storage, or axes stored in
    another order) that block is singular and saving fails with ``ValueError: Affine [[...]] is not invertible``.
    Without a target there is nothing to resample, so this writer skips the call; with ``resample=True`` it
    resamples as MONAI does.
    """

    @classmethod
    def resample_if_needed(cls, data_array, affine=None, target_affine=None, output_spatial_shape=None, **kwargs):
        if target_affine is None and output_spatial_shape is None:
            return data_array, (np.eye(4) if affine is None else affine)
        return super().resample_if_needed(data_array, affine, target_affine, output_spatial_shape, **kwargs)
