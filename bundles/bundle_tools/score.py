# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Score a folder of predictions against a folder of references with a named evaluation protocol.

    python -m xlstm_bundle_tools.score --protocol amos --pred preds/ --ref labelsTs/ --out metrics.csv
    python -m xlstm_bundle_tools.score --protocol brats2023 --pred preds/ --ref BraTS2023/ --out m.csv \
        --option challenge=MEN

Protocols: amos, brats-segmamba, brats2023, isic, endovis, cells (``docs/evaluation.md``). Predictions made anywhere
(nnU-Net, SegMamba, the official code, our bundles) are scored by the same code as our evaluate configs.

Files are matched by case id. A reference's case id is its file name without the extension and without the dataset's
reference suffix (BraTS ``-seg``, ISIC ``_segmentation``, cells ``_label``; nnU-Net and PNG label maps have none).
A prediction matches when its name without the extension equals the case id, or does so after removing one
prediction suffix (``_seg``, ``-seg``, ``_pred``, ``_label``, ...) and then one channel suffix (nnU-Net's ``_0000``,
BraTS modality ``-t1c``/``-t1n``/``-t2f``/``-t2w``). Both folders are searched recursively (BraTS keeps one folder per
case). A reference without a prediction is an error naming the cases; predictions without a reference are reported
and skipped.

The CSV has a ``case`` column, then the protocol's ``<metric>_<class>`` columns, one row per case (sorted), then a
``mean`` row (and for ``isic`` a ``pooled`` row, the paper's figure). It is written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from .metrics import format_metrics_csv
from .io import atomic_write_text
from .protocols import PROTOCOLS, Protocol, ProtocolError, get_protocol

__all__ = ["main", "score_folders", "match_cases", "case_id"]

logger = logging.getLogger("xlstm_bundle_tools.score")

PRED_SUFFIXES = ("_segmentation", "_prediction", "_seg", "-seg", "_pred", "-pred", "_label", "_labels", "_mask")
_CHANNEL_SUFFIX = re.compile(r"(_\d{4}|-t1c|-t1n|-t2f|-t2w|-t1|-t2|-flair)$", re.IGNORECASE)


def _strip_extension(name: str, extensions: Sequence[str]) -> str | None:
    lower = name.lower()
    for ext in sorted(extensions, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return None


def case_id(path: Path, protocol: Protocol) -> str | None:
    """Case id of a reference file, or None when the file is not of the protocol's kind."""
    stem = _strip_extension(path.name, protocol.extensions)
    if stem is None:
        return None
    for suffix in protocol.ref_suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _pred_candidates(path: Path, protocol: Protocol) -> list[str]:
    """Case ids a prediction file may stand for, most literal first."""
    stem = _strip_extension(path.name, protocol.extensions)
    if stem is None:
        return []
    candidates = [stem]
    for suffix in PRED_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            candidates.append(stem)
            break
    channel = _CHANNEL_SUFFIX.search(stem)
    if channel and channel.start() > 0:
        candidates.append(stem[: channel.start()])
    return candidates


def _files(folder: Path, protocol: Protocol) -> list[Path]:
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: not a folder.")
    return sorted(p for p in folder.rglob("*") if p.is_file() and _strip_extension(p.name, protocol.extensions))


def match_cases(pred_dir: Path, ref_dir: Path, protocol: Protocol) -> list[tuple[str, Path, Path]]:
    """(case id, prediction, reference) for every reference; raises naming the cases without a prediction."""
    refs: dict[str, Path] = {}
    for path in _files(ref_dir, protocol):
        cid = case_id(path, protocol)
        if cid in refs:
            raise ProtocolError(f"{ref_dir}: case {cid!r} has two references, {refs[cid]} and {path}.")
        refs[cid] = path
    if not refs:
        raise ProtocolError(f"{ref_dir}: no reference files ({', '.join(protocol.extensions)}) for protocol "
                            f"{protocol.name!r}.")
    by_candidate: dict[str, list[tuple[int, Path]]] = {}
    for path in _files(pred_dir, protocol):
        if path.resolve() in {p.resolve() for p in refs.values()}:
            continue
        for level, cid in enumerate(_pred_candidates(path, protocol)):
            by_candidate.setdefault(cid, []).append((level, path))
    matched, missing, used = [], [], set()
    for cid, ref in sorted(refs.items()):
        options = by_candidate.get(cid, [])
        if not options:
            missing.append(cid)
            continue
        best = min(level for level, _ in options)
        chosen = [p for level, p in options if level == best]
        if len(chosen) > 1:
            raise ProtocolError(f"case {cid!r}: several predictions match: {', '.join(map(str, chosen))}.")
        matched.append((cid, chosen[0], ref))
        used.add(chosen[0])
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ProtocolError(f"{pred_dir}: no prediction for {len(missing)} of {len(refs)} cases: {shown}.")
    extra = [p for p in _files(pred_dir, protocol) if p not in used and p.resolve() not in
             {r.resolve() for r in refs.values()}]
    if extra:
        logger.warning("%d prediction(s) have no reference and are not scored, e.g. %s", len(extra), extra[0])
    return matched


def score_folders(protocol: Protocol, pred_dir: Path, ref_dir: Path, out: Path | None = None,
                  progress: bool = True) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Score every case; write the CSV to ``out`` (atomically) when given. Returns (rows, summary rows)."""
    cases = match_cases(Path(pred_dir), Path(ref_dir), protocol)
    rows = []
    for cid, pred_path, ref_path in tqdm(cases, desc=f"scoring ({protocol.name})", disable=not progress,
                                         file=sys.stderr, unit="case"):
        ref = protocol.load(ref_path, "ref")
        pred = protocol.load(pred_path, "pred")
        spacing = pred.spacing if getattr(protocol, "spacing_from", "ref") == "pred" else ref.spacing
        try:
            row = protocol.score(pred.array, ref.array, spacing, pred_path=pred_path, ref_path=ref_path)
        except ProtocolError:
            raise
        except ValueError as error:
            raise ProtocolError(f"case {cid!r} ({pred_path} vs {ref_path}): {error}") from error
        rows.append({"case": cid, **row})
    summary = protocol.summarize(rows)
    if out is not None:
        atomic_write_text(out, format_metrics_csv(rows, summary, protocol.columns()))
    return rows, summary


def _parse_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option {text!r}: expected NAME=VALUE.")
    name, value = text.split("=", 1)
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlstm_bundle_tools.score", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS), help="evaluation protocol")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predictions")
    parser.add_argument("--ref", required=True, type=Path, help="folder of references (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="CSV to write")
    parser.add_argument("--option", action="append", default=[], type=_parse_option, metavar="NAME=VALUE",
                        help="protocol option, e.g. challenge=MEN (brats2023), pred_kind=interior (cells); repeatable")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        protocol = get_protocol(args.protocol, **dict(args.option))
    except (TypeError, ValueError) as error:
        parser.error(f"protocol {args.protocol!r}: {error}")
    try:
        rows, summary = score_folders(protocol, args.pred, args.ref, args.out, progress=not args.quiet)
    except ProtocolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    headline = {k: round(v, 4) for k, v in protocol.headline(summary).items()}
    print(f"{len(rows)} cases scored with {protocol.name} ({protocol.source}): {headline} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
