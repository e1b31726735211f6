# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Resume: a run killed mid-epoch by a real signal and resumed ends with the uninterrupted run's weights, exactly.

The end-to-end cases run ``python -m monai.bundle run training`` in subprocesses on the ISIC demo recipe (see
training_runs.py): one uninterrupted run, and one that gets SIGTERM in epoch 1, is resumed with ``--resume true``,
gets SIGINT (Ctrl-C) in epoch 2, and is resumed again. On CPU, with one thread and ``num_workers`` 0, the final
weights (``model.pt``, the best-metric weights, and the network in ``training_state.pt``, the last ones), every
logged loss and ``training_log.csv`` equal the uninterrupted run's: tolerance zero (``torch.equal``). Both runs are
tracked with ``--tracking mlflow``: the resumed one continues one MLflow run whose metric histories, and TensorBoard
scalars, equal the uninterrupted run's.

Bad checkpoints (truncated, another network, final weights instead of a training state, none at all) run in-process
through MONAI's ``ConfigWorkflow``: each ends with an InvalidInputError naming the file (the message the command
prints as its last line), and nothing in the run's folders changes. The DDP case runs ``multi_gpu_train.json`` under
torchrun with 2 processes (gloo): SIGTERM to torchrun stops both ranks at one iteration, rank 0 writes, and the
resumed DDP run completes from that state (``slow``: 4 more processes).
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import Dataset
from monai.transforms import Compose, Lambdad, RandAffined, RandFlipd, RandGaussianNoised

import xlstm_bundle_tools.errors as errors
from training_runs import (
    CONFIGS, EPOCHS, ITERATIONS, RECIPE, losses, process_env, run, shared_dataset, shared_reference, train_command,
    tree_state)
from xlstm_bundle_tools import ResumableDataLoader, TrainingCheckpoint
from xlstm_bundle_tools.resume import FORMAT, get_rng_state, set_rng_state

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def load_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "models" / "training_state.pt", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# ---------------------------------------------------------------- unit level: random state and data position
def test_random_state_survives_weights_only_and_restores_every_stream():
    transforms = Compose([RandFlipd("x", prob=0.5), RandAffined("x", prob=1.0, rotate_range=0.3),
                          RandGaussianNoised("x", prob=1.0)])
    transforms.set_random_state(7)
    dataset = Dataset([{"x": np.zeros((1, 4, 4), np.float32)}], transform=transforms)

    def draw():
        out = dataset[0]["x"]
        return (random.random(), float(np.random.rand()), float(torch.rand(1)), np.asarray(out).tobytes())

    draw()
    buffer = io.BytesIO()
    torch.save(get_rng_state(dataset), buffer)
    expected = [draw() for _ in range(3)]
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True), dataset)
    assert [draw() for _ in range(3)] == expected


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_continues_an_interrupted_pass_with_the_same_batches(num_workers):
    def loader():
        transform = Compose([RandFlipd("x", prob=0.5), Lambdad("x", lambda x: x + np.random.rand())])
        data = [{"x": np.full((1, 2, 2), i, np.float32)} for i in range(10)]
        torch.manual_seed(3)
        return ResumableDataLoader(Dataset(data, transform=transform), batch_size=2, shuffle=True,
                                   num_workers=num_workers)

    def batches(iterator, n):
        return [next(iterator)["x"].numpy().tobytes() for _ in range(n)]

    first = loader()
    iterator = iter(first)
    batches(iterator, 2)
    saved = {"data": first.state_dict(), "rng": get_rng_state(first.dataset)}
    expected = batches(iterator, 3)  # the rest of the pass
    assert saved["data"]["consumed"] == 2

    second = loader()
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    set_rng_state(restored["rng"], second.dataset)
    second.load_state_dict(restored["data"])
    assert batches(iter(second), 3) == expected


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_bundle_training_state_loads_with_weights_only(bundle):
    """Network, optimiser (after a step, so it has state), scheduler and the random state of the bundle's own
    training transforms go through torch.save and torch.load(weights_only=True) and load back."""
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "demo.json")])
    parser.update({"device": "$torch.device('cpu')", "amp": False})
    network, optimizer, scheduler = (parser.get_parsed_content(k) for k in ("network", "optimizer", "lr_scheduler"))
    transforms = parser.get_parsed_content("train#preprocessing")
    sum((p * 0.01).sum() for p in network.parameters()).backward()
    optimizer.step()
    scheduler.step()
    scaler = torch.amp.GradScaler("cpu")
    state = {"network": network.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler":
             scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": get_rng_state(Dataset([], transforms))}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["lr_scheduler"] == state["lr_scheduler"]
    assert len(loaded["rng"]["transforms"]) >= 1  # the bundle's random augmentations are found
    fresh = ConfigParser()
    fresh.read_config([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "demo.json")])
    fresh.update({"device": "$torch.device('cpu')", "amp": False})
    net2, opt2, sched2 = (fresh.get_parsed_content(k) for k in ("network", "optimizer", "lr_scheduler"))
    net2.load_state_dict(loaded["network"])
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["lr_scheduler"])
    assert_same_tensors(net2.state_dict(), network.state_dict())
    assert sched2.get_last_lr() == scheduler.get_last_lr()


