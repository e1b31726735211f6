# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_unet_abdomenmr2d: preparation of both releases, slice sampling, slice-wise 3D inference geometry, bad input.

The bundle trains a 2D network on axial slices of 3D volumes and segments 3D volumes slice by slice. The geometry
tests run inference.json (demo sizes, untrained weights: only the grid matters) on volumes with anisotropic, flipped
and oblique affines and on volumes smaller than the patch in-plane, and compare the written mask's grid with the
input's; the slice tests compare the bundle's inferer with an independent per-slice loop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import CacheDataset

from xlstm_bundle_tools import InputError
from xlstm_bundle_tools.abdomen_mr import MR_ORGANS
from bundle_scripts import load_bundle_script

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "xlstm_unet_abdomenmr2d"
CONFIGS = BUNDLE / "configs"
demo = load_bundle_script(BUNDLE.name, "make_demo_data")
prep = load_bundle_script(BUNDLE.name, "prepare_data")


@pytest.fixture(scope="module")
def dataset702(tmp_path_factory):
    """The demo in Dataset702 layout, prepared; the smallest set 5 folds accept (one case per fold)."""
    root = tmp_path_factory.mktemp("abdomenmr")
    demo.main(["--output", str(root / "raw"), "--train", "4", "--val", "1", "--test", "1", "--seed", "2"])
    prep.main(["--source", str(root / "raw"), "--output", str(root / "prepared")])
    return root


