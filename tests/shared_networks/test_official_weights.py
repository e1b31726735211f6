# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Official checkpoints in: our converters + our networks reproduce outputs of the official code.

The fixtures (tests/fixtures/official/README.md) hold tiny official networks' state dicts, an input and the official
float64 outputs. Each test wraps a fixture as the official trainer would save it, converts it with
:mod:`shared_networks.official_weights` and compares our network's float64 output with the official one.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from shared_networks import VMUNet, XLSTMUNet, XLSTMVMUNet
from shared_networks.official_weights import (
    convert_vmamba_pretrained,
    convert_vmunet_checkpoint,
    convert_xlstm_unet_checkpoint,
    main,
    read_checkpoint,
    save_conversion,
    xlstm_unet_state_dict_from_official,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
XLSTM_UNET_FIXTURES = ["uxlstm_bot_2d", "uxlstm_enc_2d", "uxlstm_bot_3d", "uxlstm_enc_3d"]


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")  # tests/shared_networks/conftest.py


def load_fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", map_location="cpu", weights_only=True)


def reverse_axes(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 1, *range(x.ndim - 1, 1, -1))


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


def nnunet_checkpoint(fixture: dict, path: Path, **overrides) -> Path:
    """The fixture as nnU-Net v2's trainer saves checkpoint_final.pth: weights with aliases, plans, training state
    (numpy scalars in the logs, a torch.device in init_args)."""
    plan = json.loads(fixture["plan"])
    configuration = {
        "patch_size": plan["patch_size"],
        "pool_op_kernel_sizes": plan["strides"],
        "conv_kernel_sizes": plan["kernel_sizes"],
        "UNet_base_num_features": 32,
    }
    checkpoint = {
        "network_weights": fixture["official_state_dict"],
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.005, "momentum": 0.99, "nesterov": True}]},
        "grad_scaler_state": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 3},
        "logging": {"mean_fg_dice": [np.float64(0.25), np.float64(0.5)], "train_losses": [np.float32(-0.1)],
                    "dice_per_class_or_region": [np.array([0.1, 0.2])]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 2,
        "init_args": {
            "plans": {"plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
                      "configurations": {"3d_lowres": configuration,
                                         "3d_cascade_fullres": {"inherits_from": "3d_lowres"}}},
            "configuration": "3d_cascade_fullres",
            "fold": 0,
            "dataset_json": {"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1}},
            "unpack_dataset": True,
            "device": torch.device("cpu"),
        },
        "trainer_name": "nnUNetTrainerUxLSTM" + ("Enc" if plan["variant"] == "enc" else "Bot"),
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    checkpoint.update(overrides)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("axes", ["nnunet", "monai"])
@pytest.mark.parametrize("name", XLSTM_UNET_FIXTURES)
def test_converted_xlstm_unet_reproduces_the_official_outputs(name, axes, tmp_path):
    fixture = load_fixture(name)
    conversion = convert_xlstm_unet_checkpoint(nnunet_checkpoint(fixture, tmp_path / "checkpoint_final.pth"), axes)
    net = XLSTMUNet(**conversion.kwargs, deep_supervision=True)
    net.load_state_dict(conversion.state_dict, strict=True)
    net.double().train()  # training mode returns every deep-supervision map, as the official net did
    x = fixture["input"].double()
    with torch.no_grad():
        outputs = net(reverse_axes(x) if axes == "monai" else x)
    if axes == "monai":
        outputs = [reverse_axes(o) for o in outputs]
    assert len(outputs) == len(fixture["outputs"])
    # float64, relative to the output range: 1e-14 in the official axis order (measured <= 1.3e-15); reversing the
    # axes reorders every conv sum, and those roundings grow through the depth (measured <= 4.2e-14)
    bound = 1e-14 if axes == "nnunet" else 2e-13
    for out, ref in zip(outputs, fixture["outputs"]):
        assert out.shape == ref.shape
        assert relative_error(out, ref) <= bound


def test_conversion_reads_the_architecture_and_sets_the_parity_options(tmp_path):
    conversion = convert_xlstm_unet_checkpoint(nnunet_checkpoint(load_fixture("uxlstm_enc_2d"), tmp_path / "c.pth"),
                                               "monai")
    assert conversion.kwargs == {
        "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "variant": "enc", "features": [2, 4, 4, 4, 8],
        "kernel_sizes": [[3, 3]] * 5, "strides": [[1, 1], [2, 2], [2, 2], [2, 2], [1, 1]],
        "encoder_blocks": [2, 2, 2, 1, 1], "decoder_blocks": [2, 2, 2, 1], "patch_size": [24, 16],
        "full_res_skip_2d": False, "vil_token_order": "first_axis_fastest",
    }
    assert conversion.network_def()["_target_"] == "shared_networks.nets.XLSTMUNet"
    kept = convert_xlstm_unet_checkpoint(tmp_path / "c.pth", "nnunet", keep_unused_norm=True)
    assert kept.kwargs["official_unused_norm"] is True and "vil_token_order" not in kept.kwargs
    assert kept.kwargs["patch_size"] == [16, 24] and kept.kwargs["strides"][-1] == [1, 1]
    kept.build()  # the unused norms now load too (strict)


def test_renames_cover_every_official_tensor_and_drop_only_aliases():
    official = load_fixture("uxlstm_enc_3d")["official_state_dict"]
    ours = xlstm_unet_state_dict_from_official(official, keep_unused_norm=True)
    aliases = [k for k in official if k.startswith("decoder.encoder.") or ".all_modules." in k]
    assert len(aliases) > 0 and len(ours) == len(official) - len(aliases)
    assert {v.data_ptr() for v in ours.values()} == {v.data_ptr() for k, v in official.items() if k not in aliases}


def test_the_fixture_detects_token_order_and_the_vil_weights(tmp_path):
    # a converter that forgot the token order or a ViL tensor would fail the parity test by far
    fixture = load_fixture("uxlstm_bot_3d")
    conversion = convert_xlstm_unet_checkpoint(nnunet_checkpoint(fixture, tmp_path / "c.pth"), "monai")
    x, ref = reverse_axes(fixture["input"].double()), fixture["outputs"][0]
    wrong_order = XLSTMUNet(**{**conversion.kwargs, "vil_token_order": "last_axis_fastest"}).double().eval()
    wrong_order.load_state_dict(conversion.state_dict)
    state = dict(conversion.state_dict)
    down = "bottleneck_vil.vil.layer.proj_down.weight"
    state[down] = torch.zeros_like(state[down])
    no_vil = XLSTMUNet(**conversion.kwargs).double().eval()
    no_vil.load_state_dict(state)
    with torch.no_grad():
        for net in (wrong_order, no_vil):
            assert relative_error(reverse_axes(net(x)), ref) > 1e-3


def test_command_writes_model_and_network_def_atomically_and_refuses_to_overwrite(tmp_path, capsys):
    fixture = load_fixture("uxlstm_bot_2d")
    checkpoint = nnunet_checkpoint(fixture, tmp_path / "checkpoint_final.pth")
    out = tmp_path / "model.pt"
    assert main(["xlstm-unet", str(checkpoint), str(out), "--axes", "nnunet"]) == 0
    printed = capsys.readouterr().out
    assert "full_res_skip_2d" in printed and str(out) in printed
    network_def = json.loads((tmp_path / "model.pt.network_def.json").read_text())
    assert network_def.pop("_target_") == "shared_networks.nets.XLSTMUNet"
    net = XLSTMUNet(**network_def, deep_supervision=True)
    net.load_state_dict(torch.load(out, weights_only=True), strict=True)
    with torch.no_grad():
        y = net.double().train()(fixture["input"].double())[0]
    assert relative_error(y, fixture["outputs"][0]) <= 1e-14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_final.pth", "model.pt",
                                                          "model.pt.network_def.json"]  # no temporary left
    before = out.read_bytes()
    assert main(["xlstm-unet", str(checkpoint), str(out), "--axes", "monai"]) == 1
    assert "exists; refusing to overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_bare_official_state_dict_needs_strides(tmp_path):
    fixture = load_fixture("uxlstm_bot_3d")
    path = tmp_path / "weights.pth"
    torch.save(fixture["official_state_dict"], path)
    with pytest.raises(ValueError, match="no plans .* pass strides"):
        convert_xlstm_unet_checkpoint(path, "nnunet")
    plan = json.loads(fixture["plan"])
    conversion = convert_xlstm_unet_checkpoint(path, "nnunet", strides=plan["strides"])
    assert conversion.kwargs["strides"] == plan["strides"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ck: ck.pop("network_weights"), "not an nnU-Net checkpoint: expected a dict with 'network_weights'"),
        (lambda ck: ck["network_weights"].pop("decoder.stages.0.0.conv2.weight"),
         r"missing \['decoder_stages.0.0.conv2"),
        (lambda ck: ck["network_weights"].update(extra=torch.zeros(1)), "key 'extra' belongs to no official"),
        (lambda ck: ck["network_weights"]["decoder.encoder.stem.0.conv1.weight"].add_(1.0),
         "'decoder.encoder.stem.0.conv1.weight' should repeat 'encoder.stem.0.conv1.weight'"),
        (lambda ck: ck["init_args"].update(configuration="2d"), "names configuration '2d', which its plans lack"),
        (lambda ck: ck.update(init_args=argparse.Namespace(a=1)), r"must not run: \['argparse.Namespace'\]"),
    ],
    ids=["no_network_weights", "missing_tensor", "unexpected_tensor", "alias_differs", "bad_configuration",
         "unsafe_global"],
)
def test_a_wrong_checkpoint_gets_an_error_naming_the_file_and_the_problem(edit, message, tmp_path):
    fixture = load_fixture("uxlstm_bot_2d")
    path = nnunet_checkpoint(fixture, tmp_path / "checkpoint_final.pth")
    checkpoint = read_checkpoint(path, "test")
    checkpoint["network_weights"] = {k: v.clone() for k, v in checkpoint["network_weights"].items()}
    edit(checkpoint)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=message) as err:
        convert_xlstm_unet_checkpoint(path, "nnunet")
    assert str(path) in str(err.value)
    assert main(["xlstm-unet", str(path), str(tmp_path / "model.pt"), "--axes", "nnunet"]) == 1
    assert not (tmp_path / "model.pt").exists()


