# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The bundles as a family: configs rendered from one source per bundle, MONAI's override semantics, the scaffold."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from xlstm_bundle_tools import render as family

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent for p in (REPO / "bundles").glob("*/bundle.yaml"))


def test_every_bundle_has_a_source():
    with_configs = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))
    assert with_configs == BUNDLES and len(BUNDLES) >= 3


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_committed_configs_are_what_the_source_renders(bundle):
    stale = family.stale_files(bundle)
    assert not stale, f"stale: {[str(p) for p in stale]}; run `make configs` and commit the result"


def _without_marker(template: dict, bundle: str) -> dict:
    config = family._substitute(copy.deepcopy(template), bundle)
    config.pop(family.MARKER)
    return config


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
@pytest.mark.parametrize("output", ["train", "inference", "metadata"])
def test_sections_apply_as_monai_applies_an_override_file(bundle, output, tmp_path):
    """The independent implementation: MONAI's own merge of [template, section] gives the rendered content."""
    source = family.load_yaml(bundle / "bundle.yaml")
    section = {**(source.get("shared") or {}), **(source.get(output) or {})} if output != "metadata" else source["metadata"]
    template = _without_marker(family.load_yaml(family.TEMPLATES / f"{output}.yaml"), bundle.name)
    (tmp_path / "t.json").write_text(json.dumps(template))
    (tmp_path / "s.json").write_text(json.dumps(section))
    merged = ConfigParser.load_config_files([str(tmp_path / "t.json"), str(tmp_path / "s.json")])
    rendered = json.loads((bundle / "configs" / f"{output}.json").read_text())
    assert merged == rendered


def test_override_paths_and_merges():
    config = {"a": {"b": [1, {"c": 2}]}, "x#y": {"z": 1}, "lst": [1]}
    family.apply_override(config, "a#b#1#c", 3)
    family.apply_override(config, "x#y#w", 2)  # flat override-style key followed as a prefix
    family.apply_override(config, "+lst", [2, 3])
    family.apply_override(config, "+a#b#1", {"d": 4})
    family.apply_override(config, "new#path", 5)
    assert config == {"a": {"b": [1, {"c": 3, "d": 4}]}, "x#y": {"z": 1, "w": 2}, "lst": [1, 2, 3], "new#path": 5}
    with pytest.raises(family.RenderError, match=r"'\+a#b#0' merges a list into int"):
        family.apply_override(config, "+a#b#0", [1], "'+a#b#0'")
    with pytest.raises(family.RenderError, match=r"'7' is not an index of a list of 2"):
        family.apply_override(config, "a#b#7", 1)


def test_a_required_id_left_unset_is_named():
    source = family.load_yaml(REPO / "bundles" / "xlstm_unet_amos3d" / "bundle.yaml")
    del source["train"]["validate#inferer"]
    with pytest.raises(family.RenderError, match=r"x.yaml: train.json needs \['validate#inferer'\]"):
        family.render(source, "xlstm_unet_amos3d", "x.yaml")
    with pytest.raises(family.RenderError, match=r"unknown sections \['trian'\]"):
        family.render({"trian": {}}, "b", "x.yaml")


def test_a_yaml_float_without_its_dot_is_refused(tmp_path):
    (tmp_path / "bundle.yaml").write_text("train:\n  loss: {smooth_nr: 1e-05}\n")
    with pytest.raises(family.RenderError, match=r"train#loss#smooth_nr = '1e-05'.\] are strings to YAML"):
        family.render(family.load_yaml(tmp_path / "bundle.yaml"), "b", "x.yaml")


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_multi_gpu_runs_every_train_initialize_step_on_rank_zero(bundle):
    train = json.loads((bundle / "configs" / "train.json").read_text())
    multi = json.loads((bundle / "configs" / "multi_gpu_train.json").read_text())
    assert set(train["imports"]) | {family.DIST_IMPORT} == set(multi["imports"])
    steps = multi["initialize"]
    assert steps[0].startswith("$dist.is_initialized() or dist.init_process_group") and steps[-1] == "$dist.barrier()"
    assert steps[3:-1] == [f"$({s[1:]}) if dist.get_rank() == 0 else None" for s in train["initialize"][1:]]


# ------------------------------------------------------------------------------------------------ scaffold
def test_scaffold_refuses_bad_names_labels_and_existing_folders(tmp_path):
    from xlstm_bundle_tools.scaffold import scaffold

    with pytest.raises(ValueError, match="lower case letters"):
        scaffold(tmp_path / "Bad-Name", ["spleen"])
    with pytest.raises(ValueError, match="each foreground class once"):
        scaffold(tmp_path / "b", ["spleen", "spleen"])
    with pytest.raises(ValueError, match="each foreground class once"):
        scaffold(tmp_path / "b", ["background"])
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        scaffold(tmp_path / "taken", ["spleen"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-made


@pytest.mark.slow
def test_a_scaffolded_bundle_passes_the_verifier_untouched(tmp_path):
    """The scaffold's output as it is, with two sided labels: --quick verifier (files, schema, properties, net in/out,
    train/inference agreement, MONAI Label keys), its demo on the right sides, and not a byte written into it."""
    import subprocess
    import sys

    from test_demo_laterality import assert_demo_sides, sided_labels
    from test_verify_bundles import tree_state
    from xlstm_bundle_tools.scaffold import scaffold, todo_lines

    bundle = tmp_path / "xlstm_unet_kidneys"
    scaffold(bundle, ["left kidney", "right kidney", "bladder"], modality="CT")
    assert family.stale_files(bundle) == []
    assert sided_labels(bundle) == {1: ("left kidney", -1), 2: ("right kidney", +1)}
    assert any("labels.py" in line for line in todo_lines(bundle))
    before = tree_state(bundle)
    assert assert_demo_sides(bundle, tmp_path / "laterality") >= 5  # the generic phantom honours left/right names
    result = subprocess.run([sys.executable, str(REPO / "ci" / "verify_bundle.py"), str(bundle), "--quick"],
                            capture_output=True, text=True, cwd=tmp_path)
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0 and result.stdout.rstrip().endswith("0 failed"), result.stdout[-6000:]
    assert "FAIL" not in result.stdout
    assert tree_state(bundle) == before


# ------------------------------------------------------------------------------------------------ bench --bundle
def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cpu_steps", REPO / "benchmarks" / "bench_cpu_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bundle, case, label_shape", [
    ("xlstm_unet_amos3d", "amos3d_demo", (2, 1, 64, 64, 16)),  # class indices: the loss one-hot encodes them
    ("xlstm_vmunet_isic", "isic_demo", (8, 1, 64, 64)),        # one binary map per output channel
])
def test_bench_reads_the_bundles_own_train_and_demo_configs(bundle, case, label_shape):
    import torch

    bench = _bench()
    network, loss, optimizer, x, label, parser = bench.bundle_parts(str(REPO / "bundles" / bundle), False, None)
    expression, shape, _ = bench.CASES[case]  # the hand-written table's demo case is the same network and input
    import shared_networks

    reference = eval(expression, vars(shared_networks))  # noqa: S307 (the benchmark's own table)
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in reference.parameters())
    assert tuple(x.shape) == shape and tuple(label.shape) == label_shape
    assert type(optimizer).__name__ == "AdamW" and torch.isfinite(loss(network(x), label))
    assert parser.get_parsed_content("epochs") == json.loads(
        (REPO / "bundles" / bundle / "configs" / "demo.json").read_text())["epochs"]
