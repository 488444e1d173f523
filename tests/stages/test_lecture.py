"""The lecture's worked example against values worked out by hand, parameter counts, figures."""

from __future__ import annotations

import pytest
import torch
from lecture_example import MAXPOOL, STRIDE1_FILTER1, STRIDE1_FILTER2, STRIDE2
from matplotlib.figure import Figure
from torch import nn

from cnnpipe.io.files import read_json
from cnnpipe.networks.lecture_cnn import build_model
from cnnpipe.stages import lecture


def _manifest(shape, classes=3):
    channels = shape[0]
    return {"image_shape": list(shape), "classes": [str(i) for i in range(classes)],
            "normalization": {"mean": [0.5] * channels, "std": [0.25] * channels}}


def test_lecture_constants():
    assert ["".join(map(str, row)) for row in lecture.LECTURE_IMAGE] == [
        "100001", "010010", "001100", "100010", "010010", "001010"]
    assert [list(map(list, f)) for f in lecture.LECTURE_FILTERS] == [
        [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], [[-1, 1, -1], [-1, 1, -1], [-1, 1, -1]]]


def test_conv_worked_example_matches_the_hand_computation():
    example = lecture.conv_worked_example()
    assert example["stride1"] == [STRIDE1_FILTER1, STRIDE1_FILTER2]
    assert example["stride2"] == STRIDE2
    assert example["maxpool"] == MAXPOOL
    assert example["image"] == [list(row) for row in lecture.LECTURE_IMAGE]
    # ints, not floats like 3.0, so the JSON reads like the lecture
    assert all(type(v) is int for key in ("stride1", "stride2", "maxpool")
               for fmap in example[key] for row in fmap for v in row)


def test_parameter_counts_lecture_example_counts_weights_only():
    counts = lecture.parameter_counts({"conv_channels": [2], "hidden": [4]}, _manifest([1, 8, 8]))
    first = counts["layers"][0]
    assert first["name"] == "lecture example"
    assert first["input_shape"] == [1, 6, 6] and first["output_shape"] == [2, 4, 4]
    # two 3x3 filters, no bias; a dense layer from 36 inputs to 32 outputs, no bias either
    assert first["conv_parameters"] == 2 * 3 * 3 == 18
    assert first["fully_connected_parameters"] == 36 * 32 == 1152
    assert first["ratio"] == 64.0


def test_parameter_counts_for_a_tiny_model_include_biases():
    cfg = {"conv_channels": [2, 3], "kernel_size": 3, "hidden": [4]}
    layers = lecture.parameter_counts(cfg, _manifest([1, 8, 8]))["layers"][1:]
    assert [layer["name"] for layer in layers] == ["conv1", "conv2"]
    conv1, conv2 = layers
    # conv1: 1x8x8 -> 2x8x8 ("same" padding); 2 filters of 1x3x3 + 2 biases
    assert (conv1["input_shape"], conv1["output_shape"]) == ([1, 8, 8], [2, 8, 8])
    assert conv1["conv_parameters"] == 2 * 9 + 2 == 20
    assert conv1["fully_connected_parameters"] == 64 * 128 + 128 == 8320
    assert conv1["ratio"] == 416.0
    # conv2 sees the pooled map: 2x4x4 -> 3x4x4; 3 filters of 2x3x3 + 3 biases
    assert (conv2["input_shape"], conv2["output_shape"]) == ([2, 4, 4], [3, 4, 4])
    assert conv2["conv_parameters"] == 3 * 2 * 9 + 3 == 57
    assert conv2["fully_connected_parameters"] == 32 * 48 + 48 == 1584
    assert conv2["ratio"] == pytest.approx(1584 / 57, abs=1e-3)
    assert all(layer["ratio"] > 1 for layer in layers)


def test_parameter_counts_colour_input():
    (conv1,) = lecture.parameter_counts({"conv_channels": [2], "kernel_size": 5}, _manifest([3, 6, 6]))["layers"][1:]
    # a filter spans all three input channels: 2 x (3x5x5) + 2
    assert conv1["conv_parameters"] == 2 * 3 * 25 + 2 == 152
    assert conv1["fully_connected_parameters"] == 108 * 72 + 72 == 7848


