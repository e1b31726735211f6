# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""An exported ONNX model as the ``network`` of a bundle's inference pipeline.

``configs/inference_onnx.json`` (rendered from ``templates/inference_onnx.yaml``) swaps inference.json's PyTorch
network for :class:`OnnxNetwork`, so the same preprocessing, sliding-window inferer, postprocessing and writer run
on ONNX Runtime::

    python -m monai.bundle run --config_file "['configs/inference.json','configs/inference_onnx.json']"

The model is exported at the inference patch size with batch 1 (docs/export.md), so a sliding-window batch of
``sw_batch_size`` windows runs as that many calls; a model exported with a free batch axis takes the batch at once.

ONNX Runtime's CPU ``InstanceNormalization`` (and its ``ReduceMean``) sums a whole channel in one float32 running sum
(onnxruntime 1.32). Over a large map whose values repeat, every addition rounds the same way and the errors add up
instead of cancelling: on a 512² sliding window that is mostly zero padding (the cells bundle) the variance comes out
5e-4 too large in relative terms and the whole output 3.9e-4 off, where PyTorch is within 1e-6 of float64. No session
option changes that kernel (``ORT_DISABLE_ALL`` gives the same error), so :class:`OnnxNetwork` replaces each
``InstanceNormalization`` node when it loads a model by the same normalisation with the means taken one spatial axis
at a time (``ReduceMean`` over the last axis, then the one before, ...): no running sum is longer than one axis (512
here), and the error drops to PyTorch's. :func:`stable_instance_norms` does the rewrite; the file is not changed.
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

__all__ = ["OnnxNetwork", "OnnxModelError", "stable_instance_norms"]


class OnnxModelError(InputError):
    """The ONNX file is missing or unreadable, or an input does not fit the shape it was exported for."""


def stable_instance_norms(model) -> int:
    """In place: replace every ``InstanceNormalization`` node of ``model``'s main graph whose input rank is known by
    ``(x - mean) / sqrt(var + eps) * scale + bias``, mean and var (two-pass, of ``x - mean``) as ``ReduceMean`` over
    one spatial axis at a time, last axis first. Returns the number of nodes replaced.

    Why: see the module docstring (ONNX Runtime's one-pass running sums lose 2-4e-4 relative over 512² maps of repeated
    values; the per-axis means keep every sum within one axis).
    """
    import onnx
    from onnx import TensorProto, helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    if not any(node.op_type == "InstanceNormalization" for node in graph.node):
        return 0
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    nodes, replaced = [], 0
    for node in graph.node:
        tensor_type = types.get(node.input[0]) if node.op_type == "InstanceNormalization" else None
        if tensor_type is None or not tensor_type.HasField("shape") or len(tensor_type.shape.dim) < 3:
            nodes.append(node)
            continue
        rank, elem = len(tensor_type.shape.dim), tensor_type.elem_type
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        x, scale, bias = node.input
        tag = f"stable_instance_norm_{replaced}"
        new = []

        def name(suffix: str) -> str:
            return f"{tag}/{suffix}"

        def const(suffix: str, dtype: int, dims: list[int], values: list) -> str:
            new.append(helper.make_node("Constant", [], [name(suffix)],
                                        value=helper.make_tensor(name(suffix), dtype, dims, values)))
            return name(suffix)

        def mean(value: str, suffix: str) -> str:
            for axis in range(rank - 1, 1, -1):  # one axis at a time: no running sum longer than that axis
                out = name(f"{suffix}_{axis}")
                if opset >= 18:
                    new.append(helper.make_node("ReduceMean", [value, const(f"axis_{suffix}_{axis}", TensorProto.INT64,
                                                                            [1], [axis])], [out], keepdims=1))
                else:
                    new.append(helper.make_node("ReduceMean", [value], [out], axes=[axis], keepdims=1))
                value = out
            return value

        centred, squared = name("centred"), name("squared")
        new.append(helper.make_node("Sub", [x, mean(x, "mean")], [centred]))
        new.append(helper.make_node("Mul", [centred, centred], [squared]))
        new.append(helper.make_node("Add", [mean(squared, "var"), const("eps", elem, [], [eps])], [name("var_eps")]))
        new.append(helper.make_node("Sqrt", [name("var_eps")], [name("std")]))
        new.append(helper.make_node("Div", [centred, name("std")], [name("normed")]))
        channel_axes = const("channel_axes", TensorProto.INT64, [rank - 2], list(range(1, rank - 1)))
        new.append(helper.make_node("Unsqueeze", [scale, channel_axes], [name("scale")]))
        new.append(helper.make_node("Unsqueeze", [bias, channel_axes], [name("bias")]))
        new.append(helper.make_node("Mul", [name("normed"), name("scale")], [name("scaled")]))
        new.append(helper.make_node("Add", [name("scaled"), name("bias")], [node.output[0]]))
        nodes.extend(new)
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


class OnnxNetwork(nn.Module):
    """Callable like the PyTorch network: (B, C, *spatial) float tensor -> (B, out_channels, *spatial) float32 logits.

    Args:
        path: the ``.onnx`` file (MONAI's ``onnx_export`` writes ``models/model.onnx``).
        providers: ONNX Runtime execution providers. Default: CUDA when torch sees a GPU and ONNX Runtime offers it,
            else CPU.
        intra_op_num_threads: ONNX Runtime threads per call; default: torch's thread count, so the two paths are
            compared on equal terms.
        stable_instance_norm: run each ``InstanceNormalization`` as per-axis means (:func:`stable_instance_norms`;
            the module docstring says why). Default: True.

    Raises:
        OnnxModelError: the file does not exist or ONNX Runtime cannot load it (the message names the file), or at
            call time an input whose shape differs from the exported one in anything but a free axis.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 intra_op_num_threads: int | None = None, stable_instance_norm: bool = True) -> None:
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
            model = self.path
            self.stable_instance_norms = 0
            if stable_instance_norm:
                import onnx

                loaded = onnx.load(self.path)
                self.stable_instance_norms = stable_instance_norms(loaded)
                if self.stable_instance_norms:
                    model = loaded.SerializeToString()
            self.session = ort.InferenceSession(model, sess_options=options, providers=list(providers))
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
