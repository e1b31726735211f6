# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Every demo phantom puts sided anatomy on the correct side of the patient, in world coordinates.

NIfTI world coordinates are RAS+ (nibabel, MONAI): +x points to the patient's right. A label named "left ..." or
"right ...", or an organ that anatomy puts on one side, must have its centroid on that side of the body's midline
(the centre of the field of view, where every phantom centres its body). The test covers every bundle: it reads the
label names from each bundle's metadata and runs the bundle's own demo generator and preparation script (the
``--size verify`` contract), so a new bundle with sided labels is checked without being listed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))

# organs on one side in normal anatomy (situs solitus): +1 the patient's right, -1 the left
ANATOMICAL_SIDE = {"liver": +1, "gallbladder": +1, "inferior vena cava": +1, "spleen": -1, "stomach": -1}
MARGIN_MM = 10.0  # beyond the phantoms' random shift of the whole body


def side_of(name: str) -> int | None:
    words = name.lower().split()
    if "right" in words:
        return +1
    if "left" in words:
        return -1
    return ANATOMICAL_SIDE.get(name.lower())


def sided_labels(bundle: Path) -> dict[int, tuple[str, int]]:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    names = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    return {int(v): (n, side_of(n)) for v, n in names.items() if side_of(n) is not None}


def test_sided_labels_are_read_from_the_metadata():
    amos = sided_labels(REPO / "bundles" / "xlstm_unet_amos3d")
    assert amos[2] == ("right kidney", +1) and amos[13] == ("left kidney", -1) and amos[3] == ("spleen", -1)
    assert amos[7] == ("right adrenal gland", +1) and amos[8] == ("left adrenal gland", -1) and len(amos) == 9
    # the other bundles' labels have no side: tumour sub-regions (BraTS), a skin lesion (ISIC)
    assert sided_labels(REPO / "bundles" / "xlstm_unet_brats") == {}
    assert sided_labels(REPO / "bundles" / "xlstm_vmunet_isic") == {}


def prepared_demo(bundle: Path, work: Path) -> Path:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for cmd in ([str(bundle / "scripts" / "make_demo_data.py"), "--output", str(work / "raw"), "--size", "verify"],
                [str(bundle / "scripts" / "prepare_data.py"), "--source", str(work / "raw"), "--output",
                 str(work / "prepared")]):
        subprocess.run([sys.executable, *cmd], check=True, capture_output=True, env=env)
    return work / "prepared" / "datalist.json"


def world_centroid(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    voxels = np.argwhere(label == value)
    return (affine @ np.append(voxels.mean(axis=0), 1.0))[:3]


def assert_demo_sides(bundle: Path, work: Path) -> int:
    """Run the bundle's demo generator and preparation; assert every sided label's side; return the cases checked."""
    labels = sided_labels(bundle)
    names = {n: int(v) for v, n in json.loads((bundle / "configs" / "metadata.json").read_text())[
        "network_data_format"]["outputs"]["pred"]["channel_def"].items()}
    datalist = json.loads(prepared_demo(bundle, work).read_text())
    cases = [e for e in datalist["training"] if "label" in e]
    assert cases
    for entry in cases:
        path = Path(entry["label"])
        path = path if path.is_absolute() else work / "prepared" / path
        image = nib.load(str(path))
        label = np.asarray(image.dataobj)
        assert label.ndim == 3, f"{path}: sided labels need a 3D volume with an affine to check"
        midline_x = (image.affine @ np.append((np.asarray(label.shape) - 1) / 2, 1.0))[0]
        for value, (name, side) in labels.items():
            assert (label == value).any(), f"{path}: no {name}"
            x = world_centroid(label, image.affine, value)[0] - midline_x
            assert side * x > MARGIN_MM, (f"{path}: {name} centroid at x = {x:+.0f} mm from the midline, on the "
                                          f"patient's {'right' if x > 0 else 'left'} (RAS: +x is the right)")
        if {"aorta", "inferior vena cava"} <= set(names):
            aorta = world_centroid(label, image.affine, names["aorta"])[0]
            ivc = world_centroid(label, image.affine, names["inferior vena cava"])[0]
            assert aorta < ivc, f"{path}: the aorta (x = {aorta:.0f}) must lie left of the IVC (x = {ivc:.0f})"
    return len(cases)


SIDED = [b for b in BUNDLES if sided_labels(b)]


@pytest.mark.parametrize("bundle", SIDED, ids=[b.name for b in SIDED])
def test_demo_organs_lie_on_their_side_in_ras_world_coordinates(bundle, tmp_path):
    assert assert_demo_sides(bundle, tmp_path) >= 5


def test_overlays_show_axial_slices_in_the_radiological_convention():
    """Patient's right (+x in RAS) on the viewer's left, anterior (+y) at the top, as clinicians read them."""
    from xlstm_bundle_tools.pictures import radiological

    a = np.zeros((6, 4))  # a[x, y]
    a[5, 1] = 1  # far to the patient's right, posterior
    a[0, 3] = 2  # far to the patient's left, most anterior
    shown = radiological(a)
    assert shown.shape == (4, 6)  # rows: y, columns: x
    assert shown[2, 0] == 1  # left column, lower half
    assert shown[0, 5] == 2  # top row, right column
    colours = np.stack([a, a, a], axis=-1)  # label colours (x, y, rgb) turn the same way
    assert np.array_equal(radiological(colours)[..., 0], shown)