def test_conv_layer_shapes_leaves_no_hooks_and_keeps_the_mode():
    model = build_model({"conv_channels": [2, 3]}, _manifest([1, 8, 8]))
    model.train()
    shapes = lecture.conv_layer_shapes(model, [1, 8, 8])
    assert [(name, i, o) for name, _, i, o in shapes] == [("conv1", [1, 8, 8], [2, 8, 8]), ("conv2", [2, 4, 4], [3, 4, 4])]
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_conv_example_figure():
    fig = lecture.conv_example_figure(lecture.conv_worked_example())
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    panels = [ax for ax, title in zip(fig.axes, titles) if title]
    assert len(panels) == 9  # input, 2 filters, 2 x (stride 1, stride 2, max pooling)
    assert len(fig.axes) == 11  # plus one colourbar per colour scale
    assert "input image 6x6" in titles
    assert "filter 1, stride 1\n→ 4x4 feature map" in titles
    assert "filter 2, stride 2\n→ 2x2" in titles
    assert "filter 1: 2x2 max pooling\n→ 2x2" in titles
    stride1 = next(ax for ax in panels if ax.get_title().startswith("filter 1, stride 1"))
    assert [t.get_text() for t in stride1.texts] == [str(v) for row in STRIDE1_FILTER1 for v in row]
    pooled = next(ax for ax in panels if ax.get_title().startswith("filter 2: 2x2 max"))
    assert [t.get_text() for t in pooled.texts] == ["-1", "1", "0", "3"]


def test_parameter_counts_figure():
    counts = lecture.parameter_counts({"conv_channels": [2, 3]}, _manifest([1, 8, 8]))
    fig = lecture.parameter_counts_figure(counts)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert len(ax.patches) == 2 * 3
    assert "shared weights" in ax.get_title()
    assert {"18", "1,152", "20", "8,320"} <= {t.get_text() for t in ax.texts}


def test_first_layer_filters_gray_share_one_symmetric_scale():
    torch.manual_seed(0)
    model = build_model({"conv_channels": [6, 4]}, _manifest([1, 8, 8]))
    fig = lecture.first_layer_filters_figure(model)
    grid, bar = fig.axes
    assert len(grid.images) == 6
    assert [t.get_text() for t in grid.texts] == [f"filter {i}" for i in range(6)]
    limit = float(model.conv1.weight.detach().abs().max())
    norms = {(im.norm.vmin, im.norm.vmax) for im in grid.images}
    assert len(norms) == 1
    ((vmin, vmax),) = norms
    assert vmin == pytest.approx(-limit) and vmax == pytest.approx(limit)
    assert "conv1" in fig.texts[0].get_text()


def test_first_layer_filters_rgb_and_fallback_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 2, 3))
    fig = lecture.first_layer_filters_figure(model)
    (grid,) = fig.axes
    assert len(grid.images) == 5
    for image in grid.images:
        rgb = image.get_array()
        assert rgb.shape == (3, 3, 3)
        assert float(rgb.min()) == pytest.approx(0.0) and float(rgb.max()) == pytest.approx(1.0)
    assert "RGB" in fig.texts[0].get_text()
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        lecture.first_layer_filters_figure(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="2 input channels"):
        lecture.first_layer_filters_figure(nn.Sequential(nn.Conv2d(2, 2, 3)))


def test_first_layer_slide_of_an_imagenet_network_draws_its_own_kernels():
    """AlexNet's 64 filters of 11x11x3 (the lecture's slide) and Lite0's 3x3 stem, found after the
    normalize layer, each min-max scaled on its own."""
    from cnnpipe.networks.build import load_backbone

    torch.manual_seed(0)
    alexnet = load_backbone("alexnet", pretrained=False)
    fig = lecture.first_layer_filters_figure(alexnet, "alexnet")
    (grid,) = fig.axes
    title = fig.texts[0].get_text()
    assert title.startswith("alexnet: first convolution layer (features.0): 64 filters of 11x11x3 as RGB"), title
    assert len(grid.images) == 64 and grid.images[0].get_array().shape == (11, 11, 3)
    kernel = alexnet.features[0].weight[5].permute(1, 2, 0)
    expected = (kernel - kernel.min()) / (kernel.max() - kernel.min())
    assert torch.allclose(torch.as_tensor(grid.images[5].get_array()), expected, atol=1e-6)
    lite0 = load_backbone("efficientnet_lite0")
    assert "(conv_stem): 32 filters of 3x3x3" in lecture.first_layer_filters_figure(lite0, "lite0").texts[0].get_text()


def test_writers_are_deterministic(tmp_path):
    cfg, manifest = {"conv_channels": [2, 3]}, _manifest([1, 8, 8])
    for run in ("a", "b"):
        example = lecture.write_conv_example(tmp_path / run / "example.json", tmp_path / run / "example.png")
        counts = lecture.write_parameter_counts(cfg, manifest, tmp_path / run / "params.json", tmp_path / run / "params.png")
        torch.manual_seed(0)
        lecture.write_first_layer_filters(build_model(cfg, manifest), tmp_path / run / "filters.png")
    assert read_json(tmp_path / "a" / "example.json") == example
    assert read_json(tmp_path / "a" / "params.json") == counts
    for name in ("example.json", "example.png", "params.json", "params.png", "filters.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
