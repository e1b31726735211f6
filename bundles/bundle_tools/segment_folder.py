# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Segment every image in a folder with a bundle; a bad case fails alone, nothing is half-written, reruns resume.

    python -m xlstm_bundle_tools.segment_folder --bundle bundles/xlstm_unet_amos3d --input scans/ --output masks/

Cases are found anywhere below ``--input``: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD, DICOM series folders
(a folder holding DICOM files), and PNG/JPEG/TIFF/BMP pictures for 2D bundles. Every case runs through the bundle's
own ``configs/inference.json`` (parsed with ``monai.bundle.ConfigParser``; only the standard ids ``network``,
``preprocessing``, ``inferer``, ``postprocessing``, ``output_dir``, ``device`` and ``ckpt_dir`` are used, so the
config may be restructured freely), with the weights loaded once.

- Progress: a bar with the case count, the elapsed time and an ETA; each failure is printed as it happens.
- ``<output>/segment_folder_status.csv``: ``case,status,seconds,output,reason`` (status ``ok``, ``failed`` or
  ``skipped``), rewritten atomically after every case, so it is always complete for the cases done so far.
- A case that cannot be used (unreadable or truncated file, wrong number of channels, NaN or infinite voxels, wrong
  dimensionality, a folder without DICOM files, ...) is marked ``failed`` with the reason, which names the file;
  the other cases go on. The exit status is 1 if any case failed, 0 otherwise.
- Outputs are written to a scratch folder inside ``--output`` and moved into place with ``os.replace`` only when a
  case has finished, so an interrupted run leaves no partial mask. Outputs mirror the input tree:
  ``scans/a/b.nii.gz`` gives ``masks/a/b_seg.nii.gz``.
- A rerun skips the cases the status file lists as ``ok`` whose outputs still exist; ``--redo`` runs them again.
- ``--dicom-seg`` also writes ``<case>_seg.dcm`` (DICOM-SEG, needs the ``dicom`` extra) for DICOM series cases.