# ---------------------------------------------------------------- end to end: kill, resume, compare
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return shared_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, object]:
    return shared_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def interrupted(dataset, tmp_path_factory) -> SimpleNamespace:
    """SIGTERM in epoch 1, resume, SIGINT in epoch 2, resume to the end; tracked with MLflow throughout."""
    work = tmp_path_factory.mktemp("interrupted")
    run_dir, cwd, home = work / "run", work / "cwd", work / "home"
    command = train_command(dataset, run_dir, "--tracking", "mlflow")
    out = SimpleNamespace(run=run_dir)
    out.first = run(command, cwd, home, signal_after=f"Epoch: 1/{EPOCHS}, Iter: 1/{ITERATIONS}",
                    signum=signal.SIGTERM)
    out.first_meta = load_state(run_dir)["meta"] if (run_dir / "models" / "training_state.pt").is_file() else None
    out.second = run(command + ["--resume", "true"], cwd, home,
                     signal_after=f"Epoch: 2/{EPOCHS}, Iter: 1/{ITERATIONS}", signum=signal.SIGINT)
    out.second_meta = load_state(run_dir)["meta"]
    out.third = run(command + ["--resume", "true"], cwd, home)
    return out


def test_sigterm_mid_epoch_writes_the_state_and_exits_143(interrupted):
    first = interrupted.first
    assert first.returncode == 128 + signal.SIGTERM, first
    assert first.lines[-1].startswith("Stopped by SIGTERM at epoch 1, iteration "), first
    assert "--resume true" in first.lines[-1]
    meta = interrupted.first_meta
    assert meta is not None and meta["epoch"] == 1
    assert 1 <= meta["iteration"] < ITERATIONS, "the signal was meant to land mid-epoch"


def test_ctrl_c_mid_epoch_writes_the_state_and_exits_130(interrupted):
    second = interrupted.second
    assert second.returncode == 130, second
    assert any("resumed from" in line for line in second.lines), second
    assert second.lines[-1].startswith("Stopped by SIGINT at epoch 2, iteration "), second
    meta = interrupted.second_meta
    assert meta["epoch"] == 2 and ITERATIONS < meta["iteration"] < 2 * ITERATIONS


def test_resumed_run_equals_the_uninterrupted_run_exactly(interrupted, reference):
    reference_dir, reference_run = reference
    assert interrupted.third.returncode == 0, interrupted.third
    # every iteration ran once, in order, with the same loss to the printed digits
    resumed_losses = losses(interrupted.first.output) + losses(interrupted.second.output) + \
        losses(interrupted.third.output)
    assert resumed_losses == losses(reference_run.output)
    assert len(resumed_losses) == EPOCHS * ITERATIONS
    # the final weights: best-metric model.pt (a plain state dict) and the last network, bit for bit
    best = torch.load(interrupted.run / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith(("network", "optimizer")) for k in best)  # stays a plain state dict
    assert_same_tensors(best, torch.load(reference_dir / "models" / "model.pt", weights_only=True))
    final, final_reference = load_state(interrupted.run), load_state(reference_dir)
    assert final["format"] == FORMAT and final["meta"]["iteration"] == EPOCHS * ITERATIONS
    assert_same_tensors(final["network"], final_reference["network"])
    assert final["validator"]["best_metric"] == final_reference["validator"]["best_metric"]
    # the curve's log continues across the interruptions
    assert (interrupted.run / "eval" / "training_log.csv").read_text() == \
        (reference_dir / "eval" / "training_log.csv").read_text()


def test_resumed_run_continues_one_tracking_run_with_the_uninterrupted_values(interrupted, reference):
    """MLflow: the interrupted run is continued (one run, finished), and every metric's history is the reference's,
    value for value and step for step. TensorBoard: the three processes' event files read back as the reference's."""
    from test_tracking import mlflow_client, only_run, tensorboard_scalars

    reference_dir, _ = reference
    histories = []
    for run_dir in (interrupted.run, reference_dir):
        client = mlflow_client(run_dir / "eval")
        tracked = only_run(client)
        assert tracked.info.status == "FINISHED"
        histories.append({key: sorted((m.step, m.value) for m in client.get_metric_history(tracked.info.run_id, key))
                          for key in tracked.data.metrics})
        assert [a.path for a in client.list_artifacts(tracked.info.run_id, "model")] == ["model/model.pt"]
    resumed, uninterrupted = histories
    assert set(resumed) == set(uninterrupted) >= {"train_loss", "train_loss_epoch", "val_dsc", "lr_group_0"}
    assert resumed == uninterrupted
    assert len(list((interrupted.run / "eval" / "tensorboard").glob("events.out.tfevents.*"))) == 3
    assert tensorboard_scalars(interrupted.run / "eval" / "tensorboard") == \
        tensorboard_scalars(reference_dir / "eval" / "tensorboard")


