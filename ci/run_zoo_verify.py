# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Run the MONAI model zoo's own ``ci/verify_bundle.py`` on our bundles, offline, on a scratch copy.

    python ci/run_zoo_verify.py --zoo build/model-zoo [--weights-root demo_work] [--mode full] [--no-exclude] \
        [bundles/...]

``--zoo`` is a checkout of Project-MONAI/model-zoo (only its ``ci/`` folder is read; e.g. ``git archive HEAD ci | tar
-x -C build/model-zoo`` from a clone). Nothing of the zoo is copied into this repository, and nothing is written
inside ours: each bundle is copied to a temporary models folder with what the zoo's CI expects
there: ``models/model.pt`` (the demo-trained ``<weights-root>/<bundle>/models/model.pt`` when given, present and of
inference.json's sizes; else the seeded initialisation of inference.json's network, what the zoo's
``_produce_fake_weights`` makes: demo weights have configs/demo.json's widths, and the zoo builds inference.json's),
the metadata schema at ``eval/schema.json`` (from ``$XLSTM_SEG_SCHEMA_DIR`` or ``../shared/schemas``) and an empty
``model_info.json`` (no released versions).

TorchScript: the zoo's full mode scripts ``network_def`` (``ckpt_export`` without ``--use_trace``) unless the bundle
is in its ``exclude_verify_torchscript_list`` (``ci/bundle_custom_data.py``), as swin_unetr_btcv_segmentation, vista3d
and vista2d are. Our networks do not script (docs/export.md), so by default this adds our bundle names to that list,
as a zoo pull request would, by a shim module that imports the zoo's file and extends the list; ``--no-exclude`` runs
the zoo's list unchanged (the TorchScript step then fails, showing why). Exit code: the number of bundles that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIRS = [Path(d) for d in os.environ.get("XLSTM_SEG_SCHEMA_DIR", "").split(os.pathsep) if d] + [
    REPO.parent / "shared" / "schemas", REPO / "shared" / "schemas"]

# imports the zoo's ci/bundle_custom_data.py by path and extends its TorchScript opt-out list
SHIM = '''import importlib.util, os
_spec = importlib.util.spec_from_file_location("_zoo_bundle_custom_data", os.environ["ZOO_CUSTOM_DATA"])
_zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_zoo)
globals().update({k: v for k, v in vars(_zoo).items() if not k.startswith("__")})
exclude_verify_torchscript_list = list(_zoo.exclude_verify_torchscript_list) + os.environ["ZOO_EXCLUDE_TS"].split(",")
'''

# runs the zoo's verify_bundle.py as __main__, with the shim (if any) ahead of the zoo's ci/ on sys.path
RUNNER = '''import runpy, sys
shim, ci, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = ([shim] if shim else []) + [ci]
sys.argv = [ci + "/verify_bundle.py"] + argv
runpy.run_path(ci + "/verify_bundle.py", run_name="__main__")
'''


def schema_for(bundle: Path) -> Path:
    name = json.loads((bundle / "configs" / "metadata.json").read_text())["schema"].rsplit("/", 1)[-1]
    for folder in SCHEMA_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"{name}: no offline copy of the schema in {[str(d) for d in SCHEMA_DIRS]}; "
                     "set XLSTM_SEG_SCHEMA_DIR")


def stage(bundle: Path, models: Path, weights_root: Path | None) -> str:
    target = models / bundle.name
    shutil.copytree(bundle, target, ignore=shutil.ignore_patterns("models", "eval", "runs", "__pycache__"))
    (target / "models").mkdir()
    (target / "eval").mkdir()
    shutil.copy(schema_for(bundle), target / "eval" / "schema.json")
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    trained = weights_root / bundle.name / "models" / "model.pt" if weights_root else None
    note = ""
    if trained is not None and trained.is_file():
        try:  # demo weights have demo.json's widths; the zoo's steps build inference.json's network
            network.load_state_dict(torch.load(trained, map_location="cpu", weights_only=True), strict=True)
            shutil.copy(trained, target / "models" / "model.pt")
            return f"demo-trained weights {trained}"
        except RuntimeError as err:
            note = f"{trained} does not load into inference.json's network ({str(err).splitlines()[1].strip()[:90]}); "
    torch.save(network.state_dict(), target / "models" / "model.pt")
    return note + "seeded initialisation of inference.json's network"


def last_exception(stderr: str) -> str:
    """The last 'SomeError: message' of a traceback, with the next line when the message starts there (torch.jit)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        name, _, message = lines[i].partition(":")
        if all(part.isidentifier() for part in name.split(".")) and name.endswith(("Error", "Exception")):
            return f"{name.split('.')[-1]}: {message.strip() or (lines[i + 1] if i + 1 < len(lines) else '')}"
    return lines[-1] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", type=Path, help="default: every bundles/*/configs/metadata.json")
    parser.add_argument("--zoo", type=Path, required=True, help="a Project-MONAI/model-zoo checkout (its ci/ folder)")
    parser.add_argument("--mode", default="full", choices=["min", "regular", "full"])
    parser.add_argument("--weights-root", type=Path, help="<root>/<bundle>/models/model.pt, e.g. demo_work")
    parser.add_argument("--no-exclude", action="store_true", help="the zoo's TorchScript exclusion list unchanged")
    parser.add_argument("--keep", type=Path, help="stage into this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    ci = (args.zoo / "ci").resolve()
    if not (ci / "verify_bundle.py").is_file():
        raise SystemExit(f"{args.zoo}: no ci/verify_bundle.py (a Project-MONAI/model-zoo checkout is needed)")
    bundles = [b.resolve() for b in args.bundles] or sorted(
        p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))

    failed = 0
    with tempfile.TemporaryDirectory(prefix="zoo_verify_") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        models, shim = root / "models", root / "shim"
        models.mkdir(parents=True, exist_ok=True)
        (models / "model_info.json").write_text("{}\n")
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1",
               "ZOO_CUSTOM_DATA": str(ci / "bundle_custom_data.py"),
               "ZOO_EXCLUDE_TS": ",".join(b.name for b in bundles)}
        if not args.no_exclude:
            shim.mkdir(exist_ok=True)
            (shim / "bundle_custom_data.py").write_text(SHIM)
        for bundle in bundles:
            weights = stage(bundle, models, args.weights_root)
            print(f"== {bundle.name} ({args.mode}; {weights}; TorchScript "
                  f"{'zoo list unchanged' if args.no_exclude else 'excluded'})", flush=True)
            # the zoo's script runs from the zoo's root (it copies app property files to ci/ relative to the cwd)
            result = subprocess.run(
                [sys.executable, "-c", RUNNER, "" if args.no_exclude else str(shim), str(ci), "-b", bundle.name,
                 "-p", str(models), "-m", args.mode], cwd=args.zoo, env=env, capture_output=True, text=True)
            lines = [line for line in result.stdout.splitlines() if line.strip()]
            print("\n".join("   " + line for line in lines if not line.startswith("{")))
            if result.returncode:
                failed += 1
                print(f"   FAIL (exit {result.returncode}): {last_exception(result.stderr)}", flush=True)
            else:
                print("   PASS", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
