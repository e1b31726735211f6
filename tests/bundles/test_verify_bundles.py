# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Every bundle passes ci/verify_bundle.py: files, schema, properties, net in/out, MONAI Label keys, foreign-cwd runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def test_every_bundle_is_found():
    assert {b.name for b in BUNDLES} >= {"xlstm_unet_amos3d"}


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_bundle_passes_the_verifier(bundle):
    result = subprocess.run([sys.executable, str(REPO / "ci" / "verify_bundle.py"), str(bundle)],
                            capture_output=True, text=True, cwd=REPO)
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0, result.stdout[-6000:]
    assert result.stdout.rstrip().endswith("0 failed")