# ---------------------------------------------------------------- bad checkpoints: named, nothing written
def workflow(dataset: Path, run_dir: Path, **overrides) -> ConfigWorkflow:
    recipe = {k: json.loads(v) if isinstance(v, str) and v.startswith("[") else v for k, v in RECIPE.items()}
    flow = ConfigWorkflow(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "demo.json")],
                          workflow_type="train", run_id="training", **recipe,
                          dataset_dir=str(dataset), ckpt_dir=str(run_dir / "models"), output_dir=str(run_dir / "eval"),
                          resume=True, **overrides)
    flow.initialize()
    return flow


def other_network_state(reference_state: dict) -> dict:
    """The reference training state with the network of another bundle (AMOS's XLSTMUNet)."""
    parser = ConfigParser()
    amos = REPO / "bundles" / "xlstm_unet_amos3d" / "configs"
    parser.read_config([str(amos / "train.json"), str(amos / "demo.json")])
    state = dict(reference_state)
    state["network"] = parser.get_parsed_content("network_def").state_dict()
    state["meta"] = {**reference_state["meta"], "network": "XLSTMUNet"}
    return state


def wider_network_state(reference_state: dict) -> dict:
    """The reference training state with this bundle's own network at its demo widths ([24, 48, 96, 192])."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "demo.json")])
    return {**reference_state, "network": parser.get_parsed_content("network_def").state_dict()}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = {
    "truncated mid-write": (lambda path, ref: (shutil.copy(ref, path), truncate(path)),
                            "cannot be read as a training state", "truncated"),
    "another network": (lambda path, ref: torch.save(other_network_state(torch.load(ref, weights_only=True)), path),
                        "the training state of another network (XLSTMUNet; this run builds XLSTMVMUNet)",
                        "of this network's tensors missing"),
    "same network, other widths": (
        lambda path, ref: torch.save(wider_network_state(torch.load(ref, weights_only=True)), path),
        "the training state of a XLSTMVMUNet of another configuration (other widths, depths or channels)",
        "with other shapes (checkpoint vs network, e.g. "),
    "final weights, not a training state": (
        lambda path, ref: shutil.copy(ref.parent / "model.pt", path), "not a training state written by",
        "model.pt holds final weights only"),
    "no training state": (lambda path, ref: None, "no training state to resume from", "--resume true"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_checkpoint_is_named_and_nothing_is_overwritten(case, dataset, reference, tmp_path):
    make, first, second = CASES[case]
    reference_dir, _ = reference
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "eval").mkdir()
    shutil.copy(reference_dir / "eval" / "training_log.csv", run_dir / "eval")
    if case != "final weights, not a training state":
        shutil.copy(reference_dir / "models" / "model.pt", run_dir / "models")
    path = run_dir / "models" / "training_state.pt"
    make(path, reference_dir / "models" / "training_state.pt")
    before = tree_state(run_dir)
    flow = workflow(dataset, run_dir)
    with pytest.raises(Exception) as raised:
        flow.run()
    message = errors.input_error_message(raised.value)
    assert message is not None, raised.value
    assert message.startswith(str(path)), message
    assert first in message and second in message, message
    assert tree_state(run_dir) == before


def test_a_write_that_dies_half_way_leaves_the_previous_state_and_no_partial_file(tmp_path, monkeypatch):
    """The state goes to a temporary file that replaces training_state.pt only once complete (a full disk or a kill
    during torch.save leaves the last complete state)."""
    from ignite.engine import Engine

    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    engine = Engine(lambda engine, batch: None)
    handler = TrainingCheckpoint(str(tmp_path), {"network": network, "optimizer": optimizer}, save_interval=1)
    handler.attach(engine)
    engine.run([0, 1], max_epochs=1)
    path = tmp_path / "training_state.pt"
    before = path.read_bytes()
    assert torch.load(path, weights_only=True)["meta"]["iteration"] == 2
    # ignite's Checkpoint layout: MONAI's CheckpointLoader takes the weights from it
    from monai.handlers import CheckpointLoader

    other = torch.nn.Linear(3, 2)
    CheckpointLoader(str(path), {"network": other})(Engine(lambda engine, batch: None))
    assert torch.equal(other.weight, network.weight) and torch.equal(other.bias, network.bias)
    real_save = torch.save

    def dies_half_way(obj, target):
        real_save(obj, target)
        data = Path(target).read_bytes()
        Path(target).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with torch.no_grad():
        network.weight.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        handler.save(engine, "test")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_state.pt"]


def test_resume_flag_takes_only_true_or_false(tmp_path):
    with pytest.raises(errors.InputError, match="--resume 'maybe': expected true or false"):
        TrainingCheckpoint(str(tmp_path), {}, resume="maybe")
    assert TrainingCheckpoint(str(tmp_path), {}, resume="false").resume is False
    assert TrainingCheckpoint(str(tmp_path), {}, resume="true").resume is True


# ---------------------------------------------------------------- DDP: torchrun, gloo, 2 processes
@pytest.mark.slow
def test_ddp_stops_every_rank_on_sigterm_and_resumes(dataset, tmp_path):
    run_dir, cwd, home = tmp_path / "run", tmp_path / "cwd", tmp_path / "home"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    command = train_command(dataset, run_dir, configs=("train.json", "multi_gpu_train.json", "demo.json"),
                            iterations_per_epoch=2)[1:]
    first = run(command, cwd, home, signal_after="Epoch: 1/2, Iter: 1/2", signum=signal.SIGTERM, prefix=torchrun)
    assert first.returncode != 0, first
    stops = [re.match(r"Stopped by SIGTERM at epoch \d+, iteration (\d+);", line) for line in first.lines]
    stops = [int(m.group(1)) for m in stops if m]
    assert len(stops) == 2 and stops[0] == stops[1], first  # both ranks stopped at the same iteration
    writes = [line for line in first.lines if "wrote the training state (SIGTERM" in line]
    assert len(writes) == 1, first  # rank 0 wrote; rank 1 waited at the barrier
    assert load_state(run_dir)["meta"]["iteration"] == stops[0] < 4

    second = run(command + ["--resume", "true"], cwd, home, prefix=torchrun)
    assert second.returncode == 0, second
    resumed = [line for line in second.lines if f"resumed from {run_dir / 'models' / 'training_state.pt'}" in line]
    assert len(resumed) == 2 and all(f"iteration {stops[0]} of 4" in line for line in resumed), second
    final = load_state(run_dir)
    assert final["meta"]["iteration"] == 4
    assert not any(k.startswith("module.") for k in final["network"])  # single-process loading works
    assert not any(k.startswith("module.") for k in torch.load(run_dir / "models" / "model.pt", weights_only=True))


def test_a_forked_worker_dies_of_sigterm_as_without_the_handler(tmp_path):
    """DataLoader workers are forked after the trainer installed its SIGTERM handler and inherit it. The trainer's
    shutdown terminates them with one SIGTERM and joins them: a worker that only noted the signal (as the trainer
    does) would never exit, and the run would hang there (it did, in a NaN-in-a-worker error test)."""
    import multiprocessing

    handler = TrainingCheckpoint(str(tmp_path), {})
    handler._install_signal_handlers()
    try:
        ready = multiprocessing.get_context("fork").Event()
        child = multiprocessing.get_context("fork").Process(target=_wait_forever, args=(ready,), daemon=True)
        child.start()
        assert ready.wait(30)
        child.terminate()  # one SIGTERM, as multiprocessing and torch's DataLoader send
        child.join(30)
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join()
        assert not alive, "the forked child ignored SIGTERM"
        assert child.exitcode == -signal.SIGTERM
        assert handler.signal is None  # the parent's handler saw nothing
    finally:
        handler._restore_signal_handlers()


def _wait_forever(ready) -> None:
    import time

    ready.set()
    while True:
        time.sleep(0.1)


_DIES_MID_EPOCH = """
import sys, torch
from xlstm_bundle_tools import ResumableDataLoader

class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        return torch.zeros(2)

loader = ResumableDataLoader(Data(), num_workers=2, batch_size=1)
batches = iter(loader)  # kept alive to the end, as a traceback keeps a trainer's iterator alive
next(batches)
print("one batch", flush=True)
raise RuntimeError("an error in the middle of an epoch")
"""


def test_a_run_that_fails_mid_epoch_exits_with_its_workers(tmp_path):
    """Workers ignore the SIGTERM a scheduler sends to the whole job, but not the one with which multiprocessing's
    exit hook stops them: a training command that failed mid-epoch hung at exit, waiting for its workers."""
    import subprocess

    env = process_env(tmp_path / "home")
    try:
        result = subprocess.run([sys.executable, "-c", _DIES_MID_EPOCH], capture_output=True, text=True, env=env,
                                timeout=120)
    except subprocess.TimeoutExpired as err:
        raise AssertionError("the process did not exit: its DataLoader workers ignored the exit hook's SIGTERM") from err
    assert result.returncode == 1, result.stderr[-2000:]
    assert "one batch" in result.stdout
    assert result.stderr.rstrip().endswith("RuntimeError: an error in the middle of an epoch")