def parser_for(*names: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    parser.update({"bundle_root": str(BUNDLE), "device": "cpu", "amp": False, **overrides})
    return parser


# ------------------------------------------------------------------------------------------------ data preparation
def test_demo_is_in_the_dataset702_layout(dataset702):
    raw = dataset702 / "raw"
    dataset = json.loads((raw / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "MR"} and dataset["file_ending"] == ".nii.gz"
    assert dataset["labels"] == {"background": 0, **{name: i + 1 for i, name in enumerate(MR_ORGANS)}}
    images = sorted(p.name for p in (raw / "imagesTr").iterdir())
    assert images[0] == "amos_0507_0000.nii.gz" and len(images) == 5  # the nnU-Net channel suffix; MR ids only
    assert sorted(p.name for p in (raw / "labelsTs").iterdir()) == ["amos_0600.nii.gz"]  # the labelled test set
    image = nib.load(str(raw / "imagesTr" / "amos_0507_0000.nii.gz"))
    assert image.ndim == 3 and image.header.get_zooms()[2] > 1.5 * image.header.get_zooms()[0]  # 3D, anisotropic
    label = np.asarray(nib.load(str(raw / "labelsTr" / "amos_0507.nii.gz")).dataobj)
    assert set(np.unique(label)) == set(range(14))  # 13 organs in the MRI numbering


def test_prepare_dataset702_lists_volumes_in_place(dataset702):
    content = json.loads((dataset702 / "prepared" / "datalist.json").read_text())
    assert content["layout"] == "nnunet" and len(content["training"]) == 5
    assert sorted(e["fold"] for e in content["training"]) == [0, 1, 2, 3, 4]
    assert [e["case_id"] for e in content["testing"]] == ["amos_0600"] and "label" in content["testing"][0]
    assert not (dataset702 / "prepared" / "labels").exists()  # the MRI numbering already: referenced, not copied
    assert content["labels"]["13"] == "left kidney"


def test_prepare_amos22_keeps_mri_cases_and_renumbers(tmp_path):
    demo.main(["--output", str(tmp_path / "amos"), "--layout", "amos22", "--train", "4", "--val", "1", "--test", "1",
               "--ct", "1", "--seed", "3"])
    prep.main(["--source", str(tmp_path / "amos"), "--output", str(tmp_path / "out")])
    content = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert [e["case_id"] for e in content["training"]] == ["amos_0507", "amos_0508", "amos_0509", "amos_0510",
                                                          "amos_0580"]  # CT case amos_0001 left out
    assert [e["case_id"] for e in content["testing"]] == ["amos_0600"] and "label" not in content["testing"][0]
    src = np.asarray(nib.load(str(tmp_path / "amos" / "labelsTr" / "amos_0507.nii.gz")).dataobj)
    out = np.asarray(nib.load(str(tmp_path / "out" / "labels" / "amos_0507.nii.gz")).dataobj)
    for amos_value, mr_value in ((6, 1), (1, 3), (8, 5), (9, 6), (3, 13)):  # liver, spleen, "arota", "postcava", LK
        assert np.array_equal(out == mr_value, src == amos_value)


def test_a_corrupt_case_stops_preparation_before_anything_is_written(dataset702, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(dataset702 / "raw", src)
    bad = src / "imagesTr" / "amos_0509_0000.nii.gz"
    bad.write_bytes(bad.read_bytes()[:400])
    with pytest.raises(InputError, match=r"imagesTr/amos_0509_0000.nii.gz: cannot be read as NIfTI"):
        prep.main(["--source", str(src), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_mask_of_another_size_is_named_with_its_image(dataset702, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(dataset702 / "raw", src)
    label = src / "labelsTr" / "amos_0508.nii.gz"
    image = nib.load(str(label))
    data = np.asarray(image.dataobj)[:, :-3]  # three rows short
    nib.save(nib.Nifti1Image(data, image.affine), str(label))
    with pytest.raises(InputError, match=r"labelsTr/amos_0508.nii.gz: spatial shape \(\d+, \d+, \d+\) differs from "
                                         r".*imagesTr/amos_0508_0000.nii.gz"):
        prep.main(["--source", str(src), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ training samples
def _window_sums(slices: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sum over every h x w window of each (D, H, W) slice, from the integral image (float64)."""
    integral = torch.nn.functional.pad(slices.cumsum(1).cumsum(2), [1, 0, 1, 0])
    return integral[:, h:, w:] - integral[:, :-h, w:] - integral[:, h:, :-w] + integral[:, :-h, :-w]


def _window_matches(volume: torch.Tensor, crop: torch.Tensor) -> list[tuple[int, int, int]]:
    """(z, i, j) of every in-plane window of ``volume`` (H, W, D) whose sum and sum of squares equal the crop's."""
    slices = volume.permute(2, 0, 1).double()  # (D, H, W)
    sums, squares = _window_sums(slices, *crop.shape), _window_sums(slices ** 2, *crop.shape)
    target, target_sq = crop.double().sum(), (crop.double() ** 2).sum()
    hits = torch.isclose(sums, target, rtol=1e-9, atol=1e-6) & torch.isclose(squares, target_sq, rtol=1e-9, atol=1e-6)
    return [tuple(int(v) for v in hit) for hit in torch.nonzero(hits)]


def test_training_samples_are_single_axial_slices_with_organ_oversampling(dataset702):
    patch = [48, 48]  # smaller than the demo slices (about 109 x 86 at 3.5 mm), so the crop position shows
    parser = parser_for("train.json", "demo.json", dataset_dir=str(dataset702 / "prepared"), patch_size=patch,
                        augmentation=[])  # the sampling alone: no intensity change, so the crop can be found
    case = parser.get_parsed_content("train_datalist")[0]
    volume = parser.get_parsed_content("validate#preprocessing")(dict(case))["image"][0]  # (H, W, D), not cropped
    pipeline = parser.get_parsed_content("train#preprocessing")
    pipeline.set_random_state(seed=0)
    # as training runs it: the deterministic part (loading, resampling, class locations) cached once
    cached = CacheDataset([case], transform=pipeline, progress=False)
    centred_on_organ, n = 0, 30
    for k in range(n):
        sample = cached[0][0]
        image, label = sample["image"], sample["label"]
        assert image.shape == label.shape == (1, *patch)  # 2D: the slice axis is gone
        assert "label_cls_indices" not in sample  # the cached class locations do not reach the batch
        if k < 3:  # the crop is a window of exactly one axial slice (z) of the preprocessed volume
            assert len({z for z, _, _ in _window_matches(volume, image[0])}) == 1
        centred_on_organ += int(label[0, patch[0] // 2, patch[1] // 2] > 0)
    # nnU-Net oversamples foreground in a third of the samples: RandCropByLabelClassesd's ratios give 1/3 organ
    # centres, 2/3 background centres (a background centre can still show organs elsewhere in the crop)
    assert 0.15 * n <= centred_on_organ <= 0.6 * n


# ------------------------------------------------------------------------------------------------ slice-wise inference
def _random_weights_parser(**overrides) -> ConfigParser:
    return parser_for("inference.json", "demo.json", load_pretrain=False, **overrides)


def test_slice_inferer_equals_a_per_slice_loop():
    parser = _random_weights_parser()
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval().double()  # float64: the two sums agree to round-off
    inferer = parser.get_parsed_content("inferer")
    patch = parser.get_parsed_content("patch_size")
    volume = torch.randn(1, 1, 70, 90, 3, dtype=torch.float64)  # smaller than the 96 x 96 patch in-plane
    with torch.no_grad():
        out = inferer(volume, network)
        for z in range(volume.shape[-1]):  # one window per slice: the network on the slice padded to the patch
            slice_ = volume[..., z]
            pad = [(p - s) for s, p in zip(slice_.shape[2:], patch)]
            padded = torch.nn.functional.pad(slice_, [pad[1] // 2, pad[1] - pad[1] // 2, pad[0] // 2, pad[0] - pad[0] // 2])
            expected = network(padded)[..., pad[0] // 2: pad[0] // 2 + 70, pad[1] // 2: pad[1] // 2 + 90]
            torch.testing.assert_close(out[..., z], expected, atol=1e-10, rtol=1e-10)
        # slices are independent: changing one input slice changes that output slice only
        changed = volume.clone()
        changed[..., 1] += 3.0
        diff = (inferer(changed, network) - out).abs().amax(dim=(0, 1, 2, 3))
    assert diff[1] > 1e-3 and torch.all(diff[[0, 2]] == 0)


def _affine(spacing, degrees=(0.0, 0.0, 0.0), flip_xy=False):
    rx, ry, rz = np.deg2rad(degrees)
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_y @ rot_x @ np.diag(spacing) @ np.diag([-1, -1, 1] if flip_xy else [1, 1, 1])
    affine[:3, 3] = [37.5, -120.25, 18.0]
    return affine


GEOMETRIES = {
    # name: (shape, spacing mm, rotation degrees about x, y, z, LPS-like flipped axes)
    "anisotropic_flipped": ((60, 48, 9), (3.3, 3.3, 7.5), (0, 0, 0), True),
    "oblique": ((52, 44, 7), (2.9, 3.6, 6.0), (12, -7, 25), False),
    "smaller_than_the_patch": ((21, 17, 3), (4.1, 4.1, 8.0), (0, 0, 3), True),
    "single_slice": ((40, 36, 1), (3.0, 3.0, 5.0), (0, 0, 0), False),
}


def _inference(images: str, output: Path, **overrides) -> ConfigWorkflow:
    """inference.json + demo.json with untrained weights, in this process, on the files ``images`` matches."""
    return ConfigWorkflow(config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "demo.json")],
                          workflow_type="infer", logging_file=False, bundle_root=str(BUNDLE),
                          device="$torch.device('cpu')", load_pretrain=False, image_glob=images,
                          output_dir=str(output), **{"dataloader#num_workers": 0}, **overrides)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """Inference on volumes of every geometry above."""
    work = tmp_path_factory.mktemp("geometry")
    (work / "in").mkdir()
    rng = np.random.default_rng(0)
    for name, (shape, spacing, degrees, flip) in GEOMETRIES.items():
        data = (rng.normal(0, 1, shape) * 100 + 500).astype(np.int16)
        nib.save(nib.Nifti1Image(data, _affine(spacing, degrees, flip)), str(work / "in" / f"{name}.nii.gz"))
    torch.manual_seed(0)
    workflow = _inference(str(work / "in" / "*.nii.gz"), work / "out")
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return work


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_inference_writes_one_3d_mask_on_the_input_grid(segmented, name):
    source = nib.load(str(segmented / "in" / f"{name}.nii.gz"))
    mask = nib.load(str(segmented / "out" / f"{name}_seg.nii.gz"))
    assert mask.shape == source.shape  # 3D, the input's own shape (slices, in-plane size, nothing padded or cropped)
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)  # the input's orientation, spacing, origin
    data = np.asarray(mask.dataobj)
    assert data.dtype == np.uint8 and data.max() < 14


def test_folder_inference_takes_volumes_and_gives_the_bundles_masks(segmented, tmp_path):
    """segment_folder reads image_spatial_dims (3) rather than the network's 2: volumes are segmented, a 2D file fails."""
    from xlstm_bundle_tools import segment_folder

    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(segmented / "in" / "oblique.nii.gz", source)
    nib.save(nib.Nifti1Image(np.zeros((30, 30), np.int16), np.eye(4)), str(source / "flat.nii.gz"))
    parser = parser_for("inference.json", "demo.json")
    torch.manual_seed(0)  # the weights the `segmented` fixture's untrained network had
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "weights.pt")
    code = segment_folder.main(["--bundle", str(BUNDLE), "--config", str(CONFIGS / "demo.json"), "--weights",
                                str(tmp_path / "weights.pt"), "--input", str(source), "--output", str(tmp_path / "out"),
                                "--device", "cpu", "--no-progress"])
    assert code == 1  # one case failed
    status = (tmp_path / "out" / segment_folder.STATUS_FILE).read_text()
    assert f"{source / 'flat.nii.gz'}: 2D image of shape (30, 30); this bundle segments 3D images." in status
    ours = np.asarray(nib.load(str(tmp_path / "out" / "oblique_seg.nii.gz")).dataobj)
    assert np.array_equal(ours, np.asarray(nib.load(str(segmented / "out" / "oblique_seg.nii.gz")).dataobj))


def test_bad_inputs_stop_inference_before_any_mask_is_written(tmp_path):
    (tmp_path / "in").mkdir()
    good = np.zeros((30, 30, 4), np.int16)
    nib.save(nib.Nifti1Image(good, np.diag([3.0, 3.0, 6.0, 1.0])), str(tmp_path / "in" / "a_good.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((30, 30), np.int16), np.eye(4)), str(tmp_path / "in" / "b_slice.nii.gz"))
    (tmp_path / "in" / "c_broken.nii.gz").write_bytes(b"not a nifti file")
    workflow = _inference(str(tmp_path / "in" / "*.nii.gz"), tmp_path / "out")
    with pytest.raises(Exception) as info:
        workflow.initialize()
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__
    message = str(next(e for e in chain if isinstance(e, InputError)))
    assert "2 of 3 cases are unusable" in message
    assert "b_slice.nii.gz: expected a 3D volume, got 2D data" in message
    assert "c_broken.nii.gz: cannot be read as NIfTI" in message
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ configs
def test_configs_agree_with_the_organ_list_and_the_2d_plan():
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text())
    assert train["class_names"] == list(MR_ORGANS)
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values())[1:] == list(MR_ORGANS)
    compute = evaluate["validate#handlers"][2]["compute"]
    assert (compute["_target_"], compute["protocol"]) == ("xlstm_bundle_tools.ProtocolMetrics", "@evaluation_protocol")
    assert evaluate["evaluation_protocol"] == "amos"  # the AbdomenMR protocol, shared with the 3D bundle
    # nnU-Net's 2d plan: 320 x 320 patches, 7 stages, batch 6, in-plane resampling only
    assert train["patch_size"] == [320, 320] and len(train["network_def"]["features"]) == 7
    assert train["batch_size"] == 6 and train["target_spacing"][2] <= 0
    assert train["network_def"]["spatial_dims"] == 2 and train["network_def"]["variant"] == "bot"
    for key in ("target_spacing", "patch_size", "num_classes"):
        assert inference[key] == train[key], key
    for section in ("inputs", "outputs"):  # 2 elements: MONAI Label reports the model as 2D
        spec = next(iter(meta["network_data_format"][section].values()))
        assert len(spec["spatial_shape"]) == 2
    assert inference["inferer"]["_target_"] == train["validate"]["inferer"]["_target_"] == "SliceInferer"


def _count(network) -> int:
    return sum(p.numel() for p in network.parameters())


def test_network_parameter_counts():
    parser = parser_for("train.json")
    assert _count(parser.get_parsed_content("network_def")) == 47_464_924  # the README's figure
    # the official 2D Bot (ARCHITECTURE.md §4): no full-resolution skip, the ViL's unused LayerNorm
    parser = parser_for("train.json", **{"network_def#full_res_skip_2d": False, "network_def#official_unused_norm": True})
    assert _count(parser.get_parsed_content("network_def")) == 47_455_708
    parser = parser_for("train.json", **{"network_def#variant": "enc", "network_def#full_res_skip_2d": False,
                                         "network_def#official_unused_norm": True})
    assert _count(parser.get_parsed_content("network_def")) == 47_021_771


def test_enc_variant_runs_slice_wise_at_its_patch_and_names_a_wrong_size():
    parser = _random_weights_parser(**{"network_def#variant": "enc"})
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        out = parser.get_parsed_content("inferer")(torch.randn(1, 1, 150, 100, 2), network)  # windows of 96 x 96
        assert out.shape == (1, 14, 150, 100, 2)
        with pytest.raises(ValueError, match=r"channel-token layer was built for feature maps of \d+ voxels"):
            network(torch.randn(1, 1, 192, 96))  # the channel-token stages were sized for 96 x 96


def test_the_step_benchmark_builds_either_variant_from_the_bundles_configs():
    """benchmarks/bench_cpu_steps.py --bundle ... --set network_def#variant=enc: the figures name the network they timed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cpu_steps", BUNDLE.parents[1] / "benchmarks" / "bench_cpu_steps.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench._override("network_def#variant=enc") == ("network_def#variant", "enc")
    assert bench._override("batch_size=2") == ("batch_size", 2)
    for variant in ("bot", "enc"):
        network, loss, _, x, label, _ = bench.bundle_parts(str(BUNDLE), False, None, {"network_def#variant": variant})
        assert network.variant == variant and tuple(x.shape) == (6, 1, 96, 96) and tuple(label.shape) == (6, 1, 96, 96)
        assert torch.isfinite(loss(network(x), label))
