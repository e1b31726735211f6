# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""xlstm_bundle_tools: what our MONAI bundles share and MONAI does not provide.

Bundle configs call these by ``_target_``/``$`` expressions: locating the bundle (:func:`bundle_root`), folds of a
datalist, input checks that name the file, atomic checkpoints and outputs, per-case metric CSVs and pictures.
Importing it installs :func:`install_exit_hook`: a command that ends on an :class:`InputError` (a bad input, a
missing dataset) prints only its message, as the last line of stderr (``XLSTM_SEG_DEBUG=1`` for the traceback).
It sits in the bundle layer: it may import ``shared_networks`` and ``xlstm_seg_kernels``, never the reverse.
"""

from .checkpoint import AtomicCheckpointSaver
from .checks import CheckCased, InvalidInputError, check_cases, check_nifti_case, check_rgb_case, flag, load_nifti
from .datalist import DatalistError, assign_folds, load_fold, write_datalist
from .errors import InputError, install_exit_hook
from .losses import DiceBCELoss
from .io import AtomicNibabelWriter, AtomicPILWriter, AtomicSaveImaged, atomic_write, atomic_write_json, atomic_write_text
from .metrics import BinaryPixelMetrics, CaseMetricsSaver, OrganDiceNSD, RegionDiceHD95, case_id_of, channel_pairs, spacing_of
from .metrics import ProtocolMetrics, format_metrics_csv
from .onnx_inference import OnnxModelError, OnnxNetwork
from .protocols import PROTOCOLS, get_protocol
from .resume import ResumableDataLoader, TrainingCheckpoint, exit_if_interrupted
from .tracking import TrainingTracker
from .paths import bundle_root
from .pictures import OverlaySaver, TrainingCurvePlotter, overlay_figure
from .spatial import MetaSafeSpacingd
from .training import GradientClipping, deep_supervision_weights
from .transforms import MirrorTTAInferer, RandRotateScaled, RegionsToLabelsd, crop_margin, rotation_safe_crop_size

__all__ = [
    "AtomicCheckpointSaver",
    "BinaryPixelMetrics",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "AtomicSaveImaged",
    "CaseMetricsSaver",
    "CheckCased",
    "DiceBCELoss",
    "DatalistError",
    "GradientClipping",
    "InputError",
    "InvalidInputError",
    "MetaSafeSpacingd",
    "MirrorTTAInferer",
    "OnnxModelError",
    "OnnxNetwork",
    "RandRotateScaled",
    "rotation_safe_crop_size",
    "crop_margin",
    "OrganDiceNSD",
    "OverlaySaver",
    "PROTOCOLS",
    "ProtocolMetrics",
    "RegionDiceHD95",
    "RegionsToLabelsd",
    "ResumableDataLoader",
    "TrainingCheckpoint",
    "TrainingTracker",
    "TrainingCurvePlotter",
    "assign_folds",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "bundle_root",
    "case_id_of",
    "channel_pairs",
    "check_cases",
    "flag",
    "check_nifti_case",
    "check_rgb_case",
    "deep_supervision_weights",
    "exit_if_interrupted",
    "format_metrics_csv",
    "get_protocol",
    "load_fold",
    "load_nifti",
    "overlay_figure",
    "spacing_of",
    "write_datalist",
]

install_exit_hook()
