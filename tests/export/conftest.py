# Copyright 2026 the xlstm-seg authors. Apache-2.0.
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    """Small networks: one intra-op thread (extra OpenMP threads cost more than the ops on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
