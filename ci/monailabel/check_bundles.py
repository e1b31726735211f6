# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Run every bundle through the real MONAI Label 0.8.5 ``monaibundle`` app: BundleInferTask and BundleTrainTask.

    ci/monailabel/setup_env.sh /work/side/clinic 1.6.1          # once: the side environment
    /work/side/clinic/venv-monai1.6.1/bin/python ci/monailabel/check_bundles.py --work /work/side/clinic/run-1.6.1

Per bundle, in its own process:

1. copy MONAI Label's ``monaibundle`` sample app to ``<work>/<bundle>/app`` and the bundle to ``app/model/<bundle>``
   (the source bundle is never written to: training writes ``models/model.pt`` into the copy). The copy's configs
   are the bundle's ``inference.json`` / ``train.json`` merged with its ``demo.json`` (CPU-sized network and
   patch; ``--full-size`` keeps the real sizes), plus the edits of ``--edits`` (default: none; a way to
   prototype a fix with the real client). ``models/model.pt`` gets seeded random weights.
2. a datastore (``LocalDatastore`` layout: images, ``labels/final/<same name>``) made from the bundle's own
   ``scripts/make_demo_data.py`` (+ ``prepare_data.py`` / ``stack_modalities.py``), with the awkward cases users
   send: an image smaller than the patch (MONAI #5362), an oblique anisotropic affine, axes stored in another order
   (MONAILabel #1051), BraTS as one 4-channel 4D NIfTI, ISIC as a 96x128 PNG (and a JPEG).
3. ``MyApp(app_dir, studies, conf).infer(...)`` on every datastore image: the mask must have the image's geometry
   (shape, affine: spacing, origin, direction), hold only declared label values, come with every label name of the
   metadata (MONAILabel #1652), and equal voxel for voxel the mask the bundle's own ``inference.json`` writes for the
   same image and weights (so an axis swap or flip in MONAI Label's writer cannot pass).
4. ``MyApp.train({"max_epochs": 1, "val_split": 0.25, ...})``: ``models/model.pt`` must be rewritten with new weights
   that load (``weights_only=True``) into the bundle's network.

Prints one line per check and a summary table; writes ``<work>/report.json``; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
EXTENSIONS = ["*.nii.gz", "*.nii", "*.png", "*.jpg"]

logger = logging.getLogger("check_bundles")


# ----------------------------------------------------------------------------------------------- bundle copy
def merged_config(bundle: Path, name: str, full_size: bool, edits: dict):
    """``configs/<name>`` merged with ``configs/demo.json`` (unless full size), then ``edits`` (id -> value) set."""
    from monai.bundle import ConfigParser

    files = [bundle / "configs" / name]
    if not full_size and (bundle / "configs" / "demo.json").is_file():
        files.append(bundle / "configs" / "demo.json")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in edits.items():
        if key.endswith("#+"):
            parser[key[:-2]] = list(parser[key[:-2]]) + list(value)
        else:
            parser[key] = value
    return parser


def copy_bundle(source: Path, app: Path, full_size: bool, edits: dict) -> Path:
    target = app / "model" / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("models", "eval", "runs", "__pycache__"))
    from monai.bundle import ConfigParser

    for name in ("inference.json", "train.json"):
        parser = merged_config(source, name, full_size, edits.get(name, {}))
        content = {k: v for k, v in parser.config.items() if k != "_meta_"}  # the parser adds an empty _meta_
        ConfigParser.export_config_file(content, str(target / "configs" / name), indent=2)
    # multi_gpu_train.json is left as it is: on CPU MONAI Label's BundleTrainTask never reads it.
    return target


def network_of(bundle: Path):
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def", instantiate=True)


def write_random_weights(bundle: Path) -> None:
    """Seeded random weights, written as the bundles' checkpoints are: a plain state dict in ``models/model.pt``."""
    import torch

    (bundle / "models").mkdir(exist_ok=True)
    torch.save(network_of(bundle).state_dict(), bundle / "models" / "model.pt")


# ----------------------------------------------------------------------------------------------- datastore
def _run_script(script: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, text=True)


def _crop_nifti(src: Path, dst: Path, size, label: bool = False) -> None:
    """A corner-centred sub-block of ``src`` (its affine's origin moved accordingly): smaller than any patch."""
    import nibabel as nib
    import numpy as np

    image = nib.load(str(src))
    data = np.asanyarray(image.dataobj)
    start = [max(0, (n - s) // 2) for n, s in zip(data.shape[:3], size)]
    block = data[tuple(slice(b, b + s) for b, s in zip(start, size))]
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ np.asarray(start) + image.affine[:3, 3]
    _save_nifti(dst, block, affine)


def _save_nifti(path: Path, data, affine) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def _rotation(axis, degrees):
    import numpy as np

    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _oblique_nifti(src: Path, dst: Path) -> None:
    """The same voxels with the affine rotated 20 degrees about a tilted axis (a double-oblique acquisition)."""
    import nibabel as nib
    import numpy as np

    image = nib.load(str(src))
    affine = image.affine.copy()
    affine[:3, :3] = _rotation([1.0, 0.6, 0.3], 20.0) @ affine[:3, :3]
    _save_nifti(dst, np.asanyarray(image.dataobj), affine)


def _permuted_nifti(src: Path, dst: Path) -> None:
    """The same image stored with its voxel axes in the order (k, i, j) and the first axis reversed: the file's
    orientation code changes, the anatomy in world space does not (what MONAILabel #1051 is about)."""
    import nibabel as nib
    import numpy as np

    image = nib.load(str(src))
    data = np.asanyarray(image.dataobj)
    order = (2, 0, 1) + tuple(range(3, data.ndim))
    permuted = np.transpose(data, order)[::-1]
    affine = np.eye(4)
    affine[:3, :3] = image.affine[:3, :3][:, [2, 0, 1]]
    affine[:3, 3] = image.affine[:3, 3]
    # reversing voxel axis 0 moves the origin to the last slice and negates that column
    affine[:3, 3] = affine[:3, 3] + affine[:3, 0] * (permuted.shape[0] - 1)
    affine[:3, 0] = -affine[:3, 0]
    _save_nifti(dst, np.ascontiguousarray(permuted), affine)


def make_studies_3d(bundle: Path, studies: Path, scratch: Path, n_labelled: int = 4) -> list[dict]:
    """Datastore for a 3D bundle from its own demo scripts. Returns [{"name", "image", "label", "note"}]."""
    import numpy as np

    scripts = bundle / "scripts"
    labels = studies / "labels" / "final"
    labels.mkdir(parents=True)
    raw, prepared = scratch / "raw", scratch / "prepared"
    if bundle.name == "xlstm_unet_brats":
        _run_script(scripts / "make_demo_data.py", "--output", str(raw), "--train", str(n_labelled), "--val", "0")
        cases = sorted(p for p in raw.glob("*TrainingData/*") if p.is_dir())[:n_labelled]
        pairs = []
        for case in cases:
            _run_script(scripts / "stack_modalities.py", "--case", str(case), "--output", str(scratch / "stacked"))
            pairs.append((scratch / "stacked" / f"{case.name}.nii.gz", case / f"{case.name}-seg.nii.gz"))
        note = "4-channel 4D NIfTI (stack_modalities.py)"
    else:
        _run_script(scripts / "make_demo_data.py", "--output", str(raw), "--train", str(n_labelled), "--val", "1",
                    "--test", "0", "--ct", "0")
        _run_script(scripts / "prepare_data.py", "--source", str(raw), "--output", str(prepared), "--folds", "2")
        content = json.loads((prepared / "datalist.json").read_text())
        pairs = [((prepared / e["image"]).resolve(), (prepared / e["label"]).resolve())
                 for e in content["training"][:n_labelled]]
        note = "demo case (prepared labels)"
    cases = []
    for index, (image, label) in enumerate(pairs):
        name = f"case{index}"
        shutil.copy(image, studies / f"{name}.nii.gz")
        shutil.copy(label, labels / f"{name}.nii.gz")
        cases.append({"name": name, "image": studies / f"{name}.nii.gz", "label": labels / f"{name}.nii.gz",
                      "note": note})
    first_image, first_label = pairs[0]
    # smaller than the patch even before resampling (labelled, so training meets it too: MONAI #5362)
    _crop_nifti(first_image, studies / "small.nii.gz", (20, 18, 6))
    _crop_nifti(first_label, labels / "small.nii.gz", (20, 18, 6), label=True)
    cases.append({"name": "small", "image": studies / "small.nii.gz", "label": labels / "small.nii.gz",
                  "note": "20x18x6 voxels, smaller than the patch"})
    _oblique_nifti(first_image, studies / "oblique.nii.gz")
    cases.append({"name": "oblique", "image": studies / "oblique.nii.gz", "label": None,
                  "note": "double-oblique affine (20 deg), anisotropic voxels"})
    _permuted_nifti(first_image, studies / "permuted.nii.gz")
    cases.append({"name": "permuted", "image": studies / "permuted.nii.gz", "label": None,
                  "note": "voxel axes stored as (k, i, j) with a flip (orientation, MONAILabel #1051)"})
    import nibabel as nib

    first = nib.load(str(first_image))
    if first.ndim == 3:  # single-channel bundles also get a DICOM series, passed by path as MONAI Label's
        from xlstm_bundle_tools.dicom import write_dicom_series  # DICOMweb datastore passes a downloaded series

        series = scratch / "dicom" / "series0"
        write_dicom_series(np.asarray(first.dataobj).astype(np.int16), first.affine, series)
        cases.append({"name": "series0", "image": series, "request": str(series), "label": None,
                      "note": "DICOM series folder (single-frame MR instances)"})
    return cases


def make_studies_2d(bundle: Path, studies: Path, scratch: Path, n_labelled: int = 4) -> list[dict]:
    import numpy as np
    from PIL import Image

    labels = studies / "labels" / "final"
    labels.mkdir(parents=True)
    raw = scratch / "raw"
    _run_script(bundle / "scripts" / "make_demo_data.py", "--output", str(raw), "--train", str(n_labelled),
                "--val", "0", "--test", "0")
    images = sorted(raw.glob("*Training_Input/*.jpg"))[:n_labelled]
    cases = []
    for index, jpg in enumerate(images):
        mask = next(raw.glob(f"*Training_GroundTruth/{jpg.stem}_segmentation.png"))
        name = f"case{index}"
        Image.open(jpg).save(studies / f"{name}.png")
        values = np.asarray(Image.open(mask))
        # MONAI Label saves its own labels as 0/1; imported ground truth is often 0/255: both occur in a datastore
        Image.fromarray((values > 127).astype(np.uint8) * (255 if index % 2 else 1)).save(labels / f"{name}.png")
        cases.append({"name": name, "image": studies / f"{name}.png", "label": labels / f"{name}.png",
                      "note": f"{Image.open(jpg).size[1]}x{Image.open(jpg).size[0]} RGB PNG"})
    first = Image.open(images[0]).convert("RGB")
    first.resize((128, 96)).save(studies / "small96x128.png")
    cases.append({"name": "small96x128", "image": studies / "small96x128.png", "label": None,
                  "note": "96x128 (HxW) RGB PNG"})
    shutil.copy(images[1], studies / "jpeg.jpg")
    cases.append({"name": "jpeg", "image": studies / "jpeg.jpg", "label": None, "note": "RGB JPEG"})
    return cases


# ----------------------------------------------------------------------------------------------- checks
def read_mask(path: Path, dims: int):
    """(array in file index order (x, y[, z]), affine or None) of a mask / image file, read independently of MONAI."""
    import numpy as np

    if dims == 2:
        from PIL import Image

        picture = Image.open(path)
        return np.asarray(picture).T, None, picture.mode  # PIL is (row, column); transpose to (x, y)
    if path.is_dir():  # a DICOM series: its geometry as ITK (MONAI's reader for folders) gives it, in RAS
        from monai.transforms import LoadImage

        image = LoadImage(image_only=True, reader="ITKReader")(str(path))
        return image.numpy(), image.affine.numpy(), str(image.dtype)
    import nibabel as nib

    image = nib.load(str(path))
    return np.asanyarray(image.dataobj), image.affine, str(image.get_data_dtype())


def reference_masks(bundle: Path, cases: list[dict], scratch: Path, python: str) -> dict[str, tuple[str, str]]:
    """Masks the bundle's own ``inference.json`` writes for the same images and weights, in the project's own
    environment (``python``: numpy 2, monai 1.6), through ``python -m xlstm_bundle_tools.segment_folder``.

    Returns ``{case name: (status, output path or reason)}``. Runs before training changes the weights.
    """
    import csv

    images, output = scratch / "reference_input", scratch / "reference_output"
    images.mkdir()
    for case in cases:
        os.symlink(case["image"], images / Path(case["image"]).name)
    cmd = [python, "-m", "xlstm_bundle_tools.segment_folder", "--bundle", str(bundle), "--input", str(images),
           "--output", str(output), "--weights", str(bundle / "models" / "model.pt"), "--device", "cpu",
           "--no-progress"]
    subprocess.run(cmd, capture_output=True, text=True)
    rows = {}
    status = output / "segment_folder_status.csv"
    if status.is_file():
        with open(status, newline="") as handle:
            for row in csv.DictReader(handle):
                first = row["output"].split(";")[0]
                rows[row["case"]] = (row["status"], str(output / first) if row["status"] == "ok" else row["reason"])
    return rows


def expected_labels(bundle: Path) -> dict:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    pred = next(iter(meta["network_data_format"]["outputs"].values()))
    return {v.lower(): int(k) for k, v in pred.get("channel_def", {}).items() if v.lower() != "background"}


def check_infer(app, bundle: Path, case: dict, dims: int, reference: tuple[str, str] | None) -> str:
    import numpy as np

    request = {"model": bundle.name, "image": case["request"], "device": "cpu", "logging": "WARNING"}
    if Path(case["image"]).is_dir():  # a DICOM series: MONAI Label takes the extension from the request
        request["result_extension"] = ".nii.gz"
    result = app.infer(request=request)
    out = Path(result["file"])
    if not out.is_file():
        raise AssertionError(f"MONAI Label returned no file: {result}")
    labels = result["params"].get("label_names")
    want = expected_labels(bundle)
    if labels != want:
        raise AssertionError(f"label names {labels} differ from the metadata's {want}")
    mask, affine, dtype = read_mask(out, dims)
    source, source_affine, _ = read_mask(Path(case["image"]), dims)
    spatial = source.shape[:dims] if dims == 3 else source.shape[-2:]
    if tuple(mask.shape) != tuple(spatial):
        raise AssertionError(f"mask shape {mask.shape} != image spatial shape {tuple(spatial)} ({out.name})")
    if dims == 3 and not np.allclose(affine, source_affine, atol=1e-3):
        raise AssertionError(f"mask affine differs from the image's (max {np.abs(affine - source_affine).max():.3g}):"
                             f"\n{np.round(affine, 3)}\nvs\n{np.round(source_affine, 3)}")
    values = set(np.unique(mask).tolist())
    if not values <= {0, *want.values()}:
        raise AssertionError(f"mask values {sorted(values)} outside {{0}} + {sorted(want.values())}")
    if reference is None or reference[0] != "ok":
        raise AssertionError(f"MONAI Label's mask {tuple(mask.shape)} passed the geometry checks, but the bundle's own "
                             f"inference failed on this image: {reference[1] if reference else 'no result'}")
    ref, _, _ = read_mask(Path(reference[1]), dims)
    if dims == 2:
        ref = (ref > 127).astype(ref.dtype) if ref.max() > 1 else ref  # the bundle's PNG is 0/255
    if ref.shape != mask.shape:
        raise AssertionError(f"bundle's own mask {ref.shape} vs MONAI Label's {mask.shape}")
    differ = int((ref != mask).sum())
    if differ:
        raise AssertionError(f"{differ} of {mask.size} voxels differ from the bundle's own inference mask")
    if len(values) < 2:
        logger.warning("%s: mask holds one value only, so the voxel comparison says little", case["name"])
    return f"mask {tuple(mask.shape)} {dtype}, values {sorted(values)}, = bundle's own mask"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_train(app, bundle: Path) -> str:
    import torch

    model = bundle / "models" / "model.pt"
    before = sha256(model)
    app.train(request={"model": bundle.name, "max_epochs": 1, "device": "cpu", "multi_gpu": False,
                       "val_split": 0.25, "pretrained": True, "tracking": "None", "logging": "WARNING"})
    if sha256(model) == before:
        raise AssertionError("models/model.pt was not rewritten by one epoch of training")
    state = torch.load(model, map_location="cpu", weights_only=True)
    network_of(bundle).load_state_dict(state, strict=True)
    return f"models/model.pt rewritten, {len(state)} tensors load into network_def"


# ----------------------------------------------------------------------------------------------- driver
def run_one(bundle_name: str, work: Path, full_size: bool, edits: dict, skip_train: bool,
            reference_python: str) -> list[dict]:
    os.environ.setdefault("MONAI_LABEL_DATASTORE_FILE_EXT", json.dumps(EXTENSIONS))
    os.environ.setdefault("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "false")
    import monai
    import monailabel

    source = BUNDLES / bundle_name
    root = work / bundle_name
    if root.exists():
        shutil.rmtree(root)
    app_dir, studies, scratch = root / "app", root / "studies", root / "scratch"
    sample_app = Path(sys.prefix) / "monailabel" / "sample-apps" / "monaibundle"
    shutil.copytree(sample_app, app_dir, ignore=shutil.ignore_patterns("model", "__pycache__"))
    bundle = copy_bundle(source, app_dir, full_size, edits.get(bundle_name, {}))
    write_random_weights(bundle)
    dims = len(next(iter(json.loads((bundle / "configs" / "metadata.json").read_text())
                         ["network_data_format"]["inputs"].values()))["spatial_shape"])
    scratch.mkdir(parents=True)
    cases = (make_studies_2d if dims == 2 else make_studies_3d)(source, studies, scratch)
    for case in cases:
        case.setdefault("request", case["name"])  # a datastore image id
    references = reference_masks(bundle, cases, scratch, reference_python)  # before training changes the weights

    sys.path.insert(0, str(app_dir))
    from main import MyApp  # the monaibundle sample app, as `monailabel start_server --app <app>` loads it

    conf = {"models": bundle_name, "zoo_source": "local", "preload": "false", "sam2": "false"}
    rows = []
    app = MyApp(str(app_dir), str(studies), conf)
    version = f"monai {monai.__version__}, monailabel {monailabel.__version__}"
    for case in cases:
        start = time.time()
        try:
            detail, status = check_infer(app, bundle, case, dims, references.get(case["name"])), "ok"
        except Exception as err:  # every failure is reported, the other cases still run
            detail, status = f"{type(err).__name__}: {err}", "FAIL"
            logger.debug(traceback.format_exc())
            (root / f"infer_{case['name']}.traceback").write_text(traceback.format_exc())
        rows.append({"bundle": bundle_name, "task": "infer", "case": case["name"], "note": case["note"],
                     "status": status, "seconds": round(time.time() - start, 1), "detail": detail,
                     "versions": version})
        print(f"[{status}] {bundle_name} infer {case['name']} ({case['note']}): {detail}", flush=True)
    if not skip_train:
        start = time.time()
        try:
            detail, status = check_train(app, bundle), "ok"
        except Exception as err:
            detail, status = f"{type(err).__name__}: {err}", "FAIL"
            (root / "train.traceback").write_text(traceback.format_exc())
        n = sum(1 for c in cases if c["label"])
        rows.append({"bundle": bundle_name, "task": "train", "case": f"{n} labelled", "note": "1 epoch, val_split 0.25",
                     "status": status, "seconds": round(time.time() - start, 1), "detail": detail,
                     "versions": version})
        print(f"[{status}] {bundle_name} train ({n} labelled images): {detail}", flush=True)
    return rows


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="scratch folder (emptied per bundle)")
    parser.add_argument("--bundle", action="append", help="bundle name (default: every bundle with a metadata.json)")
    parser.add_argument("--edits", type=Path, default=None,
                        help="JSON {bundle: {config file: {id: value}}} applied to the copies, to prototype a fix "
                             "with the real client before it goes into the bundle's bundle.yaml")
    parser.add_argument("--full-size", action="store_true", help="real network and patch sizes (not demo.json)")
    parser.add_argument("--skip-train", action="store_true")
    default_python = REPO / ".venv" / "bin" / "python"
    parser.add_argument("--reference-python", default=str(default_python if default_python.exists() else sys.executable),
                        help="interpreter of the project's own environment, for the bundle's own masks "
                             "(default: the repository's .venv)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    edits = json.loads(args.edits.read_text()) if args.edits else {}
    edits = {k: v for k, v in edits.items() if not k.startswith("_")}

    if args.one:  # child process: one bundle
        rows = run_one(args.one, work, args.full_size, edits, args.skip_train, args.reference_python)
        (work / args.one / "rows.json").write_text(json.dumps(rows, indent=1))
        return 0

    names = args.bundle or sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/metadata.json"))
    digests = {name: tree_digest(BUNDLES / name) for name in names}
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--work", str(work), "--one", name, "--reference-python", args.reference_python]
        cmd += (["--edits", str(args.edits.resolve())] if args.edits else [])
        cmd += (["--full-size"] if args.full_size else []) + (["--skip-train"] if args.skip_train else [])
        start = time.time()
        done = subprocess.run(cmd)
        rows_file = work / name / "rows.json"
        if rows_file.is_file():
            rows += json.loads(rows_file.read_text())
        else:
            rows.append({"bundle": name, "task": "setup", "case": "-", "note": "", "status": "FAIL",
                         "seconds": round(time.time() - start, 1), "detail": f"exit code {done.returncode}"})
        if tree_digest(BUNDLES / name) != digests[name]:
            rows.append({"bundle": name, "task": "source", "case": "-", "note": "", "status": "FAIL",
                         "seconds": 0, "detail": "the source bundle changed during the run"})
    (work / "report.json").write_text(json.dumps(rows, indent=1))
    print("\n| bundle | task | case | status | s | detail |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} | {r['task']} | {r['case']} | {r['status']} | {r['seconds']} | {r['detail'][:160]} |")
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"\n{len(rows) - failed} ok, {failed} failed ({rows[0].get('versions', '') if rows else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
