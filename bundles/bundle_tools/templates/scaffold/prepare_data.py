# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Prepare the dataset for the bundle: check every case, then write ``datalist.json`` with seeded folds.

    python bundles/__NAME__/scripts/prepare_data.py --source /data/<release> --output /data/__NAME___prepared

TODO: read the release exactly as it is distributed. This placeholder reads the Medical Segmentation Decathlon's
layout (``dataset.json`` listing ``training`` image/label pairs and ``test`` images). Its label names must be the
bundle's (scripts/labels.py, bundle.yaml class_names) in the same numbering; a dataset that numbers
them differently needs relabelled copies written here (see xlstm_unet_amos3d's prepare_data.py).

Every case is read fully first: a missing or unreadable file, NaN voxels, a label outside the class set, or a label
on another grid than its image stops the run with an error naming the file; nothing is written then. Sources are
never modified; the datalist references them in place.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from xlstm_bundle_tools.checks import InvalidInputError, check_cases
from xlstm_bundle_tools.datalist import preparation_main, write_datalist

try:
    from .labels import LABELS
except ImportError:  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from labels import LABELS

logger = logging.getLogger("prepare_data")


def prepare(source: Path, output: Path, num_folds: int = 5, seed: int = 0) -> dict:
    index = source / "dataset.json"
    try:
        dataset = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"{index}: cannot be read ({type(err).__name__}: {err}).") from err
    names = {int(k): v for k, v in dataset.get("labels", {}).items()}
    expected = {0: "background", **{i + 1: n for i, n in enumerate(LABELS)}}
    if names != expected:
        raise InvalidInputError(f"{index}: labels {names} are not the bundle's {expected}.")
    training = [{"case_id": Path(e["image"]).name.split(".")[0], "image": str(source / e["image"]),
                 "label": str(source / e["label"])} for e in dataset.get("training", [])]
    testing = [{"case_id": Path(p).name.split(".")[0], "image": str(source / p)} for p in dataset.get("test", [])]
    check_cases(training, class_values=list(expected), desc="checking labelled cases")
    if testing:
        check_cases(testing, label_key=None, desc="checking unlabelled cases")
    output.mkdir(parents=True, exist_ok=True)
    content = write_datalist(output / "datalist.json", training, testing, num_folds=num_folds, seed=seed,
                             name=dataset.get("name", ""), labels={str(k): v for k, v in expected.items()})
    logger.info("%d labelled and %d unlabelled cases in %s", len(training), len(testing), output / "datalist.json")
    return content


def main(argv: list[str] | None = None) -> None:
    preparation_main(prepare, __doc__, source_help="the release's folder (with dataset.json)", argv=argv)


if __name__ == "__main__":
    main()
