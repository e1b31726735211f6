# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Evaluation protocols against the papers' own evaluators and independent packages (agreement to 1e-6).

* Frozen values (tests/fixtures/metrics/expected.json): the official code run outside the project on the crafted cases
  of crafted.py: xLSTM-UNet's SurfaceDice.py / abdomen_*_Eval.py / endoscopy_*_Eval.py loop, BraTS-2023-Metrics'
  get_LesionWiseResults, NeurIPS-CellSeg's compute_metric.py, SegMamba's cal_metric with medpy. README.md there says
  how.
* Live, where installed (the ``eval-ref`` extra, part of ``dev``): DeepMind's ``surface-distance`` and ``medpy``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xlstm_bundle_tools.protocols import get_protocol
from xlstm_bundle_tools.protocols.cells import match_instances
from xlstm_bundle_tools.protocols.surface import (border_distances, pooled_percentile, robust_hausdorff,
                                                  surface_dice, surfel_distances)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"
sys.path.insert(0, str(FIXTURES))
import crafted  # noqa: E402

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
OFFICIAL_ORGANS = ["Liver", "RK", "Spleen", "Pancreas", "Aorta", "IVC", "RAG", "LAG", "Gallbladder", "Esophagus",
                   "Stomach", "Duodenum", "LK"]


def close(ours, theirs, tol=1e-6):
    if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
        return math.isnan(ours)
    return abs(ours - theirs) <= tol


