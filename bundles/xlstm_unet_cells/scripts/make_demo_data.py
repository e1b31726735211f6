# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic microscopy set in exactly the NeurIPS 2022 Cell Segmentation layout (or Dataset703's).

    python bundles/xlstm_unet_cells/scripts/make_demo_data.py --output /tmp/cells_demo
    python bundles/xlstm_unet_cells/scripts/make_demo_data.py --output /tmp/cells703 --layout dataset703

``--layout challenge`` (default), as the challenge distributes it (Zenodo 10719375)::

    <output>/Training-labeled/images/cell_00001.tiff      16-bit grayscale fluorescence (tifffile)
    <output>/Training-labeled/images/cell_00002.png       RGB stained brightfield
    <output>/Training-labeled/images/cell_00003.bmp       8-bit grayscale phase contrast
    <output>/Training-labeled/images/cell_00004.tif       3-channel 16-bit fluorescence (signal in one channel)
    <output>/Training-labeled/labels/cell_00001_label.tiff  instance masks (uint16, zlib), 0 background
    <output>/Tuning/{images,labels}/...                    labelled tuning set
    <output>/Testing/Public/{images,labels}/...            public test set

``--layout dataset703``: U-Mamba's ``Dataset703_NeurIPSCell`` (nnU-Net), made from the same synthetic cases the way
U-Mamba's release was made (the challenge's normalisation to RGB uint8 PNG, 3-class labels from
``pre_process_3class.py``)::

    <output>/imagesTr/cell_00001_0000.png    labelsTr/cell_00001.png (0 background, 1 interior, 2 boundary)
    <output>/imagesVal/cell_00021_0000.png   labelsVal-instance-mask/cell_00021_label.tiff
    <output>/dataset.json

Each image shows touching cells of varied size and irregular outline (cells are cut from a power diagram of random
seeds, so neighbours share borders), on an uneven background (a smooth illumination gradient and texture), with
noise. The modality cycles through the four above, so 16-bit TIFFs are among every split. The same seed gives the
same files.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from xlstm_bundle_tools.demo_sizes import add_size_options, chosen_sizes
from xlstm_bundle_tools.io import atomic_write, atomic_write_json

logger = logging.getLogger("make_demo_data")

# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py
# (10 labelled training images give fold 0 two validation images; tuning and test images go to the test list).
SIZES = {"demo": {"train": 20, "tuning": 2, "test": 2}, "verify": {"train": 10, "tuning": 1, "test": 1}}
MODALITIES = ("fluorescence16", "brightfield", "phase", "fluorescence16rgb")
EXTENSIONS = {"fluorescence16": ".tiff", "brightfield": ".png", "phase": ".bmp", "fluorescence16rgb": ".tif"}


def _smooth(shape, sigma, rng):
    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-6)


