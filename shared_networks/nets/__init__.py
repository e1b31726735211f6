# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Networks: one public network per file, each for 2D and 3D where the paper defines both."""

from .seg_xlstm import SegXLSTM
from .vm_unet import VMUNet, load_vmamba_pretrained
from .xlstm_unet import XLSTMUNet
from .xlstm_vm_unet import XLSTMVMUNet

__all__ = ["XLSTMUNet", "SegXLSTM", "VMUNet", "XLSTMVMUNet", "load_vmamba_pretrained"]
