# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Folder inference: one bad case among good ones fails alone with its reason, no partial outputs, reruns resume."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from bundle_scripts import BUNDLES, load_bundle_script
from xlstm_bundle_tools import segment_folder
from xlstm_bundle_tools.segment_folder import STATUS_FILE, find_cases

AMOS = BUNDLES / "xlstm_unet_amos3d"
ISIC = BUNDLES / "xlstm_vmunet_isic"


def random_weights(bundle: Path, path: Path) -> Path:
    """Seeded random weights for the bundle's demo-sized network (inference.json + demo.json)."""
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "demo.json")])
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def amos_case(seed: int = 0, size=(48, 40, 12)) -> tuple[np.ndarray, np.ndarray]:
    """A centre block of one synthetic AMOS MR case (int16 image, its affine), smaller than the demo patch."""
    image, _, affine = load_bundle_script(AMOS.name, "make_demo_data").make_case(np.random.default_rng(seed), "MR")
    start = [(n - s) // 2 for n, s in zip(image.shape, size)]
    block = image[tuple(slice(b, b + s) for b, s in zip(start, size))]
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.asarray(start) + affine[:3, 3]
    return np.ascontiguousarray(block), shifted


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def read_status(output: Path) -> dict[str, dict]:
    with open(output / STATUS_FILE, newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def run(bundle: Path, weights: Path, source: Path, output: Path, *extra: str) -> int:
    return segment_folder.main(["--bundle", str(bundle), "--config", str(bundle / "configs" / "demo.json"),
                                "--weights", str(weights), "--input", str(source), "--output", str(output),
                                "--device", "cpu", "--no-progress", *extra])


@pytest.fixture(scope="module")
def amos_folder(tmp_path_factory):
    """Two good AMOS cases (one in a sub-folder) and four bad ones, one of each kind."""
    root = tmp_path_factory.mktemp("amos_folder")
    source = root / "scans"
    image, affine = amos_case(0)
    save_nifti(source / "good_a.nii.gz", image, affine)
    save_nifti(source / "site2" / "good_b.nii.gz", *amos_case(1))
    good = (source / "good_a.nii.gz").read_bytes()
    (source / "corrupt.nii.gz").write_bytes(good[: len(good) // 2])  # truncated download
    nan = image.astype(np.float32)
    nan[3:5, 3:5, 2] = np.nan
    save_nifti(source / "nan_voxels.nii.gz", nan, affine)
    save_nifti(source / "two_channels.nii.gz", np.stack([image, image], axis=-1), affine)
    save_nifti(source / "one_slice.nii.gz", image[:, :, 5], affine)
    (source / "notes.txt").write_text("not an image: ignored")
    return root, source, random_weights(AMOS, root / "weights.pt")


def test_find_cases_lists_images_and_dicom_folders_not_other_files(amos_folder):
    _, source, _ = amos_folder
    assert [name for name, _ in find_cases(source)] == [
        "corrupt", "good_a", "nan_voxels", "one_slice", "site2/good_b", "two_channels"]


def test_bad_cases_fail_alone_with_their_reason_and_reruns_skip_finished_ones(amos_folder):
    root, source, weights = amos_folder
    output = root / "masks"
    assert run(AMOS, weights, source, output) == 1  # some case failed
    status = read_status(output)
    assert {name: row["status"] for name, row in status.items()} == {
        "good_a": "ok", "site2/good_b": "ok",
        "corrupt": "failed", "nan_voxels": "failed", "two_channels": "failed", "one_slice": "failed"}
    reasons = {name: row["reason"] for name, row in status.items()}
    assert reasons["corrupt"].startswith(f"{source / 'corrupt.nii.gz'}: ")
    assert "ended before the end-of-stream" in reasons["corrupt"]
    assert reasons["nan_voxels"] == f"{source / 'nan_voxels.nii.gz'}: contains 4 NaN and 0 infinite voxels out of 23040."
    assert reasons["two_channels"] == f"{source / 'two_channels.nii.gz'}: 2 channels; this bundle expects 1 (MRI)."
    assert reasons["one_slice"] == (f"{source / 'one_slice.nii.gz'}: 2D image of shape (48, 40); this bundle "
                                    "segments 3D images.")
    # every good case has its mask, on its own grid; nothing else was written (no partial files, no scratch)
    assert status["site2/good_b"]["output"] == "site2/good_b_seg.nii.gz"
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert written == sorted([STATUS_FILE, "good_a_seg.nii.gz", "site2/good_b_seg.nii.gz"])
    mask, image = nib.load(str(output / "good_a_seg.nii.gz")), nib.load(str(source / "good_a.nii.gz"))
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine, atol=1e-4)
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(mask.dataobj))) <= set(range(14))

    # rerun: finished cases are skipped and left untouched, failed ones are tried again
    stamp = os.stat(output / "good_a_seg.nii.gz").st_mtime_ns
    assert run(AMOS, weights, source, output) == 1
    again = read_status(output)
    assert again["good_a"]["status"] == again["site2/good_b"]["status"] == "skipped"
    assert again["good_a"]["output"] == "good_a_seg.nii.gz" and again["corrupt"]["status"] == "failed"
    assert os.stat(output / "good_a_seg.nii.gz").st_mtime_ns == stamp

    # a deleted output is redone; --redo redoes everything
    (output / "site2" / "good_b_seg.nii.gz").unlink()
    run(AMOS, weights, source, output)
    assert read_status(output)["site2/good_b"]["status"] == "ok"
    assert read_status(output)["good_a"]["status"] == "skipped"
    run(AMOS, weights, source, output, "--redo")
    assert read_status(output)["good_a"]["status"] == "ok"
    assert os.stat(output / "good_a_seg.nii.gz").st_mtime_ns != stamp


def test_all_good_exits_zero_and_an_interrupted_case_leaves_no_output(amos_folder, tmp_path, monkeypatch):
    _, source, weights = amos_folder
    good = tmp_path / "good"
    good.mkdir()
    for name in ("good_a.nii.gz", "site2/good_b.nii.gz"):
        (good / Path(name).name).write_bytes((source / name).read_bytes())
    assert run(AMOS, weights, good, tmp_path / "all_good") == 0

    calls = []
    original = segment_folder.FolderSegmenter.__call__

    def crash_on_second(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C in the middle of case 2
        return original(self, path)

    monkeypatch.setattr(segment_folder.FolderSegmenter, "__call__", crash_on_second)
    output = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run(AMOS, weights, good, output)
    assert (output / "good_a_seg.nii.gz").is_file() and not (output / "good_b_seg.nii.gz").exists()
    assert set(read_status(output)) == {"good_a"}  # the status file lists the finished case only
    monkeypatch.setattr(segment_folder.FolderSegmenter, "__call__", original)
    assert run(AMOS, weights, good, output) == 0
    status = read_status(output)
    assert status["good_a"]["status"] == "skipped" and status["good_b"]["status"] == "ok"
    assert not any(".partial" in p.name for p in output.rglob("*"))


def test_2d_bundle_segments_pictures_and_rejects_grayscale(tmp_path):
    source = tmp_path / "pictures"
    source.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(source / "lesion.png")
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(source / "photo.jpg")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(source / "gray.png")
    output = tmp_path / "masks"
    assert run(ISIC, random_weights(ISIC, tmp_path / "w.pt"), source, output) == 1
    status = read_status(output)
    assert status["gray"]["reason"] == f"{source / 'gray.png'}: 1 channel; this bundle expects 3 (R, G, B)."
    assert status["lesion"]["status"] == status["photo"]["status"] == "ok"
    mask = Image.open(output / status["lesion"]["output"])
    assert mask.size == (128, 96) and set(np.unique(np.asarray(mask))) <= {0, 255}
