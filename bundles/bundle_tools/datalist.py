# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Seeded datalists with cross-validation folds, in MONAI's Decathlon format.

A datalist is one JSON file beside the data it lists::

    {"name": ..., "labels": {"0": "background", ...}, "num_folds": 5, "seed": 0,
     "training": [{"case_id": "amos_0507", "image": "imagesTr/amos_0507.nii.gz", "label": "...", "fold": 3}, ...],
     "testing": [{"case_id": ..., "image": ...}, ...]}

Paths are relative to the datalist's folder (absolute ones are kept), so the folder can move. Bundles read a fold with
:func:`load_fold`; MONAI's ``load_decathlon_datalist`` reads the same file.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

from .errors import DatalistError
from .io import atomic_write_json

__all__ = ["assign_folds", "write_datalist", "load_fold", "preparation_main", "DatalistError", "SPLITS"]

SPLITS = ("train", "val", "all", "test")


def assign_folds(case_ids: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Shuffle ``case_ids`` with ``seed`` and deal them round-robin into ``num_folds`` folds (sizes differ by ≤ 1)."""
    if num_folds < 2:
        raise DatalistError(f"the number of folds (--folds) must be at least 2; got {num_folds}.")
    if len(case_ids) < num_folds:
        raise DatalistError(f"{len(case_ids)} labelled cases cannot fill {num_folds} folds; use fewer folds (--folds) "
                            "or more cases.")
    order = sorted(case_ids)
    random.Random(seed).shuffle(order)
    return {case: index % num_folds for index, case in enumerate(order)}


def write_datalist(
    path: str | os.PathLike,
    training: Sequence[Mapping],
    testing: Sequence[Mapping] = (),
    *,
    num_folds: int = 5,
    seed: int = 0,
    group_key: str | None = None,
    **extra,
) -> dict:
    """Assign folds to ``training`` (each a dict with ``case_id``) and write the datalist atomically.

    Paths in the entries are stored relative to ``path``'s folder when they lie under it. ``group_key``: entries
    with the same value of that key (frames of one video) share a fold, and the folds are dealt over the groups;
    the datalist records it as ``fold_groups``.
    """
    if not training:
        raise DatalistError(f"{path}: no labelled cases to write.")
    folder = Path(path).resolve().parent
    if group_key is None:
        folds = assign_folds([entry["case_id"] for entry in training], num_folds, seed)
    else:
        group_folds = assign_folds(sorted({str(entry[group_key]) for entry in training}), num_folds, seed)
        folds = {entry["case_id"]: group_folds[str(entry[group_key])] for entry in training}
        extra = {**extra, "fold_groups": group_key}

    def rel(value):
        if isinstance(value, (list, tuple)):
            return [rel(v) for v in value]
        p = Path(value).resolve()
        return str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p)

    def entry_out(entry, fold=None):
        out = {k: (rel(v) if k in ("image", "label") else v) for k, v in entry.items()}
        if fold is not None:
            out["fold"] = fold
        return out

    content = {
        **extra,
        "num_folds": num_folds,
        "seed": seed,
        "training": [entry_out(e, folds[e["case_id"]]) for e in sorted(training, key=lambda e: e["case_id"])],
        "testing": [entry_out(e) for e in sorted(testing, key=lambda e: e["case_id"])],
    }
    atomic_write_json(path, content)
    return content


def load_fold(path: str | os.PathLike, fold: int = 0, split: str = "train") -> list[dict]:
    """Entries of one split of a datalist, with absolute paths.

    Args:
        path: the datalist JSON.
        fold: validation fold; ``split="train"`` returns every other fold.
        split: ``"train"``, ``"val"`` (the fold itself), ``"all"`` (every labelled case) or ``"test"``.

    Raises:
        DatalistError: the file is missing or malformed, the split is empty, or the fold does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
    path = Path(path)
    if not path.is_file():
        raise DatalistError(
            f"{path}: datalist not found. Create it with the bundle's data preparation script "
            "(docs/README.md, 'Data') or point --dataset_dir at a prepared folder."
        )
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatalistError(f"{path}: not a readable JSON datalist ({err}).") from err
    key = "testing" if split == "test" else "training"
    if not isinstance(content.get(key), list) or not content[key]:
        raise DatalistError(f"{path}: the '{key}' list is empty or missing, so there is nothing to {split}.")
    entries = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=key, base_dir=str(path.parent))
    if split in ("all", "test"):
        return entries
    num_folds = content.get("num_folds")
    if not isinstance(fold, int) or num_folds is None or not 0 <= fold < num_folds:
        raise DatalistError(f"{path}: fold {fold!r} does not exist; the datalist has folds 0..{num_folds - 1}.")
    chosen = [e for e in entries if (e.get("fold") == fold) == (split == "val")]
    if not chosen:
        raise DatalistError(f"{path}: fold {fold} leaves the '{split}' split empty.")
    return chosen


def preparation_main(
    prepare: Callable[..., object],
    description: str,
    source_help: str,
    output_help: str = "folder for datalist.json",
    several_sources: bool = False,
    options: Mapping[str, Mapping] | None = None,
    argv: list[str] | None = None,
) -> None:
    """The command line every bundle's ``scripts/prepare_data.py`` shares:
    ``--source`` (one folder, or several with ``several_sources``), ``--output``, ``--folds`` (5), ``--seed`` (0),
    and the bundle's own ``options`` (``{"--crop": {"choices": [...], "default": ..., "help": ...}}``, passed to
    ``prepare`` as keyword arguments); then ``prepare(source, output, folds, seed, **options)`` with INFO logging.
    An InputError from ``prepare`` ends the process with only its message (``xlstm_bundle_tools.errors``)."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, nargs="+" if several_sources else None, help=source_help)
    parser.add_argument("--output", required=True, type=Path, help=output_help)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    own = [parser.add_argument(flag, **spec).dest for flag, spec in (options or {}).items()]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare(args.source, args.output, args.folds, args.seed, **{dest: getattr(args, dest) for dest in own})
