# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Write a bundle's zoo-style ``configs/*`` from its one source, ``bundle.yaml``, and the family's shared templates.

    python -m xlstm_bundle_tools.render bundles/xlstm_unet_amos3d     # (re)write configs/*.json and logging.conf
    python -m xlstm_bundle_tools.render --check bundles/*/             # exit 1, naming each stale file

Why a renderer: the model zoo and MONAI Label read each bundle folder on its own (MONAI Label reads
``configs/inference.json`` alone), so every bundle keeps complete JSON files, and MONAI's ``%file#id`` macro opens its
path relative to the working directory (``ConfigParser.load_config_file``), which breaks commands run from elsewhere.
So the shared parts live once, in ``templates/*.yaml``, and the JSON files are generated and committed; a test fails
when a committed file differs from what its source renders (docs/adding_a_bundle.md).

``bundle.yaml`` has one section per output; each is a MONAI override, applied to that output's template exactly as
``python -m monai.bundle run --config_file "['train.json', 'override.json']"`` would apply it:

- ``metadata``, ``train``, ``inference``, ``inference_onnx``, ``evaluate``: ``id: value`` sets the id (``a#b#0#c``
  reaches inside, list indices included); ``+id: value`` appends a list or updates a dict (MONAI's ``+`` merge key);
- ``shared``: applied to both ``train`` and ``inference`` before their own sections: the network, its geometry and the
  intensity settings are written once, so the two files cannot disagree (the verifier checks the copies too);
- ``demo``: ``configs/demo.json`` as it is.

``inference_onnx.json`` overrides inference.json's network with the exported ONNX model (docs/export.md).
``multi_gpu_train.json`` is derived from the rendered train.json (its imports, and its ``initialize`` steps run on rank
0 only), and ``logging.conf`` is the template's. Template values ``"{{required}}"`` must be set by the bundle;
``{{bundle}}`` is replaced by the bundle's folder name; new top-level ids take the place of the template's
``__bundle__`` marker, in the order the source lists them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TEMPLATES", "RenderError", "apply_override", "dumps", "render", "render_bundle", "stale_files"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
REQUIRED = "{{required}}"
MARKER = "__bundle__"
SECTIONS = ("metadata", "shared", "train", "inference", "inference_onnx", "evaluate", "demo")
DIST_IMPORT = "$import torch.distributed as dist"


class RenderError(ValueError):
    """A bundle source that cannot be rendered; the message names the file and the id."""


# YAML 1.1 (PyYAML) reads 1e-05 as the string "1e-05": a float needs its dot (1.0e-05)
_FLOAT_LIKE_STRING = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _float_like_strings(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in _float_like_strings(v, f"{path}#{k}" if path else str(k))]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in _float_like_strings(v, f"{path}#{i}")]
    return [f"{path} = {node!r}"] if isinstance(node, str) and _FLOAT_LIKE_STRING.fullmatch(node) else []


# ------------------------------------------------------------------------------------------------ override paths
def _child(node: Any, part: str, where: str) -> tuple[Any, Any]:
    if isinstance(node, list):
        try:
            index = int(part)
            node[index]
        except (ValueError, IndexError):
            raise RenderError(f"{where}: '{part}' is not an index of a list of {len(node)}") from None
        return node, index
    if isinstance(node, dict):
        return node, part
    raise RenderError(f"{where}: cannot go inside {type(node).__name__} at '{part}'")


def _locate(config: dict, path: str, where: str) -> tuple[Any, Any]:
    """(container, key) of ``path`` in ``config``. Override-style templates keep flat keys such as
    ``validate#handlers``: the longest key that is a prefix of the path is followed first."""
    parts = path.split("#")
    node: Any = config
    i = 0
    while True:
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):
                key = "#".join(parts[i:j])
                if key in node:
                    break
            else:  # a new id: the rest of the path as one key (MONAI reads 'a#b' keys as paths)
                return node, "#".join(parts[i:])
            if j == len(parts):
                return node, key
            node, i = node[key], j
        else:
            container, key = _child(node, parts[i], where)
            if i == len(parts) - 1:
                return container, key
            node, i = container[key], i + 1


def apply_override(config: dict, key: str, value: Any, where: str = "override") -> None:
    """Apply one MONAI override ``key: value`` to ``config`` in place (``+key`` appends a list / updates a dict)."""
    value = copy.deepcopy(value)
    merge = key.startswith("+")
    container, name = _locate(config, key[1:] if merge else key, where)
    if not merge:
        container[name] = value
        return
    current = container[name] if (isinstance(container, list) or name in container) else None
    if isinstance(current, list) and isinstance(value, list):
        current.extend(value)
    elif isinstance(current, dict) and isinstance(value, dict):
        current.update(value)
    else:
        raise RenderError(f"{where}: '{key}' merges a {type(value).__name__} into "
                          f"{'nothing' if current is None else type(current).__name__}; both must be lists or dicts")


def _overlay(template: dict, overrides: dict, where: str, bundle: str) -> dict:
    """The template with the overrides applied in order; new top-level ids go where the template's marker is."""
    config = _substitute(copy.deepcopy(template), bundle)
    for key, value in overrides.items():
        if "#" in key or key.startswith("+") or key in config or MARKER not in config:
            apply_override(config, key, value, f"{where}: '{key}'")
        else:  # a new id: insert it before the marker, so that later "id#..." overrides find it
            items = list(config.items())
            at = [k for k, _ in items].index(MARKER)
            config = dict(items[:at] + [(key, copy.deepcopy(value))] + items[at:])
    config.pop(MARKER, None)
    return config


def _substitute(node: Any, bundle: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, bundle) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, bundle) for v in node]
    if isinstance(node, str) and "{{bundle}}" in node:
        return node.replace("{{bundle}}", bundle)
    return node


def _missing(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in _missing(v, f"{path}#{k}" if path else str(k))]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in _missing(v, f"{path}#{i}")]
    return [path] if node == REQUIRED else []


# ------------------------------------------------------------------------------------------------ rendering
def load_yaml(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RenderError(f"{path}: cannot be read as YAML ({type(err).__name__}: {err})") from err
    if not isinstance(content, dict):
        raise RenderError(f"{path}: expected a mapping at the top level, got {type(content).__name__}")
    return content


def _rank_zero(expression: str) -> str:
    if not expression.startswith("$"):
        raise RenderError(f"train.json initialize step {expression!r} is not a '$' expression")
    return f"$({expression[1:]}) if dist.get_rank() == 0 else None"


def multi_gpu_from_train(train: dict, template: dict) -> dict:
    """multi_gpu_train.json: the template plus imports and initialize derived from the rendered train.json."""
    imports = list(train["imports"])
    imports.insert(imports.index("$import torch") + 1 if "$import torch" in imports else len(imports), DIST_IMPORT)
    steps = list(train["initialize"])
    if not steps or "set_determinism" not in steps[0]:
        raise RenderError("train.json's initialize must start with monai.utils.set_determinism (templates/train.yaml)")
    initialize = [
        "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')",
        "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
        "$monai.utils.set_determinism(seed=123)",
        *(_rank_zero(step) for step in steps[1:]),
        "$dist.barrier()",
    ]
    return {"imports": imports, **{k: v for k, v in template.items() if k not in ("run", "training", "finalize")},
            "initialize": initialize, **{k: template[k] for k in ("run", "training", "finalize")}}


def render(source: dict, bundle: str, where: str = "bundle.yaml") -> dict[str, Any]:
    """The content of every output file (parsed JSON, or text for logging.conf) for one bundle source."""
    unknown = sorted(set(source) - set(SECTIONS))
    if unknown:
        raise RenderError(f"{where}: unknown sections {unknown}; expected some of {list(SECTIONS)}")
    strings = _float_like_strings(source)
    if strings:
        raise RenderError(f"{where}: {strings} are strings to YAML; write a float with its dot, e.g. 1.0e-05")
    templates = {name: load_yaml(TEMPLATES / f"{name}.yaml")
                 for name in ("metadata", "train", "inference", "inference_onnx", "evaluate", "multi_gpu_train")}
    shared = source.get("shared") or {}
    out: dict[str, Any] = {
        "metadata.json": _overlay(templates["metadata"], source.get("metadata") or {}, f"{where} metadata", bundle),
        "train.json": _overlay(templates["train"], {**shared, **(source.get("train") or {})}, f"{where} train", bundle),
        "inference.json": _overlay(templates["inference"], {**shared, **(source.get("inference") or {})},
                                   f"{where} inference", bundle),
        "evaluate.json": _overlay(templates["evaluate"], source.get("evaluate") or {}, f"{where} evaluate", bundle),
        "inference_onnx.json": _overlay(templates["inference_onnx"], source.get("inference_onnx") or {},
                                        f"{where} inference_onnx", bundle),
    }
    clash = sorted(set(shared) & set(source.get("train") or {}) | set(shared) & set(source.get("inference") or {}))
    if clash:
        raise RenderError(f"{where}: {clash} are in 'shared' and again in train/inference; set each id once")
    out["multi_gpu_train.json"] = multi_gpu_from_train(out["train.json"], templates["multi_gpu_train"])
    out["demo.json"] = copy.deepcopy(source.get("demo") or {})
    for name, content in out.items():
        missing = _missing(content)
        if missing:
            raise RenderError(f"{where}: {name} needs {missing}, which the template leaves to the bundle")
    out["logging.conf"] = (TEMPLATES / "logging.conf").read_text()
    return out


# ------------------------------------------------------------------------------------------------ JSON layout
INLINE_DICT_WIDTH = 60
INLINE_ITEM_WIDTH = 300


def _inline(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) or _is_scalar_list(v) for v in value)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(v) for v in value), default=0)
    return 0


def _layout(value: Any, indent: int, in_list: bool) -> str:
    pad, inner = " " * indent, " " * (indent + 4)
    text = _inline(value)
    expressions = isinstance(value, list) and any(isinstance(v, str) and v.startswith("$") for v in value)
    if not isinstance(value, (dict, list)) or not value or (
            _is_scalar_list(value) and not (expressions and len(text) > INLINE_DICT_WIDTH)):
        return text
    if in_list and _depth(value) <= 2 and len(text) <= INLINE_ITEM_WIDTH:
        return text  # a transform or handler: one line each, as the zoo's configs write them
    if isinstance(value, dict) and _depth(value) == 1 and len(text) <= INLINE_DICT_WIDTH:
        return text
    if isinstance(value, list):
        items = [inner + _layout(v, indent + 4, True) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    items = [f"{inner}{_inline(k)}: {_layout(v, indent + 4, False)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def dumps(config: Any) -> str:
    """JSON in the layout of the model zoo's configs: nested sections expanded, one transform or handler a line."""
    return _layout(config, 0, False) + "\n"


# ------------------------------------------------------------------------------------------------ files
def render_bundle(bundle: Path) -> dict[Path, str]:
    """{output path: text} for the bundle folder ``bundle`` (which holds ``bundle.yaml``)."""
    bundle = Path(bundle).resolve()
    source_file = bundle / "bundle.yaml"
    if not source_file.is_file():
        raise RenderError(f"{source_file}: not found; every bundle's configs are rendered from its bundle.yaml")
    rendered = render(load_yaml(source_file), bundle.name, str(source_file))
    return {bundle / "configs" / name: (content if isinstance(content, str) else dumps(content))
            for name, content in rendered.items()}


def stale_files(bundle: Path) -> list[Path]:
    """Output files whose committed text differs from what ``bundle.yaml`` renders (missing ones included)."""
    return [path for path, text in render_bundle(bundle).items()
            if not path.is_file() or path.read_text() != text]


def write_bundle(bundle: Path) -> list[Path]:
    """Render and write the files that changed (each atomically); returns them."""
    from .io import atomic_write_text

    changed = []
    for path, text in render_bundle(bundle).items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders (each with a bundle.yaml)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for bundle in args.bundles:
        try:
            if args.check:
                for path in stale_files(bundle):
                    print(f"stale: {path} (run: python -m xlstm_bundle_tools.render {bundle})")
                    stale += 1
            else:
                for path in write_bundle(bundle):
                    print(f"wrote {path}")
        except RenderError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
