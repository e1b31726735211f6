# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""mLSTM: one public function, :func:`mlstm`, with torch (parallel, chunkwise, recurrent) and Triton backends."""

from .interface import BACKENDS, PARALLEL_MAX_SEQ_LEN, mlstm

__all__ = ["mlstm", "BACKENDS", "PARALLEL_MAX_SEQ_LEN"]
