"""`python -m cnnpipe layers`: every addressable layer of a network with its output shape,
built on the meta device (no weights read or downloaded)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from cnnpipe.__main__ import main
from cnnpipe.networks import checkpoint as ckpt
from cnnpipe.networks.layers import LayerRow, format_shape, format_table, layer_listing, layer_table
from cnnpipe.networks.lecture_cnn import build_model

MODEL_CFG = {"conv_channels": [4, 8], "kernel_size": 3, "hidden": [16], "dropout": 0.2, "batch_norm": False}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "digits", "image_size": 8}, "model": MODEL_CFG}))
    return path


def _real_shapes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Output shapes of a real CPU forward pass, for comparison with the meta listing."""
    shapes, handles = {}, []

    def hook_for(name: str):
        def hook(module, inputs, output):
            shapes.setdefault(name, tuple(output.shape))  # returns None: the output is unchanged
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return shapes


def test_trained_cnn_lists_every_module_with_the_shapes_of_a_real_forward(tiny_config):
    rows = layer_table("trained", config_path=tiny_config)
    manifest = {"image_shape": [1, 8, 8], "classes": [str(i) for i in range(10)],
                "normalization": {"mean": [0.0], "std": [1.0]}}
    model = build_model(MODEL_CFG, manifest)
    modules = [(name, module) for name, module in model.named_modules() if name]
    assert [row.name for row in rows] == [name for name, _ in modules]
    assert [row.type for row in rows] == [type(module).__name__ for _, module in modules]
    real = _real_shapes(model, torch.zeros(1, 1, 8, 8))
    assert {row.name: row.shape for row in rows} == real
    by_name = {row.name: row for row in rows}
    assert by_name["conv1"].shape == (1, 4, 8, 8)
    assert by_name["fc1"].shape == (1, 16)
    assert by_name["logits"].shape == (1, 10)
    assert all(row.aliases == [] for row in rows)


def test_trained_cnn_takes_its_dataset_size_only(tiny_config):
    with pytest.raises(ValueError, match=r"size 16 px does not fit .* 8 px inputs only"):
        layer_table("trained", size=16, config_path=tiny_config)


def test_trained_without_a_config_says_which_file_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"nothere\.yaml does not exist"):
        layer_table("trained", config_path=tmp_path / "nothere.yaml")


def test_checkpoint_spec_lists_the_saved_cnn(tmp_path):
    manifest = {"image_shape": [3, 8, 8], "classes": ["a", "b", "c"],
                "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    model = build_model(MODEL_CFG, manifest)
    path = tmp_path / "model.pt"
    torch.save({"format": ckpt.FORMAT, "model_state": model.state_dict(), "model_config": MODEL_CFG,
                "classes": manifest["classes"], "image_shape": manifest["image_shape"],
                "normalization": manifest["normalization"]}, path)
    listing = layer_listing({"checkpoint": str(path)})
    assert listing.input_shape == (1, 3, 8, 8)
    assert {row.name: row.shape for row in listing.rows} == _real_shapes(model, torch.zeros(1, 3, 8, 8))
    assert {row.name: row.shape for row in listing.rows}["logits"] == (1, 3)


def test_alexnet_rows_carry_caffe_aliases_and_shapes():
    listing = layer_listing("alexnet", size=224)
    assert listing.input_shape == (1, 3, 224, 224) and listing.native_size == 224
    rows = {row.name: row for row in listing.rows}
    assert "" not in rows  # the root module is not a layer
    assert rows["features.0"] == LayerRow("features.0", "Conv2d", (1, 64, 55, 55), ["conv1"])
    assert set(rows["classifier.6"].aliases) >= {"fc8", "logits"}
    assert rows["classifier.6"].shape == (1, 1000)
    assert rows["normalize"].shape == (1, 3, 224, 224)
    assert list(rows)[0] == "normalize"


def test_efficientnet_lite0_defaults_to_its_native_size():
    listing = layer_listing("efficientnet_lite0")
    assert listing.input_shape == (1, 3, 224, 224)
    rows = {row.name: row for row in listing.rows}
    assert "stem" in rows["bn1"].aliases
    assert rows["bn1"].shape == (1, 32, 112, 112)
    assert "head" in rows["bn2"].aliases and "logits" in rows["classifier"].aliases


def test_timm_and_num_classes_specs_need_no_weights():
    rows = {row.name: row for row in layer_table("timm:resnet18", size=64)}
    assert rows["layer4"].shape == (1, 512, 2, 2)
    rows = {row.name: row for row in layer_table({"arch": "resnet18", "num_classes": 5}, size=64)}
    assert rows["fc"].shape == (1, 5) and rows["fc"].aliases == ["logits"]


def test_too_small_a_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"size 16 px is too small for alexnet .*native size is 224 px"):
        layer_table("alexnet", size=16)


def test_format_table_aligns_columns():
    rows = [LayerRow("conv1", "Conv2d", (1, 64, 56, 56), ["stem"]),
            LayerRow("classifier.6", "Linear", (1, 1000), ["fc8", "logits"]),
            LayerRow("aux", "Module", None, [])]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["name", "type", "output", "aliases"]
    assert lines[1].split() == ["conv1", "Conv2d", "1x64x56x56", "stem"]
    assert lines[2].split() == ["classifier.6", "Linear", "1x1000", "fc8,", "logits"]
    assert lines[3].split() == ["aux", "Module", "-"]
    # every row's type and shape start in the same column
    assert len({line.index(cell) for line, cell in zip(lines, ["type", "Conv2d", "Linear", "Module"])}) == 1
    assert len({line.index(cell) for line, cell in zip(lines[1:], ["1x64", "1x1000", "-"])}) == 1
    assert all(line == line.rstrip() for line in lines)
    assert format_shape(((1, 4), "NoneType")) == "(1x4, NoneType)"


def test_cli_lists_resnet18_layers(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnpipe", "layers", "resnet18", "--size", "64"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("resnet18: input 1x3x64x64")
    assert any(line.split()[:3] == ["layer4", "Sequential", "1x512x2x2"] for line in lines)


def test_cli_misspelt_name_exits_2_with_a_suggestion(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnpipe", "layers", "resnet5O"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("cnnpipe layers: ")
    assert "'resnet5O'" in result.stderr and "resnet50" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_reads_mappings_and_the_trained_config(tiny_config, capsys):
    assert main(["layers", "trained", "--config", str(tiny_config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("trained CNN of")
    assert "1x1x8x8" in out.splitlines()[0]
    assert any(line.split()[:3] == ["conv1", "Conv2d", "1x4x8x8"] for line in out.splitlines())
    assert main(["layers", "{arch: resnet18, num_classes: 5}", "--size", "64"]) == 0
    assert any(line.split()[:3] == ["fc", "Linear", "1x5"] for line in capsys.readouterr().out.splitlines())
    assert main(["layers", "{arch: alexnet, weights: missing.pt}", "--size", "224"]) == 0  # weights never read
    assert "alexnet (weights missing.pt)" in capsys.readouterr().out
    assert main(["layers", "alexnet", "--size", "16"]) == 2
    assert "too small" in capsys.readouterr().err