Training is different on purpose: its preflight (``check_cases`` in ``train.json``'s ``initialize``) reads every
case and stops before the first iteration when any is unusable, listing all of them. A training set that silently
loses cases changes the folds and the data distribution without anyone noticing, so it must be fixed, not skipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .checks import InvalidInputError, check_image_array
from .dicom import is_dicom_file, is_dicom_series_dir
from .io import atomic_write_text

__all__ = ["find_cases", "FolderSegmenter", "main", "STATUS_FILE"]

STATUS_FILE = "segment_folder_status.csv"
SCRATCH = ".segment_folder_partial"
FIELDS = ("case", "status", "seconds", "output", "reason")
EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _case_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    for ext in EXTENSIONS:
        if rel.lower().endswith(ext):
            return rel[: -len(ext)]
    return rel


def find_cases(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(case name, path)`` for every image file and DICOM series folder below ``root``, sorted by name.

    A folder holding DICOM files is one case (its sub-folders are searched too); other files are not cases.
    ``root`` itself may be a single series folder.
    """
    root = Path(root)
    if is_dicom_series_dir(root):
        return [(root.name, root)]
    cases = []
    for folder, subdirs, files in os.walk(root, followlinks=True):  # series folders are often symlinked
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        folder = Path(folder)
        if folder != root and any(is_dicom_file(folder / f) for f in files):
            cases.append((folder.relative_to(root).as_posix(), folder))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(EXTENSIONS):
                cases.append((_case_name(folder / name, root), folder / name))
    return sorted(cases)


def _root_cause(err: BaseException) -> BaseException:
    """MONAI wraps transform errors in ``RuntimeError('applying transform ...')``; the first cause says what's wrong."""
    seen = err
    while seen.__cause__ is not None and (isinstance(seen, RuntimeError) and "applying transform" in str(seen)
                                          or "Failed to evaluate" in str(seen)):
        seen = seen.__cause__
    return seen


def _reason(err: BaseException, path: Path) -> str:
    """One line naming the file and what is wrong with it."""
    root = _root_cause(err)
    text = " ".join(str(root).split())
    text = text if isinstance(root, InvalidInputError) else f"{type(root).__name__}: {text}"
    if str(path) not in text:
        text = f"{path}: {text}"
    return text[:500]


class FolderSegmenter:
    """The bundle's inference pipeline, parsed once, applied case by case.

    Args:
        bundle: the bundle folder.
        configs: extra config files merged over ``configs/inference.json`` (e.g. ``configs/demo.json``).
        weights: checkpoint to load (default: the config's ``checkpointloader#load_path`` or ``ckpt_dir/model.pt``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: the config's.
        scratch: folder the config's savers write into (its ``output_dir``).
    """

    def __init__(self, bundle: str | os.PathLike, scratch: str | os.PathLike, configs: Sequence[str] = (),
                 weights: str | None = None, device: str | None = None) -> None:
        import torch
        from monai.bundle import ConfigParser

        self.bundle = Path(bundle).resolve()
        parser = ConfigParser()
        parser.read_config([str(self.bundle / "configs" / "inference.json"), *map(str, configs)])
        parser.read_meta(str(self.bundle / "configs" / "metadata.json"))  # after: a config may carry its own _meta_
        parser["bundle_root"] = str(self.bundle)
        parser["output_dir"] = str(scratch)
        if device:
            parser["device"] = f"$torch.device({device!r})"
        self.device = parser.get_parsed_content("device")
        self.amp = bool(parser.get_parsed_content("amp")) if "amp" in parser.config else False
        self.amp = self.amp and self.device.type == "cuda"
        inputs = next(iter(parser["_meta_"]["network_data_format"]["inputs"].values()))
        self.spatial_dims = len(inputs["spatial_shape"])
        self.channels = int(inputs["num_channels"])
        self.channel_names = list(inputs.get("channel_def", {}).values())
        self.network = parser.get_parsed_content("network")
        if weights is None:
            weights = (parser.get_parsed_content("checkpointloader#load_path") if "checkpointloader" in parser.config
                       else str(Path(parser.get_parsed_content("ckpt_dir")) / "model.pt"))
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: no weights to load (train the bundle or pass --weights).")
        state = torch.load(weights, map_location=self.device, weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        self.network.load_state_dict(state)
        self.network.eval()
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.postprocessing = parser.get_parsed_content("postprocessing")
        self.labels = {int(k): v for k, v in next(iter(parser["_meta_"]["network_data_format"]["outputs"].values()))
                       .get("channel_def", {}).items() if str(v).lower() != "background"}

    def check_loaded(self, image, source: str) -> None:
        """Channel count, dimensionality and finite voxels of an image as loaded (before channel handling)."""
        channel_dim = image.meta.get("original_channel_dim", "no_channel") if hasattr(image, "meta") else "no_channel"
        no_channel = channel_dim is None or channel_dim == "no_channel" or (
            isinstance(channel_dim, float) and math.isnan(channel_dim))
        channels = 1 if no_channel else int(image.shape[int(channel_dim)])
        spatial = image.ndim if no_channel else image.ndim - 1
        if spatial != self.spatial_dims:
            raise InvalidInputError(
                f"{source}: {spatial}D image of shape {tuple(image.shape)}; this bundle segments "
                f"{self.spatial_dims}D images.")
        if channels != self.channels:
            names = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
            raise InvalidInputError(
                f"{source}: {channels} channel{'s' if channels != 1 else ''}; this bundle expects "
                f"{self.channels}{names}.")
        check_image_array(image, source)

    def __call__(self, path: Path) -> dict:
        """Run one case; the config's savers write its outputs into the scratch folder. Returns the case's data."""
        import torch
        from monai.transforms import Compose, LoadImaged, apply_transform

        steps = list(self.preprocessing.transforms) if isinstance(self.preprocessing, Compose) else [self.preprocessing]
        data = {"image": str(path)}
        if path.is_dir() and not is_dicom_series_dir(path):
            raise InvalidInputError(f"{path}: folder holds no DICOM files.")
        for step in steps:
            data = apply_transform(step, data)
            if isinstance(step, LoadImaged):
                self.check_loaded(data["image"], str(path))
        inputs = data["image"][None].to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.amp):
            pred = self.inferer(inputs, self.network)
        data["pred"] = pred[0].float().cpu() if hasattr(pred, "float") else pred[0]
        data["image"] = data["image"].cpu()
        return apply_transform(self.postprocessing, data)


def _read_status(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def _write_status(path: Path, rows: dict[str, dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for name in sorted(rows):
        writer.writerow({k: rows[name].get(k, "") for k in FIELDS})
    atomic_write_text(path, buffer.getvalue())


def _segment_one(segmenter: FolderSegmenter, name: str, path: Path, output_dir: Path, scratch: Path,
                 dicom_seg: bool) -> dict:
    """Run one case into ``scratch``, then move its files into place; returns its status row."""
    start = time.perf_counter()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        data = segmenter(path)
        produced = sorted(p for p in scratch.iterdir() if p.is_file() and ".partial" not in p.name)
        if dicom_seg and path.is_dir():
            from .dicom import write_dicom_seg

            pred = data["pred"]
            dcm = scratch / f"{path.name}_seg.dcm"
            write_dicom_seg(pred.detach().cpu().numpy().astype(np.uint16), np.asarray(pred.affine), path, dcm,
                            segmenter.labels)
            produced.append(dcm)
        if not produced:
            raise RuntimeError("the bundle's postprocessing wrote no file (does it end with a SaveImaged?)")
        final_dir = (output_dir / name).parent
        final_dir.mkdir(parents=True, exist_ok=True)
        finals = []
        for item in produced:  # same file system: each move is atomic
            os.replace(item, final_dir / item.name)
            finals.append((final_dir / item.name).relative_to(output_dir).as_posix())
        return {"case": name, "status": "ok", "seconds": f"{time.perf_counter() - start:.1f}",
                "output": ";".join(finals), "reason": ""}
    except Exception as err:  # one bad case must not stop the others
        return {"case": name, "status": "failed", "seconds": f"{time.perf_counter() - start:.1f}", "output": "",
                "reason": _reason(err, path)}


def run(bundle: str, input_dir: str, output_dir: str, redo: bool = False, configs: Sequence[str] = (),
        weights: str | None = None, device: str | None = None, dicom_seg: bool = False, progress: bool = True) -> int:
    """Segment ``input_dir`` into ``output_dir``; returns the process exit status (0 all done, 1 any failed)."""
    from tqdm import tqdm

    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not input_dir.is_dir():
        raise SystemExit(f"segment_folder: {input_dir}: input folder not found.")
    if output_dir == input_dir or input_dir in output_dir.parents:
        raise SystemExit(f"segment_folder: {output_dir}: the output folder must lie outside the input folder.")
    cases = find_cases(input_dir)
    if not cases:
        raise SystemExit(f"segment_folder: {input_dir}: no images or DICOM series found ({', '.join(EXTENSIONS)}).")
    if dicom_seg:
        from .dicom import _need

        _need("highdicom")
    output_dir.mkdir(parents=True, exist_ok=True)
    scratch = output_dir / SCRATCH
    status_path = output_dir / STATUS_FILE
    previous = _read_status(status_path)
    rows: dict[str, dict] = {}
    todo = []
    for name, path in cases:
        old = previous.get(name)
        outputs = [output_dir / p for p in (old or {}).get("output", "").split(";") if p]
        if not redo and old and old.get("status") in ("ok", "skipped") and outputs and all(p.is_file() for p in outputs):
            rows[name] = {**old, "status": "skipped", "seconds": 0,
                          "reason": "finished in an earlier run (--redo runs it again)"}
        else:
            todo.append((name, path))
    segmenter = FolderSegmenter(bundle, scratch, configs=configs, weights=weights, device=device)
    failed = 0
    bar = tqdm(todo, unit="case", desc="segmenting", disable=not progress, dynamic_ncols=True)
    logging.disable(logging.INFO)  # MONAI's savers log every file at INFO, which would break up the progress bar
    try:
        for name, path in bar:
            rows[name] = _segment_one(segmenter, name, path, output_dir, scratch, dicom_seg)
            if rows[name]["status"] == "failed":
                failed += 1
                bar.write(f"failed: {name}: {rows[name]['reason']}")
            bar.set_postfix(failed=failed)
            # cases not reached yet keep their earlier row, so an interrupted run loses nothing
            _write_status(status_path, {**{n: previous[n] for n, _ in todo if n in previous}, **rows})
    finally:
        logging.disable(logging.NOTSET)
        bar.close()
    shutil.rmtree(scratch, ignore_errors=True)
    _write_status(status_path, rows)
    counts = {s: sum(r["status"] == s for r in rows.values()) for s in ("ok", "skipped", "failed")}
    print(f"segment_folder: {counts['ok']} segmented, {counts['skipped']} skipped, {counts['failed']} failed; "
          f"status in {status_path}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlstm_bundle_tools.segment_folder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle folder (holds configs/inference.json)")
    parser.add_argument("--input", required=True, help="folder of images / DICOM series")
    parser.add_argument("--output", required=True, help="folder for the masks and segment_folder_status.csv")
    parser.add_argument("--redo", action="store_true", help="segment the cases finished in an earlier run again")
    parser.add_argument("--config", action="append", default=[],
                        help="extra config file merged over inference.json (repeatable), e.g. configs/demo.json")
    parser.add_argument("--weights", help="checkpoint (default: the bundle's models/model.pt)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the config's choice)")
    parser.add_argument("--dicom-seg", action="store_true", help="also write DICOM-SEG for DICOM series cases")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run(args.bundle, args.input, args.output, redo=args.redo, configs=args.config, weights=args.weights,
               device=args.device, dicom_seg=args.dicom_seg, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
