# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Options every xLSTM network shares: the no-xLSTM control (``use_xlstm=False``), the ViL token order and
activation checkpointing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from shared_networks import SegXLSTM, VMUNet, XLSTMUNet, XLSTMVMUNet
from shared_networks.blocks.vil import SpatialViL, reverse_spatial_axes
from shared_networks.nets.seg_xlstm import _TokenViL


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")  # tests/shared_networks/conftest.py


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vil_formula(dim: int) -> int:
    return 6 * dim * dim + (87 if dim % 4 == 0 else 51) * dim + (8 if dim % 4 == 0 else 4)  # ARCHITECTURE.md §2.6


XLSTM_UNET_ENC_3D = dict(spatial_dims=3, in_channels=1, out_channels=3, variant="enc", features=(4, 8, 8, 8, 8),
                         strides=(1, 2, 2, 2, (1, 1, 2)), patch_size=(16, 16, 16))
XLSTM_UNET_ENC_2D = dict(spatial_dims=2, in_channels=1, out_channels=3, variant="enc", features=(4, 8, 8, 8, 8),
                         strides=(1, 2, 2, 2, 2), patch_size=(32, 32), full_res_skip_2d=False)
XLSTM_UNET_BOT_3D = dict(spatial_dims=3, in_channels=2, out_channels=3, features=(4, 8, 16), strides=(1, 2, 2))
SEG_XLSTM = dict(in_channels=2, out_channels=3, dims=(4, 8, 8, 16), hidden_size=16)
VM_SMALL = dict(dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), d_state=4)


def _replace(net: nn.Module, predicate) -> nn.Module:
    """Swap every submodule matching ``predicate`` for nn.Identity (in place)."""
    for name, module in list(net.named_modules()):
        if name and predicate(module):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, nn.Identity())
    return net


# ----------------------------------------------------------------------------------------------- control run


