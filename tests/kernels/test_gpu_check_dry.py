# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""benchmarks/gpu_check.py runs end to end in its dry mode (CPU, Triton interpreter, tiny shapes), so it cannot rot
before a GPU session runs it for real; its report renders failures visibly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_dry_run_covers_every_section_and_bundle(tmp_path):
    # a fresh process: the script turns the interpreter on before anything imports triton
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["verdicts", "pytest", "train_steps", "mlstm", "selective_scan"]
    for name, section in sections.items():
        assert "section_error" not in section, (name, section.get("traceback"))
        assert not section.get("skipped"), (name, section["skipped"])

    verdicts = sections["verdicts"]["rows"]
    assert {v["op"] for v in verdicts} == {"mlstm", "selective_scan", "cross_scan+cross_merge"}
    assert all(v["ok"] for v in verdicts), verdicts

    pytest_run = sections["pytest"]
    assert not pytest_run["timed_out"] and pytest_run["returncode"] == 0 and not pytest_run["failed"]
    assert pytest_run["counts"].get("SKIPPED", 0) > 0  # the gpu tests were collected and skip without CUDA

    bundles = {p.parents[1].name for p in REPO.glob("bundles/*/configs/train.json")}
    steps = sections["train_steps"]["rows"]
    assert {r["bundle"] for r in steps} == bundles
    assert all(r["status"] == "ok" and r["s_per_step"] > 0 for r in steps), steps
    assert {r["precision"] for r in steps} == {"fp32", "amp"}

    mlstm_rows = sections["mlstm"]["rows"]
    assert {r["backend"] for r in mlstm_rows} == {"triton", "chunkwise", "parallel"}
    assert all(r["status"] == "ok" and r["fwdbwd_ms"] > 0 for r in mlstm_rows), mlstm_rows
    scan_row, = sections["selective_scan"]["rows"]
    assert scan_row["triton"]["fwd_bwd_ms"] > 0 and scan_row["torch"]["fwd_bwd_ms"] > 0

    table = (tmp_path / "gpu_check.md").read_text()
    for heading in ("Self-check verdicts", "pytest -m gpu tests/kernels", "One training step per bundle network",
                    "mLSTM core", "Selective scan"):
        assert heading in table


def test_report_shows_failures():
    gpu_check = _load_script()
    result = {
        "dry": False, "seconds": 12.0,
        "environment": {"torch": "t", "triton": "3.x", "commit": "abc", "date": "today", "gpu": "H100"},
        "sections": {
            "verdicts": {"rows": [{"op": "mlstm", "config": {"device": "cuda:0", "dtype": "bfloat16", "DHQK": 192},
                                   "ok": False, "reason": "OutOfResources: shared memory", "seconds": 1.5}],
                         "skipped": ["mlstm BraTS s3 torch.bfloat16"]},
            "pytest": {"counts": {"PASSED": 3, "FAILED": 1}, "failed": ["tests/kernels/x.py::test_y"],
                       "seconds": 9, "timed_out": True},
            "train_steps": {"rows": [{"bundle": "b", "status": "failed to build: KeyError: 'network_def'"}]},
        },
    }
    table = gpu_check.markdown(result)
    assert "FAILED: OutOfResources: shared memory" in table and "DHQK=192" in table
    assert "FAILED `tests/kernels/x.py::test_y`" in table and "**timed out**" in table
    assert "Not reached in the time budget: mlstm BraTS s3" in table
    assert "failed to build: KeyError" in table
