# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Real `python -m monai.bundle run training` processes on a tiny demo recipe, shared by the resume and tracking tests.

The recipe is the ISIC bundle (the cheapest network) on its own demo data (``make_demo_data.py --size verify``), at
32x32 pixels, widths [8, 16, 32, 64], 2 epochs of 4 iterations, validation after each epoch and a training state
written every epoch. Every process runs with one thread (the same reductions in every run, so results compare
exactly), unbuffered output (the tests read the log as it is written), and MLflow's telemetry off with HOME and
XDG_CONFIG_HOME in the test's folder, so that nothing is written into the user's home.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "xlstm_vmunet_isic"
CONFIGS = BUNDLE / "configs"
EPOCHS, ITERATIONS = 2, 4
RECIPE = {"epochs": EPOCHS, "iterations_per_epoch": ITERATIONS, "batch_size": 2, "val_interval": 1,
          "image_size": "[32,32]", "network_def#dims": "[8,16,32,64]", "checkpoint_interval": 1, "num_workers": 0}


def process_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "MPLCONFIGDIR": str(home / "matplotlib")}


def demo_dataset(root: Path, bundle: Path = BUNDLE, *sizes: str) -> Path:
    """A bundle's demo data (``--size verify``, then any count options in ``sizes``), prepared into datalist.json
    with its 5 folds."""
    raw, prepared = root / "raw", root / "prepared"
    env = process_env(root / "home")
    for script, args in (("make_demo_data.py", ["--output", str(raw), "--size", "verify", *sizes]),
                         ("prepare_data.py", ["--source", str(raw), "--output", str(prepared)])):
        subprocess.run([sys.executable, str(bundle / "scripts" / script), *args], check=True, capture_output=True,
                       env=env, cwd=root)
    return prepared


def train_command(dataset: Path, run: Path, *extra: str, configs=("train.json", "demo.json"), bundle: Path = BUNDLE,
                  recipe: dict | None = None, **overrides) -> list[str]:
    """``python -m monai.bundle run training`` of ``bundle`` (default: the ISIC recipe above) into ``run``."""
    files = "[" + ",".join(f"'{bundle / 'configs' / name}'" for name in configs) + "]"
    args = {**(RECIPE if recipe is None else recipe), "dataset_dir": str(dataset), "ckpt_dir": str(run / "models"),
            "output_dir": str(run / "eval"), **overrides}
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", files]
    for key, value in args.items():
        command += [f"--{key}", str(value)]
    return command + list(extra)


class Finished:
    def __init__(self, returncode: int, output: str) -> None:
        self.returncode, self.output = returncode, output
        self.lines = output.splitlines()

    def __repr__(self) -> str:
        return f"exit {self.returncode}\n" + "\n".join(self.lines[-60:])


def run(command: list[str], cwd: Path, home: Path, signal_after: str | None = None,
        signum: int = signal.SIGTERM, prefix: list[str] | None = None) -> Finished:
    """Run ``command`` with stdout and stderr merged; with ``signal_after``, send ``signum`` to the process as soon
    as a line containing that text appears (a real signal to a real process, mid-run)."""
    cwd.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen((prefix or []) + command, cwd=cwd, env=process_env(home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, sent = [], False
    try:
        for line in process.stdout:
            lines.append(line)
            if signal_after and not sent and signal_after in line:
                process.send_signal(signum)
                sent = True
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if signal_after and not sent:
        pytest.fail(f"no line {signal_after!r} before the process ended:\n{''.join(lines)[-4000:]}")
    return Finished(process.returncode, "".join(lines))


def tree_state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def losses(output: str) -> list[str]:
    """The StatsHandler's per-iteration loss lines ('Epoch: 1/2, Iter: 3/4 -- train_loss: 1.7243'), time cut off."""
    return [line.split(" - INFO - ", 1)[1].strip() for line in output.splitlines()
            if " - INFO - Epoch: " in line and "train_loss" in line]


# ---------------------------------------------------------------- made once per session, used by several test files
_SHARED: dict[str, object] = {}


def shared_dataset(tmp_path_factory) -> Path:
    if "dataset" not in _SHARED:
        _SHARED["dataset"] = demo_dataset(tmp_path_factory.mktemp("isic_demo"))
    return _SHARED["dataset"]


def shared_reference(tmp_path_factory) -> tuple[Path, Finished]:
    """The uninterrupted run, with --tracking mlflow: (its folder, the finished process)."""
    if "reference" not in _SHARED:
        work = tmp_path_factory.mktemp("reference")
        finished = run(train_command(shared_dataset(tmp_path_factory), work / "run", "--tracking", "mlflow"),
                       work / "cwd", work / "home")
        assert finished.returncode == 0, finished
        _SHARED["reference"] = (work / "run", finished)
    return _SHARED["reference"]
