# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic dermoscopy set in exactly the ISIC 2018 Task 1 layout.

    python bundles/xlstm_vmunet_isic/scripts/make_demo_data.py --output /tmp/isic_demo

Layout, as the challenge distributes it::

    <output>/ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg          (RGB JPEG, sizes vary)
    <output>/ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png   (0/255)
    <output>/ISIC2018_Task1-2_Validation_Input/ ... and ISIC2018_Task1_Validation_GroundTruth/
    <output>/ISIC2018_Task1-2_Test_Input/ ...                         (no ground truth folder)

Each image is skin (a smooth tone with pores and texture), an irregular pigmented lesion with darker blotches and a
fuzzy border, dark hairs crossing the field, and the circular vignetting of a dermatoscope. Image sizes differ
between images, as in ISIC. The same seed gives the same files.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import gaussian_filter

from xlstm_bundle_tools.demo_sizes import add_size_options, chosen_sizes
from xlstm_bundle_tools.io import atomic_write

logger = logging.getLogger("make_demo_data")

# Case counts by name (xlstm_bundle_tools.demo_sizes): "demo" for make demo, "verify" for ci/verify_bundle.py
# (12 labelled images give fold 0 two validation images; one unlabelled test image for inference).
SIZES = {"demo": {"train": 24, "val": 4, "test": 2}, "verify": {"train": 10, "val": 2, "test": 1}}

FOLDERS = {
    "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
    "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
    "test": ("ISIC2018_Task1-2_Test_Input", None),
}


def _smooth(shape, sigma, rng):
    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(field.std(), 1e-6)


def make_image(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic dermoscopy image (H, W, 3) uint8 and its lesion mask (H, W) uint8 0/255."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    skin = np.array([rng.uniform(190, 230), rng.uniform(140, 175), rng.uniform(120, 150)], np.float32)
    texture = 6 * _smooth((height, width), 2, rng) + 4 * _smooth((height, width), 12, rng)
    image = skin[None, None, :] + texture[..., None]
    # lesion: a star-shaped blob with a smooth random radius profile
    cy, cx = height * rng.uniform(0.35, 0.65), width * rng.uniform(0.35, 0.65)
    base = min(height, width) * rng.uniform(0.15, 0.3)
    angles = np.arctan2(yy - cy, xx - cx)
    harmonics = sum(rng.uniform(0.03, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in range(2, 7))
    radius = base * (1 + harmonics) * rng.uniform(0.8, 1.2)
    distance = np.hypot(yy - cy, xx - cx)
    mask = distance < radius
    inside = np.clip((radius - distance) / (0.25 * base), 0, 1)  # fuzzy border
    pigment = np.array([rng.uniform(90, 140), rng.uniform(55, 90), rng.uniform(40, 70)], np.float32)
    blotches = np.clip(0.5 + 0.35 * _smooth((height, width), 6, rng), 0, 1)[..., None]
    lesion = pigment * (0.7 + 0.6 * blotches)
    image = image * (1 - inside[..., None]) + lesion * inside[..., None]
    # hairs: dark thin curves drawn on top
    hair_layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(hair_layer)
    for _ in range(int(rng.integers(3, 12))):
        points = [(rng.uniform(0, width), rng.uniform(0, height))]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            heading += rng.normal(0, 0.25)
            step = rng.uniform(8, 20)
            points.append((points[-1][0] + step * np.cos(heading), points[-1][1] + step * np.sin(heading)))
        draw.line(points, fill=255, width=int(rng.integers(1, 3)))
    hairs = np.asarray(hair_layer.filter(ImageFilter.GaussianBlur(0.6)), np.float32)[..., None] / 255
    image = image * (1 - 0.8 * hairs) + 30 * hairs
    # dermatoscope vignetting: darker towards the corners
    r = np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2))
    image = image * np.clip(1.15 - 0.45 * r**2, 0.15, 1)[..., None]
    image = image + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def write_demo(output: Path, n_train: int = 24, n_val: int = 4, n_test: int = 2, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    number = 0
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        image_dir, mask_dir = FOLDERS[split]
        for _ in range(count):
            height, width = int(rng.integers(180, 260)), int(rng.integers(240, 340))
            image, mask = make_image(rng, height, width)
            name = f"ISIC_{number:07d}"
            atomic_write(output / image_dir / f"{name}.jpg",
                         lambda tmp, im=image: Image.fromarray(im).save(tmp, format="JPEG", quality=92), ".jpg")
            if mask_dir:
                atomic_write(output / mask_dir / f"{name}_segmentation.png",
                             lambda tmp, m=mask: Image.fromarray(m).save(tmp, format="PNG"), ".png")
            number += 1
        logger.info("wrote %d %s images", count, split)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    add_size_options(parser, SIZES, {"train": "training images with masks", "val": "validation images with masks",
                                     "test": "test images without masks"})
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, SIZES)
    write_demo(args.output, n["train"], n["val"], n["test"], args.seed)
    logger.info("demo data in %s", args.output)


if __name__ == "__main__":
    main()
