# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Count the config lines bundles repeat from each other, as a line diff sees them.

    python ci/config_duplication.py                 # the working tree: hand-kept sources and generated configs
    python ci/config_duplication.py --rev main      # the configs as committed at a revision

For each bundle and each file kind, a line counts as duplicated when ``difflib`` (the matching ``diff`` uses) pairs it
with a line of the same file kind in another bundle. Blank lines and lines of brackets and commas alone are not
counted. ``duplicates`` does not read JSON or YAML, hence this script.

Hand-kept files: ``bundles/*/configs/*.json`` and ``logging.conf`` where a bundle has no ``bundle.yaml``; otherwise
its ``bundle.yaml`` (the shared templates are kept once, and counted once). Generated files are reported apart: they
repeat by design and a test keeps them equal to what their sources render.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("metadata.json", "train.json", "inference.json", "evaluate.json", "multi_gpu_train.json", "demo.json",
           "logging.conf")


def meaningful(line: str) -> bool:
    return bool(line.strip().strip("[]{},"))


def duplicated(lines: list[str], others: list[list[str]]) -> int:
    """How many meaningful lines of ``lines`` a diff pairs with some line of one of ``others``."""
    hit = set()
    for other in others:
        matcher = difflib.SequenceMatcher(None, [l.strip() for l in lines], [l.strip() for l in other], autojunk=False)
        for block in matcher.get_matching_blocks():
            hit.update(range(block.a, block.a + block.size))
    return sum(1 for i in hit if meaningful(lines[i]))


def read(path: str, rev: str | None) -> list[str] | None:
    if rev is None:
        p = REPO / path
        return p.read_text().splitlines() if p.is_file() else None
    result = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout.splitlines() if result.returncode == 0 else None


def bundles_at(rev: str | None) -> list[str]:
    if rev is None:
        return sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/metadata.json"))
    out = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-d", "--name-only", f"{rev}:bundles"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [b for b in out if read(f"bundles/{b}/configs/metadata.json", rev) is not None]


def report(files: dict[str, dict[str, list[str]]], title: str) -> int:
    """files: {kind: {bundle: lines}}; prints per bundle, returns the total duplicated lines."""
    total = total_lines = 0
    per_bundle: dict[str, list[int]] = {}
    for kind, by_bundle in files.items():
        for bundle, lines in by_bundle.items():
            others = [v for b, v in by_bundle.items() if b != bundle]
            dup, n = duplicated(lines, others), sum(map(meaningful, lines))
            per_bundle.setdefault(bundle, [0, 0])
            per_bundle[bundle][0] += dup
            per_bundle[bundle][1] += n
            total, total_lines = total + dup, total_lines + n
    print(f"{title}: {total} of {total_lines} lines repeat a line of another bundle's file of the same kind")
    for bundle, (dup, n) in sorted(per_bundle.items()):
        print(f"  {bundle}: {dup} of {n}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="a git revision (default: the working tree)")
    args = parser.parse_args()
    bundles = bundles_at(args.rev)
    kept: dict[str, dict[str, list[str]]] = {}
    generated: dict[str, dict[str, list[str]]] = {}
    for bundle in bundles:
        source = read(f"bundles/{bundle}/bundle.yaml", args.rev)
        for name in CONFIGS:
            lines = read(f"bundles/{bundle}/configs/{name}", args.rev)
            if lines is not None:
                (generated if source is not None else kept).setdefault(name, {})[bundle] = lines
        if source is not None:
            kept.setdefault("bundle.yaml", {})[bundle] = source
    print(f"bundles: {bundles}" + (f" at {args.rev}" if args.rev else " (working tree)"))
    report(kept, "hand-kept config lines")
    templates = sorted((REPO / "bundles" / "bundle_tools" / "templates").glob("*.*")) if args.rev is None else []
    if templates and any("bundle.yaml" in k for k in kept):
        n = sum(sum(map(meaningful, t.read_text().splitlines())) for t in templates)
        print(f"shared templates (kept once): {n} lines in {len(templates)} files")
    if generated:
        report(generated, "generated config lines (rendered, checked by a test)")


if __name__ == "__main__":
    main()
