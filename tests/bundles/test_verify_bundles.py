# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Every bundle passes ci/verify_bundle.py (files, schema, properties, net in/out, train/inference agreement, MONAI
Label keys, foreign-cwd runs, torchrun) without writing a byte inside the bundle; the agreement check catches drift."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def tree_state(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (git-ignored ones included) with its content hash; folders as 'dir'."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def run_verifier(bundle: Path, *flags: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "ci" / "verify_bundle.py"), str(bundle), *flags],
                            capture_output=True, text=True, cwd=REPO)
    print(result.stdout[-6000:], result.stderr[-3000:])
    return result


def test_every_bundle_is_found():
    assert {b.name for b in BUNDLES} >= {"xlstm_unet_amos3d", "xlstm_unet_brats", "xlstm_vmunet_isic"}


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_bundle_passes_the_quick_verifier(bundle, tmp_path):
    """Every check but the training runs and torchrun (those are ``slow``, below; ``make verify`` runs them all):
    files, rendering, schema, MONAI's property sets for train, evaluate and infer (each with demo.json), net in/out,
    train/inference agreement on a demo case, MONAI Label's keys."""
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_verifier(copy, "--quick")
    assert result.returncode == 0, result.stdout[-6000:]
    assert result.stdout.rstrip().endswith("0 failed")
    assert "FAIL" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_bundle_passes_the_verifier_and_is_left_untouched(bundle, tmp_path):
    # a byte-for-byte copy (ignored files too), so that other tests writing __pycache__ beside the sources cannot
    # make this flaky; the copy keeps the folder name, which the configs and the renderer read
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy, symlinks=True)
    before = tree_state(copy)
    result = run_verifier(copy)
    assert result.returncode == 0, result.stdout[-6000:]
    assert result.stdout.rstrip().endswith("0 failed")
    assert "FAIL" not in result.stdout
    after = tree_state(copy)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def _verifier_module():
    spec = importlib.util.spec_from_file_location("verify_bundle", REPO / "ci" / "verify_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def isic_verifier(tmp_path_factory):
    """A verifier over a scratch copy of the ISIC bundle (the smallest demo), its demo data made once."""
    copy = tmp_path_factory.mktemp("bundle") / "xlstm_vmunet_isic"
    shutil.copytree(REPO / "bundles" / "xlstm_vmunet_isic", copy, ignore=shutil.ignore_patterns("__pycache__"))
    verifier = _verifier_module().Verifier(copy, tmp_path_factory.mktemp("work"))
    verifier.dataset_dir()
    return verifier


def _edit_inference(verifier, edit) -> None:
    path = verifier.config("inference.json")
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_agreement_check_passes_on_the_bundle(isic_verifier):
    assert "same logits" in isic_verifier.agreement()


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(image_size=[128, 128]), r"disagree on \['image_size'\]"),
    (lambda c: c["network_def"].update(xlstm_blocks="s"), r"disagree on \['network_def'\]"),
    # an intensity step dropped from inference only: the ids agree, the logits do not
    (lambda c: c["preprocessing"]["transforms"].pop(4), r"validation pipeline and inference.json's disagree"),
])
def test_agreement_check_catches_a_drifted_copy(isic_verifier, edit, message):
    original = isic_verifier.config("inference.json").read_text()
    try:
        _edit_inference(isic_verifier, edit)
        with pytest.raises(ValueError, match=message):
            isic_verifier.agreement()
    finally:
        isic_verifier.config("inference.json").write_text(original)


def test_monailabel_check_sends_image_path_as_the_real_client_does(tmp_path):
    """MONAI Label's request holds ``image_path`` (a string) beside ``image``; monai 1.6's plain Spacingd calls
    .update() on it. With the bundle's MetaSafeSpacingd swapped back for Spacingd, the emulation must fail as the
    real client did."""
    copy = tmp_path / "xlstm_unet_amos3d"
    shutil.copytree(REPO / "bundles" / "xlstm_unet_amos3d", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "work").mkdir()
    verifier = _verifier_module().Verifier(copy, tmp_path / "work")
    verifier.dataset_dir()

    def plain_spacing(config):
        steps = config["preprocessing"]["transforms"]
        index = next(i for i, t in enumerate(steps) if t.get("_target_") == "xlstm_bundle_tools.MetaSafeSpacingd")
        steps[index]["_target_"] = "Spacingd"

    _edit_inference(verifier, plain_spacing)
    with pytest.raises(RuntimeError, match="Spacingd") as failure:
        verifier.monailabel_keys()
    causes, error = [], failure.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__
    assert "'str' object has no attribute 'update'" in causes, causes