@pytest.mark.parametrize(
    "config, x_shape, expected_vils",
    [(XLSTM_UNET_BOT_3D, (1, 2, 8, 8, 8), [16]), (XLSTM_UNET_ENC_3D, (1, 1, 16, 16, 16), [8, 4]),
     (XLSTM_UNET_ENC_2D, (1, 1, 32, 32), [8, 4])],
    ids=["bot3d", "enc3d", "enc2d"],
)
def test_xlstm_unet_control_is_the_same_network_without_its_vil_blocks(config, x_shape, expected_vils):
    torch.manual_seed(0)
    full = XLSTMUNet(**config).double().eval()
    control = XLSTMUNet(**config, use_xlstm=False).double().eval()
    vils = [m for m in full.modules() if isinstance(m, SpatialViL)]
    assert [v.dim for v in vils] == expected_vils
    assert not any(isinstance(m, SpatialViL) for m in control.modules())
    # the parameters removed are exactly the ViL blocks'
    assert n_params(full) - n_params(control) == sum(n_params(v) for v in vils) == sum(map(vil_formula, expected_vils))
    # every control tensor exists in the full network under the same name: the subset loads strictly
    control.load_state_dict({k: v for k, v in full.state_dict().items() if k in control.state_dict()}, strict=True)
    x = torch.randn(*x_shape, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(control(x), _replace(full, lambda m: isinstance(m, SpatialViL))(x))


def test_xlstm_unet_enc_control_needs_no_patch_size():
    config = {k: v for k, v in XLSTM_UNET_ENC_3D.items() if k != "patch_size"}
    with pytest.raises(ValueError, match="needs patch_size"):
        XLSTMUNet(**config)
    assert not any(isinstance(m, SpatialViL) for m in XLSTMUNet(**config, use_xlstm=False).modules())


def test_seg_xlstm_control_is_the_same_network_without_its_vil_blocks():
    torch.manual_seed(0)
    full = SegXLSTM(**SEG_XLSTM).double().eval()
    control = SegXLSTM(**SEG_XLSTM, use_xlstm=False).double().eval()
    assert control.vil_stages == () and n_params(control) == n_params(SegXLSTM(**SEG_XLSTM, vil_stages=()))
    assert n_params(full) - n_params(control) == n_params(full.vil) == 2 * sum(map(vil_formula, SEG_XLSTM["dims"]))
    control.load_state_dict({k: v for k, v in full.state_dict().items() if k in control.state_dict()}, strict=True)
    x = torch.randn(1, 2, 32, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(control(x), _replace(full, lambda m: isinstance(m, _TokenViL))(x))


def test_xlstm_vmunet_control_is_vmunet():
    torch.manual_seed(0)
    full = XLSTMVMUNet(**VM_SMALL, xlstm_scales=(1, 2)).double().eval()
    control = XLSTMVMUNet(**VM_SMALL, xlstm_scales=(1, 2), use_xlstm=False).double().eval()
    vmunet = VMUNet(**VM_SMALL).double().eval()
    assert set(control.state_dict()) == set(vmunet.state_dict()) and len(control.fusions) == 0
    assert n_params(full) - n_params(control) == sum(n_params(f) for f in full.fusions.values())
    subset = {k: v for k, v in full.state_dict().items() if k in control.state_dict()}
    control.load_state_dict(subset, strict=True)
    vmunet.load_state_dict(subset, strict=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(control(x), vmunet(x))
        for fusion in full.fusions.values():
            fusion.beta.fill_(0.5)  # the xLSTM branches now contribute
        assert not torch.allclose(control(x), full(x), atol=1e-3)
        full.fusions.clear()  # without its fusions the full network is the control
        assert torch.equal(control(x), full(x))


# ------------------------------------------------------------------------------------------------ token order


@pytest.mark.parametrize("token_mode, shape", [("patch", (2, 8, 3, 4, 5)), ("patch", (2, 8, 3, 5)),
                                               ("channel", (2, 5, 2, 3, 4)), ("channel", (2, 5, 4, 3))],
                         ids=["patch3d", "patch2d", "channel3d", "channel2d"])
def test_first_axis_fastest_equals_the_default_on_reversed_axes(token_mode, shape):
    torch.manual_seed(0)
    dim = shape[1] if token_mode == "patch" else int(torch.tensor(shape[2:]).prod())
    default = SpatialViL(dim, token_mode=token_mode).double()
    official = SpatialViL(dim, token_mode=token_mode, token_order="first_axis_fastest").double()
    official.load_state_dict(default.state_dict())
    x = torch.randn(*shape, dtype=torch.float64)
    expected = reverse_spatial_axes(default(reverse_spatial_axes(x)))
    assert torch.allclose(official(x), expected, rtol=0, atol=1e-13)
    assert not torch.allclose(official(x), default(x), atol=1e-3)  # the order matters


def test_seg_xlstm_token_order_equals_reversed_axes():
    torch.manual_seed(0)
    default = _TokenViL(8, "backward", "auto", 64).double()
    official = _TokenViL(8, "backward", "auto", 64, token_order="first_axis_fastest").double()
    official.load_state_dict(default.state_dict())
    x = torch.randn(1, 8, 4, 3, 5, dtype=torch.float64)
    assert torch.allclose(official(x), reverse_spatial_axes(default(reverse_spatial_axes(x))), rtol=0, atol=1e-13)


def test_token_order_reaches_every_vil_and_is_checked():
    order = "first_axis_fastest"
    assert all(m.token_order == order for m in XLSTMUNet(**XLSTM_UNET_ENC_3D, vil_token_order=order).modules()
               if isinstance(m, SpatialViL))
    assert all(m.first_axis_fastest for m in SegXLSTM(**SEG_XLSTM, vil_token_order=order).modules()
               if isinstance(m, _TokenViL))
    for build in (lambda: XLSTMUNet(**XLSTM_UNET_BOT_3D, vil_token_order="zyx"),
                  lambda: SegXLSTM(**SEG_XLSTM, vil_token_order="zyx")):
        with pytest.raises(ValueError, match="zyx"):
            build()


# ----------------------------------------------------------------------------------------------- checkpointing


def _step(net: nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Forward + backward in training mode: outputs, parameter gradients and bytes autograd saved outside
    checkpointed regions."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    net.zero_grad()
    torch.manual_seed(seed)  # drop-path draws
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    outputs = out if isinstance(out, list) else [out]
    sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)).sum() for o in outputs).backward()
    grads = [p.grad.clone() for p in net.parameters() if p.grad is not None]  # unused deep-supervision heads: None
    return [o.detach() for o in outputs], grads, sum(saved)


CHECKPOINT_CASES = [
    ("xlstm_unet_enc3d", lambda **kw: XLSTMUNet(**XLSTM_UNET_ENC_3D, deep_supervision=True, **kw), (1, 1, 16, 16, 16)),
    ("xlstm_unet_bot2d", lambda **kw: XLSTMUNet(2, 1, 2, features=(4, 8, 8), strides=(1, 2, 2), **kw), (2, 1, 16, 16)),
    ("seg_xlstm", lambda **kw: SegXLSTM(**SEG_XLSTM, **kw), (1, 2, 32, 16, 16)),
    ("xlstm_vmunet", lambda **kw: XLSTMVMUNet(**VM_SMALL, xlstm_scales=(1, 2), drop_path_rate=0.2, **kw),
     (2, 3, 32, 32)),
]


@pytest.mark.parametrize("mode", ["xlstm", "stages"])
@pytest.mark.parametrize("name, build, shape", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_activation_checkpointing_keeps_outputs_and_gradients_and_saves_less(name, build, shape, mode):
    torch.manual_seed(0)
    plain = build().double().train()
    checkpointed = build(activation_checkpointing=mode).double().train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(*shape, dtype=torch.float64)
    out_plain, grads_plain, saved_plain = _step(plain, x)
    out_ckpt, grads_ckpt, saved_ckpt = _step(checkpointed, x)
    for a, b in zip(out_plain + grads_plain, out_ckpt + grads_ckpt, strict=True):
        assert torch.equal(a, b)  # recomputation repeats the same operations: bit-identical
    # "xlstm" drops what the ViL/xLSTM blocks keep (a small share at these widths); "stages" keeps only boundaries
    assert saved_ckpt < saved_plain if mode == "xlstm" else saved_ckpt < 0.5 * saved_plain


def test_checkpointing_is_off_without_autograd():
    net = XLSTMUNet(**XLSTM_UNET_BOT_3D, activation_checkpointing="stages").eval()
    saved = []
    with torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        net(torch.randn(1, 2, 8, 8, 8))
    assert saved == []


@pytest.mark.parametrize("build", [lambda: XLSTMUNet(**XLSTM_UNET_BOT_3D, activation_checkpointing="all"),
                                   lambda: SegXLSTM(activation_checkpointing=True),
                                   lambda: VMUNet(activation_checkpointing="xlstm"),
                                   lambda: XLSTMVMUNet(activation_checkpointing="block")])
def test_bad_checkpointing_option_names_the_choices(build):
    with pytest.raises(ValueError, match=r"activation_checkpointing must be one of \('none', '"):
        build()


@pytest.mark.parametrize("build", [
    lambda v: XLSTMUNet(2, 1, 2, features=(8, 16), strides=(1, 2), use_xlstm=v),
    lambda v: XLSTMUNet(2, 1, 2, features=(8, 16), strides=(1, 2), deep_supervision=v),
    lambda v: SegXLSTM(1, 2, dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), hidden_size=64, use_xlstm=v),
    lambda v: XLSTMVMUNet(use_xlstm=v),
], ids=["xlstm_unet", "xlstm_unet_deep_supervision", "seg_xlstm", "xlstm_vm_unet"])
def test_a_flag_given_as_the_string_false_is_refused(build):
    """The command line's `--network_def#use_xlstm false` arrives as the string 'false', which bool() reads as True:
    the control run would silently keep its xLSTM blocks."""
    with pytest.raises(TypeError, match=r"must be True or False; got 'false' \(str\)\. On the command line write it "
                                        r"capitalised"):
        build("false")
