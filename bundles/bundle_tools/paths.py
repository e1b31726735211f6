# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Where is the bundle? So that configs work from any working directory without ``--bundle_root``."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

__all__ = ["bundle_root"]


def _root_of_config(config_file) -> str | None:
    first = config_file[0] if isinstance(config_file, (list, tuple)) and config_file else config_file
    if not isinstance(first, (str, os.PathLike)):
        return None
    folder = Path(first).resolve().parent
    return str(folder.parent if folder.name == "configs" else folder)


def bundle_root() -> str:
    """The folder of the bundle whose config is being evaluated.

    MONAI's ``ConfigWorkflow`` knows the config file but exposes no config id for its folder, and a plain ``"."`` only
    works when the working directory is the bundle. This looks up the call stack for the workflow (``python -m
    monai.bundle run ...``, ``create_workflow``) or for the config file passed to ``monai.bundle`` scripts such as
    ``verify_net_in_out``, and returns ``<config dir>/..`` when the config dir is named ``configs``. Callers that set
    ``bundle_root`` explicitly (MONAI Label, ``--bundle_root``) never reach this. Falls back to the working directory.
    """
    for frame_info in inspect.stack(context=0):
        frame_locals = frame_info.frame.f_locals
        owner = frame_locals.get("self")
        if type(owner).__name__.endswith("Workflow") and "config_root_path" in vars(owner):
            folder = Path(vars(owner)["config_root_path"]).resolve()
            return str(folder.parent if folder.name == "configs" else folder)
        if frame_info.frame.f_globals.get("__name__", "").startswith("monai.bundle"):
            for name in ("config_file_", "config_file"):
                root = _root_of_config(frame_locals.get(name))
                if root is not None:
                    return root
    return os.getcwd()