def random_masks(seed, n=12):
    """Pairs of irregular, partly overlapping masks at anisotropic spacings (for the live package checks)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = tuple(int(s) for s in rng.integers(6, 18, 3))
        a = ndimage.binary_opening(rng.random(shape) < 0.35) | (rng.random(shape) < 0.02)
        b = ndimage.binary_closing(rng.random(shape) < 0.3) & (rng.random(shape) < 0.8)
        if a.any() and b.any():
            yield a, b, tuple(float(s) for s in rng.choice([0.7, 1.0, 1.2, 2.5, 6.0], 3))


# ------------------------------------------------------------------------------------------------ surface semantics
def test_surfel_nsd_and_hd95_match_deepmind_surface_distance():
    sd = pytest.importorskip("surface_distance")
    for a, b, spacing in random_masks(0):
        theirs = sd.compute_surface_distances(a, b, spacing)
        ours = surfel_distances(a, b, spacing)
        for tol in (1.0, 2.0, 3.0, 5.0):
            assert close(surface_dice(ours, tol), sd.compute_surface_dice_at_tolerance(theirs, tol))
        assert close(robust_hausdorff(ours, 95), sd.compute_robust_hausdorff(theirs, 95))


def test_border_hd95_matches_medpy():
    binary = pytest.importorskip("medpy.metric.binary")
    for a, b, spacing in random_masks(1):
        assert close(pooled_percentile(border_distances(a, b, spacing), 95), binary.hd95(b, a, voxelspacing=spacing))
    # medpy's hd95 pools both directions; the max of the directed 95th percentiles (MONAI) is another number
    a, b = np.zeros((20, 20, 20), bool), np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15], b[5:15, 5:15, 5:12] = True, True
    b[2, 2, 2] = True
    d = border_distances(a, b, (1, 1, 1))
    assert close(pooled_percentile(d, 95), binary.hd95(b, a))


def test_nsd_regression_ellipsoid_pair_subvoxel_vs_edge_voxels():
    """The issue's example: at 1.2 × 1.2 × 6 mm, counting edge voxels (MONAI's default, what we did) underestimates
    NSD; surfels reproduce DeepMind (values frozen from xLSTM-UNet's SurfaceDice.py)."""
    from monai.metrics import compute_surface_dice

    ref, pred, spacing = crafted.ellipsoid_pair()
    d = surfel_distances(ref, pred, spacing)
    p, g = torch.as_tensor(pred)[None, None].float(), torch.as_tensor(ref)[None, None].float()
    for tol, official in EXPECTED["amos"]["ellipsoid_nsd"].items():
        ours = surface_dice(d, float(tol))
        assert close(ours, official)
        edge = compute_surface_dice(torch.cat([1 - p, p], 1), torch.cat([1 - g, g], 1), [float(tol)],
                                    include_background=False, spacing=spacing).item()
        assert ours - edge > 0.02  # 0.799 / 0.912 / 0.968 against 0.703 / 0.841 / 0.939
    assert [round(surface_dice(d, t), 3) for t in (2, 3, 5)] == [0.799, 0.912, 0.968]


# ------------------------------------------------------------------------------------------------ amos
def test_amos_matches_the_official_evaluation():
    protocol = get_protocol("amos")
    rows = []
    for case, c in crafted.amos_cases().items():
        row = protocol.score(c["pred"], c["ref"], c["spacing"])
        official = EXPECTED["amos"]["cases"][case]
        # The scripts read the spacing from the NIfTI header, where it is float32 (0.8 -> 0.800000011920929): a
        # distance of exactly 5 mm then lies just past a 5 mm tolerance. Our score command reads it the same way.
        from_header = protocol.score(c["pred"], c["ref"], tuple(float(np.float32(s)) for s in c["spacing"]))
        rounded = EXPECTED["amos"]["scripts_rounded"].get(case, {})  # the scripts' own CSVs, 4 decimals
        for key, organ in zip(protocol.keys, OFFICIAL_ORGANS):
            assert close(row[f"dice_{key}"], official[f"{organ}_DSC"]), (case, organ)
            assert close(row[f"nsd_{key}"], official[f"{organ}_NSD"]), (case, organ)
            for metric, column in (("DSC", f"dice_{key}"), ("NSD", f"nsd_{key}")):
                if rounded.get(f"{organ}_{metric}") is not None:
                    assert close(from_header[column], rounded[f"{organ}_{metric}"], 5.1e-5), (case, organ, metric)
        rows.append({"case": case, **row})
    # The empty rules and the slab rule, as the crafted case sets them up.
    first = rows[0]
    assert first["dice_spleen"] == 0 and first["nsd_spleen"] == 0  # missed organ
    assert first["dice_left_adrenal_gland"] == 0 and first["nsd_left_adrenal_gland"] == 0  # only predicted
    assert first["dice_gallbladder"] == 1 and first["nsd_gallbladder"] == 1  # absent from both
    assert first["dice_esophagus"] == 0  # predicted only outside the reference's slab
    assert math.isnan(rows[2]["dice_inferior_vena_cava"])  # single-slice organ: empty slab
    mean = protocol.summarize(rows)["mean"]
    per_organ = [np.nanmean([r[f"dice_{k}"] for r in rows]) for k in protocol.keys]
    assert close(mean["mean_dice"], float(np.mean(per_organ)))  # the mean of per-organ means


def test_organ_dice_nsd_wrapper_is_the_amos_protocol():
    from monai.data import MetaTensor
    from xlstm_bundle_tools import OrganDiceNSD

    case = crafted.amos_cases()["amos_0001"]
    names = ["liver", "right kidney", "spleen", "pancreas", "aorta", "inferior vena cava", "right adrenal gland",
             "left adrenal gland", "gallbladder", "esophagus", "stomach", "duodenum", "left kidney"]
    tolerance = dict(zip(names, (5, 3, 3, 5, 2, 2, 2, 2, 2, 3, 5, 7, 3)))
    metric = OrganDiceNSD(names, tolerance, labelled_slices_only=["aorta", "inferior vena cava", "esophagus"],
                          label_key="native_label")
    affine = torch.diag(torch.tensor([*case["spacing"], 1.0], dtype=torch.float64))
    row = metric({"pred": torch.as_tensor(case["pred"])[None],
                  "native_label": MetaTensor(torch.as_tensor(case["ref"])[None], affine=affine)})
    official = EXPECTED["amos"]["cases"]["amos_0001"]
    assert close(row["nsd_liver"], official["Liver_NSD"]) and close(row["nsd_aorta"], official["Aorta_NSD"])
    assert close(row["dice_inferior_vena_cava"], official["IVC_DSC"])


# ------------------------------------------------------------------------------------------------ brats
@pytest.mark.parametrize("challenge", ["GLI", "MEN", "MET"])
def test_brats2023_lesion_wise_matches_the_challenge_code(challenge):
    protocol = get_protocol("brats2023", challenge=challenge)
    for case, c in crafted.brats_cases().items():
        row = protocol.score(c["pred"], c["ref"], c["spacing"])
        official = EXPECTED["brats2023"][case][f"BraTS-{challenge}"]
        for region in ("WT", "TC", "ET"):
            r, o = region.lower(), official[region]
            assert close(row[f"dice_{r}"], o["LesionWise_Score_Dice"]), (case, region)
            assert close(row[f"hd95_{r}"], o["LesionWise_Score_HD95"]), (case, region)
            assert (row[f"num_tp_{r}"], row[f"num_fp_{r}"], row[f"num_fn_{r}"]) == (o["Num_TP"], o["Num_FP"],
                                                                                o["Num_FN"]), (case, region)
            assert close(row[f"legacy_dice_{r}"], o["Legacy_Dice"]) and close(row[f"legacy_hd95_{r}"],
                                                                             o["Legacy_HD95"])


def test_brats2023_penalties():
    protocol = get_protocol("brats2023")
    cases = crafted.brats_cases()
    fp_only = protocol.score(cases["BraTS-GLI-00002-000"]["pred"], cases["BraTS-GLI-00002-000"]["ref"])
    assert fp_only["dice_et"] == 0 and fp_only["hd95_et"] == 374  # no ET in the reference, one false lesion
    empty = protocol.score(cases["BraTS-GLI-00005-000"]["pred"], cases["BraTS-GLI-00005-000"]["ref"])
    assert all(empty[f"dice_{r}"] == 1 and empty[f"hd95_{r}"] == 0 for r in ("wt", "tc", "et"))
    with pytest.raises(ValueError, match="unknown sub-challenge 'XYZ'"):
        get_protocol("brats2023", challenge="XYZ")


def test_brats_segmamba_matches_its_medpy_rule():
    protocol = get_protocol("brats-segmamba")
    for case, c in crafted.brats_cases().items():
        row = protocol.score(c["pred"], c["ref"], c["spacing"])
        for region, o in EXPECTED["brats_segmamba"][case].items():
            assert close(row[f"dice_{region.lower()}"], o["dice"]) and close(row[f"hd95_{region.lower()}"], o["hd95"])
    # both empty is 0 / 50 too (SegMamba scores any empty side so)
    empty = protocol.score(np.zeros((8, 8, 8)), np.zeros((8, 8, 8)))
    assert empty["dice_et"] == 0 and empty["hd95_et"] == 50


def test_brats_evaluation_package_agrees_where_its_definitions_coincide():
    """PyPI brats-evaluation 0.0.10 (panoptica, GLI config; frozen, it pins numpy < 2.3): its global DSC is the
    whole-region Dice (our brats2023 legacy_dice and brats-segmamba dice), and its global HD95 is medpy's pooled
    border HD95 at the header spacing (brats-segmamba with use_header_spacing), not DeepMind's surfel HD95."""
    lesion_wise = get_protocol("brats2023")
    segmamba = get_protocol("brats-segmamba", use_header_spacing=True)
    compared = 0
    for case, c in crafted.brats_cases().items():
        row, seg = lesion_wise.score(c["pred"], c["ref"], c["spacing"]), segmamba.score(c["pred"], c["ref"],
                                                                                         c["spacing"])
        for region, o in EXPECTED["brats_evaluation"][case].items():
            if o["global_bin_dsc"] is None:  # both empty: NaN there, 1 in the challenge code, 0 in SegMamba's
                assert row[f"legacy_dice_{region}"] == 1 and seg[f"dice_{region}"] == 0
                continue
            assert close(row[f"legacy_dice_{region}"], o["global_bin_dsc"])
            if o["global_bin_hd95"] != "inf":
                assert close(seg[f"hd95_{region}"], o["global_bin_hd95"])
                compared += 1
    assert compared >= 6


def test_brats_segmamba_live_medpy_and_region_stacks():
    metric = pytest.importorskip("medpy.metric")
    protocol = get_protocol("brats-segmamba")
    c = crafted.brats_cases()["BraTS-GLI-00001-000"]
    row = protocol.score(c["pred"], c["ref"])
    gt, pred = np.isin(c["ref"], (1, 3)), np.isin(c["pred"], (1, 3))
    assert close(row["dice_tc"], metric.binary.dc(pred, gt))
    assert close(row["hd95_tc"], metric.binary.hd95(pred, gt, voxelspacing=[1, 1, 1]))
    stack = np.stack([np.isin(c["pred"], v) for v in ((1, 3), (1, 2, 3), (3,))]).astype(np.uint8)
    assert protocol.score(stack, c["ref"]) == row  # SegMamba's saved (TC, WT, ET) stack
    assert protocol.score(np.moveaxis(stack, 0, -1), c["ref"]) == row  # the same read by nibabel


# ------------------------------------------------------------------------------------------------ endovis, isic
def test_endovis_matches_the_official_loop_and_skips_empty_frames():
    protocol = get_protocol("endovis")
    rows = []
    for case, c in crafted.endovis_cases().items():
        row = protocol.score(c["pred"], c["ref"])
        official = EXPECTED["endovis"][case]
        assert close(row["mean_dice"], official["DSC"]) and close(row["mean_nsd"], official["NSD"])
        for label, o in official["labels"].items():
            key = protocol.keys[int(label) - 1]
            assert close(row[f"dice_{key}"], o["dice"]) and close(row[f"nsd_{key}"], o["nsd"])
        rows.append(row)
    empty = protocol.score(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    assert math.isnan(empty["mean_dice"]) and empty["labels_scored"] == 0  # the official code would stop here
    mean = protocol.summarize(rows + [empty])["mean"]
    assert close(mean["mean_dice"], float(np.mean([EXPECTED["endovis"][c]["DSC"] for c in EXPECTED["endovis"]])))


def test_isic_pools_pixels_at_256_like_vm_unet():
    protocol = get_protocol("isic")
    yy, xx = np.mgrid[0:300, 0:400]
    ref = (((yy - 150) / 90.0) ** 2 + ((xx - 200) / 130.0) ** 2 <= 1).astype(np.float64)
    pred = (((yy - 160) / 85.0) ** 2 + ((xx - 190) / 140.0) ** 2 <= 1).astype(np.float64)
    row = protocol.score(pred, ref)
    # VM-UNet: torchvision TF.resize (bilinear, no antialias on tensors) of mask/255 to 256², then >= 0.5.
    def resize(a):
        t = torch.as_tensor(a)[None, None]
        return torch.nn.functional.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False)[0, 0].numpy()
    p, g = resize(pred) >= 0.5, resize(ref) >= 0.5
    tp, fp, fn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum()
    assert row["dice256_lesion"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    assert row["tp256_lesion"] + row["fp256_lesion"] + row["fn256_lesion"] + row["tn256_lesion"] == 256 * 256
    full_tp = ((pred >= 0.5) & (ref >= 0.5)).sum()
    assert row["tp_lesion"] == full_tp and row["tp_lesion"] + row["fn_lesion"] == ref.sum()
    other = protocol.score(np.zeros_like(ref), ref)
    pooled = protocol.summarize([row, other])["pooled"]
    tp2, fp2, fn2 = row["tp256_lesion"], row["fp256_lesion"], row["fn256_lesion"] + other["fn256_lesion"]
    assert pooled["dice256_lesion"] == pytest.approx(2 * tp2 / (2 * tp2 + fp2 + fn2), abs=1e-12)


# ------------------------------------------------------------------------------------------------ cells
def test_cells_f1_matches_the_challenge_script():
    protocol = get_protocol("cells")
    for case, c in crafted.cells_cases().items():
        row = protocol.score(c["pred"], c["ref"])
        o = EXPECTED["cells"][case]
        assert (row["tp_cell"], row["fp_cell"], row["fn_cell"]) == (o["tp"], o["fp"], o["fn"]), case
        assert (row["n_ref_cell"], row["n_pred_cell"]) == (o["true_num"], o["pred_num"]), case
        assert close(row["f1_cell"], o["f1"]) and close(row["precision_cell"], o["precision"])
        assert close(row["recall_cell"], o["recall"]) and close(row["dice_cell"], o["dice_rounded"], 5.1e-5)
        assert close(row["f1_cell"], o["f1_rounded"], 5.1e-5)


def test_cells_tiles_images_of_25_megapixels_like_the_challenge():
    c = crafted.big_cells_case()["cell_big"]
    row = get_protocol("cells").score(c["pred"], c["ref"])
    o = EXPECTED["cells"]["cell_big"]
    assert (row["tp_cell"], row["fp_cell"], row["fn_cell"], row["n_ref_cell"]) == (o["tp"], o["fp"], o["fn"],
                                                                                   o["true_num"])
    assert close(row["f1_cell"], o["f1"])


def test_cells_matching_counts_pairs_above_half_iou():
    """Independent of the challenge code: with IoU > 0.5 a cell can match at most one other, so TP is the number of
    pairs above 0.5 (brute force over all pairs), whatever the assignment algorithm."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(30):
        ref, _ = ndimage.label(ndimage.binary_opening(rng.random((40, 40)) < 0.55))
        shifted = np.roll(ref, tuple(int(s) for s in rng.integers(-2, 3, 2)), axis=(0, 1))
        pred, _ = ndimage.label(ndimage.binary_erosion(shifted > 0) | (rng.random((40, 40)) < 0.05))
        ious = [np.count_nonzero((ref == i) & (pred == j)) / np.count_nonzero((ref == i) | (pred == j))
                for i in range(1, ref.max() + 1) for j in range(1, pred.max() + 1)]
        if 0.5 in ious:
            continue  # a tie at exactly 0.5: the assignment decides, not the count
        pairs = sum(iou > 0.5 for iou in ious)
        tp, fp, fn = match_instances(ref, pred)
        assert tp == pairs and fp == pred.max() - pairs and fn == ref.max() - pairs
        checked += 1
    assert checked >= 15


def test_cells_interior_predictions_become_8_connected_instances():
    ref = np.zeros((20, 20), np.int32)
    ref[5:9, 5:9], ref[9:13, 9:13] = 1, 2  # two cells touching at a corner
    semantic = np.zeros((20, 20), np.uint8)
    semantic[5:13, 5:13] = 2
    semantic[5:9, 5:9], semantic[9:13, 9:13] = 1, 1  # interiors touch diagonally: one 8-connected instance
    row = get_protocol("cells", pred_kind="interior").score(semantic, ref)
    assert row["n_pred_cell"] == 1 and row["n_ref_cell"] == 2 and row["fn_cell"] == 1
