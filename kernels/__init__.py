# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_seg_kernels: the compute kernels under our networks.

Imported as ``xlstm_seg_kernels`` (the folder is ``kernels/``; the bare name ``kernels`` belongs to an unrelated PyPI
package). Every op is one public function with a ``backend=`` switch: pure PyTorch runs anywhere, Triton runs on
NVIDIA GPUs (and, for tests, in Triton's CPU interpreter).

- :func:`mlstm`: matrix-memory LSTM (ViL / xLSTM mLSTM), parallel, chunkwise, recurrent and Triton forms.
- :func:`selective_scan`: Mamba-1 selective scan with mamba-ssm's ``selective_scan_fn`` semantics.
- :func:`cross_scan` / :func:`cross_merge`: SS2D's four scan orders and their adjoint.
"""

from .cross_scan import cross_merge, cross_scan
from .mlstm import mlstm
from .selective_scan import selective_scan

__all__ = ["mlstm", "selective_scan", "cross_scan", "cross_merge"]
