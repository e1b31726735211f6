# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Create a new bundle that passes ``ci/verify_bundle.py`` as it is, with placeholders for the dataset's specifics.

    python -m xlstm_bundle_tools.scaffold bundles/xlstm_unet_spleen --labels spleen --modality CT
    python -m xlstm_bundle_tools.scaffold bundles/xlstm_unet_kidneys --labels "left kidney" "right kidney"

Writes ``bundle.yaml`` (a 3D multi-class xLSTM-UNet on NIfTI volumes: network, geometry, training recipe, demo
sizes), ``scripts/`` (a label list, a demo generator and a preparation script for the Medical Segmentation
Decathlon's layout), ``docs/README.md``, ``docs/data_license.txt`` and ``LICENSE``, then renders ``configs/*``
(:mod:`xlstm_bundle_tools.render`). Every line a real dataset changes is marked ``TODO``; the command lists them.
Refuses to write into an existing folder.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .render import TEMPLATES, write_bundle

__all__ = ["scaffold", "todo_lines"]

SCAFFOLD = TEMPLATES / "scaffold"
LICENSE = Path(__file__).resolve().parents[2] / "LICENSE"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
FILES = {  # template -> place in the new bundle
    "bundle.yaml": "bundle.yaml",
    "labels.py": "scripts/labels.py",
    "make_demo_data.py": "scripts/make_demo_data.py",
    "prepare_data.py": "scripts/prepare_data.py",
    "README.md": "docs/README.md",
    "data_license.txt": "docs/data_license.txt",
}


def _flow(value) -> str:
    return json.dumps(value)  # JSON is YAML flow style and a Python literal


def scaffold(folder: Path, labels: Sequence[str], modality: str = "MR") -> list[Path]:
    """Create the bundle folder ``folder`` (its name is the bundle's); returns the files written."""
    folder = Path(folder)
    if not NAME_PATTERN.fullmatch(folder.name):
        raise ValueError(f"{folder.name!r}: a bundle name is lower case letters, digits and '_' (the zoo's rule)")
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; the scaffold writes only new bundles")
    labels = [str(name).strip() for name in labels]
    if not labels or any(not n or n.lower() == "background" for n in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"labels {labels}: give each foreground class once, by name (background is value 0)")
    values = {
        "__NAME__": folder.name,
        "__SHORT__": folder.name.rsplit("_", 1)[-1],
        "__LABELS__": _flow(labels),
        "__LABEL_TEXT__": ", ".join(labels),
        "__LABEL_CLASSES__": "0 background, " + ", ".join(f"{i + 1} {n}" for i, n in enumerate(labels)),
        "__NUM_CLASSES__": str(len(labels) + 1),
        "__CHANNEL_DEF__": _flow({"0": "background", **{str(i + 1): n for i, n in enumerate(labels)}}),
        "__NSD__": _flow({n: 2 for n in labels}),
        "__MODALITY__": modality,
    }
    written = []
    try:
        for template, target in FILES.items():
            text = (SCAFFOLD / template).read_text()
            for key, value in values.items():
                text = text.replace(key, value)
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
        (folder / "scripts" / "__init__.py").write_text("")
        shutil.copyfile(LICENSE, folder / "LICENSE")
        written += [folder / "scripts" / "__init__.py", folder / "LICENSE"]
        written += write_bundle(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-made stays behind
        raise
    return written


def todo_lines(folder: Path) -> list[str]:
    """``path:line: text`` of every TODO in the bundle's hand-written files (configs/ is rendered)."""
    out = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and "configs" not in p.parts):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "TODO" in line:
                out.append(f"{path}:{number}: {line.strip()}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the new bundle's folder, e.g. bundles/xlstm_unet_spleen")
    parser.add_argument("--labels", nargs="+", required=True, help="foreground class names, in label-value order")
    parser.add_argument("--modality", default="MR", help="imaging modality (metadata, demo data); default MR")
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.folder, args.labels, args.modality)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"created {args.folder} ({len(written)} files). Check it: python ci/verify_bundle.py {args.folder}")
    print("Then make it the dataset's (docs/adding_a_bundle.md), starting with these lines:")
    print("\n".join(todo_lines(args.folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
