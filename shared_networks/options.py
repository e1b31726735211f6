# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Checks of the networks' constructor options that a command line can get wrong."""

from __future__ import annotations

from typing import Any

__all__ = ["check_flag"]


def check_flag(value: Any, name: str, owner: str) -> bool:
    """``value`` if it is a bool, else a TypeError that says how to write it.

    ``python -m monai.bundle run ... --network_def#use_xlstm false`` hands the network the *string* 'false' (fire
    parses only Python's ``False``), and ``bool('false')`` is True: without this check the control run would silently
    build the network with its xLSTM blocks.
    """
    if isinstance(value, bool):
        return value
    raise TypeError(f"{owner}: {name} must be True or False; got {value!r} ({type(value).__name__}). On the "
                    f"command line write it capitalised (--network_def#{name} False): fire reads 'false' as a string.")
