# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a small synthetic robotic-surgery set in exactly the EndoVis 2017 layout (or Dataset704_Endovis17's).

    python bundles/xlstm_unet_endovis17/scripts/make_demo_data.py --output /tmp/endovis_demo
    python bundles/xlstm_unet_endovis17/scripts/make_demo_data.py --output /tmp/d704 --layout dataset704

``--layout endovis17`` (default), as the challenge distributes its training set::

    <output>/instrument_dataset_1/left_frames/frame000.png     RGB frames (right_frames/ too, unused)
    <output>/instrument_dataset_1/ground_truth/Left_Prograsp_Forceps_labels/frame000.png   parts mask per instrument
    <output>/instrument_dataset_9/left_frames/frame000.png     sequences without ground_truth/ (the test videos)

Each sequence has the instrument folders of the real one with its number (ARCHITECTURE.md §9.1: the spelling
varies, e.g. ``Maryland_Bipolar_Forceps_labels``, ``Other_labels``, ``Prograsp_Forceps`` without the suffix), and
the masks hold parts values 10 shaft, 20 wrist, 30 claspers; sequence 2 stores its masks as 3-channel PNGs, as
some releases do. Instruments cross, so masks overlap (the later folder is drawn on top, and wins in the labels).

``--layout dataset704``: U-Mamba's ``Dataset704_Endovis17`` (nnU-Net) from the same frames: ``imagesTr/<case>_0000.png``
with ``labelsTr/<case>.png`` (type labels 0-7), ``imagesTs``/``labelsTs`` from the test sequences, ``dataset.json``.

A frame is tissue (reddish, with smooth colour variation, darker vessels and specular highlights) with the
sequence's instruments: elongated shafts entering from the image border, a wrist and two jaws at the tip, each type
with its own shaft shade, width and jaw shape, shaded as a cylinder with a specular line. Frames are small (160 x
128) so that the demo trains in minutes; real frames are 1920 x 1080. The same seed gives the same files.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from xlstm_bundle_tools.demo_sizes import add_size_options, chosen_sizes
from xlstm_bundle_tools.endovis import LABELS, combine_instrument_masks, instrument_type, write_png
from xlstm_bundle_tools.io import atomic_write_json

logger = logging.getLogger("make_demo_data")

# Case counts by name (xlstm_bundle_tools.demo_sizes). Folds are dealt over sequences: "verify" has 5 labelled
# sequences of 2 frames, so fold 0 holds one sequence, 2 validation frames; one test sequence for inference.
SIZES = {"demo": {"sequences": 8, "frames": 4, "test_sequences": 2, "test_frames": 1},
         "verify": {"sequences": 5, "frames": 2, "test_sequences": 1, "test_frames": 1}}
HEIGHT, WIDTH = 128, 160

# ground_truth/ folders of the 8 training sequences, as distributed (ARCHITECTURE.md §9.1, from
# warmspringwinds/pytorch-segmentation-detection datasets/endovis_instrument_2017.py)
SEQUENCE_FOLDERS = {
    1: ["Left_Prograsp_Forceps_labels", "Maryland_Bipolar_Forceps_labels", "Right_Prograsp_Forceps_labels",
        "Other_labels"],
    2: ["Left_Prograsp_Forceps_labels", "Right_Prograsp_Forceps_labels", "Other_labels"],
    3: ["Left_Large_Needle_Driver_labels", "Right_Large_Needle_Driver_labels"],
    4: ["Large_Needle_Driver_Left_labels", "Large_Needle_Driver_Right_labels", "Prograsp_Forceps_labels"],
    5: ["Bipolar_Forceps_labels", "Grasping_Retractor_labels", "Vessel_Sealer_labels"],
    6: ["Left_Large_Needle_Driver_labels", "Right_Large_Needle_Driver_labels", "Monopolar_Curved_Scissors_labels",
        "Prograsp_Forceps"],
    7: ["Left_Bipolar_Forceps", "Right_Vessel_Sealer"],
    8: ["Bipolar_Forceps_labels", "Left_Grasping_Retractor_labels", "Right_Grasping_Retractor_labels",
         "Monopolar_Curved_Scissors_labels"],
}
# test videos use the instruments of the training ones
TEST_INSTRUMENTS = [["Maryland_Bipolar_Forceps_labels", "Right_Large_Needle_Driver_labels"],
                    ["Left_Prograsp_Forceps_labels", "Monopolar_Curved_Scissors_labels", "Vessel_Sealer_labels"]]
THREE_CHANNEL_MASKS = {2}

# per type: shaft colour (RGB), shaft width (px), jaw length (px), jaw opening (rad), jaw width (px)
LOOKS = {
    1: ((70, 90, 150), 9, 10, 0.35, 3),    # bipolar forceps: blue-grey insulation, narrow jaws
    2: ((120, 120, 125), 10, 12, 0.55, 4),  # prograsp forceps: mid grey, wide fenestrated jaws
    3: ((45, 45, 50), 9, 7, 0.2, 5),       # large needle driver: dark, short thick jaws
    4: ((185, 185, 175), 13, 14, 0.15, 6),  # vessel sealer: light, wide, long thick jaws
    5: ((150, 150, 160), 7, 16, 0.8, 3),   # grasping retractor: thin, long spread jaws
    6: ((25, 25, 25), 10, 11, 0.45, 3),    # monopolar curved scissors: black shaft, curved jaws
    7: ((225, 225, 215), 14, 0, 0.0, 0),    # other (ultrasound probe): white cylinder, rounded end
}


def _smooth(shape, sigma, rng):
    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-6)


def tissue(rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float: reddish tissue, colour varying smoothly, darker vessels, fine texture."""
    base = np.array([rng.uniform(150, 190), rng.uniform(55, 85), rng.uniform(50, 75)], np.float32)
    image = base + 18 * _smooth((HEIGHT, WIDTH), 12, rng)[..., None] * np.array([1.0, 0.6, 0.5])
    image += 5 * _smooth((HEIGHT, WIDTH), 1.2, rng)[..., None]
    vessels = np.abs(_smooth((HEIGHT, WIDTH), 6, rng)) < 0.08  # thin meandering lines
    image -= 40 * gaussian_filter(vessels.astype(np.float32), 0.8)[..., None] * np.array([0.6, 1.0, 1.0])
    return image


def _segment_distance(yy, xx, p0, p1):
    """Distance of each pixel to the segment p0-p1 (points as (y, x)), and the position t in [0, 1] along it."""
    d = np.subtract(p1, p0, dtype=np.float64)
    length2 = max(float(d @ d), 1e-9)
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0, 1)
    return np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1])), t


def instrument(rng: np.random.Generator, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """One instrument: its parts mask (H, W) uint8 (10 shaft, 20 wrist, 30 claspers) and shading (H, W) float."""
    kind = instrument_type(folder)
    colour, width, jaw, opening, jaw_width = LOOKS[kind]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    # enter through the border the folder names (left / right), else through the top or bottom
    side = "left" if "Left" in folder else "right" if "Right" in folder else rng.choice(["top", "bottom"])
    y_in, x_in = {"left": (rng.uniform(0.1, 0.9) * HEIGHT, -20.0), "right": (rng.uniform(0.1, 0.9) * HEIGHT,
                                                                          WIDTH + 20.0),
                  "top": (-20.0, rng.uniform(0.15, 0.85) * WIDTH),
                  "bottom": (HEIGHT + 20.0, rng.uniform(0.15, 0.85) * WIDTH)}[side]
    tip = np.array([rng.uniform(0.25, 0.75) * HEIGHT, rng.uniform(0.25, 0.75) * WIDTH])
    start = np.array([y_in, x_in])
    direction = (tip - start) / np.linalg.norm(tip - start)
    width = width * rng.uniform(0.85, 1.15)
    parts = np.zeros((HEIGHT, WIDTH), np.uint8)
    shade = np.zeros((HEIGHT, WIDTH), np.float64)
    distance, _ = _segment_distance(yy, xx, start, tip)
    shaft = distance < width / 2
    parts[shaft] = 10
    shade[shaft] = 1 - (distance[shaft] / (width / 2)) ** 2  # cylinder: brightest on the axis
    if kind == 7:  # the probe: a rounded end, no wrist or jaws
        return parts, shade
    wrist_end = tip + direction * width * 0.7
    distance, _ = _segment_distance(yy, xx, tip, wrist_end)
    wrist = (distance < width * 0.4) & ~shaft
    parts[wrist] = 20
    shade[wrist] = 0.6
    base_angle = np.arctan2(direction[0], direction[1])
    for sign in (-1, 1):
        angle = base_angle + sign * opening * rng.uniform(0.6, 1.2)
        if kind == 6:  # curved scissors: the jaws bend to one side
            angle += 0.35
        end = wrist_end + jaw * np.array([np.sin(angle), np.cos(angle)])
        distance, t = _segment_distance(yy, xx, wrist_end, end)
        claspers = (distance < jaw_width * (1 - 0.5 * t) / 2 + 0.5) & (parts == 0)
        parts[claspers] = 30
        shade[claspers] = 0.8
    return parts, shade


def render(rng: np.random.Generator, folders: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A frame (H, W, 3) uint8 and each folder's parts mask; instruments are drawn in sorted folder order, so the
    later folder is on top where they overlap (the label rule of xlstm_bundle_tools.endovis)."""
    image = tissue(rng)
    masks = {}
    for folder in sorted(folders):
        parts, shade = instrument(rng, folder)
        colour = np.array(LOOKS[instrument_type(folder)][0], np.float32)
        body = parts > 0
        lit = colour * (0.65 + 0.45 * shade[..., None])
        lit += 90 * (shade[..., None] > 0.92) * (parts[..., None] == 10)  # specular line along the shaft
        image[body] = lit[body]
        masks[folder] = parts
    # specular highlights on the wet tissue (and instruments): small bright blobs
    spots = np.zeros((HEIGHT, WIDTH), np.float32)
    for _ in range(int(rng.integers(4, 10))):
        spots[int(rng.integers(0, HEIGHT)), int(rng.integers(0, WIDTH))] = 1.0
    spots = np.clip(gaussian_filter(spots, rng.uniform(0.8, 1.6)) * 25, 0, 1)
    image = image * (1 - spots[..., None]) + 255 * spots[..., None]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def _sequences(n_sequences: int, n_test: int) -> list[tuple[int, list[str], bool]]:
    """(number, instrument folders, labelled) of each sequence: training ones 1..n (the real folder lists, cycled
    past 8), then the test ones."""
    out = [(k, SEQUENCE_FOLDERS[(k - 1) % 8 + 1], True) for k in range(1, n_sequences + 1)]
    out += [(n_sequences + i + 1, TEST_INSTRUMENTS[i % 2], False) for i in range(n_test)]
    return out


def write_endovis17(output: Path, n_sequences: int = 8, n_frames: int = 4, n_test: int = 2, n_test_frames: int = 1,
                    seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for number, folders, labelled in _sequences(n_sequences, n_test):
        sequence = output / f"instrument_dataset_{number}"
        for index in range(n_frames if labelled else n_test_frames):
            image, masks = render(rng, folders)
            name = f"frame{index:03d}.png"
            write_png(sequence / "left_frames" / name, image)
            write_png(sequence / "right_frames" / name, np.roll(image, -3, axis=1))  # a stereo twin, unused
            if labelled:
                for folder, parts in masks.items():
                    stored = np.stack([parts] * 3, -1) if number in THREE_CHANNEL_MASKS else parts
                    write_png(sequence / "ground_truth" / folder / name, stored)
        logger.info("wrote %s (%s)", sequence, ", ".join(folders) if labelled else "no ground truth")


def write_dataset704(output: Path, n_sequences: int = 8, n_frames: int = 4, n_test: int = 2, n_test_frames: int = 1,
                     seed: int = 0) -> list[str]:
    """Dataset704_Endovis17 from the same kind of frames: type label maps made with the challenge's rule."""
    rng = np.random.default_rng(seed)
    names, n_train = [], 0
    for number, folders, labelled in _sequences(n_sequences, n_test):
        for index in range(n_frames if labelled else n_test_frames):
            image, masks = render(rng, folders)
            labels = combine_instrument_masks([(f, masks[f]) for f in sorted(masks)])
            case = f"endovis17_{number:02d}{index:03d}"
            images, refs = ("imagesTr", "labelsTr") if labelled else ("imagesTs", "labelsTs")
            write_png(output / images / f"{case}_0000.png", image)
            write_png(output / refs / f"{case}.png", labels)
            names.append(case)
            n_train += labelled
    atomic_write_json(output / "dataset.json", {
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {v: int(k) for k, v in LABELS.items()},
        "numTraining": n_train, "file_ending": ".png", "name": "Dataset704_Endovis17",
        "description": "synthetic demo in the layout of U-Mamba's Dataset704_Endovis17"})
    logger.info("wrote Dataset704 layout: %d training and %d test frames", n_train, len(names) - n_train)
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--layout", choices=["endovis17", "dataset704"], default="endovis17")
    add_size_options(parser, SIZES, {"sequences": "labelled training sequences", "frames": "frames per training "
                                     "sequence", "test_sequences": "test sequences (no ground truth; dataset704: "
                                     "imagesTs with labelsTs)", "test_frames": "frames per test sequence"})
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = chosen_sizes(args, SIZES)
    write = write_endovis17 if args.layout == "endovis17" else write_dataset704
    write(args.output, n["sequences"], n["frames"], n["test_sequences"], n["test_frames"], args.seed)
    logger.info("demo data in %s", args.output)


if __name__ == "__main__":
    main()
