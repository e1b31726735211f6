# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""An exported ONNX model as the ``network`` of a bundle's inference pipeline.

``configs/inference_onnx.json`` (rendered from ``templates/inference_onnx.yaml``) swaps inference.json's PyTorch
network for :class:`OnnxNetwork`, so the same preprocessing, sliding-window inferer, postprocessing and writer run
on ONNX Runtime::

    python -m monai.bundle run --config_file "['configs/inference.json','configs/inference_onnx.json']"

The model is exported at the inference patch size with batch 1 (docs/export.md), so a sliding-window batch of
``sw_batch_size`` windows runs as that many calls; a model exported with a free batch axis takes the batch at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from monai.utils import convert_to_dst_type

from .errors import InputError

__all__ = ["OnnxNetwork", "OnnxModelError"]


class OnnxModelError(InputError):
    """The ONNX file is missing or unreadable, or an input does not fit the shape it was exported for."""


class OnnxNetwork(nn.Module):
    """Callable like the PyTorch network: (B, C, *spatial) float tensor -> (B, out_channels, *spatial) float32 logits.

    Args:
        path: the ``.onnx`` file (MONAI's ``onnx_export`` writes ``models/model.onnx``).
        providers: ONNX Runtime execution providers. Default: CUDA when torch sees a GPU and ONNX Runtime offers it,
            else CPU.
        intra_op_num_threads: ONNX Runtime threads per call; default: torch's thread count, so the two paths are
            compared on equal terms.

    Raises:
        OnnxModelError: the file does not exist or ONNX Runtime cannot load it (the message names the file), or at
            call time an input whose shape differs from the exported one in anything but a free axis.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 intra_op_num_threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort  # the `export` extra; imported here so that bundles run without it

        self.path = str(path)
        if not Path(self.path).is_file():
            raise OnnxModelError(
                f"{self.path}: no ONNX model here. Export one first: python -m monai.bundle onnx_export network_def "
                f"--filepath {self.path} ... (docs/export.md), or set --onnx_file.")
        if providers is None:
            available = ort.get_available_providers()
            providers = ["CPUExecutionProvider"]
            if torch.cuda.is_available() and "CUDAExecutionProvider" in available:
                providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_num_threads or torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(self.path, sess_options=options, providers=list(providers))
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise OnnxModelError(f"{self.path}: ONNX Runtime cannot load it ({type(err).__name__}: {err})") from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise OnnxModelError(f"{self.path}: expected one input and at least one output; got "
                                 f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        # fixed axes are ints; free axes are names or None
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)

    def _check(self, x: torch.Tensor) -> None:
        fits = x.ndim == len(self.input_shape) and all(
            want is None or got == want for i, (got, want) in enumerate(zip(x.shape, self.input_shape)) if i > 0)
        if not fits:
            shown = tuple("*" if d is None else d for d in self.input_shape)
            raise OnnxModelError(
                f"{self.path}: exported for inputs of shape {shown} (batch, channels, patch); got {tuple(x.shape)}. "
                "Export again at this patch size (docs/export.md), or use a sliding-window inferer whose roi_size is "
                "the exported patch.")

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self.input_shape[0] is None or self.input_shape[0] == array.shape[0]:
            out = self._run(array)
        else:  # exported with batch 1: one call per window
            out = np.concatenate([self._run(array[i:i + 1]) for i in range(array.shape[0])])
        # the PyTorch network's output carries the input's type and meta (a MetaTensor under SimpleInferer): so does this
        return convert_to_dst_type(torch.from_numpy(out), x, dtype=torch.float32)[0]

    def extra_repr(self) -> str:
        return f"path={self.path!r}, input_shape={self.input_shape}, providers={self.session.get_providers()}"
