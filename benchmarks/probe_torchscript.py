# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Where ``torch.jit.script`` (what ``ckpt_export`` without ``--use_trace`` runs) stops, per bundle network.

    python benchmarks/probe_torchscript.py            # every bundle (bundles/*/configs/metadata.json), demo sizes

For the whole network of each bundle (inference.json + demo.json), then for each of this project's module classes in
it and for the public kernel functions, it scripts the object in a fresh TorchScript state (a failed compilation
leaves half-made classes behind, which would mask the next error) and prints the first error: its message, the source
line it points at, and the file. ``torch.jit.script`` reports one error per call, so the per-class lines are what a
port to TorchScript would have to change, not only the first one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def fresh_state() -> None:
    torch.jit._recursive.concrete_type_store = torch.jit._recursive.ConcreteTypeStore()
    torch.jit._state._clear_class_state()
    torch._C._jit_clear_class_registry()


def first_error(obj) -> str:
    fresh_state()
    try:
        torch.jit.script(obj)
        return "scripts"
    except Exception as err:  # torch.jit raises several types (RuntimeError, NotSupportedError, FrontendError)
        lines = str(err).strip().splitlines()
        where = [line.strip() for line in lines if line.strip().startswith("File ")]
        code = next((lines[i - 1].strip() for i, line in enumerate(lines) if line.strip().startswith("~") and i), "")
        location = where[-1].replace(str(REPO) + "/", "") if where else ""
        return f"{type(err).__name__}: {lines[0].strip()} | {location} | {code}"


def main() -> None:
    warnings.filterwarnings("ignore")  # torch 2.13 deprecates torch.jit.script; the warning repeats per call
    from monai.bundle import ConfigParser

    from shared_networks.blocks import slstm_loop
    from xlstm_seg_kernels.cross_scan import cross_merge, cross_scan
    from xlstm_seg_kernels.mlstm import mlstm
    from xlstm_seg_kernels.selective_scan import selective_scan

    seen: set[type] = set()
    for meta in sorted((REPO / "bundles").glob("*/configs/metadata.json")):
        bundle = meta.parent.parent
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "demo.json")])
        network = parser.get_parsed_content("network_def").eval()
        print(f"{bundle.name} ({type(network).__name__}): {first_error(network)}")
        for module in network.modules():
            kind = type(module)
            if kind in seen or kind.__module__.startswith(("torch", "monai")):
                continue
            seen.add(kind)
            print(f"    {kind.__module__}.{kind.__name__}: {first_error(module)}")
    for fn in (mlstm, selective_scan, cross_scan, cross_merge, slstm_loop.slstm_recurrence):
        print(f"kernel {fn.__module__}.{fn.__name__}: {first_error(fn)}")


if __name__ == "__main__":
    main()