def test_numpy_objects_in_nnunet_logs_load_with_weights_only(tmp_path):
    path = nnunet_checkpoint(load_fixture("uxlstm_bot_2d"), tmp_path / "c.pth")
    checkpoint = read_checkpoint(path, "test")
    assert checkpoint["_best_ema"] == 0.5 and checkpoint["init_args"]["device"] == torch.device("cpu")


# ------------------------------------------------------------------------------------------------------ VM-UNet


@pytest.mark.parametrize("form", ["best", "latest"])
def test_converted_vmunet_reproduces_the_official_outputs(form, tmp_path):
    fixture = load_fixture("vmunet")
    state = fixture["official_state_dict"]
    path = tmp_path / f"{form}.pth"
    if form == "best":
        torch.save(state, path)
    else:  # VM-UNet's train.py latest.pth
        torch.save({"epoch": 3, "min_loss": 0.2, "min_epoch": 2, "loss": 0.3, "model_state_dict": state,
                    "optimizer_state_dict": {"state": {}, "param_groups": []},
                    "scheduler_state_dict": {"T_max": 50, "eta_min": 1e-5, "last_epoch": 3}}, path)
    conversion = convert_vmunet_checkpoint(path)
    assert conversion.kwargs == {"in_channels": 3, "out_channels": 1, "depths": [1, 2], "depths_decoder": [2, 1],
                                 "dims": [8, 16], "d_state": 4, "patch_size": 4}
    net = conversion.build().double().eval()
    with torch.no_grad():
        logits = net(fixture["input"].double())
    assert relative_error(logits, fixture["logits"]) <= 1e-13
    assert relative_error(torch.sigmoid(logits), fixture["probabilities"]) <= 1e-13
    assert fixture["logits"].std() > 0.1  # a spatially varying map, not a constant


