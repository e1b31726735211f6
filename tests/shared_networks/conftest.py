# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Fixtures shared by the network tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_intra_op_thread():
    """Small networks: one intra-op thread. Extra OpenMP threads cost more than the ops on a busy 2-core machine
    (a tiny 3D forward took 4 s with 2 threads at load 7, 14 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
