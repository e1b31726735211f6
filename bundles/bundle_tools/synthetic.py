# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Building blocks for the bundles' synthetic demo data: smooth random fields, deformed ellipsoids, tubes, NIfTI I/O.

Everything is drawn from a ``numpy.random.Generator`` so a seed reproduces the data exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from .io import atomic_write

__all__ = ["smooth_field", "deformed_ellipsoid", "tube", "bias_field", "affine_for", "write_nifti", "mm_grid"]


def smooth_field(shape: Sequence[int], sigma_vox: float | Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="reflect")
    return field / max(float(field.std()), 1e-6)


def mm_grid(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Voxel-centre coordinates in millimetres, centred on the volume: one array per axis (ij indexing)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def deformed_ellipsoid(
    grid: Sequence[np.ndarray],
    centre_mm: Sequence[float],
    radii_mm: Sequence[float],
    rng: np.random.Generator,
    roughness: float = 0.15,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Boolean mask of an ellipsoid (rotated in the first two axes) whose surface is perturbed by a smooth field."""
    coords = [g - c for g, c in zip(grid, centre_mm)]
    if angle_deg:
        a = np.deg2rad(angle_deg)
        coords[0], coords[1] = np.cos(a) * coords[0] + np.sin(a) * coords[1], -np.sin(a) * coords[0] + np.cos(a) * coords[1]
    radius = np.sqrt(sum((c / r) ** 2 for c, r in zip(coords, radii_mm)))
    shape = grid[0].shape
    coarse = smooth_field([max(2, n // 4) for n in shape], 1.5, rng)
    noise = zoom(coarse, [n / m for n, m in zip(shape, coarse.shape)], order=1)[tuple(slice(0, n) for n in shape)]
    return radius < 1.0 + roughness * noise


def tube(grid: Sequence[np.ndarray], path_xy_mm, radius_mm: float, z_range_mm: tuple[float, float]) -> np.ndarray:
    """Boolean mask of a vertical tube along the last axis; ``path_xy_mm(z)`` gives its (x, y) centre at height z."""
    x, y, z = grid
    cx, cy = path_xy_mm(z)
    inside = (x - cx) ** 2 + (y - cy) ** 2 < radius_mm**2
    return inside & (z >= z_range_mm[0]) & (z <= z_range_mm[1])


def bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity around 1, like an MR coil profile."""
    return np.exp(strength * smooth_field(shape, [n / 3 for n in shape], rng)).astype(np.float32)


def affine_for(spacing: Sequence[float], shape: Sequence[int], flip_xy: bool = True, tilt_deg: float = 0.0) -> np.ndarray:
    """A scanner-like NIfTI affine: LPS-derived axes (x, y flipped, as DICOM-converted abdominal scans are), a small
    in-plane tilt and an origin that puts the volume centre near the scanner isocentre."""
    direction = np.diag([-1.0, -1.0, 1.0]) if flip_xy else np.eye(3)
    t = np.deg2rad(tilt_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    linear = rotation @ direction @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((np.asarray(shape) - 1) / 2) + np.array([2.0, -30.0, 40.0])
    return affine


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI file atomically with qform and sform set from ``affine``."""
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(image, tmp), suffix=".nii.gz" if str(path).endswith(".gz") else ".nii")