def test_xlstm_vmunet_checkpoint_needs_the_head_dropped_and_then_loads_its_backbone(tmp_path):
    fixture = load_fixture("vmunet")
    head = {"xLSTM.layers.0.Wz.weight": torch.randn(64, 256), "xLSTM.layers.0.Wz.bias": torch.randn(64)}
    path = tmp_path / "best.pth"
    torch.save({**fixture["official_state_dict"], **head}, path)
    with pytest.raises(ValueError, match=r"XLSTM-VMUNet checkpoint: its logit head \(2 tensors"):
        convert_vmunet_checkpoint(path)
    conversion = convert_vmunet_checkpoint(path, "XLSTMVMUNet", drop_official_head=True,
                                           network_kwargs={"xlstm_scales": [0, 1]})
    net = conversion.build().double().eval()
    assert isinstance(net, XLSTMVMUNet) and set(net.fusions) == {"0", "1"}
    with torch.no_grad():  # alpha = 1, beta = 0: the backbone's function
        assert relative_error(net(fixture["input"].double()), fixture["logits"]) <= 1e-13


def test_vmamba_checkpoint_is_sent_to_the_vmamba_command(tmp_path):
    small = {"dims": 8, "depths": (1, 1), "depths_decoder": (1, 1)}
    encoder = {k: v for k, v in VMUNet(**small).state_dict().items() if k.startswith(("patch_embed.", "layers."))}
    path = tmp_path / "vmamba_small_e238_ema.pth"
    torch.save({"model": {**encoder, "head.weight": torch.zeros(2, 16)}}, path)
    with pytest.raises(ValueError, match="a VMamba ImageNet checkpoint: use the 'vmamba' command"):
        convert_vmunet_checkpoint(path)
    conversion = convert_vmamba_pretrained(path, network_kwargs={"dims": 8, "depths": [1, 1], "depths_decoder": [1, 1]})
    deepest = encoder["layers.1.blocks.0.ln_1.weight"]
    assert torch.equal(conversion.state_dict["layers.1.blocks.0.ln_1.weight"], deepest)
    assert torch.equal(conversion.state_dict["layers_up.0.blocks.0.ln_1.weight"], deepest)  # the mirror
    out, network_def = save_conversion(conversion, tmp_path / "model.pt")
    assert json.loads(network_def.read_text())["dims"] == 8
    assert set(torch.load(out, weights_only=True)) == set(VMUNet(**small).state_dict())


def test_save_refuses_a_missing_output_folder(tmp_path):
    conversion = convert_vmunet_checkpoint(_vmunet_best(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_conversion(conversion, tmp_path / "no" / "model.pt")
    assert os.listdir(tmp_path) == ["best.pth"]


def _vmunet_best(tmp_path: Path) -> Path:
    path = tmp_path / "best.pth"
    torch.save(load_fixture("vmunet")["official_state_dict"], path)
    return path


def test_a_failed_write_leaves_no_partial_output(tmp_path, monkeypatch):
    conversion = convert_vmunet_checkpoint(_vmunet_best(tmp_path))

    def broken_save(obj, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_conversion(conversion, tmp_path / "model.pt")
    assert os.listdir(tmp_path) == ["best.pth"]
