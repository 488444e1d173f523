import pytest
import torch

from cnnpipe.networks.lecture_cnn import LectureCNN, build_model

MANIFEST = {"image_shape": [1, 28, 28], "classes": list("0123456789"),
            "normalization": {"mean": [0.3], "std": [0.5]}}


def test_layers_follow_the_lecture_and_carry_its_names():
    model = build_model({"conv_channels": [16, 32], "hidden": [64], "dropout": 0.2}, MANIFEST)
    names = [name for name, _ in model.named_children()]
    assert names == ["normalize", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                     "fc1", "fc_relu1", "dropout1", "logits"]
    assert model.conv_layer_names() == ["conv1", "conv2"]
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # 28 -> 14 -> 7 after two poolings: the first fully connected layer sees 32 * 7 * 7.
    assert model.fc1.in_features == 32 * 7 * 7


def test_normalization_is_the_first_layer():
    model = build_model({}, MANIFEST)
    x = torch.full((1, 1, 28, 28), 0.8)
    assert torch.allclose(model.normalize(x), torch.full_like(x, 1.0))


def test_batch_norm_and_colour_inputs():
    manifest = {**MANIFEST, "image_shape": [3, 32, 32], "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3}}
    model = build_model({"conv_channels": [8, 8, 8], "batch_norm": True, "hidden": []}, manifest)
    assert hasattr(model, "bn3") and model.conv1.in_channels == 3
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_bad_shapes_are_refused_with_the_key_named():
    with pytest.raises(ValueError, match="kernel_size"):
        LectureCNN(1, 10, 28, kernel_size=4)
    with pytest.raises(ValueError, match="conv_channels"):
        LectureCNN(1, 10, 8, conv_channels=[4, 4, 4, 4])
    with pytest.raises(ValueError, match="square"):
        build_model({}, {**MANIFEST, "image_shape": [1, 28, 20]})
