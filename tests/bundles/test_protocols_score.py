# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""python -m xlstm_bundle_tools.score: file matching per dataset naming, the CSV, and the errors that name a case."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from xlstm_bundle_tools.protocols import get_protocol
from xlstm_bundle_tools.score import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"
sys.path.insert(0, str(FIXTURES))
import crafted  # noqa: E402

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def nifti(path: Path, array, spacing) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([*spacing, 1.0])), str(path))


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_amos_folders_nnunet_names_and_our_bundle_names(tmp_path):
    cases = crafted.amos_cases()
    for i, (case, c) in enumerate(cases.items()):
        nifti(tmp_path / "labelsTs" / f"{case}.nii.gz", c["ref"], c["spacing"])
        name = f"{case}.nii.gz" if i == 0 else f"{case}_0000_seg.nii.gz"  # nnU-Net output / our inference output
        nifti(tmp_path / "preds" / name, c["pred"], c["spacing"])
    out = tmp_path / "metrics.csv"
    assert main(["--protocol", "amos", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "labelsTs"),
                 "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    assert list(rows[0])[:3] == ["case", "dice_liver", "dice_right_kidney"]
    assert [r["case"] for r in rows] == [*cases, "mean"]
    organs = ["Liver", "RK", "Spleen", "Pancreas", "Aorta", "IVC", "RAG", "LAG", "Gallbladder", "Esophagus",
              "Stomach", "Duodenum", "LK"]
    keys = get_protocol("amos").keys
    for row in rows[:-1]:  # the official scripts' own (4-decimal) CSV values, read from the same header spacing
        scripts = EXPECTED["amos"]["scripts_rounded"][row["case"]]
        for organ, key in zip(organs, keys):
            if scripts.get(f"{organ}_DSC") is not None:
                assert float(row[f"dice_{key}"]) == pytest.approx(scripts[f"{organ}_DSC"], abs=5.1e-5)
            if scripts.get(f"{organ}_NSD") is not None:
                assert float(row[f"nsd_{key}"]) == pytest.approx(scripts[f"{organ}_NSD"], abs=5.1e-5)
    assert rows[2]["dice_inferior_vena_cava"] == "nan"  # amos_0003: single-slice IVC


def test_a_missing_prediction_names_the_case_and_writes_nothing(tmp_path, capsys):
    for case in ("amos_0001", "amos_0002", "amos_0003"):
        nifti(tmp_path / "ref" / f"{case}.nii.gz", np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    nifti(tmp_path / "pred" / "amos_0001.nii.gz", np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    out = tmp_path / "metrics.csv"
    assert main(["--protocol", "amos", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out",
                 str(out), "--quiet"]) == 2
    assert f"{tmp_path / 'pred'}: no prediction for 2 of 3 cases: amos_0002, amos_0003." in capsys.readouterr().err
    assert not out.exists()


def test_ambiguous_and_mismatched_predictions_are_errors(tmp_path):
    nifti(tmp_path / "ref" / "c1.nii.gz", np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    nifti(tmp_path / "pred" / "c1_seg.nii.gz", np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    nifti(tmp_path / "pred" / "c1-seg.nii.gz", np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
    args = ["--protocol", "amos", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out",
            str(tmp_path / "m.csv"), "--quiet"]
    assert main(args) == 2
    (tmp_path / "pred" / "c1-seg.nii.gz").unlink()
    nifti(tmp_path / "pred" / "c1_seg.nii.gz", np.zeros((4, 4, 5), np.uint8), (1, 1, 1))
    with pytest.raises(SystemExit):
        main(["--protocol", "nope", *args[2:]])
    assert main(args) == 2 and not (tmp_path / "m.csv").exists()


def test_brats_case_folders_and_segmamba_stacks(tmp_path, capsys):
    cases = crafted.brats_cases()
    for case, c in cases.items():
        nifti(tmp_path / "BraTS2023" / case / f"{case}-seg.nii.gz", c["ref"], c["spacing"])
        regions = np.stack([np.isin(c["pred"], v) for v in ((1, 3), (1, 2, 3), (3,))], axis=-1).astype(np.uint8)
        nifti(tmp_path / "segmamba" / f"{case}.nii.gz", regions, c["spacing"])  # (X, Y, Z, 3) TC, WT, ET
        nifti(tmp_path / "ours" / f"{case}-t2w_seg.nii.gz", c["pred"], c["spacing"])
    out = tmp_path / "segmamba.csv"
    assert main(["--protocol", "brats-segmamba", "--pred", str(tmp_path / "segmamba"), "--ref",
                 str(tmp_path / "BraTS2023"), "--out", str(out), "--quiet"]) == 0
    rows = {r["case"]: r for r in read(out)}
    for case, regions in EXPECTED["brats_segmamba"].items():
        for region, o in regions.items():
            assert float(rows[case][f"dice_{region.lower()}"]) == pytest.approx(o["dice"], abs=1e-6)
            assert float(rows[case][f"hd95_{region.lower()}"]) == pytest.approx(o["hd95"], abs=1e-6)
    out = tmp_path / "lesionwise.csv"
    assert main(["--protocol", "brats2023", "--pred", str(tmp_path / "ours"), "--ref", str(tmp_path / "BraTS2023"),
                 "--out", str(out), "--option", "challenge=MEN", "--quiet"]) == 0
    rows = {r["case"]: r for r in read(out)}
    for case in cases:
        official = EXPECTED["brats2023"][case]["BraTS-MEN"]["ET"]
        assert float(rows[case]["dice_et"]) == pytest.approx(official["LesionWise_Score_Dice"], abs=1e-6)
        assert float(rows[case]["hd95_et"]) == pytest.approx(official["LesionWise_Score_HD95"], abs=1e-6)
    assert "5 cases scored with brats2023" in capsys.readouterr().out


def test_png_protocols_match_by_name(tmp_path):
    for case, c in crafted.endovis_cases().items():
        for kind, sub in (("ref", "labels"), ("pred", "preds")):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(c[kind].astype(np.uint8)).save(tmp_path / sub / f"{case}{'_seg' if kind == 'pred' else ''}.png")
    out = tmp_path / "endovis.csv"
    assert main(["--protocol", "endovis", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "labels"),
                 "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    mean = float(rows[-1]["mean_nsd"])
    assert mean == pytest.approx(np.mean([v["NSD"] for v in EXPECTED["endovis"].values()]), abs=1e-6)

    yy, xx = np.mgrid[0:120, 0:160]
    ref = ((yy - 60) ** 2 / 40**2 + (xx - 80) ** 2 / 55**2 <= 1).astype(np.uint8) * 255
    pred = ((yy - 62) ** 2 / 38**2 + (xx - 78) ** 2 / 58**2 <= 1).astype(np.uint8) * 255
    (tmp_path / "isic_gt").mkdir(), (tmp_path / "isic_pred").mkdir()
    Image.fromarray(ref).save(tmp_path / "isic_gt" / "ISIC_0000001_segmentation.png")
    Image.fromarray(pred).save(tmp_path / "isic_pred" / "ISIC_0000001_seg.png")
    out = tmp_path / "isic.csv"
    assert main(["--protocol", "isic", "--pred", str(tmp_path / "isic_pred"), "--ref", str(tmp_path / "isic_gt"),
                 "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    assert [r["case"] for r in rows] == ["ISIC_0000001", "mean", "pooled"]
    row = get_protocol("isic").score(pred / 255.0, ref / 255.0)
    assert float(rows[-1]["dice256_lesion"]) == pytest.approx(row["dice256_lesion"], abs=1e-6)


def test_cells_tiff_instance_masks(tmp_path):
    for case, c in crafted.cells_cases().items():
        for kind, sub in (("ref", "labels"), ("pred", "preds")):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(c[kind].astype(np.int32)).save(tmp_path / sub / f"{case}_label.tiff")
    out = tmp_path / "cells.csv"
    assert main(["--protocol", "cells", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "labels"),
                 "--out", str(out), "--quiet"]) == 0
    rows = {r["case"]: r for r in read(out)}
    for case, o in ((k, v) for k, v in EXPECTED["cells"].items() if k != "cell_big"):
        assert float(rows[case]["f1_cell"]) == pytest.approx(o["f1"], abs=1e-6)
    assert float(rows["mean"]["f1_cell"]) == pytest.approx(
        np.mean([v["f1"] for k, v in EXPECTED["cells"].items() if k != "cell_big"]), abs=1e-6)
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "preds" / "cell_00001_label.tiff")
    assert main(["--protocol", "cells", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "labels"),
                 "--out", str(out), "--quiet"]) == 2  # a float instance mask
