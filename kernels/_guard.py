# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The self-check behind ``backend="auto"``: a Triton kernel earns its place once per configuration and process.

Until our Triton kernels have run on a GPU, ``auto`` must not hand them to a training run blind. The first time
``auto`` would pick Triton for a configuration (device, dtype, head dims or state size, op flags), the op runs a
small forward and backward through the Triton kernels and through its PyTorch form in float64 and compares every
output and gradient with the tolerances the GPU tests use. Any exception (a compile error, a launch failure, an
out-of-resources error) or a mismatch makes that configuration use PyTorch from then on, with one warning that names
the reason and the configuration. ``backend="triton"`` never goes through this: it runs the kernels and raises.

Set ``XLSTM_SEG_SKIP_TRITON_CHECK=1`` to trust Triton without the check (benchmarks, or once a GPU run has shown the
kernels work). :func:`triton_verdicts` reports every check made in this process (``benchmarks/gpu_check.py`` prints
them).

What the check cannot catch: an error that kills the process (a hard abort inside the compiler) or leaves the CUDA
context unusable (an illegal memory access is sticky), and failures of autotune configs or integer specialisations
other than the ones it runs. It pins each autotuned kernel to its first config that fits the head dims, so it costs
one compile per kernel (which the first real call would pay anyway) and milliseconds of running, and it leaves the
autotuner's choice to the real shapes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

__all__ = [
    "SKIP_CHECK_ENV_VAR",
    "TritonCheckFailed",
    "Verdict",
    "triton_allowed",
    "triton_verdicts",
    "reset_triton_verdicts",
    "relative_errors",
    "compare",
    "pinned_autotune",
]

SKIP_CHECK_ENV_VAR = "XLSTM_SEG_SKIP_TRITON_CHECK"


class TritonCheckFailed(RuntimeError):
    """A Triton kernel ran but disagreed with the PyTorch form beyond the tolerance."""


@dataclass(frozen=True)
class Verdict:
    """Outcome of one self-check: ``ok``, the reason if not, and the seconds it took (compile included)."""

    op: str
    config: tuple
    ok: bool
    reason: str
    seconds: float


_verdicts: dict[tuple, Verdict] = {}
_lock = threading.RLock()


def _describe(config: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in config)


def triton_allowed(op: str, config: Iterable[tuple[str, object]], check: Callable[[], None]) -> bool:
    """Whether ``auto`` may use Triton for ``op`` in ``config``; runs ``check`` the first time this is asked.

    Args:
        op: the op's name, e.g. ``"mlstm"``.
        config: (name, value) pairs that determine what gets compiled: device, dtype, head dims, flags.
        check: runs the Triton kernels on small inputs of this configuration and compares them with the PyTorch form;
            returns normally when they agree and raises otherwise (:class:`TritonCheckFailed` for a mismatch).
    """
    if os.environ.get(SKIP_CHECK_ENV_VAR, "").strip() not in ("", "0"):
        return True
    config = tuple(config)
    key = (op, config)
    verdict = _verdicts.get(key)
    if verdict is not None:
        return verdict.ok
    with _lock:
        verdict = _verdicts.get(key)
        if verdict is None:
            start = time.perf_counter()
            try:
                # the check differentiates its own small inputs whatever the caller's mode (no_grad, inference, AMP)
                with torch.inference_mode(False), torch.enable_grad(), _no_autocast():
                    check()
                ok, reason = True, ""
            except Exception as err:  # any failure at all means: not this configuration
                ok, reason = False, f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
            verdict = Verdict(op, config, ok, reason, time.perf_counter() - start)
            _verdicts[key] = verdict
            if not ok:
                warnings.warn(
                    f"xlstm_seg_kernels: the Triton {op} kernels failed their self-check for ({_describe(config)}): "
                    f"{reason}. backend='auto' uses the PyTorch form for this configuration from now on "
                    f"(backend='triton' still runs Triton; {SKIP_CHECK_ENV_VAR}=1 skips the check).",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return verdict.ok


def triton_verdicts() -> list[Verdict]:
    """Every self-check made in this process, in order."""
    return list(_verdicts.values())


def reset_triton_verdicts() -> None:
    """Forget every verdict (tests)."""
    with _lock:
        _verdicts.clear()


@contextlib.contextmanager
def _no_autocast() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def relative_errors(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """‖out − ref‖ / ‖ref‖ per tensor, in float64 (nan when ``out`` has non-finite values)."""
    errors = {}
    for name, expected in ref.items():
        got = out[name].double()
        if not torch.isfinite(got).all():
            errors[name] = float("nan")
            continue
        expected = expected.double()
        errors[name] = ((got - expected).norm() / expected.norm().clamp_min(1e-300)).item()
    return errors


def compare(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], limits: dict[str, float]) -> None:
    """Raise :class:`TritonCheckFailed` naming every tensor whose relative error is not below its limit."""
    errors = relative_errors(out, ref)
    bad = {name: err for name, err in errors.items() if not err < limits[name]}
    if bad:
        detail = ", ".join(f"{name} {err:.1e} (limit {limits[name]:.0e})" for name, err in bad.items())
        raise TritonCheckFailed(f"relative error vs the float64 PyTorch form: {detail}")


@contextlib.contextmanager
def pinned_autotune(kernels: Iterable, choose: Callable[[list], object] | None = None) -> Iterator[None]:
    """Run ``triton.autotune``-wrapped ``kernels`` with one config each (no benchmarking, no cache entries).

    ``choose`` picks the config from each kernel's list (default: the first). Restores the full lists afterwards.
    """
    kernels = list(kernels)
    saved = [kernel.configs for kernel in kernels]
    try:
        for kernel in kernels:
            kernel.configs = [choose(kernel.configs) if choose is not None else kernel.configs[0]]
        yield
    finally:
        for kernel, configs in zip(kernels, saved):
            kernel.configs = configs
