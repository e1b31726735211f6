# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The contract between a bundle's ``scripts/make_demo_data.py`` and the tools that call it.

Every demo generator declares its case counts by name, in a module-level ``SIZES`` dict, and takes ``--size NAME``:

- ``demo``: what ``make demo-<bundle>`` trains on (the default);
- ``verify``: what ``ci/verify_bundle.py`` generates. After ``scripts/prepare_data.py`` with its default 5 folds, fold
  0 must hold at least :data:`MIN_VALIDATION_CASES` validation cases (one for each of the 2 torchrun processes of the
  multi-GPU check: MONAI's ``DistributedSampler`` refuses fewer cases than processes) and at least one case for
  inference (a ``testing`` entry). The verifier checks both and says so when they are not met.

Each count can still be set on its own (``--train 3``); ``--size`` gives the rest.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

__all__ = ["MIN_VALIDATION_CASES", "SIZE_NAMES", "add_size_options", "chosen_sizes"]

SIZE_NAMES = ("demo", "verify")
MIN_VALIDATION_CASES = 2


def add_size_options(parser: argparse.ArgumentParser, sizes: Mapping[str, Mapping[str, int]],
                     help: Mapping[str, str]) -> None:
    """Add ``--size`` and one ``--<count>`` option per entry of ``help`` (``{"train": "labelled cases", ...}``)."""
    missing = [name for name in SIZE_NAMES if name not in sizes]
    if missing:
        raise ValueError(f"SIZES must name {list(SIZE_NAMES)}; missing {missing}")
    for name, counts in sizes.items():
        if set(counts) != set(help):
            raise ValueError(f"SIZES[{name!r}] gives {sorted(counts)}; the options are {sorted(help)}")
    described = "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) for name, counts in sizes.items())
    parser.add_argument("--size", choices=list(sizes), default="demo", help=f"named case counts ({described})")
    for name, text in help.items():
        parser.add_argument(f"--{name}", type=int, default=None, help=f"{text} (default: from --size)")


def chosen_sizes(args: argparse.Namespace, sizes: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """The counts ``--size`` names, with any count given on its own in their place."""
    counts = dict(sizes[args.size])
    for name in counts:
        value = getattr(args, name)
        if value is not None:
            counts[name] = value
    return counts
