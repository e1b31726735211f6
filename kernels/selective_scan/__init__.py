# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Selective scan (Mamba-1 S6, as in SS2D): one public function, :func:`selective_scan`, with reference, torch,
Triton and optional mamba-ssm backends."""

from .interface import BACKENDS, mamba_ssm_available, selective_scan

__all__ = ["selective_scan", "BACKENDS", "mamba_ssm_available"]
