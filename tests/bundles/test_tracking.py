# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Tracking: what ``run training --tracking mlflow`` logged, read back with MLflow's client and TensorBoard's reader.

The runs are real ``python -m monai.bundle run training`` processes (``training_runs.py``), offline, with MONAI's
default MLflow settings: a local SQLite store ``<output_dir>/mlruns.db`` and artifacts under ``<output_dir>/mlruns``.
What was logged is compared with what the run printed and wrote itself: the StatsHandler's per-iteration losses, the
per-epoch loss and key metric of ``training_log.csv`` (the training curve's own log) and ``model.pt``. TensorBoard's
event files must hold the same scalars at the same steps. The ISIC run is the uninterrupted reference of the resume
tests (default run); the 3D bundles train 1 epoch of 2 iterations on a tiny network (``slow``). The resumed run's
tracking is checked in ``test_resume.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from training_runs import REPO, demo_dataset, losses, run, shared_reference, train_command

TINY_3D = {  # 1 epoch, 2 iterations, validation on the 2 demo validation cases; small networks
    "xlstm_unet_amos3d": ({"epochs": 1, "iterations_per_epoch": 2, "batch_size": 1, "val_interval": 1,
                           "num_workers": 0, "cache_rate": 0, "network_def#features": "[4,8,16,32,64,64]"},
                          ("--train", "4")),
    "xlstm_unet_brats": ({"epochs": 1, "iterations_per_epoch": 2, "batch_size": 1, "val_interval": 1,
                          "num_workers": 0, "cache_rate": 0, "patch_size": "[32,32,32]",
                          "network_def#dims": "[8,16,32,64]", "network_def#hidden_size": 64}, ("--train", "6")),
}


def mlflow_client(output_dir: Path):
    from mlflow.tracking import MlflowClient
    from monai.utils import path_to_sqlite_uri

    return MlflowClient(tracking_uri=path_to_sqlite_uri(str(output_dir / "mlruns.db")))


def only_run(client):
    """The one run of MONAI's experiment ('monai_experiment')."""
    experiment = client.get_experiment_by_name("monai_experiment")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return runs[0]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder`` (all files, in order, as TensorBoard shows them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def key_metric_name(bundle: Path) -> str:
    (name,) = json.loads((bundle / "configs" / "train.json").read_text())["validate"]["key_metric"]
    return name


def training_log(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "eval" / "training_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_tracked(run_dir: Path, output: str, bundle: Path, recipe: dict, tmp_path: Path) -> None:
    """MLflow and TensorBoard hold the run's parameters, losses, key metric and final model, as the run wrote them."""
    epochs, iterations = recipe["epochs"], recipe["iterations_per_epoch"]
    client = mlflow_client(run_dir / "eval")
    tracked = only_run(client)
    run_id = tracked.info.run_id
    assert tracked.info.status == "FINISHED"
    # the recipe's parameters (TrainingTracker) beside MONAI's engine parameters
    params = tracked.data.params
    for key, value in {"bundle": bundle.name, "epochs": str(epochs), "iterations_per_epoch": str(iterations),
                       "batch_size": str(recipe["batch_size"]), "max_epochs": str(epochs),
                       "epoch_length": str(iterations)}.items():
        assert params.get(key) == value, (key, params)
    assert params["network"] == json.loads((bundle / "configs" / "train.json").read_text())["network_def"][
        "_target_"].rsplit(".", 1)[-1]
    final = torch.load(run_dir / "models" / "model.pt", weights_only=True)
    assert int(params["network_parameters"]) <= sum(t.numel() for t in final.values())  # parameters, not buffers
    # per-iteration loss (MONAI's MLFlowHandler): the values the StatsHandler printed, at steps 1..N
    printed = [line.rsplit("train_loss: ", 1)[1] for line in losses(output)]
    iteration_loss = history(client, run_id, "train_loss")
    assert [s for s, _ in iteration_loss] == list(range(1, epochs * iterations + 1))
    assert [f"{v:.4f}" for _, v in iteration_loss] == printed
    # per-epoch loss (TrainingTracker) and key metric (MONAI's validator MLFlowHandler): training_log.csv's values
    log = training_log(run_dir)
    assert [int(row["epoch"]) for row in log] == list(range(1, epochs + 1))
    metric = key_metric_name(bundle)
    epoch_loss, key_metric = history(client, run_id, "train_loss_epoch"), history(client, run_id, metric)
    assert epoch_loss == [(int(r["epoch"]), float(r["train_loss"])) for r in log]
    assert key_metric == [(int(r["epoch"]), float(r["val_metric"])) for r in log]
    # the mean of the epoch's iteration losses
    for epoch, value in epoch_loss:
        chunk = [v for s, v in iteration_loss if (epoch - 1) * iterations < s <= epoch * iterations]
        assert value == pytest.approx(sum(chunk) / len(chunk), rel=1e-6)
    # the final model as an artifact, equal to model.pt
    assert "model/model.pt" in [a.path for a in client.list_artifacts(run_id, "model")]
    downloaded = client.download_artifacts(run_id, "model/model.pt", str(tmp_path))
    logged = torch.load(downloaded, weights_only=True)
    assert logged.keys() == final.keys() and all(torch.equal(logged[k], final[k]) for k in final)
    # the executed config (MONAI's MLFlowHandler), as written beside the store
    (config,) = sorted((run_dir / "eval").glob("config_*.json"))
    assert [a.path for a in client.list_artifacts(run_id) if a.path.startswith("config_")] == [config.name]
    # TensorBoard: the same scalars at the same steps (event files store float32)
    scalars = tensorboard_scalars(run_dir / "eval" / "tensorboard")
    for key, expected in (("train_loss", iteration_loss), ("train_loss_epoch", epoch_loss), (metric, key_metric),
                          ("lr_group_0", history(client, run_id, "lr_group_0"))):
        assert key in scalars, sorted(scalars)
        assert [s for s, _ in scalars[key]] == [s for s, _ in expected], key
        assert [v for _, v in scalars[key]] == pytest.approx([v for _, v in expected], rel=1e-6), key


def test_isic_run_tracks_to_mlflow_and_tensorboard(tmp_path_factory, tmp_path):
    from training_runs import BUNDLE, RECIPE

    run_dir, finished = shared_reference(tmp_path_factory)
    assert_tracked(run_dir, finished.output, BUNDLE, RECIPE, tmp_path)
    # the training curve stays as it was: the PNG next to its log
    assert (run_dir / "eval" / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY_3D))
def test_3d_bundle_run_tracks_to_mlflow_and_tensorboard(name, tmp_path):
    bundle = REPO / "bundles" / name
    recipe, sizes = TINY_3D[name]
    dataset = demo_dataset(tmp_path / "data", bundle, *sizes)
    finished = run(train_command(dataset, tmp_path / "run", "--tracking", "mlflow", bundle=bundle, recipe=recipe),
                   tmp_path / "cwd", tmp_path / "home")
    assert finished.returncode == 0, finished
    assert_tracked(tmp_path / "run", finished.output, bundle, recipe, tmp_path / "download")


BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_bundle_trains_with_the_tracker_and_the_checkpoint(bundle):
    """No bundle replaces the template's trainer handlers: every one tracks and can resume (the end-to-end tests run
    ISIC always and the 3D bundles under ``slow``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "demo.json")])
    targets = [h["_target_"] for h in parser["train"]["handlers"]]
    assert "xlstm_bundle_tools.TrainingTracker" in targets and "xlstm_bundle_tools.TrainingCheckpoint" in targets
    assert parser["train"]["dataloader"]["_target_"] == "xlstm_bundle_tools.ResumableDataLoader"
    assert parser["training"][-1] == "$xlstm_bundle_tools.exit_if_interrupted(@train#trainer)"
