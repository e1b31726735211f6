# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Bad input through the real commands: the last line of stderr names the file and the problem, nothing is written.

Every case runs ``python -m monai.bundle run ...`` (train, evaluate, infer, as the Makefile's demo does) or one of our
scripts in a subprocess, from an empty foreign working directory, on a tiny synthetic dataset made here. The commands
are driven only by their command-line arguments (``--dataset_dir``, ``--ckpt_dir``, ``--output_dir`` and the sizes of
configs/demo.json), never by config internals. Each case stops in the checks, before any training step, so the cost
is the start of the command (imports) plus a few small files.

The hook itself (chains, DataLoader worker text, bugs, XLSTM_SEG_DEBUG) is also tested in-process, where it is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from PIL import Image

import xlstm_bundle_tools.errors as errors
from xlstm_bundle_tools import CheckCased, DatalistError, InvalidInputError, load_fold, write_datalist
from xlstm_bundle_tools.synthetic import write_nifti

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CONFIGS = {  # as the Makefile's demo runs them
    "train": (["train.json", "demo.json"], ["training"]),
    "evaluate": (["train.json", "evaluate.json", "demo.json"], []),
    "infer": (["inference.json", "demo.json"], []),
}
AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
BRATS_MODALITIES = ("t1n", "t1c", "t2w", "t2f")


# ---------------------------------------------------------------- tiny datasets, made once per module
def nifti_dataset(root: Path, class_values, modalities=None, n_train=6, n_test=2, shape=(16, 16, 8)) -> Path:
    """A prepared dataset in the bundles' layout: datalist.json (5 folds) beside images/ and labels/."""
    rng = np.random.default_rng(0)
    training, testing = [], []
    for index in range(n_train + n_test):
        case = f"case_{index:03d}"
        names = [f"{case}_{m}" for m in modalities] if modalities else [case]
        images = []
        for name in names:
            write_nifti(root / "images" / f"{name}.nii.gz", rng.normal(size=shape).astype(np.float32), AFFINE)
            images.append(str(root / "images" / f"{name}.nii.gz"))
        entry = {"case_id": case, "image": images if modalities else images[0]}
        if index < n_train:
            label = rng.choice(list(class_values), size=shape).astype(np.uint8)
            write_nifti(root / "labels" / f"{case}.nii.gz", label, AFFINE)
            training.append({**entry, "label": str(root / "labels" / f"{case}.nii.gz")})
        else:
            testing.append(entry)
    write_datalist(root / "datalist.json", training, testing, num_folds=5, seed=0)
    return root


def rgb_dataset(root: Path, n_train=6, n_test=2, size=32) -> Path:
    rng = np.random.default_rng(0)
    training, testing = [], []
    for index in range(n_train + n_test):
        case = f"ISIC_{index:07d}"
        image = root / "images" / f"{case}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(image)
        if index < n_train:
            mask = root / "masks" / f"{case}_segmentation.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((size, size)) > 0.5).astype(np.uint8) * 255).save(mask)
            training.append({"case_id": case, "image": str(image), "label": str(mask)})
        else:
            testing.append({"case_id": case, "image": str(image)})
    write_datalist(root / "datalist.json", training, testing, num_folds=5, seed=0)
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    return {
        "xlstm_unet_amos3d": nifti_dataset(root / "amos", range(14)),
        "xlstm_unet_brats": nifti_dataset(root / "brats", range(4), modalities=BRATS_MODALITIES),
        "xlstm_vmunet_isic": rgb_dataset(root / "isic"),
    }


@pytest.fixture
def work(tmp_path):
    (tmp_path / "elsewhere").mkdir()  # the working directory: the commands must not depend on it nor write in it
    return tmp_path


def copy_dataset(datasets, bundle: str, work: Path) -> Path:
    """A private copy of the bundle's clean dataset, with its datalist pointing at the copy."""
    target = work / "data"
    shutil.copytree(datasets[bundle], target)
    content = json.loads((target / "datalist.json").read_text())
    text = json.dumps(content).replace(str(datasets[bundle]), str(target))
    (target / "datalist.json").write_text(text)
    return target


def split_entries(dataset: Path, split: str) -> list[dict]:
    return load_fold(dataset / "datalist.json", fold=0, split=split)


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- running a command and reading how it ended
def run_bundle(bundle: str, workflow: str, dataset: Path, work: Path, *extra: str, env=None):
    configs, run_id = CONFIGS[workflow]
    config_files = str([str(BUNDLES / bundle / "configs" / name) for name in configs])
    command = [sys.executable, "-m", "monai.bundle", "run", *run_id, "--config_file", config_files,
               "--dataset_dir", str(dataset), "--ckpt_dir", str(work / "models"), "--output_dir", str(work / "out"),
               *extra]
    return run_command(command, work, env)


def run_command(command: list[str], work: Path, env=None):
    environment = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    return subprocess.run(command, cwd=work / "elsewhere", env={**environment, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def assert_stopped_on(result, files, problem: str, work: Path, dataset: Path, before: dict) -> None:
    """Exit status 1, the last stderr line names (one of) ``files`` and matches ``problem``, no traceback, and
    nothing written: no checkpoint or output, nothing in the working directory, the dataset unchanged."""
    report = f"\n--- stdout (end)\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-6000:]}"
    assert result.returncode == 1, report
    last = result.stderr.rstrip("\n").splitlines()[-1]
    files = [files] if isinstance(files, (str, Path)) else files
    assert any(str(f) in last for f in files), f"last line {last!r} names none of {files}" + report
    assert re.search(problem, last), f"last line {last!r} does not say {problem!r}" + report
    assert "Traceback" not in result.stderr, report
    for output in (work / "models", work / "out"):
        assert not output.exists() or not any(output.rglob("*")), f"{output} has {list(output.rglob('*'))}"
    assert not any((work / "elsewhere").iterdir())
    assert snapshot(dataset) == before, "the input dataset changed"


# ---------------------------------------------------------------- the catalogue, through `python -m monai.bundle run`
def test_train_without_a_datalist(datasets, work):
    missing = work / "not_prepared"
    result = run_bundle("xlstm_unet_amos3d", "train", missing, work)
    assert_stopped_on(result, missing / "datalist.json", r"datalist not found\. Create it with .* --dataset_dir",
                      work, missing, {})


def test_infer_without_a_checkpoint(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_unet_amos3d", work)
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_amos3d", "infer", dataset, work)
    assert_stopped_on(result, work / "models" / "model.pt", r"checkpoint not found\. Train the bundle first.*--ckpt_dir",
                      work, dataset, before)


def test_infer_with_a_truncated_nifti_among_the_inputs(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_unet_amos3d", work)
    bad = Path(split_entries(dataset, "test")[1]["image"])
    bad.write_bytes(bad.read_bytes()[:200])
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_amos3d", "infer", dataset, work)
    assert_stopped_on(result, bad, r": cannot be read as NIfTI", work, dataset, before)
    assert "1 of 2 cases are unusable; fix or remove them" in result.stderr


def test_train_with_a_label_in_another_space(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_unet_amos3d", work)
    bad = Path(split_entries(dataset, "train")[2]["label"])
    shifted = AFFINE.copy()
    shifted[:3, 3] = [4.0, 0.0, 0.0]
    write_nifti(bad, np.zeros((16, 16, 8), np.uint8), shifted)
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_amos3d", "train", dataset, work, "--epochs", "1")
    assert_stopped_on(result, bad, r"affine differs from .*not in the same space", work, dataset, before)


def test_evaluate_with_labels_out_of_range(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_unet_amos3d", work)
    bad = Path(split_entries(dataset, "val")[0]["label"])  # evaluation reads the validation fold
    label = np.zeros((16, 16, 8), np.uint8)
    label[:2] = 20
    write_nifti(bad, label, AFFINE)
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_amos3d", "evaluate", dataset, work)
    assert_stopped_on(result, bad, r"label values \[20\] are outside the class set \[0, 1, .*13\]", work, dataset, before)


def test_evaluate_with_a_modality_of_another_shape(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_unet_brats", work)
    bad = Path(split_entries(dataset, "val")[0]["image"][2])
    write_nifti(bad, np.zeros((16, 16, 7), np.float32), AFFINE)
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_brats", "evaluate", dataset, work)
    assert_stopped_on(result, bad, r"spatial shape \(16, 16, 7\) differs from .*\(16, 16, 8\)", work, dataset, before)


def test_infer_with_a_grayscale_image(datasets, work):
    dataset = copy_dataset(datasets, "xlstm_vmunet_isic", work)
    bad = Path(split_entries(dataset, "test")[0]["image"])
    Image.open(bad).convert("L").save(bad)
    before = snapshot(dataset)
    result = run_bundle("xlstm_vmunet_isic", "infer", dataset, work)
    assert_stopped_on(result, bad, r"image is grayscale \(mode L\); expected a 3-channel RGB image", work, dataset,
                      before)


def test_train_with_nan_voxels_found_in_a_dataloader_worker(datasets, work):
    """The preflight skipped (``--init_id`` names no expression), so the loading pipeline's CheckCased finds the NaN
    voxels in a DataLoader worker process, and the main process gets them back as traceback text."""
    dataset = copy_dataset(datasets, "xlstm_unet_amos3d", work)
    bad = [Path(e["image"]) for e in split_entries(dataset, "train")]
    for path in bad:  # every training image, so the first batch fails whichever cases it draws
        data = np.ones((16, 16, 8), np.float32)
        data[3, 4, 5] = np.nan
        write_nifti(path, data, AFFINE)
    before = snapshot(dataset)
    result = run_bundle("xlstm_unet_amos3d", "train", dataset, work, "--init_id", "no_preflight", "--epochs", "1",
                        "--num_workers", "2", "--cache_rate", "0")
    assert_stopped_on(result, bad, r": contains 1 NaN and 0 infinite voxels out of 2048\.", work, dataset, before)
    assert "in DataLoader worker process" in result.stdout  # ignite logged the worker's re-raised exception


def test_multi_gpu_training_under_torchrun_without_a_datalist(work):
    """Each rank ends on the reason, and torchrun's failure summary shows it as the rank's traceback."""
    missing = work / "not_prepared"
    configs = str([str(BUNDLES / "xlstm_unet_amos3d" / "configs" / name)
                   for name in ("train.json", "multi_gpu_train.json", "demo.json")])
    result = run_command([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                          "--nproc_per_node=1", "-m", "monai.bundle", "run", "--config_file", configs,
                          "--dataset_dir", str(missing), "--ckpt_dir", str(work / "models"),
                          "--output_dir", str(work / "out")], work, env={"OMP_NUM_THREADS": "1"})
    reason = f"{missing / 'datalist.json'}: datalist not found."
    assert result.returncode == 1
    assert any(line.startswith(f"[rank0]: {reason}") for line in result.stderr.splitlines()), result.stderr[-3000:]
    assert re.search(rf"^  traceback : {re.escape(reason)}", result.stderr, re.MULTILINE), result.stderr[-3000:]
    assert not (work / "models").exists() and not (work / "out").exists() and not any((work / "elsewhere").iterdir())


def test_prepare_data_script_ends_the_same_way(work):
    missing = work / "no_such_download"
    script = BUNDLES / "xlstm_unet_brats" / "scripts" / "prepare_data.py"
    result = run_command([sys.executable, str(script), "--source", str(missing), "--output", str(work / "out")], work)
    assert_stopped_on(result, missing, r": not a folder\.", work, missing, {})


# ---------------------------------------------------------------- the hook, in-process
def test_input_error_found_behind_monai_config_wrapper(tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser({"imports": ["$import xlstm_bundle_tools"],
                           "datalist": f"$xlstm_bundle_tools.load_fold('{tmp_path}/datalist.json')"})
    with pytest.raises(RuntimeError, match="Failed to evaluate ConfigExpression") as caught:
        parser.get_parsed_content("datalist")
    message = errors.input_error_message(caught.value)
    assert message.startswith(f"{tmp_path}/datalist.json: datalist not found.")


def nan_case(name="/data/nan_case.nii.gz"):
    image = MetaTensor(torch.ones(1, 4, 4, 2), affine=torch.eye(4), meta={"filename_or_obj": name})
    image[0, 1, 1, 1] = float("nan")
    return {"image": image}


class RaisingDataset(torch.utils.data.Dataset):
    """Raises an InputError itself, unwrapped: the worker re-raises it as an InputError whose text is a traceback."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise InvalidInputError("/data/raw.nii.gz: not good\n  second line of the reason")


def test_input_error_found_in_a_dataloader_worker_traceback():
    loader = DataLoader(Dataset([nan_case()], transform=CheckCased(label_key=None)), num_workers=1)
    with pytest.raises(RuntimeError, match="in DataLoader worker process 0") as caught:  # MONAI's wrapper
        next(iter(loader))
    assert errors.input_error_message(caught.value) == "/data/nan_case.nii.gz: contains 1 NaN and 0 infinite voxels out of 32."
    with pytest.raises(InvalidInputError, match="Caught InvalidInputError in DataLoader worker process 0") as caught:
        next(iter(DataLoader(RaisingDataset(), num_workers=1)))
    assert errors.input_error_message(caught.value) == "/data/raw.nii.gz: not good\n  second line of the reason"


def test_unreadable_checkpoint_found_inside_an_ignite_run(tmp_path):
    """Evaluation loads the checkpoint in an ignite handler; a missing or truncated file is an input error, a state
    dict that does not fit the network is not."""
    from ignite.engine import Engine, Events
    from monai.handlers import CheckpointLoader

    def run_with(path, network):
        engine = Engine(lambda engine, batch: None)
        engine.add_event_handler(Events.STARTED, CheckpointLoader(load_path=str(path), load_dict={"model": network}))
        try:
            engine.run([0])
        except Exception as err:
            return err

    network = torch.nn.Linear(2, 1)
    missing = run_with(tmp_path / "model.pt", network)
    assert errors.input_error_message(missing).startswith(f"{tmp_path}/model.pt: checkpoint not found. Train the")
    torch.save(network.state_dict(), tmp_path / "full.pt")
    (tmp_path / "half.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:100])
    assert ": cannot be read as a checkpoint (" in errors.input_error_message(run_with(tmp_path / "half.pt", network))
    assert errors.input_error_message(run_with(tmp_path / "full.pt", torch.nn.Linear(3, 1))) is None


def test_bugs_are_not_input_errors():
    def chained(outer, inner, explicit):
        try:
            try:
                raise inner
            except Exception as err:
                if explicit:
                    raise outer from err
                raise outer
        except Exception as err:
            return err

    assert errors.input_error_message(chained(RuntimeError("wrapped"), TypeError("a bug"), True)) is None
    # a bug while handling an input error is a new problem: it keeps its traceback
    assert errors.input_error_message(chained(TypeError("bug"), InvalidInputError("x: bad"), False)) is None
    assert errors.input_error_message(chained(RuntimeError("wrapped"), DatalistError("d: gone"), True)) == "d: gone"
    # a worker's traceback text that ends in a bug, raised while handling an input error, is a bug too
    text = ("Caught TypeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
            "  File \"x.py\", line 1, in f\nxlstm_bundle_tools.errors.InvalidInputError: x: bad\n"
            "\nDuring handling of the above exception, another exception occurred:\n\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\nTypeError: a bug\n")
    assert errors.input_error_message(TypeError(text)) is None
    # a class of the same name elsewhere is not ours
    assert errors.input_error_message(RuntimeError(text.replace("TypeError", "Value").replace(
        "xlstm_bundle_tools.errors", "somewhere.else").split("\nDuring")[0])) is None


def test_hook_prints_the_reason_last_or_the_traceback_on_demand(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(errors, "_previous_hook", lambda *exc_info: seen.append(exc_info))
    try:
        raise RuntimeError("Failed to evaluate ...") from InvalidInputError("/data/a.nii.gz: contains 3 NaN")
    except RuntimeError as err:
        wrapped = err
    errors._excepthook(RuntimeError, wrapped, wrapped.__traceback__)
    assert capsys.readouterr().err.splitlines()[-1] == "/data/a.nii.gz: contains 3 NaN" and not seen
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    errors._excepthook(RuntimeError, wrapped, wrapped.__traceback__)
    assert seen == [(RuntimeError, wrapped, wrapped.__traceback__)] and capsys.readouterr().err == ""
    monkeypatch.delenv(errors.DEBUG_ENV)
    bug = TypeError("a bug")
    errors._excepthook(TypeError, bug, None)
    assert seen[-1][1] is bug
    assert sys.excepthook is errors._excepthook  # installed by importing xlstm_bundle_tools (outside pytest's own)
