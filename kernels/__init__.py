# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_seg_kernels: the compute kernels under our networks.

Imported as ``xlstm_seg_kernels`` (the folder is ``kernels/``; the bare name ``kernels`` belongs to an unrelated PyPI
package). Every op is one public function with a ``backend=`` switch: pure PyTorch runs anywhere, Triton runs on
NVIDIA GPUs (and, for tests, in Triton's CPU interpreter).
"""

from .mlstm import mlstm

__all__ = ["mlstm"]
