# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Import a bundle's scripts/*.py by path, as the bundle's commands run them (bundles are not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def load_bundle_script(bundle: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{bundle}_{name}", BUNDLES / bundle / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module
