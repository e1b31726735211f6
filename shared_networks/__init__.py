# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""shared_networks: the xLSTM segmentation networks every bundle references by ``_target_``.

Layers: ``blocks`` (ViL, residual, ...) are composed by ``nets``; both build on ``xlstm_seg_kernels``.
``official_weights`` converts the official checkpoints (``python -m shared_networks.official_weights --help``).
"""

from .nets import SegXLSTM, VMUNet, XLSTMUNet, XLSTMVMUNet, load_vmamba_pretrained

__all__ = ["XLSTMUNet", "SegXLSTM", "VMUNet", "XLSTMVMUNet", "load_vmamba_pretrained"]
