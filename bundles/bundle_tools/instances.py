# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Instance masks to the 3-class semantic target and back (microscopy cells).

**Instances -> semantic** (:func:`semantic_from_instances`) is the NeurIPS 2022 Cell Segmentation baseline's
``create_interior_map`` (JunMa11/NeurIPS-CellSeg ``data/pre_process_3class.py``), which U-Mamba's
``Dataset703_NeurIPSCell`` (labels 0 background, 1 interior, 2 boundary) follows:

1. boundary = ``skimage.segmentation.find_boundaries(instances, mode="inner")`` (instance pixels with a 4-neighbour
   of another value, background included), dilated by ``disk(1)`` (the 3×3 cross), so the band also takes one
   pixel outside each cell and one more inside;
2. interior = instance pixels not in the band, then ``remove_small_objects(min_size=16)`` (4-connected pieces of
   fewer than 16 pixels become background);
3. 0 background, 1 interior, 2 boundary.

The official script casts the mask to int16 first; we keep the mask's own integer type (ids above 32,767 would wrap
there).

**Semantic -> instances** (:func:`instances_from_semantic`), what inference writes:

1. instances = the 8-connected components of the interior class (``skimage.measure.label(semantic == 1)``, how
   xLSTM-UNet's ``compute_cell_metric.py`` builds its instances), numbered 1..n in raster order of their first pixel;
2. each boundary-class pixel then takes the label of the nearest interior pixel (Euclidean distance) if that pixel
   lies within ``grow_distance`` (default 2); ties go to the first offset in a fixed order (distance, then row
   offset, then column offset). Boundary pixels farther than that, and all background, stay 0. This is
   ``skimage.segmentation.expand_labels(instances, grow_distance)`` restricted to the boundary class, up to ties.

The growth looks at most ``grow_distance`` pixels away, so it runs block by block over large images with identical
results (:data:`BLOCK_ROWS` rows at a time plus a halo), and its memory stays a few bytes per pixel.

**Round trip.** For instances whose forward interior is non-empty and 8-connected, :func:`instances_from_semantic`
applied to :func:`semantic_from_instances` returns exactly one instance per original instance, and

- its interior-class pixels are exactly the original's interior (interiors of different instances are never
  8-adjacent: an interior pixel's 4-neighbours all carry its own label, so two diagonal interior pixels of different
  instances would need one pixel to carry both labels);
- every other pixel it holds is a boundary-class pixel within ``grow_distance`` of that interior, so it lies within
  ``grow_distance`` (+1 for the outer ring) of the original instance;
- what it can differ in is the band: the 1-pixel ring outside the cell that the dilation adds (reached only at
  ``grow_distance`` >= 3 on straight edges), and band pixels between two touching cells that are nearer to the
  neighbour's interior.

Instances that are thinner than about 5 pixels, or smaller than the 16-pixel interior limit, have no interior and
are lost; one whose interior splits (a thin waist) comes back as several. ``tests/bundles/test_xlstm_unet_cells.py``
checks all of this on touching blobs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["semantic_from_instances", "instances_from_semantic", "grow_labels", "growth_offsets", "BACKGROUND",
           "INTERIOR", "BOUNDARY", "MIN_INTERIOR_PIXELS", "BLOCK_ROWS"]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
MIN_INTERIOR_PIXELS = 16  # remove_small_objects(min_size=16) in pre_process_3class.py
BLOCK_ROWS = 1024
_CROSS = ndimage.generate_binary_structure(2, 1)  # skimage.morphology.disk(1)
_SQUARE = np.ones((3, 3), dtype=bool)  # 8-connectivity (skimage.measure.label's default in 2D)


