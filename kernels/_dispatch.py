# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Backend selection shared by every kernel op.

Each op has a pure-PyTorch implementation that runs anywhere and, where it pays, a Triton one for NVIDIA GPUs.
`resolve_backend` turns the user's `backend=` argument into one concrete name. An explicitly requested backend that
cannot run raises; only ``"auto"`` chooses.

The environment variable ``XLSTM_SEG_KERNEL_BACKEND`` overrides ``"auto"`` (never an explicit choice); it exists so a
whole training run can be switched to the torch path without editing configs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Sequence

import torch

__all__ = ["BACKEND_ENV_VAR", "exporting", "triton_available", "triton_interpret", "resolve_backend", "plain_tensors"]

BACKEND_ENV_VAR = "XLSTM_SEG_KERNEL_BACKEND"


def triton_interpret() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``), as CI does."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_available(tensor: torch.Tensor | None = None) -> bool:
    """Whether a Triton kernel can run on ``tensor``'s device: CUDA with triton installed, or the interpreter on CPU."""
    if not _triton_importable():
        return False
    if triton_interpret():
        return tensor is None or tensor.device.type == "cpu"
    return tensor is None or tensor.is_cuda


def exporting() -> bool:
    """True while the model is being traced or exported: ``torch.jit.trace``/``script``, ``torch.export`` (non-strict,
    as the ONNX exporter runs it) and the TorchScript-based ONNX exporter. ``"auto"`` then picks the forms that export:
    pure PyTorch with no Python loop over the sequence, and never Triton.

    Not detected: ``torch.export(..., strict=True)`` (TorchDynamo reports only ``is_compiling``, which ``torch.compile``
    reports too); pass the loop-free backends explicitly there.
    """
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_exporting()
            or torch.onnx.is_in_onnx_export())


def resolve_backend(
    op: str, backend: str, choices: Sequence[str], tensor: torch.Tensor, auto: str | Callable[[], str]
) -> str:
    """Validate ``backend`` against ``choices`` and resolve ``"auto"`` to ``auto``.

    Args:
        op: name of the op, used in error messages.
        backend: what the caller asked for.
        choices: the op's concrete backends.
        tensor: an input tensor; decides whether Triton can run.
        auto: the backend ``"auto"`` resolves to (the op decides, e.g. by sequence length and device), or a function
            returning it, called only when ``"auto"`` is really resolved (it may run the Triton self-check).

    Raises:
        ValueError: unknown backend name.
        RuntimeError: ``"triton"`` requested where it cannot run.
    """
    if backend == "auto":
        env = os.environ.get(BACKEND_ENV_VAR, "").strip()
        if not env:
            return auto() if callable(auto) else auto
        if env not in choices:
            raise ValueError(f"{BACKEND_ENV_VAR}={env!r} is not a {op} backend; choose one of {sorted(choices)}.")
        backend = env
    if backend not in choices:
        raise ValueError(f"{op}: unknown backend {backend!r}; choose 'auto' or one of {sorted(choices)}.")
    if backend == "triton" and not triton_available(tensor):
        where = "CUDA tensors with triton installed" if not triton_interpret() else "CPU tensors under TRITON_INTERPRET=1"
        raise RuntimeError(
            f"{op}: backend='triton' needs {where}; got a {tensor.device.type} tensor"
            f"{'' if _triton_importable() else ' and triton is not installed'}. Use backend='auto' to fall back."
        )
    return backend


def plain_tensors(*tensors):
    """Strip tensor subclasses (e.g. MONAI's MetaTensor) at an op's boundary.

    The ops slice, reshape and loop over their inputs many times; subclass dispatch on every such call is slow and a
    batched MetaTensor refuses some slices. ``as_subclass`` keeps the data and the autograd graph. ``None`` passes.
    While exporting, tensors pass as they are: the exporters' own tensor types (FakeTensor, FunctionalTensor) are
    subclasses too, and ``as_subclass`` would turn them into untraceable constants.
    """
    if exporting():
        return tensors
    return tuple(t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) and type(t) is not torch.Tensor else t
                 for t in tensors)
