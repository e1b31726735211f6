# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Errors a user can fix, and how a command ends on one: the reason is the last line of stderr.

Our checks raise :class:`InputError` (or a subclass) for a bad input file or a missing dataset, with a message that
names the file, the problem and, where there is something to do, what to do. Between the raise and the terminal lie
MONAI's config machinery (``ConfigExpression.evaluate`` re-raises every ``Exception`` as ``RuntimeError("Failed to
evaluate ...") from e``), MONAI's ``apply_transform`` (``RuntimeError("applying transform ...") from e``), ignite's
engines (which log and re-raise) and torch's DataLoader workers (which send the worker's traceback to the main process
as *text* and raise a new exception built from it). Left alone, Python prints the whole chain and the last line is
MONAI's wrapper.

Importing ``xlstm_bundle_tools`` (every bundle config does, and so do our scripts) installs one ``sys.excepthook``.
When a command ends on an exception, the hook looks for an InputError along the chain of explicit causes (``raise ...
from``), including inside a worker's traceback text. If it finds one, it prints that message alone, as the last lines
of stderr, and the process exits with status 1. Anything else (a bug) goes to the previous hook with its full
traceback, and so does everything when ``XLSTM_SEG_DEBUG=1`` is set.

Why a hook and not a ``BaseException`` subclass, which MONAI's wrappers would let through: torch's DataLoader workers
and multiprocessing/thread pools (CacheDataset) catch ``Exception`` only, so a ``BaseException`` would kill a worker
(or hang a pool) instead of reaching the main process; ``except ValueError`` callers would also stop seeing it. The
hook needs nothing from the configs. Under ``torchrun`` each rank is a ``python -m monai.bundle`` process of its own
and ends the same way; the hook also writes the reason to the rank's ``TORCHELASTIC_ERROR_FILE``, so torchrun's
failure summary shows it (torchrun still ends with its own summary box).

The only error we do not raise ourselves but still report as an input error: MONAI's ``CheckpointLoader`` failing to
read its checkpoint file (inference or evaluation before training, a wrong ``--ckpt_dir``, a truncated file). The
configs call MONAI's loader directly, so this is recognised where it is raised rather than re-raised by our code.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from types import TracebackType

__all__ = ["InputError", "InvalidInputError", "DatalistError", "DEBUG_ENV", "input_error_message", "install_exit_hook"]

DEBUG_ENV = "XLSTM_SEG_DEBUG"


class InputError(ValueError):
    """A problem with the user's input (a file, a dataset, a path argument) that the message tells them how to fix."""


class InvalidInputError(InputError):
    """An input file that cannot be used; the message starts with the file's path."""


class DatalistError(InputError):
    """A datalist that cannot be used: missing, malformed, empty or without the requested fold."""


# How traceback.format_exception joins a chain, and how torch's ExceptionWrapper starts a worker's re-raised message.
_CAUSE = "\n\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\n\nDuring handling of the above exception, another exception occurred:\n\n"
_SECTIONS = re.compile(f"({re.escape(_CAUSE)}|{re.escape(_CONTEXT)})")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)\.([A-Za-z_]\w*): (.*)\Z", re.MULTILINE | re.DOTALL)
_WORKER_TEXT = re.compile(r"\ACaught \w+ .*?\.\nOriginal Traceback \(most recent call last\):\n", re.DOTALL)


def _is_input_error_name(module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and issubclass(cls, InputError)


def _message_in_traceback_text(text: str) -> str | None:
    """The InputError message in a formatted traceback chain (a DataLoader worker's), following direct causes only."""
    parts = _SECTIONS.split(text)
    for index in range(len(parts) - 1, -1, -2):  # outermost exception first
        for match in _EXCEPTION_LINE.finditer(parts[index]):
            if _is_input_error_name(match.group(1), match.group(2)):
                return match.group(3).rstrip("\n")
        if index == 0 or parts[index - 1] != _CAUSE:
            break
    return None


def _unreadable_checkpoint(exc: BaseException) -> str | None:
    """MONAI's CheckpointLoader could not read its ``load_path`` (missing, truncated, not a checkpoint).

    Recognised by the frames: ``CheckpointLoader.__call__`` calling ``torch.load``, which raised. Failures after the
    file is read (a state dict that does not fit the network) are not input errors and keep their traceback.
    """
    loader = getattr(sys.modules.get("monai.handlers.checkpoint_loader"), "CheckpointLoader", None)
    torch_load = getattr(sys.modules.get("torch.serialization"), "load", None)
    if loader is None or torch_load is None:
        return None
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if tb.tb_frame.f_code is loader.__call__.__code__ and tb.tb_next.tb_frame.f_code is torch_load.__code__:
            path = tb.tb_frame.f_locals["self"].load_path
            if isinstance(exc, FileNotFoundError):
                return (f"{path}: checkpoint not found. Train the bundle first (python -m monai.bundle run training "
                        "...), or point --ckpt_dir at the folder that holds it.")
            return (f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {exc}). Train again, or point "
                    "--ckpt_dir at the folder that holds a complete one.")
        tb = tb.tb_next
    return None


def input_error_message(exc: BaseException | None) -> str | None:
    """The message of the InputError that caused ``exc``, or None when ``exc`` is not one (a bug, an interrupt).

    Follows ``__cause__`` (explicit ``raise ... from``: MONAI's and our wrappers), not ``__context__``: an exception
    raised while *handling* an InputError is a new problem and keeps its traceback.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if _WORKER_TEXT.match(text):  # re-raised from a DataLoader worker: the worker's chain is only text
            message = _message_in_traceback_text(text)
            if message is not None:
                return message
        elif isinstance(exc, InputError):
            return text
        message = _unreadable_checkpoint(exc)
        if message is not None:
            return message
        exc = exc.__cause__
    return None


_previous_hook = None


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    message = None
    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        try:
            message = input_error_message(exc)
        except Exception:  # never let the hook hide the real error
            message = None
    if message is None:
        (_previous_hook or sys.__excepthook__)(exc_type, exc, tb)
        return
    sys.stdout.flush()  # logs go to stdout; keep them ahead of the reason
    sys.stderr.write(f"Stopped: bad input ({DEBUG_ENV}=1 shows the traceback).\n{message}\n")
    sys.stderr.flush()
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")  # set by torchrun for each rank
    if error_file:  # torchrun's failure summary then shows the reason instead of "To enable traceback see ..."
        with open(error_file, "w") as handle:
            json.dump({"message": {"message": message, "extraInfo": {  # torch.distributed.elastic's layout
                "py_callstack": message, "timestamp": str(int(time.time()))}}}, handle)


def install_exit_hook() -> None:
    """Make InputErrors end the process with their message as the last line of stderr (idempotent)."""
    global _previous_hook
    if sys.excepthook is not _excepthook:
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook
