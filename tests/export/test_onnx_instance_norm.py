# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""InstanceNorm exported to ONNX and run by OnnxNetwork agrees with float64 on large, mostly padded maps.

ONNX Runtime's InstanceNormalization sums each channel in one float32 running sum; where most values repeat (a
sliding window mostly of constant padding, after a convolution: its bias) the rounding errors add up: 2-4e-4 relative
at 512² (the cells bundle's real window; bundles/bundle_tools/onnx_inference.py). A tiny network never shows it (the
error grows with the map), so this exports the norm layer alone at the real map sizes, on such an input, and holds
OnnxNetwork's output (which rewrites the node into per-axis means) to 1e-5 of float64 instance_norm.
"""

from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from monai.networks.utils import convert_to_onnx  # noqa: E402

from xlstm_bundle_tools import OnnxNetwork  # noqa: E402


def padded_input(shape: tuple[int, ...], real: tuple[int, ...]) -> torch.Tensor:
    """A random 'image' of size ``real`` in the corner of ``shape``, the rest a constant per channel (0.7, -1.3)."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.tensor([0.7, -1.3]).view(1, 2, *[1] * (len(shape) - 2)) * torch.ones(shape)).contiguous()
    region = (slice(None), slice(None), *(slice(0, r) for r in real))
    x[region] = torch.randn(x[region].shape, generator=generator)
    return x


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("dims, shape, real", [
    (2, (1, 2, 512, 512), (172, 251)),  # the cells bundle's window and its first demo case
    (3, (1, 2, 96, 96, 96), (40, 50, 30)),
])
def test_instance_norm_on_padded_map_matches_float64(tmp_path, dims, shape, real):
    torch.manual_seed(0)
    norm = (torch.nn.InstanceNorm2d if dims == 2 else torch.nn.InstanceNorm3d)(2, affine=True).eval()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = padded_input(shape, real)
    path = tmp_path / "norm.onnx"
    convert_to_onnx(norm, [x], filename=str(path), use_trace=False)  # as `monai.bundle onnx_export` calls it
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("InstanceNormalization") == 1

    network = OnnxNetwork(path, providers=["CPUExecutionProvider"], intra_op_num_threads=1)
    assert network.stable_instance_norms == 1
    ref = torch.nn.functional.instance_norm(x.double(), weight=norm.weight.double(), bias=norm.bias.double(),
                                            eps=norm.eps)
    with torch.no_grad():
        assert relative_error(norm(x), ref) < 1e-5  # PyTorch float32 itself
    assert relative_error(network(x), ref) < 1e-5