def semantic_from_instances(instances: np.ndarray, min_interior: int = MIN_INTERIOR_PIXELS) -> np.ndarray:
    """(H, W) integer instance mask (0 background) -> (H, W) uint8 map: 0 background, 1 interior, 2 boundary."""
    from skimage.segmentation import find_boundaries

    instances = np.asarray(instances)
    if instances.ndim != 2 or instances.dtype.kind not in "iub":
        raise ValueError(f"semantic_from_instances: expected a 2D integer mask, got {instances.dtype} {instances.shape}.")
    boundary = find_boundaries(instances, mode="inner")
    boundary = ndimage.binary_dilation(boundary, structure=_CROSS)
    interior = (instances > 0) & ~boundary
    if min_interior > 1:  # remove_small_objects(min_size=16): 4-connected pieces under 16 pixels go
        pieces, _ = ndimage.label(interior, structure=_CROSS)
        sizes = np.bincount(pieces.ravel())
        interior &= (sizes >= min_interior)[pieces]
    semantic = np.zeros(instances.shape, dtype=np.uint8)
    semantic[interior] = INTERIOR
    semantic[boundary] = BOUNDARY
    return semantic


def growth_offsets(distance: float) -> list[tuple[int, int]]:
    """(dy, dx) offsets within ``distance`` (the origin excluded), nearest first; ties by dy, then dx."""
    reach = int(math.floor(distance))
    offsets = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
               if 0 < dy * dy + dx * dx <= distance * distance + 1e-9]
    return sorted(offsets, key=lambda o: (o[0] ** 2 + o[1] ** 2, o[0], o[1]))


def grow_labels(labels: np.ndarray, target: np.ndarray, distance: float, block_rows: int = BLOCK_ROWS,
                inplace: bool = False) -> np.ndarray:
    """Give each ``target`` pixel with label 0 the label of the nearest labelled pixel within ``distance``.

    Nearest by Euclidean distance, ties broken by :func:`growth_offsets`' order; the seeds are the labels as given
    (a grown pixel never seeds another). Works on ``block_rows`` rows at a time (plus a halo of ``distance``), so the
    result does not depend on the block size. ``labels`` is modified only with ``inplace=True`` (which saves a
    full-size copy on whole slides); the seeds are read from an unmodified copy of each block either way.
    """
    labels = np.asarray(labels)
    target = np.asarray(target, dtype=bool)
    if labels.shape != target.shape or labels.ndim != 2:
        raise ValueError(f"grow_labels: labels {labels.shape} and target {target.shape} must be one 2D size.")
    out = labels if inplace else labels.copy()
    offsets = growth_offsets(distance)
    if not offsets:
        return out
    halo = int(math.floor(distance))
    height, width = labels.shape
    above = None  # in place: the unmodified last `halo` rows of the previous block, the seeds above this one
    for top in range(0, height, block_rows):
        bottom = min(top + block_rows, height)
        lo, hi = max(top - halo, 0), min(bottom + halo, height)
        # the block with a zero frame of `halo` pixels, so every shifted view stays inside
        padded = np.zeros((hi - lo + 2 * halo, width + 2 * halo), dtype=labels.dtype)
        padded[halo : halo + hi - lo, halo : halo + width] = labels[lo:hi]
        if inplace and above is not None and top > lo:
            padded[halo : halo + top - lo, halo : halo + width] = above[-(top - lo):]
        rows = slice(top - lo + halo, bottom - lo + halo)
        core = padded[rows, halo : halo + width]
        if inplace and halo:
            above = core.copy() if above is None else np.concatenate([above, core])[-halo:]
        todo = target[top:bottom] & (core == 0)
        block = out[top:bottom]
        for dy, dx in offsets:
            if not todo.any():
                break
            shifted = padded[rows.start + dy : rows.stop + dy, halo + dx : halo + dx + width]
            hit = todo & (shifted > 0)
            block[hit] = shifted[hit]
            todo &= ~hit
    return out


def instances_from_semantic(semantic: np.ndarray, grow_distance: float = 2.0, dtype=np.int32) -> np.ndarray:
    """(H, W) 3-class map (0 background, 1 interior, 2 boundary) -> (H, W) instance mask, 0 background.

    See the module docstring for the rule. ``dtype`` must hold the number of instances (int32: 2^31 - 1).
    """
    semantic = np.asarray(semantic)
    if semantic.ndim != 2:
        raise ValueError(f"instances_from_semantic: expected a 2D class map, got shape {semantic.shape}.")
    labels = np.zeros(semantic.shape, dtype=dtype)
    ndimage.label(semantic == INTERIOR, structure=_SQUARE, output=labels)
    if grow_distance <= 0:
        return labels
    return grow_labels(labels, semantic == BOUNDARY, grow_distance, inplace=True)