def make_cells(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) uint16 instance mask: clusters of touching cells of radius 5-15 px, ids 1..n in random order."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    n_clusters = int(rng.integers(5, 10))
    centres = []
    for _ in range(n_clusters):
        cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        for _ in range(int(rng.integers(3, 8))):
            centres.append((cy + rng.normal(0, 14), cx + rng.normal(0, 14), rng.uniform(5, 15)))
    best = np.full((height, width), np.inf, dtype=np.float32)
    mask = np.zeros((height, width), dtype=np.uint16)
    ids = rng.permutation(len(centres)) + 1
    for (cy, cx, radius), cell_id in zip(centres, ids):
        angle = np.arctan2(yy - cy, xx - cx)
        wobble = 1 + sum(rng.uniform(0.02, 0.1) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        scaled = np.hypot(yy - cy, xx - cx) / (radius * wobble)  # < 1 inside the cell
        win = (scaled < 1) & (scaled < best)  # the nearer (relative to size) cell wins: shared borders
        best[win] = scaled[win]
        mask[win] = cell_id
    # renumber 1..n (a cell fully covered by its neighbours disappears)
    present = np.unique(mask)
    present = present[present > 0]
    lut = np.zeros(int(mask.max()) + 1, dtype=np.uint16)
    lut[present] = rng.permutation(len(present)).astype(np.uint16) + 1
    return lut[mask]


def render(rng: np.random.Generator, mask: np.ndarray, modality: str) -> np.ndarray:
    """The image of ``mask`` in one modality: (H, W) or (H, W, 3), uint8 or uint16."""
    height, width = mask.shape
    cells = mask > 0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = (yy / height - 0.5) * rng.uniform(-0.6, 0.6) + (xx / width - 0.5) * rng.uniform(-0.6, 0.6)
    uneven = 0.5 + gradient + 0.15 * _smooth((height, width), 25, rng)  # illumination, about 0.2 .. 0.8
    texture = _smooth((height, width), 1.5, rng)
    # each cell its own brightness; a dimmer rim where cells meet, so borders are visible but faint
    brightness = rng.uniform(0.55, 1.0, int(mask.max()) + 1).astype(np.float32)
    rim = gaussian_filter((np.abs(np.diff(mask.astype(np.int32), axis=0, prepend=0)) > 0).astype(np.float32)
                          + (np.abs(np.diff(mask.astype(np.int32), axis=1, prepend=0)) > 0), 0.8)
    body = gaussian_filter(cells.astype(np.float32) * brightness[mask], 1.0) * (1 - 0.5 * np.clip(rim, 0, 1))
    noise = rng.normal(0, 1, (height, width)).astype(np.float32)
    if modality.startswith("fluorescence16"):
        signal = 800 + 1500 * uneven + 30000 * body * (1 + 0.1 * texture) + 300 * noise
        signal = np.clip(signal, 0, 65535).astype(np.uint16)
        if modality == "fluorescence16":
            return signal
        out = np.zeros((height, width, 3), dtype=np.uint16)
        out[..., int(rng.integers(0, 3))] = signal  # one stained channel, the others empty (as in many tiffs)
        return out
    if modality == "brightfield":
        background = np.array([225, 205, 215], np.float32) * (0.85 + 0.3 * uneven[..., None])
        stain = np.array([120, 60, 150], np.float32)
        alpha = np.clip(body * 1.2, 0, 1)[..., None]
        image = background * (1 - alpha) + stain * (0.8 + 0.2 * texture[..., None]) * alpha + 6 * noise[..., None]
        return np.clip(image, 0, 255).astype(np.uint8)
    # phase contrast: mid-grey field, dark cells with a bright halo
    halo = gaussian_filter(cells.astype(np.float32), 3.0) - gaussian_filter(cells.astype(np.float32), 1.0)
    image = 120 + 60 * uneven - 70 * body + 120 * np.clip(halo, 0, None) + 8 * texture + 5 * noise
    return np.clip(image, 0, 255).astype(np.uint8)


def make_case(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(image, instance mask, modality) of case ``index`` (modalities cycle; sizes vary 160-288 px)."""
    height, width = int(rng.integers(160, 257)), int(rng.integers(176, 289))
    mask = make_cells(rng, height, width)
    modality = MODALITIES[index % len(MODALITIES)]
    return render(rng, mask, modality), mask, modality


def _write_image(path: Path, image: np.ndarray) -> None:
    import tifffile

    if path.suffix in (".tif", ".tiff"):
        photometric = "rgb" if image.ndim == 3 else "minisblack"
        atomic_write(path, lambda tmp: tifffile.imwrite(tmp, image, photometric=photometric), path.suffix)
    else:
        fmt = {".png": "PNG", ".bmp": "BMP"}[path.suffix]
        atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt), path.suffix)


def _write_mask(path: Path, mask: np.ndarray) -> None:
    import tifffile

    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, mask.astype(np.uint16), compression="zlib"), ".tiff")


def write_challenge(output: Path, n_train: int, n_tuning: int, n_test: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    names, number = [], 1
    for folder, count in (("Training-labeled", n_train), ("Tuning", n_tuning), ("Testing/Public", n_test)):
        for _ in range(count):
            image, mask, modality = make_case(rng, number - 1)
            name = f"cell_{number:05d}"
            _write_image(output / folder / "images" / f"{name}{EXTENSIONS[modality]}", image)
            _write_mask(output / folder / "labels" / f"{name}_label.tiff", mask)
            names.append(name)
            number += 1
        logger.info("wrote %d cases to %s", count, output / folder)
    return names


def write_dataset703(output: Path, n_train: int, n_val: int, n_test: int = 0, seed: int = 0) -> list[str]:
    """Dataset703_NeurIPSCell from the same synthetic cases: normalised RGB PNGs, 3-class labels (``n_test``
    unlabelled cases go to imagesTs)."""
    from xlstm_bundle_tools.cells import normalize_cell_image
    from xlstm_bundle_tools.instances import semantic_from_instances

    rng = np.random.default_rng(seed)
    names = []
    for number in range(1, n_train + n_val + n_test + 1):
        image, mask, _ = make_case(rng, number - 1)
        name = f"cell_{number:05d}"
        rgb = np.moveaxis(normalize_cell_image(image), 0, -1)
        if number <= n_train:
            _write_image(output / "imagesTr" / f"{name}_0000.png", rgb)
            semantic = semantic_from_instances(mask)
            atomic_write(output / "labelsTr" / f"{name}.png",
                         lambda tmp, s=semantic: Image.fromarray(s).save(tmp, format="PNG"), ".png")
        elif number <= n_train + n_val:
            _write_image(output / "imagesVal" / f"{name}_0000.png", rgb)
            _write_mask(output / "labelsVal-instance-mask" / f"{name}_label.tiff", mask)
        else:
            _write_image(output / "imagesTs" / f"{name}_0000.png", rgb)
        names.append(name)
    atomic_write_json(output / "dataset.json", {
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "interior": 1, "boundary": 2},
        "numTraining": n_train, "file_ending": ".png", "name": "Dataset703_NeurIPSCell",
        "description": "synthetic demo in the layout of U-Mamba's Dataset703_NeurIPSCell"})
    logger.info("wrote Dataset703 layout: %d training, %d validation, %d test cases", n_train, n_val, n_test)
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--layout", choices=["challenge", "dataset703"], default="challenge")
    add_size_options(parser, SIZES, {"train": "labelled training images", "tuning": "labelled tuning images "
                                     "(dataset703: imagesVal)", "test": "public test images"})
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, SIZES)
    if args.layout == "challenge":
        write_challenge(args.output, n["train"], n["tuning"], n["test"], args.seed)
    else:
        write_dataset703(args.output, n["train"], n["tuning"], n["test"], args.seed)
    logger.info("demo data in %s", args.output)


if __name__ == "__main__":
    main()
